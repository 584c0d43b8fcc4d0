//! `[runtime]`: the threads `sluice serve` runs its async side on.
//!
//! Why a key at all: the store runs two threads of its own (the writer, which is the busiest
//! thread at full speed, and the redo log's), so tokio's default of one worker per core puts
//! more busy threads than cores on a small machine. On the 2-core reference machine one
//! worker instead of two moved more messages for less CPU (BENCHMARKS.md, "One core for the
//! store writer"). The hosted campaign service gets a runtime of its own, so its SQLite work,
//! which holds the service's lock for up to seconds while a launch is planned, never stalls
//! the gateway's workers.

use serde::{Deserialize, Serialize};

/// `[runtime]` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// The gateway's tokio worker threads; absent: one per core but one, at least one
    /// ([`RuntimeConfig::gateway_workers`]).
    pub worker_threads: Option<usize>,
    /// The hosted campaign service's worker threads; absent: 1.
    pub campaign_worker_threads: Option<usize>,
}

/// Most worker threads either key takes: more than this is a typo, not a machine.
pub(crate) const MAX_WORKERS: usize = 1024;

impl RuntimeConfig {
    /// The gateway's worker count on a machine with `cores` cores.
    pub fn gateway_workers(&self, cores: usize) -> usize {
        self.worker_threads
            .unwrap_or_else(|| cores.saturating_sub(1).max(1))
    }

    /// The hosted campaign service's worker count.
    pub fn campaign_workers(&self) -> usize {
        self.campaign_worker_threads.unwrap_or(1)
    }

    /// The first key out of range, with the reason.
    pub(crate) fn check(&self) -> Option<(&'static str, String)> {
        let bad = |n: Option<usize>| n.is_some_and(|n| n == 0 || n > MAX_WORKERS);
        let reason = || format!("must be between 1 and {MAX_WORKERS}");
        if bad(self.worker_threads) {
            return Some(("runtime.worker_threads", reason()));
        }
        if bad(self.campaign_worker_threads) {
            return Some(("runtime.campaign_worker_threads", reason()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_leaves_a_core_to_the_store_writer_unless_told() {
        let auto = RuntimeConfig::default();
        assert_eq!(auto.gateway_workers(1), 1);
        assert_eq!(auto.gateway_workers(2), 1);
        assert_eq!(auto.gateway_workers(8), 7);
        assert_eq!(auto.campaign_workers(), 1);
        let set = RuntimeConfig {
            worker_threads: Some(3),
            campaign_worker_threads: Some(2),
        };
        assert_eq!(set.gateway_workers(2), 3);
        assert_eq!(set.campaign_workers(), 2);
        assert_eq!(set.check(), None);
    }

    #[test]
    fn zero_and_absurd_counts_are_refused_by_key() {
        let zero = RuntimeConfig {
            worker_threads: Some(0),
            ..RuntimeConfig::default()
        };
        assert_eq!(zero.check().map(|(k, _)| k), Some("runtime.worker_threads"));
        let huge = RuntimeConfig {
            campaign_worker_threads: Some(MAX_WORKERS + 1),
            ..RuntimeConfig::default()
        };
        assert_eq!(
            huge.check().map(|(k, _)| k),
            Some("runtime.campaign_worker_threads")
        );
    }
}
