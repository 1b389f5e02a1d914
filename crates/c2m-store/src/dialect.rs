//! One way to speak two dialects: the generic layer every feature's SQL is written on.
//!
//! SQLite and PostgreSQL both accept `$n` placeholders, and for the statements c2m sends
//! they accept the same SQL text (`CAST(x AS BIGINT)` rather than `x::BIGINT`, `CAST(response
//! AS TEXT)` rather than `response::text`). So each feature writes a statement once, as a
//! constant, and runs it, with its parameters as one tuple ([`Dialect::query`], or
//! [`Dialect::sql`] and [`Statement::bind`]), on anything that lends a connection
//! ([`Conn`]: a transaction, [`Tx`], or a connection taken from a pool); rows come back as
//! the backend's row type, read through [`Columns`] ([`Statement::optional`],
//! [`Statement::all`]). The shared code is ordinary generic code over `D: Backend`, so an
//! IDE follows every call to its SQL. What truly differs between the two backends is said
//! here, once, by each backend's `impl Dialect` (`sqlite/mod.rs`, `postgres/mod.rs`):
//!
//! - **Type binding.** A timestamp is INTEGER microseconds on SQLite and `TIMESTAMPTZ` on
//!   PostgreSQL; a recorded response is TEXT on SQLite and `JSONB` on PostgreSQL; a list of
//!   text is one JSON array on SQLite and a `text[]` on PostgreSQL. A value is bound as a
//!   [`Value`], which the backend turns into its own type ([`Dialect::push`]), and a
//!   timestamp is read back with [`Dialect::read_ts`].
//! - **Locking.** On PostgreSQL the rows a writer relies on are locked (`FOR UPDATE`,
//!   `FOR SHARE`), since several replicas write; on SQLite the one writer already holds the
//!   whole database ([`Dialect::ROW_LOCKS`], [`Dialect::locking`]).
//! - **Transactions.** How a write transaction and a read snapshot begin, and which errors
//!   make a whole transaction worth running again ([`Dialect::retryable`]).
//! - **Statements of their own.** Where the SQL itself differs (a list read with
//!   `json_each` or `ANY`, several rows written with `json_each` over one JSON array or
//!   with `UNNEST` over arrays), the few statements concerned are written in both dialects
//!   side by side, in the feature they belong to, as a small trait each backend implements
//!   ([`crate::idempotency::KeysSql`], [`crate::pooling::PoolSql`],
//!   [`crate::ledger::LedgerSql`], [`crate::events::EventsSql`]); [`Backend`] is all of them.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::{
    Arguments, ColumnIndex, Connection, Database, Decode, Either, Encode, Executor, IntoArguments,
    Pool, Row,
};
use sqlx::{Transaction, Type};

use c2m_domain::{Campaign, Page};

use crate::events::EventsSql;
use crate::idempotency::{KeysSql, StoredResponse};
use crate::ledger::LedgerSql;
use crate::pooling::PoolSql;
use crate::Result;
use crate::StoreError;

/// What differs between SQLite and PostgreSQL, said once per backend. See the module docs.
pub(crate) trait Dialect: Database<Row: Columns, Connection: Run<Self>> {
    /// For logs and the health report: "sqlite" or "postgres".
    const BACKEND: &'static str;

    /// Whether a writer must lock the rows its rules rely on (PostgreSQL: `FOR UPDATE`, so
    /// that writers in every replica take turns) or already holds the whole database
    /// (SQLite: one writer, `BEGIN IMMEDIATE`).
    const ROW_LOCKS: bool;

    /// The statement that begins a write transaction.
    const BEGIN_WRITE: &'static str;

    /// The statement that begins a read of several statements that must see one snapshot.
    const BEGIN_SNAPSHOT: &'static str;

    /// Adds `value` to a statement's arguments in this backend's type for it.
    fn push<'q>(args: &mut Self::Arguments<'q>, value: Value<'q>) -> Result<(), BoxDynError>;

    /// Reads a timestamp column, stored in this backend's type for it.
    fn read_ts(row: &Self::Row, col: &str) -> Result<DateTime<Utc>>;

    /// Reads a nullable timestamp column.
    fn read_ts_opt(row: &Self::Row, col: &str) -> Result<Option<DateTime<Utc>>>;

    /// How many rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// Whether running the whole transaction again may succeed where this error failed it.
    fn retryable(_error: &StoreError) -> bool {
        false
    }

    /// A statement to bind values to and run.
    fn sql(sql: &str) -> Statement<'_, Self> {
        Statement {
            sql,
            args: Default::default(),
            bad: None,
        }
    }

    /// A statement with its parameters `$1`, `$2`, ... given as one tuple.
    fn query<'q>(sql: &'q str, params: impl Params<'q>) -> Statement<'q, Self> {
        params.bind_to(Self::sql(sql))
    }

    /// `locked` where writers lock rows ([`Dialect::ROW_LOCKS`]), `plain` where they do not.
    fn locking(plain: &'static str, locked: &'static str) -> &'static str {
        if Self::ROW_LOCKS {
            locked
        } else {
            plain
        }
    }
}

/// Everything a backend implements: the dialect and the few statements each feature
/// writes in both dialects. The shared code is generic over this one trait.
pub(crate) trait Backend: Dialect + KeysSql + PoolSql + LedgerSql + EventsSql {}

impl<D: Dialect + KeysSql + PoolSql + LedgerSql + EventsSql> Backend for D {}

/// A value to bind, in the Rust type the shared code has; the backend picks the column
/// type ([`Dialect::push`]).
#[derive(Debug, Clone)]
pub(crate) enum Value<'q> {
    Text(&'q str),
    OptText(Option<&'q str>),
    String(String),
    Int(i64),
    OptInt(Option<i64>),
    Real(f64),
    OptReal(Option<f64>),
    Bool(bool),
    /// A timestamp: INTEGER microseconds on SQLite, `TIMESTAMPTZ` on PostgreSQL.
    Ts(DateTime<Utc>),
    OptTs(Option<DateTime<Utc>>),
    /// A JSON document given as text: TEXT on SQLite, `JSONB` on PostgreSQL.
    Json(&'q str),
    /// A list of text as one value: a JSON array on SQLite (read with `json_each`), a
    /// `text[]` on PostgreSQL (read with `ANY` or `UNNEST`).
    List(&'q [&'q str]),
}

impl<'q> Value<'q> {
    /// Adds a value that both backends bind as the same Rust type; timestamps and JSON are
    /// each backend's own ([`Dialect::push`]).
    pub(crate) fn push_plain<D: Database>(
        self,
        args: &mut D::Arguments<'q>,
    ) -> Result<(), BoxDynError>
    where
        &'q str: Encode<'q, D> + Type<D>,
        Option<&'q str>: Encode<'q, D> + Type<D>,
        String: Encode<'q, D> + Type<D>,
        i64: Encode<'q, D> + Type<D>,
        Option<i64>: Encode<'q, D> + Type<D>,
        f64: Encode<'q, D> + Type<D>,
        Option<f64>: Encode<'q, D> + Type<D>,
        bool: Encode<'q, D> + Type<D>,
    {
        match self {
            Value::Text(v) => args.add(v),
            Value::OptText(v) => args.add(v),
            Value::String(v) => args.add(v),
            Value::Int(v) => args.add(v),
            Value::OptInt(v) => args.add(v),
            Value::Real(v) => args.add(v),
            Value::OptReal(v) => args.add(v),
            Value::Bool(v) => args.add(v),
            Value::Ts(_) | Value::OptTs(_) | Value::Json(_) | Value::List(_) => {
                Err("timestamps, JSON and lists are bound by the backend's dialect".into())
            }
        }
    }
}

/// How each Rust type the shared code binds becomes a [`Value`].
macro_rules! value_from {
    ($($ty:ty => |$v:ident| $value:expr),* $(,)?) => {
        $(
            impl<'q> From<$ty> for Value<'q> {
                fn from($v: $ty) -> Self {
                    $value
                }
            }
        )*
    };
}

value_from! {
    &'q str => |v| Value::Text(v),
    &'q String => |v| Value::Text(v),
    Option<&'q str> => |v| Value::OptText(v),
    &'q Option<String> => |v| Value::OptText(v.as_deref()),
    String => |v| Value::String(v),
    i64 => |v| Value::Int(v),
    Option<i64> => |v| Value::OptInt(v),
    f64 => |v| Value::Real(v),
    Option<f64> => |v| Value::OptReal(v),
    bool => |v| Value::Bool(v),
    DateTime<Utc> => |v| Value::Ts(v),
    Option<DateTime<Utc>> => |v| Value::OptTs(v),
}

/// The parameters of a statement, `$1`, `$2`, ... in order, as one tuple of values that
/// convert into [`Value`]s: `(id.as_str(), units)`, `(id,)`, `()`.
pub(crate) trait Params<'q> {
    fn bind_to<D: Dialect>(self, statement: Statement<'q, D>) -> Statement<'q, D>;
}

/// [`Params`] for tuples of up to eighteen values.
macro_rules! tuple_params {
    ($($value:ident),*) => {
        impl<'q, $($value: Into<Value<'q>>),*> Params<'q> for ($($value,)*) {
            #[allow(non_snake_case, unused_mut)]
            fn bind_to<D: Dialect>(self, mut statement: Statement<'q, D>) -> Statement<'q, D> {
                let ($($value,)*) = self;
                $(statement = statement.bind($value);)*
                statement
            }
        }
    };
}

tuple_params!();
tuple_params!(A);
tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, E);
tuple_params!(A, B, C, E, F);
tuple_params!(A, B, C, E, F, G);
tuple_params!(A, B, C, E, F, G, H);
tuple_params!(A, B, C, E, F, G, H, I);
tuple_params!(A, B, C, E, F, G, H, I, J);
tuple_params!(A, B, C, E, F, G, H, I, J, K);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M, N);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M, N, O);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M, N, O, P);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M, N, O, P, Q);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M, N, O, P, Q, R);
tuple_params!(A, B, C, E, F, G, H, I, J, K, L, M, N, O, P, Q, R, S);

/// A statement with its arguments, built as `sqlx::query(..).bind(..)` is, and run on a
/// connection of its backend (a transaction's, or one taken from a pool).
pub(crate) struct Statement<'q, D: Database> {
    sql: &'q str,
    args: D::Arguments<'q>,
    /// The first value that could not be bound, reported when the statement runs.
    bad: Option<BoxDynError>,
}

impl<'q, D: Dialect> Statement<'q, D> {
    pub(crate) fn bind(mut self, value: impl Into<Value<'q>>) -> Self {
        if self.bad.is_none() {
            if let Err(e) = D::push(&mut self.args, value.into()) {
                self.bad = Some(e);
            }
        }
        self
    }

    fn ready(self) -> Result<(&'q str, D::Arguments<'q>)> {
        match self.bad {
            Some(e) => Err(sqlx::Error::Encode(e).into()),
            None => Ok((self.sql, self.args)),
        }
    }

    /// Runs the statement on `on`; returns how many rows it changed.
    pub(crate) async fn execute(self, on: &mut impl Conn<D>) -> Result<u64> {
        let (sql, args) = self.ready()?;
        let mut results = on.conn().many(sql, args);
        let mut changed = 0;
        while let Some(result) = results.try_next().await? {
            if let Either::Left(done) = result {
                changed += D::rows_affected(&done);
            }
        }
        Ok(changed)
    }

    /// Runs the statement on `on` for its effect alone, where the caller has no use for
    /// how many rows it changed.
    pub(crate) async fn run(self, on: &mut impl Conn<D>) -> Result<()> {
        self.execute(on).await?;
        Ok(())
    }

    pub(crate) async fn fetch_all(self, on: &mut impl Conn<D>) -> Result<Vec<D::Row>> {
        let (sql, args) = self.ready()?;
        let rows = on.conn().many(sql, args);
        Ok(rows
            .try_filter_map(|r| async { Ok(r.right()) })
            .try_collect()
            .await?)
    }

    pub(crate) async fn fetch_optional(self, on: &mut impl Conn<D>) -> Result<Option<D::Row>> {
        let (sql, args) = self.ready()?;
        Ok(on.conn().optional(sql, args).await?)
    }

    pub(crate) async fn fetch_one(self, on: &mut impl Conn<D>) -> Result<D::Row> {
        self.fetch_optional(on)
            .await?
            .ok_or_else(|| sqlx::Error::RowNotFound.into())
    }

    /// The row, if there is one, read with `read`.
    pub(crate) async fn optional<T>(
        self,
        on: &mut impl Conn<D>,
        read: impl Fn(&D::Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.fetch_optional(on)
            .await?
            .as_ref()
            .map(read)
            .transpose()
    }

    /// The row, read with `read`; `missing()` (the caller's `NotFound`) when there is none.
    pub(crate) async fn found<T>(
        self,
        on: &mut impl Conn<D>,
        read: impl Fn(&D::Row) -> Result<T>,
        missing: impl FnOnce() -> StoreError,
    ) -> Result<T> {
        self.optional(on, read).await?.ok_or_else(missing)
    }

    /// Every row, each read with `read`.
    pub(crate) async fn all<T>(
        self,
        on: &mut impl Conn<D>,
        read: impl Fn(&D::Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.fetch_all(on).await?.iter().map(read).collect()
    }
}

/// What a statement runs on: a transaction ([`Tx`]), or a connection taken from a pool
/// for the one statement (`&mut pool.acquire().await?`).
pub(crate) trait Conn<D: Database>: Send {
    fn conn(&mut self) -> &mut D::Connection;
}

impl<D: Database> Conn<D> for Tx<'_, D> {
    fn conn(&mut self) -> &mut D::Connection {
        &mut self.tx
    }
}

impl<D: Database> Conn<D> for PoolConnection<D> {
    fn conn(&mut self) -> &mut D::Connection {
        self
    }
}

/// What a connection of backend `D` does for a [`Statement`]: sqlx's `Executor`, which is
/// implemented for `&mut` connections, turned into methods of the connection itself so
/// that [`Dialect`] can require it of its connection type. The two methods every sqlx
/// driver implements: the others (a statement's effect, all its rows) are built on
/// `many` in [`Statement`] just as sqlx builds them.
pub(crate) trait Run<D: Database>: Send {
    /// Every result of the statement: rows, and the effect of each statement run.
    fn many<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: D::Arguments<'q>,
    ) -> BoxStream<'e, sqlx::Result<Either<D::QueryResult, D::Row>>>;

    /// The first row, if any (the driver may stop reading after it).
    fn optional<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: D::Arguments<'q>,
    ) -> BoxFuture<'e, sqlx::Result<Option<D::Row>>>;

    /// Runs statements without arguments, several separated by `;` if need be, in one
    /// round trip (PostgreSQL's simple query protocol).
    fn batch<'e>(&'e mut self, sql: &'e str) -> BoxFuture<'e, Result<(), sqlx::Error>>;
}

impl<D, C> Run<D> for C
where
    D: Database,
    C: Send,
    for<'e> &'e mut C: Executor<'e, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
{
    fn many<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: D::Arguments<'q>,
    ) -> BoxStream<'e, sqlx::Result<Either<D::QueryResult, D::Row>>> {
        self.fetch_many(sqlx::query_with(sql, args))
    }

    fn optional<'e, 'q: 'e>(
        &'e mut self,
        sql: &'q str,
        args: D::Arguments<'q>,
    ) -> BoxFuture<'e, sqlx::Result<Option<D::Row>>> {
        Box::pin(sqlx::query_with(sql, args).fetch_optional(self))
    }

    fn batch<'e>(&'e mut self, sql: &'e str) -> BoxFuture<'e, Result<(), sqlx::Error>> {
        Box::pin(async move {
            self.execute(sql).await?;
            Ok(())
        })
    }
}

/// Builds a struct from a row whose columns are named like its fields, so that each name is
/// written once and a field cannot read another field's column by a slip of the pen.
///
/// `columns!(r => Endpoint { id: text, cursor: int; kinds })` is
/// `Endpoint { id: r.text("id")?, cursor: r.int("cursor")?, kinds }`: before the `;`,
/// `field: method` pairs read with that [`Columns`] method; after it, ordinary struct-literal
/// fields for what takes more than a read (a typed id, a parsed status, money with its
/// currency). For use in a function returning [`Result`](crate::Result).
macro_rules! columns {
    ($r:ident => $ty:ident { $($field:ident: $get:ident),* $(,)? $(; $($rest:tt)*)? }) => {
        $ty { $($field: $r.$get(stringify!($field))?,)* $($($rest)*)? }
    };
}
pub(crate) use columns;

/// Typed access to a row's columns, with decoding failures reported as [`StoreError`];
/// the one place a row's timestamps are read in the backend's type.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String>;
    fn text_opt(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn int_opt(&self, col: &str) -> Result<Option<i64>>;
    fn real(&self, col: &str) -> Result<f64>;
    fn real_opt(&self, col: &str) -> Result<Option<f64>>;
    fn ts(&self, col: &str) -> Result<DateTime<Utc>>;
    fn ts_opt(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
}

impl<R, D> Columns for R
where
    R: Row<Database = D>,
    D: Dialect<Row = R>,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, D> + Type<D>,
    for<'r> Option<String>: Decode<'r, D> + Type<D>,
    for<'r> i64: Decode<'r, D> + Type<D>,
    for<'r> Option<i64>: Decode<'r, D> + Type<D>,
    for<'r> f64: Decode<'r, D> + Type<D>,
    for<'r> Option<f64>: Decode<'r, D> + Type<D>,
{
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn text_opt(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn int_opt(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
    fn real(&self, col: &str) -> Result<f64> {
        Ok(self.try_get(col)?)
    }
    fn real_opt(&self, col: &str) -> Result<Option<f64>> {
        Ok(self.try_get(col)?)
    }
    fn ts(&self, col: &str) -> Result<DateTime<Utc>> {
        D::read_ts(self, col)
    }
    fn ts_opt(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        D::read_ts_opt(self, col)
    }
}

/// A transaction of backend `D`: every write runs in one (a group's writes share one, a
/// savepoint each), and so does every read of several statements. `'c` is the borrow of
/// the connection it runs on: `'static` for one taken from a pool, shorter for SQLite's
/// writer, which owns its one connection.
pub(crate) struct Tx<'c, D: Database> {
    tx: Transaction<'c, D>,
    /// The campaign whose row this transaction locked at its outermost level, before any
    /// savepoint ([`Tx::hold_campaign`]); `None` unless a writer groups a campaign's
    /// writes.
    pub(crate) held: Option<Campaign>,
    /// Idempotency keys looked up ahead for a group ([`Tx::prefetch_keys`]): the
    /// recorded response, or `None` for a key not recorded. A key this transaction records
    /// is dropped from here, so it is read again from the table if asked for.
    pub(crate) keys: HashMap<(String, String), Option<StoredResponse>>,
    /// Events the transaction's writes append, numbered and written just before it
    /// commits ([`crate::events::flush`]); a write rolled back to its savepoint drops its
    /// own.
    pub(crate) events: Vec<c2m_domain::events::NewEvent>,
}

impl<D: Dialect> Tx<'static, D> {
    /// Begins a write transaction ([`Dialect::BEGIN_WRITE`]) on a connection of the pool.
    pub(crate) async fn write(pool: &Pool<D>) -> Result<Self, sqlx::Error> {
        Ok(Self::new(begin_whole(pool, D::BEGIN_WRITE).await?))
    }

    /// Begins a read that sees one snapshot ([`Dialect::BEGIN_SNAPSHOT`]).
    pub(crate) async fn snapshot(pool: &Pool<D>) -> Result<Self, sqlx::Error> {
        Ok(Self::new(begin_whole(pool, D::BEGIN_SNAPSHOT).await?))
    }
}

/// `pool.begin_with(statement)`, run to its end whatever becomes of the caller.
///
/// sqlx 0.8's `begin_with` is not cancel-safe on SQLite: dropped after the connection's
/// thread has run `BEGIN` and before sqlx has checked it (another round trip to that
/// thread), it leaves no `Transaction` to roll back, and the connection goes back to the
/// pool inside a transaction. Every later `begin_with` on it then fails ("attempted to
/// call begin_with at non-zero transaction depth"), and one of those dropped in turn stops
/// the connection's thread, which can hang the pool. A caller is dropped whenever its
/// client's deadline or `--request-timeout` passes mid-call: QA saw every `GetCampaign`
/// fail after a storm of short deadlines, until a restart. Begun in a task of its own, the
/// transaction is either handed over whole or, when nobody waits for it any more, dropped
/// whole (rolled back, and its connection checked on the way back to the pool). A dropped
/// caller costs only its transaction: the steps after `BEGIN` are sqlx's to clean up on
/// drop, and it does.
async fn begin_whole<D: Dialect>(
    pool: &Pool<D>,
    statement: &'static str,
) -> Result<Transaction<'static, D>, sqlx::Error> {
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin_with(statement).await }).await {
        Ok(begun) => begun,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task.
        Err(e) => Err(sqlx::Error::Io(std::io::Error::other(e))),
    }
}

impl<'c, D: Dialect> Tx<'c, D> {
    /// Begins a write transaction ([`Dialect::BEGIN_WRITE`]) on `conn`.
    pub(crate) async fn write_on(conn: &'c mut D::Connection) -> Result<Self, sqlx::Error> {
        Ok(Self::new(conn.begin_with(D::BEGIN_WRITE).await?))
    }

    fn new(tx: Transaction<'c, D>) -> Self {
        Tx {
            tx,
            held: None,
            keys: HashMap::new(),
            events: Vec::new(),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Commits on `Ok`, rolls back on `Err`.
    pub(crate) async fn finish<T>(self, result: Result<T>) -> Result<T> {
        match result {
            Ok(v) => {
                self.commit().await?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rollback) = self.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Runs `read` in this transaction and ends it: the shape of every read of several
    /// statements. `args` is what the read needs besides the transaction.
    pub(crate) async fn read<A: ?Sized + Sync, T>(
        mut self,
        args: &A,
        read: impl for<'t> FnOnce(&'t mut Tx<'c, D>, &'t A) -> BoxFuture<'t, Result<T>>,
    ) -> Result<T> {
        let result = read(&mut self, args).await;
        self.finish(result).await
    }
}

/// Where a writer's transactions begin: a pool (a connection taken for each transaction) or
/// the one connection a writer owns (SQLite's writer: no connection goes back to a pool,
/// which would ping it, between one group and the next).
#[async_trait]
pub(crate) trait Begin<D: Dialect>: Send {
    async fn begin(&mut self) -> Result<Tx<'_, D>, sqlx::Error>;
}

#[async_trait]
impl<D: Dialect> Begin<D> for Pool<D> {
    async fn begin(&mut self) -> Result<Tx<'_, D>, sqlx::Error> {
        Tx::write(self).await
    }
}

/// Both backends keep timestamps to the microsecond. Every time the store writes is cut to
/// that precision first, so what an operation returns equals what a later read returns.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// `Ok` when an update touched exactly one row; otherwise the state was not what the
/// caller read under the lock, which is corrupt data (or a bug), never a client error.
pub(crate) fn one(rows_affected: u64, what: impl FnOnce() -> String) -> Result<()> {
    exactly(rows_affected, 1, what)
}

/// As [`one`], for a statement meant to change `expected` rows.
pub(crate) fn exactly(
    rows_affected: u64,
    expected: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if rows_affected == expected as u64 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(what()))
    }
}

/// Cuts a fetched `size + 1` rows (each with its `seq`) down to a page: the extra row, if
/// present, only says that a further page exists.
pub(crate) fn page<T>(mut rows: Vec<(i64, T)>, size: u32) -> Page<T> {
    let size = size.max(1) as usize;
    let more = rows.len() > size;
    rows.truncate(size);
    let next_after = if more {
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next_after,
    }
}

/// The SQL `LIMIT` for a page: one more than its size.
pub(crate) fn page_limit(size: u32) -> i64 {
    i64::from(size.max(1)) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Sqlite;

    /// Snapshots begun and dropped at every step (polled a few times, with a pause for the
    /// connection's thread between, then dropped) leave the pool whole: each later snapshot
    /// begins, none hangs. With `pool.begin_with` awaited in place, this pool failed within
    /// the first hundred rounds ("non-zero transaction depth"), then hung.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshots_dropped_midway_leave_the_pool_usable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        let within = std::time::Duration::from_secs(5);
        for i in 0..1_000usize {
            let mut begin = Box::pin(Tx::<Sqlite>::snapshot(&pool));
            for _ in 0..1 + i % 4 {
                if futures::poll!(begin.as_mut()).is_ready() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(10 * (1 + i as u64 % 9)));
            }
            drop(begin);
            let next = tokio::time::timeout(within, Tx::<Sqlite>::snapshot(&pool))
                .await
                .unwrap_or_else(|_| panic!("round {i}: hung"))
                .unwrap_or_else(|e| panic!("round {i}: {e}"));
            next.commit().await.unwrap();
        }
    }
}
