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
        DomainError::OutOfRange(_) => Code::OutOfRange,
        DomainError::PermissionDenied(_) => Code::PermissionDenied,
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

/// A planning cycle's failure. The scenario rules name the place (INVALID_ARGUMENT); a
/// solver failure or a time limit with no plan at all is UNAVAILABLE (try again, perhaps
/// with a longer limit), logged here.
pub fn cycle_status(e: crate::planning::CycleError) -> Status {
    use crate::planning::CycleError;
    match e {
        CycleError::Store(s) => store_status(s),
        CycleError::Scenario(s) => domain_status(&crate::planning::scenario_error(&s)),
        CycleError::Planner(p) => {
            tracing::error!(error = %p, "planning cycle failed");
            Status::unavailable(format!("planning failed: {p}"))
        }
        CycleError::Join(m) => {
            tracing::error!(%m, "planning task failed");
            Status::internal("internal error")
        }
    }
}
