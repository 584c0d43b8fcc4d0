//! One behavioural suite for the store, run against every backend (`suite!` below). Anything a
//! backend must guarantee — durability across reopen, atomic batches, index consistency — is
//! checked here through the public `Store` API only.

use std::path::Path;

use sluice::store::{
    Backend, Lane, Message, MessageId, MessageState, Op, OpResult, PartState, Payload,
    ReceiptEvent, ReceiptOriginal, SMPP_RECEIPT_TAG, Store, WriterConfig,
};

const CH: &str = "smsc1";

fn text(s: &str) -> Payload {
    Payload::Text {
        text: s.into(),
        encoding: Default::default(),
    }
}

fn msg<B: Backend>(store: &Store<B>, account: &str, due_ms: u64, now_ms: u64) -> Message {
    let id = store.ids().next(now_ms);
    Message::new(
        id,
        account,
        "+8613800138000",
        text("hello"),
        CH,
        due_ms,
        now_ms,
    )
}

fn inserted(r: &OpResult) -> MessageId {
    match r {
        OpResult::Inserted(id) => *id,
        other => panic!("expected Inserted, got {other:?}"),
    }
}

fn insert_all<B: Backend>(store: &Store<B>, msgs: Vec<Message>) -> Vec<MessageId> {
    let ops = msgs.into_iter().map(|m| Op::Insert(Box::new(m))).collect();
    store
        .submit_blocking(ops)
        .unwrap()
        .iter()
        .map(inserted)
        .collect()
}

fn lease<B: Backend>(store: &Store<B>, now: u64, limit: usize, lease_ms: u64) -> Vec<Message> {
    let leased =
        futures::executor::block_on(store.lease(CH, Lane::Notification, now, limit, lease_ms))
            .unwrap();
    leased.messages
}

fn one<B: Backend>(store: &Store<B>, op: Op) -> OpResult {
    store.submit_blocking(vec![op]).unwrap().pop().unwrap()
}

fn submitted(id: MessageId, part: u16, parts: u16, center: &str, now: u64) -> Op {
    Op::Submitted {
        id,
        part,
        parts,
        center_id: center.into(),
        now_ms: now,
    }
}

fn dlr(center: &str, state: PartState, stat: &str, now: u64) -> Op {
    Op::Receipt {
        channel: CH.into(),
        center_id: center.into(),
        part_state: state,
        stat: stat.into(),
        err: "000".into(),
        now_ms: now,
    }
}

fn outbox_events<B: Backend>(store: &Store<B>, account: &str) -> Vec<(u64, ReceiptEvent)> {
    store
        .outbox(account, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, serde_json::from_slice(&e.body).unwrap()))
        .collect()
}

fn insert_batch_is_durable_across_reopen<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let ids;
    {
        let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
        let msgs = (0..100)
            .map(|_| msg(&store, "acme", 1_000, 1_000))
            .collect();
        ids = insert_all(&store, msgs);
        assert_eq!(ids.len(), 100);
    }
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    for id in &ids {
        let m = store
            .get(*id)
            .unwrap()
            .expect("acknowledged message survives reopen");
        assert_eq!(m.state, MessageState::Queued);
        assert_eq!(m.account, "acme");
    }
    // The id generator continues past stored ids even with an older clock.
    assert!(store.ids().next(0) > *ids.iter().max().unwrap());
}

fn idempotency_keys<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let mut a = msg(&store, "acme", 1_000, 1_000);
    a.client_ref = Some("ref-1".into());
    let first = insert_all(&store, vec![a])[0];
    // Same key again, in a later batch and twice within one batch.
    let mut b = msg(&store, "acme", 1_000, 1_000);
    b.client_ref = Some("ref-1".into());
    let mut c = msg(&store, "acme", 1_000, 1_000);
    c.client_ref = Some("ref-2".into());
    let mut d = msg(&store, "acme", 1_000, 1_000);
    d.client_ref = Some("ref-2".into());
    let mut other_account = msg(&store, "beta", 1_000, 1_000);
    other_account.client_ref = Some("ref-1".into());
    let (b_id, c_id, d_id) = (b.id, c.id, d.id);
    let res = store
        .submit_blocking(vec![
            Op::Insert(Box::new(b)),
            Op::Insert(Box::new(c)),
            Op::Insert(Box::new(d)),
            Op::Insert(Box::new(other_account)),
        ])
        .unwrap();
    assert_eq!(res[0], OpResult::Duplicate(first));
    assert_eq!(res[1], OpResult::Inserted(c_id));
    assert_eq!(res[2], OpResult::Duplicate(c_id));
    assert!(matches!(res[3], OpResult::Inserted(_)));
    assert!(store.get(b_id).unwrap().is_none(), "duplicate not stored");
    assert!(store.get(d_id).unwrap().is_none());
    assert_eq!(store.by_client_ref("acme", "ref-1").unwrap(), Some(first));
    // Re-sending the same id (a retried ingress batch) is also a duplicate.
    let again = store.get(first).unwrap().unwrap();
    assert_eq!(
        one(
            &store,
            Op::Insert(Box::new(Message {
                client_ref: None,
                ..again
            }))
        ),
        OpResult::Duplicate(first)
    );
}

fn lease_submit_requeue<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let late = msg(&store, "acme", 5_000, 1_000);
    let early = msg(&store, "acme", 900, 1_000);
    let mid = msg(&store, "acme", 1_000, 1_000);
    let mut otp = msg(&store, "acme", 1_000, 1_000);
    otp.lane = Lane::Otp;
    let ids = insert_all(&store, vec![late, early, mid, otp]);
    assert_eq!(
        store.get(ids[0]).unwrap().unwrap().state,
        MessageState::Scheduled
    );
    assert_eq!(store.next_due(CH, Lane::Notification).unwrap(), Some(900));

    // Only due messages of this lane, in due order, respecting the limit.
    let got = lease(&store, 1_000, 1, 30_000);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[1]]);
    let got = lease(&store, 1_000, 10, 30_000);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[2]]);
    assert_eq!(got[0].state, MessageState::InFlight);
    assert_eq!(got[0].lease_until_ms, Some(31_000));
    assert!(
        lease(&store, 1_000, 10, 30_000).is_empty(),
        "in-flight is not leased twice"
    );

    // Requeue counts an attempt and makes it due later.
    assert_eq!(
        one(
            &store,
            Op::Requeue {
                id: ids[1],
                due_ms: 2_000
            }
        ),
        OpResult::Updated(MessageState::Scheduled)
    );
    assert!(lease(&store, 1_999, 10, 30_000).is_empty());
    let got = lease(&store, 2_000, 10, 30_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attempts, 1);
    // Release (a hand-back of an unsent message) requeues without counting an attempt.
    assert_eq!(
        one(
            &store,
            Op::Release {
                id: ids[1],
                due_ms: 2_000
            }
        ),
        OpResult::Updated(MessageState::Scheduled)
    );
    let got = lease(&store, 2_000, 10, 30_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attempts, 1, "a release is not an attempt");
    // Requeue of something not in flight does nothing.
    assert_eq!(
        one(
            &store,
            Op::Requeue {
                id: ids[0],
                due_ms: 0
            }
        ),
        OpResult::Stale(MessageState::Scheduled)
    );

    // Submitted (single part) → sent, out of the lease index.
    assert_eq!(
        one(&store, submitted(ids[1], 1, 1, "C-1", 2_100)),
        OpResult::Updated(MessageState::Sent)
    );
    assert_eq!(
        one(
            &store,
            Op::Recover {
                now_ms: u64::MAX / 2
            }
        ),
        OpResult::Count(1)
    );
    assert_eq!(
        store.get(ids[1]).unwrap().unwrap().state,
        MessageState::Sent
    );

    // The OTP lane is separate.
    let otp = futures::executor::block_on(store.lease(CH, Lane::Otp, 1_000, 10, 1)).unwrap();
    assert_eq!(otp.messages.len(), 1);
    assert_eq!(otp.messages[0].id, ids[3]);
    // And another channel sees nothing.
    let other =
        futures::executor::block_on(store.lease("smsc", Lane::Notification, 9_999, 10, 1)).unwrap();
    assert!(other.messages.is_empty());

    // Priority across lanes under one limit: OTP, then notifications, then marketing.
    let lanes = [Lane::Marketing, Lane::Notification, Lane::Otp];
    let batch = lanes
        .iter()
        .map(|&lane| Message {
            lane,
            ..msg(&store, "acme", 1_000, 1_000)
        })
        .collect();
    let extra = insert_all(&store, batch); // marketing, notification, otp
    let take = |limit| {
        futures::executor::block_on(store.lease_lanes(CH, &Lane::ALL, 1_000, limit, 1))
            .unwrap()
            .messages
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    // `mid` is back in the notification queue (the big recover above), ahead of extra[1].
    assert_eq!(take(2), vec![extra[2], ids[2]]);
    assert_eq!(take(5), vec![extra[1], extra[0]]);
}

fn leases_recover_after_reopen<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let id;
    {
        let store = Store::open(open(dir), WriterConfig::default(), 10_000).unwrap();
        id = insert_all(&store, vec![msg(&store, "acme", 10_000, 10_000)])[0];
        assert_eq!(lease(&store, 10_000, 10, 1_000).len(), 1);
        // Dropped while the message is in flight, as if the process died mid-send.
    }
    // Reopen while the lease still runs: the file lock makes this process the only owner, so
    // the dead process's lease is returned at once instead of at its expiry.
    let store = Store::open(open(dir), WriterConfig::default(), 10_500).unwrap();
    let m = store.get(id).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Queued);
    assert_eq!(m.lease_until_ms, None);
    let again = lease(&store, 10_500, 10, 1_000);
    assert_eq!(again.len(), 1);
    // Periodic recovery without reopen only returns leases that expired.
    assert_eq!(
        futures::executor::block_on(store.recover(11_499)).unwrap(),
        0
    );
    assert_eq!(
        futures::executor::block_on(store.recover(11_500)).unwrap(),
        1
    );
}

fn sweep_ends_expired_waiting_messages<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let mut waiting = msg(&store, "acme", 1_000, 1_000);
    waiting.expires_at_ms = Some(5_000);
    let mut later = msg(&store, "acme", 1_000, 1_000);
    later.expires_at_ms = Some(50_000);
    let mut flying = msg(&store, "acme", 1_000, 1_000);
    flying.expires_at_ms = Some(5_000);
    let plain = msg(&store, "acme", 1_000, 1_000);
    let flying_id = flying.id;
    // The in-flight one is inserted and leased first, alone.
    insert_all(&store, vec![flying]);
    assert_eq!(lease(&store, 1_000, 10, 60_000).len(), 1);
    let ids = insert_all(&store, vec![waiting, later, plain]);
    let sweep = |now| futures::executor::block_on(store.sweep_expired(now, 100)).unwrap();
    assert_eq!(sweep(4_999), 0, "nothing expired yet");
    // No lease happens (channel down): the sweep alone ends the expired waiting message.
    assert_eq!(sweep(6_000), 1);
    let m = store.get(ids[0]).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Expired);
    let out = store.outbox("acme", 0, 10).unwrap();
    assert_eq!(out.len(), 1, "one EXPIRED receipt");
    assert_eq!(
        store.get(ids[1]).unwrap().unwrap().state,
        MessageState::Queued
    );
    assert_eq!(
        store.get(ids[2]).unwrap().unwrap().state,
        MessageState::Queued
    );
    assert_eq!(
        store.get(flying_id).unwrap().unwrap().state,
        MessageState::InFlight,
        "in flight is left to the lease path"
    );
    assert_eq!(sweep(6_000), 0, "idempotent");
    // Requeued after expiry: indexed again, so the next sweep ends it.
    assert_eq!(
        one(
            &store,
            Op::Requeue {
                id: flying_id,
                due_ms: 7_000
            }
        ),
        OpResult::Updated(MessageState::Scheduled)
    );
    assert_eq!(sweep(7_000), 1);
    assert_eq!(
        store.get(flying_id).unwrap().unwrap().state,
        MessageState::Expired
    );
    assert_eq!(sweep(60_000), 1, "the later one in its turn");
}

fn receipts_correlate_by_center_id<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let mut m = msg(&store, "acme", 1_000, 1_000);
    m.client_ref = Some("r1".into());
    m.tags.insert("task".into(), "42".into());
    let id = insert_all(&store, vec![m])[0];
    lease(&store, 1_000, 10, 60_000);
    assert_eq!(
        one(&store, submitted(id, 1, 2, "AA01", 1_100)),
        OpResult::Updated(MessageState::InFlight),
        "not sent until every part has a center id"
    );
    assert_eq!(
        one(&store, submitted(id, 2, 2, "AA02", 1_200)),
        OpResult::Updated(MessageState::Sent)
    );
    assert_eq!(store.by_center(CH, "AA02").unwrap(), Some((id, 2)));
    assert_eq!(store.by_center("other", "AA02").unwrap(), None);

    assert_eq!(
        one(&store, dlr("AA01", PartState::Delivered, "DELIVRD", 2_000)),
        OpResult::ReceiptApplied {
            state: MessageState::Sent,
            ended_in_ms: None
        }
    );
    assert!(outbox_events(&store, "acme").is_empty());
    assert_eq!(
        one(
            &store,
            dlr("AA02", PartState::Undeliverable, "UNDELIV", 3_000)
        ),
        // Ended 1.8 s after its last part was submitted (1 200 ms).
        OpResult::ReceiptApplied {
            state: MessageState::Undeliverable,
            ended_in_ms: Some(1_800)
        }
    );
    let m = store.get(id).unwrap().unwrap();
    assert_eq!(m.receipts.len(), 2);
    assert_eq!(m.done_ms, Some(3_000));
    let events = outbox_events(&store, "acme");
    assert_eq!(events.len(), 1);
    let (_, ev) = &events[0];
    assert_eq!(ev.id, id);
    assert_eq!(ev.state, MessageState::Undeliverable);
    assert_eq!(ev.stat, "UNDELIV");
    assert_eq!(ev.parts, 2);
    assert_eq!(ev.client_ref.as_deref(), Some("r1"));
    assert_eq!(ev.tags.get("task").map(String::as_str), Some("42"));
    assert_eq!(
        ev.original, None,
        "only a receipt an ESME asked for carries its original"
    );
    // A repeated DLR for a final message changes nothing.
    assert_eq!(
        one(&store, dlr("AA02", PartState::Delivered, "DELIVRD", 4_000)),
        OpResult::Stale(MessageState::Undeliverable)
    );
    assert_eq!(outbox_events(&store, "acme").len(), 1);

    // Submitted over SMPP asking for a receipt: the event carries what the deliver_sm needs
    // of the message, so the SMPP server does not read it back.
    let mut m = msg(&store, "acme", 5_000, 5_000);
    m.from = Some("10690000".into());
    m.tags.insert(SMPP_RECEIPT_TAG.into(), "1".into());
    let id = insert_all(&store, vec![m])[0];
    lease(&store, 5_000, 10, 60_000);
    one(&store, submitted(id, 1, 1, "BB01", 5_100));
    one(&store, dlr("BB01", PartState::Delivered, "DELIVRD", 5_200));
    let events = outbox_events(&store, "acme");
    let (_, ev) = events.last().expect("its receipt event");
    assert_eq!(ev.id, id);
    assert_eq!(
        ev.original,
        Some(ReceiptOriginal {
            from: Some("10690000".into()),
            text: "hello".into()
        })
    );
}

fn receipt_before_submit_response<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let id = insert_all(&store, vec![msg(&store, "acme", 1_000, 1_000)])[0];
    lease(&store, 1_000, 10, 60_000);
    assert_eq!(
        one(&store, dlr("X9", PartState::Delivered, "DELIVRD", 1_050)),
        OpResult::ReceiptHeld
    );
    assert_eq!(
        one(&store, submitted(id, 1, 1, "X9", 1_100)),
        // Ended by the submit response itself: no time between submit and end.
        OpResult::ReceiptApplied {
            state: MessageState::Delivered,
            ended_in_ms: Some(0)
        }
    );
    let events = outbox_events(&store, "acme");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.stat, "DELIVRD");
    // The held receipt was consumed: purging it later finds nothing extra to do.
    assert_eq!(store.get(id).unwrap().unwrap().receipts.len(), 1);
}

/// A center that gives a new message an id an older, final message had (a restarted
/// center's counter: the embedded simulator after `serve` restarts) and sends its receipt
/// before the submit response: the receipt reaches the new message, not the old one.
fn receipt_for_a_reused_center_id_before_its_submit_response<B: Backend>(
    dir: &Path,
    open: fn(&Path) -> B,
) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let old = insert_all(&store, vec![msg(&store, "acme", 1_000, 1_000)])[0];
    lease(&store, 1_000, 10, 60_000);
    one(&store, submitted(old, 1, 1, "1", 1_100));
    assert!(matches!(
        one(&store, dlr("1", PartState::Undeliverable, "UNDELIV", 1_200)),
        OpResult::ReceiptApplied {
            state: MessageState::Undeliverable,
            ..
        }
    ));
    let new = insert_all(&store, vec![msg(&store, "acme", 5_000, 5_000)])[0];
    lease(&store, 5_000, 10, 60_000);
    // The index still names the old, final message: the receipt is a repeat for it as far
    // as anyone can tell yet.
    assert_eq!(
        one(&store, dlr("1", PartState::Delivered, "DELIVRD", 5_050)),
        OpResult::Stale(MessageState::Undeliverable)
    );
    assert_eq!(
        one(&store, submitted(new, 1, 1, "1", 5_100)),
        OpResult::ReceiptApplied {
            state: MessageState::Delivered,
            ended_in_ms: Some(0)
        }
    );
    assert_eq!(
        store.get(old).unwrap().unwrap().state,
        MessageState::Undeliverable,
        "the old message keeps its own fate"
    );
    let events = outbox_events(&store, "acme");
    assert_eq!(events.len(), 2, "one receipt event per message");
    assert_eq!(events[1].1.id, new);
    assert_eq!(events[1].1.stat, "DELIVRD");
}

/// A receipt held longer than a receipt can overtake its submit response belongs to an
/// older message that had the id: a newer message's submit response drops it.
fn an_old_held_receipt_is_not_given_to_a_new_message<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    assert_eq!(
        one(&store, dlr("7", PartState::Delivered, "DELIVRD", 1_000)),
        OpResult::ReceiptHeld
    );
    let late = 1_000 + sluice::store::EARLY_RECEIPT_FOR_MS + 1;
    let id = insert_all(&store, vec![msg(&store, "acme", late, late)])[0];
    lease(&store, late, 10, 60_000);
    assert_eq!(
        one(&store, submitted(id, 1, 1, "7", late + 10)),
        OpResult::Updated(MessageState::Sent)
    );
    assert!(outbox_events(&store, "acme").is_empty());
    // Its own receipt still finds it, and the dropped one is gone for good.
    assert!(matches!(
        one(&store, dlr("7", PartState::Delivered, "DELIVRD", late + 20)),
        OpResult::ReceiptApplied {
            state: MessageState::Delivered,
            ..
        }
    ));
}

fn expiry_and_finish<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let mut m = msg(&store, "acme", 1_000, 1_000);
    m.expires_at_ms = Some(1_500);
    let live = msg(&store, "acme", 1_000, 1_000);
    let ids = insert_all(&store, vec![m, live]);
    let leased =
        futures::executor::block_on(store.lease(CH, Lane::Notification, 2_000, 10, 100)).unwrap();
    assert_eq!(leased.expired, vec![ids[0]]);
    assert_eq!(leased.messages.len(), 1);
    assert_eq!(
        store.get(ids[0]).unwrap().unwrap().state,
        MessageState::Expired
    );
    assert_eq!(
        one(
            &store,
            Op::Finish {
                id: ids[1],
                state: MessageState::Rejected,
                stat: "REJECTD".into(),
                err: "00B".into(),
                now_ms: 2_100
            }
        ),
        OpResult::Updated(MessageState::Rejected)
    );
    assert_eq!(
        one(
            &store,
            Op::Finish {
                id: ids[1],
                state: MessageState::Failed,
                stat: "x".into(),
                err: "x".into(),
                now_ms: 2_200
            }
        ),
        OpResult::Stale(MessageState::Rejected)
    );
    assert!(matches!(
        one(
            &store,
            Op::Finish {
                id: ids[1],
                state: MessageState::Queued,
                stat: "x".into(),
                err: "x".into(),
                now_ms: 2_200
            }
        ),
        OpResult::Invalid(_)
    ));
    let stats: Vec<String> = outbox_events(&store, "acme")
        .into_iter()
        .map(|(_, e)| e.stat.to_string())
        .collect();
    assert_eq!(stats, vec!["EXPIRED", "REJECTD"]);
    // Nothing left to lease or recover.
    assert!(lease(&store, 10_000, 10, 100).is_empty());
    assert_eq!(
        one(&store, Op::Recover { now_ms: 100_000 }),
        OpResult::Count(0)
    );
}

fn outbox_ack_and_delete<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let mut ids = insert_all(
        &store,
        (0..5).map(|_| msg(&store, "acme", 1_000, 1_000)).collect(),
    );
    ids.extend(insert_all(&store, vec![msg(&store, "beta", 1_000, 1_000)]));
    for id in &ids {
        one(
            &store,
            Op::Finish {
                id: *id,
                state: MessageState::Failed,
                stat: "FAILED".into(),
                err: "000".into(),
                now_ms: 2_000,
            },
        );
    }
    let seqs: Vec<u64> = outbox_events(&store, "acme")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(outbox_events(&store, "beta").len(), 1);
    assert_eq!(
        store.outbox("acme", 3, 10).unwrap().len(),
        2,
        "scan after a seq"
    );
    assert_eq!(
        futures::executor::block_on(store.outbox_ack("acme", 2)).unwrap(),
        2
    );
    assert_eq!(
        one(
            &store,
            Op::OutboxDelete {
                account: "acme".into(),
                seq: 4
            }
        ),
        OpResult::Count(1)
    );
    assert_eq!(
        one(
            &store,
            Op::OutboxDelete {
                account: "acme".into(),
                seq: 4
            }
        ),
        OpResult::Count(0)
    );
    let left: Vec<u64> = outbox_events(&store, "acme")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(left, vec![3, 5]);
    assert_eq!(
        outbox_events(&store, "beta").len(),
        1,
        "other accounts untouched"
    );
    // Sequences keep increasing after acks (and across reopen).
    drop(store);
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let id = insert_all(&store, vec![msg(&store, "acme", 1_000, 1_000)])[0];
    one(
        &store,
        Op::Finish {
            id,
            state: MessageState::Failed,
            stat: "FAILED".into(),
            err: "000".into(),
            now_ms: 3_000,
        },
    );
    assert_eq!(outbox_events(&store, "acme").last().unwrap().0, 6);
}

fn purge_compacts_final_messages<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let mut done = Vec::new();
    for i in 0..5u64 {
        let mut m = msg(&store, "acme", 1_000, 1_000);
        m.client_ref = Some(format!("r{i}"));
        done.push(insert_all(&store, vec![m])[0]);
    }
    let pending = insert_all(&store, vec![msg(&store, "acme", 1_000, 1_000)])[0];
    lease(&store, 1_000, 5, 10_000);
    for (i, id) in done.iter().enumerate() {
        one(&store, submitted(*id, 1, 1, &format!("C{i}"), 1_100));
        one(
            &store,
            dlr(
                &format!("C{i}"),
                PartState::Delivered,
                "DELIVRD",
                2_000 + i as u64,
            ),
        );
    }
    // Held receipt that never matches anything.
    assert_eq!(
        one(
            &store,
            dlr("orphan", PartState::Delivered, "DELIVRD", 1_500)
        ),
        OpResult::ReceiptHeld
    );
    // Cut-off between the 2nd and 3rd final message; limit honoured.
    assert_eq!(
        futures::executor::block_on(store.purge(2_002, 1)).unwrap(),
        1
    );
    assert_eq!(
        futures::executor::block_on(store.purge(2_002, 100)).unwrap(),
        1
    );
    assert!(store.get(done[0]).unwrap().is_none());
    assert!(store.get(done[1]).unwrap().is_none());
    assert!(store.get(done[2]).unwrap().is_some());
    assert_eq!(store.by_center(CH, "C0").unwrap(), None);
    assert_eq!(store.by_center(CH, "C2").unwrap(), Some((done[2], 1)));
    assert_eq!(store.by_client_ref("acme", "r0").unwrap(), None);
    assert_eq!(store.by_client_ref("acme", "r2").unwrap(), Some(done[2]));
    // The destination index lost the purged two and lists the rest newest first.
    let listed: Vec<_> = store
        .by_destination("+8613800138000", 100)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, vec![pending, done[4], done[3], done[2]]);
    assert_eq!(store.by_destination("+8613800138000", 2).unwrap().len(), 2);
    assert!(
        store
            .by_destination("+861380013800", 100)
            .unwrap()
            .is_empty()
    );
    // The orphan receipt is gone: a late submit with that center id no longer finalises.
    let late = insert_all(&store, vec![msg(&store, "acme", 1_000, 1_000)])[0];
    assert_eq!(
        one(&store, submitted(late, 1, 1, "orphan", 3_000)),
        OpResult::Updated(MessageState::Sent)
    );
    // A purged idempotency key can be used again.
    let mut again = msg(&store, "acme", 1_000, 1_000);
    again.client_ref = Some("r0".into());
    insert_all(&store, vec![again]);
    // Non-final messages are never purged.
    assert_eq!(
        futures::executor::block_on(store.purge(u64::MAX, 100)).unwrap(),
        3
    );
    assert!(store.get(pending).unwrap().is_some());
}

/// Messages that end in one commit share one terminal index record (a run); purge takes
/// them by time and by limit all the same, puts back what it left, and a reopened store
/// purges the rest.
fn purge_splits_runs_of_final_messages<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let ids = {
        let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
        let ids = insert_all(
            &store,
            (0..10).map(|_| msg(&store, "acme", 1_000, 1_000)).collect(),
        );
        let ends = ids
            .iter()
            .zip(0u64..)
            .map(|(&id, i)| Op::Finish {
                id,
                state: MessageState::Rejected,
                stat: "REJECTD".into(),
                err: "00B".into(),
                now_ms: 2_000 + i,
            })
            .collect();
        store.submit_blocking(ends).unwrap();
        let purge =
            |before, limit| futures::executor::block_on(store.purge(before, limit)).unwrap();
        // The limit cuts a run: the first two go, the rest of it waits.
        assert_eq!(purge(2_003, 2), 2);
        // The time cuts it: the third goes, the seven after the cut-off stay.
        assert_eq!(purge(2_003, 100), 1);
        assert_eq!(purge(2_003, 100), 0);
        assert!(ids[..3].iter().all(|id| store.get(*id).unwrap().is_none()));
        assert!(ids[3..].iter().all(|id| store.get(*id).unwrap().is_some()));
        assert_eq!(purge(2_006, 100), 3);
        ids
    };
    let store = Store::open(open(dir), WriterConfig::default(), 10_000).unwrap();
    assert!(ids[6..].iter().all(|id| store.get(*id).unwrap().is_some()));
    assert_eq!(
        futures::executor::block_on(store.purge(u64::MAX, 100)).unwrap(),
        4
    );
    assert!(ids.iter().all(|id| store.get(*id).unwrap().is_none()));
}

fn destination_index_can_be_off<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let cfg = WriterConfig {
        index_by_number: false,
        ..WriterConfig::default()
    };
    let store = Store::open(open(dir), cfg, 1_000).unwrap();
    assert!(!store.indexes_by_number());
    let id = insert_all(&store, vec![msg(&store, "acme", 1_000, 1_000)])[0];
    assert!(store.get(id).unwrap().is_some());
    assert!(
        store
            .by_destination("+8613800138000", 10)
            .unwrap()
            .is_empty()
    );
}

fn concurrent_producers_group_commit<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for _ in 0..25 {
                    let batch = (0..10).map(|_| msg(&store, "acme", 1_000, 1_000)).collect();
                    ids.extend(insert_all(&store, batch));
                }
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 2_000, "ids unique across producers");
    for id in &all {
        assert!(store.get(*id).unwrap().is_some());
    }
    assert_eq!(store.stats().requests(), 200);
    assert_eq!(store.stats().ops(), 2_000);
    assert!(store.stats().commits() <= 200);
    let leased = lease(&store, 1_000, 5_000, 1_000);
    assert_eq!(leased.len(), 2_000);
}

/// The writer's wall time by phase: every commit applied ops and committed, it waited for
/// work between commits, and the phases never add up to more than the time it ran.
fn writer_time_is_split_by_phase<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    use sluice::store::WriterPhase;
    let opened = std::time::Instant::now();
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let zero = WriterPhase::ALL.map(|p| store.stats().time_in(p));
    assert_eq!(
        zero,
        [std::time::Duration::ZERO; 4],
        "nothing before the first commit"
    );
    for _ in 0..3 {
        let batch = (0..100)
            .map(|_| msg(&store, "acme", 1_000, 1_000))
            .collect();
        insert_all(&store, batch);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ran = opened.elapsed();
    let [waiting, applying, committing, logging] =
        WriterPhase::ALL.map(|p| store.stats().time_in(p));
    // Opened without a redo log: every commit is durable in the engine, nothing is logged.
    assert_eq!(logging, std::time::Duration::ZERO);
    assert!(
        applying > std::time::Duration::ZERO,
        "applying {applying:?}"
    );
    assert!(
        committing > std::time::Duration::ZERO,
        "committing {committing:?}"
    );
    // Two pauses of 20 ms between the three commits are counted as waiting.
    assert!(
        waiting >= std::time::Duration::from_millis(40),
        "waiting {waiting:?}"
    );
    assert!(waiting + applying + committing <= ran, "{ran:?} ran");
}

fn invalid_names_are_refused<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    let bad = msg(&store, "ac\0me", 1_000, 1_000);
    let id = bad.id;
    assert!(matches!(
        one(&store, Op::Insert(Box::new(bad))),
        OpResult::Invalid(_)
    ));
    assert!(store.get(id).unwrap().is_none());
    assert_eq!(
        one(&store, submitted(MessageId(12345), 1, 1, "x", 1)),
        OpResult::NotFound
    );
    assert!(matches!(
        one(&store, submitted(MessageId(12345), 2, 1, "x", 1)),
        OpResult::Invalid(_)
    ));
}

fn final_on_insert_queues_receipt<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    // Ingress stores a message it cannot route as failed, so the client still gets a receipt.
    let mut m = msg(&store, "acme", 1_000, 1_000);
    m.state = MessageState::Failed;
    let id = insert_all(&store, vec![m])[0];
    let events = outbox_events(&store, "acme");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.state, MessageState::Failed);
    assert_eq!(events[0].1.stat, "FAILED");
    assert!(
        lease(&store, 10_000, 10, 100).is_empty(),
        "a final message is never queued"
    );
    assert_eq!(store.get(id).unwrap().unwrap().done_ms, Some(1_000));
    assert_eq!(
        futures::executor::block_on(store.purge(1_001, 10)).unwrap(),
        1
    );
}

fn backpressure_and_linger<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    // Tiny queue and groups, with a linger and commit spacing: batches larger than either still
    // go through whole.
    let cfg = WriterConfig {
        max_ops: 3,
        max_wait: std::time::Duration::from_millis(2),
        queue_ops: 5,
        min_spacing: std::time::Duration::from_millis(1),
        ..WriterConfig::default()
    };
    let store = Store::open(open(dir), cfg, 1_000).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for _ in 0..10 {
                    let n = if i == 0 { 12 } else { 2 };
                    ids.extend(insert_all(
                        &store,
                        (0..n).map(|_| msg(&store, "acme", 1_000, 1_000)).collect(),
                    ));
                }
                ids
            })
        })
        .collect();
    let ids: Vec<MessageId> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 120 + 3 * 20);
    assert_eq!(lease(&store, 1_000, 1_000, 10).len(), ids.len());
    assert_eq!(store.submit_blocking(Vec::new()).unwrap(), Vec::new());
}

fn corrupt_record_does_not_wedge_the_queue<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let ids;
    {
        let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
        ids = insert_all(
            &store,
            (0..3).map(|_| msg(&store, "acme", 1_000, 1_000)).collect(),
        );
    }
    {
        // Damage the middle record through the engine directly (key = 0x01 + id, big-endian;
        // see keys.rs).
        let backend = open(dir);
        let mut key = vec![0x01];
        key.extend_from_slice(&ids[1].to_be_bytes());
        backend.write(|kv| kv.put(&key, b"{not json")).unwrap();
    }
    let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
    assert!(matches!(
        store.get(ids[1]),
        Err(sluice::store::StoreError::Corrupt { .. })
    ));
    let got: Vec<MessageId> = lease(&store, 1_000, 10, 100).iter().map(|m| m.id).collect();
    assert_eq!(got, vec![ids[0], ids[2]]);
    assert!(lease(&store, 1_000, 10, 100).is_empty());
}

/// The queue counters follow every op that moves a message in or out of the ready index or
/// in flight, and survive a reopen (which returns leases to their queues).
fn queue_depths_follow_each_op<B: Backend>(dir: &Path, open: fn(&Path) -> B) {
    let depth = |s: &Store<B>| {
        let d = s.queue_depths();
        (d.ready(CH, Lane::Notification), d.in_flight(CH))
    };
    {
        let store = Store::open(open(dir), WriterConfig::default(), 1_000).unwrap();
        assert_eq!(depth(&store), (0, 0));
        let msgs = (0..5).map(|_| msg(&store, "acme", 1_000, 1_000)).collect();
        let ids = insert_all(&store, msgs);
        // Due later still counts: it is in the ready index.
        insert_all(&store, vec![msg(&store, "acme", 90_000, 1_000)]);
        let mut otp = msg(&store, "acme", 1_000, 1_000);
        otp.lane = Lane::Otp;
        insert_all(&store, vec![otp]);
        assert_eq!(depth(&store), (6, 0));
        assert_eq!(store.queue_depths().ready(CH, Lane::Otp), 1);

        let leased = lease(&store, 1_000, 3, 10_000);
        assert_eq!(leased.len(), 3);
        assert_eq!(depth(&store), (3, 3));
        // Sent: out of flight (waiting for its receipt, in no queue).
        one(&store, submitted(leased[0].id, 1, 1, "c-0", 1_100));
        assert_eq!(depth(&store), (3, 2));
        // A retry goes back to the ready index.
        one(
            &store,
            Op::Requeue {
                id: leased[1].id,
                due_ms: 2_000,
            },
        );
        assert_eq!(depth(&store), (4, 1));
        // Ending a leased message and a waiting one.
        let finish = |id| Op::Finish {
            id,
            state: MessageState::Rejected,
            stat: "REJECTD".into(),
            err: "001".into(),
            now_ms: 1_200,
        };
        one(&store, finish(leased[2].id));
        assert_eq!(depth(&store), (4, 0));
        let waiting = ids.iter().find(|id| !leased.iter().any(|m| m.id == **id));
        one(&store, finish(*waiting.unwrap()));
        assert_eq!(depth(&store), (3, 0));
        // A duplicate insert and an op that no longer applies change nothing.
        let mut dup = msg(&store, "acme", 1_000, 1_000);
        dup.id = ids[0];
        store
            .submit_blocking(vec![Op::Insert(Box::new(dup))])
            .unwrap();
        one(&store, finish(leased[2].id));
        assert_eq!(depth(&store), (3, 0));

        let leased = lease(&store, 2_000, 10, 10_000);
        assert_eq!(leased.len(), 2);
        assert_eq!(depth(&store), (1, 2));
        assert_eq!(
            store.queue_depths().without_zeros(),
            store.recount_queue_depths().unwrap()
        );
    }
    // Reopen: both leases come back; nothing is in flight.
    let store = Store::open(open(dir), WriterConfig::default(), 3_000).unwrap();
    assert_eq!(depth(&store), (3, 0));
    assert_eq!(store.queue_depths().ready(CH, Lane::Otp), 1);
    assert_eq!(
        store.queue_depths().without_zeros(),
        store.recount_queue_depths().unwrap()
    );
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
            fn insert_batch_is_durable_across_reopen() {
                run(super::insert_batch_is_durable_across_reopen);
            }
            #[test]
            fn idempotency_keys() {
                run(super::idempotency_keys);
            }
            #[test]
            fn lease_submit_requeue() {
                run(super::lease_submit_requeue);
            }
            #[test]
            fn leases_recover_after_reopen() {
                run(super::leases_recover_after_reopen);
            }
            #[test]
            fn sweep_ends_expired_waiting_messages() {
                run(super::sweep_ends_expired_waiting_messages);
            }
            #[test]
            fn receipts_correlate_by_center_id() {
                run(super::receipts_correlate_by_center_id);
            }
            #[test]
            fn receipt_before_submit_response() {
                run(super::receipt_before_submit_response);
            }
            #[test]
            fn receipt_for_a_reused_center_id_before_its_submit_response() {
                run(super::receipt_for_a_reused_center_id_before_its_submit_response);
            }
            #[test]
            fn an_old_held_receipt_is_not_given_to_a_new_message() {
                run(super::an_old_held_receipt_is_not_given_to_a_new_message);
            }
            #[test]
            fn expiry_and_finish() {
                run(super::expiry_and_finish);
            }
            #[test]
            fn outbox_ack_and_delete() {
                run(super::outbox_ack_and_delete);
            }
            #[test]
            fn purge_compacts_final_messages() {
                run(super::purge_compacts_final_messages);
            }
            #[test]
            fn purge_splits_runs_of_final_messages() {
                run(super::purge_splits_runs_of_final_messages);
            }
            #[test]
            fn destination_index_can_be_off() {
                run(super::destination_index_can_be_off);
            }
            #[test]
            fn concurrent_producers_group_commit() {
                run(super::concurrent_producers_group_commit);
            }
            #[test]
            fn writer_time_is_split_by_phase() {
                run(super::writer_time_is_split_by_phase);
            }
            #[test]
            fn invalid_names_are_refused() {
                run(super::invalid_names_are_refused);
            }
            #[test]
            fn final_on_insert_queues_receipt() {
                run(super::final_on_insert_queues_receipt);
            }
            #[test]
            fn backpressure_and_linger() {
                run(super::backpressure_and_linger);
            }
            #[test]
            fn queue_depths_follow_each_op() {
                run(super::queue_depths_follow_each_op);
            }
            #[test]
            fn corrupt_record_does_not_wedge_the_queue() {
                run(super::corrupt_record_does_not_wedge_the_queue);
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
