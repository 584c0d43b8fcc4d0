//! Launch, dispatch, pause/resume/restart and slice windows against a fake gateway
//! (a test double: the real gateway is being built in parallel; `http_dispatcher.rs`
//! covers the HTTP contract).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::*;
use sluice_campaign::groups::{GroupSpec, Variant};
use sluice_campaign::launch::{self, RunError, RunOutcome};
use sluice_campaign::lifecycle::TaskState;
use sluice_campaign::rules::{self, Cap, Channel, ContactPolicy, Reason};
use sluice_campaign::{CampaignError, Campaigns};

fn city(path: &std::path::Path, n: u32) -> (Campaigns, i64) {
    let mut c = Campaigns::open(path).unwrap();
    c.load_synthetic(n, 11).unwrap();
    let seg = c
        .segment_from_condition("everyone", "arpu >= 0", ts("2026-03-01T00:00:00Z"))
        .unwrap();
    assert_eq!(seg.count, u64::from(n));
    (c, seg.id)
}

fn contacts(c: &Campaigns, task: i64) -> Vec<(u32, u32, String)> {
    let mut st = c
        .conn
        .prepare("SELECT sub_id, slice, grp FROM contacts WHERE task_id = ?1 ORDER BY sub_id")
        .unwrap();
    st.query_map([task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn launch_sends_each_non_control_member_once_with_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 2_000);
    let task = running_task(&mut c, "spring");
    let mut s = spec(seg, vec![slice("2026-03-05T00:00:00+08:00", None)]);
    s.batch_size = 300;
    s.groups = GroupSpec::Random {
        seed: 7,
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
        control_share: 0.1,
    };
    s.group_templates
        .insert("B".into(), "{city|本地}专享：{plan}".into());
    let bulk = c.create_bulk(task, &s).unwrap();
    let plan = c.plan(bulk, ts("2026-03-04T00:00:00Z")).unwrap();
    assert_eq!(plan.audience, 2_000);
    assert_eq!(plan.groups.iter().map(|g| g.count).sum::<u64>(), 2_000);
    let control = plan.groups.iter().find(|g| g.is_control).unwrap().count;
    assert!(control > 120 && control < 280, "{control}");
    assert_eq!(plan.slices, vec![2_000 - control]);
    // Planning again is idempotent (a restart never re-draws the audience).
    assert_eq!(c.plan(bulk, ts("2026-03-04T01:00:00Z")).unwrap(), plan);

    let gw = FakeGateway::default();
    let svc = Mutex::new(c);
    let out = launch::run(&svc, &gw, bulk, || ts("2026-03-05T02:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        out,
        RunOutcome::Finished {
            sent: 2_000 - control
        }
    );
    let c = svc.into_inner().unwrap();
    let msgs = gw.messages();
    assert_eq!(msgs.len() as u64, 2_000 - control);
    assert!(
        gw.state
            .lock()
            .unwrap()
            .batches
            .iter()
            .all(|b| b.len() <= 300)
    );
    let groups: BTreeMap<String, roaring::RoaringBitmap> = launch::groups(&c.conn, bulk)
        .unwrap()
        .into_iter()
        .map(|(n, _, m)| (n, m))
        .collect();
    let mut seen = BTreeSet::new();
    for m in &msgs {
        let sub: u32 = m.tags["subscriber"].parse().unwrap();
        assert!(seen.insert(sub), "subscriber {sub} sent twice");
        assert_eq!(m.tags["task"], task.to_string());
        assert!(groups[&m.tags["group"]].contains(sub));
        assert!(!groups["control"].contains(sub));
        assert_eq!(m.client_ref, format!("t{task}-s{sub}-0"));
        assert_eq!(m.to, c.table.msisdn(sub).unwrap().to_string());
        assert_eq!(m.kind, "sms");
        let row = c.table.row(sub).unwrap();
        let want = if m.tags["group"] == "B" {
            format!("{}专享：{}", row.city, row.plan)
        } else {
            format!("{}用户您好，{}流量包特惠", row.brand, row.region)
        };
        assert_eq!(m.text.as_deref(), Some(want.as_str()));
        assert_eq!(m.si, None);
    }
    assert_eq!(contacts(&c, task).len(), msgs.len());
}

/// A bulk send on channel `wap_push` becomes SI messages: the template is the SI text, the
/// push href a template with percent-encoded values, and no plain text is sent.
#[tokio::test]
async fn wap_push_bulk_sends_service_indications() {
    use sluice_campaign::template::PushSpec;
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 50);
    let task = running_task(&mut c, "push");
    let mut s = spec(seg, vec![slice("2026-03-05T00:00:00+08:00", None)]);
    s.channel = Channel::WapPush;
    let e = c.create_bulk(task, &s).unwrap_err().to_string();
    assert!(e.contains("push"), "{e}");
    s.push = Some(PushSpec {
        href: "https://m.sluice.com/o?p={plan}".into(),
        action: Some("signal-high".into()),
    });
    let bulk = c.create_bulk(task, &s).unwrap();
    c.plan(bulk, ts("2026-03-04T00:00:00Z")).unwrap();
    let gw = FakeGateway::default();
    let svc = Mutex::new(c);
    launch::run(&svc, &gw, bulk, || ts("2026-03-05T02:00:00Z"))
        .await
        .unwrap();
    let c = svc.into_inner().unwrap();
    let msgs = gw.messages();
    assert_eq!(msgs.len(), 50);
    for m in &msgs {
        let sub: u32 = m.tags["subscriber"].parse().unwrap();
        let row = c.table.row(sub).unwrap();
        assert_eq!(m.kind, "wap_push");
        assert_eq!(m.text, None);
        let si = m.si.as_ref().expect("si");
        assert_eq!(
            si.text,
            format!("{}用户您好，{}流量包特惠", row.brand, row.region)
        );
        assert!(
            si.href.starts_with("https://m.sluice.com/o?p="),
            "{}",
            si.href
        );
        assert!(si.href.is_ascii() && !si.href.contains(' '), "{}", si.href);
        assert_eq!(si.action.as_deref(), Some("signal-high"));
        let json = serde_json::to_value(m).unwrap();
        assert!(json.get("text").is_none(), "{json}");
        assert_eq!(json["si"]["text"], si.text);
    }
    // push on another channel is refused.
    let mut sms = spec(seg, vec![slice("2026-03-05T00:00:00+08:00", None)]);
    sms.push = s.push.clone();
    let e = c.create_bulk(task, &sms).unwrap_err().to_string();
    assert!(e.contains("only for channel wap_push"), "{e}");
}

/// A bulk send on channel `mms` becomes `kind: "mms"` messages: no plain text, the subject,
/// the first image then the subscriber's rendered template, then further slides with their
/// own per-subscriber texts.
#[tokio::test]
async fn mms_bulk_sends_multimedia_messages_with_per_subscriber_text() {
    use sluice_campaign::template::{MmsSlide, MmsSpec};
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 40);
    let task = running_task(&mut c, "mms");
    let mut s = spec(seg, vec![slice("2026-03-05T00:00:00+08:00", None)]);
    s.channel = Channel::Mms;
    let e = c.create_bulk(task, &s).unwrap_err().to_string();
    assert!(e.contains("mms"), "{e}");
    s.mms = Some(MmsSpec {
        subject: Some("春季特惠".into()),
        image: Some("https://cdn.sluice.com/spring.jpg".into()),
        slides: vec![MmsSlide {
            image: Some("https://cdn.sluice.com/plan.png".into()),
            text: Some("套餐：{plan}".into()),
        }],
    });
    let mut bad = s.clone();
    bad.mms.as_mut().unwrap().slides[0].text = Some("{nope}".into());
    let e = c.create_bulk(task, &bad).unwrap_err().to_string();
    assert!(e.contains("mms.slides") && e.contains("[0].text"), "{e}");
    let bulk = c.create_bulk(task, &s).unwrap();
    c.plan(bulk, ts("2026-03-04T00:00:00Z")).unwrap();
    let gw = FakeGateway::default();
    let svc = Mutex::new(c);
    launch::run(&svc, &gw, bulk, || ts("2026-03-05T02:00:00Z"))
        .await
        .unwrap();
    let c = svc.into_inner().unwrap();
    let msgs = gw.messages();
    assert_eq!(msgs.len(), 40);
    let mut texts = BTreeSet::new();
    for m in &msgs {
        let sub: u32 = m.tags["subscriber"].parse().unwrap();
        let row = c.table.row(sub).unwrap();
        assert_eq!(m.kind, "mms");
        assert_eq!(m.text, None);
        assert_eq!(m.si, None);
        assert_eq!(m.subject.as_deref(), Some("春季特惠"));
        let parts = m.parts.as_ref().expect("parts");
        let first = format!("{}用户您好，{}流量包特惠", row.brand, row.region);
        let json = serde_json::to_value(m).unwrap();
        assert_eq!(
            json["parts"],
            serde_json::json!([
                {"url": "https://cdn.sluice.com/spring.jpg"},
                {"text": first},
                {"url": "https://cdn.sluice.com/plan.png"},
                {"text": format!("套餐：{}", row.plan)},
            ]),
            "{json}"
        );
        assert!(json.get("text").is_none(), "{json}");
        texts.insert(parts[1].text.clone());
    }
    assert!(texts.len() > 1, "texts are per subscriber");
    // Counted per channel like any send: the contact history says mms.
    let n: i64 = c
        .conn
        .query_row(
            "SELECT COUNT(*) FROM contacts WHERE task_id = ?1 AND channel = 'mms'",
            [task],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 40);
    // mms on another channel is refused.
    let mut sms = spec(seg, vec![slice("2026-03-05T00:00:00+08:00", None)]);
    sms.mms = s.mms.clone();
    let e = c.create_bulk(task, &sms).unwrap_err().to_string();
    assert!(e.contains("only for channel mms"), "{e}");
}

#[tokio::test]
async fn only_scheduled_or_running_tasks_send() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 50);
    let t = sluice_campaign::lifecycle::create_task(&c.conn, None, "t", 0).unwrap();
    let bulk = c
        .create_bulk(t, &spec(seg, vec![slice("2026-03-05T00:00:00Z", None)]))
        .unwrap();
    let task = sluice_campaign::approval::Subject::Task(t);
    assert!(matches!(
        c.plan(bulk, ts("2026-03-05T00:00:00Z")),
        Err(CampaignError::NotSendable { .. })
    ));
    let (planner, approver) = (maker(&mut c), checker(&mut c));
    let root = [planner.org_id];
    sluice_campaign::approval::submit(&mut c.conn, task, &root, &planner, 0, "").unwrap();
    assert!(matches!(
        c.plan(bulk, ts("2026-03-05T00:00:00Z")),
        Err(CampaignError::NotSendable {
            state: TaskState::Submitted,
            ..
        })
    ));
    sluice_campaign::approval::approve(&mut c.conn, task, &approver, 0, "").unwrap();
    assert!(matches!(
        c.plan(bulk, ts("2026-03-05T00:00:00Z")),
        Err(CampaignError::NotSendable {
            state: TaskState::Approved,
            ..
        })
    ));
    c.transition(t, TaskState::Scheduled, "x", ts("2026-03-05T00:00:00Z"), "")
        .unwrap();
    c.plan(bulk, ts("2026-03-05T00:00:00Z")).unwrap();
    // Scheduled but not yet running: the runner does not start sending.
    let gw = FakeGateway::default();
    let svc = Mutex::new(c);
    let out = launch::run(&svc, &gw, bulk, || ts("2026-03-05T01:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        out,
        RunOutcome::Stopped {
            sent: 0,
            state: TaskState::Scheduled
        }
    );
    assert!(gw.messages().is_empty());
}

#[tokio::test]
async fn pause_resume_and_restart_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (mut c, seg) = city(&path, 1_000);
    let task = running_task(&mut c, "blast");
    let mut s = spec(
        seg,
        vec![
            slice("2026-03-05T00:00:00Z", None),
            slice("2026-03-05T00:00:00Z", None),
        ],
    );
    s.batch_size = 90;
    let bulk = c.create_bulk(task, &s).unwrap();
    c.plan(bulk, ts("2026-03-05T00:00:00Z")).unwrap();
    let svc = Arc::new(Mutex::new(c));
    let gw = FakeGateway::default();
    // An operator pauses the task while the 3rd batch is at the gateway.
    {
        let svc2 = Arc::clone(&svc);
        *gw.after_call.lock().unwrap() = Some(Box::new(move |call| {
            if call == 3 {
                svc2.lock()
                    .unwrap()
                    .transition(
                        task,
                        TaskState::Paused,
                        "ops",
                        ts("2026-03-05T01:00:00Z"),
                        "hold",
                    )
                    .unwrap();
            }
        }));
    }
    let now = || ts("2026-03-05T01:00:00Z");
    let out = launch::run(&svc, &gw, bulk, now).await.unwrap();
    assert_eq!(
        out,
        RunOutcome::Stopped {
            sent: 270,
            state: TaskState::Paused
        }
    );
    // Paused: another run does nothing.
    assert_eq!(
        launch::run(&svc, &gw, bulk, now).await.unwrap(),
        RunOutcome::Stopped {
            sent: 0,
            state: TaskState::Paused
        }
    );
    *gw.after_call.lock().unwrap() = None;
    // During the pause a pending subscriber of slice 0 (already checked when the slice
    // started) complains and is blacklisted; resuming re-arms the dispatch-time check.
    let late = {
        let c = svc.lock().unwrap();
        let states = launch::slice_states(&c.conn, bulk).unwrap();
        let late = states[0].members.iter().nth(300).unwrap();
        let n = c.table.msisdn(late).unwrap().to_string();
        rules::add_to_list(
            &c.conn,
            &c.table,
            rules::ListKind::Blacklist,
            None,
            "",
            &[&n],
        )
        .unwrap();
        late
    };
    svc.lock()
        .unwrap()
        .transition(task, TaskState::Running, "ops", now(), "go")
        .unwrap();
    // The response of call 6 (3rd after resume) is lost: the batch is stored at the gateway,
    // but we never learn the ids.
    gw.lose_response_on.lock().unwrap().push(6);
    let err = launch::run(&svc, &gw, bulk, now).await.unwrap_err();
    assert!(matches!(err, RunError::Dispatch { sent: 180, .. }), "{err}");
    let committed = contacts(&svc.lock().unwrap(), task).len();
    assert_eq!(committed, 450);
    // "Crash": drop everything and reopen from disk.
    drop(svc);
    let c = Campaigns::open(&path).unwrap();
    assert_eq!(c.table.len(), 1_000);
    let states = launch::slice_states(&c.conn, bulk).unwrap();
    assert_eq!(
        states[0].cursor,
        states[0].members.iter().nth(449).unwrap() + 1
    );
    let svc = Mutex::new(c);
    let out = launch::run(&svc, &gw, bulk, now).await.unwrap();
    assert_eq!(out, RunOutcome::Finished { sent: 549 });
    let c = svc.into_inner().unwrap();
    assert_eq!(
        launch::exclusions(&c.conn, bulk, "dispatch").unwrap(),
        [(Reason::Blacklist, 1)].into()
    );
    let rows = contacts(&c, task);
    assert_eq!(
        rows.len(),
        999,
        "everyone but the blacklisted one, exactly once"
    );
    let subs: BTreeSet<u32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(subs.len(), 999);
    assert!(!subs.contains(&late));
    // The gateway saw each client_ref; only the lost batch was re-sent, and it deduplicated.
    assert_eq!(gw.sent_refs().len(), 999);
    // Call 6 was the last 49 of slice 0 (499 = 5 × 90 + 49).
    assert_eq!(gw.state.lock().unwrap().duplicates, 49);
    // Slices split evenly and the client_ref carries the slice.
    assert_eq!(rows.iter().filter(|r| r.1 == 1).count(), 500);
    // Each contact row holds the gateway's id for its message.
    let ids: i64 = c
        .conn
        .query_row(
            "SELECT COUNT(DISTINCT gateway_id) FROM contacts WHERE task_id = ?1",
            [task],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ids, 999);
}

#[tokio::test]
async fn slices_send_only_inside_their_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 400);
    let task = running_task(&mut c, "day5");
    let s = spec(
        seg,
        vec![
            slice("2026-03-05T00:00:00+08:00", Some("10:00-11:00")),
            slice("2026-03-06T00:00:00+08:00", Some("10:00-11:00")),
        ],
    );
    let bulk = c.create_bulk(task, &s).unwrap();
    c.plan(bulk, ts("2026-03-04T00:00:00Z")).unwrap();
    let gw = FakeGateway::default();
    let svc = Mutex::new(c);
    let at = |s: &'static str| move || ts(s);
    assert_eq!(
        launch::run(&svc, &gw, bulk, at("2026-03-05T09:59:00+08:00"))
            .await
            .unwrap(),
        RunOutcome::Waiting { sent: 0 }
    );
    assert_eq!(
        launch::run(&svc, &gw, bulk, at("2026-03-05T10:30:00+08:00"))
            .await
            .unwrap(),
        RunOutcome::Waiting { sent: 200 }
    );
    assert_eq!(
        launch::run(&svc, &gw, bulk, at("2026-03-06T11:30:00+08:00"))
            .await
            .unwrap(),
        RunOutcome::Waiting { sent: 0 }
    );
    assert_eq!(
        launch::run(&svc, &gw, bulk, at("2026-03-06T10:00:00+08:00"))
            .await
            .unwrap(),
        RunOutcome::Finished { sent: 200 }
    );
    let msgs = gw.messages();
    assert!(
        msgs.iter()
            .all(|m| m.window.as_deref() == Some("10:00-11:00"))
    );
    assert_eq!(
        msgs.iter().filter(|m| m.client_ref.ends_with("-1")).count(),
        200
    );
    let c = svc.into_inner().unwrap();
    let day6: i64 = c
        .conn
        .query_row(
            "SELECT COUNT(*) FROM contacts WHERE slice = 1 AND at = ?1",
            [ts("2026-03-06T10:00:00+08:00").as_second()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(day6, 200);
}

#[tokio::test]
async fn caps_apply_across_tasks_at_launch_and_again_before_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 300);
    let t1 = running_task(&mut c, "first");
    let t2 = running_task(&mut c, "second");
    let t3 = running_task(&mut c, "third");
    let capped = |seg| {
        let mut s = spec(seg, vec![slice("2026-03-05T00:00:00Z", None)]);
        s.offer = String::new();
        s.campaign_type = String::new();
        s.policy = ContactPolicy {
            caps: vec![Cap {
                channel: Some(Channel::Sms),
                max: 1,
                period_days: 7,
            }],
            ..Default::default()
        };
        s
    };
    let b1 = c.create_bulk(t1, &capped(seg)).unwrap();
    let b2 = c.create_bulk(t2, &capped(seg)).unwrap();
    // t2 is planned before t1 sends: nobody is capped yet at launch.
    c.plan(b1, ts("2026-03-05T00:00:00Z")).unwrap();
    let p2 = c.plan(b2, ts("2026-03-05T00:00:00Z")).unwrap();
    assert!(p2.excluded.is_empty());
    let gw = FakeGateway::default();
    let svc = Mutex::new(c);
    let now = || ts("2026-03-05T01:00:00Z");
    assert_eq!(
        launch::run(&svc, &gw, b1, now).await.unwrap(),
        RunOutcome::Finished { sent: 300 }
    );
    // The dispatch-time check of t2's slice sees t1's contacts.
    assert_eq!(
        launch::run(&svc, &gw, b2, now).await.unwrap(),
        RunOutcome::Finished { sent: 0 }
    );
    let mut c = svc.into_inner().unwrap();
    assert_eq!(
        launch::exclusions(&c.conn, b2, "dispatch").unwrap(),
        [(Reason::ChannelCap, 300)].into()
    );
    // A task launched afterwards is capped at launch already; 8 days later it is not.
    let b3 = c.create_bulk(t3, &capped(seg)).unwrap();
    let p3 = c.plan(b3, ts("2026-03-05T02:00:00Z")).unwrap();
    assert_eq!(p3.excluded, [(Reason::ChannelCap, 300)].into());
    let t4 = running_task(&mut c, "later");
    let b4 = c.create_bulk(t4, &capped(seg)).unwrap();
    assert!(
        c.plan(b4, ts("2026-03-13T02:00:00Z"))
            .unwrap()
            .excluded
            .is_empty()
    );
}

/// Subscribers the gateway's public rules refuse are excluded in phase `dispatch` under the
/// rule (`public:do_not_disturb/sms`), get no contact row, and the rest is sent.
#[tokio::test]
async fn lines_refused_by_public_rules_become_dispatch_exclusions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, seg) = city(&dir.path().join("c.db"), 200);
    let task = running_task(&mut c, "public-rules");
    let mut s = spec(seg, vec![slice("2026-03-05T00:00:00+08:00", None)]);
    s.batch_size = 50;
    let bulk = c.create_bulk(task, &s).unwrap();
    let plan = c.plan(bulk, ts("2026-03-04T00:00:00Z")).unwrap();
    let sendable = plan.slices[0];
    let gw = FakeGateway::default();
    // Refuse the first three subscribers of the slice (in id order).
    let members = launch::groups(&c.conn, bulk)
        .unwrap()
        .into_iter()
        .filter(|(_, control, _)| !control)
        .fold(roaring::RoaringBitmap::new(), |acc, (_, _, m)| acc | m);
    let refused: Vec<u32> = members.iter().take(3).collect();
    {
        let mut r = gw.refuse.lock().unwrap();
        for (i, sub) in refused.iter().enumerate() {
            let reason = if i < 2 {
                "blocked: do_not_disturb/sms"
            } else {
                "blocked: channel_cap/sms"
            };
            r.insert(c.table.msisdn(*sub).unwrap().to_string(), reason.to_owned());
        }
    }
    let svc = Mutex::new(c);
    let out = launch::run(&svc, &gw, bulk, || ts("2026-03-05T02:00:00Z"))
        .await
        .unwrap();
    assert_eq!(out, RunOutcome::Finished { sent: sendable - 3 });
    let c = svc.into_inner().unwrap();
    let rows = contacts(&c, task);
    assert_eq!(rows.len() as u64, sendable - 3);
    assert!(rows.iter().all(|(sub, _, _)| !refused.contains(sub)));
    let dispatch = launch::exclusion_report(&c.conn, bulk, "dispatch").unwrap();
    assert_eq!(dispatch.get("public:do_not_disturb/sms"), Some(&2));
    assert_eq!(dispatch.get("public:channel_cap/sms"), Some(&1));
}

/// A receipt can overtake the commit of its batch (the gateway reports the message before
/// the runner recorded the contact, above all when the service died between the gateway's
/// acknowledgement and the commit): such a receipt awaits the commit — the webhook answers
/// 409 so the gateway retries it — while one whose cursor has passed, or of a finished
/// task, does not.
#[tokio::test]
async fn receipts_of_an_uncommitted_batch_await_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (mut c, seg) = city(&path, 300);
    let task = running_task(&mut c, "blast");
    let mut s = spec(seg, vec![slice("2026-03-05T00:00:00Z", None)]);
    s.batch_size = 100;
    let bulk = c.create_bulk(task, &s).unwrap();
    c.plan(bulk, ts("2026-03-05T00:00:00Z")).unwrap();
    let members: Vec<u32> = launch::slice_states(&c.conn, bulk).unwrap()[0]
        .members
        .iter()
        .collect();
    let svc = Mutex::new(c);
    let gw = FakeGateway::default();
    // The answer to the 2nd batch is lost: stored at the gateway, not committed here.
    gw.lose_response_on.lock().unwrap().push(2);
    let now = || ts("2026-03-05T01:00:00Z");
    assert!(launch::run(&svc, &gw, bulk, now).await.is_err());
    let receipt = |sub: u32| sluice_campaign::feedback::Receipt {
        id: None,
        state: "delivered".into(),
        done_at: None,
        tags: BTreeMap::from([
            ("task".to_owned(), task.to_string()),
            ("bulk".to_owned(), bulk.to_string()),
            ("subscriber".to_owned(), sub.to_string()),
        ]),
    };
    let (first, lost) = (members[0], members[100]);
    {
        let c = svc.lock().unwrap();
        let apply = |sub| sluice_campaign::feedback::apply_receipt(&c.conn, &receipt(sub), 1);
        assert!(apply(first).unwrap(), "a committed contact matches");
        assert!(!launch::awaiting_commit(&c.conn, bulk, first).unwrap());
        assert!(!apply(lost).unwrap(), "no contact row yet");
        assert!(launch::awaiting_commit(&c.conn, bulk, lost).unwrap());
        // Not a member of the bulk at all: nothing to wait for.
        let outsider = (0..400).find(|s| !members.contains(s)).unwrap();
        assert!(!launch::awaiting_commit(&c.conn, bulk, outsider).unwrap());
    }
    // The re-run re-sends the batch (same client_refs) and commits it: the receipt matches.
    let out = launch::run(&svc, &gw, bulk, now).await.unwrap();
    assert!(matches!(out, RunOutcome::Finished { .. }), "{out:?}");
    let c = svc.into_inner().unwrap();
    assert!(sluice_campaign::feedback::apply_receipt(&c.conn, &receipt(lost), 1).unwrap());
    assert!(!launch::awaiting_commit(&c.conn, bulk, lost).unwrap());
    assert!(!launch::awaiting_commit(&c.conn, bulk, *members.last().unwrap()).unwrap());
}
