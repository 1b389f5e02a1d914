//! The production store: PostgreSQL, shared by any number of c2m replicas.
//!
//! Nothing that must hold across replicas lives in process memory:
//!
//! - Every write on a campaign (place, cancel, fail at the deadline) first takes the
//!   campaign's row lock with `SELECT ... FROM campaigns WHERE id = $1 FOR UPDATE`, so all
//!   writers on one campaign, in any replica, run one after another; they read the pool
//!   counts under that lock (READ COMMITTED: each statement sees what the previous holder
//!   committed), ask the domain, and write.
//! - Constraints back the rules up: at most one open batch per campaign (a partial unique
//!   index), a batch locks or fails once (`batch_transitions` primary key and trigger), an
//!   idempotency key is recorded once (primary key).
//! - Retries: a transaction that fails with a serialization failure (`40001`), a deadlock
//!   (`40P01`) or a unique violation on `idempotency_keys_pkey` (the same key used by a
//!   concurrent request that committed first) is run again from the start, up to
//!   [`ATTEMPTS`] times. The rerun sees the committed key and replays its response or
//!   reports the conflict; nothing from the failed attempt is kept.
//! - Group commit: placements and cancels on one campaign are queued on a per-campaign
//!   writer that runs those waiting together in one transaction, under one `FOR UPDATE`
//!   of the campaign row, a savepoint each, and commits once (one WAL flush for the group);
//!   see [`writer`] for why every call keeps the semantics of its own transaction. The
//!   queue lives in process memory but decides only which calls share a transaction; the
//!   row lock and the constraints still order and check the writers of every replica.

mod writer;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult, PgRow,
    PgTypeInfo,
};
use sqlx::{Arguments, Encode, Postgres, Row, Type};

use c2m_domain::{
    Batch, BatchId, Campaign, CampaignId, CampaignMoney, CampaignProgress, DomainError,
    LedgerEntry, Page, PageRequest, Preorder, PreorderId,
};

pub use self::writer::WriterStats;
use self::writer::{Operation, Writers};
use crate::dialect::{Dialect, Tx, Value};
use crate::payment::{LedgerOnly, PaymentProvider};
use crate::{
    BalanceWindowOutcome, BatchTransition, CancelPreorder, CreateCampaign, DeadlineOutcome,
    LedgerAudit, PayBalance, PlacePreorder, PreorderFilter, Store, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Connections per store (per replica). PostgreSQL's default limit is 100 in all.
pub const DEFAULT_POOL_SIZE: u32 = 10;
/// How many times a write transaction is tried before its error is returned.
pub const ATTEMPTS: u32 = 5;
/// The largest group a campaign's writer commits at once. Each operation of a group runs
/// in a savepoint, a subtransaction with its own transaction id once it writes; PostgreSQL
/// keeps up to 64 of those per backend in shared memory, and past that every other
/// session's snapshot has to look subtransactions up on disk (`pg_subtrans`), which slows
/// the whole server. So a group never holds more than 64 savepoints that wrote.
pub const MAX_GROUP: usize = 64;

/// How the PostgreSQL store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections per store (per replica); see [`DEFAULT_POOL_SIZE`].
    pub pool_size: u32,
    /// Most placements and cancels of one campaign committed together in one transaction,
    /// at most [`MAX_GROUP`]; 1 turns group commit off.
    pub max_group: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: DEFAULT_POOL_SIZE,
            max_group: MAX_GROUP,
        }
    }
}

/// The PostgreSQL store. See the module docs for how replicas stay correct.
pub struct PgStore {
    pool: PgPool,
    /// The per-campaign writers placements and cancels are queued on (group commit).
    writers: std::sync::Arc<Writers>,
    /// Shown every money movement inside its transaction (see [`crate::payment`]).
    provider: std::sync::Arc<dyn PaymentProvider>,
}

impl PgStore {
    /// Connects with [`DEFAULT_POOL_SIZE`] connections and applies the migrations (sqlx
    /// holds an advisory lock while migrating, so replicas may start together).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_pool_size(url, DEFAULT_POOL_SIZE).await
    }

    pub async fn connect_with_pool_size(url: &str, size: u32) -> Result<Self, StoreError> {
        let options = PgOptions {
            pool_size: size,
            ..PgOptions::default()
        };
        Self::connect_with(url, options).await
    }

    #[tracing::instrument(skip(url), err)]
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(Duration::from_secs(30))
            // No ping before every acquire: the campaign writers take a connection per
            // group, and under load a ping is one more round trip of the group, paid by
            // every order waiting on the campaign. A connection is still pinged when it is
            // returned (sqlx does that off the caller's path, and drops it if broken); one
            // that breaks while idle (the server restarted) fails its next statement, and
            // the caller retries with the same idempotency key.
            .test_before_acquire(false)
            .connect_with(connect_options(url)?)
            .await?;
        MIGRATOR.run(&pool).await?;
        let max_group = options.max_group.clamp(1, MAX_GROUP);
        Ok(PgStore {
            writers: std::sync::Arc::new(Writers::new(pool.clone(), max_group)),
            pool,
            provider: std::sync::Arc::new(LedgerOnly),
        })
    }

    /// Uses `provider` instead of the built-in [`LedgerOnly`].
    pub fn with_provider(mut self, provider: std::sync::Arc<dyn PaymentProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// The append-only transition record of a batch, oldest first (for audits and tests).
    pub async fn batch_transitions(
        &self,
        batch: &BatchId,
    ) -> Result<Vec<BatchTransition>, StoreError> {
        crate::pooling::batch_transitions(&self.pool, batch).await
    }

    /// Placements and cancels run and transactions used so far by this store's writers.
    pub fn writer_stats(&self) -> WriterStats {
        self.writers.stats()
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The session settings of every connection (the probe uses them too):
///
/// - `idle_in_transaction_session_timeout`: a replica that stalls inside a transaction
///   (paused, partitioned) holds its campaign's lock; the server ends its session after a
///   minute, so the other replicas are not blocked for longer.
/// - `lock_timeout`: a write that waits more than ten seconds for a campaign's lock fails
///   (`55P03`, a database error the caller may retry with the same key) instead of hanging.
/// - `plan_cache_mode` `force_generic_plan`: every statement the store sends is a short
///   one on keys, prepared once per connection; by default PostgreSQL may plan such a
///   statement afresh at every execution, and for the pool-state read planning took 0.6 ms
///   against 0.1 ms of execution. A campaign's writes run one after another under its
///   lock, so that planning time was paid by every order queued behind. The generic plans
///   use the same indexes (no statement has optional filters a generic plan would scan for).
/// - `application_name` `c2m`, to find the service in `pg_stat_activity`.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("c2m")
        .options([
            ("idle_in_transaction_session_timeout", "60s"),
            ("lock_timeout", "10s"),
            ("plan_cache_mode", "force_generic_plan"),
        ]))
}

/// Whether running the whole transaction again may succeed (see the module docs).
fn retryable(e: &StoreError) -> bool {
    <Postgres as Dialect>::retryable(e)
}

/// PostgreSQL's dialect: timestamps are `TIMESTAMPTZ`, a recorded response is `JSONB`,
/// writers lock the rows their rules rely on, and a snapshot is a read-only REPEATABLE
/// READ transaction.
impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const ROW_LOCKS: bool = true;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

    fn push<'q>(args: &mut PgArguments, value: Value<'q>) -> Result<(), BoxDynError> {
        match value {
            Value::Ts(t) => args.add(t),
            Value::OptTs(t) => args.add(t),
            Value::Json(json) => args.add(Jsonb(json)),
            Value::List(list) => args.add(list),
            plain => plain.push_plain::<Postgres>(args),
        }
    }

    fn read_ts(row: &PgRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(row.try_get(col)?)
    }

    fn read_ts_opt(row: &PgRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get(col)?)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    /// A serialization failure (`40001`), a deadlock (`40P01`), or a unique violation on
    /// `idempotency_keys_pkey` (the same key used by a concurrent request that committed
    /// first): see the module docs.
    fn retryable(e: &StoreError) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = e else {
            return false;
        };
        match db.code().as_deref() {
            Some("40001") | Some("40P01") => true,
            Some("23505") => db.constraint() == Some("idempotency_keys_pkey"),
            _ => false,
        }
    }
}

/// A pooled connection in a READ COMMITTED transaction. Writers on one campaign are
/// serialised by [`crate::pooling::PoolingTx::lock_campaign`] (`SELECT ... FOR UPDATE`);
/// every statement after it sees what the previous holder of the lock committed.
pub(crate) type PgTx = Tx<Postgres>;

/// A JSON document, given as text, bound as `JSONB` (what `$n::jsonb` would do).
struct Jsonb<'a>(&'a str);

impl Type<Postgres> for Jsonb<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(JSONB_OID))
    }
}

/// `jsonb` in `pg_type`.
const JSONB_OID: u32 = 3802;

impl Encode<'_, Postgres> for Jsonb<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // The binary form of JSONB: a version byte, then the text.
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// Runs one pooling operation in a transaction, retrying as the module docs describe.
macro_rules! write {
    ($self:ident, |$tx:ident| $op:expr) => {{
        let mut attempt = 1;
        loop {
            let mut $tx = PgTx::write(&$self.pool).await?;
            let result = $op.await;
            match $tx.finish(result).await {
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying transaction");
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

// After `write!`, which it uses.
mod planning;

struct PlaceOp(
    PlacePreorder,
    DateTime<Utc>,
    std::sync::Arc<dyn PaymentProvider>,
);
struct CancelOp(
    CancelPreorder,
    DateTime<Utc>,
    std::sync::Arc<dyn PaymentProvider>,
);

#[async_trait]
impl Operation for PlaceOp {
    type Output = Preorder;
    async fn run(&self, tx: &mut PgTx) -> Result<Preorder, StoreError> {
        crate::pooling::place_preorder(tx, &*self.2, &self.0, self.1).await
    }

    fn idempotency_key(&self) -> Option<(&'static str, String)> {
        Some((
            crate::pooling::OP_PLACE_PREORDER,
            self.0.idempotency_key.as_str().to_owned(),
        ))
    }

    fn placement(&self) -> Option<crate::pooling::Placing<'_>> {
        Some(crate::pooling::Placing {
            req: &self.0,
            now: self.1,
            provider: &*self.2,
        })
    }

    fn placed(&self, answer: Result<Preorder, StoreError>) -> Result<Preorder, StoreError> {
        answer
    }
}

#[async_trait]
impl Operation for CancelOp {
    type Output = Preorder;
    async fn run(&self, tx: &mut PgTx) -> Result<Preorder, StoreError> {
        crate::pooling::cancel_preorder(tx, &*self.2, &self.0, self.1).await
    }

    fn idempotency_key(&self) -> Option<(&'static str, String)> {
        Some((
            crate::pooling::OP_CANCEL_PREORDER,
            self.0.idempotency_key.as_str().to_owned(),
        ))
    }
}

fn campaign_not_found(id: &CampaignId) -> StoreError {
    DomainError::NotFound {
        entity: "campaign",
        id: id.as_str().to_owned(),
    }
    .into()
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn create_campaign(
        &self,
        req: &CreateCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        write!(self, |tx| crate::pooling::create_campaign(
            &mut tx, req, now
        ))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_campaign(&self, id: &CampaignId) -> Result<CampaignProgress, StoreError> {
        crate::pooling::campaign_progress(&self.pool, id)
            .await?
            .ok_or_else(|| campaign_not_found(id))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_campaigns(&self, page: PageRequest) -> Result<Page<Campaign>, StoreError> {
        crate::pooling::list_campaigns(&self.pool, page).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn place_preorder(
        &self,
        req: &PlacePreorder,
        now: DateTime<Utc>,
    ) -> Result<Preorder, StoreError> {
        let op = PlaceOp(req.clone(), now, self.provider.clone());
        self.writers.write(&req.campaign_id, op).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_preorder(&self, id: &PreorderId) -> Result<Preorder, StoreError> {
        crate::pooling::get_preorder(&self.pool, id)
            .await?
            .ok_or_else(|| {
                DomainError::NotFound {
                    entity: "preorder",
                    id: id.as_str().to_owned(),
                }
                .into()
            })
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_preorders(
        &self,
        filter: &PreorderFilter,
        page: PageRequest,
    ) -> Result<Page<Preorder>, StoreError> {
        crate::pooling::list_preorders(&self.pool, filter, page).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn cancel_preorder(
        &self,
        req: &CancelPreorder,
        now: DateTime<Utc>,
    ) -> Result<Preorder, StoreError> {
        // A cancel is grouped with its campaign's other writes, so its campaign is read
        // first (a pre-order never changes campaign). An unknown id runs on its own and
        // answers as the shared logic says (a replay, or `NotFound`).
        match crate::pooling::campaign_of(&self.pool, &req.preorder_id).await? {
            Some(campaign) => {
                let op = CancelOp(req.clone(), now, self.provider.clone());
                self.writers.write(&campaign, op).await
            }
            None => write!(self, |tx| crate::pooling::cancel_preorder(
                &mut tx,
                &*self.provider,
                req,
                now
            )),
        }
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_batches(&self, campaign_id: &CampaignId) -> Result<Vec<Batch>, StoreError> {
        let batches = crate::pooling::list_batches(&self.pool, campaign_id).await?;
        if batches.is_empty() && !crate::pooling::campaign_exists(&self.pool, campaign_id).await? {
            return Err(campaign_not_found(campaign_id));
        }
        Ok(batches)
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn campaigns_past_deadline(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignId>, StoreError> {
        crate::pooling::campaigns_past_deadline(&self.pool, now, limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn fail_open_batch_at_deadline(
        &self,
        campaign_id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<DeadlineOutcome, StoreError> {
        write!(self, |tx| crate::pooling::fail_open_batch_at_deadline(
            &mut tx,
            &*self.provider,
            campaign_id,
            now
        ))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn pay_balance(
        &self,
        req: &PayBalance,
        now: DateTime<Utc>,
    ) -> Result<Preorder, StoreError> {
        write!(self, |tx| crate::ledger::pay_balance(
            &mut tx,
            &*self.provider,
            req,
            now
        ))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batches_past_balance_window(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<BatchId>, StoreError> {
        crate::ledger::batches_past_balance_window(&self.pool, now, limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn close_balance_window(
        &self,
        batch: &BatchId,
        now: DateTime<Utc>,
    ) -> Result<BalanceWindowOutcome, StoreError> {
        write!(self, |tx| crate::ledger::close_balance_window(
            &mut tx,
            &*self.provider,
            batch,
            now
        ))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batches_ready_for_planning(&self, limit: u32) -> Result<Vec<Batch>, StoreError> {
        crate::ledger::batches_ready_for_planning(&self.pool, limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn campaign_money(&self, campaign: &CampaignId) -> Result<CampaignMoney, StoreError> {
        crate::ledger::campaign_money(&self.pool, campaign)
            .await?
            .ok_or_else(|| campaign_not_found(campaign))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_ledger(
        &self,
        campaign: &CampaignId,
        page: PageRequest,
    ) -> Result<Page<LedgerEntry>, StoreError> {
        let entries = crate::ledger::list_ledger(&self.pool, campaign, page).await?;
        if entries.items.is_empty()
            && !crate::pooling::campaign_exists(&self.pool, campaign).await?
        {
            return Err(campaign_not_found(campaign));
        }
        Ok(entries)
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ledger_audit(&self) -> Result<LedgerAudit, StoreError> {
        crate::ledger::ledger_audit(&self.pool).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
