//! Interop: sluice's SMPP egress channel (bind driver + worker) against an SMSC nobody here
//! wrote — node `smpp` 0.5.1's `createServer`, in tests/peers/node/smsc_server.js.
//!
//! Checks: bind with our credentials, short and long messages (UDH 8-bit, 16-bit, SAR) as the
//! peer parses them, each part's center id (hex) reported back, and delivery receipts whose
//! id the peer writes in decimal correlating with the hex ids after normalisation.
//!
//! Skip rule: without node or the `smpp` package the test prints "skipped: …" and passes,
//! unless `SLUICE_INTEROP=1`, where it fails.

use crate::channel_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;

use channel_common::{Rig, WAIT, center_ids, config, text};
use serde_json::Value;
use sluice::channel::Outcome;
use sluice::channel::{ChannelEvent, normalise_center_id};
use sluice_protocols::smpp::IdFormat;
use sluice_protocols::sms::ConcatScheme;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/node")
}

/// Starts the node SMSC, or explains why it cannot (missing peer).
fn start_peer() -> Result<(Child, std_mpsc::Receiver<Value>), String> {
    let dir = node_dir();
    if !dir.join("node_modules/smpp").is_dir() {
        return Err("node smpp (run `npm install` in tests/peers/node)".into());
    }
    let mut child = Command::new("node")
        .arg("smsc_server.js")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("node ({e})"))?;
    let stdout = child.stdout.take().ok_or("node stdout")?;
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    Ok((child, rx))
}

fn skip_or_fail(why: &str) {
    if std::env::var("SLUICE_INTEROP").as_deref() == Ok("1") {
        panic!("SLUICE_INTEROP=1 but the peer is missing: {why}");
    }
    println!("skipped: {why} not installed");
}

/// Kills the peer when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run_against_node(scheme: ConcatScheme) {
    let (child, lines) = match start_peer() {
        Ok(p) => p,
        Err(why) => return skip_or_fail(&why),
    };
    let _peer = Peer(child);
    let first = lines.recv_timeout(WAIT).expect("node SMSC starts");
    assert_eq!(first["event"], "listening", "{first}");
    let port = first["port"].as_u64().expect("port");

    let mut cfg = config(format!("127.0.0.1:{port}"), 200);
    cfg.parts.concat = scheme;
    let mut rig = Rig::start(cfg);
    let short = text(1, "hello node".into());
    // 300 ASCII characters: 2 parts (UDH 153/152, SAR 160 per part).
    let long_text: String = (0..300)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let long = text(2, long_text.clone());
    // UCS-2: 100 Chinese characters, 2 parts (67/66 or 70 per part).
    let ucs2_text = "你好世界".repeat(25);
    let ucs2 = text(3, ucs2_text.clone());
    let outcomes = rig.run_all(vec![short, long, ucs2]).await;

    // Every part accepted, ids as the peer issued them (hex).
    let ids: HashMap<u64, Vec<String>> = outcomes
        .iter()
        .map(|(id, o)| (*id, center_ids(o).to_vec()))
        .collect();
    assert_eq!(ids[&1].len(), 1);
    assert_eq!(ids[&2].len(), 2);
    assert_eq!(ids[&3].len(), 2);
    assert!(outcomes.values().all(|o| matches!(o, Outcome::Sent { .. })));

    // Receipts: one per part, quoting the id in decimal; they correlate after normalisation.
    let all_ids: Vec<&String> = ids.values().flatten().collect();
    rig.events_until(|seen| {
        seen.iter()
            .filter(|e| matches!(e, ChannelEvent::Receipt { .. }))
            .count()
            >= all_ids.len()
    })
    .await;
    let receipts: HashMap<String, String> = rig
        .receipts()
        .into_iter()
        .map(|(raw, stat)| (normalise_center_id(&raw, IdFormat::Decimal).into(), stat))
        .collect();
    for raw in &all_ids {
        let key = normalise_center_id(raw, IdFormat::Hex);
        assert_eq!(
            receipts.get(key.as_str()).map(String::as_str),
            Some("DELIVRD"),
            "receipt for center id {raw} (key {key}); receipts {receipts:?}"
        );
    }
    rig.stop().await;

    // What the peer parsed.
    let mut submits = Vec::new();
    let mut binds = Vec::new();
    let mut deliver_ok = 0;
    let mut unbound = false;
    while let Ok(v) = lines.recv_timeout(std::time::Duration::from_millis(500)) {
        match v["event"].as_str() {
            Some("submit_sm") => submits.push(v),
            Some("bind") => binds.push(v),
            Some("deliver_sm_resp") if v["status"] == 0 => deliver_ok += 1,
            Some("unbind") => unbound = true,
            Some("error") => panic!("peer error: {v}"),
            _ => {}
        }
        if submits.len() == 5 && deliver_ok == 5 && unbound {
            break;
        }
    }
    assert_eq!(binds[0]["kind"], "bind_transceiver");
    assert_eq!(binds[0]["system_id"], "esme");
    assert_eq!(binds[0]["password"], "pw");
    assert_eq!(submits.len(), 5, "{submits:?}");
    assert_eq!(deliver_ok, 5, "our deliver_sm_resp answers were accepted");
    assert!(unbound, "the channel unbinds on shutdown");
    let by_id: HashMap<&str, &Value> = submits
        .iter()
        .map(|s| (s["message_id"].as_str().unwrap(), s))
        .collect();
    let part = |msg: u64, n: usize| by_id[ids[&msg][n].as_str()];

    let s = part(1, 0);
    assert_eq!(s["text"], "hello node");
    assert_eq!(s["destination_addr"], "8613800000001");
    assert_eq!(s["dest_addr_ton"], 1);
    assert_eq!(s["registered_delivery"], 1);
    assert!(s["udh"].as_array().unwrap().is_empty());

    let mut reassembled = String::new();
    for n in 0..2 {
        let s = part(2, n);
        reassembled.push_str(s["text"].as_str().unwrap());
        check_concat(scheme, s, n);
    }
    assert_eq!(reassembled, long_text, "long GSM text reassembles");

    let mut reassembled = String::new();
    for n in 0..2 {
        let s = part(3, n);
        assert_eq!(s["data_coding"], 8);
        reassembled.push_str(s["text"].as_str().unwrap());
        check_concat(scheme, s, n);
    }
    assert_eq!(reassembled, ucs2_text, "long UCS-2 text reassembles");
}

/// The part carries concatenation info the peer understood, in exactly one form.
fn check_concat(scheme: ConcatScheme, s: &Value, n: usize) {
    let seq = n + 1;
    let udh = s["udh"].as_array().unwrap();
    match scheme {
        ConcatScheme::Udh8 => {
            assert_eq!(s["esm_class"].as_u64().unwrap() & 0x40, 0x40);
            let ie = udh[0].as_str().unwrap();
            assert_eq!(&ie[..4], "0003", "IE 0x00, length 3: {ie}");
            assert_eq!(&ie[6..], format!("02{seq:02x}"));
            assert!(s["sar"].is_null(), "UDH and SAR never both");
        }
        ConcatScheme::Udh16 => {
            let ie = udh[0].as_str().unwrap();
            assert_eq!(&ie[..4], "0804", "IE 0x08, length 4: {ie}");
            assert_eq!(&ie[8..], format!("02{seq:02x}"));
            assert!(s["sar"].is_null(), "UDH and SAR never both");
        }
        ConcatScheme::Sar => {
            assert!(udh.is_empty(), "no UDH with SAR");
            assert_eq!(s["esm_class"].as_u64().unwrap() & 0x40, 0);
            assert_eq!(s["sar"]["total"], 2);
            assert_eq!(s["sar"]["seq"], seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smsc_udh8() {
    run_against_node(ConcatScheme::Udh8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smsc_udh16() {
    run_against_node(ConcatScheme::Udh16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smsc_sar() {
    run_against_node(ConcatScheme::Sar).await;
}
