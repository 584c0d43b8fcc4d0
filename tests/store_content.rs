//! The content store's durability: a committed MMS finds its content after the store is
//! reopened; content written for an insert that never committed is removed at open; a
//! released content whose collection a crash interrupted is removed at open too.

use sluice::store::{
    AnyBackend, BackendKind, Message, MessageId, MessageKind, Op, Payload, Store, WriterConfig,
    open_store,
};

fn inserts(ms: Vec<Message>) -> Vec<Op> {
    ms.into_iter().map(|m| Op::Insert(Box::new(m))).collect()
}

const NOW: u64 = 1_790_000_000_000;

fn open(dir: &std::path::Path) -> Store<AnyBackend> {
    open_store(BackendKind::Redb, dir, WriterConfig::default(), NOW).expect("open")
}

fn mms(id: u64, digest: [u8; 32], size: u64) -> Message {
    let mut m = Message::new(
        MessageId(id),
        "acme",
        "+8613800138000",
        Payload::Mms {
            subject: None,
            content_type: "multipart/related; boundary=\"b\"".into(),
            digest,
            size,
        },
        "mm7",
        NOW,
        NOW,
    );
    m.kind = MessageKind::Mms;
    m
}

#[test]
fn committed_content_survives_reopen_and_orphans_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kept, orphan) = {
        let store = open(dir.path());
        let pin = store.put_content(b"committed body").expect("put");
        let kept = *pin.digest();
        store
            .submit_blocking(inserts(vec![mms(1, kept, pin.size())]))
            .expect("insert");
        drop(pin);
        // Written, never committed (the process dies before the insert).
        let lost = store.put_content(b"never committed").expect("put");
        let orphan = *lost.digest();
        drop(lost);
        assert!(store.load_content(&orphan).expect("load").is_some());
        (kept, orphan)
    };
    let store = open(dir.path());
    assert_eq!(
        store.load_content(&kept).expect("load").as_deref(),
        Some(&b"committed body"[..])
    );
    assert_eq!(store.content_refs(&kept).expect("refs"), 1);
    assert_eq!(
        store.load_content(&orphan).expect("load"),
        None,
        "orphan swept at open"
    );
    // The message still reads back with its reference.
    let m = store.get(MessageId(1)).expect("get").expect("stored");
    assert_eq!(m.payload.content_digest(), Some(&kept));
}

#[test]
fn a_duplicate_insert_adds_no_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let pin = store.put_content(b"body").expect("put");
    let d = *pin.digest();
    store
        .submit_blocking(inserts(vec![mms(1, d, 4), mms(1, d, 4), mms(2, d, 4)]))
        .expect("insert");
    assert_eq!(store.content_refs(&d).expect("refs"), 2);
}
