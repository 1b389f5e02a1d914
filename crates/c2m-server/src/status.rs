//! The one place where errors become gRPC statuses.
//!
//! Domain errors carry what the client did wrong and are passed on verbatim; database and
//! internal errors are logged here with their detail and reach the client only as a
//! generic message, so no SQL or schema detail leaks. Every status carries a
//! `google.rpc.ErrorInfo` detail (domain `c2m`) whose `reason` names the rule and whose
//! `metadata` gives its numbers, so clients act without parsing the message; the reasons
//! are listed in `docs/api.md`. Refusals made before a request reaches a service (access
//! control, load shedding, a stream's end) are [`Edge`] values, built here too.

use std::collections::HashMap;

use c2m_domain::DomainError;
use c2m_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The longest status message sent, in bytes. Refusals quote what the client sent (a
/// currency code, an unknown field of a scenario) and a scenario's refusal lists every
/// broken rule, so without a bound a request decides the size of its own answer: a
/// megabyte-long currency made a megabyte-long `grpc-message` header, which clients refuse
/// (hyper's limit on response headers is 16 KiB), so the caller saw a protocol error
/// instead of INVALID_ARGUMENT. The message travels twice: percent-encoded in
/// `grpc-message` (up to three times its size) and inside the base64 `google.rpc.Status`
/// of `grpc-status-details-bin` (four thirds), with the [`MAX_METADATA_VALUE`]-bounded
/// metadata; 2 KiB leaves both well inside the limit.
pub const MAX_STATUS_MESSAGE: usize = 2 * 1024;

/// The longest `ErrorInfo` metadata value sent, in bytes (a field name or an id the client
/// sent may be of any length).
pub const MAX_METADATA_VALUE: usize = 256;

/// `message`, cut at [`MAX_STATUS_MESSAGE`] bytes (on a character boundary) with a note of
/// how much was left out.
fn bounded(message: String) -> String {
    cut(message, MAX_STATUS_MESSAGE)
}

fn cut(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let left_out = message.len() - cut;
        message.truncate(cut);
        message.push_str(&format!("... ({left_out} more bytes)"));
    }
    message
}

/// `ErrorInfo.domain` of every c2m error: the reasons are c2m's own names.
pub const ERROR_DOMAIN: &str = "c2m";

/// A status with `message` for people and a `google.rpc.ErrorInfo` detail (`reason`,
/// `metadata`) for programs. Every status c2m sends is built here.
fn status(code: Code, message: String, reason: &str, metadata: Vec<(&str, String)>) -> Status {
    let metadata: HashMap<String, String> = metadata
        .into_iter()
        .map(|(k, v)| (k.to_owned(), cut(v, MAX_METADATA_VALUE)))
        .collect();
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    let message = bounded(message);
    let detailed = Status::with_error_details(code, message.clone(), details);
    Status::with_details(
        code,
        header_message(&message),
        detailed.details().to_vec().into(),
    )
}

/// The message as it goes into `grpc-message`, which gRPC percent-encodes. tonic 0.12
/// encodes spaces and controls but not `%` itself, so a message quoting a client's `%41`
/// reached clients as `A`, no longer the copy inside `google.rpc.Status`, and clients that
/// check the two agree (Python's `grpc_status`) threw the details away. Escaping `%` here
/// makes the header decode to the message as written; tonic's own encoding leaves the
/// escape alone.
fn header_message(message: &str) -> String {
    message.replace('%', "%25")
}

/// The gRPC code of a domain error: chosen by what the caller must do next.
pub fn domain_code(e: &DomainError) -> Code {
    match e {
        DomainError::InvalidArgument { .. }
        | DomainError::NotWholePieces { .. }
        | DomainError::TooManyBuckets { .. } => Code::InvalidArgument,
        DomainError::Refused(_) => Code::FailedPrecondition,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::Ahead { .. } | DomainError::EventCursorAhead { .. } => Code::OutOfRange,
        DomainError::PermissionDenied { .. } => Code::PermissionDenied,
        DomainError::IdempotencyConflict { .. } => Code::AlreadyExists,
    }
}

pub fn domain_status(e: &DomainError) -> Status {
    status(domain_code(e), e.to_string(), e.reason(), e.metadata())
}

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Domain(d) => domain_status(&d),
        StoreError::Database(err) if c2m_store::is_transient(&err) => {
            tracing::error!(error = %err, "store call failed");
            status(
                Code::Unavailable,
                "the store is unavailable; retry with the same idempotency key".into(),
                "STORE_UNAVAILABLE",
                vec![],
            )
        }
        // A statement the database refused for good (an arithmetic overflow, a broken
        // constraint): retrying cannot help, so it is not UNAVAILABLE.
        StoreError::Database(err) => {
            tracing::error!(error = %err, "store call failed permanently");
            internal()
        }
        StoreError::Migrate(err) => {
            tracing::error!(error = %err, "migration error");
            internal()
        }
        // Only opening a store meets it; a call never does.
        err @ StoreError::NewerSchema { .. } => {
            tracing::error!(error = %err, "the database is newer than this build");
            internal()
        }
        err @ StoreError::MigrationBlocked { .. } => {
            tracing::error!(error = %err, "a migration could not take its lock");
            internal()
        }
        StoreError::Corrupt(msg) => {
            tracing::error!(%msg, "corrupt data");
            internal()
        }
        // A bug met by this request's write alone (rolled back): retrying meets it again.
        StoreError::Panicked(msg) => {
            tracing::error!(%msg, "a store write panicked");
            internal()
        }
    }
}

/// INTERNAL, without detail: the cause is logged where it happened.
pub fn internal() -> Status {
    status(Code::Internal, "internal error".into(), "INTERNAL", vec![])
}

/// Refusals made at the edge, before a request reaches a service: access control, load
/// shedding, and the life of a stream. Each has its code and reason here, with the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// No `authorization` header.
    TokenMissing,
    /// An `authorization` header that is not `Bearer <token>`.
    TokenMalformed,
    /// A token that is unknown, wrong or revoked (which one is not said).
    TokenInvalid,
    /// Under mutual TLS, a factory token on a connection without a client certificate.
    CertificateRequired { factory: String },
    /// A client certificate that cannot be parsed.
    CertificateUnreadable { error: String },
    /// A client certificate that names another factory than the token's.
    CertificateMismatch { names: String, factory: String },
    /// The token's role may not call the method.
    RoleNotAllowed { role: String, method: String },
    /// More calls in flight than `--max-in-flight`.
    Overloaded,
    /// The server is stopping; the stream ends and the client resumes elsewhere or later.
    ShuttingDown,
    /// A newer subscription of the same factory replaced this stream.
    StreamReplaced,
    /// The call's deadline passed before its handler answered (see `limits::Deadlines`).
    DeadlineExceeded {
        limit: std::time::Duration,
        set_by: crate::limits::SetBy,
    },
}

pub fn edge_status(e: Edge) -> Status {
    use Edge::*;
    let (code, reason, message, metadata) = match e {
        TokenMissing => (
            Code::Unauthenticated,
            "TOKEN_MISSING",
            "missing `authorization: Bearer <token>` (see `c2m token create`)".to_owned(),
            vec![],
        ),
        TokenMalformed => (
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
            "authorization must be `Bearer <token>`".to_owned(),
            vec![],
        ),
        TokenInvalid => (
            Code::Unauthenticated,
            "TOKEN_INVALID",
            "unknown or revoked token".to_owned(),
            vec![],
        ),
        CertificateRequired { factory } => (
            Code::Unauthenticated,
            "CLIENT_CERTIFICATE_REQUIRED",
            format!(
                "this server requires a client certificate with factory tokens: connect over \
                 TLS presenting the certificate of factory {factory}"
            ),
            vec![("factoryId", factory)],
        ),
        CertificateUnreadable { error } => (
            Code::Unauthenticated,
            "CLIENT_CERTIFICATE_UNREADABLE",
            format!("the client certificate cannot be read: {error}"),
            vec![],
        ),
        CertificateMismatch { names, factory } => (
            Code::PermissionDenied,
            "CLIENT_CERTIFICATE_MISMATCH",
            format!(
                "the client certificate names {names}, but this token is bound to factory \
                 {factory}: a factory token is accepted only with its own factory's certificate"
            ),
            vec![("factoryId", factory), ("certificateNames", names)],
        ),
        RoleNotAllowed { role, method } => (
            Code::PermissionDenied,
            "ROLE_NOT_ALLOWED",
            format!("a {role} token may not call {method}"),
            vec![("role", role), ("method", method)],
        ),
        Overloaded => (
            Code::ResourceExhausted,
            "OVERLOADED",
            "the server is at its limit of calls in flight; retry with backoff".to_owned(),
            vec![],
        ),
        ShuttingDown => (
            Code::Unavailable,
            "SHUTTING_DOWN",
            "the server is shutting down; subscribe again from your last seq".to_owned(),
            vec![],
        ),
        StreamReplaced => (
            Code::Aborted,
            "STREAM_REPLACED",
            "a newer subscription for this factory replaced this stream".to_owned(),
            vec![],
        ),
        DeadlineExceeded { limit, set_by } => (
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
            match set_by {
                crate::limits::SetBy::Server => format!(
                    "the call ran longer than the server allows ({} ms); a write may still \
                     complete: retry it with the same idempotency key",
                    limit.as_millis()
                ),
                crate::limits::SetBy::Client => format!(
                    "the call's own deadline (grpc-timeout, {} ms) passed before it was answered",
                    limit.as_millis()
                ),
            },
            vec![
                ("limitMs", limit.as_millis().to_string()),
                ("setBy", set_by.as_str().to_owned()),
            ],
        ),
    };
    status(code, message, reason, metadata)
}

/// A planning cycle's failure. The scenario rules name the place (INVALID_ARGUMENT). A
/// time limit that passed before the solver or the rules found any plan is UNAVAILABLE,
/// reason `PLANNING_TIMED_OUT`: the waiting batches stay queued, and a later cycle (or a
/// less loaded machine, or a longer `--plan-time-limit`) may find one. A solver that
/// fails outright on a scenario validation accepted is INTERNAL, reason
/// `PLANNING_FAILED`: running the same cycle again fails the same way until the catalogue
/// or the queue changes, so telling the client to retry (as UNAVAILABLE did) was false
/// advice. Both are logged here; the solver's own words are kept in the message (they
/// name the solver and its status, nothing of the store).
pub fn cycle_status(e: crate::planning::CycleError) -> Status {
    use crate::planning::CycleError;
    use c2m_planner::PlanError;
    match e {
        CycleError::Store(s) => store_status(s),
        CycleError::Scenario(s) => domain_status(&crate::planning::scenario_error(&s)),
        CycleError::Planner(PlanError::NoSolution(limit)) => {
            tracing::warn!(?limit, "planning cycle found no plan within its time limit");
            status(
                Code::Unavailable,
                format!(
                    "planning found no plan within its time limit of {} ms; the batches stay \
                     queued for the next cycle",
                    limit.as_millis()
                ),
                "PLANNING_TIMED_OUT",
                vec![("timeLimitMs", limit.as_millis().to_string())],
            )
        }
        CycleError::Planner(PlanError::Solver(p)) => {
            tracing::error!(error = %p, "planning cycle failed");
            status(
                Code::Internal,
                format!("planning failed: {p}"),
                "PLANNING_FAILED",
                vec![],
            )
        }
        CycleError::Join(m) => {
            tracing::error!(%m, "planning task failed");
            internal()
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

    /// The worst case of both headers (a message of characters that percent-encode to
    /// three bytes each, and a field name as long as a client likes) stays well under
    /// hyper's 16 KiB limit on a response's headers.
    #[test]
    fn the_headers_of_the_largest_status_fit_a_client() {
        let e = DomainError::invalid("\u{1}".repeat(100_000), "\u{1}".repeat(100_000));
        let headers = domain_status(&e).into_http().headers().clone();
        let size: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        assert!(size < 12 * 1024, "{size} bytes of headers");
        let back = Status::from_header_map(&headers).expect("a status");
        let info = back
            .get_error_details()
            .error_info()
            .cloned()
            .expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_FIELD");
        assert!(info.metadata["field"].len() < MAX_METADATA_VALUE + 32);
    }

    #[test]
    fn refusals_carry_their_reason_and_numbers() {
        let e: DomainError = c2m_domain::Refusal::BatchCap { fits: 3, cap: 10 }.into();
        let s = domain_status(&e);
        assert_eq!(s.code(), Code::FailedPrecondition);
        let info = s
            .get_error_details()
            .error_info()
            .cloned()
            .expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("BATCH_CAP", "c2m")
        );
        assert_eq!(info.metadata["unitsFit"], "3");
        assert_eq!(info.metadata["batchCap"], "10");
        let shed = edge_status(Edge::Overloaded);
        assert_eq!(shed.code(), Code::ResourceExhausted);
        assert_eq!(
            shed.get_error_details()
                .error_info()
                .map(|i| i.reason.clone()),
            Some("OVERLOADED".into())
        );
    }

    #[test]
    fn a_cycle_out_of_time_may_be_retried_and_a_failed_solver_may_not() {
        use crate::planning::CycleError;
        use c2m_planner::{PlanError, SolverError, SolverKind};
        let reason = |s: &Status| {
            s.get_error_details()
                .error_info()
                .map(|i| (i.reason.clone(), i.metadata.clone()))
                .expect("ErrorInfo")
        };
        let timed_out = cycle_status(CycleError::Planner(PlanError::NoSolution(
            std::time::Duration::from_millis(1500),
        )));
        assert_eq!(timed_out.code(), Code::Unavailable);
        let (r, metadata) = reason(&timed_out);
        assert_eq!(r, "PLANNING_TIMED_OUT");
        assert_eq!(metadata["timeLimitMs"], "1500");
        let failed = cycle_status(CycleError::Planner(PlanError::Solver(
            SolverError::Failed {
                solver: SolverKind::Microlp,
                message: "numerical trouble".into(),
            },
        )));
        assert_eq!(failed.code(), Code::Internal);
        assert_eq!(reason(&failed).0, "PLANNING_FAILED");
        assert!(
            failed.message().contains("numerical trouble"),
            "{}",
            failed.message()
        );
    }
}
