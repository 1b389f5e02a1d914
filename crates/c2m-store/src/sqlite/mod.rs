//! The embedded store: one SQLite file in WAL mode.
//!
//! What is SQLite's own is here; the SQL and the write logic are the features', written
//! once for both backends (`crate::dialect`).
//!
//! - Durability: `synchronous=FULL`, so a write is on disk (in the WAL) before it is
//!   acknowledged; `foreign_keys` on; a busy timeout for other processes on the same file.
//! - Writers: SQLite allows one writer at a time, so the store keeps exactly one writer
//!   connection, used by one task (on a thread of its own in a server: `spawn_writer`),
//!   and starts every write transaction with `BEGIN IMMEDIATE`. Writes queue on the task's
//!   channel instead of meeting `SQLITE_BUSY` when a read transaction tries to upgrade; the
//!   campaign "lock" of the pooling rule, and every other feature's lock, is this one write
//!   lock (which is why the dialect takes no row locks). A second process on the same file
//!   is serialised by `BEGIN IMMEDIATE` and the busy timeout.
//! - Group commit: the writer runs the writes queued together (up to
//!   [`SqliteOptions::max_group`], any campaigns) as one group in one transaction and
//!   commits once; see `crate::writer` for why every call keeps the semantics of its own
//!   transaction.
//! - Readers: a small pool; in WAL mode they read a consistent snapshot while the writer
//!   works.
//! - Checkpoints: a connection of its own copies the log's committed pages back into the
//!   file beside the writer (`Checkpointer`), so the writer's commits only append.
//! - Type binding: timestamps are INTEGER microseconds since the Unix epoch (UTC), a
//!   recorded response is TEXT, a list of values one JSON array.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, ConnectOptions, Connection, Row, Sqlite};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use c2m_domain::BatchId;

use crate::dialect::{Begin, Dialect, Tx, Value};
use crate::engine::{Base, Engine, Lane, Owned};
use crate::payment::PaymentProvider;
pub use crate::writer::WriterStats;
use crate::writer::{writer_gone, Counters, Job, Op, Queued};
use crate::Result;
use crate::{BatchTransition, StoreError};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers in the pool; reads are short single statements.
const READERS: u32 = 4;

/// How much of the file each reader maps into memory (SQLite's `mmap_size`) instead of
/// copying pages into its own page cache (2 MB by default, and each reader has its own):
/// mapped pages are shared through the operating system's cache by every reader. On a
/// store of 700 MB this took GetCampaignMoney under load from 2.2x its empty-store time
/// to within 1.1x (docs/benchmarks.md). Only the readers map: the writer's pages go
/// through SQLite's ordinary writes, so a full disk or an I/O error while writing stays
/// an error rather than a signal. Address space, not memory: pages are mapped as read.
const READER_MMAP_BYTES: u64 = 1 << 30;

/// Pages the write-ahead log may hold before the writer's own commit copies them back into
/// the file (SQLite's `wal_autocheckpoint`; its default is 1,000 pages, 4 MB). The copying
/// is the checkpointer's ([`checkpoint_loop`]), off the writer's path; this is the
/// backstop for when it falls behind, and what makes the log start again from its
/// beginning under a steady stream of writes with no pause: a passive checkpoint does not
/// catch a writer that keeps appending (it does whenever writes pause for its 10 ms), while
/// the writer's own finds almost every page already copied. The cost is a log of usually
/// up to 40 MB, which stays on disk at that size (recovery after a crash reads it: well
/// under a second); a reader holding an old snapshot can make it longer, as in SQLite's
/// default.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The size SQLite cuts the write-ahead log back to after a checkpoint has reset it
/// (`journal_size_limit`): a log that grew far past [`WAL_AUTOCHECKPOINT_PAGES`] while a
/// long read held the checkpoints back is cut back to 64 MB, not kept at its largest.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

/// The checkpointer's pause after a group before it checkpoints: the groups committed
/// meanwhile are copied by the same checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

/// At most one checkpointer warning this often (a stuck log would otherwise warn after
/// every group).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Writes that may wait for the writer before callers are held back.
const QUEUE: usize = 1024;

/// How the SQLite store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Most writes committed together in one transaction; 1 turns group commit off.
    pub max_group: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { max_group: 64 }
    }
}

/// The SQLite store. See the module docs for the connection layout.
pub struct SqliteStore {
    /// The queue of the writer task, the only user of the connection that writes.
    jobs: mpsc::Sender<Box<dyn Queued<Sqlite>>>,
    /// Where the writer task gives its connection back when it ends.
    writer: Mutex<Option<oneshot::Receiver<SqliteConnection>>>,
    /// Stops the checkpointer, which closes its connection before the writer's closes.
    checkpointer: Checkpointer,
    counters: Arc<Counters>,
    /// The readers: a small pool; in WAL mode they read a consistent snapshot while the
    /// writer works.
    base: Base<Sqlite>,
}

/// The store's [`crate::Schema`]: the newest migration applied and the newest this build
/// has. Opens the file read-only: creates and migrates nothing.
pub async fn schema(path: &Path) -> Result<crate::Schema> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await?;
    let applied = crate::Schema::applied(&mut conn).await;
    let _ = conn.close().await;
    Ok(crate::Schema {
        applied: applied?,
        known: crate::Schema::newest(&MIGRATOR),
    })
}

/// The connection settings every connection to the file uses (the probe uses them too).
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // Statement and savepoint journals (what undoes a failed statement or a refused
        // operation inside a group's transaction) in memory rather than in temporary
        // files: they never outlive the transaction, so durability is unchanged, and a
        // group's multi-row statements no longer write every page they touch twice.
        .pragma("temp_store", "memory")
}

/// The writer's connection: the shared settings and its checkpoint backstop
/// ([`WAL_AUTOCHECKPOINT_PAGES`], [`WAL_SIZE_LIMIT_BYTES`]).
fn writer_options(options: &SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .clone()
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string())
}

/// Creates the database file's folder if it is missing, and the file itself if it is
/// missing, both readable by the owner alone (0700 and 0600 on Unix): the store holds
/// webhook signing secrets and token hashes, and SQLite would create the file with the
/// process's umask (0644 under the usual 022), readable by every local user. SQLite gives
/// its `-wal` and `-shm` files the database file's mode. A folder or file that exists
/// keeps the mode its owner gave it.
pub(crate) async fn create_database_file(path: &Path) -> Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || create_private(&path))
        .await
        .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
}

fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    match file.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// SQLite's dialect: timestamps are INTEGER microseconds since the Unix epoch, a JSON
/// response is TEXT, and the one writer holds the whole database (no row locks).
impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const ROW_LOCKS: bool = false;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";

    fn push<'q>(args: &mut SqliteArguments<'q>, value: Value<'q>) -> Result<(), BoxDynError> {
        match value {
            Value::Ts(t) => args.add(micros_of(t)),
            Value::OptTs(t) => args.add(t.map(micros_of)),
            Value::Json(json) => args.add(json),
            Value::List(list) => args.add(serde_json::to_string(list)?),
            plain => plain.push_plain::<Sqlite>(args),
        }
    }

    fn read_ts(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
        time_of(row.try_get(col)?)
    }

    fn read_ts_opt(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(col)?.map(time_of).transpose()
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

pub(crate) fn micros_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time_of(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} out of range")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, and its folder, and applies
    /// the migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    #[tracing::instrument]
    pub async fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        let settings = options;
        create_database_file(path).await?;
        let options = connect_options(path);
        let mut writer = writer_options(&options).connect().await?;
        MIGRATOR
            .run_direct(&mut writer)
            .await
            .map_err(|e| StoreError::migration(e, &MIGRATOR))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(
                options
                    .clone()
                    .pragma("mmap_size", READER_MMAP_BYTES.to_string()),
            )
            .await?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let wrote = Arc::new(Notify::new());
        let checkpointer = Checkpointer::start(options.connect().await?, wrote.clone());
        let writer = spawn_writer(write_loop(
            writer,
            queue,
            settings.max_group,
            counters.clone(),
            wrote,
        ))?;
        Ok(SqliteStore {
            jobs,
            writer: Mutex::new(Some(writer)),
            checkpointer,
            counters,
            base: Base::new(readers),
        })
    }

    /// Writes run and transactions used so far by this store's writer.
    pub fn writer_stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// Uses `provider` instead of the built-in [`LedgerOnly`](crate::payment::LedgerOnly)(crate::payment::LedgerOnly).
    pub fn with_provider(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.base.provider = provider;
        self
    }

    /// Finishes the queued writes and closes the connections, checkpointing the WAL.
    pub async fn close(self) {
        let SqliteStore {
            jobs,
            writer,
            checkpointer,
            base,
            ..
        } = self;
        drop(jobs);
        base.pool.close().await;
        checkpointer.stop().await;
        if let Some(handle) = writer.into_inner() {
            match handle.await {
                Ok(conn) => {
                    if let Err(e) = conn.close().await {
                        tracing::warn!(error = %e, "closing the sqlite writer");
                    }
                }
                Err(_) => {
                    tracing::warn!("the sqlite writer ended without giving its connection back")
                }
            }
        }
    }

    /// The append-only transition record of a batch, oldest first (for audits and tests).
    pub async fn batch_transitions(&self, batch: &BatchId) -> Result<Vec<BatchTransition>> {
        crate::pooling::batch_transitions(&self.base.pool, batch).await
    }
}

/// The task that copies the write-ahead log's committed pages back into the database file
/// (a passive checkpoint), on a connection of its own, after commits.
///
/// Why not SQLite's default, where the commit that takes the log past 1,000 pages does it:
/// that commit is the one writer's, and every write queued behind it waits while it copies
/// the pages and flushes the file. Here the copying runs on another thread beside the
/// writer, which then mostly only appends to the log. A passive checkpoint waits for no
/// one: it holds SQLite's checkpoint lock (the writer's own backstop checkpoint skips
/// while it runs) and copies only what no reader's snapshot still needs; its flushes of
/// the file do compete with the writer's flushes of the log for the disk. Durability is
/// unchanged: a commit is on disk once it is in the log (`synchronous=FULL`), whenever it
/// is copied. Measured on a hot campaign (docs/benchmarks.md, 2026-12-08): this version
/// against the code before, four alternated rounds, median 7,244 placements a second
/// against 6,578 (+10 %) and a lower p99 in every round (a first version that looked on a
/// 10 ms tick gained 7-16 % in the medians of twenty rounds).
///
/// Needs a runtime with Tokio's timer (every runtime here is built with `enable_all`).
struct Checkpointer {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the loop on `conn`, woken by `wrote` after each of the writer's groups. It
    /// ends when told to stop, or when the store is dropped without `close`.
    fn start(conn: SqliteConnection, wrote: Arc<Notify>) -> Checkpointer {
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(checkpoint_loop(conn, wrote, stopped));
        Checkpointer { stop, done }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if self.done.await.is_err() {
            tracing::warn!("the sqlite checkpointer ended abnormally");
        }
    }
}

/// After the writer's groups, checkpoints passively, at most once every
/// [`CHECKPOINT_EVERY`] (the groups committed meanwhile join the next one); an idle store
/// is not woken. A checkpoint that fails is tried again after the next group (the
/// writer's backstop, [`WAL_AUTOCHECKPOINT_PAGES`], still copies); failures and a log
/// that has grown past twice the backstop (a reader holding an old snapshot, or the
/// checkpoints failing) are logged as warnings, at most once a minute.
async fn checkpoint_loop(
    mut conn: SqliteConnection,
    wrote: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut warned: Option<tokio::time::Instant> = None;
    let mut warn_now = || {
        let now = tokio::time::Instant::now();
        let due = warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        if due {
            warned = Some(now);
        }
        due
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = wrote.notified() => {}
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        // One row: busy (0 or 1), the log's frames, the frames copied so far.
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok(row) => {
                let frames = row.try_get::<i64, _>(1).unwrap_or(0);
                if frames > 2 * i64::from(WAL_AUTOCHECKPOINT_PAGES) && warn_now() {
                    tracing::warn!(
                        frames,
                        copied = row.try_get::<i64, _>(2).unwrap_or(0),
                        "the sqlite write-ahead log is past twice its checkpoint size: a \
                         long read (a backup, a report on the file) may be holding it"
                    );
                }
            }
            Err(e) if warn_now() => {
                tracing::warn!(error = %e, "a passive checkpoint failed; the next group tries again")
            }
            Err(_) => {}
        }
    }
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the sqlite checkpointer's connection");
    }
}

/// Starts the writer task. On a multi-threaded runtime (the server) it runs on a thread of
/// its own, in a runtime of its own: the group's path is serial (each statement a hop to
/// sqlx's connection thread and back), and on the server's runtime each hop back could
/// wait its turn behind the request tasks (docs/benchmarks.md: it helped when other work
/// competed for the cores). On a current-thread runtime (tests) it is a task of that
/// runtime, as the tests' grouping expects.
fn spawn_writer(
    write_loop: impl std::future::Future<Output = SqliteConnection> + Send + 'static,
) -> Result<oneshot::Receiver<SqliteConnection>> {
    let (done, handle) = oneshot::channel();
    let work = async move {
        let conn = write_loop.await;
        // Dropped here, in a runtime, if the store was dropped without `close`.
        drop(done.send(conn));
    };
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    if flavor == tokio::runtime::RuntimeFlavor::CurrentThread {
        tokio::spawn(work);
        return Ok(handle);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    std::thread::Builder::new()
        .name("c2m-sqlite-writer".into())
        .spawn(move || runtime.block_on(work))
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    Ok(handle)
}

/// The writer task: takes the first write waiting and, without waiting for more, every
/// further one already queued (up to `max_group`), and runs them as one group on its
/// connection (`crate::writer::run`); gives the connection back when every sender is gone.
async fn write_loop(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Box<dyn Queued<Sqlite>>>,
    max_group: usize,
    counters: Arc<Counters>,
    wrote: Arc<Notify>,
) -> SqliteConnection {
    let max_group = max_group.max(1);
    let mut group = Vec::with_capacity(max_group);
    while let Some(first) = jobs.recv().await {
        group.push(first);
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        crate::writer::run(&mut conn, None, &mut group, &counters).await;
        group.clear();
        wrote.notify_one();
    }
    conn
}

/// The writer's transactions begin on its own connection, `BEGIN IMMEDIATE`.
#[async_trait]
impl Begin<Sqlite> for SqliteConnection {
    async fn begin(&mut self) -> Result<Tx<'_, Sqlite>, sqlx::Error> {
        Tx::write_on(self).await
    }
}

#[async_trait]
impl Engine for SqliteStore {
    type D = Sqlite;

    fn base(&self) -> &Base<Sqlite> {
        &self.base
    }

    /// Every write goes through the one writer task, whatever its lane: the writer serves
    /// every campaign.
    async fn write<A: Owned, T: Owned>(&self, _: Lane<'_>, op: Op<Sqlite, A, T>) -> Result<T> {
        let quiet = op.quiet;
        let (job, answer) = Job::new(op);
        let queued = self.jobs.send(Box::new(job)).await;
        queued.map_err(|_| writer_gone())?;
        let done = answer.await.map_err(|_| writer_gone())?;
        if done.is_ok() && !quiet {
            self.base.committed();
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// Every connection the store opens is durable before it acknowledges, checks foreign
    /// keys and waits for other writers.
    #[tokio::test]
    async fn connections_use_the_durable_settings() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("a").join("b").join("c2m.db");
        let store = SqliteStore::open(&path).await.expect("open");
        assert!(path.exists(), "the folder and file are created");
        let row = sqlx::query(
            "SELECT (SELECT journal_mode FROM pragma_journal_mode) AS journal, \
             (SELECT synchronous FROM pragma_synchronous) AS sync, \
             (SELECT foreign_keys FROM pragma_foreign_keys) AS fk, \
             (SELECT timeout FROM pragma_busy_timeout) AS busy",
        )
        .fetch_one(&store.base.pool)
        .await
        .expect("pragmas");
        assert_eq!(row.get::<String, _>("journal"), "wal");
        assert_eq!(row.get::<i64, _>("sync"), 2, "synchronous=FULL");
        assert_eq!(row.get::<i64, _>("fk"), 1);
        assert_eq!(row.get::<i64, _>("busy"), 10_000);
        let mut writer = writer_options(&connect_options(&path))
            .connect()
            .await
            .expect("a writer's connection");
        for (pragma, set) in [
            ("wal_autocheckpoint", 10_000),
            ("journal_size_limit", 64 << 20),
        ] {
            let row = sqlx::query(&format!("PRAGMA {pragma}"))
                .fetch_one(&mut writer)
                .await
                .expect("the writer's pragma");
            assert_eq!(row.get::<i64, _>(0), set, "{pragma}");
        }
        writer.close().await.expect("close");
        store.close().await;
    }
}
