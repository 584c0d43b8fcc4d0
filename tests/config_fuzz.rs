//! Bad config text never panics `Config::parse`: byte edits of the documented example
//! (`config/sluice.toml`, every key) and of a minimal gateway config must come back as a
//! typed `ConfigError` or a config, never a crash.
//!
//! 100 000 cases per seed by default (≈ 0.6 ms a case in a debug build: TOML parse plus
//! validation); `SLUICE_FUZZ_LONG=1` runs 1 000 000 each.

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use sluice::config::Config;

fn cases() -> u32 {
    if std::env::var("SLUICE_FUZZ_LONG").is_ok_and(|v| v == "1") {
        1_000_000
    } else {
        100_000
    }
}

/// The documented example with its commented-out keys switched on, so edits reach them.
fn documented() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sluice.toml");
    let text = std::fs::read_to_string(path).expect("config/sluice.toml");
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            // "# key = value" lines and "# [table]" lines; prose comments stay comments.
            match t.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty()
                                && k.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                        }) =>
                {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const MINIMAL: &str = r#"timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
[storage]
path = "/nonexistent/sluice-fuzz"
[[accounts]]
name = "acme"
api_keys = ["0000000000000000000000000000000000000000000000000000000000000000"]
rate = 100
webhook_url = "http://127.0.0.1:9/r"
webhook_secret = "0123456789abcdef0123"
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "s"
password = "p"
rate = 100
[[routes]]
channel = "sim"
prefixes = ["86"]
"#;

fn fuzz(seed: &str) {
    let seed = seed.as_bytes().to_vec();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let edits = prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..4, 1usize..40), 1..8);
    runner
        .run(&edits, |edits| {
            let mut b = seed.clone();
            for (at, byte, how, n) in edits {
                let i = at % b.len().max(1);
                match how {
                    0 => {
                        if let Some(x) = b.get_mut(i) {
                            *x = byte;
                        }
                    }
                    1 => b.insert(i, byte),
                    2 => {
                        let end = (i + n).min(b.len());
                        b.drain(i..end);
                    }
                    _ => {
                        // Duplicate a run: repeated keys and tables.
                        let end = (i + n).min(b.len());
                        let run = b[i..end].to_vec();
                        b.splice(end..end, run);
                    }
                }
            }
            let _ = Config::parse(&String::from_utf8_lossy(&b), "fuzz.toml");
            Ok(())
        })
        .unwrap();
}

#[test]
fn documented_config_with_edits_never_panics() {
    let text = documented();
    // The seed itself is a config the parser takes or refuses with a typed error.
    let _ = Config::parse(&text, "documented.toml");
    fuzz(&text);
}

#[test]
fn minimal_config_with_edits_never_panics() {
    Config::parse(MINIMAL, "minimal.toml").expect("the seed is valid");
    fuzz(MINIMAL);
}
