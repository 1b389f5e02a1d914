//! Shared helpers for the end-to-end tests: a real server (in-process on a random port, or
//! a real `c2m` process), real tonic clients, and request builders.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use c2m_domain::Clock;
use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::factory_service_client::FactoryServiceClient;
use c2m_proto::v1::levers_service_client::LeversServiceClient;
use c2m_proto::v1::planning_service_client::PlanningServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::{Application, Settings, SystemClock};
use c2m_store::Store;

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// A server running inside the test process, on its own SQLite database and port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    /// With access control on: an admin token made at start.
    pub admin_token: Option<String>,
    /// With TLS on: how this server's own clients connect (trusting its CA).
    pub tls: Option<ClientTlsConfig>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn sqlite() -> TestServer {
        Self::sqlite_with_clock(Arc::new(SystemClock)).await
    }

    pub async fn sqlite_with_clock(clock: Arc<dyn Clock>) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings::for_tests(dir.path().to_path_buf());
        Self::start(settings, clock, Some(dir)).await
    }

    /// As [`TestServer::sqlite`], with settings changed by `f`.
    pub async fn sqlite_with(f: impl FnOnce(&mut Settings)) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_tests(dir.path().to_path_buf());
        f(&mut settings);
        Self::start(settings, Arc::new(SystemClock), Some(dir)).await
    }

    /// As [`TestServer::sqlite`], with access control on and an admin token ready.
    pub async fn sqlite_with_auth() -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_tests(dir.path().to_path_buf());
        settings.no_auth = false;
        Self::start(settings, Arc::new(SystemClock), Some(dir)).await
    }

    /// As [`TestServer::sqlite_with_auth`], with the TLS files `f` sets in the settings
    /// (`tls_cert`, `tls_key`, maybe `tls_client_ca`); the server's own clients connect
    /// over TLS with `trust` (no client certificate).
    pub async fn sqlite_with_tls(
        f: impl FnOnce(&mut Settings),
        trust: ClientTlsConfig,
    ) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_tests(dir.path().to_path_buf());
        settings.no_auth = false;
        f(&mut settings);
        Self::start_tls(settings, Arc::new(SystemClock), Some(dir), Some(trust)).await
    }

    /// A server with settings changed by `f`, on `clock`, on SQLite in a fresh folder or
    /// on the database `url`.
    pub async fn custom(
        f: impl FnOnce(&mut Settings),
        clock: Arc<dyn Clock>,
        url: Option<&str>,
    ) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_tests(dir.path().to_path_buf());
        settings.database_url = url.map(str::to_owned);
        f(&mut settings);
        Self::start(settings, clock, Some(dir)).await
    }

    pub async fn with_database(url: &str) -> TestServer {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_tests(dir.path().to_path_buf());
        settings.database_url = Some(url.to_owned());
        Self::start(settings, Arc::new(SystemClock), Some(dir)).await
    }

    /// A server on the SQLite database in `dir` (a restarted server finds its data there).
    pub async fn sqlite_in(
        dir: tempfile::TempDir,
        clock: Arc<dyn Clock>,
        f: impl FnOnce(&mut Settings),
    ) -> TestServer {
        init_logs();
        let mut settings = Settings::for_tests(dir.path().to_path_buf());
        f(&mut settings);
        Self::start(settings, clock, Some(dir)).await
    }

    /// A new server on an existing store, as a restarted process would be.
    pub async fn restart_sqlite(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> TestServer {
        init_logs();
        let settings = Settings::for_tests(std::env::temp_dir());
        let app = Application::with_store(settings, store, clock)
            .await
            .expect("server builds");
        Self::run(app, None)
    }

    async fn start(
        settings: Settings,
        clock: Arc<dyn Clock>,
        dir: Option<tempfile::TempDir>,
    ) -> TestServer {
        Self::start_tls(settings, clock, dir, None).await
    }

    async fn start_tls(
        settings: Settings,
        clock: Arc<dyn Clock>,
        dir: Option<tempfile::TempDir>,
        tls: Option<ClientTlsConfig>,
    ) -> TestServer {
        let auth = !settings.no_auth;
        let app = Application::build_with_clock(settings, clock)
            .await
            .expect("server builds");
        let mut server = Self::run(app, dir);
        server.tls = tls;
        if auth {
            let admin =
                c2m_server::auth::issue(c2m_domain::Role::Admin, None, "tests").expect("token");
            server
                .store
                .create_token(&admin.stored, Utc::now())
                .await
                .expect("admin token stored");
            server.admin_token = Some(admin.token);
        }
        ensure_skus(&mut server.clients().await, &[CAMPAIGN_SKU]).await;
        server
    }

    fn run(app: Application, dir: Option<tempfile::TempDir>) -> TestServer {
        let addr = app.local_addr();
        let store = app.store();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            store,
            admin_token: None,
            tls: None,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Clients with the admin token when access control is on (over TLS when it is on).
    pub async fn clients(&self) -> Clients {
        match &self.tls {
            None => Clients::connect_as(self.addr, self.admin_token.as_deref()).await,
            Some(tls) => {
                Clients::connect_to(
                    https_endpoint(self.addr, tls.clone()),
                    self.admin_token.as_deref(),
                )
                .await
            }
        }
    }

    /// Starts a graceful shutdown, as SIGTERM would, without waiting for it
    /// ([`TestServer::shutdown`] waits).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Graceful shutdown, as SIGTERM would do; returns once the server has stopped, handing
    /// back its data directory (dropping it deletes the database).
    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
        self._dir.take()
    }
}

pub use c2m_server::auth::Bearer;

/// A channel that sends the client's token.
pub type Ch = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Clients {
    pub campaigns: CampaignServiceClient<Ch>,
    pub preorders: PreorderServiceClient<Ch>,
    pub catalogue: CatalogueServiceClient<Ch>,
    pub planning: PlanningServiceClient<Ch>,
    pub factory: FactoryServiceClient<Ch>,
    pub levers: LeversServiceClient<Ch>,
    pub channel: Channel,
}

impl Clients {
    pub async fn connect(addr: SocketAddr) -> Clients {
        Self::connect_as(addr, None).await
    }

    /// Clients that present `token` on every call.
    pub async fn connect_as(addr: SocketAddr, token: Option<&str>) -> Clients {
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("uri");
        Self::connect_to(endpoint, token).await
    }

    /// Clients on `endpoint` (plaintext or TLS) that present `token` on every call.
    pub async fn connect_to(endpoint: Endpoint, token: Option<&str>) -> Clients {
        let channel = Self::try_connect(endpoint)
            .await
            .unwrap_or_else(|e| panic!("connects: {e}"));
        Self::on(channel, token)
    }

    /// Connects (for TLS, the handshake), or says why not, with the whole error chain.
    pub async fn try_connect(endpoint: Endpoint) -> Result<Channel, String> {
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| error_chain(&e))
    }

    /// Plaintext clients on `addr`, or an error instead of a panic when nothing answers
    /// within a second (a server that was just killed).
    pub async fn try_connect_addr(addr: SocketAddr) -> Result<Clients, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(1));
        let channel = endpoint.connect().await.map_err(|e| error_chain(&e))?;
        Ok(Self::on(channel, None))
    }

    /// Clients on an open channel that present `token` on every call.
    pub fn on(channel: Channel, token: Option<&str>) -> Clients {
        let b = Bearer::new(token).expect("a token a header can carry");
        Clients {
            campaigns: CampaignServiceClient::with_interceptor(channel.clone(), b.clone()),
            preorders: PreorderServiceClient::with_interceptor(channel.clone(), b.clone()),
            catalogue: CatalogueServiceClient::with_interceptor(channel.clone(), b.clone()),
            planning: PlanningServiceClient::with_interceptor(channel.clone(), b.clone()),
            factory: FactoryServiceClient::with_interceptor(channel.clone(), b.clone()),
            levers: LeversServiceClient::with_interceptor(channel.clone(), b),
            channel,
        }
    }
}

/// An endpoint for `https://127.0.0.1:PORT` with `tls` (the server certificate must name
/// 127.0.0.1).
pub fn https_endpoint(addr: SocketAddr, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("client TLS settings")
}

/// `error: cause: cause ...` (tonic's transport errors say little at the top).
#[allow(unused_imports)]
pub use c2m_server::tls::error_chain;

/// The PostgreSQL server the PostgreSQL tests may create databases on, or `None`: the one
/// rule of `c2m_store::conformance::test_database_url` (skip said once locally, a failure
/// under `CI=true`).
pub fn pg_admin_url() -> Option<String> {
    c2m_store::conformance::test_database_url()
}

/// What one factory client received: seq -> work order id, and how often work orders came.
#[derive(Default)]
pub struct Received {
    pub by_seq: BTreeMap<i64, String>,
    pub deliveries: usize,
}

impl Received {
    /// Counts a delivery of `w` to `factory`, and checks it is that factory's and that its
    /// seq never names two different work orders (a redelivery is recognised by its id).
    pub fn record(&mut self, factory: &str, w: &pb::WorkOrder) {
        self.deliveries += 1;
        let id = self.by_seq.entry(w.seq).or_insert_with(|| w.id.clone());
        assert_eq!(
            *id, w.id,
            "{factory}: seq {} delivered as two different work orders",
            w.seq
        );
        assert_eq!(w.factory_id, factory, "another factory's work order");
    }
}

/// Every batch of a campaign, in order.
pub async fn list_batches(c: &mut Clients, campaign: &str) -> Vec<pb::Batch> {
    c.campaigns
        .list_batches(pb::ListBatchesRequest {
            campaign_id: campaign.to_owned(),
        })
        .await
        .expect("list batches")
        .into_inner()
        .batches
}

/// A real `c2m serve` process, killed when dropped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    pub child: Child,
}

impl ServerProcess {
    pub async fn spawn(database_url: &str, data_dir: &std::path::Path) -> ServerProcess {
        Self::spawn_with(database_url, data_dir, &[]).await
    }

    /// As [`ServerProcess::spawn`], with more `serve` flags (`["--plan-every", "1s"]`;
    /// `--listen` replaces the random port).
    pub async fn spawn_with(
        database_url: &str,
        data_dir: &std::path::Path,
        flags: &[&str],
    ) -> ServerProcess {
        // A random port unless the caller chose one (to restart on the same address).
        let listen: &[&str] = if flags.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_c2m"))
            .arg("serve")
            .args(listen)
            .args([
                "--sweep-interval",
                "200ms",
                // Access control has its own tests (tests/access_control.rs).
                "--no-auth",
            ])
            .args(flags)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--database-url")
            .arg(database_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("c2m binary starts");
        let addr = listening(&mut child).await;
        ensure_skus(&mut Clients::connect(addr).await, &[CAMPAIGN_SKU]).await;
        ServerProcess { addr, child }
    }

    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Waits, a minute at most, for the first line a `c2m serve` child (its standard output
/// piped) prints, `c2m listening on ADDR`, and returns the address.
pub async fn listening(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("the server's stdout is piped");
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("the server prints its address within a minute")
    .expect("read stdout")
    .unwrap_or_else(|| panic!("the server stopped without serving: {child:?}"));
    line.strip_prefix("c2m listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address")
}

/// Waits for the server to close `conn` (end of stream, or a reset), which it must do
/// after `--handshake-timeout` (`at_least`) and well within 10 s.
pub async fn closed_after<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
    at_least: Duration,
    what: &str,
) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let until_closed = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), until_closed)
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after 10 s"));
    assert!(
        started.elapsed() >= at_least,
        "{what}: closed before its time"
    );
}

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// One deadline for the whole test process, a week away, so that two requests built by
/// [`campaign_request`] are identical (a retry must send the same request).
pub fn week_from_start() -> DateTime<Utc> {
    static DEADLINE: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *DEADLINE.get_or_init(|| Utc::now() + chrono::Duration::days(7))
}

/// The sku [`campaign_request`] sells; every test server has it in its catalogue.
pub const CAMPAIGN_SKU: &str = "kettle-17-white";

/// Makes sure the catalogue has products with these skus (merging, so nothing else
/// changes; the key is derived from the skus, so it is safe to call again).
pub async fn ensure_skus(c: &mut Clients, skus: &[&str]) {
    let mut text = String::from("name = \"test products\"\ncurrency = \"CNY\"\n");
    for sku in skus {
        text.push_str(&format!(
            "\n[[products]]\nsku = \"{sku}\"\ndemand = 0\nbom = {{}}\n"
        ));
    }
    c.catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: format!("ensure-skus-{}", skus.join("-")),
            text,
            format: pb::ScenarioFormat::Toml as i32,
            mode: pb::ImportMode::Merge as i32,
            calendar_starts_at: None,
        })
        .await
        .expect("products added to the catalogue");
}

/// A valid campaign request with the given threshold, deadline a week away.
pub fn campaign_request(key: &str, threshold: i64) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        idempotency_key: key.to_owned(),
        sku: CAMPAIGN_SKU.into(),
        title: "Kettle 1.7 l, white".into(),
        currency: "CNY".into(),
        unit_price_minor: 39_900,
        deposit_minor: 5_000,
        batch_threshold: threshold,
        batch_cap: None,
        max_per_order: Some(10),
        max_per_consumer: None,
        total_cap: None,
        opens_at: None,
        deadline: Some(ts(week_from_start())),
        price_ladder: vec![],
        balance_window_seconds: None,
        ships_within_days: None,
    }
}

/// The campaign's progress (`GetCampaign`); panics if the server refuses.
pub async fn progress(c: &mut Clients, id: &str) -> pb::CampaignProgress {
    c.campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: id.into(),
        })
        .await
        .expect("get")
        .into_inner()
}

/// Creates the campaign `req` describes; panics if the server refuses it.
pub async fn created(c: &mut Clients, req: pb::CreateCampaignRequest) -> pb::Campaign {
    c.campaigns
        .create_campaign(req)
        .await
        .expect("campaign")
        .into_inner()
}

pub fn place(key: &str, campaign: &str, consumer: &str, quantity: i64) -> pb::PlacePreorderRequest {
    pb::PlacePreorderRequest {
        idempotency_key: key.to_owned(),
        campaign_id: campaign.to_owned(),
        consumer_id: consumer.to_owned(),
        channel: None,
        region: None,
        referrer: None,
        quantity,
    }
}

/// Every pre-order of a campaign, following page tokens.
pub async fn all_preorders(c: &mut Clients, campaign: &str) -> Vec<pb::Preorder> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .preorders
            .list_preorders(pb::ListPreordersRequest {
                consumer_id: String::new(),
                campaign_id: campaign.to_owned(),
                page_size: 97,
                page_token: token.clone(),
            })
            .await
            .expect("list pre-orders")
            .into_inner();
        out.extend(page.preorders);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Places 500 single-unit orders from 50 concurrent tasks spread over `servers`, returns
/// what each accepted call answered.
pub async fn place_concurrently(
    servers: &[SocketAddr],
    campaign: &str,
    tasks: usize,
    per_task: usize,
) -> Vec<pb::Preorder> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let addr = servers[t % servers.len()];
        let campaign = campaign.to_owned();
        handles.push(tokio::spawn(async move {
            let mut c = Clients::connect(addr).await;
            let mut placed = Vec::new();
            for i in 0..per_task {
                let key = format!("place-{t}-{i}");
                let p = c
                    .preorders
                    .place_preorder(place(&key, &campaign, &format!("consumer-{t}"), 1))
                    .await
                    .unwrap_or_else(|s| panic!("order {key} refused: {s:?}"))
                    .into_inner();
                placed.push((key, p));
            }
            // Every retry of an accepted request returns the original result.
            for (key, original) in &placed {
                let again = c
                    .preorders
                    .place_preorder(place(key, &campaign, &format!("consumer-{t}"), 1))
                    .await
                    .expect("retry accepted")
                    .into_inner();
                assert_eq!(&again, original, "retry of {key} returned something else");
            }
            placed.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    all
}

// ---------------------------------------------------------------------------------------
// Catalogue and planning

/// Two phone cases sharing a material (tpu), two factories: with the default demand
/// case-a is cheapest at ningbo-2 and case-b at dongguan-1.
pub const PHONE_CASES: &str = r#"
name = "phone-cases"
currency = "CNY"
material_deadline_days = 21

[[products]]
sku = "case-a"
demand = 0
bom = { tpu = 0.05, ink = 0.002 }

[[products]]
sku = "case-b"
demand = 0
bom = { tpu = 0.08 }

[[materials]]
id = "tpu"
unit = "kg"
on_hand = 0.5
holding_cost = 150.0

[[materials]]
id = "ink"
unit = "l"
on_hand = 1.0

[[factories]]
id = "dongguan-1"
capacity_hours = 40.0

[[factories.lines]]
sku = "case-a"
unit_cost = 300.0
setup_cost = 5000.0
hours_per_unit = 0.05
setup_hours = 1.0

[[factories.lines]]
sku = "case-b"
unit_cost = 320.0
hours_per_unit = 0.05

[[factories]]
id = "ningbo-2"
capacity_hours = 40.0

[[factories.lines]]
sku = "case-a"
unit_cost = 350.0
hours_per_unit = 0.04

[[factories.lines]]
sku = "case-b"
unit_cost = 280.0
setup_cost = 2000.0
hours_per_unit = 0.06

[[suppliers]]
id = "tpu-co"
lead_days = 7

[[suppliers.offers]]
material = "tpu"
pack_size = 1.0
order_cost = 500.0
breaks = [
  { min_qty = 0.0, unit_price = 2800.0 },
  { min_qty = 2.0, unit_price = 2400.0 },
]
"#;

pub async fn import(
    c: &mut Clients,
    key: &str,
    text: &str,
    mode: pb::ImportMode,
) -> Result<pb::CatalogueChange, tonic::Status> {
    c.catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: key.into(),
            text: text.into(),
            format: pb::ScenarioFormat::Toml as i32,
            mode: mode as i32,
            calendar_starts_at: None,
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn export(c: &mut Clients, format: pb::ScenarioFormat) -> String {
    c.catalogue
        .export_scenario(pb::ExportScenarioRequest {
            format: format as i32,
        })
        .await
        .expect("export")
        .into_inner()
        .text
}

/// A campaign for `sku` with threshold 10, no per-order limit, and the full price as
/// deposit, so a batch is ready for production when it locks.
pub async fn ready_campaign(c: &mut Clients, key: &str, sku: &str) -> pb::Campaign {
    let mut req = campaign_request(key, 10);
    req.sku = sku.into();
    req.max_per_order = None;
    req.deposit_minor = req.unit_price_minor;
    created(c, req).await
}

/// Cancels the campaign (`CancelCampaign` under `key`).
pub async fn cancel_campaign(
    c: &mut Clients,
    key: &str,
    campaign: &str,
) -> Result<pb::LeverOutcome, tonic::Status> {
    c.levers
        .cancel_campaign(pb::CancelCampaignRequest {
            idempotency_key: key.into(),
            campaign_id: campaign.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A campaign for `sku` ([`ready_campaign`]) and one locked batch of `units` (10..=20).
pub async fn locked_batch(c: &mut Clients, key: &str, sku: &str, units: i64) -> String {
    let cmp = ready_campaign(c, key, sku).await;
    let p = c
        .preorders
        .place_preorder(place(&format!("{key}-order"), &cmp.id, "consumer-1", units))
        .await
        .expect("order")
        .into_inner();
    assert_eq!(p.status, pb::PreorderStatus::Locked as i32);
    p.batch_id
}

pub async fn run_planning(c: &mut Clients, key: &str) -> Result<pb::Plan, tonic::Status> {
    c.planning
        .run_planning(pb::RunPlanningRequest {
            idempotency_key: key.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Every work order of every stored plan, read through gRPC (plans in pages of 100).
pub async fn all_work_orders(c: &mut Clients) -> Vec<pb::WorkOrder> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .planning
            .list_plans(pb::ListPlansRequest {
                page_size: 100,
                page_token: token.clone(),
            })
            .await
            .expect("plans")
            .into_inner();
        for s in &page.plans {
            let plan = c
                .planning
                .get_plan(pb::GetPlanRequest {
                    plan_id: s.id.clone(),
                })
                .await
                .expect("plan")
                .into_inner();
            out.extend(plan.work_orders);
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The `google.rpc.ErrorInfo` of a status: its reason ("" when it has none, which c2m never
/// sends) and its metadata. Tests assert on these, not on the message, which is for people.
pub fn reason(s: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    s.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// One metadata value of a status's `ErrorInfo`, when present.
pub fn error_meta(s: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt;
    s.get_error_details()
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
}

/// Asserts that `s` has `code` and `reason`, and returns it for further checks.
#[track_caller]
pub fn assert_refused(s: &tonic::Status, code: tonic::Code, why: &str) {
    assert_eq!((s.code(), reason(s).as_str()), (code, why), "{s:?}");
}

/// Runs the storefront example once against the server at `addr` (no access control, so
/// any token), asserts it succeeded, and answers its standard output.
pub async fn storefront(addr: std::net::SocketAddr, args: &[&str]) -> Vec<u8> {
    let out = storefront_command(addr, args)
        .await
        .output()
        .await
        .expect("storefront runs");
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

/// The `storefront` example (built on first use) as a command against `addr`, with `args`,
/// for a test that needs its own standard streams.
pub async fn storefront_command(
    addr: std::net::SocketAddr,
    args: &[&str],
) -> tokio::process::Command {
    let exe = tokio::task::spawn_blocking(|| example_binary("storefront"))
        .await
        .expect("built");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["--addr", &format!("http://{addr}"), "--token", "unused"])
        .args(args);
    cmd
}

/// The writing end of a pipe whose reader has gone (`example | head` once head has
/// what it wanted), for an example's standard output.
// `std::io::pipe` is Rust 1.87 (the crate's MSRV is 1.85): a test helper, run by the
// toolchain that builds the tests; the library code does not use it.
#[allow(clippy::incompatible_msrv)]
pub fn closed_pipe() -> std::process::Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer.into()
}

/// The path of an example's executable, built on first use with the cargo that runs the
/// tests (same target directory and profile; a no-op when it is up to date). Cargo builds
/// examples for `cargo test` but not for `cargo test --test api`, and gives integration
/// tests no path to them, so the path comes from cargo's build messages.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    static BUILT: std::sync::Mutex<BTreeMap<String, PathBuf>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(exe) = built.get(name) {
        return exe.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // The profile this test was built with: target/<profile>/deps/<test>.
    let me = std::env::current_exe().expect("the test's own path");
    let profile = me
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|p| p.to_str())
        .unwrap_or("debug")
        .to_string();
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--example",
        name,
        "--message-format=json",
    ]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().expect("cargo runs");
    let messages: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    // Under --message-format=json the compiler's own words (a type error, a linker that
    // ran out of disk) arrive on stdout as JSON; stderr only says "could not compile".
    // A failure shows both, or a CI log says nothing about why.
    assert!(
        out.status.success(),
        "cargo build --example {name} failed:\n{}\n{}",
        messages
            .iter()
            .filter(|m| m["reason"] == "compiler-message")
            .filter_map(|m| m["message"]["rendered"].as_str())
            .collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = messages
        .iter()
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the example's executable");
    assert!(exe.is_file(), "{} is not a file", exe.display());
    built.insert(name.to_owned(), exe.clone());
    exe
}

/// The headers of a gRPC call to `GetCampaign` sent by hand over a raw HTTP/2 connection
/// (`h2`), for tests that hold a call open or send its body in pieces.
pub fn raw_get_campaign_request() -> tonic::codegen::http::Request<()> {
    tonic::codegen::http::Request::builder()
        .method("POST")
        .uri("http://c2m/c2m.v1.CampaignService/GetCampaign")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}
