//! Migrating a PostgreSQL database that other sessions are using: the older replicas of a
//! rolling upgrade, a report, the backup `pg_dump` that docs/upgrading.md asks for.
//!
//! A migration that alters a table needs the table's exclusive lock, and PostgreSQL queues
//! every later statement on that table behind the waiting request. Under the sessions'
//! ten-second `lock_timeout`, a migration behind a long reader stalled every older replica's
//! writes to the table for ten seconds, then failed the start with sqlx's words alone
//! ("canceling statement due to lock timeout"), and each new start did the same (QA 16).
//! Here each attempt waits at most [`ATTEMPT_LOCK_TIMEOUT`] for a lock, so the others are
//! held up no longer than that; then it gives way for [`PAUSE`] and tries again, for up to
//! [`PgOptions::migration_wait`](super::PgOptions::migration_wait). While it waits it logs
//! which sessions hold the lock (from `pg_stat_activity`), and if the wait runs out the
//! error names them: an operator sees what to end, not only that something timed out.
//! The advisory lock sqlx takes so that one replica migrates at a time is a lock like the
//! others here: a replica starting while another migrates waits for it the same way.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection, Row};

use super::MIGRATOR;
use crate::{Result, StoreError};

/// How long one attempt waits for a lock before it gives way.
const ATTEMPT_LOCK_TIMEOUT: &str = "2s";
/// How long an attempt waits before it looks for who holds its lock.
const LOOK_AFTER: Duration = Duration::from_secs(1);
/// The pause between attempts, in which the sessions queued behind the attempt run.
const PAUSE: Duration = Duration::from_secs(3);

/// Applies the migrations this build has and the database lacks, on a connection of its
/// own (closed at the end, which also releases an advisory lock an attempt that failed
/// still held), waiting for locks as the module says for up to `wait`.
pub(super) async fn migrate(
    connect: &PgConnectOptions,
    pool: &PgPool,
    wait: Duration,
) -> Result<()> {
    let mut conn = PgConnection::connect_with(connect).await?;
    let result = attempts(&mut conn, pool, wait).await;
    let _ = conn.close().await;
    result
}

async fn attempts(conn: &mut PgConnection, pool: &PgPool, wait: Duration) -> Result<()> {
    sqlx::query(&format!("SET lock_timeout = '{ATTEMPT_LOCK_TIMEOUT}'"))
        .execute(&mut *conn)
        .await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await?;
    let started = Instant::now();
    loop {
        let mut holders = Vec::new();
        let outcome = {
            // `run_direct` on this one connection: `Migrator::run(&mut conn)` goes through
            // `Acquire`, whose future the compiler cannot show to be `Send` for every
            // lifetime (the store's futures must be). The version is pinned by Cargo.lock.
            let run = MIGRATOR.run_direct(&mut *conn);
            tokio::pin!(run);
            tokio::select! {
                outcome = &mut run => outcome,
                () = tokio::time::sleep(LOOK_AFTER) => {
                    // Still running after a second: most migrations take milliseconds, so
                    // see whether it waits for someone, and say so.
                    holders = lock_holders(pool, pid).await;
                    if !holders.is_empty() {
                        tracing::warn!(
                            holders = %holders.join("; "),
                            "a migration waits for a lock other sessions hold; the other \
                             replicas' statements on that table wait behind it for up to {}",
                            ATTEMPT_LOCK_TIMEOUT
                        );
                    }
                    run.await
                }
            }
        };
        let migration = match outcome {
            Ok(()) => return Ok(()),
            Err(e) => match lock_timed_out(&e) {
                Some(migration) => migration,
                None => return Err(StoreError::migration(e, &MIGRATOR)),
            },
        };
        // Give way for real: sqlx only queues the failed migration's ROLLBACK for the
        // connection's next use, and the advisory lock of an attempt that fails stays
        // held (it returns before unlocking). Until then the session sits idle in an
        // aborted transaction, holding whatever the migration had locked before the
        // statement that timed out, through the whole pause. This statement sends the
        // rollback and releases the advisory lock; the next attempt takes it again.
        sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *conn)
            .await?;
        let waited = started.elapsed();
        if waited + PAUSE >= wait {
            return Err(StoreError::MigrationBlocked {
                migration,
                waited_secs: waited.as_secs(),
                holders: if holders.is_empty() {
                    "sessions not seen (the wait had begun before the look, or the look \
                     failed)"
                        .into()
                } else {
                    holders.join("; ")
                },
            });
        }
        tracing::warn!(
            migration = ?migration,
            holders = %holders.join("; "),
            "a migration gave way after waiting {ATTEMPT_LOCK_TIMEOUT} for a lock; trying again \
             in {} s (for up to {} s more)",
            PAUSE.as_secs(),
            (wait - waited).as_secs()
        );
        tokio::time::sleep(PAUSE).await;
    }
}

/// Whether `e` is a lock timeout (SQLSTATE `55P03`): `Some` with the migration it stopped,
/// if one (`None` inside: the advisory lock, or sqlx's own bookkeeping).
fn lock_timed_out(e: &sqlx::migrate::MigrateError) -> Option<Option<i64>> {
    use sqlx::migrate::MigrateError;
    let (db, migration) = match e {
        MigrateError::ExecuteMigration(sqlx::Error::Database(db), v) => (db, Some(*v)),
        MigrateError::Execute(sqlx::Error::Database(db)) => (db, None),
        _ => return None,
    };
    (db.code().as_deref() == Some("55P03")).then_some(migration)
}

/// The sessions that block the session `pid` (those holding the lock, and those queued
/// for it ahead of the migration), each as an operator would look it up: `pid 4242 (user
/// "postgres", application "psql", idle in transaction, transaction open 14 s: SELECT
/// count(*) ...)`. PostgreSQL shows another role's state, transaction start and statement
/// only to a superuser or a member of `pg_read_all_stats`; without that they read as
/// unknown (the user and application are always shown).
async fn lock_holders(pool: &PgPool, pid: i32) -> Vec<String> {
    let rows = sqlx::query(
        "SELECT pid, COALESCE(usename, '') AS role, \
         COALESCE(application_name, '') AS application, \
         COALESCE(state, 'state unknown') AS state, \
         CAST(EXTRACT(EPOCH FROM now() - xact_start) AS BIGINT) AS open_secs, \
         LEFT(REGEXP_REPLACE(COALESCE(query, ''), '\\s+', ' ', 'g'), 120) AS query \
         FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids($1)) ORDER BY xact_start",
    )
    .bind(pid)
    .fetch_all(pool)
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not read pg_stat_activity for a migration's wait");
            return Vec::new();
        }
    };
    rows.iter()
        .map(|r| {
            let open = r
                .get::<Option<i64>, _>("open_secs")
                .map_or("transaction start unknown".to_string(), |s| {
                    format!("transaction open {s} s")
                });
            let application = r.get::<String, _>("application");
            // Another replica (migrating, or serving and queued ahead): not a session to
            // end (QA 17: two replicas starting together, each named the other's).
            let replica = if application == "c2m" {
                " [another c2m replica: let it finish]"
            } else {
                ""
            };
            format!(
                "pid {} (user {:?}, application {application:?}, {}, {open}: {}){replica}",
                r.get::<i32, _>("pid"),
                r.get::<String, _>("role"),
                r.get::<String, _>("state"),
                r.get::<String, _>("query"),
            )
        })
        .collect()
}
