//! Event intake + trigger matching, run once (not criterion: one long pass is the figure).
//!
//! Setup: a synthetic city of `SLUICE_BENCH_SUBSCRIBERS` subscribers (default 12 M) in the
//! in-memory table (not persisted: matching reads only the table), 100 running triggers
//! over six event types (conditions on event attributes and subscriber attributes, control
//! shares, cooldowns, priorities and scores; every tenth with a contact cap), and
//! `SLUICE_BENCH_EVENTS` events (default 300 k) for random subscribers.
//!
//! Two threads, as in `serve`: the intake thread parses batches of `SLUICE_BENCH_BATCH`
//! lines (default 1 000) and commits each durably (file-backed SQLite, WAL,
//! `synchronous=FULL` for the intake), then wakes the matcher; the matcher thread runs
//! steps (at most 10 000 events each) until it has caught up, handing each step's sends
//! to a dispatcher that answers at once, and waits for the next wake-up. Both share the
//! service lock. `SLUICE_BENCH_RATE` paces the intake (events/s offered; 0, the default,
//! offers as fast as the intake goes — the throughput figure).
//!
//! Reported: events/s (intake + matching: all events ingested and matched, over wall
//! time), the CPU time of the process over that span (user + system, from `/proc`), the
//! load average, and per sent message the time from its event's acknowledgement to its
//! hand-over to the dispatcher (p50 / p99 / max; the event is named by the message's
//! `client_ref`).
//!
//! `cargo bench -p sluice-campaign --bench events`

use std::sync::{Condvar, Mutex};
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

/// Accepts everything at once and remembers when each message was handed over.
struct Instant0 {
    handed: Mutex<Vec<(Instant, Vec<String>)>>,
}

impl Dispatcher for Instant0 {
    async fn dispatch(&self, batch: &[OutboundMessage]) -> Result<Vec<Dispatched>, DispatchError> {
        self.handed.lock().unwrap().push((
            Instant::now(),
            batch.iter().map(|m| m.client_ref.clone()).collect(),
        ));
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

/// User + system CPU seconds of this process so far (`/proc/self/stat`, 100 ticks/s).
fn cpu_s() -> f64 {
    cpu_of("/proc/self/stat")
}

/// The same for the calling thread.
fn thread_cpu_s() -> f64 {
    cpu_of("/proc/thread-self/stat")
}

fn cpu_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After the command: state is field 0, utime 11, stime 12.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let subscribers = env("SLUICE_BENCH_SUBSCRIBERS", 12_000_000) as u32;
    let events = env("SLUICE_BENCH_EVENTS", 300_000);
    let batch = env("SLUICE_BENCH_BATCH", 1_000).clamp(1, 10_000);
    let rate = env("SLUICE_BENCH_RATE", 0);
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
    let msisdns: Vec<u64> = (0..subscribers)
        .map(|id| c.table.msisdn(id).unwrap())
        .collect();
    let svc = Mutex::new(c);
    let d = Instant0 {
        handed: Mutex::new(Vec::new()),
    };
    // Acknowledgement time of every event, by seq (events are stored in seq order from 1).
    let acked: Mutex<Vec<Instant>> = Mutex::new(Vec::with_capacity(events as usize));
    let wake = (Mutex::new(false), Condvar::new());
    let now = Timestamp::now();
    let (cpu0, load0) = (cpu_s(), loadavg());
    let start = Instant::now();
    let ((intake_t, intake_cpu), (matched, sent, steps, match_t, match_cpu)) =
        std::thread::scope(|s| {
            let intake = s.spawn(|| {
                let cpu0 = thread_cpu_s();
                let mut rng = 0x9E37_79B9_7F4A_7C15u64;
                let mut busy = Duration::ZERO;
                let mut seq = 0u64;
                while seq < events {
                    let n = batch.min(events - seq);
                    if rate > 0 {
                        let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    let mut body = String::with_capacity(n as usize * 200);
                    for _ in 0..n {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let id = (rng % u64::from(subscribers)) as usize;
                        body.push_str(&event(seq, msisdns[id], now.as_second()));
                        body.push('\n');
                        seq += 1;
                    }
                    let t0 = Instant::now();
                    let parsed = parse_body(body.as_bytes()).unwrap();
                    let rep = {
                        let c = svc.lock().unwrap();
                        let rep = parsed.commit(&c.conn, now.as_second()).unwrap();
                        let at = Instant::now();
                        acked
                            .lock()
                            .unwrap()
                            .extend(std::iter::repeat_n(at, n as usize));
                        rep
                    };
                    assert_eq!(rep.accepted, n);
                    busy += t0.elapsed();
                    *wake.0.lock().unwrap() = true;
                    wake.1.notify_one();
                }
                (busy, thread_cpu_s() - cpu0)
            });
            let matcher = s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let cpu0 = thread_cpu_s();
                let (mut matched, mut sent, mut steps) = (0u64, 0u64, 0u64);
                let mut busy = Duration::ZERO;
                let mut done = 0u64;
                while done < events {
                    {
                        let mut w = wake.0.lock().unwrap();
                        while !*w {
                            w = wake.1.wait(w).unwrap();
                        }
                        *w = false;
                    }
                    loop {
                        let t0 = Instant::now();
                        let (r, more) = rt.block_on(engine::step(&svc, &d, now, 10_000)).unwrap();
                        busy += t0.elapsed();
                        steps += 1;
                        done += r.events;
                        matched += r.matched;
                        sent += r.sent;
                        if !more {
                            break;
                        }
                    }
                }
                (matched, sent, steps, busy, thread_cpu_s() - cpu0)
            });
            (intake.join().unwrap(), matcher.join().unwrap())
        });
    let total = start.elapsed();
    let cpu = cpu_s() - cpu0;
    let acked = acked.into_inner().unwrap();
    let mut lat: Vec<Duration> = Vec::new();
    for (at, refs) in d.handed.into_inner().unwrap() {
        for r in refs {
            let seq: usize = r[1..r.find('-').unwrap()].parse().unwrap();
            lat.push(at - acked[seq - 1]);
        }
    }
    lat.sort_unstable();
    println!(
        "events: {events} in batches of {batch} over {subscribers} subscribers, 100 triggers, \
         offered at {}: {:.0} events/s ingested + matched ({:.2} s; intake busy {:.2} s, \
         matching + hand-over busy {:.2} s in {steps} steps); {matched} matches, {sent} sends",
        if rate > 0 {
            format!("{rate}/s")
        } else {
            "full speed".to_owned()
        },
        events as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        intake_t.as_secs_f64(),
        match_t.as_secs_f64(),
    );
    println!(
        "CPU {cpu:.2} s (user + sys; intake thread {intake_cpu:.2} s, matcher thread \
         {match_cpu:.2} s) = {:.1} µs per event ({:.0} events per CPU-second); \
         load average before {load0}, after {}",
        cpu * 1e6 / events as f64,
        events as f64 / cpu,
        loadavg()
    );
    if !lat.is_empty() {
        println!(
            "event ack → handed to the dispatcher ({} sends): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            pct(&lat, 0.5).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
}
