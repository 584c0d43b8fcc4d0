//! No configured secret ever reaches the logs: `sluice serve` runs as a child process with
//! `RUST_LOG=debug` and a config holding every kind of secret (API key hash, webhook
//! secret, SMPP server password hash, SMPP / CMPP / MM7 channel credentials, MM7 inbound
//! password hash), plus a campaign user's password and the campaign service's API key from
//! the environment. The test drives a login and a bad login, a batch and a bad key, an SMPP
//! bind and a bad bind, an MM7 inbound call with and without the right password, waits for a
//! signed receipt webhook, stops the server, then searches its whole stdout and stderr for
//! each secret and for the SHA-256 hex of each: neither may appear.

use crate::e2e_support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use e2e_support::{Hook, WEBHOOK_SECRET, start_hook, wait_healthy, wait_until};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use sluice::config::hash_api_key;
use sluice_loadtest::config::Account;
use sluice_loadtest::{ListenerConfig, Protocol, SimConfig};
use sluice_protocols::smpp::{Bind, Command as Pdu0, CommandStatus, Pdu, SmppCodec};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const API_KEY: &str = "api-key-Zq8xW3v7Lp2N";
const SMPP_SERVER_PW: &str = "EsmPw4kT";
const CHANNEL_SMPP_PW: &str = "ChPw7xQz";
const CMPP_SECRET: &str = "cmpp-secret-H5tR9w";
const MM7_PW: &str = "mm7-out-pass-K2v8Yd";
const MM7_INBOUND_PW: &str = "mm7-in-pass-J6n3Bs";
const CAMPAIGN_PW: &str = "console-pass-R4m7Vc";

fn secrets() -> Vec<(&'static str, String)> {
    let plain = [
        ("api key", API_KEY),
        ("webhook secret", WEBHOOK_SECRET),
        ("SMPP server password", SMPP_SERVER_PW),
        ("SMPP channel password", CHANNEL_SMPP_PW),
        ("CMPP shared secret", CMPP_SECRET),
        ("MM7 password", MM7_PW),
        ("MM7 inbound password", MM7_INBOUND_PW),
        ("campaign password", CAMPAIGN_PW),
    ];
    let mut out = Vec::new();
    for (what, s) in plain {
        out.push((what, s.to_owned()));
        out.push((what, hash_api_key(s)));
    }
    out
}

async fn simulator() -> sluice_loadtest::SimHandle {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let smsc = ListenerConfig {
        name: "smsc".into(),
        addr: local,
        accounts: vec![Account {
            system_id: "sluice".into(),
            password: CHANNEL_SMPP_PW.into(),
            max_binds: 0,
        }],
        ..ListenerConfig::default()
    };
    let ismg = ListenerConfig {
        name: "ismg".into(),
        protocol: Protocol::Cmpp,
        addr: local,
        accounts: vec![Account {
            system_id: "901234".into(),
            password: CMPP_SECRET.into(),
            max_binds: 0,
        }],
        ..ListenerConfig::default()
    };
    let mut mmsc = ListenerConfig {
        name: "mmsc".into(),
        protocol: Protocol::Mm7,
        addr: local,
        ..ListenerConfig::default()
    };
    mmsc.mm7.auth = Some(sluice_loadtest::config::BasicAuth {
        user: "vasp".into(),
        password: MM7_PW.into(),
    });
    sluice_loadtest::Simulator::start(SimConfig {
        listeners: vec![smsc, ismg, mmsc],
        seed: Some(11),
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

fn config(data: &std::path::Path, sim: &[SocketAddr], hook: &str, http: u16, smpp: u16) -> String {
    format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:{http}"
smpp = "127.0.0.1:{smpp}"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
api_keys = ["{key_hash}"]
rate = 100000
burst = 100000
default_sender = "10690000"
webhook_url = "{hook}/receipts"
mo_url = "{hook}/mo"
webhook_secret = "{WEBHOOK_SECRET}"
smpp_system_id = "acme"
smpp_password_sha256 = "{smpp_hash}"
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {smsc}
system_id = "sluice"
password = "{CHANNEL_SMPP_PW}"
rate = 1000
[[channels]]
name = "ismg"
kind = "cmpp"
host = "127.0.0.1"
port = {ismg}
source_addr = "901234"
shared_secret = "{CMPP_SECRET}"
src_id = "10690000"
rate = 1000
[[channels]]
name = "mms"
kind = "mm7"
url = "http://127.0.0.1:{mmsc}/mm7"
username = "vasp"
password = "{MM7_PW}"
vasp_id = "vasp"
vas_id = "svc"
rate = 10
inbound_username = "mmsc"
inbound_password_sha256 = "{inbound_hash}"
[[routes]]
channel = "sim"
"#,
        data = data.display(),
        key_hash = hash_api_key(API_KEY),
        smpp_hash = hash_api_key(SMPP_SERVER_PW),
        inbound_hash = hash_api_key(MM7_INBOUND_PW),
        smsc = sim[0].port(),
        ismg = sim[1].port(),
        mmsc = sim[2].port(),
    )
}

async fn smpp_bind(addr: SocketAddr, password: &str) -> CommandStatus {
    let mut esme = Framed::new(
        TcpStream::connect(addr).await.expect("connect"),
        SmppCodec::default(),
    );
    let b = Bind {
        system_id: "acme".into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    esme.send(Pdu0::request(1, Pdu::BindTransceiver(b)))
        .await
        .expect("send");
    let status = tokio::time::timeout(Duration::from_secs(20), esme.next())
        .await
        .expect("answer")
        .expect("open")
        .expect("decodes")
        .status;
    if status.is_ok() {
        let _ = esme.send(Pdu0::request(2, Pdu::Unbind)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_appears_in_debug_logs() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let (http_port, smpp_port) = (e2e_support::free_port(), e2e_support::free_port());
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        config(&data, &sim.addrs(), &hook_url, http_port, smpp_port),
    )
    .expect("config");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log");

    // A campaign user with a console password (read from stdin, as an operator would type it).
    let mut init = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["campaign", "--db"])
        .arg(data.join("campaign.db"))
        .args([
            "admin",
            "init",
            "--org",
            "province",
            "--user",
            "admin",
            "--password-stdin",
        ])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.try_clone().expect("log")))
        .spawn()
        .expect("admin init");
    writeln!(init.stdin.take().expect("stdin"), "{CAMPAIGN_PW}").expect("password");
    assert!(init.wait().expect("admin init").success());

    let mut serve = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--drain-secs", "2", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "debug")
        .env("SLUICE_CAMPAIGN_KEY", API_KEY)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("serve");
    let base = format!("http://127.0.0.1:{http_port}");
    sluice::tls::install_provider();
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;

    // Console login, good and bad.
    let login = |password: &str| {
        http.post(format!("{base}/v1/campaign/login"))
            .json(&json!({"user": "admin", "password": password}))
            .send()
    };
    assert_eq!(login(CAMPAIGN_PW).await.expect("login").status(), 200);
    assert_eq!(login("wrong-password").await.expect("login").status(), 401);
    // A batch, and one with an unknown key.
    let batch = json!({"messages": [{"to": "8613800138000", "text": "hello"}]});
    let r = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(API_KEY)
        .json(&batch)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), 202);
    let r = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth("not-the-key")
        .json(&batch)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), 401);
    // SMPP server binds, good and bad.
    let smpp: SocketAddr = ([127, 0, 0, 1], smpp_port).into();
    assert_eq!(
        smpp_bind(smpp, SMPP_SERVER_PW).await,
        CommandStatus::EsmeRok
    );
    assert_ne!(smpp_bind(smpp, "WrongPw1").await, CommandStatus::EsmeRok);
    // MM7 inbound with the wrong and the right password (the body is no valid MM7).
    for pw in ["wrong", MM7_INBOUND_PW] {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("mmsc:{pw}"));
        let _ = http
            .post(format!("{base}/mm7/mms"))
            .header("Authorization", format!("Basic {auth}"))
            .header("Content-Type", "text/xml")
            .body("<not-mm7/>")
            .send()
            .await
            .expect("mm7 inbound");
    }
    // The receipt webhook, signed with the secret.
    assert!(
        wait_until(Duration::from_secs(30), || !hook
            .receipts
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "a signed receipt webhook"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    let _ = sim.shutdown().await;

    let text = String::from_utf8_lossy(&std::fs::read(&log_path).expect("log")).into_owned();
    assert!(
        text.contains("DEBUG"),
        "the log ran at debug level ({} bytes)",
        text.len()
    );
    let leaks: Vec<String> = secrets()
        .into_iter()
        .filter(|(_, s)| text.contains(s.as_str()))
        .map(|(what, s)| {
            let at = text.find(s.as_str()).unwrap_or(0);
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            format!("{what}: {}", &text[line_start..line_end])
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}

/// Debug output of every config type that holds a secret (what a `?config` log field or a
/// panic message would print) redacts it.
#[test]
fn debug_output_of_configs_redacts_every_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 2000 + i)))
        .collect();
    let config = sluice::config::Config::parse(
        &config(dir.path(), &sim, "http://127.0.0.1:9", 0, 0),
        "secrets.toml",
    )
    .expect("config");
    let mut printed = vec![format!("{config:?}")];
    for ch in &config.channels {
        printed.push(format!("{ch:?}"));
        match &ch.protocol {
            sluice::config::Protocol::Smpp(s) => printed.push(format!(
                "{:?}",
                sluice::channel::smpp::WorkerConfig::from_config(ch, s)
            )),
            sluice::config::Protocol::Cmpp(c) => printed.push(format!(
                "{:?}",
                sluice::channel::cmpp::CmppChannelConfig::from_config(
                    ch,
                    c,
                    jiff::tz::TimeZone::UTC
                )
            )),
            sluice::config::Protocol::Mm7(m) => printed.push(format!(
                "{:?}",
                sluice::channel::mm7::Mm7ChannelConfig::from_config(ch, m).expect("mm7")
            )),
        }
    }
    printed.push(format!(
        "{:?}",
        sluice::serve::ServeOptions {
            campaign: Some(sluice::serve::CampaignHost {
                db: dir.path().join("c.db"),
                api_key: API_KEY.into(),
                dev_admin_key: Some(API_KEY.into()),
            }),
            ..sluice::serve::ServeOptions::default()
        }
    ));
    let text = printed.join("\n");
    let leaks: Vec<&str> = secrets()
        .iter()
        .filter(|(_, s)| text.contains(s.as_str()))
        .map(|(what, _)| *what)
        .collect();
    assert!(leaks.is_empty(), "{leaks:?} in {text}");
}
