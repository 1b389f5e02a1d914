//! Startup: from settings to a serving process.
//!
//! [`Application::build`] opens (and migrates) the store and binds the listener, so the
//! port is known before serving starts (tests bind port 0 and ask for it).
//! [`Application::run_until`] serves gRPC and runs the deadline sweeper until the shutdown
//! future resolves, then drains in-flight requests. `main` and the integration tests use
//! exactly this path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use c2m_domain::Clock;
use c2m_proto::v1::campaign_service_server::CampaignServiceServer;
use c2m_proto::v1::catalogue_service_server::CatalogueServiceServer;
use c2m_proto::v1::event_service_server::EventServiceServer;
use c2m_proto::v1::factory_service_server::FactoryServiceServer;
use c2m_proto::v1::ledger_service_server::LedgerServiceServer;
use c2m_proto::v1::levers_service_server::LeversServiceServer;
use c2m_proto::v1::planning_service_server::PlanningServiceServer;
use c2m_proto::v1::preorder_service_server::PreorderServiceServer;
use c2m_proto::v1::purchasing_service_server::PurchasingServiceServer;
use c2m_proto::v1::webhook_service_server::WebhookServiceServer;
use c2m_store::Store;

use crate::handshake::{handshake, Greeted};
use crate::planning::PlanningCycles;
use crate::services::campaign::CampaignSvc;
use crate::services::catalogue::CatalogueSvc;
use crate::services::events::EventSvc;
use crate::services::factory::{Deliveries, FactorySvc};
use crate::services::ledger::LedgerSvc;
use crate::services::levers::LeversSvc;
use crate::services::planning::PlanningSvc;
use crate::services::preorder::PreorderSvc;
use crate::services::purchasing::PurchasingSvc;
use crate::services::webhooks::WebhookSvc;
use crate::services::Ctx;
use crate::store_lock::StoreLock;
use crate::sweeper::Sweeper;
use crate::tasks::supervise;
use crate::tls::ServerTls;
use crate::Settings;

pub struct Application {
    settings: Settings,
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The listener's TLS, checked at build; `None` serves plaintext.
    tls: Option<ServerTls>,
    /// On SQLite, the store's lock ([`StoreLock`]), held until the server has stopped so
    /// no second server runs its background tasks on the same file; `None` on PostgreSQL
    /// (replicas share it by design) and for a store opened by the caller.
    lock: Option<StoreLock>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with the clock injected (tests move time by hand).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // Settings and TLS files first: a zero or a typo in a path fails before anything
        // is created or opened.
        settings.check().map_err(anyhow::Error::msg)?;
        let tls = ServerTls::from_settings(&settings)?;
        let url = settings.database_url();
        if settings.database_url.is_none() {
            create_private_dir(&settings.data_dir).with_context(|| {
                // A symbolic link to a folder not made yet: "File exists" alone did not
                // say that the name is a link, nor where it points.
                match std::fs::read_link(&settings.data_dir) {
                    Ok(target) if !settings.data_dir.exists() => format!(
                        "cannot create data directory {}: it is a symbolic link to {}, \
                         which does not exist; create that folder, or give another \
                         --data-dir",
                        settings.data_dir.display(),
                        // A relative target is relative to the link's folder, not to
                        // where c2m runs.
                        settings
                            .data_dir
                            .parent()
                            .map_or(target.clone(), |dir| dir.join(&target))
                            .display()
                    ),
                    _ => format!(
                        "cannot create data directory {}",
                        settings.data_dir.display()
                    ),
                }
            })?;
        }
        // Before the store is opened (and migrated): a second server on the same SQLite
        // file stops here, naming the data directory.
        let lock = match c2m_store::sqlite_path(&url) {
            Some(db) => Some(StoreLock::acquire(&db)?),
            None => None,
        };
        let store = c2m_store::open(&url)
            .await
            .with_context(|| format!("cannot open the store at {}", redact(&url)))?;
        tracing::info!(backend = store.backend(), database = %redact(&url), "store open");
        let mut app = Self::assemble(settings, store, clock, tls).await?;
        app.lock = lock;
        Ok(app)
    }

    /// Serves an already opened store (tests restart a server on the same store).
    pub async fn with_store(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        settings.check().map_err(anyhow::Error::msg)?;
        let tls = ServerTls::from_settings(&settings)?;
        Self::assemble(settings, store, clock, tls).await
    }

    async fn assemble(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tls: Option<ServerTls>,
    ) -> anyhow::Result<Self> {
        // `settings` were checked by both callers (`Settings::check`) before anything
        // was opened.
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        match &tls {
            Some(tls) => {
                tls.log();
                if settings.no_auth && tls.factory_certificates {
                    tracing::warn!(
                        "--tls-client-ca with --no-auth: client certificates are verified \
                         at the handshake, but every caller acts as admin"
                    );
                }
            }
            None if local_addr.ip().is_loopback() => {
                tracing::info!("TLS off: plaintext gRPC (--tls-cert and --tls-key turn it on)")
            }
            None => tracing::warn!(
                %local_addr,
                "TLS off on a non-loopback address: tokens and orders cross the network in \
                 plaintext (--tls-cert and --tls-key turn TLS on)"
            ),
        }
        tracing::info!(%local_addr, tls = tls.is_some(), "c2m ready");
        Ok(Application {
            settings,
            listener,
            local_addr,
            store,
            clock,
            tls,
            lock: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            settings,
            listener,
            store,
            clock,
            tls,
            lock,
            ..
        } = self;
        // Released when this returns, after every background task has stopped.
        let _lock = lock;
        let plan_horizon = settings.plan_horizon().map_err(anyhow::Error::msg)?;
        // Said at start, where the operator who changed the horizon looks: a calendar an
        // older server stored without dates, written for another horizon, is refused by
        // planning cycles (CALENDAR_HORIZON_MISMATCH) until it is imported again.
        if let Ok(catalogue) = store.catalogue().await {
            for f in &catalogue.factories {
                if let Err(e) = crate::planning::check_calendar(f, plan_horizon) {
                    tracing::warn!(factory = %f.id, "{e}");
                }
            }
        }
        let ctx = Ctx {
            store: store.clone(),
            clock: clock.clone(),
            plan_horizon,
            advice_time_limit: settings.advice_time_limit,
            request_timeout: settings.request_timeout,
        };
        let max = settings.max_message_bytes;

        let (mut health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<CampaignServiceServer<CampaignSvc>>()
            .await;
        health_reporter
            .set_serving::<PreorderServiceServer<PreorderSvc>>()
            .await;
        health_reporter
            .set_serving::<LedgerServiceServer<LedgerSvc>>()
            .await;
        health_reporter
            .set_serving::<CatalogueServiceServer<CatalogueSvc>>()
            .await;
        health_reporter
            .set_serving::<LeversServiceServer<LeversSvc>>()
            .await;
        health_reporter
            .set_serving::<PlanningServiceServer<PlanningSvc>>()
            .await;
        health_reporter
            .set_serving::<FactoryServiceServer<FactorySvc>>()
            .await;
        health_reporter
            .set_serving::<PurchasingServiceServer<PurchasingSvc>>()
            .await;
        health_reporter
            .set_serving::<EventServiceServer<EventSvc>>()
            .await;
        health_reporter
            .set_serving::<WebhookServiceServer<WebhookSvc>>()
            .await;

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(c2m_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(c2m_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let stop_on_shutdown = stop_tx.clone();
        let sweep_task = tokio::spawn(supervise("sweeper", stop_rx.clone(), {
            let (store, clock, stop) = (store.clone(), clock.clone(), stop_rx.clone());
            let interval = settings.sweep_interval;
            move || Sweeper::new(store.clone(), clock.clone()).run(interval, wait_for(stop.clone()))
        }));
        let webhook_task = tokio::spawn(supervise("webhook delivery", stop_rx.clone(), {
            let (store, stop) = (store.clone(), stop_rx.clone());
            let settings = crate::webhooks::WorkerSettings {
                loops: 4,
                timeout: settings.webhook_timeout,
                max_backoff: settings.webhook_max_backoff,
                disable_after: settings.webhook_disable_after,
                poll: settings.event_poll,
            };
            move || crate::webhooks::run(store.clone(), settings, stop.clone())
        }));
        let deliveries = Deliveries::new();
        let cycles = Arc::new(PlanningCycles::new(
            store.clone(),
            clock.clone(),
            settings.plan_time_limit,
            plan_horizon,
            deliveries.clone(),
        ));
        let plan_task = tokio::spawn(supervise("planning schedule", stop_rx.clone(), {
            let (cycles, stop) = (cycles.clone(), stop_rx.clone());
            let (every, when_waiting) = (settings.plan_every, settings.plan_when_waiting);
            move || {
                crate::planning::run_schedule(
                    cycles.clone(),
                    every,
                    when_waiting,
                    wait_for(stop.clone()),
                )
            }
        }));

        let detached_cycles = cycles.clone();
        let factory_certificates = tls.as_ref().is_some_and(|t| t.factory_certificates);
        let auth = (!settings.no_auth).then(|| {
            Arc::new(
                crate::auth::Authenticator::new(store.clone(), settings.token_cache)
                    .with_factory_certificates(factory_certificates),
            )
        });
        if auth.is_none() {
            tracing::warn!("access control is off (--no-auth): every caller acts as admin");
        }
        // TLS is not tonic's: the accept path does the handshakes, under the deadline
        // (`crate::handshake`), and hands tonic connections already past them.
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(settings.keepalive_interval))
            .http2_keepalive_timeout(Some(settings.keepalive_timeout));
        // Connections are accepted by a task of their own (`accept`), which closes the
        // listener when shutdown begins: tonic keeps the stream it is handed until every
        // connection has drained, so a listener inside it stayed open and a client
        // arriving during the drain hung instead of being refused.
        let (conns_tx, mut conns) = tokio::sync::mpsc::channel(ACCEPT_QUEUE);
        let cut = Cut::default();
        let accept_task = tokio::spawn(accept(
            listener,
            conns_tx,
            stop_rx.clone(),
            settings.handshake_timeout,
            tls.as_ref().map(ServerTls::acceptor),
            Arc::new(tokio::sync::Semaphore::new(settings.max_connections)),
            cut.clone(),
        ));
        let incoming = futures::stream::poll_fn(move |cx| {
            conns.poll_recv(cx).map(|c| c.map(Ok::<_, std::io::Error>))
        });
        let serve = server
            .layer(crate::limits::LimitsLayer::new(
                settings.max_in_flight,
                crate::limits::Deadlines::new(settings.request_timeout, settings.plan_time_limit),
            ))
            .layer(crate::auth::AuthLayer(auth))
            .concurrency_limit_per_connection(settings.concurrency_per_connection)
            .trace_fn(|req| tracing::info_span!("rpc", path = %req.uri().path()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                CampaignServiceServer::new(CampaignSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                PreorderServiceServer::new(PreorderSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                LedgerServiceServer::new(LedgerSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                CatalogueServiceServer::new(CatalogueSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                LeversServiceServer::new(LeversSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                PlanningServiceServer::new(PlanningSvc {
                    ctx: ctx.clone(),
                    cycles,
                })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .add_service(
                PurchasingServiceServer::new(PurchasingSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                FactoryServiceServer::new(FactorySvc {
                    ctx: ctx.clone(),
                    deliveries,
                    heartbeat: settings.factory_heartbeat,
                    poll: settings.factory_poll,
                    stop: stop_rx.clone(),
                })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .add_service(
                EventServiceServer::new(EventSvc {
                    ctx: ctx.clone(),
                    heartbeat: settings.event_heartbeat,
                    poll: settings.event_poll,
                    stop: stop_rx.clone(),
                    max_bytes: max,
                    tail: Arc::new(crate::services::tail::Tail::new(
                        ctx.store.clone(),
                        settings.event_poll,
                        max,
                    )),
                })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .add_service(
                WebhookServiceServer::new(WebhookSvc(ctx.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(incoming, async {
                shutdown.await;
                tracing::info!("shutting down: draining in-flight requests");
                // Long-lived streams (factory subscriptions) end now, so draining ends.
                let _ = stop_on_shutdown.send(true);
            });
        let tasks = [sweep_task, plan_task, webhook_task];
        let aborts: Vec<_> = tasks
            .iter()
            .map(|t| t.abort_handle())
            .chain([accept_task.abort_handle()])
            .collect();
        let drained = async {
            let result = serve.await;
            // A cycle run for a call whose client went away stores its plan first.
            detached_cycles.settled().await;
            let _ = stop_tx.send(true);
            let _ = accept_task.await;
            for task in tasks {
                let _ = task.await;
            }
            result
        };
        // However the peers behave (a connection that never sends a byte, a stream whose
        // client stops reading, a webhook receiver that stalls), a stop ends within the
        // grace: what is still open then is closed. Every write that was answered is
        // stored already; a call cut off is answered by the connection closing, and its
        // retry with the same key finds its first answer.
        let grace = settings.shutdown_grace;
        let result = tokio::select! {
            result = drained => result,
            () = async {
                wait_for(stop_rx.clone()).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(
                    ?grace,
                    "still draining when the shutdown grace ran out: stopping now, closing what is open"
                );
                for task in aborts {
                    task.abort();
                }
                // tonic's connection tasks outlive its server future: end them too.
                cut.now();
                Ok(())
            }
        };
        result.context("gRPC server failed")?;
        tracing::info!("c2m stopped");
        Ok(())
    }
}

/// Accepted connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 64;

/// Accepts connections until `stop`, then closes the listener (dropped here), so clients
/// are refused from the start of a shutdown. Every connection gets TCP_NODELAY: with
/// Nagle's algorithm on (tonic 0.12's default for a listener it is handed), a small
/// response waited for the client's delayed acknowledgement, about 40 ms, and every unary
/// call's p50 sat at 44 ms. An accept that fails (above all, out of file descriptors) is
/// logged and retried after a pause: tonic's own listener ended its stream on one, and
/// the server then stopped serving for good while the process lived on.
///
/// Each connection holds one of `open`'s permits (`--max-connections`) from its accept
/// until it closes; with none left, nothing is accepted until one comes back.
async fn accept(
    listener: TcpListener,
    conns: tokio::sync::mpsc::Sender<Greeted<Connection>>,
    mut stop: watch::Receiver<bool>,
    handshake_within: std::time::Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    open: Arc<tokio::sync::Semaphore>,
    cut: Cut,
) {
    let (mut failing, mut full) = (false, false);
    loop {
        let permit = match open.clone().try_acquire_owned() {
            Ok(permit) => {
                if full {
                    tracing::info!("below --max-connections again");
                    full = false;
                }
                permit
            }
            Err(_) => {
                // Logged once per run at the limit, not once per connection let in.
                if !full {
                    tracing::warn!(
                        "at --max-connections: a new connection is accepted only when one closes"
                    );
                    full = true;
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    permit = open.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                }
            }
        };
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                if failing {
                    tracing::info!("accepting connections again");
                    failing = false;
                }
                let _ = tcp.set_nodelay(true);
                let conn = Connection {
                    tcp,
                    _open: permit,
                    cut: cut.watch(),
                };
                tokio::spawn(greet(
                    conn,
                    conns.clone(),
                    stop.clone(),
                    handshake_within,
                    tls.clone(),
                ));
            }
            Err(e) => {
                // Logged once per run of failures, not once per retry.
                if !failing {
                    tracing::error!(error = %e, "cannot accept connections (retrying every 100 ms)");
                    failing = true;
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
    }
}

/// Hands a connection to the server once its handshake is done (TLS, when on, and the
/// HTTP/2 client preface: [`crate::handshake`]); drops it when that is not done within
/// `within` (`--handshake-timeout`), or at shutdown. Before, the deadline ended at the
/// first byte, and a peer that sent a byte and stalled held its connection for good:
/// keepalive PINGs only begin once the HTTP/2 handshake is done.
async fn greet(
    conn: Connection,
    conns: tokio::sync::mpsc::Sender<Greeted<Connection>>,
    mut stop: watch::Receiver<bool>,
    within: std::time::Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let peer = conn.tcp.peer_addr().ok();
    let greeted = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        done = tokio::time::timeout(within, handshake(conn, peer, tls.as_ref())) => done,
    };
    match greeted {
        Ok(Ok(conn)) => {
            let _ = conns.send(conn).await;
        }
        // Debug, not a warning: port scanners and health probes of load balancers do this.
        Ok(Err(error)) => tracing::debug!(?peer, %error, "connection closed before HTTP/2"),
        Err(_) => tracing::debug!(
            ?peer,
            ?within,
            "connection closed: no handshake (TLS and the HTTP/2 preface) within --handshake-timeout"
        ),
    }
}

/// An accepted connection and its place under `--max-connections`, given back when the
/// server drops it (closed by either side, or at the end of a shutdown's grace: [`Cut`]).
struct Connection {
    tcp: TcpStream,
    _open: tokio::sync::OwnedSemaphorePermit,
    cut: CutWatch,
}

/// Ends every connection still open when a shutdown's grace runs out. tonic serves each
/// connection on a task of its own, which dropping its server future does not end, so a
/// connection whose peer kept it open (a stream it still read, an HTTP/2 handshake it
/// never finished) lived on after [`Application::run_until`] returned, with its task and
/// its place under `--max-connections`, in a process that embeds the server and goes on.
/// Once cut, a connection reads its end and refuses writes, so hyper ends it and the task
/// with it.
#[derive(Clone, Default)]
struct Cut {
    notify: Arc<tokio::sync::Notify>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Cut {
    /// A connection's view of the cut. Registered at once, so a cut that comes before the
    /// connection is first read still reaches it.
    fn watch(&self) -> CutWatch {
        let mut notified = Box::pin(self.notify.clone().notified_owned());
        notified.as_mut().enable();
        CutWatch {
            notified,
            done: self.done.clone(),
            cut: false,
        }
    }

    /// Cuts every connection, and any accepted from now on.
    fn now(&self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

struct CutWatch {
    notified: std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>,
    done: Arc<std::sync::atomic::AtomicBool>,
    cut: bool,
}

impl CutWatch {
    /// Whether the connection is cut; otherwise the task is woken when it is.
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        if !self.cut {
            self.cut = self.done.load(std::sync::atomic::Ordering::SeqCst)
                || self.notified.as_mut().poll(cx).is_ready();
        }
        self.cut
    }
}

/// What a cut connection's writes answer.
fn cut_off() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the server stopped: its shutdown grace ran out",
    )
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.cut.poll(cx) {
            // The end of the connection, as if the peer had closed it.
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.cut.poll(cx) {
            return std::task::Poll::Ready(Err(cut_off()));
        }
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.cut.poll(cx) {
            return std::task::Poll::Ready(Err(cut_off()));
        }
        std::pin::Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.cut.poll(cx) {
            return std::task::Poll::Ready(Err(cut_off()));
        }
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The pause after a failed accept.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The wall clock: the one place the service reads the time of day (the domain takes
/// `now` as an argument, and tests inject a `c2m_domain::ManualClock`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Hides the password in a database URL before it is logged or shown in an error (public
/// for the benchmarks, which name the `--database-url` they were given).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Creates `dir` (and any missing parent) readable by the owner alone (0700 on Unix): it
/// holds the store, with its webhook signing secrets, and `admin.token`. A directory that
/// exists keeps the mode its owner gave it.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    /// A setting the server cannot run with is refused before the data directory or the
    /// store is created.
    #[tokio::test]
    async fn bad_settings_are_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut settings = crate::Settings::for_tests(data.clone());
        settings.sweep_interval = std::time::Duration::ZERO;
        let e = super::Application::build(settings)
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("--sweep-interval"), "{e}");
        assert!(!data.exists(), "nothing created");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact("sqlite://data/c2m.db"),
            "sqlite://data/c2m.db"
        );
    }
}
