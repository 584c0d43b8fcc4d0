//! Shared helpers for the integration tests.
//!
//! `FakeGateway` is a test double for the sluice gateway (which is being built in parallel):
//! it records every batch and, like the real ingress (docs/http-api.md), returns the first
//! id again for a repeated `client_ref`.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use sluice_campaign::Campaigns;
use sluice_campaign::approval::{self, Actor, Subject};
use sluice_campaign::dispatch::{DispatchError, Dispatched, Dispatcher, OutboundMessage, Refusal};
use sluice_campaign::groups::GroupSpec;
use sluice_campaign::launch::{BulkSpec, SliceSpec};
use sluice_campaign::lifecycle::{self, TaskState};
use sluice_campaign::rules::{Channel, ContactPolicy};

/// Runs after each dispatch call with the 1-based call number.
pub type Hook = Box<dyn Fn(usize) + Send + Sync>;

#[derive(Default)]
pub struct GatewayState {
    pub batches: Vec<Vec<OutboundMessage>>,
    pub ids: HashMap<String, String>,
    pub duplicates: usize,
    /// Tags the campaign service asked to stop (`name`, `value`).
    pub cancelled: Vec<(String, String)>,
}

/// Records batches; can fail (after storing, like a lost response) on chosen calls, and can
/// run a hook after each call (e.g. an operator pausing the task).
#[derive(Clone, Default)]
pub struct FakeGateway {
    pub state: Arc<Mutex<GatewayState>>,
    pub calls: Arc<AtomicUsize>,
    /// 1-based call numbers whose response is "lost" (stored, but an error is returned).
    pub lose_response_on: Arc<Mutex<Vec<usize>>>,
    pub after_call: Arc<Mutex<Option<Hook>>>,
    /// Destinations the gateway's public rules refuse, with the reason (never stored, no id).
    pub refuse: Arc<Mutex<HashMap<String, String>>>,
}

impl FakeGateway {
    pub fn sent_refs(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<String> = s.ids.keys().cloned().collect();
        v.sort();
        v
    }
    pub fn messages(&self) -> Vec<OutboundMessage> {
        self.state
            .lock()
            .unwrap()
            .batches
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Dispatcher for FakeGateway {
    async fn cancel_tag(
        &self,
        name: &str,
        value: &str,
    ) -> Result<serde_json::Value, DispatchError> {
        let mut s = self.state.lock().unwrap();
        s.cancelled.push((name.to_owned(), value.to_owned()));
        let matched = s
            .batches
            .iter()
            .flatten()
            .filter(|m| m.tags.get(name).map(String::as_str) == Some(value))
            .count();
        Ok(serde_json::json!({"stop": s.cancelled.len(), "cancelled": matched}))
    }

    async fn dispatch(&self, batch: &[OutboundMessage]) -> Result<Vec<Dispatched>, DispatchError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let refuse = self.refuse.lock().unwrap().clone();
        let ids = {
            let mut s = self.state.lock().unwrap();
            s.batches.push(batch.to_vec());
            let mut ids = Vec::new();
            for m in batch {
                if let Some(reason) = refuse.get(&m.to) {
                    ids.push(Err(Refusal {
                        reason: reason.clone(),
                    }));
                    continue;
                }
                let next = format!("gw{}", s.ids.len() + 1);
                if s.ids.contains_key(&m.client_ref) {
                    s.duplicates += 1;
                }
                let id = s.ids.entry(m.client_ref.clone()).or_insert(next).clone();
                ids.push(Ok(id));
            }
            ids
        };
        if let Some(h) = &*self.after_call.lock().unwrap() {
            h(call);
        }
        if self.lose_response_on.lock().unwrap().contains(&call) {
            return Err(DispatchError::Transport(
                "connection reset (simulated)".into(),
            ));
        }
        Ok(ids)
    }
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The user `name` of the root organisation (a planner, or an approver when `approver`),
/// bootstrapping the root and creating the user when the store has none yet.
pub fn person(c: &mut Campaigns, name: &str, approver: bool) -> Actor {
    use sluice_campaign::identity::{self, Role};
    let _ = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0).unwrap();
    let root = identity::root_org(&c.conn).unwrap().unwrap();
    let found: Option<i64> = c
        .conn
        .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
        .ok();
    let role = if approver {
        Role::Approver
    } else {
        Role::Planner
    };
    let user_id = found.unwrap_or_else(|| {
        identity::create_user(&c.conn, name, root, &[role], None, None, 0).unwrap()
    });
    Actor {
        user_id,
        user: name.into(),
        org_id: root,
        can_approve: approver,
    }
}

/// Planner `maker` of the root organisation.
pub fn maker(c: &mut Campaigns) -> Actor {
    person(c, "maker", false)
}

/// Approver `checker` of the root organisation.
pub fn checker(c: &mut Campaigns) -> Actor {
    person(c, "checker", true)
}

/// Takes `subject` through the root organisation's default chain: maker submits, checker
/// approves.
pub fn approve(c: &mut Campaigns, subject: Subject) {
    let (maker, checker) = (maker(c), checker(c));
    let root = [maker.org_id];
    approval::submit(&mut c.conn, subject, &root, &maker, 0, "").unwrap();
    approval::approve(&mut c.conn, subject, &checker, 0, "ok").unwrap();
}

/// Creates a task and moves it to `running` (through the approval chain).
pub fn running_task(c: &mut Campaigns, name: &str) -> i64 {
    let t = lifecycle::create_task(&c.conn, None, name, 0).unwrap();
    approve(c, Subject::Task(t));
    for (s, who) in [
        (TaskState::Scheduled, "maker"),
        (TaskState::Running, "system"),
    ] {
        c.transition(t, s, who, ts("2026-03-01T00:00:00Z"), "")
            .unwrap();
    }
    t
}

pub fn spec(segment: i64, slices: Vec<SliceSpec>) -> BulkSpec {
    BulkSpec {
        segment,
        template: "{brand}用户您好，{region}流量包特惠".into(),
        group_templates: Default::default(),
        channel: Channel::Sms,
        push: None,
        mms: None,
        lane: Default::default(),
        from: Some("10086".into()),
        extension: None,
        offer: "DATA10".into(),
        campaign_type: "promo".into(),
        groups: GroupSpec::None,
        policy: ContactPolicy::default(),
        custom_lists: Vec::new(),
        slices,
        timezone: "Asia/Shanghai".into(),
        batch_size: 10_000,
    }
}

pub fn slice(start: &str, window: Option<&str>) -> SliceSpec {
    SliceSpec {
        start: ts(start),
        window: window.map(str::to_owned),
    }
}

/// Inserts a contact-history row directly (history from earlier campaigns / other systems).
pub fn insert_contact(c: &Campaigns, sub: u32, channel: &str, offer: &str, ctype: &str, at: i64) {
    c.conn
        .execute(
            "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer, campaign_type, at)
             VALUES (?1, 0, 0, 0, '', ?2, ?3, ?4, ?5)",
            rusqlite::params![sub, channel, offer, ctype, at],
        )
        .unwrap();
}

/// API keys of the users the HTTP tests act as, all in the root organisation.
pub struct Keys {
    pub admin: String,
    pub maker: String,
    pub checker: String,
    pub ops: String,
}

/// Bootstraps the root organisation and an admin, and adds a planner (`maker`), an
/// approver (`checker`) and an operator (`ops`), each with an API key.
pub fn identities(c: &mut Campaigns) -> Keys {
    use sluice_campaign::identity::{self, Role};
    let b = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
        .unwrap()
        .unwrap();
    let key = |name: &str, role: Role| {
        let u =
            identity::create_user(&c.conn, name, b.org, &[role], None, Some(b.user), 0).unwrap();
        identity::create_key(&c.conn, u, "test", None, 0)
            .unwrap()
            .key
    };
    Keys {
        maker: key("maker", Role::Planner),
        checker: key("checker", Role::Approver),
        ops: key("ops", Role::Operator),
        admin: b.key,
    }
}
