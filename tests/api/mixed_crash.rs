//! Crash test under a mixed workload. A real `c2m serve` process is killed with SIGKILL at
//! random moments while client tasks keep working against it: campaigns are created with
//! deadlines a few seconds ahead, pre-orders are placed and some cancelled, balances are
//! paid or left to forfeit, the server's sweeper fails the open batch of every campaign
//! whose deadline passes (releasing its deposits) and closes balance windows, planning
//! cycles run (on demand and scheduled), and two factories stream and acknowledge work
//! orders. Every mutating call carries an idempotency key and is sent again, with the same
//! key, after any error that leaves its outcome open. The process is restarted on the same
//! database each time.
//!
//! The clients keep a journal: every call attempted, and its outcome once known (the
//! answer, or a definite refusal). After each kill, with the process down, the test opens
//! the store itself and checks it against the journal and against rules restated here:
//!
//! - every stored campaign and pre-order was asked for by a key that was not refused, and
//!   by one key only; every acknowledged one is stored as acknowledged;
//! - a pre-order is cancelled exactly when a cancel for it was not refused, and an
//!   acknowledged cancel or payment is never lost;
//! - batches: numbered 1..n, only the last open or failed, a locked batch between its
//!   threshold and its cap and locked by the order that crossed the threshold, one `open`
//!   and at most one `locked` or `failed` transition each, units equal to their orders;
//! - money: each pre-order has exactly the ledger movements its state implies (one hold;
//!   one release for a cancelled order or a failed batch's order, so every refund exactly
//!   once; one capture for a locked one; one balance payment if paid; one forfeit), each
//!   of the right amount at the price of its batch's ladder tier; each closed batch
//!   settles once what its paid orders owe; every account (consumer, holds, escrow,
//!   merchant) and the campaign's money summary agree with the orders; the store's audit
//!   finds nothing unbalanced and no hold out of step;
//! - work orders: each factory's sequence is 1..n with no gap, what a factory received is
//!   what is stored under that number, and no batch is planned for more than its units;
//! - events: numbered 1..n with no gap, each id once, and exactly the events the batches
//!   and pre-orders imply, with their amounts (`check_events`).
//!
//! (A campaign found final at an earlier kill, its deadline passed and every batch failed
//! or closed, has only its batches read again until the end, so the check does not grow
//! with the run.) The workload pauses from a kill until the checks after the restart end.
//!
//! After each restart it checks through gRPC that every acknowledged pre-order is there as
//! acknowledged, and that replaying each acknowledged call with its key returns the
//! original answer (a key reused for another request is refused). At the end, after every
//! deadline and balance window has passed and the last cycle has run, no batch is open,
//! every locked batch is closed and planned in full, and each factory holds every stored
//! work order exactly once by id.
//!
//! `C2M_MIXED_CRASH_ROUNDS` (default 20) sets the number of kills during the workload (two
//! more at the end); `C2M_CRASH_SEED` replays a run's random choices (campaign terms,
//! quantities, who cancels and pays, kill moments; not the threads' timing). It runs on
//! SQLite, and on PostgreSQL too when `TEST_DATABASE_URL` is set (the c2m process is
//! killed, never PostgreSQL).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::common::*;
use c2m_domain::{
    Batch, BatchId, BatchStatus, HoldState, Page, PageRequest, Preorder, PreorderStatus, TxnKind,
};
use c2m_proto::v1 as pb;
use c2m_store::conformance::{drop_pg_database, fresh_pg_database};
use c2m_store::postgres::PgStore;
use c2m_store::sqlite::SqliteStore;
use c2m_store::{BatchTransition, PreorderFilter, Store, StoreError};

const FACTORIES: [&str; 2] = ["dongguan-1", "ningbo-2"];
const SKUS: [&str; 2] = ["case-a", "case-b"];
/// Campaigns taking orders at any time.
const OPEN_CAMPAIGNS: usize = 3;
const PLACERS: usize = 4;
/// Payers, each for the campaigns whose id hashes to it.
const PAYERS: usize = 3;
const MAX_PER_ORDER: i64 = 3;
/// A call that has no answer after this long is given up on (and counted as in doubt).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A call still unanswered after this long, however often sent, fails the test.
const GIVE_UP: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// The journal

#[derive(Clone, Debug)]
enum Outcome<T> {
    /// Sent, no answer yet: the sender keeps sending it with the same key.
    InDoubt,
    Ok(T),
    /// A definite refusal (a status that is not about the transport or the server's
    /// availability).
    Refused(Code, String),
}

#[derive(Clone, Debug)]
struct Call<Req, Resp> {
    req: Req,
    outcome: Outcome<Resp>,
    /// An acknowledged call already replayed after a restart.
    replayed: bool,
}

impl<Req, Resp> Call<Req, Resp> {
    fn new(req: Req) -> Self {
        Call {
            req,
            outcome: Outcome::InDoubt,
            replayed: false,
        }
    }

    fn ok(&self) -> Option<&Resp> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    fn refused(&self) -> bool {
        matches!(self.outcome, Outcome::Refused(..))
    }

    /// The refusal, in words, for messages.
    fn refusal(&self) -> String {
        match &self.outcome {
            Outcome::Refused(code, message) => format!("{code:?}: {message}"),
            _ => "not refused".into(),
        }
    }

    fn in_doubt(&self) -> bool {
        matches!(self.outcome, Outcome::InDoubt)
    }
}

fn settle<Resp>(outcome: Result<Resp, Status>) -> Outcome<Resp> {
    match outcome {
        Ok(r) => Outcome::Ok(r),
        Err(s) => Outcome::Refused(s.code(), s.message().to_owned()),
    }
}

type Calls<Req, Resp> = BTreeMap<String, Call<Req, Resp>>;

/// Every mutating call the clients made, and what became of it.
#[derive(Clone, Default)]
struct Journal {
    /// By idempotency key, which is also the campaign's title.
    campaigns: Calls<pb::CreateCampaignRequest, pb::Campaign>,
    /// By idempotency key, `place-<consumer>`: each consumer places one pre-order.
    places: Calls<pb::PlacePreorderRequest, pb::Preorder>,
    /// By pre-order id (one cancel key per pre-order).
    cancels: Calls<pb::CancelPreorderRequest, pb::Preorder>,
    /// By pre-order id (one payment key per pre-order).
    pays: Calls<pb::PayBalanceRequest, pb::Preorder>,
    /// By idempotency key.
    plans: Calls<pb::RunPlanningRequest, pb::Plan>,
    /// Pre-orders whose balance the payer chose never to pay: they must forfeit.
    unpaid: BTreeSet<String>,
}

impl Journal {
    fn in_doubt(&self) -> usize {
        self.campaigns.values().filter(|c| c.in_doubt()).count()
            + self.places.values().filter(|c| c.in_doubt()).count()
            + self.cancels.values().filter(|c| c.in_doubt()).count()
            + self.pays.values().filter(|c| c.in_doubt()).count()
            + self.plans.values().filter(|c| c.in_doubt()).count()
    }
}

/// The state the client tasks share.
struct World {
    addr: watch::Receiver<Option<SocketAddr>>,
    journal: Mutex<Journal>,
    /// Acknowledged campaigns that may still take orders: id and deadline.
    open: Mutex<Vec<(String, DateTime<Utc>)>>,
    received: Vec<Arc<Mutex<Received>>>,
    /// Calls answered only after being sent more than once.
    resent: AtomicUsize,
    /// Set from a kill until the checks after the restart are done, so that what the
    /// workload does grows with its own running time, not with the checks'.
    paused: AtomicBool,
    stop: AtomicBool,
}

impl World {
    fn journal<R>(&self, f: impl FnOnce(&mut Journal) -> R) -> R {
        f(&mut self.journal.lock().unwrap())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits while the workload is paused.
    async fn pause_point(&self) {
        while self.paused.load(Ordering::Relaxed) && !self.stopping() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn received(&self) -> BTreeMap<String, BTreeMap<i64, String>> {
        FACTORIES
            .iter()
            .zip(&self.received)
            .map(|(f, r)| (f.to_string(), r.lock().unwrap().by_seq.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Calls that survive a server being killed

/// A task's connection to whichever server process is current.
struct Conn {
    addr: watch::Receiver<Option<SocketAddr>>,
    current: Option<(SocketAddr, Clients)>,
}

impl Conn {
    fn new(addr: watch::Receiver<Option<SocketAddr>>) -> Self {
        Conn {
            addr,
            current: None,
        }
    }

    async fn clients(&mut self) -> Clients {
        loop {
            let Some(at) = *self.addr.borrow_and_update() else {
                if self.addr.changed().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            };
            if let Some((a, c)) = &self.current {
                if *a == at {
                    return c.clone();
                }
            }
            match Clients::try_connect_addr(at).await {
                Ok(c) => {
                    self.current = Some((at, c.clone()));
                    return c;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Whether a status leaves the call's outcome open: the server was unreachable, died
/// mid-call, or shed the call. Such a call is sent again with the same key.
fn open_ended(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted => true,
        // A connection reset under a stream in flight.
        Code::Internal => s.message().contains("h2 protocol error"),
        _ => false,
    }
}

/// Sends a call until it is answered, sending it again (the same request, so the same
/// idempotency key) after any error that leaves its outcome open. Returns the answer or
/// the definite refusal.
async fn answered<T, F, Fut>(
    world: &World,
    conn: &mut Conn,
    what: &str,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut(Clients) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let start = tokio::time::Instant::now();
    let mut sent = 0;
    loop {
        let c = conn.clients().await;
        sent += 1;
        let last = match tokio::time::timeout(CALL_TIMEOUT, call(c)).await {
            Ok(Ok(r)) => {
                if sent > 1 {
                    world.resent.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(r.into_inner());
            }
            Ok(Err(s)) if !open_ended(&s) => return Err(s),
            Ok(Err(s)) => format!("{s:?}"),
            Err(_) => "timed out".to_owned(),
        };
        conn.current = None;
        assert!(
            start.elapsed() < GIVE_UP,
            "{what}: no answer in {GIVE_UP:?} ({sent} sends; last {last})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The workload

fn from_ts(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("a valid timestamp")
}

/// A campaign due in 4-9 seconds: threshold 3-10, a cap or none, a full deposit (ready at
/// lock) or a fifth of the price with a 4-8 second balance window, sometimes a cheaper
/// tier one unit above the threshold.
fn campaign_spec(rng: &mut StdRng, key: &str) -> pb::CreateCampaignRequest {
    let threshold = rng.gen_range(3..=10);
    let cap = rng.gen_bool(0.5).then(|| threshold + rng.gen_range(0..=4));
    let price = rng.gen_range(50..=200) * 100;
    let full = rng.gen_bool(0.25);
    let deposit = if full { price } else { price / 5 };
    let tier = threshold + 1;
    let price_ladder = if !full && rng.gen_bool(0.5) && cap.is_none_or(|c| tier <= c) {
        vec![pb::PriceTier {
            min_units: tier,
            unit_price_minor: price - price / 10,
        }]
    } else {
        vec![]
    };
    let deadline = Utc::now() + chrono::Duration::milliseconds(rng.gen_range(4_000..=9_000));
    pb::CreateCampaignRequest {
        idempotency_key: key.to_owned(),
        sku: SKUS[rng.gen_range(0..SKUS.len())].into(),
        title: key.to_owned(),
        currency: "CNY".into(),
        unit_price_minor: price,
        deposit_minor: deposit,
        batch_threshold: threshold,
        batch_cap: cap,
        max_per_order: Some(MAX_PER_ORDER),
        max_per_consumer: None,
        total_cap: None,
        opens_at: None,
        deadline: Some(ts(deadline)),
        price_ladder,
        balance_window_seconds: (!full).then(|| rng.gen_range(4..=8)),
        ships_within_days: None,
    }
}

/// The unit price a batch of `units` locks at, from the campaign as it was asked for.
fn price_at(req: &pb::CreateCampaignRequest, units: i64) -> i64 {
    req.price_ladder
        .iter()
        .rev()
        .find(|t| t.min_units <= units)
        .map(|t| t.unit_price_minor)
        .unwrap_or(req.unit_price_minor)
}

/// Keeps `OPEN_CAMPAIGNS` campaigns taking orders, creating a new one as each nears its
/// deadline.
async fn director(world: Arc<World>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = Conn::new(world.addr.clone());
    let mut n = 0;
    while !world.stopping() {
        world.pause_point().await;
        let soon = Utc::now() + chrono::Duration::seconds(1);
        let live = world
            .open
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, d)| *d > soon)
            .count();
        if live >= OPEN_CAMPAIGNS {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let key = format!("campaign-{n}");
        n += 1;
        let req = campaign_spec(&mut rng, &key);
        world.journal(|j| j.campaigns.insert(key.clone(), Call::new(req.clone())));
        let r = answered(&world, &mut conn, &key, |mut c| {
            let req = req.clone();
            async move { c.campaigns.create_campaign(req).await }
        })
        .await;
        match &r {
            Ok(cmp) => world
                .open
                .lock()
                .unwrap()
                .push((cmp.id.clone(), from_ts(&req.deadline))),
            // The deadline passed while the server was down; a campaign created by an
            // earlier send would have been replayed instead.
            Err(s)
                if s.code() == Code::InvalidArgument
                    && error_meta(s, "field").as_deref() == Some("deadline") => {}
            Err(s) => panic!("{key}: {s:?}"),
        }
        world.journal(|j| j.campaigns.get_mut(&key).unwrap().outcome = settle(r));
    }
}

/// Places pre-orders on random open campaigns (each for a new consumer), and cancels a
/// quarter of its own pooled ones.
async fn placer(world: Arc<World>, task: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = Conn::new(world.addr.clone());
    let mut pooled: Vec<pb::Preorder> = Vec::new();
    let mut n = 0;
    while !world.stopping() {
        world.pause_point().await;
        let campaign = {
            let mut open = world.open.lock().unwrap();
            // Orders keep coming for half a second after a deadline: the late ones must be
            // refused.
            let cutoff = Utc::now() - chrono::Duration::milliseconds(500);
            open.retain(|(_, d)| *d > cutoff);
            (!open.is_empty()).then(|| open[rng.gen_range(0..open.len())].0.clone())
        };
        let Some(campaign) = campaign else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let consumer = format!("c{task}-{n}");
        n += 1;
        let key = format!("place-{consumer}");
        let req = place(&key, &campaign, &consumer, rng.gen_range(1..=MAX_PER_ORDER));
        world.journal(|j| j.places.insert(key.clone(), Call::new(req.clone())));
        let r = answered(&world, &mut conn, &key, |mut c| {
            let req = req.clone();
            async move { c.preorders.place_preorder(req).await }
        })
        .await;
        match &r {
            Ok(p) if p.status == pb::PreorderStatus::Pooled as i32 => pooled.push(p.clone()),
            Ok(_) => {}
            Err(s) if s.code() == Code::FailedPrecondition => {}
            Err(s) => panic!("{key}: {s:?}"),
        }
        world.journal(|j| j.places.get_mut(&key).unwrap().outcome = settle(r));

        if !pooled.is_empty() && rng.gen_bool(0.25) {
            // Half the time the newest (most likely still open), else any.
            let i = if rng.gen_bool(0.5) {
                pooled.len() - 1
            } else {
                rng.gen_range(0..pooled.len())
            };
            let p = pooled.swap_remove(i);
            let req = pb::CancelPreorderRequest {
                idempotency_key: format!("cancel-{}", p.id),
                preorder_id: p.id.clone(),
                consumer_id: p.consumer_id.clone(),
            };
            world.journal(|j| j.cancels.insert(p.id.clone(), Call::new(req.clone())));
            let r = answered(&world, &mut conn, &req.idempotency_key, |mut c| {
                let req = req.clone();
                async move { c.preorders.cancel_preorder(req).await }
            })
            .await;
            match &r {
                Ok(_) => {}
                // The batch locked or failed first.
                Err(s) if s.code() == Code::FailedPrecondition => {}
                Err(s) => panic!("{}: {s:?}", req.idempotency_key),
            }
            world.journal(|j| j.cancels.get_mut(&p.id).unwrap().outcome = settle(r));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..50))).await;
    }
}

/// Pays the balance of four in five acknowledged pre-orders whose batch locked, on the
/// campaigns that hash to `k`; the fifth is left to forfeit.
async fn payer(world: Arc<World>, k: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = Conn::new(world.addr.clone());
    // Pre-orders with nothing left to decide: refunded, or paid or forfeited without us.
    let mut done: HashSet<String> = HashSet::new();
    while !world.stopping() {
        world.pause_point().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Acknowledged pre-orders on campaigns with a balance to pay, not yet decided on.
        let waiting: BTreeMap<String, BTreeSet<String>> = world.journal(|j| {
            let mut by_campaign: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for call in j.places.values() {
                let Some(p) = call.ok() else { continue };
                // (A pre-order whose cancel was refused is still to pay.)
                if j.pays.contains_key(&p.id)
                    || j.unpaid.contains(&p.id)
                    || j.cancels.get(&p.id).is_some_and(|c| !c.refused())
                    || done.contains(&p.id)
                {
                    continue;
                }
                by_campaign
                    .entry(p.campaign_id.clone())
                    .or_default()
                    .insert(p.id.clone());
            }
            by_campaign
        });
        for (campaign, ids) in waiting {
            if world.stopping() {
                break;
            }
            let mine = campaign.bytes().map(usize::from).sum::<usize>() % PAYERS == k;
            if !mine {
                continue;
            }
            let listed = answered(&world, &mut conn, "list", |mut c| {
                let campaign = campaign.clone();
                async move {
                    c.preorders
                        .list_preorders(pb::ListPreordersRequest {
                            consumer_id: String::new(),
                            campaign_id: campaign,
                            page_size: 500,
                            page_token: String::new(),
                        })
                        .await
                }
            })
            .await
            .expect("list pre-orders");
            for p in listed.preorders {
                if !ids.contains(&p.id) {
                    continue;
                }
                match p.money_state() {
                    pb::MoneyState::BalanceDue => {}
                    pb::MoneyState::DepositHeld => continue,
                    // Refunded, nothing left to pay (the deposit was the price), or too late.
                    _ => {
                        done.insert(p.id.clone());
                        continue;
                    }
                }
                if !rng.gen_bool(0.8) {
                    world.journal(|j| j.unpaid.insert(p.id.clone()));
                    continue;
                }
                let req = pb::PayBalanceRequest {
                    idempotency_key: format!("pay-{}", p.id),
                    preorder_id: p.id.clone(),
                    consumer_id: p.consumer_id.clone(),
                    amount: p.balance_due.clone(),
                };
                world.journal(|j| j.pays.insert(p.id.clone(), Call::new(req.clone())));
                let r = answered(&world, &mut conn, &req.idempotency_key, |mut c| {
                    let req = req.clone();
                    async move { c.preorders.pay_balance(req).await }
                })
                .await;
                match &r {
                    Ok(paid) => assert_eq!(paid.money_state(), pb::MoneyState::Paid),
                    // The balance window closed first.
                    Err(s) if s.code() == Code::FailedPrecondition => {}
                    Err(s) => panic!("{}: {s:?}", req.idempotency_key),
                }
                world.journal(|j| j.pays.get_mut(&p.id).unwrap().outcome = settle(r));
            }
        }
    }
}

/// Runs a planning cycle every few hundred milliseconds (the server also runs one every
/// second on its own).
async fn planner(world: Arc<World>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = Conn::new(world.addr.clone());
    let mut n = 0;
    while !world.stopping() {
        world.pause_point().await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..800))).await;
        let key = format!("plan-{n}");
        n += 1;
        let req = pb::RunPlanningRequest {
            idempotency_key: key.clone(),
        };
        world.journal(|j| j.plans.insert(key.clone(), Call::new(req.clone())));
        let r = answered(&world, &mut conn, &key, |mut c| {
            let req = req.clone();
            async move { c.planning.run_planning(req).await }
        })
        .await;
        match &r {
            Ok(plan) => assert_ne!(
                plan.summary.as_ref().unwrap().status,
                pb::PlanStatus::Infeasible as i32,
                "{key}: {:?}",
                plan.diagnosis
            ),
            // Nothing waits, or another cycle took the batches first.
            Err(s) if s.code() == Code::FailedPrecondition => {}
            Err(s) => panic!("{key}: {s:?}"),
        }
        world.journal(|j| j.plans.get_mut(&key).unwrap().outcome = settle(r));
    }
}

/// A factory that subscribes (resuming from the server's cursor), records and acknowledges
/// every work order, and reconnects whenever the stream breaks.
async fn factory_client(world: Arc<World>, i: usize) {
    let factory = FACTORIES[i];
    let mut conn = Conn::new(world.addr.clone());
    loop {
        let mut c = conn.clients().await;
        let Ok(stream) = c
            .factory
            .subscribe(pb::SubscribeRequest {
                factory_id: factory.into(),
                after_seq: None,
            })
            .await
        else {
            conn.current = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(e)) = stream.message().await {
            if let Some(pb::factory_event::Event::WorkOrder(w)) = e.event {
                world.received[i].lock().unwrap().record(factory, &w);
                let _ = c
                    .factory
                    .ack(pb::AckRequest {
                        factory_id: factory.into(),
                        seq: w.seq,
                    })
                    .await;
            }
        }
        conn.current = None;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The store, read directly while the server is down

enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

enum Opened {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    /// Returns once what the killed server sent can no longer land: on PostgreSQL its
    /// sessions finish the statement they had received (a `COMMIT` too) before they notice
    /// it is gone, so the checks, which read the store in several queries, wait for them.
    /// A SQLite write cannot outlive its process.
    async fn settle(&self) {
        if let Db::Postgres(url) = self {
            c2m_store::conformance::wait_for_other_sessions_to_end(url, Duration::from_secs(30))
                .await;
        }
    }

    async fn open(&self) -> Opened {
        match self {
            Db::Sqlite(path) => Opened::Sqlite(SqliteStore::open(path).await.expect("open")),
            Db::Postgres(url) => Opened::Postgres(
                PgStore::connect_with_pool_size(url, 2)
                    .await
                    .expect("connect"),
            ),
        }
    }
}

impl Opened {
    fn store(&self) -> &dyn Store {
        match self {
            Opened::Sqlite(s) => s,
            Opened::Postgres(s) => s,
        }
    }

    async fn transitions(&self, batch: &BatchId) -> Vec<BatchTransition> {
        match self {
            Opened::Sqlite(s) => s.batch_transitions(batch).await,
            Opened::Postgres(s) => s.batch_transitions(batch).await,
        }
        .expect("batch transitions")
    }

    async fn close(self) {
        match self {
            Opened::Sqlite(s) => s.close().await,
            Opened::Postgres(s) => drop(s),
        }
    }
}

/// Every item of a paged store listing.
async fn every<T, F, Fut>(mut page: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let p = page(PageRequest { size: 500, after })
            .await
            .expect("store listing");
        out.extend(p.items);
        match p.next_after {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// What the store holds, for the summary.
#[derive(Debug, Default)]
struct Tally {
    campaigns: usize,
    preorders: usize,
    cancelled: usize,
    locked_batches: usize,
    failed_batches: usize,
    refunded: usize,
    paid: usize,
    forfeited: usize,
    ledger_transactions: i64,
    work_orders: usize,
    /// Campaigns found final earlier, only their batches read again.
    finished: usize,
}

/// The ledger movements a pre-order must have, by kind: how many (0 or 1) and the amount.
fn movements(p: &Preorder, due: i64, paid: bool) -> [(TxnKind, Option<i64>); 5] {
    use PreorderStatus::*;
    let d = p.deposit_total.minor;
    let when = |yes: bool, amount: i64| yes.then_some(amount);
    [
        (TxnKind::Hold, Some(d)),
        (
            TxnKind::Release,
            when(matches!(p.status, Cancelled | RefundDue), d),
        ),
        (
            TxnKind::Capture,
            when(matches!(p.status, Locked | Forfeited), d),
        ),
        (TxnKind::Balance, when(paid && due > 0, due)),
        (TxnKind::Forfeit, when(p.status == Forfeited, d)),
    ]
}

/// Checks everything the store holds against the journal and the rules (see the module
/// docs). `end`: the workload is over and every deadline and window has passed.
///
/// `finished` holds the campaigns an earlier check found final (deadline passed, every
/// batch failed, or locked with its window closed): nothing but planning writes to them
/// any more, so until the `end` check only their batches are read again (for the planning
/// checks) and must still be final. New final campaigns are added.
async fn check_store(
    db: &Opened,
    j: &Journal,
    received: &BTreeMap<String, BTreeMap<i64, String>>,
    finished: &mut HashSet<String>,
    end: bool,
    at: &str,
) -> Tally {
    use PreorderStatus::*;
    let store = db.store();
    let mut tally = Tally::default();
    let now = Utc::now();
    let is_final = |b: &Batch| b.status == BatchStatus::Failed || b.ready_at.is_some();

    // Campaigns: each from one key that was not refused, stored as asked.
    let campaigns = every(|p| store.list_campaigns(p)).await;
    let mut keys = HashSet::new();
    for c in &campaigns {
        let key = c.terms.title.as_str();
        let call = j
            .campaigns
            .get(key)
            .unwrap_or_else(|| panic!("{at}: campaign {} was never asked for ({key})", c.id));
        assert!(
            !call.refused(),
            "{at}: {key} was refused ({}), yet {} exists",
            call.refusal(),
            c.id
        );
        assert!(keys.insert(key), "{at}: {key} made two campaigns");
        let r = &call.req;
        assert_eq!(
            (
                c.terms.sku.as_str(),
                c.terms.unit_price.minor,
                c.terms.deposit.minor,
                c.terms.batch_threshold,
                c.terms.batch_cap,
                c.terms.balance_window_secs,
                c.terms.deadline.timestamp_micros(),
            ),
            (
                r.sku.as_str(),
                r.unit_price_minor,
                r.deposit_minor,
                r.batch_threshold,
                r.batch_cap,
                r.balance_window_seconds,
                from_ts(&r.deadline).timestamp_micros(),
            ),
            "{at}: {key} stored with other terms"
        );
        if let Some(ok) = call.ok() {
            assert_eq!(
                ok.id,
                c.id.as_str(),
                "{at}: {key} acknowledged as another id"
            );
        }
    }
    for (key, call) in &j.campaigns {
        assert!(
            call.ok().is_none() || keys.contains(key.as_str()),
            "{at}: acknowledged campaign {key} is missing"
        );
        assert!(!end || !call.in_doubt(), "{at}: {key} still in doubt");
    }
    tally.campaigns = campaigns.len();

    let mut all_batches: Vec<Batch> = Vec::new();
    let mut consumers = HashSet::new();
    for c in &campaigns {
        let req = &j.campaigns[c.terms.title.as_str()].req;
        let cid = c.id.as_str();
        let threshold = req.batch_threshold;
        let batches = store.list_batches(&c.id).await.expect("batches");
        if !end && finished.contains(cid) {
            assert!(
                batches.iter().all(is_final),
                "{at}: {cid}: a final batch changed"
            );
            tally.finished += 1;
            tally.locked_batches += batches.iter().filter(|b| b.ready_at.is_some()).count();
            tally.failed_batches +=
                batches.len() - batches.iter().filter(|b| b.ready_at.is_some()).count();
            all_batches.extend(batches);
            continue;
        }
        let filter = PreorderFilter::Campaign(c.id.clone());
        let preorders = every(|p| store.list_preorders(&filter, p)).await;
        let ledger = every(|p| store.list_ledger(&c.id, p)).await;
        let money = store.campaign_money(&c.id).await.expect("campaign money");

        // Batches: 1..n, only the last open or failed, within threshold and cap.
        let seqs: Vec<i64> = batches.iter().map(|b| b.seq).collect();
        assert_eq!(
            seqs,
            (1..=batches.len() as i64).collect::<Vec<_>>(),
            "{at}: {cid}"
        );
        for (i, b) in batches.iter().enumerate() {
            let last = i + 1 == batches.len();
            let what = format!(
                "{at}: {cid} batch {} ({:?}, {} units)",
                b.seq, b.status, b.units
            );
            // Sorted: a transition's time is its request's arrival, and under group commit
            // the request that locks a batch may have arrived a moment before the one that
            // opened it.
            let mut transitions: Vec<BatchStatus> = db
                .transitions(&b.id)
                .await
                .iter()
                .map(|t| t.status)
                .collect();
            transitions.sort_by_key(|s| *s != BatchStatus::Open);
            match b.status {
                BatchStatus::Open => {
                    assert!(last && !end, "{what}: open");
                    assert!(b.units < threshold, "{what}: open at its threshold");
                    assert!(b.locked_at.is_none() && b.failed_at.is_none(), "{what}");
                    assert_eq!(transitions, [BatchStatus::Open], "{what}");
                }
                BatchStatus::Locked => {
                    tally.locked_batches += 1;
                    assert!(b.units >= threshold, "{what}: locked below its threshold");
                    assert!(
                        req.batch_cap.is_none_or(|cap| b.units <= cap),
                        "{what}: over its cap {:?}",
                        req.batch_cap
                    );
                    assert!(b.locked_at.is_some() && b.failed_at.is_none(), "{what}");
                    assert_eq!(
                        transitions,
                        [BatchStatus::Open, BatchStatus::Locked],
                        "{what}"
                    );
                    let price = price_at(req, b.units);
                    assert_eq!(
                        b.final_unit_price.map(|m| m.minor),
                        Some(price),
                        "{what}: price"
                    );
                    if price == req.deposit_minor {
                        assert_eq!(b.balance_due_by, None, "{what}");
                        assert_eq!(
                            b.ready_at, b.locked_at,
                            "{what}: nothing due, ready at lock"
                        );
                    } else {
                        let window = chrono::Duration::seconds(
                            req.balance_window_seconds.expect("a balance window"),
                        );
                        let due_by = b.locked_at.unwrap() + window;
                        assert_eq!(b.balance_due_by, Some(due_by), "{what}: balance due by");
                        assert!(
                            b.ready_at.is_none_or(|r| r >= due_by),
                            "{what}: window closed early"
                        );
                    }
                    assert!(!end || b.ready_at.is_some(), "{what}: window still open");
                }
                BatchStatus::Failed => {
                    tally.failed_batches += 1;
                    assert!(last, "{what}: failed, not the last batch");
                    assert!(b.units < threshold, "{what}: failed at its threshold");
                    assert!(b.failed_at.is_some() && b.locked_at.is_none(), "{what}");
                    assert!(
                        b.failed_at.unwrap() >= c.terms.deadline,
                        "{what}: failed early"
                    );
                    assert_eq!(
                        transitions,
                        [BatchStatus::Open, BatchStatus::Failed],
                        "{what}"
                    );
                }
            }
        }

        // Pre-orders, against the journal and their batch; what the ledger must show.
        let mut units: HashMap<&str, i64> = HashMap::new();
        let mut forfeited_units: HashMap<&str, i64> = HashMap::new();
        let mut last_of: HashMap<&str, &Preorder> = HashMap::new();
        let mut settles: HashMap<&str, i64> = HashMap::new();
        let mut want_movements: HashMap<(String, TxnKind), i64> = HashMap::new();
        let mut accounts: HashMap<String, i64> = HashMap::new();
        let (mut deposited, mut held, mut captured, mut released) = (0, 0, 0, 0);
        let (mut balances_paid, mut outstanding, mut forfeited, mut escrow) = (0, 0, 0, 0);
        for p in &preorders {
            let id = p.id.as_str();
            let what = format!("{at}: pre-order {id} ({:?})", p.status);
            let b = batches
                .get((p.batch_seq - 1) as usize)
                .filter(|b| b.id == p.batch_id)
                .unwrap_or_else(|| panic!("{what}: batch {} is not its campaign's", p.batch_seq));
            let consumer = p.consumer_id.as_str();
            let key = format!("place-{consumer}");
            let call = j
                .places
                .get(&key)
                .unwrap_or_else(|| panic!("{what}: never placed ({key})"));
            assert!(
                !call.refused(),
                "{what}: {key} was refused ({}), yet it exists",
                call.refusal()
            );
            assert!(
                consumers.insert(consumer.to_owned()),
                "{what}: {key} made two pre-orders"
            );
            assert_eq!(
                (call.req.campaign_id.as_str(), call.req.quantity),
                (cid, p.quantity),
                "{what}: not as placed"
            );
            let d = req.deposit_minor * p.quantity;
            assert_eq!(
                (p.unit_price.minor, p.deposit_total.minor),
                (req.unit_price_minor, d),
                "{what}"
            );

            let cancelled = p.cancelled_at.is_some();
            let cancel = j.cancels.get(id);
            if cancelled {
                tally.cancelled += 1;
                assert!(
                    cancel.is_some_and(|c| !c.refused()),
                    "{what}: cancelled without a cancel that was not refused"
                );
            } else {
                assert!(
                    cancel.is_none_or(|c| c.ok().is_none()),
                    "{what}: acknowledged cancel lost"
                );
            }
            let forfeit = p.money.forfeited_at.is_some();
            let status = match (cancelled, forfeit, b.status) {
                (true, _, _) => Cancelled,
                (false, true, BatchStatus::Locked) => Forfeited,
                (false, false, BatchStatus::Open) => Pooled,
                (false, false, BatchStatus::Locked) => Locked,
                (false, false, BatchStatus::Failed) => RefundDue,
                _ => panic!("{what}: forfeited in a {:?} batch", b.status),
            };
            assert_eq!(p.status, status, "{what}");
            let hold = match status {
                Pooled => HoldState::Held,
                Locked | Forfeited => HoldState::Captured,
                Cancelled | RefundDue => HoldState::Released,
            };
            assert_eq!(p.money.hold, hold, "{what}: hold");

            deposited += d;
            let mut net = 0;
            match status {
                Pooled => {
                    held += d;
                    net -= d;
                }
                Locked | Forfeited => {
                    captured += d;
                    net -= d;
                }
                Cancelled => released += d,
                RefundDue => {
                    released += d;
                    tally.refunded += 1;
                }
            }
            let pay = j.pays.get(id);
            let mut due = 0;
            let mut paid = false;
            if matches!(status, Locked | Forfeited) {
                let price = b.final_unit_price.expect("a locked batch has a price");
                assert_eq!(p.money.final_unit_price, Some(price), "{what}: price");
                due = p.quantity * price.minor - d;
                assert_eq!(
                    p.money.balance_due.map(|m| m.minor),
                    Some(due),
                    "{what}: due"
                );
                assert_eq!(p.money.balance_due_by, b.balance_due_by, "{what}: due by");
                paid = p.money.balance_paid_at.is_some();
                if due == 0 {
                    assert!(paid && pay.is_none(), "{what}: nothing due, paid at lock");
                } else {
                    assert!(
                        !paid || pay.is_some_and(|c| !c.refused()),
                        "{what}: paid without a payment that was not refused"
                    );
                    assert!(
                        pay.is_none_or(|c| c.ok().is_none()) || paid,
                        "{what}: acknowledged payment lost"
                    );
                    assert!(!paid || !j.unpaid.contains(id), "{what}: paid, never sent");
                }
                if status == Forfeited {
                    tally.forfeited += 1;
                    assert!(!paid, "{what}: paid and forfeited");
                    assert_eq!(
                        p.money.forfeited_at, b.ready_at,
                        "{what}: forfeited at close"
                    );
                    forfeited += d;
                    *forfeited_units.entry(b.id.as_str()).or_default() += p.quantity;
                } else if paid {
                    balances_paid += due;
                    net -= due;
                    *settles.entry(b.id.as_str()).or_default() += p.quantity * price.minor;
                    if due > 0 {
                        tally.paid += 1;
                    }
                } else {
                    outstanding += due;
                    assert!(
                        b.ready_at.is_none(),
                        "{what}: window closed, neither paid nor forfeited"
                    );
                }
                if b.ready_at.is_none() {
                    escrow += d + if paid { due } else { 0 };
                }
            } else {
                // (A cancelled order shows its batch's price if the batch locked later.)
                assert_eq!(p.money.balance_due, None, "{what}");
                assert_eq!(p.money.balance_paid_at, None, "{what}");
                assert!(
                    pay.is_none_or(|c| c.ok().is_none()),
                    "{what}: paid, never locked"
                );
            }
            *accounts.entry(format!("consumer:{consumer}")).or_default() += net;
            for (kind, amount) in movements(p, due, paid) {
                if let Some(a) = amount {
                    want_movements.insert((id.to_owned(), kind), a);
                }
            }
            if !cancelled {
                *units.entry(b.id.as_str()).or_default() += p.quantity;
            }
            // Listed in placement order: the last one seen is the batch's last.
            last_of.insert(b.id.as_str(), p);
        }
        tally.preorders += preorders.len();

        // Each batch holds exactly its orders' units, and locked when one crossed the
        // threshold; settled once if closed.
        let mut settled = 0;
        for b in &batches {
            let what = format!("{at}: {cid} batch {} ({:?})", b.seq, b.status);
            assert_eq!(
                units.get(b.id.as_str()).copied().unwrap_or(0),
                b.units,
                "{what}: units"
            );
            assert_eq!(
                forfeited_units.get(b.id.as_str()).copied().unwrap_or(0),
                b.forfeited_units,
                "{what}: forfeited units"
            );
            if b.status == BatchStatus::Locked {
                let last = last_of[b.id.as_str()];
                assert!(
                    last.cancelled_at.is_none(),
                    "{what}: its locking order is cancelled"
                );
                assert!(
                    b.units - last.quantity < threshold,
                    "{what}: already at its threshold before its last order"
                );
            }
            if b.ready_at.is_some() {
                let total = settles.get(b.id.as_str()).copied().unwrap_or(0);
                if total > 0 {
                    want_movements.insert((b.id.as_str().to_owned(), TxnKind::Settle), total);
                    settled += total;
                }
            }
        }

        // Acknowledged pre-orders are stored as acknowledged; the order that answered
        // "locked" is the one that crossed its batch's threshold.
        let by_id: HashMap<&str, &Preorder> =
            preorders.iter().map(|p| (p.id.as_str(), p)).collect();
        for (key, call) in &j.places {
            assert!(!end || !call.in_doubt(), "{at}: {key} still in doubt");
            let Some(ack) = call.ok().filter(|a| a.campaign_id == cid) else {
                continue;
            };
            let p = by_id.get(ack.id.as_str()).unwrap_or_else(|| {
                panic!("{at}: acknowledged pre-order {} ({key}) is missing", ack.id)
            });
            assert_eq!(
                (
                    p.consumer_id.as_str(),
                    p.quantity,
                    p.batch_id.as_str(),
                    p.batch_seq,
                    Some(ts(p.created_at))
                ),
                (
                    ack.consumer_id.as_str(),
                    ack.quantity,
                    ack.batch_id.as_str(),
                    ack.batch_seq,
                    ack.created_at
                ),
                "{at}: {key} stored otherwise than acknowledged"
            );
            let locker = batches[(p.batch_seq - 1) as usize].status == BatchStatus::Locked
                && last_of[p.batch_id.as_str()].id == p.id;
            let said = if locker {
                pb::PreorderStatus::Locked
            } else {
                pb::PreorderStatus::Pooled
            };
            assert_eq!(
                ack.status(),
                said,
                "{at}: {key} answered {:?}",
                ack.status()
            );
        }

        // The ledger: exactly the movements the orders imply, and the accounts they add
        // up to.
        let mut got: HashMap<(String, TxnKind), i64> = HashMap::new();
        let mut balances: HashMap<String, i64> = HashMap::new();
        for e in &ledger {
            let postings = e.txn.postings();
            assert_eq!(
                postings.iter().map(|p| p.amount).sum::<i64>(),
                0,
                "{at}: unbalanced {e:?}"
            );
            for p in postings {
                *balances.entry(p.account.code()).or_default() += p.amount;
            }
            let amount: i64 = postings.iter().map(|p| p.amount).filter(|a| *a > 0).sum();
            let subject = match (e.txn.kind(), &e.preorder_id, &e.batch_id) {
                (TxnKind::Settle, None, Some(b)) => b.as_str().to_owned(),
                (k, Some(p), None) if k != TxnKind::Settle => p.as_str().to_owned(),
                _ => panic!("{at}: ledger entry with a wrong subject: {e:?}"),
            };
            let prev = got.insert((subject, e.txn.kind()), amount);
            assert!(
                prev.is_none(),
                "{at}: a second {:?} movement: {e:?}",
                e.txn.kind()
            );
        }
        for ((subject, kind), amount) in &want_movements {
            assert_eq!(
                got.remove(&(subject.clone(), *kind)),
                Some(*amount),
                "{at}: {kind:?} of {subject} ({:?})",
                by_id.get(subject.as_str()).map(|p| p.status)
            );
        }
        assert!(
            got.is_empty(),
            "{at}: {cid}: movements no order explains: {got:?}"
        );
        accounts.insert(format!("holds:{cid}"), held);
        accounts.insert(format!("escrow:{cid}"), escrow);
        accounts.insert(format!("merchant:{cid}"), forfeited + settled);
        for (account, want) in &accounts {
            assert_eq!(
                balances.remove(account).unwrap_or(0),
                *want,
                "{at}: balance of {account}"
            );
        }
        assert!(
            balances.values().all(|b| *b == 0),
            "{at}: {cid}: accounts no order explains: {balances:?}"
        );
        assert_eq!(
            [
                money.deposited,
                money.held,
                money.captured,
                money.released,
                money.balances_paid,
                money.balances_outstanding,
                money.forfeited,
                money.settled,
                money.escrow,
                money.merchant
            ],
            [
                deposited,
                held,
                captured,
                released,
                balances_paid,
                outstanding,
                forfeited,
                settled,
                escrow,
                forfeited + settled
            ],
            "{at}: {cid}: campaign money"
        );
        money.check().unwrap_or_else(|e| panic!("{at}: {cid}: {e}"));
        // A second's margin: an order that arrived just before the deadline may still be
        // on its way through the store.
        if c.terms.deadline + chrono::Duration::seconds(1) < now && batches.iter().all(is_final) {
            finished.insert(cid.to_owned());
        }
        all_batches.extend(batches);
    }

    // Nothing is left in doubt once the workload is over.
    assert!(!end || j.in_doubt() == 0, "{at}: calls still in doubt");

    let audit = store.ledger_audit().await.expect("audit");
    assert!(audit.unbalanced.is_empty(), "{at}: {audit:?}");
    assert!(audit.totals.iter().all(|(_, t)| *t == 0), "{at}: {audit:?}");
    assert!(audit.hold_mismatches.is_empty(), "{at}: {audit:?}");
    tally.ledger_transactions = audit.transactions;

    // Work orders: 1..n per factory, received as stored, no batch planned twice.
    let mut planned: HashMap<String, i64> = HashMap::new();
    let mut ids = HashSet::new();
    for f in FACTORIES {
        let mut stored = Vec::new();
        loop {
            let after = stored.last().map_or(0, |w: &c2m_store::WorkOrder| w.seq);
            let page = store
                .factory_work_orders(f, after, c2m_store::factory::FEED_PAGE)
                .await
                .expect("work orders");
            if page.is_empty() {
                break;
            }
            stored.extend(page);
        }
        let seqs: Vec<i64> = stored.iter().map(|w| w.seq).collect();
        assert_eq!(
            seqs,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "{at}: {f}: sequence"
        );
        for w in &stored {
            assert!(
                ids.insert(w.id.clone()),
                "{at}: work order {} stored twice",
                w.id
            );
            assert_eq!(w.order.factory_id, f, "{at}");
            for r in &w.order.runs {
                for rb in &r.batches {
                    *planned.entry(rb.batch_id.as_str().to_owned()).or_default() += rb.units;
                }
            }
        }
        let got = received.get(f).cloned().unwrap_or_default();
        for (seq, id) in &got {
            assert_eq!(
                stored.get((*seq - 1) as usize).map(|w| &w.id),
                Some(id),
                "{at}: {f} received #{seq} as a work order the store does not have there"
            );
        }
        if end {
            assert_eq!(got.len(), stored.len(), "{at}: {f} is missing work orders");
        }
        tally.work_orders += stored.len();
    }
    for b in &all_batches {
        let units = planned.remove(b.id.as_str()).unwrap_or(0);
        let what = format!("{at}: batch {} ({:?})", b.id, b.status);
        if b.ready_at.is_some() {
            assert!(
                units <= b.paid_units(),
                "{what}: {units} units planned of {}",
                b.paid_units()
            );
            if end {
                assert_eq!(units, b.paid_units(), "{what}: not planned in full");
            }
        } else {
            assert_eq!(units, 0, "{what}: planned before it was ready");
        }
    }
    assert!(
        planned.is_empty(),
        "{at}: work orders for unknown batches: {planned:?}"
    );
    for (key, call) in &j.plans {
        assert!(!end || !call.in_doubt(), "{at}: {key} still in doubt");
        if let Some(plan) = call.ok() {
            let id = &plan.summary.as_ref().unwrap().id;
            store
                .get_plan(id)
                .await
                .unwrap_or_else(|e| panic!("{at}: acknowledged plan {id} ({key}): {e}"));
        }
    }
    tally
}

// ---------------------------------------------------------------------------------------
// Through gRPC, after a restart

/// Calls replayed at once.
const PARALLEL: usize = 8;

/// Replays the acknowledged calls of `calls` not replayed yet (all of them with `all`),
/// `PARALLEL` at a time: each must answer as it first did, as `norm` sees answers.
/// Returns the keys replayed.
/// The events outbox against the state (`docs/events.md`): every event exactly once by
/// sequence (1..n, no gap, distinct ids), and exactly the events the batches and the
/// pre-orders imply, each naming the pre-orders with their amounts: one `preorder.placed`
/// per pre-order (its deposit), one `preorder.cancelled` per cancelled one, one
/// `batch.locked` per locked batch (each live pre-order's balance) and one `balance.due`
/// per balance owed, one `balance.paid` per balance paid, one `deposit.forfeited` per
/// forfeit, one `batch.failed` per failed batch (each deposit released); production and
/// ship-date events only for locked batches. A kill can leave no change without its
/// event and no event without its change, since both commit together.
async fn check_events(db: &Opened, at: &str) -> usize {
    let store = db.store();
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |e: &c2m_domain::events::Event| e.seq);
        let page = store
            .list_events(after, None, c2m_store::events::EVENTS_PAGE)
            .await
            .expect("events");
        if page.is_empty() {
            break;
        }
        events.extend(page.into_iter().map(|e| {
            e.typed()
                .unwrap_or_else(|| panic!("{at}: a kind written here reads typed: {e:?}"))
        }));
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "{at}: events numbered without gaps");
    }
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "{at}: an event id twice");
    assert_eq!(
        store.last_event_seq().await.expect("last"),
        events.len() as i64,
        "{at}: the counter"
    );

    // (kind, batch, pre-order) -> the amounts the events name, in order.
    type Told = BTreeMap<(&'static str, String, String), Vec<Option<i64>>>;
    let mut want: Told = BTreeMap::new();
    let mut want_batches: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    let mut locked = HashSet::new();
    for c in every(|p| store.list_campaigns(p)).await {
        let batches = store.list_batches(&c.id).await.expect("batches");
        let filter = PreorderFilter::Campaign(c.id.clone());
        let preorders = every(|p| store.list_preorders(&filter, p)).await;
        for b in &batches {
            let kind = match b.status {
                BatchStatus::Open => continue,
                BatchStatus::Locked => "batch.locked",
                BatchStatus::Failed => "batch.failed",
            };
            if b.status == BatchStatus::Locked {
                locked.insert(b.id.to_string());
            }
            want_batches.insert((kind, b.id.to_string()), 1);
        }
        for p in &preorders {
            let b = batches
                .iter()
                .find(|b| b.id == p.batch_id)
                .unwrap_or_else(|| panic!("{at}: {} has no batch", p.id));
            let mut tell = |kind: &'static str, amount: Option<i64>| {
                want.entry((kind, p.batch_id.to_string(), p.id.to_string()))
                    .or_default()
                    .push(amount);
            };
            let deposit = p.deposit_total.minor;
            tell("preorder.placed", Some(deposit));
            if p.cancelled_at.is_some() {
                tell("preorder.cancelled", Some(deposit));
                continue;
            }
            match b.status {
                BatchStatus::Open => {}
                BatchStatus::Failed => tell("batch.failed", Some(deposit)),
                BatchStatus::Locked => {
                    let due = p.money.balance_due.map_or(0, |m| m.minor);
                    tell("batch.locked", Some(due));
                    if due > 0 {
                        tell("balance.due", Some(due));
                        if p.money.balance_paid_at.is_some() {
                            tell("balance.paid", Some(due));
                        }
                    }
                    if p.money.forfeited_at.is_some() {
                        tell("deposit.forfeited", Some(deposit));
                    }
                }
            }
        }
    }
    let mut got: Told = BTreeMap::new();
    let mut got_batches: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    for e in &events {
        let kind = e.data.kind();
        let batch = e
            .batch_id
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default();
        match kind {
            "production.stage_changed" | "ship_date.changed" => {
                assert!(
                    locked.contains(&batch),
                    "{at}: {kind} of batch {batch}, not locked"
                );
                continue;
            }
            "batch.locked" | "batch.failed" => {
                *got_batches.entry((kind, batch.clone())).or_default() += 1;
            }
            _ => {}
        }
        for p in e.data.preorders() {
            got.entry((kind, batch.clone(), p.preorder_id.to_string()))
                .or_default()
                .push(p.amount.map(|m| m.minor));
        }
    }
    assert_eq!(got_batches, want_batches, "{at}: batch events");
    if got != want {
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(*v))
            .collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .collect();
        panic!("{at}: events differ from the state; stored but not implied (or other amounts): {extra:?}; implied but not stored: {missing:?}");
    }
    events.len()
}

async fn replay_each<Req, Resp, N, F, Fut>(
    c: &Clients,
    calls: &Calls<Req, Resp>,
    all: bool,
    what: &str,
    send: F,
    norm: fn(&Resp) -> N,
) -> Vec<String>
where
    Req: Clone,
    N: PartialEq + std::fmt::Debug,
    F: Fn(Clients, Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let due = calls.iter().filter_map(|(key, call)| {
        let ok = call.ok().filter(|_| all || !call.replayed)?;
        Some((key, send(c.clone(), call.req.clone()), ok))
    });
    stream::iter(due)
        .map(|(key, again, ok)| async move {
            let again = again
                .await
                .unwrap_or_else(|s| panic!("{what}: replay of {key}: {s:?}"));
            assert_eq!(norm(&again), norm(ok), "{what}: replay of {key}");
            key.clone()
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await
}

fn same<T: Clone>(t: &T) -> T {
    t.clone()
}

/// Checks that every acknowledged pre-order is there as acknowledged, and replays the
/// acknowledged calls not replayed yet (all of them with `all`): each must answer as it
/// first did. Returns how many calls were replayed.
async fn check_live(
    world: &World,
    c: &mut Clients,
    rng: &mut StdRng,
    all: bool,
    at: &str,
) -> usize {
    let j = world.journal(|j| j.clone());
    let campaigns = replay_each(
        c,
        &j.campaigns,
        all,
        &format!("{at}: campaign"),
        |mut c, req| async move {
            c.campaigns
                .create_campaign(req)
                .await
                .map(|r| r.into_inner())
        },
        // The status is as of the answer.
        |c: &pb::Campaign| pb::Campaign {
            status: 0,
            ..c.clone()
        },
    )
    .await;
    let places = replay_each(
        c,
        &j.places,
        all,
        &format!("{at}: place"),
        |mut c, req| async move {
            c.preorders
                .place_preorder(req)
                .await
                .map(|r| r.into_inner())
        },
        same,
    )
    .await;
    let cancels = replay_each(
        c,
        &j.cancels,
        all,
        &format!("{at}: cancel"),
        |mut c, req| async move {
            c.preorders
                .cancel_preorder(req)
                .await
                .map(|r| r.into_inner())
        },
        same,
    )
    .await;
    let pays = replay_each(
        c,
        &j.pays,
        all,
        &format!("{at}: payment"),
        |mut c, req| async move { c.preorders.pay_balance(req).await.map(|r| r.into_inner()) },
        same,
    )
    .await;
    let plans = replay_each(
        c,
        &j.plans,
        all,
        &format!("{at}: planning"),
        |mut c, req| async move { c.planning.run_planning(req).await.map(|r| r.into_inner()) },
        // The plan's ids; its work orders' states are as of the answer.
        |p: &pb::Plan| {
            (
                p.summary.as_ref().map(|s| s.id.clone()),
                p.batch_ids.clone(),
                p.work_orders
                    .iter()
                    .map(|w| (w.id.clone(), w.factory_id.clone(), w.seq))
                    .collect::<Vec<_>>(),
            )
        },
    )
    .await;
    let replayed = campaigns.len() + places.len() + cancels.len() + pays.len() + plans.len();

    // Every acknowledged pre-order, as acknowledged; cancels and payments still hold.
    let mut by_campaign: BTreeMap<&str, Vec<&pb::Preorder>> = BTreeMap::new();
    for ack in j.places.values().filter_map(|call| call.ok()) {
        by_campaign
            .entry(ack.campaign_id.as_str())
            .or_default()
            .push(ack);
    }
    let j = &j;
    stream::iter(by_campaign)
        .map(|(campaign, acked)| {
            let mut c = c.clone();
            async move {
                let listed: HashMap<String, pb::Preorder> = all_preorders(&mut c, campaign)
                    .await
                    .into_iter()
                    .map(|p| (p.id.clone(), p))
                    .collect();
                for ack in acked {
                    let p = listed.get(&ack.id).unwrap_or_else(|| {
                        panic!("{at}: acknowledged pre-order {} is missing", ack.id)
                    });
                    assert_eq!(
                        (
                            &p.campaign_id,
                            &p.consumer_id,
                            p.quantity,
                            &p.batch_id,
                            p.batch_seq,
                            &p.created_at
                        ),
                        (
                            &ack.campaign_id,
                            &ack.consumer_id,
                            ack.quantity,
                            &ack.batch_id,
                            ack.batch_seq,
                            &ack.created_at
                        ),
                        "{at}: pre-order {} not as acknowledged",
                        ack.id
                    );
                    // (Whether an order was cancelled without a cancel that stands is
                    // checked on the store, where the workload cannot move under the check.)
                    if j.cancels.get(&ack.id).is_some_and(|c| c.ok().is_some()) {
                        assert_eq!(
                            p.status(),
                            pb::PreorderStatus::Cancelled,
                            "{at}: {}",
                            ack.id
                        );
                    }
                    if let Some(paid) = j.pays.get(&ack.id).and_then(|c| c.ok()) {
                        assert_eq!(p.money_state(), pb::MoneyState::Paid, "{at}: {}", ack.id);
                        assert_eq!(p.balance_paid, paid.balance_paid, "{at}: {}", ack.id);
                    }
                }
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;

    // A key reused for another request is refused.
    let acked: Vec<&Call<_, _>> = j.places.values().filter(|c| c.ok().is_some()).collect();
    if !acked.is_empty() {
        let call = acked[rng.gen_range(0..acked.len())];
        let mut other = call.req.clone();
        other.consumer_id.push_str("-other");
        let err = c.preorders.place_preorder(other).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{at}: {err:?}");
    }

    world.journal(|j| {
        for k in campaigns {
            j.campaigns.get_mut(&k).unwrap().replayed = true;
        }
        for k in places {
            j.places.get_mut(&k).unwrap().replayed = true;
        }
        for k in cancels {
            j.cancels.get_mut(&k).unwrap().replayed = true;
        }
        for k in pays {
            j.pays.get_mut(&k).unwrap().replayed = true;
        }
        for k in plans {
            j.plans.get_mut(&k).unwrap().replayed = true;
        }
    });
    replayed
}

// ---------------------------------------------------------------------------------------
// The run

async fn start(db: &Db, dir: &std::path::Path) -> ServerProcess {
    ServerProcess::spawn_with(&db.url(), dir, &["--plan-every", "1s"]).await
}

async fn kill(server: &mut ServerProcess) {
    server.kill();
    let _ = server.child.wait().await;
}

/// Polls `check` every 100 ms until it holds, for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Work orders stored per factory (seq -> id), read through gRPC.
async fn stored_work_orders(c: &mut Clients) -> BTreeMap<String, BTreeMap<i64, String>> {
    let mut out: BTreeMap<String, BTreeMap<i64, String>> = BTreeMap::new();
    for w in all_work_orders(c).await {
        out.entry(w.factory_id).or_default().insert(w.seq, w.id);
    }
    out
}

/// Every campaign, through gRPC.
async fn all_campaigns(c: &mut Clients) -> Vec<pb::Campaign> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .campaigns
            .list_campaigns(pb::ListCampaignsRequest {
                page_size: 500,
                page_token: token.clone(),
            })
            .await
            .expect("campaigns")
            .into_inner();
        out.extend(page.campaigns);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn mixed_workload_across_sigkills(db: Db, dir: &std::path::Path) {
    let rounds: usize = env_or("C2M_MIXED_CRASH_ROUNDS", 20);
    let seed: u64 = env_or("C2M_CRASH_SEED", rand::random());
    let name = match db {
        Db::Sqlite(_) => "sqlite",
        Db::Postgres(_) => "postgres",
    };
    eprintln!("mixed crash test ({name}): {rounds} rounds, C2M_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut server = start(&db, dir).await;
    let mut c = Clients::connect(server.addr).await;
    // Enough ink for any number of rounds (it has no supplier; each plan reserves some).
    let catalogue = PHONE_CASES.replace("on_hand = 1.0", "on_hand = 100000.0");
    assert_ne!(catalogue, PHONE_CASES);
    import(&mut c, "import", &catalogue, pb::ImportMode::Replace)
        .await
        .expect("import");

    let (addr_tx, addr_rx) = watch::channel(Some(server.addr));
    let world = Arc::new(World {
        addr: addr_rx,
        journal: Mutex::new(Journal::default()),
        open: Mutex::new(Vec::new()),
        received: FACTORIES.iter().map(|_| Default::default()).collect(),
        resent: AtomicUsize::new(0),
        paused: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let mut workers: Vec<JoinHandle<()>> = vec![
        tokio::spawn(director(world.clone(), rng.gen())),
        tokio::spawn(planner(world.clone(), rng.gen())),
    ];
    for t in 0..PLACERS {
        workers.push(tokio::spawn(placer(world.clone(), t, rng.gen())));
    }
    for k in 0..PAYERS {
        workers.push(tokio::spawn(payer(world.clone(), k, rng.gen())));
    }
    let factories: Vec<JoinHandle<()>> = (0..FACTORIES.len())
        .map(|i| tokio::spawn(factory_client(world.clone(), i)))
        .collect();

    let context = |round: &str| format!("{name} {round} (C2M_CRASH_SEED={seed})");
    let mut replayed = 0;
    let mut finished = HashSet::new();
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..2_000))).await;
        kill(&mut server).await;
        let _ = addr_tx.send(None);
        world.paused.store(true, Ordering::Relaxed);
        if let Some(i) = workers.iter().position(|w| w.is_finished()) {
            workers.swap_remove(i).await.expect("a client task failed");
        }
        let at = context(&format!("after kill {}", round + 1));
        let t = std::time::Instant::now();
        let journal = world.journal(|j| j.clone());
        db.settle().await;
        let opened = db.open().await;
        let tally = check_store(
            &opened,
            &journal,
            &world.received(),
            &mut finished,
            false,
            &at,
        )
        .await;
        let events = check_events(&opened, &at).await;
        opened.close().await;
        let checked = t.elapsed();

        server = start(&db, dir).await;
        let _ = addr_tx.send(Some(server.addr));
        let restarted = t.elapsed() - checked;
        c = Clients::connect(server.addr).await;
        let n = check_live(&world, &mut c, &mut rng, false, &at).await;
        world.paused.store(false, Ordering::Relaxed);
        replayed += n;
        eprintln!(
            "kill {}: store checked in {:.1} s ({} campaigns, {} final before; {} pre-orders read; \
             {events} events), restarted in {:.1} s, {n} calls replayed in {:.1} s",
            round + 1,
            checked.as_secs_f64(),
            tally.campaigns,
            tally.finished,
            tally.preorders,
            restarted.as_secs_f64(),
            (t.elapsed() - checked - restarted).as_secs_f64()
        );
    }

    // The workload ends; every deadline and balance window passes; the last cycles run.
    world.stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(GIVE_UP, w)
            .await
            .expect("a client task did not stop")
            .expect("a client task failed");
    }
    let latest = all_campaigns(&mut c)
        .await
        .iter()
        .map(|cmp| {
            from_ts(&cmp.deadline)
                + chrono::Duration::seconds(cmp.balance_window_seconds.unwrap_or(0))
        })
        .max();
    if let Some(latest) = latest {
        let wait = (latest - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_secs(1)).await;
    }
    let cl = c.clone();
    eventually(
        "every batch failed or closed",
        Duration::from_secs(30),
        || {
            let mut c = cl.clone();
            async move {
                for cmp in all_campaigns(&mut c).await {
                    for p in all_preorders(&mut c, &cmp.id).await {
                        if matches!(
                            p.money_state(),
                            pb::MoneyState::DepositHeld | pb::MoneyState::BalanceDue
                        ) {
                            return false;
                        }
                    }
                }
                true
            }
        },
    )
    .await;
    for i in 0.. {
        assert!(i < 20, "planning does not end");
        let key = format!("final-{i}");
        let req = pb::RunPlanningRequest {
            idempotency_key: key.clone(),
        };
        let r = run_planning(&mut c, &key).await;
        match &r {
            Ok(plan) => assert_ne!(
                plan.summary.as_ref().unwrap().status,
                pb::PlanStatus::Infeasible as i32,
                "{:?}",
                plan.diagnosis
            ),
            Err(s) if s.code() == Code::FailedPrecondition => {}
            Err(s) => panic!("{key}: {s:?}"),
        }
        let done = r.is_err();
        world.journal(|j| {
            let mut call = Call::new(req);
            call.outcome = settle(r);
            j.plans.insert(key, call)
        });
        if done {
            break;
        }
    }
    eventually("an empty planning queue", Duration::from_secs(30), || {
        let mut c = cl.clone();
        async move {
            c.planning
                .list_queued_batches(pb::ListQueuedBatchesRequest {})
                .await
                .expect("queue")
                .into_inner()
                .batches
                .is_empty()
        }
    })
    .await;
    let stored = stored_work_orders(&mut c).await;
    let w = world.clone();
    eventually("the factories to catch up", Duration::from_secs(30), || {
        let got = w.received();
        let done = stored
            .iter()
            .all(|(f, m)| got.get(f).map_or(0, |g| g.len()) >= m.len());
        async move { done }
    })
    .await;

    // Killed once more with everything settled: the final state, then every
    // acknowledged call replayed once more.
    kill(&mut server).await;
    let _ = addr_tx.send(None);
    let at = context("at the end");
    let journal = world.journal(|j| j.clone());
    assert_eq!(journal.in_doubt(), 0, "{at}: calls left in doubt");
    db.settle().await;
    let opened = db.open().await;
    let tally = check_store(
        &opened,
        &journal,
        &world.received(),
        &mut finished,
        true,
        &at,
    )
    .await;
    let events = check_events(&opened, &at).await;
    opened.close().await;
    server = start(&db, dir).await;
    let _ = addr_tx.send(Some(server.addr));
    c = Clients::connect(server.addr).await;
    let replayed_at_end = check_live(&world, &mut c, &mut rng, true, &at).await;
    for f in factories {
        f.abort();
    }
    kill(&mut server).await;

    let j = world.journal(|j| j.clone());
    fn tallied<Req, Resp>(calls: &Calls<Req, Resp>) -> String {
        let ok = calls.values().filter(|c| c.ok().is_some()).count();
        let refused = calls.values().filter(|c| c.refused()).count();
        format!("{ok} acknowledged, {refused} refused")
    }
    let redelivered: usize = world
        .received
        .iter()
        .map(|r| {
            let r = r.lock().unwrap();
            r.deliveries - r.by_seq.len()
        })
        .sum();
    eprintln!(
        "mixed crash test ({name}): {} kills; campaigns {}; pre-orders {}; cancels {}; \
         payments {}; plans {}; {} calls answered only after a resend; store: {tally:?}; \
         {} work orders delivered, {redelivered} redeliveries recognised by id; \
         {replayed} + {replayed_at_end} replays answered as first; {events} events",
        rounds + 1,
        tallied(&j.campaigns),
        tallied(&j.places),
        tallied(&j.cancels),
        tallied(&j.pays),
        tallied(&j.plans),
        world.resent.load(Ordering::Relaxed),
        tally.work_orders,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_survives_sigkills_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("c2m.db"));
    mixed_workload_across_sigkills(db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_survives_sigkills_on_postgres() {
    let Some(admin) = pg_admin_url() else { return };
    let url = fresh_pg_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Postgres(url.clone());
    mixed_workload_across_sigkills(db, dir.path()).await;
    drop_pg_database(&admin, &url).await;
}
