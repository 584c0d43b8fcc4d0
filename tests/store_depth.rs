//! Queue-depth counters against two oracles, for every backend: random sequences of store ops
//! (single batches, concurrent producers merged into one group commit, reopens) and, after
//! each step, `Store::queue_depths` (the maintained counters) must equal
//! - `Store::recount_queue_depths`, a brute-force scan of the ready and lease indexes, and
//! - the depths implied by every message's own state (`get`): queued/scheduled → ready in its
//!   (channel, lane); in flight → in flight on its channel.
//!
//! Cases: 48 per backend (`SLUICE_LONG_TESTS=1`: 256).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use sluice::store::{
    AnyBackend, BackendKind, Lane, Message, MessageId, MessageState, Op, OpResult, PartState,
    Payload, QueueDepths, Store, WriterConfig,
};

const CHANNELS: [&str; 2] = ["alpha", "beta"];
const ACCOUNT: &str = "acme";

#[derive(Clone, Debug)]
enum Act {
    Insert {
        ch: usize,
        lane: usize,
        due: u64,
        expires: Option<u64>,
        ended: bool,
        client_ref: Option<u8>,
    },
    Lease {
        ch: usize,
        lanes: Vec<usize>,
        limit: usize,
        lease_ms: u64,
    },
    Submitted {
        pick: usize,
        part: u16,
        parts: u16,
    },
    Requeue {
        pick: usize,
        due: u64,
        count: bool,
    },
    Finish {
        pick: usize,
    },
    Receipt {
        pick: usize,
        part: u16,
        delivered: bool,
    },
    Recover,
    Sweep {
        limit: usize,
    },
    Purge {
        limit: usize,
    },
}

#[derive(Clone, Debug)]
enum Step {
    /// One producer's atomic batch.
    Batch(Vec<Act>),
    /// Several producers at once (the writer merges what it can into one commit).
    Parallel(Vec<Vec<Act>>),
    /// Time passes.
    Tick(u64),
    /// Close and reopen the store (every lease returns to its queue).
    Reopen,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (0..2usize, 0..3usize, 0..4u64, prop::option::of(0..5u64), prop::bool::weighted(0.1), prop::option::of(0..4u8))
            .prop_map(|(ch, lane, due, expires, ended, client_ref)| Act::Insert {
                ch, lane, due: due * 500, expires: expires.map(|e| e * 400), ended, client_ref,
            }),
        3 => (0..2usize, prop::collection::vec(0..3usize, 1..4), 1..6usize, 1..4u64)
            .prop_map(|(ch, lanes, limit, l)| Act::Lease { ch, lanes, limit, lease_ms: l * 700 }),
        2 => (any::<usize>(), 1..3u16, 1..3u16)
            .prop_map(|(pick, part, parts)| Act::Submitted { pick, part: part.min(parts), parts }),
        1 => (any::<usize>(), 0..3u64, any::<bool>())
            .prop_map(|(pick, due, count)| Act::Requeue { pick, due: due * 300, count }),
        1 => any::<usize>().prop_map(|pick| Act::Finish { pick }),
        2 => (any::<usize>(), 1..3u16, any::<bool>())
            .prop_map(|(pick, part, delivered)| Act::Receipt { pick, part, delivered }),
        1 => Just(Act::Recover),
        1 => (1..5usize).prop_map(|limit| Act::Sweep { limit }),
        1 => (1..5usize).prop_map(|limit| Act::Purge { limit }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::collection::vec(act(), 1..4).prop_map(Step::Batch),
        2 => prop::collection::vec(prop::collection::vec(act(), 1..3), 2..4).prop_map(Step::Parallel),
        2 => (1..5u64).prop_map(|t| Step::Tick(t * 350)),
        1 => Just(Step::Reopen),
    ]
}

fn cases() -> u32 {
    if std::env::var_os("SLUICE_LONG_TESTS").is_some() {
        256
    } else {
        48
    }
}

/// The test's memory of what it stored: ids in insertion order and their channels.
struct Run {
    kind: BackendKind,
    store: Option<Store<AnyBackend>>,
    now: u64,
    ids: Vec<(MessageId, &'static str)>,
}

impl Run {
    fn open(kind: BackendKind, dir: &Path, now: u64) -> Store<AnyBackend> {
        Store::open(
            AnyBackend::open(kind, dir).expect("backend opens"),
            WriterConfig::default(),
            now,
        )
        .expect("store opens")
    }

    fn store(&self) -> &Store<AnyBackend> {
        self.store.as_ref().expect("store is open")
    }

    fn pick(&self, n: usize) -> Option<(MessageId, &'static str)> {
        (!self.ids.is_empty()).then(|| self.ids[n % self.ids.len()])
    }

    /// The op for `a`, and the id it inserts (recorded before it is submitted).
    fn op(&mut self, a: &Act) -> Option<Op> {
        let now = self.now;
        Some(match *a {
            Act::Insert {
                ch,
                lane,
                due,
                expires,
                ended,
                client_ref,
            } => {
                let id = self.store().ids().next(now);
                let payload = Payload::Text {
                    text: "depth".into(),
                    encoding: Default::default(),
                };
                let mut m = Message::new(
                    id,
                    ACCOUNT,
                    "+8613800138000",
                    payload,
                    CHANNELS[ch],
                    now + due,
                    now,
                );
                m.lane = Lane::ALL[lane];
                m.expires_at_ms = expires.map(|e| now + e);
                m.client_ref = client_ref.map(|r| format!("ref-{r}"));
                if ended {
                    m.state = MessageState::Failed;
                }
                self.ids.push((id, CHANNELS[ch]));
                Op::Insert(Box::new(m))
            }
            Act::Lease {
                ch,
                ref lanes,
                limit,
                lease_ms,
            } => Op::Lease {
                channel: CHANNELS[ch].into(),
                lanes: lanes.iter().map(|&l| Lane::ALL[l]).collect(),
                now_ms: now,
                limit,
                lease_ms,
            },
            Act::Submitted { pick, part, parts } => {
                let (id, _) = self.pick(pick)?;
                Op::Submitted {
                    id,
                    part,
                    parts,
                    center_id: compact_str::format_compact!("{}-{part}", id.0),
                    now_ms: now,
                }
            }
            Act::Requeue { pick, due, count } => {
                let (id, _) = self.pick(pick)?;
                let due_ms = now + due;
                if count {
                    Op::Requeue { id, due_ms }
                } else {
                    Op::Release { id, due_ms }
                }
            }
            Act::Finish { pick } => Op::Finish {
                id: self.pick(pick)?.0,
                state: MessageState::Rejected,
                stat: "REJECTD".into(),
                err: "001".into(),
                now_ms: now,
            },
            Act::Receipt {
                pick,
                part,
                delivered,
            } => {
                let (id, ch) = self.pick(pick)?;
                Op::Receipt {
                    channel: ch.into(),
                    center_id: compact_str::format_compact!("{}-{part}", id.0),
                    part_state: if delivered {
                        PartState::Delivered
                    } else {
                        PartState::Undeliverable
                    },
                    stat: if delivered { "DELIVRD" } else { "UNDELIV" }.into(),
                    err: "000".into(),
                    now_ms: now,
                }
            }
            Act::Recover => Op::Recover { now_ms: now },
            Act::Sweep { limit } => Op::SweepExpired { now_ms: now, limit },
            Act::Purge { limit } => Op::Purge {
                before_ms: now + 1,
                limit,
            },
        })
    }

    fn ops(&mut self, acts: &[Act]) -> Vec<Op> {
        acts.iter().filter_map(|a| self.op(a)).collect()
    }

    fn step(&mut self, s: &Step, dir: &Path) {
        match s {
            Step::Batch(acts) => {
                let ops = self.ops(acts);
                let results = self.store().submit_blocking(ops).expect("batch commits");
                assert!(
                    !results.iter().any(|r| matches!(r, OpResult::Invalid(_))),
                    "{results:?}"
                );
            }
            Step::Parallel(batches) => {
                let batches: Vec<Vec<Op>> = batches.iter().map(|b| self.ops(b)).collect();
                let store = self.store();
                std::thread::scope(|s| {
                    for ops in batches {
                        s.spawn(move || store.submit_blocking(ops).expect("batch commits"));
                    }
                });
            }
            Step::Tick(t) => self.now += t,
            Step::Reopen => {
                // Close first: the engine's file lock goes when the last handle's writer joins.
                self.store = None;
                self.store = Some(Self::open(self.kind, dir, self.now));
            }
        }
    }

    /// Depths implied by each message's state.
    fn depths_of_states(&self) -> QueueDepths {
        let mut d = QueueDepths::default();
        // An id answered `Duplicate` was never stored, so the generator may hand it out again
        // after a reopen: count each id once.
        let ids: std::collections::BTreeSet<MessageId> =
            self.ids.iter().map(|(id, _)| *id).collect();
        for id in &ids {
            let Some(m) = self.store().get(*id).expect("get") else {
                continue;
            };
            match m.state {
                MessageState::Queued | MessageState::Scheduled => {
                    *d.ready
                        .entry((m.channel.into_string(), m.lane))
                        .or_insert(0) += 1;
                }
                MessageState::InFlight => {
                    *d.in_flight.entry(m.channel.into_string()).or_insert(0) += 1
                }
                _ => {}
            }
        }
        d
    }

    fn check(&self, at: usize) -> Result<(), TestCaseError> {
        let counted = self.store().queue_depths().without_zeros();
        let scanned = self.store().recount_queue_depths().expect("recount");
        prop_assert_eq!(&counted, &scanned, "counters vs scan after step {}", at);
        prop_assert_eq!(
            &counted,
            &self.depths_of_states(),
            "counters vs message states after step {}",
            at
        );
        Ok(())
    }
}

fn run(kind: BackendKind, steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = 1_000_000;
    let mut r = Run {
        kind,
        store: Some(Run::open(kind, dir.path(), now)),
        now,
        ids: Vec::new(),
    };
    r.check(0)?;
    for (i, s) in steps.iter().enumerate() {
        r.step(s, dir.path());
        r.check(i + 1)?;
    }
    // A last reopen: leases come back, counters still exact.
    r.step(&Step::Reopen, dir.path());
    r.check(steps.len() + 1)?;
    prop_assert!(r.store().queue_depths().in_flight.values().all(|n| *n == 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn redb_counters_match_scans_and_states(steps in prop::collection::vec(step(), 1..32)) {
        run(BackendKind::Redb, &steps)?;
    }

    #[cfg(feature = "sled")]
    #[test]
    fn sled_counters_match_scans_and_states(steps in prop::collection::vec(step(), 1..32)) {
        run(BackendKind::Sled, &steps)?;
    }

    #[cfg(feature = "fjall")]
    #[test]
    fn fjall_counters_match_scans_and_states(steps in prop::collection::vec(step(), 1..32)) {
        run(BackendKind::Fjall, &steps)?;
    }
}

/// The snapshot keeps a queue that emptied at zero (so its gauge drops to 0).
#[test]
fn emptied_queues_read_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Run::open(BackendKind::Redb, dir.path(), 1_000);
    let id = store.ids().next(1_000);
    let payload = Payload::Text {
        text: "x".into(),
        encoding: Default::default(),
    };
    let m = Message::new(id, ACCOUNT, "+861", payload, "alpha", 1_000, 1_000);
    store
        .submit_blocking(vec![Op::Insert(Box::new(m))])
        .unwrap();
    assert_eq!(store.queue_depths().ready("alpha", Lane::Notification), 1);
    let leased =
        futures::executor::block_on(store.lease("alpha", Lane::Notification, 1_000, 5, 100))
            .unwrap();
    assert_eq!(leased.messages.len(), 1);
    let d = store.queue_depths();
    assert_eq!(
        d.ready,
        BTreeMap::from([(("alpha".to_owned(), Lane::Notification), 0)])
    );
    assert_eq!(d.in_flight, BTreeMap::from([("alpha".to_owned(), 1)]));
    assert_eq!(d.clone().without_zeros().ready, BTreeMap::new());
}
