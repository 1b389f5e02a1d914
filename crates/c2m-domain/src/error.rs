//! Errors a caller can act on. Each variant maps to exactly one gRPC status in the server
//! (see `c2m_server::status`), so the variant is chosen by what the caller must do next:
//! fix the request, wait for a state change, or look elsewhere.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The request itself is malformed; retrying it unchanged can never succeed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The request is well formed but the current state forbids it (closed campaign,
    /// locked batch, sold out); it may succeed later or with other values.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The thing named does not exist.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// A position (a delivery cursor, an acknowledged sequence number) is beyond what
    /// exists: the caller's idea of the state is ahead of the server's, which retrying will
    /// not fix; it must resynchronise.
    #[error("{0}")]
    OutOfRange(String),
    /// The caller is known but its role may not do this (or not for this factory).
    #[error("{0}")]
    PermissionDenied(String),
    /// An idempotency key was reused for a different request.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict { key: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn precondition(reason: impl Into<String>) -> Self {
        DomainError::FailedPrecondition(reason.into())
    }
}
