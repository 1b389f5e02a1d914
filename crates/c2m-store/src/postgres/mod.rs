//! The production store: PostgreSQL, shared by any number of c2m replicas.
//!
//! What is PostgreSQL's own is here; the SQL and the write logic are the features', written
//! once for both backends (`crate::dialect`). Nothing that must hold across replicas
//! lives in process memory:
//!
//! - Every write on a campaign (place, cancel, fail at the deadline, pay, close a window)
//!   first takes the campaign's row lock with `SELECT ... FROM campaigns WHERE id = $1 FOR
//!   UPDATE`, so all writers on one campaign, in any replica, run one after another; they
//!   read the pool counts under that lock (READ COMMITTED: each statement sees what the
//!   previous holder committed), ask the domain, and write. The catalogue, plans and
//!   factory reports lock their rows likewise (each feature's module docs say which); this
//!   is why the dialect takes row locks (`Dialect::ROW_LOCKS`).
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
//!   see `crate::writer` for why every call keeps the semantics of its own transaction. The
//!   queue lives in process memory but decides only which calls share a transaction; the
//!   row lock and the constraints still order and check the writers of every replica.

mod listener;
mod migrate;
mod writers;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgPoolOptions, PgQueryResult, PgRow,
    PgTypeInfo,
};
use sqlx::{Arguments, Encode, Postgres, Row, Type};

use c2m_domain::BatchId;

use self::writers::Writers;
use crate::dialect::{Dialect, Value};
use crate::engine::{Base, Engine, Lane, Owned};
use crate::payment::PaymentProvider;
use crate::writer::{run_now, Op};
pub use crate::writer::{WriterStats, ATTEMPTS};
use crate::Result;
use crate::{BatchTransition, StoreError};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Connections per store (per replica). PostgreSQL's default limit is 100 in all.
pub const DEFAULT_POOL_SIZE: u32 = 10;
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
    /// How long a start waits for the locks its migrations need, in attempts that give way
    /// to the other sessions (`migrate`), before it fails naming who holds them.
    pub migration_wait: Duration,
}

/// [`PgOptions::migration_wait`] by default: long enough for a report or a backup to end,
/// or another replica's migrations.
pub const DEFAULT_MIGRATION_WAIT: Duration = Duration::from_secs(300);

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: DEFAULT_POOL_SIZE,
            max_group: MAX_GROUP,
            migration_wait: DEFAULT_MIGRATION_WAIT,
        }
    }
}

/// The PostgreSQL store. See the module docs for how replicas stay correct.
pub struct PgStore {
    /// The per-campaign writers placements and cancels are queued on (group commit).
    writers: Arc<Writers>,
    /// The pool every read and write runs on.
    base: Base<Postgres>,
    /// `LISTEN c2m_events` while anyone waits for events (`crate::events`).
    listener: listener::Listener,
}

impl PgStore {
    /// Connects with [`DEFAULT_POOL_SIZE`] connections and applies the migrations (sqlx
    /// holds an advisory lock while migrating, so replicas may start together; a migration
    /// waits for the locks it needs in short attempts, `migrate`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_pool_size(url, DEFAULT_POOL_SIZE).await
    }

    pub async fn connect_with_pool_size(url: &str, size: u32) -> Result<Self> {
        let options = PgOptions {
            pool_size: size,
            ..PgOptions::default()
        };
        Self::connect_with(url, options).await
    }

    #[tracing::instrument(skip(url))]
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<Self> {
        let connect = connect_options(url)?;
        first_connection(&connect, FIRST_CONNECTION_WAIT).await?;
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
            .connect_with(connect)
            .await?;
        migrate::migrate(&connect_options(url)?, &pool, options.migration_wait).await?;
        let max_group = options.max_group.clamp(1, MAX_GROUP);
        Ok(PgStore {
            writers: Arc::new(Writers::new(pool.clone(), max_group)),
            base: Base::new(pool),
            listener: listener::Listener::default(),
        })
    }

    /// Uses `provider` instead of the built-in [`LedgerOnly`](crate::payment::LedgerOnly)(crate::payment::LedgerOnly).
    pub fn with_provider(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.base.provider = provider;
        self
    }

    /// The append-only transition record of a batch, oldest first (for audits and tests).
    pub async fn batch_transitions(&self, batch: &BatchId) -> Result<Vec<BatchTransition>> {
        crate::pooling::batch_transitions(&self.base.pool, batch).await
    }

    /// Placements and cancels run and transactions used so far by this store's writers.
    pub fn writer_stats(&self) -> WriterStats {
        self.writers.stats()
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.base.pool.close().await;
    }
}

/// How long a server starting beside its database waits for it to accept connections.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(30);

/// Makes one connection before the pool, so a database that cannot be reached says why.
/// The pool retries a failed connection until its acquire timeout and then reports only
/// "pool timed out": an operator whose PostgreSQL was down, or on another port, waited 30
/// seconds in silence for that. Here a failure that may pass (connection refused, the
/// database starting up) is logged with its cause and retried each second for up to
/// `wait`, and the last cause is the error; one that will not pass (a wrong password, a
/// database that does not exist, a TLS failure) is the error at once.
async fn first_connection(options: &PgConnectOptions, wait: Duration) -> Result<()> {
    use sqlx::Connection;
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match sqlx::PgConnection::connect_with(options).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            // A TLS failure at connection does not pass by waiting, and was retried for the
            // whole wait: a server without TLS under `sslmode=require` (sqlx's `Tls`), a
            // certificate the root certificates do not verify or a name it does not carry
            // (rustls's refusal, which sqlx passes on as I/O of invalid data).
            Err(e @ sqlx::Error::Tls(_)) => return Err(e.into()),
            Err(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(sqlx::Error::Io(e).into())
            }
            Err(e) if crate::error::is_transient(&e) && started.elapsed() < wait => {
                if attempt == 1 || attempt % 10 == 0 {
                    tracing::warn!(
                        error = %e,
                        "PostgreSQL cannot be reached yet; retrying each second for up to {} s",
                        wait.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the database holds a c2m store (its tables exist: a server has started on it).
/// One connection, one read: nothing is created or migrated.
pub async fn store_exists(url: &str) -> Result<bool> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&connect_options(url)?).await?;
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('api_tokens') IS NOT NULL")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(exists)
}

/// The store's [`crate::Schema`]: the newest migration applied and the newest this build
/// has. Creates and migrates nothing.
pub async fn schema(url: &str) -> Result<crate::Schema> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&connect_options(url)?).await?;
    let applied = crate::Schema::applied(&mut conn).await;
    let _ = conn.close().await;
    Ok(crate::Schema {
        applied: applied?,
        known: crate::Schema::newest(&MIGRATOR),
    })
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
pub fn connect_options(url: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("c2m")
        .options([
            ("idle_in_transaction_session_timeout", "60s"),
            ("lock_timeout", "10s"),
            ("plan_cache_mode", "force_generic_plan"),
        ]))
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

    fn read_ts(row: &PgRow, col: &str) -> Result<DateTime<Utc>> {
        Ok(row.try_get(col)?)
    }

    fn read_ts_opt(row: &PgRow, col: &str) -> Result<Option<DateTime<Utc>>> {
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

#[async_trait]
impl Engine for PgStore {
    type D = Postgres;

    /// A write on a campaign goes to the campaign's writer, to share a transaction with
    /// the writes waiting for the same lock; any other runs in a transaction of its own.
    async fn write<A: Owned, T: Owned>(&self, lane: Lane<'_>, op: Op<Postgres, A, T>) -> Result<T> {
        let pool = &self.base.pool;
        let quiet = op.quiet;
        let campaign = match lane {
            Lane::Alone => None,
            Lane::Campaign(campaign) => Some(campaign.clone()),
            // A pre-order never changes campaign. An unknown one runs on its own and
            // answers as the shared logic says (a replay, or `NotFound`).
            Lane::Preorder(preorder) => crate::pooling::campaign_of(pool, preorder).await?,
        };
        let done = match campaign {
            Some(campaign) => self.writers.write(&campaign, op).await,
            None => run_now(pool, op).await,
        };
        if done.is_ok() && !quiet {
            self.base.committed();
        }
        done
    }

    fn base(&self) -> &Base<Postgres> {
        &self.base
    }

    fn listen(&self) {
        self.listener.ensure(&self.base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that cannot be reached is an error naming why (the connection was
    /// refused), after the wait, not the pool's bare "pool timed out".
    #[tokio::test]
    async fn an_unreachable_database_says_why() {
        // A port nothing listens on: bound, then let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let options = connect_options(&format!("postgres://c2m@127.0.0.1:{port}/c2m")).unwrap();
        let started = std::time::Instant::now();
        let e = first_connection(&options, Duration::from_millis(1500))
            .await
            .expect_err("nothing listens there");
        let waited = started.elapsed();
        let text = e.to_string();
        assert!(
            matches!(&e, crate::StoreError::Database(sqlx::Error::Io(_))),
            "{e:?}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
            "retried for the wait, then gave up: {waited:?}"
        );
    }
}
