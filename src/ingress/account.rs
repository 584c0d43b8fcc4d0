//! Accounts as ingress sees them: who a bearer key belongs to, and how fast it may send.
//!
//! Job: authenticate `Authorization: Bearer <key>` and charge the account's rate limit.
//!
//! - Keys are never stored: config holds the SHA-256 of each key (hex). A presented key is
//!   hashed once and compared with *every* configured hash using `subtle`'s constant-time
//!   equality, so the time taken does not depend on which key (or how much of one) matched.
//!   Plain SHA-256 is enough because keys are 256-bit random values, not passwords.
//! - The rate limit is a governor GCRA bucket per account counting messages. A batch larger
//!   than the burst is charged the whole burst (governor cannot owe cells), so an account
//!   sending oversized batches gets at most `burst` messages per `burst / rate` seconds of
//!   request admission; documented rather than silently rejecting such batches forever.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::message::SenderPolicy;

/// One account's ingress settings (built from config by the caller).
#[derive(Debug, Clone)]
pub struct AccountSpec {
    /// Account name (store key; no NUL).
    pub name: String,
    /// SHA-256 of each API key.
    pub key_sha256: Vec<[u8; 32]>,
    /// Messages per second; `None` = unlimited.
    pub rate_per_sec: Option<NonZeroU32>,
    /// Burst in messages (defaults to the rate).
    pub burst: Option<NonZeroU32>,
    /// Sender rules.
    pub senders: SenderPolicy,
    /// Default receipt webhook.
    pub webhook_url: Option<String>,
    /// Reply (MO) webhook.
    pub mo_url: Option<String>,
}

/// An account with its live rate limiter.
#[derive(Debug)]
pub struct Account {
    /// Settings.
    pub spec: AccountSpec,
    limiter: Option<DefaultDirectRateLimiter>,
    burst: u32,
}

/// The rate limit said no; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// Time until the request would be admitted.
    pub retry_after: Duration,
}

impl RateLimited {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(self) -> u64 {
        let s = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 || s == 0 {
            s + 1
        } else {
            s
        }
    }
}

impl Account {
    /// Builds the live account.
    pub fn new(spec: AccountSpec) -> Self {
        let (limiter, burst) = match spec.rate_per_sec {
            Some(rate) => {
                let burst = spec.burst.unwrap_or(rate);
                (
                    Some(DefaultDirectRateLimiter::direct(
                        Quota::per_second(rate).allow_burst(burst),
                    )),
                    burst.get(),
                )
            }
            None => (None, u32::MAX),
        };
        Self {
            spec,
            limiter,
            burst,
        }
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Charges `n` messages (at least 1, at most the burst).
    ///
    /// # Errors
    /// [`RateLimited`] with the wait until the charge would succeed.
    pub fn charge(&self, n: usize) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX).clamp(1, self.burst);
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }),
            // n ≤ burst, so this cannot happen; answer as a 1 s wait rather than panic.
            Err(_) => Err(RateLimited {
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

/// All accounts, looked up by API key.
#[derive(Debug, Default)]
pub struct Accounts {
    accounts: Vec<Account>,
}

/// SHA-256 of a key, as stored in config.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parses a 64-digit hex SHA-256 (config form).
///
/// # Errors
/// A reason when the text is not 64 hex digits.
pub fn parse_key_hash(hex: &str) -> Result<[u8; 32], String> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return Err(format!("expected 64 hex digits, got {}", b.len()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_owned())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| format!("not hex: {s:?}"))?;
    }
    Ok(out)
}

impl Accounts {
    /// Builds the set.
    pub fn new(specs: impl IntoIterator<Item = AccountSpec>) -> Self {
        Self {
            accounts: specs.into_iter().map(Account::new).collect(),
        }
    }

    /// The account owning the bearer key of a request's `Authorization` header, if any: what
    /// every HTTP route of the gateway asks.
    pub fn authenticate_headers(&self, headers: &axum::http::HeaderMap) -> Option<&Account> {
        self.authenticate(
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// The account owning the key in an `Authorization` header value, if any.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<&Account> {
        let key = crate::bearer::token_of(authorization)?;
        let presented = key_hash(key);
        let mut found = None;
        // Visit every hash of every account: no early exit on a match.
        for account in &self.accounts {
            for stored in &account.spec.key_sha256 {
                if bool::from(stored.ct_eq(&presented)) {
                    found = Some(account);
                }
            }
        }
        found
    }

    /// An account by name.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.spec.name == name)
    }

    /// Every account.
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, key: &str, rate: Option<u32>, burst: Option<u32>) -> AccountSpec {
        AccountSpec {
            name: name.into(),
            key_sha256: vec![key_hash(key)],
            rate_per_sec: rate.and_then(NonZeroU32::new),
            burst: burst.and_then(NonZeroU32::new),
            senders: SenderPolicy::default(),
            webhook_url: None,
            mo_url: None,
        }
    }

    #[test]
    fn keys_authenticate_their_account_only() {
        let a = Accounts::new([
            spec("a", "key-a", None, None),
            spec("b", "key-b", None, None),
        ]);
        assert_eq!(
            a.authenticate(Some("Bearer key-a")).map(Account::name),
            Some("a")
        );
        assert_eq!(
            a.authenticate(Some("Bearer key-b")).map(Account::name),
            Some("b")
        );
        assert!(a.authenticate(Some("Bearer key-c")).is_none());
        assert!(a.authenticate(Some("key-a")).is_none());
        assert!(a.authenticate(Some("Bearer ")).is_none());
        assert!(a.authenticate(None).is_none());
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = key_hash("dev");
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_key_hash(&hex), Ok(h));
        assert!(parse_key_hash("abc").is_err());
        assert!(parse_key_hash(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn rate_limit_charges_messages_and_caps_at_burst() {
        // One message per hour: the bucket never refills during the test.
        let acc = Account::new(AccountSpec {
            rate_per_sec: None,
            ..spec("a", "k", None, None)
        });
        assert!(acc.charge(1_000_000).is_ok(), "unlimited");
        let mut s = spec("a", "k", Some(1), Some(5));
        s.rate_per_sec = NonZeroU32::new(1);
        let acc = Account::new(s);
        assert!(acc.charge(3).is_ok());
        assert!(acc.charge(2).is_ok());
        let e = acc.charge(1).expect_err("bucket empty");
        assert!(e.retry_after_secs() >= 1);
        let acc = Account::new(spec("a", "k", Some(1), Some(5)));
        assert!(
            acc.charge(10_000).is_ok(),
            "oversized batch is charged the burst"
        );
        assert!(acc.charge(1).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        let r = |ms| RateLimited {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(r(0).retry_after_secs(), 1);
        assert_eq!(r(1).retry_after_secs(), 1);
        assert_eq!(r(1000).retry_after_secs(), 1);
        assert_eq!(r(1001).retry_after_secs(), 2);
    }
}
