//! The arrows docs/ARCHITECTURE.md says must never exist, checked on the source text: a
//! module that starts importing what it must not fails here, before the layering erodes.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of `path` with `#[cfg(test)]` modules and comments left out, line by line.
fn code_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .map(str::to_owned)
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `(file, line)` under `dir` (a folder or one file) whose code mentions a forbidden
/// path.
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let p = root().join(dir);
    let files = if p.is_dir() { rust_files(&p) } else { vec![p] };
    let mut out = Vec::new();
    for f in files {
        for (i, l) in code_lines(&f).iter().enumerate() {
            if forbidden.iter().any(|x| l.contains(x)) {
                out.push(format!("{}:{}: {l}", f.display(), i + 1));
            }
        }
    }
    out
}

#[test]
fn dispatch_knows_only_the_egress_seam() {
    let bad = offenders(
        "src/dispatch.rs",
        &["channel::smpp", "channel::cmpp", "sluice_protocols::cmpp"],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_neutral_worker_names_no_protocol() {
    for f in ["src/channel/worker.rs", "src/channel/egress.rs"] {
        let bad = offenders(
            f,
            &[
                "smpp::",
                "cmpp::",
                "super::smpp",
                "super::cmpp",
                "CommandStatus",
            ],
        );
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

#[test]
fn ingress_never_sends() {
    let bad = offenders("src/ingress", &["crate::channel", "crate::dispatch"]);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn channel_status_is_neutral_ground() {
    // Worker and receipt layer write it, ingress reads it: it may name none of them.
    let bad = offenders("src/status.rs", &["crate::", "super::"]);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn store_depends_on_nothing_but_the_clock() {
    let bad = offenders(
        "src/store",
        &[
            "crate::ingress",
            "crate::channel",
            "crate::dispatch",
            "crate::receipt",
            "crate::config",
            "crate::route",
            "crate::serve",
            "crate::schedule",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn store_callers_name_only_the_trait() {
    // Ingress, dispatch, the receipt layer and the stop machinery hold a `GatewayStore`
    // (`Arc<dyn MessageStore>`); which engine sits underneath is decided where `serve` opens
    // the store, so another implementation (a clustered one) replaces it without touching them.
    for dir in ["src/ingress", "src/dispatch.rs", "src/receipt", "src/stop"] {
        let bad = offenders(
            dir,
            &[
                "AnyBackend",
                "RedbBackend",
                "SledBackend",
                "BackendKind",
                "Backend>",
                "Backend,",
                "Store<",
                "store::Store",
                "Store::open",
                "open_store",
            ],
        );
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

#[test]
fn config_and_receipt_keep_their_direction() {
    let bad = offenders("src/config", &["crate::receipt", "crate::channel"]);
    assert!(bad.is_empty(), "{bad:#?}");
    let bad = offenders("src/receipt", &["crate::ingress"]);
    assert!(bad.is_empty(), "{bad:#?}");
    // Ingress asks the public rules; the rules know nothing of batches or doors.
    let bad = offenders("src/rules", &["crate::ingress", "super::ingress"]);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn protocols_are_sans_io() {
    let files = rust_files(&root().join("protocols/src"));
    let mut bad = Vec::new();
    for f in files {
        // The optional tokio-codec adapters are the one place tokio may appear.
        // Unit-test files may read the clock to start a manual timeline.
        if f.file_name()
            .is_some_and(|n| n == "codec.rs" || n == "tests.rs")
        {
            continue;
        }
        for (i, l) in code_lines(&f).iter().enumerate() {
            let io = [
                "tokio::",
                "tokio_util::",
                "std::net",
                "Instant::now",
                "SystemTime::now",
            ];
            if io.iter().any(|x| l.contains(x)) {
                bad.push(format!("{}:{}: {l}", f.display(), i + 1));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
