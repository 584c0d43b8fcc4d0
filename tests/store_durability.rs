//! Which commits wait for the fsync: the writer must commit every batch holding an op whose loss
//! would lose or duplicate work (insert, submit response, receipt, requeue, finish) durably,
//! and may commit batches made only of crash-harmless ops (lease, recover, purge) relaxed.
//! Retiring outbox entries (ack, delete, MO delete) is durable: a lost retirement re-sends
//! what a client already took. Checked through a backend that records which kind of write it was asked for.

use std::sync::{Arc, Mutex};

use sluice::store::{
    Backend, Kv, KvRead, Lane, Message, MessageState, Op, OpResult, PartState, Payload,
    RedbBackend, Store, StoreError, WriterConfig,
};

/// redb, recording `true` for each durable write and `false` for each relaxed one.
struct Recording {
    inner: RedbBackend,
    log: Arc<Mutex<Vec<bool>>>,
}

impl Backend for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.log.lock().unwrap().push(true);
        self.inner.write(f)
    }

    fn write_relaxed<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.log.lock().unwrap().push(false);
        self.inner.write_relaxed(f)
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.inner.read(f)
    }
}

const NOW: u64 = 1_000;

#[test]
fn only_crash_harmless_batches_skip_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let store = Store::open(
        Recording {
            inner: RedbBackend::open(dir.path()).unwrap(),
            log: Arc::clone(&log),
        },
        WriterConfig::default(),
        NOW,
    )
    .unwrap();
    let last = || *log.lock().unwrap().last().unwrap();

    let id = store.ids().next(NOW);
    let payload = Payload::Text {
        text: "hi".into(),
        encoding: Default::default(),
    };
    let m = Message::new(id, "acme", "+861", payload, "smsc1", NOW, NOW);
    store
        .submit_blocking(vec![Op::Insert(Box::new(m))])
        .unwrap();
    assert!(last(), "insert is durable");

    let leased =
        futures::executor::block_on(store.lease("smsc1", Lane::Notification, NOW, 10, 60_000))
            .unwrap();
    assert_eq!(leased.messages.len(), 1);
    assert!(!last(), "a lease alone is relaxed");
    // A relaxed commit is visible to reads at once.
    assert!(store.get(id).unwrap().unwrap().lease_until_ms.is_some());

    let sub = Op::Submitted {
        id,
        part: 1,
        parts: 1,
        center_id: "C1".into(),
        now_ms: NOW,
    };
    store.submit_blocking(vec![sub]).unwrap();
    assert!(last(), "a submit response is durable");

    let dlr = Op::Receipt {
        channel: "smsc1".into(),
        center_id: "C1".into(),
        part_state: PartState::Delivered,
        stat: "DELIVRD".into(),
        err: "000".into(),
        now_ms: NOW,
    };
    store.submit_blocking(vec![dlr]).unwrap();
    assert!(last(), "a receipt is durable");

    assert_eq!(
        futures::executor::block_on(store.outbox_ack("acme", 1)).unwrap(),
        1
    );
    assert!(last(), "an outbox ack is durable");
    for op in [
        Op::OutboxDelete {
            account: "acme".into(),
            seq: 1,
        },
        Op::MoDelete {
            account: "acme".into(),
            seq: 1,
        },
    ] {
        store.submit_blocking(vec![op]).unwrap();
        assert!(last(), "retiring an outbox entry is durable");
    }
    futures::executor::block_on(store.recover(NOW)).unwrap();
    assert!(!last(), "recovery is relaxed");

    // A batch mixing both kinds is durable.
    let mixed = vec![
        Op::Recover { now_ms: NOW },
        Op::Requeue {
            id,
            due_ms: NOW + 1,
        },
    ];
    let res = store.submit_blocking(mixed).unwrap();
    assert!(matches!(res[1], OpResult::Stale(_)));
    assert!(last(), "one durable op makes the batch durable");
}

#[test]
fn relaxed_commits_survive_a_clean_close() {
    // A purge is relaxed; a lease would not do here, because opening the store returns
    // every lease of the previous run to its queue.
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = Store::open(
            RedbBackend::open(dir.path()).unwrap(),
            WriterConfig::default(),
            NOW,
        )
        .unwrap();
        let id = store.ids().next(NOW);
        let payload = Payload::Text {
            text: "hi".into(),
            encoding: Default::default(),
        };
        let mut m = Message::new(id, "acme", "+861", payload, "smsc1", NOW, NOW);
        // Stored straight as final, so purgeable.
        m.state = MessageState::Rejected;
        store
            .submit_blocking(vec![Op::Insert(Box::new(m))])
            .unwrap();
        let res = store
            .submit_blocking(vec![Op::Purge {
                before_ms: NOW + 1,
                limit: 10,
            }])
            .unwrap();
        assert!(matches!(res[0], OpResult::Count(1)), "{res:?}");
        assert!(store.get(id).unwrap().is_none());
        id
    };
    let store = Store::open(
        RedbBackend::open(dir.path()).unwrap(),
        WriterConfig::default(),
        NOW,
    )
    .unwrap();
    assert!(
        store.get(id).unwrap().is_none(),
        "the relaxed purge was made durable when the store closed"
    );
}

#[test]
fn a_lease_that_expires_messages_is_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let store = Store::open(
        Recording {
            inner: RedbBackend::open(dir.path()).unwrap(),
            log: Arc::clone(&log),
        },
        WriterConfig::default(),
        NOW,
    )
    .unwrap();
    let payload = Payload::Text {
        text: "hi".into(),
        encoding: Default::default(),
    };
    let id = store.ids().next(NOW);
    let mut m = Message::new(id, "acme", "+861", payload, "smsc1", NOW, NOW);
    m.expires_at_ms = Some(NOW + 5);
    store
        .submit_blocking(vec![Op::Insert(Box::new(m))])
        .unwrap();
    log.lock().unwrap().clear();
    let leased =
        futures::executor::block_on(store.lease("smsc1", Lane::Notification, NOW + 10, 10, 60_000))
            .unwrap();
    assert_eq!(leased.expired, vec![id]);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.last(),
        Some(&true),
        "the EXPIRED receipt and its outbox sequence are durable before the lease returns: {log:?}"
    );
}
