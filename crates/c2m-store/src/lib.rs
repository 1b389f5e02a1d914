//! Persistence for c2m. All SQL in the project lives in this crate.
//!
//! - [`Store`]: the one interface the server uses (with the feature stores it extends:
//!   [`CatalogueStore`], [`PlanningStore`], [`FactoryStore`], [`TokenStore`]). Every method
//!   is one transaction.
//! - [`sqlite::SqliteStore`]: the embedded default (a file in a data directory, WAL mode,
//!   `synchronous=FULL`, so an acknowledged write survives a crash or power loss).
//! - [`postgres::PgStore`]: the production store; several c2m replicas may share one
//!   database, so every rule that must hold across replicas is enforced with row locks and
//!   constraints inside PostgreSQL, never with in-process state.
//! - `conformance` (feature `conformance`): the test suite every backend must pass.
//! - [`probe`]: the raw durable write rate of a backend, to compare the service against.
//! - [`open`]: picks the backend from a database URL.
//!
//! # Layout: by feature, one dialect layer, two backends
//!
//! Each feature is one module that holds its types, its store trait, the logic both
//! backends share, its SQL (written once where both dialects accept it, side by side where
//! they do not) and, in its docs, the lock that makes its rules safe:
//!
//! - `pooling`: campaigns, batches, pre-orders; placing, cancelling, failing at the
//!   deadline (the decisions are [`c2m_domain::pooling`]'s).
//! - `ledger`: the double-entry money ledger, appended in the same transaction as the
//!   pooling change that causes it, each movement shown to a [`payment::PaymentProvider`]
//!   (the built-in [`payment::LedgerOnly`] by default); balances and their windows.
//! - [`purchasing`]: the purchase orders plans place, their receipts and cancellations.
//! - [`catalogue`], [`planning`], [`factory`] (delivery of work orders and the progress
//!   factories report), [`access`] (bearer tokens).
//! - [`events`]: the storefront events, appended in the same transaction as the change
//!   they tell of (a transactional outbox), numbered in commit order; [`webhooks`]: the
//!   endpoints events are POSTed to, their cursors, leases and delivery log.
//! - [`levers`]: the merchant's levers (extend, lower, close, cancel) and the reads built
//!   on a campaign's history (the fill forecast's input, the demand's insights).
//! - `idempotency`: the keys every mutating call is recorded under.
//!
//! Under them, three shared modules, each written once:
//!
//! - `dialect`: the generic layer the features' SQL is written on: a statement and its
//!   parameters, one transaction type `Tx<'_, D>` for both backends, rows read through
//!   `Columns`, and the `Dialect` trait that says what truly differs (type binding of
//!   timestamps, JSON and lists; row locks; how transactions begin; what is retried).
//! - `engine`: the one implementation of every store trait, over an `Engine` (where a
//!   backend's reads go and how its writes reach a transaction).
//! - `writer`: the one group-commit core (writes waiting together share a transaction).
//!
//! The backend folders keep only what is the backend's own: [`sqlite`] its connection
//! settings, dialect and single writer task; [`postgres`] its pool, dialect and
//! per-campaign writers. The few several-row statements whose binding differs (`UNNEST`
//! over arrays against `json_each` over one JSON array) are written in both dialects in the
//! feature they belong to (`ledger/multirow.rs`, the pool snapshot in `pooling`, the key
//! lists in `idempotency`). The migrations live in `migrations/sqlite` and
//! `migrations/postgres` at the workspace root and are applied when a store opens.
//!
//! # Behaviour the trait leaves open, as implemented
//!
//! - Idempotency keys are scoped by operation (`create_campaign`, `place_preorder`,
//!   `cancel_preorder`, `pay_balance`). The key is looked up before anything that could
//!   refuse the request, so a retry gets the first response even after the batch locked or
//!   the campaign closed; placements, cancels and payments look it up once they hold the
//!   campaign's lock, so a send that waited for the lock while another send of the same key
//!   committed replays that answer instead of being refused; the
//!   response is the recorded snapshot (a replayed pre-order shows the status and money it
//!   was first returned with, while [`Store::get_preorder`] derives the current ones). A refused request records
//!   nothing, not even its key.
//! - Cancelling another consumer's pre-order answers `NotFound`, as for an unknown id, so
//!   ids cannot be probed; cancelling an already cancelled pre-order with a new key is a
//!   `FailedPrecondition`.
//! - [`Store::list_batches`] of an unknown campaign is `NotFound`.
//! - Timestamps are kept to the microsecond: every time a method is given is truncated to
//!   microseconds before it is written or returned, so returned values equal later reads.
//! - Paging cursors are the insertion sequence (`seq`). On PostgreSQL a sequence number is
//!   taken at insert and becomes visible at commit, so under concurrent inserts a page read
//!   at the wrong moment can miss a row that commits later with a lower number. Pre-orders
//!   of one campaign are inserted under its lock, in commit order, so listing by campaign
//!   is not affected; listing campaigns, or one consumer across campaigns, can be.
//!
//! Every store call has a `tracing` span; an error is recorded on it at debug level,
//! because most are refusals the caller expects (sold out, closed), and the server logs
//! database errors once, where it maps them to a status.
//!
//! # Tests
//!
//! `tests/sqlite.rs` runs the conformance suite against SQLite, each case on a fresh file
//! in a temporary folder, with group commit and without; `tests/sqlite_group_commit.rs`
//! checks that concurrent writes share transactions. The cases are listed once, in
//! `conformance_cases!`, which a test checks against the cases written.
//! `tests/postgres.rs` runs the same suite against PostgreSQL when
//! `TEST_DATABASE_URL` names a server and a database to administer from; each case creates
//! its own database `c2m_test_<random>` and drops it afterwards, so cases run in parallel.
//! Without the variable each PostgreSQL test prints a note and passes.
//!
//! ```text
//! cargo test -p c2m-store
//! TEST_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres cargo test -p c2m-store
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::{
    Batch, BatchId, Campaign, CampaignId, CampaignMoney, CampaignProgress, CampaignSpec,
    ConsumerId, DomainError, IdempotencyKey, LedgerEntry, Money, Page, PageRequest, Preorder,
    PreorderId,
};

mod error;

/// What every store call answers: most fail with a [`StoreError`], so it is the default
/// error, and a signature names only what the call returns.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
/// Log filter directives for what the store's driver says that is not the service's
/// business, for a log's default filter: PostgreSQL's notices (sqlx logs them at info:
/// "relation \"_sqlx_migrations\" already exists, skipping" at every start, and on
/// standard error of `c2m token`) are for a DBA; their warnings still show.
pub const QUIET_LOGS: &str = "sqlx::postgres::notice=warn";

pub use access::{NewToken, StoredToken, TokenStore};
pub use catalogue::{
    Catalogue, CatalogueChanged, CatalogueCheck, CatalogueEdit, CatalogueKind, CatalogueStore,
    ChangeCatalogue,
};
pub use error::{is_transient, StoreError};
pub use events::EventStore;
pub use factory::{
    BatchProduction, FactoryPosition, FactoryStore, FeedEntry, ProductionStage, ReportProgress,
    StreamClaim, StreamPage, WorkOrderStatus,
};
pub use levers::{
    CancelCampaign, CloseCampaign, ExtendDeadline, ForecastInput, Insights, Lever, LeverOutcome,
    LeversStore, LowerThreshold, SourceCount, Sources, UnitsAt,
};
pub use planning::{
    FactoryRejection, NewPlan, PlanDetail, PlanStatus, PlanSummary, PlanningStore, QueuedBatch,
    StoredPlan, Withdrawal, WorkOrder,
};
pub use purchasing::{
    CancelPurchaseOrder, NewPurchaseOrder, OrderDate, PurchaseOrder, PurchaseOrderChange,
    PurchaseOrderFilter, PurchaseOrderState, PurchasingStore, ReceivePurchaseOrder,
};
pub use webhooks::WebhookStore;

pub mod access;
pub mod catalogue;
mod dialect;
mod engine;
pub mod events;
pub mod factory;
mod idempotency;
mod ledger;
pub mod levers;
pub mod planning;
mod pooling;
pub mod purchasing;

pub mod payment;
pub mod postgres;
pub mod probe;
pub mod sqlite;
pub mod webhooks;
mod writer;

#[cfg(feature = "conformance")]
pub mod conformance;

/// A request to create a campaign, as the server hands it over.
#[derive(Debug, Clone)]
pub struct CreateCampaign {
    pub idempotency_key: IdempotencyKey,
    pub spec: CampaignSpec,
}

/// A request to place a pre-order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlacePreorder {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub campaign_id: CampaignId,
    pub consumer_id: ConsumerId,
    pub quantity: i64,
    /// Where the demand came from; left out of the fingerprint when empty, so requests made
    /// before sources existed fingerprint as they did.
    #[serde(default, skip_serializing_if = "c2m_domain::PreorderSource::is_empty")]
    pub source: c2m_domain::PreorderSource,
}

/// A request to cancel a pre-order. `consumer_id`, when given, must own the pre-order; the
/// storefront passes it so one consumer cannot cancel another's order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CancelPreorder {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub preorder_id: PreorderId,
    pub consumer_id: Option<ConsumerId>,
}

/// Which pre-orders to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreorderFilter {
    Consumer(ConsumerId),
    Campaign(CampaignId),
    /// One consumer's pre-orders within one campaign.
    ConsumerInCampaign(ConsumerId, CampaignId),
}

/// What the deadline sweeper did to one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineOutcome {
    pub campaign_id: CampaignId,
    /// The batch that failed, if the campaign had an open one; `None` if another sweeper
    /// (or an earlier run of this one) already handled it.
    pub failed_batch: Option<Batch>,
    /// Pre-orders in the failed batch that are now owed a refund.
    pub refunds_due: i64,
}

/// A request to pay a pre-order's balance. `amount` must be exactly the balance due, in the
/// campaign's currency; `consumer_id`, when given, must own the pre-order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PayBalance {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub preorder_id: PreorderId,
    pub consumer_id: Option<ConsumerId>,
    pub amount: Money,
}

/// What closing one batch's balance window did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceWindowOutcome {
    /// The batch, now ready for planning; `None` if it was not due (or already closed by
    /// another sweeper or an earlier run).
    pub batch: Option<Batch>,
    /// Pre-orders whose deposit was forfeited.
    pub forfeited: i64,
}

/// A check of the whole ledger, for audits and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAudit {
    pub transactions: i64,
    /// Transactions (by stored sequence) whose postings do not sum to zero; always empty
    /// unless the database was tampered with.
    pub unbalanced: Vec<i64>,
    /// The sum over all accounts per currency; always zero.
    pub totals: Vec<(String, i64)>,
    /// Pre-orders whose stored hold state disagrees with their ledger movements (a hold
    /// with no `hold` movement, a resolved hold without exactly one capture or release).
    pub hold_mismatches: Vec<PreorderId>,
}

/// One entry of a batch's append-only transition record: the batch entered `status` at
/// `at`. Each batch has one `Open` entry and at most one `Locked` or `Failed` entry, which
/// the database enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTransition {
    pub batch_id: c2m_domain::BatchId,
    pub status: c2m_domain::BatchStatus,
    pub at: DateTime<Utc>,
}

/// The store. Each method runs in one transaction: it either happens completely or not at
/// all, and an error leaves nothing written. The catalogue and planning methods are in
/// their own traits, which every store also implements.
#[async_trait]
pub trait Store:
    CatalogueStore
    + PlanningStore
    + PurchasingStore
    + FactoryStore
    + TokenStore
    + EventStore
    + WebhookStore
    + LeversStore
    + Send
    + Sync
    + 'static
{
    /// Which backend this is, for logs and the health report ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    /// Validates the spec against `now` and creates the campaign. Idempotent by key.
    async fn create_campaign(&self, req: &CreateCampaign, now: DateTime<Utc>) -> Result<Campaign>;

    async fn get_campaign(&self, id: &CampaignId) -> Result<CampaignProgress>;

    /// Campaigns in creation order.
    async fn list_campaigns(&self, page: PageRequest) -> Result<Page<Campaign>>;

    /// Pools the pre-order into the campaign's open batch (opening one if needed) and locks
    /// the batch, in the same transaction, if the order brings it to its threshold.
    /// Idempotent by key: a retry returns the pre-order as it was first returned.
    async fn place_preorder(&self, req: &PlacePreorder, now: DateTime<Utc>) -> Result<Preorder>;

    async fn get_preorder(&self, id: &PreorderId) -> Result<Preorder>;

    /// Pre-orders in placement order.
    async fn list_preorders(
        &self,
        filter: &PreorderFilter,
        page: PageRequest,
    ) -> Result<Page<Preorder>>;

    /// Cancels a pre-order whose batch is still open, returning its units to the batch.
    /// Idempotent by key. A `consumer_id` that does not own the pre-order gets `NotFound`,
    /// as for an unknown id; a pre-order already cancelled (under another key), in a locked
    /// or failed batch, or past the campaign's deadline gets `FailedPrecondition`.
    async fn cancel_preorder(&self, req: &CancelPreorder, now: DateTime<Utc>) -> Result<Preorder>;

    /// A campaign's batches in sequence order; `NotFound` for an unknown campaign.
    async fn list_batches(&self, campaign_id: &CampaignId) -> Result<Vec<Batch>>;

    /// Campaigns whose deadline is at or before `now` and that still have an open batch,
    /// oldest deadline first, at most `limit`.
    async fn campaigns_past_deadline(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignId>>;

    /// Fails the campaign's open batch if its deadline has passed at `now`. Safe to call any
    /// number of times, from any number of sweepers: the batch fails exactly once.
    async fn fail_open_batch_at_deadline(
        &self,
        campaign_id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<DeadlineOutcome>;

    /// Pays the balance of a pre-order whose batch locked, before its balance window
    /// closes. Idempotent by key. A second payment under another key, a cancelled, pooled,
    /// failed or forfeited pre-order, or a closed window is `FailedPrecondition`; a wrong
    /// currency or amount is `InvalidArgument` naming `amount.currency` or `amount.minor`.
    /// Refusals write nothing.
    async fn pay_balance(&self, req: &PayBalance, now: DateTime<Utc>) -> Result<Preorder>;

    /// Locked batches whose balance window has closed at `now` and that are not yet ready
    /// for planning, earliest first, at most `limit`.
    async fn batches_past_balance_window(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<BatchId>>;

    /// Closes the batch's balance window if it has passed: unpaid balances forfeit their
    /// deposits, paid units are settled to the merchant, the batch becomes ready for
    /// planning. Happens exactly once however often it is called.
    async fn close_balance_window(
        &self,
        batch: &BatchId,
        now: DateTime<Utc>,
    ) -> Result<BalanceWindowOutcome>;

    /// Batches ready for production planning, in the order they became ready, at most
    /// `limit`; [`Batch::paid_units`] is what to make.
    async fn batches_ready_for_planning(&self, limit: u32) -> Result<Vec<Batch>>;

    /// The campaign's money summary, in one snapshot; `NotFound` for an unknown campaign.
    async fn campaign_money(&self, campaign: &CampaignId) -> Result<CampaignMoney>;

    /// The campaign's ledger transactions in the order they were written, paged.
    async fn list_ledger(
        &self,
        campaign: &CampaignId,
        page: PageRequest,
    ) -> Result<Page<LedgerEntry>>;

    /// Checks the whole ledger (see [`LedgerAudit`]).
    async fn ledger_audit(&self) -> Result<LedgerAudit>;

    /// Checks that the store is reachable (for the health service).
    async fn ping(&self) -> Result<()>;
}

/// Which store a database URL names: `postgres://` (or `postgresql://`), `sqlite://PATH`
/// (`sqlite:PATH`), or a bare file path for SQLite. Any other scheme is refused: it used to
/// be taken as a file path, so `mysql://db/c2m` or a mistyped `postgress://...` ran the
/// server on a new SQLite file named after the URL, without a word.
///
/// A URL that names no file is refused too: an empty one (`--database-url ""`, or
/// `C2M_DATABASE_URL=` set empty), `sqlite://` or `sqlite::memory:`. SQLite took each as a
/// private in-memory or temporary database: the server failed after saying it was ready,
/// and `c2m token create` printed a token into a database gone when it exited.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    if let Some(path) = sqlite_path(url) {
        let path = path.to_string_lossy();
        if path.trim().is_empty() {
            return Err(
                "names no database: leave it unset for DATA_DIR/c2m.db, or give \
                        postgres://user:pass@host/db or sqlite://PATH"
                    .into(),
            );
        }
        if path == ":memory:" {
            return Err(
                "an in-memory SQLite database is gone when the process ends: \
                        give sqlite://PATH of a file"
                    .into(),
            );
        }
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return Ok(());
    };
    // A URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`); one letter
    // alone is a drive (`C:\data`), not a scheme.
    let is_scheme = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    match scheme {
        "sqlite" => Ok(()),
        "postgres" | "postgresql" if rest.starts_with("//") => postgres_names_a_database(url),
        _ if is_scheme => Err(format!(
            "`{scheme}:` is not a database c2m can use: postgres://user:pass@host/db for \
             PostgreSQL, sqlite://PATH for SQLite"
        )),
        _ => Ok(()),
    }
}

/// A PostgreSQL URL must name its database (`postgres://host/c2m`, `?dbname=c2m`, or
/// `PGDATABASE`). Without one PostgreSQL connects to the database named after the user, and
/// c2m installed its tables there (`postgres://postgres@host/` put them in `postgres`)
/// while its log showed only the URL.
fn postgres_names_a_database(url: &str) -> std::result::Result<(), String> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
    match options.get_database() {
        Some(db) if !db.trim().is_empty() => Ok(()),
        _ => Err(
            "names no database: give it as the URL's path, postgres://user:pass@host/DATABASE \
                  (PostgreSQL would otherwise pick the database named after the user, and c2m \
                  would install itself there)"
                .into(),
        ),
    }
}

/// Opens the store a database URL names, creating and migrating it if needed:
/// `sqlite://PATH` (or a bare file path) for SQLite, `postgres://...` for PostgreSQL;
/// another scheme is refused ([`check_url`]).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    check_url(url).map_err(|e| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
    match sqlite_path(url) {
        None => Ok(std::sync::Arc::new(postgres::PgStore::connect(url).await?)),
        Some(path) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(&path).await?)),
    }
}

/// Whether `url` names a c2m store that exists already (a server has started on it): for
/// SQLite, its file; for PostgreSQL, its tables. Creates nothing (unlike [`open`], which
/// creates and migrates), so `c2m token` can refuse a URL that names the wrong database.
pub async fn store_exists(url: &str) -> Result<bool> {
    check_url(url).map_err(|e| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
    match sqlite_path(url) {
        Some(path) => Ok(path.is_file()),
        None => postgres::store_exists(url).await,
    }
}

/// Which migrations a store has, against those this build has. [`open`] applies what is
/// missing (and refuses a store with a migration this build lacks,
/// [`StoreError::NewerSchema`]); `c2m token` opens a store only when the two agree, so that
/// it never upgrades a store under a running server of an older c2m, which could not
/// start on it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// The newest migration applied to the store (0: none).
    pub applied: i64,
    /// The newest migration this build has.
    pub known: i64,
}

impl Schema {
    /// The newest migration `migrator` has.
    pub(crate) fn newest(migrator: &sqlx::migrate::Migrator) -> i64 {
        migrator.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The newest migration sqlx recorded as applied on `conn` (both databases keep its
    /// table alike; no table: none).
    async fn applied<'c, DB, E>(conn: E) -> Result<i64>
    where
        DB: sqlx::Database,
        E: sqlx::Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
        for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    {
        let sql = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let (applied,): (i64,) = sqlx::query_as(sql).fetch_one(conn).await?;
        Ok(applied)
    }
}

/// The [`Schema`] of the store at `url`; creates and migrates nothing (see
/// [`store_exists`] first: a missing store is an error here).
pub async fn schema(url: &str) -> Result<Schema> {
    check_url(url).map_err(|e| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
    match sqlite_path(url) {
        Some(path) => sqlite::schema(&path).await,
        None => postgres::schema(url).await,
    }
}

/// The SQLite database file [`open`] opens for `url`; `None` for PostgreSQL. The server
/// locks it so that one process serves it (`c2m_server::store_lock`).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    Some(std::path::PathBuf::from(path))
}

/// Domain errors pass through the store unchanged, so the server maps them in one place.
impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        StoreError::Domain(e)
    }
}
