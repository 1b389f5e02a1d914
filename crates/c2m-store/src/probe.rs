//! The raw durable write rate of a backend, as a yardstick for the service's own figure.
//!
//! [`raw_write_rate`] does the least a durable pre-order must cost: one transaction per
//! order with one `INSERT` (the order) and one `UPDATE` of a single shared row (the batch,
//! which like a campaign's lock serialises every order), on connections set up exactly
//! as the store sets them up (SQLite: the same pragmas, `synchronous=FULL`, one writer
//! connection taken in turn, `BEGIN IMMEDIATE`; PostgreSQL: a pool of the store's size),
//! and begun as the store begins its writes. The scratch tables
//! `probe_orders` and `probe_batches` are created for the run and dropped after it; they
//! are not part of the migrations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Postgres, Sqlite};
use tokio::sync::Mutex;

use crate::dialect::{Begin, Dialect, Run};
use crate::Result;
use crate::StoreError;

/// What one probe run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// "sqlite" or "postgres".
    pub backend: &'static str,
    pub orders: usize,
    pub concurrency: usize,
    pub elapsed: Duration,
    pub orders_per_sec: f64,
    /// Per-order latency, from asking for the writer (or a connection) to the commit.
    pub p50: Duration,
    pub p99: Duration,
}

/// Measures `orders` durable write transactions issued by `concurrency` tasks against the
/// database `url` names (as [`crate::open`] reads it).
#[tracing::instrument(skip(url), err)]
pub async fn raw_write_rate(url: &str, orders: usize, concurrency: usize) -> Result<ProbeReport> {
    let concurrency = concurrency.max(1);
    // The store's own reading of the URL, before anything is created: a mistyped scheme
    // (`postgress://u:pw@h/db`) was taken as a relative SQLite path, and the probe made
    // directories named after the URL, password included, before the server refused it.
    crate::check_url(url)
        .map_err(|e| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
    let Some(path) = crate::sqlite_path(url) else {
        let pool = PgPoolOptions::new()
            .max_connections(crate::postgres::DEFAULT_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(crate::postgres::connect_options(url)?)
            .await?;
        pool.acquire().await?.batch(POSTGRES_TABLES).await?;
        let p = pool.clone();
        let measured = drive(orders, concurrency, move |i| {
            let mut pool = p.clone();
            async move { order::<Postgres>(&mut pool, i).await }
        })
        .await;
        pool.acquire().await?.batch(DROP_TABLES).await?;
        pool.close().await;
        let (elapsed, latencies) = measured?;
        return Ok(report("postgres", concurrency, elapsed, latencies));
    };
    crate::sqlite::create_database_file(&path).await?;
    let mut conn = crate::sqlite::connect_options(&path).connect().await?;
    conn.batch(SQLITE_TABLES).await?;
    // One writer, as the store's: the orders take the connection in turn.
    let writer = Arc::new(Mutex::new(conn));
    let w = writer.clone();
    let measured = drive(orders, concurrency, move |i| {
        let w = w.clone();
        async move { order::<Sqlite>(&mut *w.lock().await, i).await }
    })
    .await;
    writer.lock().await.batch(DROP_TABLES).await?;
    let (elapsed, latencies) = measured?;
    Ok(report("sqlite", concurrency, elapsed, latencies))
}

/// How many bytes the database `url` names takes on disk: for SQLite the database file with
/// its write-ahead log, for PostgreSQL `pg_database_size` of the current database (tables,
/// indexes and TOAST together). The scale benchmark divides it by the pre-orders it holds.
#[tracing::instrument(skip(url), err)]
pub async fn database_bytes(url: &str) -> Result<u64> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut conn = crate::postgres::connect_options(url)?.connect().await?;
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await?;
        Ok(u64::try_from(size).unwrap_or(0))
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let mut total = 0;
        for suffix in ["", "-wal"] {
            if let Ok(m) = tokio::fs::metadata(format!("{path}{suffix}")).await {
                total += m.len();
            }
        }
        Ok(total)
    }
}

/// Brings the database's planner statistics up to date, as a deployment's would be a
/// minute after its first writes: PostgreSQL's autovacuum analyses a table once enough of
/// it has changed, but a table filled moments ago (a benchmark's fixtures) still has the
/// statistics of an empty one, so its plans would be those of an empty table. SQLite needs
/// nothing: the store never analyses a SQLite database, so its plans come from the schema
/// alone, in a benchmark as in production.
pub async fn analyze(url: &str) -> Result<(), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut conn = crate::postgres::connect_options(url)?.connect().await?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
    }
    Ok(())
}

/// The size of a SQLite database's write-ahead log in bytes (0 for PostgreSQL, or when
/// there is none): a log that keeps growing means checkpoints cannot finish, and every
/// page a reader looks up is searched for in the log's index first.
pub async fn wal_bytes(url: &str) -> u64 {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return 0;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    tokio::fs::metadata(format!("{path}-wal"))
        .await
        .map_or(0, |m| m.len())
}

const SQLITE_TABLES: &str = "CREATE TABLE IF NOT EXISTS probe_batches (
         id INTEGER PRIMARY KEY, units INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS probe_orders (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         batch_id INTEGER NOT NULL REFERENCES probe_batches (id),
         quantity INTEGER NOT NULL,
         created_at INTEGER NOT NULL);
     INSERT OR REPLACE INTO probe_batches (id, units) VALUES (1, 0);";

const POSTGRES_TABLES: &str = "CREATE TABLE IF NOT EXISTS probe_batches (
         id BIGINT PRIMARY KEY, units BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS probe_orders (
         seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         batch_id BIGINT NOT NULL REFERENCES probe_batches (id),
         quantity BIGINT NOT NULL,
         created_at BIGINT NOT NULL);
     INSERT INTO probe_batches (id, units) VALUES (1, 0)
         ON CONFLICT (id) DO UPDATE SET units = 0;";

const DROP_TABLES: &str = "DROP TABLE IF EXISTS probe_orders; DROP TABLE IF EXISTS probe_batches;";

/// One order: a transaction begun as the store begins its writes, with one `INSERT` and one
/// `UPDATE` of the shared row.
async fn order<D: Dialect>(source: &mut impl Begin<D>, i: i64) -> Result<()> {
    let mut tx = source.begin().await?;
    let order = "INSERT INTO probe_orders (batch_id, quantity, created_at) VALUES (1, 1, $1)";
    D::query(order, (i,)).execute(&mut tx).await?;
    let batch = "UPDATE probe_batches SET units = units + 1 WHERE id = 1";
    D::query(batch, ()).execute(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

fn report(
    backend: &'static str,
    concurrency: usize,
    elapsed: Duration,
    mut latencies: Vec<Duration>,
) -> ProbeReport {
    latencies.sort();
    let at = |pct: usize| {
        latencies
            .get(latencies.len().saturating_sub(1) * pct / 100)
            .copied()
            .unwrap_or_default()
    };
    let orders = latencies.len();
    ProbeReport {
        backend,
        orders,
        concurrency,
        elapsed,
        orders_per_sec: orders as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: at(50),
        p99: at(99),
    }
}

/// Runs `order` `orders` times from `concurrency` tasks, timing each.
async fn drive<F, Fut>(
    orders: usize,
    concurrency: usize,
    order: F,
) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let order = Arc::new(order);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (order, next) = (order.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= orders {
                    return Ok::<_, StoreError>(latencies);
                }
                let t = Instant::now();
                order(i as i64).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(orders);
    for task in tasks {
        let done = task
            .await
            .map_err(|e| StoreError::Corrupt(format!("probe task failed: {e}")))??;
        latencies.extend(done);
    }
    Ok((started.elapsed(), latencies))
}

#[cfg(test)]
mod tests {
    /// A URL the store refuses is refused by the probe too, before anything is created.
    /// It was read as a relative SQLite path: `bench_pooling --database-url
    /// postgress://u:secret@h/db` made the directories `postgress:/u:secret@h/` in the
    /// working directory (the password in a file name) before the server refused the URL.
    #[tokio::test]
    async fn a_url_the_store_refuses_creates_nothing() {
        let made = std::path::Path::new("probetypo:");
        let refused = super::raw_write_rate("probetypo://u:secret@h/db", 1, 1).await;
        let existed = made.exists();
        let _ = std::fs::remove_dir_all(made);
        let err = refused
            .expect_err("an unknown scheme is refused")
            .to_string();
        assert!(err.contains("is not a database c2m can use"), "{err}");
        assert!(!existed, "the probe created {}", made.display());
    }
}
