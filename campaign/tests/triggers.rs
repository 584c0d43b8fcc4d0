//! Triggered tasks replayed from a recorded event stream (tests/fixtures/events) against a
//! twelve-subscriber base, beside a running batch task: exactly the expected sends, and
//! every other match with its reason (cooldown, caps shared with the batch, conflict
//! period, budget, window hold and staleness drop, arbitration by priority, score and a
//! fixed tie-break, control membership, the gateway's public rules). Then a restart in the
//! middle of a stream, and bad lines.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::Path;
use std::sync::Mutex;

use common::{FakeGateway, running_task, slice, spec, ts};
use jiff::Timestamp;
use sluice_campaign::Campaigns;
use sluice_campaign::events::intake;
use sluice_campaign::events::source::{FileSource, pump};
use sluice_campaign::launch;
use sluice_campaign::triggers::{self, TriggerSpec, engine, evaluate, unit_hash};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events");

fn n(i: u64) -> u64 {
    13_900_000_000 + i
}

fn base(c: &mut Campaigns) {
    let csv = std::fs::read(Path::new(FIX).join("subscribers.csv")).unwrap();
    let rep = c.import_subscribers(&csv[..], None).unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

fn trigger(c: &mut Campaigns, name: &str, spec: serde_json::Value) -> i64 {
    let task = running_task(c, name);
    let spec: TriggerSpec = serde_json::from_value(spec).unwrap();
    let id = triggers::create(&c.conn, &c.table, task, &spec, None, 0).unwrap();
    triggers::prepare(&c.conn, id, &c.mo, 0).unwrap();
    id
}

/// The five triggers of the scenario (ids 1..=5 in a fresh store).
fn scenario_triggers(c: &mut Campaigns) -> [i64; 5] {
    let usage = r#"attrs.percent >= 80 and plan in ["4g_58","4g_88"]"#;
    [
        trigger(
            c,
            "roam",
            serde_json::json!({
                "event_type": "roaming_arrival", "condition": "attrs.country != \"CN\"",
                "template": "Welcome to {attrs.country}! {city} roaming pack: reply Y",
                "offer": "ROAM", "priority": 5, "cooldown_s": 86400, "window": "08:00-22:00",
                "staleness_s": 36000,
                "policy": {"caps": [{"channel": "sms", "max": 1, "period_days": 1}]}
            }),
        ),
        trigger(
            c,
            "usage_a",
            serde_json::json!({"event_type": "usage_threshold", "condition": usage,
                "template": "Data A {attrs.percent}%", "offer": "DATA_A", "priority": 3,
                "score_attr": "propensity"}),
        ),
        trigger(
            c,
            "balance",
            serde_json::json!({"event_type": "balance_low", "template": "Top up",
                "offer": "TOPUP", "priority": 1, "daily_budget": 2, "conflict_period_s": 3600}),
        ),
        trigger(
            c,
            "usage_b",
            serde_json::json!({"event_type": "usage_threshold", "condition": usage,
                "template": "Data B", "offer": "DATA_B", "priority": 3, "score_attr": "loyalty"}),
        ),
        trigger(
            c,
            "payment",
            serde_json::json!({"event_type": "payment_received", "template": "Thanks",
                "offer": "THANKS", "control_share": 0.5}),
        ),
    ]
}

/// A batch task that contacts subscribers 6 and 7 at 01:50 UTC on 5 December.
async fn batch(svc: &Mutex<Campaigns>, gw: &FakeGateway) {
    let bulk = {
        let mut c = svc.lock().unwrap();
        let task = running_task(&mut c, "batch");
        let numbers = format!("{}\n{}\n", n(6), n(7));
        let seg = c
            .segment_from_numbers("b", numbers.as_bytes(), ts("2026-12-05T00:00:00Z"))
            .unwrap()
            .0;
        let bulk = c
            .create_bulk(
                task,
                &spec(seg.id, vec![slice("2026-12-05T01:00:00Z", None)]),
            )
            .unwrap();
        c.plan(bulk, ts("2026-12-05T01:00:00Z")).unwrap();
        bulk
    };
    launch::run(svc, gw, bulk, || ts("2026-12-05T01:50:00Z"))
        .await
        .unwrap();
}

async fn ingest(svc: &Mutex<Campaigns>, file: &str, at: &str) -> intake::IntakeReport {
    let f = std::fs::File::open(Path::new(FIX).join(file)).unwrap();
    let at = ts(at).as_second();
    pump(&mut FileSource::new(BufReader::new(f)), svc, || at)
        .await
        .unwrap()
}

async fn drain(svc: &Mutex<Campaigns>, gw: &FakeGateway, at: &str) -> engine::StepReport {
    let at: Timestamp = ts(at);
    engine::drain(svc, gw, || at).await.unwrap()
}

/// (number, trigger) of every message the gateway accepted from a trigger.
fn trigger_sends(gw: &FakeGateway) -> BTreeSet<(u64, i64)> {
    let ids = gw.sent_refs();
    gw.messages()
        .into_iter()
        .filter(|m| m.tags.contains_key("trigger") && ids.contains(&m.client_ref))
        .map(|m| (m.to.parse().unwrap(), m.tags["trigger"].parse().unwrap()))
        .collect()
}

/// outcome/reason per (number, trigger, event id): the packed decisions and the hold-outs.
fn outcomes(c: &Campaigns) -> BTreeMap<(u64, i64, String), String> {
    let mut st = c
        .conn
        .prepare(
            "SELECT e.msisdn, j.value ->> 0, e.id, j.value ->> 1, j.value ->> 2,
                    j.value ->> 3 IS NOT NULL
             FROM trigger_decisions d JOIN events e ON e.seq = d.event_seq,
                  json_each(d.decisions) j
             UNION ALL
             SELECT e.msisdn, o.trigger_id, e.id, 'control', '', o.held_at IS NOT NULL
             FROM trigger_control o JOIN events e ON e.seq = o.event_seq",
        )
        .unwrap();
    st.query_map([], |r| {
        let held: bool = r.get(5)?;
        let reason: String = r.get(4)?;
        let outcome: String = r.get(3)?;
        Ok((
            (r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?),
            format!(
                "{outcome}{}{reason}{}",
                if reason.is_empty() { "" } else { "/" },
                if held { " (held)" } else { "" }
            ),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[tokio::test]
async fn a_recorded_stream_gives_exactly_the_expected_sends() {
    let mut c = Campaigns::in_memory().unwrap();
    base(&mut c);
    let [roam, usage_a, balance, usage_b, payment] = scenario_triggers(&mut c);
    let svc = Mutex::new(c);
    let gw = FakeGateway::default();
    gw.refuse
        .lock()
        .unwrap()
        .insert(n(11).to_string(), "blocked: do_not_disturb/sms".into());
    batch(&svc, &gw).await;

    // Phase 1: 10:00 local, windows open.
    let rep = ingest(&svc, "phase1.ndjson", "2026-12-05T01:59:59Z").await;
    assert_eq!((rep.lines, rep.accepted, rep.duplicates), (15, 13, 1));
    assert_eq!(rep.errors.len(), 1);
    assert_eq!(
        (rep.errors[0].line, rep.errors[0].field.as_str()),
        (14, "msisdn")
    );
    let r1 = drain(&svc, &gw, "2026-12-05T02:00:00Z").await;
    assert_eq!((r1.events, r1.unknown_subscriber), (13, 1));
    // sub 9: propensity = loyalty, so the fixed hash decides between usage_a and usage_b.
    let tie = if unit_hash(usage_a, n(9)) < unit_hash(usage_b, n(9)) {
        usage_a
    } else {
        usage_b
    };
    let tie_loser = usage_a + usage_b - tie;
    let mut expected: BTreeSet<(u64, i64)> = [
        (n(1), roam),
        (n(4), usage_a),
        (n(9), tie),
        (n(2), balance),
        (n(3), balance),
    ]
    .into();
    assert_eq!(trigger_sends(&gw), expected, "phase 1");

    // Phase 2: 23:00 local, the roaming window is closed.
    ingest(&svc, "phase2.ndjson", "2026-12-05T14:59:59Z").await;
    let r2 = drain(&svc, &gw, "2026-12-05T15:00:00Z").await;
    assert_eq!(r2.held, 3, "three roaming arrivals wait for the window");
    expected.insert((n(8), usage_b));
    assert_eq!(trigger_sends(&gw), expected, "phase 2");

    // Phase 3: 08:30 local next day: the window opens; payments for everyone.
    ingest(&svc, "phase3.ndjson", "2026-12-06T00:29:30Z").await;
    drain(&svc, &gw, "2026-12-06T00:30:00Z").await;
    expected.insert((n(10), roam));
    let control: BTreeSet<u64> = (1..=12)
        .map(n)
        .filter(|&m| unit_hash(payment, m) < 0.5)
        .collect();
    assert!(!control.is_empty() && control.len() < 12, "{control:?}");
    for i in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12] {
        if !control.contains(&n(i)) {
            expected.insert((n(i), payment));
        }
    }
    assert_eq!(trigger_sends(&gw), expected, "phase 3");

    {
        let c = svc.lock().unwrap();
        let got = outcomes(&c);
        let o = |i: u64, t: i64, e: &str| {
            got.get(&(n(i), t, e.to_owned()))
                .cloned()
                .unwrap_or_default()
        };
        let won = |t: i64| format!("lost/arbitration: trigger {t} won");
        assert_eq!(o(1, roam, "e1"), "sent");
        assert_eq!(o(1, usage_a, "e2"), won(roam), "priority");
        assert_eq!(o(1, usage_b, "e2"), won(roam));
        assert_eq!(o(2, roam, "e3"), "", "CN does not match");
        assert_eq!(o(3, roam, "e4"), "dropped/stale");
        assert_eq!(
            o(6, roam, "e5"),
            "suppressed/channel_cap",
            "the batch contact counts"
        );
        assert_eq!(o(4, usage_a, "e6"), "sent");
        assert_eq!(o(4, usage_b, "e6"), won(usage_a), "score");
        assert_eq!(o(9, tie_loser, "e7"), won(tie), "tie-break");
        assert_eq!(o(12, usage_a, "e8"), "", "plan 5g_99 does not match");
        assert_eq!(
            o(7, balance, "e10"),
            "lost/conflict_period: task 6 offer \"DATA10\""
        );
        assert_eq!(o(5, balance, "e12"), "suppressed/budget");
        assert_eq!(o(1, roam, "e20"), "suppressed/cooldown (held)");
        assert_eq!(o(10, roam, "e21"), "sent (held)");
        assert_eq!(o(3, roam, "e22"), "dropped/stale (held)");
        assert_eq!(o(8, usage_b, "e23"), "sent");
        assert_eq!(o(8, usage_a, "e23"), won(usage_b));
        assert_eq!(
            o(11, usage_a, "e24"),
            "suppressed/public:do_not_disturb/sms"
        );
        assert_eq!(
            o(10, payment, "p10"),
            if control.contains(&n(10)) {
                "control".into()
            } else {
                won(roam)
            }
        );
        for i in 1..=12 {
            if control.contains(&n(i)) {
                assert_eq!(o(i, payment, &format!("p{i}")), "control", "sub {i}");
            }
        }

        // The funnel per trigger, its control group and the uplift with the orders.
        let f =
            evaluate::funnel(&c.conn, roam, triggers::load(&c.conn, roam).unwrap().task).unwrap();
        assert_eq!(
            (f.matched, f.sent, f.dropped_stale, f.held_total, f.held_now),
            (6, 2, 2, 3, 0)
        );
        assert_eq!(f.suppressed["cooldown"], 1);
    }
    let treated: Vec<u64> = expected
        .iter()
        .filter(|(_, t)| *t == payment)
        .map(|(m, _)| *m)
        .collect();
    let mut orders = String::from("msisdn,offer,time\n");
    for m in control.iter().take(1).chain(treated.iter().take(2)) {
        orders.push_str(&format!("{m},THANKS,2026-12-06T05:00:00Z\n"));
    }
    {
        let mut c = svc.lock().unwrap();
        let rep = c.import_orders(orders.as_bytes()).unwrap();
        assert_eq!((rep.contacted, rep.control), (2, 1));
        let pay_task = triggers::load(&c.conn, payment).unwrap().task;
        let f = evaluate::funnel(&c.conn, payment, pay_task).unwrap();
        assert_eq!(f.control_targeted, control.len() as u64);
        assert_eq!((f.treated_converted, f.control_converted), (2, 1));
        assert_eq!(f.sent, treated.len() as u64);
        assert!(f.uplift.is_some());
        let m = evaluate::monitor(&c.conn, ts("2026-12-06T00:30:20Z").as_second(), None).unwrap();
        assert_eq!(m.pending_events, 0);
        assert!(m.matches_per_s > 0.0 && m.events_per_s > 0.0, "{m:?}");
    }

    // Replaying the whole stream changes nothing: every id is a duplicate.
    for p in ["phase1.ndjson", "phase2.ndjson", "phase3.ndjson"] {
        assert_eq!(ingest(&svc, p, "2026-12-06T01:00:00Z").await.accepted, 0);
    }
    let r = drain(&svc, &gw, "2026-12-06T01:00:00Z").await;
    assert_eq!((r.events, r.sent), (0, 0));
    assert_eq!(trigger_sends(&gw), expected);
}

/// Runs the three phases with steps of `limit` events, losing the gateway's answer on the
/// calls in `lose`. With `reopen`, the store is reopened from `path` before every step (a
/// restart: matching rebuilds its compiled triggers and its in-memory contact history from
/// the store); without, one service runs the whole stream and keeps both warm.
async fn stepwise(
    path: &Path,
    limit: usize,
    lose: &[usize],
    reopen: bool,
) -> (FakeGateway, BTreeMap<(u64, i64, String), String>) {
    {
        let mut c = Campaigns::open(path).unwrap();
        base(&mut c);
        scenario_triggers(&mut c);
    }
    let gw = FakeGateway::default();
    *gw.lose_response_on.lock().unwrap() = lose.to_vec();
    let kept = (!reopen).then(|| Mutex::new(Campaigns::open(path).unwrap()));
    let open = || Mutex::new(Campaigns::open(path).unwrap());
    {
        let own;
        let svc = match &kept {
            Some(s) => s,
            None => {
                own = open();
                &own
            }
        };
        batch(svc, &gw).await;
    }
    for (file, at, now) in [
        (
            "phase1.ndjson",
            "2026-12-05T01:59:59Z",
            "2026-12-05T02:00:00Z",
        ),
        (
            "phase2.ndjson",
            "2026-12-05T14:59:59Z",
            "2026-12-05T15:00:00Z",
        ),
        (
            "phase3.ndjson",
            "2026-12-06T00:29:30Z",
            "2026-12-06T00:30:00Z",
        ),
    ] {
        {
            let own;
            let svc = match &kept {
                Some(s) => s,
                None => {
                    own = open();
                    &own
                }
            };
            ingest(svc, file, at).await;
        }
        loop {
            // With `reopen`, a fresh service per step: the restart happens between every
            // two steps, and after a lost answer (the gateway stored the batch, the step
            // did not commit).
            let own;
            let svc = match &kept {
                Some(s) => s,
                None => {
                    own = open();
                    &own
                }
            };
            match engine::step(svc, &gw, ts(now), limit).await {
                Ok((_, true)) => {}
                Ok((_, false)) => break,
                Err(_) => {}
            }
        }
    }
    drop(kept);
    let c = Campaigns::open(path).unwrap();
    (gw, outcomes(&c))
}

#[tokio::test]
async fn a_restart_mid_stream_loses_nothing_and_sends_no_one_twice() {
    let dir = tempfile::tempdir().unwrap();
    // The clean run keeps one service (warm contact history); the crashed one restarts
    // before every step and rebuilds it from the store, so cooldowns, caps and conflict
    // periods across a restart are decided as without one.
    let (clean_gw, clean) = stepwise(&dir.path().join("clean.db"), 10_000, &[], false).await;
    // Batch call 1 is the batch task; lose the answers of trigger steps 2 and 4.
    let (gw, crashed) = stepwise(&dir.path().join("crash.db"), 3, &[3, 5], true).await;
    assert_eq!(
        crashed, clean,
        "every acknowledged event decided once, the same way"
    );
    assert_eq!(trigger_sends(&gw), trigger_sends(&clean_gw));
    let s = gw.state.lock().unwrap();
    assert!(
        s.duplicates >= 2,
        "the lost batches came again with the same client_refs"
    );
    let refs: BTreeSet<&str> = s
        .batches
        .iter()
        .flatten()
        .filter(|m| m.tags.contains_key("trigger") && s.ids.contains_key(&m.client_ref))
        .map(|m| m.client_ref.as_str())
        .collect();
    let sent = crashed.values().filter(|o| o.starts_with("sent")).count();
    assert_eq!(
        refs.len(),
        sent,
        "each accepted message is one recorded send"
    );
}

#[tokio::test]
async fn bad_lines_get_per_line_errors_and_the_rest_is_stored() {
    let c = Campaigns::in_memory().unwrap();
    let body = concat!(
        r#"{"id":"a","msisdn":"13900000001","type":"churn_risk","ts":1,"attrs":{"score":0.9}}"#,
        "\n",
        r#"{"id":"b","msisdn":"13900000001","type":"churn risk","ts":1}"#,
        "\n",
        r#"{"id":"c","msisdn":"13900000001","type":"churn_risk"}"#,
        "\n",
        "not json\n",
        r#"{"id":"d","msisdn":"13900000002","type":"churn_risk","ts":"2026-12-05T00:00:00Z","attrs":{"x":{"y":1}}}"#,
        "\n",
        r#"{"id":"e","msisdn":"13900000002","type":"churn_risk","ts":"2026-12-05T00:00:00Z"}"#,
        "\n",
    );
    let rep = intake::parse_body(body.as_bytes())
        .unwrap()
        .commit(&c.conn, 9)
        .unwrap();
    let errs: Vec<(u64, &str)> = rep
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(errs, vec![(2, "type"), (3, "ts"), (4, "*"), (5, "attrs.x")]);
    assert_eq!(rep.accepted, 2);
    let ids: Vec<String> = c
        .conn
        .prepare("SELECT id FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, ["a", "e"]);
}

#[tokio::test]
async fn birthdays_and_holidays_become_events_once_a_day_and_go_out_in_the_window() {
    let mut c = Campaigns::in_memory().unwrap();
    let csv = "msisdn,city,birthday\n13900000001,nanjing,1990-12-05\n13900000002,suzhou,12-06\n13900000003,wuxi,\n";
    c.import_subscribers(csv.as_bytes(), None).unwrap();
    let bday = trigger(
        &mut c,
        "birthday",
        serde_json::json!({"event_type": "birthday", "template": "Happy birthday from {city}!",
            "offer": "BDAY", "window": "09:00-20:00", "staleness_s": 86400}),
    );
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let day: jiff::civil::Date = "2026-12-05".parse().unwrap();
    // No running trigger listens for holidays: the national day emits nothing.
    triggers::calendar::add_holiday(&c.conn, day, "national").unwrap();
    let emit = |c: &Campaigns| {
        triggers::calendar::emit(&c.conn, &c.table, day, &tz, "birthday", 0).unwrap()
    };
    assert_eq!(emit(&c), 1, "one birthday on 12-05");
    assert_eq!(emit(&c), 0, "emitting twice stores nothing new");
    trigger(
        &mut c,
        "holiday",
        serde_json::json!({"event_type": "holiday", "template": "Happy {attrs.holiday} day",
            "offer": "HOL", "priority": -1, "staleness_s": 86400}),
    );
    assert_eq!(emit(&c), 3, "now a holiday event for each subscriber");
    let svc = Mutex::new(c);
    let gw = FakeGateway::default();
    // 08:00 local: the birthday waits for its window, the holiday goes (sub 1's holiday
    // wins nothing: the birthday is held, not a candidate).
    let r = drain(&svc, &gw, "2026-12-05T00:00:00Z").await;
    assert_eq!((r.held, r.sent), (1, 3));
    let r = drain(&svc, &gw, "2026-12-05T01:30:00Z").await;
    assert_eq!(r.sent, 1);
    let texts: BTreeSet<String> = gw.messages().into_iter().filter_map(|m| m.text).collect();
    assert!(texts.contains("Happy birthday from nanjing!"), "{texts:?}");
    assert!(texts.contains("Happy national day"), "{texts:?}");
    assert!(trigger_sends(&gw).contains(&(n(1), bday)));
}
