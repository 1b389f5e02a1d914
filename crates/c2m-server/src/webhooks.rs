//! The webhook delivery worker: POSTs each event to every endpoint that asked for its
//! kind, signed (`c2m_domain::webhook`), in sequence order per endpoint, at least once.
//!
//! A few worker loops run in each replica (under [`crate::tasks::supervise`]). Each claims
//! one endpoint at a time from the store (a lease, `FOR UPDATE SKIP LOCKED` on PostgreSQL:
//! see `c2m_store::webhooks`), reads the events after the endpoint's cursor and sends them
//! one by one (for a turn of a second at most, then the endpoint waits behind the others
//! that are due); a 2xx moves the cursor (recorded in runs: [`Run`]), anything else (a status, a refused or dropped
//! connection, no answer within `timeout`) is logged as a failed attempt, and the endpoint
//! waits `retry_delay` (one second doubling up to `max_backoff`, with jitter) before the
//! same event is tried again; an endpoint that has failed for `disable_after` without a
//! success is disabled until an admin enables it. Between claims a loop waits for a commit
//! (this process's, or another replica's by NOTIFY) or the poll interval.
//!
//! Nothing in the write path waits for any of this: events are in the store when their
//! change commits, and delivery reads them afterwards.
//!
//! The HTTP client is hyper's HTTP/1.1 connection over a TCP stream (and rustls for
//! `https://`, trusting the system's CA bundle: `SSL_CERT_FILE`, or the usual paths),
//! kept open between requests to the same origin ([`HttpClient`]); every request has the
//! whole `timeout` to connect (or take a kept connection), send and receive its status, so
//! a hanging receiver costs a timeout, never a stuck worker. The status is the answer: at
//! most 64 KiB of the body is read (and discarded), for at most half a second; a
//! connection whose answer was not read to its end is closed, not kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use c2m_domain::events::StoredEvent;
use c2m_domain::webhook::{retry_delay, sign, wants, SIGNATURE_HEADER};
use c2m_domain::Clock;
use c2m_store::events::EVENTS_PAGE;
use c2m_store::webhooks::{Claim, Delivery, Outcome};
use c2m_store::Store;

/// A request's body: the whole JSON at once.
type Body = http_body_util::Full<hyper::body::Bytes>;

/// How the worker delivers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Worker loops in this replica (endpoints delivered to at once).
    pub loops: usize,
    /// One request's whole time: connect, send, status.
    pub timeout: Duration,
    /// The longest wait between two attempts at a failing endpoint.
    pub max_backoff: Duration,
    /// Failing this long without a success disables an endpoint.
    pub disable_after: Duration,
    /// How often a loop with nothing to do looks again without a wake-up.
    pub poll: Duration,
}

/// Runs the worker loops until `stop` turns true. The worker reads the wall clock
/// ([`crate::SystemClock`]), not the service's injectable clock: a signature's timestamp is
/// checked against the receiver's own clock, and leases and retry times are about real
/// time passing, not about the business time a test may move.
pub async fn run(store: Arc<dyn Store>, settings: WorkerSettings, stop: watch::Receiver<bool>) {
    let clock: Arc<dyn Clock> = Arc::new(crate::SystemClock);
    let client = Arc::new(HttpClient::new());
    let replica = hex_id(6);
    let loops = (0..settings.loops.max(1)).map(|i| {
        let owner = format!("{replica}-{i}");
        worker(
            store.clone(),
            clock.clone(),
            client.clone(),
            settings,
            owner,
            stop.clone(),
        )
    });
    futures::future::join_all(loops).await;
}

async fn worker(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    client: Arc<HttpClient>,
    settings: WorkerSettings,
    owner: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut wake = store.event_commits();
    // Longer than any request, so a lease outlives the delivery it covers.
    let lease = chrono::Duration::from_std(settings.timeout * 3 + Duration::from_secs(5))
        .unwrap_or(chrono::Duration::minutes(1));
    // The retries this loop scheduled: it looks again at each, not only at the poll.
    let mut retries = Retries::default();
    // Store errors in a row (a claim refused, a delivery interrupted: the store down, or an
    // event it cannot read): the loop waits the poll, doubling with each, before it tries
    // again. It went again at once, and one corrupt event kept every loop of every replica
    // claiming, failing and logging in a tight loop (QA 17: 1,000 lines a second).
    let mut trouble: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        wake.mark_unchanged();
        let now = clock.now();
        match store.claim_endpoint(&owner, now, now + lease).await {
            Ok(Some(claim)) => {
                let id = claim.endpoint.id.clone();
                // A stop does not wait for a delivery: a receiver that answers slowly,
                // with a backlog of events, held the shutdown for the backlog times the
                // timeout. The attempt in flight, and those of the run not yet recorded
                // (`Run`), are not recorded, so their events are sent again later
                // (delivery is at least once; receivers drop duplicates by the event id),
                // and the lease is given back for another replica.
                let delivery = tokio::select! {
                    delivery = deliver(&*store, &*clock, &client, &settings, lease, &claim) => delivery,
                    () = async { let _ = stop.wait_for(|s| *s).await; } => {
                        let _ = store.release_endpoint(&claim).await;
                        return;
                    }
                };
                match delivery {
                    Ok(Some(retry_at)) => {
                        trouble = 0;
                        retries.add(retry_at);
                        continue;
                    }
                    Ok(None) => {
                        trouble = 0;
                        continue;
                    }
                    Err(e) => {
                        trouble += 1;
                        tracing::warn!(
                            endpoint = %id, error = %e, in_a_row = trouble,
                            "webhook delivery interrupted"
                        );
                        let _ = store.release_endpoint(&claim).await;
                    }
                }
            }
            // Nothing was due at `now`: retries up to then are another loop's or replica's.
            Ok(None) => {
                trouble = 0;
                retries.forget_until(now);
            }
            // Nothing was looked at: every retry is still to be tried, after the wait.
            Err(e) => {
                trouble += 1;
                tracing::warn!(error = %e, in_a_row = trouble, "claiming a webhook endpoint failed");
            }
        }
        let wait = match trouble {
            0 => retries.wait(clock.now(), settings.poll),
            n => trouble_wait(n, settings.poll),
        };
        // After store errors, new events do not cut the wait short: under a steady flow of
        // commits that would be the tight loop again.
        let woken = async {
            if trouble == 0 {
                let _ = wake.changed().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = woken => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long a worker loop waits after `n` store errors in a row: the poll, doubling with
/// each, at most [`MAX_TROUBLE_WAIT`] (and never less than a tenth of a second, whatever
/// the poll).
fn trouble_wait(n: u32, poll: Duration) -> Duration {
    let base = poll.max(Duration::from_millis(100));
    base.saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(MAX_TROUBLE_WAIT)
}

/// The longest a worker loop waits after store errors before it tries again.
const MAX_TROUBLE_WAIT: Duration = Duration::from_secs(300);

/// The retries a worker loop scheduled, so it wakes for each when it is due rather than at
/// the next poll. It kept only the earliest: once that one was tried and failed again, the
/// earlier time (now past) hid the new one, and the retry waited for the poll (QA 16: 4.3 s
/// after a second failure where the backoff said 1-2 s). Every time is kept, up to
/// [`Retries::MAX`] (past that, the latest are dropped: they wait for the poll at worst).
#[derive(Debug, Default)]
struct Retries(std::collections::BTreeSet<DateTime<Utc>>);

impl Retries {
    const MAX: usize = 1024;

    fn add(&mut self, at: DateTime<Utc>) {
        self.0.insert(at);
        if self.0.len() > Self::MAX {
            self.0.pop_last();
        }
    }

    /// Forgets the retries due by `claimed_at`, when a claim made then found nothing due:
    /// another loop or replica has them. Only up to the claim's own time: a retry that
    /// fell due between the claim and now was not looked for, and is waited for (not to
    /// wait for the poll instead).
    fn forget_until(&mut self, claimed_at: DateTime<Utc>) {
        self.0.retain(|t| *t > claimed_at);
    }

    /// How long to sleep at `now`: until the first retry kept (none, if it is due
    /// already: the loop looks again at once), at most `poll`.
    fn wait(&self, now: DateTime<Utc>, poll: Duration) -> Duration {
        self.0.first().map_or(poll, |at| {
            (*at - now).to_std().unwrap_or_default().min(poll)
        })
    }
}

/// Delivers the claimed endpoint's events until it has none left, fails, or loses its
/// lease; after a failure, when the next attempt is due.
async fn deliver(
    store: &dyn Store,
    clock: &dyn Clock,
    client: &HttpClient,
    settings: &WorkerSettings,
    lease: chrono::Duration,
    claim: &Claim,
) -> Result<Option<DateTime<Utc>>, c2m_store::StoreError> {
    let Claim {
        endpoint,
        secret,
        owner,
    } = claim;
    let turn = Instant::now();
    let mut cursor = endpoint.cursor;
    let mut failures = endpoint.failures;
    let mut failing_since = endpoint.failing_since;
    let mut run = Run::new(store, owner);
    loop {
        let events = store.list_events(cursor, None, EVENTS_PAGE).await?;
        if events.is_empty() {
            if !run.record(clock.now() + lease).await? {
                return Ok(None);
            }
            store.release_endpoint(claim).await?;
            return Ok(None);
        }
        let mut skipped = None;
        for e in &events {
            if !wants(&endpoint.kinds, e.kind()) {
                skipped = Some(e.seq);
                continue;
            }
            if let Some(seq) = skipped.take() {
                let until = clock.now() + lease;
                if !run.record(until).await? || !store.skip_events(claim, seq, until).await? {
                    return Ok(None);
                }
            }
            let at = clock.now();
            let sent = client
                .post(&endpoint.url, secret, e, at, settings.timeout)
                .await;
            let delivery = Delivery {
                seq: 0,
                endpoint_id: endpoint.id.clone(),
                event_seq: e.seq,
                event_id: e.id.as_str().to_owned(),
                attempt: failures + 1,
                status_code: sent.status.map(i64::from),
                error: sent.error.clone(),
                latency_ms: sent.latency.as_millis() as i64,
                delivered: sent.delivered(),
                at,
            };
            tracing::debug!(
                endpoint = %endpoint.id, seq = e.seq, status = ?sent.status,
                error = ?sent.error, latency_ms = delivery.latency_ms, "webhook attempt"
            );
            if sent.delivered() {
                if !run.push(delivery, clock.now() + lease).await? {
                    return Ok(None);
                }
                failures = 0;
                failing_since = None;
                cursor = e.seq;
                if turn.elapsed() >= TURN {
                    // Other endpoints go first, then this one again where it stopped.
                    if run.record(clock.now() + lease).await? {
                        store.pass_endpoint(claim, clock.now()).await?;
                    }
                    return Ok(None);
                }
                continue;
            }
            let (retry_at, disable) = {
                failures += 1;
                let since = *failing_since.get_or_insert(at);
                let wait = retry_delay(
                    failures.clamp(0, 64) as u32,
                    settings.max_backoff,
                    rand::random::<f64>(),
                );
                let disable_after = chrono::Duration::from_std(settings.disable_after)
                    .unwrap_or(chrono::Duration::days(3));
                let disable = (at - since >= disable_after).then(|| {
                    format!(
                        "failing since {} ({} attempts in a row); last: {}",
                        since.to_rfc3339(),
                        failures,
                        sent.summary()
                    )
                });
                if let Some(why) = &disable {
                    tracing::warn!(endpoint = %endpoint.id, reason = %why, "webhook endpoint disabled");
                }
                // The backoff counts from the attempt's end: from its start, a receiver
                // that hangs until the timeout would be retried at once, every time.
                let retry_at = clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                (retry_at, disable)
            };
            // The failure ends the run: recorded with the deliveries before it.
            let retried = disable.is_none();
            let held = run
                .fail(delivery, Outcome::Failed { retry_at, disable })
                .await?;
            return Ok((held && retried).then_some(retry_at));
        }
        if let Some(seq) = skipped {
            let until = clock.now() + lease;
            if !run.record(until).await? || !store.skip_events(claim, seq, until).await? {
                return Ok(None);
            }
            cursor = seq;
        }
    }
}

/// Deliveries made and not yet recorded: the worker records the events a receiver took in
/// runs of up to [`RUN_MAX`], or what it has after [`RUN_AGE`], in one store write each
/// (`WebhookStore::record_attempts`) rather than one write per event, which capped an
/// endpoint at a few hundred events a second (`docs/benchmarks.md`). A run is also
/// recorded before the cursor moves otherwise (events skipped), at the end of a turn or
/// of the backlog, and with the failure that ends it. What a crash or a stop loses is a
/// run's worth of events delivered but not recorded, which are sent again: at least once,
/// as always.
struct Run<'a> {
    store: &'a dyn Store,
    owner: &'a str,
    deliveries: Vec<Delivery>,
    since: Option<Instant>,
}

/// The most deliveries recorded in one write.
const RUN_MAX: usize = 64;

/// The longest a delivery waits to be recorded while more follow (a slow receiver's
/// deliveries are recorded one by one, as each takes longer than this).
const RUN_AGE: Duration = Duration::from_millis(100);

impl<'a> Run<'a> {
    /// An empty run of `owner`'s deliveries, recorded in `store`.
    fn new(store: &'a dyn Store, owner: &'a str) -> Self {
        Run {
            store,
            owner,
            deliveries: Vec::new(),
            since: None,
        }
    }

    /// Adds a delivery, recording the run when it is full or old enough; false if the
    /// lease was lost.
    async fn push(
        &mut self,
        delivery: Delivery,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, c2m_store::StoreError> {
        self.deliveries.push(delivery);
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.deliveries.len() >= RUN_MAX || since.elapsed() >= RUN_AGE {
            return self.record(lease_until).await;
        }
        Ok(true)
    }

    /// Records what the run holds (nothing to do when empty); false if the lease was lost.
    async fn record(&mut self, lease_until: DateTime<Utc>) -> Result<bool, c2m_store::StoreError> {
        if self.deliveries.is_empty() {
            return Ok(true);
        }
        self.write(Outcome::Delivered { lease_until }).await
    }

    /// Records the run ended by a failed attempt; false if the lease was lost.
    async fn fail(
        &mut self,
        failed: Delivery,
        outcome: Outcome,
    ) -> Result<bool, c2m_store::StoreError> {
        self.deliveries.push(failed);
        self.write(outcome).await
    }

    /// The one store write of a run, its last attempt's `outcome` applied; the run is
    /// empty after it.
    async fn write(&mut self, outcome: Outcome) -> Result<bool, c2m_store::StoreError> {
        let held = self
            .store
            .record_attempts(self.owner, &self.deliveries, &outcome)
            .await?;
        self.deliveries.clear();
        self.since = None;
        Ok(held)
    }
}

/// How long a worker loop delivers to one endpoint before passing it on with events left
/// (`WebhookStore::pass_endpoint`): a slow receiver with a long backlog takes turns with
/// the other endpoints instead of holding the loop until it is through. Long enough that
/// a receiver answering in milliseconds gets hundreds of events a claim.
const TURN: Duration = Duration::from_secs(1);

/// What one POST came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency: Duration,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn summary(&self) -> String {
        match (&self.status, &self.error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        }
    }
}

/// HTTP/1.1 over TCP, plain or over rustls, keeping a receiver's connection open between
/// requests: a burst of events to one endpoint goes over one connection instead of a TCP
/// (and TLS) handshake per event. One client serves all of a replica's worker loops; a
/// connection is used by one request at a time (taken from the idle set, put back after a
/// complete answer).
pub struct HttpClient {
    tls: Option<tokio_rustls::TlsConnector>,
    idle: std::sync::Mutex<Vec<Idle>>,
}

/// Where a connection goes: a connection is reused only for the same scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// An open connection: the request side, and the task driving the connection (aborted, and
/// the connection closed, when this is dropped).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Body>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A connection waiting for the next request to its origin.
struct Idle {
    origin: Origin,
    conn: Conn,
    since: Instant,
}

/// How long a connection may wait unused before it is closed rather than reused. Receivers
/// close idle connections on timers of their own (Node's default is 5 s); a connection they
/// closed is seen before it is used (`SendRequest::is_closed`) unless the close crosses the
/// request on the wire, which this keeps unlikely.
const IDLE_FOR: Duration = Duration::from_secs(4);

/// The most idle connections kept, over all origins.
const IDLE_MAX: usize = 64;

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client trusting the system's CA bundle for `https://` (without one, https
    /// deliveries fail with that reason and are retried).
    pub fn new() -> Self {
        HttpClient {
            tls: system_tls(),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// POSTs `event` as JSON to `url`, signed with `secret` at `at`, within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        event: &StoredEvent,
        at: DateTime<Utc>,
        timeout: Duration,
    ) -> Sent {
        let started = Instant::now();
        let result = match serde_json::to_vec(event) {
            Ok(body) => {
                let signature = sign(secret.as_bytes(), at.timestamp(), &body);
                // The status is the answer: once it is in, a body still coming when the
                // time is up does not undo it.
                let mut answered = None;
                let sent = self.send(url, &signature, body, &mut answered);
                match tokio::time::timeout(timeout, sent).await {
                    Ok(r) => r,
                    Err(_) => answered.ok_or_else(|| format!("no answer within {timeout:?}")),
                }
            }
            Err(e) => Err(format!("the event does not serialise: {e}")),
        };
        let latency = started.elapsed();
        match result {
            Ok(status) => Sent {
                status: Some(status),
                error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
                latency,
            },
            Err(e) => Sent {
                status: None,
                error: Some(e),
                latency,
            },
        }
    }

    /// How many connections wait idle (for tests and the benchmark's curiosity).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    async fn send(
        &self,
        url: &str,
        signature: &str,
        body: Vec<u8>,
        answered: &mut Option<u16>,
    ) -> Result<u16, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        let host = uri.host().ok_or("the URL has no host")?.to_owned();
        // A port that is not a u16 is refused at registration; one stored before that
        // rule fails here rather than going to the scheme's default port.
        let port = match uri.port() {
            Some(p) => p
                .as_str()
                .parse::<u16>()
                .map_err(|_| format!("bad URL: the port {:?} is not a number", p.as_str()))?,
            None if https => 443,
            None => 80,
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let request = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "c2m-webhooks/1")
            .header(SIGNATURE_HEADER, signature)
            .body(Body::from(body))
            .map_err(|e| format!("request: {e}"))?;
        let origin = Origin {
            https,
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
        };
        let request = match self.reused(&origin).await {
            Some(conn) => match exchange(conn, request, answered).await {
                Ok((status, conn)) => return Ok(self.answered(origin, status, conn)),
                // The connection went before the request was written (the receiver closed
                // it as it was taken): the request goes on a new one. Once written, it is
                // not sent again here: the receiver may have it, and a failed attempt is
                // retried by the worker after its backoff like any other.
                Err(Failed::Unsent(request)) => *request,
                Err(Failed::Error(e)) => return Err(e),
            },
            None => request,
        };
        let conn = self.connect(&origin).await?;
        match exchange(conn, request, answered).await {
            Ok((status, conn)) => Ok(self.answered(origin, status, conn)),
            Err(Failed::Unsent(_)) => Err("send: the connection closed at once".into()),
            Err(Failed::Error(e)) => Err(e),
        }
    }

    /// An idle connection to `origin` that is still open and ready, if there is one.
    async fn reused(&self, origin: &Origin) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().ok()?;
                idle.retain(|i| i.since.elapsed() < IDLE_FOR && !i.conn.sender.is_closed());
                let newest = idle.iter().rposition(|i| i.origin == *origin)?;
                idle.remove(newest).conn
            };
            if conn.sender.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    /// Puts a connection whose answer was read in full back for the next request.
    fn answered(&self, origin: Origin, status: u16, conn: Option<Conn>) -> u16 {
        if let (Some(conn), Ok(mut idle)) = (conn, self.idle.lock()) {
            if !conn.sender.is_closed() {
                if idle.len() >= IDLE_MAX {
                    idle.remove(0);
                }
                idle.push(Idle {
                    origin,
                    conn,
                    since: Instant::now(),
                });
            }
        }
        status
    }

    /// A new connection to `origin`: TCP, then TLS for `https`, then the HTTP/1.1
    /// handshake, its driver spawned.
    async fn connect(&self, origin: &Origin) -> Result<Conn, String> {
        let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if origin.https {
            let tls = self
                .tls
                .as_ref()
                .ok_or("https: no CA bundle found (set SSL_CERT_FILE)")?;
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| format!("server name: {e}"))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            handshake(TokioIo::new(stream)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

/// The HTTP/1.1 handshake on `io`, with the connection's driver spawned.
async fn handshake<I>(io: I) -> Result<Conn, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

/// Why an exchange gave no status.
enum Failed {
    /// The connection failed before the request was written; here it is back.
    Unsent(Box<http::Request<Body>>),
    Error(String),
}

/// The most of an answer's body the worker reads (and discards) after its status.
const BODY_READ_LIMIT: usize = 64 * 1024;

/// The longest the worker waits for an answer's body after its status. A short body comes
/// with the status or just after it; a 2xx whose body then stalled cost the whole timeout
/// per event, and four such receivers with backlogs held every worker loop of a replica
/// while the other endpoints waited.
const BODY_READ_WINDOW: Duration = Duration::from_millis(500);

/// Sends one request on `conn` and reads the answer's status (put in `answered` as soon as
/// it is in), then up to [`BODY_READ_LIMIT`] bytes of its body for at most
/// [`BODY_READ_WINDOW`], which are discarded, so a receiver with a short answer is not cut
/// off mid-answer. The connection comes back for reuse only when the body was read to its
/// end: a larger, endless or stalled body is not waited for; the status decides, and the
/// connection is closed.
async fn exchange(
    mut conn: Conn,
    request: http::Request<Body>,
    answered: &mut Option<u16>,
) -> Result<(u16, Option<Conn>), Failed> {
    let response = match conn.sender.try_send_request(request).await {
        Ok(response) => response,
        Err(mut e) => {
            return Err(match e.take_message() {
                Some(request) => Failed::Unsent(Box::new(request)),
                None => Failed::Error(format!("send: {}", e.into_error())),
            })
        }
    };
    let status = response.status().as_u16();
    *answered = Some(status);
    let mut body = response.into_body();
    let read_body = async {
        let mut read = 0;
        while read < BODY_READ_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(_)) => return false,
                None => return true,
            }
        }
        false
    };
    let complete = tokio::time::timeout(BODY_READ_WINDOW, read_body)
        .await
        .unwrap_or(false);
    Ok((status, complete.then_some(conn)))
}

/// rustls trusting the system's CA bundle, if one is found.
fn system_tls() -> Option<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls;
    let candidates = std::env::var("SSL_CERT_FILE").into_iter().chain(
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ]
        .into_iter()
        .map(String::from),
    );
    let mut roots = rustls::RootCertStore::empty();
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            let _ = roots.add(cert);
        }
        if !roots.is_empty() {
            break;
        }
    }
    if roots.is_empty() {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `n` random bytes as hex.
pub fn hex_id(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("a time")
    }

    #[test]
    fn store_errors_in_a_row_wait_longer_each_time() {
        let poll = Duration::from_secs(5);
        assert_eq!(trouble_wait(1, poll), poll);
        assert_eq!(trouble_wait(2, poll), 2 * poll);
        assert_eq!(trouble_wait(4, poll), 8 * poll);
        assert_eq!(trouble_wait(30, poll), MAX_TROUBLE_WAIT);
        assert_eq!(trouble_wait(u32::MAX, poll), MAX_TROUBLE_WAIT);
        assert_eq!(trouble_wait(1, Duration::ZERO), Duration::from_millis(100));
    }

    /// A retry scheduled after an earlier one was tried (and failed again) is waited for:
    /// the earlier one, past, no longer hides it.
    #[test]
    fn a_loop_wakes_for_each_retry_it_scheduled() {
        let poll = Duration::from_secs(5);
        let mut r = Retries::default();
        r.add(at(1));
        assert_eq!(r.wait(at(0), poll), Duration::from_secs(1));
        // Tried at 1 (the claim found it), failed again: the next is at 3.
        r.add(at(3));
        r.forget_until(at(1));
        assert_eq!(r.wait(at(1), poll), Duration::from_secs(2));
        r.add(at(20));
        // At 3 another loop took it: the claim found nothing.
        r.forget_until(at(3));
        assert_eq!(
            r.wait(at(3), poll),
            poll,
            "a retry past the poll waits for the poll"
        );
        assert_eq!(r.wait(at(18), poll), Duration::from_secs(2));
        // Claimed at 19 (nothing due), the clock read at 21 for the sleep: the retry at
        // 20 was not looked for, so the loop looks again at once.
        r.forget_until(at(19));
        assert_eq!(r.wait(at(21), poll), Duration::ZERO);
        r.forget_until(at(21));
        assert_eq!(r.wait(at(21), poll), poll, "nothing left to come");
        for i in 0..2 * Retries::MAX as i64 {
            r.add(at(100 + i));
        }
        assert_eq!(r.0.len(), Retries::MAX);
        assert_eq!(
            r.wait(at(99), poll),
            Duration::from_secs(1),
            "the earliest kept"
        );
    }
}
