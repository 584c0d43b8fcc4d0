//! Event intake + trigger matching, run once (not criterion: one long pass is the figure).
//!
//! Setup: a synthetic city of `SLUICE_BENCH_SUBSCRIBERS` subscribers (default 12 M) in the
//! in-memory table (not persisted: matching reads only the table), 100 running triggers
//! over six event types (conditions on event attributes and subscriber attributes, control
//! shares, cooldowns, priorities and scores; every tenth with a contact cap), and
//! `SLUICE_BENCH_EVENTS` events (default 300 k) for random subscribers.
//!
//! The loop is what `serve` does, in one thread: a batch of `SLUICE_BENCH_BATCH` lines
//! (default 1 000) is parsed and committed durably (file-backed SQLite, WAL,
//! `synchronous=FULL` for the intake), then one matching step runs over it and hands its
//! sends to a dispatcher that answers at once. Reported: events/s (intake + matching), the
//! split between them, and per event the time from its acknowledgement to the hand-over of
//! the batch's messages to the dispatcher (p50 / p99 / max).
//!
//! `cargo bench -p sluice-campaign --bench events`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sluice_campaign::Campaigns;
use sluice_campaign::dispatch::{DispatchError, Dispatched, Dispatcher, OutboundMessage};
use sluice_campaign::events::intake::parse_body;
use sluice_campaign::lifecycle::{self, TaskState};
use sluice_campaign::triggers::{self, TriggerSpec, engine};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Accepts everything at once and remembers when each batch was handed over.
struct Instant0 {
    handed: Mutex<Vec<(Instant, usize)>>,
}

impl Dispatcher for Instant0 {
    async fn dispatch(&self, batch: &[OutboundMessage]) -> Result<Vec<Dispatched>, DispatchError> {
        self.handed
            .lock()
            .unwrap()
            .push((Instant::now(), batch.len()));
        Ok(batch.iter().map(|m| Ok(m.client_ref.clone())).collect())
    }

    async fn cancel_tag(&self, _: &str, _: &str) -> Result<serde_json::Value, DispatchError> {
        Ok(serde_json::Value::Null)
    }
}

const TYPES: [&str; 6] = [
    "roaming_arrival",
    "usage_threshold",
    "balance_low",
    "payment_received",
    "handset_change",
    "churn_risk",
];

fn spec(i: usize) -> TriggerSpec {
    let kind = TYPES[i % TYPES.len()];
    let condition = match kind {
        "roaming_arrival" => format!("attrs.country != \"CN\" and arpu > {}", 20 + i % 40),
        "usage_threshold" => format!(
            "attrs.percent >= {} and brand in [\"gotone\", \"mzone\"]",
            60 + i % 40
        ),
        "balance_low" => format!("attrs.balance < {} and age >= 18", 5 + i % 10),
        "churn_risk" => format!(
            "attrs.score >= 0.{} and not region = \"r{}\"",
            5 + i % 5,
            i % 7
        ),
        _ => format!("arpu >= {}", i % 50),
    };
    serde_json::from_value(serde_json::json!({
        "event_type": kind,
        "condition": condition,
        "template": "Offer {attrs.kind|for you}: {city}",
        "offer": format!("OFFER{i}"),
        "priority": (i % 5) as i32,
        "score_attr": "arpu",
        "cooldown_s": if i.is_multiple_of(3) { 3600 } else { 0 },
        "control_share": 0.1,
        "staleness_s": 86_400,
        "policy": if i.is_multiple_of(10) {
            serde_json::json!({"caps": [{"channel": "sms", "max": 3, "period_days": 1}]})
        } else {
            serde_json::json!({})
        },
    }))
    .unwrap()
}

fn event(seq: u64, msisdn: u64, ts: i64) -> String {
    let kind = TYPES[(seq % 6) as usize];
    serde_json::json!({
        "id": format!("ev{seq}"),
        "msisdn": msisdn.to_string(),
        "type": kind,
        "ts": ts,
        "attrs": {"country": if seq.is_multiple_of(4) { "CN" } else { "TH" }, "percent": seq % 100,
                  "balance": seq % 20, "score": (seq % 10) as f64 / 10.0, "kind": "data"},
    })
    .to_string()
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let subscribers = env("SLUICE_BENCH_SUBSCRIBERS", 12_000_000) as u32;
    let events = env("SLUICE_BENCH_EVENTS", 300_000);
    let batch = env("SLUICE_BENCH_BATCH", 1_000).clamp(1, 10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut c = Campaigns::open(&dir.path().join("bench.db")).unwrap();
    let t = Instant::now();
    c.table = sluice_campaign::synth::generate_city(subscribers, 7);
    eprintln!(
        "table: {subscribers} subscribers in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for i in 0..100 {
        let task = lifecycle::create_task(&c.conn, None, &format!("t{i}"), 0).unwrap();
        c.conn
            .execute(
                "UPDATE tasks SET state = ?1 WHERE id = ?2",
                rusqlite::params![TaskState::Running.as_str(), task],
            )
            .unwrap();
        triggers::create(&c.conn, &c.table, task, &spec(i), None, 0).unwrap();
    }
    let svc = Mutex::new(c);
    let d = Instant0 {
        handed: Mutex::new(Vec::new()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = Timestamp::now();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut intake_t, mut match_t) = (Duration::ZERO, Duration::ZERO);
    let mut lat: Vec<Duration> = Vec::with_capacity(events as usize);
    let (mut sent, mut matched) = (0u64, 0u64);
    let start = Instant::now();
    let mut seq = 0u64;
    while seq < events {
        let n = batch.min(events - seq);
        let mut body = String::with_capacity(n as usize * 200);
        {
            let c = svc.lock().unwrap();
            for _ in 0..n {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let id = (rng % u64::from(subscribers)) as u32;
                body.push_str(&event(seq, c.table.msisdn(id).unwrap(), now.as_second()));
                body.push('\n');
                seq += 1;
            }
        }
        let t0 = Instant::now();
        let rep = {
            let c = svc.lock().unwrap();
            parse_body(body.as_bytes())
                .unwrap()
                .commit(&c.conn, now.as_second())
                .unwrap()
        };
        assert_eq!(rep.accepted, n);
        let acked = Instant::now();
        intake_t += acked - t0;
        d.handed.lock().unwrap().clear();
        let (r, _) = rt.block_on(engine::step(&svc, &d, now, 10_000)).unwrap();
        match_t += acked.elapsed();
        sent += r.sent;
        matched += r.matched;
        let handed = d
            .handed
            .lock()
            .unwrap()
            .first()
            .map_or_else(Instant::now, |h| h.0);
        lat.extend(std::iter::repeat_n(handed - acked, n as usize));
    }
    let total = start.elapsed();
    lat.sort_unstable();
    println!(
        "events: {events} in batches of {batch} over {subscribers} subscribers, 100 triggers: \
         {:.0} events/s ingested + matched ({:.1} s: intake {:.1} s, matching + hand-over {:.1} s); \
         {matched} matches, {sent} sends",
        events as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        intake_t.as_secs_f64(),
        match_t.as_secs_f64(),
    );
    println!(
        "ack → handed to the dispatcher: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}
