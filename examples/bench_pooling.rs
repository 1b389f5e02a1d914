//! Pre-order throughput over gRPC, next to the raw durable write rate of the same store.
//!
//! ```text
//! cargo run --release --example bench_pooling -- [--orders 5000] [--concurrency 64]
//!     [--database-url postgres://...]
//!     [--addr http://host:port | https://host:port --tls-ca ca.pem] [--token T]
//! ```
//!
//! Without `--addr` it starts a server in this process on a fresh SQLite database in a
//! temporary directory (or on `--database-url`). First it measures the raw rate of the
//! store: one transaction per order with one INSERT and one UPDATE, at the same durability
//! settings (`c2m_store::probe`). Then it places the same number of single-unit pre-orders
//! over gRPC from `--concurrency` tasks and reports accepted orders per second and
//! p50/p99 latency. Every order is durable before it is acknowledged in both runs, so the
//! ratio shows what the service costs on top of its store. Last it sends the same number
//! of no-op calls (the standard health `Check`) with the same clients, concurrency and
//! channels to the same server: the ceiling a call can reach on this machine, so
//! `service / no-op RPC rate` says how much of the wire an order's own work leaves. This
//! is a benchmark, not a test: it asserts nothing but prints figures.

use anyhow::Context;
use clap::Parser;

use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::auth::Bearer;
use c2m_server::tls::ClientTls;
use c2m_server::{Application, Settings};

#[path = "common/bench.rs"]
mod bench;
use bench::{closed_loop, ms};
use tonic_health::pb::health_client::HealthClient;

/// The product the benchmark campaign sells, with just enough around it to be a valid
/// scenario.
const BENCH_CATALOGUE: &str = r#"
name = "bench"
currency = "CNY"

[[products]]
sku = "bench-sku"
demand = 0
bom = { part = 1.0 }

[[materials]]
id = "part"
unit = "pcs"
on_hand = 0.0

[[factories]]
id = "bench-factory"
capacity_hours = 1000.0

[[factories.lines]]
sku = "bench-sku"
unit_cost = 100.0
hours_per_unit = 0.01

[[suppliers]]
id = "bench-supplier"
lead_days = 1

[[suppliers.offers]]
material = "part"
breaks = [{ min_qty = 0.0, unit_price = 10.0 }]
"#;

#[derive(Parser)]
#[command(
    about = "Durable pre-orders per second on one hot campaign, next to the store's raw rate"
)]
struct Args {
    #[arg(long, default_value_t = 5000)]
    orders: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Units per batch; each lock is part of the measured work.
    #[arg(long, default_value_t = 100)]
    threshold: i64,
    /// Benchmark this database instead of a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Benchmark an already running server (the raw probe then needs --database-url).
    #[arg(long)]
    addr: Option<String>,
    /// Bearer token (admin: the benchmark imports a product and creates a campaign) for
    /// --addr.
    #[arg(long, env = "C2M_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TLS for an https:// --addr.
    #[command(flatten)]
    tls: ClientTls,
    /// gRPC connections the load is spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

#[allow(clippy::print_stdout)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    c2m_server::cli::init_tracing_with_default("warn");
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));

    // 1. The raw durable write rate of the same store (before the server takes load).
    let raw = if args.addr.is_none() || args.database_url.is_some() {
        Some(c2m_store::probe::raw_write_rate(&url, args.orders, args.concurrency).await?)
    } else {
        None
    };

    // 2. The service over gRPC.
    let (addr, server) = match &args.addr {
        Some(a) => (a.clone(), None),
        None => {
            let mut settings = Settings::for_tests(dir.path().to_path_buf());
            settings.database_url = Some(url.clone());
            let app = Application::build(settings).await?;
            let addr = format!("http://{}", app.local_addr());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(app.run_until(async {
                let _ = rx.await;
            }));
            (addr, Some((tx, task)))
        }
    };
    let auth = Bearer::new(args.token.as_deref());
    let endpoint = args.tls.endpoint(&addr)?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot reach {addr}"))?,
        );
    }
    // A campaign's sku must be in the catalogue: merge in a one-product catalogue.
    CatalogueServiceClient::with_interceptor(channels[0].clone(), auth.clone())
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: format!("bench-catalogue-{}", uuid::Uuid::new_v4().simple()),
            text: BENCH_CATALOGUE.into(),
            format: pb::ScenarioFormat::Toml as i32,
            mode: pb::ImportMode::Merge as i32,
        })
        .await?;
    let deadline = chrono::Utc::now() + chrono::Duration::days(1);
    let campaign = CampaignServiceClient::with_interceptor(channels[0].clone(), auth.clone())
        .create_campaign(pb::CreateCampaignRequest {
            idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            sku: "bench-sku".into(),
            title: "benchmark".into(),
            currency: "CNY".into(),
            unit_price_minor: 10_000,
            deposit_minor: 1_000,
            batch_threshold: args.threshold,
            batch_cap: None,
            max_per_order: None,
            max_per_consumer: None,
            total_cap: None,
            opens_at: None,
            deadline: Some(prost_types::Timestamp {
                seconds: deadline.timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        })
        .await?
        .into_inner();

    // 3. The same clients, concurrency and channels placing orders, then calling a no-op
    //    RPC (the standard health `Check`, through the same interceptor and layers): the
    //    second is the ceiling of what this machine does per call, so the ratio says how
    //    much of the wire an order's own work leaves.
    let orders = {
        let campaign = campaign.id.clone();
        closed_loop(
            args.orders,
            args.concurrency,
            &channels,
            move |channel, i| {
                let mut client = PreorderServiceClient::with_interceptor(channel, auth.clone());
                let req = pb::PlacePreorderRequest {
                    idempotency_key: format!("bench-{campaign}-{i}"),
                    campaign_id: campaign.clone(),
                    consumer_id: format!("consumer-{}", i % 1000),
                    channel: None,
                    region: None,
                    referrer: None,
                    quantity: 1,
                };
                async move { client.place_preorder(req).await.map(|_| ()) }
            },
        )
        .await?
    };
    let noop = {
        let auth = Bearer::new(args.token.as_deref());
        closed_loop(
            args.orders,
            args.concurrency,
            &channels,
            move |channel, _| {
                let mut client = HealthClient::with_interceptor(channel, auth.clone());
                let req = tonic_health::pb::HealthCheckRequest {
                    service: "c2m.v1.PreorderService".into(),
                };
                async move { client.check(req).await.map(|_| ()) }
            },
        )
        .await?
    };
    let (refused, rate) = (orders.refused, orders.rate);

    println!(
        "c2m pooling benchmark: {} single-unit pre-orders, {} concurrent clients, threshold {}",
        args.orders, args.concurrency, args.threshold
    );
    println!(
        "store: {}",
        if args.addr.is_some() && args.database_url.is_none() {
            "the running server's (not probed)"
        } else if url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite (WAL, synchronous=FULL)"
        }
    );
    println!();
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "", "orders/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<34} {:>12.0} {:>10.2} {:>10.2}",
        "gRPC PlacePreorder (accepted)",
        rate,
        orders.p50_ms(),
        orders.p99_ms()
    );
    println!(
        "{:<34} {:>12.0} {:>10.2} {:>10.2}",
        "no-op RPC: health Check",
        noop.rate,
        noop.p50_ms(),
        noop.p99_ms()
    );
    if let Some(raw) = &raw {
        println!(
            "{:<34} {:>12.0} {:>10.2} {:>10.2}",
            "raw store: 1 insert+update txn",
            raw.orders_per_sec,
            ms(raw.p50),
            ms(raw.p99)
        );
        println!();
        println!(
            "service / raw store rate: {:.2}x",
            rate / raw.orders_per_sec
        );
    }
    if raw.is_none() {
        println!();
    }
    println!("service / no-op RPC rate: {:.2}x", rate / noop.rate);
    if noop.refused > 0 {
        println!("no-op calls refused: {}", noop.refused);
    }
    if refused > 0 {
        println!("refused: {refused}");
    }
    if let Some((tx, task)) = server {
        let _ = tx.send(());
        task.await??;
    }
    Ok(())
}
