//! Time as an injected dependency. Scheduling code asks a [`Clock`] for `now` and to sleep, so
//! tests drive time by hand with [`ManualClock`] instead of waiting (tests never time anything).
//! [`AnyClock`] is the one concrete clock type `serve` threads through the gateway, so the
//! whole HTTP → store → dispatch → SMPP pipeline can run on a manual clock.

use std::future::Future;
use std::sync::Arc;

use compact_str::{CompactString, ToCompactString};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// A source of the current time that can also wait for a deadline.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// Resolves once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> impl Future<Output = ()> + Send;

    /// `now()` in milliseconds since the Unix epoch (the store's unit); 0 before 1970.
    fn now_ms(&self) -> u64 {
        to_ms(self.now())
    }
}

/// Milliseconds since the epoch for a timestamp (0 for instants before 1970).
pub fn to_ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

/// The timestamp for a millisecond count (saturating at jiff's maximum).
pub fn from_ms(ms: u64) -> Timestamp {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX)
}

/// A millisecond count as RFC 3339 (`2026-12-05T13:43:07.123Z`), the form every timestamp
/// takes in the API, webhooks and the store's receipt events; a count jiff cannot represent
/// is written as the bare number rather than lost.
///
/// Written here the way jiff's `Display` writes it (fraction digits trimmed of trailing
/// zeros, none for a whole second), for every instant jiff can represent: every ended
/// message formats one or two of these inside the store writer, and jiff's general printer
/// was 0.8 % of the gateway's samples at full speed. At most 24 bytes (a 20-digit count, or
/// `9999-12-31T23:59:59.999Z`), so the text is held inline: no allocation per timestamp.
#[must_use]
pub fn rfc3339(ms: u64) -> CompactString {
    if ms <= LAST_MS {
        rfc3339_utc(ms)
    } else {
        ms.to_compact_string()
    }
}

/// The last millisecond count jiff takes (`Timestamp::from_millisecond`), in 9999.
const LAST_MS: u64 = 253_402_207_200_000;

/// [`rfc3339`] for an instant up to [`LAST_MS`]: the civil date from the day count
/// (Howard Hinnant's `civil_from_days`, for days since 1970 that are never negative here).
fn rfc3339_utc(ms: u64) -> CompactString {
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (secs, milli) = (ms_of_day / 1000, ms_of_day % 1000);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: u64, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, secs / 3600, 2);
    put(14, secs / 60 % 60, 2);
    put(17, secs % 60, 2);
    put(20, milli, 3);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    // jiff writes the fraction with its trailing zeros trimmed, and none for a whole second.
    let mut len = 23;
    while out[len - 1] == b'0' && len > 20 {
        len -= 1;
    }
    if len == 20 {
        len = 19;
    }
    out[len] = b'Z';
    // ASCII throughout, so never the empty fallback. (`CompactString::from_utf8_lossy` pushes
    // its input piece by piece: 1.4 % of the gateway's samples for two timestamps a message.)
    CompactString::from(std::str::from_utf8(&out[..=len]).unwrap_or_default())
}

/// The operating system clock; sleeps on the tokio timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        // Re-check after waking: the wall clock may have been stepped while we slept.
        loop {
            let left = deadline.duration_since(Timestamp::now());
            if left <= SignedDuration::ZERO {
                return;
            }
            let left = std::time::Duration::try_from(left).unwrap_or(std::time::Duration::MAX);
            tokio::time::sleep(left).await;
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves time to `t` (never backwards) and wakes sleepers whose deadline passed.
    pub fn set(&self, t: Timestamp) {
        self.now.send_if_modified(|now| {
            if t > *now {
                *now = t;
                true
            } else {
                false
            }
        });
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: SignedDuration) {
        let next = self.now().saturating_add(d).unwrap_or(Timestamp::MAX);
        self.set(next);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut rx = self.now.subscribe();
        // `wait_for` checks the current value first, so no advance can be missed. The sender
        // lives as long as any clone, so an error only means every clone is gone.
        let _ = rx.wait_for(|now| *now >= deadline).await;
    }
}

/// The clock a whole gateway runs on: the system clock in production, a [`ManualClock`] in
/// tests that drive windows and expiry through the full pipeline.
///
/// An enum rather than `Arc<dyn Clock>` because [`Clock::sleep_until`] returns `impl Future`,
/// which is not object safe; two variants cover every user and cost no allocation per sleep.
/// Clones of a `Manual` clock share its time.
#[derive(Clone, Debug, Default)]
pub enum AnyClock {
    /// [`SystemClock`].
    #[default]
    System,
    /// A [`ManualClock`]: time moves only when the test advances it.
    Manual(ManualClock),
}

impl From<SystemClock> for AnyClock {
    fn from(_: SystemClock) -> Self {
        Self::System
    }
}

impl From<ManualClock> for AnyClock {
    fn from(clock: ManualClock) -> Self {
        Self::Manual(clock)
    }
}

impl Clock for AnyClock {
    fn now(&self) -> Timestamp {
        match self {
            Self::System => SystemClock.now(),
            Self::Manual(c) => c.now(),
        }
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        match self {
            Self::System => SystemClock.sleep_until(deadline).await,
            Self::Manual(c) => c.sleep_until(deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn last_ms_is_jiffs() {
        let last = i64::try_from(LAST_MS).unwrap();
        assert!(Timestamp::from_millisecond(last).is_ok());
        assert!(Timestamp::from_millisecond(last + 1).is_err());
    }

    proptest! {
        /// The fast path writes what jiff writes, over its whole range and at its edges.
        #[test]
        fn rfc3339_matches_jiff(
            ms in prop_oneof![
                0u64..=LAST_MS,
                Just(0u64),
                Just(LAST_MS),
                (0u64..=LAST_MS / 1000).prop_map(|s| s * 1000),
                (0u64..=LAST_MS / 10_000).prop_map(|s| s * 10_000 + 100),
            ]
        ) {
            let jiff = Timestamp::from_millisecond(i64::try_from(ms).unwrap()).unwrap().to_string();
            prop_assert_eq!(rfc3339(ms), jiff);
        }
    }

    #[test]
    fn rfc3339_past_jiff_is_the_bare_count() {
        assert_eq!(rfc3339(LAST_MS + 1), (LAST_MS + 1).to_string());
        assert_eq!(rfc3339(u64::MAX), u64::MAX.to_string());
        assert_eq!(rfc3339(1_733_406_187_120), "2024-12-05T13:43:07.12Z");
    }

    #[tokio::test]
    async fn manual_sleep_wakes_only_after_advance() {
        let clock = ManualClock::new(Timestamp::from_second(1_000).unwrap());
        let deadline = Timestamp::from_second(1_010).unwrap();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        tokio::task::yield_now().await;
        clock.advance(SignedDuration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(SignedDuration::from_secs(5));
        sleeper.await.unwrap();
        assert_eq!(clock.now_ms(), 1_010_000);
        // Time never goes backwards.
        clock.set(Timestamp::from_second(0).unwrap());
        assert_eq!(clock.now(), deadline);
    }

    #[tokio::test]
    async fn any_clock_follows_the_manual_clock_it_wraps() {
        let manual = ManualClock::new(Timestamp::from_second(1_000).unwrap());
        let clock = AnyClock::from(manual.clone());
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move {
                clock
                    .sleep_until(Timestamp::from_second(1_060).unwrap())
                    .await
            }
        });
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        manual.advance(SignedDuration::from_mins(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now_ms(), 1_060_000);
        // The system variant reads the operating system clock (after 2020, at least).
        assert!(AnyClock::default().now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn ms_conversions() {
        assert_eq!(to_ms(from_ms(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(to_ms(Timestamp::from_second(-5).unwrap()), 0);
        assert_eq!(from_ms(u64::MAX), Timestamp::MAX);
    }
}
