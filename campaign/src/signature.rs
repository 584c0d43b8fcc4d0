//! Webhook signatures: the one definition of how a webhook is signed and how a receiver
//! checks it. The gateway signs every receipt and reply webhook with [`sign`]; the campaign
//! service's webhook endpoints check them with [`verify`] (through
//! [`crate::webhook_guard`]). Both sides call this module, so the two cannot drift apart.
//!
//! Wire format (the scheme payment and SaaS webhooks use): header [`HEADER`]
//!
//! ```text
//! X-Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body bytes>")>
//! ```
//!
//! - The signed string is the decimal timestamp, one `.`, then the body bytes exactly as
//!   sent (no re-serialisation: a receiver must hash the raw body before parsing it).
//! - The timestamp is inside the MAC, so a captured request cannot be replayed later than
//!   [`TOLERANCE_SECS`] with a fresh `t`.
//! - A header may carry several `v1=` values (a sender rotating its secret); one match is
//!   enough. Unknown keys (`v0=`, future schemes) are ignored.
//! - Comparison is constant time (`Mac::verify_slice`), so the answer time leaks nothing
//!   about how much of a forged MAC was right.
//!
//! The secret itself never appears in a `Debug` output or a log line: [`WebhookSecret`]
//! redacts it.

use std::fmt;
use std::str::FromStr;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The signature header (HTTP header names are case-insensitive; this is the sent spelling).
pub const HEADER: &str = "X-Sluice-Signature";

/// Largest distance, in seconds, between a signature's timestamp and the receiver's clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Shortest secret accepted: 16 bytes is 128 bits when the secret is random bytes in hex or
/// base64 (`head -c32 /dev/urandom | base64` gives 44 characters).
pub const MIN_SECRET_LEN: usize = 16;

/// Counter: webhook requests the campaign service refused (label `reason`: `missing`,
/// `malformed`, `stale`, `forged`). Named here because the campaign crate cannot see the
/// gateway's metric list; the gateway's `metrics` module re-exports and describes it.
pub const REFUSED_METRIC: &str = "sluice_campaign_webhook_refused_total";

/// A shared webhook secret. `Debug` prints `<redacted>`; the bytes leave only through
/// [`sign`] and [`verify`].
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookSecret(String);

/// Why a secret was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Too short to resist guessing.
    #[error("a webhook secret needs at least {min} characters, got {len}")]
    TooShort {
        /// Characters given.
        len: usize,
        /// [`MIN_SECRET_LEN`].
        min: usize,
    },
}

impl WebhookSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] characters.
    ///
    /// # Errors
    /// [`SecretError::TooShort`].
    pub fn new(s: impl Into<String>) -> Result<Self, SecretError> {
        let s = s.into();
        if s.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                len: s.len(),
                min: MIN_SECRET_LEN,
            });
        }
        Ok(Self(s))
    }

    fn mac(&self, t: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length: new_from_slice cannot fail for it.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl TryFrom<String> for WebhookSecret {
    type Error = SecretError;
    fn try_from(s: String) -> Result<Self, SecretError> {
        Self::new(s)
    }
}

impl From<WebhookSecret> for String {
    fn from(s: WebhookSecret) -> Self {
        s.0
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, SecretError> {
        Self::new(s)
    }
}

/// The header value for `body` sent at unix second `t`.
pub fn sign(secret: &WebhookSecret, t: i64, body: &[u8]) -> String {
    let tag = secret.mac(t, body).finalize().into_bytes();
    let mut out = format!("t={t},v1=");
    for b in tag.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Why a webhook request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No signature header.
    #[error("missing {HEADER} header")]
    Missing,
    /// The header is not `t=<seconds>,v1=<64 hex digits>`.
    #[error("malformed {HEADER} header")]
    Malformed,
    /// The timestamp is more than [`TOLERANCE_SECS`] away from now.
    #[error("signature timestamp {t} is {skew} s from now (limit {TOLERANCE_SECS} s)")]
    Stale {
        /// The signed timestamp.
        t: i64,
        /// Its distance from the receiver's clock.
        skew: i64,
    },
    /// No `v1` value is the MAC of this body and timestamp under the secret.
    #[error("signature does not match the body")]
    Forged,
}

impl Refused {
    /// Bounded label value for [`REFUSED_METRIC`].
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Stale { .. } => "stale",
            Self::Forged => "forged",
        }
    }
}

/// Checks `header` (the value of [`HEADER`], `None` when absent) against the raw `body` at
/// unix second `now`.
///
/// # Errors
/// [`Refused`] says which check failed; the MAC is checked last, so a stale request is
/// reported stale even when its MAC is right.
pub fn verify(
    secret: &WebhookSecret,
    header: Option<&[u8]>,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let header = header.ok_or(Refused::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| Refused::Malformed)?;
    let mut t = None;
    let mut macs: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(Refused::Malformed)?;
        match k {
            "t" => t = Some(v.parse::<i64>().map_err(|_| Refused::Malformed)?),
            "v1" => macs.push(unhex32(v).ok_or(Refused::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(Refused::Malformed)?;
    if macs.is_empty() {
        return Err(Refused::Malformed);
    }
    let skew = now.saturating_sub(t).saturating_abs();
    if skew > TOLERANCE_SECS {
        return Err(Refused::Stale { t, skew });
    }
    let mac = secret.mac(t, body);
    if macs
        .iter()
        .any(|m| mac.clone().verify_slice(m.as_slice()).is_ok())
    {
        Ok(())
    } else {
        Err(Refused::Forged)
    }
}

/// 64 hex digits → 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("whsec_test_0123456789").expect("long enough")
    }

    /// Computed independently with Python's hmac module:
    /// `hmac.new(b"whsec_test_0123456789", b"1700000000." + body, hashlib.sha256).hexdigest()`.
    #[test]
    fn fixed_vector_matches_python_hmac() {
        let body = br#"{"id":"01JD","state":"delivered"}"#;
        assert_eq!(
            sign(&secret(), 1_700_000_000, body),
            "t=1700000000,v1=0aed823e7d84648faca03eca997e20bb5a5aa753e3867b594003dc57a8670a00"
        );
    }

    #[test]
    fn a_signature_verifies_within_tolerance_only() {
        let s = secret();
        let body = b"{\"a\":1}";
        let h = sign(&s, 1_000, body);
        assert_eq!(verify(&s, Some(h.as_bytes()), body, 1_000), Ok(()));
        assert_eq!(verify(&s, Some(h.as_bytes()), body, 1_300), Ok(()));
        assert_eq!(verify(&s, Some(h.as_bytes()), body, 700), Ok(()));
        assert_eq!(
            verify(&s, Some(h.as_bytes()), body, 1_301),
            Err(Refused::Stale {
                t: 1_000,
                skew: 301
            })
        );
        assert_eq!(
            verify(&s, Some(h.as_bytes()), body, 699).map_err(Refused::reason),
            Err("stale")
        );
    }

    #[test]
    fn forged_bodies_secrets_and_timestamps_are_refused() {
        let s = secret();
        let body = b"{\"a\":1}";
        let h = sign(&s, 1_000, body);
        assert_eq!(
            verify(&s, Some(h.as_bytes()), b"{\"a\":2}", 1_000),
            Err(Refused::Forged)
        );
        let other = WebhookSecret::new("another-secret-of-16").expect("long enough");
        assert_eq!(
            verify(&other, Some(h.as_bytes()), body, 1_000),
            Err(Refused::Forged)
        );
        // The timestamp is signed: moving it breaks the MAC.
        let moved = h.replace("t=1000", "t=1001");
        assert_eq!(
            verify(&s, Some(moved.as_bytes()), body, 1_000),
            Err(Refused::Forged)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        let s = secret();
        assert_eq!(verify(&s, None, b"x", 0), Err(Refused::Missing));
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            &format!("t=1,v1={}", "g".repeat(64)),
            "garbage",
        ] {
            assert_eq!(
                verify(&s, Some(bad.as_bytes()), b"x", 1),
                Err(Refused::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn any_of_several_v1_values_may_match_and_unknown_keys_are_ignored() {
        let s = secret();
        let good = sign(&s, 5, b"b");
        let mac = good.split_once("v1=").expect("v1").1;
        let h = format!("t=5,v0=abc,v1={},v1={mac}", "0".repeat(64));
        assert_eq!(verify(&s, Some(h.as_bytes()), b"b", 5), Ok(()));
    }

    #[test]
    fn secrets_are_redacted_and_checked_for_length() {
        let s = secret();
        assert_eq!(format!("{s:?}"), "WebhookSecret(<redacted>)");
        assert!(!format!("{:?}", Some(&s)).contains("whsec"));
        assert_eq!(
            WebhookSecret::new("short"),
            Err(SecretError::TooShort { len: 5, min: 16 })
        );
        let parsed: WebhookSecret =
            serde_json::from_str("\"whsec_test_0123456789\"").expect("parses");
        assert_eq!(parsed, s);
        assert!(serde_json::from_str::<WebhookSecret>("\"short\"").is_err());
    }
}
