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
    // Saturating: a forged timestamp far from now (i64::MIN) is stale, not an overflow.
    let skew = i64::try_from(now.abs_diff(timestamp)).unwrap_or(i64::MAX);
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

/// Checks a webhook endpoint's URL: `http://` or `https://` (in any case), a host, a port (if any) from
/// 1 to 65535, no credentials (`user:password@`: they would be sent in the `Host` header,
/// not as authentication), brackets only around an IPv6 address, ASCII only (other
/// characters percent-encoded), no spaces or
/// control characters, at most 2000 characters. Errors name the field `url`.
pub fn check_url(url: &str) -> Result<(), crate::DomainError> {
    let bad = |why: &str| Err(crate::DomainError::invalid("url", why));
    if url.len() > 2000 {
        return bad("must be at most 2000 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    if !url.is_ascii() {
        return bad("must be ASCII (percent-encode other characters, as %C3%BC for \u{fc})");
    }
    // A scheme is case-insensitive (RFC 3986, section 3.1): `HTTPS://` is `https://`,
    // and the delivery client reads it so too.
    let scheme_len = url.find("://").unwrap_or(0);
    let scheme = &url[..scheme_len];
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return bad("must be an http:// or https:// URL");
    }
    let rest = &url[scheme_len + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return bad(
            "must not carry credentials (user:password@): the receiver checks the signature",
        );
    }
    // An IPv6 address is in brackets; a port follows the last colon after them.
    let after_host = authority.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match authority[after_host..].rfind(':') {
        Some(i) => (
            &authority[..after_host + i],
            Some(&authority[after_host + i + 1..]),
        ),
        None => (authority, None),
    };
    if host.is_empty() {
        return bad("must name a host");
    }
    // Brackets hold an IPv6 address and nothing else: `[::1]x`, `[zz]` and `[]` were
    // taken, and the worker then connected to another host than the URL names, or to none.
    if host.starts_with('[') || host.contains(']') {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if literal.is_none_or(|a| a.parse::<std::net::Ipv6Addr>().is_err()) {
            return Err(crate::DomainError::invalid(
                "url",
                format!("the host {host:?} is not an IPv6 address in brackets, as [::1]"),
            ));
        }
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Err(crate::DomainError::invalid(
                "url",
                format!("the port {port:?} is not a number from 1 to 65535"),
            ));
        }
    }
    Ok(())
}

/// Checks the event kinds an endpoint asks for (see [`crate::events::EventData::KINDS`];
/// `*` for every kind): at least one, each known. Errors name the field `event_types`.
pub fn check_kinds(kinds: &[String]) -> Result<(), crate::DomainError> {
    if kinds.is_empty() {
        return Err(crate::DomainError::invalid(
            "event_types",
            "must name at least one event type (or *)",
        ));
    }
    if let Some(unknown) = kinds.iter().find(|k| !crate::events::EventData::is_kind(k)) {
        return Err(crate::DomainError::invalid(
            "event_types",
            format!(
                "unknown event type {unknown:?}; known: {}",
                crate::events::EventData::KINDS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Whether an endpoint that asked for `kinds` wants an event of `kind`.
pub fn wants(kinds: &[String], kind: &str) -> bool {
    kinds.iter().any(|k| k == "*" || k == kind)
}

/// How long to wait before the next attempt at an endpoint that has failed `failures`
/// times in a row: one second, doubling with each failure, at most `max`, then scaled by
/// `0.5 + jitter / 2` ("equal jitter": `jitter` is a random number in [0, 1] the caller
/// draws), so endpoints that failed together do not retry together.
pub fn retry_delay(failures: u32, max: std::time::Duration, jitter: f64) -> std::time::Duration {
    let exp = failures.saturating_sub(1).min(30);
    let base = std::time::Duration::from_secs(1u64 << exp).min(max);
    base.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(check_url("https://shop.example/hooks/c2m").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        assert!(check_url("http://[::1]:8080/hooks?shop=1").is_ok());
        assert!(check_url("http://[::1]/").is_ok());
        assert!(check_url("http://[2001:db8::7]:443/h").is_ok());
        assert!(check_url("https://shop.example:65535/caf%C3%A9#top").is_ok());
        // The scheme in any case, as RFC 3986 reads it.
        assert!(check_url("HTTP://127.0.0.1:8080/").is_ok());
        assert!(check_url("Https://shop.example/").is_ok());
        for bad in [
            "ftp://shop.example/",
            "httpx://shop.example/",
            "HTTP:/shop.example/",
            "://shop.example/",
            "shop.example/hook",
            "https://",
            "https:///path",
            "http://:80/",
            "https://shop.example/a b",
            "",
            "http://127.0.0.1:99999/",
            "http://shop.example:0/",
            "http://shop.example:/",
            "http://shop.example:8o/",
            "http://[::1]:99999/",
            "http://[::1]x/",
            "http://[::1]x:80/",
            "http://[zz]/",
            "http://[]/",
            "http://[127.0.0.1]/",
            "http://a]b/",
            "https://user:pw@shop.example/",
            "https://shop.example/caf\u{e9}",
        ] {
            match check_url(bad) {
                Err(crate::DomainError::InvalidArgument { field, .. }) => assert_eq!(field, "url"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn kinds_must_be_known() {
        assert!(check_kinds(&["*".into()]).is_ok());
        assert!(check_kinds(&["batch.locked".into(), "balance.due".into()]).is_ok());
        for bad in [vec![], vec!["batch.exploded".to_owned()]] {
            match check_kinds(&bad) {
                Err(crate::DomainError::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "event_types")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(wants(&["*".into()], "batch.failed"));
        assert!(wants(&["batch.failed".into()], "batch.failed"));
        assert!(!wants(&["batch.locked".into()], "batch.failed"));
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        use std::time::Duration;
        let max = Duration::from_secs(600);
        assert_eq!(retry_delay(1, max, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(2, max, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(5, max, 1.0), Duration::from_secs(16));
        assert_eq!(retry_delay(5, max, 0.0), Duration::from_secs(8));
        assert_eq!(retry_delay(40, max, 1.0), max);
        assert_eq!(retry_delay(40, max, 0.0), max / 2);
    }

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
        // A timestamp as far from now as an i64 goes is stale (it overflowed the skew:
        // a panic in a debug build, a negative skew that passed in a release build).
        for t in [i64::MIN, i64::MAX] {
            let far = format!("t={t},v1={}", &header[16..]);
            assert!(
                matches!(
                    verify(&far, secret, body, 1_700_000_010, 300),
                    Err(SignatureError::Stale { .. })
                ),
                "{far}"
            );
        }
        // A rolled secret: the receiver accepts either signature.
        let rolled = format!("{header},v1={}", &sign(b"old", 1_700_000_000, body)[16..]);
        assert_eq!(verify(&rolled, secret, body, 1_700_000_000, 300), Ok(()));
    }
}
