//! The one place where errors become gRPC statuses.
//!
//! Domain errors carry what the client did wrong and are passed on verbatim; database and
//! internal errors are logged here with their detail and reach the client only as a
//! generic message, so no SQL or schema detail leaks.

use c2m_domain::DomainError;
use c2m_store::StoreError;
use tonic::{Code, Status};

pub fn domain_status(e: &DomainError) -> Status {
    let code = match e {
        DomainError::InvalidArgument { .. } => Code::InvalidArgument,
        DomainError::FailedPrecondition(_) => Code::FailedPrecondition,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::IdempotencyConflict { .. } => Code::AlreadyExists,
    };
    Status::new(code, e.to_string())
}

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Domain(d) => domain_status(&d),
        StoreError::Database(err) => {
            tracing::error!(error = %err, "store call failed");
            Status::unavailable("the store is unavailable; retry with the same idempotency key")
        }
        StoreError::Migrate(err) => {
            tracing::error!(error = %err, "migration error");
            Status::internal("internal error")
        }
        StoreError::Corrupt(msg) => {
            tracing::error!(%msg, "corrupt data");
            Status::internal("internal error")
        }
    }
}
