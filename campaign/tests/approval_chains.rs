//! Approval chains end to end on a province → city → county tree: order of the steps, 报备
//! filing, self-approval, reject → revise → resubmit, cancel, the scheduling gate and the
//! trail.

use axum::http::StatusCode;
use serde_json::json;
use sluice_campaign::approval::{
    self, Action, Actor, ApprovalError, ApprovalState, ChainStep, Level, StepAction, Subject,
    SubjectKind, TrailEntry,
};
use sluice_campaign::identity::{self, OrgLevel, Role};
use sluice_campaign::lifecycle::{self, Blocked, TaskState};
use sluice_campaign::{CampaignError, Campaigns};

// The tree and the users `service` creates, in this order, in a fresh store (ids are the
// SQLite row ids; `service` checks them).
const PROVINCE: i64 = 1;
const CITY: i64 = 2;
const COUNTY: i64 = 3;
/// A county object's ancestry: its organisation first, the root last.
const ANCESTRY: [i64; 3] = [COUNTY, CITY, PROVINCE];

fn user(user_id: i64, user: &str, org_id: i64, can_approve: bool) -> Actor {
    Actor {
        user_id,
        user: user.into(),
        org_id,
        can_approve,
    }
}

fn planner() -> Actor {
    user(2, "county-planner", COUNTY, false)
}
fn county() -> Actor {
    user(3, "county-approver", COUNTY, true)
}
fn county2() -> Actor {
    user(4, "county-approver-2", COUNTY, true)
}
fn city() -> Actor {
    user(5, "city-approver", CITY, true)
}
fn province() -> Actor {
    user(6, "province-approver", PROVINCE, true)
}

/// A store with the province → city → county tree, its admin (user 1) and the users above.
fn service() -> Campaigns {
    let mut c = Campaigns::in_memory().expect("store");
    let b = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
        .unwrap()
        .unwrap();
    assert_eq!(b.org, PROVINCE);
    let city_id = identity::create_org(&c.conn, "City", Some(b.org), OrgLevel::City).unwrap();
    let county_id =
        identity::create_org(&c.conn, "County", Some(city_id), OrgLevel::County).unwrap();
    assert_eq!((city_id, county_id), (CITY, COUNTY));
    assert_eq!(identity::ancestry(&c.conn, COUNTY).unwrap(), ANCESTRY);
    for a in [planner(), county(), county2(), city(), province()] {
        let role = if a.can_approve {
            Role::Approver
        } else {
            Role::Planner
        };
        let id = identity::create_user(&c.conn, &a.user, a.org_id, &[role], None, None, 0).unwrap();
        assert_eq!(id, a.user_id);
    }
    c
}

fn configure(c: &Campaigns, org: i64, kind: SubjectKind, steps: serde_json::Value) {
    approval::set_chain(&c.conn, org, kind, &steps, 1).expect("valid chain");
}

fn three_levels() -> serde_json::Value {
    json!([
        {"level": "self", "action": "approve"},
        {"level": "parent", "action": "approve"},
        {"level": "root", "action": "approve"},
    ])
}

fn task(c: &Campaigns) -> Subject {
    Subject::Task(lifecycle::create_task(&c.conn, None, "sms", 0).expect("task"))
}

fn awaiting(c: &Campaigns, s: Subject) -> Option<i64> {
    approval::status(&c.conn, s).expect("status").awaiting_org
}

#[test]
fn three_level_chain_is_enforced_in_order() {
    let mut c = service();
    configure(&c, COUNTY, SubjectKind::Task, three_levels());
    let t = task(&c);
    let st = approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 10, "please").unwrap();
    assert_eq!(
        (st.state, st.round, st.step, st.awaiting_org),
        (ApprovalState::Pending, 1, 0, Some(COUNTY))
    );
    assert_eq!(st.submitted_by.as_deref(), Some("county-planner"));
    assert_eq!(
        lifecycle::task_state(&c.conn, t.id()).unwrap(),
        TaskState::Submitted
    );

    // The province and the city cannot approve at the county step.
    for early in [province(), city()] {
        let e = approval::approve(&mut c.conn, t, &early, 11, "").unwrap_err();
        assert!(
            matches!(e, ApprovalError::NotYourStep { step: 0, awaiting_org: COUNTY, org_id } if org_id == early.org_id),
            "{e}"
        );
        assert_eq!(e.http_status(), StatusCode::FORBIDDEN);
    }
    let st = approval::approve(&mut c.conn, t, &county(), 12, "county ok").unwrap();
    assert_eq!((st.step, st.awaiting_org), (1, Some(CITY)));

    // The county approver cannot approve a second time, nor can the province jump ahead.
    for again in [county(), province()] {
        let e = approval::approve(&mut c.conn, t, &again, 13, "").unwrap_err();
        assert!(
            matches!(
                e,
                ApprovalError::NotYourStep {
                    step: 1,
                    awaiting_org: CITY,
                    ..
                }
            ),
            "{e}"
        );
    }
    approval::approve(&mut c.conn, t, &city(), 14, "city ok").unwrap();
    assert_eq!(awaiting(&c, t), Some(PROVINCE));
    assert_eq!(
        lifecycle::task_state(&c.conn, t.id()).unwrap(),
        TaskState::Submitted,
        "not approved before the last step"
    );
    let st = approval::approve(&mut c.conn, t, &province(), 15, "province ok").unwrap();
    assert_eq!(
        (st.state, st.step, st.awaiting_org),
        (ApprovalState::Approved, 3, None)
    );
    assert_eq!(
        lifecycle::task_state(&c.conn, t.id()).unwrap(),
        TaskState::Approved
    );
    let e = approval::approve(&mut c.conn, t, &province(), 16, "").unwrap_err();
    assert!(
        matches!(
            e,
            ApprovalError::NotPending {
                state: ApprovalState::Approved,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.http_status(), StatusCode::CONFLICT);

    // The trail: who, when, which step and organisation, with the comments; refusals left
    // no trace.
    let entry = |step, org, action, actor: &Actor, at, comment: &str| TrailEntry {
        round: 1,
        step,
        org_id: Some(org),
        action,
        actor_id: Some(actor.user_id),
        actor: actor.user.clone(),
        at,
        comment: comment.into(),
    };
    assert_eq!(
        approval::trail(&c.conn, t).unwrap(),
        vec![
            entry(None, COUNTY, Action::Submit, &planner(), 10, "please"),
            entry(Some(0), COUNTY, Action::Approve, &county(), 12, "county ok"),
            entry(Some(1), CITY, Action::Approve, &city(), 14, "city ok"),
            entry(
                Some(2),
                PROVINCE,
                Action::Approve,
                &province(),
                15,
                "province ok"
            ),
        ]
    );
    // The task history shows the same moves, the last approver completing the chain.
    let h = lifecycle::history(&c.conn, t.id()).unwrap();
    let moves: Vec<_> = h.iter().map(|m| (m.from, m.to, m.actor.as_str())).collect();
    assert_eq!(
        moves,
        [
            (TaskState::Draft, TaskState::Submitted, "county-planner"),
            (
                TaskState::Submitted,
                TaskState::Approved,
                "province-approver"
            ),
        ]
    );
}

#[test]
fn a_file_step_passes_at_once_and_is_recorded() {
    let mut c = service();
    configure(
        &c,
        COUNTY,
        SubjectKind::Task,
        json!([
            {"level": "self", "action": "approve"},
            {"level": "parent", "action": "file"},
            {"level": "root", "action": "approve"},
        ]),
    );
    let t = task(&c);
    approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 1, "").unwrap();
    let st = approval::approve(&mut c.conn, t, &county(), 2, "").unwrap();
    // Filed with the city on the way: the province is next.
    assert_eq!((st.step, st.awaiting_org), (2, Some(PROVINCE)));
    let e = approval::approve(&mut c.conn, t, &city(), 3, "").unwrap_err();
    assert!(matches!(
        e,
        ApprovalError::NotYourStep {
            awaiting_org: PROVINCE,
            ..
        }
    ));
    let filed = &approval::trail(&c.conn, t).unwrap()[2];
    assert_eq!(
        filed,
        &TrailEntry {
            round: 1,
            step: Some(1),
            org_id: Some(CITY),
            action: Action::File,
            actor_id: None,
            actor: approval::SYSTEM_ACTOR.into(),
            at: 2,
            comment: String::new(),
        }
    );

    // A chain that starts by filing passes that step at submit; one that ends by filing
    // completes with the last approval.
    configure(
        &c,
        COUNTY,
        SubjectKind::Activity,
        json!([
            {"level": "self", "action": "file"},
            {"level": "parent", "action": "approve"},
            {"level": "root", "action": "file"},
        ]),
    );
    let camp = lifecycle::create_campaign(&c.conn, "c", 0).unwrap();
    let a = Subject::Activity(lifecycle::create_activity(&c.conn, camp, "a").unwrap());
    let st = approval::submit(&mut c.conn, a, &ANCESTRY, &planner(), 5, "").unwrap();
    assert_eq!((st.step, st.awaiting_org), (1, Some(CITY)));
    let st = approval::approve(&mut c.conn, a, &city(), 6, "").unwrap();
    assert_eq!((st.state, st.step), (ApprovalState::Approved, 3));
    let actions: Vec<_> = approval::trail(&c.conn, a)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.org_id))
        .collect();
    assert_eq!(
        actions,
        [
            (Action::Submit, Some(COUNTY)),
            (Action::File, Some(COUNTY)),
            (Action::Approve, Some(CITY)),
            (Action::File, Some(PROVINCE)),
        ]
    );
}

#[test]
fn nobody_decides_on_what_they_submitted_or_approves_twice() {
    let mut c = service();
    let t = task(&c);
    // Default chain: one approve step at the subject's own organisation.
    approval::submit(&mut c.conn, t, &ANCESTRY, &county(), 1, "").unwrap();
    let e = approval::approve(&mut c.conn, t, &county(), 2, "").unwrap_err();
    assert!(
        matches!(e, ApprovalError::SelfApproval { user_id: 3 }),
        "{e}"
    );
    assert_eq!(e.http_status(), StatusCode::FORBIDDEN);
    let e = approval::reject(&mut c.conn, t, &county(), 2, "no").unwrap_err();
    assert!(matches!(e, ApprovalError::SelfApproval { .. }), "{e}");
    // A planner has no approver role.
    let e = approval::approve(&mut c.conn, t, &planner(), 2, "").unwrap_err();
    assert!(
        matches!(e, ApprovalError::NotApprover { user_id: 2 }),
        "{e}"
    );
    assert_eq!(approval::trail(&c.conn, t).unwrap().len(), 1);
    let st = approval::approve(&mut c.conn, t, &county2(), 3, "").unwrap();
    assert_eq!(st.state, ApprovalState::Approved);

    // Two steps at the same organisation need two different approvers.
    configure(
        &c,
        COUNTY,
        SubjectKind::Task,
        json!([{"level": "self", "action": "approve"}, {"level": "self", "action": "approve"}]),
    );
    let t = task(&c);
    approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 1, "").unwrap();
    approval::approve(&mut c.conn, t, &county(), 2, "").unwrap();
    let e = approval::approve(&mut c.conn, t, &county(), 3, "").unwrap_err();
    assert!(
        matches!(
            e,
            ApprovalError::AlreadyApproved {
                user_id: 3,
                step: 0
            }
        ),
        "{e}"
    );
    approval::approve(&mut c.conn, t, &county2(), 3, "").unwrap();
    assert_eq!(
        approval::state(&c.conn, t).unwrap(),
        ApprovalState::Approved
    );
}

#[test]
fn reject_revise_resubmit_starts_a_new_round() {
    let mut c = service();
    configure(&c, COUNTY, SubjectKind::Task, three_levels());
    let t = task(&c);
    approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 1, "").unwrap();
    approval::approve(&mut c.conn, t, &county(), 2, "").unwrap();
    let e = approval::reject(&mut c.conn, t, &city(), 3, "  ").unwrap_err();
    assert!(matches!(e, ApprovalError::ReasonRequired));
    assert_eq!(e.http_status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e = approval::reject(&mut c.conn, t, &province(), 3, "no").unwrap_err();
    assert!(matches!(
        e,
        ApprovalError::NotYourStep {
            awaiting_org: CITY,
            ..
        }
    ));
    let st = approval::reject(&mut c.conn, t, &city(), 3, "opt-out text missing").unwrap();
    assert_eq!((st.state, st.awaiting_org), (ApprovalState::Rejected, None));
    assert_eq!(
        lifecycle::task_state(&c.conn, t.id()).unwrap(),
        TaskState::Rejected
    );
    for e in [
        approval::approve(&mut c.conn, t, &city(), 4, "").unwrap_err(),
        approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 4, "").unwrap_err(),
    ] {
        assert_eq!(e.http_status(), StatusCode::CONFLICT, "{e}");
    }
    let st = approval::revise(&mut c.conn, t, &planner(), 5, "added opt-out").unwrap();
    assert_eq!(st.state, ApprovalState::Draft);
    let e = approval::revise(&mut c.conn, t, &planner(), 5, "").unwrap_err();
    assert!(matches!(
        e,
        ApprovalError::WrongState {
            action: Action::Revise,
            state: ApprovalState::Draft,
            ..
        }
    ));
    let st = approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 6, "again").unwrap();
    assert_eq!(
        (st.state, st.round, st.step, st.awaiting_org),
        (ApprovalState::Pending, 2, 0, Some(COUNTY))
    );
    // A new round: the county approver of round 1 approves again.
    approval::approve(&mut c.conn, t, &county(), 7, "").unwrap();
    approval::approve(&mut c.conn, t, &city(), 8, "fixed").unwrap();
    approval::approve(&mut c.conn, t, &province(), 9, "").unwrap();
    let trail = approval::trail(&c.conn, t).unwrap();
    let rounds: Vec<_> = trail.iter().map(|e| (e.round, e.action)).collect();
    assert_eq!(
        rounds,
        [
            (1, Action::Submit),
            (1, Action::Approve),
            (1, Action::Reject),
            (1, Action::Revise),
            (2, Action::Submit),
            (2, Action::Approve),
            (2, Action::Approve),
            (2, Action::Approve),
        ]
    );
    assert_eq!(trail[2].comment, "opt-out text missing");
    assert_eq!((trail[2].step, trail[2].org_id), (Some(1), Some(CITY)));
}

#[test]
fn cancel_before_sending_only() {
    let mut c = service();
    let camp = lifecycle::create_campaign(&c.conn, "spring", 0).unwrap();
    let act = lifecycle::create_activity(&c.conn, camp, "data").unwrap();
    let drafts = [task(&c), task(&c), task(&c)];
    // Draft, pending and rejected cancel.
    approval::submit(&mut c.conn, drafts[1], &ANCESTRY, &planner(), 1, "").unwrap();
    approval::submit(&mut c.conn, drafts[2], &ANCESTRY, &planner(), 1, "").unwrap();
    approval::reject(&mut c.conn, drafts[2], &county(), 2, "no").unwrap();
    for t in drafts {
        let st = approval::cancel(&mut c.conn, t, &planner(), 3, "not needed").unwrap();
        assert_eq!(st.state, ApprovalState::Cancelled);
        assert_eq!(
            lifecycle::task_state(&c.conn, t.id()).unwrap(),
            TaskState::Cancelled
        );
        let e = approval::cancel(&mut c.conn, t, &planner(), 4, "").unwrap_err();
        assert_eq!(e.http_status(), StatusCode::CONFLICT);
        let last = approval::trail(&c.conn, t).unwrap().pop().unwrap();
        assert_eq!(
            (last.action, last.comment.as_str(), last.org_id),
            (Action::Cancel, "not needed", Some(COUNTY))
        );
    }

    // Approved but not yet sending cancels; once scheduled it is the lifecycle's to stop.
    let approve = |c: &mut Campaigns, s: Subject| {
        approval::submit(&mut c.conn, s, &ANCESTRY, &planner(), 5, "").unwrap();
        approval::approve(&mut c.conn, s, &county(), 6, "").unwrap();
    };
    let (campaign, activity) = (Subject::Campaign(camp), Subject::Activity(act));
    approve(&mut c, campaign);
    approve(&mut c, activity);
    let idle = Subject::Task(lifecycle::create_task(&c.conn, Some(act), "idle", 0).unwrap());
    approve(&mut c, idle);
    approval::cancel(&mut c.conn, idle, &planner(), 7, "").unwrap();
    let busy = Subject::Task(lifecycle::create_task(&c.conn, Some(act), "busy", 0).unwrap());
    approve(&mut c, busy);
    lifecycle::transition(&mut c.conn, busy.id(), TaskState::Scheduled, "p", 8, "").unwrap();
    let e = approval::cancel(&mut c.conn, busy, &planner(), 9, "").unwrap_err();
    assert!(
        matches!(
            e,
            ApprovalError::WrongState {
                action: Action::Cancel,
                state: ApprovalState::Approved,
                ..
            }
        ),
        "{e}"
    );
    // Neither its activity nor its campaign cancels while it is sending.
    for parent in [campaign, activity] {
        let e = approval::cancel(&mut c.conn, parent, &planner(), 9, "").unwrap_err();
        assert!(
            matches!(e, ApprovalError::Sending { task, .. } if task == busy.id()),
            "{e}"
        );
        assert_eq!(
            approval::state(&c.conn, parent).unwrap(),
            ApprovalState::Approved
        );
    }
    lifecycle::transition(&mut c.conn, busy.id(), TaskState::Cancelled, "ops", 10, "").unwrap();
    approval::cancel(&mut c.conn, activity, &planner(), 11, "").unwrap();
    assert_eq!(
        approval::state(&c.conn, activity).unwrap(),
        ApprovalState::Cancelled
    );
}

#[test]
fn a_task_cannot_be_scheduled_before_its_activity_and_campaign_are_approved() {
    let mut c = service();
    // Campaigns are approved by the city and the province, activities by the county.
    configure(
        &c,
        COUNTY,
        SubjectKind::Campaign,
        json!([{"level": "parent", "action": "approve"}, {"level": "root", "action": "approve"}]),
    );
    let camp = lifecycle::create_campaign(&c.conn, "spring", 0).unwrap();
    let act = lifecycle::create_activity(&c.conn, camp, "data").unwrap();
    let t = lifecycle::create_task(&c.conn, Some(act), "sms", 0).unwrap();
    let (campaign, activity, task) = (
        Subject::Campaign(camp),
        Subject::Activity(act),
        Subject::Task(t),
    );
    let now = "2026-03-01T00:00:00Z".parse().unwrap();
    let schedule = |c: &mut Campaigns| c.transition(t, TaskState::Scheduled, "planner", now, "");
    // Neither can the task be approved around its chain.
    for to in [TaskState::Submitted, TaskState::Approved] {
        let e = c.transition(t, to, "planner", now, "").unwrap_err();
        assert!(
            matches!(
                e,
                CampaignError::IllegalTransition {
                    why: Blocked::ApprovalChain | Blocked::StateMachine,
                    ..
                }
            ),
            "{e}"
        );
    }
    for s in [task, activity] {
        approval::submit(&mut c.conn, s, &ANCESTRY, &planner(), 1, "").unwrap();
        approval::approve(&mut c.conn, s, &county(), 2, "").unwrap();
    }
    let e = schedule(&mut c).unwrap_err();
    assert!(
        matches!(
            e,
            CampaignError::IllegalTransition {
                why: Blocked::ParentNotApproved {
                    kind: SubjectKind::Campaign,
                    id
                },
                ..
            } if id == camp
        ),
        "{e}"
    );
    assert_eq!(
        approval::unapproved_parent(&c.conn, t).unwrap(),
        Some((SubjectKind::Campaign, camp))
    );
    approval::submit(&mut c.conn, campaign, &ANCESTRY, &planner(), 3, "").unwrap();
    let e = approval::approve(&mut c.conn, campaign, &county(), 4, "").unwrap_err();
    assert!(matches!(
        e,
        ApprovalError::NotYourStep {
            awaiting_org: CITY,
            ..
        }
    ));
    approval::approve(&mut c.conn, campaign, &city(), 4, "").unwrap();
    assert!(
        schedule(&mut c).is_err(),
        "the province has not approved yet"
    );
    approval::approve(&mut c.conn, campaign, &province(), 5, "").unwrap();
    schedule(&mut c).unwrap();
    assert_eq!(
        lifecycle::task_state(&c.conn, t).unwrap(),
        TaskState::Scheduled
    );

    // An unapproved (here: revised) activity blocks its other tasks.
    let t2 = lifecycle::create_task(&c.conn, Some(act), "second", 0).unwrap();
    let c2 = lifecycle::create_activity(&c.conn, camp, "other").unwrap();
    let t3 = lifecycle::create_task(&c.conn, Some(c2), "third", 0).unwrap();
    for s in [Subject::Task(t2), Subject::Task(t3)] {
        approval::submit(&mut c.conn, s, &ANCESTRY, &planner(), 6, "").unwrap();
        approval::approve(&mut c.conn, s, &county(), 7, "").unwrap();
    }
    c.transition(t2, TaskState::Scheduled, "planner", now, "")
        .unwrap();
    let e = c
        .transition(t3, TaskState::Scheduled, "planner", now, "")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("activity {c2} is not approved")),
        "{e}"
    );
}

#[test]
fn chain_configuration_is_validated_naming_step_and_field() {
    let c = service();
    let bad = |steps: serde_json::Value| match approval::set_chain(
        &c.conn,
        COUNTY,
        SubjectKind::Task,
        &steps,
        1,
    )
    .unwrap_err()
    {
        ApprovalError::InvalidChain { at, reason } => (at, reason),
        e => panic!("{e}"),
    };
    let (at, reason) = bad(json!([
        {"level": "self", "action": "approve"},
        {"level": "uncle", "action": "approve"},
    ]));
    assert_eq!(at, "steps[1].level");
    assert!(reason.contains("grandparent"), "{reason}");
    assert_eq!(bad(json!([{"level": "self"}])).0, "steps[0].action");
    assert_eq!(
        bad(json!([{"level": "self", "action": "sign"}])).0,
        "steps[0].action"
    );
    assert_eq!(
        bad(json!([{"level": "self", "action": "approve", "who": 1}])).0,
        "steps[0].who"
    );
    assert_eq!(bad(json!([7])).0, "steps[0]");
    assert_eq!(bad(json!([])).0, "steps");
    assert_eq!(bad(json!({"level": "self"})).0, "steps");
    let (at, reason) = bad(json!([{"level": "parent", "action": "file"}]));
    assert_eq!(at, "steps");
    assert!(reason.contains("approve"), "{reason}");
    assert_eq!(
        approval::set_chain(&c.conn, COUNTY, SubjectKind::Task, &json!([]), 1)
            .unwrap_err()
            .http_status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Nothing was stored: the default chain applies.
    let got = approval::chain(&c.conn, COUNTY, SubjectKind::Task).unwrap();
    assert!(!got.configured);
    assert_eq!(got.steps, approval::DEFAULT_CHAIN);
    let set = approval::set_chain(&c.conn, COUNTY, SubjectKind::Task, &three_levels(), 2).unwrap();
    let got = approval::chain(&c.conn, COUNTY, SubjectKind::Task).unwrap();
    assert!(got.configured);
    assert_eq!(got.steps, set);
    assert_eq!(
        got.steps[2],
        ChainStep {
            level: Level::Root,
            action: StepAction::Approve
        }
    );
    // Chains are per kind and per organisation.
    assert!(
        !approval::chain(&c.conn, COUNTY, SubjectKind::Campaign)
            .unwrap()
            .configured
    );
    assert!(
        !approval::chain(&c.conn, CITY, SubjectKind::Task)
            .unwrap()
            .configured
    );
    assert_eq!(
        "activities".parse::<SubjectKind>().unwrap(),
        SubjectKind::Activity
    );
    assert!("orgs".parse::<SubjectKind>().is_err());
}

#[test]
fn a_round_keeps_the_chain_it_was_submitted_with() {
    let mut c = service();
    let mut c2 = service();
    configure(&c, COUNTY, SubjectKind::Task, three_levels());
    configure(
        &c2,
        COUNTY,
        SubjectKind::Task,
        json!([{"level": "grandparent", "action": "approve"}]),
    );
    // A level above the ancestry's reach is refused at submit and changes nothing.
    let t2 = task(&c2);
    let e = approval::submit(&mut c2.conn, t2, &[COUNTY, CITY], &planner(), 1, "").unwrap_err();
    assert!(
        matches!(
            e,
            ApprovalError::LevelMissing {
                step: 0,
                level: Level::Grandparent,
                depth: 2
            }
        ),
        "{e}"
    );
    assert_eq!(approval::state(&c2.conn, t2).unwrap(), ApprovalState::Draft);
    assert!(approval::trail(&c2.conn, t2).unwrap().is_empty());
    let e = approval::submit(&mut c2.conn, t2, &[], &planner(), 1, "").unwrap_err();
    assert_eq!(e.http_status(), StatusCode::UNPROCESSABLE_ENTITY);

    let t = task(&c);
    approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 1, "").unwrap();
    // Reconfiguring to a single province step does not move the pending round.
    configure(
        &c,
        COUNTY,
        SubjectKind::Task,
        json!([{"level": "root", "action": "approve"}]),
    );
    assert_eq!(awaiting(&c, t), Some(COUNTY));
    approval::approve(&mut c.conn, t, &county(), 2, "").unwrap();
    approval::approve(&mut c.conn, t, &city(), 3, "").unwrap();
    approval::reject(&mut c.conn, t, &province(), 4, "budget").unwrap();
    approval::revise(&mut c.conn, t, &planner(), 5, "").unwrap();
    // The next round takes the new chain.
    let st = approval::submit(&mut c.conn, t, &ANCESTRY, &planner(), 6, "").unwrap();
    assert_eq!(
        (st.round, st.awaiting_org, st.chain.len()),
        (2, Some(PROVINCE), 1)
    );
    // Unknown subjects are 404s.
    let e = approval::submit(
        &mut c.conn,
        Subject::Campaign(77),
        &ANCESTRY,
        &planner(),
        1,
        "",
    )
    .unwrap_err();
    assert_eq!(e.http_status(), StatusCode::NOT_FOUND);
    let e = approval::status(&c.conn, Subject::Task(77)).unwrap_err();
    assert!(matches!(
        e,
        ApprovalError::Campaign(CampaignError::NotFound {
            what: "task",
            id: 77
        })
    ));
}
