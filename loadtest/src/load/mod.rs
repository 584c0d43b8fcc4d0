//! The load generator: drives an SMPP server as an ESME (N binds on the protocols crate's
//! ESME `Session`, window per bind, fixed or max rate), a CMPP 2.0 / 3.0 ISMG as an SP (N
//! connections on the protocols crate's `SpSession`), sluice's HTTP batch API, or Kannel's
//! HTTP sendsms, or an MMSC over MM7 as a VASP (`mm7`), until a message count or a duration is reached, then reports (see
//! [`report::Summary`]).
//!
//! Delivery semantics over SMPP are at-least-once, like the gateway's: a part answered with a
//! throttle, queue-full or temporary error, or left unanswered when a connection drops, is
//! resubmitted (over CMPP: Result 8, flow control, and response timeouts). Parts unanswered at a disconnect are counted (`unacked_at_disconnect`): they
//! are the only possible source of duplicates at the center.

mod cmpp;
mod http;
pub mod mm7;
pub mod payload;
mod progress;
pub mod report;
mod smpp;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::bucket::TokenBucket;
use crate::tally::lock;
pub use payload::{ConcatMode, PayloadConfig};
pub use report::{DlrReport, Latency, Summary};
use sluice_protocols::smpp::{CanonicalId, IdFormat, canonical_id};

/// What to drive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Any SMPP server (the simulator, sluice's SMPP ingress).
    Smpp {
        addr: String,
        system_id: String,
        password: String,
    },
    /// A CMPP ISMG (the simulator's, or a carrier's), as an SP.
    Cmpp {
        addr: String,
        /// SP id (企业代码): CONNECT's Source_Addr and every SUBMIT's Msg_src.
        source_addr: String,
        shared_secret: String,
        version: CmppVersion,
        /// Service_Id of every SUBMIT.
        service_id: String,
        /// Src_Id of every SUBMIT (the SP's service number).
        src_id: String,
        /// Send the UCS-2 share as GBK (Msg_Fmt 15) instead.
        #[serde(default)]
        gbk: bool,
    },
    /// sluice's `POST /v1/messages` (docs/http-api.md), `batch` messages per request.
    Http {
        url: String,
        api_key: String,
        batch: usize,
    },
    /// Kannel's smsbox `GET /cgi-bin/sendsms`, one message per request.
    Kannel {
        url: String,
        username: String,
        password: String,
        /// When set, every request asks for a final delivery receipt (`dlr-mask=3`: delivered
        /// or failed) to be fetched from this URL, so Kannel requests receipts from the SMSC
        /// and correlates them like a gateway with receipts on. `%d` etc. are left to Kannel.
        #[serde(default)]
        dlr_url: Option<String>,
    },
    /// An MMSC over MM7 (the simulator's, or a carrier's), as a VASP: `window` SubmitReqs in
    /// flight, receipts on a listener of our own.
    Mm7(mm7::Mm7Target),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Self::Smpp { addr, .. } => format!("smpp://{addr}"),
            Self::Cmpp { addr, version, .. } => format!("cmpp{}://{addr}", version.label()),
            Self::Http { url, .. } => url.clone(),
            Self::Kannel { url, .. } => format!("kannel {url}"),
            Self::Mm7(t) => format!("mm7 {}", t.url),
        }
    }
}

/// The CMPP version an SP run asks for in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum CmppVersion {
    /// CMPP 2.0 (0x20).
    #[serde(rename = "2.0")]
    #[value(name = "2.0", alias = "20")]
    V20,
    /// CMPP 3.0 (0x30).
    #[default]
    #[serde(rename = "3.0")]
    #[value(name = "3.0", alias = "30")]
    V30,
}

impl CmppVersion {
    /// The protocols crate's version.
    pub fn version(self) -> sluice_protocols::cmpp::Version {
        match self {
            Self::V20 => sluice_protocols::cmpp::Version::V20,
            Self::V30 => sluice_protocols::cmpp::Version::V30,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::V20 => "2",
            Self::V30 => "3",
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadConfig {
    pub target: Target,
    pub connections: usize,
    /// Outstanding submits per connection (SMPP).
    pub window: usize,
    /// Parts (SMPP) or messages (HTTP) per second over all connections; 0 = as fast as possible.
    pub rate: f64,
    /// Stop after this many messages (each may be several parts).
    pub count: Option<u64>,
    /// Stop starting new messages after this long.
    pub duration: Option<Duration>,
    pub payload: PayloadConfig,
    /// Request receipts, bind as transceiver and measure submit → receipt latency.
    pub dlr: bool,
    /// After the last response, wait this long at most for outstanding receipts.
    pub dlr_wait: Duration,
    pub bind_timeout: Duration,
    pub response_timeout: Duration,
    /// Show an indicatif bar (TTY) or log a progress line every few seconds.
    pub progress: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            target: Target::Smpp {
                addr: "127.0.0.1:2775".into(),
                system_id: "sluice".into(),
                password: "secret".into(),
            },
            connections: 2,
            window: 256,
            rate: 0.0,
            count: Some(10_000),
            duration: None,
            payload: PayloadConfig::default(),
            dlr: false,
            dlr_wait: Duration::from_secs(10),
            bind_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            progress: false,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("neither a message count nor a duration was given: the run would never stop")]
    Unbounded,
    #[error("connections and window must be at least 1")]
    ZeroConcurrency,
    #[error("HTTP client: {0}")]
    Http(String),
}

/// One part of one message, as a unit of (re)submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartRef {
    pub(crate) msg: u64,
    pub(crate) part: u8,
    pub(crate) total: u8,
}

/// One connection's feed of parts: the parts of started messages not yet handed to its
/// session, and the parts of the message built last (a message is built once, not once per
/// part). Both generators (SMPP and CMPP) take their work through it.
#[derive(Default)]
pub(crate) struct PartFeed {
    /// Parts of started messages not yet handed to a session.
    pub(crate) local: VecDeque<PartRef>,
    cache: Option<(u64, Vec<payload::Part>)>,
}

impl PartFeed {
    /// The wire part `p` (an empty part for an index the payload does not have).
    pub(crate) fn part(&mut self, s: &Shared, p: PartRef) -> payload::Part {
        if self.cache.as_ref().is_none_or(|(m, _)| *m != p.msg) {
            self.cache = Some((p.msg, s.cfg.payload.parts(p.msg)));
        }
        self.cache
            .as_ref()
            .and_then(|c| c.1.get(p.part as usize))
            .cloned()
            .unwrap_or_else(|| payload::Part {
                dest: String::new(),
                data_coding: 0,
                short_message: Vec::new(),
                udhi: false,
                sar: None,
            })
    }

    /// The next part to send: a started message's next part, a retry, or the first part of
    /// a new message claimed from the run (its other parts are queued here).
    pub(crate) fn next(&mut self, s: &Shared) -> Option<PartRef> {
        if let Some(p) = self.local.pop_front() {
            return Some(p);
        }
        match s.claim()? {
            Claim::Retry(p) => Some(p),
            Claim::New(i) => {
                let parts = s.cfg.payload.parts(i);
                let total = u8::try_from(parts.len()).unwrap_or(u8::MAX);
                s.started_parts(i, total);
                for k in 1..total {
                    self.local.push_back(PartRef {
                        msg: i,
                        part: k,
                        total,
                    });
                }
                self.cache = Some((i, parts));
                Some(PartRef {
                    msg: i,
                    part: 0,
                    total,
                })
            }
        }
    }
}

/// State shared by all connections of a run.
pub(crate) struct Shared {
    pub(crate) cfg: LoadConfig,
    pub(crate) started: Instant,
    deadline: Option<Instant>,
    next: AtomicU64,
    retry: Mutex<VecDeque<PartRef>>,
    /// Parts started and not yet accepted or failed.
    unresolved: AtomicU64,
    stop: AtomicBool,
    remaining_parts: Mutex<HashMap<u64, u8>>,
    pub(crate) rate: Option<Mutex<TokenBucket>>,
    pub(crate) c: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
    dlr_stats: Mutex<BTreeMap<String, u64>>,
    /// Center message id → submit time, for receipts still to come. Ids are compared as
    /// text, case-insensitively (`canonical_id` with `IdFormat::Text`): `Auto` would
    /// confuse hex "10" with hex "A" (= decimal 10) on a center issuing hex ids.
    submitted: Mutex<HashMap<CanonicalId, Instant>>,
    /// Receipts that arrived before their submit response: id → arrival.
    early: Mutex<HashMap<CanonicalId, Instant>>,
    hist: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) messages_started: AtomicU64,
    pub(crate) messages_accepted: AtomicU64,
    pub(crate) messages_failed: AtomicU64,
    pub(crate) submits_sent: AtomicU64,
    pub(crate) parts_accepted: AtomicU64,
    pub(crate) resubmits: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) unacked_at_disconnect: AtomicU64,
    pub(crate) bind_failures: AtomicU64,
    pub(crate) response_timeouts: AtomicU64,
    pub(crate) mo_received: AtomicU64,
    pub(crate) dlr_expected: AtomicU64,
    pub(crate) dlr_received: AtomicU64,
    pub(crate) dlr_matched: AtomicU64,
    pub(crate) dlr_early: AtomicU64,
    /// Submit responses of any result (CMPP; SMPP counts them too).
    pub(crate) responses: AtomicU64,
    /// Microseconds from the start to the last submit response / receipt read.
    pub(crate) last_response_us: AtomicU64,
    pub(crate) last_dlr_us: AtomicU64,
}

/// What a connection should send next.
pub(crate) enum Claim {
    /// Parts to resend.
    Retry(PartRef),
    /// A new message index.
    New(u64),
}

impl Shared {
    fn new(cfg: LoadConfig) -> Self {
        let now = Instant::now();
        // An HTTP worker sends what it claimed in one request and claims nothing while the
        // request is out, so the bucket must hold a batch's worth for every worker: with a
        // 5 ms burst the tokens of every longer request were dropped and `--rate 250` gave
        // ≈ 100 msg/s; with one batch's worth, every moment all workers had a request out
        // dropped tokens too, and `--rate 15000` in batches of 100 over 4 connections gave
        // 12.4 k msg/s against a gateway answering in 10–14 ms (room for 30 k).
        let burst = match &cfg.target {
            Target::Http { batch, .. } => {
                (*batch as f64 * cfg.connections as f64).max(cfg.rate / 200.0)
            }
            _ => cfg.rate / 200.0,
        };
        let rate =
            (cfg.rate > 0.0).then(|| Mutex::new(TokenBucket::new(cfg.rate, burst.max(1.0), now)));
        Self {
            deadline: cfg.duration.map(|d| now + d),
            cfg,
            started: now,
            next: AtomicU64::new(0),
            retry: Mutex::new(VecDeque::new()),
            unresolved: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            remaining_parts: Mutex::new(HashMap::new()),
            rate,
            c: Counters::default(),
            errors: Mutex::new(BTreeMap::new()),
            dlr_stats: Mutex::new(BTreeMap::new()),
            submitted: Mutex::new(HashMap::new()),
            early: Mutex::new(HashMap::new()),
            hist: Mutex::new((report::new_histogram(), report::new_histogram())),
        }
    }

    /// True once no new message may start (count reached, deadline passed or stopped).
    pub(crate) fn sending_closed(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// True when every started part is resolved and nothing more will start.
    pub(crate) fn finished(&self) -> bool {
        let exhausted = self.sending_closed()
            || self
                .cfg
                .count
                .is_some_and(|c| self.next.load(Ordering::Relaxed) >= c);
        exhausted && self.unresolved.load(Ordering::Relaxed) == 0
    }

    /// Next unit of work: a part to retry first, else a new message index.
    pub(crate) fn claim(&self) -> Option<Claim> {
        if let Some(p) = lock(&self.retry).pop_front() {
            return Some(Claim::Retry(p));
        }
        if self.sending_closed() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.cfg.count.is_some_and(|c| i >= c) {
            return None;
        }
        self.c.messages_started.fetch_add(1, Ordering::Relaxed);
        Some(Claim::New(i))
    }

    /// Registers the parts of a newly started message.
    pub(crate) fn started_parts(&self, msg: u64, total: u8) {
        self.unresolved.fetch_add(total as u64, Ordering::Relaxed);
        if total > 1 {
            lock(&self.remaining_parts).insert(msg, total);
        }
    }

    /// The target is not there (too many failed connects in a row): stop the run and forget
    /// what waits for a retry, instead of spinning forever.
    pub(crate) fn give_up(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.retry).clear();
        self.unresolved.store(0, Ordering::Relaxed);
    }

    pub(crate) fn requeue(&self, p: PartRef) {
        self.c.resubmits.fetch_add(1, Ordering::Relaxed);
        lock(&self.retry).push_back(p);
    }

    pub(crate) fn part_accepted(&self, p: PartRef) {
        self.c.parts_accepted.fetch_add(1, Ordering::Relaxed);
        let complete = p.total <= 1 || {
            let mut m = lock(&self.remaining_parts);
            match m.get_mut(&p.msg) {
                Some(r) => {
                    *r -= 1;
                    if *r == 0 {
                        m.remove(&p.msg);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if complete {
            self.c.messages_accepted.fetch_add(1, Ordering::Relaxed);
        }
        self.unresolved.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn part_failed(&self, p: PartRef) {
        if p.total <= 1 || lock(&self.remaining_parts).remove(&p.msg).is_some() {
            self.c.messages_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.unresolved.fetch_sub(1, Ordering::Relaxed);
    }

    /// A submit response (any result) was read at `now`.
    pub(crate) fn note_response(&self, now: Instant) {
        self.c.responses.fetch_add(1, Ordering::Relaxed);
        self.c
            .last_response_us
            .fetch_max(since_us(self.started, now), Ordering::Relaxed);
    }

    pub(crate) fn count_error(&self, key: String) {
        *lock(&self.errors).entry(key).or_insert(0) += 1;
    }

    /// Merges a connection's histograms (submit latency, receipt latency).
    pub(crate) fn merge_hist(&self, submit: &Histogram<u64>, dlr: &Histogram<u64>) {
        let mut h = lock(&self.hist);
        let _ = h.0.add(submit);
        let _ = h.1.add(dlr);
    }

    /// Remembers when `id` was submitted; returns the receipt arrival if the receipt came first.
    pub(crate) fn note_submitted(&self, id: &[u8], sent: Instant) -> Option<Instant> {
        let id = canonical_id(id, IdFormat::Text);
        // Both maps under their locks at once (always `early` first, as `note_receipt`): a
        // receipt checked between our look at `early` and our insert into `submitted` would
        // otherwise land in `early` unseen and never match.
        let mut early = lock(&self.early);
        if let Some(at) = early.remove(&id) {
            self.c.dlr_early.fetch_add(1, Ordering::Relaxed);
            return Some(at);
        }
        lock(&self.submitted).insert(id, sent);
        None
    }

    /// A receipt for `id` arrived at `now`; returns its submit time if known.
    pub(crate) fn note_receipt(&self, id: &[u8], stat: &str, now: Instant) -> Option<Instant> {
        self.c.dlr_received.fetch_add(1, Ordering::Relaxed);
        self.c
            .last_dlr_us
            .fetch_max(since_us(self.started, now), Ordering::Relaxed);
        *lock(&self.dlr_stats).entry(stat.to_owned()).or_insert(0) += 1;
        let id = canonical_id(id, IdFormat::Text);
        let mut early = lock(&self.early);
        let sent = lock(&self.submitted).remove(&id);
        if sent.is_none() {
            early.insert(id, now);
        }
        sent
    }

    pub(crate) fn dlrs_outstanding(&self) -> bool {
        let c = &self.c;
        // Matched, not received: receipts left over from an earlier run on the same account
        // arrive too and must not end the wait early.
        c.dlr_matched.load(Ordering::Relaxed) < c.dlr_expected.load(Ordering::Relaxed)
    }

    fn summary(&self) -> Summary {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let h = lock(&self.hist);
        let early_left = lock(&self.early).len() as u64;
        let c = &self.c;
        let per_s = |n: u64, us: u64| {
            if us > 0 {
                n as f64 / (us as f64 / 1e6)
            } else {
                0.0
            }
        };
        Summary {
            target: self.cfg.target.describe(),
            connections: self.cfg.connections,
            window: self.cfg.window,
            rate: self.cfg.rate,
            elapsed_s: elapsed,
            messages_started: ld(&c.messages_started),
            messages_accepted: ld(&c.messages_accepted),
            messages_failed: ld(&c.messages_failed),
            submits_sent: ld(&c.submits_sent),
            parts_accepted: ld(&c.parts_accepted),
            accepted_per_s: if elapsed > 0.0 {
                ld(&c.parts_accepted) as f64 / elapsed
            } else {
                0.0
            },
            responses: ld(&c.responses),
            responses_per_s: per_s(ld(&c.responses), ld(&c.last_response_us)),
            resubmits: ld(&c.resubmits),
            errors: lock(&self.errors).clone(),
            disconnects: ld(&c.disconnects),
            unacked_at_disconnect: ld(&c.unacked_at_disconnect),
            bind_failures: ld(&c.bind_failures),
            response_timeouts: ld(&c.response_timeouts),
            submit_latency: Latency::from_histogram(&h.0),
            dlr: DlrReport {
                received: ld(&c.dlr_received),
                matched: ld(&c.dlr_matched),
                unmatched: early_left,
                before_response: ld(&c.dlr_early),
                by_stat: lock(&self.dlr_stats).clone(),
                latency: Latency::from_histogram(&h.1),
                per_s: per_s(ld(&c.dlr_received), ld(&c.last_dlr_us)),
            },
            mo_received: ld(&c.mo_received),
        }
    }
}

/// Runs a load test to completion and returns its summary.
pub async fn run(cfg: LoadConfig) -> Result<Summary, LoadError> {
    if cfg.count.is_none() && cfg.duration.is_none() {
        return Err(LoadError::Unbounded);
    }
    if cfg.connections == 0 || cfg.window == 0 {
        return Err(LoadError::ZeroConcurrency);
    }
    let shared = Arc::new(Shared::new(cfg));
    let progress = shared
        .cfg
        .progress
        .then(|| tokio::spawn(progress::run(shared.clone())));
    let mut tasks = tokio::task::JoinSet::new();
    let mut report_task = None;
    match shared.cfg.target.clone() {
        Target::Smpp {
            addr,
            system_id,
            password,
        } => {
            for i in 0..shared.cfg.connections {
                let s = shared.clone();
                let (a, u, p) = (addr.clone(), system_id.clone(), password.clone());
                tasks.spawn(async move { smpp::run_connection(s, i, a, u, p).await });
            }
        }
        Target::Cmpp {
            addr,
            source_addr,
            shared_secret,
            version,
            service_id,
            src_id,
            gbk,
        } => {
            let target = Arc::new(cmpp::CmppTarget {
                addr,
                source_addr,
                shared_secret,
                version,
                service_id,
                src_id,
                gbk,
            });
            for _ in 0..shared.cfg.connections {
                let (s, t) = (shared.clone(), target.clone());
                tasks.spawn(async move { cmpp::run_connection(s, t).await });
            }
        }
        Target::Http {
            url,
            api_key,
            batch,
        } => {
            let client = http::client().map_err(|e| LoadError::Http(e.to_string()))?;
            for _ in 0..shared.cfg.connections {
                let s = shared.clone();
                let (c, u, k) = (client.clone(), url.clone(), api_key.clone());
                tasks.spawn(async move { http::run_sluice(s, c, u, k, batch.max(1)).await });
            }
        }
        Target::Kannel {
            url,
            username,
            password,
            dlr_url,
        } => {
            let client = http::client().map_err(|e| LoadError::Http(e.to_string()))?;
            for _ in 0..shared.cfg.connections {
                let s = shared.clone();
                let (c, u, n, p, d) = (
                    client.clone(),
                    url.clone(),
                    username.clone(),
                    password.clone(),
                    dlr_url.clone(),
                );
                tasks.spawn(async move { http::run_kannel(s, c, u, n, p, d).await });
            }
        }
        Target::Mm7(t) => {
            let client = http::client().map_err(|e| LoadError::Http(e.to_string()))?;
            if shared.cfg.dlr {
                let (_, task) = mm7::report_listener(shared.clone(), &t.report_listen)
                    .await
                    .map_err(|e| {
                        LoadError::Http(format!("report listener {}: {e}", t.report_listen))
                    })?;
                report_task = Some(task);
            }
            let img = mm7::content(&t);
            let t = Arc::new(t);
            for _ in 0..shared.cfg.window {
                let (s, c, t, i) = (shared.clone(), client.clone(), t.clone(), img.clone());
                tasks.spawn(async move { mm7::run_worker(s, c, t, i).await });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    if let Some(task) = report_task {
        // Reports arrive on their own listener: wait for them here, not in a worker.
        let since = Instant::now();
        while shared.dlrs_outstanding() && since.elapsed() < shared.cfg.dlr_wait {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    Ok(shared.summary())
}

/// Microseconds from `start` to `now` (0 if `now` is earlier).
fn since_us(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX)
}
