//! Pre-order throughput over gRPC, next to the raw durable write rate of the same store.
//!
//! ```text
//! cargo run --release --example bench_pooling -- [--orders 5000] [--concurrency 64]
//!     [--database-url postgres://...]
//!     [--addr http://host:port | https://host:port --tls-ca ca.pem] [--token T]
//!     [--addr http://a:port,http://b:port --database-url postgres://...]  # replicas
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
//! `service / no-op RPC rate` says how much of the wire an order's own work leaves.
//!
//! Then, with a server in this process, the outbox (`docs/events.md`): the same number of
//! orders placed on fresh campaigns with the outbox off, then on again (the first run
//! above had it on), so its cost is read within one run; the switch
//! (`c2m_store::events::set_outbox_for_benchmark`) exists for this benchmark only. Last,
//! one more round with a webhook endpoint registered on a real HTTP receiver in this
//! process (it verifies each signature) and an `EventService.Subscribe` stream open, both
//! for every event: each event's delivery lag is the time from its `occurred_at` (taken
//! when the write was received, before it queued and committed: an upper bound of
//! commit-to-receipt) and, for `preorder.placed`, from the moment the client had the
//! order's answer (after the commit: a lower bound, negative when the event arrived
//! first). This is a benchmark, not a test: it asserts nothing but prints figures.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use tonic::transport::Channel;

use c2m_domain::events::{Event, EventData};
use c2m_domain::webhook::{verify, DEFAULT_TOLERANCE_SECS, SIGNATURE_HEADER};
use c2m_proto::v1::event_service_client::EventServiceClient;
use c2m_proto::v1::webhook_service_client::WebhookServiceClient;

use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::auth::Bearer;
use c2m_server::tls::ClientTls;
use c2m_server::{Application, Settings};

#[path = "common/bench.rs"]
mod bench;
#[path = "common/flags.rs"]
mod flags;
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
    #[arg(long, default_value_t = 5000, value_parser = flags::count)]
    orders: usize,
    #[arg(long, default_value_t = 64, value_parser = flags::count)]
    concurrency: usize,
    /// Units per batch; each lock is part of the measured work.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
    threshold: i64,
    /// Benchmark this database instead of a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Benchmark an already running server (the raw probe then needs --database-url).
    /// Several, comma-separated (replicas on one PostgreSQL), spread the connections
    /// over them in turn: `--connections` is then the total.
    #[arg(long, value_delimiter = ',')]
    addr: Vec<String>,
    /// Bearer token (admin: the benchmark imports a product and creates a campaign) for
    /// --addr.
    #[arg(long, env = "C2M_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TLS for an https:// --addr.
    #[command(flatten)]
    tls: ClientTls,
    /// gRPC connections the load is spread over.
    #[arg(long, default_value_t = 4, value_parser = flags::count)]
    connections: usize,
    /// Skip the outbox rounds (events off and on, and the delivery lag).
    #[arg(long)]
    no_outbox: bool,
    /// Event streams open (live, every campaign) during the last outbox round: the first
    /// measures the lag, the others are storefronts listening too, each checked for every
    /// event.
    #[arg(long, default_value_t = 1, value_parser = flags::count)]
    subscribers: usize,
}

type Auth = Bearer;

/// Creates a campaign of `threshold` units selling the benchmark's product; its id.
async fn new_campaign(channel: Channel, auth: Auth, threshold: i64) -> anyhow::Result<String> {
    let deadline = chrono::Utc::now() + chrono::Duration::days(1);
    let campaign = CampaignServiceClient::with_interceptor(channel, auth)
        .create_campaign(pb::CreateCampaignRequest {
            idempotency_key: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            sku: "bench-sku".into(),
            title: "benchmark".into(),
            currency: "CNY".into(),
            unit_price_minor: 10_000,
            deposit_minor: 1_000,
            batch_threshold: threshold,
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
    Ok(campaign.id)
}

/// When the client had each order's answer, by pre-order id.
type Acks = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;

/// `args.orders` single-unit orders on `campaign` in a closed loop; with `acks`, records
/// when each answer came.
async fn place_orders(
    args: &Args,
    channels: &[Channel],
    auth: Auth,
    campaign: String,
    acks: Option<Acks>,
) -> anyhow::Result<bench::Loop> {
    closed_loop(
        args.orders,
        args.concurrency,
        channels,
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
            let acks = acks.clone();
            async move {
                let p = client.place_preorder(req).await?.into_inner();
                if let Some(acks) = acks {
                    acks.lock().expect("acks").insert(p.id, Utc::now());
                }
                Ok::<(), tonic::Status>(())
            }
        },
    )
    .await
}

/// One event as a receiver got it.
struct Receipt {
    seq: i64,
    occurred_at: DateTime<Utc>,
    /// The pre-order of a `preorder.placed`.
    placed: Option<String>,
    at: DateTime<Utc>,
}

impl Receipt {
    fn of(e: &Event, at: DateTime<Utc>) -> Receipt {
        Receipt {
            seq: e.seq,
            occurred_at: e.occurred_at,
            placed: match &e.data {
                EventData::PreorderPlaced { preorder, .. } => {
                    Some(preorder.preorder_id.as_str().to_owned())
                }
                _ => None,
            },
            at,
        }
    }
}

type Receipts = Arc<Mutex<Vec<Receipt>>>;

/// A webhook receiver on 127.0.0.1: verifies each delivery's signature (with the secret
/// set once the endpoint is registered) and records when it got which event.
async fn webhook_receiver(
    secret: Arc<OnceLock<String>>,
    got: Receipts,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (secret, got) = (secret.clone(), got.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (secret, got) = (secret.clone(), got.clone());
                    async move {
                        let signature = req
                            .headers()
                            .get(SIGNATURE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let at = Utc::now();
                        let key = secret.get().map(String::as_bytes).unwrap_or_default();
                        let ok = verify(
                            &signature,
                            key,
                            &body,
                            at.timestamp(),
                            DEFAULT_TOLERANCE_SECS,
                        )
                        .is_ok();
                        let event = serde_json::from_slice::<Event>(&body).ok();
                        let status = match (ok, event) {
                            (true, Some(e)) => {
                                got.lock().expect("receipts").push(Receipt::of(&e, at));
                                200
                            }
                            _ => 400,
                        };
                        hyper::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .map_err(|e| anyhow::anyhow!(e))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A subscription to every campaign's events, live from now (it opens with a heartbeat).
async fn live(
    channel: Channel,
    auth: Auth,
) -> anyhow::Result<tonic::Streaming<pb::EventStreamMessage>> {
    Ok(EventServiceClient::with_interceptor(channel, auth)
        .subscribe(pb::SubscribeEventsRequest {
            after_seq: None,
            campaign_id: String::new(),
        })
        .await?
        .into_inner())
}

/// Reads `EventService.Subscribe` (live from now, every campaign) into `got` until
/// aborted.
async fn subscriber(channel: Channel, auth: Auth, got: Receipts) -> anyhow::Result<()> {
    let mut stream = live(channel, auth).await?;
    while let Some(m) = stream.message().await? {
        if let Some(pb::event_stream_message::Message::Event(e)) = m.message {
            let at = Utc::now();
            let event: Event = serde_json::from_str(&e.json)?;
            got.lock().expect("receipts").push(Receipt::of(&event, at));
        }
    }
    Ok(())
}

/// The last event stored, from a new subscription's first heartbeat.
async fn last_seq(channel: Channel, auth: Auth) -> anyhow::Result<i64> {
    let mut stream = live(channel, auth).await?;
    while let Some(m) = stream.message().await? {
        if let Some(pb::event_stream_message::Message::Heartbeat(h)) = m.message {
            return Ok(h.last_seq);
        }
    }
    anyhow::bail!("the event stream ended before its heartbeat")
}

/// Waits until `got` has event `seq` (or `within` passed); whether it has.
async fn received(got: &Receipts, seq: i64, within: Duration) -> bool {
    let until = tokio::time::Instant::now() + within;
    loop {
        if got.lock().expect("receipts").iter().any(|r| r.seq >= seq) {
            return true;
        }
        if tokio::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50 and p99 of signed milliseconds.
fn quantiles(mut ms: Vec<f64>) -> (f64, f64, usize) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    (at(0.50), at(0.99), ms.len())
}

/// The lags of `got`'s events: from `occurred_at`, and from the order's answer.
fn lags(got: &Receipts, acks: &Acks) -> ((f64, f64, usize), (f64, f64, usize)) {
    let got = got.lock().expect("receipts");
    let acks = acks.lock().expect("acks");
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3;
    let from_write = got.iter().map(|r| ms(r.at - r.occurred_at)).collect();
    let from_ack = got
        .iter()
        .filter_map(|r| {
            let ack = acks.get(r.placed.as_ref()?)?;
            Some(ms(r.at - *ack))
        })
        .collect();
    (quantiles(from_write), quantiles(from_ack))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    out::finish(run().await)
}

async fn run() -> anyhow::Result<()> {
    c2m_server::cli::init_tracing_with_default("warn");
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));

    // 1. The raw durable write rate of the same store (before the server takes load).
    let raw = if args.addr.is_empty() || args.database_url.is_some() {
        Some(
            c2m_store::probe::raw_write_rate(&url, args.orders, args.concurrency)
                .await
                .with_context(|| {
                    format!(
                        "--database-url {}: the raw store probe",
                        c2m_server::app::redact(&url)
                    )
                })?,
        )
    } else {
        None
    };

    // 2. The service over gRPC.
    let (addrs, server) = match args.addr.as_slice() {
        [_, ..] => (args.addr.clone(), None),
        [] => {
            let mut settings = Settings::for_tests(dir.path().to_path_buf());
            settings.database_url = Some(url.clone());
            // As `c2m serve` by default: streams and webhooks are woken by commits, not
            // found by a short poll.
            settings.event_poll = Duration::from_secs(5);
            let app = Application::build(settings).await?;
            let addr = format!("http://{}", app.local_addr());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(app.run_until(async {
                let _ = rx.await;
            }));
            (vec![addr], Some((tx, task)))
        }
    };
    let auth = Bearer::new(args.token.as_deref())?;
    let mut channels = Vec::new();
    for i in 0..args.connections.max(addrs.len()) {
        let addr = &addrs[i % addrs.len()];
        channels.push(
            args.tls
                .endpoint(addr)?
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
            calendar_starts_at: None,
        })
        .await?;
    let campaign = new_campaign(channels[0].clone(), auth.clone(), args.threshold).await?;

    // 3. The same clients, concurrency and channels placing orders, then calling a no-op
    //    RPC (the standard health `Check`, through the same interceptor and layers): the
    //    second is the ceiling of what this machine does per call, so the ratio says how
    //    much of the wire an order's own work leaves.
    let orders = place_orders(&args, &channels, auth.clone(), campaign, None).await?;
    let noop = {
        let auth = auth.clone();
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

    // 4. The outbox: off, then on again, each on a fresh campaign; then on, with a webhook
    //    endpoint and a stream receiving every event (in-process server only: the switch
    //    is this process's).
    let outbox = if server.is_some() && !args.no_outbox {
        c2m_store::events::set_outbox_for_benchmark(false);
        let campaign = new_campaign(channels[0].clone(), auth.clone(), args.threshold).await?;
        let off = place_orders(&args, &channels, auth.clone(), campaign, None).await;
        c2m_store::events::set_outbox_for_benchmark(true);
        let off = off?;
        let campaign = new_campaign(channels[0].clone(), auth.clone(), args.threshold).await?;
        let on = place_orders(&args, &channels, auth.clone(), campaign, None).await?;

        let secret = Arc::new(OnceLock::new());
        let hooked: Receipts = Arc::default();
        let hook = webhook_receiver(secret.clone(), hooked.clone()).await?;
        let registered = WebhookServiceClient::with_interceptor(channels[0].clone(), auth.clone())
            .register_endpoint(pb::RegisterEndpointRequest {
                url: format!("http://{hook}/hooks"),
                event_types: vec!["*".into()],
                idempotency_key: "bench-pooling-webhook".into(),
            })
            .await?
            .into_inner();
        let _ = secret.set(registered.secret.clone());
        let streamed: Receipts = Arc::default();
        let stream = tokio::spawn(subscriber(
            channels[0].clone(),
            auth.clone(),
            streamed.clone(),
        ));
        let listeners: Vec<(Receipts, tokio::task::JoinHandle<anyhow::Result<()>>)> = (1..args
            .subscribers)
            .map(|i| {
                let got: Receipts = Arc::default();
                let task = tokio::spawn(subscriber(
                    channels[i % channels.len()].clone(),
                    auth.clone(),
                    got.clone(),
                ));
                (got, task)
            })
            .collect();
        let acks: Acks = Arc::default();
        let campaign = new_campaign(channels[0].clone(), auth.clone(), args.threshold).await?;
        let first = last_seq(channels[0].clone(), auth.clone()).await?;
        let delivered =
            place_orders(&args, &channels, auth.clone(), campaign, Some(acks.clone())).await?;
        let last = last_seq(channels[0].clone(), auth.clone()).await?;
        let all_hooked = received(&hooked, last, Duration::from_secs(120)).await;
        let all_streamed = received(&streamed, last, Duration::from_secs(30)).await;
        stream.abort();
        let mut listened = usize::from(all_streamed);
        for (got, task) in listeners {
            listened += usize::from(received(&got, last, Duration::from_secs(30)).await);
            task.abort();
        }
        Some((
            off,
            on,
            delivered,
            last - first,
            all_hooked,
            all_streamed,
            lags(&hooked, &acks),
            lags(&streamed, &acks),
            listened,
        ))
    } else {
        None
    };

    outln!(
        "c2m pooling benchmark: {} single-unit pre-orders, {} concurrent clients, threshold {}",
        args.orders,
        args.concurrency,
        args.threshold
    );
    if addrs.len() > 1 {
        outln!("servers: {} replicas ({})", addrs.len(), addrs.join(", "));
    }
    outln!(
        "store: {}",
        if !args.addr.is_empty() && args.database_url.is_none() {
            "the running server's (not probed)"
        } else if url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite (WAL, synchronous=FULL)"
        }
    );
    outln!();
    outln!(
        "{:<34} {:>12} {:>10} {:>10}",
        "",
        "orders/s",
        "p50 ms",
        "p99 ms"
    );
    outln!(
        "{:<34} {:>12.0} {:>10.2} {:>10.2}",
        "gRPC PlacePreorder (accepted)",
        rate,
        orders.p50_ms(),
        orders.p99_ms()
    );
    outln!(
        "{:<34} {:>12.0} {:>10.2} {:>10.2}",
        "no-op RPC: health Check",
        noop.rate,
        noop.p50_ms(),
        noop.p99_ms()
    );
    if let Some(raw) = &raw {
        outln!(
            "{:<34} {:>12.0} {:>10.2} {:>10.2}",
            "raw store: 1 insert+update txn",
            raw.orders_per_sec,
            ms(raw.p50),
            ms(raw.p99)
        );
        outln!();
        outln!(
            "service / raw store rate: {:.2}x",
            rate / raw.orders_per_sec
        );
    }
    if raw.is_none() {
        outln!();
    }
    outln!("service / no-op RPC rate: {:.2}x", rate / noop.rate);
    if noop.refused > 0 {
        outln!("no-op calls refused: {}", noop.refused);
    }
    if refused > 0 {
        outln!("refused: {refused}");
    }
    if let Some((off, on, delivered, events, all_hooked, all_streamed, hook, stream, listened)) =
        &outbox
    {
        outln!();
        outln!("the outbox: the same orders on fresh campaigns of the same server, in this order");
        outln!(
            "{:<34} {:>12} {:>10} {:>10}",
            "",
            "orders/s",
            "p50 ms",
            "p99 ms"
        );
        let with_streams = match args.subscribers {
            1 => "events on, webhook + stream".to_owned(),
            n => format!("events on, webhook + {n} streams"),
        };
        for (name, l) in [
            ("events on (the first run)", &orders),
            ("events off", off),
            ("events on", on),
            (with_streams.as_str(), delivered),
        ] {
            outln!(
                "{:<34} {:>12.0} {:>10.2} {:>10.2}",
                name,
                l.rate,
                l.p50_ms(),
                l.p99_ms()
            );
        }
        outln!(
            "events on / off (mean of the two plain on runs): {:.2}x",
            (orders.rate + on.rate) / 2.0 / off.rate
        );
        if args.subscribers > 1 {
            outln!(
                "streams that got every event of the last round: {listened} of {}",
                args.subscribers
            );
        }
        outln!();
        outln!(
            "delivery lag of the last round's {events} events (ms): {:<10} {:>8} {:>8} {:>8}",
            "",
            "p50",
            "p99",
            "events"
        );
        for (name, ok, ((w50, w99, wn), (a50, a99, an))) in [
            ("webhook", all_hooked, hook),
            ("Subscribe stream", all_streamed, stream),
        ] {
            outln!(
                "{:<20} from occurred_at   {:>8.1} {:>8.1} {:>8}{}",
                name,
                w50,
                w99,
                wn,
                if *ok {
                    ""
                } else {
                    "  (not all arrived in time)"
                }
            );
            outln!(
                "{:<20} from the answer    {:>8.1} {:>8.1} {:>8}",
                "",
                a50,
                a99,
                an
            );
        }
    }
    if let Some((tx, task)) = server {
        let _ = tx.send(());
        task.await??;
    }
    Ok(())
}
