//! Interop: ESMEs nobody here wrote bind to sluice's SMPP server through `serve` —
//! python smpplib 2.2.4 (tests/peers/python/smpp_client.py: short GSM text and a long UCS-2
//! text split by `smpplib.gsm.make_parts`, each part waiting for its response) and node
//! `smpp` 0.5.1 (tests/peers/node/smpp_server_client.js: short text and a two-part UDH text).
//! Checks: bind accepted, every submit answered ESME_ROK with a sluice id (parts of one long
//! message share it), receipts parsed by the peer as deliver_sm with `receipted_message_id`
//! = that id, clean unbind.
//!
//! Skip rule: without python3 + smpplib / node + `smpp` the test prints "skipped: …" and
//! passes, unless `SLUICE_INTEROP=1`, where it fails.

use crate::e2e_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use e2e_support::{init_tracing, sim_listener, start_sim};
use serde_json::Value;
use sluice::config::{Config, hash_api_key};
use sluice::serve::{ServeOptions, start};

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
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

fn spawn(
    program: &str,
    args: &[&str],
    dir: &PathBuf,
) -> Result<(Peer, std_mpsc::Receiver<Value>), String> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{program} ({e})"))?;
    let stdout = child.stdout.take().ok_or("stdout")?;
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
    Ok((Peer(child), rx))
}

fn config(data: &std::path::Path, sim_port: u16) -> Config {
    let text = format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
smpp = "127.0.0.1:0"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "py"
rate = 1000
burst = 1000
smpp_system_id = "esme1"
smpp_password_sha256 = "{py}"
[[accounts]]
name = "node"
rate = 1000
burst = 1000
smpp_system_id = "nodeesme"
smpp_password_sha256 = "{node}"
{sim_channel}"#,
        sim_channel = e2e_support::sim_channel(sim_port),
        data = data.display(),
        py = hash_api_key("secret"),
        node = hash_api_key("pw"),
    );
    Config::parse(&text, "interop.toml").expect("config")
}

/// Reads the peer's JSON lines until `unbound` (or its end); panics on an `error` line.
async fn lines(rx: std_mpsc::Receiver<Value>) -> Vec<Value> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        while let Ok(v) = rx.recv_timeout(Duration::from_secs(40)) {
            assert_ne!(v["event"], "error", "peer failed: {v}");
            let done = v["event"] == "unbound";
            out.push(v);
            if done {
                break;
            }
        }
        out
    })
    .await
    .expect("reader")
}

fn check(lines: &[Value], submits: usize, distinct_ids: usize) {
    let ev = |name: &'static str| lines.iter().filter(move |v| v["event"] == name);
    let bound = ev("bound").next().expect("bound");
    assert_eq!(bound["status"], 0, "{bound}");
    let resps: Vec<&Value> = ev("submit_sm_resp").collect();
    assert_eq!(resps.len(), submits, "{lines:?}");
    let mut ids: Vec<String> = resps
        .iter()
        .map(|r| {
            assert_eq!(r["status"], 0, "{r}");
            r["message_id"].as_str().expect("id").to_owned()
        })
        .collect();
    for id in &ids {
        assert_eq!(id.len(), 26, "sluice id: {id}");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        distinct_ids,
        "parts of a long message share one id: {ids:?}"
    );
    let receipts: Vec<&Value> = ev("deliver_sm").collect();
    assert!(!receipts.is_empty(), "{lines:?}");
    for r in receipts {
        assert_eq!(r["esm_class"].as_u64().map(|e| e & 0x3C), Some(4), "{r}");
        let rid = r["receipted_message_id"]
            .as_str()
            .expect("receipted_message_id");
        assert!(ids.iter().any(|i| i == rid), "{rid} not among {ids:?}");
        let text = r["short_message"].as_str().expect("text");
        assert!(text.starts_with(&format!("id:{rid} sub:001")), "{text}");
    }
    assert_eq!(ev("unbound").next().expect("unbound")["status"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smpplib_and_node_smpp_bind_submit_and_get_receipts() {
    init_tracing();
    let python_ok = Command::new("python3")
        .args(["-c", "import smpplib"])
        .status()
        .is_ok_and(|s| s.success());
    let node_ok = peers_dir().join("node/node_modules/smpp").is_dir();
    if !python_ok {
        skip_or_fail("python3 smpplib");
    }
    if !node_ok {
        skip_or_fail("node smpp (run `npm ci` in tests/peers/node)");
    }
    if !python_ok && !node_ok {
        return;
    }
    let sim = start_sim(sim_listener(), Some(5)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(
        config(dir.path(), sim.addrs()[0].port()),
        ServeOptions::default(),
    )
    .await
    .expect("gateway starts");
    let port = gw.smpp_addr().expect("smpp").port().to_string();

    if python_ok {
        let script = peers_dir().join("python/smpp_client.py");
        let (peer, rx) = spawn(
            "python3",
            &[script.to_str().expect("path"), &port],
            &peers_dir(),
        )
        .expect("python3 starts");
        let got = lines(rx).await;
        drop(peer);
        let parts = got
            .iter()
            .find(|v| v["event"] == "parts")
            .and_then(|v| v["count"].as_u64())
            .expect("parts line");
        assert!(parts >= 2, "the long text is concatenated");
        // Short + every part; two messages.
        check(&got, 1 + usize::try_from(parts).expect("count"), 2);
        assert!(got.iter().any(|v| v["event"] == "enquire_link_resp"));
    }
    if node_ok {
        let (peer, rx) = spawn(
            "node",
            &["smpp_server_client.js", &port],
            &peers_dir().join("node"),
        )
        .expect("node starts");
        let got = lines(rx).await;
        drop(peer);
        check(&got, 3, 2);
        assert_eq!(got.iter().filter(|v| v["event"] == "deliver_sm").count(), 2);
    }
    gw.shutdown().await;
    let _ = sim.shutdown().await;
}
