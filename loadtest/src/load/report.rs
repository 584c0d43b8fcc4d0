//! The load generator's results: counters plus hdrhistogram percentiles, serializable as the
//! JSON summary file and printable as a short human report.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// A histogram for 1 µs … 1 h with 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Receipt results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlrReport {
    pub received: u64,
    /// Receipts matched to a submit of this run (end-to-end latency known).
    pub matched: u64,
    /// Receipts whose id was not (yet) known, e.g. from an earlier run.
    pub unmatched: u64,
    /// Receipts that arrived before their submit response.
    pub before_response: u64,
    pub by_stat: BTreeMap<String, u64>,
    /// Submit written → receipt read.
    pub latency: Latency,
    /// Receipts received per second, from the start to the last receipt.
    #[serde(default)]
    pub per_s: f64,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub target: String,
    pub connections: usize,
    pub window: usize,
    /// Requested rate (0 = max).
    pub rate: f64,
    pub elapsed_s: f64,
    /// Messages taken from the source (each possibly several parts).
    pub messages_started: u64,
    /// Messages all of whose parts were accepted.
    pub messages_accepted: u64,
    /// Messages given up (permanent error on a part).
    pub messages_failed: u64,
    /// Submit PDUs / HTTP messages written, retries included.
    pub submits_sent: u64,
    pub parts_accepted: u64,
    /// parts_accepted / elapsed.
    pub accepted_per_s: f64,
    /// Submit responses read, of any result (SMPP and CMPP).
    #[serde(default)]
    pub responses: u64,
    /// Responses per second, from the start to the last response (the dlr wait excluded).
    #[serde(default)]
    pub responses_per_s: f64,
    /// Parts written again after a throttle, queue-full, temporary error or disconnect.
    pub resubmits: u64,
    /// Error responses by status (`smpp:0x00000058`, `http:429`, …).
    pub errors: BTreeMap<String, u64>,
    pub disconnects: u64,
    /// Parts in flight (unanswered) when a connection dropped: upper bound for duplicates.
    pub unacked_at_disconnect: u64,
    pub bind_failures: u64,
    pub response_timeouts: u64,
    /// Submit written → response read (HTTP: request → response, per message batch).
    pub submit_latency: Latency,
    pub dlr: DlrReport,
    pub mo_received: u64,
}

impl Summary {
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let s = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, s)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.submit_latency;
        writeln!(
            f,
            "target {}  connections {}  window {}  elapsed {:.2}s",
            self.target, self.connections, self.window, self.elapsed_s
        )?;
        writeln!(
            f,
            "messages accepted {} / started {} (failed {})  parts accepted {}  submits sent {}  resubmits {}",
            self.messages_accepted,
            self.messages_started,
            self.messages_failed,
            self.parts_accepted,
            self.submits_sent,
            self.resubmits
        )?;
        writeln!(
            f,
            "accepted/s {:.0}  responses {} ({:.0}/s to the last response)",
            self.accepted_per_s, self.responses, self.responses_per_s
        )?;
        writeln!(
            f,
            "submit→resp µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count
        )?;
        if self.dlr.received > 0 {
            let d = &self.dlr.latency;
            writeln!(
                f,
                "DLR received {} ({:.0}/s to the last) matched {} early {}  e2e µs p50 {} p90 {} p99 {} p99.9 {} max {}  {:?}",
                self.dlr.received,
                self.dlr.per_s,
                self.dlr.matched,
                self.dlr.before_response,
                d.p50_us,
                d.p90_us,
                d.p99_us,
                d.p999_us,
                d.max_us,
                self.dlr.by_stat
            )?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "errors {:?}", self.errors)?;
        }
        if self.disconnects > 0 || self.bind_failures > 0 || self.response_timeouts > 0 {
            writeln!(
                f,
                "disconnects {} (unacked {})  bind failures {}  response timeouts {}",
                self.disconnects,
                self.unacked_at_disconnect,
                self.bind_failures,
                self.response_timeouts
            )?;
        }
        Ok(())
    }
}
