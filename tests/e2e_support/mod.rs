//! Shared helpers for the end-to-end and crash tests: a config pointing at an external
//! simulator, a tiny webhook receiver, and bounded polling for socket-driven outcomes.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use sluice_campaign::signature::{self, WebhookSecret};

/// The process's metrics recorder, installed by the first call. nextest runs each test in its
/// own process, so a test sees only its own counts (the tests need that: see
/// `tests/integration.rs`).
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| sluice::metrics::install().expect("metrics recorder"))
        .clone()
}

/// The development API key of the test configs.
pub const KEY: &str = "e2e-test-key";

/// The account's `webhook_secret` in the test configs: every receiver here refuses (401) a
/// webhook whose signature does not verify with it, so every e2e test checks the signing.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret-0123456789";

/// The JSON body of a webhook whose `X-Sluice-Signature` verifies with [`WEBHOOK_SECRET`]
/// at the current time; `None` for an unsigned, forged, stale or non-JSON request.
pub fn verified(headers: &axum::http::HeaderMap, body: &[u8]) -> Option<Value> {
    let secret = WebhookSecret::new(WEBHOOK_SECRET).expect("test secret");
    let now = jiff::Timestamp::now().as_second();
    let header = headers.get(signature::HEADER).map(|h| h.as_bytes());
    signature::verify(&secret, header, body, now).ok()?;
    serde_json::from_slice(body).ok()
}

/// A gateway config (TOML text) whose one account posts receipts and replies to `hook` and
/// whose channel "sim" points at `sim_port`.
pub fn config_text(
    data: &std::path::Path,
    sim_port: u16,
    hook: &str,
    extra_channel: &str,
) -> String {
    let hash = sluice::config::hash_api_key(KEY);
    format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
api_keys = ["{hash}"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
webhook_url = "{hook}/receipts"
mo_url = "{hook}/mo"
webhook_secret = "{WEBHOOK_SECRET}"
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {sim_port}
system_id = "sluice"
password = "sim"
binds = 2
window = 64
rate = 100000
burst = 1000
response_timeout_ms = 2000
{extra_channel}
[[routes]]
channel = "sim"
"#,
        data = data.display()
    )
}

/// The `[[channels]]` table of an SMPP channel "sim" to a simulator on 127.0.0.1:`sim_port`
/// (1 bind, window 64) and the route that sends everything to it.
pub fn sim_channel(sim_port: u16) -> String {
    format!(
        r#"[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {sim_port}
system_id = "sluice"
password = "sim"
binds = 1
window = 64
rate = 100000
burst = 1000
response_timeout_ms = 2000
[[routes]]
channel = "sim"
"#
    )
}

/// Collects POSTed JSON bodies by path; answers 500 to the first `fail_first` requests.
#[derive(Clone, Default)]
pub struct Hook {
    pub receipts: Arc<Mutex<Vec<Value>>>,
    pub mo: Arc<Mutex<Vec<Value>>>,
    pub fail_first: Arc<Mutex<usize>>,
    pub attempts: Arc<Mutex<usize>>,
}

impl Hook {
    /// The message ids of the receipts received so far (each once).
    pub fn receipt_ids(&self) -> std::collections::HashSet<String> {
        self.receipts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The message ids of an accepted batch's answer (`results[].id`), in order (`Vec`) or as a
/// set.
pub fn accepted_ids<C: FromIterator<String>>(body: &Value) -> C {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn on_receipt(
    State(h): State<Hook>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let Some(body) = verified(&headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    *h.attempts.lock().unwrap() += 1;
    {
        let mut f = h.fail_first.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    h.receipts.lock().unwrap().push(body);
    StatusCode::OK
}

async fn on_mo(
    State(h): State<Hook>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let Some(body) = verified(&headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    h.mo.lock().unwrap().push(body);
    StatusCode::OK
}

/// Starts the receiver on 127.0.0.1:0; returns its base URL.
pub async fn start_hook(hook: Hook) -> String {
    let app = axum::Router::new()
        .route("/receipts", axum::routing::post(on_receipt))
        .route("/mo", axum::routing::post(on_mo))
        .with_state(hook);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hook");
    let addr: SocketAddr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

/// A webhook receiver that can be "down" (503 to everything) and counts what it saw; serve it
/// over http with [`serve_http`] (tests/webhooks.rs also serves it over https).
#[derive(Clone, Default)]
pub struct Receiver {
    pub up: Arc<AtomicBool>,
    pub receipts: Arc<Mutex<Vec<Value>>>,
    pub mo: Arc<Mutex<Vec<Value>>>,
    /// Requests answered 503 while down, per path.
    pub refused_receipts: Arc<AtomicUsize>,
    pub refused_mo: Arc<AtomicUsize>,
    /// TLS handshakes that failed (e.g. the client did not trust our certificate).
    pub failed_handshakes: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn new(up: bool) -> Self {
        let r = Self::default();
        r.up.store(up, Ordering::SeqCst);
        r
    }

    pub fn mo(&self) -> Vec<Value> {
        self.mo.lock().unwrap().clone()
    }

    pub fn receipts(&self) -> Vec<Value> {
        self.receipts.lock().unwrap().clone()
    }

    /// `/receipts` and `/mo`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/receipts", axum::routing::post(receiver_receipt))
            .route("/mo", axum::routing::post(receiver_mo))
            .with_state(self.clone())
    }
}

async fn receiver_receipt(
    State(r): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let Some(body) = verified(&headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    if !r.up.load(Ordering::SeqCst) {
        r.refused_receipts.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.receipts.lock().unwrap().push(body);
    StatusCode::OK
}

async fn receiver_mo(
    State(r): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let Some(body) = verified(&headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    if !r.up.load(Ordering::SeqCst) {
        r.refused_mo.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.mo.lock().unwrap().push(body);
    StatusCode::OK
}

/// Serves `r` over plain http on 127.0.0.1:0; returns the base URL.
pub async fn serve_http(r: &Receiver) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let app = r.router();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

/// Polls `cond` every 20 ms until it holds or `limit` passes (socket-driven outcomes only).
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A simulator listener config with the gateway's credentials.
pub fn sim_listener() -> sluice_loadtest::ListenerConfig {
    sluice_loadtest::ListenerConfig {
        name: "sim".into(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..sluice_loadtest::ListenerConfig::default()
    }
}

/// POSTs a JSON batch; returns (status, body).
pub async fn post(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A GET (`method` "GET") or POST to `base` + `path`, with `key` as bearer and `body` as
/// JSON; returns (status, body as JSON or null).
pub async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Sends the logs of the code under test to the test's output, filtered by `RUST_LOG`; the
/// first call in a test binary wins.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A simulator with the one `listener`; `seed` fixes its random choices (`None`: entropy).
pub async fn start_sim(
    listener: sluice_loadtest::ListenerConfig,
    seed: Option<u64>,
) -> sluice_loadtest::SimHandle {
    sluice_loadtest::Simulator::start(sluice_loadtest::SimConfig {
        listeners: vec![listener],
        seed,
        ..sluice_loadtest::SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// A `sluice serve` child process (the test binary's own build).
pub struct Server {
    child: Child,
}

impl Server {
    /// The process id (to read its `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn spawn(config: &std::path::Path, log: &std::path::Path) -> Self {
        Self::spawn_draining(config, log, 1)
    }

    pub fn spawn_draining(
        config: &std::path::Path,
        log: &std::path::Path,
        drain_secs: u32,
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--drain-secs", &drain_secs.to_string(), "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn sluice serve");
        Self { child }
    }

    /// SIGTERM and wait for the drain to finish; returns whether it exited with success.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().is_ok_and(|s| s.success())
    }

    pub fn kill9(mut self) {
        // std's kill() sends SIGKILL on Unix: no drain, no flush.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `base`/healthz answers 2xx (panics after 10 s).
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway did not come up at {base}");
}

/// A port free at the time of asking (for configs that need the port before the bind).
/// The sum of the samples of metric `name` (exactly that name, any labels) whose labels
/// contain `labels` ("" for all), in Prometheus exposition text; 0 when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
