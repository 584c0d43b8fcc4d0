//! The `si` / `sl` objects of a `wap_push` message: validation and encoding at ingress.
//!
//! Job: turn the wire form of a Service Indication or Service Loading (docs/http-api.md)
//! into the stored binary payload — the WSP push PDU that `sluice_protocols::wap` builds with
//! Kannel's PPG byte choices, plus the WDP port UDH `06 05 04 0B 84 23 F0` (destination
//! 2948, source 9200) — or name the field at fault (`si.href`, `sl.action`, …).
//!
//! Invariants:
//! - The stored payload is exactly `wap_push_pdu(doc)` with `port_udh(PUSH_PORTS)`; the
//!   channel splits it with the same `split_binary` as `wap::wdp::sms_parts`, so the parts
//!   sent are Kannel's (port IE first, then the concatenation IE, repeated in every part).
//! - An accepted push fits [`MAX_PUSH_PARTS`] SMS parts with the 8-bit concatenation
//!   reference (Kannel's scheme), so it is never refused later for size on a UDH-8 channel.
//! - SL hrefs are tokenised with Kannel's prefix table ([`HrefPrefixRule::Kannel`]).
//! - The WSP TID (push id) comes from a process-wide counter, as Kannel's PPG numbers its
//!   pushes; it is the only part of the bytes not fixed by the request.
//!
//! Never panics on input: every string is checked before the encoder sees it.

use std::sync::atomic::{AtomicU8, Ordering};

use jiff::Timestamp;
use serde::Deserialize;
use sluice_protocols::sms::{ConcatScheme, SplitOptions};
use sluice_protocols::wap::{
    HrefPrefixRule, PushDocument, PushOptions, ServiceIndication, ServiceLoading, SiAction,
    SlAction, WapDateTime, wap_push_pdu, wdp,
};

use super::message::{FieldError, Payload, check_url};

/// Most SMS parts a push may need (Kannel's default `max-messages` for a split message).
pub const MAX_PUSH_PARTS: usize = 10;
/// Longest `si_id` in characters.
pub const MAX_SI_ID: usize = 256;

/// `{"href","text","created","si_expires","si_id","action"}` as the client sent it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WireSi {
    /// URL offered to the user (http or https).
    #[serde(default)]
    pub href: Option<String>,
    /// Text shown to the user (white space runs collapse to one space, as Kannel does).
    #[serde(default)]
    pub text: Option<String>,
    /// RFC 3339 creation time (sent in UTC, to the second).
    #[serde(default)]
    pub created: Option<String>,
    /// RFC 3339 time after which the handset deletes the SI.
    #[serde(default)]
    pub si_expires: Option<String>,
    /// Identity for replacing or deleting earlier SIs.
    #[serde(default)]
    pub si_id: Option<String>,
    /// `signal-none` | `signal-low` | `signal-medium` | `signal-high` | `delete`.
    #[serde(default)]
    pub action: Option<String>,
}

/// `{"href","action"}` as the client sent it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WireSl {
    /// URL the handset loads (http or https); required.
    #[serde(default)]
    pub href: Option<String>,
    /// `execute-low` | `execute-high` | `cache`.
    #[serde(default)]
    pub action: Option<String>,
}

static NEXT_TID: AtomicU8 = AtomicU8::new(0);

fn err(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Validates `si` / `sl` of a `wap_push` message and encodes it.
///
/// # Errors
/// The field at fault: `si` (both or neither given), `si.href`, `si.text`, `si.created`,
/// `si.si_expires`, `si.si_id`, `si.action`, `sl.href`, `sl.action`.
pub fn payload(si: Option<WireSi>, sl: Option<WireSl>) -> Result<Payload, FieldError> {
    let (doc, size_field) = match (si, sl) {
        (Some(_), Some(_)) => return Err(err("sl", "give either si or sl, not both")),
        (None, None) => {
            return Err(err(
                "si",
                "missing: a wap_push message needs an si or an sl object",
            ));
        }
        (Some(si), None) => document_si(si)?,
        (None, Some(sl)) => document_sl(sl)?,
    };
    let opts = PushOptions {
        tid: NEXT_TID.fetch_add(1, Ordering::Relaxed),
        ..PushOptions::default()
    };
    let pdu = wap_push_pdu(&doc, &opts).map_err(|e| err(size_field, e.to_string()))?;
    let split = SplitOptions {
        max_parts: MAX_PUSH_PARTS,
        ..SplitOptions::new(ConcatScheme::Udh8, 0)
    };
    if let Err(e) = wdp::sms_parts(&pdu, wdp::PUSH_PORTS, &split) {
        return Err(err(
            size_field,
            format!(
                "too long: the {}-octet push PDU does not fit {MAX_PUSH_PARTS} SMS parts ({e})",
                pdu.len()
            ),
        ));
    }
    Ok(Payload::Binary {
        data: pdu,
        udh: Some(wdp::port_udh(wdp::PUSH_PORTS)),
    })
}

/// The document and the field to blame when it is too long.
fn document_si(si: WireSi) -> Result<(PushDocument, &'static str), FieldError> {
    if let Some(h) = &si.href {
        check_href(h).map_err(|r| err("si.href", r))?;
    }
    let text = si.text.unwrap_or_default();
    if text.contains('\0') {
        return Err(err("si.text", "contains NUL"));
    }
    let blank = text.trim().is_empty();
    if si.href.is_none() && blank {
        return Err(err("si.href", "missing: an SI needs an href or a text"));
    }
    let created = si
        .created
        .as_deref()
        .map(|s| wap_time(s).map_err(|r| err("si.created", r)))
        .transpose()?;
    let expires = si
        .si_expires
        .as_deref()
        .map(|s| wap_time(s).map_err(|r| err("si.si_expires", r)))
        .transpose()?;
    if let (Some((c, _)), Some((e, _))) = (&created, &expires)
        && e <= c
    {
        return Err(err(
            "si.si_expires",
            format!("{e} is not after created {c}"),
        ));
    }
    if let Some(id) = &si.si_id {
        let n = id.chars().count();
        if n == 0 || n > MAX_SI_ID {
            return Err(err(
                "si.si_id",
                format!("length {n} outside 1..={MAX_SI_ID}"),
            ));
        }
        if id.contains('\0') {
            return Err(err("si.si_id", "contains NUL"));
        }
    }
    let action = si
        .action
        .as_deref()
        .map(|a| {
            SiAction::from_name(a).ok_or_else(|| {
                err(
                    "si.action",
                    format!(
                        "unknown action {a:?}: one of {}",
                        SiAction::ALL.map(SiAction::as_str).join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let blame = if blank { "si.href" } else { "si.text" };
    let doc = ServiceIndication {
        href: si.href,
        si_id: si.si_id,
        created: created.map(|(_, w)| w),
        si_expires: expires.map(|(_, w)| w),
        action,
        class: None,
        text,
    };
    Ok((PushDocument::Si(doc), blame))
}

fn document_sl(sl: WireSl) -> Result<(PushDocument, &'static str), FieldError> {
    let href = sl
        .href
        .ok_or_else(|| err("sl.href", "missing: an SL needs an href"))?;
    check_href(&href).map_err(|r| err("sl.href", r))?;
    let action = sl
        .action
        .as_deref()
        .map(|a| {
            SlAction::from_name(a).ok_or_else(|| {
                err(
                    "sl.action",
                    format!(
                        "unknown action {a:?}: one of {}",
                        SlAction::ALL.map(SlAction::as_str).join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let doc = ServiceLoading {
        href,
        action,
        prefix_rule: HrefPrefixRule::Kannel,
    };
    Ok((PushDocument::Sl(doc), "sl.href"))
}

/// An http(s) URL with a host, at most `MAX_URL` bytes, no NUL or white space.
fn check_href(h: &str) -> Result<(), String> {
    if h.chars().any(|c| c == '\0' || c.is_whitespace()) {
        return Err(format!("contains NUL or white space: {h:?}"));
    }
    check_url(h)
}

/// RFC 3339 → the push date (UTC, whole seconds; sub-second digits are dropped).
fn wap_time(s: &str) -> Result<(Timestamp, WapDateTime), String> {
    let t: Timestamp = s
        .parse()
        .map_err(|e| format!("not an RFC 3339 time with offset: {s:?} ({e})"))?;
    let t = Timestamp::from_second(t.as_second()).map_err(|e| e.to_string())?;
    let iso = t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let w = WapDateTime::parse(&iso).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((t, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::message::MAX_URL;
    use sluice_protocols::wap::wap_push_sms;

    fn si(href: &str, text: &str) -> WireSi {
        WireSi {
            href: Some(href.into()),
            text: Some(text.into()),
            ..WireSi::default()
        }
    }

    fn field(r: Result<Payload, FieldError>) -> String {
        r.expect_err("must be invalid").field
    }

    fn binary(p: Payload) -> (Vec<u8>, Vec<u8>) {
        match p {
            Payload::Binary { data, udh } => (data, udh.expect("port UDH")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn si_is_the_protocols_push_pdu_with_the_port_udh() {
        let wire = WireSi {
            href: Some("http://www.sluice.com/offer/42".into()),
            text: Some("Your bill is ready".into()),
            created: Some("2026-11-26T09:30:00+08:00".into()),
            si_expires: Some("2026-12-01T00:00:00Z".into()),
            si_id: Some("offer-42".into()),
            action: Some("signal-high".into()),
        };
        let (data, udh) = binary(payload(Some(wire), None).expect("valid"));
        assert_eq!(udh, [0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0]);
        let doc = PushDocument::Si(ServiceIndication {
            href: Some("http://www.sluice.com/offer/42".into()),
            si_id: Some("offer-42".into()),
            created: WapDateTime::parse("2026-11-26T01:30:00Z").ok(),
            si_expires: WapDateTime::parse("2026-12-01T00:00:00Z").ok(),
            action: Some(SiAction::SignalHigh),
            class: None,
            text: "Your bill is ready".into(),
        });
        let opts = PushOptions {
            tid: data[0],
            ..PushOptions::default()
        };
        assert_eq!(data, wap_push_pdu(&doc, &opts).expect("encodes"));
        let parts = wap_push_sms(&doc, 0, &opts).expect("parts");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].payload, data);
    }

    #[test]
    fn sl_uses_kannels_prefix_table() {
        let wire = WireSl {
            href: Some("http://www.sluice.net/load/me".into()),
            action: Some("execute-high".into()),
        };
        let (data, _) = binary(payload(None, Some(wire)).expect("valid"));
        let doc = PushDocument::Sl(ServiceLoading {
            href: "http://www.sluice.net/load/me".into(),
            action: Some(SlAction::ExecuteHigh),
            prefix_rule: HrefPrefixRule::Kannel,
        });
        let opts = PushOptions {
            tid: data[0],
            ..PushOptions::default()
        };
        assert_eq!(data, wap_push_pdu(&doc, &opts).expect("encodes"));
    }

    #[test]
    fn both_or_neither_is_refused() {
        let both = payload(Some(si("http://a.com/", "x")), Some(WireSl::default()));
        assert_eq!(field(both), "sl");
        assert_eq!(field(payload(None, None)), "si");
    }

    #[test]
    fn si_fields_are_checked_one_by_one() {
        assert_eq!(
            field(payload(Some(si("ftp://a.com/", "x")), None)),
            "si.href"
        );
        assert_eq!(field(payload(Some(si("not a url", "x")), None)), "si.href");
        assert_eq!(field(payload(Some(si("http://", "x")), None)), "si.href");
        let long_href = format!("http://a.com/{}", "x".repeat(MAX_URL));
        assert_eq!(field(payload(Some(si(&long_href, "x")), None)), "si.href");
        let empty = WireSi {
            text: Some("   ".into()),
            ..WireSi::default()
        };
        assert_eq!(field(payload(Some(empty), None)), "si.href");
        let text_only = WireSi {
            text: Some("hello".into()),
            ..WireSi::default()
        };
        assert!(payload(Some(text_only), None).is_ok());
        assert_eq!(
            field(payload(Some(si("http://a.com/", "a\0b")), None)),
            "si.text"
        );

        let mut w = si("http://a.com/", "x");
        w.action = Some("signal-loud".into());
        let e = payload(Some(w.clone()), None).expect_err("bad action");
        assert_eq!(e.field, "si.action");
        assert!(e.reason.contains("signal-none, signal-low"), "{}", e.reason);
        w.action = Some("execute-high".into());
        assert_eq!(field(payload(Some(w.clone()), None)), "si.action");
        for a in [
            "signal-none",
            "signal-low",
            "signal-medium",
            "signal-high",
            "delete",
        ] {
            w.action = Some(a.into());
            assert!(payload(Some(w.clone()), None).is_ok(), "{a}");
        }

        let mut w = si("http://a.com/", "x");
        w.created = Some("2026-11-26 08:00".into());
        assert_eq!(field(payload(Some(w.clone()), None)), "si.created");
        w.created = Some("2026-11-26T08:00:00Z".into());
        w.si_expires = Some("2026-11-26T07:00:00Z".into());
        assert_eq!(field(payload(Some(w.clone()), None)), "si.si_expires");
        w.si_expires = Some("tomorrow".into());
        assert_eq!(field(payload(Some(w.clone()), None)), "si.si_expires");
        w.si_expires = None;
        w.created = Some("+10000-01-01T00:00:00Z".into());
        assert_eq!(field(payload(Some(w.clone()), None)), "si.created");
        w.created = None;
        w.si_id = Some(String::new());
        assert_eq!(field(payload(Some(w.clone()), None)), "si.si_id");
        w.si_id = Some("x".repeat(MAX_SI_ID + 1));
        assert_eq!(field(payload(Some(w.clone()), None)), "si.si_id");
        w.si_id = Some("a\0".into());
        assert_eq!(field(payload(Some(w), None)), "si.si_id");
    }

    #[test]
    fn too_long_blames_the_text_or_the_href() {
        let ok = "word ".repeat(200);
        let (data, _) = binary(payload(Some(si("http://a.com/", &ok)), None).expect("fits"));
        assert!(data.len() > 133, "spans several parts");
        let long = "word ".repeat(400);
        let e = payload(Some(si("http://a.com/", &long)), None).expect_err("too long");
        assert_eq!(e.field, "si.text");
        assert!(e.reason.starts_with("too long"), "{}", e.reason);
        let href = format!("http://a.com/{}", "p".repeat(1500));
        let sl = WireSl {
            href: Some(href),
            action: None,
        };
        assert_eq!(field(payload(None, Some(sl))), "sl.href");
    }

    #[test]
    fn sl_fields() {
        assert_eq!(field(payload(None, Some(WireSl::default()))), "sl.href");
        let mut w = WireSl {
            href: Some("https://sluice.org/x".into()),
            action: Some("signal-high".into()),
        };
        assert_eq!(field(payload(None, Some(w.clone()))), "sl.action");
        for a in ["execute-low", "execute-high", "cache"] {
            w.action = Some(a.into());
            assert!(payload(None, Some(w.clone())).is_ok(), "{a}");
        }
        w.href = Some("https://sluice.org/a b".into());
        assert_eq!(field(payload(None, Some(w))), "sl.href");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(href in proptest::option::of(".{0,40}"), text in proptest::option::of(".{0,60}"),
                        created in proptest::option::of(".{0,30}"), id in proptest::option::of(".{0,10}"),
                        action in proptest::option::of("[a-z-]{0,14}"), sl in proptest::bool::ANY) {
            if sl {
                let _ = payload(None, Some(WireSl { href, action }));
            } else {
                let w = WireSi { href, text, created, si_expires: None, si_id: id, action };
                let _ = payload(Some(w), None);
            }
        }
    }
}
