//! Is c2m as fast on a full store as on an empty one?
//!
//! ```text
//! cargo run --release --example bench_scale -- [--campaigns 10000] [--preorders 1000000]
//!     [--consumers 50000] [--skus 50] [--ready-batches 500] [--database-url postgres://...]
//! ```
//!
//! It starts a server in this process (a fresh SQLite database in a temporary directory, or
//! `--database-url`) and measures, over gRPC, with the same clients each time:
//!
//! - the placement rate and p50/p99 on one hot campaign (`--hot-orders` single-unit
//!   pre-orders from `--concurrency` clients);
//! - p50/p99 of GetCampaign and GetCampaignMoney on the fixture campaigns (the same
//!   shape, 10 batches of 5 orders each, in both runs, so the ratio is the store's size
//!   and nothing else), picked at random;
//! - p50/p99 of ListPreorders for one consumer with `--probe-orders` pre-orders: the first
//!   page, and a deep page (the last full page, reached by its cursor);
//! - one planning cycle over `--ready-batches` waiting batches of `--skus` products.
//!
//! First on the empty store (only what the measurements themselves need), then again after
//! preloading `--campaigns` campaigns and `--preorders` pre-orders over `--consumers`
//! consumers through the store's own write path (`Store::place_preorder` from many tasks,
//! so group commit batches them; not over gRPC), with fresh fixtures of the same size.
//! Before each phase's measurements PostgreSQL's statistics are brought up to date
//! (`ANALYZE`, as autovacuum would have a minute into a deployment), so both phases plan
//! from statistics of what they hold rather than the empty phase from none. It
//! prints each figure for both stores and their ratio (loaded / empty: for rates, empty /
//! loaded, so above 1 is always worse), the database size per million pre-orders, and the
//! process's resident memory before and after the preload. A benchmark, not a test: it
//! asserts nothing.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use rand::{Rng, SeedableRng};

use c2m_domain::{CampaignId, CampaignSpec, ConsumerId, IdempotencyKey};
use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::ledger_service_client::LedgerServiceClient;
use c2m_proto::v1::planning_service_client::PlanningServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::{Application, Settings};
use c2m_store::{CreateCampaign, PlacePreorder, Store};
use tonic::transport::Channel;

#[path = "common/bench.rs"]
mod bench;
#[path = "common/flags.rs"]
mod flags;
use bench::{closed_loop, ms, Loop};

#[derive(Parser)]
#[command(
    about = "The service's figures on a store holding a million pre-orders, next to an empty one"
)]
struct Args {
    /// Campaigns the preload creates.
    #[arg(long, default_value_t = 10_000, value_parser = flags::count)]
    campaigns: usize,
    /// Pre-orders the preload places (1 to 3 units each).
    #[arg(long, default_value_t = 1_000_000, value_parser = flags::count)]
    preorders: usize,
    /// Consumers the preload's pre-orders come from.
    #[arg(long, default_value_t = 50_000, value_parser = flags::count)]
    consumers: usize,
    /// Products in the catalogue (each campaign sells one).
    #[arg(long, default_value_t = 50, value_parser = flags::count)]
    skus: usize,
    /// Batches waiting for the measured planning cycle.
    #[arg(long, default_value_t = 500, value_parser = flags::count)]
    ready_batches: usize,
    /// Pre-orders placed on the hot campaign over gRPC.
    #[arg(long, default_value_t = 5_000, value_parser = flags::count)]
    hot_orders: usize,
    /// Calls per read measurement.
    #[arg(long, default_value_t = 2_000, value_parser = flags::count)]
    samples: usize,
    /// Pre-orders of the consumer whose list is read.
    #[arg(long, default_value_t = 500, value_parser = flags::count)]
    probe_orders: usize,
    /// Concurrent gRPC clients, and concurrent preload tasks.
    #[arg(long, default_value_t = 64, value_parser = flags::count)]
    concurrency: usize,
    /// gRPC connections the load is spread over.
    #[arg(long, default_value_t = 4, value_parser = flags::count)]
    connections: usize,
    /// Time limit of the measured planning cycle, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    plan_time_limit: u64,
    /// Benchmark this database instead of a fresh SQLite file (it should be empty).
    #[arg(long)]
    database_url: Option<String>,
    /// Seed of the preload's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Page size of the ListPreorders measurements.
const PAGE: u32 = 50;

/// One store state's figures.
struct Figures {
    hot: Loop,
    get_campaign: Loop,
    money: Loop,
    first_page: Loop,
    deep_page: Loop,
    plan: Duration,
    plan_status: String,
    planned_batches: usize,
}

/// A catalogue of `skus` products over ten materials, five factories and three suppliers
/// with price breaks: enough structure that a planning cycle has real choices to make.
fn catalogue(skus: usize) -> String {
    let mut s = String::from("name = \"scale\"\ncurrency = \"CNY\"\n");
    for i in 0..skus {
        s += &format!(
            "\n[[products]]\nsku = \"sku-{i:03}\"\ndemand = 0\nbom = {{ m{} = 2.0, m{} = 1.0 }}\n",
            i % 10,
            (i * 3 + 1) % 10
        );
    }
    for m in 0..10 {
        s += &format!("\n[[materials]]\nid = \"m{m}\"\nunit = \"pcs\"\non_hand = 100.0\n");
    }
    for f in 0..5 {
        s += &format!("\n[[factories]]\nid = \"factory-{f}\"\ncapacity_hours = 20000.0\n");
        for i in (0..skus).filter(|i| i % 5 == f || (i + 1) % 5 == f) {
            s += &format!(
                "\n[[factories.lines]]\nsku = \"sku-{i:03}\"\nunit_cost = {}.0\nhours_per_unit = 0.05\nsetup_cost = 500.0\n",
                80 + (i + f) % 7 * 5
            );
        }
    }
    for sup in 0..3 {
        s += &format!(
            "\n[[suppliers]]\nid = \"supplier-{sup}\"\nlead_days = {}\n",
            3 + sup
        );
        for m in (0..10).filter(|m| m % 3 != sup) {
            s += &format!(
                "\n[[suppliers.offers]]\nmaterial = \"m{m}\"\nbreaks = [{{ min_qty = 0.0, unit_price = {}.0 }}, {{ min_qty = 500.0, unit_price = {}.0 }}]\n",
                10 + m + sup,
                8 + m + sup
            );
        }
    }
    s
}

fn key(s: String) -> anyhow::Result<IdempotencyKey> {
    IdempotencyKey::parse(&s).map_err(|e| anyhow::anyhow!("key {s}: {e}"))
}

fn consumer(s: String) -> anyhow::Result<ConsumerId> {
    ConsumerId::parse(&s).map_err(|e| anyhow::anyhow!("consumer {s}: {e}"))
}

/// The terms every benchmark campaign shares, with its sku, threshold and prices.
fn spec(sku: String, threshold: i64, price: i64, deposit: i64, now: DateTime<Utc>) -> CampaignSpec {
    CampaignSpec {
        sku,
        title: "scale benchmark".into(),
        currency: "CNY".into(),
        unit_price: price,
        deposit,
        batch_threshold: threshold,
        batch_cap: None,
        max_per_order: None,
        max_per_consumer: None,
        total_cap: None,
        opens_at: None,
        deadline: now + chrono::Duration::days(30),
        price_ladder: vec![],
        balance_window_secs: None,
        ships_within_days: None,
    }
}

async fn create(
    store: &dyn Store,
    k: String,
    spec: CampaignSpec,
    now: DateTime<Utc>,
) -> anyhow::Result<CampaignId> {
    let c = store
        .create_campaign(
            &CreateCampaign {
                idempotency_key: key(k)?,
                spec,
            },
            now,
        )
        .await
        .context("create a campaign")?;
    Ok(c.id)
}

/// Places `n` orders from `tasks` concurrent tasks; `order(i)` says what order `i` is.
async fn place_all<F>(
    store: &Arc<dyn Store>,
    n: usize,
    tasks: usize,
    now: DateTime<Utc>,
    order: F,
) -> anyhow::Result<()>
where
    F: Fn(usize) -> anyhow::Result<PlacePreorder> + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(order);
    let mut handles = Vec::new();
    for _ in 0..tasks.max(1) {
        let (store, next, order) = (store.clone(), next.clone(), order.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                store
                    .place_preorder(&order(i)?, now)
                    .await
                    .with_context(|| format!("order {i}"))?;
                if i > 0 && i % 100_000 == 0 {
                    tracing::warn!(placed = i, "preloading");
                }
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

/// What each measurement needs, made fresh for each store state (`tag` keeps them apart):
/// `ready` batches waiting for planning (campaigns whose deposit is the full price, so a
/// batch is ready the moment it locks), and one consumer with `probe_orders` pre-orders.
async fn fixtures(
    store: &Arc<dyn Store>,
    args: &Args,
    tag: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<(String, Vec<CampaignId>)> {
    const THRESHOLD: i64 = 5;
    let per_sku = args.ready_batches.div_ceil(args.skus.max(1));
    let mut campaigns = Vec::new();
    for i in 0..args.skus.min(args.ready_batches) {
        let s = spec(format!("sku-{i:03}"), THRESHOLD, 9_900, 9_900, now);
        campaigns.push(create(&**store, format!("fixture-{tag}-{i}"), s, now).await?);
    }
    let batches = args.ready_batches;
    let tag2 = tag.to_owned();
    let cs = campaigns.clone();
    place_all(
        store,
        batches * THRESHOLD as usize,
        args.concurrency,
        now,
        move |i| {
            // Order i fills batch i / THRESHOLD; each campaign's batches fill one after another.
            let b = i / THRESHOLD as usize;
            Ok(PlacePreorder {
                idempotency_key: key(format!("fixture-{tag2}-order-{i}"))?,
                campaign_id: cs[(b / per_sku) % cs.len()].clone(),
                consumer_id: consumer(format!("fixture-{tag2}-{}", i % 97))?,
                quantity: 1,
                source: Default::default(),
            })
        },
    )
    .await?;
    // The probe consumer's orders go to a campaign that never locks, so the list is theirs.
    let probe_campaign = create(
        &**store,
        format!("probe-{tag}"),
        spec("sku-000".into(), 1_000_000, 9_900, 1_000, now),
        now,
    )
    .await?;
    let probe = format!("probe-{tag}");
    let p = probe.clone();
    place_all(store, args.probe_orders, 1, now, move |i| {
        Ok(PlacePreorder {
            idempotency_key: key(format!("{p}-{i}"))?,
            campaign_id: probe_campaign.clone(),
            consumer_id: consumer(p.clone())?,
            quantity: 1,
            source: Default::default(),
        })
    })
    .await?;
    Ok((probe, campaigns))
}

/// The preload: `campaigns` campaigns over the skus (a batch locks at 60 units and then
/// waits for balances, so the planning queue stays the fixtures'), and `preorders` orders
/// of 1 to 3 units from `consumers` consumers (picked at random), campaign after campaign
/// (each gets its share of the orders).
async fn preload(
    store: &Arc<dyn Store>,
    args: &Args,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<CampaignId>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    let (n, skus) = (args.campaigns, args.skus.max(1));
    for _ in 0..args.concurrency.max(1) {
        let (store, next) = (store.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(ids);
                }
                let s = spec(format!("sku-{:03}", i % skus), 60, 12_000, 2_000, now);
                ids.push(create(&*store, format!("preload-campaign-{i}"), s, now).await?);
            }
        }));
    }
    let mut campaigns = Vec::new();
    for h in handles {
        campaigns.extend(h.await??);
    }
    campaigns.sort();
    let cs = Arc::new(campaigns.clone());
    let (seed, consumers, total) = (args.seed, args.consumers.max(1), args.preorders.max(1));
    // Campaign by campaign: the tasks take consecutive indices, so the placements that meet
    // in one group commit mostly share a campaign and run as one run (one pool read), as a
    // hot campaign's do. Placing each order on a random campaign made every order its own
    // run, and the preload crawled (about 320 orders/s).
    place_all(store, args.preorders, args.concurrency, now, move |i| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        Ok(PlacePreorder {
            idempotency_key: key(format!("preload-{i}"))?,
            campaign_id: cs[i * cs.len() / total].clone(),
            consumer_id: consumer(format!("consumer-{}", rng.gen_range(0..consumers)))?,
            quantity: rng.gen_range(1..=3),
            source: Default::default(),
        })
    })
    .await?;
    Ok(campaigns)
}

/// The smallest preload whose database growth is reported per million pre-orders.
const PER_MILLION_FROM: usize = 100_000;

/// Resident memory of this process, in MiB (Linux; zero elsewhere).
///
/// The SQLite readers map the database file (`mmap_size`), and pages they touch count
/// in the resident set as file pages: the operating system's cache, shared and dropped
/// under pressure, bounded by the mapping. What must not grow with the store is the
/// anonymous part (heap and stacks), so it is reported on its own.
#[derive(Clone, Copy)]
struct Rss {
    /// `VmRSS`: everything resident.
    total: f64,
    /// `RssAnon`: heap and stacks.
    anon: f64,
    /// `VmHWM`: the peak of `total`.
    peak: f64,
}

fn rss_mib() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        peak: field("VmHWM:"),
    }
}

async fn measure(
    store: &Arc<dyn Store>,
    channels: &[Channel],
    args: &Args,
    url: &str,
    tag: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Figures> {
    let (probe, campaigns) = fixtures(store, args, tag, now).await?;
    let hot = create(
        &**store,
        format!("hot-{tag}"),
        // The second product (the first with `--skus 1`, which has no other).
        spec(format!("sku-{:03}", 1 % args.skus), 100, 10_000, 1_000, now),
        now,
    )
    .await?;
    // Plans from current statistics in both phases (PostgreSQL; SQLite has none).
    c2m_store::probe::analyze(url).await?;
    let ids: Arc<Vec<String>> = Arc::new(campaigns.iter().map(|c| c.as_str().to_owned()).collect());
    let (n, c) = (args.samples, args.concurrency);

    let hot = {
        let (hot, tag) = (hot.as_str().to_owned(), tag.to_owned());
        closed_loop(args.hot_orders, c, channels, move |ch, i| {
            let req = pb::PlacePreorderRequest {
                idempotency_key: format!("hot-{tag}-{i}"),
                campaign_id: hot.clone(),
                consumer_id: format!("hot-consumer-{}", i % 1000),
                quantity: 1,
                ..Default::default()
            };
            async move {
                PreorderServiceClient::new(ch)
                    .place_preorder(req)
                    .await
                    .map(|_| ())
            }
        })
        .await?
    };
    let seed = args.seed;
    let get_campaign = {
        let ids = ids.clone();
        closed_loop(n, c, channels, move |ch, i| {
            let id = ids
                [rand::rngs::StdRng::seed_from_u64(seed + i as u64).gen_range(0..ids.len())]
            .clone();
            async move {
                CampaignServiceClient::new(ch)
                    .get_campaign(pb::GetCampaignRequest { campaign_id: id })
                    .await
                    .map(|_| ())
            }
        })
        .await?
    };
    let money = {
        let ids = ids.clone();
        closed_loop(n, c, channels, move |ch, i| {
            let campaign_id = ids
                [rand::rngs::StdRng::seed_from_u64(seed + i as u64).gen_range(0..ids.len())]
            .clone();
            async move {
                LedgerServiceClient::new(ch)
                    .get_campaign_money(pb::GetCampaignMoneyRequest { campaign_id })
                    .await
                    .map(|_| ())
            }
        })
        .await?
    };
    let list = move |token: String, probe: String| {
        move |ch: Channel, _| {
            let req = pb::ListPreordersRequest {
                consumer_id: probe.clone(),
                campaign_id: String::new(),
                page_size: PAGE,
                page_token: token.clone(),
            };
            async move {
                PreorderServiceClient::new(ch)
                    .list_preorders(req)
                    .await
                    .map(|_| ())
            }
        }
    };
    // The deep page: walk the cursor to the last full page of the probe's list.
    let mut token = String::new();
    let mut client = PreorderServiceClient::new(channels[0].clone());
    for _ in 1..(args.probe_orders / PAGE as usize).max(1) {
        token = client
            .list_preorders(pb::ListPreordersRequest {
                consumer_id: probe.clone(),
                campaign_id: String::new(),
                page_size: PAGE,
                page_token: token,
            })
            .await?
            .into_inner()
            .next_page_token;
    }
    let first_page = closed_loop(n, c, channels, list(String::new(), probe.clone())).await?;
    let deep_page = closed_loop(n, c, channels, list(token, probe.clone())).await?;

    let started = Instant::now();
    let plan = PlanningServiceClient::new(channels[0].clone())
        .run_planning(pb::RunPlanningRequest {
            idempotency_key: format!("plan-{tag}"),
        })
        .await
        .context("the planning cycle")?
        .into_inner();
    let plan_time = started.elapsed();
    Ok(Figures {
        hot,
        get_campaign,
        money,
        first_page,
        deep_page,
        plan: plan_time,
        plan_status: plan
            .summary
            .as_ref()
            .map(|s| format!("{:?}", s.status()))
            .unwrap_or_default(),
        planned_batches: plan.batch_ids.len(),
    })
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
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("scale.db").display()));
    let mut settings = Settings::for_tests(dir.path().to_path_buf());
    settings.database_url = Some(url.clone());
    settings.plan_time_limit = Duration::from_secs(args.plan_time_limit);
    // The sweeper has nothing to do here (deadlines are a month away); keep it quiet.
    settings.sweep_interval = Duration::from_secs(60);
    let app = Application::build(settings).await?;
    let store = app.store();
    let addr = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let endpoint = Channel::from_shared(addr.clone())?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot reach {addr}"))?,
        );
    }
    CatalogueServiceClient::new(channels[0].clone())
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: "scale-catalogue".into(),
            text: catalogue(args.skus),
            format: pb::ScenarioFormat::Toml as i32,
            mode: pb::ImportMode::Merge as i32,
            calendar_starts_at: None,
        })
        .await
        .context("import the catalogue")?;
    let now = Utc::now();

    let empty = measure(&store, &channels, &args, &url, "empty", now).await?;
    let rss_before = rss_mib();
    let bytes_before = c2m_store::probe::database_bytes(&url).await?;

    let started = Instant::now();
    preload(&store, &args, now).await?;
    let preload_time = started.elapsed();
    let rss_after_preload = rss_mib();
    let bytes_after = c2m_store::probe::database_bytes(&url).await?;

    let wal_after_preload = c2m_store::probe::wal_bytes(&url).await;
    let loaded = measure(&store, &channels, &args, &url, "loaded", now).await?;
    let rss_end = rss_mib();

    outln!(
        "c2m scale benchmark: {} campaigns, {} pre-orders over {} consumers, {} skus; store: {}",
        args.campaigns,
        args.preorders,
        args.consumers,
        args.skus,
        if url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite (WAL, synchronous=FULL)"
        }
    );
    outln!(
        "preload: {:.1} s ({:.0} pre-orders/s through Store::place_preorder, {} tasks)",
        preload_time.as_secs_f64(),
        args.preorders as f64 / preload_time.as_secs_f64(),
        args.concurrency
    );
    outln!();
    outln!(
        "{:<36} {:>18} {:>18} {:>8}",
        "",
        "empty store",
        "loaded store",
        "ratio"
    );
    let rate_row = |name: &str, e: &Loop, l: &Loop| {
        outln!(
            "{:<36} {:>16.0}/s {:>16.0}/s {:>7.2}x",
            name,
            e.rate,
            l.rate,
            e.rate / l.rate
        );
    };
    let lat_row = |name: &str, e: f64, l: f64| {
        outln!("{:<36} {:>15.2} ms {:>15.2} ms {:>7.2}x", name, e, l, l / e);
    };
    rate_row("hot campaign: PlacePreorder rate", &empty.hot, &loaded.hot);
    lat_row(
        "hot campaign: PlacePreorder p50",
        empty.hot.p50_ms(),
        loaded.hot.p50_ms(),
    );
    lat_row(
        "hot campaign: PlacePreorder p99",
        empty.hot.p99_ms(),
        loaded.hot.p99_ms(),
    );
    for (name, e, l) in [
        ("GetCampaign", &empty.get_campaign, &loaded.get_campaign),
        ("GetCampaignMoney", &empty.money, &loaded.money),
        (
            "ListPreorders, first page",
            &empty.first_page,
            &loaded.first_page,
        ),
        (
            "ListPreorders, deep page",
            &empty.deep_page,
            &loaded.deep_page,
        ),
    ] {
        lat_row(&format!("{name} p50"), e.p50_ms(), l.p50_ms());
        lat_row(&format!("{name} p99"), e.p99_ms(), l.p99_ms());
    }
    lat_row("planning cycle", ms(empty.plan), ms(loaded.plan));
    outln!(
        "{:<36} {:>18} {:>18}",
        "planning cycle: plan status, batches",
        format!("{} {}", empty.plan_status, empty.planned_batches),
        format!("{} {}", loaded.plan_status, loaded.planned_batches)
    );
    let refused: usize = [&empty, &loaded]
        .iter()
        .flat_map(|f| {
            [
                &f.hot,
                &f.get_campaign,
                &f.money,
                &f.first_page,
                &f.deep_page,
            ]
        })
        .map(|l| l.refused)
        .sum();
    if refused > 0 {
        outln!("calls refused: {refused}");
    }
    outln!();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    // Scaled up from a small preload, the store's fixed cost (pages, the log, PostgreSQL's
    // relation files) read as the size of a million pre-orders: 100 of them "took" 79,958
    // MiB a million. Below a tenth of a million the figure is not given.
    let per_million = if args.preorders >= PER_MILLION_FROM {
        format!(
            "{:.0} MiB per million pre-orders",
            mib(bytes_after.saturating_sub(bytes_before)) / (args.preorders as f64 / 1e6)
        )
    } else {
        format!("size per million pre-orders measured from {PER_MILLION_FROM} pre-orders up")
    };
    outln!(
        "database: {:.1} MiB empty, {:.1} MiB loaded: {per_million}",
        mib(bytes_before),
        mib(bytes_after),
    );
    if !url.starts_with("postgres") {
        outln!(
            "write-ahead log: {:.1} MiB after the preload, {:.1} MiB at the end (counted above)",
            mib(wal_after_preload),
            mib(c2m_store::probe::wal_bytes(&url).await)
        );
    }
    outln!(
        "resident memory (this process: server and clients): {:.0} MiB before the preload, \
         {:.0} MiB after it, {:.0} MiB at the end, {:.0} MiB peak",
        rss_before.total,
        rss_after_preload.total,
        rss_end.total,
        rss_end.peak
    );
    outln!(
        "  of which heap and stacks (RssAnon): {:.0} MiB before the preload, {:.0} MiB after it, \
         {:.0} MiB at the end; the rest is file pages (the program, and on SQLite the \
         database pages the readers have mapped)",
        rss_before.anon,
        rss_after_preload.anon,
        rss_end.anon
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
