//! Receipts and replies back to ESMEs: deliver_sm PDUs and the per-account outbox pump.
//!
//! Job: for an account with an SMPP login, move entries of its durable receipt outbox (the
//! ones tagged [`SMPP_RECEIPT_TAG`], i.e. submitted over SMPP asking for a receipt) and of
//! its MO outbox to the account's receiver / transceiver binds as deliver_sm, and delete an
//! entry only after an ESME answered its deliver_sm with `ESME_ROK`.
//!
//! Invariants:
//! - None lost while the client is away: with no receiver bind up nothing is read or
//!   removed; entries wait in the store and flow as soon as a bind comes up (the hub's
//!   `changed` wakes the pump).
//! - None sent twice needlessly: an entry is handed to one bind at a time (`in_flight`); it
//!   goes out again only when that bind reports it failed (error status, timeout, or the
//!   bind closed with it unanswered), after [`RETRY_AFTER`]. A crash between the ESME's
//!   deliver_sm_resp and the delete commit re-sends it (at-least-once, like webhooks).
//! - A receipt asked for failures only (`registered_delivery` 2) of a delivered message,
//!   and an undecodable entry, are deleted without sending.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_protocols::smpp::{
    Address, MessageState as SmppState, Octets, ReceiptDate, ReceiptStat, ReceiptText, Sm,
};
use sluice_protocols::sms;
use tokio::sync::{Notify, mpsc, watch};

use super::{AccountHub, Done, Outgoing, OutgoingKind};
use crate::metrics as m;
use crate::receipt::mo::MoOutbox;
use crate::receipt::outbox::{Cursor, EntryKind, ReceiptOutbox};
use crate::store::{
    GatewayStore, MessageState, MessageStore, MoEvent, ReceiptEvent, ReceiptOriginal,
    SMPP_RECEIPT_TAG,
};

/// Wait before an entry that failed on one bind is offered again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Idle re-scan period (entries finalised without a wake-up are found by then).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Entries read per outbox and round.
const SCAN: usize = 256;

fn smpp_address(a: &str) -> Address {
    match a.strip_prefix('+') {
        Some(d) => Address::new(1, 1, d.to_owned()),
        None if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
            Address::new(0, 1, a.to_owned())
        }
        None => Address::new(5, 0, a.to_owned()),
    }
}

fn receipt_date(rfc3339: Option<&str>) -> Option<ReceiptDate> {
    let ts: jiff::Timestamp = rfc3339?.parse().ok()?;
    let dt = jiff::tz::TimeZone::UTC.to_datetime(ts);
    Some(ReceiptDate {
        year: u16::try_from(dt.year()).ok()?,
        month: u8::try_from(dt.month()).ok()?,
        day: u8::try_from(dt.day()).ok()?,
        hour: u8::try_from(dt.hour()).ok()?,
        minute: u8::try_from(dt.minute()).ok()?,
        second: u8::try_from(dt.second()).ok(),
    })
}

const fn smpp_state(s: MessageState) -> SmppState {
    match s {
        MessageState::Delivered => SmppState::Delivered,
        MessageState::Expired => SmppState::Expired,
        MessageState::Rejected => SmppState::Rejected,
        MessageState::Undeliverable | MessageState::Failed => SmppState::Undeliverable,
        // SMPP's DELETED: "the message has been cancelled or deleted from the MC".
        MessageState::Cancelled => SmppState::Deleted,
        MessageState::Queued
        | MessageState::Scheduled
        | MessageState::InFlight
        | MessageState::Sent => SmppState::Enroute,
    }
}

/// The deliver_sm of a receipt (esm_class 0x04): from the handset to the original sender,
/// standard receipt text with sluice's id, `receipted_message_id` and `message_state`.
/// `original` supplies the sender and the first 20 characters.
pub fn receipt_sm(event: &ReceiptEvent, original: Option<&ReceiptOriginal>) -> Sm {
    let state = smpp_state(event.state);
    let stat = if event.stat.is_empty() {
        ReceiptStat::from_state(state)
    } else {
        ReceiptStat::parse(event.stat.as_bytes())
    };
    let err = if event.err.is_empty() {
        "000"
    } else {
        event.err.as_str()
    };
    let text = original.map_or("", |o| o.text.as_str());
    // The text field of a receipt is ASCII by convention: drop what is not.
    let text: String = text
        .chars()
        .take(ReceiptOriginal::TEXT_CHARS)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let done = receipt_date(Some(&event.done_at));
    let id = event.id.to_text();
    let r = ReceiptText {
        id: Some(&id),
        sub: Some(1),
        dlvrd: Some(u32::from(event.state == MessageState::Delivered)),
        submit_date: receipt_date(event.submitted_at.as_deref()).or(done),
        done_date: done,
        stat: Some(stat),
        err: Some(err.as_bytes()),
        text: Some(text.as_bytes()),
    };
    let mut sm = Sm {
        source: smpp_address(&event.to),
        dest: smpp_address(original.and_then(|o| o.from.as_deref()).unwrap_or("")),
        esm_class: 0x04,
        short_message: Octets::from(r.to_vec()),
        ..Sm::default()
    };
    sm.tlvs.set_receipted_message_id(&id);
    sm.tlvs.set_message_state(state);
    sm
}

/// The deliver_sm of a reply (esm_class 0): GSM 7-bit (unpacked, data_coding 0) when the text
/// allows, else UCS-2 (8); long text goes in message_payload.
pub fn mo_sm(event: &MoEvent) -> Sm {
    let (dc, data) = match sms::encode(&event.text, sms::Encoding::Gsm7) {
        Ok(d) => (0, d),
        Err(_) => (
            8,
            sms::encode(&event.text, sms::Encoding::Ucs2).unwrap_or_default(),
        ),
    };
    let mut sm = Sm {
        source: smpp_address(&event.from),
        dest: smpp_address(&event.to),
        data_coding: dc,
        ..Sm::default()
    };
    if data.len() > 254 {
        sm.tlvs.set(
            sluice_protocols::smpp::tlv::tags::MESSAGE_PAYLOAD,
            Octets::from(data),
        );
    } else {
        sm.short_message = Octets::from(data);
    }
    sm
}

/// What one scan decided for an entry.
enum Plan {
    Send(Outgoing),
    Delete(OutgoingKind, u64),
}

/// The pump's passes, one per outbox ([`Cursor`]: the webhook pump keeps one per account
/// over the receipt outbox they share).
#[derive(Debug, Default)]
struct Cursors {
    receipts: Cursor,
    mo: Cursor,
}

impl Cursors {
    fn of(&mut self, kind: OutgoingKind) -> &mut Cursor {
        match kind {
            OutgoingKind::Receipt => &mut self.receipts,
            OutgoingKind::Mo => &mut self.mo,
        }
    }
}

/// The pump of one account. Runs until `shutdown`.
pub(crate) async fn run(
    store: GatewayStore,
    hub: Arc<AccountHub>,
    mut done: mpsc::UnboundedReceiver<Done>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let account = hub.name.clone();
    let mut in_flight: HashSet<(OutgoingKind, u64)> = HashSet::new();
    let mut retry: HashMap<(OutgoingKind, u64), Instant> = HashMap::new();
    let mut cursors = Cursors::default();
    let mut next_bind = 0usize;
    let mut carried: Option<Done> = None;
    let mut done_open = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut deletes = Deletes::default();
        // Every answer that came in since the last round, deleted in one commit: a commit
        // per answer would make the ESME's receipt rate the store's fsync rate.
        while let Some(d) = carried.take().or_else(|| done.try_recv().ok()) {
            in_flight.remove(&(d.kind, d.seq));
            if d.ok {
                metrics::counter!(m::SMPP_SERVER_DELIVERED, m::LABEL_ACCOUNT => account.clone(),
                    m::LABEL_KIND => d.kind.as_str())
                .increment(1);
                deletes.push(d.kind, d.seq);
            } else {
                retry.insert((d.kind, d.seq), Instant::now() + RETRY_AFTER);
                // The pass read it when it went out: a later pass must find it again.
                cursors.of(d.kind).left_behind = true;
            }
        }
        // Deletes first: a scan before them would offer acknowledged entries again.
        deletes.submit(&*store, &account).await;
        let mut deletes = Deletes::default();
        // More entries wait beyond this round's read, and the binds took all it offered.
        let mut more = false;
        let receivers = hub.receivers();
        if !receivers.is_empty() {
            let now = Instant::now();
            retry.retain(|_, at| *at > now);
            let scanned = scan(&*store, &account, &mut cursors, &in_flight, &retry);
            more = scanned.more;
            for plan in scanned.plans {
                match plan {
                    Plan::Delete(kind, seq) => deletes.push(kind, seq),
                    Plan::Send(out) => {
                        let key = (out.kind, out.seq);
                        // Round robin over the receiver binds; a full queue is skipped.
                        let mut sent = false;
                        let mut out = Some(out);
                        for i in 0..receivers.len() {
                            let tx = &receivers[(next_bind + i) % receivers.len()];
                            let Some(o) = out.take() else { break };
                            match tx.try_send(o) {
                                Ok(()) => {
                                    sent = true;
                                    next_bind = (next_bind + i + 1) % receivers.len();
                                    break;
                                }
                                Err(
                                    mpsc::error::TrySendError::Full(o)
                                    | mpsc::error::TrySendError::Closed(o),
                                ) => out = Some(o),
                            }
                        }
                        if sent {
                            in_flight.insert(key);
                        } else {
                            // No room: the next answer (`done`) wakes the pump to offer it
                            // again, on a later pass.
                            cursors.of(key.0).left_behind = true;
                            more = false;
                        }
                    }
                }
            }
        }
        deletes.submit(&*store, &account).await;
        if more {
            // The rest of the outbox now, not after the idle poll: a webhook's backlog at
            // the head must not delay the ESME's receipts behind it by a poll per read.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = hub.changed.notified() => {}
            d = done.recv(), if done_open => {
                // Handled with whatever else arrived, at the top of the next round.
                done_open = d.is_some();
                carried = d;
            }
            () = tokio::time::sleep(IDLE_POLL) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Entries to remove, by outbox, in one store request.
#[derive(Debug, Default)]
struct Deletes {
    receipts: Vec<u64>,
    mo: Vec<u64>,
}

impl Deletes {
    fn push(&mut self, kind: OutgoingKind, seq: u64) {
        match kind {
            OutgoingKind::Receipt => self.receipts.push(seq),
            OutgoingKind::Mo => self.mo.push(seq),
        }
    }

    /// Removes them in one commit. The ops are the outbox kinds' own, as the webhook pump
    /// makes them: a run of consecutive receipt entries is one op the store removes in one
    /// cursor pass, instead of a search from the root per entry (an ESME acknowledges its
    /// receipts about in order, and an SMPP-only account's entries are consecutive).
    async fn submit(self, store: &dyn MessageStore, account: &str) {
        if self.receipts.is_empty() && self.mo.is_empty() {
            return;
        }
        let mut ops = Vec::new();
        ReceiptOutbox::delete_all(account, &self.receipts, &mut ops);
        MoOutbox::delete_all(account, &self.mo, &mut ops);
        if let Err(e) = store.submit(ops).await {
            tracing::warn!(%account, error = %e, "Could not delete delivered outbox entries; they will be re-sent.");
        }
    }
}

/// What one scan of both outboxes found.
struct Scanned {
    plans: Vec<Plan>,
    /// An outbox had more entries than the scan read.
    more: bool,
}

/// Reads the next entries of both outboxes of `account`, from `cursors`, and plans what to
/// send or drop. A read that fails starts that outbox's pass over.
fn scan(
    store: &dyn MessageStore,
    account: &str,
    cursors: &mut Cursors,
    in_flight: &HashSet<(OutgoingKind, u64)>,
    retry: &HashMap<(OutgoingKind, u64), Instant>,
) -> Scanned {
    let busy = |k: (OutgoingKind, u64)| in_flight.contains(&k) || retry.contains_key(&k);
    let mut plans = Vec::new();
    let mut more = false;
    let cursor = &mut cursors.receipts;
    match store.outbox(account, cursor.after, SCAN) {
        Ok(entries) => {
            let at_end = entries.len() < SCAN;
            more |= !at_end;
            let last = entries.last().map(|e| e.seq);
            for e in entries {
                let key = (OutgoingKind::Receipt, e.seq);
                // The store hands the newest entries over decoded (its memory of them).
                let event = match e.event {
                    Some(event) => event,
                    None => match serde_json::from_slice::<ReceiptEvent>(&e.body) {
                        Ok(event) => Arc::new(event),
                        Err(_) => continue, // The webhook pump drops undecodable entries.
                    },
                };
                let Some(flag) = event.tags.get(SMPP_RECEIPT_TAG) else {
                    continue; // Not ours: the webhook pump's.
                };
                if busy(key) {
                    cursor.left_behind = true;
                    continue;
                }
                if flag == "2" && event.state == MessageState::Delivered {
                    plans.push(Plan::Delete(OutgoingKind::Receipt, e.seq));
                    continue;
                }
                // Entries written before events carried it: the message is read back.
                let original = event.original.as_ref().map(Cow::Borrowed).or_else(|| {
                    store
                        .get(event.id)
                        .ok()
                        .flatten()
                        .map(|m| Cow::Owned(ReceiptOriginal::of(&m)))
                });
                plans.push(Plan::Send(Outgoing {
                    kind: OutgoingKind::Receipt,
                    seq: e.seq,
                    sm: Box::new(receipt_sm(&event, original.as_deref())),
                }));
            }
            cursor.advance(last, at_end);
        }
        Err(e) => {
            cursor.restart();
            tracing::warn!(%account, error = %e, "Receipt outbox unreadable.");
        }
    }
    let cursor = &mut cursors.mo;
    match store.mo_outbox(account, cursor.after, SCAN) {
        Ok(entries) => {
            let at_end = entries.len() < SCAN;
            more |= !at_end;
            let last = entries.last().map(|e| e.seq);
            for e in entries {
                let key = (OutgoingKind::Mo, e.seq);
                if busy(key) {
                    cursor.left_behind = true;
                    continue;
                }
                match serde_json::from_slice::<MoEvent>(&e.body) {
                    Ok(event) => plans.push(Plan::Send(Outgoing {
                        kind: OutgoingKind::Mo,
                        seq: e.seq,
                        sm: Box::new(mo_sm(&event)),
                    })),
                    Err(_) => plans.push(Plan::Delete(OutgoingKind::Mo, e.seq)),
                }
            }
            cursor.advance(last, at_end);
        }
        Err(e) => {
            cursor.restart();
            tracing::warn!(%account, error = %e, "MO outbox unreadable.");
        }
    }
    Scanned { plans, more }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocols::smpp::DeliveryReport;

    #[test]
    fn receipt_pdu_carries_our_id_text_and_tlvs() {
        let ev = ReceiptEvent {
            id: "01JD3Q5V8Q0000000000000001".parse().expect("an id"),
            client_ref: None,
            to: "+8613800138000".into(),
            state: MessageState::Delivered,
            stat: "DELIVRD".into(),
            err: "000".into(),
            parts: 1,
            submitted_at: Some("2026-11-26T00:00:00Z".into()),
            done_at: "2026-11-26T00:01:02Z".into(),
            callback_url: None,
            tags: Default::default(),
            kind: crate::store::MessageKind::Sms,
            lane: crate::store::Lane::Notification,
            original: None,
        };
        let sm = receipt_sm(&ev, None);
        assert!(sm.is_delivery_receipt());
        assert_eq!(sm.source, Address::new(1, 1, "8613800138000"));
        let text = String::from_utf8(sm.short_message.as_slice().to_vec()).expect("ascii");
        assert!(
            text.starts_with(
                "id:01JD3Q5V8Q0000000000000001 sub:001 dlvrd:001 submit date:2611260000"
            ),
            "{text}"
        );
        assert!(text.contains("done date:2611260001"), "{text}");
        assert!(text.contains("stat:DELIVRD err:000 text:"), "{text}");
        let dr = DeliveryReport::from_sm(&sm).expect("a receipt");
        assert_eq!(dr.message_id, &ev.id.to_text()[..]);
        assert_eq!(sm.tlvs.message_state(), Some(SmppState::Delivered));
        // The original, carried by the event: its sender is the destination, its first 20
        // characters (ASCII) the text.
        let original = ReceiptOriginal {
            from: Some("10690000".into()),
            text: "Héllo wörld, more than twenty".into(),
        };
        let sm = receipt_sm(&ev, Some(&original));
        assert_eq!(sm.dest, Address::new(0, 1, "10690000"));
        let text = String::from_utf8(sm.short_message.as_slice().to_vec()).expect("ascii");
        assert!(text.ends_with("text:H?llo w?rld, more th"), "{text}");
    }

    #[test]
    fn mo_pdu_picks_gsm_or_ucs2() {
        let mut ev = MoEvent {
            account: None,
            from: "+8613800138000".into(),
            to: "10690000".into(),
            text: "Y".into(),
            received_at: "2026-11-26T00:00:00Z".into(),
        };
        assert_eq!(mo_sm(&ev).data_coding, 0);
        ev.text = "好".into();
        let sm = mo_sm(&ev);
        assert_eq!(
            (sm.data_coding, sm.short_message.as_slice()),
            (8, &[0x59, 0x7D][..])
        );
        assert_eq!(sm.esm_class, 0);
    }
}
