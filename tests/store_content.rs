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

const CHILD_ENV: &str = "SLUICE_CONTENT_CRASH_CHILD_DIR";
const ACKS_BEFORE_CRASH: usize = 200;

/// Child side of the crash test; a no-op when run as a normal test. Threads write a distinct
/// content per batch and insert MMS messages referencing it, printing each id with its digest
/// once the commit is acknowledged; another thread writes content it never inserts; then the
/// process aborts mid-stream (no destructors, no clean shutdown).
#[test]
fn content_crash_child() {
    use std::io::Write as _;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    let out = Mutex::new(std::io::stdout());
    let acked = AtomicUsize::new(0);
    let seq = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let n = seq.fetch_add(1, Ordering::SeqCst);
                    let body = format!("content {n} {}", "x".repeat(4000)).into_bytes();
                    let pin = store.put_content(&body).expect("put");
                    let d = *pin.digest();
                    let batch: Vec<Message> = (0..5)
                        .map(|_| mms(store.ids().next(NOW).0, d, pin.size()))
                        .collect();
                    let ids: Vec<MessageId> = batch.iter().map(|m| m.id).collect();
                    store.submit_blocking(inserts(batch)).expect("insert");
                    drop(pin);
                    let hex = sluice::store::content::digest_hex(&d);
                    let mut o = out.lock().expect("stdout");
                    for id in ids {
                        writeln!(o, "ACK {} {hex}", id.0).expect("write");
                    }
                    o.flush().expect("flush");
                    drop(o);
                    acked.fetch_add(5, Ordering::SeqCst);
                }
            });
        }
        s.spawn(|| {
            for n in 0.. {
                // Written, never referenced: must not survive the next open.
                drop(
                    store
                        .put_content(format!("orphan {n}").as_bytes())
                        .expect("put"),
                );
            }
        });
        s.spawn(|| {
            while acked.load(Ordering::SeqCst) < ACKS_BEFORE_CRASH {
                std::thread::yield_now();
            }
            std::process::abort();
        });
    });
}

#[test]
fn after_a_crash_every_acknowledged_mms_has_its_content_and_no_file_is_unreferenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            &crate::test_name(module_path!(), "content_crash_child"),
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("run child");
    assert!(!output.status.success(), "child must have aborted");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let acked: Vec<(MessageId, String)> = stdout
        .lines()
        .filter_map(|l| l.split_once("ACK ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let (id, hex) = rest.split_once(' ')?;
            Some((MessageId(id.parse().ok()?), hex.trim().to_owned()))
        })
        .collect();
    assert!(
        acked.len() >= ACKS_BEFORE_CRASH,
        "child acked only {}",
        acked.len()
    );
    let store = open(dir.path());
    for (id, hex) in &acked {
        let m = store
            .get(*id)
            .expect("get")
            .expect("acknowledged message lost");
        let d = *m.payload.content_digest().expect("mms");
        assert_eq!(&sluice::store::content::digest_hex(&d), hex);
        let body = store.load_content(&d).expect("load").expect("content lost");
        assert_eq!(sluice::store::content::digest(&body), d, "content damaged");
    }
    // Every file left is referenced by a stored message; orphans and temporaries are gone.
    let top = dir.path().join("content");
    let mut files = 0;
    for sub in std::fs::read_dir(&top).expect("content dir").flatten() {
        for f in std::fs::read_dir(sub.path()).expect("sub").flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let d: [u8; 32] = (0..32)
                .map(|i| u8::from_str_radix(&name[2 * i..2 * i + 2], 16).expect("hex name"))
                .collect::<Vec<_>>()
                .try_into()
                .expect("32 bytes");
            assert!(
                store.content_refs(&d).expect("refs") > 0,
                "unreferenced file {name}"
            );
            files += 1;
        }
    }
    assert!(files >= ACKS_BEFORE_CRASH / 5, "{files} content files");
}
