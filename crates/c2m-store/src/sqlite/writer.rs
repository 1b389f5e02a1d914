//! The writer task: the one task that owns the SQLite write connection, with group commit.
//!
//! Write operations arrive on a channel. The task takes the first one waiting and, without
//! waiting for more, every further one already queued (up to the group size), and runs
//! them in one `BEGIN IMMEDIATE` transaction, each inside its own savepoint: an operation
//! that is refused (or fails) is rolled back to its savepoint alone, one that succeeds is
//! released into the group; placements next to each other are admitted in memory and
//! written together instead ([`crate::pooling::place_preorders`]), since a refused one
//! writes nothing. The group then commits once, with one `fsync` for all of them,
//! and only then is every operation answered, so no caller hears of a write that is not
//! durable, and none hears of a refusal computed from writes that were then lost.
//!
//! Each operation sees exactly the writes of the operations queued before it, as it would
//! if they had run one transaction each in arrival order, so the semantics of every call
//! are those of the one-transaction-per-call path. If anything about the group itself fails
//! (beginning, a savepoint, the commit), nothing of it was written and its operations are
//! run again one transaction each, so each gets its own result or error.
//!
//! Because the task (not the caller) runs the operation, a caller that gives up (a client
//! that disconnects) cannot leave a transaction half done; the write completes or rolls
//! back as a whole and the idempotency key gives a retry its result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use c2m_domain::{CampaignId, Preorder};

use super::pooling::SqliteTx;
use crate::pooling::Placing;
use crate::StoreError;

/// One write operation, run by the writer in the transaction (or savepoint) it is given.
#[async_trait]
pub(crate) trait Operation: Send + Sync + 'static {
    type Output: Send + 'static;
    async fn run(&self, tx: &mut SqliteTx<'_>) -> Result<Self::Output, StoreError>;

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

/// A queued operation, its result once run, and where to send it.
#[async_trait]
pub(crate) trait Queued: Send {
    /// Runs the operation and keeps its result; `true` if it succeeded.
    async fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool;
    /// Replaces the result with an error about the transaction around the operation.
    fn fail(&mut self, error: StoreError);
    /// Sends the result to the caller (who may have stopped listening).
    fn answer(&mut self);
    /// [`Operation::placement`].
    fn placement(&self) -> Option<Placing<'_>>;
    /// Keeps the answer a run of placements gave this one ([`Operation::placed`]).
    fn placed(&mut self, answer: Result<Preorder, StoreError>);
}

pub(crate) struct Job<O: Operation> {
    op: O,
    result: Option<Result<O::Output, StoreError>>,
    reply: Option<oneshot::Sender<Result<O::Output, StoreError>>>,
    /// The caller's span, so the work shows up under the store call that asked for it.
    span: tracing::Span,
}

impl<O: Operation> Job<O> {
    pub(crate) fn new(op: O) -> (Self, oneshot::Receiver<Result<O::Output, StoreError>>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            op,
            result: None,
            reply: Some(tx),
            span: tracing::Span::current(),
        };
        (job, rx)
    }
}

#[async_trait]
impl<O: Operation> Queued for Job<O> {
    async fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool {
        let result = self.op.run(tx).instrument(self.span.clone()).await;
        let ok = result.is_ok();
        self.result = Some(result);
        ok
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

    fn placement(&self) -> Option<Placing<'_>> {
        self.op.placement()
    }

    fn placed(&mut self, answer: Result<Preorder, StoreError>) {
        self.result = Some(self.op.placed(answer));
    }
}

/// The error a caller sees when the writer task is gone (it panicked or the store closed).
pub(crate) fn writer_gone() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

/// What the writer has done so far, for tests and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Write operations run (each answered once).
    pub writes: u64,
    /// Transactions committed or rolled back for them; `writes / transactions` is the mean
    /// group size.
    pub transactions: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes: AtomicU64,
    transactions: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            writes: self.writes.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }
}

/// The task's loop; returns the connection when every sender is gone.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Box<dyn Queued>>,
    max_group: usize,
    counters: Arc<Counters>,
) -> SqliteConnection {
    let max_group = max_group.max(1);
    let mut group: Vec<Box<dyn Queued>> = Vec::with_capacity(max_group);
    while let Some(first) = jobs.recv().await {
        group.push(first);
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut transactions = 1;
        if group.len() == 1 {
            run_alone(&mut conn, group[0].as_mut()).await;
        } else if let Err(e) = run_group(&mut conn, &mut group).await {
            tracing::warn!(error = %e, size = group.len(), "group commit failed; running its writes one by one");
            for job in group.iter_mut() {
                run_alone(&mut conn, job.as_mut()).await;
            }
            transactions += group.len() as u64;
        }
        counters
            .writes
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        counters
            .transactions
            .fetch_add(transactions, Ordering::Relaxed);
        for mut job in group.drain(..) {
            job.answer();
        }
    }
    conn
}

/// One operation in its own transaction: the path without grouping.
async fn run_alone(conn: &mut SqliteConnection, job: &mut dyn Queued) {
    let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => SqliteTx(tx),
        Err(e) => return job.fail(e.into()),
    };
    if job.run(&mut tx).await {
        if let Err(e) = tx.0.commit().await {
            job.fail(e.into());
        }
    } else if let Err(e) = tx.0.rollback().await {
        tracing::warn!(error = %e, "rollback failed");
    }
}

/// All operations of the group in one transaction, one savepoint each, except that each
/// run of placements is written together ([`crate::pooling::place_preorders`], one call per
/// campaign in the run): a refused placement writes nothing, so it needs no savepoint, and
/// a run that fails as a whole fails the group, whose operations then run one by one.
async fn run_group(
    conn: &mut SqliteConnection,
    group: &mut [Box<dyn Queued>],
) -> Result<(), StoreError> {
    let mut outer = SqliteTx(conn.begin_with("BEGIN IMMEDIATE").await?);
    let mut next = 0;
    while next < group.len() {
        let placements = group[next..]
            .iter()
            .take_while(|job| job.placement().is_some())
            .count();
        if placements == 0 {
            let mut savepoint = SqliteTx(Connection::begin(&mut *outer.0).await?);
            if group[next].run(&mut savepoint).await {
                savepoint.0.commit().await?;
            } else {
                savepoint.0.rollback().await?;
            }
            next += 1;
            continue;
        }
        let run = &mut group[next..next + placements];
        next += placements;
        // The writer serves every campaign. The run's placements were all waiting at once,
        // none answered yet, so taking them campaign by campaign (each campaign's in
        // arrival order) is one of the orders they could have run in.
        let mut campaigns: Vec<CampaignId> = Vec::new();
        for job in run.iter() {
            if let Some(p) = job.placement() {
                if !campaigns.contains(&p.req.campaign_id) {
                    campaigns.push(p.req.campaign_id.clone());
                }
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
                let answers =
                    crate::pooling::place_preorders(&mut outer, campaign, &placing).await?;
                (mine, answers)
            };
            for (i, answer) in mine.into_iter().zip(answers) {
                run[i].placed(answer);
            }
        }
    }
    outer.0.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use c2m_domain::DomainError;
    use futures::future::join_all;

    use super::super::pooling::SqliteTx;
    use super::super::{SqliteOptions, SqliteStore};
    use super::Operation;
    use crate::StoreError;

    /// Inserts `x` into `scratch`; then fails if `refuse`, or leaves a foreign key broken
    /// (checked only at commit) if `break_at_commit`.
    struct Insert {
        x: i64,
        refuse: bool,
        break_at_commit: bool,
    }

    #[async_trait]
    impl Operation for Insert {
        type Output = i64;
        async fn run(&self, tx: &mut SqliteTx<'_>) -> Result<i64, StoreError> {
            sqlx::query("INSERT INTO scratch (x) VALUES (?1)")
                .bind(self.x)
                .execute(tx.conn())
                .await?;
            if self.break_at_commit {
                sqlx::query("PRAGMA defer_foreign_keys = ON")
                    .execute(tx.conn())
                    .await?;
                sqlx::query("INSERT INTO batch_transitions (batch_id, status, at) VALUES ('nope', 'open', 0)")
                    .execute(tx.conn())
                    .await?;
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
            refuse: false,
            break_at_commit: false,
        }
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SqliteStore::open_with(&dir.path().join("c2m.db"), SqliteOptions::default())
            .await
            .expect("open");
        sqlx::query("CREATE TABLE scratch (x INTEGER NOT NULL)")
            .execute(&store.readers)
            .await
            .expect("scratch table");
        (dir, store)
    }

    async fn stored(store: &SqliteStore) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM scratch ORDER BY x")
            .fetch_all(&store.readers)
            .await
            .expect("read")
    }

    // On the current-thread runtime every write below is queued before the writer task
    // runs, so they form one group.
    #[tokio::test]
    async fn a_refused_write_rolls_back_alone_and_the_group_commits_once() {
        let (_dir, store) = store().await;
        let mut ops: Vec<Insert> = (1..=5).map(op).collect();
        ops[2].refuse = true;
        let results = join_all(ops.into_iter().map(|o| store.write(o))).await;
        assert!(matches!(results[2], Err(StoreError::Domain(_))));
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 2, 4, 5]);
        assert_eq!(stored(&store).await, vec![1, 2, 4, 5]);
        let stats = store.writer_stats();
        assert_eq!((stats.writes, stats.transactions), (5, 1));
    }

    #[tokio::test]
    async fn a_group_whose_commit_fails_is_rerun_one_write_at_a_time() {
        let (_dir, store) = store().await;
        let mut ops: Vec<Insert> = (1..=4).map(op).collect();
        ops[1].break_at_commit = true;
        let results = join_all(ops.into_iter().map(|o| store.write(o))).await;
        assert!(
            matches!(results[1], Err(StoreError::Database(_))),
            "{:?}",
            results[1]
        );
        let ok: Vec<i64> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok, vec![1, 3, 4]);
        assert_eq!(stored(&store).await, vec![1, 3, 4]);
        let stats = store.writer_stats();
        assert_eq!((stats.writes, stats.transactions), (4, 5));
    }
}
