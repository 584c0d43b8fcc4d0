//! Live status of each channel, for the operators' channel view (`GET /v1/channels`).
//!
//! A neutral meeting point: the channel worker writes what only it knows (parts accepted,
//! throttle answers, messages held against its window, its last errors) and hands out its
//! `binds_up` / `rate` watches; the receipt layer writes receipt latency (submit → receipt,
//! read from the message record it just correlated); the HTTP view reads. The view lives in
//! ingress, which may not name `channel` or `dispatch`, so the shared state lives here and
//! names neither (this module depends on nothing else of the gateway).
//!
//! One path per fact: binds up and the AIMD rate are the worker's own watches (the same ones
//! dispatch and `/readyz` read), not copies; throttles and errors are recorded at the one
//! place the worker classifies a response; nothing is re-derived from metrics text.
//!
//! Writers are cheap and lock-free on the hot path (atomics), except the error ring and the
//! latency window, which take an uncontended mutex (readers look once a second).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::watch;

/// Errors kept per channel (the newest last).
pub const LAST_ERRORS: usize = 10;
/// Seconds averaged by [`ChannelStatus::sent_per_s`] (complete seconds before the current one).
pub const RATE_SECONDS: u64 = 5;
/// Slots of the per-second ring (more than [`RATE_SECONDS`] + the current second).
const RATE_SLOTS: usize = 8;
/// The receipt latency window: [`LATENCY_SLICES`] slices of [`LATENCY_SLICE_MS`] (one minute).
const LATENCY_SLICES: usize = 6;
const LATENCY_SLICE_MS: u64 = 10_000;
/// Longest latency recorded (a day, in ms); longer ones are clamped to it.
const LATENCY_MAX_MS: u64 = 86_400_000;

/// Wall time in ms (informational stamps only; scheduling never reads it).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One recorded error: when (ms) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorNote {
    /// Wall time, ms since the epoch.
    pub at_ms: u64,
    /// What happened (a status text, a bind's reason; never a secret).
    pub text: String,
}

/// Receipt latency percentiles over the last minute, ms (`None` without receipts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Median.
    pub p50: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
}

/// One channel's live status (see the module doc for who writes what).
#[derive(Debug)]
pub struct ChannelStatus {
    name: String,
    rate_limit: u32,
    binds_configured: usize,
    window_size: usize,
    binds_up: watch::Receiver<usize>,
    rate: watch::Receiver<u32>,
    in_use: AtomicUsize,
    throttled: AtomicU64,
    /// Parts accepted per wall-clock second: (second, count) per slot, one writer (the worker).
    sent_secs: [AtomicU64; RATE_SLOTS],
    sent_counts: [AtomicU64; RATE_SLOTS],
    errors: Mutex<VecDeque<ErrorNote>>,
    latency: Mutex<LatencyWindow>,
}

impl ChannelStatus {
    /// A channel's status around its worker's watches: `window_size` messages may be held at
    /// once (window × sending binds).
    pub fn new(
        name: &str,
        rate_limit: u32,
        binds_configured: usize,
        window_size: usize,
        binds_up: watch::Receiver<usize>,
        rate: watch::Receiver<u32>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            rate_limit,
            binds_configured,
            window_size,
            binds_up,
            rate,
            in_use: AtomicUsize::new(0),
            throttled: AtomicU64::new(0),
            sent_secs: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            sent_counts: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: Mutex::new(VecDeque::with_capacity(LAST_ERRORS)),
            latency: Mutex::new(LatencyWindow::default()),
        }
    }

    /// Channel name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The configured rate (msg/s), the AIMD ceiling.
    pub fn rate_limit(&self) -> u32 {
        self.rate_limit
    }
    /// Sending binds configured.
    pub fn binds_configured(&self) -> usize {
        self.binds_configured
    }
    /// Sending binds up now (the worker's watch).
    pub fn binds_up(&self) -> usize {
        *self.binds_up.borrow()
    }
    /// The AIMD rate in force (the worker's watch).
    pub fn rate_aimd(&self) -> u32 {
        *self.rate.borrow()
    }
    /// Messages the worker may hold at once.
    pub fn window_size(&self) -> usize {
        self.window_size
    }
    /// Messages the worker holds now.
    pub fn window_in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
    /// Throttle answers since start.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Worker: it now holds `n` messages.
    pub fn set_in_use(&self, n: usize) {
        self.in_use.store(n, Ordering::Relaxed);
    }

    /// Worker: the center answered a part with a throttle status.
    pub fn record_throttle(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Worker: the center accepted a part.
    pub fn record_sent(&self) {
        self.record_sent_at(wall_ms() / 1000);
    }

    fn record_sent_at(&self, sec: u64) {
        let slot = (sec % RATE_SLOTS as u64) as usize;
        // One writer: a stale slot is reset before it is counted into.
        if self.sent_secs[slot].load(Ordering::Relaxed) != sec {
            self.sent_counts[slot].store(0, Ordering::Relaxed);
            self.sent_secs[slot].store(sec, Ordering::Relaxed);
        }
        self.sent_counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Parts accepted per second, averaged over the [`RATE_SECONDS`] complete seconds before
    /// now (the current second is still filling).
    pub fn sent_per_s(&self) -> f64 {
        self.sent_per_s_at(wall_ms() / 1000)
    }

    fn sent_per_s_at(&self, now_sec: u64) -> f64 {
        let from = now_sec.saturating_sub(RATE_SECONDS);
        let total: u64 = (0..RATE_SLOTS)
            .filter(|&i| {
                let s = self.sent_secs[i].load(Ordering::Relaxed);
                s != u64::MAX && s >= from && s < now_sec
            })
            .map(|i| self.sent_counts[i].load(Ordering::Relaxed))
            .sum();
        total as f64 / RATE_SECONDS as f64
    }

    /// Worker: something went wrong on this channel (kept: the last [`LAST_ERRORS`]).
    pub fn record_error(&self, text: impl Into<String>) {
        self.record_error_at(wall_ms(), text.into());
    }

    fn record_error_at(&self, at_ms: u64, text: String) {
        let mut e = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if e.len() == LAST_ERRORS {
            e.pop_front();
        }
        e.push_back(ErrorNote { at_ms, text });
    }

    /// The last errors, newest first.
    pub fn last_errors(&self) -> Vec<ErrorNote> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Receipt layer: a receipt arrived `latency_ms` after its message was submitted.
    pub fn record_receipt_latency(&self, latency_ms: u64) {
        self.latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(wall_ms(), latency_ms);
    }

    /// Receipt latency percentiles over the last minute.
    pub fn receipt_latency(&self) -> Latency {
        self.latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .percentiles(wall_ms())
    }
}

/// A sliding minute of latencies: a ring of ten-second histograms (a slice older than a
/// minute is cleared before reuse, and skipped when read).
#[derive(Debug)]
struct LatencyWindow {
    slices: Vec<(u64, Histogram<u64>)>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self {
            slices: (0..LATENCY_SLICES)
                .map(|_| (u64::MAX, new_histogram()))
                .collect(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 ms .. a day at 2 significant digits: bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_MAX_MS, 2).unwrap_or_else(|_| {
        Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant digits are valid"))
    })
}

impl LatencyWindow {
    fn record(&mut self, now_ms: u64, latency_ms: u64) {
        let slice = now_ms / LATENCY_SLICE_MS;
        let (at, h) = &mut self.slices[(slice % LATENCY_SLICES as u64) as usize];
        if *at != slice {
            h.reset();
            *at = slice;
        }
        h.saturating_record(latency_ms.clamp(1, LATENCY_MAX_MS));
    }

    fn percentiles(&self, now_ms: u64) -> Latency {
        let current = now_ms / LATENCY_SLICE_MS;
        let oldest = current.saturating_sub(LATENCY_SLICES as u64 - 1);
        let mut merged = new_histogram();
        for (at, h) in &self.slices {
            if *at != u64::MAX && *at >= oldest && *at <= current {
                let _ = merged.add(h);
            }
        }
        if merged.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: Some(merged.value_at_quantile(0.5)),
            p99: Some(merged.value_at_quantile(0.99)),
        }
    }
}

/// Every channel's status with its protocol, in config order (built by `serve`).
#[derive(Debug, Default)]
pub struct ChannelStatuses {
    channels: Vec<(String, std::sync::Arc<ChannelStatus>)>,
}

impl ChannelStatuses {
    /// Adds a channel speaking `protocol` (`smpp`, `cmpp`).
    pub fn push(&mut self, protocol: &str, status: std::sync::Arc<ChannelStatus>) {
        self.channels.push((protocol.to_owned(), status));
    }
    /// (protocol, status) per channel, in config order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ChannelStatus)> {
        self.channels.iter().map(|(p, s)| (p.as_str(), &**s))
    }
    /// The status of channel `name`.
    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<ChannelStatus>> {
        self.channels
            .iter()
            .find(|(_, s)| s.name() == name)
            .map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ChannelStatus {
        let (_, up) = watch::channel(2usize);
        let (_, rate) = watch::channel(40u32);
        ChannelStatus::new("c", 50, 2, 20, up, rate)
    }

    #[test]
    fn sent_rate_counts_complete_seconds_only() {
        let s = status();
        for sec in [100, 101, 101, 104, 105, 105, 105] {
            s.record_sent_at(sec);
        }
        // Seconds 100..=104 at 105: 1 + 2 + 1 = 4 parts over 5 s; 105 is still filling.
        assert!((s.sent_per_s_at(105) - 0.8).abs() < 1e-9);
        // Much later, the ring's old seconds no longer count.
        assert!(s.sent_per_s_at(200).abs() < 1e-9);
        // A reused slot starts from zero (108 shares 100's slot): 104, 105 ×3 and 108 at 109,
        // then 108 alone at 113 (not 100's part added to it).
        s.record_sent_at(108);
        assert!((s.sent_per_s_at(109) - 1.0).abs() < 1e-9);
        assert!((s.sent_per_s_at(113) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn errors_keep_the_last_ten_newest_first() {
        let s = status();
        for i in 0..12u64 {
            s.record_error_at(i, format!("e{i}"));
        }
        let e = s.last_errors();
        assert_eq!(e.len(), LAST_ERRORS);
        assert_eq!(e[0].text, "e11");
        assert_eq!(e[9].text, "e2");
        assert_eq!(s.binds_up(), 2);
        assert_eq!(s.rate_aimd(), 40);
    }

    #[test]
    fn latency_window_slides_over_a_minute() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.percentiles(0), Latency::default());
        for ms in 1..=100 {
            w.record(1_000_000, ms);
        }
        let l = w.percentiles(1_000_000);
        assert_eq!(l.p50, Some(50));
        assert_eq!(l.p99, Some(99));
        // Still inside the minute 50 s later; gone after 70 s.
        assert_eq!(w.percentiles(1_050_000).p50, Some(50));
        assert_eq!(w.percentiles(1_070_000), Latency::default());
        // A new slice in the same ring slot replaces the old one.
        w.record(1_060_000, 5_000);
        let p50 = w.percentiles(1_060_000).p50.expect("one receipt");
        assert!((4_950..=5_050).contains(&p50), "{p50}");
    }
}
