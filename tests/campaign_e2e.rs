//! End to end: a campaign launched through a running gateway (in-process `serve` with its
//! SMPP channel bound to the simulator) reconciles exactly with what the simulator counted.
//!
//! Path under test: campaign HTTP API launch → runner → `HttpDispatcher` → gateway
//! `POST /v1/messages` (durable) → SMPP → simulator → DLR / reply MO → gateway receipts →
//! in-process subscription → campaign feedback → funnel. Both tests use a 2 k city, so the
//! default run stays short; nothing is timed. The demo's triggered part runs beside the bulk
//! send (roaming events posted to `POST /v1/events` → a `roaming_arrival` trigger → SMS
//! through the same gateway), so the simulator's tally reconciles with both funnels.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice::demo::{DemoOptions, DemoOutcome, run};

fn options(mix: &[(&str, f64)], replies: [f64; 3], seed: u64) -> DemoOptions {
    let [reply_a, reply_b, reply_roam] = replies;
    DemoOptions {
        subscribers: 2_000,
        seed,
        progress: false,
        settle_timeout: Duration::from_secs(30),
        reply_a,
        reply_b,
        reply_roam,
        organic_rate: 0.0,
        dlr_mix: mix.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        ..DemoOptions::default()
    }
}

fn sum(o: &DemoOutcome, f: impl Fn(&sluice_campaign::report::FunnelRow) -> u64) -> u64 {
    o.funnel.iter().map(f).sum()
}

/// Common invariants: everyone not held out was sent exactly once, nothing was lost or
/// duplicated on the way, and every receipt found its contact.
fn check_sent_exactly_once(o: &DemoOutcome) {
    assert!(
        o.settled,
        "receipts and replies settled:\n{}",
        sluice::demo::render(o)
    );
    assert_eq!(o.feedback_lagged, 0);
    assert!(
        o.self_approval.starts_with("403 ") && o.self_approval.contains("their own submission"),
        "the planner's own approval is refused: {}",
        o.self_approval
    );
    let by_group: BTreeMap<_, _> = o.funnel.iter().map(|r| (r.group.as_str(), r)).collect();
    assert_eq!(
        by_group.keys().copied().collect::<Vec<_>>(),
        ["A", "B", "control"]
    );
    for g in ["A", "B"] {
        let r = by_group[g];
        assert!(r.targeted > 0, "group {g} is empty");
        assert_eq!(r.sent, r.targeted, "group {g}: every targeted member sent");
    }
    assert_eq!(by_group["control"].sent, 0, "the hold-out is never sent");
    let sent = sum(o, |r| r.sent) + o.trigger_funnel.sent;
    assert_eq!(
        o.tally.unique_messages, sent,
        "simulator received each message (bulk and triggered)"
    );
    assert_eq!(o.tally.duplicates, 0);
    assert_eq!(o.receipts_unmatched, 0);
    assert_eq!(o.receipts_matched, sent);
    check_triggered(o);
    // The exclusions of the demo (blacklist + DND samples) removed someone.
    let targeted = sum(o, |r| r.targeted);
    assert!(targeted < o.segment_size, "launch exclusions applied");
}

/// The triggered part: every posted roaming event was accepted; every match is sent, held
/// out as control or suppressed (the second arrivals by the cooldown), none left held or
/// stale; every triggered send has its final receipt.
fn check_triggered(o: &DemoOutcome) {
    let f = &o.trigger_funnel;
    let render = || sluice::demo::render(o);
    assert!(o.roaming_posted > 0, "{}", render());
    assert_eq!(o.roaming_accepted, o.roaming_posted, "{}", render());
    assert!(f.matched > 0 && f.sent > 0 && f.control > 0, "{}", render());
    // Every tenth arrival is at home and subscribers with ARPU 50 and up are the bulk's:
    // neither matches.
    assert!(f.matched < o.roaming_posted, "{}", render());
    let suppressed: u64 = f.suppressed.values().sum();
    assert_eq!(
        f.sent + f.control + suppressed + f.dropped_stale,
        f.matched,
        "{}",
        render()
    );
    assert!(
        f.suppressed.get("cooldown").copied().unwrap_or(0) > 0,
        "second arrivals within a day suppressed: {}",
        render()
    );
    assert_eq!((f.held_now, f.dropped_stale), (0, 0), "{}", render());
    assert_eq!(f.delivered + f.failed, f.sent, "{}", render());
    assert!(
        render().contains(&format!(
            "matched {} -> sent {} -> delivered {}",
            f.matched, f.sent, f.delivered
        )),
        "the report prints the trigger's funnel: {}",
        render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacted_equals_the_delivrd_dlrs_the_simulator_sent() {
    // Every receipt the simulator sends is DELIVRD, so its `dlrs_sent` is the DELIVRD count.
    let o = run(options(&[("DELIVRD", 1.0)], [0.0; 3], 11))
        .await
        .expect("demo runs");
    check_sent_exactly_once(&o);
    let contacted = sum(&o, |r| r.delivered);
    assert!(contacted > 0);
    assert_eq!(
        contacted + o.trigger_funnel.delivered,
        o.tally.dlrs_sent,
        "contacted (bulk and triggered) == DELIVRD DLRs sent"
    );
    assert_eq!(sum(&o, |r| r.failed) + o.trigger_funnel.failed, 0);
    assert_eq!(sum(&o, |r| r.converted), 0, "no replies configured");
    assert_eq!(o.trigger_funnel.converted, 0, "no replies configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_receipts_and_per_variant_replies_reconcile_with_the_tally() {
    let o = run(options(
        &[("DELIVRD", 0.8), ("UNDELIV", 0.15), ("EXPIRED", 0.05)],
        [0.2, 0.5, 0.5],
        12,
    ))
    .await
    .expect("demo runs");
    check_sent_exactly_once(&o);
    let (delivered, failed) = (sum(&o, |r| r.delivered), sum(&o, |r| r.failed));
    assert!(delivered > 0 && failed > 0, "both outcomes occur");
    // One DLR per (single-part) message: every DLR the simulator sent is in the funnel.
    let tf = &o.trigger_funnel;
    assert_eq!(
        delivered + failed + tf.delivered + tf.failed,
        o.tally.dlrs_sent
    );
    // Each subscriber gets one message and replies at most once; no organic orders here,
    // so conversions are exactly the replies the simulator sent, all attributed.
    assert_eq!(o.replies_unattributed, 0);
    assert_eq!(
        o.tally.mo_scheduled, o.tally.mo_sent,
        "every decided reply was sent"
    );
    assert_eq!(o.replies_attributed, o.tally.mo_sent);
    // The roaming offer's replies (p = 0.5) are its conversions.
    assert!(tf.converted > 0, "{}", sluice::demo::render(&o));
    assert_eq!(sum(&o, |r| r.converted) + tf.converted, o.tally.mo_sent);
    let conv = |g: &str| {
        o.funnel
            .iter()
            .find(|r| r.group == g)
            .map(|r| r.converted)
            .unwrap_or_default()
    };
    // The simulator's reply rules are keyed by each variant's marker: B (p = 0.5) converts
    // more than A (p = 0.2) — ~90 vs ~225 of ~450 each, far outside chance at this size.
    assert!(conv("B") > conv("A"), "A {} B {}", conv("A"), conv("B"));
    assert_eq!(conv("control"), 0);
    let up = o
        .uplift
        .iter()
        .find(|u| u.variant == "B")
        .and_then(|u| u.test)
        .expect("uplift of B vs control");
    assert!(up.p_value < 0.01 && up.ci_low > 0.0, "{up:?}");
}
