//! Account isolation across the gateway's endpoints and protocols, with two accounts
//! (`alpha`, `beta`) on one gateway: beta cannot read alpha's message by id (404, the answer
//! for an unknown id, so ids do not leak existence), cannot cancel or preview alpha's
//! messages by id or tag, cannot look them up (operators only), does not share alpha's
//! idempotency keys, never gets alpha's receipts or replies (webhook or SMPP bind), and
//! cannot bind as alpha. (The campaign service's tenancy — a city never sees a sibling's
//! objects — is proven in `campaign/tests/identity_api.rs`.)

use crate::e2e_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use e2e_support::{Hook, WEBHOOK_SECRET, accepted_ids, call, init_tracing, start_hook, wait_until};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{ServeOptions, start};
use sluice_loadtest::ListenerConfig;
use sluice_loadtest::config::{Account, DlrConfig, MoConfig, ReplyRule};
use sluice_loadtest::dist::Delay;
use sluice_protocols::smpp::{
    Address, Bind, Command, CommandStatus, DeliveryReport, MessageIdResp, Pdu, Sm, SmppCodec,
};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(30);
const KEY_A: &str = "isolation-alpha-key";
const KEY_B: &str = "isolation-beta-key";

fn sim() -> ListenerConfig {
    ListenerConfig {
        name: "iso".into(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        accounts: vec![Account {
            system_id: "sluice".into(),
            password: "sim".into(),
            max_binds: 0,
        }],
        dlr: DlrConfig {
            mix: BTreeMap::from([("DELIVRD".to_owned(), 1.0)]),
            delay: Delay::Fixed { ms: 20.0 },
            ..DlrConfig::default()
        },
        // A text with "#VOTE" is answered "Y" from its destination to its sender: an MO to
        // the sending account's number.
        mo: MoConfig {
            reply: vec![ReplyRule {
                contains: "#VOTE".into(),
                probability: 1.0,
                text: "Y".into(),
                delay: Delay::Fixed { ms: 20.0 },
            }],
            ..MoConfig::default()
        },
        ..ListenerConfig::default()
    }
}

fn config(dir: &std::path::Path, sim_port: u16, hook_a: &str, hook_b: &str) -> Config {
    let account = |name: &str, key: &str, sender: &str, hook: &str| {
        format!(
            r#"
[[accounts]]
name = "{name}"
api_keys = ["{hash}"]
rate = 100000
burst = 100000
allowed_senders = ["{sender}"]
default_sender = "{sender}"
webhook_url = "{hook}/receipts"
mo_url = "{hook}/mo"
webhook_secret = "{WEBHOOK_SECRET}"
smpp_system_id = "{name}"
smpp_password_sha256 = "{pw}"
"#,
            hash = hash_api_key(key),
            pw = hash_api_key(&format!("{name}pw")),
        )
    };
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
{a}
{b}
{channel}"#,
        data = dir.display(),
        a = account("alpha", KEY_A, "10690001", hook_a),
        b = account("beta", KEY_B, "10690002", hook_b),
        channel = e2e_support::sim_channel(sim_port),
    );
    Config::parse(&text, "isolation.toml").expect("config")
}

type Esme = Framed<TcpStream, SmppCodec>;

async fn bind(
    addr: SocketAddr,
    system_id: &str,
    password: &str,
    rx: bool,
) -> (Esme, CommandStatus) {
    let mut esme = Framed::new(
        TcpStream::connect(addr).await.expect("connect"),
        SmppCodec::default(),
    );
    let b = Bind {
        system_id: system_id.into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    let pdu = if rx {
        Pdu::BindReceiver(b)
    } else {
        Pdu::BindTransceiver(b)
    };
    esme.send(Command::request(1, pdu)).await.expect("send");
    let status = next(&mut esme).await.expect("bind answered").status;
    (esme, status)
}

/// The next PDU within `limit` (enquire_link answered on the way); `None` when none came.
async fn next_within(esme: &mut Esme, limit: Duration) -> Option<Command> {
    loop {
        let c = tokio::time::timeout(limit, esme.next()).await.ok()??.ok()?;
        if matches!(c.pdu, Pdu::EnquireLink) {
            let _ = esme
                .send(Command::request(c.sequence, Pdu::EnquireLinkResp))
                .await;
            continue;
        }
        return Some(c);
    }
}

async fn next(esme: &mut Esme) -> Option<Command> {
    next_within(esme, WAIT).await
}

fn ids(body: &Value) -> Vec<String> {
    accepted_ids(body)
}

fn ids_in(hook: &[Value]) -> Vec<String> {
    hook.iter()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_never_sees_or_touches_another_accounts_messages() {
    init_tracing();
    let sim = e2e_support::start_sim(sim(), Some(5)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_a, hook_b) = (Hook::default(), Hook::default());
    let url_a = start_hook(hook_a.clone()).await;
    let url_b = start_hook(hook_b.clone()).await;
    let gw = start(
        config(dir.path(), sim.addrs()[0].port(), &url_a, &url_b),
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway");
    let base = format!("http://{}", gw.http_addr());
    let http = reqwest::Client::new();
    let smpp = gw.smpp_addr().expect("smpp");

    // beta's SMPP receiver is up before alpha sends anything.
    let (_, status) = bind(smpp, "alpha", "betapw", false).await;
    assert_ne!(status, CommandStatus::EsmeRok, "beta binds as alpha");
    let (mut beta_rx, status) = bind(smpp, "beta", "betapw", true).await;
    assert_eq!(status, CommandStatus::EsmeRok);

    // alpha: one message now (with a reply), one held until tomorrow (still queued).
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .expect("time");
    let (s, body) = call(
        &http,
        &base,
        "POST",
        "/v1/messages",
        Some(KEY_A),
        Some(json!({"messages": [
            {"to": "8613800000001", "text": "hello #VOTE", "client_ref": "same", "tags": {"task": "a1"}},
            {"to": "8613800000002", "text": "later", "tags": {"task": "a1"}, "not_before": later.to_string()},
        ]})),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    let a_ids = ids(&body);
    // beta with the same idempotency key: its own new message, not alpha's id.
    let (s, body) = call(
        &http,
        &base,
        "POST",
        "/v1/messages",
        Some(KEY_B),
        Some(json!({"messages": [{"to": "8613800000003", "text": "beta", "client_ref": "same"}]})),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    let b_ids = ids(&body);
    assert_ne!(b_ids[0], a_ids[0], "idempotency keys are per account");

    // Reading by id: 404 for another account's id, the same as an unknown id.
    for id in &a_ids {
        let (s, _) = call(
            &http,
            &base,
            "GET",
            &format!("/v1/messages/{id}"),
            Some(KEY_B),
            None,
        )
        .await;
        assert_eq!(s, 404, "beta reads alpha's {id}");
        let (s, _) = call(
            &http,
            &base,
            "GET",
            &format!("/v1/messages/{id}"),
            Some(KEY_A),
            None,
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s_unknown, body_unknown) = call(
        &http,
        &base,
        "GET",
        "/v1/messages/01JD3Q5V8Q0000000000000001",
        Some(KEY_B),
        None,
    )
    .await;
    let (s_other, body_other) = call(
        &http,
        &base,
        "GET",
        &format!("/v1/messages/{}", a_ids[0]),
        Some(KEY_B),
        None,
    )
    .await;
    assert_eq!(
        (s_unknown, body_unknown),
        (s_other, body_other),
        "same answer as unknown"
    );

    // Operators' lookup: beta is no operator.
    let (s, _) = call(
        &http,
        &base,
        "GET",
        &format!("/v1/lookup/messages?id={}", a_ids[0]),
        Some(KEY_B),
        None,
    )
    .await;
    assert_eq!(s, 403);

    // Emergency stop: beta's preview and stops never match alpha's messages.
    let (s, body) = call(
        &http,
        &base,
        "GET",
        "/v1/messages/cancel/preview?tag=task:a1",
        Some(KEY_B),
        None,
    )
    .await;
    assert_eq!((s, body["would_cancel"].as_u64()), (200, Some(0)), "{body}");
    let (s, body) = call(
        &http,
        &base,
        "GET",
        "/v1/messages/cancel/preview?tag=task:a1",
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        body["would_cancel"].as_u64() >= Some(1),
        "alpha's held message: {body}"
    );
    let (s, body) = call(
        &http,
        &base,
        "POST",
        "/v1/messages/cancel",
        Some(KEY_B),
        Some(json!({"ids": a_ids})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["cancelled"], 0, "{body}");
    assert_eq!(body["unknown"], 2, "{body}");
    let (s, body) = call(
        &http,
        &base,
        "POST",
        "/v1/messages/cancel",
        Some(KEY_B),
        Some(json!({"tag": {"task": "a1"}})),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    let beta_stop = body["stop"].as_u64().expect("stop id");
    // alpha cannot read beta's stop either.
    let (s, _) = call(
        &http,
        &base,
        "GET",
        &format!("/v1/messages/cancel/{beta_stop}"),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // alpha over SMPP: a submit with a receipt.
    let (mut alpha, status) = bind(smpp, "alpha", "alphapw", false).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let sm = Sm {
        source: Address::new(0, 0, "10690001"),
        dest: Address::new(1, 1, "8613800000004"),
        registered_delivery: 1,
        short_message: b"alpha over smpp".as_slice().into(),
        ..Sm::default()
    };
    alpha
        .send(Command::request(2, Pdu::SubmitSm(sm)))
        .await
        .expect("send");
    // alpha has an SMPP login, so its reply (to the HTTP "#VOTE" message) comes to its bind.
    let mut smpp_id = None;
    let mut smpp_receipt = None;
    let mut reply = None;
    while smpp_id.is_none() || smpp_receipt.is_none() || reply.is_none() {
        let c = next(&mut alpha)
            .await
            .expect("alpha's bind gets its answers");
        match &c.pdu {
            Pdu::SubmitSmResp(MessageIdResp { message_id, .. }) => {
                smpp_id = Some(String::from_utf8(message_id.as_slice().to_vec()).expect("id"));
            }
            Pdu::DeliverSm(sm) => {
                if sm.is_delivery_receipt() {
                    let dr = DeliveryReport::from_sm(sm).expect("a receipt");
                    smpp_receipt = Some(String::from_utf8(dr.message_id.to_vec()).expect("id"));
                } else {
                    reply = Some(sm.short_message.as_slice().to_vec());
                }
                alpha
                    .send(Command::request(
                        c.sequence,
                        Pdu::DeliverSmResp(MessageIdResp::default()),
                    ))
                    .await
                    .expect("ack");
            }
            _ => {}
        }
    }
    assert_eq!(reply.as_deref(), Some(&b"Y"[..]));
    assert_eq!(smpp_id, smpp_receipt);

    // Webhooks: each account gets its own receipts and replies only.
    assert!(
        wait_until(WAIT, || {
            let a = ids_in(&hook_a.receipts.lock().unwrap());
            let b = ids_in(&hook_b.receipts.lock().unwrap());
            a.contains(&a_ids[0]) && b.contains(&b_ids[0])
        })
        .await,
        "each account's receipt"
    );
    let a_seen = ids_in(&hook_a.receipts.lock().unwrap());
    let b_seen = ids_in(&hook_b.receipts.lock().unwrap());
    assert!(
        b_seen.iter().all(|id| b_ids.contains(id)),
        "beta got {b_seen:?}"
    );
    assert!(!a_seen.contains(&b_ids[0]), "alpha got beta's receipt");
    assert!(
        hook_b.mo.lock().unwrap().is_empty(),
        "beta got alpha's reply"
    );
    // alpha's held message was not cancelled by beta's stops.
    let (s, body) = call(
        &http,
        &base,
        "GET",
        &format!("/v1/messages/{}", a_ids[1]),
        Some(KEY_A),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_ne!(body["state"], "cancelled", "{body}");
    // beta's receiver bind got nothing of alpha's (its own messages went by HTTP: their
    // receipts go to its webhook).
    if let Some(c) = next_within(&mut beta_rx, Duration::from_millis(500)).await {
        panic!("beta's bind got {c:?}");
    }

    gw.shutdown().await;
    let _ = sim.shutdown().await;
}
