//! The MM7 channel's "binds": `window` request tasks sharing one pooled HTTP/1.1 client
//! (keep-alive connections to the MMSC), each pulling recipients from the worker's part queue,
//! POSTing one SubmitReq at a time and reporting one outcome per recipient.
//!
//! - A task takes the next queued recipient, then — when `max_recipients > 1` — every
//!   recipient *already queued* behind it with the same content and sender, up to the
//!   maximum, into one SubmitReq with several `To` (it never waits for more). A recipient
//!   that cannot join is kept for the task's next request.
//! - Each recipient's outcome is the request's answer ([`super::classify`]) with its own
//!   center id ([`super::submit::center_id`]); a request that got no answer is reported
//!   `Timeout` (no answer in `timeout`) or `Aborted` (connect / send / read failed), which the
//!   worker re-sends and eventually retries through the store.
//! - Up / down: a task reports itself up when it starts. After `down_after` transport errors
//!   in a row it reports itself down and stops taking recipients; it comes back up once a TCP
//!   connection to the MMSC opens again (tried with jittered exponential backoff). Any HTTP
//!   answer, whatever its status, proves the MMSC reachable and resets the count.
//! - Shutdown: a task finishes the request it is in, hands a kept recipient back as
//!   `Aborted`, and exits; the worker settles what it still holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::counter;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use sluice_protocols::mm7::mime::MimeError;
use sluice_protocols::mm7::soap::Message;
use tracing::{Instrument, debug, info, info_span, warn};

use super::body;
use super::classify::HTTP_BASE;
use super::config::Mm7ChannelConfig;
use super::submit::{self, Submit};
use crate::channel::egress::{BindReport, PartJob, PartOutcome, WorkerLinks};
use crate::metrics::{CHANNEL_BINDS_DOWN, CHANNEL_BINDS_UP, CHANNEL_SUBMITS};

/// Largest answer body read from the MMSC (a SubmitRsp is a few hundred bytes).
const MAX_ANSWER: usize = 1 << 20;

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// rustls refused the TLS set-up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest refused the client set-up.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The channel's HTTP client: HTTP/1.1 only (MMSCs speak it; keep-alive connections are
/// pooled, up to `window` idle ones), the process's one rustls provider (ring) with the
/// channel's `ca_file` roots (`ca_roots`), or the bundled web PKI roots without one, the
/// request timeout of the channel.
///
/// # Errors
/// [`ClientError`] when TLS or the client cannot be set up.
pub fn http_client(
    window: usize,
    timeout: Duration,
    ca_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<reqwest::Client, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for c in ca_roots {
            roots.add(c.clone())?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(window)
        .timeout(timeout)
        .tls_backend_preconfigured(tls)
        .build()?)
}

/// What one request task shares with the others.
#[derive(Debug)]
pub struct Shared {
    /// The channel.
    pub config: Mm7ChannelConfig,
    /// The pooled client.
    pub client: reqwest::Client,
}

/// How a request ended.
enum Answer {
    /// An HTTP answer: the status ([`super::classify`]'s ranges) and the MessageID, if any.
    Status { status: u32, message_id: String },
    /// No answer in time.
    Timeout(String),
    /// No answer at all (connect, send or read failed).
    Failed(String),
}

/// Runs request task `index` until shutdown or until the worker closes the part queue.
pub async fn run(shared: Arc<Shared>, index: usize, links: WorkerLinks<Submit>) {
    let span = info_span!("mm7", channel = %shared.config.name, task = index);
    async move {
        let labels = [
            ("channel", shared.config.name.to_string()),
            ("bind", index.to_string()),
        ];
        let submits = counter!(CHANNEL_SUBMITS, "channel" => shared.config.name.to_string());
        let mut shutdown = links.shutdown.clone();
        let mut kept: Option<PartJob<Submit>> = None;
        let mut failures: u32 = 0;
        let mut transaction: u64 = 0;
        counter!(CHANNEL_BINDS_UP, &labels).increment(1);
        let _ = links
            .reports
            .send(BindReport::Up {
                bind: index,
                sends: true,
            })
            .await;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let first = match kept.take() {
                Some(job) => job,
                None => {
                    let next = tokio::select! {
                        job = async { links.parts.lock().await.recv().await } => job,
                        _ = shutdown.wait_for(|s| *s) => break,
                    };
                    match next {
                        Some(job) => job,
                        // The worker dropped the queue: the channel is stopping.
                        None => break,
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < shared.config.max_recipients {
                let next = match links.parts.try_lock() {
                    Ok(mut q) => q.try_recv().ok(),
                    Err(_) => None,
                };
                match next {
                    Some(job) if job.body.joins(&batch[0].body) => batch.push(job),
                    Some(job) => {
                        kept = Some(job);
                        break;
                    }
                    None => break,
                }
            }
            transaction = transaction.wrapping_add(1);
            let transaction_id = format!("{}-{index}-{transaction}", batch[0].tag.id);
            let sent_at = Instant::now();
            submits.increment(batch.len() as u64);
            let answer = send(&shared, &transaction_id, &batch).await;
            let at = Instant::now();
            // `Ok` = an HTTP answer for every recipient; `Err` = no answer, the same outcome
            // for each.
            let answered = match answer {
                Answer::Status { status, message_id } => Ok((status, message_id)),
                Answer::Timeout(reason) => {
                    debug!(%reason, "SubmitReq timed out.");
                    Err(PartOutcome::Timeout)
                }
                Answer::Failed(reason) => {
                    debug!(%reason, "SubmitReq failed.");
                    Err(PartOutcome::Aborted)
                }
            };
            for job in &batch {
                let outcome = match &answered {
                    Ok((status, message_id)) => PartOutcome::Response {
                        status: *status,
                        center_id: submit::center_id(message_id, &job.body.to).into(),
                    },
                    Err(o) => o.clone(),
                };
                let _ = links
                    .reports
                    .send(BindReport::Outcome {
                        bind: index,
                        tag: job.tag,
                        outcome,
                        sent_at,
                        at,
                    })
                    .await;
            }
            let transport = answered.is_err();
            if !transport {
                failures = 0;
                continue;
            }
            failures = failures.saturating_add(1);
            if failures < shared.config.down_after {
                continue;
            }
            // Down: stop taking recipients until the MMSC accepts a connection again.
            counter!(CHANNEL_BINDS_DOWN, &labels).increment(1);
            let _ = links
                .reports
                .send(BindReport::Down {
                    bind: index,
                    reason: format!("{failures} transport errors in a row"),
                })
                .await;
            if let Some(job) = kept.take() {
                abort(&links, index, job).await;
            }
            warn!(failures, "MMSC unreachable; request task down.");
            loop {
                let delay = shared.config.reconnect.delay_random(failures);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                if reachable(&shared.config.url, shared.config.timeout).await {
                    info!("MMSC reachable again; request task up.");
                    failures = 0;
                    counter!(CHANNEL_BINDS_UP, &labels).increment(1);
                    let _ = links
                        .reports
                        .send(BindReport::Up {
                            bind: index,
                            sends: true,
                        })
                        .await;
                    break;
                }
                failures = failures.saturating_add(1);
            }
        }
        if let Some(job) = kept.take() {
            abort(&links, index, job).await;
        }
    }
    .instrument(span)
    .await;
}

/// Hands a recipient the task took but never sent back to the worker.
async fn abort(links: &WorkerLinks<Submit>, index: usize, job: PartJob<Submit>) {
    let now = Instant::now();
    let _ = links
        .reports
        .send(BindReport::Outcome {
            bind: index,
            tag: job.tag,
            outcome: PartOutcome::Aborted,
            sent_at: now,
            at: now,
        })
        .await;
}

/// Whether a TCP connection to the MMSC opens (the "reconnect" of a task that went down).
async fn reachable(url: &reqwest::Url, timeout: Duration) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// Encodes and POSTs one SubmitReq; reads and decodes the answer.
async fn send(shared: &Shared, transaction_id: &str, batch: &[PartJob<Submit>]) -> Answer {
    let c = &shared.config;
    let submits: Vec<&Submit> = batch.iter().map(|j| &*j.body).collect();
    let mut request = None;
    // A random boundary cannot occur in the content but by chance; pick again if it does.
    for _ in 0..4 {
        let boundary = format!("sluice-mm7-{:032x}", rand::random::<u128>());
        match submit::encode(&c.submit, transaction_id, &boundary, &submits) {
            Ok(r) => {
                request = Some(r);
                break;
            }
            Err(MimeError::BoundaryInBody) => {}
            Err(e) => return Answer::Failed(format!("request does not encode: {e}")),
        }
    }
    let Some(request) = request else {
        return Answer::Failed("no boundary found outside the content".into());
    };
    let Ok(content_type) = HeaderValue::from_str(&request.content_type) else {
        return Answer::Failed("content type is not a header value".into());
    };
    let mut post = shared
        .client
        .post(c.url.clone())
        .header(CONTENT_TYPE, content_type)
        .header("SOAPAction", "\"\"")
        .body(request.body);
    if let Some((user, password)) = &c.auth {
        post = post.basic_auth(user, password.as_deref());
    }
    let mut response = match post.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Answer::Timeout(e.to_string()),
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let http = u32::from(response.status().as_u16());
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut answer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if answer.len() + chunk.len() > MAX_ANSWER {
                    break;
                }
                answer.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Answer::Timeout(e.to_string()),
            Err(e) => return Answer::Failed(e.to_string()),
        }
    }
    let (status, message_id) = read_answer(http, content_type.as_deref(), &answer);
    Answer::Status { status, message_id }
}

/// The status and MessageID of an MMSC's answer (see [`super::classify`] for the ranges).
fn read_answer(http: u32, content_type: Option<&str>, body: &[u8]) -> (u32, String) {
    // Flow control is said by the HTTP status, whatever the body.
    if matches!(http, 429 | 503) {
        return (HTTP_BASE + http, String::new());
    }
    let decoded = match body::decode(content_type, body) {
        Ok(d) => d,
        Err(e) => {
            debug!(http, error = %e, "Answer without an MM7 envelope.");
            return (HTTP_BASE + http, String::new());
        }
    };
    match decoded.envelope.message {
        Message::SubmitRsp(rsp) => (
            u32::from(rsp.status.code),
            rsp.message_id.unwrap_or_default(),
        ),
        Message::RsErrorRsp(st) | Message::VaspErrorRsp(st) => (u32::from(st.code), String::new()),
        Message::Fault(f) => match f.status {
            Some(st) => (u32::from(st.code), String::new()),
            // SOAP 1.1: a Client fault means the request is wrong, a Server fault that the
            // server failed; without MM7 detail they count as 2000 and 3000.
            None if f.code.ends_with("Client") => (2000, String::new()),
            None => (3000, String::new()),
        },
        _ => (HTTP_BASE + http, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_statuses() {
        let ns = sluice_protocols::mm7::soap::REL_6_MM7_1_4;
        let rsp = format!(
            "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body>\
             <SubmitRsp xmlns=\"{ns}\"><MM7Version>6.8.0</MM7Version><Status><StatusCode>1000</StatusCode></Status>\
             <MessageID>abc</MessageID></SubmitRsp></env:Body></env:Envelope>"
        );
        assert_eq!(
            read_answer(200, Some("text/xml"), rsp.as_bytes()),
            (1000, "abc".into())
        );
        assert_eq!(
            read_answer(503, Some("text/xml"), rsp.as_bytes()),
            (HTTP_BASE + 503, String::new())
        );
        assert_eq!(
            read_answer(500, None, b"<html>oops</html>"),
            (HTTP_BASE + 500, String::new())
        );
        let fault = "<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body>\
                     <env:Fault><faultcode>env:Client</faultcode><faultstring>bad</faultstring></env:Fault>\
                     </env:Body></env:Envelope>";
        assert_eq!(
            read_answer(500, Some("text/xml"), fault.as_bytes()),
            (2000, String::new())
        );
    }
}
