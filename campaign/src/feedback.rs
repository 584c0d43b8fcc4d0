//! Feedback into the campaign service: delivery receipts, MO replies, order files.
//!
//! Receipts and replies arrive either in-process ([`FeedbackEvent`] over a tokio channel,
//! see [`consume`]) or as the gateway's webhook JSON (docs/http-api.md; [`webhook_router`]).
//! A receipt is matched to its contact-history row by gateway id, falling back to the
//! `task` + `subscriber` (+ `bulk`) tags. A reply sent to a task's extension
//! (`service number + extension`, [`crate::routing`]) is a conversion of that task's contact
//! of the subscriber; a reply to no known extension falls back to the most recent
//! non-passive contact of that subscriber within the attribution window (counted apart).
//! An unsubscribe keyword is never a conversion: the number goes on the do-not-disturb list
//! of the contact's channel, so the next launch excludes it, and an unsubscribe is recorded
//! ([`apply_reply`]).
//!
//! Orders (CSV `msisdn,offer,time`) are attributed to the latest contact with the same offer
//! within the window before the order; otherwise, if the subscriber is in the hold-out
//! control group of a bulk send for that offer launched within the window, to that control
//! group (so uplift compares like with like). Unmatched orders are counted, not stored.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use jiff::Timestamp;
use roaring::RoaringBitmap;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;

use crate::error::Result;
use crate::import::LineError;
use crate::routing::{self, MoSettings};
use crate::rules::{self, Channel, ListKind};
use crate::service::Campaigns;
use crate::table::SubscriberTable;
use crate::webhook_guard::{self, WebhookGuard};
use crate::{launch, msisdn, window};

const DAY: i64 = 86_400;

/// A delivery receipt (webhook body of docs/http-api.md; unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Receipt {
    /// Gateway message id.
    #[serde(default)]
    pub id: Option<String>,
    /// `delivered`, `undeliverable`, `expired`, `rejected`, `failed` or `cancelled`.
    pub state: String,
    #[serde(default)]
    pub done_at: Option<Timestamp>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A mobile-originated reply (MO webhook body).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct MoReply {
    pub from: String,
    #[serde(default)]
    pub to: String,
    pub text: String,
    pub received_at: Timestamp,
}

/// One feedback item from an in-process stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackEvent {
    Receipt(Receipt),
    Reply(MoReply),
}

/// Receipt states the gateway may report.
pub const RECEIPT_STATES: [&str; 6] = [
    "delivered",
    "undeliverable",
    "expired",
    "rejected",
    "failed",
    "cancelled",
];

/// Applies a receipt; returns whether it matched a contact.
///
/// # Errors
/// [`crate::CampaignError::Invalid`] for an unknown state; SQLite failure.
pub fn apply_receipt(conn: &Connection, r: &Receipt, now: i64) -> Result<bool> {
    if !RECEIPT_STATES.contains(&r.state.as_str()) {
        return Err(crate::CampaignError::invalid(
            "state",
            format!("unknown receipt state {:?}", r.state),
        ));
    }
    let at = r.done_at.map_or(now, Timestamp::as_second);
    if let Some(id) = &r.id {
        let n = conn.execute(
            "UPDATE contacts SET state = ?1, state_at = ?2 WHERE gateway_id = ?3",
            params![r.state, at, id],
        )?;
        if n > 0 {
            return Ok(true);
        }
    }
    let tag = |k: &str| r.tags.get(k).and_then(|v| v.parse::<i64>().ok());
    if let (Some(task), Some(sub)) = (tag("task"), tag("subscriber")) {
        let n = conn.execute(
            "UPDATE contacts SET state = ?1, state_at = ?2
             WHERE task_id = ?3 AND sub_id = ?4 AND (?5 IS NULL OR bulk_id = ?5)",
            params![r.state, at, task, sub, tag("bulk")],
        )?;
        return Ok(n > 0);
    }
    Ok(false)
}

/// How a reply was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyOutcome {
    /// A conversion of the task owning the extension the reply was sent to.
    Extension,
    /// No known extension: a conversion of the subscriber's latest contact (the fallback).
    LatestContact,
    /// An unsubscribe keyword: the number is on the do-not-disturb list of the contact's
    /// channel and the unsubscribe is recorded; never a conversion.
    Unsubscribe,
    /// Recorded only: unknown number, or no contact to attribute it to.
    Unattributed,
}

impl ReplyOutcome {
    /// Stable name (`replies.outcome`, webhook answer).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Extension => "extension",
            Self::LatestContact => "latest_contact",
            Self::Unsubscribe => "unsubscribe",
            Self::Unattributed => "unattributed",
        }
    }

    /// Whether the reply became a conversion.
    pub const fn is_conversion(self) -> bool {
        matches!(self, Self::Extension | Self::LatestContact)
    }
}

/// Name of the do-not-disturb list unsubscribe replies are added to.
pub const UNSUBSCRIBE_LIST: &str = "unsubscribe";

/// The contact a reply is credited to.
struct Hit {
    task: i64,
    bulk: i64,
    grp: String,
    channel: String,
    offer: String,
    /// `extension` or `latest_contact`.
    via: ReplyOutcome,
}

/// The contact of `sub` a reply to `to` at `at` belongs to: the latest contact of the task
/// owning the extension `to` names (newest holder with a contact first), or — when `to`
/// names no known extension — the latest non-passive contact of any task. Also returns the
/// extension's task when there is one (even without a contact).
fn find_contact(
    conn: &Connection,
    sub: u32,
    to: &str,
    at: i64,
    window_days: u32,
) -> Result<(Option<Hit>, Option<i64>)> {
    let since = at - i64::from(window_days) * DAY;
    let row = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    };
    let tasks = routing::resolve(conn, to)?;
    if let Some(&first) = tasks.first() {
        let mut st = conn.prepare_cached(
            "SELECT task_id, bulk_id, grp, channel, offer FROM contacts
             WHERE sub_id = ?1 AND task_id = ?2 AND at <= ?3 AND at >= ?4 AND channel != 'web'
             ORDER BY at DESC, id DESC LIMIT 1",
        )?;
        for t in tasks {
            if let Some((task, bulk, grp, channel, offer)) =
                st.query_row(params![sub, t, at, since], row).optional()?
            {
                let via = ReplyOutcome::Extension;
                let hit = Hit {
                    task,
                    bulk,
                    grp,
                    channel,
                    offer,
                    via,
                };
                return Ok((Some(hit), Some(t)));
            }
        }
        return Ok((None, Some(first)));
    }
    let hit = conn
        .query_row(
            "SELECT task_id, bulk_id, grp, channel, offer FROM contacts
             WHERE sub_id = ?1 AND at <= ?2 AND at >= ?3 AND channel != 'web'
             ORDER BY at DESC, id DESC LIMIT 1",
            params![sub, at, since],
            row,
        )
        .optional()?
        .map(|(task, bulk, grp, channel, offer)| Hit {
            task,
            bulk,
            grp,
            channel,
            offer,
            via: ReplyOutcome::LatestContact,
        });
    Ok((hit, None))
}

/// Whether a reply should wait for its contact row: the sender is a known subscriber and
/// the task its destination's extension names (or, without one, any task) has no contact
/// with it yet. The in-process consumer holds such replies for a while, because the gateway
/// can deliver a reply before the campaign has committed the batch that caused it.
///
/// # Errors
/// SQLite failure.
pub fn awaits_contact(conn: &Connection, table: &SubscriberTable, r: &MoReply) -> Result<bool> {
    let Some(sub) = msisdn::normalize(&r.from).ok().and_then(|n| table.id_of(n)) else {
        return Ok(false);
    };
    let task = routing::resolve(conn, &r.to)?.first().copied();
    let contacted = conn
        .query_row(
            "SELECT 1 FROM contacts WHERE sub_id = ?1 AND (?2 IS NULL OR task_id = ?2) LIMIT 1",
            params![sub, task],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    Ok(!contacted)
}

/// Records a reply and settles it ([`ReplyOutcome`]).
///
/// Routing: a destination naming a task's extension ([`routing::resolve`]) credits that
/// task's latest contact of the subscriber within `window_days`, even when another task
/// contacted the subscriber later; a destination without a known extension falls back to
/// the latest contact of any task (counted apart as [`ReplyOutcome::LatestContact`]). An
/// unsubscribe keyword ([`MoSettings::is_unsubscribe`]) puts the number on the
/// do-not-disturb list [`UNSUBSCRIBE_LIST`] of the credited contact's channel (`sms` when
/// there is none) and records an unsubscribe instead of a conversion (a number that is not a
/// known subscriber cannot be listed; its reply is kept with outcome `unsubscribe`).
///
/// # Errors
/// SQLite failure. Unknown or malformed numbers are recorded as not attributed.
pub fn apply_reply(
    conn: &Connection,
    table: &SubscriberTable,
    r: &MoReply,
    window_days: u32,
    mo: &MoSettings,
) -> Result<ReplyOutcome> {
    let Ok(number) = msisdn::normalize(&r.from) else {
        return Ok(ReplyOutcome::Unattributed);
    };
    let at = r.received_at.as_second();
    let unsubscribe = mo.is_unsubscribe(&r.text);
    let sub = table.id_of(number);
    let (hit, ext_task) = match sub {
        Some(sub) => find_contact(conn, sub, &r.to, at, window_days)?,
        None => (None, None),
    };
    let outcome = match (&hit, unsubscribe) {
        (_, true) => ReplyOutcome::Unsubscribe,
        (Some(h), false) => h.via,
        (None, false) => ReplyOutcome::Unattributed,
    };
    conn.execute(
        "INSERT INTO replies (msisdn, text, at, to_addr, task_id, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            number as i64,
            r.text,
            at,
            r.to,
            hit.as_ref().map(|h| h.task).or(ext_task),
            outcome.as_str()
        ],
    )?;
    let Some(sub) = sub else {
        return Ok(outcome);
    };
    if unsubscribe {
        let channel = hit
            .as_ref()
            .and_then(|h| h.channel.parse::<Channel>().ok())
            .unwrap_or(Channel::Sms);
        let number = number.to_string();
        rules::add_to_list(
            conn,
            table,
            ListKind::DoNotDisturb,
            Some(channel),
            UNSUBSCRIBE_LIST,
            &[number.as_str()],
        )?;
        conn.execute(
            "INSERT INTO unsubscribes (sub_id, task_id, bulk_id, grp, channel, via, text, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                sub,
                hit.as_ref().map(|h| h.task),
                hit.as_ref().map(|h| h.bulk),
                hit.as_ref().map_or("", |h| h.grp.as_str()),
                channel.as_str(),
                hit.as_ref().map_or("none", |h| h.via.as_str()),
                r.text,
                at
            ],
        )?;
        return Ok(outcome);
    }
    if let Some(h) = hit {
        conn.execute(
            "INSERT INTO conversions (sub_id, task_id, bulk_id, grp, channel, kind, offer, at, via)
             VALUES (?1, ?2, ?3, ?4, ?5, 'reply', ?6, ?7, ?8)",
            params![
                sub,
                h.task,
                h.bulk,
                h.grp,
                h.channel,
                h.offer,
                at,
                h.via.as_str()
            ],
        )?;
    }
    Ok(outcome)
}

/// Outcome of an order-file import.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OrdersReport {
    pub rows: u64,
    /// Attributed to a contact.
    pub contacted: u64,
    /// Attributed to a hold-out control group.
    pub control: u64,
    pub unmatched: u64,
    pub errors: Vec<LineError>,
}

fn parse_time(s: &str, tz: &jiff::tz::TimeZone) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let dt: jiff::civil::DateTime = s.replace(' ', "T").parse().ok()?;
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

struct ControlGroup {
    bulk: i64,
    task: i64,
    name: String,
    channel: String,
    offer: String,
    planned_at: i64,
    members: RoaringBitmap,
}

fn control_groups(conn: &Connection) -> Result<Vec<ControlGroup>> {
    let mut st = conn.prepare("SELECT id FROM bulk_sends WHERE planned_at IS NOT NULL")?;
    let ids: Vec<i64> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        let b = launch::load_bulk(conn, id)?;
        for (name, is_control, members) in launch::groups(conn, id)? {
            if is_control {
                out.push(ControlGroup {
                    bulk: id,
                    task: b.task,
                    name,
                    channel: b.spec.channel.as_str().to_owned(),
                    offer: b.spec.offer.clone(),
                    planned_at: b.planned_at.unwrap_or_default(),
                    members,
                });
            }
        }
    }
    Ok(out)
}

/// Imports an order/conversion CSV (`msisdn,offer,time`; time RFC 3339 or local
/// `YYYY-MM-DD HH:MM:SS` in `tz`), attributing within `window_days`.
///
/// # Errors
/// I/O, CSV framing or SQLite failure; bad lines are reported in the report.
pub fn import_orders<R: Read>(
    conn: &mut Connection,
    table: &SubscriberTable,
    input: R,
    window_days: u32,
    tz: &str,
) -> Result<OrdersReport> {
    let tz = window::time_zone(tz)?;
    let controls = control_groups(conn)?;
    let mut rep = OrdersReport::default();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let tx = conn.transaction()?;
    {
        let mut find = tx.prepare_cached(
            "SELECT task_id, bulk_id, grp, channel FROM contacts
             WHERE sub_id = ?1 AND offer = ?2 AND at <= ?3 AND at >= ?4
             ORDER BY at DESC, id DESC LIMIT 1",
        )?;
        let mut ins = tx.prepare_cached(
            "INSERT INTO conversions (sub_id, task_id, bulk_id, grp, channel, kind, offer, at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'order', ?6, ?7)",
        )?;
        let mut trigger_control = tx.prepare_cached(
            "SELECT task_id, channel FROM trigger_control
             WHERE sub_id = ?1 AND offer = ?2 AND at <= ?3 AND at >= ?4
             ORDER BY at DESC LIMIT 1",
        )?;
        let mut rec = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) if e.is_io_error() => return Err(e.into()),
                Err(e) => {
                    rep.rows += 1;
                    let line = e.position().map_or(0, csv::Position::line);
                    rep.errors.push(LineError {
                        line,
                        field: "*".into(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            }
            rep.rows += 1;
            let line = rec.position().map_or(0, csv::Position::line);
            let err = |field: &str, reason: String| LineError {
                line,
                field: field.into(),
                reason,
            };
            let (Some(m), Some(offer), Some(time)) = (rec.get(0), rec.get(1), rec.get(2)) else {
                rep.errors
                    .push(err("*", "expected msisdn,offer,time".into()));
                continue;
            };
            let number = match msisdn::normalize(m) {
                Ok(n) => n,
                Err(e) => {
                    rep.errors.push(err("msisdn", e.to_string()));
                    continue;
                }
            };
            let Some(t) = parse_time(time.trim(), &tz) else {
                rep.errors
                    .push(err("time", format!("not a time: {time:?}")));
                continue;
            };
            let offer = offer.trim();
            let Some(sub) = table.id_of(number) else {
                rep.unmatched += 1;
                continue;
            };
            let at = t.as_second();
            let since = at - i64::from(window_days) * DAY;
            let hit: Option<(i64, i64, String, String)> = find
                .query_row(params![sub, offer, at, since], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            if let Some((task, bulk, grp, channel)) = hit {
                ins.execute(params![sub, task, bulk, grp, channel, offer, at])?;
                rep.contacted += 1;
            } else if let Some((task, channel)) = trigger_control
                .query_row(params![sub, offer, at, since], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            {
                // Held out by a trigger's control share (crate::triggers): no contact, but
                // the order counts for the trigger's control group.
                ins.execute(params![
                    sub,
                    task,
                    0,
                    crate::triggers::CONTROL,
                    channel,
                    offer,
                    at
                ])?;
                rep.control += 1;
            } else if let Some(c) = controls
                .iter()
                .filter(|c| {
                    c.offer == offer
                        && c.planned_at <= at
                        && c.planned_at >= since
                        && c.members.contains(sub)
                })
                .max_by_key(|c| c.planned_at)
            {
                ins.execute(params![sub, c.task, c.bulk, c.name, c.channel, offer, at])?;
                rep.control += 1;
            } else {
                rep.unmatched += 1;
            }
        }
    }
    tx.commit()?;
    Ok(rep)
}

/// Default attribution window for replies and orders.
pub const DEFAULT_WINDOW_DAYS: u32 = 7;

/// Shared service handle used by the routers and stream consumer.
pub type Shared = Arc<Mutex<Campaigns>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Campaigns> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Applies one event.
///
/// # Errors
/// As [`apply_receipt`] / [`apply_reply`].
/// Returns whether a receipt matched a contact, or a reply was attributed (a conversion or
/// an unsubscribe).
pub fn apply_event(c: &Campaigns, ev: &FeedbackEvent, now: Timestamp) -> Result<bool> {
    match ev {
        FeedbackEvent::Receipt(r) => apply_receipt(&c.conn, r, now.as_second()),
        FeedbackEvent::Reply(r) => apply_reply(&c.conn, &c.table, r, DEFAULT_WINDOW_DAYS, &c.mo)
            .map(|o| o != ReplyOutcome::Unattributed),
    }
}

/// Consumes an in-process feedback stream until the sender side closes.
/// Returns (applied and matched, unmatched or failed).
pub async fn consume(
    svc: Shared,
    mut rx: tokio::sync::mpsc::Receiver<FeedbackEvent>,
) -> (u64, u64) {
    let (mut ok, mut miss) = (0, 0);
    while let Some(ev) = rx.recv().await {
        match apply_event(&lock(&svc), &ev, Timestamp::now()) {
            Ok(true) => ok += 1,
            Ok(false) => miss += 1,
            Err(e) => {
                miss += 1;
                tracing::warn!(error = %e, "Feedback event rejected.");
            }
        }
    }
    (ok, miss)
}

/// Whether `r` (unmatched) is a receipt of a bulk send's message whose contact row is still
/// to come ([`launch::awaiting_commit`]). The webhook answers 409 for it: the gateway keeps
/// the receipt in its durable outbox and retries it, instead of the receipt being counted
/// unmatched and lost — which happens when the gateway reports a message before the runner
/// committed its batch, most of all after the service was killed between the two.
fn receipt_awaits_commit(conn: &Connection, r: &Receipt) -> Result<bool> {
    let tag = |k: &str| r.tags.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(task), Some(bulk), Some(sub)) = (tag("task"), tag("bulk"), tag("subscriber")) else {
        return Ok(false);
    };
    let Ok(sub) = u32::try_from(sub) else {
        return Ok(false);
    };
    match launch::load_bulk(conn, bulk) {
        Ok(b) if b.task == task => launch::awaiting_commit(conn, bulk, sub),
        Ok(_) | Err(crate::CampaignError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A receipt webhook's body: one receipt, or a JSON array of them when the account batches
/// its webhooks (`webhook_batch` > 1 in the gateway config).
#[derive(Deserialize)]
#[serde(untagged)]
enum ReceiptBody {
    One(Receipt),
    Many(Vec<Receipt>),
}

/// What applying a batch of receipts found.
#[derive(Default)]
struct BatchOutcome {
    matched: u64,
    unmatched: u64,
    /// Receipts with an unknown state: skipped, since a retry cannot make them valid and
    /// refusing the whole batch would hold its good receipts back for ever.
    invalid: u64,
    /// Receipts whose contact row is still to come: the batch is answered 409 and retried.
    awaiting: u64,
}

/// Applies `receipts` in one transaction (re-applying a receipt sets the same state again, so
/// a batch retried after a 409 is harmless).
fn apply_receipts(conn: &Connection, receipts: &[Receipt], now: i64) -> Result<BatchOutcome> {
    let tx = conn.unchecked_transaction()?;
    let mut out = BatchOutcome::default();
    for r in receipts {
        match apply_receipt(&tx, r, now) {
            Ok(true) => out.matched += 1,
            Ok(false) if receipt_awaits_commit(&tx, r)? => out.awaiting += 1,
            Ok(false) => out.unmatched += 1,
            Err(crate::CampaignError::Invalid { .. }) => out.invalid += 1,
            Err(e) => return Err(e),
        }
    }
    tx.commit()?;
    Ok(out)
}

fn not_committed_yet() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::CONFLICT,
        Json(serde_json::json!({
            "error": "contact not recorded yet",
            "reason": "the batch of this message is not committed yet; retry later"
        })),
    )
}

async fn receipt_hook(
    State(s): State<Shared>,
    Json(body): Json<ReceiptBody>,
) -> (StatusCode, Json<serde_json::Value>) {
    let c = lock(&s);
    let now = Timestamp::now().as_second();
    let r = match body {
        ReceiptBody::One(r) => r,
        ReceiptBody::Many(rs) => {
            return match apply_receipts(&c.conn, &rs, now) {
                Ok(o) if o.awaiting > 0 => not_committed_yet(),
                Ok(o) => (
                    StatusCode::OK,
                    Json(serde_json::json!({
                        "matched": o.matched, "unmatched": o.unmatched, "invalid": o.invalid
                    })),
                ),
                // 5xx makes the gateway retry: nothing is lost on a transient store error.
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({ "error": e.to_string() })),
                ),
            };
        }
    };
    match apply_receipt(&c.conn, &r, now) {
        Ok(false) if matches!(receipt_awaits_commit(&c.conn, &r), Ok(true)) => not_committed_yet(),
        Ok(matched) => (
            StatusCode::OK,
            Json(serde_json::json!({ "matched": matched })),
        ),
        Err(crate::CampaignError::Invalid { field, reason }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                serde_json::json!({ "error": "invalid receipt", "field": field, "reason": reason }),
            ),
        ),
        // 5xx makes the gateway retry: nothing is lost on a transient store error.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

async fn reply_hook(
    State(s): State<Shared>,
    Json(r): Json<MoReply>,
) -> (StatusCode, Json<serde_json::Value>) {
    let g = lock(&s);
    match apply_reply(&g.conn, &g.table, &r, DEFAULT_WINDOW_DAYS, &g.mo) {
        Ok(outcome) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "matched": outcome.is_conversion(),
                "outcome": outcome,
            })),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

/// Webhook endpoints for the gateway: `POST /receipts` (receipt JSON, or an array of them from
/// an account that batches its webhooks) and `POST /replies`
/// (MO JSON). Point the account's `webhook_url` / `mo_url` at them. Every request must carry
/// the gateway's signature made with the account's `webhook_secret`, which `guard` checks
/// ([`crate::webhook_guard`]); unsigned, forged or stale requests get 401.
pub fn webhook_router(svc: Shared, guard: Arc<WebhookGuard>) -> Router {
    Router::new()
        .route("/receipts", post(receipt_hook))
        .route("/replies", post(reply_hook))
        .with_state(svc)
        .layer(axum::middleware::from_fn_with_state(
            guard,
            webhook_guard::check,
        ))
}
