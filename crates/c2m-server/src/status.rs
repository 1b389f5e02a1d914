//! The one place where errors become gRPC statuses.
//!
//! Domain errors carry what the client did wrong and are passed on verbatim; database and
//! internal errors are logged here with their detail and reach the client only as a
//! generic message, so no SQL or schema detail leaks.

use c2m_domain::DomainError;
use c2m_store::StoreError;
use tonic::{Code, Status};

/// The longest status message sent, in bytes. Refusals quote what the client sent (a
/// currency code, an unknown field of a scenario) and a scenario's refusal lists every
/// broken rule, so without a bound a request decides the size of its own answer: a
/// megabyte-long currency made a megabyte-long `grpc-message` header, which clients refuse
/// (hyper's limit on response headers is 16 KiB), so the caller saw a protocol error
/// instead of INVALID_ARGUMENT. Percent-encoding can triple the size; 4 KiB tripled still
/// fits with the other headers.
pub const MAX_STATUS_MESSAGE: usize = 4 * 1024;

/// `message`, cut at [`MAX_STATUS_MESSAGE`] bytes (on a character boundary) with a note of
/// how much was left out.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_STATUS_MESSAGE {
        let mut cut = MAX_STATUS_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let left_out = message.len() - cut;
        message.truncate(cut);
        message.push_str(&format!("... ({left_out} more bytes)"));
    }
    message
}

pub fn domain_status(e: &DomainError) -> Status {
    let code = match e {
        DomainError::InvalidArgument { .. } => Code::InvalidArgument,
        DomainError::FailedPrecondition(_) => Code::FailedPrecondition,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::OutOfRange(_) => Code::OutOfRange,
        DomainError::PermissionDenied(_) => Code::PermissionDenied,
        DomainError::IdempotencyConflict { .. } => Code::AlreadyExists,
    };
    Status::new(code, bounded(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let e = DomainError::invalid("currency", "é".repeat(10_000));
        let s = domain_status(&e);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("invalid currency: é"));
        assert!(s.message().len() < MAX_STATUS_MESSAGE + 32);
        assert!(s.message().ends_with("more bytes)"));
        let short = domain_status(&DomainError::invalid("sku", "must not be empty"));
        assert_eq!(short.message(), "invalid sku: must not be empty");
    }
}
