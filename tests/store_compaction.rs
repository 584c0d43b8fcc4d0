//! Disk use stays bounded when the caller purges: many rounds of insert → finish → purge →
//! outbox ack must not keep growing the redb file (freed pages are reused).

use std::path::Path;

use sluice::store::{
    AnyBackend, BackendKind, Message, MessageState, Op, Payload, Store, WriterConfig,
};

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("sluice.redb")).map_or(0, |m| m.len())
}

#[test]
fn redb_file_stops_growing_under_steady_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        AnyBackend::open(BackendKind::Redb, dir.path()).unwrap(),
        WriterConfig::default(),
        0,
    )
    .unwrap();
    let mut sizes = Vec::new();
    let mut seq = 0u64;
    for round in 0..14u64 {
        let now = 1_000_000 + round * 1_000;
        let msgs: Vec<Message> = (0..300)
            .map(|i| {
                let id = store.ids().next(now);
                let payload = Payload::Text {
                    text: "y".repeat(160),
                    encoding: Default::default(),
                };
                let mut m = Message::new(id, "acme", "+8613800138000", payload, "smsc1", now, now);
                m.client_ref = Some(format!("{round}-{i}"));
                m
            })
            .collect();
        let ids: Vec<_> = msgs.iter().map(|m| m.id).collect();
        store
            .submit_blocking(msgs.into_iter().map(|m| Op::Insert(Box::new(m))).collect())
            .unwrap();
        let finish = ids
            .iter()
            .map(|&id| Op::Finish {
                id,
                state: MessageState::Delivered,
                stat: "DELIVRD".into(),
                err: "000".into(),
                now_ms: now,
            })
            .collect();
        store.submit_blocking(finish).unwrap();
        seq += 300;
        futures::executor::block_on(store.outbox_ack("acme", seq)).unwrap();
        // Retention of two rounds.
        let purged =
            futures::executor::block_on(store.purge(now.saturating_sub(2_000), 10_000)).unwrap();
        if round >= 3 {
            assert_eq!(purged, 300, "round {round}");
        }
        sizes.push(file_size(dir.path()));
    }
    let early = sizes[5];
    let late = *sizes.last().unwrap();
    assert!(
        late <= early + early / 2,
        "file kept growing: after round 5 {early} bytes, after round 13 {late} bytes ({sizes:?})"
    );
}
