//! Operators' pause switches: per channel and per account, durable, effective at once.
//!
//! The store keeps each switch (`Store::set_pause`), so a restart comes back paused. A
//! channel's switch is also mirrored in a `watch` its dispatcher reads: a paused channel
//! leases nothing from the next loop turn (well within a second) and hands back what it had
//! buffered; its messages stay queued. An account's switch needs no mirror: every lease reads
//! it in its own transaction and parks that account's messages instead of leasing them, and
//! turning it on bumps the store's stop epoch so dispatchers hand back what they buffered.
//! Resuming an account unparks its messages (in steps) before answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::gauge;
use tokio::sync::{Notify, watch};

use crate::metrics::{LABEL_KIND, PAUSED};
use crate::store::{GatewayStore, PauseTarget, StoreError};

/// Parked messages put back per commit when an account resumes.
const UNPARK_STEP: usize = 8192;

/// The pause switches of one gateway.
#[derive(Debug)]
pub struct Pauses {
    store: GatewayStore,
    channels: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Every dispatcher's wake: an account's resume puts messages back in ready queues that
    /// dispatchers may have found empty and gone to sleep on.
    wakes: Mutex<Vec<Arc<Notify>>>,
}

impl Pauses {
    /// Loads the switches from the store (what a previous run left on).
    ///
    /// # Errors
    /// The store failed.
    pub fn load(store: impl Into<GatewayStore>) -> Result<Self, StoreError> {
        let mut channels = HashMap::new();
        let store: GatewayStore = store.into();
        for p in store.pauses()? {
            if let PauseTarget::Channel(name) = p {
                channels.insert(name, watch::Sender::new(true));
            }
        }
        let me = Self {
            store,
            channels: Mutex::new(channels),
            wakes: Mutex::new(Vec::new()),
        };
        me.record_gauges()?;
        Ok(me)
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The switch of `channel`, for its dispatcher, whose `wake` is notified when an
    /// account resumes.
    pub fn channel(&self, channel: &str, wake: Arc<Notify>) -> watch::Receiver<bool> {
        self.wakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(wake);
        self.channels()
            .entry(channel.to_owned())
            .or_insert_with(|| watch::Sender::new(false))
            .subscribe()
    }

    /// Whether `channel`'s switch is on now (the value its dispatcher reads).
    pub fn channel_paused(&self, channel: &str) -> bool {
        self.channels().get(channel).is_some_and(|s| *s.borrow())
    }

    /// Turns `target`'s switch on or off; `true` if it changed. Resuming an account puts its
    /// parked messages back in their queues before returning.
    ///
    /// # Errors
    /// The store failed.
    pub async fn set(&self, target: PauseTarget, paused: bool) -> Result<bool, StoreError> {
        let changed = self.store.set_pause(target.clone(), paused).await?;
        match &target {
            PauseTarget::Channel(name) => {
                self.channels()
                    .entry(name.clone())
                    .or_insert_with(|| watch::Sender::new(paused))
                    .send_replace(paused);
            }
            PauseTarget::Account(name) if !paused => {
                let mut moved = 0;
                loop {
                    let n = self.store.unpark(name, UNPARK_STEP).await?;
                    moved += n;
                    if n < UNPARK_STEP {
                        break;
                    }
                }
                if moved > 0 {
                    tracing::info!(account = %name, moved, "Parked messages back in their queues.");
                    for w in self
                        .wakes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .iter()
                    {
                        w.notify_one();
                    }
                }
            }
            PauseTarget::Account(_) => {}
        }
        if changed {
            tracing::info!(?target, paused, "Pause switch changed.");
        }
        self.record_gauges()?;
        Ok(changed)
    }

    /// Every switch that is on.
    ///
    /// # Errors
    /// The store failed.
    pub fn list(&self) -> Result<Vec<PauseTarget>, StoreError> {
        self.store.pauses()
    }

    fn record_gauges(&self) -> Result<(), StoreError> {
        let on = self.list()?;
        let channels = on
            .iter()
            .filter(|p| matches!(p, PauseTarget::Channel(_)))
            .count();
        gauge!(PAUSED, LABEL_KIND => "channel").set(channels as f64);
        gauge!(PAUSED, LABEL_KIND => "account").set((on.len() - channels) as f64);
        Ok(())
    }
}
