//! Pacing per webhook receiver: an adaptive concurrency limit and a shared backoff.
//!
//! Job: keep one receiver (a URL origin, `scheme://host:port`) from being flooded into
//! timeouts, and stop hammering one that is down — whichever accounts' entries go to it.
//! Backoff used to be per entry, so a receiver that was down got one retry per entry per
//! backoff period, and one that was slow got the pump's full concurrency until its requests
//! timed out. Now:
//! - **Concurrency** (requests in flight to the receiver) is limited by an AIMD window, the
//!   way TCP paces a path: a 2xx whose round trip shows no queueing adds 1/limit (about +1
//!   per window of answers); an overload signal — a timeout, a refused connection, a 5xx, a
//!   429, or a 2xx whose round trip rose above 1.5 × the receiver's base round trip + 20 ms
//!   (requests are queueing there) — cuts it (× ½ on errors, × ¾ on a slow answer) once per
//!   window: answers to requests sent before the last cut do not cut again. The limit stays
//!   within 1 ..= the pump's request concurrency. Cutting on a rising round trip is what
//!   keeps a slow receiver *below* its timeout instead of oscillating through it.
//! - **Backoff** is shared: any failed POST (error or non-2xx) puts the receiver in backoff
//!   for `WebhookConfig::backoff(n)`, n = failures in a row (reset by a 2xx); no new request
//!   goes to it until then, and the pump's scan skips its entries (they stay stored). Answers
//!   to requests sent before the backoff began do not lengthen it.
//!
//! Memory: one small state per receiver origin, not per entry. Origins come from the
//! accounts' webhook URLs and messages' `callback_url`s; a state with nothing in flight, no
//! failures and a full limit carries no information and is pruned once more than
//! [`MAX_QUIET`] are kept.
//!
//! The state machine ([`ReceiverState`]) takes `now` and round trips as arguments, so its
//! tests need no clock; [`Pacer`] shares it between the pump's concurrent requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Quiet receiver states kept before pruning.
pub const MAX_QUIET: usize = 256;
/// Round-trip slack before a rise counts as queueing (local jitter is not overload).
const RTT_SLACK: Duration = Duration::from_millis(20);

/// How a POST ended, as pacing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx after `rtt`.
    Delivered {
        /// Request round trip.
        rtt: Duration,
    },
    /// The receiver is overloaded or unreachable: timeout, connection error, 5xx, 429.
    Overloaded,
    /// The receiver refused the request (another 4xx): not a load signal, but it is not
    /// retried at full speed either.
    Refused,
}

/// One receiver's pacing state.
#[derive(Debug, Clone)]
pub struct ReceiverState {
    limit: f64,
    in_flight: usize,
    /// Lowest recent round trip (tracks slowly upward on unqueued answers).
    base_rtt: Option<Duration>,
    /// When the limit was last cut for a slow answer: answers to requests sent before it do
    /// not cut again for the same reason.
    slow_cut_at: Option<Instant>,
    /// When the limit was last cut for an error (a timeout, …): likewise. Kept apart from
    /// the slow cut so the first slow answers of a flood do not shield it from the halving
    /// its timeouts call for.
    error_cut_at: Option<Instant>,
    /// Failed POSTs in a row.
    failures: u32,
    /// No request starts before this.
    not_before: Option<Instant>,
}

impl ReceiverState {
    /// A receiver never tried: its limit starts at `max` (what it got before it had pacing).
    pub fn new(max: usize) -> Self {
        Self {
            limit: max.max(1) as f64,
            in_flight: 0,
            base_rtt: None,
            slow_cut_at: None,
            error_cut_at: None,
            failures: 0,
            not_before: None,
        }
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Failed POSTs in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// True while the receiver waits out its backoff.
    pub fn backing_off(&self, now: Instant) -> bool {
        self.not_before.is_some_and(|t| now < t)
    }

    /// Takes a request slot if the limit and the backoff allow one.
    pub fn try_start(&mut self, now: Instant) -> bool {
        if self.backing_off(now) || self.in_flight >= self.limit() {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// Gives back a slot whose request was never sent.
    pub fn cancel(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Records the answer to a request started at `started`; `backoff(n)` is the delay after
    /// `n` failures in a row; `max` the highest limit.
    pub fn finish(
        &mut self,
        started: Instant,
        answer: Answer,
        now: Instant,
        max: usize,
        backoff: impl Fn(u32) -> Duration,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let after = |cut: Option<Instant>| cut.is_none_or(|c| started >= c);
        match answer {
            Answer::Delivered { rtt } => {
                self.failures = 0;
                self.not_before = None;
                let base = *self.base_rtt.get_or_insert(rtt);
                if rtt < base {
                    self.base_rtt = Some(rtt);
                }
                if rtt > base.mul_f64(1.5) + RTT_SLACK {
                    if after(self.slow_cut_at) && after(self.error_cut_at) {
                        self.limit = (self.limit * 0.75).max(1.0);
                        self.slow_cut_at = Some(now);
                    }
                } else {
                    // Follow a receiver that became slower for good, a little per answer.
                    if rtt > base {
                        self.base_rtt = Some(base + (rtt - base) / 16);
                    }
                    self.limit = (self.limit + 1.0 / self.limit).min(max.max(1) as f64);
                }
            }
            Answer::Overloaded | Answer::Refused => {
                if answer == Answer::Overloaded && after(self.error_cut_at) {
                    self.limit = (self.limit * 0.5).max(1.0);
                    self.error_cut_at = Some(now);
                }
                // Requests already out when the backoff began fail for the same reason.
                if self.not_before.is_none_or(|t| started >= t || now >= t) {
                    self.failures = self.failures.saturating_add(1);
                    self.not_before = Some(now + backoff(self.failures));
                }
            }
        }
    }

    /// Nothing worth keeping: idle, healthy, at the full limit.
    fn quiet(&self, now: Instant, max: usize) -> bool {
        self.in_flight == 0 && self.failures == 0 && !self.backing_off(now) && self.limit() >= max
    }
}

/// The receiver of a URL: its origin (`scheme://host:port`), or the URL itself when it does
/// not parse (its POST then fails on its own).
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// What the pacer holds, for tests and the long-outage check: its size is the number of
/// receivers, never the number of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Receiver states kept.
    pub receivers: usize,
    /// (origin, limit, failures in a row) of each, sorted by origin.
    pub limits: Vec<(String, usize, u32)>,
}

/// Receiver states shared by one pump's concurrent requests.
pub struct Pacer {
    states: Mutex<HashMap<String, ReceiverState>>,
    /// Signalled when a slot frees or a limit changes.
    freed: Notify,
    max: usize,
    backoff: Box<dyn Fn(u32) -> Duration + Send + Sync>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("max", &self.max)
            .field("receivers", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// A request slot at one receiver; report its answer with [`Slot::finish`]. Dropped
/// unreported (the request was abandoned), it frees the slot without a verdict.
#[derive(Debug)]
pub struct Slot {
    pacer: Arc<Pacer>,
    origin: String,
    started: Instant,
    open: bool,
}

impl Pacer {
    /// A pacer letting at most `max` requests go to one receiver at once, backing off by
    /// `backoff(failures in a row)`.
    pub fn new(max: usize, backoff: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        Self {
            states: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            max: max.max(1),
            backoff: Box::new(backoff),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReceiverState>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// False while `origin` waits out a backoff (its entries are skipped meanwhile).
    pub fn ready(&self, origin: &str, now: Instant) -> bool {
        self.lock().get(origin).is_none_or(|s| !s.backing_off(now))
    }

    /// Waits for a request slot at `origin`; `None` when the receiver is (or went) into
    /// backoff — the caller leaves the entries for a later scan.
    pub async fn acquire(self: &Arc<Self>, origin: &str) -> Option<Slot> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let now = Instant::now();
                let mut states = self.lock();
                if states.len() > MAX_QUIET && !states.contains_key(origin) {
                    let max = self.max;
                    states.retain(|_, s| !s.quiet(now, max));
                }
                let st = states
                    .entry(origin.to_owned())
                    .or_insert_with(|| ReceiverState::new(self.max));
                if st.backing_off(now) {
                    return None;
                }
                if st.try_start(now) {
                    return Some(Slot {
                        pacer: Arc::clone(self),
                        origin: origin.to_owned(),
                        started: now,
                        open: true,
                    });
                }
            }
            freed.await;
        }
    }

    /// What is kept, per receiver.
    pub fn stats(&self) -> PacerStats {
        let states = self.lock();
        let mut limits: Vec<_> = states
            .iter()
            .map(|(o, s)| (o.clone(), s.limit(), s.failures()))
            .collect();
        limits.sort();
        PacerStats {
            receivers: states.len(),
            limits,
        }
    }
}

impl Slot {
    /// Records the request's answer at its receiver; returns its failures in a row since.
    pub fn finish(mut self, answer: Answer) -> u32 {
        self.open = false;
        let now = Instant::now();
        let failures = {
            let mut states = self.pacer.lock();
            states.get_mut(&self.origin).map_or(0, |st| {
                st.finish(
                    self.started,
                    answer,
                    now,
                    self.pacer.max,
                    &self.pacer.backoff,
                );
                st.failures()
            })
        };
        self.pacer.freed.notify_waiters();
        failures
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.open {
            if let Some(st) = self.pacer.lock().get_mut(&self.origin) {
                st.cancel();
            }
            self.pacer.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(n: u32) -> Duration {
        Duration::from_secs(1) * 2u32.pow(n.min(8) - 1)
    }

    #[test]
    fn origin_keeps_scheme_host_port() {
        assert_eq!(origin("http://a.example:8080/x?y"), "http://a.example:8080");
        assert_eq!(origin("https://a.example/x"), "https://a.example");
        assert_eq!(origin("not a url"), "not a url");
    }

    #[test]
    fn timeouts_halve_once_per_window_and_back_off_shared() {
        let t0 = Instant::now();
        let mut s = ReceiverState::new(32);
        for _ in 0..32 {
            assert!(s.try_start(t0));
        }
        assert!(!s.try_start(t0), "at the limit");
        // All 32 time out together: one cut, one backoff step.
        for i in 0..32 {
            s.finish(t0, Answer::Overloaded, t0 + 1000 * MS + i * MS, 32, backoff);
        }
        assert_eq!(s.limit(), 16);
        assert_eq!(s.failures(), 1);
        assert!(s.backing_off(t0 + 1500 * MS));
        assert!(
            !s.try_start(t0 + 1500 * MS),
            "no request during the backoff"
        );
        // After it, a request sent later and failing cuts and backs off again.
        let t1 = t0 + 2100 * MS;
        assert!(s.try_start(t1));
        s.finish(t1, Answer::Overloaded, t1 + 10 * MS, 32, backoff);
        assert_eq!((s.limit(), s.failures()), (8, 2));
        assert!(s.backing_off(t1 + 1900 * MS));
        // A 2xx resets the failures and the backoff.
        let t2 = t1 + 3000 * MS;
        assert!(s.try_start(t2));
        s.finish(
            t2,
            Answer::Delivered { rtt: 5 * MS },
            t2 + 5 * MS,
            32,
            backoff,
        );
        assert_eq!(s.failures(), 0);
        assert!(!s.backing_off(t2 + 6 * MS));
    }

    #[test]
    fn refusals_back_off_without_cutting() {
        let t0 = Instant::now();
        let mut s = ReceiverState::new(8);
        assert!(s.try_start(t0));
        s.finish(t0, Answer::Refused, t0 + MS, 8, backoff);
        assert_eq!((s.limit(), s.failures()), (8, 1));
        assert!(s.backing_off(t0 + 2 * MS));
    }

    /// A receiver serving 4 requests at a time in 500 ms each: the round trip of request k
    /// (of n sent together) is 500 ms × ceil(k / 4). The limit must settle where nothing
    /// queues long, far below a 2 s timeout, and stay there.
    #[test]
    fn a_slow_receiver_settles_below_its_queueing_point() {
        let serve = |k: usize| 500 * MS * (k.div_ceil(4) as u32);
        let mut s = ReceiverState::new(32);
        let mut now = Instant::now();
        let mut worst = Duration::ZERO;
        for round in 0..200 {
            let n = s.limit();
            let started = now;
            for _ in 0..n {
                assert!(s.try_start(now));
            }
            for k in 1..=n {
                let rtt = serve(k);
                if round >= 10 {
                    worst = worst.max(rtt);
                }
                s.finish(
                    started,
                    Answer::Delivered { rtt },
                    started + rtt,
                    32,
                    backoff,
                );
            }
            now = started + serve(n);
        }
        assert!(s.limit() <= 8, "limit {}", s.limit());
        assert!(
            worst <= 1000 * MS,
            "worst round trip after adapting {worst:?}"
        );
    }

    #[test]
    fn a_healthy_receiver_grows_back_to_the_max() {
        let mut s = ReceiverState::new(16);
        let mut now = Instant::now();
        assert!(s.try_start(now));
        s.finish(now, Answer::Overloaded, now, 16, backoff);
        now += Duration::from_secs(5);
        for _ in 0..2000 {
            assert!(s.try_start(now));
            s.finish(
                now,
                Answer::Delivered { rtt: 2 * MS },
                now + 2 * MS,
                16,
                backoff,
            );
            now += 2 * MS;
        }
        assert_eq!(s.limit(), 16);
    }

    #[tokio::test]
    async fn the_pacer_prunes_quiet_receivers_and_keeps_failing_ones() {
        let p = Arc::new(Pacer::new(4, backoff));
        let bad = p.acquire("http://bad").await.expect("slot");
        bad.finish(Answer::Overloaded);
        assert!(p.acquire("http://bad").await.is_none(), "backing off");
        for i in 0..(MAX_QUIET + 50) {
            let s = p.acquire(&format!("http://r{i}")).await.expect("slot");
            s.finish(Answer::Delivered { rtt: MS });
        }
        let stats = p.stats();
        assert!(stats.receivers <= MAX_QUIET + 2, "{}", stats.receivers);
        assert!(
            stats
                .limits
                .iter()
                .any(|(o, l, f)| o == "http://bad" && *l == 2 && *f == 1)
        );
    }
}
