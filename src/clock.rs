//! Time as an injected dependency. Scheduling code asks a [`Clock`] for `now` and to sleep, so
//! tests drive time by hand with [`ManualClock`] instead of waiting (tests never time anything).
//! [`AnyClock`] is the one concrete clock type `serve` threads through the gateway, so the
//! whole HTTP → store → dispatch → SMPP pipeline can run on a manual clock.

use std::future::Future;
use std::sync::Arc;

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
#[must_use]
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| t.to_string())
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
    use super::*;

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
