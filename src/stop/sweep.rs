//! The stop sweeper: drives `Store::stop_step` for every tag stop until it is done.
//!
//! One task per gateway. It wakes when a stop is recorded (the cancel endpoint notifies it),
//! at start (a sweep the previous process did not finish resumes from its durable cursor),
//! and every `retire_every` to retire stops whose hold ended. Steps run back to back, each
//! one durable commit of up to `step` messages: large enough that a two-million-message tag
//! takes a few hundred commits, small enough that ingress and leases still get commits in
//! between (the store's writer interleaves them).

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::metrics::CANCELLED;
use crate::store::{GatewayStore, StoreError};

/// Sweeper tuning.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Tag index entries visited per commit.
    pub step: usize,
    /// How often stops whose hold ended are retired.
    pub retire_every: Duration,
}

impl Default for SweepConfig {
    /// 8192 per commit, retire every 30 s.
    fn default() -> Self {
        Self {
            step: 8192,
            retire_every: Duration::from_secs(30),
        }
    }
}

/// The sweeper task.
pub struct Sweeper<C: Clock> {
    store: GatewayStore,
    clock: C,
    config: SweepConfig,
    /// Notified by whoever records a stop.
    wake: Arc<Notify>,
    /// Called after each step that cancelled messages (wakes the receipt outbox pump).
    on_cancelled: Arc<dyn Fn() + Send + Sync>,
}

impl<C: Clock> std::fmt::Debug for Sweeper<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Sweeper<C> {
    /// A sweeper on `store`, woken through `wake`.
    pub fn new(
        store: impl Into<GatewayStore>,
        clock: C,
        config: SweepConfig,
        wake: Arc<Notify>,
        on_cancelled: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            store: store.into(),
            clock,
            config,
            wake,
            on_cancelled,
        }
    }

    /// Runs until `stop` turns true. Store failures are logged and retried at the next wake.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.sweep_all(&stop).await {
                tracing::warn!(error = %e, "Stop sweep failed; retrying later.");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.retire_every) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Sweeps every unfinished stop to its end, then retires expired ones. Returns how many
    /// messages the sweeps cancelled.
    ///
    /// # Errors
    /// The store failed.
    pub async fn sweep_all(&self, stop: &watch::Receiver<bool>) -> Result<u64, StoreError> {
        let mut total = 0;
        for id in self.store.unswept_stops()? {
            loop {
                if *stop.borrow() {
                    return Ok(total);
                }
                let Some(rec) = self
                    .store
                    .stop_step(id, self.clock.now_ms(), self.config.step)
                    .await?
                else {
                    break;
                };
                let n = rec.step_cancelled;
                if n > 0 {
                    counter!(CANCELLED).increment(n);
                    total += n;
                    (self.on_cancelled)();
                }
                if rec.done() {
                    tracing::info!(
                        stop = rec.id,
                        account = %rec.account,
                        cancelled = rec.counts.cancelled,
                        already_submitted = rec.counts.already_submitted,
                        in_flight = rec.counts.in_flight,
                        "Stop swept."
                    );
                    break;
                }
            }
        }
        let retired = self.store.retire_stops(self.clock.now_ms()).await?;
        if retired > 0 {
            tracing::debug!(retired, "Stops retired.");
        }
        Ok(total)
    }
}
