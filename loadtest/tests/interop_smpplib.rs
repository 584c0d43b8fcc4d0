//! The simulator with python smpplib as the client: bind, submit (short and UDH-concatenated
//! long), receive and acknowledge receipts. Skip/FAIL rule: see tests/common.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{listener, peer_available, repo_root, start};
use sluice_loadtest::config::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpplib_binds_submits_and_receives_receipts() {
    let present = Command::new("python3")
        .args(["-c", "import smpplib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !peer_available("python smpplib", present) {
        return;
    }
    let mut l = listener(Protocol::Smpp);
    l.message_id = sluice_loadtest::config::IdFormat::DecimalPadded;
    let sim = start(vec![l]).await;
    let port = sim.addrs()[0].port().to_string();
    let script = repo_root().join("tests/peers/python/sim_smpplib.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("60")
            .arg("python3")
            .arg(script)
            .args([&port, "esme", "pw", "20", "py"])
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "smpplib failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let long_parts = v["long_parts"].as_u64().unwrap();
    assert!(long_parts >= 2);
    let resp: BTreeSet<String> = v["resp_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    let dlr: BTreeSet<String> = v["dlr_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(resp.len() as u64, 20 + long_parts);
    assert!(
        resp.iter().all(|id| id.len() == 10),
        "zero-padded decimal ids: {resp:?}"
    );
    assert_eq!(
        resp, dlr,
        "every submit got its receipt, matched by receipted_message_id"
    );
    assert!(
        v["stats"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == "DELIVRD")
    );
    let t = sim.shutdown().await.unwrap();
    assert_eq!(t.unique_messages, 21, "{t:?}");
    assert_eq!(t.duplicates, 0);
    assert_eq!(
        t.parts_per_message.get(&long_parts.to_string()),
        Some(&1),
        "long message reassembled: {t:?}"
    );
    assert_eq!(t.deliver_resps_received, 20 + long_parts);
}
