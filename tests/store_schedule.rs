//! Due-time rules and the scheduler, driven by a manual clock: windows that cross midnight,
//! quiet hours, intersections, expiry, a DST-free zone (Asia/Shanghai) and a DST zone
//! (America/New_York, spring-forward gap and fall-back fold).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use sluice::clock::ManualClock;
use sluice::schedule::{Due, Scheduler, TimeWindow, WindowRules, due, is_expired, next_allowed};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn w(s: &str) -> TimeWindow {
    s.parse().unwrap()
}

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

fn new_york() -> TimeZone {
    TimeZone::get("America/New_York").unwrap()
}

fn allowed(sets: &[&[&str]]) -> WindowRules {
    WindowRules {
        allowed: sets
            .iter()
            .map(|s| s.iter().map(|x| w(x)).collect())
            .collect(),
        quiet: Vec::new(),
    }
}

#[test]
fn shanghai_after_window_waits_for_next_morning() {
    let rules = allowed(&[&["08:00-21:00"]]);
    // 22:30 local (+08) → 08:00 next day local = 00:00Z.
    assert_eq!(
        next_allowed(ts("2026-11-26T14:30:00Z"), &shanghai(), &rules),
        Some(ts("2026-11-27T00:00:00Z"))
    );
    // Inside the window: now.
    assert_eq!(
        next_allowed(ts("2026-11-26T02:00:00Z"), &shanghai(), &rules),
        Some(ts("2026-11-26T02:00:00Z"))
    );
    // Exactly at the end (21:00 local) is outside: end is exclusive.
    assert_eq!(
        next_allowed(ts("2026-11-26T13:00:00Z"), &shanghai(), &rules),
        Some(ts("2026-11-27T00:00:00Z"))
    );
}

#[test]
fn window_crossing_midnight() {
    let rules = allowed(&[&["21:00-08:00"]]);
    let tz = shanghai();
    // 12:00 local → 21:00 local same day.
    assert_eq!(
        next_allowed(ts("2026-11-26T04:00:00Z"), &tz, &rules),
        Some(ts("2026-11-26T13:00:00Z"))
    );
    // 23:30 and 07:59 local are inside.
    for inside in ["2026-11-26T15:30:00Z", "2026-11-26T23:59:00Z"] {
        assert_eq!(next_allowed(ts(inside), &tz, &rules), Some(ts(inside)));
    }
    // 08:00 local is outside again → 21:00.
    assert_eq!(
        next_allowed(ts("2026-11-27T00:00:00Z"), &tz, &rules),
        Some(ts("2026-11-27T13:00:00Z"))
    );
}

#[test]
fn quiet_hours_and_intersections() {
    let tz = shanghai();
    let rules = WindowRules {
        allowed: vec![vec![w("08:00-21:00")]],
        quiet: vec![w("12:00-14:00")],
    };
    // 12:30 local → 14:00 local.
    assert_eq!(
        next_allowed(ts("2026-11-26T04:30:00Z"), &tz, &rules),
        Some(ts("2026-11-26T06:00:00Z"))
    );
    // Channel 08:00-21:00 ∩ message 20:00-23:00, asked at 09:00 → 20:00.
    let rules = allowed(&[&["08:00-21:00"], &["20:00-23:00"]]);
    assert_eq!(
        next_allowed(ts("2026-11-26T01:00:00Z"), &tz, &rules),
        Some(ts("2026-11-26T12:00:00Z"))
    );
    // A set of two windows: the nearer opening wins.
    let rules = allowed(&[&["18:00-19:00", "10:00-11:00"]]);
    assert_eq!(
        next_allowed(ts("2026-11-26T01:00:00Z"), &tz, &rules),
        Some(ts("2026-11-26T02:00:00Z"))
    );
    // An empty set restricts nothing.
    let rules = allowed(&[&[]]);
    assert_eq!(
        next_allowed(ts("2026-11-26T01:00:00Z"), &tz, &rules),
        Some(ts("2026-11-26T01:00:00Z"))
    );
}

#[test]
fn impossible_rules_never_or_expired() {
    let tz = shanghai();
    let rules = WindowRules {
        allowed: vec![vec![w("09:00-10:00")]],
        quiet: vec![w("08:00-11:00")],
    };
    let now = ts("2026-11-26T00:00:00Z");
    assert_eq!(next_allowed(now, &tz, &rules), None);
    assert_eq!(due(now, None, None, &tz, &rules), Due::Never);
    assert_eq!(
        due(now, None, Some(ts("2026-12-01T00:00:00Z")), &tz, &rules),
        Due::Expired
    );
    // Disjoint allowed sets.
    let rules = allowed(&[&["08:00-09:00"], &["10:00-11:00"]]);
    assert_eq!(next_allowed(now, &tz, &rules), None);
}

#[test]
fn not_before_and_expiry() {
    let tz = shanghai();
    let rules = allowed(&[&["08:00-21:00"]]);
    let now = ts("2026-11-26T02:00:00Z"); // 10:00 local
    // not_before later today, inside the window.
    assert_eq!(
        due(now, Some(ts("2026-11-26T05:00:00Z")), None, &tz, &rules),
        Due::At(ts("2026-11-26T05:00:00Z"))
    );
    // not_before in the past is ignored.
    assert_eq!(
        due(now, Some(ts("2026-11-20T05:00:00Z")), None, &tz, &rules),
        Due::At(now)
    );
    // not_before after the window closes → next morning; expiry before that → expired.
    let nb = ts("2026-11-26T14:00:00Z");
    assert_eq!(
        due(now, Some(nb), None, &tz, &rules),
        Due::At(ts("2026-11-27T00:00:00Z"))
    );
    assert_eq!(
        due(now, Some(nb), Some(ts("2026-11-26T23:00:00Z")), &tz, &rules),
        Due::Expired
    );
    assert!(is_expired(now, Some(now)));
    assert!(!is_expired(now, Some(ts("2026-11-26T02:00:01Z"))));
    assert!(!is_expired(now, None));
}

#[test]
fn dst_spring_forward_gap() {
    let tz = new_york();
    // 2026-03-08 02:00 EST jumps to 03:00 EDT. A window opening at 02:30 opens after the gap:
    // jiff's compatible rule maps 02:30 to 03:30 EDT = 07:30Z.
    let rules = allowed(&[&["02:30-04:00"]]);
    assert_eq!(
        next_allowed(ts("2026-03-08T06:00:00Z"), &tz, &rules), // 01:00 EST
        Some(ts("2026-03-08T07:30:00Z"))
    );
    // An 08:00-21:00 window the evening before: 08:00 EDT = 12:00Z (not 13:00Z).
    let rules = allowed(&[&["08:00-21:00"]]);
    assert_eq!(
        next_allowed(ts("2026-03-08T03:00:00Z"), &tz, &rules), // 22:00 EST on the 7th
        Some(ts("2026-03-08T12:00:00Z"))
    );
    // And the day before the change, 08:00 EST = 13:00Z.
    assert_eq!(
        next_allowed(ts("2026-03-07T03:00:00Z"), &tz, &rules),
        Some(ts("2026-03-07T13:00:00Z"))
    );
}

#[test]
fn dst_fall_back_fold() {
    let tz = new_york();
    // 2026-11-01: 01:00-02:00 local happens twice (EDT then EST). At 01:50 EDT (05:50Z) the
    // window 01:30-01:45 has passed once; it comes round again at 01:30 EST = 06:30Z.
    let rules = allowed(&[&["01:30-01:45"]]);
    assert_eq!(
        next_allowed(ts("2026-11-01T05:50:00Z"), &tz, &rules),
        Some(ts("2026-11-01T06:30:00Z"))
    );
    // Quiet hours ending at 01:30 during the fold: leave at the first 01:30 (05:30Z).
    let rules = WindowRules {
        allowed: vec![],
        quiet: vec![w("00:00-01:30")],
    };
    assert_eq!(
        next_allowed(ts("2026-11-01T04:10:00Z"), &tz, &rules), // 00:10 EDT
        Some(ts("2026-11-01T05:30:00Z"))
    );
}

/// Polls `fut` once; true if it is still pending.
fn pending<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    futures::FutureExt::now_or_never(fut).is_none()
}

/// Hang guard only (not a timing assertion): a missed wake-up fails instead of hanging.
async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("scheduler never woke")
}

#[tokio::test]
async fn scheduler_wakes_at_due_time_only() {
    let start = ts("2026-11-26T00:00:00Z");
    let clock = ManualClock::new(start);
    let s = Scheduler::new(clock.clone());
    s.schedule(start + SignedDuration::from_secs(10), "late");
    s.schedule(start + SignedDuration::from_secs(5), "early");
    assert_eq!(s.len(), 2);
    {
        let mut next = pin!(s.next());
        assert!(pending(next.as_mut()));
        clock.advance(SignedDuration::from_secs(4));
        assert!(pending(next.as_mut()), "nothing due at +4 s");
        clock.advance(SignedDuration::from_secs(1));
        assert_eq!(guard(next).await, vec!["early"]);
    }
    clock.advance(SignedDuration::from_secs(100));
    assert_eq!(guard(s.next()).await, vec!["late"]);
    assert!(s.is_empty());
}

#[tokio::test]
async fn scheduler_earlier_entry_wakes_waiter() {
    let start = ts("2026-11-26T00:00:00Z");
    let clock = ManualClock::new(start);
    let s = Scheduler::new(clock.clone());
    s.schedule(start + SignedDuration::from_secs(3_600), 1u32);
    let mut next = pin!(s.next());
    assert!(pending(next.as_mut()));
    // Something already due arrives: the sleeping waiter must return it without any advance.
    s.schedule(start, 2);
    assert_eq!(guard(next).await, vec![2]);
    // Empty scheduler: waits on the notify alone.
    let s2: Scheduler<u32, _> = Scheduler::new(clock.clone());
    let mut next = pin!(s2.next());
    assert!(pending(next.as_mut()));
    s2.schedule(start, 7);
    assert_eq!(guard(next).await, vec![7]);
    // Same key twice at the same time is one entry.
    s2.schedule(start, 7);
    s2.schedule(start, 7);
    assert_eq!(s2.take_due(), vec![7]);
}
