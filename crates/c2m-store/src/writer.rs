//! Group commit: the one writer core both backends run their writes through.
//!
//! Every write on a campaign holds the campaign's lock (SQLite's one writer, PostgreSQL's
//! row lock), so writes on one campaign run one after another whatever else happens, and
//! each used to pay for its own commit (one `fsync`, one WAL flush) while the lock was
//! held: a campaign could take no more orders per second than the disk has flushes. So the
//! writes waiting together are run as a group, in one transaction:
//!
//! - A backend queues writes ([`Queued`], built from an [`Op`]) and hands this module what
//!   it took off the queue: SQLite's writer task takes every write waiting for the file
//!   (`sqlite/mod.rs`), PostgreSQL's per-campaign writers the writes waiting for one
//!   campaign (`postgres/writers.rs`). The queue decides only which writes share a
//!   transaction; the database's locks and constraints still order and check them.
//! - A lone write runs exactly as it would without grouping: its own transaction, its own
//!   retries ([`run_alone`]).
//! - A group runs in one transaction ([`run_group`]). Where the group is one campaign's,
//!   the transaction first takes that campaign's lock once
//!   ([`Tx::hold_campaign`]) and looks up every idempotency key the group will ask for
//!   ([`Tx::prefetch_keys`]). Each write
//!   then runs in a savepoint of its own: one that is refused (or fails) is rolled back to
//!   its savepoint alone, one that succeeds is kept. Placements next to each other are the
//!   exception: each such run is admitted in memory and written together
//!   ([`crate::pooling::place_preorders`]), campaign by campaign, since a refused placement
//!   writes nothing and needs no savepoint. The savepoint statements share round trips:
//!   the release of one write's savepoint goes with the opening of the next write's, and
//!   the last one is left to the commit.
//! - The group commits once, one flush for all of it, and only then is any write answered,
//!   so no caller hears of a write that is not durable, nor of a refusal computed from
//!   writes that were then lost.
//! - Each write sees exactly the writes before it in the group, as it would if each had
//!   its own transaction in that order; an idempotency key recorded by one write is
//!   replayed to a later one in the same group. The write logic ([`crate::pooling`],
//!   [`crate::ledger`], ...) is the same on both paths.
//! - Retries keep the semantics of the one-transaction path
//!   ([`crate::dialect::Dialect::retryable`]: on PostgreSQL a serialization failure, a
//!   deadlock or a concurrent use of an idempotency key): the whole group is rolled back and
//!   run again, up to [`ATTEMPTS`] times. If the group still fails, or fails for any other
//!   reason than one write's own refusal (a savepoint, the commit, a constraint checked at
//!   commit), nothing of it was written, and its writes are run again one transaction
//!   each, so each gets its own result or error. If the group's transaction cannot even
//!   begin or take its lock, each write gets that error: running them alone would only
//!   meet the same wait once per write.
//!
//! Because the writer (not the caller) runs the write, a caller that gives up (a client
//! that disconnects) cannot leave it half done; it completes or rolls back as a whole and
//! the idempotency key gives a retry its result.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::{Database, Pool};
use tokio::sync::oneshot;
use tracing::Instrument;

use c2m_domain::{CampaignId, Preorder};

use crate::dialect::{Backend, Begin, Conn, Dialect, Run, Tx};
use crate::pooling::{place_preorders, Placing};
use crate::Result;
use crate::StoreError;

/// How many times a write transaction is tried before its error is returned.
pub const ATTEMPTS: u32 = 5;

/// What a write runs: a function of the transaction and the write's arguments.
pub(crate) type RunFn<D, A, T> = for<'t> fn(&'t mut Tx<'_, D>, &'t A) -> BoxFuture<'t, Result<T>>;

/// One write: what it needs (owned, so that it can wait in a queue) and what it runs in
/// the transaction it is given, as often as the transaction is tried.
pub(crate) struct Op<D: Database, A, T> {
    args: A,
    run: RunFn<D, A, T>,
    /// The idempotency key the write checks first (operation name, key), if any: a group
    /// of one campaign looks all of them up in one statement before its writes run.
    key: Option<(&'static str, String)>,
    /// For a placement: the request as a run of placements takes it, and the run's answer
    /// as this write's output.
    place: Option<PlaceHooks<A, T>>,
    /// The write never appends events, so its commit need not wake event readers
    /// ([`Op::quiet`]).
    pub(crate) quiet: bool,
}

struct PlaceHooks<A, T> {
    placing: for<'a> fn(&'a A) -> Placing<'a>,
    placed: fn(Result<Preorder>) -> Result<T>,
}

impl<D: Database, A, T> Op<D, A, T> {
    pub(crate) fn new(args: A, run: RunFn<D, A, T>) -> Self {
        Op {
            args,
            run,
            key: None,
            place: None,
            quiet: false,
        }
    }

    /// Marks a write that never appends events (the webhook worker's bookkeeping): its
    /// commit does not wake event readers, which would otherwise read again for nothing
    /// (and wake the worker that wrote it).
    pub(crate) fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// The idempotency key the write looks up first.
    pub(crate) fn key(mut self, operation: &'static str, key: &str) -> Self {
        self.key = Some((operation, key.to_owned()));
        self
    }

    /// Marks the write as a placement, which a group writes with the placements next to it
    /// ([`place_preorders`]) instead of running it alone.
    pub(crate) fn placement(
        mut self,
        placing: for<'a> fn(&'a A) -> Placing<'a>,
        placed: fn(Result<Preorder>) -> Result<T>,
    ) -> Self {
        self.place = Some(PlaceHooks { placing, placed });
        self
    }
}

/// How a write's run ended, as far as its transaction is concerned.
pub(crate) enum Ran {
    Done,
    /// Refused or failed on its own: its savepoint (or transaction) is rolled back.
    Failed,
    /// Failed in a way that running the whole transaction again may cure
    /// ([`Dialect::retryable`]); the write keeps the error in case the retries run out.
    Retry,
}

/// A queued write, its result once run, and where to send it.
#[async_trait]
pub(crate) trait Queued<D: Database>: Send {
    /// Runs the write and keeps its result (replacing an earlier attempt's).
    async fn run(&mut self, tx: &mut Tx<'_, D>) -> Ran;
    /// Replaces the result with an error about the transaction around the write.
    fn fail(&mut self, error: StoreError);
    /// Sends the result to the caller (who may have stopped listening).
    fn answer(&mut self);
    /// [`Op::key`].
    fn idempotency_key(&self) -> Option<(&'static str, String)>;
    /// [`Op::placement`]: the placement this write is, if it is one.
    fn placement(&self) -> Option<Placing<'_>>;
    /// Keeps the answer a run of placements gave this one.
    fn placed(&mut self, answer: Result<Preorder>);
}

/// A write on its way through a writer.
pub(crate) struct Job<D: Database, A, T> {
    op: Op<D, A, T>,
    result: Option<Result<T>>,
    reply: Option<oneshot::Sender<Result<T>>>,
    /// The caller's span, so the work shows up under the store call that asked for it.
    span: tracing::Span,
}

/// What a caller waits on for a queued write's result.
pub(crate) type Answer<T> = oneshot::Receiver<Result<T>>;

impl<D: Database, A, T> Job<D, A, T> {
    /// A job to queue, and where its answer will come.
    pub(crate) fn new(op: Op<D, A, T>) -> (Self, Answer<T>) {
        let (reply, answer) = oneshot::channel();
        let mut job = Self::direct(op);
        job.reply = Some(reply);
        (job, answer)
    }

    /// A job the caller runs itself ([`run_now`]).
    fn direct(op: Op<D, A, T>) -> Self {
        Job {
            op,
            result: None,
            reply: None,
            span: tracing::Span::current(),
        }
    }
}

#[async_trait]
impl<D, A, T> Queued<D> for Job<D, A, T>
where
    D: Dialect,
    A: Send + Sync + 'static,
    T: Send + 'static,
{
    async fn run(&mut self, tx: &mut Tx<'_, D>) -> Ran {
        let result = guard((self.op.run)(tx, &self.op.args))
            .instrument(self.span.clone())
            .await;
        let ran = match &result {
            Ok(_) => Ran::Done,
            Err(e) if D::retryable(e) => Ran::Retry,
            Err(_) => Ran::Failed,
        };
        self.result = Some(result);
        ran
    }

    fn fail(&mut self, error: StoreError) {
        self.result = Some(Err(error));
    }

    fn answer(&mut self) {
        if let (Some(reply), Some(result)) = (self.reply.take(), self.result.take()) {
            // The caller may be gone; its write stands and a retry replays it.
            let _ = reply.send(result);
        }
    }

    fn idempotency_key(&self) -> Option<(&'static str, String)> {
        self.op.key.clone()
    }

    fn placement(&self) -> Option<Placing<'_>> {
        self.op.place.as_ref().map(|p| (p.placing)(&self.op.args))
    }

    fn placed(&mut self, answer: Result<Preorder>) {
        self.result = Some(match &self.op.place {
            Some(p) => (p.placed)(answer),
            None => Err(StoreError::Corrupt(
                "a placement's answer was given to a write that is not a placement".into(),
            )),
        });
    }
}

/// Runs a write's logic, turning a panic in it into [`StoreError::Panicked`] for that
/// write alone. The writer runs other callers' writes on the same task (SQLite's one
/// writer, a PostgreSQL campaign's writer): without this, one write that panicked (a
/// factory's shipment of `i64::MAX` units overflowed in a debug build) ended the task, and
/// every later write of every caller failed as UNAVAILABLE until a restart. The write's
/// transaction state is not trusted after it: its savepoint (or transaction) is rolled
/// back like any failed write's.
async fn guard<T>(write: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(write)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(StoreError::Panicked(why))
        })
}

/// The error a caller sees when its writer is gone (it panicked, the store closed, or the
/// runtime is shutting down).
pub(crate) fn writer_gone() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

/// Runs `op` in a transaction of its own, in the caller's task, retried as
/// [`Dialect::retryable`] says: the path of writes that are not grouped.
pub(crate) async fn run_now<D, A, T>(pool: &Pool<D>, op: Op<D, A, T>) -> Result<T>
where
    D: Backend,
    A: Send + Sync + 'static,
    T: Send + 'static,
{
    let mut job = Job::direct(op);
    run_alone(&mut pool.clone(), &mut job).await;
    job.result
        .unwrap_or_else(|| Err(StoreError::Corrupt("a write ran and gave no result".into())))
}

/// What the writers of one store have done so far, for tests and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Grouped writes run, each answered once.
    pub writes: u64,
    /// Transactions begun for them, retries included; `writes / transactions` is about
    /// the mean group size.
    pub transactions: u64,
    /// Groups of more than one write that committed together.
    pub groups: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes: AtomicU64,
    transactions: AtomicU64,
    groups: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            writes: self.writes.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
        }
    }
}

/// Runs one group taken off a queue to the end (committed together, or failing that one
/// by one, as the module docs say) and answers each write. Its transactions begin on
/// `source`; `campaign` is the campaign every write of the group is on, when the queue is
/// per campaign.
pub(crate) async fn run<D: Backend>(
    source: &mut impl Begin<D>,
    campaign: Option<&CampaignId>,
    group: &mut [Box<dyn Queued<D>>],
    counters: &Counters,
) {
    counters
        .writes
        .fetch_add(group.len() as u64, Ordering::Relaxed);
    if let [job] = group {
        let tries = run_alone(source, job.as_mut()).await;
        counters.transactions.fetch_add(tries, Ordering::Relaxed);
    } else {
        run_together(source, campaign, group, counters).await;
    }
    for job in group.iter_mut() {
        job.answer();
    }
}

async fn run_together<D: Backend>(
    source: &mut impl Begin<D>,
    campaign: Option<&CampaignId>,
    group: &mut [Box<dyn Queued<D>>],
    counters: &Counters,
) {
    let mut attempt = 1;
    loop {
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        match run_group(source, campaign, group).await {
            Ok(()) => {
                counters.groups.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(Abort::Retry(why)) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, why, size = group.len(), "retrying group");
                attempt += 1;
            }
            Err(Abort::Start(e)) => {
                tracing::warn!(error = %e, size = group.len(), "a group could not start");
                let copy = unstarted(&e);
                let mut jobs = group.iter_mut();
                if let Some(first) = jobs.next() {
                    first.fail(e);
                }
                for job in jobs {
                    job.fail(copy());
                }
                return;
            }
            Err(abort) => {
                tracing::warn!(error = %abort, size = group.len(), "group commit failed; running its writes one by one");
                for job in group.iter_mut() {
                    let tries = run_alone(source, job.as_mut()).await;
                    counters.transactions.fetch_add(tries, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

/// Why a group's transaction was given up (and rolled back).
#[derive(Debug)]
enum Abort {
    /// Running the whole group again may succeed; the reason is for the log.
    Retry(String),
    /// The transaction could not begin or take its lock (no connection, the lock wait
    /// timed out): every write gets the error.
    Start(StoreError),
    /// Something about the group itself failed (a savepoint, the commit): each write will
    /// run alone.
    Fail(StoreError),
}

impl Abort {
    fn new<D: Dialect>(e: impl Into<StoreError>, start: bool) -> Self {
        let e = e.into();
        if D::retryable(&e) {
            Abort::Retry(e.to_string())
        } else if start {
            Abort::Start(e)
        } else {
            Abort::Fail(e)
        }
    }
}

/// `StoreError` is not `Clone`: the rest of a group that could not start get a database
/// error with the same message (callers see the same status; retry with the same key).
fn unstarted(e: &StoreError) -> impl Fn() -> StoreError {
    let message = format!("the group's transaction did not start: {e}");
    move || StoreError::Database(sqlx::Error::Io(std::io::Error::other(message.clone())))
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::Retry(why) => write!(f, "{why} (retries used up)"),
            Abort::Start(e) | Abort::Fail(e) => write!(f, "{e}"),
        }
    }
}

/// Where a group's transaction stands with the savepoint its writes run in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// None is open.
    None,
    /// One is open and holds nothing yet (or was rolled back to).
    Clean,
    /// One is open and holds writes to keep: released before the next write opens one.
    Kept,
}

/// All writes of the group in one transaction: see the module docs.
async fn run_group<D: Backend>(
    source: &mut impl Begin<D>,
    campaign: Option<&CampaignId>,
    group: &mut [Box<dyn Queued<D>>],
) -> Result<(), Abort> {
    let fail = |e: StoreError| Abort::new::<D>(e, false);
    let mut tx = source.begin().await.map_err(|e| Abort::new::<D>(e, true))?;
    if let Some(campaign) = campaign {
        tx.hold_campaign(campaign)
            .await
            .map_err(|e| Abort::new::<D>(e, true))?;
        let keys: Vec<_> = group.iter().filter_map(|j| j.idempotency_key()).collect();
        tx.prefetch_keys(&keys).await.map_err(fail)?;
    }
    let mut savepoint = Savepoint::None;
    let mut next = 0;
    while next < group.len() {
        let placements = group[next..]
            .iter()
            .take_while(|job| job.placement().is_some())
            .count();
        if placements > 0 {
            // A run of placements: written together, each answered as if alone. Anything
            // that fails the run as a whole aborts the group (see `place_preorders`).
            place_run(&mut tx, &mut group[next..next + placements])
                .await
                .map_err(fail)?;
            next += placements;
            if savepoint == Savepoint::Clean {
                savepoint = Savepoint::Kept;
            }
            continue;
        }
        let open = match savepoint {
            Savepoint::None => Some("SAVEPOINT op"),
            Savepoint::Clean => None,
            Savepoint::Kept => Some("RELEASE SAVEPOINT op; SAVEPOINT op"),
        };
        if let Some(sql) = open {
            tx.conn().batch(sql).await.map_err(|e| fail(e.into()))?;
        }
        let events = tx.events.len();
        savepoint = match group[next].run(&mut tx).await {
            Ran::Done => Savepoint::Kept,
            Ran::Failed => {
                // The write's events go with its savepoint.
                tx.events.truncate(events);
                tx.conn()
                    .batch("ROLLBACK TO SAVEPOINT op")
                    .await
                    .map_err(|e| fail(e.into()))?;
                Savepoint::Clean
            }
            // Dropping the transaction rolls it back.
            Ran::Retry => return Err(Abort::Retry("a write's error".into())),
        };
        next += 1;
    }
    crate::events::flush(&mut tx).await.map_err(fail)?;
    tx.commit().await.map_err(|e| fail(e.into()))
}

/// Writes a run of placements together, campaign by campaign, and gives each its answer.
/// The run's placements were all waiting at once, none answered yet, so taking them
/// campaign by campaign (each campaign's in arrival order) is one of the orders they
/// could have run in.
async fn place_run<D: Backend>(tx: &mut Tx<'_, D>, run: &mut [Box<dyn Queued<D>>]) -> Result<()> {
    let mut campaigns: Vec<CampaignId> = Vec::new();
    for p in run.iter().filter_map(|job| job.placement()) {
        if !campaigns.contains(&p.req.campaign_id) {
            campaigns.push(p.req.campaign_id.clone());
        }
    }
    for campaign in &campaigns {
        let (mine, answers) = {
            let (mine, placing): (Vec<usize>, Vec<Placing<'_>>) = run
                .iter()
                .enumerate()
                .filter_map(|(i, job)| job.placement().map(|p| (i, p)))
                .filter(|(_, p)| p.req.campaign_id == *campaign)
                .unzip();
            (mine, guard(place_preorders(tx, campaign, &placing)).await?)
        };
        for (i, answer) in mine.into_iter().zip(answers) {
            run[i].placed(answer);
        }
    }
    Ok(())
}

/// One write in its own transaction, retried as [`Dialect::retryable`] says: the path
/// without grouping. Returns the transactions used.
async fn run_alone<D: Backend>(source: &mut impl Begin<D>, job: &mut dyn Queued<D>) -> u64 {
    let mut attempt = 1;
    loop {
        let mut tx = match source.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                job.fail(e.into());
                return attempt;
            }
        };
        let again = match job.run(&mut tx).await {
            Ran::Done => match commit(tx).await {
                Ok(()) => return attempt,
                Err(e) => {
                    let again = D::retryable(&e);
                    job.fail(e);
                    again
                }
            },
            ran @ (Ran::Failed | Ran::Retry) => {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rollback failed");
                }
                matches!(ran, Ran::Retry)
            }
        };
        if !again || u64::from(ATTEMPTS) <= attempt {
            return attempt;
        }
        tracing::debug!(attempt, "retrying transaction");
        attempt += 1;
    }
}

/// Writes the transaction's events ([`crate::events::flush`]), then commits; a failure
/// rolls the whole transaction back.
async fn commit<D: Backend>(mut tx: Tx<'_, D>) -> Result<()> {
    match crate::events::flush(&mut tx).await {
        Ok(()) => Ok(tx.commit().await?),
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(e)
        }
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    //! The writer core on both backends, with writes of its own on a scratch table. On
    //! the current-thread runtime every write below is queued before the writer runs, so
    //! they form one group.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use futures::future::join_all;

    use c2m_domain::{CampaignId, DomainError};

    use super::{Op, WriterStats};
    use crate::conformance::{drop_pg_database, fresh_pg_database};
    use crate::dialect::{Backend, Columns, Conn, Dialect, Run, Tx};
    use crate::engine::{Engine, Lane};
    use crate::postgres::PgStore;
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{Result, StoreError};

    /// Inserts `x` into `scratch`; then fails if `refuse`, leaves a foreign key broken
    /// (checked only at commit) if `break_at_commit`, or raises a serialization failure
    /// the first time it runs if `conflict_once` is still set (PostgreSQL only).
    #[derive(Default)]
    struct Insert {
        x: i64,
        refuse: bool,
        /// Panics after its insert, as a bug in a write's logic would.
        panic: bool,
        break_at_commit: bool,
        conflict_once: Option<Arc<AtomicBool>>,
    }

    async fn insert<D: Backend>(tx: &mut Tx<'_, D>, i: &Insert) -> Result<i64> {
        let parent = if i.break_at_commit { -1 } else { 1 };
        D::sql("INSERT INTO scratch (x, parent) VALUES ($1, $2)")
            .bind(i.x)
            .bind(parent)
            .execute(tx)
            .await?;
        if let Some(first) = &i.conflict_once {
            if first.swap(false, Ordering::SeqCst) {
                let conflict = "DO $$ BEGIN \
                    RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$";
                tx.conn().batch(conflict).await?;
            }
        }
        if i.panic {
            panic!("a bug in write {}", i.x);
        }
        if i.refuse {
            return Err(DomainError::from(c2m_domain::Refusal::NothingToPlan {
                due_later: 0,
                no_factory: 0,
            })
            .into());
        }
        Ok(i.x)
    }

    fn inserts(n: i64) -> Vec<Insert> {
        (1..=n)
            .map(|x| Insert {
                x,
                ..Insert::default()
            })
            .collect()
    }

    /// A store of either backend with a `scratch` table (and its parent, the foreign key
    /// checked at commit).
    async fn with_scratch<E: Engine>(store: E) -> E {
        store
            .readers()
            .acquire()
            .await
            .expect("connection")
            .batch(
                "CREATE TABLE scratch_parent (id BIGINT PRIMARY KEY); \
                 INSERT INTO scratch_parent VALUES (1); \
                 CREATE TABLE scratch (x BIGINT NOT NULL, parent BIGINT NOT NULL \
                     REFERENCES scratch_parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .await
            .expect("scratch table");
        store
    }

    async fn run_all<E: Engine>(store: &E, ops: Vec<Insert>) -> Vec<Result<i64>> {
        let campaign = CampaignId::from_trusted("cmp_scratch".into());
        let writes = ops.into_iter().map(|i| {
            let op = Op::new(i, |tx, i| Box::pin(insert(tx, i)));
            store.write(Lane::Campaign(&campaign), op)
        });
        join_all(writes).await
    }

    async fn stored<E: Engine>(store: &E) -> Vec<i64> {
        let mut conn = store.readers().acquire().await.expect("connection");
        E::D::sql("SELECT x FROM scratch ORDER BY x")
            .fetch_all(&mut conn)
            .await
            .expect("read")
            .iter()
            .map(|r| r.int("x").expect("x"))
            .collect()
    }

    fn counts(stats: WriterStats) -> (u64, u64, u64) {
        (stats.writes, stats.transactions, stats.groups)
    }

    async fn a_refused_write_rolls_back_alone<E: Engine>(store: &E) {
        let mut ops = inserts(5);
        ops[2].refuse = true;
        let results = run_all(store, ops).await;
        assert!(matches!(results[2], Err(StoreError::Domain(_))));
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 2, 4, 5]);
        assert_eq!(stored(store).await, vec![1, 2, 4, 5]);
    }

    async fn a_failed_commit_reruns_each_write_alone<E: Engine>(store: &E) {
        let mut ops = inserts(4);
        ops[1].break_at_commit = true;
        let results = run_all(store, ops).await;
        assert!(
            matches!(results[1], Err(StoreError::Database(_))),
            "{:?}",
            results[1]
        );
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 3, 4]);
        assert_eq!(stored(store).await, vec![1, 3, 4]);
    }

    /// A write that panics, in a group and alone, fails by itself (its insert rolled back,
    /// its caller answered `Panicked`) and the writer goes on: before, the panic ended the
    /// writer task and every later write of every caller failed until a restart.
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on<E: Engine>(store: &E) {
        let mut ops = inserts(5);
        ops[2].panic = true;
        let results = run_all(store, ops).await;
        assert!(
            matches!(&results[2], Err(StoreError::Panicked(why)) if why == "a bug in write 3"),
            "{:?}",
            results[2]
        );
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 2, 4, 5]);
        let alone = run_all(
            store,
            vec![Insert {
                x: 6,
                panic: true,
                ..Insert::default()
            }],
        )
        .await;
        assert!(matches!(alone[0], Err(StoreError::Panicked(_))));
        let after = run_all(
            store,
            vec![Insert {
                x: 7,
                ..Insert::default()
            }],
        )
        .await;
        assert_eq!(after[0].as_ref().ok(), Some(&7), "the writer still writes");
        assert_eq!(stored(store).await, vec![1, 2, 4, 5, 7]);
    }

    #[tokio::test]
    async fn sqlite_a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SqliteStore::open_with(&dir.path().join("panic.db"), SqliteOptions::default())
            .await
            .expect("open");
        let store = with_scratch(store).await;
        a_panicking_write_fails_alone_and_the_writer_goes_on(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let Some(admin) = crate::conformance::test_database_url() else {
            return;
        };
        let url = fresh_pg_database(&admin).await;
        let store = with_scratch(PgStore::connect(&url).await.expect("connect")).await;
        a_panicking_write_fails_alone_and_the_writer_goes_on(&store).await;
        store.close().await;
        drop_pg_database(&admin, &url).await;
    }

    /// Each case on a fresh SQLite store.
    #[tokio::test]
    async fn sqlite_groups_commit_once_and_rerun_alone_when_the_commit_fails() {
        let dir = tempfile::tempdir().expect("temporary folder");
        for (case, file) in [(0, "refused.db"), (1, "broken.db")] {
            let store = SqliteStore::open_with(&dir.path().join(file), SqliteOptions::default())
                .await
                .expect("open");
            let store = with_scratch(store).await;
            if case == 0 {
                a_refused_write_rolls_back_alone(&store).await;
                assert_eq!(counts(store.writer_stats()), (5, 1, 1), "refused");
            } else {
                a_failed_commit_reruns_each_write_alone(&store).await;
                assert_eq!(counts(store.writer_stats()), (4, 5, 0), "broken");
            }
            store.close().await;
        }
    }

    /// Each case on a fresh PostgreSQL database, and a serialization failure, which runs
    /// the whole group again; skipped without `TEST_DATABASE_URL`.
    #[tokio::test]
    async fn postgres_groups_commit_once_rerun_alone_and_retry_whole() {
        let Some(admin) = crate::conformance::test_database_url() else {
            return;
        };
        for case in 0..3 {
            let url = fresh_pg_database(&admin).await;
            let store = with_scratch(PgStore::connect(&url).await.expect("connect")).await;
            let expected = match case {
                0 => {
                    a_refused_write_rolls_back_alone(&store).await;
                    (5, 1, 1)
                }
                1 => {
                    a_failed_commit_reruns_each_write_alone(&store).await;
                    (4, 5, 0)
                }
                _ => {
                    let mut ops = inserts(4);
                    ops[2].conflict_once = Some(Arc::new(AtomicBool::new(true)));
                    let results = run_all(&store, ops).await;
                    let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
                    assert_eq!(ok, vec![1, 2, 3, 4]);
                    assert_eq!(stored(&store).await, vec![1, 2, 3, 4], "nothing twice");
                    (4, 2, 1)
                }
            };
            assert_eq!(counts(store.writer_stats()), expected, "case {case}");
            store.close().await;
            drop_pg_database(&admin, &url).await;
        }
    }
}
