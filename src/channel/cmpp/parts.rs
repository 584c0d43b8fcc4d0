//! Turns one outbound message into the CMPP SUBMITs of its parts.
//!
//! Text goes as ASCII (`Msg_Fmt` 0) when it is plain ASCII, else as UCS-2 (8) — the protocols
//! `sms` module's `choose` over those two — or in the client's hint when CMPP defines it and it
//! can carry the text (GBK, 15, only when asked: the air interface has no GBK, so the ISMG
//! re-encodes GBK to UCS-2 and a part sized for 140 GBK octets can exceed one SMS there); binary content (WAP Push) goes as `Msg_Fmt` 4 with its own UDH. A long
//! message is split with a UDH (IE 0x00 or 0x08, `TP_udhi` = 1) and numbered in
//! `Pk_total` / `Pk_number` as well, as ISMGs expect both.
//!
//! Addresses: CMPP carries bare digits. The destination loses a leading `+`; the source is
//! the channel's service number (`src_id`) or, when the message's sender starts with it, that
//! sender (service number + extension) — an ISMG refuses any other Src_Id (Result 10), so a
//! sender outside the service number is replaced by `src_id` rather than sent to fail.

use bytes::Bytes;
use sluice_protocols::cmpp::{FixedStr, MsgFmt, Submit, Version};
use sluice_protocols::sms::{self, ConcatScheme, EncodingSet, SplitOptions};

use crate::channel::content::{ContentError, split_content};
use crate::channel::egress::OutboundMessage;
use crate::config::{ChannelConfig, CmppSettings};

/// Channel-wide settings for building SUBMITs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSettings {
    /// The version the SUBMITs are encoded for (terminal id widths, LinkID).
    pub version: Version,
    /// UDH 8-bit or 16-bit reference.
    pub concat: ConcatScheme,
    /// Encodings chosen from when the client gave no hint.
    pub encodings: EncodingSet,
    /// Msg_src: the SP code.
    pub msg_src: String,
    /// Service_Id.
    pub service_id: String,
    /// Src_Id: the service number, the sender of messages without one of their own.
    pub src_id: String,
    /// Fee_UserType.
    pub fee_user_type: u8,
    /// FeeType.
    pub fee_type: String,
    /// FeeCode.
    pub fee_code: String,
    /// LinkID (3.0).
    pub link_id: String,
    /// Registered_Delivery (1 = status report wanted).
    pub registered_delivery: u8,
    /// Most parts a message may have.
    pub max_parts: usize,
}

impl Default for PartSettings {
    fn default() -> Self {
        Self {
            version: Version::V20,
            concat: ConcatScheme::Udh8,
            encodings: EncodingSet::ASCII.union(EncodingSet::UCS2),
            msg_src: String::new(),
            service_id: String::new(),
            src_id: String::new(),
            fee_user_type: 0,
            fee_type: "01".into(),
            fee_code: "000000".into(),
            link_id: String::new(),
            registered_delivery: 1,
            max_parts: 16,
        }
    }
}

impl PartSettings {
    /// The settings of a CMPP `[[channels]]` entry.
    #[must_use]
    pub fn from_config(c: &ChannelConfig, cmpp: &CmppSettings) -> Self {
        Self {
            version: cmpp.version.version(),
            concat: c.concatenation.scheme(),
            msg_src: cmpp.source_addr.clone(),
            service_id: cmpp.service_id.clone(),
            src_id: cmpp.src_id.clone(),
            fee_user_type: cmpp.fee_user_type,
            fee_type: cmpp.fee_type.clone(),
            fee_code: cmpp.fee_code.clone(),
            link_id: cmpp.link_id.clone(),
            ..Self::default()
        }
    }
}

/// Why a message cannot be turned into SUBMITs (a permanent failure of the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No encoding CMPP carries can hold the text.
    #[error("no CMPP encoding can carry the text")]
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
    /// SAR TLVs do not exist in CMPP.
    #[error("SAR concatenation does not exist in CMPP")]
    Sar,
    /// A field does not fit its CMPP width (destination longer than the terminal id, …).
    #[error("{field} does not fit CMPP: {value:?}")]
    Field {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The SUBMIT does not encode.
    #[error("cannot encode SUBMIT: {0}")]
    Encode(#[from] sluice_protocols::cmpp::EncodeError),
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

/// The Src_Id of a message: its sender when that is the service number plus an extension,
/// else the service number.
#[must_use]
pub fn source(from: Option<&str>, src_id: &str) -> String {
    match from {
        Some(f)
            if f.starts_with(src_id) && f.len() <= 21 && f.bytes().all(|b| b.is_ascii_digit()) =>
        {
            f.to_owned()
        }
        _ => src_id.to_owned(),
    }
}

fn fixed<const N: usize>(field: &'static str, value: &str) -> Result<FixedStr<N>, BuildError> {
    FixedStr::new(value.as_bytes()).map_err(|_| BuildError::Field {
        field,
        value: value.to_owned(),
    })
}

/// Builds the SUBMIT of every part, in part order (part n = index n − 1).
///
/// # Errors
/// [`BuildError`] when the message cannot be sent as configured; retrying will not help.
pub fn build_parts(
    msg: &OutboundMessage,
    settings: &PartSettings,
    reference: u16,
) -> Result<Vec<Box<Submit>>, BuildError> {
    if settings.concat == ConcatScheme::Sar {
        return Err(BuildError::Sar);
    }
    let opts = SplitOptions {
        max_parts: settings.max_parts.clamp(1, 255),
        ..SplitOptions::new(settings.concat, reference)
    };
    let parts = split_content(
        &msg.content,
        |e| e.cmpp_msg_fmt().is_some(),
        settings.encodings,
        &opts,
    )?;
    let dest = msg.to.strip_prefix('+').unwrap_or(&msg.to);
    let tid = settings.version.terminal_id_len();
    if dest.is_empty() || dest.len() > tid || !dest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BuildError::Field {
            field: "Dest_terminal_Id",
            value: msg.to.to_string(),
        });
    }
    let template = Submit {
        registered_delivery: settings.registered_delivery,
        service_id: fixed("Service_Id", &settings.service_id)?,
        fee_user_type: settings.fee_user_type,
        msg_src: fixed("Msg_src", &settings.msg_src)?,
        fee_type: fixed("FeeType", &settings.fee_type)?,
        fee_code: fixed("FeeCode", &settings.fee_code)?,
        src_id: fixed("Src_Id", &source(msg.from.as_deref(), &settings.src_id))?,
        dest_terminal_ids: vec![fixed("Dest_terminal_Id", dest)?],
        link_id: if settings.version == Version::V30 {
            fixed("LinkID", &settings.link_id)?
        } else {
            FixedStr::default()
        },
        ..Submit::default()
    };
    let total = u8::try_from(parts.len()).map_err(|_| BuildError::Field {
        field: "Pk_total",
        value: parts.len().to_string(),
    })?;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let fmt = part.encoding.cmpp_msg_fmt().ok_or(BuildError::NoEncoding)?;
            let submit = Submit {
                pk_total: total,
                pk_number: u8::try_from(i + 1).unwrap_or(u8::MAX),
                tp_udhi: u8::from(part.esm_udhi),
                msg_fmt: MsgFmt::from_raw(fmt),
                msg_content: Bytes::from(part.into_short_message()),
                ..template.clone()
            };
            // Validate once here so the connection never meets a PDU it cannot write (on the
            // SUBMIT itself: a `Pdu` around a copy of it cost a clone per part).
            submit.encoded_len(settings.version)?;
            Ok(Box::new(submit))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::egress::Content;
    use sluice_protocols::sms::Encoding;

    fn settings() -> PartSettings {
        PartSettings {
            msg_src: "901234".into(),
            service_id: "MSGTEST".into(),
            src_id: "10658000".into(),
            ..PartSettings::default()
        }
    }

    fn msg(text: &str, from: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            id: 1,
            attempt: 0,
            from: from.map(Into::into),
            to: "+8613800138000".into(),
            content: Content::Text {
                text: text.into(),
                hint: None,
            },
        }
    }

    #[test]
    fn short_ascii_and_sender_under_the_service_number() {
        let parts = build_parts(&msg("hello", Some("106580001234")), &settings(), 1).unwrap();
        assert_eq!(parts.len(), 1);
        let s = &parts[0];
        assert_eq!(s.msg_fmt, MsgFmt::Ascii);
        assert_eq!((s.pk_total, s.pk_number, s.tp_udhi), (1, 1, 0));
        assert_eq!(s.src_id.as_bytes(), b"106580001234");
        assert_eq!(s.dest_terminal_ids[0].as_bytes(), b"8613800138000");
        assert_eq!(s.msg_src.as_bytes(), b"901234");
        assert_eq!(s.registered_delivery, 1);
        assert_eq!(&s.msg_content[..], b"hello");
        // A sender outside the service number is replaced by it.
        let parts = build_parts(&msg("hello", Some("10690000")), &settings(), 1).unwrap();
        assert_eq!(parts[0].src_id.as_bytes(), b"10658000");
    }

    #[test]
    fn long_chinese_goes_in_parts_with_udh_and_pk_numbers() {
        let text = "你好世界".repeat(30);
        let parts = build_parts(&msg(&text, None), &settings(), 0x42).unwrap();
        assert!(parts.len() > 1);
        let total = u8::try_from(parts.len()).unwrap();
        for (i, s) in parts.iter().enumerate() {
            assert_eq!(s.tp_udhi, 1);
            assert_eq!(s.pk_total, total);
            assert_eq!(s.pk_number, u8::try_from(i + 1).unwrap());
            assert_eq!(&s.msg_content[..6], &[5, 0, 3, 0x42, total, s.pk_number]);
            assert!(s.msg_content.len() <= 140);
            assert!(s.check().is_ok());
        }
    }

    #[test]
    fn mixed_chinese_goes_as_ucs2_unless_gbk_is_asked_for() {
        let parts = build_parts(&msg("ok 你好", None), &settings(), 1).unwrap();
        assert_eq!(parts[0].msg_fmt, MsgFmt::Ucs2);
    }

    #[test]
    fn gbk_hint_is_honoured_and_unknown_destinations_fail() {
        let mut m = msg("你好", None);
        m.content = Content::Text {
            text: "你好".into(),
            hint: Some(Encoding::Gbk),
        };
        let parts = build_parts(&m, &settings(), 1).unwrap();
        assert_eq!(parts[0].msg_fmt, MsgFmt::Gbk);
        assert_eq!(&parts[0].msg_content[..], &[0xC4, 0xE3, 0xBA, 0xC3]);
        m.to = "not-a-number".into();
        assert!(matches!(
            build_parts(&m, &settings(), 1),
            Err(BuildError::Field {
                field: "Dest_terminal_Id",
                ..
            })
        ));
    }

    #[test]
    fn binary_with_port_udh_is_msg_fmt_4() {
        let m = OutboundMessage {
            content: Content::Binary {
                data: vec![0xAB; 10],
                udh: Some(vec![6, 5, 4, 0x0B, 0x84, 0x23, 0xF0]),
            },
            ..msg("", None)
        };
        let parts = build_parts(&m, &settings(), 1).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].msg_fmt, MsgFmt::Binary);
        assert_eq!(parts[0].tp_udhi, 1);
        assert_eq!(
            &parts[0].msg_content[..7],
            &[6, 5, 4, 0x0B, 0x84, 0x23, 0xF0]
        );
    }

    #[test]
    fn link_id_only_on_3_0() {
        let mut s = settings();
        s.link_id = "LINK1".into();
        let parts = build_parts(&msg("x", None), &s, 1).unwrap();
        assert!(parts[0].link_id.is_empty(), "2.0 has no LinkID");
        s.version = Version::V30;
        let parts = build_parts(&msg("x", None), &s, 1).unwrap();
        assert_eq!(parts[0].link_id.as_bytes(), b"LINK1");
    }
}
