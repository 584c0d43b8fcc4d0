//! Turns one outbound message into the submit_sm bodies of its parts.
//!
//! Text is encoded with the cheapest encoding the channel allows (the protocols `sms`
//! module's `choose`), or the client's hint when it can carry the text, then split. The
//! concatenation mode comes from the channel config: UDH with an 8-bit or 16-bit reference,
//! or SAR TLVs — never both on one part. The reference must be fresh per message; the caller
//! passes it (the worker counts them).
//!
//! Addresses: `+` followed by digits → TON 1 (international) / NPI 1 (E.164), `+` dropped;
//! all digits → TON 0 / NPI 1 (the center decides national vs international); anything else
//! (an alphanumeric sender) → TON 5 / NPI 0.

use sluice_protocols::smpp::{Address, Octets, Sm};
use sluice_protocols::sms::{self, ConcatScheme, EncodingSet, SplitOptions};

use crate::channel::content::{ContentError, split_content};
use crate::channel::egress::OutboundMessage;

/// Channel-wide settings for building parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSettings {
    /// UDH 8-bit, UDH 16-bit or SAR.
    pub concat: ConcatScheme,
    /// Encodings the center accepts.
    pub encodings: EncodingSet,
    /// Sender used when the message has none.
    pub default_source: String,
    /// registered_delivery (1 = receipt on final state).
    pub registered_delivery: u8,
    /// Most parts a message may have.
    pub max_parts: usize,
}

impl Default for PartSettings {
    fn default() -> Self {
        Self {
            concat: ConcatScheme::Udh8,
            encodings: EncodingSet::SMPP_DEFAULT,
            default_source: String::new(),
            registered_delivery: 1,
            max_parts: 16,
        }
    }
}

/// Why a message cannot be turned into parts (a permanent failure of the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No allowed encoding carries the text.
    #[error("no allowed encoding can carry the text")]
    NoEncoding,
    /// Splitting failed (too many parts, UDH too long, …).
    #[error("cannot split: {0}")]
    Split(#[from] sms::SplitError),
    /// The client's UDH does not parse.
    #[error("invalid UDH: {0}")]
    Udh(#[from] sms::UdhError),
    /// An MMS reached an SMS channel (routes send `kind = "mms"` to MM7 channels).
    #[error("multimedia content cannot be sent as SMS")]
    NotSms,
    /// A field does not fit the PDU (e.g. an address longer than SMPP allows).
    #[error("cannot encode submit_sm: {0}")]
    Encode(#[from] sluice_protocols::smpp::EncodeError),
}

impl From<ContentError> for BuildError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::NoEncoding => Self::NoEncoding,
            ContentError::Split(e) => Self::Split(e),
            ContentError::Udh(e) => Self::Udh(e),
            ContentError::NotSms => Self::NotSms,
        }
    }
}

/// SMPP address triple for a number or alphanumeric sender.
#[must_use]
pub fn address(number: &str) -> Address {
    if let Some(digits) = number.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Address::new(1, 1, Octets::copy_from_slice(digits.as_bytes()));
    }
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        return Address::new(0, 1, Octets::copy_from_slice(number.as_bytes()));
    }
    Address::new(5, 0, Octets::copy_from_slice(number.as_bytes()))
}

/// Builds the submit_sm body of every part, in part order (part n = index n − 1).
///
/// # Errors
/// [`BuildError`] when the message cannot be sent as configured; retrying will not help.
pub fn build_parts(
    msg: &OutboundMessage,
    settings: &PartSettings,
    reference: u16,
) -> Result<Vec<Box<Sm>>, BuildError> {
    let opts = SplitOptions {
        max_parts: settings.max_parts.clamp(1, 255),
        ..SplitOptions::new(settings.concat, reference)
    };
    let parts = split_content(
        &msg.content,
        |e| e.smpp_data_coding().is_some(),
        settings.encodings,
        &opts,
    )?;
    let source = address(msg.from.as_deref().unwrap_or(&settings.default_source));
    let dest = address(&msg.to);
    parts
        .into_iter()
        .map(|part| {
            let concat = part.concat;
            let mut sm = Sm {
                source: source.clone(),
                dest: dest.clone(),
                esm_class: if part.esm_udhi { 0x40 } else { 0 },
                registered_delivery: settings.registered_delivery,
                data_coding: part.encoding.smpp_data_coding().unwrap_or(8),
                short_message: Octets::from(part.into_short_message()),
                ..Sm::default()
            };
            if settings.concat == ConcatScheme::Sar
                && let Some(c) = concat
            {
                sm.tlvs.set_sar(c.reference, c.total, c.seq);
            }
            // Validate once here so the bind never meets a PDU it cannot write (without a
            // command around a copy of it: that copy was 1 % of the CPU at full speed).
            sm.encoded_body_len()?;
            Ok(Box::new(sm))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::egress::Content;

    fn msg(text: &str) -> OutboundMessage {
        OutboundMessage {
            id: 1,
            attempt: 0,
            from: Some("10086".into()),
            to: "+8613800138000".into(),
            content: Content::Text {
                text: text.into(),
                hint: None,
            },
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address("+8613800138000"),
            Address::new(1, 1, "8613800138000")
        );
        assert_eq!(address("10086"), Address::new(0, 1, "10086"));
        assert_eq!(address("Sluice"), Address::new(5, 0, "Sluice"));
        assert_eq!(address("+"), Address::new(5, 0, "+"));
    }

    #[test]
    fn single_part_gsm() {
        let parts = build_parts(&msg("hello"), &PartSettings::default(), 7).unwrap();
        assert_eq!(parts.len(), 1);
        let sm = &parts[0];
        assert_eq!(sm.short_message.as_ref(), b"hello");
        assert_eq!(sm.esm_class, 0);
        assert_eq!(sm.data_coding, 0);
        assert_eq!(sm.registered_delivery, 1);
        assert_eq!(sm.dest, Address::new(1, 1, "8613800138000"));
        assert!(sm.tlvs.is_empty());
    }

    #[test]
    fn long_text_udh8_and_udh16() {
        let text = "x".repeat(400);
        let parts = build_parts(&msg(&text), &PartSettings::default(), 0x1234).unwrap();
        assert_eq!(parts.len(), 3);
        for (i, sm) in parts.iter().enumerate() {
            assert_eq!(sm.esm_class, 0x40);
            let seq = u8::try_from(i + 1).unwrap();
            assert_eq!(&sm.short_message[..6], &[5, 0, 3, 0x34, 3, seq]);
            assert!(sm.tlvs.is_empty(), "UDH and SAR never both");
        }
        let settings = PartSettings {
            concat: ConcatScheme::Udh16,
            ..PartSettings::default()
        };
        let parts = build_parts(&msg(&text), &settings, 0x1234).unwrap();
        assert_eq!(&parts[0].short_message[..7], &[6, 8, 4, 0x12, 0x34, 3, 1]);
    }

    #[test]
    fn long_text_sar() {
        let text = "你好".repeat(50);
        let settings = PartSettings {
            concat: ConcatScheme::Sar,
            ..PartSettings::default()
        };
        let parts = build_parts(&msg(&text), &settings, 0xBEEF).unwrap();
        assert_eq!(parts.len(), 2);
        for (i, sm) in parts.iter().enumerate() {
            assert_eq!(sm.esm_class, 0, "no UDHI with SAR");
            assert_eq!(sm.data_coding, 8);
            assert_eq!(sm.tlvs.sar_msg_ref_num(), Some(0xBEEF));
            assert_eq!(sm.tlvs.sar_total_segments(), Some(2));
            assert_eq!(
                sm.tlvs.sar_segment_seqnum(),
                Some(u8::try_from(i + 1).unwrap())
            );
        }
        assert_eq!(parts[0].short_message.len(), 140);
    }

    #[test]
    fn too_many_parts_is_an_error() {
        let settings = PartSettings {
            max_parts: 2,
            ..PartSettings::default()
        };
        let err = build_parts(&msg(&"y".repeat(1000)), &settings, 1).unwrap_err();
        assert!(matches!(err, BuildError::Split(_)));
    }

    #[test]
    fn unencodable_text_is_an_error() {
        let settings = PartSettings {
            encodings: EncodingSet::GSM7,
            ..PartSettings::default()
        };
        assert_eq!(
            build_parts(&msg("你好"), &settings, 1).unwrap_err(),
            BuildError::NoEncoding
        );
    }

    /// A part the bind could not write (a NUL inside destination_addr, a C-octet string)
    /// is refused when it is built, not met by the bind.
    #[test]
    fn a_field_the_pdu_cannot_hold_is_an_error() {
        let mut m = msg("hello");
        m.to = "ab\0cd".into();
        assert!(matches!(
            build_parts(&m, &PartSettings::default(), 1).unwrap_err(),
            BuildError::Encode(_)
        ));
    }

    #[test]
    fn binary_with_port_udh() {
        let m = OutboundMessage {
            content: Content::Binary {
                data: vec![0xAB; 10],
                udh: Some(vec![6, 5, 4, 0x0B, 0x84, 0x23, 0xF0]),
            },
            ..msg("")
        };
        let parts = build_parts(&m, &PartSettings::default(), 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data_coding, 4);
        assert_eq!(parts[0].esm_class, 0x40);
        assert_eq!(
            &parts[0].short_message[..7],
            &[6, 5, 4, 0x0B, 0x84, 0x23, 0xF0]
        );
    }
}
