//! The emergency stop and pause ops of the store, through the public `Store` API, on every
//! backend (`suite!` below): tag and id stops, the lease and requeue filters, the sweep and
//! its resumption after a reopen, retirement, account pauses (park / unpark).

use std::collections::BTreeMap;
use std::path::Path;

use sluice::store::{
    Backend, Lane, Message, MessageId, MessageState, Op, OpResult, PauseTarget, Payload,
    ReceiptEvent, StopFilter, Store, WriterConfig,
};

const CH: &str = "smsc1";
const HOLD: u64 = 60_000;

fn msg<B: Backend>(store: &Store<B>, account: &str, task: &str, due_ms: u64) -> Message {
    let mut m = Message::new(
        store.ids().next(1_000),
        account,
        "+8613800138000",
        Payload::Text {
            text: "hi".into(),
            encoding: Default::default(),
        },
        CH,
        due_ms,
        1_000,
    );
    m.tags = BTreeMap::from([
        ("task".to_owned(), task.to_owned()),
        ("subscriber".to_owned(), m.id.to_string()),
    ]);
    m
}

fn insert<B: Backend>(store: &Store<B>, msgs: Vec<Message>) -> Vec<MessageId> {
    let ops = msgs.into_iter().map(|m| Op::Insert(Box::new(m))).collect();
    store
        .submit_blocking(ops)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            OpResult::Inserted(id) => id,
            other => panic!("expected Inserted, got {other:?}"),
        })
        .collect()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

fn tag(task: &str) -> StopFilter {
    StopFilter::Tag {
        key: "task".into(),
        value: task.into(),
    }
}

fn events<B: Backend>(store: &Store<B>, account: &str) -> Vec<ReceiptEvent> {
    store
        .outbox(account, 0, 100_000)
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_slice(&e.body).unwrap())
        .collect()
}

fn state<B: Backend>(store: &Store<B>, id: MessageId) -> MessageState {
    store.get(id).unwrap().unwrap().state
}

fn depths_consistent<B: Backend>(store: &Store<B>) {
    assert_eq!(
        store.queue_depths().without_zeros(),
        store.recount_queue_depths().unwrap()
    );
}

/// Steps the stop to its end with `limit` per step; returns the steps taken.
fn sweep<B: Backend>(store: &Store<B>, id: u64, limit: usize) -> usize {
    for n in 1..10_000 {
        let r = block(store.stop_step(id, 5_000, limit)).unwrap().unwrap();
        if r.done() {
            return n;
        }
    }
    panic!("sweep never ended");
}

fn tag_stop_cancels_queued_and_reports_the_rest<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    // The first two (earliest due) are leased: one gets submitted, one stays in flight.
    let mut ours: Vec<Message> = (0..10)
        .map(|i| msg(&store, "acme", "42", 1_000 + i))
        .collect();
    ours.extend((0..3).map(|_| msg(&store, "acme", "7", 2_000)));
    let theirs: Vec<Message> = (0..3).map(|_| msg(&store, "other", "42", 2_000)).collect();
    let ids = insert(&store, ours);
    let other_ids = insert(&store, theirs);
    let leased = block(store.lease(CH, Lane::Notification, 1_001, 2, 60_000)).unwrap();
    assert_eq!(
        leased.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let sent = store
        .submit_blocking(vec![Op::Submitted {
            id: ids[0],
            part: 1,
            parts: 1,
            center_id: "C0".into(),
            now_ms: 1_002,
        }])
        .unwrap();
    assert_eq!(sent, vec![OpResult::Updated(MessageState::Sent)]);

    let rec = block(store.stop("acme", tag("42"), 3_000, HOLD))
        .unwrap()
        .unwrap();
    assert!(!rec.done());
    assert_eq!(
        rec.counts.cancelled, 0,
        "a tag stop answers before sweeping"
    );
    assert_eq!(store.unswept_stops().unwrap(), vec![rec.id]);
    assert!(
        sweep(&store, rec.id, 3) > 1,
        "small steps take several commits"
    );
    let rec = store.stop_status(rec.id).unwrap().unwrap();
    assert!(rec.done());
    assert_eq!(rec.counts.cancelled, 8);
    assert_eq!(rec.counts.already_submitted, 1);
    assert_eq!(rec.counts.in_flight, 1);
    assert!(store.unswept_stops().unwrap().is_empty());
    for id in &ids[2..10] {
        assert_eq!(state(&store, *id), MessageState::Cancelled);
    }
    assert_eq!(state(&store, ids[0]), MessageState::Sent);
    assert_eq!(state(&store, ids[1]), MessageState::InFlight);
    // The one in flight comes back (a retry): the stop ends it instead of requeueing it.
    let back = store
        .submit_blocking(vec![Op::Requeue {
            id: ids[1],
            due_ms: 3_500,
        }])
        .unwrap();
    assert_eq!(back, vec![OpResult::Updated(MessageState::Cancelled)]);
    assert_eq!(
        store.stop_status(rec.id).unwrap().unwrap().counts.cancelled,
        9
    );
    // One receipt event per cancelled message, state cancelled, stat CANCELD.
    let ev = events(&store, "acme");
    assert_eq!(ev.len(), 9);
    let mut seen: Vec<MessageId> = ev.iter().map(|e| e.id).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 9);
    assert!(
        ev.iter()
            .all(|e| e.state == MessageState::Cancelled && e.stat == "CANCELD")
    );
    assert!(ev.iter().all(|e| e.tags["task"] == "42"));
    // Another task of the account and another account's same tag are untouched.
    for id in ids[10..].iter().chain(&other_ids) {
        assert_eq!(state(&store, *id), MessageState::Scheduled);
    }
    assert!(events(&store, "other").is_empty());
    let rest = block(store.lease(CH, Lane::Notification, 3_000, 100, 60_000)).unwrap();
    assert_eq!(rest.messages.len(), 6);
    assert!(rest.cancelled.is_empty());
    depths_consistent(&store);
}

fn lease_cancels_matches_before_the_sweep<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let ids = insert(
        &store,
        (0..5).map(|_| msg(&store, "acme", "42", 1_000)).collect(),
    );
    let keep = insert(&store, vec![msg(&store, "acme", "43", 1_000)]);
    let epoch = store.stop_epoch();
    let rec = block(store.stop("acme", tag("42"), 2_000, HOLD))
        .unwrap()
        .unwrap();
    assert_ne!(store.stop_epoch(), epoch, "dispatchers learn of the stop");
    // Before any sweep step: the lease hands out nothing of the tag.
    let leased = block(store.lease(CH, Lane::Notification, 2_000, 100, 60_000)).unwrap();
    assert_eq!(
        leased.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        keep
    );
    let mut cancelled = leased.cancelled.clone();
    cancelled.sort_unstable();
    assert_eq!(cancelled, ids);
    // The sweep finds nothing left to do, and the lease's cancellations are counted once.
    sweep(&store, rec.id, 100);
    let rec = store.stop_status(rec.id).unwrap().unwrap();
    assert_eq!(rec.counts.cancelled, 5);
    assert_eq!(events(&store, "acme").len(), 5);
    depths_consistent(&store);
}

fn id_stop_settles_each_id<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let ids = insert(
        &store,
        (0..4)
            .map(|i| msg(&store, "acme", "1", 1_000 + i))
            .collect(),
    );
    let other = insert(&store, vec![msg(&store, "other", "1", 1_010)]);
    // ids[0] sent, ids[1] in flight, ids[2] failed (final), ids[3] queued.
    let leased = block(store.lease(CH, Lane::Notification, 1_001, 2, 60_000)).unwrap();
    assert_eq!(leased.messages.len(), 2);
    store
        .submit_blocking(vec![
            Op::Submitted {
                id: ids[0],
                part: 1,
                parts: 1,
                center_id: "C0".into(),
                now_ms: 1_002,
            },
            Op::Finish {
                id: ids[2],
                state: MessageState::Failed,
                stat: "FAILED".into(),
                err: "000".into(),
                now_ms: 1_002,
            },
        ])
        .unwrap();
    let unknown = MessageId(u64::MAX - 1);
    let rec = block(store.stop(
        "acme",
        StopFilter::Ids {
            ids: vec![ids[0], ids[1], ids[2], ids[3], ids[3], unknown, other[0]],
        },
        2_000,
        HOLD,
    ))
    .unwrap()
    .unwrap();
    assert!(rec.done(), "an id stop is settled by its own commit");
    let c = rec.counts;
    assert_eq!(
        (
            c.cancelled,
            c.already_submitted,
            c.already_final,
            c.unknown,
            c.in_flight
        ),
        (1, 1, 1, 2, 1)
    );
    assert_eq!(state(&store, ids[3]), MessageState::Cancelled);
    assert_eq!(state(&store, other[0]), MessageState::Scheduled);
    // The in-flight one handed back unsent (a release) ends cancelled.
    let back = store
        .submit_blocking(vec![Op::Release {
            id: ids[1],
            due_ms: 2_001,
        }])
        .unwrap();
    assert_eq!(back, vec![OpResult::Updated(MessageState::Cancelled)]);
    let cancelled: Vec<String> = events(&store, "acme")
        .into_iter()
        .filter(|e| e.state == MessageState::Cancelled)
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(cancelled, vec![ids[3].to_string(), ids[1].to_string()]);
    depths_consistent(&store);
}

fn stop_sweep_resumes_after_reopen<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let (ids, stop);
    {
        let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
        ids = insert(
            &store,
            (0..20).map(|_| msg(&store, "acme", "42", 1_000)).collect(),
        );
        let rec = block(store.stop("acme", tag("42"), 2_000, HOLD))
            .unwrap()
            .unwrap();
        stop = rec.id;
        let rec = block(store.stop_step(stop, 2_000, 5)).unwrap().unwrap();
        assert!(!rec.done());
        assert_eq!(rec.counts.cancelled, 5);
        assert_eq!(rec.step_cancelled, 5);
    }
    let store = Store::open(open(dir), WriterConfig::default(), 3_000).unwrap();
    assert_eq!(store.unswept_stops().unwrap(), vec![stop]);
    assert_eq!(store.active_stops().unwrap().len(), 1);
    // Leasing after the restart already filters.
    let leased = block(store.lease(CH, Lane::Notification, 3_000, 3, 60_000)).unwrap();
    assert!(leased.messages.is_empty());
    assert_eq!(leased.cancelled.len(), 3);
    sweep(&store, stop, 5);
    let rec = store.stop_status(stop).unwrap().unwrap();
    assert_eq!(rec.counts.cancelled, 20);
    for id in &ids {
        assert_eq!(state(&store, *id), MessageState::Cancelled);
    }
    let ev = events(&store, "acme");
    assert_eq!(ev.len(), 20, "one receipt per message, none twice");
    depths_consistent(&store);
    assert_eq!(store.queue_depths().ready(CH, Lane::Notification), 0);
}

fn stops_retire_after_their_hold<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let rec = block(store.stop("acme", tag("42"), 1_000, 1_000))
        .unwrap()
        .unwrap();
    let swept = block(store.stop_step(rec.id, 2_000, 10)).unwrap().unwrap();
    assert!(swept.done());
    assert_eq!(block(store.retire_stops(2_500)).unwrap(), 0);
    // Still holding: a late message of the task is cancelled at lease.
    insert(&store, vec![msg(&store, "acme", "42", 1_000)]);
    let leased = block(store.lease(CH, Lane::Notification, 2_500, 10, 60_000)).unwrap();
    assert_eq!(leased.cancelled.len(), 1);
    assert_eq!(block(store.retire_stops(3_000)).unwrap(), 1);
    assert!(store.active_stops().unwrap().is_empty());
    assert!(store.stop_status(rec.id).unwrap().unwrap().done());
    // Retired: leases no longer look at it.
    insert(&store, vec![msg(&store, "acme", "42", 1_000)]);
    let leased = block(store.lease(CH, Lane::Notification, 3_000, 10, 60_000)).unwrap();
    assert_eq!(leased.messages.len(), 1);
    let second = block(store.stop("acme", tag("9"), 3_000, 1_000))
        .unwrap()
        .unwrap();
    assert_eq!(second.id, rec.id + 1, "stop ids are not reused");
}

fn only_indexed_tag_names_can_be_stopped<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    assert_eq!(store.stop_tags().unwrap(), vec!["task".to_owned()]);
    let by_group = || StopFilter::Tag {
        key: "subscriber".into(),
        value: "x".into(),
    };
    let refused = block(store.stop("acme", by_group(), 1_000, HOLD)).unwrap();
    assert!(refused.unwrap_err().contains("not indexed"));
    assert!(store.active_stops().unwrap().is_empty(), "nothing recorded");
    // Indexing a name covers messages stored from then on.
    block(store.set_stop_tags(vec!["task".into(), "subscriber".into()])).unwrap();
    let m = msg(&store, "acme", "1", 1_000);
    let id = m.id;
    let mut by_sub = m.tags.clone();
    by_sub.retain(|k, _| k == "subscriber");
    insert(&store, vec![m]);
    let value = by_sub["subscriber"].clone();
    let rec = block(store.stop(
        "acme",
        StopFilter::Tag {
            key: "subscriber".into(),
            value,
        },
        1_000,
        HOLD,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(rec.id, 1, "the refused stop used no id");
    sweep(&store, rec.id, 10);
    assert_eq!(state(&store, id), MessageState::Cancelled);
    assert_eq!(
        store.stop_status(rec.id).unwrap().unwrap().counts.cancelled,
        1
    );
}

fn paused_account_is_parked_then_unparked<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let ours;
    {
        let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
        ours = insert(
            &store,
            (0..3).map(|_| msg(&store, "acme", "1", 1_000)).collect(),
        );
        insert(
            &store,
            (0..2).map(|_| msg(&store, "other", "1", 1_000)).collect(),
        );
        assert!(block(store.set_pause(PauseTarget::Account("acme".into()), true)).unwrap());
        assert!(!block(store.set_pause(PauseTarget::Account("acme".into()), true)).unwrap());
        assert!(block(store.set_pause(PauseTarget::Channel(CH.into()), true)).unwrap());
        let leased = block(store.lease(CH, Lane::Notification, 2_000, 10, 60_000)).unwrap();
        assert_eq!(leased.messages.len(), 2);
        assert!(leased.messages.iter().all(|m| m.account == "other"));
        // Parked, not failed or expired: still queued, out of the ready index.
        for id in &ours {
            assert_eq!(state(&store, *id), MessageState::Queued);
        }
        assert_eq!(store.queue_depths().ready(CH, Lane::Notification), 0);
        depths_consistent(&store);
        let leased = block(store.lease(CH, Lane::Notification, 2_000, 10, 60_000)).unwrap();
        assert!(leased.messages.is_empty());
    }
    // The switches survive a restart.
    let store = Store::open(open(dir), WriterConfig::default(), 3_000).unwrap();
    let mut on = store.pauses().unwrap();
    on.sort();
    assert_eq!(
        on,
        vec![
            PauseTarget::Channel(CH.into()),
            PauseTarget::Account("acme".into())
        ]
    );
    assert!(block(store.set_pause(PauseTarget::Account("acme".into()), false)).unwrap());
    assert_eq!(block(store.unpark("acme", 2)).unwrap(), 2);
    assert_eq!(block(store.unpark("acme", 2)).unwrap(), 1);
    assert_eq!(block(store.unpark("acme", 2)).unwrap(), 0);
    // The three unparked, and the two leases of the previous run, recovered at open.
    assert_eq!(store.queue_depths().ready(CH, Lane::Notification), 5);
    depths_consistent(&store);
    let leased = block(store.lease(CH, Lane::Notification, 3_000, 10, 60_000)).unwrap();
    let mut got: Vec<MessageId> = leased
        .messages
        .iter()
        .filter(|m| m.account == "acme")
        .map(|m| m.id)
        .collect();
    got.sort_unstable();
    assert_eq!(got, ours);
}

macro_rules! suite {
    ($modname:ident, $open:expr) => {
        mod $modname {
            use super::*;

            fn run(test: fn(&Path, fn(&Path) -> sluice::store::AnyBackend)) {
                let dir = tempfile::tempdir().unwrap();
                test(dir.path(), $open);
            }

            #[test]
            fn tag_stop_cancels_queued_and_reports_the_rest() {
                run(super::tag_stop_cancels_queued_and_reports_the_rest);
            }
            #[test]
            fn lease_cancels_matches_before_the_sweep() {
                run(super::lease_cancels_matches_before_the_sweep);
            }
            #[test]
            fn id_stop_settles_each_id() {
                run(super::id_stop_settles_each_id);
            }
            #[test]
            fn stop_sweep_resumes_after_reopen() {
                run(super::stop_sweep_resumes_after_reopen);
            }
            #[test]
            fn stops_retire_after_their_hold() {
                run(super::stops_retire_after_their_hold);
            }
            #[test]
            fn only_indexed_tag_names_can_be_stopped() {
                run(super::only_indexed_tag_names_can_be_stopped);
            }
            #[test]
            fn paused_account_is_parked_then_unparked() {
                run(super::paused_account_is_parked_then_unparked);
            }
        }
    };
}

fn open_redb(p: &Path) -> sluice::store::AnyBackend {
    sluice::store::AnyBackend::open(sluice::store::BackendKind::Redb, p).unwrap()
}

suite!(redb, open_redb);

#[cfg(feature = "sled")]
fn open_sled(p: &Path) -> sluice::store::AnyBackend {
    sluice::store::AnyBackend::open(sluice::store::BackendKind::Sled, p).unwrap()
}

#[cfg(feature = "sled")]
suite!(sled, open_sled);

#[cfg(feature = "fjall")]
fn open_fjall(p: &Path) -> sluice::store::AnyBackend {
    sluice::store::AnyBackend::open(sluice::store::BackendKind::Fjall, p).unwrap()
}

#[cfg(feature = "fjall")]
suite!(fjall, open_fjall);
