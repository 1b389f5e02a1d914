use c2m_domain::DomainError;
use sqlx::migrate::Migrator;
use thiserror::Error;

/// What can go wrong in the store. The server maps these to gRPC statuses in one function;
/// database details are logged there, never sent to clients.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The caller's request was refused by a domain rule or names something missing.
    #[error(transparent)]
    Domain(DomainError),
    /// The database failed or could not be reached; the operation may be retried.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was migrated by a newer c2m: it has a migration this build does not
    /// know. This build's statements were not written for those tables, so it opens
    /// nothing and changes nothing (sqlx's own words, "previously applied but is missing
    /// in the resolved migrations", do not tell an operator that the binary is the old
    /// one; see docs/upgrading.md).
    #[error(
        "the database was migrated by a newer c2m: it has migration {applied}, and this c2m \
         knows migrations up to {known}; run the newer c2m (or a later one) against it, or \
         restore the backup taken before the upgrade"
    )]
    NewerSchema { applied: i64, known: i64 },
    /// A PostgreSQL migration could not take a lock it needs within the wait
    /// ([`PgOptions::migration_wait`](crate::postgres::PgOptions::migration_wait)): other
    /// sessions held it (a long transaction on a table the migration alters, or another
    /// c2m migrating). Every migration before it is applied; nothing of it is.
    #[error(
        "{} waited {waited_secs} s for a lock other sessions hold or wait for ahead of it, \
         and gave up: {holders}. End the session holding it (the longest open transaction, \
         usually) or let it finish, then start c2m again; {}",
        migration.map_or("the migrations".to_string(), |m| format!("migration {m}")),
        if migration.is_some() {
            "the migrations before it are applied, nothing of it is"
        } else {
            "the migrations applied so far stay applied"
        }
    )]
    MigrationBlocked {
        /// The migration that waited, if it had begun (else the advisory lock of another
        /// c2m migrating, or sqlx's own table).
        migration: Option<i64>,
        waited_secs: u64,
        /// The sessions that held the lock when last looked at, as `pg_stat_activity`
        /// shows them.
        holders: String,
    },
    /// Stored data broke an invariant the code relies on (a bug or manual tampering).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A write's code panicked (a bug): that write was rolled back and answered with
    /// this, and the writer went on with the others.
    #[error("a write panicked: {0}")]
    Panicked(String),
}

impl StoreError {
    /// A failed migration as the store reports it: [`StoreError::NewerSchema`] where the
    /// database has a migration `migrator` does not, else [`StoreError::Migrate`].
    pub(crate) fn migration(e: sqlx::migrate::MigrateError, migrator: &Migrator) -> StoreError {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(applied) => StoreError::NewerSchema {
                applied,
                known: crate::Schema::newest(migrator),
            },
            e => StoreError::Migrate(e),
        }
    }

    /// `NotFound`: the request names a `entity` with this `id` that the store does not have.
    pub(crate) fn not_found(entity: &'static str, id: impl Into<String>) -> StoreError {
        StoreError::Domain(DomainError::NotFound {
            entity,
            id: id.into(),
        })
    }
}

/// Whether a database error may pass if the call is retried unchanged: the connection or
/// the pool failed, or the database gave up on a lock, a serialization conflict or its
/// own shutdown. Anything else (an arithmetic overflow, a constraint the data breaks, a
/// column that does not decode) fails again the same way, so the server must not tell the
/// caller to retry it.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                // PostgreSQL: serialization failure, deadlock, lock timeout, the server
                // going away or out of connections, a connection failure (class 08).
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" => true,
                c if c.starts_with("08") => true,
                // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes, a full disk,
                // I/O errors.
                c if c.bytes().all(|b| b.is_ascii_digit()) => {
                    let n: u32 = c.parse().unwrap_or(0);
                    matches!(n & 0xff, 5 | 6 | 10 | 13)
                }
                _ => false,
            }
        }
        _ => false,
    }
}
