//! HTTP load: sluice's batch API (`POST /v1/messages`, docs/http-api.md) and Kannel's
//! `GET /cgi-bin/sendsms`. Each worker keeps one request in flight; concurrency is the
//! number of workers. HTTP messages are single units (the server splits), so a message is
//! one "part" in the shared bookkeeping. 429 / 503 / network errors are resubmitted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::report::new_histogram;
use super::{Claim, PartRef, Shared};
use crate::tally::lock;

pub(crate) fn client() -> reqwest::Result<reqwest::Client> {
    // reqwest is built with `rustls-no-provider` (workspace Cargo.toml): building a client
    // panics unless a rustls provider is installed. Installing ring again is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()
}

#[derive(Serialize)]
struct OutMessage {
    to: String,
    from: String,
    text: String,
    client_ref: String,
}

#[derive(Serialize)]
struct Batch {
    messages: Vec<OutMessage>,
}

/// Claims up to `n` messages (rate-limited), as single-part units.
pub(crate) async fn claim_batch(s: &Shared, n: usize) -> Vec<PartRef> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Some(b) = &s.rate {
            let got = lock(b).take_up_to(1, Instant::now());
            if got == 0 {
                if out.is_empty() {
                    let w = lock(b).wait_time().max(Duration::from_micros(500));
                    tokio::time::sleep(w).await;
                    continue;
                }
                break;
            }
        }
        match s.claim() {
            Some(Claim::Retry(p)) => out.push(p),
            Some(Claim::New(i)) => {
                s.started_parts(i, 1);
                out.push(PartRef {
                    msg: i,
                    part: 0,
                    total: 1,
                });
            }
            None => break,
        }
    }
    out
}

fn requeue_all(s: &Shared, parts: &[PartRef]) {
    for p in parts {
        s.requeue(*p);
    }
}

/// One worker against sluice's HTTP API.
pub(crate) async fn run_sluice(
    s: Arc<Shared>,
    client: reqwest::Client,
    url: String,
    api_key: String,
    batch: usize,
) {
    let mut hist = new_histogram();
    loop {
        let parts = claim_batch(&s, batch).await;
        if parts.is_empty() {
            if s.finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let p = &s.cfg.payload;
        let body = Batch {
            messages: parts
                .iter()
                .map(|x| OutMessage {
                    to: format!("+{}", p.dest(x.msg)),
                    from: p.source.clone(),
                    text: p.text(x.msg),
                    client_ref: format!("{}-{}", p.run, x.msg),
                })
                .collect(),
        };
        s.c.submits_sent
            .fetch_add(parts.len() as u64, Ordering::Relaxed);
        let t0 = Instant::now();
        let res = client
            .post(&url)
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) => {
                let status = r.status().as_u16();
                hist.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                match status {
                    200..=299 => parts.iter().for_each(|x| s.part_accepted(*x)),
                    429 | 503 => {
                        s.count_error(format!("http:{status}"));
                        let wait = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .map_or(Duration::from_millis(100), Duration::from_secs);
                        requeue_all(&s, &parts);
                        tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                    }
                    _ => {
                        s.count_error(format!("http:{status}"));
                        parts.iter().for_each(|x| s.part_failed(*x));
                    }
                }
            }
            Err(e) => {
                s.count_error(format!(
                    "http:{}",
                    if e.is_timeout() { "timeout" } else { "connect" }
                ));
                s.c.disconnects.fetch_add(1, Ordering::Relaxed);
                requeue_all(&s, &parts);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    s.merge_hist(&hist, &new_histogram());
}

/// One worker against Kannel's sendsms (one message per GET). With `dlr_url`, each request
/// asks for a final receipt (`dlr-mask=3`) fetched from that URL.
pub(crate) async fn run_kannel(
    s: Arc<Shared>,
    client: reqwest::Client,
    url: String,
    username: String,
    password: String,
    dlr_url: Option<String>,
) {
    let mut hist = new_histogram();
    let mut failures = 0u32;
    loop {
        let parts = claim_batch(&s, 1).await;
        let Some(x) = parts.first().copied() else {
            if s.finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let p = &s.cfg.payload;
        let (to, text) = (p.dest(x.msg), p.text(x.msg));
        let mut q: Vec<(&str, &str)> = vec![
            ("username", &username),
            ("password", &password),
            ("to", &to),
            ("from", &p.source),
            ("text", &text),
        ];
        if p.ucs2_share > 0.0 {
            q.push(("charset", "UTF-8"));
            q.push(("coding", "2"));
        }
        if let Some(d) = &dlr_url {
            q.push(("dlr-mask", "3"));
            q.push(("dlr-url", d));
        }
        s.c.submits_sent.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        match client.get(&url).query(&q).send().await {
            Ok(r) => {
                failures = 0;
                let status = r.status().as_u16();
                hist.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                match status {
                    200..=299 => s.part_accepted(x),
                    503 => {
                        s.count_error(format!("http:{status}"));
                        s.requeue(x);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => {
                        s.count_error(format!("http:{status}"));
                        s.part_failed(x);
                    }
                }
            }
            Err(_) => {
                failures += 1;
                s.count_error("http:connect".to_owned());
                s.requeue(x);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LoadConfig, Target};

    /// While every worker has a request out, the rate's tokens must wait for them: a worker
    /// coming back finds its next batch, instead of a bucket that dropped it.
    #[tokio::test]
    async fn tokens_wait_while_every_worker_has_a_request_out() {
        let cfg = LoadConfig {
            target: Target::Http {
                url: "http://127.0.0.1:9/v1/messages".into(),
                api_key: "k".into(),
                batch: 100,
            },
            connections: 4,
            rate: 15_000.0,
            count: Some(1_000_000),
            ..LoadConfig::default()
        };
        let s = Shared::new(cfg);
        // The start's full bucket: each worker takes its batch and sends it.
        for _ in 0..4 {
            assert_eq!(claim_batch(&s, 100).await.len(), 100);
        }
        // All four out for 20 ms (300 tokens at 15 k/s): three batches are due by their return.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut back = 0;
        for _ in 0..3 {
            back += claim_batch(&s, 100).await.len();
        }
        assert!(
            back >= 299,
            "{back} messages claimable after 20 ms at 15 k/s"
        );
    }
}
