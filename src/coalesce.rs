//! How a connection loop batches its writes: it handles whatever wake-up is ready now before
//! it writes what its session queued, so one write carries the output of many wake-ups, and
//! it writes as soon as nothing is ready (no wait is ever added). The channel driver and the
//! SMPP server's connections share this policy.
//!
//! Why: written after every wake-up, each submit or answer went out alone. At full speed
//! the channel driver made 209 116 `sendto` calls for 242 384 submit_sm in 5 s, and the SMPP
//! server's writes were 6 % of the gateway's CPU (BENCHMARKS.md, "One write per batch of
//! wake-ups" and "… the SMPP server path"); on loopback every write also costs the peer a
//! receive.
//!
//! Invariant: at most [`WAKES_PER_WRITE`] wake-ups are handled between two writes, so a
//! connection that always has something ready still writes in bounded batches.

use std::future::Future;

use futures::FutureExt;

/// Wake-ups a connection handles at most before it writes.
pub const WAKES_PER_WRITE: u32 = 32;

/// Counts the wake-ups a connection handled since its last write.
#[derive(Debug, Default)]
pub struct Coalescer {
    unwritten: u32,
}

impl Coalescer {
    /// The next wake-up, if `next` is ready now and the batch has room. `None`: write what is
    /// queued (then call [`wrote`](Self::wrote)) and wait for `next` again.
    pub fn ready<F: Future>(&mut self, next: F) -> Option<F::Output> {
        if self.unwritten >= WAKES_PER_WRITE {
            return None;
        }
        let wake = next.now_or_never()?;
        self.unwritten += 1;
        Some(wake)
    }

    /// The connection wrote: a new batch begins.
    pub fn wrote(&mut self) {
        self.unwritten = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_wakes_are_taken_up_to_the_bound_and_pending_ones_never() {
        let mut c = Coalescer::default();
        assert_eq!(c.ready(std::future::pending::<()>()), None);
        for i in 0..WAKES_PER_WRITE {
            assert_eq!(c.ready(std::future::ready(i)), Some(i));
        }
        assert_eq!(
            c.ready(std::future::ready(0)),
            None,
            "the batch is full: write"
        );
        c.wrote();
        assert_eq!(c.ready(std::future::ready(7)), Some(7));
    }
}
