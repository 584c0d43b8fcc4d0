//! Reply routing by service number + extension, the latest-contact fallback, and
//! unsubscribe keywords, through the real launch (plan → run → commit) and feedback code.
//! Only the gateway is a test double (`common::FakeGateway`).

mod common;

use std::sync::Mutex;

use common::{FakeGateway, running_task, spec, ts};
use jiff::Timestamp;
use sluice_campaign::Campaigns;
use sluice_campaign::feedback::{self, MoReply, ReplyOutcome};
use sluice_campaign::groups::{GroupSpec, Variant};
use sluice_campaign::launch::{self, RunOutcome, SliceSpec};
use sluice_campaign::rules::Reason;
use sluice_campaign::{report, routing};

const SN: &str = "10658000";

fn reply(from: &str, to: &str, text: &str, at: &str) -> MoReply {
    MoReply {
        from: from.into(),
        to: to.into(),
        text: text.into(),
        received_at: ts(at),
    }
}

fn apply(c: &Campaigns, r: &MoReply) -> ReplyOutcome {
    feedback::apply_reply(&c.conn, &c.table, r, feedback::DEFAULT_WINDOW_DAYS, &c.mo)
        .expect("reply applies")
}

/// Creates a running task with an A/B bulk send over `segment` (from the default service
/// number), launches it at `at` and sends everything. Returns (task, bulk).
async fn send_task(
    svc: &Mutex<Campaigns>,
    gw: &FakeGateway,
    segment: i64,
    name: &str,
    extension: Option<&str>,
    at: &'static str,
) -> (i64, i64) {
    let (task, bulk) = {
        let mut c = svc.lock().expect("lock");
        let task = running_task(&mut c, name);
        let mut s = spec(
            segment,
            vec![SliceSpec {
                start: ts("2026-03-01T00:00:00Z"),
                window: None,
            }],
        );
        s.from = None;
        s.extension = extension.map(str::to_owned);
        s.groups = GroupSpec::Random {
            seed: 3,
            variants: vec![
                Variant {
                    name: "A".into(),
                    weight: 1,
                },
                Variant {
                    name: "B".into(),
                    weight: 1,
                },
            ],
            control_share: 0.0,
        };
        let bulk = c.create_bulk(task, &s).expect("bulk");
        c.plan(bulk, ts(at)).expect("plan");
        (task, bulk)
    };
    let out = launch::run(svc, gw, bulk, || ts(at)).await.expect("run");
    assert!(matches!(out, RunOutcome::Finished { .. }), "{out:?}");
    (task, bulk)
}

fn group_of(c: &Campaigns, bulk: i64, sub: u32) -> String {
    launch::groups(&c.conn, bulk)
        .expect("groups")
        .into_iter()
        .find(|(_, _, m)| m.contains(sub))
        .map(|(n, _, _)| n)
        .expect("in a group")
}

fn row<'a>(f: &'a [report::FunnelRow], group: &str) -> &'a report::FunnelRow {
    f.iter().find(|r| r.group == group).expect("group row")
}

fn totals(f: &[report::FunnelRow]) -> (u64, u64, u64) {
    f.iter().fold((0, 0, 0), |(c, fb, u), r| {
        (
            c + r.converted,
            fb + r.converted_fallback,
            u + r.unsubscribed,
        )
    })
}

#[tokio::test]
async fn replies_follow_the_extension_fall_back_without_one_and_unsubscribe_to_dnd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("c.db");
    let mut c = Campaigns::open(&db).expect("open");
    c.load_synthetic(40, 5).expect("city");
    c.mo.service_numbers = vec![SN.into()];
    let seg = c
        .segment_from_condition("all", "age >= 0", ts("2026-03-01T00:00:00Z"))
        .expect("segment");
    let number = |c: &Campaigns, id: u32| c.table.msisdn(id).expect("msisdn").to_string();
    let svc = Mutex::new(c);
    let gw = FakeGateway::default();

    // Task 1 (automatic extension) contacts everyone; an hour later task 2 (planner's
    // extension) contacts everyone again.
    let (t1, b1) = send_task(&svc, &gw, seg.id, "first", None, "2026-03-05T02:00:00Z").await;
    let (t2, b2) = send_task(
        &svc,
        &gw,
        seg.id,
        "second",
        Some("77"),
        "2026-03-05T03:00:00Z",
    )
    .await;
    let ext1 = format!("{SN}0001");
    let ext2 = format!("{SN}77");
    let msgs = gw.messages();
    assert_eq!(msgs.len(), 80);
    for m in &msgs {
        let task = &m.tags["task"];
        let want = if *task == t1.to_string() {
            &ext1
        } else {
            &ext2
        };
        assert_eq!(m.from.as_ref(), Some(want), "source of task {task}");
    }

    let c = svc.into_inner().expect("lock");
    let at = "2026-03-05T04:00:00Z";

    // A reply to task 1's extension is task 1's (and its group's), although task 2 is the
    // subscriber's latest contact.
    assert_eq!(
        apply(&c, &reply(&number(&c, 1), &ext1, "Y", at)),
        ReplyOutcome::Extension
    );
    // Handsets may append digits: the longest prefix still names task 1.
    assert_eq!(
        apply(&c, &reply(&number(&c, 2), &format!("{ext1}9"), "y", at)),
        ReplyOutcome::Extension
    );
    let f1 = c.funnel(t1).expect("funnel");
    assert_eq!(totals(&f1), (2, 0, 0));
    for sub in [1, 2] {
        let g = group_of(&c, b1, sub);
        assert!(row(&f1, &g).converted >= 1, "group {g} of task 1 converted");
    }
    assert_eq!(totals(&c.funnel(t2).expect("funnel")), (0, 0, 0));

    // No extension (the bare service number): today's rule, the latest contact (task 2),
    // counted as a fallback.
    assert_eq!(
        apply(&c, &reply(&number(&c, 3), SN, "Y", at)),
        ReplyOutcome::LatestContact
    );
    let f2 = c.funnel(t2).expect("funnel");
    assert_eq!(totals(&f2), (1, 1, 0));
    assert_eq!(row(&f2, &group_of(&c, b2, 3)).converted_fallback, 1);

    // Unsubscribes: "TD" to task 1, "退订" (padded) to task 2, "stop" without extension.
    // Never conversions; recorded per task and group; the numbers go on the SMS DND list.
    for (sub, to, text) in [
        (4, &ext1, "TD"),
        (5, &ext2, " 退订 "),
        (6, &SN.into(), "stop"),
    ] {
        assert_eq!(
            apply(&c, &reply(&number(&c, sub), to, text, at)),
            ReplyOutcome::Unsubscribe,
            "{text:?}"
        );
    }
    let f1 = c.funnel(t1).expect("funnel");
    let f2 = c.funnel(t2).expect("funnel");
    assert_eq!(totals(&f1), (2, 0, 1));
    assert_eq!(row(&f1, &group_of(&c, b1, 4)).unsubscribed, 1);
    // Subscriber 6 answered the bare number: the fallback credits task 2 (its last contact).
    assert_eq!(totals(&f2), (1, 1, 2));
    assert_eq!(row(&f2, &group_of(&c, b2, 5)).unsubscribed, 1);
    let outcomes: Vec<(String, Option<i64>)> = c
        .conn
        .prepare("SELECT outcome, task_id FROM replies ORDER BY id")
        .expect("sql")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        outcomes,
        vec![
            ("extension".into(), Some(t1)),
            ("extension".into(), Some(t1)),
            ("latest_contact".into(), Some(t2)),
            ("unsubscribe".into(), Some(t1)),
            ("unsubscribe".into(), Some(t2)),
            ("unsubscribe".into(), Some(t2)),
        ]
    );

    // The extension → task map is durable: it survives reopening the store.
    drop(c);
    let mut c = Campaigns::open(&db).expect("reopen");
    c.mo.service_numbers = vec![SN.into()];
    assert_eq!(
        routing::of_task(&c.conn, t1)
            .expect("ext")
            .map(|e| e.source()),
        Some(ext1.clone())
    );
    assert_eq!(routing::resolve(&c.conn, &ext2).expect("resolve"), vec![t2]);

    // The next launch excludes the three unsubscribed numbers (do-not-disturb on SMS).
    let svc = Mutex::new(c);
    let gw3 = FakeGateway::default();
    let (_, b3) = send_task(&svc, &gw3, seg.id, "third", None, "2026-03-06T02:00:00Z").await;
    let c = svc.into_inner().expect("lock");
    let plan = launch::plan_report(&c.conn, b3).expect("plan");
    assert_eq!(plan.excluded.get(&Reason::DoNotDisturb), Some(&3));
    let sent: Vec<String> = gw3.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(sent.len(), 37);
    for sub in [4, 5, 6] {
        assert!(
            !sent.contains(&number(&c, sub)),
            "subscriber {sub} excluded"
        );
    }
    // Task 3 got the next free extension (task 2's "77" is not 4-digit; 0001 is live).
    assert!(
        gw3.messages()
            .iter()
            .all(|m| m.from.as_deref() == Some("106580000002"))
    );
}

#[test]
fn an_extension_without_a_service_number_or_held_by_a_live_task_is_refused() {
    let mut c = Campaigns::in_memory().expect("store");
    c.load_synthetic(10, 1).expect("city");
    let now = Timestamp::from_second(1_772_700_000).expect("ts");
    let seg = c
        .segment_from_condition("all", "age >= 0", now)
        .expect("segment");
    let slices = vec![SliceSpec {
        start: now,
        window: None,
    }];
    // Malformed: refused when the bulk is created.
    let t0 = running_task(&mut c, "bad");
    let mut s = spec(seg.id, slices.clone());
    s.extension = Some("12a".into());
    let e = c.create_bulk(t0, &s).expect_err("malformed");
    assert!(e.to_string().contains("extension"), "{e}");
    // No service number configured: refused at launch.
    s.extension = Some("12".into());
    s.from = None;
    let b0 = c.create_bulk(t0, &s).expect("bulk");
    let e = c.plan(b0, now).expect_err("no service number");
    assert!(e.to_string().contains("service number"), "{e}");
    // Held by another live task.
    c.mo.service_numbers = vec![SN.into()];
    c.plan(b0, now).expect("now it plans");
    let t1 = running_task(&mut c, "clash");
    let b1 = c.create_bulk(t1, &s).expect("bulk");
    let e = c.plan(b1, now).expect_err("in use");
    assert!(e.to_string().contains("in use by live task"), "{e}");
    // An explicit sender that is not a service number keeps today's behaviour.
    let t2 = running_task(&mut c, "plain");
    let mut p = spec(seg.id, slices);
    p.from = Some("10690000".into());
    let b2 = c.create_bulk(t2, &p).expect("bulk");
    c.plan(b2, now).expect("plan");
    assert_eq!(launch::load_bulk(&c.conn, b2).expect("bulk").source, None);
    assert!(routing::of_task(&c.conn, t2).expect("ext").is_none());
}

#[test]
fn a_reply_waits_for_the_contact_of_the_task_its_extension_names() {
    let mut c = Campaigns::in_memory().expect("store");
    c.load_synthetic(3, 1).expect("city");
    let t1 = running_task(&mut c, "asks");
    let t2 = running_task(&mut c, "later");
    routing::assign(&c.conn, t1, SN, None, 1).expect("extension");
    // Only task 2's contact is committed so far.
    c.conn
        .execute(
            "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer, campaign_type, at)
             VALUES (0, ?1, 0, 0, 'A', 'sms', '', '', 10)",
            [t2],
        )
        .expect("contact");
    let from = c.table.msisdn(0).expect("msisdn").to_string();
    let r = |to: &str| reply(&from, to, "Y", "2026-03-05T04:00:00Z");
    let ext1 = format!("{SN}0001");
    assert!(feedback::awaits_contact(&c.conn, &c.table, &r(&ext1)).expect("q"));
    assert!(!feedback::awaits_contact(&c.conn, &c.table, &r(SN)).expect("q"));
    // Unknown senders never wait.
    let stranger = reply("13900000000", &ext1, "Y", "2026-03-05T04:00:00Z");
    assert!(!feedback::awaits_contact(&c.conn, &c.table, &stranger).expect("q"));
    // Applied anyway (after the hold), it is not credited to task 2.
    assert_eq!(apply(&c, &r(&ext1)), ReplyOutcome::Unattributed);
    assert_eq!(totals(&c.funnel(t2).expect("funnel")), (0, 0, 0));
}
