//! Group commit on PostgreSQL: one writer per campaign, one transaction per group.
//!
//! Every write on a campaign takes the campaign's row lock, so writes on one campaign run
//! one after another whatever else happens, and each used to pay for its own commit (one
//! WAL flush) while the lock was held: the campaign could take no more orders per second
//! than the disk has flushes. The SQLite store answers the same problem with its writer
//! task (`sqlite/writer.rs`); this is the same design, per campaign instead of per file:
//!
//! - A placement or cancel for campaign C is queued on C's queue. If no writer is running
//!   for C in this process, one is spawned; it exits when the queue is empty, so an idle
//!   campaign costs nothing and the map of queues only holds campaigns with work waiting.
//! - The writer takes the first operation waiting and, without waiting for more, every
//!   further one already queued (up to [`super::PgOptions::max_group`]). A lone operation
//!   runs exactly as it would without grouping: its own transaction, its own retries.
//! - A group runs in one transaction that first takes the campaign's row lock once
//!   (`SELECT ... FOR UPDATE`, [`PgTx::hold_campaign`]), then each operation inside its own
//!   savepoint: one that is refused (or fails) is rolled back to its savepoint alone, one
//!   that succeeds is released into the group. Placements next to each other in the group
//!   are the exception: each such run is admitted in memory and written together
//!   ([`crate::pooling::place_preorders`]), since a refused placement writes nothing. The
//!   group commits once, one WAL flush for all of it, and only then is any operation
//!   answered, so no caller hears of a write that is not durable, nor of a refusal
//!   computed from writes that were then lost.
//! - Each operation sees exactly the writes of the operations before it in the group, as it
//!   would if each had its own transaction in that order; in particular an idempotency key
//!   recorded by one operation is replayed to a later one in the same group. The shared
//!   write logic ([`crate::pooling`], [`crate::ledger`]) is the same on both paths.
//! - Retries keep the semantics of the one-transaction path ([`super::retryable`]): if an
//!   operation or the commit meets a serialization failure, a deadlock or a concurrent
//!   use of an idempotency key, the whole group is rolled back and run again, up to
//!   [`super::ATTEMPTS`] times. If the group still fails, or fails for any other reason
//!   than one operation's own refusal (a savepoint, the commit, a constraint checked at
//!   commit), nothing of it was written, and its operations are run again one transaction
//!   each, so each gets its own result or error.
//!
//! Several processes on one database stay correct because nothing here replaces a
//! database rule: the queue only decides which operations share a transaction, while the
//! row lock still orders the writers of all processes and the constraints still hold.
//!
//! Because the writer (not the caller) runs the operation, a caller that gives up (a
//! client that disconnects) cannot leave its operation half done; it completes or rolls
//! back as a whole and the idempotency key gives a retry its result.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use sqlx::{Executor, PgPool};
use tokio::sync::oneshot;
use tracing::Instrument;

use c2m_domain::{CampaignId, Preorder};

use super::pooling::PgTx;
use super::{retryable, ATTEMPTS};
use crate::pooling::Placing;
use crate::StoreError;

/// One write operation on a campaign, run in the transaction (or savepoint) it is given.
#[async_trait]
pub(crate) trait Operation: Send + Sync + 'static {
    type Output: Send + 'static;
    async fn run(&self, tx: &mut PgTx) -> Result<Self::Output, StoreError>;

    /// The idempotency key the operation checks first (operation name, key), if any: a
    /// group looks all of them up in one query before its operations run.
    fn idempotency_key(&self) -> Option<(&'static str, String)> {
        None
    }

    /// The placement this operation is, if it is one. A group writes each run of
    /// placements together ([`crate::pooling::place_preorders`]) instead of calling `run`
    /// on each, and hands each its answer through [`Operation::placed`].
    fn placement(&self) -> Option<Placing<'_>> {
        None
    }

    /// The output for the answer to this operation's placement; asked only of an
    /// operation whose [`Operation::placement`] is `Some`.
    fn placed(&self, answer: Result<Preorder, StoreError>) -> Result<Self::Output, StoreError> {
        drop(answer);
        Err(StoreError::Corrupt(
            "a placement's answer was given to an operation that is not a placement".into(),
        ))
    }
}

/// How an operation's run ended, as far as its transaction is concerned.
enum Ran {
    Done,
    /// Refused or failed on its own: its savepoint (or transaction) is rolled back.
    Failed,
    /// Failed in a way that running the whole transaction again may cure
    /// ([`super::retryable`]); the operation keeps the error in case the retries run out.
    Retry,
}

/// A queued operation, its result once run, and where to send it.
#[async_trait]
trait Queued: Send {
    /// Runs the operation and keeps its result (replacing an earlier attempt's).
    async fn run(&mut self, tx: &mut PgTx) -> Ran;
    /// Replaces the result with an error about the transaction around the operation.
    fn fail(&mut self, error: StoreError);
    /// Sends the result to the caller (who may have stopped listening).
    fn answer(&mut self);
    /// [`Operation::idempotency_key`].
    fn idempotency_key(&self) -> Option<(&'static str, String)>;
    /// [`Operation::placement`].
    fn placement(&self) -> Option<Placing<'_>>;
    /// Keeps the answer a run of placements gave this one ([`Operation::placed`]).
    fn placed(&mut self, answer: Result<Preorder, StoreError>);
}

struct Job<O: Operation> {
    op: O,
    result: Option<Result<O::Output, StoreError>>,
    reply: Option<oneshot::Sender<Result<O::Output, StoreError>>>,
    /// The caller's span, so the work shows up under the store call that asked for it.
    span: tracing::Span,
}

#[async_trait]
impl<O: Operation> Queued for Job<O> {
    async fn run(&mut self, tx: &mut PgTx) -> Ran {
        let result = self.op.run(tx).instrument(self.span.clone()).await;
        let ran = match &result {
            Ok(_) => Ran::Done,
            Err(e) if retryable(e) => Ran::Retry,
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
        self.op.idempotency_key()
    }

    fn placement(&self) -> Option<Placing<'_>> {
        self.op.placement()
    }

    fn placed(&mut self, answer: Result<Preorder, StoreError>) {
        self.result = Some(self.op.placed(answer));
    }
}

/// The error a caller sees when its campaign's writer is gone (it panicked, or the
/// runtime is shutting down).
fn writer_gone() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

/// What the writers of one store have done so far, for tests and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Grouped operations (placements and cancels) run, each answered once.
    pub writes: u64,
    /// Transactions begun for them, retries included; `writes / transactions` is about
    /// the mean group size.
    pub transactions: u64,
    /// Groups of more than one operation that committed together.
    pub groups: u64,
}

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    transactions: AtomicU64,
    groups: AtomicU64,
}

/// The per-campaign queues of one store, and the writers that drain them.
pub(crate) struct Writers {
    pool: PgPool,
    max_group: usize,
    /// Operations waiting, per campaign. A campaign has an entry exactly while a writer
    /// task runs for it; the task removes the entry, under this mutex, when it finds the
    /// queue empty, so an operation is never queued where no writer will see it.
    queues: Mutex<HashMap<CampaignId, VecDeque<Box<dyn Queued>>>>,
    counters: Counters,
}

impl Writers {
    pub(crate) fn new(pool: PgPool, max_group: usize) -> Self {
        Writers {
            pool,
            max_group: max_group.max(1),
            queues: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            writes: self.counters.writes.load(Ordering::Relaxed),
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            groups: self.counters.groups.load(Ordering::Relaxed),
        }
    }

    /// Queues `op` on `campaign`'s writer and waits for its (durable) result.
    pub(crate) async fn write<O: Operation>(
        self: &Arc<Self>,
        campaign: &CampaignId,
        op: O,
    ) -> Result<O::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            op,
            result: None,
            reply: Some(reply),
            span: tracing::Span::current(),
        };
        self.submit(campaign, Box::new(job));
        answer.await.map_err(|_| writer_gone())?
    }

    fn submit(self: &Arc<Self>, campaign: &CampaignId, job: Box<dyn Queued>) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        match queues.entry(campaign.clone()) {
            Entry::Occupied(mut waiting) => waiting.get_mut().push_back(job),
            Entry::Vacant(none) => {
                none.insert(VecDeque::from([job]));
                tokio::spawn(self.clone().drain(campaign.clone()));
            }
        }
    }

    /// The writer of one campaign: runs groups until its queue is empty.
    async fn drain(self: Arc<Self>, campaign: CampaignId) {
        // If this task dies (a panic in an operation, the runtime shutting down), the
        // entry goes with it: the operations still queued are dropped, their callers hear
        // `writer_gone`, and the next operation for the campaign starts a new writer.
        let mut leave = Leave {
            writers: &self,
            campaign: &campaign,
            armed: true,
        };
        loop {
            let mut group: Vec<Box<dyn Queued>> = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let waiting = queues.get_mut(&campaign).map_or(0, |q| q.len());
                if waiting == 0 {
                    queues.remove(&campaign);
                    leave.armed = false;
                    return;
                }
                let take = waiting.min(self.max_group);
                queues
                    .get_mut(&campaign)
                    .map(|q| q.drain(..take).collect())
                    .unwrap_or_default()
            };
            self.run(&campaign, &mut group).await;
            for job in group.iter_mut() {
                job.answer();
            }
        }
    }

    /// Runs one group to the end: committed together, or (failing that) one by one.
    async fn run(&self, campaign: &CampaignId, group: &mut [Box<dyn Queued>]) {
        let c = &self.counters;
        c.writes.fetch_add(group.len() as u64, Ordering::Relaxed);
        if let [job] = group {
            let tries = run_alone(&self.pool, job.as_mut()).await;
            c.transactions.fetch_add(tries, Ordering::Relaxed);
            return;
        }
        let mut attempt = 1;
        loop {
            c.transactions.fetch_add(1, Ordering::Relaxed);
            match run_group(&self.pool, campaign, group).await {
                Ok(()) => {
                    c.groups.fetch_add(1, Ordering::Relaxed);
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
                        let tries = run_alone(&self.pool, job.as_mut()).await;
                        c.transactions.fetch_add(tries, Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
    }
}

/// Removes a campaign's queue when its writer task ends without emptying it.
struct Leave<'a> {
    writers: &'a Writers,
    campaign: &'a CampaignId,
    armed: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut queues = self
                .writers
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queues.remove(self.campaign);
        }
    }
}

/// Why a group's transaction was given up (and rolled back).
#[derive(Debug)]
enum Abort {
    /// Running the whole group again may succeed; the reason is for the log.
    Retry(String),
    /// The transaction could not begin or take the campaign's lock (no connection, the
    /// lock wait timed out). Running each operation alone would only meet the same wait
    /// once per operation, so every operation gets the error.
    Start(StoreError),
    /// Something about the group itself failed (a savepoint, the commit): each operation
    /// will run alone.
    Fail(StoreError),
}

impl Abort {
    fn start(e: impl Into<StoreError>) -> Self {
        let e = e.into();
        if retryable(&e) {
            Abort::Retry(e.to_string())
        } else {
            Abort::Start(e)
        }
    }
}

/// `StoreError` is not `Clone`: the rest of a group that could not start get a database
/// error with the same message (callers see the same status, UNAVAILABLE; retry with the
/// same key).
fn unstarted(e: &StoreError) -> impl Fn() -> StoreError {
    let message = format!("the campaign's group transaction did not start: {e}");
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

impl From<sqlx::Error> for Abort {
    fn from(e: sqlx::Error) -> Self {
        let e = StoreError::from(e);
        if retryable(&e) {
            Abort::Retry(e.to_string())
        } else {
            Abort::Fail(e)
        }
    }
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Self {
        if retryable(&e) {
            Abort::Retry(e.to_string())
        } else {
            Abort::Fail(e)
        }
    }
}

/// All operations of the group in one transaction under one campaign lock, a savepoint
/// each. The savepoint statements share round trips: after an operation one simple query
/// releases its savepoint and opens the next one's (or, after a refusal, rolls back to the
/// savepoint, which stays in place for the next operation); the last one is left to the
/// commit.
async fn run_group(
    pool: &PgPool,
    campaign: &CampaignId,
    group: &mut [Box<dyn Queued>],
) -> Result<(), Abort> {
    let mut tx = PgTx::new(pool.begin().await.map_err(Abort::start)?);
    tx.hold_campaign(campaign).await.map_err(Abort::start)?;
    let keys: Vec<_> = group
        .iter()
        .filter_map(|job| job.idempotency_key())
        .collect();
    tx.prefetch_keys(&keys).await?;
    tx.conn().execute("SAVEPOINT op").await?;
    let mut next = 0;
    while next < group.len() {
        let placements = group[next..]
            .iter()
            .take_while(|job| job.placement().is_some())
            .count();
        let ran = if placements > 0 {
            // A run of placements: written together, each answered as if alone. A refused
            // one wrote nothing, so the run needs no savepoint of its own; anything that
            // fails the run as a whole aborts the group (see `place_preorders`).
            let run = &mut group[next..next + placements];
            let answers = {
                let placing: Vec<Placing<'_>> =
                    run.iter().filter_map(|job| job.placement()).collect();
                crate::pooling::place_preorders(&mut tx, campaign, &placing).await?
            };
            for (job, answer) in run.iter_mut().zip(answers) {
                job.placed(answer);
            }
            next += placements;
            Ran::Done
        } else {
            next += 1;
            group[next - 1].run(&mut tx).await
        };
        let close = match (ran, next == group.len()) {
            (Ran::Done, true) => None,
            (Ran::Done, false) => Some("RELEASE SAVEPOINT op; SAVEPOINT op"),
            (Ran::Failed, _) => Some("ROLLBACK TO SAVEPOINT op"),
            // Dropping the transaction rolls it back.
            (Ran::Retry, _) => return Err(Abort::Retry("an operation's error".into())),
        };
        if let Some(sql) = close {
            tx.conn().execute(sql).await?;
        }
    }
    tx.tx.commit().await?;
    Ok(())
}

/// One operation in its own transaction, retried as [`super::retryable`] says: the path
/// without grouping, the same as the store's other writes. Returns the transactions used.
async fn run_alone(pool: &PgPool, job: &mut dyn Queued) -> u64 {
    let mut attempt = 1;
    loop {
        let mut tx = match pool.begin().await {
            Ok(tx) => PgTx::new(tx),
            Err(e) => {
                job.fail(e.into());
                return attempt;
            }
        };
        let again = match job.run(&mut tx).await {
            Ran::Done => match tx.tx.commit().await {
                Ok(()) => return attempt,
                Err(e) => {
                    let e = StoreError::from(e);
                    let again = retryable(&e);
                    job.fail(e);
                    again
                }
            },
            ran @ (Ran::Failed | Ran::Retry) => {
                if let Err(e) = tx.tx.rollback().await {
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

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use c2m_domain::{CampaignId, DomainError};
    use futures::future::join_all;
    use sqlx::Executor;

    use super::super::pooling::PgTx;
    use super::super::PgStore;
    use super::{Operation, Writers};
    use crate::conformance::{drop_pg_database, fresh_pg_database};
    use crate::StoreError;

    /// Inserts `x` into `scratch`; then fails if `refuse`, leaves a foreign key broken
    /// (checked only at commit) if `break_at_commit`, or raises a serialization failure
    /// the first time it runs if `conflict_once` is still set.
    #[derive(Default)]
    struct Insert {
        x: i64,
        refuse: bool,
        break_at_commit: bool,
        conflict_once: Option<Arc<AtomicBool>>,
    }

    #[async_trait]
    impl Operation for Insert {
        type Output = i64;
        async fn run(&self, tx: &mut PgTx) -> Result<i64, StoreError> {
            let parent = if self.break_at_commit { -1 } else { 1 };
            sqlx::query("INSERT INTO scratch (x, parent) VALUES ($1, $2)")
                .bind(self.x)
                .bind(parent)
                .execute(tx.conn())
                .await?;
            if let Some(first) = &self.conflict_once {
                if first.swap(false, Ordering::SeqCst) {
                    let conflict = "DO $$ BEGIN \
                        RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$";
                    tx.conn().execute(conflict).await?;
                }
            }
            if self.refuse {
                return Err(DomainError::from(c2m_domain::Refusal::NothingToPlan).into());
            }
            Ok(self.x)
        }
    }

    fn op(x: i64) -> Insert {
        Insert {
            x,
            ..Insert::default()
        }
    }

    /// A fresh database with a `scratch` table, the writers of a store on it, and what
    /// to drop afterwards; `None` without `TEST_DATABASE_URL`.
    async fn writers() -> Option<(String, String, PgStore, Arc<Writers>)> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL tests");
            return None;
        };
        let url = fresh_pg_database(&admin).await;
        let store = PgStore::connect(&url).await.expect("connect");
        sqlx::raw_sql(
            "CREATE TABLE scratch_parent (id BIGINT PRIMARY KEY);
             INSERT INTO scratch_parent VALUES (1);
             CREATE TABLE scratch (x BIGINT NOT NULL, parent BIGINT NOT NULL
                 REFERENCES scratch_parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(&store.pool)
        .await
        .expect("scratch table");
        let writers = Arc::new(Writers::new(store.pool.clone(), 64));
        Some((admin, url, store, writers))
    }

    async fn stored(store: &PgStore) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM scratch ORDER BY x")
            .fetch_all(&store.pool)
            .await
            .expect("read")
    }

    async fn run_all(writers: &Arc<Writers>, ops: Vec<Insert>) -> Vec<Result<i64, StoreError>> {
        let campaign = CampaignId::from_trusted("cmp_scratch".into());
        join_all(ops.into_iter().map(|o| writers.write(&campaign, o))).await
    }

    // On the current-thread runtime every write below is queued before the campaign's
    // writer runs, so they form one group.
    #[tokio::test]
    async fn a_refused_write_rolls_back_alone_and_the_group_commits_once() {
        let Some((admin, url, store, writers)) = writers().await else {
            return;
        };
        let mut ops: Vec<Insert> = (1..=5).map(op).collect();
        ops[2].refuse = true;
        let results = run_all(&writers, ops).await;
        assert!(matches!(results[2], Err(StoreError::Domain(_))));
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 2, 4, 5]);
        assert_eq!(stored(&store).await, vec![1, 2, 4, 5]);
        let stats = writers.stats();
        assert_eq!((stats.writes, stats.transactions, stats.groups), (5, 1, 1));
        store.close().await;
        drop_pg_database(&admin, &url).await;
    }

    #[tokio::test]
    async fn a_group_whose_commit_fails_is_rerun_one_write_at_a_time() {
        let Some((admin, url, store, writers)) = writers().await else {
            return;
        };
        let mut ops: Vec<Insert> = (1..=4).map(op).collect();
        ops[1].break_at_commit = true;
        let results = run_all(&writers, ops).await;
        assert!(
            matches!(results[1], Err(StoreError::Database(_))),
            "{:?}",
            results[1]
        );
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 3, 4]);
        assert_eq!(stored(&store).await, vec![1, 3, 4]);
        let stats = writers.stats();
        assert_eq!((stats.writes, stats.transactions, stats.groups), (4, 5, 0));
        store.close().await;
        drop_pg_database(&admin, &url).await;
    }

    #[tokio::test]
    async fn a_serialization_failure_runs_the_whole_group_again() {
        let Some((admin, url, store, writers)) = writers().await else {
            return;
        };
        let mut ops: Vec<Insert> = (1..=4).map(op).collect();
        ops[2].conflict_once = Some(Arc::new(AtomicBool::new(true)));
        let results = run_all(&writers, ops).await;
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 2, 3, 4]);
        assert_eq!(stored(&store).await, vec![1, 2, 3, 4], "nothing twice");
        let stats = writers.stats();
        assert_eq!((stats.writes, stats.transactions, stats.groups), (4, 2, 1));
        store.close().await;
        drop_pg_database(&admin, &url).await;
    }
}
