//! Shared harness for the channel integration tests: a worker pointed at a center on
//! 127.0.0.1, fed directly (the store is left out), with its outcomes and events collected.
//! Every wait is bounded by [`WAIT`]; nothing sleeps to schedule.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use sluice::channel::ChannelEvent;
use sluice::channel::backoff::Backoff;
use sluice::channel::smpp::{self, WorkerConfig};
use sluice::channel::{Content, OutboundMessage, Outcome, Settled, WorkerHandle};
use sluice_protocols::smpp::session::esme::SessionConfig;
use tokio::sync::mpsc;

/// Upper bound for any socket-driven wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A worker config with fast timers for tests.
pub fn config(addr: String, rate: u32) -> WorkerConfig {
    let session = SessionConfig {
        system_id: "esme".into(),
        password: "pw".into(),
        window: 10,
        response_timeout: Duration::from_secs(2),
        enquire_link_interval: Duration::from_secs(5),
        ..SessionConfig::default()
    };
    let mut c = WorkerConfig::new(
        "sim",
        addr,
        session,
        NonZeroU32::new(rate).expect("rate > 0"),
    );
    c.reconnect = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    c.retry.backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    c
}

/// A text message with a unique token.
pub fn text(id: u64, text: String) -> OutboundMessage {
    OutboundMessage {
        id,
        attempt: 0,
        from: Some("10086".into()),
        to: compact_str::format_compact!("+86138{id:08}"),
        content: Content::Text { text, hint: None },
    }
}

/// Records an event; as the receipt layer would, acknowledges a receipt once kept.
fn keep(seen: &mut Vec<ChannelEvent>, event: ChannelEvent) {
    if let ChannelEvent::Receipt { ack, .. } = &event {
        ack.done();
    }
    seen.push(event);
}

/// A running worker with its queues.
pub struct Rig {
    pub input: mpsc::Sender<OutboundMessage>,
    /// Outcomes; dropping one returns the worker's credit (no store here).
    pub outcomes: mpsc::Receiver<Settled>,
    pub events: mpsc::Receiver<ChannelEvent>,
    pub handle: WorkerHandle,
    /// Every event seen so far, in arrival order.
    pub seen: Vec<ChannelEvent>,
    /// Raw center id of every accepted part, with `seen.len()` when its outcome arrived
    /// (events are read before outcomes when both are ready, so an event at an index below
    /// that arrived first).
    pub accepted: Vec<(String, usize)>,
}

impl Rig {
    pub fn start(config: WorkerConfig) -> Self {
        let capacity = config.capacity();
        Self::start_with(capacity, |i, o, e| smpp::spawn(config, i, o, e))
    }

    /// A CMPP channel (`sluice::channel::cmpp::spawn`) fed the same way.
    pub fn start_cmpp(config: sluice::channel::cmpp::CmppChannelConfig) -> Self {
        let capacity = config.capacity();
        Self::start_with(capacity, |i, o, e| {
            sluice::channel::cmpp::spawn(config, i, o, e)
        })
    }

    fn start_with(
        capacity: usize,
        spawn: impl FnOnce(
            mpsc::Receiver<OutboundMessage>,
            mpsc::Sender<Settled>,
            mpsc::Sender<ChannelEvent>,
        ) -> WorkerHandle,
    ) -> Self {
        let (input, input_rx) = mpsc::channel(capacity);
        let (outcomes_tx, outcomes) = mpsc::channel(1024);
        let (events_tx, events) = mpsc::channel(65_536);
        let handle = spawn(input_rx, outcomes_tx, events_tx);
        Self {
            input,
            outcomes,
            events,
            handle,
            seen: Vec::new(),
            accepted: Vec::new(),
        }
    }

    /// Feeds `messages` and collects one final outcome per message (`Sent` / `Failed`),
    /// re-feeding `Retry` outcomes as the store would (attempt + 1). Returns outcomes by id.
    pub async fn run_all(&mut self, messages: Vec<OutboundMessage>) -> HashMap<u64, Outcome> {
        let by_id: HashMap<u64, OutboundMessage> =
            messages.iter().map(|m| (m.id, m.clone())).collect();
        let mut waiting: Vec<OutboundMessage> = messages;
        waiting.reverse();
        let mut finals = HashMap::new();
        let total = by_id.len();
        let deadline = tokio::time::Instant::now() + WAIT;
        while finals.len() < total {
            let next = waiting.last().cloned();
            tokio::select! {
                biased;
                e = self.events.recv() => keep(&mut self.seen, e.expect("worker alive")),
                r = async { self.input.reserve().await }, if next.is_some() => {
                    r.expect("worker alive").send(waiting.pop().expect("checked"));
                }
                o = self.outcomes.recv() => match o.expect("worker alive").outcome {
                    Outcome::Retry { id, attempts, .. } => {
                        let mut m = by_id[&id].clone();
                        m.attempt = attempts;
                        waiting.insert(0, m);
                    }
                    Outcome::Release { id, .. } => waiting.insert(0, by_id[&id].clone()),
                    other => {
                        if let Outcome::Sent { center_ids, .. } = &other {
                            let at = self.seen.len();
                            self.accepted
                                .extend(center_ids.iter().map(|c| (c.to_string(), at)));
                        }
                        let id = match &other {
                            Outcome::Sent { id, .. } | Outcome::Failed { id, .. } => *id,
                            Outcome::Retry { .. } | Outcome::Release { .. } => unreachable!(),
                        };
                        assert!(finals.insert(id, other).is_none(), "two final outcomes for {id}");
                    }
                },
                () = tokio::time::sleep_until(deadline) => panic!(
                    "timed out: {} of {total} messages finished", finals.len()
                ),
            }
        }
        finals
    }

    /// Collects events until `done(seen)` holds (bounded by [`WAIT`]).
    pub async fn events_until(&mut self, done: impl Fn(&[ChannelEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.seen) {
            tokio::select! {
                e = self.events.recv() => keep(&mut self.seen, e.expect("worker alive")),
                () = tokio::time::sleep_until(deadline) => panic!("timed out waiting for events; seen {} events", self.seen.len()),
            }
        }
    }

    /// Receipt events by raw center id.
    pub fn receipts(&self) -> HashMap<String, String> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Receipt {
                    center_id, stat, ..
                } => Some((center_id.to_string(), stat.to_string())),
                _ => None,
            })
            .collect()
    }

    pub async fn stop(self) {
        drop(self.input);
        tokio::time::timeout(WAIT, self.handle.shutdown())
            .await
            .expect("worker shuts down");
    }
}

/// The center ids of a `Sent` outcome.
pub fn center_ids(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Sent { center_ids, .. } => center_ids.iter().map(ToString::to_string).collect(),
        other => panic!("expected Sent, got {other:?}"),
    }
}
