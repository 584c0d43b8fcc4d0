//! The simulator with the node `smpp` package as the client: bind, submit, receipts.
//! Needs `npm install` in tests/peers/node. Skip/FAIL rule: see tests/common.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{listener, peer_available, repo_root, start};
use sluice_loadtest::config::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_binds_submits_and_receives_receipts() {
    let dir = repo_root().join("tests/peers/node");
    let present = dir.join("node_modules/smpp").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !peer_available("node smpp", present) {
        return;
    }
    let sim = start(vec![listener(Protocol::Smpp)]).await;
    let port = sim.addrs()[0].port().to_string();
    let script = dir.join("sim_node.js");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("60")
            .arg("node")
            .arg(script)
            .args([&port, "esme", "pw", "25", "node"])
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node smpp failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let ids = |k: &str| -> BTreeSet<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (resp, dlr) = (ids("resp_ids"), ids("dlr_ids"));
    assert_eq!(resp.len(), 25);
    assert_eq!(resp, dlr);
    let t = sim.shutdown().await.unwrap();
    assert_eq!(
        (
            t.unique_messages,
            t.duplicates,
            t.dlrs_sent,
            t.deliver_resps_received
        ),
        (25, 0, 25, 25),
        "{t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_bind_with_wrong_password_is_refused() {
    let dir = repo_root().join("tests/peers/node");
    let present = dir.join("node_modules/smpp").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !peer_available("node smpp", present) {
        return;
    }
    let sim = start(vec![listener(Protocol::Smpp)]).await;
    let port = sim.addrs()[0].port().to_string();
    let script = dir.join("sim_node.js");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("60")
            .arg("node")
            .arg(script)
            .args([&port, "esme", "wrong", "1", "x"])
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"status\":14"),
        "ESME_RINVPASWD"
    );
    let t = sim.shutdown().await.unwrap();
    assert_eq!((t.binds, t.bind_failures), (0, 1));
}
