//! Every listener abused (issue 18, "Bad input"): raw bytes from the test against `serve`'s
//! SMPP server and HTTP listener (gateway API, hosted campaign service), with `[limits]` set
//! short so each case ends in seconds. Each test also shows the server still serving a good
//! client afterwards (or during the abuse).
//!
//! No timed assertions: every wait is a bound after which the test fails, never a speed.

use crate::e2e_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use e2e_support::{KEY, init_tracing, metric_sum, sim_listener, start_sim};
use serde_json::Value;
use sluice::config::{Config, hash_api_key};
use sluice::ingress::batch::BatchLimits;
use sluice::serve::{CampaignHost, Gateway, ServeOptions, start};
use sluice_loadtest::SimHandle;
use sluice_protocols::smpp::{
    Address, Bind, Command, CommandId, CommandStatus, Pdu, Sm, decode_slice,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest wait for anything the server must do.
const WAIT: Duration = Duration::from_secs(20);
/// The campaign service's development admin key in these tests.
const ADMIN_KEY: &str = "abuse-admin-key";
/// `[limits]` of the test gateway (short timeouts so each case ends in seconds).
const LIMITS: &str = r#"
[limits]
smpp_bind_timeout_ms = 1500
smpp_read_timeout_ms = 1000
smpp_max_unbound_requests = 5
smpp_max_connections_per_ip = 6
smpp_binds_per_ip_per_sec = 3
smpp_lockout_failures = 3
smpp_lockout_secs = 600
http_max_headers = 50
http_max_header_bytes = 16384
http_header_read_timeout_ms = 1000
"#;
/// Largest HTTP batch body of the test gateway.
const MAX_BODY: usize = 256 * 1024;
/// Most messages in one HTTP batch of the test gateway.
const MAX_MESSAGES: usize = 100;

struct Rig {
    gw: Gateway,
    sim: SimHandle,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn stop(self) {
        self.gw.shutdown().await;
        let _ = self.sim.shutdown().await;
    }

    fn smpp(&self) -> SocketAddr {
        self.gw.smpp_addr().expect("smpp listener")
    }

    fn base(&self) -> String {
        format!("http://{}", self.gw.http_addr())
    }
}

async fn rig() -> Rig {
    init_tracing();
    let sim = start_sim(sim_listener(), Some(7)).await;
    let dir = tempfile::tempdir().expect("tempdir");
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
{LIMITS}
[[accounts]]
name = "acme"
api_keys = ["{key}"]
rate = 100000
burst = 100000
default_sender = "10690000"
smpp_system_id = "acme"
smpp_password_sha256 = "{pw}"
smpp_max_binds = 20
[[accounts]]
name = "beta"
rate = 1000
burst = 1000
default_sender = "10690000"
smpp_system_id = "beta"
smpp_password_sha256 = "{pw}"
smpp_max_binds = 1
{sim_channel}"#,
        data = dir.path().join("data").display(),
        key = hash_api_key(KEY),
        pw = hash_api_key("secret"),
        sim_channel = e2e_support::sim_channel(sim.addrs()[0].port()),
    );
    let cfg = Config::parse(&text, "listener_abuse.toml").expect("config");
    let metrics = e2e_support::metrics();
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        limits: BatchLimits {
            max_messages: MAX_MESSAGES,
            max_body_bytes: MAX_BODY,
            ..BatchLimits::default()
        },
        metrics: Some(metrics.clone()),
        campaign: Some(CampaignHost {
            db: dir.path().join("campaign.db"),
            api_key: KEY.into(),
            dev_admin_key: Some(ADMIN_KEY.into()),
        }),
        ..ServeOptions::default()
    };
    let gw = start(cfg, opts).await.expect("gateway starts");
    Rig {
        gw,
        sim,
        metrics,
        _dir: dir,
    }
}

// ---------------------------------------------------------------- SMPP helpers

/// A TCP connection to `to` from the loopback address `from` (each 127.x is its own peer
/// to the server's per-IP limits).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind a loopback source address");
    s.connect(to).await.expect("connect")
}

async fn send(s: &mut TcpStream, c: &Command) {
    let mut buf = BytesMut::new();
    c.encode(&mut buf).expect("encode");
    s.write_all(&buf).await.expect("write");
}

/// The next PDU, or `None` when the server closed the connection (EOF or reset).
async fn read_pdu(s: &mut TcpStream) -> Option<Command> {
    let mut head = [0u8; 4];
    let r = tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("a PDU or a close in time");
    r.ok()?;
    let len = u32::from_be_bytes(head) as usize;
    assert!((16..=64 * 1024).contains(&len), "server sent length {len}");
    let mut rest = vec![0u8; len - 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut rest))
        .await
        .expect("rest of the PDU in time")
        .ok()?;
    let mut all = head.to_vec();
    all.extend_from_slice(&rest);
    Some(decode_slice(&all).expect("server PDU decodes").command)
}

/// Reads until the server closes; panics if it sends anything but enquire_link first.
async fn expect_closed(s: &mut TcpStream) {
    while let Some(c) = read_pdu(s).await {
        assert_eq!(c.command_id(), CommandId::EnquireLink, "unexpected {c:?}");
    }
}

fn bind_pdu(system_id: &str, password: &str) -> Pdu {
    Pdu::BindTransceiver(Bind {
        system_id: system_id.into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    })
}

/// Binds on a fresh connection from `from`; returns the connection and the bind status.
async fn bind_from(
    from: Ipv4Addr,
    rig: &Rig,
    system_id: &str,
    password: &str,
) -> (TcpStream, CommandStatus) {
    let mut s = connect_from(from, rig.smpp()).await;
    send(&mut s, &Command::request(1, bind_pdu(system_id, password))).await;
    let resp = read_pdu(&mut s).await.expect("bind answered");
    assert_eq!(resp.command_id(), CommandId::BindTransceiverResp);
    (s, resp.status)
}

fn submit(seq: u32) -> Command {
    Command::request(
        seq,
        Pdu::SubmitSm(Sm {
            source: Address::new(0, 0, "10690000"),
            dest: Address::new(1, 1, "8613800138000"),
            short_message: b"hello".as_slice().into(),
            ..Sm::default()
        }),
    )
}

/// A good client: binds from 127.0.0.1 and gets one submit stored.
async fn good_client_is_served(rig: &Rig) {
    let (mut s, status) = bind_from(Ipv4Addr::LOCALHOST, rig, "acme", "secret").await;
    assert_eq!(status, CommandStatus::EsmeRok, "the good client binds");
    send(&mut s, &submit(2)).await;
    loop {
        let c = read_pdu(&mut s).await.expect("submit answered");
        if c.command_id() == CommandId::SubmitSmResp {
            assert_eq!(c.status, CommandStatus::EsmeRok, "the good client's submit");
            break;
        }
    }
    send(&mut s, &Command::request(3, Pdu::Unbind)).await;
}

// ---------------------------------------------------------------- SMPP cases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_command_length_over_or_under_the_limit_is_nacked_and_closed() {
    let rig = rig().await;
    for (length, seq) in [(0xFFFF_FFF0u32, 7u32), (8, 9)] {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 1), rig.smpp()).await;
        let mut head = Vec::new();
        head.extend_from_slice(&length.to_be_bytes());
        head.extend_from_slice(&0x0000_0009u32.to_be_bytes()); // bind_transceiver
        head.extend_from_slice(&0u32.to_be_bytes());
        head.extend_from_slice(&seq.to_be_bytes());
        s.write_all(&head).await.expect("write");
        let nack = read_pdu(&mut s).await.expect("answered before the close");
        assert_eq!(
            (nack.command_id(), nack.status, nack.sequence),
            (CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen, seq),
            "command_length {length:#x}"
        );
        expect_closed(&mut s).await;
    }
    let text = rig.metrics.render();
    assert!(
        metric_sum(
            &text,
            "sluice_smpp_server_abuse_total",
            "reason=\"command_length\""
        ) >= 2.0
    );
    good_client_is_served(&rig).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_half_sent_pdu_then_silence_is_closed_after_the_read_timeout() {
    let rig = rig().await;
    let (mut s, status) = bind_from(Ipv4Addr::new(127, 0, 0, 5), &rig, "acme", "secret").await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let mut buf = BytesMut::new();
    submit(2).encode(&mut buf).expect("encode");
    // Half of a submit_sm, then nothing: the enquire_link interval (30 s) is far away, so
    // only the read timeout (1 s) can close it within WAIT.
    s.write_all(&buf[..buf.len() / 2]).await.expect("write");
    expect_closed(&mut s).await;
    let text = rig.metrics.render();
    assert!(
        metric_sum(
            &text,
            "sluice_smpp_server_abuse_total",
            "reason=\"read_timeout\""
        ) >= 1.0
    );
    good_client_is_served(&rig).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_slowloris_before_bind_is_closed_after_the_bind_timeout() {
    let rig = rig().await;
    // Silent.
    let mut silent = connect_from(Ipv4Addr::new(127, 0, 0, 6), rig.smpp()).await;
    // One byte of a bind every 200 ms: it would take ~10 s to finish, the bind timeout is
    // 1.5 s.
    let mut dribble = connect_from(Ipv4Addr::new(127, 0, 0, 6), rig.smpp()).await;
    let mut bind = BytesMut::new();
    Command::request(1, bind_pdu("acme", "secret"))
        .encode(&mut bind)
        .expect("encode");
    let mut closed = false;
    for b in bind.iter() {
        if dribble.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), dribble.read(&mut probe)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("server answered a dribbled bind with {n} bytes"),
            Err(_) => {}
        }
    }
    assert!(
        closed,
        "the dribbling client was never closed while it sent a whole bind"
    );
    expect_closed(&mut silent).await;
    let text = rig.metrics.render();
    assert!(
        metric_sum(
            &text,
            "sluice_smpp_server_abuse_total",
            "reason=\"bind_timeout\""
        ) >= 1.0
    );
    good_client_is_served(&rig).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_pdu_flood_before_bind_is_answered_then_closed() {
    let rig = rig().await;
    // One at a time: each is answered ESME_RINVBNDSTS; the 6th (limit 5) is answered and
    // the connection closed.
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 7), rig.smpp()).await;
    for seq in 1..=6 {
        send(&mut s, &submit(seq)).await;
        let c = read_pdu(&mut s).await.expect("answered");
        assert_eq!(
            (c.command_id(), c.status, c.sequence),
            (CommandId::SubmitSmResp, CommandStatus::EsmeRinvbndsts, seq)
        );
    }
    expect_closed(&mut s).await;
    // 1000 at once: answered up to the limit, then closed; nothing else.
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 7), rig.smpp()).await;
    let mut flood = BytesMut::new();
    for seq in 1..=1000 {
        submit(seq).encode(&mut flood).expect("encode");
    }
    // The server may close before it has read all of it.
    let _ = s.write_all(&flood).await;
    let mut answered = 0;
    while let Some(c) = read_pdu(&mut s).await {
        assert_eq!(c.status, CommandStatus::EsmeRinvbndsts);
        answered += 1;
    }
    assert!(answered <= 6, "{answered} answers after the limit of 5");
    let text = rig.metrics.render();
    assert!(
        metric_sum(
            &text,
            "sluice_smpp_server_abuse_total",
            "reason=\"unbound_flood\""
        ) >= 2.0
    );
    good_client_is_served(&rig).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_bind_floods_hit_per_ip_and_per_account_limits_and_good_clients_go_on() {
    let rig = rig().await;

    // Per IP, connections: 6 open from 127.0.0.8, the 7th is closed at once.
    let flooder = Ipv4Addr::new(127, 0, 0, 8);
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect_from(flooder, rig.smpp()).await);
    }
    // The 6 are accepted before the 7th: each answers an enquire_link.
    for s in &mut held {
        send(s, &Command::request(1, Pdu::EnquireLink)).await;
        let r = read_pdu(s).await.expect("admitted");
        assert_eq!(r.command_id(), CommandId::EnquireLinkResp);
    }
    let mut seventh = connect_from(flooder, rig.smpp()).await;
    expect_closed(&mut seventh).await;
    good_client_is_served(&rig).await;
    drop(held);

    // Per IP, bind attempts per second: 6 good binds back to back from 127.0.0.9 (limit
    // 3/s): the ones over the rate get ESME_RBINDFAIL.
    let rated = Ipv4Addr::new(127, 0, 0, 9);
    let mut statuses = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..6 {
        let (s, st) = bind_from(rated, &rig, "acme", "secret").await;
        statuses.push(st);
        conns.push(s);
    }
    assert!(
        statuses.contains(&CommandStatus::EsmeRbindfail),
        "{statuses:?}"
    );
    assert!(statuses.contains(&CommandStatus::EsmeRok), "{statuses:?}");
    drop(conns);

    // Per account: beta may bind once; the second bind is ESME_RBINDFAIL; a second bind on
    // the same connection is ESME_RALYBND.
    let (mut first, st) = bind_from(Ipv4Addr::new(127, 0, 0, 10), &rig, "beta", "secret").await;
    assert_eq!(st, CommandStatus::EsmeRok);
    let (_, st) = bind_from(Ipv4Addr::new(127, 0, 0, 11), &rig, "beta", "secret").await;
    assert_eq!(st, CommandStatus::EsmeRbindfail);
    send(&mut first, &Command::request(2, bind_pdu("beta", "secret"))).await;
    let again = read_pdu(&mut first).await.expect("answered");
    assert_eq!(again.status, CommandStatus::EsmeRalybnd);

    // Failed-bind lockout: 3 wrong passwords from 127.0.0.12, then even the right one is
    // refused ESME_RBINDFAIL; the good client from 127.0.0.1 still binds.
    let guesser = Ipv4Addr::new(127, 0, 0, 12);
    for _ in 0..3 {
        let (_, st) = bind_from(guesser, &rig, "acme", "guess").await;
        assert_eq!(st, CommandStatus::EsmeRinvpaswd);
    }
    let (_, st) = bind_from(guesser, &rig, "acme", "secret").await;
    assert_eq!(st, CommandStatus::EsmeRbindfail, "locked out");
    good_client_is_served(&rig).await;

    let text = rig.metrics.render();
    for reason in ["connections_per_ip", "bind_rate", "lockout"] {
        assert!(
            metric_sum(
                &text,
                "sluice_smpp_server_abuse_total",
                &format!("reason=\"{reason}\"")
            ) >= 1.0,
            "{reason} not counted"
        );
    }
    assert!(
        metric_sum(
            &text,
            "sluice_smpp_server_binds_refused_total",
            "ESME_RBINDFAIL"
        ) >= 2.0
    );
    rig.stop().await;
}

// ---------------------------------------------------------------- HTTP helpers

/// Sends `head` (and `body`, written while the answer is read) on a raw connection; returns
/// the status code of the answer, or `None` when the server closed without one.
async fn raw_http(addr: SocketAddr, head: Vec<u8>, body: Vec<u8>) -> Option<u16> {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        if w.write_all(&head).await.is_err() {
            return;
        }
        for chunk in body.chunks(16 * 1024) {
            if w.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Dropping the write half would half-close the connection, which hyper takes for a
        // client gone: keep it open until the answer is read (the task is aborted then).
        std::future::pending::<()>().await;
        drop(w);
    });
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // A reset counts as a close.
        let n = tokio::time::timeout(WAIT, r.read(&mut chunk))
            .await
            .expect("an answer or a close in time")
            .unwrap_or_default();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    status.parse().ok()
}

async fn healthz_ok(rig: &Rig) {
    let r = reqwest::get(format!("{}/healthz", rig.base()))
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200, "the server still answers");
}

async fn post_raw(
    rig: &Rig,
    path: &str,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", rig.base()))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn line(to: &str) -> String {
    format!("{{\"to\":\"{to}\",\"text\":\"hi\"}}\n")
}

// ---------------------------------------------------------------- HTTP cases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_over_the_limits_get_413_json_naming_the_limit_or_line() {
    let rig = rig().await;
    let addr = rig.gw.http_addr();
    // A JSON body over max_body_bytes: 413 with a JSON error, read from a raw socket (the
    // server answers before the client has finished sending).
    let body = vec![b' '; MAX_BODY * 4];
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    assert_eq!(raw_http(addr, head.into_bytes(), body).await, Some(413));
    let (s, v) = post_raw(
        &rig,
        "/v1/messages",
        KEY,
        "application/json",
        format!("{{\"messages\":[{}]}}", " ".repeat(MAX_BODY)).into_bytes(),
    )
    .await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["max"], MAX_BODY, "{v}");

    // Streamed NDJSON over the message count: 413 naming the first line over it.
    let mut ndjson = String::new();
    for _ in 0..=MAX_MESSAGES {
        ndjson.push_str(&line("8613800138000"));
    }
    let (s, v) = post_raw(
        &rig,
        "/v1/messages",
        KEY,
        "application/x-ndjson",
        ndjson.into_bytes(),
    )
    .await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["line"], MAX_MESSAGES + 1, "{v}");
    assert_eq!(v["max"], MAX_MESSAGES, "{v}");

    // The campaign service's event intake: one endless NDJSON line is refused naming it.
    let mut endless =
        b"{\"id\":\"e1\",\"msisdn\":\"13800000001\",\"type\":\"x\",\"ts\":1}\n".to_vec();
    endless.extend(std::iter::repeat_n(b'x', 200 * 1024));
    let (s, v) = post_raw(
        &rig,
        "/v1/campaign/events",
        ADMIN_KEY,
        "application/x-ndjson",
        endless,
    )
    .await;
    assert!((400..500).contains(&s), "{s} {v}");
    assert!(v.to_string().contains("line 2"), "{v}");
    healthz_ok(&rig).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_malformed_json_lines_are_named_by_line_and_field() {
    let rig = rig().await;
    // Gateway API: all or nothing. A line that is not JSON → 400 with its line.
    let body = format!("{}{{oops\n{}", line("8613800138000"), line("8613800138001"));
    let (s, v) = post_raw(
        &rig,
        "/v1/messages",
        KEY,
        "application/x-ndjson",
        body.into_bytes(),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["line"], 2, "{v}");
    // A field of the wrong type → names line and field.
    let body = format!(
        "{}{}{{\"to\":\"8613800138002\",\"text\":5}}\n",
        line("8613800138000"),
        line("8613800138001")
    );
    let (s, v) = post_raw(
        &rig,
        "/v1/messages",
        KEY,
        "application/x-ndjson",
        body.into_bytes(),
    )
    .await;
    assert!(s == 400 || s == 422, "{s} {v}");
    assert_eq!(v["line"], 3, "{v}");
    assert!(v.to_string().contains("text"), "names the field: {v}");
    // A valid batch right after: 202 with one result per line.
    let body = format!("{}{}", line("8613800138000"), line("8613800138001"));
    let (s, v) = post_raw(
        &rig,
        "/v1/messages",
        KEY,
        "application/x-ndjson",
        body.into_bytes(),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2), "{v}");

    // Campaign event intake promises per-line errors: the good lines are stored.
    let events = concat!(
        "{\"id\":\"a1\",\"msisdn\":\"13800000001\",\"type\":\"login\",\"ts\":1}\n",
        "{\"id\":\"a2\",\"msisdn\":\n",
        "{\"id\":\"a3\",\"msisdn\":\"13800000003\",\"type\":\"login\",\"ts\":\"soon\"}\n",
        "{\"id\":\"a4\",\"msisdn\":\"13800000004\",\"type\":\"login\",\"ts\":4}\n",
    );
    let (s, v) = post_raw(
        &rig,
        "/v1/campaign/events",
        ADMIN_KEY,
        "application/x-ndjson",
        events.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 2, "{v}");
    let errors = v["errors"].as_array().expect("errors");
    let lines: Vec<_> = errors.iter().map(|e| e["line"].clone()).collect();
    assert_eq!(lines, vec![Value::from(2), Value::from(3)], "{v}");
    assert_eq!(errors[1]["field"], "ts", "{v}");
    // Over the line count: refused naming the line.
    let mut many = String::new();
    for i in 0..=10_000 {
        many.push_str(&format!(
            "{{\"id\":\"m{i}\",\"msisdn\":\"13800000001\",\"type\":\"x\",\"ts\":1}}\n"
        ));
    }
    let (s, v) = post_raw(
        &rig,
        "/v1/campaign/events",
        ADMIN_KEY,
        "application/x-ndjson",
        many.into_bytes(),
    )
    .await;
    assert!((400..500).contains(&s), "{s} {v}");
    assert!(v.to_string().contains("line 10001"), "{v}");
    healthz_ok(&rig).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_header_floods_get_431_or_a_close_and_the_server_stays_up() {
    let rig = rig().await;
    let addr = rig.gw.http_addr();
    for path in ["/v1/messages", "/v1/campaign/events", "/healthz"] {
        // Thousands of headers.
        let mut head = format!("GET {path} HTTP/1.1\r\nhost: a\r\n");
        for i in 0..5000 {
            head.push_str(&format!("x-flood-{i}: y\r\n"));
        }
        head.push_str("\r\n");
        let status = raw_http(addr, head.into_bytes(), Vec::new()).await;
        assert!(matches!(status, None | Some(431)), "{path}: {status:?}");
        // One header of 1 MB.
        let head = format!(
            "GET {path} HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let status = raw_http(addr, head.into_bytes(), Vec::new()).await;
        assert!(matches!(status, None | Some(431)), "{path}: {status:?}");
        healthz_ok(&rig).await;
    }
    // Within the limits: served.
    let mut head = "GET /healthz HTTP/1.1\r\nhost: a\r\n".to_owned();
    for i in 0..40 {
        head.push_str(&format!("x-ok-{i}: y\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    assert_eq!(
        raw_http(addr, head.into_bytes(), Vec::new()).await,
        Some(200)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_slowloris_is_closed_after_the_header_read_timeout() {
    let rig = rig().await;
    let mut s = TcpStream::connect(rig.gw.http_addr())
        .await
        .expect("connect");
    s.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: a\r\n")
        .await
        .expect("write");
    // A header every 200 ms for up to 20 s; the head timeout is 1 s.
    let mut closed = false;
    for i in 0..100 {
        if s.write_all(format!("x-slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut probe = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut probe)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            // hyper may answer 408 before closing.
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&probe[..n]).to_string();
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
            Err(_) => {}
        }
        if i % 5 == 0 {
            healthz_ok(&rig).await;
        }
    }
    assert!(closed, "a dribbling client was never closed");
    healthz_ok(&rig).await;
    rig.stop().await;
}
