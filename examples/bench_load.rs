//! Steady load and overload: pre-orders at a fixed rate against a live server.
//!
//! ```text
//! cargo run --release --example bench_load -- [--rate 500] [--duration 20]
//!     [--connections 4] [--campaigns 16] [--max-in-flight 32]
//!     [--overload-rate N | --overload-factor 4] [--no-overload] [--compare-unlimited]
//!     [--json]
//!     [--addr http://host:port [--token T] [--server-pid PID]]
//!     [--addr https://host:port --tls-ca ca.pem ...]
//! ```
//!
//! Without `--addr` it starts servers in this process (on a runtime of their own, so the
//! servers and the load generator do not share worker threads), each on a fresh SQLite
//! database in a temporary directory with access control off: one with the default
//! `max_in_flight` (1024) for the steady phase and the capacity probe, one with
//! `--max-in-flight` (32) for the overload. With `--addr` every phase targets that
//! running server, sending `--token` (or `C2M_TOKEN`) as a bearer token; the server's own
//! settings then apply.
//!
//! The generator is open-loop: request `i` of a phase is due at `start + i / rate`,
//! whether or not earlier requests have been answered, and its latency is measured from
//! that due time, not from when it was actually sent. A server (or generator) that falls
//! behind therefore shows up as latency instead of quietly lowering the offered rate
//! (no coordinated omission). Each request is one single-unit `PlacePreorder`, spread
//! round-robin over `--campaigns` campaigns whose thresholds are never reached and over
//! `--connections` gRPC channels.
//!
//! Phases:
//!
//! 1. **steady**: `--rate` orders/s for `--duration` seconds (after a short unreported
//!    warm-up).
//! 2. **capacity**: a closed loop of `--probe-concurrency` clients for `--probe-seconds`,
//!    to measure what the server serves at most on this machine.
//! 3. **overload**: `--overload-rate` orders/s (default `--overload-factor` times the
//!    capacity found in phase 2) for `--duration` seconds. A server with `max_in_flight`
//!    answers the excess with RESOURCE_EXHAUSTED at once, so the calls it does serve
//!    keep a latency in the range of phase 1 instead of waiting behind a growing queue.
//! 4. **no limit** (`--compare-unlimited`, in-process only): the same overload offered to
//!    another server on a fresh database that admits every call, for comparison.
//!
//! For each phase it reports the offered rate, accepted orders per second, counts by
//! status code, the latency of accepted calls (p50/p90/p99/p99.9/max, HDR histogram),
//! how fast refusals were answered, how late the generator itself sent (its lag behind
//! the timetable, a check that the figures measure the server and not the generator),
//! and peak memory: the in-process server's `VmHWM` from `/proc/self/status` (which
//! includes the generator), or, with `--addr`, that of `--server-pid`. The peak is reset
//! before each phase where the kernel allows it (`/proc/PID/clear_refs`).
//!
//! This is a benchmark, not a test: it asserts nothing but prints figures.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::auth::Bearer;
use c2m_server::tls::ClientTls;
use c2m_server::{Application, Settings};

const SKU: &str = "bench-load-sku";

#[path = "common/flags.rs"]
mod flags;

#[derive(Parser, Clone)]
#[command(
    about = "Open-loop pre-order load at a fixed rate: latency percentiles, shedding, memory"
)]
struct Args {
    /// Offered rate of the steady phase, orders per second.
    #[arg(long, default_value_t = 500.0, value_parser = flags::rate)]
    rate: f64,
    /// Length of the steady and of the overload phase, seconds.
    #[arg(long, default_value_t = 20.0, value_parser = flags::seconds)]
    duration: f64,
    /// Unreported warm-up at the steady rate before phase 1, seconds.
    #[arg(long, default_value_t = 2.0, value_parser = flags::seconds_or_zero)]
    warmup: f64,
    /// gRPC connections the load is spread over.
    #[arg(long, default_value_t = 4, value_parser = flags::count)]
    connections: usize,
    /// Campaigns the orders are spread over (each campaign is one lock).
    #[arg(long, default_value_t = 16, value_parser = flags::count)]
    campaigns: usize,
    /// `max_in_flight` of the in-process server the overload is offered to (ignored with
    /// --addr).
    #[arg(long, default_value_t = 32, value_parser = flags::count)]
    max_in_flight: usize,
    /// `max_in_flight` of the in-process server of the steady phase and the capacity
    /// probe (the server's default; ignored with --addr).
    #[arg(long, default_value_t = 1024, value_parser = flags::count)]
    steady_max_in_flight: usize,
    /// Fixed offered rate of the overload phase; default: --overload-factor x capacity.
    #[arg(long, value_parser = flags::rate)]
    overload_rate: Option<f64>,
    /// Overload rate as a multiple of the capacity measured by the closed-loop probe (the
    /// rate is at most 1,000,000 orders a second whatever the capacity).
    #[arg(long, default_value_t = 4.0, value_parser = flags::positive)]
    overload_factor: f64,
    /// Run only the steady phase.
    #[arg(long)]
    no_overload: bool,
    /// Also offer the overload rate to a second in-process server without a limit on calls
    /// in flight (what shedding prevents: latency growing with the queue).
    #[arg(long)]
    compare_unlimited: bool,
    /// Closed-loop clients of the capacity probe.
    #[arg(long, default_value_t = 32, value_parser = flags::count)]
    probe_concurrency: usize,
    /// Length of the capacity probe, seconds.
    #[arg(long, default_value_t = 5.0, value_parser = flags::seconds)]
    probe_seconds: f64,
    /// Client-side deadline of each call, seconds.
    #[arg(long, default_value_t = 30.0, value_parser = flags::seconds)]
    timeout: f64,
    /// Target a running server instead of starting one.
    #[arg(long)]
    addr: Option<String>,
    /// Bearer token for --addr.
    #[arg(long, env = "C2M_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TLS for an https:// --addr.
    #[command(flatten)]
    tls: ClientTls,
    /// Process id of the --addr server, for its peak memory (only with --addr: without
    /// it the server is this process).
    #[arg(long, requires = "addr", value_parser = clap::value_parser!(u32).range(1..))]
    server_pid: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

type Client = PreorderServiceClient<InterceptedService<Channel, Bearer>>;

impl Args {
    fn length(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
}

/// What one phase measured. Latencies are recorded in microseconds.
struct Phase {
    name: &'static str,
    /// Offered rate; `None` for the closed loop.
    offered: Option<f64>,
    /// Scheduled length of the phase.
    planned: Duration,
    /// From the first due time to the last answer.
    elapsed: Duration,
    sent: u64,
    ok: u64,
    shed: u64,
    other: BTreeMap<String, u64>,
    /// The first message seen with each other code.
    other_msg: BTreeMap<String, String>,
    ok_us: Histogram<u64>,
    shed_us: Histogram<u64>,
    lag_us: Histogram<u64>,
    peak_rss_kib: Option<u64>,
}

struct Tally {
    ok: u64,
    shed: u64,
    other: BTreeMap<String, u64>,
    other_msg: BTreeMap<String, String>,
    ok_us: Histogram<u64>,
    shed_us: Histogram<u64>,
    lag_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes at 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

impl Tally {
    fn new() -> Self {
        Tally {
            ok: 0,
            shed: 0,
            other: BTreeMap::new(),
            other_msg: BTreeMap::new(),
            ok_us: histogram(),
            shed_us: histogram(),
            lag_us: histogram(),
        }
    }

    fn record(&mut self, result: &Result<(), Status>, latency: Duration, lag: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.ok_us.saturating_record(micros(latency));
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                self.shed += 1;
                self.shed_us.saturating_record(micros(latency));
            }
            Err(s) => {
                let code = format!("{:?}", s.code());
                self.other_msg
                    .entry(code.clone())
                    .or_insert_with(|| s.message().to_owned());
                *self.other.entry(code).or_default() += 1;
            }
        }
        self.lag_us.saturating_record(micros(lag));
    }

    fn finish(self, name: &'static str, offered: Option<f64>, planned: Duration) -> Phase {
        Phase {
            name,
            offered,
            planned,
            elapsed: Duration::ZERO,
            sent: 0,
            ok: self.ok,
            shed: self.shed,
            other: self.other,
            other_msg: self.other_msg,
            ok_us: self.ok_us,
            shed_us: self.shed_us,
            lag_us: self.lag_us,
            peak_rss_kib: None,
        }
    }
}

/// Everything a phase needs to place orders.
#[derive(Clone)]
struct Load {
    clients: Arc<Vec<Client>>,
    campaigns: Arc<Vec<String>>,
    run: String,
    timeout: Duration,
}

impl Load {
    /// Places order `i` of phase `tag`; returns the status code of the answer.
    async fn place(&self, tag: &str, i: u64) -> Result<(), Status> {
        let mut client = self.clients[i as usize % self.clients.len()].clone();
        let campaign = &self.campaigns[i as usize % self.campaigns.len()];
        let mut req = Request::new(pb::PlacePreorderRequest {
            idempotency_key: format!("load-{}-{tag}-{i}", self.run),
            campaign_id: campaign.clone(),
            consumer_id: format!("consumer-{}", i % 10_000),
            channel: None,
            region: None,
            referrer: None,
            quantity: 1,
        });
        req.set_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, client.place_preorder(req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::deadline_exceeded("client-side timeout")),
        }
    }

    /// An unreported run at the steady rate: connections, caches and the database warm.
    async fn warm_up(&self, args: &Args) {
        if args.warmup > 0.0 {
            let length = Duration::from_secs_f64(args.warmup);
            self.open_loop("warm-up", "warmup", args.rate, length).await;
        }
    }

    /// Open loop: order `i` is due at `start + i / rate` and its latency counts from then.
    async fn open_loop(&self, name: &'static str, tag: &str, rate: f64, length: Duration) -> Phase {
        let n = (rate * length.as_secs_f64()).round() as u64;
        let tally = Arc::new(Mutex::new(Tally::new()));
        let mut tasks = tokio::task::JoinSet::new();
        let start = Instant::now() + Duration::from_millis(20);
        for i in 0..n {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let lag = Instant::now().saturating_duration_since(due);
            let load = self.clone();
            let tally = tally.clone();
            let tag = tag.to_owned();
            tasks.spawn(async move {
                let result = load.place(&tag, i).await;
                let latency = due.elapsed();
                tally.lock().expect("tally").record(&result, latency, lag);
            });
            // Reap finished tasks now and then so the set does not grow with the run.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let elapsed = start.elapsed();
        let tally = Arc::try_unwrap(tally)
            .ok()
            .expect("all tasks joined")
            .into_inner()
            .expect("tally");
        let mut phase = tally.finish(name, Some(rate), length);
        phase.sent = n;
        phase.elapsed = elapsed;
        phase
    }

    /// Closed loop: `concurrency` clients, each sending its next order when the last one
    /// is answered, for `length`.
    async fn closed_loop(
        &self,
        name: &'static str,
        tag: &str,
        concurrency: usize,
        length: Duration,
    ) -> Phase {
        let tally = Arc::new(Mutex::new(Tally::new()));
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let end = start + length;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let load = self.clone();
            let tally = tally.clone();
            let next = next.clone();
            let tag = tag.to_owned();
            tasks.spawn(async move {
                while Instant::now() < end {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let t0 = Instant::now();
                    let result = load.place(&tag, i).await;
                    let latency = t0.elapsed();
                    tally
                        .lock()
                        .expect("tally")
                        .record(&result, latency, Duration::ZERO);
                    if matches!(&result, Err(s) if s.code() == Code::ResourceExhausted) {
                        // A refused client backs off a little instead of spinning.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let elapsed = start.elapsed();
        let tally = Arc::try_unwrap(tally)
            .ok()
            .expect("all tasks joined")
            .into_inner()
            .expect("tally");
        let mut phase = tally.finish(name, None, length);
        phase.sent = next.load(std::sync::atomic::Ordering::Relaxed);
        phase.elapsed = elapsed;
        phase
    }
}

/// Which process's memory to read: this one (the in-process server) or `--server-pid`.
#[derive(Clone, Copy)]
enum Memory {
    Own,
    Pid(u32),
    Unknown,
}

impl Memory {
    fn dir(self) -> Option<String> {
        match self {
            Memory::Own => Some("/proc/self".into()),
            Memory::Pid(pid) => Some(format!("/proc/{pid}")),
            Memory::Unknown => None,
        }
    }

    /// Resets the peak resident set size (Linux: `5` to `clear_refs`); best effort.
    fn reset_peak(self) {
        if let Some(dir) = self.dir() {
            let _ = std::fs::write(format!("{dir}/clear_refs"), "5");
        }
    }

    /// `VmHWM` in KiB.
    fn peak_kib(self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("{}/status", self.dir()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e3)
}

fn max_ms(h: &Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| h.max() as f64 / 1e3)
}

impl Phase {
    fn ok_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn other_total(&self) -> u64 {
        self.other.values().sum()
    }

    fn json(&self) -> serde_json::Value {
        let lat = |h: &Histogram<u64>| {
            serde_json::json!({
                "p50": ms(h, 0.50), "p90": ms(h, 0.90), "p99": ms(h, 0.99),
                "p99_9": ms(h, 0.999), "max": max_ms(h),
            })
        };
        serde_json::json!({
            "phase": self.name,
            "offered_per_sec": self.offered,
            "planned_seconds": self.planned.as_secs_f64(),
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "sent": self.sent,
            "ok": self.ok,
            "resource_exhausted": self.shed,
            "other": self.other,
            "other_first_message": self.other_msg,
            "ok_per_sec": self.ok_per_sec(),
            "latency_ms": lat(&self.ok_us),
            "refusal_latency_ms": lat(&self.shed_us),
            "send_lag_ms": lat(&self.lag_us),
            "peak_rss_mib": self.peak_rss_kib.map(|k| k as f64 / 1024.0),
        })
    }
}

/// One row of the side-by-side table: a label and one cell per phase.
fn row(label: &str, phases: &[Phase], cell: impl Fn(&Phase) -> String) -> String {
    let mut line = format!("{label:<30}");
    for p in phases {
        line.push_str(&format!(" {:>14}", cell(p)));
    }
    line
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

fn table(phases: &[Phase]) -> Vec<String> {
    let mut out = vec![
        row("", phases, |p| p.name.to_string()),
        row("offered, orders/s", phases, |p| match p.offered {
            Some(r) => format!("{r:.0}"),
            None => "closed loop".into(),
        }),
        row("length, s", phases, |p| {
            format!("{:.1}", p.elapsed.as_secs_f64())
        }),
        row("sent", phases, |p| p.sent.to_string()),
        row("ok", phases, |p| p.ok.to_string()),
        row("RESOURCE_EXHAUSTED (shed)", phases, |p| p.shed.to_string()),
        row("other errors", phases, |p| p.other_total().to_string()),
        row("accepted, orders/s", phases, |p| {
            format!("{:.0}", p.ok_per_sec())
        }),
    ];
    for (label, q) in [
        ("ok latency p50, ms", 0.50),
        ("ok latency p90, ms", 0.90),
        ("ok latency p99, ms", 0.99),
        ("ok latency p99.9, ms", 0.999),
    ] {
        out.push(row(label, phases, |p| fmt_ms(ms(&p.ok_us, q))));
    }
    out.push(row("ok latency max, ms", phases, |p| {
        fmt_ms(max_ms(&p.ok_us))
    }));
    out.push(row("shed answered p99, ms", phases, |p| {
        fmt_ms(ms(&p.shed_us, 0.99))
    }));
    out.push(row("generator lag p99, ms", phases, |p| {
        fmt_ms(ms(&p.lag_us, 0.99))
    }));
    out.push(row("peak RSS (VmHWM), MiB", phases, |p| {
        match p.peak_rss_kib {
            Some(k) => format!("{:.0}", k as f64 / 1024.0),
            None => "-".into(),
        }
    }));
    let others: BTreeMap<&str, String> = phases
        .iter()
        .filter(|p| !p.other.is_empty())
        .map(|p| {
            let codes: Vec<String> = p
                .other
                .iter()
                .map(|(code, n)| format!("{n} {code} (\"{}\")", p.other_msg[code]))
                .collect();
            (p.name, codes.join(", "))
        })
        .collect();
    for (name, codes) in others {
        out.push(format!("other errors in {name}: {codes}"));
    }
    out
}

/// A catalogue with the one product the campaigns sell (merged, nothing else changes).
fn catalogue() -> String {
    format!(
        "name = \"bench load\"\ncurrency = \"CNY\"\n\n[[products]]\nsku = \"{SKU}\"\ndemand = 0\nbom = {{}}\n"
    )
}

fn main() -> std::process::ExitCode {
    out::finish(benchmark())
}

fn benchmark() -> anyhow::Result<()> {
    c2m_server::cli::init_tracing_with_default("warn");
    let args = Args::parse();

    // The in-process server gets a runtime of its own, so its worker threads and the
    // generator's are scheduled by the kernel as two processes' would be.
    let dir = tempfile::tempdir()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("c2m-server")
        .build()?;
    let (addr, memory, mut stops) = match &args.addr {
        Some(a) => (
            a.clone(),
            args.server_pid.map_or(Memory::Unknown, Memory::Pid),
            Vec::new(),
        ),
        None => {
            let (addr, stop) = start_server(&server_rt, dir.path(), args.steady_max_in_flight)?;
            (addr, Memory::Own, vec![stop])
        }
    };
    // In process, the overload goes to a second server on its own database, started with
    // the small `--max-in-flight`; against --addr every phase goes to that server.
    let overload_dir = tempfile::tempdir()?;
    let overload_addr = match &args.addr {
        Some(a) => a.clone(),
        None if args.no_overload => addr.clone(),
        None => {
            let (addr, stop) = start_server(&server_rt, overload_dir.path(), args.max_in_flight)?;
            stops.push(stop);
            addr
        }
    };

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("load")
        .build()?;
    let mut phases = client_rt.block_on(run(&args, &addr, &overload_addr, memory))?;

    // The same overload against a server that admits everything: what shedding prevents.
    let overload_rate = phases
        .iter()
        .find(|p| p.name == "overload")
        .and_then(|p| p.offered);
    if let (true, None, Some(rate)) = (args.compare_unlimited, &args.addr, overload_rate) {
        let dir = tempfile::tempdir()?;
        let (addr, stop) = start_server(&server_rt, dir.path(), UNLIMITED)?;
        stops.push(stop);
        let unlimited = client_rt.block_on(async {
            let load = setup(&args, &addr).await?;
            load.warm_up(&args).await;
            memory.reset_peak();
            let mut phase = load
                .open_loop("no limit", "overload", rate, args.length())
                .await;
            phase.peak_rss_kib = memory.peak_kib();
            anyhow::Ok(phase)
        })?;
        phases.push(unlimited);
    }

    if args.json {
        let out = serde_json::json!({
            "benchmark": "bench_load",
            "target": if args.addr.is_some() { addr.as_str() } else { "in-process, sqlite" },
            "max_in_flight": args.addr.is_none().then_some(serde_json::json!({
                "steady": args.steady_max_in_flight,
                "overload": args.max_in_flight,
                "no_limit": UNLIMITED,
            })),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "connections": args.connections,
            "campaigns": args.campaigns,
            "phases": phases.iter().map(Phase::json).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "c2m load benchmark: single-unit pre-orders, open loop (latency from the due time), \
             {} connections, {} campaigns",
            args.connections,
            args.campaigns
        );
        match &args.addr {
            Some(a) => outln!("server: {a} (its own settings)"),
            None => outln!(
                "servers: in this process, SQLite (WAL, synchronous=FULL) in temp dirs, \
                 max_in_flight {} (steady, capacity), {} (overload), {} (no limit); \
                 the generator shares the machine ({} CPUs)",
                args.steady_max_in_flight,
                args.max_in_flight,
                UNLIMITED,
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0)
            ),
        }
        outln!();
        for line in table(&phases) {
            outln!("{line}");
        }
    }

    for (tx, task) in stops {
        let _ = tx.send(());
        server_rt.block_on(task)??;
    }
    Ok(())
}

/// `max_in_flight` of the server that admits everything (`--compare-unlimited`).
const UNLIMITED: usize = 1 << 20;

type Stop = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// Starts a server on `rt` with a fresh SQLite database in `dir`; returns its address.
fn start_server(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    max_in_flight: usize,
) -> anyhow::Result<(String, Stop)> {
    let mut settings = Settings::for_tests(dir.to_path_buf());
    settings.max_in_flight = max_in_flight;
    let app = rt.block_on(Application::build(settings))?;
    let addr = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(app.run_until(async {
        let _ = rx.await;
    }));
    Ok((addr, (tx, task)))
}

/// Connects, adds the product to the catalogue and creates the campaigns.
async fn setup(args: &Args, addr: &str) -> anyhow::Result<Load> {
    let auth = Bearer::new(args.token.as_deref())?;
    let endpoint = args.tls.endpoint(addr)?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot reach {addr}"))?,
        );
    }

    CatalogueServiceClient::with_interceptor(channels[0].clone(), auth.clone())
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: format!("bench-load-catalogue-{SKU}"),
            text: catalogue(),
            format: pb::ScenarioFormat::Toml as i32,
            mode: pb::ImportMode::Merge as i32,
            calendar_starts_at: None,
        })
        .await
        .context("importing the benchmark product")?;

    let run = uuid::Uuid::new_v4().simple().to_string();
    let deadline = chrono::Utc::now() + chrono::Duration::days(1);
    let mut admin = CampaignServiceClient::with_interceptor(channels[0].clone(), auth.clone());
    let mut campaigns = Vec::new();
    for c in 0..args.campaigns.max(1) {
        let campaign = admin
            .create_campaign(pb::CreateCampaignRequest {
                idempotency_key: format!("bench-load-{run}-{c}"),
                sku: SKU.into(),
                title: format!("load benchmark {c}"),
                currency: "CNY".into(),
                unit_price_minor: 10_000,
                deposit_minor: 1_000,
                // Never reached: every order pools into the one open batch.
                batch_threshold: 1_000_000_000,
                deadline: Some(prost_types::Timestamp {
                    seconds: deadline.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .context("creating a benchmark campaign")?
            .into_inner();
        campaigns.push(campaign.id);
    }

    let load = Load {
        clients: Arc::new(
            channels
                .iter()
                .map(|ch| PreorderServiceClient::with_interceptor(ch.clone(), auth.clone()))
                .collect(),
        ),
        campaigns: Arc::new(campaigns),
        run,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    Ok(load)
}

async fn run(
    args: &Args,
    addr: &str,
    overload_addr: &str,
    memory: Memory,
) -> anyhow::Result<Vec<Phase>> {
    let load = setup(args, addr).await?;
    let length = args.length();
    load.warm_up(args).await;

    let mut phases = Vec::new();
    memory.reset_peak();
    let mut steady = load.open_loop("steady", "steady", args.rate, length).await;
    steady.peak_rss_kib = memory.peak_kib();
    phases.push(steady);

    if !args.no_overload {
        memory.reset_peak();
        let mut probe = load
            .closed_loop(
                "capacity",
                "probe",
                args.probe_concurrency,
                Duration::from_secs_f64(args.probe_seconds),
            )
            .await;
        probe.peak_rss_kib = memory.peak_kib();
        let rate = args
            .overload_rate
            .unwrap_or((args.overload_factor * probe.ok_per_sec().max(1.0)).min(flags::MAX_RATE));
        phases.push(probe);

        let load = if overload_addr == addr {
            load
        } else {
            let load = setup(args, overload_addr).await?;
            load.warm_up(args).await;
            load
        };
        memory.reset_peak();
        let mut overload = load.open_loop("overload", "overload", rate, length).await;
        overload.peak_rss_kib = memory.peak_kib();
        phases.push(overload);
    }
    Ok(phases)
}
