//! The conformance suite: the behaviour every [`Store`] backend must show, written once
//! against the trait (the IOx catalog's `interface_tests` pattern).
//!
//! A backend's test file provides a [`Fixture`] (a fresh, empty database per test) and
//! expands [`conformance_tests!`](crate::conformance_tests), which generates one
//! `#[tokio::test]` per case:
//!
//! ```ignore
//! c2m_store::conformance_tests!(async { Some(c2m_store::conformance::SqliteFixture::new().await) });
//! ```
//!
//! The fixture expression may evaluate to `None` to skip (the PostgreSQL tests do when
//! `TEST_DATABASE_URL` is not set). Each case runs on its own task; the fixture's
//! [`Fixture::teardown`] runs afterwards whether the case passed or panicked.
//!
//! [`fresh_pg_database`] and [`drop_pg_database`] are public so that end-to-end tests can
//! give real server processes a database of their own.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::Mutex;

use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, CampaignMoney, CampaignSpec, ConsumerId,
    DomainError, IdempotencyKey, PageRequest, Preorder, PreorderId, PreorderStatus, PriceTier,
    Refusal,
};

use crate::catalogue::{
    CatalogueFactory, CatalogueMaterial, CatalogueProduct, CatalogueSupplier, FactoryLine,
    OfferPriceBreak, SupplierOffer,
};
use crate::engine::Engine;
use crate::planning::{MaterialDelivery, NewWorkOrder, PlanDetail, RunBatch, WorkOrderRun};
use crate::postgres::PgStore;
use crate::sqlite::{SqliteOptions, SqliteStore};
use crate::{
    BatchTransition, CancelPreorder, Catalogue, CatalogueChanged, CatalogueCheck, CatalogueEdit,
    CatalogueKind, ChangeCatalogue, CreateCampaign, NewPlan, PlacePreorder, PlanStatus,
    PreorderFilter, Store, StoreError,
};
use crate::{ProductionStage, ReportProgress};
use c2m_domain::{Progress, WorkOrderState};

pub mod events;
pub use events::{
    a_deleted_webhook_endpoint_is_never_claimed_again,
    a_late_batch_is_late_for_the_reason_of_its_last_run,
    a_newer_releases_events_are_read_as_stored, a_passed_webhook_endpoint_waits_behind_the_others,
    a_run_of_webhook_attempts_is_recorded_in_one_write, a_shipped_batch_shows_when_it_shipped,
    concurrent_writes_are_numbered_in_commit_order, events_are_written_with_their_changes_in_order,
    refused_and_replayed_writes_append_no_event, ship_date_changes_are_events_when_the_date_moves,
    webhook_endpoints_are_claimed_once_and_resume_from_their_cursor,
};
pub mod ledger;
pub mod levers;
pub mod purchasing;
pub use ledger::{
    balance_window_closes_once_under_racing_sweepers, check_ledger,
    failed_batch_releases_every_hold_exactly_once, full_price_deposit_is_ready_at_lock,
    ledger_follows_preorders_through_lock_pay_and_forfeit,
};
pub use levers::{
    a_cancel_after_a_balance_window_leaves_its_forfeits_forfeited,
    a_cancel_and_a_plan_racing_for_a_batch_take_turns,
    a_cancel_and_an_acceptance_racing_take_turns,
    a_cancel_withdraws_the_work_orders_no_factory_accepted_and_only_those,
    a_lowering_of_a_campaign_lowered_before_first_thresholds_keeps_the_old_reading,
    a_rejection_refunds_a_cancelled_campaigns_batch_that_nothing_else_makes,
    an_extension_of_a_campaign_extended_before_first_deadlines_keeps_the_old_reading,
    cancel_campaign_refunds_deposits_and_balances_once,
    cancel_campaign_takes_a_settled_batch_back_from_the_merchant,
    close_campaign_fails_the_open_batch_and_releases_every_deposit,
    extend_deadline_only_later_while_selling, forecast_input_reads_arrivals_and_earlier_campaigns,
    insights_split_the_demand_and_add_up,
    levers_that_waited_behind_the_deadline_find_the_campaign_ended,
    lower_threshold_locks_the_open_batch_at_its_tier,
};
pub use purchasing::{
    a_later_plan_that_uses_an_earlier_order_adds_its_batches,
    a_promise_gives_due_dates_and_plans_give_ship_dates,
    an_older_promise_before_the_balance_is_due_moves_after_it,
    changes_sent_to_two_replicas_at_once_answer_as_the_first,
    purchase_orders_are_received_once_and_return_on_rejection,
    receipts_count_pieces_whole_and_only_for_materials_in_the_catalogue,
};

/// A fresh, empty database for one test case, and ways to look at it.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Another store on the same database with its own connections, standing in for a
    /// second c2m process.
    async fn replica(&self) -> Arc<dyn Store>;
    /// The batch's transition record, read past the trait.
    async fn transitions(&self, batch: &BatchId) -> Vec<BatchTransition>;
    /// The database's URL, for reads and writes past the store.
    fn database_url(&self) -> String;
    /// Runs `sql` (one statement or several) on the database past the store: for upgrade
    /// cases, to leave rows as an older c2m left them (what a migration could not fill in).
    async fn execute_past_the_store(&self, sql: &str) {
        run_script(&self.database_url(), sql).await
    }
    /// Releases the database (closes connections, drops a PostgreSQL test database).
    async fn teardown(&self);
}

/// Runs one case on its own task, then tears the fixture down, then re-raises the case's
/// panic if it had one. Used by [`conformance_tests!`](crate::conformance_tests).
pub async fn run_case<Fut>(fixture: Arc<dyn Fixture>, case: impl FnOnce(Arc<dyn Fixture>) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    seed_catalogue(&*fixture.store()).await;
    let outcome = tokio::spawn(case(fixture.clone())).await;
    fixture.teardown().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("case task failed: {e}"),
        }
    }
}

/// The one list of conformance cases, grouped by feature: [`conformance_tests!`] expands
/// one test per name from it. A name here that is not a case does not compile, and the
/// crate's test `every_written_case_is_registered` fails for a case
/// (`pub async fn name(fx: Arc<dyn Fixture>)`) that is not here: a case that is written is a
/// case that runs. The argument is the macro to call with the names (after its own
/// arguments), in brackets.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_cases {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! {
            $($args)*
            // Campaigns and pooling.
            campaigns_create_get_list_and_page,
            bad_campaign_spec_names_the_field_and_writes_nothing,
            bad_preorder_names_the_field_and_writes_nothing,
            create_campaign_is_idempotent,
            place_preorder_is_idempotent,
            place_preorder_retry_returns_the_first_result_after_state_changes,
            cancel_preorder_is_idempotent,
            threshold_locks_exactly_once_and_next_order_opens_the_next_batch,
            batch_cap_refuses_an_order_that_does_not_fit,
            per_consumer_and_total_caps,
            cancel_only_while_open_and_units_return,
            cancel_of_another_consumers_order_is_not_found,
            list_preorders_filters_and_pages,
            deadline_fails_the_open_batch_exactly_once,
            empty_open_batch_still_fails_at_the_deadline,
            orders_outside_the_campaign_window_are_refused,
            concurrent_orders_lock_each_batch_exactly_once,
            concurrent_orders_never_overfill_a_capped_batch,
            concurrent_retries_with_one_key_place_one_preorder,
            concurrent_sends_of_one_key_replay_once_the_first_commits,
            concurrent_orders_from_two_replicas,
            abandoned_calls_happen_whole_or_not_at_all,
            writes_arriving_together_keep_their_own_results,
            placements_together_answer_as_one_at_a_time,
            random_operations_match_a_model_of_the_pooling_rule,
            // The ledger (`conformance/ledger.rs`).
            ledger_follows_preorders_through_lock_pay_and_forfeit,
            failed_batch_releases_every_hold_exactly_once,
            full_price_deposit_is_ready_at_lock,
            balance_window_closes_once_under_racing_sweepers,
            // Events (`conformance/events.rs`).
            events_are_written_with_their_changes_in_order,
            a_newer_releases_events_are_read_as_stored,
            refused_and_replayed_writes_append_no_event,
            concurrent_writes_are_numbered_in_commit_order,
            webhook_endpoints_are_claimed_once_and_resume_from_their_cursor,
            a_deleted_webhook_endpoint_is_never_claimed_again,
            a_passed_webhook_endpoint_waits_behind_the_others,
            a_run_of_webhook_attempts_is_recorded_in_one_write,
            ship_date_changes_are_events_when_the_date_moves,
            a_late_batch_is_late_for_the_reason_of_its_last_run,
            a_shipped_batch_shows_when_it_shipped,
            // The merchant's levers and the forecast's input (`conformance/levers.rs`).
            extend_deadline_only_later_while_selling,
            an_extension_of_a_campaign_extended_before_first_deadlines_keeps_the_old_reading,
            a_lowering_of_a_campaign_lowered_before_first_thresholds_keeps_the_old_reading,
            levers_that_waited_behind_the_deadline_find_the_campaign_ended,
            lower_threshold_locks_the_open_batch_at_its_tier,
            close_campaign_fails_the_open_batch_and_releases_every_deposit,
            cancel_campaign_refunds_deposits_and_balances_once,
            a_cancel_after_a_balance_window_leaves_its_forfeits_forfeited,
            cancel_campaign_takes_a_settled_batch_back_from_the_merchant,
            a_rejection_refunds_a_cancelled_campaigns_batch_that_nothing_else_makes,
            a_cancel_and_a_plan_racing_for_a_batch_take_turns,
            a_cancel_withdraws_the_work_orders_no_factory_accepted_and_only_those,
            a_cancel_and_an_acceptance_racing_take_turns,
            forecast_input_reads_arrivals_and_earlier_campaigns,
            insights_split_the_demand_and_add_up,
            // The catalogue.
            catalogue_changes_and_the_sku_rule,
            // Planning.
            plans_take_batches_once_and_number_work_orders_per_factory,
            one_planning_key_sent_to_two_replicas_stores_one_plan,
            scheduled_cycles_take_turns_by_one_lease,
            // Access tokens.
            one_bootstrap_admin_per_decision_across_replicas,
            // Factory delivery.
            factories_get_their_own_work_orders_and_rejections_requeue_units,
            a_factory_stream_claim_replaces_the_older_on_every_replica,
            a_material_a_rejectable_work_order_takes_from_stock_stays,
            // The promise and purchase orders (`conformance/purchasing.rs`).
            a_promise_gives_due_dates_and_plans_give_ship_dates,
            an_older_promise_before_the_balance_is_due_moves_after_it,
            purchase_orders_are_received_once_and_return_on_rejection,
            a_later_plan_that_uses_an_earlier_order_adds_its_batches,
            receipts_count_pieces_whole_and_only_for_materials_in_the_catalogue,
            changes_sent_to_two_replicas_at_once_answer_as_the_first,
        }
    };
}

/// Generates one `#[tokio::test]` per conformance case ([`conformance_cases!`]). The
/// argument is an expression that evaluates to a future of `Option<impl Fixture>`; `None`
/// skips the test.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_cases!([$crate::conformance_tests] @cases $fixture;);
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(fixture) = $fixture.await else { return };
                $crate::conformance::run_case(
                    ::std::sync::Arc::new(fixture),
                    $crate::conformance::$case,
                )
                .await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// The store under test and the replicas a case opened on the same database, kept so that
/// teardown can close them: what every fixture holds, whatever its backend.
struct Stores<S> {
    store: Arc<S>,
    replicas: Mutex<Vec<Arc<S>>>,
}

impl<S: Engine> Stores<S> {
    fn new(store: S) -> Self {
        Stores {
            store: Arc::new(store),
            replicas: Mutex::new(Vec::new()),
        }
    }

    /// Keeps a second store the case opened, and hands it out.
    async fn add_replica(&self, replica: S) -> Arc<dyn Store> {
        let replica = Arc::new(replica);
        self.replicas.lock().await.push(replica.clone());
        replica
    }

    /// [`Fixture::transitions`]: read past the trait, on the store under test.
    async fn transitions(&self, batch: &BatchId) -> Vec<BatchTransition> {
        crate::pooling::batch_transitions(self.store.readers(), batch)
            .await
            .expect("read transitions")
    }
}

/// A SQLite database file in a temporary folder that is removed on teardown.
pub struct SqliteFixture {
    dir: tempfile::TempDir,
    options: SqliteOptions,
    stores: Stores<SqliteStore>,
}

impl SqliteFixture {
    pub async fn new() -> Self {
        Self::with_options(SqliteOptions::default()).await
    }

    pub async fn with_options(options: SqliteOptions) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = SqliteStore::open_with(&Self::file(&dir), options)
            .await
            .expect("open sqlite store");
        SqliteFixture {
            dir,
            options,
            stores: Stores::new(store),
        }
    }

    /// The database file in the fixture's folder.
    fn file(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("data").join("c2m.db")
    }
}

#[async_trait]
impl Fixture for SqliteFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.stores.store.clone()
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}", Self::file(&self.dir).display())
    }

    async fn replica(&self) -> Arc<dyn Store> {
        let replica = SqliteStore::open_with(&Self::file(&self.dir), self.options)
            .await
            .expect("open second sqlite store");
        self.stores.add_replica(replica).await
    }

    async fn transitions(&self, batch: &BatchId) -> Vec<BatchTransition> {
        self.stores.transitions(batch).await
    }

    async fn teardown(&self) {}
}

/// Runs one statement on the SQLite database at `path`, past the store (for tests that
/// leave a store as another c2m left it), and returns the first column of its rows, as
/// integers.
pub async fn sqlite_past_the_store(path: &std::path::Path, sql: &str) -> Vec<i64> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("connect");
    let rows: Vec<(i64,)> = sqlx::query_as(sql)
        .fetch_all(&mut conn)
        .await
        .expect("statement");
    conn.close().await.expect("close");
    rows.into_iter().map(|(v,)| v).collect()
}

/// Every migration this build applies, one line each as `migrations/released.txt` keeps
/// them: the backend, the version, the description and the SHA-384 of its SQL as sqlx
/// records it in a store. A store that applied a migration refuses a build whose copy of
/// it differs (sqlx: "previously applied but has been modified"), so a released migration
/// must never change: `tests/migrations.rs` holds the tree to that.
pub fn migration_lines() -> Vec<String> {
    let backends = [
        ("sqlite", &crate::sqlite::MIGRATOR),
        ("postgres", &crate::postgres::MIGRATOR),
    ];
    let mut lines = Vec::new();
    for (backend, migrator) in backends {
        for m in migrator.iter() {
            let sum: String = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
            lines.push(format!(
                "{backend} {:04} {} {sum}",
                m.version,
                m.description.replace(' ', "_")
            ));
        }
    }
    lines
}

/// Runs a script of many statements (a dump an older c2m's store was saved as) on the
/// database at `url`, past the store: SQLite creates the file; PostgreSQL needs the
/// database to exist (see [`fresh_pg_database`]).
pub async fn run_script(url: &str, script: &str) {
    use sqlx::{ConnectOptions, Connection};
    // Each backend's connection on its own, and `Executor::execute` rather than `raw_sql`:
    // [`Fixture::execute_past_the_store`] needs a `Send` future, which the compiler cannot
    // show for every lifetime of a function generic over the connection, nor of `raw_sql`.
    let done = match crate::sqlite_path(url) {
        Some(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = options
                .create_if_missing(true)
                .connect()
                .await
                .expect("connect");
            let done = sqlx::Executor::execute(&mut conn, script).await.map(drop);
            conn.close().await.expect("close");
            done
        }
        None => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let done = sqlx::Executor::execute(&mut conn, script).await.map(drop);
            conn.close().await.expect("close");
            done
        }
    };
    done.expect("the script");
}

/// The transactions PostgreSQL has counted for the database at `url` (committed and
/// rolled back, `pg_stat_database`; a busy session's are counted within a second or so,
/// an idle one's later), for tests that look at how hard the server works the database.
pub async fn pg_transactions(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(xact_commit + xact_rollback AS BIGINT) FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_database");
    conn.close().await.ok();
    n
}

/// Every table of the database at `url` (sqlx's own and SQLite's included) with its number
/// of rows, read past the store.
pub async fn table_rows(url: &str) -> std::collections::BTreeMap<String, i64> {
    use sqlx::{ConnectOptions, Connection};
    match crate::sqlite_path(url) {
        Some(path) => {
            let conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .connect()
                .await
                .expect("connect");
            count_rows(conn, "SELECT name FROM sqlite_master WHERE type = 'table'").await
        }
        None => {
            let conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let tables = "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'";
            count_rows(conn, tables).await
        }
    }
}

/// [`table_rows`] on one connection of either backend: `tables` names the tables.
async fn count_rows<C>(mut conn: C, tables: &str) -> std::collections::BTreeMap<String, i64>
where
    C: sqlx::Connection,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
    for<'r> (String,): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let names: Vec<(String,)> = sqlx::query_as(tables)
        .fetch_all(&mut conn)
        .await
        .expect("tables");
    let mut rows = std::collections::BTreeMap::new();
    for (name,) in names {
        let sql = format!("SELECT COUNT(*) FROM \"{name}\"");
        let (n,): (i64,) = sqlx::query_as(&sql)
            .fetch_one(&mut conn)
            .await
            .expect("count");
        rows.insert(name, n);
    }
    conn.close().await.expect("close");
    rows
}

/// The PostgreSQL server the PostgreSQL tests may create databases on
/// (`TEST_DATABASE_URL`), or `None` when it is not set: locally the PostgreSQL cases then
/// skip, and the first to skip in a test process says so once on stderr; under `CI=true`
/// (or `CI=1`) a missing database fails the test instead, so a CI run can never pass
/// without its PostgreSQL suites. Every PostgreSQL test of the workspace asks here.
pub fn test_database_url() -> Option<String> {
    static SAID: std::sync::Once = std::sync::Once::new();
    required_in_ci(
        "TEST_DATABASE_URL",
        "the PostgreSQL suites must run in CI",
        "the PostgreSQL cases of this test binary",
        &SAID,
    )
}

/// The CA certificate (PEM file) that signed the test PostgreSQL's server certificate
/// (`TEST_DATABASE_TLS_CA`), for the cases that connect over TLS; `None` when it is not
/// set, which under `CI` fails the test instead, as [`test_database_url`] does: `.ci/run`
/// starts its PostgreSQL with TLS on and sets it.
pub fn test_database_tls_ca() -> Option<String> {
    static SAID: std::sync::Once = std::sync::Once::new();
    required_in_ci(
        "TEST_DATABASE_TLS_CA",
        "the TLS case must run in CI",
        "the PostgreSQL TLS case",
        &SAID,
    )
}

/// The value of `var`, or `None` when it is unset or empty: then, under `CI=true` (or
/// `CI=1`), a failure saying `why`; otherwise `what` is said skipped, once a process.
/// Written to the process's stderr, not through `eprintln!`, which the test harness
/// captures and hides for passing tests: the skip must be seen.
fn required_in_ci(
    var: &str,
    why: &str,
    what: &str,
    said: &'static std::sync::Once,
) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "{var} is not set but CI is: {why}");
            said.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {what} ({var} is not set; see docs/testing.md)"
                );
            });
            None
        }
    }
}

/// A fresh PostgreSQL database, created through an admin URL and dropped on teardown.
pub struct PgFixture {
    admin_url: String,
    url: String,
    stores: Stores<PgStore>,
}

/// Connections per store in the tests: cases run in parallel against one server.
const TEST_POOL_SIZE: u32 = 8;

impl PgFixture {
    /// `admin_url` names a database the test user may connect to and create databases from
    /// (for example `postgres://postgres:postgres@127.0.0.1:5432/postgres`).
    pub async fn new(admin_url: &str) -> Self {
        let url = fresh_pg_database(admin_url).await;
        let store = PgStore::connect_with_pool_size(&url, TEST_POOL_SIZE)
            .await
            .expect("connect to the test database");
        PgFixture {
            admin_url: admin_url.to_owned(),
            url,
            stores: Stores::new(store),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store under test as what it is, for figures only PostgreSQL has.
    pub fn pg_store(&self) -> Arc<PgStore> {
        self.stores.store.clone()
    }
}

#[async_trait]
impl Fixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.stores.store.clone()
    }

    fn database_url(&self) -> String {
        self.url.clone()
    }

    async fn replica(&self) -> Arc<dyn Store> {
        let replica = PgStore::connect_with_pool_size(&self.url, TEST_POOL_SIZE)
            .await
            .expect("connect a second store");
        self.stores.add_replica(replica).await
    }

    async fn transitions(&self, batch: &BatchId) -> Vec<BatchTransition> {
        self.stores.transitions(batch).await
    }

    async fn teardown(&self) {
        for replica in self.stores.replicas.lock().await.iter() {
            replica.close().await;
        }
        self.stores.store.close().await;
        drop_pg_database(&self.admin_url, &self.url).await;
    }
}

/// The URL `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn database_name(url: &str) -> &str {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or(base)
}

/// Creates an empty database `c2m_test_<random>` through `admin_url` and returns its URL.
/// Panics if the server cannot be reached: this is a test helper.
pub async fn fresh_pg_database(admin_url: &str) -> String {
    let name = format!("c2m_test_{}", uuid::Uuid::new_v4().simple());
    let create = format!("CREATE DATABASE {name}");
    on_admin_database(admin_url, &create, "create the test database").await;
    with_database(admin_url, &name)
}

/// Drops a database made by [`fresh_pg_database`], disconnecting anyone still on it.
pub async fn drop_pg_database(admin_url: &str, url: &str) {
    let name = database_name(url);
    assert!(
        name.starts_with("c2m_test_")
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "refusing to drop {name:?}: not a test database"
    );
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    on_admin_database(admin_url, &drop, "drop the test database").await;
}

/// Runs one statement on the admin database, on a connection of its own; `what` says
/// what it does if it fails.
/// Waits until no session but this one is connected to the database at `url` (at most
/// `limit`; panics after it: this is a test helper). When a process holding connections
/// is killed, PostgreSQL finishes the statement each of its sessions had received (a
/// `COMMIT` included) before it notices the client is gone: a test that reads the store
/// right after a SIGKILL must wait for that, or a commit of the dead process can land
/// between two of its reads.
pub async fn wait_for_other_sessions_to_end(url: &str, limit: std::time::Duration) {
    let mut conn = PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    let end = std::time::Instant::now() + limit;
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count the sessions on the test database");
        if others == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "{others} sessions still on the test database {limit:?} after their process died"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    conn.close().await.ok();
}

async fn on_admin_database(admin_url: &str, sql: &str, what: &str) {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to the admin database (TEST_DATABASE_URL)");
    admin.execute(sql).await.expect(what);
    admin.close().await.ok();
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A fixed "now" for the suite; campaigns open at it and close a week later.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 1, 9, 0, 0)
        .single()
        .expect("valid time")
}

fn deadline() -> DateTime<Utc> {
    t0() + Duration::days(7)
}

fn spec(threshold: i64, cap: Option<i64>) -> CampaignSpec {
    CampaignSpec {
        sku: "kettle-17-white".into(),
        title: "Kettle 1.7 l".into(),
        currency: "CNY".into(),
        unit_price: 39900,
        deposit: 5000,
        batch_threshold: threshold,
        batch_cap: cap,
        max_per_order: None,
        max_per_consumer: None,
        total_cap: None,
        opens_at: Some(t0()),
        deadline: deadline(),
        price_ladder: vec![],
        balance_window_secs: None,
        ships_within_days: None,
    }
}

/// The one store or the other, turn about: two replicas sharing the work of a race.
fn alternate(i: usize, one: &Arc<dyn Store>, other: &Arc<dyn Store>) -> Arc<dyn Store> {
    if i % 2 == 0 {
        one.clone()
    } else {
        other.clone()
    }
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse(&format!("key-{}", uuid::Uuid::new_v4().simple())).expect("valid key")
}

fn consumer(n: usize) -> ConsumerId {
    ConsumerId::parse(&format!("con_{n}")).expect("valid consumer id")
}

async fn create(store: &dyn Store, spec: CampaignSpec) -> Campaign {
    try_create(store, spec).await.expect("create campaign")
}

/// Creates a campaign under a fresh key at [`t0`], for the cases that expect a refusal.
async fn try_create(store: &dyn Store, spec: CampaignSpec) -> Result<Campaign, StoreError> {
    store
        .create_campaign(
            &CreateCampaign {
                idempotency_key: key(),
                spec,
            },
            t0(),
        )
        .await
}

fn place_req(campaign: &CampaignId, who: &ConsumerId, quantity: i64) -> PlacePreorder {
    PlacePreorder {
        idempotency_key: key(),
        campaign_id: campaign.clone(),
        consumer_id: who.clone(),
        quantity,
        source: Default::default(),
    }
}

async fn place(
    store: &dyn Store,
    campaign: &CampaignId,
    who: &ConsumerId,
    quantity: i64,
) -> Result<Preorder, StoreError> {
    store
        .place_preorder(
            &place_req(campaign, who, quantity),
            t0() + Duration::hours(1),
        )
        .await
}

async fn cancel(
    store: &dyn Store,
    id: &PreorderId,
    who: Option<&ConsumerId>,
    now: DateTime<Utc>,
) -> Result<Preorder, StoreError> {
    store
        .cancel_preorder(
            &CancelPreorder {
                idempotency_key: key(),
                preorder_id: id.clone(),
                consumer_id: who.cloned(),
            },
            now,
        )
        .await
}

#[track_caller]
fn invalid_field<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Domain(DomainError::InvalidArgument { field, .. })) => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[track_caller]
fn precondition<T: std::fmt::Debug>(r: Result<T, StoreError>) -> Refusal {
    match r {
        Err(StoreError::Domain(DomainError::Refused(refusal))) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[track_caller]
fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, expected: &str) {
    match r {
        Err(StoreError::Domain(DomainError::NotFound { entity, .. })) if entity == expected => {}
        other => panic!("expected NotFound {expected}, got {other:?}"),
    }
}

#[track_caller]
fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    match r {
        Err(StoreError::Domain(DomainError::IdempotencyConflict { .. })) => {}
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
}

/// The campaign as [`Store::get_campaign`] reads it.
async fn campaign_progress(store: &dyn Store, id: &CampaignId) -> c2m_domain::CampaignProgress {
    store.get_campaign(id).await.expect("get")
}

async fn all_preorders(store: &dyn Store, filter: PreorderFilter) -> Vec<Preorder> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(200);
    loop {
        let got = store
            .list_preorders(&filter, page)
            .await
            .expect("list pre-orders");
        out.extend(got.items);
        match got.next_after {
            Some(after) => page.after = Some(after),
            None => return out,
        }
    }
}

async fn batches(store: &dyn Store, campaign: &CampaignId) -> Vec<Batch> {
    store.list_batches(campaign).await.expect("list batches")
}

/// Checks a campaign's batches against its pre-orders after any sequence of operations:
/// each pre-order is in exactly one batch of its campaign, each batch's units are the sum
/// of its live pre-orders, at most one batch is open, every locked batch reached its
/// threshold (and stayed within `cap`) and has exactly one 'locked' transition.
async fn check_pool_invariants(
    fx: &dyn Fixture,
    campaign: &CampaignId,
    cap: Option<i64>,
) -> (Vec<Batch>, Vec<Preorder>) {
    let store = fx.store();
    let batches = batches(&*store, campaign).await;
    let preorders = all_preorders(&*store, PreorderFilter::Campaign(campaign.clone())).await;
    let mut units: HashMap<&BatchId, i64> = HashMap::new();
    let ids: HashSet<&BatchId> = batches.iter().map(|b| &b.id).collect();
    for p in &preorders {
        assert!(ids.contains(&p.batch_id), "pre-order {} has no batch", p.id);
        if p.cancelled_at.is_none() {
            *units.entry(&p.batch_id).or_default() += p.quantity;
        }
    }
    assert!(
        batches
            .iter()
            .filter(|b| b.status == BatchStatus::Open)
            .count()
            <= 1
    );
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b.seq, i as i64 + 1, "batch seqs are 1, 2, ...");
        assert_eq!(
            b.units,
            units.get(&b.id).copied().unwrap_or(0),
            "units of batch {}",
            b.seq
        );
        if let Some(cap) = cap {
            assert!(
                b.units <= cap,
                "batch {} holds {} > cap {cap}",
                b.seq,
                b.units
            );
        }
        let t = fx.transitions(&b.id).await;
        let statuses: Vec<BatchStatus> = t.iter().map(|t| t.status).collect();
        match b.status {
            BatchStatus::Open => {
                assert!(b.units < b.threshold);
                assert_eq!(statuses, vec![BatchStatus::Open]);
            }
            BatchStatus::Locked => {
                assert!(b.units >= b.threshold);
                assert!(b.locked_at.is_some() && b.failed_at.is_none());
                assert_eq!(statuses, vec![BatchStatus::Open, BatchStatus::Locked]);
                assert_eq!(Some(t[1].at), b.locked_at);
            }
            BatchStatus::Failed => {
                assert!(b.failed_at.is_some() && b.locked_at.is_none());
                assert_eq!(statuses, vec![BatchStatus::Open, BatchStatus::Failed]);
                assert_eq!(Some(t[1].at), b.failed_at);
            }
        }
    }
    (batches, preorders)
}

// ---------------------------------------------------------------------------------------
// Cases

pub async fn campaigns_create_get_list_and_page(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut created = Vec::new();
    for i in 0..5 {
        let mut s = spec(10, Some(12));
        s.sku = format!("sku-{i}");
        s.max_per_order = Some(5);
        created.push(create(&*store, s).await);
    }
    let mut unscheduled = spec(10, None);
    unscheduled.opens_at = None;
    let opened = store
        .create_campaign(
            &CreateCampaign {
                idempotency_key: key(),
                spec: unscheduled,
            },
            t0() + Duration::microseconds(1500) + Duration::nanoseconds(700),
        )
        .await
        .expect("create without opens_at");
    assert_eq!(
        (opened.terms.opens_at, opened.created_at),
        (
            t0() + Duration::microseconds(1500),
            t0() + Duration::microseconds(1500)
        ),
        "opens at creation; times are kept to the microsecond"
    );
    assert_eq!(
        store.get_campaign(&opened.id).await.expect("get").campaign,
        opened
    );
    let got = store.get_campaign(&created[2].id).await.expect("get");
    assert_eq!(got.campaign, created[2]);
    assert_eq!(got.campaign.terms.sku, "sku-2");
    assert_eq!(got.campaign.terms.max_per_order, Some(5));
    assert_eq!(
        (
            got.open_batch_units,
            got.open_batch_seq,
            got.batches_locked,
            got.batches_failed,
            got.units_committed
        ),
        (0, None, 0, 0, 0)
    );

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let got = store.list_campaigns(page).await.expect("list");
        pages += 1;
        assert!(got.items.len() <= 2);
        seen.extend(got.items);
        match got.next_after {
            Some(after) => page.after = Some(after),
            None => break,
        }
    }
    created.push(opened);
    assert_eq!(pages, 3);
    assert_eq!(
        seen, created,
        "campaigns come back in creation order, each once"
    );
    let all = store
        .list_campaigns(PageRequest::first(6))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 6);
    assert_eq!(
        all.next_after, None,
        "no further page when exactly `size` remain"
    );

    not_found(
        store.get_campaign(&CampaignId::generate()).await,
        "campaign",
    );
    not_found(
        store.list_batches(&CampaignId::generate()).await,
        "campaign",
    );
    assert!(batches(&*store, &created[0].id).await.is_empty());
    store.ping().await.expect("ping");
}

/// A change that breaks one field of a valid spec.
type SpecEdit = fn(&mut CampaignSpec);

pub async fn bad_campaign_spec_names_the_field_and_writes_nothing(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let k = key();
    let cases: Vec<(&str, SpecEdit)> = vec![
        ("deposit", |s| s.deposit = s.unit_price + 1),
        ("batch_threshold", |s| s.batch_threshold = 13),
        ("deadline", |s| s.deadline = t0() - Duration::seconds(1)),
        ("currency", |s| s.currency = "yuan".into()),
        ("unit_price", |s| s.unit_price = 0),
        ("sku", |s| s.sku = " ".into()),
        ("title", |s| s.title = String::new()),
        ("max_per_order", |s| s.max_per_order = Some(13)),
        ("total_cap", |s| s.total_cap = Some(9)),
    ];
    for (field, mutate) in cases {
        let mut s = spec(10, Some(12));
        mutate(&mut s);
        let r = store
            .create_campaign(
                &CreateCampaign {
                    idempotency_key: k.clone(),
                    spec: s,
                },
                t0(),
            )
            .await;
        assert_eq!(invalid_field(r), field);
    }
    let listed = store
        .list_campaigns(PageRequest::first(10))
        .await
        .expect("list");
    assert!(listed.items.is_empty(), "a refused spec writes nothing");
    // Not even the key: the same key with a good spec now succeeds.
    let ok = store
        .create_campaign(
            &CreateCampaign {
                idempotency_key: k,
                spec: spec(10, Some(12)),
            },
            t0(),
        )
        .await
        .expect("the key was not consumed by refused requests");
    assert_eq!(ok.terms.batch_threshold, 10);
}

pub async fn bad_preorder_names_the_field_and_writes_nothing(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(10, Some(12));
    s.max_per_order = Some(5);
    let c = create(&*store, s).await;
    let who = consumer(1);
    let k = key();
    for q in [0, -3, 6] {
        let mut req = place_req(&c.id, &who, q);
        req.idempotency_key = k.clone();
        let r = store.place_preorder(&req, t0() + Duration::hours(1)).await;
        assert_eq!(invalid_field(r), "quantity");
    }
    let mut req = place_req(&CampaignId::generate(), &who, 1);
    req.idempotency_key = k.clone();
    not_found(store.place_preorder(&req, t0()).await, "campaign");

    assert!(
        batches(&*store, &c.id).await.is_empty(),
        "no batch was opened"
    );
    assert!(
        all_preorders(&*store, PreorderFilter::Campaign(c.id.clone()))
            .await
            .is_empty()
    );
    let mut req = place_req(&c.id, &who, 2);
    req.idempotency_key = k;
    let p = store
        .place_preorder(&req, t0() + Duration::hours(1))
        .await
        .expect("the key was not consumed by refused requests");
    assert_eq!(p.quantity, 2);
    assert_eq!(p.deposit_total.minor, 10000);
    assert_eq!(p.unit_price.minor, 39900);
    assert_eq!(p.deposit_total.currency.as_str(), "CNY");
    not_found(
        store.get_preorder(&PreorderId::generate()).await,
        "preorder",
    );
}

pub async fn create_campaign_is_idempotent(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let req = CreateCampaign {
        idempotency_key: key(),
        spec: spec(10, None),
    };
    let first = store.create_campaign(&req, t0()).await.expect("create");
    let again = store
        .create_campaign(&req, t0() + Duration::minutes(5))
        .await
        .expect("retry");
    assert_eq!(
        first, again,
        "a retry returns the first result, field for field"
    );
    let mut other = req.clone();
    other.spec.title = "Another kettle".into();
    conflict(store.create_campaign(&other, t0()).await);
    let listed = store
        .list_campaigns(PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![first]);
}

/// A retry of a pre-order write with the first send's key (`again`) answers as the first
/// send did, and a read of the pre-order gives that answer too.
async fn answers_as_first(
    store: &dyn Store,
    first: &Preorder,
    again: Result<Preorder, StoreError>,
) {
    assert_eq!(*first, again.expect("retry"));
    assert_eq!(store.get_preorder(&first.id).await.expect("get"), *first);
}

pub async fn place_preorder_is_idempotent(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let req = place_req(&c.id, &consumer(1), 3);
    let now = t0() + Duration::hours(1);
    let first = store.place_preorder(&req, now).await.expect("place");
    let again = store.place_preorder(&req, now + Duration::seconds(3)).await;
    answers_as_first(&*store, &first, again).await;

    let mut other = req.clone();
    other.quantity = 4;
    conflict(store.place_preorder(&other, now).await);
    let mut other = req.clone();
    other.consumer_id = consumer(2);
    conflict(store.place_preorder(&other, now).await);

    let all = all_preorders(&*store, PreorderFilter::Campaign(c.id.clone())).await;
    assert_eq!(all, vec![first]);
    assert_eq!(campaign_progress(&*store, &c.id).await.open_batch_units, 3);
}

pub async fn place_preorder_retry_returns_the_first_result_after_state_changes(
    fx: Arc<dyn Fixture>,
) {
    let store = fx.store();
    let c = create(&*store, spec(3, None)).await;
    let req = place_req(&c.id, &consumer(1), 2);
    let now = t0() + Duration::hours(1);
    let first = store.place_preorder(&req, now).await.expect("place");
    assert_eq!(first.status, PreorderStatus::Pooled);
    let locking = place(&*store, &c.id, &consumer(2), 1).await.expect("place");
    assert_eq!(locking.status, PreorderStatus::Locked);
    // The batch has locked and the deadline has passed: the retry still gets the original.
    let late = store
        .place_preorder(&req, deadline() + Duration::days(1))
        .await
        .expect("retry after the batch locked and the campaign closed");
    assert_eq!(late, first);
    assert_eq!(
        store.get_preorder(&first.id).await.expect("get").status,
        PreorderStatus::Locked,
        "reads derive the current status"
    );
    assert_eq!(
        all_preorders(&*store, PreorderFilter::Campaign(c.id.clone()))
            .await
            .len(),
        2
    );
}

pub async fn cancel_preorder_is_idempotent(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let who = consumer(1);
    let a = place(&*store, &c.id, &who, 2).await.expect("place");
    let b = place(&*store, &c.id, &who, 3).await.expect("place");
    let req = CancelPreorder {
        idempotency_key: key(),
        preorder_id: a.id.clone(),
        consumer_id: Some(who.clone()),
    };
    let now = t0() + Duration::hours(2);
    let first = store.cancel_preorder(&req, now).await.expect("cancel");
    assert_eq!(first.status, PreorderStatus::Cancelled);
    assert_eq!(first.cancelled_at, Some(now));
    let again = store
        .cancel_preorder(&req, now + Duration::seconds(1))
        .await;
    answers_as_first(&*store, &first, again).await;
    // A new key for the same cancellation is refused: it is already cancelled.
    assert_eq!(
        precondition(cancel(&*store, &a.id, Some(&who), now).await),
        Refusal::AlreadyCancelled
    );
    // The key reused for another pre-order conflicts and cancels nothing.
    let mut other = req.clone();
    other.preorder_id = b.id.clone();
    conflict(store.cancel_preorder(&other, now).await);
    assert_eq!(
        store.get_preorder(&b.id).await.expect("get").status,
        PreorderStatus::Pooled
    );
    assert_eq!(campaign_progress(&*store, &c.id).await.open_batch_units, 3);
    check_pool_invariants(&*fx, &c.id, None).await;
}

pub async fn threshold_locks_exactly_once_and_next_order_opens_the_next_batch(
    fx: Arc<dyn Fixture>,
) {
    let store = fx.store();
    let c = create(&*store, spec(3, None)).await;
    let p1 = place(&*store, &c.id, &consumer(1), 1).await.expect("place");
    let p2 = place(&*store, &c.id, &consumer(2), 1).await.expect("place");
    assert_eq!((p1.batch_seq, p1.status), (1, PreorderStatus::Pooled));
    assert_eq!((p2.batch_seq, p2.status), (1, PreorderStatus::Pooled));
    let progress = store.get_campaign(&c.id).await.expect("get");
    assert_eq!(
        (progress.open_batch_units, progress.open_batch_seq),
        (2, Some(1))
    );

    let p3 = place(&*store, &c.id, &consumer(3), 2).await.expect("place");
    assert_eq!((p3.batch_seq, p3.status), (1, PreorderStatus::Locked));
    let bs = batches(&*store, &c.id).await;
    assert_eq!(bs.len(), 1);
    assert_eq!(
        (bs[0].status, bs[0].units, bs[0].threshold),
        (BatchStatus::Locked, 4, 3)
    );
    assert_eq!(bs[0].locked_at, Some(p3.created_at));
    assert_eq!(
        store.get_preorder(&p1.id).await.expect("get").status,
        PreorderStatus::Locked
    );

    let p4 = place(&*store, &c.id, &consumer(4), 1).await.expect("place");
    assert_eq!((p4.batch_seq, p4.status), (2, PreorderStatus::Pooled));
    assert_ne!(p4.batch_id, p3.batch_id);
    let progress = store.get_campaign(&c.id).await.expect("get");
    assert_eq!(
        (
            progress.open_batch_units,
            progress.open_batch_seq,
            progress.batches_locked,
            progress.units_committed
        ),
        (1, Some(2), 1, 5)
    );
    let (bs, _) = check_pool_invariants(&*fx, &c.id, None).await;
    assert_eq!(fx.transitions(&bs[0].id).await.len(), 2);
}

pub async fn batch_cap_refuses_an_order_that_does_not_fit(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(10, Some(12));
    s.max_per_order = Some(5);
    let c = create(&*store, s).await;
    place(&*store, &c.id, &consumer(1), 5).await.expect("place");
    place(&*store, &c.id, &consumer(2), 4).await.expect("place");
    // 9 + 5 = 14 > 12: refused whole, nothing split or written.
    assert_eq!(
        precondition(place(&*store, &c.id, &consumer(3), 5).await),
        Refusal::BatchCap { fits: 3, cap: 12 }
    );
    assert_eq!(campaign_progress(&*store, &c.id).await.open_batch_units, 9);
    let p = place(&*store, &c.id, &consumer(3), 3)
        .await
        .expect("fits exactly");
    assert_eq!(p.status, PreorderStatus::Locked);
    let bs = batches(&*store, &c.id).await;
    assert_eq!((bs[0].status, bs[0].units), (BatchStatus::Locked, 12));
    let p = place(&*store, &c.id, &consumer(3), 5)
        .await
        .expect("next batch");
    assert_eq!(p.batch_seq, 2);
    check_pool_invariants(&*fx, &c.id, Some(12)).await;
}

pub async fn per_consumer_and_total_caps(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(3, None);
    s.max_per_consumer = Some(4);
    s.total_cap = Some(6);
    let c = create(&*store, s).await;
    let (a, b, d) = (consumer(1), consumer(2), consumer(3));
    place(&*store, &c.id, &a, 2).await.expect("place");
    place(&*store, &c.id, &a, 2)
        .await
        .expect("place; batch 1 locks at 4");
    precondition(place(&*store, &c.id, &a, 1).await);
    let pb = place(&*store, &c.id, &b, 2).await.expect("place");
    assert_eq!(pb.batch_seq, 2);
    let reason = precondition(place(&*store, &c.id, &d, 1).await);
    assert!(matches!(reason, Refusal::SoldOut { .. }), "{reason}");
    let progress = store.get_campaign(&c.id).await.expect("get");
    assert_eq!(progress.units_committed, 6);
    // Cancelling frees units under the total cap, and under the consumer's limit.
    cancel(&*store, &pb.id, Some(&b), t0() + Duration::hours(2))
        .await
        .expect("cancel");
    place(&*store, &c.id, &d, 1).await.expect("room again");
    place(&*store, &c.id, &b, 1).await.expect("room again");
    assert_eq!(campaign_progress(&*store, &c.id).await.units_committed, 6);
    check_pool_invariants(&*fx, &c.id, None).await;
}

pub async fn cancel_only_while_open_and_units_return(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(5, None)).await;
    let (a, b) = (consumer(1), consumer(2));
    let pa = place(&*store, &c.id, &a, 2).await.expect("place");
    let pb = place(&*store, &c.id, &b, 2).await.expect("place");
    let cancelled = cancel(&*store, &pa.id, Some(&a), t0() + Duration::hours(2))
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, PreorderStatus::Cancelled);
    assert_eq!(campaign_progress(&*store, &c.id).await.open_batch_units, 2);
    let filled = place(&*store, &c.id, &a, 3).await.expect("place");
    assert_eq!(
        filled.status,
        PreorderStatus::Locked,
        "2 + 3 reaches 5 again"
    );
    let reason = precondition(cancel(&*store, &pb.id, Some(&b), t0() + Duration::hours(3)).await);
    assert_eq!(reason, Refusal::BatchNotOpen);
    assert_eq!(
        store.get_preorder(&pb.id).await.expect("get").status,
        PreorderStatus::Locked
    );

    // A pooled order cannot be cancelled once the deadline passes, even before the sweep.
    let pc = place(&*store, &c.id, &b, 1).await.expect("place");
    assert_eq!(
        precondition(cancel(&*store, &pc.id, Some(&b), deadline()).await).reason(),
        "PAST_DEADLINE"
    );
    not_found(
        cancel(&*store, &PreorderId::generate(), None, t0()).await,
        "preorder",
    );
    let (bs, _) = check_pool_invariants(&*fx, &c.id, None).await;
    assert_eq!(bs[0].units, 5);
    assert_eq!(bs[1].units, 1);
}

/// Choice documented here: cancelling someone else's pre-order answers `NotFound`, the
/// same as for an id that does not exist, so other consumers' ids cannot be probed.
pub async fn cancel_of_another_consumers_order_is_not_found(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(5, None)).await;
    let p = place(&*store, &c.id, &consumer(1), 2).await.expect("place");
    not_found(
        cancel(
            &*store,
            &p.id,
            Some(&consumer(2)),
            t0() + Duration::hours(2),
        )
        .await,
        "preorder",
    );
    assert_eq!(store.get_preorder(&p.id).await.expect("get"), p);
    // Without a consumer (the merchant's back office) the cancel goes through.
    let done = cancel(&*store, &p.id, None, t0() + Duration::hours(2))
        .await
        .expect("cancel");
    assert_eq!(done.status, PreorderStatus::Cancelled);
}

pub async fn list_preorders_filters_and_pages(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c1 = create(&*store, spec(100, None)).await;
    let c2 = create(&*store, spec(100, None)).await;
    let (a, b) = (consumer(1), consumer(2));
    let mut placed = Vec::new();
    for i in 0..7 {
        let campaign = if i % 2 == 0 { &c1.id } else { &c2.id };
        let who = if i < 4 { &a } else { &b };
        placed.push(place(&*store, campaign, who, 1).await.expect("place"));
    }
    let of = |f: &dyn Fn(&Preorder) -> bool| -> Vec<Preorder> {
        placed.iter().filter(|p| f(p)).cloned().collect()
    };
    assert_eq!(
        all_preorders(&*store, PreorderFilter::Consumer(a.clone())).await,
        of(&|p| p.consumer_id == a)
    );
    assert_eq!(
        all_preorders(&*store, PreorderFilter::Campaign(c2.id.clone())).await,
        of(&|p| p.campaign_id == c2.id)
    );
    assert_eq!(
        all_preorders(
            &*store,
            PreorderFilter::ConsumerInCampaign(b.clone(), c1.id.clone())
        )
        .await,
        of(&|p| p.consumer_id == b && p.campaign_id == c1.id)
    );
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = store
            .list_preorders(&PreorderFilter::Consumer(a.clone()), page)
            .await
            .expect("list");
        assert!(got.items.len() <= 3);
        seen.extend(got.items);
        match got.next_after {
            Some(n) => page.after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, of(&|p| p.consumer_id == a));
    assert!(
        all_preorders(&*store, PreorderFilter::Consumer(consumer(99)))
            .await
            .is_empty()
    );
}

pub async fn deadline_fails_the_open_batch_exactly_once(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(4, None)).await;
    let other = create(&*store, {
        let mut s = spec(3, None);
        s.deadline = deadline() + Duration::days(1);
        s
    })
    .await;
    place(&*store, &other.id, &consumer(1), 1)
        .await
        .expect("place");
    // Batch 1 locks; batch 2 is open at the deadline with three orders, one cancelled.
    let locked = place(&*store, &c.id, &consumer(1), 4).await.expect("place");
    let p1 = place(&*store, &c.id, &consumer(1), 1).await.expect("place");
    let p2 = place(&*store, &c.id, &consumer(2), 1).await.expect("place");
    let p3 = place(&*store, &c.id, &consumer(3), 1).await.expect("place");
    cancel(&*store, &p3.id, None, t0() + Duration::hours(2))
        .await
        .expect("cancel");

    let before = deadline() - Duration::seconds(1);
    assert!(store
        .campaigns_past_deadline(before, 10)
        .await
        .expect("sweep")
        .is_empty());
    let early = store
        .fail_open_batch_at_deadline(&c.id, before)
        .await
        .expect("early");
    assert_eq!((early.failed_batch, early.refunds_due), (None, 0));

    let due = store
        .campaigns_past_deadline(deadline(), 10)
        .await
        .expect("sweep");
    assert_eq!(
        due,
        vec![c.id.clone()],
        "only campaigns at or past their deadline"
    );
    let out = store
        .fail_open_batch_at_deadline(&c.id, deadline())
        .await
        .expect("fail");
    assert_eq!(out.campaign_id, c.id);
    assert_eq!(out.refunds_due, 2);
    let failed = out.failed_batch.expect("the open batch failed");
    assert_eq!(
        (failed.seq, failed.status, failed.units),
        (2, BatchStatus::Failed, 2)
    );
    assert_eq!(failed.failed_at, Some(deadline()));

    let again = store
        .fail_open_batch_at_deadline(&c.id, deadline() + Duration::minutes(1))
        .await
        .expect("again");
    assert_eq!((again.failed_batch, again.refunds_due), (None, 0));
    assert!(store
        .campaigns_past_deadline(deadline(), 10)
        .await
        .expect("sweep")
        .is_empty());

    // An order sent a moment before the deadline that reaches the store only after the
    // sweeper failed the open batch must not open a batch after the failed one.
    let late = store
        .place_preorder(
            &place_req(&c.id, &consumer(4), 1),
            deadline() - Duration::seconds(1),
        )
        .await;
    assert!(
        matches!(
            late,
            Err(StoreError::Domain(DomainError::Refused(
                Refusal::CampaignClosed { .. }
            )))
        ),
        "an order after the deadline's failure is refused, got {late:?}"
    );

    let bs = batches(&*store, &c.id).await;
    assert_eq!(bs.len(), 2, "no batch opened after the failed one");
    assert_eq!(bs[1], failed, "the returned batch is what is stored");
    assert_eq!(
        bs[0].status,
        BatchStatus::Locked,
        "a locked batch stays locked"
    );
    for (p, status) in [
        (&locked, PreorderStatus::Locked),
        (&p1, PreorderStatus::RefundDue),
        (&p2, PreorderStatus::RefundDue),
        (&p3, PreorderStatus::Cancelled),
    ] {
        assert_eq!(store.get_preorder(&p.id).await.expect("get").status, status);
    }
    let progress = store.get_campaign(&c.id).await.expect("get");
    assert_eq!(
        (
            progress.open_batch_seq,
            progress.batches_locked,
            progress.batches_failed,
            progress.units_committed
        ),
        (None, 1, 1, 4)
    );
    check_pool_invariants(&*fx, &c.id, None).await;
    let untouched = store.get_campaign(&other.id).await.expect("get");
    assert_eq!(untouched.open_batch_units, 1);
}

pub async fn empty_open_batch_still_fails_at_the_deadline(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(3, None)).await;
    let p = place(&*store, &c.id, &consumer(1), 1).await.expect("place");
    cancel(&*store, &p.id, None, t0() + Duration::hours(2))
        .await
        .expect("cancel");
    assert_eq!(
        store
            .campaigns_past_deadline(deadline(), 10)
            .await
            .expect("sweep"),
        vec![c.id.clone()]
    );
    let out = store
        .fail_open_batch_at_deadline(&c.id, deadline())
        .await
        .expect("fail");
    let failed = out.failed_batch.expect("the empty open batch fails too");
    assert_eq!((failed.units, out.refunds_due), (0, 0));
    not_found(
        store
            .fail_open_batch_at_deadline(&CampaignId::generate(), deadline())
            .await,
        "campaign",
    );
    check_pool_invariants(&*fx, &c.id, None).await;
}

pub async fn orders_outside_the_campaign_window_are_refused(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(3, None);
    s.opens_at = Some(t0() + Duration::days(1));
    let c = create(&*store, s).await;
    let who = consumer(1);
    let early = store.place_preorder(&place_req(&c.id, &who, 1), t0()).await;
    assert!(matches!(
        precondition(early),
        Refusal::CampaignNotOpen { .. }
    ));
    // At the deadline the campaign is closed, whether or not the sweeper has run.
    let late = store
        .place_preorder(&place_req(&c.id, &who, 1), deadline())
        .await;
    assert!(matches!(precondition(late), Refusal::CampaignClosed { .. }));
    assert!(batches(&*store, &c.id).await.is_empty());
    assert!(
        all_preorders(&*store, PreorderFilter::Campaign(c.id.clone()))
            .await
            .is_empty()
    );
    store
        .place_preorder(
            &place_req(&c.id, &who, 1),
            deadline() - Duration::seconds(1),
        )
        .await
        .expect("the last second is still open");
}

/// Places `orders_per_task` orders from each of `tasks` tasks, spread over `stores`, and
/// returns what each accepted; refusals by the pooling rule are expected and skipped.
async fn hammer(
    stores: Vec<Arc<dyn Store>>,
    campaign: &CampaignId,
    tasks: usize,
    orders_per_task: usize,
    quantity: impl Fn(usize, usize) -> i64 + Send + Sync + Copy + 'static,
) -> Vec<Preorder> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = stores[t % stores.len()].clone();
        let campaign = campaign.clone();
        handles.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..orders_per_task {
                let req = place_req(&campaign, &consumer(t), quantity(t, i));
                match store.place_preorder(&req, t0() + Duration::hours(1)).await {
                    Ok(p) => accepted.push(p),
                    Err(StoreError::Domain(DomainError::Refused(_))) => {}
                    Err(e) => panic!("task {t} order {i}: {e:?}"),
                }
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    all
}

async fn check_fifty_by_ten(fx: &dyn Fixture, c: &CampaignId, accepted: Vec<Preorder>) {
    assert_eq!(accepted.len(), 500);
    let (bs, preorders) = check_pool_invariants(fx, c, None).await;
    assert_eq!(preorders.len(), 500);
    let mut ids: Vec<&PreorderId> = preorders.iter().map(|p| &p.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    assert_eq!(bs.len(), 10, "{bs:?}");
    for b in &bs {
        assert_eq!(
            (b.status, b.units),
            (BatchStatus::Locked, 50),
            "batch {}",
            b.seq
        );
        let locked: Vec<_> = fx
            .transitions(&b.id)
            .await
            .into_iter()
            .filter(|t| t.status == BatchStatus::Locked)
            .collect();
        assert_eq!(locked.len(), 1);
    }
    let progress = fx.store().get_campaign(c).await.expect("get");
    assert_eq!(
        (
            progress.batches_locked,
            progress.open_batch_seq,
            progress.units_committed
        ),
        (10, None, 500)
    );
    // Exactly one order per batch saw the lock happen.
    let locking = accepted
        .iter()
        .filter(|p| p.status == PreorderStatus::Locked)
        .count();
    assert_eq!(locking, 10);
}

pub async fn concurrent_orders_lock_each_batch_exactly_once(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(50, None)).await;
    let accepted = hammer(vec![store], &c.id, 50, 10, |_, _| 1).await;
    check_fifty_by_ten(&*fx, &c.id, accepted).await;
}

pub async fn concurrent_orders_from_two_replicas(fx: Arc<dyn Fixture>) {
    let first = fx.replica().await;
    let second = fx.replica().await;
    let c = create(&*first, spec(50, None)).await;
    let accepted = hammer(vec![first, second], &c.id, 50, 10, |_, _| 1).await;
    check_fifty_by_ten(&*fx, &c.id, accepted).await;
}

pub async fn concurrent_orders_never_overfill_a_capped_batch(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(10, Some(12));
    s.max_per_order = Some(5);
    let c = create(&*store, s).await;
    // A fixed spread of sizes 1..=5 so runs are comparable.
    let accepted = hammer(vec![store], &c.id, 20, 15, |t, i| {
        ((t * 7 + i * 3) % 5 + 1) as i64
    })
    .await;
    assert!(!accepted.is_empty());
    let (bs, preorders) = check_pool_invariants(&*fx, &c.id, Some(12)).await;
    assert_eq!(preorders.len(), accepted.len());
    let total: i64 = accepted.iter().map(|p| p.quantity).sum();
    assert_eq!(bs.iter().map(|b| b.units).sum::<i64>(), total);
    for b in &bs {
        match b.status {
            BatchStatus::Locked => assert!((10..=12).contains(&b.units), "{b:?}"),
            BatchStatus::Open => assert!(b.units < 10, "{b:?}"),
            BatchStatus::Failed => panic!("nothing failed: {b:?}"),
        }
    }
}

pub async fn concurrent_retries_with_one_key_place_one_preorder(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let second = fx.replica().await;
    let c = create(&*store, spec(50, None)).await;
    let req = place_req(&c.id, &consumer(1), 2);
    let mut handles = Vec::new();
    for i in 0..20 {
        let store = alternate(i, &store, &second);
        let req = req.clone();
        handles.push(tokio::spawn(async move {
            store
                .place_preorder(&req, t0() + Duration::hours(1))
                .await
                .expect("place or replay")
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("task"));
    }
    assert!(results.iter().all(|p| *p == results[0]));
    let all = all_preorders(&*store, PreorderFilter::Campaign(c.id.clone())).await;
    assert_eq!(all, vec![results[0].clone()]);
    assert_eq!(campaign_progress(&*store, &c.id).await.open_batch_units, 2);
}

/// Sends one request 16 times at once, alternating two replicas, and returns the answer:
/// every send must get the same success.
async fn one_key_at_once<T, F, Fut>(stores: &[Arc<dyn Store>; 2], what: &str, send: F) -> T
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: std::fmt::Debug + PartialEq + Send + 'static,
{
    let handles: Vec<_> = (0..16)
        .map(|i| tokio::spawn(send(stores[i % 2].clone())))
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.expect("task"));
    }
    let refused: Vec<&StoreError> = answers.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        refused.is_empty(),
        "{what}: {} of 16 sends of one key refused: {:?}",
        refused.len(),
        refused[0]
    );
    let mut answers = answers.into_iter().map(|r| r.expect("checked"));
    let first = answers.next().expect("sixteen answers");
    for a in answers {
        assert_eq!(a, first, "{what}: one key, two answers");
    }
    first
}

/// Replicas starting together on one database each find no admin and make one: exactly
/// one stores it (a `seq` is taken once), the others store nothing; after every admin is
/// revoked the next `seq` is free again, and tokens made otherwise never collide.
pub async fn one_bootstrap_admin_per_decision_across_replicas(fx: Arc<dyn Fixture>) {
    let stores = [fx.store(), fx.replica().await];
    let token = |i: usize| crate::NewToken {
        id: format!("boot{i:012}"),
        secret_hash: format!("{i:064}"),
        role: c2m_domain::Role::Admin,
        factory: None,
        label: "first admin (admin.token)".into(),
    };
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { store.create_bootstrap_admin(&token(i), 0, t0()).await })
        })
        .collect();
    let mut won = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        if h.await.expect("task").expect("no error, stored or not") {
            won.push(i);
        }
    }
    assert_eq!(won.len(), 1, "one of eight stored: {won:?}");
    let tokens = stores[1].tokens().await.expect("tokens");
    assert_eq!(
        tokens
            .iter()
            .map(|t| t.token.id.clone())
            .collect::<Vec<_>>(),
        [token(won[0]).id]
    );
    // Tokens made otherwise (no seq) are not compared with each other.
    for i in 10..12 {
        stores[0]
            .create_token(&token(i), t0())
            .await
            .expect("an admin made by an admin");
    }
    for t in stores[0].tokens().await.expect("tokens") {
        stores[0]
            .revoke_token(&t.token.id, t0())
            .await
            .expect("revoke");
    }
    // Every admin revoked: three admin tokens exist, so the next decision is seq 3.
    assert!(!stores[1]
        .create_bootstrap_admin(&token(20), 0, t0())
        .await
        .expect("seq 0 is taken"));
    assert!(stores[1]
        .create_bootstrap_admin(&token(21), 3, t0())
        .await
        .expect("seq 3"));
    assert_eq!(stores[0].tokens().await.expect("tokens").len(), 4);
}

/// The same key sent at once to two replicas, for a write that can happen only once: an
/// order with room for it once but not twice, a cancel, a payment. Whichever send commits
/// first does it; every other send must replay that answer, including one that looked the
/// key up before the first committed and then waited for the campaign's lock (it must not
/// go on to be refused as a second order, cancel or payment).
pub async fn concurrent_sends_of_one_key_replay_once_the_first_commits(fx: Arc<dyn Fixture>) {
    let stores = [fx.store(), fx.replica().await];
    let now = t0() + Duration::hours(1);
    for round in 0..5 {
        // Threshold and cap 10, 7 units pooled: 2 more fit once.
        let c = create(&*stores[0], spec(10, Some(10))).await;
        place(&*stores[0], &c.id, &consumer(0), 7)
            .await
            .expect("7 units");
        let req = place_req(&c.id, &consumer(1), 2);
        let placed = one_key_at_once(&stores, &format!("round {round}: place"), move |s| {
            let req = req.clone();
            async move { s.place_preorder(&req, now).await }
        })
        .await;
        let units = |s: Arc<dyn Store>, id: CampaignId| async move {
            s.get_campaign(&id)
                .await
                .expect("campaign")
                .open_batch_units
        };
        assert_eq!(
            units(stores[0].clone(), c.id.clone()).await,
            9,
            "round {round}"
        );

        let req = CancelPreorder {
            idempotency_key: key(),
            preorder_id: placed.id.clone(),
            consumer_id: Some(consumer(1)),
        };
        one_key_at_once(&stores, &format!("round {round}: cancel"), move |s| {
            let req = req.clone();
            async move { s.cancel_preorder(&req, now).await }
        })
        .await;
        assert_eq!(
            units(stores[0].clone(), c.id.clone()).await,
            7,
            "round {round}"
        );

        // 3 more lock the batch at its cap; the balance is paid once.
        let locking = place(&*stores[0], &c.id, &consumer(2), 3)
            .await
            .expect("3 units");
        assert_eq!(locking.status, PreorderStatus::Locked, "round {round}");
        let req = crate::PayBalance {
            idempotency_key: key(),
            preorder_id: locking.id.clone(),
            consumer_id: None,
            amount: locking.money.balance_due.expect("a balance"),
        };
        one_key_at_once(&stores, &format!("round {round}: pay"), move |s| {
            let req = req.clone();
            async move { s.pay_balance(&req, now).await }
        })
        .await;
    }
}

/// Callers that give up mid-call (a client that disconnects drops the server's future)
/// leave no half-done transaction behind: every call either happened whole or not at all,
/// and a retry with its key finds out which.
pub async fn abandoned_calls_happen_whole_or_not_at_all(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(7, None)).await;
    let reqs: Vec<PlacePreorder> = (0..60)
        .map(|i| place_req(&c.id, &consumer(i % 10), 1))
        .collect();
    let mut handles = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        let (store, req) = (store.clone(), req.clone());
        handles.push(tokio::spawn(async move {
            let wait = std::time::Duration::from_micros((i % 6) as u64 * 400);
            tokio::time::timeout(wait, store.place_preorder(&req, t0() + Duration::hours(1)))
                .await
                .is_ok()
        }));
    }
    let mut finished = 0;
    for h in handles {
        finished += usize::from(h.await.expect("task"));
    }
    assert!(finished < reqs.len(), "some calls were abandoned");
    for req in &reqs {
        store
            .place_preorder(req, t0() + Duration::hours(2))
            .await
            .expect("a retry places or replays");
    }
    let (bs, preorders) = check_pool_invariants(&*fx, &c.id, None).await;
    assert_eq!(preorders.len(), reqs.len(), "one pre-order per key");
    assert_eq!(bs.iter().map(|b| b.units).sum::<i64>(), 60);
}

/// One placement of [`place_together`]: who, how many, and which earlier request's
/// idempotency key it reuses, if any.
struct Together {
    who: usize,
    quantity: i64,
    same_key_as: Option<usize>,
}

/// What each placement of [`place_together`] must answer, in the order they are queued.
enum Expect {
    Pooled {
        batch: i64,
    },
    Locks {
        batch: i64,
    },
    /// The same answer as an earlier request.
    Replays(usize),
    /// A retry of the order placed before the others: the same answer it got then.
    ReplaysFirst,
    InvalidQuantity,
    Precondition,
    Conflict,
}

/// Places one order, then queues 27 placements on one campaign at once, as concurrent
/// callers whose writes the store may commit in one transaction (the SQLite writer and the
/// PostgreSQL campaign writers group what is queued together and admit its placements
/// together): they cross the threshold twice, and refusals of every kind sit in the middle
/// (over the per-order limit, over the per-consumer limit, over the batch cap, a key reused
/// for another request), as do retries: of the order placed before, of an order placed
/// earlier in the same group, and of an order that locked a batch. Each request must get
/// exactly the answer it would get alone in that order; a refused one writes nothing and
/// changes no other answer. Every call is made from one task, so they are queued in order.
///
/// Terms: threshold 10, batch cap 12, at most 5 units per order and 4 per consumer.
/// Returns the campaign and the accepted pre-orders (a replay counted once).
pub async fn place_together(fx: &dyn Fixture) -> (CampaignId, Vec<Preorder>) {
    let store = fx.store();
    let mut s = spec(10, Some(12));
    s.max_per_order = Some(5);
    s.max_per_consumer = Some(4);
    let c = create(&*store, s).await;
    let first_req = place_req(&c.id, &consumer(0), 1);
    let first = store
        .place_preorder(&first_req, t0() + Duration::minutes(30))
        .await
        .expect("the first order");
    let one = |who| Together {
        who,
        quantity: 1,
        same_key_as: None,
    };
    let mut plan: Vec<(Together, Expect)> = Vec::new();
    for who in 1..5 {
        plan.push((one(who), Expect::Pooled { batch: 1 }));
    }
    plan.push((one(0), Expect::ReplaysFirst));
    plan.push((
        Together {
            who: 1,
            quantity: 1,
            same_key_as: Some(0),
        },
        Expect::Replays(0),
    ));
    for who in 5..9 {
        plan.push((one(who), Expect::Pooled { batch: 1 }));
    }
    let refusals = [
        (100, 6, Expect::InvalidQuantity), // over the 5 per order
        (0, 4, Expect::Precondition),      // consumer 0 holds 1: 5 is over 4 per consumer
    ];
    for (who, quantity, expect) in refusals {
        let order = Together {
            who,
            quantity,
            same_key_as: None,
        };
        plan.push((order, expect));
    }
    let locking = plan.len();
    let three = |same_key_as| Together {
        who: 9,
        quantity: 3,
        same_key_as,
    };
    plan.push((three(None), Expect::Locks { batch: 1 })); // 9 + 3 = 12: locks at the cap
    plan.push((three(Some(locking)), Expect::Replays(locking)));
    let other = Together {
        who: 9,
        quantity: 2,
        same_key_as: Some(locking),
    };
    plan.push((other, Expect::Conflict));
    for who in 10..19 {
        plan.push((one(who), Expect::Pooled { batch: 2 }));
    }
    let over_cap = Together {
        who: 30,
        quantity: 4,
        same_key_as: None,
    };
    plan.push((over_cap, Expect::Precondition)); // 9 + 4 = 13 is over the cap of 12
    plan.push((one(19), Expect::Locks { batch: 2 }));
    let next = Together {
        who: 20,
        quantity: 2,
        same_key_as: None,
    };
    plan.push((next, Expect::Pooled { batch: 3 }));
    assert_eq!(plan.len(), 27);

    let mut reqs: Vec<PlacePreorder> = Vec::new();
    for (order, expect) in &plan {
        let mut req = place_req(&c.id, &consumer(order.who), order.quantity);
        if let Some(earlier) = order.same_key_as {
            req.idempotency_key = reqs[earlier].idempotency_key.clone();
        }
        if let Expect::ReplaysFirst = expect {
            req = first_req.clone();
        }
        reqs.push(req);
    }
    let now = t0() + Duration::hours(1);
    let results =
        futures::future::join_all(reqs.iter().map(|r| store.place_preorder(r, now))).await;

    let mut accepted = vec![first.clone()];
    for (i, ((_, expect), result)) in plan.iter().zip(&results).enumerate() {
        match (expect, result) {
            (Expect::Pooled { batch } | Expect::Locks { batch }, Ok(p)) => {
                let status = match expect {
                    Expect::Locks { .. } => PreorderStatus::Locked,
                    _ => PreorderStatus::Pooled,
                };
                assert_eq!((p.status, p.batch_seq), (status, *batch), "{i}");
                accepted.push(p.clone());
            }
            (Expect::Replays(earlier), Ok(p)) => {
                assert_eq!(Some(p), results[*earlier].as_ref().ok(), "{i}");
            }
            (Expect::ReplaysFirst, Ok(p)) => assert_eq!(p, &first, "{i}"),
            (
                Expect::InvalidQuantity,
                Err(StoreError::Domain(DomainError::InvalidArgument { field, .. })),
            ) => assert_eq!(field, "quantity", "{i}"),
            (Expect::Precondition, Err(StoreError::Domain(DomainError::Refused(_))))
            | (
                Expect::Conflict,
                Err(StoreError::Domain(DomainError::IdempotencyConflict { .. })),
            ) => {}
            (_, other) => panic!("placement {i} answered {other:?}"),
        }
    }
    (c.id, accepted)
}

/// Writes arriving together (see [`place_together`]) keep the results they would get one
/// transaction each; then cancels and placements arriving together do too.
pub async fn writes_arriving_together_keep_their_own_results(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let (c, accepted) = place_together(&*fx).await;
    check_placed_together(&*fx, &c, &accepted).await;

    // Cancels and a placement together: the open batch's order is cancelled, a cancel of an
    // order in a locked batch is refused alone, and a new order joins the open batch. (On
    // PostgreSQL a cancel reads its campaign before it is queued, so the placement may be
    // queued first; the outcome is the same in either order.)
    let open = accepted.last().expect("an order in batch 3");
    let locked = &accepted[0];
    let now = t0() + Duration::hours(2);
    let cancel_req = |p: &Preorder| CancelPreorder {
        idempotency_key: key(),
        preorder_id: p.id.clone(),
        consumer_id: Some(p.consumer_id.clone()),
    };
    let (cancel_open, cancel_locked) = (cancel_req(open), cancel_req(locked));
    let again = place_req(&c, &consumer(21), 4);
    let (a, b, d) = futures::future::join3(
        store.cancel_preorder(&cancel_open, now),
        store.cancel_preorder(&cancel_locked, now),
        store.place_preorder(&again, now + Duration::seconds(1)),
    )
    .await;
    assert_eq!(
        a.expect("cancel the open order").status,
        PreorderStatus::Cancelled
    );
    precondition(b);
    let again = d.expect("a new order in the open batch");
    assert_eq!((again.batch_seq, again.quantity), (3, 4));
    let (bs, _) = check_pool_invariants(&*fx, &c, Some(12)).await;
    assert_eq!(bs.last().map(|b| (b.seq, b.units)), Some((3, 4)));
    check_ledger(&*store, &c).await;
}

/// What [`place_together`] must leave behind: batches of 12 and 10 locked exactly once, a
/// third open with 2 units, one pre-order per accepted request, nothing oversold, and a
/// ledger that balances.
pub async fn check_placed_together(fx: &dyn Fixture, c: &CampaignId, accepted: &[Preorder]) {
    assert_eq!(accepted.len(), 21);
    let (bs, preorders) = check_pool_invariants(fx, c, Some(12)).await;
    let mut stored: Vec<&PreorderId> = preorders.iter().map(|p| &p.id).collect();
    let mut answered: Vec<&PreorderId> = accepted.iter().map(|p| &p.id).collect();
    stored.sort();
    answered.sort();
    assert_eq!(stored, answered, "one pre-order per accepted request");
    let shape: Vec<(BatchStatus, i64)> = bs.iter().map(|b| (b.status, b.units)).collect();
    assert_eq!(
        shape,
        vec![
            (BatchStatus::Locked, 12),
            (BatchStatus::Locked, 10),
            (BatchStatus::Open, 2)
        ]
    );
    check_ledger(&*fx.store(), c).await;
}

/// A small deterministic generator, so a failing sequence can be replayed.
/// A run of placements queued together must answer exactly as the same requests placed
/// one at a time, whatever mix they are. The placements of a group are admitted one after
/// another in memory and written together (`pooling::place_preorders`), so this compares
/// the two paths on random runs: two campaigns with the same random terms get the same
/// random requests (consumers, quantities including refused ones, keys sent again with the
/// same request or with another), campaign A one call at a time, campaign B all at once;
/// every answer (status, batch, units, money, or the refusal and its message), every batch
/// and the campaign's money must be the same. Nothing in the comparison comes from the
/// code under test: each side is the other's expectation.
pub async fn placements_together_answer_as_one_at_a_time(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut rng = Lcg(0x70_6e7e_11e7);
    let now = t0() + Duration::hours(1);
    // (replays, conflicts, refusals, locks) over all rounds: each must occur.
    let mut seen = (0, 0, 0, 0);
    for round in 0..6 {
        let threshold = 2 + rng.below(9) as i64;
        let mut s = spec(
            threshold,
            (rng.below(2) == 0).then(|| threshold + rng.below(4) as i64),
        );
        s.max_per_order = Some(1 + rng.below(4) as i64);
        s.max_per_consumer = (rng.below(2) == 0).then(|| 2 + rng.below(6) as i64);
        s.total_cap = (rng.below(3) == 0).then(|| 3 * threshold + rng.below(10) as i64);
        if rng.below(2) == 0 {
            s.price_ladder = vec![PriceTier {
                min_units: threshold,
                unit_price: 35000,
            }];
            s.balance_window_secs = Some(3600);
        }
        let (a, b) = (create(&*store, s.clone()).await, create(&*store, s).await);
        let n = 10 + rng.below(40) as usize;
        // (consumer, quantity, the earlier request whose key this one sends again)
        let mut plan: Vec<(usize, i64, Option<usize>)> = Vec::with_capacity(n);
        for i in 0..n {
            let again = (i > 0 && rng.below(6) == 0).then(|| rng.below(i as u64) as usize);
            let same_request = rng.below(2) == 0;
            let step = match again {
                Some(j) if same_request => (plan[j].0, plan[j].1, Some(j)),
                _ => (rng.below(8) as usize, rng.below(6) as i64, again),
            };
            plan.push(step);
        }
        let requests = |campaign: &Campaign, side: &str| -> Vec<PlacePreorder> {
            plan.iter()
                .enumerate()
                .map(|(i, (who, quantity, again))| PlacePreorder {
                    idempotency_key: IdempotencyKey::parse(&format!(
                        "{side}-{round}-{}",
                        again.unwrap_or(i)
                    ))
                    .expect("valid key"),
                    campaign_id: campaign.id.clone(),
                    consumer_id: consumer(*who),
                    quantity: *quantity,
                    source: Default::default(),
                })
                .collect()
        };
        let (reqs_a, reqs_b) = (requests(&a, "alone"), requests(&b, "together"));
        let mut alone = Vec::with_capacity(n);
        for r in &reqs_a {
            alone.push(store.place_preorder(r, now).await);
        }
        let together =
            futures::future::join_all(reqs_b.iter().map(|r| store.place_preorder(r, now))).await;

        fn answer(r: &Result<Preorder, StoreError>) -> String {
            match r {
                Ok(p) => format!(
                    "{:?} in batch {} ({}): {} units of {}, deposit {}, {:?}",
                    p.status,
                    p.batch_seq,
                    p.consumer_id,
                    p.quantity,
                    p.unit_price.minor,
                    p.deposit_total.minor,
                    p.money
                ),
                Err(StoreError::Domain(DomainError::IdempotencyConflict { .. })) => {
                    "the key was used for another request".into()
                }
                Err(e) => format!("refused: {e}"),
            }
        }
        for (i, (x, y)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(
                answer(x),
                answer(y),
                "round {round}, request {i}: {:?}",
                plan[i]
            );
            match x {
                Ok(p) if p.status == PreorderStatus::Locked => seen.3 += 1,
                Ok(_) => {}
                Err(StoreError::Domain(DomainError::IdempotencyConflict { .. })) => seen.1 += 1,
                Err(_) => seen.2 += 1,
            }
            if let (Some(j), Ok(p)) = (plan[i].2, x) {
                if alone[j].as_ref().ok() == Some(p) {
                    seen.0 += 1;
                }
            }
        }
        let batches = |list: Vec<Batch>| -> Vec<(i64, BatchStatus, i64, Option<i64>)> {
            list.iter()
                .map(|b| {
                    let price = b.final_unit_price.map(|m| m.minor);
                    (b.seq, b.status, b.units, price)
                })
                .collect()
        };
        assert_eq!(
            batches(store.list_batches(&a.id).await.expect("batches of A")),
            batches(store.list_batches(&b.id).await.expect("batches of B")),
            "round {round}"
        );
        let money = |m: CampaignMoney| -> String {
            format!("{m:?}")
                .replace(b.id.as_str(), "C")
                .replace(a.id.as_str(), "C")
        };
        assert_eq!(
            money(store.campaign_money(&a.id).await.expect("money of A")),
            money(store.campaign_money(&b.id).await.expect("money of B")),
            "round {round}"
        );
    }
    assert!(
        seen.0 > 0 && seen.1 > 0 && seen.2 > 0 && seen.3 > 0,
        "the runs must replay, conflict, refuse and lock: {seen:?}"
    );
}

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct ModelPreorder {
    id: PreorderId,
    consumer: usize,
    quantity: i64,
    batch_seq: i64,
    cancelled: bool,
}

/// Places and cancels at random and checks every answer against an in-memory model that
/// applies the domain's rule to its own counts; then fails the last batch at the deadline.
pub async fn random_operations_match_a_model_of_the_pooling_rule(fx: Arc<dyn Fixture>) {
    use c2m_domain::{pooling, CampaignStatus, PoolState};

    let store = fx.store();
    let mut s = spec(8, Some(10));
    s.max_per_order = Some(4);
    s.max_per_consumer = Some(9);
    s.total_cap = Some(60);
    let c = create(&*store, s).await;
    let now = t0() + Duration::hours(1);
    let mut rng = Lcg(0x5eed);
    // Batches by seq - 1: (status, units).
    let mut batches_model: Vec<(BatchStatus, i64)> = Vec::new();
    let mut orders: Vec<ModelPreorder> = Vec::new();
    // (locks, invalid, refused, cancelled): the sequence must exercise every outcome.
    let mut seen = (0, 0, 0, 0);

    for step in 0..250 {
        let open = batches_model
            .iter()
            .position(|(st, _)| *st == BatchStatus::Open);
        if orders.is_empty() || rng.below(4) != 0 {
            let who = rng.below(12) as usize;
            let quantity = rng.below(6) as i64; // 0 and 5 are refused as invalid
            let state = PoolState {
                open_batch_units: open.map_or(0, |i| batches_model[i].1),
                campaign_units: batches_model
                    .iter()
                    .filter(|(st, _)| *st != BatchStatus::Failed)
                    .map(|(_, u)| u)
                    .sum(),
                consumer_units: orders
                    .iter()
                    .filter(|o| o.consumer == who && !o.cancelled)
                    .map(|o| o.quantity)
                    .sum(),
            };
            let expected = pooling::admit(&c.terms, CampaignStatus::Open, state, quantity);
            let got = store
                .place_preorder(&place_req(&c.id, &consumer(who), quantity), now)
                .await;
            match (expected, got) {
                (Ok(admission), Ok(p)) => {
                    let seq = match open {
                        Some(i) => i,
                        None => {
                            batches_model.push((BatchStatus::Open, 0));
                            batches_model.len() - 1
                        }
                    };
                    batches_model[seq].1 = admission.batch_units_after;
                    if admission.locks {
                        batches_model[seq].0 = BatchStatus::Locked;
                        seen.0 += 1;
                    }
                    assert_eq!(p.batch_seq, seq as i64 + 1, "step {step}");
                    assert_eq!(
                        p.status == PreorderStatus::Locked,
                        admission.locks,
                        "step {step}"
                    );
                    orders.push(ModelPreorder {
                        id: p.id,
                        consumer: who,
                        quantity,
                        batch_seq: p.batch_seq,
                        cancelled: false,
                    });
                }
                (Err(want), Err(StoreError::Domain(got))) => {
                    assert_eq!(got, want, "step {step}");
                    match got {
                        DomainError::InvalidArgument { .. } => seen.1 += 1,
                        _ => seen.2 += 1,
                    }
                }
                (want, got) => panic!("step {step}: model says {want:?}, store says {got:?}"),
            }
        } else {
            let i = rng.below(orders.len() as u64) as usize;
            let owner = orders[i].consumer;
            let who = if rng.below(5) == 0 {
                (owner + 1) % 12
            } else {
                owner
            };
            let batch = orders[i].batch_seq as usize - 1;
            let got = cancel(&*store, &orders[i].id, Some(&consumer(who)), now).await;
            if who != owner {
                not_found(got, "preorder");
            } else if orders[i].cancelled || batches_model[batch].0 != BatchStatus::Open {
                precondition(got);
            } else {
                let p = got.unwrap_or_else(|e| panic!("step {step}: cancel refused: {e:?}"));
                assert_eq!(p.status, PreorderStatus::Cancelled);
                orders[i].cancelled = true;
                batches_model[batch].1 -= orders[i].quantity;
                seen.3 += 1;
            }
        }
    }

    assert!(
        seen.0 > 0 && seen.1 > 0 && seen.2 > 0 && seen.3 > 0,
        "outcomes seen (locks, invalid, refused, cancelled): {seen:?}"
    );
    let stored: Vec<(BatchStatus, i64)> = batches(&*store, &c.id)
        .await
        .iter()
        .map(|b| (b.status, b.units))
        .collect();
    assert_eq!(stored, batches_model);
    check_pool_invariants(&*fx, &c.id, Some(10)).await;

    let out = store
        .fail_open_batch_at_deadline(&c.id, deadline())
        .await
        .expect("deadline");
    match batches_model
        .iter()
        .position(|(st, _)| *st == BatchStatus::Open)
    {
        Some(i) => {
            let live = orders
                .iter()
                .filter(|o| o.batch_seq == i as i64 + 1 && !o.cancelled)
                .count() as i64;
            assert_eq!(out.refunds_due, live);
            assert_eq!(out.failed_batch.map(|b| b.seq), Some(i as i64 + 1));
        }
        None => assert_eq!(out.failed_batch, None),
    }
    check_pool_invariants(&*fx, &c.id, Some(10)).await;
}

// ---------------------------------------------------------------------------------------
// Catalogue and planning

/// The skus the pooling cases sell; campaigns need their product in the catalogue.
pub const SEEDED_SKUS: &[&str] = &[
    "kettle-17-white",
    "sku-0",
    "sku-1",
    "sku-2",
    "sku-3",
    "sku-4",
];

fn accept_all() -> CatalogueCheck {
    Arc::new(|_: &Catalogue, _: &Catalogue| Ok(()))
}

/// Adds the products of [`SEEDED_SKUS`] to the catalogue (run before every case).
pub async fn seed_catalogue(store: &dyn Store) {
    ensure_products(store, SEEDED_SKUS).await;
}

/// Adds products with these skus (and no bill of materials) to the catalogue, keeping
/// everything else; for tests that create campaigns.
pub async fn ensure_products(store: &dyn Store, skus: &[&str]) {
    let products = skus
        .iter()
        .map(|s| CatalogueProduct {
            sku: (*s).to_owned(),
            bom: Default::default(),
        })
        .collect();
    store
        .change_catalogue(
            &ChangeCatalogue {
                idempotency_key: key(),
                edit: CatalogueEdit::Merge(Catalogue {
                    name: "conformance".into(),
                    currency: Some("CNY".into()),
                    products,
                    ..Catalogue::default()
                }),
            },
            accept_all(),
            t0(),
        )
        .await
        .expect("add products to the catalogue");
}

fn sample_catalogue() -> Catalogue {
    Catalogue {
        version: 0,
        name: "sample".into(),
        currency: Some("CNY".into()),
        material_deadline_days: Some(21),
        products: vec![
            CatalogueProduct {
                sku: "kettle-17-white".into(),
                bom: [("steel".to_owned(), 0.8), ("cord".to_owned(), 1.0)].into(),
            },
            CatalogueProduct {
                sku: "toaster".into(),
                bom: [("steel".to_owned(), 1.2)].into(),
            },
        ],
        materials: vec![
            CatalogueMaterial {
                id: "steel".into(),
                unit: "kg".into(),
                on_hand: 10.0,
                holding_cost: 5.0,
            },
            CatalogueMaterial {
                id: "cord".into(),
                unit: "pc".into(),
                on_hand: 0.0,
                holding_cost: 0.0,
            },
        ],
        factories: vec![CatalogueFactory {
            id: "f1".into(),
            capacity_hours: 100.0,
            capacity_period_days: Some(7),
            lines: vec![FactoryLine {
                sku: "kettle-17-white".into(),
                unit_cost: 1000.0,
                setup_cost: 0.0,
                min_run: 0,
                hours_per_unit: 0.1,
                setup_hours: 0.0,
            }],
            calendar: None,
        }],
        suppliers: vec![CatalogueSupplier {
            id: "steel-co".into(),
            lead_days: 7,
            offers: vec![SupplierOffer {
                material: "steel".into(),
                moq: 0.0,
                pack_size: Some(5.0),
                max_qty: None,
                order_cost: 100.0,
                breaks: vec![OfferPriceBreak {
                    min_qty: 0.0,
                    unit_price: 50.0,
                }],
            }],
        }],
    }
}

async fn change(
    store: &dyn Store,
    edit: CatalogueEdit,
    check: CatalogueCheck,
) -> Result<CatalogueChanged, StoreError> {
    store
        .change_catalogue(
            &ChangeCatalogue {
                idempotency_key: key(),
                edit,
            },
            check,
            t0(),
        )
        .await
}

pub async fn catalogue_changes_and_the_sku_rule(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let sample = sample_catalogue();
    let req = ChangeCatalogue {
        idempotency_key: key(),
        edit: CatalogueEdit::Replace(sample.clone()),
    };
    let first = store
        .change_catalogue(&req, accept_all(), t0())
        .await
        .expect("replace");
    let again = store
        .change_catalogue(&req, accept_all(), t0())
        .await
        .expect("replayed");
    assert_eq!(first, again, "a retry replays the first answer");
    // What the receiving server adds from its own flags (the period its factories' hours
    // count) is not part of the request: the same import through a server with other
    // flags, or one from before it was added, is a retry, not "a different request"
    // (QA 15: refused ALREADY_EXISTS after an upgrade).
    let mut other_flags = req.clone();
    if let CatalogueEdit::Replace(c) = &mut other_flags.edit {
        c.factories[0].capacity_period_days = Some(14);
    }
    let through_another = store
        .change_catalogue(&other_flags, accept_all(), t0())
        .await
        .expect("replayed through a server with other flags");
    assert_eq!(first, through_another);
    let mut read = store.catalogue().await.expect("read");
    assert_eq!(read.version, first.version);
    read.version = 0;
    assert_eq!(read, sample, "what was written reads back in order");

    // A check that refuses writes nothing. It is given the catalogue before the change
    // and after it (a rule an older catalogue may break refuses only what makes it worse).
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let saw = seen.clone();
    let refuse: CatalogueCheck = Arc::new(move |before: &Catalogue, after: &Catalogue| {
        saw.lock()
            .unwrap()
            .push((before.materials[0].on_hand, after.materials[0].on_hand));
        Err(DomainError::invalid("materials[0].on_hand", "no"))
    });
    let mut more = sample.clone();
    more.materials[0].on_hand = 99.0;
    assert_eq!(
        invalid_field(change(&*store, CatalogueEdit::Merge(more.clone()), refuse).await),
        "materials[0].on_hand"
    );
    assert_eq!(store.catalogue().await.unwrap().materials[0].on_hand, 10.0);
    assert_eq!(seen.lock().unwrap().last(), Some(&(10.0, 99.0)));

    // Merge replaces by id and appends new entries.
    let fragment = Catalogue {
        name: "sample".into(),
        currency: Some("CNY".into()),
        materials: vec![
            CatalogueMaterial {
                id: "cord".into(),
                unit: "pc".into(),
                on_hand: 40.0,
                holding_cost: 0.0,
            },
            CatalogueMaterial {
                id: "glass".into(),
                unit: "kg".into(),
                on_hand: 1.0,
                holding_cost: 0.0,
            },
        ],
        ..Catalogue::default()
    };
    change(&*store, CatalogueEdit::Merge(fragment), accept_all())
        .await
        .expect("merge");
    let c = store.catalogue().await.unwrap();
    let ids: Vec<(&str, f64)> = c
        .materials
        .iter()
        .map(|m| (m.id.as_str(), m.on_hand))
        .collect();
    assert_eq!(ids, vec![("steel", 10.0), ("cord", 40.0), ("glass", 1.0)]);
    assert_eq!(c.products.len(), 2, "entries not given stay");
    let mut usd = Catalogue {
        currency: Some("USD".into()),
        ..Catalogue::default()
    };
    usd.name = "x".into();
    assert_eq!(
        invalid_field(change(&*store, CatalogueEdit::Merge(usd), accept_all()).await),
        "currency"
    );

    // The sku rule: a campaign needs its product, and keeps it. The currency rule: a
    // campaign sells in the catalogue's currency (the independent client's defect 6: a USD
    // campaign was accepted on a CNY catalogue).
    let mut unknown = spec(5, None);
    unknown.sku = "no-such-sku".into();
    let mut dollars = spec(5, None);
    dollars.currency = "USD".into();
    let refusals = [
        (
            unknown,
            Refusal::SkuNotInCatalogue {
                sku: "no-such-sku".into(),
            },
        ),
        (
            dollars,
            Refusal::CurrencyMismatch {
                campaign: "USD".into(),
                catalogue: "CNY".into(),
            },
        ),
    ];
    for (refused, refusal) in refusals {
        assert_eq!(precondition(try_create(&*store, refused).await), refusal);
    }
    create(&*store, spec(5, None)).await;
    // ... and the catalogue cannot move to another currency under a campaign.
    let mut in_dollars = store.catalogue().await.unwrap();
    in_dollars.currency = Some("USD".into());
    assert_eq!(
        precondition(change(&*store, CatalogueEdit::Replace(in_dollars), accept_all()).await),
        Refusal::CurrencyMismatch {
            campaign: "CNY".into(),
            catalogue: "USD".into()
        }
    );
    assert_eq!(
        store.catalogue().await.unwrap().currency.as_deref(),
        Some("CNY")
    );
    let delete = CatalogueEdit::Delete {
        kind: CatalogueKind::Product,
        id: "kettle-17-white".into(),
    };
    let in_use = Refusal::SkuInUse {
        sku: "kettle-17-white".into(),
    };
    assert_eq!(
        precondition(change(&*store, delete, accept_all()).await),
        in_use
    );
    let mut without = sample.clone();
    without.products.remove(0);
    assert_eq!(
        precondition(change(&*store, CatalogueEdit::Replace(without), accept_all()).await),
        in_use
    );
    let delete = CatalogueEdit::Delete {
        kind: CatalogueKind::Product,
        id: "toaster".into(),
    };
    change(&*store, delete.clone(), accept_all())
        .await
        .expect("an unused product can go");
    not_found(change(&*store, delete, accept_all()).await, "product");
    assert_eq!(store.catalogue().await.unwrap().products.len(), 1);
}

/// Locks one batch of a new campaign selling `sku` and returns it. The deposit is the full
/// price, so the batch is ready for production at lock.
/// Where each of `batches` stands in production ([`crate::FactoryStore::batch_production`]).
async fn batch_production(store: &dyn Store, batches: &[&Batch]) -> Vec<crate::BatchProduction> {
    let ids: Vec<BatchId> = batches.iter().map(|b| b.id.clone()).collect();
    store
        .batch_production(&ids)
        .await
        .expect("batch production")
}

/// A factory has one stream at a time across replicas: a claim through one store replaces
/// the claim made through another on the same database, the replaced claim's next page is
/// `Replaced` whichever store reads it (and stays so when work orders are stored later),
/// the newest claim reads its work orders, another factory's claim changes nothing, and
/// claims made at once through both stores each get their own number, the highest being
/// the one that stands.
pub async fn a_factory_stream_claim_replaces_the_older_on_every_replica(fx: Arc<dyn Fixture>) {
    use crate::{StreamClaim, StreamPage};
    let store = fx.store();
    let replica = fx.replica().await;
    use_sample_catalogue(&*store).await;
    let b = locked_batch(&*store, "kettle-17-white").await;
    let plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![work_order("f1", &b)],
    );
    store.store_plan(&plan, t0()).await.expect("store");
    let page = |s: &Arc<dyn Store>, claim: &StreamClaim| {
        let (s, claim) = (s.clone(), claim.clone());
        async move { s.factory_stream_page(&claim, 0, 100).await.expect("page") }
    };
    let seqs = |p: StreamPage| match p {
        StreamPage::Current(orders) => orders.iter().map(|w| w.seq()).collect::<Vec<_>>(),
        StreamPage::Replaced => panic!("the newest claim was replaced"),
    };

    let first = store.claim_factory_stream("f1", t0()).await.expect("claim");
    assert_eq!(seqs(page(&store, &first).await), vec![1]);
    assert_eq!(
        seqs(page(&replica, &first).await),
        vec![1],
        "any store reads it"
    );

    // The factory subscribes again through the other replica.
    let second = replica
        .claim_factory_stream("f1", t0())
        .await
        .expect("claim");
    assert!(
        second.generation > first.generation,
        "{second:?} after {first:?}"
    );
    for s in [&store, &replica] {
        assert_eq!(page(s, &first).await, StreamPage::Replaced);
        assert_eq!(seqs(page(s, &second).await), vec![1]);
    }
    let never = StreamClaim {
        generation: second.generation + 1,
        ..second.clone()
    };
    assert_eq!(
        page(&store, &never).await,
        StreamPage::Replaced,
        "a number never claimed is not the newest"
    );

    // Work orders stored later reach the newest claim only (and f2, with one of its own,
    // becomes a factory the store knows).
    let c = locked_batch(&*store, "kettle-17-white").await;
    let plan = new_plan(
        PlanStatus::Optimal,
        vec![c.id.clone()],
        vec![part_order("f1", &c, 1), part_order("f2", &c, 1)],
    );
    replica.store_plan(&plan, t0()).await.expect("store");
    assert_eq!(page(&store, &first).await, StreamPage::Replaced);
    assert_eq!(seqs(page(&store, &second).await), vec![1, 2]);

    // Another factory's claim leaves f1's alone; unknown factories are refused.
    store.claim_factory_stream("f2", t0()).await.expect("f2");
    assert_eq!(seqs(page(&replica, &second).await), vec![1, 2]);
    not_found(store.claim_factory_stream("nowhere", t0()).await, "factory");
    assert_eq!(
        invalid_field(replica.claim_factory_stream(" ", t0()).await),
        "factory_id"
    );

    // Claims at once through both stores: each its own number, the highest stands.
    let claims = (0..8).map(|i| {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            replica.clone()
        };
        async move { s.claim_factory_stream("f1", t0()).await.expect("claim") }
    });
    let mut got = futures::future::join_all(claims).await;
    got.sort_unstable_by_key(|c| c.generation);
    got.dedup();
    assert_eq!(got.len(), 8, "two claims got one number: {got:?}");
    assert!(got[0].generation > second.generation);
    let newest = got.last().expect("eight claims").clone();
    for g in got.iter().filter(|g| **g != newest).chain([&second]) {
        assert_eq!(page(&replica, g).await, StreamPage::Replaced, "claim {g:?}");
    }
    assert_eq!(seqs(page(&store, &newest).await), vec![1, 2]);
}

/// Replaces the catalogue with [`sample_catalogue`]: the set-up of the cases that plan.
async fn use_sample_catalogue(store: &dyn Store) {
    change(
        store,
        CatalogueEdit::Replace(sample_catalogue()),
        accept_all(),
    )
    .await
    .expect("catalogue");
}

async fn locked_batch(store: &dyn Store, sku: &str) -> Batch {
    let mut s = spec(2, None);
    s.sku = sku.into();
    s.deposit = s.unit_price;
    let c = create(store, s).await;
    place(store, &c.id, &consumer(1), 2).await.expect("locks");
    let b = batches(store, &c.id).await.remove(0);
    assert_eq!(b.status, BatchStatus::Locked);
    b
}

fn new_plan(status: PlanStatus, batches: Vec<BatchId>, work_orders: Vec<NewWorkOrder>) -> NewPlan {
    NewPlan {
        idempotency_key: None,
        status,
        currency: "CNY".into(),
        total_cost: 1234,
        gap: if status == PlanStatus::Optimal {
            Some(0.0)
        } else {
            None
        },
        solver: "test".into(),
        detail: PlanDetail {
            cost_breakdown: "{}".into(),
            solve_seconds: 0.5,
            diagnosis: (status == PlanStatus::Infeasible).then(|| "{\"reasons\":[]}".to_owned()),
            scenario: "name = \"x\"".into(),
            plan: "{}".into(),
            catalogue_version: 1,
            batches,
            reservations: vec![("steel".into(), 4.0)],
        },
        work_orders,
        purchase_orders: vec![],
        allocations: vec![],
    }
}

fn work_order(factory: &str, batch: &Batch) -> NewWorkOrder {
    part_order(factory, batch, batch.units)
}

/// A work order making `units` of the batch.
/// A material that a work order takes from stock cannot leave the catalogue while its
/// factory may still reject the work order (issued or accepted): the rejection puts the
/// stock back on hand, which needs the material's row. It is refused with
/// `MATERIAL_IN_USE`, by a delete and by a replacing import alike, naming the first such
/// work order; once every such work order is in production or rejected, it may go.
pub async fn a_material_a_rejectable_work_order_takes_from_stock_stays(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    use_sample_catalogue(&*store).await;
    let b = locked_batch(&*store, "kettle-17-white").await;
    let c = locked_batch(&*store, "kettle-17-white").await;
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone(), c.id.clone()],
        vec![work_order("f1", &b), work_order("f2", &c)],
    );
    plan.detail.reservations = vec![("steel".into(), 8.0)];
    store.store_plan(&plan, t0()).await.expect("store");
    let w1 = store.factory_work_orders("f1", 0, 10).await.unwrap()[0]
        .id
        .clone();
    let w2 = store.factory_work_orders("f2", 0, 10).await.unwrap()[0]
        .id
        .clone();
    let delete = || CatalogueEdit::Delete {
        kind: CatalogueKind::Material,
        id: "steel".into(),
    };
    let in_use = |work_order: &str| Refusal::MaterialInUse {
        material: "steel".into(),
        work_order: work_order.into(),
    };
    assert_eq!(
        precondition(change(&*store, delete(), accept_all()).await),
        in_use(&w1)
    );
    let mut without = sample_catalogue();
    without.materials.retain(|m| m.id != "steel");
    assert_eq!(
        precondition(
            change(
                &*store,
                CatalogueEdit::Replace(without.clone()),
                accept_all()
            )
            .await
        ),
        in_use(&w1)
    );
    let report = |factory: &'static str, w: String, progress: Progress| {
        let store = store.clone();
        async move {
            store
                .report_progress(&report_req(factory, &w, progress), t0())
                .await
                .expect("report")
        }
    };
    report("f1", w1.clone(), Progress::Accepted).await;
    assert_eq!(
        precondition(change(&*store, delete(), accept_all()).await),
        in_use(&w1),
        "accepted, it may still be rejected"
    );
    report("f1", w1.clone(), Progress::InProduction).await;
    assert_eq!(
        precondition(change(&*store, delete(), accept_all()).await),
        in_use(&w2),
        "f1's is in production; f2's is still issued"
    );
    let steel = |c: &Catalogue| {
        c.materials
            .iter()
            .find(|m| m.id == "steel")
            .map(|m| m.on_hand)
    };
    let before = steel(&store.catalogue().await.unwrap()).expect("steel");
    report(
        "f2",
        w2,
        Progress::Rejected {
            reason: "no capacity".into(),
        },
    )
    .await;
    assert_eq!(
        steel(&store.catalogue().await.unwrap()),
        Some(before + 4.0),
        "the rejection returned f2's steel while the material was there"
    );
    // Replaced, not deleted: the sample's bills of materials and offers still name steel,
    // and a delete of an entry others name is ENTRY_IN_USE whatever the work orders.
    assert!(matches!(
        precondition(change(&*store, delete(), accept_all()).await),
        Refusal::EntryInUse { .. }
    ));
    change(&*store, CatalogueEdit::Replace(without), accept_all())
        .await
        .expect("no work order may give steel back now");
    assert_eq!(steel(&store.catalogue().await.unwrap()), None);
}

fn part_order(factory: &str, batch: &Batch, units: i64) -> NewWorkOrder {
    NewWorkOrder {
        factory_id: factory.into(),
        runs: vec![WorkOrderRun {
            sku: "kettle-17-white".into(),
            quantity: units,
            batches: vec![RunBatch {
                batch_id: batch.id.clone(),
                units,
                late_reason: None,
            }],
            schedule: None,
        }],
        materials: vec![MaterialDelivery {
            material: "steel".into(),
            supplier: None,
            quantity: 4.0,
            purchase_order: None,
        }],
        due_at: t0() + Duration::days(30),
    }
}

/// A planning cycle's key sent to two replicas at once (a `RunPlanning` retried on another
/// replica while the first still ran): one plan is stored, and every send answers it. A
/// send that looked the key up before the first plan committed and then waited for the
/// planning lock must replay that plan, not be refused because its batches no longer wait.
pub async fn one_planning_key_sent_to_two_replicas_stores_one_plan(fx: Arc<dyn Fixture>) {
    let stores = [fx.store(), fx.replica().await];
    use_sample_catalogue(&*stores[0]).await;
    for round in 0..5 {
        let a = locked_batch(&*stores[0], "kettle-17-white").await;
        let b = locked_batch(&*stores[1], "kettle-17-white").await;
        let mut plan = new_plan(
            PlanStatus::Optimal,
            vec![a.id.clone(), b.id.clone()],
            vec![work_order("f1", &a), work_order("f2", &b)],
        );
        plan.detail.reservations = vec![];
        plan.idempotency_key = Some(key());
        let id = one_key_at_once(&stores, &format!("round {round}: store plan"), move |s| {
            let plan = plan.clone();
            async move { s.store_plan(&plan, t0()).await }
        })
        .await;
        let got = stores[1].get_plan(&id).await.expect("the plan");
        assert_eq!(got.work_orders.len(), 2, "round {round}");
        assert!(
            stores[0].planning_queue().await.unwrap().is_empty(),
            "round {round}"
        );
    }
    let plans = stores[0]
        .list_plans(PageRequest::first(100))
        .await
        .expect("plans");
    assert_eq!(plans.items.len(), 5, "one plan per round");
}

/// Scheduled cycles take turns across replicas by one lease: held, it is refused to
/// another owner and renewed for its own; given up, or past its time, another takes it at
/// once; a release by an owner that does not hold it changes nothing; and owners racing
/// for a free lease on two replicas get it exactly once.
pub async fn scheduled_cycles_take_turns_by_one_lease(fx: Arc<dyn Fixture>) {
    let (a, b) = (fx.store(), fx.replica().await);
    let t = t0();
    let s = Duration::seconds;
    let take = async |store: &Arc<dyn Store>, owner: &str, at, until| {
        store
            .take_cycle_lease(owner, at, until)
            .await
            .expect("take")
    };
    assert!(take(&a, "r1", t, t + s(60)).await, "free: taken");
    assert!(!take(&b, "r2", t + s(1), t + s(61)).await, "held by r1");
    assert!(take(&a, "r1", t + s(2), t + s(90)).await, "renewed by r1");
    b.release_cycle_lease("r2", t + s(3))
        .await
        .expect("release");
    assert!(
        !take(&b, "r2", t + s(3), t + s(63)).await,
        "not r2's to give up"
    );
    a.release_cycle_lease("r1", t + s(4))
        .await
        .expect("release");
    assert!(
        take(&b, "r2", t + s(4), t + s(64)).await,
        "given up: taken at once"
    );
    // r2 dies holding it: refused until its time has passed, then taken.
    assert!(
        !take(&a, "r3", t + s(63), t + s(120)).await,
        "r2's until t+64"
    );
    assert!(
        take(&a, "r3", t + s(64), t + s(120)).await,
        "r2's lease ran out"
    );

    a.release_cycle_lease("r3", t + s(200))
        .await
        .expect("release");
    for round in 0..5 {
        let at = t + s(300 + 100 * round);
        let (ox, oy) = (format!("x{round}"), format!("y{round}"));
        let (x, y) = tokio::join!(take(&a, &ox, at, at + s(60)), take(&b, &oy, at, at + s(60)),);
        assert!(x ^ y, "round {round}: exactly one of the two ({x}, {y})");
        let holder = if x { ox } else { oy };
        a.release_cycle_lease(&holder, at + s(1))
            .await
            .expect("release");
    }
}

pub async fn plans_take_batches_once_and_number_work_orders_per_factory(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    use_sample_catalogue(&*store).await;
    // A batch waits for planning once it is ready for production: a deposit-only batch
    // after its balance window, a full-price one at lock.
    let mut unpaid = spec(2, None);
    unpaid.sku = "toaster".into();
    let unpaid = create(&*store, unpaid).await;
    place(&*store, &unpaid.id, &consumer(9), 2)
        .await
        .expect("locks");
    assert!(
        store.planning_queue().await.unwrap().is_empty(),
        "a batch in its balance window is not planned"
    );
    let a = locked_batch(&*store, "kettle-17-white").await;
    let b = locked_batch(&*store, "toaster").await;
    let queue = store.planning_queue().await.expect("queue");
    assert!(queue.iter().all(|q| q.units_to_plan == 2));
    let mut queued: Vec<(&BatchId, &str)> = queue
        .iter()
        .map(|q| (&q.batch.id, q.sku.as_str()))
        .collect();
    queued.sort();
    let mut expected = vec![(&a.id, "kettle-17-white"), (&b.id, "toaster")];
    expected.sort();
    assert_eq!(
        queued, expected,
        "both locked batches wait (same lock time: by id)"
    );

    // An infeasible cycle is kept, with its diagnosis, and leaves the batches queued.
    let infeasible = store
        .store_plan(
            &new_plan(
                PlanStatus::Infeasible,
                vec![a.id.clone(), b.id.clone()],
                vec![],
            ),
            t0(),
        )
        .await
        .expect("store infeasible");
    let queue = store.planning_queue().await.expect("queue");
    assert_eq!(queue.len(), 2);
    assert_eq!(
        queue[0].last_plan.as_ref().map(|p| p.id.as_str()),
        Some(infeasible.as_str())
    );
    let got = store.get_plan(&infeasible).await.expect("get");
    assert_eq!(got.summary.status, PlanStatus::Infeasible);
    assert!(
        got.detail.diagnosis.is_some()
            && got.work_orders.is_empty()
            && got.detail.reservations.is_empty()
    );
    assert_eq!(store.catalogue().await.unwrap().materials[0].on_hand, 10.0);

    // A feasible plan holds both batches, reserves stock, numbers work orders per factory.
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![a.id.clone(), b.id.clone()],
        vec![
            work_order("f1", &a),
            part_order("f2", &b, 1),
            part_order("f1", &b, 1),
        ],
    );
    plan.idempotency_key = Some(key());
    let id = store.store_plan(&plan, t0()).await.expect("store");
    assert_eq!(store.store_plan(&plan, t0()).await.expect("replay"), id);
    assert_eq!(
        store
            .replayed_plan(plan.idempotency_key.as_ref().unwrap())
            .await
            .unwrap(),
        Some(id.clone())
    );
    assert!(store.planning_queue().await.unwrap().is_empty());
    let got = store.get_plan(&id).await.expect("get");
    let seqs: Vec<(&str, i64)> = got
        .work_orders
        .iter()
        .map(|w| (w.order.factory_id.as_str(), w.seq))
        .collect();
    assert_eq!(seqs, vec![("f1", 1), ("f1", 2), ("f2", 1)]);
    assert!(got
        .work_orders
        .iter()
        .all(|w| w.state == c2m_domain::WorkOrderState::Issued));
    assert_eq!(got.work_orders[0].order.runs, plan.work_orders[0].runs);
    assert_eq!(got.detail.reservations, vec![("steel".to_owned(), 4.0)]);
    assert_eq!(store.catalogue().await.unwrap().materials[0].on_hand, 6.0);

    // A batch whose units are all in work orders is not planned again.
    let mut twice = new_plan(
        PlanStatus::Optimal,
        vec![a.id.clone()],
        vec![work_order("f1", &a)],
    );
    twice.detail.reservations.clear();
    assert_eq!(
        precondition(store.store_plan(&twice, t0()).await),
        Refusal::BatchNotWaiting {
            batch: a.id.to_string()
        }
    );
    // Stock that is not there cannot be reserved.
    let c = locked_batch(&*store, "kettle-17-white").await;
    let mut greedy = new_plan(
        PlanStatus::Feasible,
        vec![c.id.clone()],
        vec![work_order("f2", &c)],
    );
    greedy.detail.reservations = vec![("steel".into(), 7.0)];
    assert_eq!(
        precondition(store.store_plan(&greedy, t0()).await),
        Refusal::StockChanged {
            material: "steel".into()
        }
    );
    greedy.detail.reservations = vec![("steel".into(), 6.0)];
    let third = store.store_plan(&greedy, t0()).await.expect("store third");
    let got = store.get_plan(&third).await.unwrap();
    assert_eq!(got.work_orders[0].seq, 2, "f2's sequence continues");
    assert_eq!(got.summary.gap, None);

    let listed = store.list_plans(PageRequest::first(2)).await.unwrap();
    let ids: Vec<&str> = listed.items.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec![third.as_str(), id.as_str()], "newest first");
    let rest = store
        .list_plans(PageRequest {
            size: 2,
            after: listed.next_after,
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, infeasible);
    assert_eq!(rest.items[0].batches, 2);
    not_found(store.get_plan("pln_nope").await, "plan");
}

/// A rejection as the queue shows it, made at `t0()` (the moment of the test's reports).
fn rejection_at_t0(factory: &str, reason: &str) -> crate::FactoryRejection {
    crate::FactoryRejection {
        factory_id: factory.into(),
        reason: reason.into(),
        at: t0(),
    }
}

fn report_req(factory: &str, work_order: &str, progress: Progress) -> ReportProgress {
    ReportProgress {
        idempotency_key: key(),
        factory_id: factory.into(),
        work_order_id: work_order.into(),
        progress,
    }
}

fn out_of_range<T: std::fmt::Debug>(r: Result<T, StoreError>) -> DomainError {
    match r {
        Err(StoreError::Domain(e @ DomainError::Ahead { .. })) => e,
        other => panic!("expected a position ahead of the store, got {other:?}"),
    }
}

pub async fn factories_get_their_own_work_orders_and_rejections_requeue_units(
    fx: Arc<dyn Fixture>,
) {
    let store = fx.store();
    use_sample_catalogue(&*store).await;
    let b = locked_batch(&*store, "kettle-17-white").await;
    let c = locked_batch(&*store, "kettle-17-white").await;
    // b is split over f1 (1 unit) and f2 (1 unit); f2 also makes all of c, in one run.
    let mut f2 = part_order("f2", &b, 1);
    f2.runs[0].quantity = 3;
    f2.runs[0].batches.push(RunBatch {
        batch_id: c.id.clone(),
        units: 2,
        late_reason: None,
    });
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone(), c.id.clone()],
        vec![part_order("f1", &b, 1), f2],
    );
    plan.detail.reservations = vec![("steel".into(), 8.0)];
    let p1 = store.store_plan(&plan, t0()).await.expect("store");
    assert_eq!(store.catalogue().await.unwrap().materials[0].on_hand, 2.0);

    // Each factory sees exactly its own work orders, by its own sequence.
    let f1_orders = store.factory_work_orders("f1", 0, 100).await.unwrap();
    let f2_orders = store.factory_work_orders("f2", 0, 100).await.unwrap();
    assert_eq!(f1_orders.len(), 1);
    assert_eq!(f2_orders.len(), 1);
    assert!(f1_orders
        .iter()
        .all(|w| w.order.factory_id == "f1" && w.plan_id == p1));
    assert_eq!((f1_orders[0].seq, f2_orders[0].seq), (1, 1));
    assert!(store
        .factory_work_orders("f1", 1, 100)
        .await
        .unwrap()
        .is_empty());
    not_found(store.factory_position("nowhere").await, "factory");

    // Acks: harmless twice or out of order, never beyond the last work order.
    let pos = store.ack_work_orders("f1", 1, t0()).await.expect("ack");
    assert_eq!((pos.acked_seq, pos.last_seq), (1, 1));
    store.ack_work_orders("f1", 1, t0()).await.expect("again");
    assert!(matches!(
        out_of_range(store.ack_work_orders("f1", 2, t0()).await),
        DomainError::Ahead { factory, seq: 2, last: 1, .. } if factory == "f1"
    ));
    assert_eq!(
        invalid_field(store.ack_work_orders("f1", -1, t0()).await),
        "seq"
    );
    // 0 acknowledges nothing (a heartbeat's `acked_seq` echoed back): the position, as it is.
    let pos = store.ack_work_orders("f1", 0, t0()).await.expect("ack 0");
    assert_eq!((pos.acked_seq, pos.last_seq), (1, 1));
    let pos = store
        .ack_work_orders("f2", 0, t0())
        .await
        .expect("ack 0, none acked yet");
    assert_eq!((pos.acked_seq, pos.last_seq), (0, 1));
    assert_eq!(store.factory_position("f1").await.unwrap().acked_seq, 1);
    assert_eq!(store.factory_position("f2").await.unwrap().acked_seq, 0);

    // A factory cannot touch another's work order, whatever id it sends.
    let w1 = f1_orders[0].id.clone();
    let w2 = f2_orders[0].id.clone();
    not_found(
        store
            .report_progress(&report_req("f2", &w1, Progress::Accepted), t0())
            .await,
        "work order",
    );

    // Accept, idempotently; a repeat under another key changes nothing.
    let accept = report_req("f1", &w1, Progress::Accepted);
    let accepted = store.report_progress(&accept, t0()).await.expect("accept");
    assert_eq!(accepted.state, WorkOrderState::Accepted);
    assert_eq!(
        store.report_progress(&accept, t0()).await.expect("replay"),
        accepted
    );
    let mut conflict = accept.clone();
    conflict.progress = Progress::InProduction;
    match store.report_progress(&conflict, t0()).await {
        Err(StoreError::Domain(DomainError::IdempotencyConflict { .. })) => {}
        other => panic!("expected a key conflict, got {other:?}"),
    }
    let again_req = report_req("f1", &w1, Progress::Accepted);
    let again = store
        .report_progress(&again_req, t0())
        .await
        .expect("accept again");
    assert_eq!(again.state, WorkOrderState::Accepted);
    let production = batch_production(&*store, &[&b]).await;
    assert_eq!(
        production[0].stage,
        ProductionStage::Planned,
        "f2 has not accepted"
    );

    // f1 rejects: its unit of b goes back to the queue with f1 excluded; c is untouched;
    // the stock f1 was given returns.
    let rejected = store
        .report_progress(
            &report_req(
                "f1",
                &w1,
                Progress::Rejected {
                    reason: "line 2 down for maintenance".into(),
                },
            ),
            t0(),
        )
        .await
        .expect("reject");
    assert_eq!(rejected.state, WorkOrderState::Rejected);
    assert_eq!(rejected.requeued_batches, vec![b.id.clone()]);
    let queue = store.planning_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].batch.id, b.id);
    assert_eq!(queue[0].units_to_plan, 1);
    assert_eq!(queue[0].excluded_factories, vec!["f1".to_owned()]);
    // With the reason f1 gave, for the planners (it was stored and never shown: QA 14).
    assert_eq!(
        queue[0].rejections,
        vec![rejection_at_t0("f1", "line 2 down for maintenance")]
    );
    assert_eq!(
        queue[0].last_plan.as_ref().map(|p| p.id.as_str()),
        Some(p1.as_str()),
        "the plan whose factory rejected it"
    );
    assert_eq!(store.catalogue().await.unwrap().materials[0].on_hand, 6.0);
    let production = batch_production(&*store, &[&b, &c]).await;
    assert_eq!(production[0].stage, ProductionStage::AwaitingPlan);
    assert_eq!(production[0].units_awaiting_plan, 1);
    assert_eq!(production[1].stage, ProductionStage::Planned);
    // A rejected work order takes no further reports.
    precondition(
        store
            .report_progress(&report_req("f1", &w1, Progress::InProduction), t0())
            .await,
    );

    // The next plan may give b only the unit that waits.
    let mut too_much = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![part_order("f2", &b, 2)],
    );
    too_much.detail.reservations.clear();
    assert!(matches!(
        precondition(store.store_plan(&too_much, t0()).await),
        Refusal::UnitsNotWaiting { waiting: 1, .. }
    ));
    let mut replan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![part_order("f2", &b, 1)],
    );
    replan.detail.reservations.clear();
    let p2 = store.store_plan(&replan, t0()).await.expect("replan");
    assert!(store.planning_queue().await.unwrap().is_empty());
    let f2_orders = store.factory_work_orders("f2", 1, 100).await.unwrap();
    assert_eq!(f2_orders.len(), 1);
    assert_eq!(
        (f2_orders[0].seq, f2_orders[0].plan_id.as_str()),
        (2, p2.as_str())
    );

    // Each factory's keys are its own: f2 reports under the key f1 accepted with, and
    // that is f2's report, not refused as f1's; f2 probing another key f1 used learns
    // nothing of it (the work order it names is not found, as any other's). Keys were
    // shared, and both were ALREADY_EXISTS (QA 14).
    let mut under_f1s_key = report_req("f2", &w2, Progress::InProduction);
    under_f1s_key.idempotency_key = accept.idempotency_key.clone();
    let started = store
        .report_progress(&under_f1s_key, t0())
        .await
        .expect("f2's report under a key f1 used");
    assert_eq!(started.state, WorkOrderState::InProduction);
    assert_eq!(
        store
            .report_progress(&under_f1s_key, t0())
            .await
            .expect("replayed"),
        started
    );
    let mut probe = report_req("f2", "wo_made_up", Progress::Accepted);
    probe.idempotency_key = again_req.idempotency_key.clone();
    not_found(store.report_progress(&probe, t0()).await, "work order");

    // f2 takes its first work order through to shipping, in parts.
    let check = report_req(
        "f2",
        &w2,
        Progress::QualityCheck {
            passed: 3,
            failed: 0,
        },
    );
    let checked = store.report_progress(&check, t0()).await.expect("check");
    // A key recorded before keys had scopes (only under the bare operation, as an older
    // c2m left it) is still f2's: its request replays (a retry across the upgrade is not
    // counted twice) and another is refused (it was applied, and the true retry then
    // refused: QA 15); to another factory it is no refusal.
    fx.execute_past_the_store(&format!(
        "DELETE FROM idempotency_keys WHERE key = '{}' AND operation <> 'report_progress'",
        check.idempotency_key.as_str()
    ))
    .await;
    let mut changed = check.clone();
    changed.progress = Progress::QualityCheck {
        passed: 1,
        failed: 0,
    };
    match store.report_progress(&changed, t0()).await {
        Err(StoreError::Domain(DomainError::IdempotencyConflict { .. })) => {}
        other => panic!("f2's old key with another check: {other:?}"),
    }
    assert_eq!(
        store.report_progress(&check, t0()).await.expect("replay"),
        checked
    );
    let mut other = report_req("f1", "wo_made_up", Progress::Accepted);
    other.idempotency_key = check.idempotency_key.clone();
    not_found(store.report_progress(&other, t0()).await, "work order");
    let ship = |n: i64| Progress::Shipped {
        quantities: [("kettle-17-white".to_string(), n)].into_iter().collect(),
    };
    let part_req = report_req("f2", &w2, ship(2));
    let part = store
        .report_progress(&part_req, t0())
        .await
        .expect("ship part");
    assert_eq!(part.state, WorkOrderState::QcPassed);
    // The key is recorded the old way too, so an older replica of a rolling upgrade, which
    // looks only there, replays a retry instead of shipping twice (QA 15: a part shipment
    // counted twice): with the per-factory record gone, the retry is still replayed.
    fx.execute_past_the_store(&format!(
        "DELETE FROM idempotency_keys WHERE key = '{}' AND operation <> 'report_progress'",
        part_req.idempotency_key.as_str()
    ))
    .await;
    assert_eq!(
        store
            .report_progress(&part_req, t0())
            .await
            .expect("replay"),
        part
    );
    assert_eq!(
        invalid_field(
            store
                .report_progress(&report_req("f2", &w2, ship(2)), t0())
                .await
        ),
        "shipped.quantities[kettle-17-white]"
    );
    let done = store
        .report_progress(&report_req("f2", &w2, ship(1)), t0())
        .await
        .expect("ship rest");
    assert_eq!(done.state, WorkOrderState::Shipped);
    let production = batch_production(&*store, &[&c, &b]).await;
    assert_eq!(production[0].stage, ProductionStage::Shipped);
    assert_eq!(production[0].units_shipped, 2);
    assert_eq!(
        production[1].stage,
        ProductionStage::Planned,
        "b waits for its second work order"
    );
    assert_eq!(production[1].units_shipped, 1);
    let got = store.get_plan(&p1).await.unwrap();
    let states: Vec<WorkOrderState> = got.work_orders.iter().map(|w| w.state).collect();
    assert_eq!(
        states,
        vec![WorkOrderState::Rejected, WorkOrderState::Shipped]
    );
}

#[cfg(test)]
mod registry {
    /// The names [`conformance_cases!`] lists.
    macro_rules! registered {
        ($($case:ident),* $(,)?) => {
            &[$(stringify!($case)),*]
        };
    }

    const REGISTERED: &[&str] = crate::conformance_cases!([registered]);

    /// The cases written in the suite's sources: `pub async fn name(fx: Arc<dyn Fixture>)`.
    fn written() -> Vec<String> {
        let mut names = Vec::new();
        for source in [
            include_str!("conformance.rs"),
            include_str!("conformance/ledger.rs"),
            include_str!("conformance/purchasing.rs"),
            include_str!("conformance/events.rs"),
            include_str!("conformance/levers.rs"),
        ] {
            // Functions start a line; mentions in comments do not.
            for (at, _) in source.match_indices("\npub async fn ") {
                let rest = &source[at + "\npub async fn ".len()..];
                let Some((name, after)) = rest.split_once('(') else {
                    continue;
                };
                let params: String = after
                    .split(')')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                if params.trim_end_matches(',') == "fx:Arc<dynFixture>" {
                    names.push(name.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn every_written_case_is_registered() {
        let written = written();
        assert!(written.len() >= 30, "found only {written:?}");
        let missing: Vec<&String> = written
            .iter()
            .filter(|w| !REGISTERED.contains(&w.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "cases missing from conformance_cases!: {missing:?}"
        );
        let mut unique = REGISTERED.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), REGISTERED.len(), "a case is registered twice");
        assert_eq!(REGISTERED.len(), written.len(), "registered {REGISTERED:?}");
    }
}
