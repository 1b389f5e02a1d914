//! Idempotency keys and request fingerprints.
//!
//! Every mutating call carries a key chosen by the client. The store records the key with a
//! fingerprint of the request and the response, in the same transaction as the mutation:
//! a retry with the same key and fingerprint gets the recorded response back; the same key
//! with another fingerprint is refused, because silently applying or ignoring it would
//! both be wrong.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::parse_token;
use crate::DomainError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        parse_token("idempotency_key", s).map(|s| IdempotencyKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 over the canonical JSON of a request, hex encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// `request` must serialize deterministically (structs and vectors do; hash maps
    /// would not, so requests use neither).
    pub fn of<T: Serialize>(operation: &str, request: &T) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(operation.as_bytes());
        h.update([0u8]);
        // Serializing plain request structs cannot fail.
        h.update(serde_json::to_vec(request).unwrap_or_default());
        Fingerprint(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn from_trusted(s: String) -> Fingerprint {
        Fingerprint(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_operation_and_content() {
        let a = Fingerprint::of("place", &("c1", 2));
        assert_eq!(a, Fingerprint::of("place", &("c1", 2)));
        assert_ne!(a, Fingerprint::of("place", &("c1", 3)));
        assert_ne!(a, Fingerprint::of("cancel", &("c1", 2)));
        assert_eq!(a.as_str().len(), 64);
    }
}
