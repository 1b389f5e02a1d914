use c2m_domain::DomainError;
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
    /// Stored data broke an invariant the code relies on (a bug or manual tampering).
    #[error("corrupt data: {0}")]
    Corrupt(String),
}
