//! Crash test: a child process writes through the group-commit writer from several threads and
//! leases some messages, printing every id as soon as the store says it is durable (with the
//! redo log: once logged, before the writer applied it), then dies
//! with `abort()` mid-stream (no destructors, no clean shutdown). The parent reopens the store
//! and checks that every acknowledged message is there and that leases held at the crash come
//! back to the ready queue once expired.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice::store::{
    AnyBackend, BackendKind, Lane, Message, MessageId, MessageState, Op, Payload, Store,
    WriterConfig,
};

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
const BACKEND_ENV: &str = "SLUICE_CRASH_BACKEND";
/// Set (to anything) when the store runs with its redo log.
const LOG_ENV: &str = "SLUICE_CRASH_LOG";
const NOW: u64 = 1_000_000;
const ACKS_BEFORE_CRASH: usize = 2_000;

fn kind(name: &str) -> BackendKind {
    match name {
        "sled" => BackendKind::Sled,
        "fjall" => BackendKind::Fjall,
        _ => BackendKind::Redb,
    }
}

/// The store under `dir` on `backend`, with the redo log under `dir/log` when `logged`:
/// then a commit is durable once logged, and the engine's own commits are not (checkpoints
/// aside), so the reopen must replay the log to find what was acknowledged.
fn open(backend: &str, dir: &Path, now: u64, logged: bool) -> Store<AnyBackend> {
    let engine = AnyBackend::open(kind(backend), dir).unwrap();
    if logged {
        Store::open_logged(
            engine,
            WriterConfig::default(),
            now,
            &dir.join("content"),
            &dir.join("log"),
        )
        .unwrap()
    } else {
        let cfg = WriterConfig {
            redo_log: false,
            ..WriterConfig::default()
        };
        Store::open(engine, cfg, now).unwrap()
    }
}

/// Child side; a no-op when run as a normal test.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(backend)) = (std::env::var(CHILD_ENV), std::env::var(BACKEND_ENV)) else {
        return;
    };
    let store = open(
        &backend,
        Path::new(&dir),
        NOW,
        std::env::var(LOG_ENV).is_ok(),
    );
    let out = Mutex::new(std::io::stdout());
    let acked = AtomicUsize::new(0);
    let logged = std::env::var(LOG_ENV).is_ok();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let batch: Vec<Message> = (0..20)
                        .map(|_| {
                            let id = store.ids().next(NOW);
                            let payload = Payload::Text {
                                text: "x".repeat(200),
                                encoding: Default::default(),
                            };
                            Message::new(id, "acme", "+8613800138000", payload, "smsc1", NOW, NOW)
                        })
                        .collect();
                    let ids: Vec<MessageId> = batch.iter().map(|m| m.id).collect();
                    let ack = || {
                        let mut o = out.lock().unwrap();
                        for id in &ids {
                            writeln!(o, "ACK {}", id.0).unwrap();
                        }
                        o.flush().unwrap();
                    };
                    let ops = batch.into_iter().map(|m| Op::Insert(Box::new(m))).collect();
                    // Acknowledged when the store says durable: with the log, before the
                    // writer applied the batch, so the abort often falls in between.
                    let (durable, on_disk) = tokio::sync::oneshot::channel();
                    let submit = store.submit_durable(ops, durable);
                    futures::executor::block_on(async {
                        futures::pin_mut!(submit);
                        match futures::future::select(submit, on_disk).await {
                            futures::future::Either::Left((r, _)) => {
                                r.unwrap();
                                ack();
                            }
                            futures::future::Either::Right((told, submit)) => {
                                assert!(told.is_ok() && logged, "told durable only with the log");
                                ack();
                                submit.await.unwrap();
                            }
                        }
                    });
                    acked.fetch_add(20, Ordering::SeqCst);
                }
            });
        }
        s.spawn(|| {
            loop {
                let leased = futures::executor::block_on(store.lease(
                    "smsc1",
                    Lane::Notification,
                    NOW,
                    50,
                    1_000,
                ))
                .unwrap();
                let mut o = out.lock().unwrap();
                for m in leased.messages {
                    writeln!(o, "LEASE {}", m.id.0).unwrap();
                }
                o.flush().unwrap();
            }
        });
        s.spawn(|| {
            // With the log, past a checkpoint too: the reopen then finds part of what was
            // acknowledged in the engine's durable state and applies only the groups after it.
            while acked.load(Ordering::SeqCst) < ACKS_BEFORE_CRASH
                || logged && store.stats().checkpoints() == 0
            {
                std::thread::yield_now();
            }
            // Die with producers mid-commit.
            std::process::abort();
        });
    });
}

fn crash_and_recover(backend: &str, logged: bool) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe);
    child
        .args(["--exact", &crate::test_name(module_path!(), "crash_child")])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env(BACKEND_ENV, backend);
    if logged {
        child.env(LOG_ENV, "1");
    }
    let output = child.output().unwrap();
    assert!(!output.status.success(), "child must have aborted");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut acked = HashSet::new();
    let mut leased = HashSet::new();
    for line in stdout.lines() {
        // libtest may print "test crash_child ... " on the same line as the first record.
        if let Some((_, n)) = line.split_once("ACK ") {
            acked.insert(MessageId(n.parse().unwrap()));
        } else if let Some((_, n)) = line.split_once("LEASE ") {
            leased.insert(MessageId(n.parse().unwrap()));
        }
    }
    assert!(
        acked.len() >= ACKS_BEFORE_CRASH,
        "child acked only {}",
        acked.len()
    );

    // Reopen before the leases expire: the dead process's leases are recovered at once (the
    // file lock makes the new process the only owner), so nothing waits for lease expiry.
    {
        let store = open(backend, dir.path(), NOW, logged);
        for id in &acked {
            assert!(store.get(*id).unwrap().is_some(), "acknowledged {id} lost");
        }
        for id in &leased {
            let m = store.get(*id).unwrap().unwrap();
            assert_ne!(m.state, MessageState::InFlight, "{id} still in flight");
            assert_eq!(m.lease_until_ms, None);
        }
        // The queue counters committed with the data they count: exact after the abort.
        let counted = store.queue_depths().without_zeros();
        assert_eq!(counted, store.recount_queue_depths().unwrap());
        // Every stored message is waiting again, and every acknowledged or leased one is stored.
        let known = acked.union(&leased).count() as u64;
        assert!(counted.ready("smsc1", Lane::Notification) >= known);
        assert_eq!(counted.in_flight("smsc1"), 0);
    }
    // Reopen after expiry: every stored message is leasable again, exactly once.
    let store = open(backend, dir.path(), NOW + 10_000, logged);
    let all = futures::executor::block_on(store.lease(
        "smsc1",
        Lane::Notification,
        NOW + 10_000,
        1_000_000,
        1_000,
    ))
    .unwrap();
    let ids: HashSet<MessageId> = all.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), all.messages.len(), "no message leased twice");
    let d = store.queue_depths();
    assert_eq!(d.ready("smsc1", Lane::Notification), 0);
    assert_eq!(d.in_flight("smsc1"), ids.len() as u64);
    for id in acked.iter().chain(leased.iter()) {
        assert!(ids.contains(id), "{id} not back in the ready queue");
    }
    // New ids continue past everything stored.
    let max = ids.iter().max().copied().unwrap();
    assert!(store.ids().next(0) > max);
}

#[test]
fn redb_kill_loses_no_acknowledged_message() {
    crash_and_recover("redb", false);
}

#[test]
fn redb_with_redo_log_kill_loses_no_acknowledged_message() {
    crash_and_recover("redb", true);
}

#[cfg(feature = "sled")]
#[test]
fn sled_kill_loses_no_acknowledged_message() {
    crash_and_recover("sled", false);
}

#[cfg(feature = "fjall")]
#[test]
fn fjall_kill_loses_no_acknowledged_message() {
    crash_and_recover("fjall", false);
}

#[cfg(feature = "fjall")]
#[test]
fn fjall_with_redo_log_kill_loses_no_acknowledged_message() {
    crash_and_recover("fjall", true);
}

#[test]
fn reopen_within_the_lease_time_makes_leased_messages_ready_again() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Store::open(
            AnyBackend::open(BackendKind::Redb, dir.path()).unwrap(),
            WriterConfig::default(),
            NOW,
        )
        .unwrap()
    };
    let store = open();
    let id = store.ids().next(NOW);
    let payload = Payload::Text {
        text: "otp".into(),
        encoding: Default::default(),
    };
    let m = Message::new(id, "acme", "+8613800138000", payload, "smsc1", NOW, NOW);
    futures::executor::block_on(store.insert_batch(vec![m])).unwrap();
    let leased =
        futures::executor::block_on(store.lease("smsc1", Lane::Notification, NOW, 10, 300_000))
            .unwrap();
    assert_eq!(leased.messages.len(), 1);
    drop(store);
    // The process is gone one second later, well within the 5-minute lease.
    let store = open();
    assert_eq!(store.get(id).unwrap().unwrap().state, MessageState::Queued);
    let again = futures::executor::block_on(store.lease(
        "smsc1",
        Lane::Notification,
        NOW + 1_000,
        10,
        300_000,
    ))
    .unwrap();
    assert_eq!(
        again.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![id]
    );
}
