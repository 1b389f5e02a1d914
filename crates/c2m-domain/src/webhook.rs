//! The signature of a webhook delivery, the scheme payment providers use (Stripe's
//! `Stripe-Signature`, for one): the sender puts `C2M-Signature: t=<unix seconds>,v1=<hex>`
//! on each POST, where the hex is HMAC-SHA256, keyed by the endpoint's secret, of
//! `"<t>.<body>"`. A receiver recomputes it over the raw body to reject forgeries, and
//! refuses a timestamp too far from its own clock to reject replays of an old delivery.
//! Pure functions: the caller passes the time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The header a delivery carries.
pub const SIGNATURE_HEADER: &str = "C2M-Signature";

/// How far a delivery's timestamp may be from the receiver's clock, by default (five
/// minutes, as payment providers use).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the signature header for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex(&digest))
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("the signature header is malformed (expected t=<seconds>,v1=<hex>)")]
    Malformed,
    #[error("the timestamp is {skew} seconds from now, beyond the tolerance of {tolerance}")]
    Stale { skew: i64, tolerance: i64 },
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks a delivery: the header parses, its timestamp is within `tolerance_secs` of
/// `now` (unix seconds), and one of its `v1` signatures (several are allowed, so a secret
/// can be rolled) is the body's, compared in constant time.
pub fn verify(
    header: &str,
    secret: &[u8],
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = (now - timestamp).abs();
    if skew > tolerance_secs {
        return Err(SignatureError::Stale {
            skew,
            tolerance: tolerance_secs,
        });
    }
    for sig in signatures {
        let Some(bytes) = unhex(sig) else { continue };
        if mac(secret, timestamp, body).verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The primitive is HMAC-SHA256: RFC 4231's test case 2 (key "Jefe").
    #[test]
    fn the_mac_is_hmac_sha256() {
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signed_body_verifies_and_nothing_else_does() {
        let secret = b"whsec_test";
        let body = br#"{"kind":"batch.locked"}"#;
        let header = sign(secret, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(&header, secret, body, 1_700_000_010, 300), Ok(()));
        assert_eq!(
            verify(
                &header,
                secret,
                b"{\"kind\":\"batch.failed\"}",
                1_700_000_010,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, b"another secret", body, 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, secret, body, 1_700_000_400, 300),
            Err(SignatureError::Stale {
                skew: 400,
                tolerance: 300
            })
        );
        assert_eq!(
            verify("v1=abcd", secret, body, 0, 300),
            Err(SignatureError::Malformed)
        );
        // A rolled secret: the receiver accepts either signature.
        let rolled = format!("{header},v1={}", &sign(b"old", 1_700_000_000, body)[16..]);
        assert_eq!(verify(&rolled, secret, body, 1_700_000_000, 300), Ok(()));
    }
}
