//! Interop: Kannel's bearerbox binds to sluice's SMPP server as an upstream client (`group =
//! smsc`, `smsc = smpp`, transceiver), smsbox's sendsms submits through it, and the receipt
//! sluice sends back as deliver_sm reaches Kannel's dlr-url as "delivered" (type 1) with
//! sluice's id as the foreign id: Kannel correlated our receipt with our submit_sm_resp.
//!
//! Skip rule: without /usr/sbin/bearerbox and smsbox the test prints "skipped: …" and passes,
//! unless `SLUICE_INTEROP=1`, where it fails.

use crate::e2e_support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use e2e_support::{init_tracing, sim_listener, start_sim, wait_until};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{ServeOptions, start};

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn dlr_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/dlr",
            axum::routing::get(
                |State(g): State<Arc<Mutex<Vec<String>>>>, RawQuery(q): RawQuery| async move {
                    g.lock().unwrap().push(q.unwrap_or_default());
                    "ok"
                },
            ),
        )
        .with_state(Arc::clone(&got));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/dlr"), got)
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
name = "kannel"
rate = 1000
burst = 1000
smpp_system_id = "kannel"
smpp_password_sha256 = "{hash}"
{sim_channel}"#,
        sim_channel = e2e_support::sim_channel(sim_port),
        data = data.display(),
        hash = hash_api_key("secret"),
    );
    Config::parse(&text, "kannel.toml").expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_bearerbox_submits_through_sluice_and_gets_the_receipt() {
    if !std::path::Path::new("/usr/sbin/bearerbox").exists()
        || !std::path::Path::new("/usr/sbin/smsbox").exists()
    {
        if std::env::var("SLUICE_INTEROP").as_deref() == Ok("1") {
            panic!("SLUICE_INTEROP=1 but Kannel (bearerbox, smsbox) is missing");
        }
        println!("skipped: Kannel not installed");
        return;
    }
    init_tracing();
    let sim = start_sim(sim_listener(), Some(11)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(
        config(dir.path(), sim.addrs()[0].port()),
        ServeOptions::default(),
    )
    .await
    .expect("gateway starts");
    let smpp_port = gw.smpp_addr().expect("smpp").port();
    let (dlr_url, dlrs) = dlr_sink().await;
    let (admin, boxp, sendsms) = (free_port(), free_port(), free_port());
    let work = dir.path();
    let conf = format!(
        r#"group = core
admin-port = {admin}
admin-password = adm
smsbox-port = {boxp}
box-allow-ip = 127.0.0.1
log-file = "{w}/bearerbox.log"
log-level = 1

group = smsc
smsc = smpp
smsc-id = sluice
host = 127.0.0.1
port = {smpp_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = secret
system-type = ""
interface-version = 34
source-addr-ton = 0
source-addr-npi = 1
dest-addr-ton = 1
dest-addr-npi = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {boxp}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
global-sender = 10690001
log-file = "{w}/smsbox.log"
log-level = 1

group = sendsms-user
username = tester
password = foobar
max-messages = 10
concatenation = true
"#,
        w = work.display()
    );
    let conf_path = work.join("kannel.conf");
    std::fs::write(&conf_path, conf).expect("write conf");
    let spawn = |bin: &str| {
        Peer(
            Command::new(bin)
                .args(["-v", "2"])
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("kannel starts"),
        )
    };
    let _bb = spawn("/usr/sbin/bearerbox");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _sb = spawn("/usr/sbin/smsbox");
    let client = reqwest::Client::new();
    let status_url = format!("http://127.0.0.1:{admin}/status.txt?password=adm");
    let mut online = false;
    for _ in 0..60 {
        if let Ok(r) = client.get(&status_url).send().await
            && let Ok(t) = r.text().await
            && t.contains("(online")
        {
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(online, "Kannel's smsc bind to sluice came online");
    let mut sent = false;
    for _ in 0..40 {
        let r = client
            .get(format!("http://127.0.0.1:{sendsms}/cgi-bin/sendsms"))
            .query(&[
                ("username", "tester"),
                ("password", "foobar"),
                ("to", "8613800138000"),
                ("text", "hello from kannel"),
                ("dlr-mask", "3"),
                ("dlr-url", &format!("{dlr_url}?type=%d&fid=%F")),
            ])
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(sent, "smsbox took the sendsms request");
    let delivered = wait_until(Duration::from_secs(30), || {
        dlrs.lock().unwrap().iter().any(|q| q.contains("type=1"))
    })
    .await;
    let got = dlrs.lock().unwrap().clone();
    assert!(delivered, "Kannel reported the delivery: {got:?}");
    // The foreign id Kannel kept is sluice's id: the message is in sluice's store.
    let q = got.iter().find(|q| q.contains("type=1")).expect("dlr");
    let fid = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("fid="))
        .expect("fid");
    let id: sluice::store::MessageId = fid.parse().expect("a sluice id");
    assert!(gw.store().get(id).expect("read").is_some());
    gw.shutdown().await;
    let _ = sim.shutdown().await;
}
