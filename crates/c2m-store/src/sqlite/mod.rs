//! The embedded store: one SQLite file in WAL mode.
//!
//! - Durability: `synchronous=FULL`, so a write is on disk (in the WAL) before it is
//!   acknowledged; `foreign_keys` on; a busy timeout for other processes on the same file.
//! - Writers: SQLite allows one writer at a time, so the store keeps exactly one writer
//!   connection behind a [`tokio::sync::Mutex`] and starts every write with
//!   `BEGIN IMMEDIATE`. Writers queue on the mutex instead of meeting `SQLITE_BUSY` when a
//!   read transaction tries to upgrade; the campaign "lock" of the pooling rule is this one
//!   write lock. A second process on the same file is serialised by `BEGIN IMMEDIATE` and
//!   the busy timeout.
//! - Readers: a small pool; in WAL mode they read a consistent snapshot while the writer
//!   works. Each read is a single statement.
//! - Time: timestamps are INTEGER microseconds since the Unix epoch (UTC).

mod pooling;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

use c2m_domain::{
    Batch, BatchId, Campaign, CampaignId, CampaignProgress, DomainError, Page, PageRequest,
    Preorder, PreorderId,
};

use self::pooling::SqliteTx;
use crate::{
    BatchTransition, CancelPreorder, CreateCampaign, DeadlineOutcome, PlacePreorder,
    PreorderFilter, Store, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers in the pool; reads are short single statements.
const READERS: u32 = 4;

/// The SQLite store. See the module docs for the connection layout.
pub struct SqliteStore {
    /// The only connection that writes; held for the whole of each write transaction.
    writer: Mutex<SqliteConnection>,
    readers: SqlitePool,
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
}

/// Creates the file's folder if it is missing.
pub(crate) async fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    }
    Ok(())
}

pub(crate) fn micros_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time_of(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} out of range")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, and its folder, and applies
    /// the migrations.
    #[tracing::instrument(err)]
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_parent_dir(path).await?;
        let options = connect_options(path);
        let mut writer = options.connect().await?;
        MIGRATOR.run_direct(&mut writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers,
        })
    }

    /// The append-only transition record of a batch, oldest first (for audits and tests).
    pub async fn batch_transitions(
        &self,
        batch: &BatchId,
    ) -> Result<Vec<BatchTransition>, StoreError> {
        pooling::batch_transitions(&self.readers, batch).await
    }

    /// Closes the connections, checkpointing the WAL.
    pub async fn close(self) {
        self.readers.close().await;
        if let Err(e) = self.writer.into_inner().close().await {
            tracing::warn!(error = %e, "closing the sqlite writer");
        }
    }
}

/// Runs one pooling operation on the writer in a `BEGIN IMMEDIATE` transaction.
macro_rules! write {
    ($self:ident, |$tx:ident| $op:expr) => {{
        let mut conn = $self.writer.lock().await;
        let mut $tx = SqliteTx(conn.begin_with("BEGIN IMMEDIATE").await?);
        let result = $op.await;
        $tx.finish(result).await
    }};
}

fn campaign_not_found(id: &CampaignId) -> StoreError {
    DomainError::NotFound {
        entity: "campaign",
        id: id.as_str().to_owned(),
    }
    .into()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    #[tracing::instrument(skip(self), err)]
    async fn create_campaign(
        &self,
        req: &CreateCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        write!(self, |tx| crate::pooling::create_campaign(
            &mut tx, req, now
        ))
    }

    #[tracing::instrument(skip(self), err)]
    async fn get_campaign(&self, id: &CampaignId) -> Result<CampaignProgress, StoreError> {
        pooling::campaign_progress(&self.readers, id)
            .await?
            .ok_or_else(|| campaign_not_found(id))
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_campaigns(&self, page: PageRequest) -> Result<Page<Campaign>, StoreError> {
        pooling::list_campaigns(&self.readers, page).await
    }

    #[tracing::instrument(skip(self), err)]
    async fn place_preorder(
        &self,
        req: &PlacePreorder,
        now: DateTime<Utc>,
    ) -> Result<Preorder, StoreError> {
        write!(self, |tx| crate::pooling::place_preorder(&mut tx, req, now))
    }

    #[tracing::instrument(skip(self), err)]
    async fn get_preorder(&self, id: &PreorderId) -> Result<Preorder, StoreError> {
        pooling::get_preorder(&self.readers, id)
            .await?
            .ok_or_else(|| {
                DomainError::NotFound {
                    entity: "preorder",
                    id: id.as_str().to_owned(),
                }
                .into()
            })
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_preorders(
        &self,
        filter: &PreorderFilter,
        page: PageRequest,
    ) -> Result<Page<Preorder>, StoreError> {
        pooling::list_preorders(&self.readers, filter, page).await
    }

    #[tracing::instrument(skip(self), err)]
    async fn cancel_preorder(
        &self,
        req: &CancelPreorder,
        now: DateTime<Utc>,
    ) -> Result<Preorder, StoreError> {
        write!(self, |tx| crate::pooling::cancel_preorder(
            &mut tx, req, now
        ))
    }

    #[tracing::instrument(skip(self), err)]
    async fn list_batches(&self, campaign_id: &CampaignId) -> Result<Vec<Batch>, StoreError> {
        let batches = pooling::list_batches(&self.readers, campaign_id).await?;
        if batches.is_empty() && !pooling::campaign_exists(&self.readers, campaign_id).await? {
            return Err(campaign_not_found(campaign_id));
        }
        Ok(batches)
    }

    #[tracing::instrument(skip(self), err)]
    async fn campaigns_past_deadline(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignId>, StoreError> {
        pooling::campaigns_past_deadline(&self.readers, now, limit).await
    }

    #[tracing::instrument(skip(self), err)]
    async fn fail_open_batch_at_deadline(
        &self,
        campaign_id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<DeadlineOutcome, StoreError> {
        write!(self, |tx| crate::pooling::fail_open_batch_at_deadline(
            &mut tx,
            campaign_id,
            now
        ))
    }

    #[tracing::instrument(skip(self), err)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}
