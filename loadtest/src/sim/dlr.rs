//! Deliveries from the center to the client: delivery receipts (DLRs) and MO messages.
//!
//! Sessions and the MO generator push [`Delivery`] items into one scheduler task per
//! listener. The scheduler holds them until due, then routes each to a receiver-capable
//! bind: the session the submit came from if it can receive, else another bind of the same
//! account, else (nothing bound) a pending queue retried every 100 ms — so receipts survive a
//! client reconnect, like a real center's store-and-forward. Due items are grouped per
//! session and handed to it as one batch: SMPP sessions take the items (their protocol
//! session numbers and tracks each deliver_sm), CMPP sessions' writers take one encoded
//! chunk. Invariant: a due item is handed to exactly one session or kept pending; it is
//! counted as sent only once it is on its way to the socket.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::center::Center;
use sluice_protocols::cmpp::{self as cmpp, DeliverContent, FixedStr, MsgFmt, MsgId, StatusReport};
use sluice_protocols::smpp::{Address, MessageState, Octets, Sm};

/// Pending deliveries kept at most (per listener) while no receiver is bound.
const MAX_PENDING: usize = 1_000_000;

/// Final message state reported in a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    Delivrd,
    Expired,
    Deleted,
    Undeliv,
    Acceptd,
    Unknown,
    Rejectd,
}

impl Stat {
    /// Parses the 7-letter receipt code (`DELIVRD`, …).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DELIVRD" => Self::Delivrd,
            "EXPIRED" => Self::Expired,
            "DELETED" => Self::Deleted,
            "UNDELIV" => Self::Undeliv,
            "ACCEPTD" => Self::Acceptd,
            "UNKNOWN" => Self::Unknown,
            "REJECTD" => Self::Rejectd,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivrd => "DELIVRD",
            Self::Expired => "EXPIRED",
            Self::Deleted => "DELETED",
            Self::Undeliv => "UNDELIV",
            Self::Acceptd => "ACCEPTD",
            Self::Unknown => "UNKNOWN",
            Self::Rejectd => "REJECTD",
        }
    }

    /// SMPP message_state TLV value (SMPP 5.0 §4.8.4.37).
    fn message_state(self) -> MessageState {
        match self {
            Self::Delivrd => MessageState::Delivered,
            Self::Expired => MessageState::Expired,
            Self::Deleted => MessageState::Deleted,
            Self::Undeliv => MessageState::Undeliverable,
            Self::Acceptd => MessageState::Accepted,
            Self::Unknown => MessageState::Unknown,
            Self::Rejectd => MessageState::Rejected,
        }
    }

    fn err(self) -> &'static str {
        match self {
            Self::Delivrd | Self::Acceptd => "000",
            Self::Expired => "027",
            Self::Deleted => "009",
            Self::Undeliv => "001",
            Self::Unknown => "099",
            Self::Rejectd => "002",
        }
    }
}

/// Center message id of the submit a receipt is about.
#[derive(Debug, Clone)]
pub(crate) enum MsgRef {
    Smpp(Box<str>),
    Cmpp(u64),
}

/// What to deliver.
#[derive(Debug)]
pub(crate) enum Item {
    Receipt {
        id: MsgRef,
        /// The handset (destination of the submit).
        handset: Box<[u8]>,
        /// The service number (source of the submit).
        service: Box<[u8]>,
        stat: Stat,
        submitted: jiff::Timestamp,
        /// First 20 bytes of the message text (SMPP receipt `text:` field).
        text: Box<[u8]>,
    },
    Mo {
        from: Box<[u8]>,
        to: Box<[u8]>,
        text: String,
    },
}

/// A delivery due at `at`, preferably over session `prefer` of `account`.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) at: Instant,
    pub(crate) account: Arc<str>,
    pub(crate) prefer: u64,
    pub(crate) item: Item,
}

struct Queued(u64, Delivery);

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.1.at, o.0).cmp(&(self.1.at, self.0))
    }
}

fn yymmddhhmm(t: jiff::Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%y%m%d%H%M")
        .to_string()
}

/// The SMPP receipt text (SMPP 3.4 Appendix B format).
pub(crate) fn receipt_text(
    id: &str,
    stat: Stat,
    submitted: jiff::Timestamp,
    done: jiff::Timestamp,
    text: &[u8],
) -> String {
    let dlvrd = if stat == Stat::Delivrd { "001" } else { "000" };
    let text: String = text
        .iter()
        .take(20)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!(
        "id:{id} sub:001 dlvrd:{dlvrd} submit date:{} done date:{} stat:{} err:{} text:{text}",
        yymmddhhmm(submitted),
        yymmddhhmm(done),
        stat.as_str(),
        stat.err()
    )
}

/// The deliver_sm for `item` (a receipt or an MO) at `now`.
pub(crate) fn smpp_sm(item: &Item, now: jiff::Timestamp) -> Sm {
    match item {
        Item::Receipt {
            id,
            handset,
            service,
            stat,
            submitted,
            text,
        } => {
            let id_str: std::borrow::Cow<'_, str> = match id {
                MsgRef::Smpp(s) => std::borrow::Cow::Borrowed(s),
                MsgRef::Cmpp(n) => std::borrow::Cow::Owned(n.to_string()),
            };
            let body = receipt_text(&id_str, *stat, *submitted, now, text);
            let mut sm = Sm {
                source: Address::new(1, 1, Octets::copy_from_slice(handset)),
                dest: Address::new(1, 1, Octets::copy_from_slice(service)),
                esm_class: sluice_protocols::smpp::ESM_CLASS_DELIVERY_RECEIPT,
                short_message: Octets::from(body.into_bytes()),
                ..Sm::default()
            };
            sm.tlvs.set_receipted_message_id(id_str.as_bytes());
            sm.tlvs.set_message_state(stat.message_state());
            sm
        }
        Item::Mo { from, to, text } => {
            let (dc, bytes) = mo_encoding(text);
            Sm {
                source: Address::new(1, 1, Octets::copy_from_slice(from)),
                dest: Address::new(1, 1, Octets::copy_from_slice(to)),
                data_coding: dc,
                short_message: Octets::from(bytes),
                ..Sm::default()
            }
        }
    }
}

/// Builds the CMPP DELIVER for `item` (the session gives it its Sequence_Id).
fn cmpp_deliver(item: &Item, now: jiff::Timestamp, cmpp_gateway: &mut u32) -> cmpp::Deliver {
    *cmpp_gateway = cmpp_gateway.wrapping_add(1);
    let deliver_id = super::center::cmpp_msg_id(now, 1, *cmpp_gateway as u16);
    let mut d = cmpp::Deliver {
        msg_id: MsgId(deliver_id),
        ..Default::default()
    };
    match item {
        Item::Receipt {
            id,
            handset,
            service,
            stat,
            submitted,
            ..
        } => {
            let msg_id = match id {
                MsgRef::Cmpp(n) => *n,
                MsgRef::Smpp(s) => s.parse().unwrap_or(0),
            };
            d.dest_id = fixed(service);
            d.src_terminal_id = fixed(handset);
            d.content = DeliverContent::Report(StatusReport {
                msg_id: MsgId(msg_id),
                stat: fixed(stat.as_str().as_bytes()),
                submit_time: fixed(yymmddhhmm(*submitted).as_bytes()),
                done_time: fixed(yymmddhhmm(now).as_bytes()),
                dest_terminal_id: fixed(handset),
                smsc_sequence: 0,
            });
        }
        Item::Mo { from, to, text } => {
            let (dc, bytes) = mo_encoding(text);
            d.dest_id = fixed(to);
            d.src_terminal_id = fixed(from);
            d.msg_fmt = if dc == 8 { MsgFmt::Ucs2 } else { MsgFmt::Ascii };
            d.content = DeliverContent::Message(bytes.into());
        }
    }
    d
}

/// A fixed-width CMPP field, truncated if the value is longer (addresses from a client).
fn fixed<const N: usize>(v: &[u8]) -> FixedStr<N> {
    FixedStr::new(&v[..v.len().min(N)]).unwrap_or(FixedStr::EMPTY)
}

/// ASCII texts go as data_coding/Msg_Fmt 0, anything else as UCS-2 (8).
fn mo_encoding(text: &str) -> (u8, Vec<u8>) {
    if text.is_ascii() {
        (0, text.as_bytes().to_vec())
    } else {
        (8, text.encode_utf16().flat_map(u16::to_be_bytes).collect())
    }
}

/// The scheduler task of one listener; ends on shutdown.
pub(crate) async fn run_scheduler(
    center: Arc<Center>,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Queued> = BinaryHeap::new();
    let mut pending: VecDeque<Delivery> = VecDeque::new();
    let mut order = 0u64;
    let mut gw = 0u32;
    let mut retry = tokio::time::interval(Duration::from_millis(100));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = heap.peek().map(|q| q.1.at);
        let mut due: Vec<Delivery> = Vec::new();
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            m = rx.recv() => {
                let Some(m) = m else { return };
                let now = Instant::now();
                let mut next_msg = Some(m);
                while let Some(d) = next_msg.take() {
                    if d.at <= now {
                        due.push(d);
                    } else {
                        order += 1;
                        heap.push(Queued(order, d));
                    }
                    if due.len() + heap.len() < 1 << 20 {
                        next_msg = rx.try_recv().ok();
                    }
                }
            }
            _ = async { match next { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {}
            _ = retry.tick(), if !pending.is_empty() => {
                due.extend(pending.drain(..));
            }
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|q| q.1.at <= now) {
            if let Some(q) = heap.pop() {
                due.push(q.1);
            }
        }
        if due.is_empty() {
            continue;
        }
        route(&center, due, &mut pending, &mut gw);
    }
}

/// Puts a delivery whose response never came (its session closed first) back on the
/// scheduler, due now, for the account's next receiver bind — unless the listener says
/// `resend_unanswered = false`, when it is dropped as before. Counted in `resent`
/// (`resent_mo` for MOs).
pub(crate) fn resend(center: &Center, mut d: Delivery) {
    if !center.cfg.resend_unanswered {
        return;
    }
    center.tally.resent.fetch_add(1, Ordering::Relaxed);
    if matches!(d.item, Item::Mo { .. }) {
        center.tally.resent_mo.fetch_add(1, Ordering::Relaxed);
    }
    d.at = Instant::now();
    let _ = center.deliveries.send(d);
}

/// One CMPP session's DELIVERs of a round, with its receipt and MO counts.
type CmppBatch = (
    mpsc::UnboundedSender<Vec<(Delivery, cmpp::Deliver)>>,
    Vec<(Delivery, cmpp::Deliver)>,
    u64,
    u64,
);

/// Routes each due delivery to a live receiver and hands each session its due items as one
/// batch: SMPP sessions take the items (their `Smsc` session encodes and counts them), CMPP
/// sessions the DELIVERs built here (their `IsmgSession` numbers and windows them).
fn route(center: &Center, due: Vec<Delivery>, pending: &mut VecDeque<Delivery>, gw: &mut u32) {
    let now = jiff::Timestamp::now();
    let mut batches: HashMap<u64, (mpsc::UnboundedSender<Vec<Delivery>>, Vec<Delivery>)> =
        HashMap::new();
    let mut cmpp: HashMap<u64, CmppBatch> = HashMap::new();
    for d in due {
        let Some(session) = center.receiver_for(&d.account, d.prefer) else {
            if pending.len() < MAX_PENDING {
                pending.push_back(d);
            }
            continue;
        };
        if let Some(items) = &session.items {
            batches
                .entry(session.id)
                .or_insert_with(|| (items.clone(), Vec::new()))
                .1
                .push(d);
            continue;
        }
        let Some(delivers) = &session.delivers else {
            continue;
        };
        let entry = cmpp
            .entry(session.id)
            .or_insert_with(|| (delivers.clone(), Vec::new(), 0, 0));
        match d.item {
            Item::Receipt { .. } => entry.2 += 1,
            Item::Mo { .. } => entry.3 += 1,
        }
        let deliver = cmpp_deliver(&d.item, now, gw);
        entry.1.push((d, deliver));
    }
    for (_, (items, batch)) in batches {
        if let Err(mpsc::error::SendError(batch)) = items.send(batch) {
            // The session ended after the lookup: keep the items for the next receiver.
            for d in batch {
                if pending.len() < MAX_PENDING {
                    pending.push_back(d);
                }
            }
        }
    }
    for (_, (delivers, batch, dlrs, mos)) in cmpp {
        match delivers.send(batch) {
            Ok(()) => {
                center.tally.dlrs_sent.fetch_add(dlrs, Ordering::Relaxed);
                center.tally.mo_sent.fetch_add(mos, Ordering::Relaxed);
            }
            Err(mpsc::error::SendError(batch)) => {
                for (d, _) in batch {
                    if pending.len() < MAX_PENDING {
                        pending.push_back(d);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_text_has_the_standard_fields() {
        let t = jiff::Timestamp::from_second(1_795_000_000).unwrap();
        let s = receipt_text("1A2B", Stat::Undeliv, t, t, b"hello\x01world, this is long");
        assert!(
            s.starts_with("id:1A2B sub:001 dlvrd:000 submit date:"),
            "{s}"
        );
        assert!(
            s.contains(" stat:UNDELIV err:001 text:hello.world, this is"),
            "{s}"
        );
        for st in [
            "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD",
        ] {
            assert_eq!(Stat::parse(st).map(Stat::as_str), Some(st));
        }
    }
}
