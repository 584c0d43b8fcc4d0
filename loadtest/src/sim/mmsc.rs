//! The simulated MMSC: an HTTP server speaking MM7 (the RS side of TS 23.140) on a
//! `protocol = "mm7"` listener.
//!
//! A POST carries a SubmitReq, as SOAP inside multipart/related with the content as the part
//! the envelope's `Content href` names. The MMSC checks the envelope and the MIME structure
//! (a malformed one is answered with a SOAP Fault holding an RSErrorRsp, HTTP 500), counts
//! the request and its decoded content bytes, then applies the listener's fault modes in this
//! order: no answer (`mm7.timeout_share`), HTTP 503 (`mm7.http_error_share`), window /
//! throughput overrun (`mm7.throttle_status`), random errors (`errors` → `mm7.permanent_status`
//! / `mm7.temporary_status`). An accepted request gets one MessageID, is tallied once per
//! recipient (To, Cc and Bcc) and answered after `latency` (plus `mm7.slow_delay` for
//! `mm7.slow_share`). Unless the request says `DeliveryReport` false, one DeliveryReportReq
//! per recipient goes to `mm7.vasp_url` after `dlr.delay`, with a state drawn from `dlr.mix`;
//! reply rules (`mo.reply`, matched against the subject and text parts) and the spontaneous
//! MO rate (`mo.rate`) send DeliverReqs with a text part. Both go through [`VaspLink`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::center::{Center, Verdict};
use super::dlr::Stat;
use super::mo::pick_reply;
use crate::config::{BasicAuth, Mm7Config};
use crate::tally::{Piece, Tally};
use sluice_protocols::mm7::mime::{self, Part, TransferEncoding};
use sluice_protocols::mm7::rs::{self, ErrorRsp, RsMessage, Submission};
use sluice_protocols::mm7::soap::{
    self, Address, DeliverReq, DeliveryReportReq, Status, SubmitRsp,
};

/// The MMSC's state shared by every request of one listener.
struct Mmsc {
    center: Arc<Center>,
    vasp: Option<Arc<VaspLink>>,
    /// SubmitReqs being handled now (the listener's `window` applies to it).
    in_flight: AtomicUsize,
    requests: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// Decrements `in_flight` however the request ends (including a client hanging up).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the MMSC on `sock` until shutdown.
pub(crate) async fn serve(
    center: Arc<Center>,
    sock: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &center.cfg.mm7;
    let vasp = cfg.vasp_url.as_ref().and_then(|url| {
        match VaspLink::new(url, cfg, center.tally.clone(), shutdown.clone()) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                tracing::error!(listener = %center.cfg.name, error = %e, "MM7 VASP client");
                None
            }
        }
    });
    let max_body = cfg.max_body;
    let mmsc = Arc::new(Mmsc {
        center: center.clone(),
        vasp: vasp.clone(),
        in_flight: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        shutdown: shutdown.clone(),
    });
    if let Some(v) = &vasp {
        tokio::spawn(spontaneous_mo(center.clone(), v.clone(), shutdown.clone()));
    }
    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(mmsc);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(sock, app).with_graceful_shutdown(stop).await {
        tracing::warn!(listener = %center.cfg.name, error = %e, "MM7 server ended");
    }
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=\"utf-8\""),
        )],
        body,
    )
        .into_response()
}

/// A SOAP Fault for a request the VASP got wrong, with an RSErrorRsp, HTTP 500 (SOAP 1.1
/// §6.2).
fn fault(ns: &str, tid: &str, st: Status) -> Response {
    xml_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        rs::encode_fault(ns, tid, rs::FAULT_CLIENT, "Client", ErrorRsp::Rs, &st),
    )
}

fn status(code: u16, text: &str) -> Status {
    Status {
        code,
        text: Some(text.to_owned()),
    }
}

/// Whether `headers` carry the configured basic credentials.
fn authorized(want: &BasicAuth, headers: &HeaderMap) -> bool {
    use base64::Engine;
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{}:{}", want.user, want.password).as_bytes()
}

/// A request that was read: its namespace and TransactionID, and the submission with its
/// content part.
struct Request {
    ns: String,
    tid: String,
    sub: Submission,
    content: Part,
}

/// A request refused before any fault mode applies: answered with a SOAP Fault.
struct Refused {
    ns: String,
    tid: String,
    status: Status,
}

/// The element name of a decoded message, for error texts.
fn kind_name(m: &RsMessage) -> &'static str {
    use soap::Message as M;
    match m {
        RsMessage::SubmitReq(_) => "SubmitReq",
        RsMessage::ReadReplyReq(_) => "ReadReplyReq",
        RsMessage::ReadReplyRsp(_) => "ReadReplyRsp",
        RsMessage::CancelReq(_) => "CancelReq",
        RsMessage::CancelRsp(_) => "CancelRsp",
        RsMessage::ReplaceReq(_) => "ReplaceReq",
        RsMessage::ReplaceRsp(_) => "ReplaceRsp",
        RsMessage::Other(M::SubmitReq(_)) => "SubmitReq",
        RsMessage::Other(M::SubmitRsp(_)) => "SubmitRsp",
        RsMessage::Other(M::DeliveryReportReq(_)) => "DeliveryReportReq",
        RsMessage::Other(M::DeliverReq(_)) => "DeliverReq",
        RsMessage::Other(M::DeliveryReportRsp(_)) => "DeliveryReportRsp",
        RsMessage::Other(M::DeliverRsp(_)) => "DeliverRsp",
        RsMessage::Other(M::RsErrorRsp(_)) => "RSErrorRsp",
        RsMessage::Other(M::VaspErrorRsp(_)) => "VASPErrorRsp",
        RsMessage::Other(M::Fault(_)) => "Fault",
    }
}

fn read_request(headers: &HeaderMap, body: &[u8]) -> Result<Request, Refused> {
    let mut ns = soap::REL_6_MM7_1_4.to_owned();
    let mut tid = String::new();
    let refuse = |ns: &str, tid: &str, code: u16, why: String| Refused {
        ns: ns.to_owned(),
        tid: tid.to_owned(),
        status: status(code, &why),
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if mime::media_type(ct) != "multipart/related" {
        return Err(refuse(
            &ns,
            &tid,
            2007,
            format!("Content-Type {ct:?} is not multipart/related"),
        ));
    }
    let parts = mime::parse(ct, body).map_err(|e| refuse(&ns, &tid, 2007, format!("MIME: {e}")))?;
    let start = mime::header_param(ct, "start").map(|s| s.trim_matches(['<', '>']).to_owned());
    let soap_part = match &start {
        Some(id) => parts.iter().find(|p| p.content_id.as_deref() == Some(id)),
        None => parts.first(),
    }
    .ok_or_else(|| refuse(&ns, &tid, 2007, "no SOAP part".into()))?;
    let env =
        rs::decode(&soap_part.body).map_err(|e| refuse(&ns, &tid, 2007, format!("SOAP: {e}")))?;
    if let Some(n) = env.namespace.clone() {
        ns = n;
    }
    tid = env.transaction_id.clone().unwrap_or_default();
    let sub = match env.message {
        RsMessage::SubmitReq(s) => s,
        other => {
            let why = format!("{} is not supported by this MMSC", kind_name(&other));
            return Err(refuse(&ns, &tid, 4003, why));
        }
    };
    if sub.all_recipients().next().is_none() {
        return Err(refuse(&ns, &tid, 2002, "no recipient".into()));
    }
    let Some(content) = parts
        .into_iter()
        .find(|p| p.content_id.as_deref() == Some(sub.req.content_id.as_str()))
    else {
        let why = format!("no part with Content-ID <{}>", sub.req.content_id);
        return Err(refuse(&ns, &tid, 4004, why));
    };
    Ok(Request {
        ns,
        tid,
        sub,
        content,
    })
}

/// The leaves of a content part: itself, or its nested parts' leaves.
fn leaves<'p>(p: &'p Part, out: &mut Vec<&'p Part>) {
    if p.nested.is_empty() {
        out.push(p);
    } else {
        for n in &p.nested {
            leaves(n, out);
        }
    }
}

/// What the tally and the reply rules read from a content: its decoded size, its identity
/// digest and its text.
struct ContentFacts {
    bytes: u64,
    digest: [u8; 16],
    text: String,
}

fn content_facts(subject: Option<&str>, content: &Part) -> ContentFacts {
    let mut all = Vec::new();
    leaves(content, &mut all);
    let mut h = Md5::new();
    h.update(subject.unwrap_or("").as_bytes());
    let mut text = subject.unwrap_or("").to_owned();
    let mut bytes = 0u64;
    for leaf in all {
        h.update([0]);
        h.update(mime::media_type(&leaf.content_type).as_bytes());
        h.update([0]);
        h.update(&leaf.body);
        bytes += leaf.body.len() as u64;
        if mime::media_type(&leaf.content_type).starts_with("text/") {
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(&leaf.body));
        }
    }
    ContentFacts {
        bytes,
        digest: h.finalize().into(),
        text,
    }
}

fn address_text(a: &Address) -> &str {
    match a {
        Address::Number(v) | Address::ShortCode(v) | Address::Email(v) => v,
    }
}

/// The MMStatus a receipt state is reported as (TS 23.140 MMStatus enumeration).
pub(crate) fn mm_status(stat: Stat) -> &'static str {
    match stat {
        Stat::Delivrd => "Retrieved",
        Stat::Expired => "Expired",
        Stat::Rejectd => "Rejected",
        Stat::Undeliv => "Unrecognised",
        Stat::Deleted => "DeliveryConditionNotMet",
        Stat::Acceptd => "Deferred",
        Stat::Unknown => "Indeterminate",
    }
}

async fn handle(
    State(m): State<Arc<Mmsc>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let center = &m.center;
    let cfg = &center.cfg.mm7;
    if let Some(want) = &cfg.auth
        && !authorized(want, &headers)
    {
        center.tally.count_rejected("http:401");
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mmsc\""),
            )],
        )
            .into_response();
    }
    let n = m.requests.fetch_add(1, Ordering::Relaxed);
    let mut rng = center.session_rng(n);
    let req = match read_request(&headers, &body) {
        Ok(r) => r,
        Err(r) => {
            center
                .tally
                .count_rejected(&format!("mm7:{}", r.status.code));
            return fault(&r.ns, &r.tid, r.status);
        }
    };
    center.tally.count_submits(1);
    let draw: f64 = rng.random();
    if draw < cfg.timeout_share {
        // No answer: hold the request until the client gives up (or we shut down).
        let mut sd = m.shutdown.clone();
        let _ = sd.wait_for(|stop| *stop).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if draw < cfg.timeout_share + cfg.http_error_share {
        center.tally.count_rejected("http:503");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let outstanding = m.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = InFlight(&m.in_flight);
    let code = match center.judge(outstanding, &mut rng) {
        Verdict::Accept => 1000,
        Verdict::QueueFull | Verdict::Throttled => cfg.throttle_status,
        Verdict::Permanent => cfg.permanent_status,
        Verdict::Temporary => cfg.temporary_status,
    };
    let mut wait = center.cfg.latency.sample(&mut rng);
    if cfg.slow_share > 0.0 && rng.random::<f64>() < cfg.slow_share {
        wait += cfg.slow_delay.sample(&mut rng);
    }
    let rsp = if code == 1000 {
        let mut buf = [0u8; 24];
        let id = String::from_utf8_lossy(center.smpp_message_id(&mut buf)).into_owned();
        accept(&m, &req, &id, &mut rng);
        SubmitRsp {
            status: status(1000, "Success"),
            message_id: Some(id),
        }
    } else {
        center.tally.count_rejected(&format!("mm7:{code}"));
        SubmitRsp {
            status: status(code, "Refused"),
            message_id: None,
        }
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    xml_response(
        StatusCode::OK,
        rs::encode_submit_rsp(&req.ns, &req.tid, &rsp),
    )
}

/// Tallies an accepted submission and schedules its reports and reply MOs.
fn accept(m: &Mmsc, req: &Request, message_id: &str, rng: &mut SmallRng) {
    let center = &m.center;
    let facts = content_facts(req.sub.req.subject.as_deref(), &req.content);
    center
        .tally
        .content_bytes
        .fetch_add(facts.bytes, Ordering::Relaxed);
    let sender = req
        .sub
        .req
        .sender_address
        .clone()
        .unwrap_or_else(|| Address::ShortCode(center.cfg.mo.to.clone()));
    for to in req.sub.all_recipients() {
        center.tally.record(Piece {
            source: address_text(&sender).as_bytes(),
            dest: address_text(to).as_bytes(),
            payload: &facts.digest,
            concat: None,
            udh: &[],
            eight_bit: false,
        });
        let Some(vasp) = &m.vasp else { continue };
        if req.sub.req.delivery_report != Some(false) {
            let stat = center.draw_stat(rng);
            let report = DeliveryReportReq {
                message_id: message_id.to_owned(),
                recipient: Some(to.clone()),
                sender: Some(sender.clone()),
                date: None,
                mm_status: mm_status(stat).to_owned(),
                status_text: Some(stat.as_str().to_owned()),
            };
            vasp.clone()
                .send_report(center.cfg.dlr.delay.sample(rng), report);
        }
        if let Some(rule) = pick_reply(&center.cfg.mo.reply, &facts.text, rng) {
            let mo = DeliverReq {
                linked_id: Some(message_id.to_owned()),
                sender: Some(to.clone()),
                recipients: vec![sender.clone()],
                subject: req.sub.req.subject.as_ref().map(|s| format!("Re: {s}")),
                content_id: None,
            };
            center.tally.mo_scheduled.fetch_add(1, Ordering::Relaxed);
            vasp.clone()
                .send_mo(rule.delay.sample(rng), mo, rule.text.clone());
        }
    }
}

/// Spontaneous MOs at `mo.rate` per second (handset `mo.from_prefix`+digits → `mo.to`).
async fn spontaneous_mo(
    center: Arc<Center>,
    vasp: Arc<VaspLink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mo = &center.cfg.mo;
    if mo.rate <= 0.0 || mo.texts.is_empty() {
        return;
    }
    let mut rng = center.session_rng(u64::MAX);
    let mut tick = tokio::time::interval(Duration::from_secs_f64((1.0 / mo.rate).max(0.01)));
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * mo.rate) as u64;
        while sent < due {
            sent += 1;
            let text = mo.texts[rng.random_range(0..mo.texts.len())].clone();
            let from = format!("{}{:06}", mo.from_prefix, rng.random_range(0..1_000_000u32));
            let req = DeliverReq {
                linked_id: None,
                sender: Some(Address::Number(from)),
                recipients: vec![Address::ShortCode(mo.to.clone())],
                subject: None,
                content_id: None,
            };
            center.tally.mo_scheduled.fetch_add(1, Ordering::Relaxed);
            vasp.clone().send_mo(Duration::ZERO, req, text);
        }
    }
}

/// The MMSC's client toward the VASP: DeliveryReportReq and DeliverReq, each resent until
/// answered with a success status (or `max_attempts`), at most `concurrency` at once.
pub(crate) struct VaspLink {
    client: reqwest::Client,
    url: String,
    auth: Option<BasicAuth>,
    ns: String,
    permits: Semaphore,
    tally: Arc<Tally>,
    timeout: Duration,
    resend_after: Duration,
    max_attempts: u32,
    next: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// Which request a [`VaspLink`] send carries (for the tally).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Report,
    Mo,
}

impl VaspLink {
    fn new(
        url: &str,
        cfg: &Mm7Config,
        tally: Arc<Tally>,
        shutdown: watch::Receiver<bool>,
    ) -> reqwest::Result<Self> {
        // reqwest is built without a rustls provider (workspace Cargo.toml); install ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(cfg.concurrency)
            .build()?;
        Ok(Self {
            client,
            url: url.to_owned(),
            auth: cfg.vasp_auth.clone(),
            ns: cfg.namespace.clone(),
            permits: Semaphore::new(cfg.concurrency),
            tally,
            timeout: Duration::from_millis(cfg.report_timeout_ms.max(1)),
            resend_after: Duration::from_millis(cfg.resend_after_ms),
            max_attempts: cfg.max_attempts,
            next: AtomicU64::new(1),
            shutdown,
        })
    }

    fn transaction_id(&self) -> String {
        format!("mmsc-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn send_report(self: Arc<Self>, delay: Duration, mut report: DeliveryReportReq) {
        tokio::spawn(async move {
            if !self.pause(delay).await {
                return;
            }
            report.date = Some(
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            );
            let xml = rs::encode_delivery_report_req(&self.ns, &self.transaction_id(), &report);
            self.deliver(
                Kind::Report,
                "text/xml; charset=\"utf-8\"".into(),
                xml.into_bytes(),
            )
            .await;
        });
    }

    fn send_mo(self: Arc<Self>, delay: Duration, mut req: DeliverReq, text: String) {
        tokio::spawn(async move {
            if !self.pause(delay).await {
                return;
            }
            let tid = self.transaction_id();
            let cid = format!("{tid}-content");
            req.content_id = Some(cid.clone());
            let xml = rs::encode_deliver_req(&self.ns, &tid, &req);
            let built = mime::build_soap_with_content(
                &format!("mmsc-{tid}-boundary"),
                &format!("{tid}-soap"),
                xml,
                Part::new(
                    "text/plain; charset=utf-8",
                    TransferEncoding::EightBit,
                    text.into_bytes(),
                )
                .with_content_id(&cid),
            );
            match built {
                Ok(b) => self.deliver(Kind::Mo, b.content_type, b.body).await,
                Err(e) => tracing::warn!(error = %e, "MM7 MO not built"),
            }
        });
    }

    /// Sleeps `d`; false when shut down meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        if d.is_zero() {
            return !*self.shutdown.borrow();
        }
        let mut sd = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = sd.wait_for(|stop| *stop) => false,
        }
    }

    /// POSTs until the VASP answers with a success status.
    async fn deliver(&self, kind: Kind, content_type: String, body: Vec<u8>) {
        let first = match kind {
            Kind::Report => &self.tally.dlrs_sent,
            Kind::Mo => &self.tally.mo_sent,
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let answered = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return;
                };
                if attempt == 1 {
                    first.fetch_add(1, Ordering::Relaxed);
                } else {
                    // One count of resent deliveries for every center kind (`resent`, the MOs
                    // among them in `resent_mo`).
                    self.tally.resent.fetch_add(1, Ordering::Relaxed);
                    if matches!(kind, Kind::Mo) {
                        self.tally.resent_mo.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.attempt(&content_type, &body).await
            };
            if answered {
                self.tally.deliver_resps.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if self.max_attempts > 0 && attempt >= self.max_attempts {
                self.tally.vasp_abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if !self.pause(self.resend_after).await {
                return;
            }
        }
    }

    /// One POST; true when the answer is a DeliveryReportRsp / DeliverRsp with status 1000
    /// (anything else, 1100 included, is not a receipt of the report and it is resent).
    async fn attempt(&self, content_type: &str, body: &[u8]) -> bool {
        let mut rb = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(header::CONTENT_TYPE, content_type)
            .header("SOAPAction", "\"\"")
            .body(body.to_vec());
        if let Some(a) = &self.auth {
            rb = rb.basic_auth(&a.user, Some(&a.password));
        }
        let mut sd = self.shutdown.clone();
        let res = tokio::select! {
            r = rb.send() => r,
            _ = sd.wait_for(|stop| *stop) => return false,
        };
        let Ok(rsp) = res else { return false };
        let Ok(bytes) = rsp.bytes().await else {
            return false;
        };
        match soap::decode(&bytes).map(|e| e.message) {
            Ok(soap::Message::DeliveryReportRsp(st) | soap::Message::DeliverRsp(st)) => {
                st.code == 1000
            }
            _ => false,
        }
    }
}
