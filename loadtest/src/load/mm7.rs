//! MM7 load, the VASP side: `window` workers each keep one SubmitReq in flight (HTTP/1.1
//! keep-alive pool) to an MMSC. Message `i` is one recipient (`payload.dest(i)`) and one
//! content: a multipart/related with a text part carrying the run's unique token and an
//! `image/jpeg` part of `content_bytes` bytes (the same bytes for every message, sent as
//! `binary`). SubmitRsp statuses are classified by the protocols crate's
//! `mm7::status::disposition`: accepted, resubmitted (3000/3001/4005/4006, HTTP 503/429,
//! transport errors and timeouts) or failed. With receipts on, a local HTTP listener
//! (`report_listen`) answers the MMSC's DeliveryReportReq / DeliverReq and measures submit →
//! report latency by MessageID.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::http::claim_batch;
use super::report::new_histogram;
use super::{PartRef, Shared};
use crate::tally::lock;
use sluice_protocols::mm7::mime::{self, Part, TransferEncoding};
use sluice_protocols::mm7::soap::{self, Address, Message, Status, SubmitReq};
use sluice_protocols::mm7::status::{Disposition, disposition};

/// What an MM7 run sends and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mm7Target {
    /// The MMSC's MM7 URL.
    pub url: String,
    pub vaspid: String,
    pub vasid: String,
    pub service_code: String,
    /// MM7 namespace of the SubmitReqs.
    pub namespace: String,
    /// Bytes of the image part of every message.
    pub content_bytes: usize,
    /// HTTP basic credentials for the MMSC, if it asks.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Where DeliveryReportReq / DeliverReq are received (the MMSC's `mm7.vasp_url` must
    /// point here); used when the run asks for receipts.
    pub report_listen: String,
}

/// Bytes that look nothing like a MIME boundary: a fixed xorshift stream.
fn image(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The SubmitReq body of message `p.msg` and its Content-Type header value.
fn build(s: &Shared, t: &Mm7Target, img: &[u8], p: PartRef) -> Option<(String, Vec<u8>)> {
    let pl = &s.cfg.payload;
    let tid = format!("{}-{}", pl.run, p.msg);
    let req = SubmitReq {
        transaction_id: tid.clone(),
        vaspid: t.vaspid.clone(),
        vasid: t.vasid.clone(),
        sender_address: Some(Address::ShortCode(pl.source.clone())),
        recipients: vec![Address::Number(pl.dest(p.msg))],
        service_code: Some(t.service_code.clone()),
        linked_id: None,
        delivery_report: Some(s.cfg.dlr),
        subject: Some(format!("{}load {}", pl.text_prefix, p.msg)),
        charged_party: None,
        content_id: format!("{tid}-content"),
    };
    let xml = soap::encode_submit_req(&t.namespace, &req);
    let inner = mime::build_related(
        &format!("{tid}-inner-boundary"),
        "text/plain",
        &[
            Part::new(
                "text/plain; charset=utf-8",
                TransferEncoding::EightBit,
                pl.text(p.msg).into_bytes(),
            )
            .with_content_id(&format!("{tid}-text")),
            Part::new("image/jpeg", TransferEncoding::Binary, img.to_vec())
                .with_content_id(&format!("{tid}-image"))
                .with_content_location("image.jpg"),
        ],
    )
    .ok()?;
    let outer = mime::build_soap_with_content(
        &format!("{tid}-outer-boundary"),
        &format!("{tid}-soap"),
        xml,
        Part::new(&inner.content_type, TransferEncoding::Binary, inner.body)
            .with_content_id(&req.content_id),
    )
    .ok()?;
    Some((outer.content_type, outer.body))
}

/// One worker: one SubmitReq in flight at a time.
pub(crate) async fn run_worker(
    s: Arc<Shared>,
    client: reqwest::Client,
    t: Arc<Mm7Target>,
    img: Arc<Vec<u8>>,
) {
    let mut hist = new_histogram();
    let mut failures = 0u32;
    loop {
        let parts = claim_batch(&s, 1).await;
        let Some(p) = parts.first().copied() else {
            if s.finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let Some((ct, body)) = build(&s, &t, &img, p) else {
            s.count_error("mm7:build".into());
            s.part_failed(p);
            continue;
        };
        let mut rb = client
            .post(&t.url)
            .timeout(s.cfg.response_timeout)
            .header(header::CONTENT_TYPE, ct)
            .header("SOAPAction", "\"\"")
            .body(body);
        if let Some(u) = &t.user {
            rb = rb.basic_auth(u, t.password.as_deref());
        }
        s.c.submits_sent.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let res = rb.send().await;
        let rsp = match res {
            Ok(r) => {
                let code = r.status().as_u16();
                r.bytes().await.map(|b| (code, b))
            }
            Err(e) => Err(e),
        };
        let now = Instant::now();
        match rsp {
            Ok((code, bytes)) => {
                failures = 0;
                s.note_response(now);
                hist.saturating_record((now.duration_since(t0).as_micros() as u64).max(1));
                settle(&s, p, code, &bytes, t0).await;
            }
            Err(e) => {
                if e.is_timeout() {
                    s.c.response_timeouts.fetch_add(1, Ordering::Relaxed);
                    s.count_error("http:timeout".into());
                    s.requeue(p);
                    continue;
                }
                failures += 1;
                s.count_error("http:connect".into());
                s.requeue(p);
                if failures > 50 {
                    s.give_up();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    s.merge_hist(&hist, &new_histogram());
}

/// Books one answered SubmitReq.
async fn settle(s: &Shared, p: PartRef, http: u16, body: &[u8], sent: Instant) {
    let status = match soap::decode(body).map(|e| e.message) {
        Ok(Message::SubmitRsp(r)) => Some((r.status, r.message_id)),
        Ok(Message::RsErrorRsp(st)) => Some((st, None)),
        Ok(Message::Fault(f)) => f.status.map(|st| (st, None)),
        _ => None,
    };
    let Some((Status { code, .. }, message_id)) = status else {
        s.count_error(format!("http:{http}"));
        if matches!(http, 429 | 503) {
            s.requeue(p);
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            s.part_failed(p);
        }
        return;
    };
    match disposition(code) {
        Disposition::Accept => {
            if s.cfg.dlr
                && let Some(id) = message_id
            {
                s.c.dlr_expected.fetch_add(1, Ordering::Relaxed);
                if let Some(at) = s.note_submitted(id.as_bytes(), sent) {
                    s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
                    lock(&s.hist).1.saturating_record(
                        (at.saturating_duration_since(sent).as_micros() as u64).max(1),
                    );
                }
            }
            s.part_accepted(p);
        }
        Disposition::Retry => {
            s.count_error(format!("mm7:{code}"));
            s.requeue(p);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Disposition::Fail => {
            s.count_error(format!("mm7:{code}"));
            s.part_failed(p);
        }
    }
}

/// Binds the report listener and serves it until the returned task is aborted.
pub(crate) async fn report_listener(
    s: Arc<Shared>,
    addr: &str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let sock = tokio::net::TcpListener::bind(addr).await?;
    let local = sock.local_addr()?;
    let app = Router::new().fallback(receive).with_state(s);
    let task = tokio::spawn(async move {
        let _ = axum::serve(sock, app).await;
    });
    Ok((local, task))
}

fn xml(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=\"utf-8\"")],
        body,
    )
        .into_response()
}

/// The VASP's answer to what the MMSC sends.
async fn receive(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml");
    let soap_bytes = if mime::media_type(ct) == "multipart/related" {
        match mime::parse(ct, &body) {
            Ok(mut parts) if !parts.is_empty() => parts.swap_remove(0).body,
            _ => return StatusCode::BAD_REQUEST.into_response(),
        }
    } else {
        body.to_vec()
    };
    let Ok(env) = soap::decode(&soap_bytes) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let ns = env
        .namespace
        .unwrap_or_else(|| soap::REL_6_MM7_1_4.to_owned());
    let tid = env.transaction_id.unwrap_or_default();
    let ok = Status {
        code: 1000,
        text: Some("Success".into()),
    };
    match env.message {
        Message::DeliveryReportReq(r) => {
            if let Some(t0) = s.note_receipt(r.message_id.as_bytes(), &r.mm_status, now) {
                s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
                lock(&s.hist).1.saturating_record(
                    (now.saturating_duration_since(t0).as_micros() as u64).max(1),
                );
            }
            xml(soap::encode_delivery_report_rsp(&ns, &tid, &ok))
        }
        Message::DeliverReq(_) => {
            s.c.mo_received.fetch_add(1, Ordering::Relaxed);
            xml(soap::encode_deliver_rsp(&ns, &tid, &ok, None))
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The shared image of a run.
pub(crate) fn content(t: &Mm7Target) -> Arc<Vec<u8>> {
    Arc::new(image(t.content_bytes))
}
