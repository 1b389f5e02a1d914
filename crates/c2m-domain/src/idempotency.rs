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
        let mut h = Hashing(Sha256::new());
        h.0.update(operation.as_bytes());
        h.0.update([0u8]);
        // The JSON is hashed as it is written, not collected first: every write pays for
        // its fingerprint. Serializing plain request structs cannot fail.
        let _ = serde_json::to_writer(&mut h, request);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in h.0.finalize() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Fingerprint(hex)
    }

    pub fn from_trusted(s: String) -> Fingerprint {
        Fingerprint(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Feeds what is written to a hash.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

    /// Stored keys are compared with fingerprints computed by later versions, so the
    /// fingerprint is a format: SHA-256 of `operation`, a zero byte and the request's JSON,
    /// in lower-case hex (the expected value is Python's `hashlib.sha256`).
    #[test]
    fn fingerprint_is_sha256_of_operation_nul_and_json() {
        assert_eq!(
            Fingerprint::of("place", &("c1", 2)).as_str(),
            "91db8f543c61324858b139147a8d8880f0bbd1d9dd8b101eb3736c551eb42cbd"
        );
    }
}
