//! What the ISMG sends us unasked: DELIVERs turned into receipt and MO events for the receipt
//! layer.
//!
//! - A status report (`Registered_Delivery` = 1) becomes [`ChannelEvent::Receipt`] with the
//!   reported Msg_Id as decimal digits (the form SUBMIT_RESP ids are stored in, so the
//!   channel's `decimal` id format matches them), `Stat` as the status word, `Done_time` as
//!   the done date, and the handset from `Dest_terminal_Id`.
//! - Anything else is an MO from `Src_terminal_Id` to our service number + extension
//!   (`Dest_Id`), decoded per `Msg_Fmt`, with long MOs reassembled from their UDH through the
//!   shared [`MoAssembler`].

use std::time::{Instant, SystemTime};

use compact_str::{CompactString, ToCompactString};
use sluice_protocols::cmpp::{Deliver, DeliverContent, FixedStr, StatusReport};
use sluice_protocols::sms::{self, Encoding};

use crate::channel::mo::{MoAssembler, split_udh};
use crate::channel::{ChannelEvent, DeliverAck};

/// Per-channel state for inbound messages (shared by the channel's connections).
#[derive(Debug, Default)]
pub struct Inbound {
    mo: MoAssembler,
}

impl Inbound {
    /// The event for one DELIVER, or `None` while a concatenated MO is incomplete.
    pub fn event(&self, deliver: &Deliver, now: Instant) -> Option<ChannelEvent> {
        let body = match &deliver.content {
            DeliverContent::Report(report) => return Some(receipt_event(report)),
            DeliverContent::Message(body) => body,
        };
        let from = text(&deliver.src_terminal_id);
        let to = text(&deliver.dest_id);
        let (concat, payload) = if deliver.tp_udhi != 0 {
            split_udh(body)
        } else {
            (None, &body[..])
        };
        let whole = self.mo.assemble(&from, &to, concat, payload, now)?;
        let fmt = deliver.msg_fmt.raw();
        Some(ChannelEvent::Mo {
            from,
            to,
            text: decode(&whole, fmt),
            data_coding: fmt,
            at: SystemTime::now(),
            ack: DeliverAck::default(),
        })
    }
}

/// The receipt event of a status report.
#[must_use]
pub fn receipt_event(report: &StatusReport) -> ChannelEvent {
    let done = compact(&report.done_time);
    ChannelEvent::Receipt {
        center_id: report.msg_id.0.to_compact_string(),
        stat: compact(&report.stat),
        err: CompactString::default(),
        done_at: (!done.is_empty()).then_some(done),
        text: CompactString::default(),
        source: compact(&report.dest_terminal_id),
        at: SystemTime::now(),
        ack: DeliverAck::default(),
    }
}

fn decode(body: &[u8], msg_fmt: u8) -> String {
    match Encoding::from_cmpp_msg_fmt(msg_fmt) {
        Some(encoding) => {
            sms::decode(body, encoding).unwrap_or_else(|_| String::from_utf8_lossy(body).into())
        }
        None => String::from_utf8_lossy(body).into_owned(),
    }
}

fn text<const N: usize>(f: &FixedStr<N>) -> String {
    String::from_utf8_lossy(f.as_bytes()).trim().to_owned()
}

/// A fixed-width field's text, trimmed: inline up to 24 bytes (every status report field).
fn compact<const N: usize>(f: &FixedStr<N>) -> CompactString {
    CompactString::from(String::from_utf8_lossy(f.as_bytes()).trim())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_protocols::cmpp::{MsgFmt, MsgId};

    use super::*;

    #[test]
    fn status_report_becomes_receipt() {
        let d = Deliver {
            content: DeliverContent::Report(StatusReport {
                msg_id: MsgId(42),
                stat: FixedStr::new(b"DELIVRD").unwrap(),
                done_time: FixedStr::new(b"2612051200").unwrap(),
                dest_terminal_id: FixedStr::new(b"13800138000").unwrap(),
                ..StatusReport::default()
            }),
            ..Deliver::default()
        };
        match Inbound::default().event(&d, Instant::now()) {
            Some(ChannelEvent::Receipt {
                center_id,
                stat,
                done_at,
                source,
                ..
            }) => {
                assert_eq!(center_id, "42");
                assert_eq!(stat, "DELIVRD");
                assert_eq!(done_at.as_deref(), Some("2612051200"));
                assert_eq!(source, "13800138000");
            }
            other => panic!("expected a receipt, got {other:?}"),
        }
    }

    #[test]
    fn long_gbk_mo_is_reassembled() {
        let inbound = Inbound::default();
        let part = |seq: u8, body: &[u8]| {
            let mut content = vec![5, 0, 3, 7, 2, seq];
            content.extend_from_slice(body);
            Deliver {
                dest_id: FixedStr::new(b"106580001234").unwrap(),
                src_terminal_id: FixedStr::new(b"13800138000").unwrap(),
                tp_udhi: 1,
                msg_fmt: MsgFmt::Gbk,
                content: DeliverContent::Message(Bytes::from(content)),
                ..Deliver::default()
            }
        };
        let now = Instant::now();
        assert!(inbound.event(&part(1, &[0xC4, 0xE3]), now).is_none());
        match inbound.event(&part(2, &[0xBA, 0xC3]), now) {
            Some(ChannelEvent::Mo { from, to, text, .. }) => {
                assert_eq!(from, "13800138000");
                assert_eq!(to, "106580001234");
                assert_eq!(text, "你好");
            }
            other => panic!("expected an MO, got {other:?}"),
        }
    }
}
