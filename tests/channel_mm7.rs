//! The MM7 channel against a test MMSC on 127.0.0.1 (an axum server that reads requests with
//! the codec's own `mime::parse` / `soap::decode` and answers as scripted), and its inbound
//! `/mm7/{channel}` route feeding the real receipt layer over a real store.
//!
//! Every wait is bounded by [`WAIT`]; nothing sleeps to schedule. The tests run on the
//! current-thread runtime, so "already queued" (multi-recipient batching) is deterministic.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use sluice::channel::backoff::Backoff;
use sluice::channel::egress::MmsContent;
use sluice::channel::mm7::inbound::{Inbound, InboundAuth, InboundChannel};
use sluice::channel::mm7::submit::SubmitSettings;
use sluice::channel::mm7::{self, Mm7ChannelConfig};
use sluice::channel::{
    Content, OutboundMessage, Outcome, Settled, WorkerHandle, normalise_center_id,
};
use sluice::receipt::mo::MoAccount;
use sluice::receipt::{Notification, ReceiptConfig, Receipts};
use sluice::store::{
    AnyBackend, BackendKind, Message, MessageId, MessageState, Op, Payload, Store, WriterConfig,
    open_store,
};
use sluice_protocols::mm7::mime;
use sluice_protocols::mm7::soap::{self, Address, Message as Mm7, SubmitReq};
use sluice_protocols::smpp::IdFormat;
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(30);

/// How the test MMSC answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// SubmitRsp with this StatusCode (and a MessageID when it is 1000).
    Status(u16),
    /// A bare HTTP status without an MM7 body.
    Http(u16),
}

/// One request the MMSC received.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    namespace: Option<String>,
    req: SubmitReq,
    content_type: String,
    content: Vec<u8>,
    message_id: String,
    /// The request as it came: Content-Type header and body.
    raw: (String, Vec<u8>),
}

#[derive(Default)]
struct Mmsc {
    /// Scripted answers by recipient number; a recipient without one gets 1000.
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    seen: Mutex<Vec<Seen>>,
}

async fn mmsc_post(
    State(m): State<Arc<Mmsc>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let parts = mime::parse(&ct, &body).expect("request is multipart/related");
    let start = mime::header_param(&ct, "start").expect("start parameter");
    assert_eq!(
        format!("<{}>", parts[0].content_id.as_deref().unwrap_or("")),
        start,
        "the root part is the envelope"
    );
    let env = soap::decode(&parts[0].body).expect("envelope decodes");
    let Mm7::SubmitReq(req) = env.message.clone() else {
        panic!("not a SubmitReq: {:?}", env.message)
    };
    let content = parts
        .iter()
        .find(|p| p.content_id.as_deref() == Some(req.content_id.as_str()))
        .expect("content part named by the Content href");
    let first = match &req.recipients[0] {
        Address::Number(n) | Address::ShortCode(n) | Address::Email(n) => n.clone(),
    };
    let answer = m
        .script
        .lock()
        .unwrap()
        .get_mut(&first)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Answer::Status(1000));
    let message_id = format!("MID-{}", m.seen.lock().unwrap().len());
    m.seen.lock().unwrap().push(Seen {
        headers: headers.clone(),
        namespace: env.namespace.clone(),
        req: req.clone(),
        content_type: content.content_type.clone(),
        content: content.body.clone(),
        message_id: message_id.clone(),
        raw: (ct.clone(), body.to_vec()),
    });
    let ns = env.namespace.unwrap_or_default();
    match answer {
        Answer::Http(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Status(code) => {
            let id = if code == 1000 {
                format!("<MessageID>{message_id}</MessageID>")
            } else {
                String::new()
            };
            let xml = format!(
                "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\">\
                 <env:Header><mm7:TransactionID xmlns:mm7=\"{ns}\">{}</mm7:TransactionID></env:Header><env:Body>\
                 <SubmitRsp xmlns=\"{ns}\"><MM7Version>5.3.0</MM7Version><Status><StatusCode>{code}</StatusCode>\
                 </Status>{id}</SubmitRsp></env:Body></env:Envelope>",
                req.transaction_id
            );
            ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
        }
    }
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

async fn start_mmsc() -> (Arc<Mmsc>, SocketAddr) {
    let m = Arc::new(Mmsc::default());
    let router = axum::Router::new()
        .route("/mm7", axum::routing::post(mmsc_post))
        .with_state(Arc::clone(&m));
    (m, serve(router).await)
}

fn channel_config(addr: SocketAddr, rate: u32) -> Mm7ChannelConfig {
    let submit = SubmitSettings {
        namespace: soap::REL_5_MM7_1_0.into(),
        vasp_id: "901234".into(),
        vas_id: "9012340001".into(),
        service_code: Some("MMSTEST".into()),
        sender: Some("10658000".into()),
        delivery_report: true,
        charged_party: Some("Sender".into()),
    };
    let url = reqwest::Url::parse(&format!("http://{addr}/mm7")).unwrap();
    let mut c = Mm7ChannelConfig::new("mmsc", url, submit, NonZeroU32::new(rate).unwrap());
    c.auth = Some(("vasp".into(), Some("pw".into())));
    c.window = 2;
    c.timeout = Duration::from_secs(5);
    c.retry.backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    c.reconnect = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    c
}

fn content(tag: &str) -> Arc<MmsContent> {
    let body = format!(
        "--inner\r\nContent-Type: application/smil\r\nContent-ID: <smil>\r\n\r\n<smil/>\r\n\
         --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{tag}\r\n--inner--\r\n"
    );
    let mut digest = [0u8; 32];
    digest[..tag.len().min(32)].copy_from_slice(&tag.as_bytes()[..tag.len().min(32)]);
    Arc::new(MmsContent {
        subject: Some(format!("subject {tag}")),
        content_type:
            "multipart/related; boundary=\"inner\"; type=\"application/smil\"; start=\"<smil>\""
                .into(),
        body: bytes::Bytes::from(body),
        digest,
    })
}

fn mms(id: u64, to: &str, content: &Arc<MmsContent>) -> OutboundMessage {
    OutboundMessage {
        id,
        attempt: 0,
        from: None,
        to: to.into(),
        content: Content::Mms(Arc::clone(content)),
    }
}

struct Rig {
    input: mpsc::Sender<OutboundMessage>,
    outcomes: mpsc::Receiver<Settled>,
    handle: WorkerHandle,
}

fn start(config: Mm7ChannelConfig, queued: Vec<OutboundMessage>) -> Rig {
    sluice::tls::install_provider();
    let (input, input_rx) = mpsc::channel(config.capacity().max(queued.len()));
    for m in queued {
        input.try_send(m).expect("room for pre-queued messages");
    }
    let (outcomes_tx, outcomes) = mpsc::channel(1024);
    let handle = mm7::spawn(config, input_rx, outcomes_tx).expect("client builds");
    Rig {
        input,
        outcomes,
        handle,
    }
}

async fn next_outcome(rig: &mut Rig) -> Outcome {
    tokio::time::timeout(WAIT, rig.outcomes.recv())
        .await
        .expect("outcome in time")
        .expect("worker alive")
        .outcome
}

/// Feeds `msgs` and collects one final outcome each (`Sent` / `Failed`), re-feeding `Retry`
/// as the store would. Returns finals by id and every outcome seen in order. Feeding and
/// reading interleave: the worker's credits come back only when its outcomes are dropped.
async fn run_all(
    rig: &mut Rig,
    msgs: Vec<OutboundMessage>,
) -> (HashMap<u64, Outcome>, Vec<Outcome>) {
    let by_id: HashMap<u64, OutboundMessage> = msgs.iter().map(|m| (m.id, m.clone())).collect();
    let mut waiting: VecDeque<OutboundMessage> = msgs.into();
    let mut finals = HashMap::new();
    let mut all = Vec::new();
    while finals.len() < by_id.len() {
        let feed = !waiting.is_empty();
        tokio::select! {
            permit = rig.input.reserve(), if feed => {
                permit.expect("worker alive").send(waiting.pop_front().expect("checked"));
            }
            o = tokio::time::timeout(WAIT, rig.outcomes.recv()) => {
                let o = o.expect("outcome in time").expect("worker alive").outcome;
                all.push(o.clone());
                match o {
                    Outcome::Retry { id, attempts, .. } => {
                        let mut m = by_id[&id].clone();
                        m.attempt = attempts;
                        waiting.push_back(m);
                    }
                    Outcome::Release { id, .. } => waiting.push_back(by_id[&id].clone()),
                    other => {
                        finals.insert(other.id(), other);
                    }
                }
            }
        }
    }
    (finals, all)
}

#[tokio::test]
async fn submit_req_carries_content_headers_and_namespace() {
    let (mmsc, addr) = start_mmsc().await;
    let mut rig = start(channel_config(addr, 100), Vec::new());
    let c = content("hello");
    let (finals, _) = run_all(&mut rig, vec![mms(1, "+8613800138000", &c)]).await;
    let seen = mmsc.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        finals[&1],
        Outcome::Sent {
            id: 1,
            center_ids: vec![compact_str::format_compact!(
                "{}/8613800138000",
                s.message_id
            )],
        }
    );
    assert_eq!(s.namespace.as_deref(), Some(soap::REL_5_MM7_1_0));
    assert_eq!(s.req.vaspid, "901234");
    assert_eq!(s.req.vasid, "9012340001");
    assert_eq!(s.req.service_code.as_deref(), Some("MMSTEST"));
    assert_eq!(
        s.req.sender_address,
        Some(Address::Number("10658000".into()))
    );
    assert_eq!(
        s.req.recipients,
        vec![Address::Number("+8613800138000".into())]
    );
    assert_eq!(s.req.delivery_report, Some(true));
    assert_eq!(s.req.charged_party.as_deref(), Some("Sender"));
    assert_eq!(s.req.subject.as_deref(), Some("subject hello"));
    assert!(!s.req.transaction_id.is_empty());
    assert_eq!(s.content, c.body.to_vec(), "content part is the MMS body");
    assert_eq!(s.content_type, c.content_type);
    let h = |n: &str| s.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(h("soapaction"), "\"\"");
    assert!(
        h("content-type").starts_with("multipart/related;")
            && h("content-type").contains("type=\"text/xml\""),
        "{}",
        h("content-type")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("vasp:pw");
    assert_eq!(h("authorization"), format!("Basic {basic}"));
    rig.handle.shutdown().await;
}

#[tokio::test]
async fn answers_are_classified() {
    let (mmsc, addr) = start_mmsc().await;
    {
        let mut script = mmsc.script.lock().unwrap();
        script.insert(
            "+8613800000001".into(),
            VecDeque::from([Answer::Status(2002)]),
        );
        script.insert(
            "+8613800000002".into(),
            VecDeque::from([Answer::Status(3000)]),
        );
        script.insert(
            "+8613800000003".into(),
            VecDeque::from([Answer::Status(4006), Answer::Http(503)]),
        );
        script.insert("+8613800000004".into(), VecDeque::from([Answer::Http(500)]));
        script.insert("+8613800000005".into(), VecDeque::from([Answer::Http(400)]));
    }
    let rate = 100;
    let mut rig = start(channel_config(addr, rate), Vec::new());
    let c = content("x");
    let msgs = (1..=5)
        .map(|i| mms(i, &format!("+86138000000{i:02}"), &c))
        .collect();
    let (finals, all) = run_all(&mut rig, msgs).await;
    match &finals[&1] {
        Outcome::Failed {
            status,
            stat,
            reason,
            ..
        } => {
            assert_eq!((*status, *stat), (2002, "REJECTD"));
            assert!(reason.contains("Address error"), "{reason}");
        }
        other => panic!("2002 must fail: {other:?}"),
    }
    assert!(
        matches!(
            finals[&5],
            Outcome::Failed {
                stat: "REJECTD",
                ..
            }
        ),
        "{:?}",
        finals[&5]
    );
    for id in [2, 4] {
        assert!(
            all.iter()
                .any(|o| matches!(o, Outcome::Retry { id: i, .. } if *i == id)),
            "message {id} retried through the store: {all:?}"
        );
        assert!(
            matches!(finals[&id], Outcome::Sent { .. }),
            "{:?}",
            finals[&id]
        );
    }
    // Throttled twice: resent by the worker without a store retry, and the rate came down.
    assert!(
        matches!(finals[&3], Outcome::Sent { .. }),
        "{:?}",
        finals[&3]
    );
    assert!(
        !all.iter()
            .any(|o| matches!(o, Outcome::Retry { id: 3, .. })),
        "{all:?}"
    );
    assert!(*rig.handle.rate.borrow() < rate, "AIMD lowered the rate");
    let to3 = mmsc
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.req.recipients == vec![Address::Number("+8613800000003".into())])
        .count();
    assert_eq!(to3, 3, "4006, then 503, then accepted");
    rig.handle.shutdown().await;
}

#[tokio::test]
async fn transport_errors_retry_and_mark_the_task_down_until_the_mmsc_is_back() {
    // A port nobody listens on: connections are refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut config = channel_config(closed, 100);
    config.window = 1;
    config.down_after = 100;
    let mut rig = start(config, Vec::new());
    rig.input
        .send(mms(1, "+8613800138000", &content("t")))
        .await
        .unwrap();
    match next_outcome(&mut rig).await {
        Outcome::Retry { id: 1, reason, .. } => assert!(reason.contains("bind lost"), "{reason}"),
        other => panic!("transport errors must be retried: {other:?}"),
    }
    rig.handle.shutdown().await;

    // With `down_after` reached the task reports itself down, and up again once the MMSC
    // accepts connections.
    let mut config = channel_config(closed, 100);
    config.window = 1;
    config.down_after = 2;
    let rig = start(config, Vec::new());
    let mut up = rig.handle.binds_up.clone();
    tokio::time::timeout(WAIT, up.wait_for(|n| *n == 1))
        .await
        .unwrap()
        .unwrap();
    rig.input
        .send(mms(2, "+8613800138000", &content("t")))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, up.wait_for(|n| *n == 0))
        .await
        .expect("down after transport errors")
        .unwrap();
    let m = Arc::new(Mmsc::default());
    let listener = tokio::net::TcpListener::bind(closed).await.unwrap();
    let router = axum::Router::new()
        .route("/mm7", axum::routing::post(mmsc_post))
        .with_state(Arc::clone(&m));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    tokio::time::timeout(WAIT, up.wait_for(|n| *n == 1))
        .await
        .expect("up again once the MMSC is reachable")
        .unwrap();
    rig.handle.shutdown().await;
}

/// A real store and receipt layer behind `/mm7/{channel}`.
struct Back {
    store: Store<AnyBackend>,
    receipts: Arc<Receipts>,
    inbound: SocketAddr,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn back() -> Back {
    sluice::tls::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(
        BackendKind::Redb,
        dir.path(),
        WriterConfig::default(),
        now_ms(),
    )
    .unwrap();
    let client = reqwest::Client::builder().build().unwrap();
    let receipts = Arc::new(Receipts::new(
        store.clone(),
        vec![MoAccount {
            name: "acme".into(),
            prefixes: vec!["10658000".into()],
            mo_url: Some("http://127.0.0.1:9/mo".into()),
            webhook_secret: None,
            smpp: false,
            batching: Default::default(),
        }],
        ReceiptConfig::default(),
        client,
    ));
    let (events_tx, events_rx) = mpsc::channel(1024);
    let (stop, stop_rx) = watch::channel(false);
    // No worker in this test: the receipt layer records latency into a status of its own.
    let status = Arc::new(sluice::status::ChannelStatus::new(
        "mmsc",
        10,
        1,
        1,
        watch::channel(1).1,
        watch::channel(10).1,
    ));
    tokio::spawn(Arc::clone(&receipts).run_channel(
        "mmsc".into(),
        IdFormat::Text,
        events_rx,
        stop_rx,
        status,
    ));
    let mut inbound = Inbound::default();
    inbound.add(InboundChannel {
        name: Arc::from("mmsc"),
        namespace: soap::REL_6_MM7_1_4.into(),
        auth: Some(InboundAuth {
            username: "mmsc".into(),
            password_sha256: sha256("in-pw"),
        }),
        events: events_tx,
        max_content_bytes: 307_200,
    });
    let addr = serve(mm7::inbound::router(Arc::new(inbound))).await;
    Back {
        store,
        receipts,
        inbound: addr,
        _dir: dir,
        _stop: stop,
    }
}

fn sha256(s: &str) -> [u8; 32] {
    let hex = sluice::config::hash_api_key(s);
    sluice::ingress::account::parse_key_hash(&hex).unwrap()
}

/// Stores messages on channel "mmsc" and records `center_ids` for them exactly as dispatch
/// does with a `Sent` outcome.
async fn stored_and_submitted(b: &Back, sent: &[(u64, Vec<String>)]) -> Vec<MessageId> {
    let now = now_ms();
    let mut ids = Vec::new();
    let mut batch = Vec::new();
    for (i, _) in sent.iter().enumerate() {
        let id = b.store.ids().next(now);
        let m = Message::new(
            id,
            "acme",
            format!("+861380000000{i}"),
            Payload::Text {
                text: "mms stand-in".into(),
                encoding: Default::default(),
            },
            "mmsc",
            now,
            now,
        );
        ids.push(id);
        batch.push(m);
    }
    b.store.insert_batch(batch).await.unwrap();
    let mut ops = Vec::new();
    for (id, (_, center_ids)) in ids.iter().zip(sent) {
        for (n, raw) in center_ids.iter().enumerate() {
            ops.push(Op::Submitted {
                id: *id,
                part: u16::try_from(n + 1).unwrap(),
                parts: u16::try_from(center_ids.len()).unwrap(),
                center_id: normalise_center_id(raw, IdFormat::Text),
                now_ms: now,
            });
        }
    }
    b.store.submit(ops).await.unwrap();
    ids
}

fn envelope(ns: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\">\
         <env:Header><mm7:TransactionID xmlns:mm7=\"{ns}\" env:mustUnderstand=\"1\">tx-1</mm7:TransactionID></env:Header>\
         <env:Body>{body}</env:Body></env:Envelope>"
    )
}

fn delivery_report(message_id: &str, recipient: &str, status: &str) -> String {
    let ns = soap::REL_6_MM7_1_4;
    envelope(
        ns,
        &format!(
            "<DeliveryReportReq xmlns=\"{ns}\"><MM7Version>6.8.0</MM7Version><MessageID>{message_id}</MessageID>\
             <Recipient><Number>{recipient}</Number></Recipient><Sender><Number>10658000</Number></Sender>\
             <Date>2026-12-05T10:30:07+08:00</Date><MMStatus>{status}</MMStatus><StatusText>done</StatusText>\
             </DeliveryReportReq>"
        ),
    )
}

async fn post(
    b: &Back,
    channel: &str,
    auth: Option<(&str, &str)>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let mut rb = reqwest::Client::new()
        .post(format!("http://{}/mm7/{channel}", b.inbound))
        .header("content-type", content_type)
        .body(body);
    if let Some((u, p)) = auth {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = tokio::time::timeout(WAIT, rb.send())
        .await
        .unwrap()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

const AUTH: Option<(&str, &str)> = Some(("mmsc", "in-pw"));

#[tokio::test]
async fn delivery_reports_settle_messages_before_the_answer() {
    let b = back().await;
    let ids = stored_and_submitted(
        &b,
        &[
            (0, vec!["M1/8613800138000".into()]),
            (0, vec!["M2/8613800138001".into()]),
        ],
    )
    .await;
    let (status, body) = post(
        &b,
        "mmsc",
        AUTH,
        "text/xml; charset=utf-8",
        delivery_report("M1", "+8613800138000", "Retrieved").into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let env = soap::decode(body.as_bytes()).unwrap();
    assert_eq!(env.transaction_id.as_deref(), Some("tx-1"));
    assert!(
        matches!(env.message, Mm7::DeliveryReportRsp(ref s) if s.code == 1000),
        "{env:?}"
    );
    // Answered only after the receipt layer's commit: the store already has it.
    let m = b.store.get(ids[0]).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Delivered);
    assert_eq!(m.receipts[0].stat, "DELIVRD");

    // Deferred is not final; Expired then is.
    let (status, _) = post(
        &b,
        "mmsc",
        AUTH,
        "text/xml",
        delivery_report("M2", "8613800138001", "Deferred").into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!b.store.get(ids[1]).unwrap().unwrap().state.is_final());
    let (status, _) = post(
        &b,
        "mmsc",
        AUTH,
        "text/xml",
        delivery_report("M2", "8613800138001", "Expired").into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        b.store.get(ids[1]).unwrap().unwrap().state,
        MessageState::Expired
    );
}

#[tokio::test]
async fn deliver_req_becomes_a_kept_reply() {
    let b = back().await;
    let mut subs = b.receipts.subscribe();
    let ns = soap::REL_5_MM7_1_0;
    let xml = envelope(
        ns,
        &format!(
            "<DeliverReq xmlns=\"{ns}\"><MM7Version>5.3.0</MM7Version><MMSRelayServerID>mmsc</MMSRelayServerID>\
             <Sender><Number>+8613800138000</Number></Sender><Recipients><To><ShortCode>106580001234</ShortCode></To></Recipients>\
             <Subject>re</Subject><Priority>Normal</Priority><Content href=\"cid:mo-content\"/></DeliverReq>"
        ),
    );
    let (gbk, _, _) = encoding_rs::GBK.encode("退订");
    let inner = mime::build_related(
        "in",
        "application/smil",
        &[
            mime::Part::new(
                "application/smil",
                mime::TransferEncoding::EightBit,
                b"<smil/>".to_vec(),
            )
            .with_content_id("s"),
            mime::Part::new(
                "text/plain; charset=gbk",
                mime::TransferEncoding::Base64,
                gbk.into_owned(),
            ),
        ],
    )
    .unwrap();
    let outer = mime::build_related(
        "out",
        "text/xml",
        &[
            mime::Part::new(
                "text/xml",
                mime::TransferEncoding::EightBit,
                xml.into_bytes(),
            )
            .with_content_id("soap"),
            mime::Part::new(
                &inner.content_type,
                mime::TransferEncoding::Binary,
                inner.body,
            )
            .with_content_id("mo-content"),
        ],
    )
    .unwrap();
    let (status, body) = post(&b, "mmsc", AUTH, &outer.content_type, outer.body).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        matches!(soap::decode(body.as_bytes()).unwrap().message, Mm7::DeliverRsp(ref s) if s.code == 1000),
        "{body}"
    );
    assert_eq!(
        b.store.mo_outbox("acme", 0, 10).unwrap().len(),
        1,
        "kept in the account's reply outbox before the answer"
    );
    let Notification::Mo(mo) = tokio::time::timeout(WAIT, subs.recv())
        .await
        .unwrap()
        .unwrap()
    else {
        panic!("expected an MO notification")
    };
    assert_eq!(mo.from, "+8613800138000");
    assert_eq!(mo.to, "106580001234");
    assert_eq!(mo.text, "退订");
}

#[tokio::test]
async fn inbound_refuses_bad_auth_unknown_channels_and_malformed_bodies() {
    let b = back().await;
    let report = delivery_report("M1", "8613800138000", "Retrieved").into_bytes();
    let (status, _) = post(&b, "mmsc", None, "text/xml", report.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &b,
        "mmsc",
        Some(("mmsc", "wrong")),
        "text/xml",
        report.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(&b, "nope", AUTH, "text/xml", report).await;
    assert_eq!(status, 404);
    for (ct, body) in [
        ("text/xml", b"<not-closed".to_vec()),
        ("text/xml", b"\xff\xfe\x00garbage".to_vec()),
        ("multipart/related; boundary=zz", b"--zz\r\nContent-Type: text/xml\r\n".to_vec()),
        ("multipart/related", b"no boundary".to_vec()),
        (
            "text/xml",
            envelope("urn:other", "<DeliveryReportReq xmlns=\"urn:other\"/>").into_bytes(),
        ),
        (
            "text/xml",
            envelope(
                soap::REL_6_MM7_1_4,
                &format!("<DeliveryReportReq xmlns=\"{}\"><MMStatus>Retrieved</MMStatus></DeliveryReportReq>", soap::REL_6_MM7_1_4),
            )
            .into_bytes(),
        ),
    ] {
        let (status, body) = post(&b, "mmsc", AUTH, ct, body).await;
        assert_eq!(status, 500, "{body}");
        match soap::decode(body.as_bytes()).unwrap().message {
            Mm7::Fault(f) => {
                assert_eq!(f.code, "env:Client");
                assert_eq!(f.status.map(|s| s.code), Some(2007));
                assert!(f.string.starts_with("malformed MM7 request"), "{}", f.string);
            }
            other => panic!("expected a Fault, got {other:?}"),
        }
    }
    // The route still works after all that.
    let (status, _) = post(
        &b,
        "mmsc",
        AUTH,
        "text/xml",
        delivery_report("M9", "8613800138000", "Retrieved").into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
}

/// Three recipients of one content already queued go out as one SubmitReq with three `To`,
/// come back as three outcomes with their own center ids, and each recipient's delivery
/// report settles its own message.
#[tokio::test]
async fn multi_recipient_submit_and_per_recipient_reports() {
    let (mmsc, addr) = start_mmsc().await;
    let mut config = channel_config(addr, 1000);
    config.window = 1;
    config.max_recipients = 3;
    config.burst = NonZeroU32::new(100).unwrap();
    let c = content("campaign");
    let queued: Vec<OutboundMessage> = (1..=3)
        .map(|i| mms(i, &format!("+861380013800{i}"), &c))
        .collect();
    let mut rig = start(config, queued);
    let mut sent = HashMap::new();
    while sent.len() < 3 {
        match next_outcome(&mut rig).await {
            Outcome::Sent { id, center_ids } => {
                sent.insert(id, center_ids);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let seen = mmsc.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one SubmitReq for three recipients");
    assert_eq!(seen[0].req.recipients.len(), 3);
    let mid = &seen[0].message_id;
    for i in 1..=3u64 {
        assert_eq!(sent[&i], vec![format!("{mid}/861380013800{i}")]);
    }
    rig.handle.shutdown().await;

    let b = back().await;
    let order: Vec<(u64, Vec<String>)> = (1..=3)
        .map(|i| (i, sent[&i].iter().map(ToString::to_string).collect()))
        .collect();
    let ids = stored_and_submitted(&b, &order).await;
    for (i, status) in [(1, "Retrieved"), (2, "Rejected"), (3, "Retrieved")] {
        let (code, body) = post(
            &b,
            "mmsc",
            AUTH,
            "text/xml",
            delivery_report(mid, &format!("+861380013800{i}"), status).into_bytes(),
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }
    let states: Vec<MessageState> = ids
        .iter()
        .map(|id| b.store.get(*id).unwrap().unwrap().state)
        .collect();
    assert_eq!(
        states,
        vec![
            MessageState::Delivered,
            MessageState::Rejected,
            MessageState::Delivered
        ]
    );
}

/// Anything but MMS on an MM7 channel fails for good.
#[tokio::test]
async fn text_on_an_mm7_channel_fails() {
    let (mmsc, addr) = start_mmsc().await;
    let mut rig = start(channel_config(addr, 100), Vec::new());
    let msg = OutboundMessage {
        content: Content::Text {
            text: "hi".into(),
            hint: None,
        },
        ..mms(7, "+8613800138000", &content("x"))
    };
    let (finals, _) = run_all(&mut rig, vec![msg]).await;
    assert!(
        matches!(&finals[&7], Outcome::Failed { stat: "REJECTD", reason, .. } if reason.contains("only MMS")),
        "{:?}",
        finals[&7]
    );
    assert!(mmsc.seen.lock().unwrap().is_empty());
    rig.handle.shutdown().await;
}

/// `serve` starts an MM7 channel from config (ready: its request tasks are up) and routes
/// `/mm7/{channel}` on the API listener, with the channel's inbound basic auth.
#[tokio::test]
async fn serve_starts_mm7_channels_and_routes_their_inbound() {
    let (_mmsc, addr) = start_mmsc().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[listeners]
http = "127.0.0.1:0"
[storage]
path = "{data}"
[[accounts]]
name = "acme"
api_keys = ["{key}"]
rate = 100
[[channels]]
name = "mmsc"
kind = "mm7"
url = "http://{addr}/mm7"
vasp_id = "901234"
inbound_username = "mmsc"
inbound_password_sha256 = "{inbound}"
rate = 10
[[routes]]
kinds = ["mms"]
channel = "mmsc"
"#,
        data = dir.path().display(),
        key = sluice::config::hash_api_key("k"),
        inbound = sluice::config::hash_api_key("in-pw"),
    );
    let cfg = sluice::config::Config::parse(&text, "mm7.toml").expect("config");
    let gw = sluice::serve::start(
        cfg,
        sluice::serve::ServeOptions {
            drain_deadline: Duration::from_secs(5),
            ..sluice::serve::ServeOptions::default()
        },
    )
    .await
    .expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::task::yield_now().await;
    }
    let report = delivery_report("M1", "8613800138000", "Retrieved");
    let send = |path: &str, auth: bool| {
        let mut rb = client
            .post(format!("{base}{path}"))
            .header("content-type", "text/xml")
            .body(report.clone());
        if auth {
            rb = rb.basic_auth("mmsc", Some("in-pw"));
        }
        rb.send()
    };
    assert_eq!(send("/mm7/mmsc", false).await.unwrap().status(), 401);
    assert_eq!(send("/mm7/other", true).await.unwrap().status(), 404);
    let r = send("/mm7/mmsc", true).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(matches!(
        soap::decode(r.text().await.unwrap().as_bytes()).unwrap().message,
        Mm7::DeliveryReportRsp(ref s) if s.code == 1000
    ));
    gw.shutdown().await;
}

/// Python's standard `email` package (a MIME parser nobody here wrote) reads the request the
/// channel POSTs into the same tree: envelope root, then the MMS content with its own parts.
/// A missing python3 is skipped, or FAILS when SLUICE_INTEROP=1 (as in CI).
#[tokio::test]
async fn python_email_reads_the_channel_request() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import email"])
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        assert!(
            std::env::var_os("SLUICE_INTEROP").is_none_or(|v| v != "1"),
            "python3 not installed but SLUICE_INTEROP=1"
        );
        println!("skipped: python3 not installed");
        return;
    }
    let (mmsc, addr) = start_mmsc().await;
    let mut rig = start(channel_config(addr, 100), Vec::new());
    let (finals, _) = run_all(&mut rig, vec![mms(1, "+8613800138000", &content("py"))]).await;
    assert!(matches!(finals[&1], Outcome::Sent { .. }));
    rig.handle.shutdown().await;
    let (ct, body) = mmsc.seen.lock().unwrap()[0].raw.clone();
    const WALK: &str = r#"
import sys, json, email
from email import policy
msg = email.message_from_binary_file(sys.stdin.buffer, policy=policy.compat32)
if msg.defects:
    sys.exit("defects: %r" % msg.defects)
print(json.dumps([[p.get_content_type(), p.get("Content-ID"),
                   None if p.is_multipart() else p.get_payload(decode=True).decode("utf-8")]
                  for p in msg.walk()]))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", WALK])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = format!("MIME-Version: 1.0\r\nContent-Type: {ct}\r\n\r\n").into_bytes();
    input.extend_from_slice(&body);
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let walk: Vec<(String, Option<String>, Option<String>)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let shape: Vec<(&str, Option<&str>)> = walk
        .iter()
        .map(|(t, c, _)| (t.as_str(), c.as_deref()))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("multipart/related", None),
            ("text/xml", Some("<envelope>")),
            ("multipart/related", Some("<content>")),
            ("application/smil", Some("<smil>")),
            ("text/plain", None),
        ]
    );
    let envelope = walk[1].2.as_deref().unwrap();
    let env = soap::decode(envelope.as_bytes()).expect("python's envelope bytes decode");
    assert!(matches!(env.message, Mm7::SubmitReq(_)));
    assert_eq!(walk[4].2.as_deref().map(str::trim_end), Some("py"));
}
