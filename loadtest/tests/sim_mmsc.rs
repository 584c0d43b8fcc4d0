//! The simulator's MMSC, driven from outside like a VASP: the test encodes SubmitReqs with
//! the protocols crate's VASP-side encoders, POSTs them with reqwest and runs a small VASP
//! HTTP server (axum) that records what the MMSC sends it. Checked: SubmitRsp with a
//! MessageID, one DeliveryReportReq per recipient with that MessageID, duplicates in the
//! tally, a report not answered 1000 sent again and counted, reply MOs as DeliverReq with
//! content, each fault mode's answer, basic auth, and `loadtest --target mm7` against it.
//! Every wait is bounded by a deadline that fails the test rather than hangs it; nothing
//! asserts on speed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_loadtest::config::{
    BasicAuth, DlrConfig, ErrorConfig, ListenerConfig, Mm7Config, Protocol, ReplyRule, SimConfig,
};
use sluice_loadtest::load::mm7::Mm7Target;
use sluice_loadtest::load::{LoadConfig, PayloadConfig, Target};
use sluice_loadtest::{SimHandle, Simulator, TallySnapshot};
use sluice_protocols::mm7::mime::{self, Part, TransferEncoding};
use sluice_protocols::mm7::soap::{
    self, Address, Message, REL_5_MM7_1_0, REL_6_MM7_1_4, Status, SubmitReq,
};

/// What the test VASP received: the decoded message and, for multipart bodies, the parts.
#[derive(Debug, Clone)]
struct Received {
    message: Message,
    parts: Vec<Part>,
}

/// The test VASP: records every request; answers the first `fail_first` with HTTP 500 and
/// the rest with the matching MM7 response, status 1000.
#[derive(Default)]
struct Vasp {
    got: Mutex<Vec<Received>>,
    fail_first: AtomicUsize,
    auth: Option<String>,
}

async fn vasp_handler(State(v): State<Arc<Vasp>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(want) = &v.auth
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            != Some(want.as_str())
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (soap_bytes, parts) = if mime::media_type(&ct) == "multipart/related" {
        let parts = mime::parse(&ct, &body).expect("MMSC multipart parses");
        (parts[0].body.clone(), parts)
    } else {
        (body.to_vec(), Vec::new())
    };
    let env = soap::decode(&soap_bytes).expect("MMSC envelope decodes");
    v.got.lock().unwrap().push(Received {
        message: env.message.clone(),
        parts,
    });
    if v.fail_first
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let ns = env.namespace.unwrap();
    let tid = env.transaction_id.unwrap_or_default();
    let ok = Status {
        code: 1000,
        text: None,
    };
    let xml = match env.message {
        Message::DeliveryReportReq(_) => soap::encode_delivery_report_rsp(&ns, &tid, &ok),
        Message::DeliverReq(_) => soap::encode_deliver_rsp(&ns, &tid, &ok, None),
        other => panic!("unexpected {other:?}"),
    };
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

async fn start_vasp(v: Arc<Vasp>) -> SocketAddr {
    let sock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let app = Router::new().fallback(vasp_handler).with_state(v);
    tokio::spawn(async move { axum::serve(sock, app).await.unwrap() });
    addr
}

fn mmsc(vasp: Option<SocketAddr>, mm7: Mm7Config) -> ListenerConfig {
    ListenerConfig {
        name: "mmsc".into(),
        protocol: Protocol::Mm7,
        mm7: Mm7Config {
            vasp_url: vasp.map(|a| format!("http://{a}/mm7/mms")),
            ..mm7
        },
        ..ListenerConfig::default()
    }
}

async fn start_sim(l: ListenerConfig) -> (SimHandle, String) {
    let h = Simulator::start(SimConfig {
        listeners: vec![l],
        seed: Some(7),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}/mm7", h.addr_of(Protocol::Mm7).unwrap());
    (h, url)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn submit_req(tid: &str, to: &[&str]) -> SubmitReq {
    SubmitReq {
        transaction_id: tid.into(),
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: Some(Address::ShortCode("10658888".into())),
        recipients: to.iter().map(|n| Address::Number((*n).into())).collect(),
        service_code: Some("MMS_PROMO".into()),
        linked_id: None,
        delivery_report: Some(true),
        subject: Some("Winter sale".into()),
        charged_party: Some("Sender".into()),
        content_id: "content".into(),
    }
}

/// SubmitReq + content (text and a 3000-byte image) as multipart/related; the boundary
/// carries `tid`, so the same content sent twice differs on the wire.
fn body(ns: &str, req: &SubmitReq, text: &str) -> (String, Vec<u8>) {
    let image: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let inner = mime::build_related(
        &format!("in-{}", req.transaction_id),
        "text/plain",
        &[
            Part::new(
                "text/plain; charset=utf-8",
                TransferEncoding::EightBit,
                text.into(),
            )
            .with_content_id("t"),
            Part::new("image/jpeg", TransferEncoding::Base64, image).with_content_id("i"),
        ],
    )
    .unwrap();
    let outer = mime::build_related(
        &format!("out-{}", req.transaction_id),
        "text/xml",
        &[
            Part::new(
                "text/xml; charset=utf-8",
                TransferEncoding::EightBit,
                soap::encode_submit_req(ns, req).into_bytes(),
            )
            .with_content_id("soap"),
            Part::new(&inner.content_type, TransferEncoding::Binary, inner.body)
                .with_content_id(&req.content_id),
        ],
    )
    .unwrap();
    (outer.content_type, outer.body)
}

/// POSTs; returns the HTTP status and the decoded answer (None when it is not SOAP).
async fn post(
    c: &reqwest::Client,
    url: &str,
    (ct, b): (String, Vec<u8>),
    auth: Option<(&str, &str)>,
) -> (u16, Option<Message>) {
    let mut rb = c.post(url).header("content-type", ct).body(b);
    if let Some((u, p)) = auth {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (code, soap::decode(&bytes).ok().map(|e| e.message))
}

/// Waits (bounded) until `done` holds for the simulator's tally.
async fn until(h: &SimHandle, what: &str, done: impl Fn(&TallySnapshot) -> bool) -> TallySnapshot {
    for _ in 0..1000 {
        let t = h.tally();
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}: {:?}", h.tally());
}

fn reports(v: &Vasp) -> Vec<soap::DeliveryReportReq> {
    v.got
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| match &r.message {
            Message::DeliveryReportReq(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_is_answered_and_reported_per_recipient() {
    let vasp = Arc::new(Vasp::default());
    let vasp_addr = start_vasp(vasp.clone()).await;
    let (h, url) = start_sim(ListenerConfig {
        dlr: DlrConfig {
            mix: [("UNDELIV".to_owned(), 1.0)].into(),
            ..DlrConfig::default()
        },
        ..mmsc(Some(vasp_addr), Mm7Config::default())
    })
    .await;
    let c = client();
    for (i, ns) in [REL_6_MM7_1_4, REL_5_MM7_1_0].into_iter().enumerate() {
        let req = submit_req(&format!("tx-{i}"), &["8613800138000", "8613800138001"]);
        let (code, msg) = post(&c, &url, body(ns, &req, "hello"), None).await;
        assert_eq!(code, 200);
        let Some(Message::SubmitRsp(rsp)) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(rsp.status.code, 1000);
        let id = rsp.message_id.expect("MessageID");
        let t = until(&h, "two reports answered", |t| {
            t.deliver_resps_received >= 2
                && reports(&vasp).iter().filter(|r| r.message_id == id).count() == 2
        })
        .await;
        let mut mine: Vec<_> = reports(&vasp)
            .into_iter()
            .filter(|r| r.message_id == id)
            .collect();
        mine.sort_by_key(|r| format!("{:?}", r.recipient));
        assert_eq!(
            mine.iter().map(|r| r.recipient.clone()).collect::<Vec<_>>(),
            vec![
                Some(Address::Number("8613800138000".into())),
                Some(Address::Number("8613800138001".into()))
            ]
        );
        for r in &mine {
            assert_eq!(r.mm_status, "Unrecognised");
            assert_eq!(r.sender, Some(Address::ShortCode("10658888".into())));
            assert!(r.date.is_some());
        }
        assert_eq!(t.resent, 0);
    }
    // Same content and recipients as before, fresh TransactionID and boundaries: duplicates.
    let again = submit_req("tx-again", &["8613800138000", "8613800138001"]);
    let (code, _) = post(&c, &url, body(REL_6_MM7_1_4, &again, "hello"), None).await;
    assert_eq!(code, 200);
    let t = until(&h, "the repeat's reports", |t| {
        t.dlrs_sent == 6 && t.deliver_resps_received == 6
    })
    .await;
    assert_eq!(t.submits_received, 3);
    assert_eq!(t.parts_accepted, 6);
    assert_eq!(t.unique_messages, 2, "{t:?}");
    assert_eq!(t.duplicates, 4, "{t:?}");
    // Decoded content per request: 5 bytes of text + 3000 of image.
    assert_eq!(t.content_bytes, 3 * 3005);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_not_answered_1000_is_resent_and_counted() {
    let vasp = Arc::new(Vasp {
        fail_first: AtomicUsize::new(2),
        ..Vasp::default()
    });
    let vasp_addr = start_vasp(vasp.clone()).await;
    let (h, url) = start_sim(mmsc(
        Some(vasp_addr),
        Mm7Config {
            resend_after_ms: 20,
            ..Mm7Config::default()
        },
    ))
    .await;
    let req = submit_req("tx-r", &["8613800138009"]);
    let (code, msg) = post(&client(), &url, body(REL_6_MM7_1_4, &req, "x"), None).await;
    assert_eq!(code, 200);
    let Some(Message::SubmitRsp(rsp)) = msg else {
        panic!("{msg:?}")
    };
    let t = until(&h, "the report answered", |t| t.deliver_resps_received == 1).await;
    assert_eq!(
        (t.dlrs_sent, t.resent, t.vasp_abandoned),
        (1, 2, 0),
        "{t:?}"
    );
    let got = reports(&vasp);
    assert_eq!(got.len(), 3, "three attempts of one report: {got:?}");
    assert!(
        got.iter()
            .all(|r| Some(&r.message_id) == rsp.message_id.as_ref())
    );
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_give_up_after_max_attempts() {
    let vasp = Arc::new(Vasp {
        fail_first: AtomicUsize::new(100),
        ..Vasp::default()
    });
    let vasp_addr = start_vasp(vasp.clone()).await;
    let (h, url) = start_sim(mmsc(
        Some(vasp_addr),
        Mm7Config {
            resend_after_ms: 1,
            max_attempts: 3,
            ..Mm7Config::default()
        },
    ))
    .await;
    let req = submit_req("tx-g", &["8613800138010"]);
    post(&client(), &url, body(REL_6_MM7_1_4, &req, "x"), None).await;
    let t = until(&h, "the report abandoned", |t| t.vasp_abandoned == 1).await;
    assert_eq!((t.dlrs_sent, t.resent, t.deliver_resps_received), (1, 2, 0));
    assert_eq!(reports(&vasp).len(), 3);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_rules_send_deliver_req_with_content() {
    let vasp = Arc::new(Vasp::default());
    let vasp_addr = start_vasp(vasp.clone()).await;
    let mut l = mmsc(Some(vasp_addr), Mm7Config::default());
    l.mo.reply = vec![ReplyRule {
        contains: "variant-A".into(),
        probability: 1.0,
        text: "YES".into(),
        delay: Default::default(),
    }];
    let (h, url) = start_sim(l).await;
    let c = client();
    let a = submit_req("tx-a", &["8613800138020"]);
    let (_, msg) = post(&c, &url, body(REL_6_MM7_1_4, &a, "offer variant-A"), None).await;
    let Some(Message::SubmitRsp(rsp)) = msg else {
        panic!("{msg:?}")
    };
    let b = submit_req("tx-b", &["8613800138021"]);
    post(&c, &url, body(REL_6_MM7_1_4, &b, "offer variant-B"), None).await;
    let t = until(&h, "the reply answered", |t| {
        t.mo_sent == 1 && t.deliver_resps_received == 3
    })
    .await;
    assert_eq!(t.mo_scheduled, 1);
    let got = vasp.got.lock().unwrap().clone();
    let mo: Vec<_> = got
        .iter()
        .filter(|r| matches!(r.message, Message::DeliverReq(_)))
        .collect();
    assert_eq!(mo.len(), 1);
    let Message::DeliverReq(d) = &mo[0].message else {
        unreachable!()
    };
    assert_eq!(d.linked_id, rsp.message_id);
    assert_eq!(d.sender, Some(Address::Number("8613800138020".into())));
    assert_eq!(d.recipients, vec![Address::ShortCode("10658888".into())]);
    let content = mo[0]
        .parts
        .iter()
        .find(|p| p.content_id == d.content_id)
        .expect("the content part the envelope names");
    assert_eq!(content.body, b"YES");
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_modes_answer_as_configured() {
    let c = client();
    let req = submit_req("tx-f", &["8613800138030"]);
    let mm7 = |m: Mm7Config| mmsc(None, m);

    // HTTP 503, no SOAP.
    let (h, url) = start_sim(mm7(Mm7Config {
        http_error_share: 1.0,
        ..Mm7Config::default()
    }))
    .await;
    assert_eq!(
        post(&c, &url, body(REL_6_MM7_1_4, &req, "x"), None).await,
        (503, None)
    );
    assert_eq!(h.tally().rejected.get("http:503"), Some(&1));
    h.shutdown().await.unwrap();

    // Errors: temporary → 3001, permanent → 2002 (defaults), in SubmitRsp.
    for (errors, code) in [
        (
            ErrorConfig {
                temporary: 1.0,
                ..ErrorConfig::default()
            },
            3001,
        ),
        (
            ErrorConfig {
                permanent: 1.0,
                ..ErrorConfig::default()
            },
            2002,
        ),
    ] {
        let (h, url) = start_sim(ListenerConfig {
            errors,
            ..mm7(Mm7Config::default())
        })
        .await;
        let (http, msg) = post(&c, &url, body(REL_6_MM7_1_4, &req, "x"), None).await;
        assert_eq!(http, 200);
        let Some(Message::SubmitRsp(r)) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!((r.status.code, r.message_id), (code, None));
        let t = h.shutdown().await.unwrap();
        assert_eq!(t.rejected.get(&format!("mm7:{code}")), Some(&1));
        assert_eq!(t.unique_messages, 0);
    }

    // Throughput: one token, refilled once in 1000 s: the second request is throttled (4006).
    let (h, url) = start_sim(ListenerConfig {
        throughput: 0.001,
        burst: 1.0,
        ..mm7(Mm7Config::default())
    })
    .await;
    let codes = [
        post(&c, &url, body(REL_6_MM7_1_4, &req, "x"), None).await,
        post(&c, &url, body(REL_6_MM7_1_4, &req, "y"), None).await,
    ]
    .map(|(_, m)| match m {
        Some(Message::SubmitRsp(r)) => r.status.code,
        other => panic!("{other:?}"),
    });
    assert_eq!(codes, [1000, 4006]);
    h.shutdown().await.unwrap();

    // No answer: the client's timeout fires.
    let (h, url) = start_sim(mm7(Mm7Config {
        timeout_share: 1.0,
        ..Mm7Config::default()
    }))
    .await;
    let (ct, b) = body(REL_6_MM7_1_4, &req, "x");
    let err = c
        .post(&url)
        .header("content-type", ct)
        .body(b)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(h.shutdown().await.unwrap().submits_received, 1);

    // Broken MIME and a kind the MMSC does not serve: SOAP Faults with an RSErrorRsp status.
    let (h, url) = start_sim(mm7(Mm7Config::default())).await;
    let (http, msg) = post(
        &c,
        &url,
        ("multipart/related; boundary=b".into(), b"garbage".to_vec()),
        None,
    )
    .await;
    assert_eq!(http, 500);
    let Some(Message::Fault(f)) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(f.status.map(|s| s.code), Some(2007));
    let cancel = sluice_protocols::mm7::rs::encode_cancel_req(
        REL_6_MM7_1_4,
        "c1",
        &sluice_protocols::mm7::rs::CancelReq {
            vaspid: "v".into(),
            vasid: "s".into(),
            sender_address: None,
            message_id: "m".into(),
        },
    );
    let built = mime::build_related(
        "b1",
        "text/xml",
        &[Part::new(
            "text/xml",
            TransferEncoding::EightBit,
            cancel.into_bytes(),
        )],
    )
    .unwrap();
    let (http, msg) = post(&c, &url, (built.content_type, built.body), None).await;
    assert_eq!(http, 500);
    let Some(Message::Fault(f)) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(f.status.map(|s| s.code), Some(4003));
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_both_ways() {
    let vasp = Arc::new(Vasp {
        // base64("mmsc:out")
        auth: Some("Basic bW1zYzpvdXQ=".into()),
        ..Vasp::default()
    });
    let vasp_addr = start_vasp(vasp.clone()).await;
    let (h, url) = start_sim(mmsc(
        Some(vasp_addr),
        Mm7Config {
            auth: Some(BasicAuth {
                user: "vasp".into(),
                password: "in".into(),
            }),
            vasp_auth: Some(BasicAuth {
                user: "mmsc".into(),
                password: "out".into(),
            }),
            ..Mm7Config::default()
        },
    ))
    .await;
    let c = client();
    let req = submit_req("tx-auth", &["8613800138040"]);
    let (code, _) = post(&c, &url, body(REL_6_MM7_1_4, &req, "x"), None).await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &c,
        &url,
        body(REL_6_MM7_1_4, &req, "x"),
        Some(("vasp", "wrong")),
    )
    .await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &c,
        &url,
        body(REL_6_MM7_1_4, &req, "x"),
        Some(("vasp", "in")),
    )
    .await;
    assert_eq!(code, 200);
    let t = until(&h, "the report accepted by the authenticating VASP", |t| {
        t.deliver_resps_received == 1
    })
    .await;
    assert_eq!(t.rejected.get("http:401"), Some(&2));
    assert_eq!(t.resent, 0);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_target_mm7_counts_agree_with_the_mmsc() {
    let report = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (h, url) = start_sim(ListenerConfig {
        dlr: DlrConfig {
            mix: [("DELIVRD".to_owned(), 0.75), ("EXPIRED".to_owned(), 0.25)].into(),
            ..DlrConfig::default()
        },
        errors: ErrorConfig {
            temporary: 0.1,
            ..ErrorConfig::default()
        },
        ..mmsc(Some(report), Mm7Config::default())
    })
    .await;
    let n = 120;
    let cfg = LoadConfig {
        target: Target::Mm7(Mm7Target {
            url,
            vaspid: "901234".into(),
            vasid: "10690001".into(),
            service_code: "MMS".into(),
            namespace: REL_6_MM7_1_4.into(),
            content_bytes: 2048,
            user: None,
            password: None,
            report_listen: report.to_string(),
        }),
        connections: 1,
        window: 8,
        count: Some(n),
        payload: PayloadConfig {
            run: "mm7".into(),
            ..PayloadConfig::default()
        },
        dlr: true,
        dlr_wait: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        ..LoadConfig::default()
    };
    let s = sluice_loadtest::load::run(cfg).await.unwrap();
    let t = h.shutdown().await.unwrap();
    assert_eq!(s.messages_accepted, n, "{s}");
    assert_eq!(s.messages_failed, 0, "{s}");
    // Temporary errors (3001) are resubmitted; every SubmitReq reached the MMSC.
    assert_eq!(s.submits_sent, t.submits_received, "{s}\n{t:?}");
    assert_eq!(
        s.resubmits,
        t.rejected.get("mm7:3001").copied().unwrap_or(0)
    );
    assert_eq!((t.unique_messages, t.duplicates), (n, 0), "{t:?}");
    assert_eq!(s.dlr.matched, n, "{s}");
    assert_eq!(t.dlrs_sent, n);
    assert_eq!(s.dlr.by_stat.values().sum::<u64>(), n);
    assert!(
        s.dlr
            .by_stat
            .keys()
            .all(|k| k == "Retrieved" || k == "Expired"),
        "{s}"
    );
    assert!(t.content_bytes >= n * 2048);
}
