//! Disk full (issue 18, "Resource faults"): the store on a small tmpfs that the test fills
//! with a filler file. While it is full, HTTP ingress answers 503 with `Retry-After` (never
//! 500) and the SMPP server answers submit_sm `ESME_RMSGQFUL`; once the filler is deleted,
//! ingress works again without a restart; after a restart every acknowledged message (HTTP
//! 202 or SMPP ESME_ROK) is readable. `sluice_store_no_space_total` counts the refusals.
//!
//! Needs `mount -t tmpfs` (root). When mounting is not permitted the test FAILS with
//! `SLUICE_INTEROP=1` and is skipped with a printed reason otherwise.

use crate::e2e_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use e2e_support::{KEY, init_tracing, sim_listener, start_sim};
use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{ServeOptions, start};
use sluice_protocols::smpp::{
    Address, Bind, Command, CommandId, CommandStatus, MessageIdResp, Pdu, Sm, decode_slice,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
/// Room left after filling: batches are acknowledged right up to the edge.
const SLACK: u64 = 2 << 20;

/// A tmpfs mounted for the test; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. "16m"), or says why it cannot.
    fn mount(size: &str) -> Result<Self, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Writes zeros to `path` until the filesystem refuses (ENOSPC); returns bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert!(
                    sluice::store::is_no_space(&e),
                    "filler stopped on {e}, not ENOSPC"
                );
                break;
            }
        }
    }
    let _ = f.sync_all();
    n
}

fn config(data: &Path, sim_port: u16) -> Config {
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
name = "acme"
api_keys = ["{key}"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
smpp_system_id = "acme"
smpp_password_sha256 = "{pw}"
{sim_channel}"#,
        data = data.display(),
        key = hash_api_key(KEY),
        pw = hash_api_key("secret"),
        sim_channel = e2e_support::sim_channel(sim_port),
    );
    Config::parse(&text, "disk_full.toml").expect("config")
}

/// POSTs `n` messages; returns status, `Retry-After` and body.
async fn post(client: &reqwest::Client, base: &str, n: usize) -> (u16, Option<String>, Value) {
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({"to": format!("86138{:08}", i), "text": "disk full test message"}))
        .collect();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(KEY)
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

fn ids_of(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

struct Esme {
    s: TcpStream,
    seq: u32,
}

impl Esme {
    async fn bind(addr: std::net::SocketAddr) -> Self {
        let mut e = Self {
            s: TcpStream::connect(addr).await.expect("connect"),
            seq: 1,
        };
        let b = Bind {
            system_id: "acme".into(),
            password: "secret".into(),
            interface_version: 0x34,
            ..Bind::default()
        };
        e.send(Pdu::BindTransmitter(b)).await;
        let r = e.next().await;
        assert_eq!(r.status, CommandStatus::EsmeRok, "bind");
        e
    }

    async fn send(&mut self, pdu: Pdu) {
        let mut buf = BytesMut::new();
        Command::request(self.seq, pdu)
            .encode(&mut buf)
            .expect("encode");
        self.seq += 1;
        self.s.write_all(&buf).await.expect("write");
    }

    async fn next(&mut self) -> Command {
        loop {
            let mut head = [0u8; 4];
            tokio::time::timeout(WAIT, self.s.read_exact(&mut head))
                .await
                .expect("PDU in time")
                .expect("read");
            let len = u32::from_be_bytes(head) as usize;
            let mut all = head.to_vec();
            all.resize(len, 0);
            tokio::time::timeout(WAIT, self.s.read_exact(&mut all[4..]))
                .await
                .expect("PDU in time")
                .expect("read");
            let c = decode_slice(&all).expect("decodes").command;
            if c.command_id() == CommandId::EnquireLink {
                let mut buf = BytesMut::new();
                Command::request(c.sequence, Pdu::EnquireLinkResp)
                    .encode(&mut buf)
                    .expect("encode");
                self.s.write_all(&buf).await.expect("write");
                continue;
            }
            return c;
        }
    }

    /// One submit_sm; its status and (on ESME_ROK) id.
    async fn submit(&mut self) -> (CommandStatus, Option<String>) {
        self.send(Pdu::SubmitSm(Sm {
            source: Address::new(0, 0, "10690000"),
            dest: Address::new(1, 1, "8613800138000"),
            short_message: b"disk full over smpp".as_slice().into(),
            ..Sm::default()
        }))
        .await;
        let r = self.next().await;
        let id = match &r.pdu {
            Pdu::SubmitSmResp(MessageIdResp { message_id, .. }) if r.status.is_ok() => {
                Some(String::from_utf8_lossy(message_id.as_slice()).to_string())
            }
            _ => None,
        };
        (r.status, id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_rmsgqful_nothing_acknowledged_is_lost_and_ingress_recovers() {
    init_tracing();
    let fs = match Tmpfs::mount("16m") {
        Ok(fs) => fs,
        Err(reason) if std::env::var_os("SLUICE_INTEROP").is_none() => {
            eprintln!("SKIPPED disk_full: {reason} (needs root; SLUICE_INTEROP=1 makes this fail)");
            return;
        }
        Err(reason) => panic!("SLUICE_INTEROP=1 and no tmpfs: {reason}"),
    };
    let metrics = sluice::metrics::install().expect("recorder");
    let sim = start_sim(sim_listener(), Some(11)).await;
    let data = fs.dir.join("data");
    let cfg = config(&data, sim.addrs()[0].port());
    let opts = || ServeOptions {
        drain_deadline: Duration::from_secs(5),
        metrics: Some(metrics.clone()),
        ..ServeOptions::default()
    };
    let gw = start(cfg.clone(), opts()).await.expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();
    let mut acked: Vec<String> = Vec::new();

    let (s, _, v) = post(&client, &base, 10).await;
    assert_eq!(s, 202, "{v}");
    acked.extend(ids_of(&v));

    // Fill the disk, then keep posting until the store refuses.
    let filler = fs.dir.join("filler");
    let filled = fill(&filler);
    assert!(filled > SLACK, "the filler wrote only {filled} bytes");
    // Leave some room, so batches are acknowledged right up to the edge.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(filled - SLACK))
        .expect("trim filler");
    let mut refused = None;
    for _ in 0..400 {
        let (s, retry, v) = post(&client, &base, 50).await;
        match s {
            202 => acked.extend(ids_of(&v)),
            503 => {
                refused = Some((retry, v));
                break;
            }
            other => panic!("a full disk answered {other}: {v}"),
        }
    }
    let (retry, body) = refused.expect("the store never ran out of space");
    assert!(retry.is_some(), "503 without Retry-After: {body}");
    assert_eq!(body["error"], "storage full", "{body}");

    // The SMPP server: ESME_RMSGQFUL while full. The store reuses the pages the failed
    // commit freed, so small submits may still fit for a while: an ROK means it was stored
    // (remembered and checked after the restart).
    let mut esme = Esme::bind(gw.smpp_addr().expect("smpp")).await;
    let mut full_seen = false;
    for _ in 0..5000 {
        match esme.submit().await {
            (CommandStatus::EsmeRmsgqful, _) => {
                full_seen = true;
                break;
            }
            (CommandStatus::EsmeRok, Some(id)) => acked.push(id),
            other => panic!("a full disk answered submit_sm {other:?}"),
        }
    }
    assert!(
        full_seen,
        "submit_sm never got ESME_RMSGQFUL on a full disk"
    );
    // Still full: HTTP still refuses with 503, not 500.
    let (s, _, v) = post(&client, &base, 5).await;
    assert!(s == 503 || s == 202, "{s} {v}");
    if s == 202 {
        acked.extend(ids_of(&v));
    }

    // Space returns: ingress recovers without a restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let mut recovered = false;
    for _ in 0..100 {
        let (s, _, v) = post(&client, &base, 5).await;
        match s {
            202 => {
                acked.extend(ids_of(&v));
                recovered = true;
                break;
            }
            503 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("recovering store answered {other}: {v}"),
        }
    }
    assert!(
        recovered,
        "HTTP ingress did not recover once space returned"
    );
    let (st, id) = esme.submit().await;
    assert_eq!(st, CommandStatus::EsmeRok, "SMPP ingress recovered");
    acked.extend(id);

    let text = metrics.render();
    let no_space: f64 = text
        .lines()
        .filter(|l| l.starts_with("sluice_store_no_space_total"))
        .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
        .sum();
    assert!(no_space >= 2.0, "no-space refusals counted: {no_space}");
    drop(esme);
    gw.shutdown().await;

    // After a restart every acknowledged id is there.
    let gw = start(cfg, opts()).await.expect("gateway restarts");
    let base = format!("http://{}", gw.http_addr());
    assert!(acked.len() > 10, "{} acknowledged", acked.len());
    for id in &acked {
        let r = client
            .get(format!("{base}/v1/messages/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200, "acknowledged {id} is gone");
    }
    eprintln!(
        "disk_full: {} acknowledged ids all readable after restart; {no_space} refusals counted",
        acked.len()
    );
    gw.shutdown().await;
    let _ = sim.shutdown().await;
    drop(fs);
}
