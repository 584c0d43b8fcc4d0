//! TLS end to end on 127.0.0.1 with an rcgen private CA written to a temp dir: an HTTPS
//! batch goes through a channel that speaks TLS to the simulator and its receipt reaches the
//! webhook; an ESME binds and submits over TLS to the SMPP server; a certificate rewritten on
//! disk is served to the next handshake without a restart; plaintext to a TLS listener gets
//! no answer in its protocol; a certificate that cannot be loaded stops the start, naming its
//! config key.

use crate::e2e_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use e2e_support::{Hook, KEY, WEBHOOK_SECRET, init_tracing, start_hook, wait_until};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{ServeOptions, start};
use sluice_protocols::smpp::{
    Address, Bind, Command, CommandStatus, MessageIdResp, Pdu, Sm, SmppCodec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(30);

/// A private CA and the files of leaves it signs.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ca_pem_path: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice tls test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).expect("CA cert");
        let ca_pem_path = dir.join("ca.pem");
        std::fs::write(&ca_pem_path, ca.pem()).expect("write CA");
        Self { ca, ca_pem_path }
    }

    /// A leaf for localhost / 127.0.0.1 with common name `cn`, written to
    /// `dir/name.pem` + `dir/name.key`; returns its DER.
    fn leaf(&self, dir: &Path, name: &str, cn: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca).expect("leaf cert");
        // Written to a temp name and renamed, as an operator's deploy tool would: a reload
        // never sees half a file.
        for (ext, text) in [("pem", cert.pem()), ("key", key.serialize_pem())] {
            let tmp = dir.join(format!("{name}.{ext}.tmp"));
            std::fs::write(&tmp, text).expect("write leaf");
            std::fs::rename(&tmp, dir.join(format!("{name}.{ext}"))).expect("rename leaf");
        }
        cert.der().clone()
    }

    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA root");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// An HTTPS client trusting only this CA.
    fn reqwest(&self) -> reqwest::Client {
        sluice::tls::install_provider();
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.client_config())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// A TLS handshake with `addr` as "localhost"; the stream and the leaf it presented.
    async fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<(
        tokio_rustls::client::TlsStream<TcpStream>,
        CertificateDer<'static>,
    )> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.client_config()));
        let s = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await?;
        let leaf = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("a peer certificate")
            .clone()
            .into_owned();
        Ok((s, leaf))
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A gateway config: HTTPS API (and SMPP server over TLS with `smpp`), one account with a
/// webhook, one SMPP channel "sim" to `sim_port` over TLS trusting the test CA.
fn config(dir: &Path, pki: &Pki, sim_port: u16, hook: &str, reload_secs: u64) -> Config {
    let text = format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
smpp = "127.0.0.1:0"
tls_reload_secs = {reload_secs}
[listeners.http_tls]
cert = "{http_cert}"
key = "{http_key}"
[listeners.smpp_tls]
cert = "{http_cert}"
key = "{http_key}"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
api_keys = ["{hash}"]
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
port = {sim_port}
system_id = "sluice"
password = "sim"
rate = 100000
burst = 1000
response_timeout_ms = 2000
tls = true
ca_file = "{ca}"
server_name = "localhost"
[[routes]]
channel = "sim"
"#,
        http_cert = path(&dir.join("api.pem")),
        http_key = path(&dir.join("api.key")),
        data = path(&dir.join("data")),
        hash = hash_api_key(KEY),
        smpp_hash = hash_api_key("secret"),
        ca = path(&pki.ca_pem_path),
    );
    Config::parse(&text, "tls.toml").expect("config")
}

/// A simulator whose one SMPP listener speaks TLS with `dir/center.{pem,key}`.
async fn tls_sim(dir: &Path) -> sluice_loadtest::SimHandle {
    let mut l = e2e_support::sim_listener();
    l.tls = Some(sluice_loadtest::sim::tls::TlsFiles {
        cert: dir.join("center.pem"),
        key: dir.join("center.key"),
    });
    e2e_support::start_sim(l, Some(7)).await
}

struct Rig {
    gw: sluice::serve::Gateway,
    sim: sluice_loadtest::SimHandle,
    pki: Pki,
    hook: Hook,
    dir: tempfile::TempDir,
}

async fn rig(reload_secs: u64) -> Rig {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    pki.leaf(dir.path(), "api", "api-first");
    pki.leaf(dir.path(), "center", "center");
    let sim = tls_sim(dir.path()).await;
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let cfg = config(
        dir.path(),
        &pki,
        sim.addrs()[0].port(),
        &hook_url,
        reload_secs,
    );
    let gw = start(
        cfg,
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway starts");
    Rig {
        gw,
        sim,
        pki,
        hook,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_batch_goes_over_a_tls_channel_and_its_receipt_comes_back() {
    let rig = rig(5).await;
    let base = format!("https://localhost:{}", rig.gw.http_addr().port());
    let client = rig.pki.reqwest();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(KEY)
        .json(&json!({"messages": [{"to": "8613800138000", "text": "over tls"}]}))
        .send()
        .await
        .expect("https batch");
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().await.expect("json");
    let id = body["results"][0]["id"].as_str().expect("id").to_owned();
    assert!(
        wait_until(WAIT, || rig.hook.receipts.lock().unwrap().len() == 1).await,
        "a receipt through the TLS channel"
    );
    let receipt = rig.hook.receipts.lock().unwrap()[0].clone();
    assert_eq!(receipt["id"], id.as_str());
    assert_eq!(receipt["state"], "delivered");
    assert!(
        rig.sim.tally().parts_accepted >= 1,
        "the center got the submit over TLS"
    );

    // Plaintext HTTP to the TLS listener: no HTTP answer, the connection is dropped.
    let mut raw = TcpStream::connect(rig.gw.http_addr())
        .await
        .expect("connect");
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the listener closes a plaintext connection");
    assert!(!buf.starts_with(b"HTTP/"), "no plaintext answer: {buf:?}");
    // And a plain http client fails cleanly.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/healthz",
            rig.gw.http_addr().port()
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plain http to the TLS API must fail");

    rig.gw.shutdown().await;
    let _ = rig.sim.shutdown().await;
    drop(rig.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esme_binds_and_submits_over_tls_and_plaintext_is_refused() {
    let rig = rig(5).await;
    let addr = rig.gw.smpp_addr().expect("smpp listener");
    let (tls, _) = rig.pki.connect(addr).await.expect("TLS handshake");
    let mut esme = Framed::new(tls, SmppCodec::default());
    let bind = Bind {
        system_id: "acme".into(),
        password: "secret".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    esme.send(Command::request(1, Pdu::BindTransceiver(bind.clone())))
        .await
        .expect("send bind");
    let resp = tokio::time::timeout(WAIT, esme.next())
        .await
        .expect("bind answered")
        .expect("open")
        .expect("decodes");
    assert_eq!(resp.status, CommandStatus::EsmeRok);
    let sm = Sm {
        source: Address::new(0, 0, "10690000"),
        dest: Address::new(1, 1, "8613800138000"),
        registered_delivery: 1,
        short_message: b"smpp over tls".as_slice().into(),
        ..Sm::default()
    };
    esme.send(Command::request(2, Pdu::SubmitSm(sm)))
        .await
        .expect("send submit");
    let resp = loop {
        let c = tokio::time::timeout(WAIT, esme.next())
            .await
            .expect("answer")
            .expect("open")
            .expect("decodes");
        if c.sequence == 2 {
            break c;
        }
    };
    assert_eq!(resp.status, CommandStatus::EsmeRok);
    let Pdu::SubmitSmResp(MessageIdResp { message_id, .. }) = &resp.pdu else {
        panic!("not a submit_sm_resp: {resp:?}");
    };
    let id: sluice::store::MessageId = String::from_utf8(message_id.as_slice().to_vec())
        .expect("ascii")
        .parse()
        .expect("sluice id");
    assert!(rig.gw.store().get(id).expect("read").is_some());

    // A plaintext bind on the TLS port: never answered, the connection is closed.
    let mut plain = Framed::new(
        TcpStream::connect(addr).await.expect("connect"),
        SmppCodec::default(),
    );
    plain
        .send(Command::request(1, Pdu::BindTransceiver(bind)))
        .await
        .expect("send");
    let got = tokio::time::timeout(WAIT, plain.next())
        .await
        .expect("closed in time");
    assert!(
        !matches!(got, Some(Ok(_))),
        "a plaintext bind got an SMPP answer: {got:?}"
    );

    rig.gw.shutdown().await;
    let _ = rig.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_certificate_is_served_without_a_restart() {
    let rig = rig(1).await;
    let http = rig.gw.http_addr();
    let smpp = rig.gw.smpp_addr().expect("smpp");
    let (_old_http, first) = rig.pki.connect(http).await.expect("handshake");
    let (_old_smpp, first_smpp) = rig.pki.connect(smpp).await.expect("handshake");
    assert_eq!(first, first_smpp);

    let second = rig.pki.leaf(rig.dir.path(), "api", "api-second");
    assert_ne!(first, second);
    // Bounded poll: the watch looks every second.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, served) = rig.pki.connect(http).await.expect("handshake");
        if served == second {
            break;
        }
        assert_eq!(served, first, "only the old or the new certificate");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the HTTPS listener never served the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, smpp_now) = rig.pki.connect(smpp).await.expect("handshake");
    assert_eq!(smpp_now, second, "the SMPP listener reloaded too");

    // A broken pair at reload (tls::server's unit test proves the old one stays): after a
    // few reload periods the listeners still complete handshakes with the last good one.
    std::fs::write(rig.dir.path().join("api.pem"), "not a certificate\n").expect("write");
    std::fs::write(rig.dir.path().join("api.key"), "not a key\n").expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, still) = rig.pki.connect(http).await.expect("still serving");
    assert_eq!(still, second);

    rig.gw.shutdown().await;
    let _ = rig.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloadable_certificate_stops_the_start_naming_its_key() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    // No api.pem / api.key written.
    let cfg = config(dir.path(), &pki, 2775, "http://127.0.0.1:9", 5);
    let e = start(cfg, ServeOptions::default())
        .await
        .expect_err("must not start");
    let text = e.to_string();
    assert!(text.contains("listeners.http_tls"), "{text}");
}

/// An MM7 channel posts to an https MMSC (the simulator's MMSC behind its TLS front) that
/// only the channel's `ca_file` roots vouch for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mm7_channel_submits_over_https_trusting_its_ca_file() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    pki.leaf(dir.path(), "mmsc", "mmsc");
    let mut l = e2e_support::sim_listener();
    l.protocol = sluice_loadtest::Protocol::Mm7;
    l.tls = Some(sluice_loadtest::sim::tls::TlsFiles {
        cert: dir.path().join("mmsc.pem"),
        key: dir.path().join("mmsc.key"),
    });
    let sim = e2e_support::start_sim(l, Some(9)).await;
    let port = sim.addrs()[0].port();

    let text = format!(
        r#"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
rate = 10
[[channels]]
name = "mms"
kind = "mm7"
url = "https://localhost:{port}/mm7"
vasp_id = "901234"
vas_id = "9012340001"
rate = 100
ca_file = "{ca}"
"#,
        data = path(&dir.path().join("data")),
        ca = path(&pki.ca_pem_path),
    );
    let config = Config::parse(&text, "mm7-tls.toml").expect("config");
    let ch = &config.channels[0];
    let sluice::config::Protocol::Mm7(settings) = &ch.protocol else {
        panic!("an mm7 channel");
    };
    let mc = sluice::channel::mm7::Mm7ChannelConfig::from_config(ch, settings).expect("mm7");
    assert_eq!(mc.ca_roots.len(), 1, "the CA file's one certificate");
    sluice::tls::install_provider();
    let (input, input_rx) = tokio::sync::mpsc::channel(4);
    let (outcomes_tx, mut outcomes) = tokio::sync::mpsc::channel(4);
    let _handle = sluice::channel::mm7::spawn(mc, input_rx, outcomes_tx).expect("client builds");
    let body = "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
    input
        .send(sluice::channel::OutboundMessage {
            id: 1,
            attempt: 0,
            from: None,
            to: "8613800138000".into(),
            content: sluice::channel::Content::Mms(Arc::new(sluice::channel::egress::MmsContent {
                subject: Some("tls".into()),
                content_type: "multipart/related; boundary=\"b\"".into(),
                body: bytes::Bytes::from(body),
                digest: [7; 32],
            })),
        })
        .await
        .expect("queued");
    let settled = tokio::time::timeout(WAIT, outcomes.recv())
        .await
        .expect("an outcome in time")
        .expect("worker alive");
    assert!(
        matches!(settled.outcome, sluice::channel::Outcome::Sent { .. }),
        "{:?}",
        settled.outcome
    );
    assert!(sim.tally().parts_accepted >= 1, "the MMSC got it over TLS");
    let _ = sim.shutdown().await;
}

/// The metrics listener over TLS (a port of its own beside the API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_serves_https() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    pki.leaf(dir.path(), "metrics", "metrics");
    let port = e2e_support::free_port();
    let text = format!(
        r#"
[listeners]
http = "127.0.0.1:0"
metrics = "127.0.0.1:{port}"
[listeners.metrics_tls]
cert = "{cert}"
key = "{key}"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
rate = 10
{channel}"#,
        cert = path(&dir.path().join("metrics.pem")),
        key = path(&dir.path().join("metrics.key")),
        data = path(&dir.path().join("data")),
        channel = e2e_support::sim_channel(9),
    );
    let config = Config::parse(&text, "metrics-tls.toml").expect("config");
    let (_recorder, handle) = sluice::metrics::local().expect("recorder");
    let gw = start(
        config,
        ServeOptions {
            metrics: Some(handle),
            drain_deadline: Duration::from_secs(2),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway");
    let client = pki.reqwest();
    let r = client
        .get(format!("https://localhost:{port}/metrics"))
        .send()
        .await
        .expect("https metrics");
    assert_eq!(r.status().as_u16(), 200);
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain http to the TLS metrics listener must fail"
    );
    gw.shutdown().await;
}
