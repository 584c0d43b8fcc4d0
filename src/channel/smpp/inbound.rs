//! What the center sends us unasked: deliver_sm (and data_sm) turned into receipt and MO
//! events for the receipt layer.
//!
//! - A delivery receipt (esm_class 0x04 or a receipted_message_id TLV) becomes
//!   [`ChannelEvent::Receipt`] with the center's id *raw*; the receipt layer normalises it
//!   (see `channel/mod.rs`). Fields come from the TLVs first, then the receipt text.
//! - Anything else is a mobile-originated message. A long MO arrives in parts, concatenated
//!   by UDH (IE 0x00 / 0x08) or SAR TLVs; [`Inbound`] reassembles them per channel through
//!   [`MoAssembler`] and emits one [`ChannelEvent::Mo`] when the last part is in.

use std::time::{Instant, SystemTime};

use compact_str::CompactString;
use sluice_protocols::smpp::{DeliveryReport, ReceiptStat, Sm};
use sluice_protocols::sms::{self, Concat, Encoding, ReassemblyConfig};

use crate::channel::mo::{MoAssembler, split_udh};
use crate::channel::{ChannelEvent, compact_lossy};

/// Per-channel state for inbound messages (shared by the channel's binds).
#[derive(Debug, Default)]
pub struct Inbound {
    mo: MoAssembler,
}

impl Inbound {
    /// With the given reassembly limits.
    #[must_use]
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            mo: MoAssembler::new(config),
        }
    }

    /// The event for one deliver_sm, or `None` while a concatenated MO is incomplete.
    pub fn event(&self, sm: &Sm, now: Instant) -> Option<ChannelEvent> {
        if let Some(receipt) = receipt_event(sm) {
            return Some(receipt);
        }
        let payload = sm.payload();
        let (concat, body): (Option<Concat>, &[u8]) = if sm.has_udh() {
            split_udh(payload)
        } else {
            let sar = (
                sm.tlvs.sar_msg_ref_num(),
                sm.tlvs.sar_total_segments(),
                sm.tlvs.sar_segment_seqnum(),
            );
            let concat = match sar {
                (Some(reference), Some(total), Some(seq)) => Some(Concat {
                    reference,
                    total,
                    seq,
                }),
                _ => None,
            };
            (concat, payload.as_ref())
        };
        let from = String::from_utf8_lossy(&sm.source.addr).into_owned();
        let to = String::from_utf8_lossy(&sm.dest.addr).into_owned();
        let whole = self.mo.assemble(&from, &to, concat, body, now)?;
        Some(ChannelEvent::Mo {
            from,
            to,
            text: decode(&whole, sm.data_coding),
            data_coding: sm.data_coding,
            at: SystemTime::now(),
            ack: crate::channel::DeliverAck::default(),
        })
    }
}

fn decode(body: &[u8], data_coding: u8) -> String {
    match Encoding::from_smpp_data_coding(data_coding) {
        Some(encoding) => {
            sms::decode(body, encoding).unwrap_or_else(|_| String::from_utf8_lossy(body).into())
        }
        None => String::from_utf8_lossy(body).into_owned(),
    }
}

/// The receipt event for a deliver_sm that is a delivery receipt.
#[must_use]
pub fn receipt_event(sm: &Sm) -> Option<ChannelEvent> {
    let report = DeliveryReport::from_sm(sm)?;
    let text = report.text.unwrap_or_default();
    let stat: &[u8] = text
        .stat
        .map(|s| s.as_bytes())
        .or_else(|| report.state.map(|s| ReceiptStat::from_state(s).as_bytes()))
        .unwrap_or_default();
    Some(ChannelEvent::Receipt {
        center_id: compact_lossy(report.message_id),
        stat: compact_lossy(stat),
        err: text.err.map(compact_lossy).unwrap_or_default(),
        done_at: text.done_date.map(|d| {
            // The year is 2000..=2099 (`ReceiptDate::parse`): its last two digits fit.
            let yy = u8::try_from(d.year % 100).unwrap_or_default();
            two_digits(&[yy, d.month, d.day, d.hour, d.minute])
        }),
        text: text.text.map(compact_lossy).unwrap_or_default(),
        source: compact_lossy(&sm.source.addr),
        at: SystemTime::now(),
        ack: crate::channel::DeliverAck::default(),
    })
}

/// `YYMMDDhhmm` from its fields, each written as two digits (a field over 99 keeps its last
/// two, as `{:02}` of it modulo 100 would). One per receipt: `format!` with five padded
/// fields was a third of this function's time.
fn two_digits(fields: &[u8]) -> CompactString {
    // At most five fields (a date to the minute); the digits are written on the stack.
    let mut out = [0u8; 10];
    let n = fields.len().min(5);
    for (pair, &f) in out.chunks_exact_mut(2).zip(&fields[..n]) {
        let f = f % 100;
        pair[0] = b'0' + f / 10;
        pair[1] = b'0' + f % 10;
    }
    // Digits only, so never the lossy replacement.
    compact_lossy(&out[..2 * n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocols::smpp::{Address, MessageState, Octets};

    fn event(sm: &Sm) -> Option<ChannelEvent> {
        Inbound::default().event(sm, Instant::now())
    }

    #[test]
    fn two_digit_fields_are_those_of_padded_formatting() {
        for f in 0..=255u8 {
            assert_eq!(two_digits(&[f, 7]), format!("{:02}07", f % 100));
        }
        assert_eq!(two_digits(&[26, 11, 26, 1, 1]), "2611260101");
    }

    #[test]
    fn receipt_text_becomes_receipt_event() {
        let sm = Sm {
            source: Address::new(1, 1, "8613800138000"),
            esm_class: 0x04,
            short_message: Octets::from_static(
                b"id:1A2B sub:001 dlvrd:001 submit date:2611260100 done date:2611260101 stat:UNDELIV err:012 text:hello",
            ),
            ..Sm::default()
        };
        match event(&sm) {
            Some(ChannelEvent::Receipt {
                center_id,
                stat,
                err,
                done_at,
                text,
                source,
                ..
            }) => {
                assert_eq!(center_id, "1A2B");
                assert_eq!(stat, "UNDELIV");
                assert_eq!(err, "012");
                assert_eq!(done_at.as_deref(), Some("2611260101"));
                assert_eq!(text, "hello");
                assert_eq!(source, "8613800138000");
            }
            other => panic!("expected receipt, got {other:?}"),
        }
    }

    #[test]
    fn tlv_only_receipt_uses_message_state() {
        let mut sm = Sm {
            esm_class: 0x04,
            ..Sm::default()
        };
        sm.tlvs.set_receipted_message_id(b"00077");
        sm.tlvs.set_message_state(MessageState::Delivered);
        match event(&sm) {
            Some(ChannelEvent::Receipt {
                center_id, stat, ..
            }) => {
                assert_eq!(center_id, "00077");
                assert_eq!(stat, "DELIVRD");
            }
            other => panic!("expected receipt, got {other:?}"),
        }
    }

    fn mo_part(udh: &[u8], text: &str) -> Sm {
        let mut short = udh.to_vec();
        short.extend_from_slice(&sms::ucs2::encode(text));
        Sm {
            source: Address::new(1, 1, "8613800138000"),
            dest: Address::new(0, 0, "10086"),
            esm_class: if udh.is_empty() { 0 } else { 0x40 },
            data_coding: 8,
            short_message: Octets::from(short),
            ..Sm::default()
        }
    }

    #[test]
    fn single_mo_is_decoded() {
        match event(&mo_part(&[], "你好")) {
            Some(ChannelEvent::Mo {
                from,
                to,
                text,
                data_coding,
                ..
            }) => {
                assert_eq!((from.as_str(), to.as_str()), ("8613800138000", "10086"));
                assert_eq!(text, "你好");
                assert_eq!(data_coding, 8);
            }
            other => panic!("expected MO, got {other:?}"),
        }
    }

    #[test]
    fn long_mo_is_reassembled_out_of_order() {
        let inbound = Inbound::default();
        let now = Instant::now();
        let p2 = mo_part(&[5, 0, 3, 9, 2, 2], "世界");
        let p1 = mo_part(&[5, 0, 3, 9, 2, 1], "你好");
        assert_eq!(inbound.event(&p2, now), None);
        assert_eq!(inbound.event(&p2, now), None, "duplicate part ignored");
        match inbound.event(&p1, now) {
            Some(ChannelEvent::Mo { text, .. }) => assert_eq!(text, "你好世界"),
            other => panic!("expected MO, got {other:?}"),
        }
    }

    #[test]
    fn long_mo_by_sar() {
        let inbound = Inbound::default();
        let now = Instant::now();
        let mut a = mo_part(&[], "Y");
        a.tlvs.set_sar(7, 2, 1);
        let mut b = mo_part(&[], "ES");
        b.tlvs.set_sar(7, 2, 2);
        assert_eq!(inbound.event(&a, now), None);
        match inbound.event(&b, now) {
            Some(ChannelEvent::Mo { text, .. }) => assert_eq!(text, "YES"),
            other => panic!("expected MO, got {other:?}"),
        }
    }

    #[test]
    fn broken_udh_still_yields_an_mo() {
        let sm = mo_part(&[9, 0, 3], "");
        assert!(matches!(event(&sm), Some(ChannelEvent::Mo { .. })));
    }
}
