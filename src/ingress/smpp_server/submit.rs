//! From an ESME's submit_sm / submit_multi / data_sm to the HTTP API's validated items.
//!
//! Job: decode addresses and user data (data_coding 0 GSM 7-bit unpacked, 1 ASCII, 3
//! Latin-1, 8 UCS-2, 15 GBK → text; 2/4 and 0xF4..=0xF7 → binary) into the same
//! [`WireMessage`] the HTTP API takes, then run the HTTP API's own [`validate`], so an SMPP
//! submit and a JSON message can never be checked differently. Pure: no I/O, no clock.
//!
//! Long messages: a part of a concatenated message (UDH concatenation IE with esm_class
//! 0x40, or SAR TLVs) comes back as [`Incoming::Part`] for the connection's reassembler;
//! the whole message is accepted as ONE message with ONE sluice id, and every part's
//! submit_sm_resp carries that id once the message is durable. So exactly one receipt goes
//! back for it, whatever the downstream center does with the parts.
//!
//! A receipt request (registered_delivery bits 0-1 = 1 or 2) is kept with the message as
//! the tag [`SMPP_RECEIPT_TAG`]: the receipt pump reads it to decide whether the ESME gets a
//! deliver_sm for the message's final state.

use sluice_protocols::smpp::session::smsc::Submit;
use sluice_protocols::smpp::{Address, CommandStatus, DestAddress, Octets, Tlvs};
use sluice_protocols::sms::{self, Concat, Udh};

use crate::ingress::batch::Item;
use crate::ingress::message::{Encoding, FieldError, SenderPolicy, WireMessage, validate};
use crate::receipt::outbox::SMPP_RECEIPT_TAG;
use crate::store::Lane;

/// The fields every kind of submit shares, already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Sender; `None` = the account's default.
    pub from: Option<String>,
    /// Destinations (one unless submit_multi).
    pub dests: Vec<String>,
    /// data_coding as sent.
    pub data_coding: u8,
    /// registered_delivery bits 0-1 (0 none, 1 every final state, 2 failures only).
    pub receipt: u8,
}

/// A submit, decoded as far as it can be without the other parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete message: its user data and any UDH left after the concatenation IE.
    Whole {
        /// Shared fields.
        common: Common,
        /// User data (without UDH).
        data: Vec<u8>,
        /// Non-concatenation UDH (binary only), with its length octet.
        udh: Option<Vec<u8>>,
    },
    /// One part of a concatenated message.
    Part {
        /// Shared fields.
        common: Common,
        /// Reference, total and this part's number.
        concat: Concat,
        /// This part's user data (without UDH).
        data: Vec<u8>,
    },
}

fn address(a: &Address) -> Result<String, CommandStatus> {
    let s = a
        .addr
        .as_str()
        .ok_or(CommandStatus::EsmeRinvdstadr)?
        .trim()
        .to_owned();
    // TON 1 (international) numbers come without the '+' the HTTP API uses for E.164.
    if a.ton == 1 && !s.starts_with('+') && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(format!("+{s}"));
    }
    Ok(s)
}

fn source(a: &Address) -> Result<Option<String>, CommandStatus> {
    let s = address(a).map_err(|_| CommandStatus::EsmeRinvsrcadr)?;
    Ok((!s.is_empty()).then_some(s))
}

/// Concatenation numbers, payload without UDH, and the UDH left without concatenation IEs.
type Split = (Option<Concat>, Vec<u8>, Option<Vec<u8>>);

/// Splits user data into (concatenation, payload, other UDH) using esm_class UDHI and SAR
/// TLVs.
fn split_user_data(esm_class: u8, user_data: &[u8], tlvs: &Tlvs) -> Result<Split, CommandStatus> {
    if esm_class & 0x40 != 0 {
        let (udh, rest) = Udh::parse(user_data).map_err(|_| CommandStatus::EsmeRinvesmclass)?;
        let concat = udh.concat();
        let others: Vec<_> = udh
            .ies
            .iter()
            .filter(|ie| ie.as_concat().is_none())
            .cloned()
            .collect();
        let other_udh = if others.is_empty() {
            None
        } else {
            Some(
                Udh { ies: others }
                    .encode()
                    .map_err(|_| CommandStatus::EsmeRinvesmclass)?,
            )
        };
        return Ok((concat, rest.to_vec(), other_udh));
    }
    let sar = match (
        tlvs.sar_msg_ref_num(),
        tlvs.sar_total_segments(),
        tlvs.sar_segment_seqnum(),
    ) {
        (Some(reference), Some(total), Some(seq)) => Some(Concat {
            reference,
            total,
            seq,
        }),
        _ => None,
    };
    Ok((sar, user_data.to_vec(), None))
}

fn incoming(
    common: Common,
    esm_class: u8,
    user_data: &Octets,
    tlvs: &Tlvs,
) -> Result<Incoming, CommandStatus> {
    let (concat, data, udh) = split_user_data(esm_class, user_data.as_slice(), tlvs)?;
    match concat {
        Some(c) if c.total > 1 => {
            if !c.is_valid() {
                return Err(CommandStatus::EsmeRinvesmclass);
            }
            Ok(Incoming::Part {
                common,
                concat: c,
                data,
            })
        }
        _ => Ok(Incoming::Whole { common, data, udh }),
    }
}

/// Decodes a submit surfaced by the session.
///
/// # Errors
/// The command status to answer with (bad address, distribution list, bad UDH).
pub fn decode(submit: &Submit) -> Result<Incoming, CommandStatus> {
    match submit {
        Submit::Sm(sm) => {
            let common = Common {
                from: source(&sm.source)?,
                dests: vec![address(&sm.dest)?],
                data_coding: sm.data_coding,
                receipt: sm.registered_delivery & 0x03,
            };
            incoming(common, sm.esm_class, sm.payload(), &sm.tlvs)
        }
        Submit::Data(d) => {
            let common = Common {
                from: source(&d.source)?,
                dests: vec![address(&d.dest)?],
                data_coding: d.data_coding,
                receipt: d.registered_delivery & 0x03,
            };
            let empty = Octets::new();
            let payload = d.tlvs.message_payload().unwrap_or(&empty);
            incoming(common, d.esm_class, payload, &d.tlvs)
        }
        Submit::Multi(m) => {
            let mut dests = Vec::with_capacity(m.dests.len());
            for d in &m.dests {
                match d {
                    DestAddress::Sme(a) => dests.push(address(a)?),
                    // sluice keeps no distribution lists.
                    DestAddress::DistributionList(_) => return Err(CommandStatus::EsmeRinvdlname),
                }
            }
            if dests.is_empty() {
                return Err(CommandStatus::EsmeRinvnumdests);
            }
            let common = Common {
                from: source(&m.source)?,
                dests,
                data_coding: m.data_coding,
                receipt: m.registered_delivery & 0x03,
            };
            let payload = m.tlvs.message_payload().unwrap_or(&m.short_message);
            incoming(common, m.esm_class, payload, &m.tlvs)
        }
    }
}

/// Text of `data` in `data_coding`, with the encoding hint to keep; `None` for binary.
///
/// # Errors
/// `ESME_RINVDCS` for a coding sluice does not take or bytes that are not valid in it.
fn text_of(data_coding: u8, data: &[u8]) -> Result<Option<(String, Encoding)>, CommandStatus> {
    let bad = |_| CommandStatus::EsmeRinvdcs;
    Ok(Some(match data_coding {
        0 | 0xF0..=0xF3 => match sms::decode(data, sms::Encoding::Gsm7) {
            Ok(t) => (t, Encoding::Gsm7),
            // Many ESMEs send plain Latin-1/ASCII octets as "SMSC default alphabet".
            Err(_) => (
                sms::decode(data, sms::Encoding::Latin1).map_err(bad)?,
                Encoding::Auto,
            ),
        },
        1 => (
            sms::decode(data, sms::Encoding::Ascii).map_err(bad)?,
            Encoding::Auto,
        ),
        3 => (
            sms::decode(data, sms::Encoding::Latin1).map_err(bad)?,
            Encoding::Latin1,
        ),
        8 => (
            sms::decode(data, sms::Encoding::Ucs2).map_err(bad)?,
            Encoding::Ucs2,
        ),
        15 => (
            sms::decode(data, sms::Encoding::Gbk).map_err(bad)?,
            Encoding::Gbk,
        ),
        2 | 4 | 0xF4..=0xF7 => return Ok(None),
        _ => return Err(CommandStatus::EsmeRinvdcs),
    }))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The status of a submit whose destination a public contact rule refuses:
/// `ESME_RINVDSTADR` (0x0000000B). SMPP 3.4 has no "barred" status; this is the one SMSCs
/// answer for a destination they will not deliver to, and the one ESMEs (Kannel among them)
/// treat as permanent for that destination — retrying a do-not-disturb number must not
/// happen. A vendor status (0x400–0x4FF) would say more but is retried as unknown by many
/// clients. The refusal is counted in `sluice_rules_refused_total` under its rule.
pub const REFUSED_BY_RULE: CommandStatus = CommandStatus::EsmeRinvdstadr;

/// The SMPP status for a field the HTTP validation refused.
pub fn status_of(e: &FieldError) -> CommandStatus {
    match e.field.as_str() {
        "to" => CommandStatus::EsmeRinvdstadr,
        "from" => CommandStatus::EsmeRinvsrcadr,
        "text" | "binary" | "udh" => CommandStatus::EsmeRinvmsglen,
        "encoding" => CommandStatus::EsmeRinvdcs,
        _ => CommandStatus::EsmeRsubmitfail,
    }
}

/// Builds the validated items (one per destination) of a complete message, on the
/// account's SMPP `lane` (SMPP carries none).
///
/// # Errors
/// The command status to answer with.
pub fn items(
    common: &Common,
    data: &[u8],
    udh: Option<&[u8]>,
    senders: &SenderPolicy,
    lane: Lane,
) -> Result<Vec<Item>, CommandStatus> {
    let mut base = WireMessage {
        from: common.from.as_deref().map(Into::into),
        lane: Some(lane),
        ..WireMessage::default()
    };
    match text_of(common.data_coding, data)? {
        Some((text, encoding)) => {
            base.text = Some(text);
            base.encoding = Some(encoding);
        }
        None => {
            base.binary = Some(hex(data));
            base.udh = udh.map(hex);
        }
    }
    if common.receipt == 1 || common.receipt == 2 {
        base.tags
            .insert(SMPP_RECEIPT_TAG.to_owned(), common.receipt.to_string());
    }
    let last = common.dests.len().saturating_sub(1);
    let mut items = Vec::with_capacity(common.dests.len());
    for (i, to) in common.dests.iter().enumerate() {
        // The last (usually the only) destination takes the base itself, not a copy.
        let base = if i == last {
            std::mem::take(&mut base)
        } else {
            base.clone()
        };
        let wire = WireMessage {
            to: to.as_str().into(),
            ..base
        };
        let submission = validate(wire, senders).map_err(|e| status_of(&e))?;
        items.push(Item {
            line: i + 1,
            submission,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::message::Payload;
    use sluice_protocols::smpp::Sm;

    fn sm(dc: u8, esm: u8, data: &[u8]) -> Submit {
        Submit::Sm(Box::new(Sm {
            source: Address::new(0, 0, "10690001"),
            dest: Address::new(1, 1, "8613800138000"),
            esm_class: esm,
            data_coding: dc,
            registered_delivery: 1,
            short_message: Octets::copy_from_slice(data),
            ..Sm::default()
        }))
    }

    fn policy() -> SenderPolicy {
        SenderPolicy {
            allowed: vec![],
            default: Some("1069".into()),
            callbacks: false,
        }
    }

    #[test]
    fn short_text_becomes_one_validated_item_with_receipt_tag() {
        let Incoming::Whole { common, data, udh } =
            decode(&sm(8, 0, &[0x4E, 0x2D, 0x65, 0x87])).expect("ok")
        else {
            panic!()
        };
        let items = items(
            &common,
            &data,
            udh.as_deref(),
            &policy(),
            Lane::Notification,
        )
        .expect("valid");
        let s = &items[0].submission;
        assert_eq!(s.to, "+8613800138000");
        assert_eq!(s.from, "10690001");
        assert_eq!(
            s.payload,
            Payload::Text {
                text: "中文".into(),
                encoding: Encoding::Ucs2
            }
        );
        assert_eq!(s.tags.get(SMPP_RECEIPT_TAG).map(String::as_str), Some("1"));
    }

    #[test]
    fn gsm_default_and_latin1_fallback() {
        let text_of = |bytes: &[u8]| {
            let Incoming::Whole { common, data, .. } = decode(&sm(0, 0, bytes)).expect("ok") else {
                panic!()
            };
            match &items(&common, &data, None, &policy(), Lane::Notification).expect("valid")[0]
                .submission
                .payload
            {
                Payload::Text { text, .. } => text.clone(),
                other => panic!("{other:?}"),
            }
        };
        // GSM 03.38 unpacked: 0x00 is '@'.
        assert_eq!(text_of(b"Hello \x00 0"), "Hello @ 0");
        // Octets above 0x7F are not GSM: taken as Latin-1.
        assert_eq!(text_of(b"caf\xe9"), "caf\u{e9}");
        assert_eq!(decode(&sm(0x77, 0, b"x")).map(|_| ()), Ok(()));
        let Incoming::Whole { common, data, .. } = decode(&sm(0x77, 0, b"x")).expect("ok") else {
            panic!()
        };
        assert_eq!(
            items(&common, &data, None, &policy(), Lane::Notification).map(|_| ()),
            Err(CommandStatus::EsmeRinvdcs)
        );
    }

    #[test]
    fn udh_and_sar_parts_are_recognised() {
        let part = [5, 0, 3, 0x2A, 2, 1, b'a', b'b'];
        let Incoming::Part { concat, data, .. } = decode(&sm(0, 0x40, &part)).expect("ok") else {
            panic!()
        };
        assert_eq!((concat.reference, concat.total, concat.seq), (0x2A, 2, 1));
        assert_eq!(data, b"ab");
        let mut s = Sm {
            dest: Address::new(0, 0, "13800138000"),
            short_message: "cd".into(),
            ..Sm::default()
        };
        s.tlvs.set_sar(7, 3, 2);
        let Incoming::Part { concat, .. } = decode(&Submit::Sm(Box::new(s))).expect("ok") else {
            panic!()
        };
        assert_eq!((concat.reference, concat.total, concat.seq), (7, 3, 2));
        assert_eq!(
            decode(&sm(0, 0x40, &[9, 0])).map(|_| ()),
            Err(CommandStatus::EsmeRinvesmclass)
        );
    }

    #[test]
    fn bad_destination_maps_to_rinvdstadr() {
        let s = Submit::Sm(Box::new(Sm {
            dest: Address::new(0, 0, "12ab"),
            short_message: "x".into(),
            ..Sm::default()
        }));
        let Incoming::Whole { common, data, .. } = decode(&s).expect("ok") else {
            panic!()
        };
        assert_eq!(
            items(&common, &data, None, &policy(), Lane::Notification).map(|_| ()),
            Err(CommandStatus::EsmeRinvdstadr)
        );
    }
}
