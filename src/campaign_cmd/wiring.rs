//! The campaign service inside the gateway process (issue 7: in-process by default).
//!
//! Three pieces, each usable on its own by `serve`, `sluice demo` and the tests:
//! - [`mount`]: the campaign HTTP API ([`sluice_campaign::api::router`], with the approval
//!   routes of [`sluice_campaign::approval_api::router`], the approver's inbox of
//!   [`sluice_campaign::inbox::router`] and the event / trigger routes of
//!   [`sluice_campaign::trigger_api`], whose matcher it starts) nested under `/v1/campaign`,
//!   plus `POST /v1/events` (the same intake at the issue's path) and the web console
//!   ([`sluice_campaign::console::router`]) at `/console/`, with an [`HttpDispatcher`] that launches through the gateway's own
//!   `POST /v1/messages` — the same contract external campaign platforms use, so idempotent
//!   `client_ref`s and durable acks apply unchanged.
//! - [`spawn_ticker`]: runs [`api::tick`] periodically so slices whose window opens later
//!   (or tasks resumed by another process) get a runner.
//! - [`spawn_feedback`]: turns the receipt layer's in-process [`Notification`]s into
//!   [`FeedbackEvent`]s ([`to_feedback`]) and applies them in batches, one SQLite
//!   transaction per batch.
//! - [`mo_settings`]: the reply routing the service gets from the gateway config (the
//!   sending account's service numbers, so each task sends from `service number +
//!   extension`, and the unsubscribe keywords).
//!
//! Invariant of the feedback consumer: a receipt or reply that overtakes the campaign's own
//! record of the contact is not lost. The gateway can deliver a message and get its DLR back
//! before `launch::run` has committed the batch's contact rows (it commits after the gateway
//! acknowledged the batch), so a receipt carrying campaign tags that matches no contact is
//! held and retried every `retry_every` for up to `hold_for`; a reply from a known
//! subscriber with no contact row yet (of the task its extension names, or of any task) is
//! held the same way and, once the contact exists, dated no earlier than now (the contact
//! row's `at` is the commit time, and attribution needs `contact.at <= reply.at`). Held items past `hold_for` are applied as they are
//! (counted unmatched / unattributed). The broadcast channel can lag: lost events are
//! counted in [`FeedbackCounts::lagged`], never silently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use jiff::Timestamp;
use sluice_campaign::Campaigns;
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::approval_api;
use sluice_campaign::console;
use sluice_campaign::dispatch::HttpDispatcher;
use sluice_campaign::feedback::{self, FeedbackEvent, MoReply, Receipt, ReplyOutcome, Shared};
use sluice_campaign::inbox;
use sluice_campaign::manage_api;
use sluice_campaign::routing::MoSettings;
use sluice_campaign::trigger_api;
use sluice_campaign::webhook_guard::WebhookGuard;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::receipt::Notification;
use crate::store::MessageState;

/// Campaign API state with the gateway's HTTP API as its dispatcher.
pub type CampaignApi = Arc<ApiState<HttpDispatcher>>;

/// Builds the campaign API under `/v1/campaign` for a gateway reachable at `gateway_url`
/// (e.g. `http://127.0.0.1:8080`) with account key `api_key`.
///
/// Merge the returned router into the gateway's (`router.merge(campaign)`), or serve it on
/// its own listener; keep the state for [`spawn_ticker`].
pub fn mount(svc: Shared, gateway_url: &str, api_key: &str) -> (Router, CampaignApi) {
    let st = ApiState::new(
        Arc::clone(&svc),
        Arc::new(HttpDispatcher::new(gateway_url, api_key)),
    );
    // Triggered tasks: the matcher runs while the router lives (woken by each intake).
    let triggers = trigger_api::TriggerRuntime::new(Arc::clone(&st));
    triggers.spawn(Duration::from_secs(1));
    let router = Router::new()
        .nest(
            "/v1/campaign",
            api::router(Arc::clone(&st))
                .merge(approval_api::router().with_state(Arc::clone(&st)))
                .merge(inbox::router().with_state(Arc::clone(&st)))
                .merge(manage_api::router(svc))
                .merge(trigger_api::routes(Arc::clone(&triggers))),
        )
        .merge(trigger_api::events_router(triggers))
        .merge(console::router());
    (router, st)
}

/// The gateway's webhook endpoints of a campaign service running apart from the gateway
/// (`sluice campaign serve`): `/v1/campaign/webhooks/receipts` and `/replies`, each request
/// checked by `guard` against the account's `webhook_secret`. In-process services get
/// feedback from the receipt layer directly ([`InProcess`]) and need no webhooks.
pub fn webhooks(svc: Shared, guard: Arc<WebhookGuard>) -> Router {
    Router::new().nest(
        "/v1/campaign/webhooks",
        feedback::webhook_router(svc, guard),
    )
}

/// The campaign service's reply routing from the gateway config: the service numbers of the
/// account `api_key` belongs to (the account the service sends with; none when the key is
/// unknown) and the `[campaign] unsubscribe_keywords`. Set it as [`Campaigns::mo`] before
/// the first launch.
pub fn mo_settings(config: &crate::config::Config, api_key: &str) -> MoSettings {
    MoSettings {
        service_numbers: config
            .account_for_key(api_key)
            .map(|a| a.service_numbers.clone())
            .unwrap_or_default(),
        unsubscribe_keywords: config.campaign.unsubscribe_keywords.clone(),
    }
}

/// The campaign service's users with the operator role (or admin), by API key or console
/// session, as operators of the gateway's public rules, pauses and stops — so an operator
/// logged into the console needs no gateway account key. Recorded as `campaign:<user>`.
pub struct CampaignOperators(pub Shared);

impl crate::rules::OperatorAuth for CampaignOperators {
    fn operator(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        let token = crate::bearer::token(headers)?;
        let resolve = || {
            let c = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sluice_campaign::identity::resolve(&c.conn, token, Timestamp::now().as_second()).ok()
        };
        // The service's lock may be held for seconds (a launch being planned): on a
        // gateway worker, wait as a blocking thread so the worker's other tasks (an
        // emergency stop's sweep among them) move on meanwhile.
        let on_workers = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let caller = if on_workers {
            tokio::task::block_in_place(resolve)
        } else {
            resolve()
        }?;
        caller
            .may(sluice_campaign::identity::Action::Operate)
            .then(|| format!("campaign:{}", caller.user))
    }
}

/// Calls [`api::tick`] every `every` until `stop` turns true.
pub fn spawn_ticker(
    st: CampaignApi,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = api::tick(&st) {
                tracing::warn!(error = %e, "Campaign tick failed.");
            }
        }
    })
}

/// The campaign service running beside a gateway: API state, feedback consumer, ticker.
///
/// `serve` integration (not wired yet: `serve::start` has no hook for extra routes). In
/// `serve::start`, right after `Receipts::new` and before `channels::spawn` (so the
/// subscription sees every receipt), with the HTTP listener bound first so its address is
/// known:
///
/// ```text
/// let svc = Arc::new(Mutex::new(Campaigns::open(&config.storage.path.join("campaign.db"))?));
/// let (campaign_router, campaign) = InProcess::start(svc, &receipts,
///     &format!("http://{http_addr}"), &campaign_key, FeedbackConfig::default(),
///     Duration::from_secs(5));
/// let app = router(Arc::clone(&state)).merge(campaign_router);
/// // shutdown: after the receipt tasks have drained, `campaign.shutdown().await`.
/// ```
///
/// `campaign_key` must be a plaintext key of an account (config keeps only SHA-256
/// hashes), e.g. from `SLUICE_CAMPAIGN_KEY`, or serve mints a random key at start and adds
/// its hash to an internal account. `sluice demo` does exactly this outside `serve`: it
/// serves the router on its own listener next to the gateway.
pub struct InProcess {
    /// API state (spawn runners, tick).
    pub api: CampaignApi,
    /// Feedback counters.
    pub counts: Arc<FeedbackCounts>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("counts", &self.counts)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// Subscribes to `receipts`, starts the feedback consumer and a ticker (`tick_every`),
    /// and returns the `/v1/campaign` router for a gateway at `gateway_url`.
    pub fn start(
        svc: Shared,
        receipts: &crate::receipt::Receipts,
        gateway_url: &str,
        api_key: &str,
        feedback: FeedbackConfig,
        tick_every: Duration,
    ) -> (Router, Self) {
        let (stop, stop_rx) = watch::channel(false);
        let counts = Arc::new(FeedbackCounts::default());
        let consumer = spawn_feedback(
            Arc::clone(&svc),
            receipts.subscribe(),
            feedback,
            Arc::clone(&counts),
            stop_rx.clone(),
        );
        let (router, api) = mount(svc, gateway_url, api_key);
        let ticker = spawn_ticker(Arc::clone(&api), tick_every, stop_rx);
        (
            router,
            Self {
                api,
                counts,
                stop,
                tasks: vec![consumer, ticker],
            },
        )
    }

    /// Applies what is queued, gives up on held events, stops the ticker.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The receipt-layer state as the campaign service spells it (`None` while not final).
pub fn receipt_state(s: MessageState) -> Option<&'static str> {
    s.is_final().then(|| s.as_str())
}

/// Adapter from the gateway's notification to the campaign service's feedback event.
/// Non-final receipts (never published today) map to `None`. Unparsable times fall back to
/// "unknown" (the service then uses its own clock).
pub fn to_feedback(n: &Notification) -> Option<FeedbackEvent> {
    match n {
        Notification::Receipt(r) => Some(FeedbackEvent::Receipt(Receipt {
            id: Some(r.id.to_string()),
            state: receipt_state(r.state)?.to_owned(),
            done_at: r.done_at.parse().ok(),
            tags: r.tags.clone(),
        })),
        Notification::Mo(m) => Some(FeedbackEvent::Reply(MoReply {
            from: m.from.clone(),
            to: m.to.clone(),
            text: m.text.clone(),
            received_at: m.received_at.parse().unwrap_or_else(|_| Timestamp::now()),
        })),
    }
}

/// Counters of the feedback consumer (shared; read them while it runs).
#[derive(Debug, Default)]
pub struct FeedbackCounts {
    /// Receipts applied to a contact.
    pub receipts_matched: AtomicU64,
    /// Receipts that matched no contact (not ours, or given up after `hold_for`).
    pub receipts_unmatched: AtomicU64,
    /// Replies attributed to a contact (conversions), by extension or by the fallback.
    pub replies_attributed: AtomicU64,
    /// Of `replies_attributed`: replies to no known extension, credited to the subscriber's
    /// latest contact (the fallback rule).
    pub replies_fallback: AtomicU64,
    /// Replies recorded without a contact to attribute them to.
    pub replies_unattributed: AtomicU64,
    /// Unsubscribe replies (number put on the do-not-disturb list; never conversions).
    pub unsubscribes: AtomicU64,
    /// Events lost because the consumer lagged behind the broadcast channel.
    pub lagged: AtomicU64,
    /// Events that failed to apply (store errors; logged).
    pub failed: AtomicU64,
    /// Events that overtook their contact row and were held for a retry (at first hold).
    pub held: AtomicU64,
}

impl FeedbackCounts {
    /// Receipts seen and settled (matched or given up).
    pub fn receipts(&self) -> u64 {
        self.receipts_matched.load(Ordering::Relaxed)
            + self.receipts_unmatched.load(Ordering::Relaxed)
    }

    /// Replies seen and settled (conversions, unattributed and unsubscribes).
    pub fn replies(&self) -> u64 {
        self.replies_attributed.load(Ordering::Relaxed)
            + self.replies_unattributed.load(Ordering::Relaxed)
            + self.unsubscribes.load(Ordering::Relaxed)
    }
}

/// Feedback consumer settings.
#[derive(Debug, Clone, Copy)]
pub struct FeedbackConfig {
    /// How long an event that overtook its contact row is retried.
    pub hold_for: Duration,
    /// Retry period for held events.
    pub retry_every: Duration,
    /// Most events applied in one transaction.
    pub max_batch: usize,
    /// Most events held at once (beyond it the oldest is applied as is).
    pub max_held: usize,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            hold_for: Duration::from_secs(60),
            retry_every: Duration::from_millis(200),
            max_batch: 2048,
            max_held: 200_000,
        }
    }
}

struct Held {
    event: FeedbackEvent,
    since: Instant,
}

/// Consumes `rx` (from `Receipts::subscribe`) into the campaign store until `stop` turns
/// true or the channel closes. Subscribe *before* anything is sent, or early receipts are
/// missed.
pub fn spawn_feedback(
    svc: Shared,
    mut rx: broadcast::Receiver<Notification>,
    cfg: FeedbackConfig,
    counts: Arc<FeedbackCounts>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut held: VecDeque<Held> = VecDeque::new();
        let mut retry = tokio::time::interval(cfg.retry_every);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        loop {
            let mut fresh = Vec::new();
            tokio::select! {
                r = rx.recv(), if open => match r {
                    Ok(n) => {
                        fresh.extend(to_feedback(&n));
                        while fresh.len() < cfg.max_batch {
                            match rx.try_recv() {
                                Ok(n) => fresh.extend(to_feedback(&n)),
                                Err(broadcast::error::TryRecvError::Lagged(k)) => {
                                    counts.lagged.fetch_add(k, Ordering::Relaxed);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        tracing::warn!(lost = k, "Campaign feedback lagged; events lost.");
                        counts.lagged.fetch_add(k, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => open = false,
                },
                _ = retry.tick(), if !held.is_empty() => {}
                _ = stop.wait_for(|s| *s) => {
                    // Apply what is already queued, then give up on what is held.
                    while let Ok(n) = rx.try_recv() {
                        fresh.extend(to_feedback(&n));
                    }
                    apply_round(&svc, fresh, &mut held, &cfg, &counts, true);
                    return;
                }
            }
            if !open && held.is_empty() && fresh.is_empty() {
                return;
            }
            apply_round(&svc, fresh, &mut held, &cfg, &counts, !open);
        }
    })
}

/// Applies held (retry) and fresh events in one transaction.
fn apply_round(
    svc: &Shared,
    fresh: Vec<FeedbackEvent>,
    held: &mut VecDeque<Held>,
    cfg: &FeedbackConfig,
    counts: &FeedbackCounts,
    final_round: bool,
) {
    let now = Instant::now();
    let mut todo: Vec<(FeedbackEvent, Option<Instant>)> =
        held.drain(..).map(|h| (h.event, Some(h.since))).collect();
    todo.extend(fresh.into_iter().map(|e| (e, None)));
    if todo.is_empty() {
        return;
    }
    let guard = svc
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let c: &Campaigns = &guard;
    let tx = match c.conn.unchecked_transaction() {
        Ok(tx) => tx,
        Err(e) => {
            tracing::warn!(error = %e, "Campaign feedback: cannot open a transaction; retrying.");
            held.extend(todo.into_iter().map(|(event, since)| Held {
                event,
                since: since.unwrap_or(now),
            }));
            return;
        }
    };
    for (event, since) in todo {
        let expired = final_round || since.is_some_and(|s| now.duration_since(s) >= cfg.hold_for);
        let must_apply = expired || held.len() >= cfg.max_held;
        match apply_one(c, &tx, &event, since.is_some(), must_apply) {
            Ok(Outcome::Hold) => {
                if since.is_none() {
                    counts.held.fetch_add(1, Ordering::Relaxed);
                }
                held.push_back(Held {
                    event,
                    since: since.unwrap_or(now),
                });
            }
            Ok(Outcome::Receipt(true)) => {
                counts.receipts_matched.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Outcome::Receipt(false)) => {
                counts.receipts_unmatched.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Outcome::Reply(o)) => {
                let counter = match o {
                    ReplyOutcome::Extension => &counts.replies_attributed,
                    ReplyOutcome::LatestContact => {
                        counts.replies_fallback.fetch_add(1, Ordering::Relaxed);
                        &counts.replies_attributed
                    }
                    ReplyOutcome::Unsubscribe => &counts.unsubscribes,
                    ReplyOutcome::Unattributed => &counts.replies_unattributed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "Campaign feedback event rejected.");
            }
        }
    }
    if let Err(e) = tx.commit() {
        // Nothing of this round is stored; the counters above overstate by this round.
        counts.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "Campaign feedback commit failed.");
    }
}

enum Outcome {
    Hold,
    Receipt(bool),
    Reply(ReplyOutcome),
}

fn apply_one(
    c: &Campaigns,
    conn: &rusqlite::Connection,
    event: &FeedbackEvent,
    was_held: bool,
    must_apply: bool,
) -> sluice_campaign::Result<Outcome> {
    let now = Timestamp::now();
    match event {
        FeedbackEvent::Receipt(r) => {
            let matched = feedback::apply_receipt(conn, r, now.as_second())?;
            let ours = r.tags.contains_key("task") && r.tags.contains_key("subscriber");
            if !matched && ours && !must_apply {
                return Ok(Outcome::Hold);
            }
            Ok(Outcome::Receipt(matched))
        }
        FeedbackEvent::Reply(m) => {
            if !must_apply && feedback::awaits_contact(conn, &c.table, m)? {
                return Ok(Outcome::Hold);
            }
            let mut m = m.clone();
            if was_held {
                m.received_at = m.received_at.max(now);
            }
            Ok(Outcome::Reply(feedback::apply_reply(
                conn,
                &c.table,
                &m,
                feedback::DEFAULT_WINDOW_DAYS,
                &c.mo,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::receipt::mo::MoEvent;
    use crate::store::{MessageId, ReceiptEvent};

    fn receipt(state: MessageState) -> Notification {
        Notification::Receipt(Arc::new(ReceiptEvent {
            id: MessageId(1),
            client_ref: Some("t1-s2-0".into()),
            to: "13800138000".into(),
            state,
            stat: "DELIVRD".into(),
            err: "000".into(),
            parts: 1,
            submitted_at: None,
            done_at: "2026-11-26T03:00:00Z".into(),
            callback_url: None,
            tags: BTreeMap::from([("task".into(), "1".into())]),
            kind: crate::store::MessageKind::Sms,
            lane: crate::store::Lane::Marketing,
            original: None,
        }))
    }

    #[test]
    fn final_receipts_map_to_campaign_states() {
        let Some(FeedbackEvent::Receipt(r)) = to_feedback(&receipt(MessageState::Undeliverable))
        else {
            panic!("a final receipt maps to a receipt");
        };
        assert_eq!(r.state, "undeliverable");
        assert_eq!(r.id, Some(MessageId(1).to_string()));
        assert_eq!(r.tags["task"], "1");
        assert_eq!(r.done_at, Some("2026-11-26T03:00:00Z".parse().expect("ts")));
        assert!(to_feedback(&receipt(MessageState::Sent)).is_none());
        for s in feedback::RECEIPT_STATES {
            let st: MessageState = serde_json::from_value(s.into()).expect("known state");
            assert_eq!(receipt_state(st), Some(s));
        }
    }

    #[test]
    fn mo_maps_to_reply() {
        let n = Notification::Mo(MoEvent {
            account: None,
            from: "+8613800138000".into(),
            to: "10690000".into(),
            text: "Y".into(),
            received_at: "2026-11-26T03:00:01Z".into(),
        });
        let Some(FeedbackEvent::Reply(r)) = to_feedback(&n) else {
            panic!("MO maps to a reply");
        };
        assert_eq!((r.from.as_str(), r.text.as_str()), ("+8613800138000", "Y"));
        assert_eq!(r.received_at, "2026-11-26T03:00:01Z".parse().expect("ts"));
    }

    /// Polls `cond` until it holds; the bound only stops a broken build from hanging.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..2000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn receipt_and_reply_that_overtake_the_contact_row_are_held_then_applied() {
        use sluice_campaign::approval;
        use sluice_campaign::groups::GroupSpec;
        use sluice_campaign::launch::{self, BulkSpec, Next, SliceSpec};
        use sluice_campaign::lifecycle::{self, TaskState};
        use sluice_campaign::rules::{Channel, ContactPolicy};

        let now = Timestamp::now();
        let mut c = Campaigns::in_memory().expect("store");
        c.load_synthetic(20, 1).expect("city");
        let seg = c
            .segment_from_condition("all", "age >= 0", now)
            .expect("segment");
        let task = lifecycle::create_task(&c.conn, None, "t", now.as_second()).expect("task");
        // A planner and an approver of the root organisation (actors are real users).
        let root = sluice_campaign::identity::bootstrap(&mut c.conn, "P", "admin", None, None, 0)
            .expect("bootstrap")
            .expect("fresh store")
            .org;
        let actor = |name: &str, role| approval::Actor {
            user_id: sluice_campaign::identity::create_user(
                &c.conn,
                name,
                root,
                &[role],
                None,
                None,
                0,
            )
            .expect("user"),
            user: name.into(),
            org_id: root,
            can_approve: role == sluice_campaign::identity::Role::Approver,
        };
        let (planner, approver) = (
            actor("planner", sluice_campaign::identity::Role::Planner),
            actor("approver", sluice_campaign::identity::Role::Approver),
        );
        let subject = approval::Subject::Task(task);
        approval::submit(&mut c.conn, subject, &[root], &planner, 0, "").expect("submit");
        approval::approve(&mut c.conn, subject, &approver, 0, "").expect("approve");
        for to in [TaskState::Scheduled, TaskState::Running] {
            c.transition(task, to, "test", now, "").expect("transition");
        }
        let spec = BulkSpec {
            segment: seg.id,
            template: "hi".into(),
            group_templates: BTreeMap::new(),
            channel: Channel::Sms,
            push: None,
            mms: None,
            lane: sluice_campaign::dispatch::Lane::Marketing,
            from: None,
            extension: None,
            offer: "o".into(),
            campaign_type: String::new(),
            groups: GroupSpec::None,
            policy: ContactPolicy::default(),
            custom_lists: Vec::new(),
            slices: vec![SliceSpec {
                start: now - jiff::SignedDuration::from_secs(10),
                window: None,
            }],
            timezone: sluice_campaign::window::DEFAULT_TZ.into(),
            batch_size: 5,
        };
        let bulk = c.create_bulk(task, &spec).expect("bulk");
        c.plan(bulk, now).expect("plan");
        let Next::Batch(batch) =
            launch::next_batch(&mut c.conn, &c.table, bulk, now).expect("batch")
        else {
            panic!("a batch is due");
        };
        let svc: Shared = Arc::new(std::sync::Mutex::new(c));
        let (tx, rx) = broadcast::channel(16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let counts = Arc::new(FeedbackCounts::default());
        let cfg = FeedbackConfig {
            retry_every: Duration::from_millis(5),
            ..FeedbackConfig::default()
        };
        let consumer = spawn_feedback(Arc::clone(&svc), rx, cfg, Arc::clone(&counts), stop_rx);

        // The gateway answers, delivers and gets a receipt and a reply back before the
        // campaign commits the batch's contact rows.
        let ids: Vec<String> = (1..=batch.messages.len() as u64)
            .map(|i| MessageId(i).to_string())
            .collect();
        let mut ev = match receipt(MessageState::Delivered) {
            Notification::Receipt(r) => Arc::unwrap_or_clone(r),
            Notification::Mo(_) => unreachable!(),
        };
        ev.id = MessageId(1);
        ev.tags = batch.messages[0].tags.clone();
        tx.send(Notification::Receipt(Arc::new(ev)))
            .expect("receiver");
        tx.send(Notification::Mo(MoEvent {
            account: None,
            from: batch.messages[1].to.clone(),
            to: "10690000".into(),
            text: "Y".into(),
            received_at: (now - jiff::SignedDuration::from_secs(5)).to_string(),
        }))
        .expect("receiver");
        eventually("both held", || counts.held.load(Ordering::Relaxed) == 2).await;
        assert_eq!(counts.receipts(), 0);
        assert_eq!(counts.replies(), 0);

        {
            let mut g = svc.lock().expect("lock");
            let outcomes: Vec<_> = ids.iter().cloned().map(Ok).collect();
            launch::commit_batch(&mut g.conn, &batch, &outcomes, Timestamp::now().as_second())
                .expect("commit");
        }
        eventually("both applied", || {
            counts.receipts_matched.load(Ordering::Relaxed) == 1
                && counts.replies_attributed.load(Ordering::Relaxed) == 1
        })
        .await;
        let funnel = svc.lock().expect("lock").funnel(task).expect("funnel");
        assert_eq!(funnel.len(), 1);
        assert_eq!(
            (funnel[0].sent, funnel[0].delivered, funnel[0].converted),
            (5, 1, 1)
        );
        drop(tx);
        consumer
            .await
            .expect("consumer ends when the channel closes");
        assert_eq!(counts.receipts_unmatched.load(Ordering::Relaxed), 0);
    }
}
