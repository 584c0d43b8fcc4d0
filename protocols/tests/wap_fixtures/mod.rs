//! The WAP Push documents checked against Kannel's PPG, and the bytes Kannel 1.4.5 (Debian
//! `kannel`, bearerbox + wapbox) sent for them, shared by `protocols/tests/wap_kannel.rs`
//! (live interop and an offline check of the recording) and the gateway's end-to-end test
//! (`tests/e2e_wap_push.rs`, which includes this file by path).
//!
//! `kannel_ppg.tsv` holds one line per SMPP submit_sm Kannel sent: case name, `esm_class`,
//! `data_coding` and `short_message` (UDH + payload), hex. It is rewritten by running
//! `wap_kannel` with Kannel installed and `SLUICE_KANNEL_RECORD=1`. Kannel's free choices
//! in the recorded bytes are the WSP TID (first payload octet of part 1) and the
//! concatenation reference; everything else is what any PPG must send for the document.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use sluice_protocols::wap::wsp::APP_ID_PUSH_SIA;
use sluice_protocols::wap::{
    ApplicationId, HrefPrefixRule, PushDocument, ServiceIndication, ServiceLoading, SiAction,
    SlAction, WapDateTime,
};

/// The recording, next to this file.
pub const RECORDING: &str = include_str!("kannel_ppg.tsv");
/// Its path from the protocols crate root (for re-recording).
pub const RECORDING_PATH: &str = "tests/wap_fixtures/kannel_ppg.tsv";

/// One push as posted to Kannel's PPG.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique name, the key of the recording.
    pub name: &'static str,
    /// The document.
    pub doc: PushDocument,
    /// Content headers of the PAP content part.
    pub content_headers: String,
    /// `X-Wap-Application-Id` given to the PPG, if any.
    pub app_id: Option<ApplicationId>,
}

/// One submit_sm as Kannel sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub esm_class: u8,
    pub data_coding: u8,
    pub short_message: Vec<u8>,
}

const SI_CT: &str = "Content-Type: text/vnd.wap.si";
const SL_CT: &str = "Content-Type: text/vnd.wap.sl";

/// Short SI with every attribute the HTTP API takes.
pub fn short_si() -> ServiceIndication {
    ServiceIndication {
        href: Some("http://www.sluice.com/offer/42".into()),
        si_id: Some("offer-42".into()),
        created: WapDateTime::parse("2026-11-26T01:30:00Z").ok(),
        si_expires: WapDateTime::parse("2026-12-01T00:00:00Z").ok(),
        action: Some(SiAction::SignalHigh),
        class: None,
        text: "Your bill is ready".into(),
    }
}

/// An SI whose push PDU needs several SMS parts.
pub fn long_si() -> ServiceIndication {
    ServiceIndication {
        href: Some(format!("https://example.org/{}", "segment/".repeat(25))),
        text: "A long indication text that, with the long href, needs several SMS parts to \
               carry the whole WSP push PDU to the handset."
            .into(),
        ..Default::default()
    }
}

/// SL with Kannel's href prefix table.
pub fn sl() -> ServiceLoading {
    ServiceLoading {
        href: "http://www.sluice.net/load/me".into(),
        action: Some(SlAction::ExecuteHigh),
        prefix_rule: HrefPrefixRule::Kannel,
    }
}

/// Every case, in the order the interop test posts them.
pub fn cases() -> Vec<Case> {
    let utf8_si = ServiceIndication {
        href: Some("https://www.sluice.edu/a?x=1&y=2".into()),
        si_id: Some("ünïcode".into()),
        action: Some(SiAction::Delete),
        text: "  Ваш счёт   готов \n 账单已出 😀 ".into(),
        ..Default::default()
    };
    let plain_sl = ServiceLoading {
        href: "https://sluice.org/x".into(),
        action: Some(SlAction::Cache),
        prefix_rule: HrefPrefixRule::Longest,
    };
    vec![
        Case {
            name: "short SI",
            doc: PushDocument::Si(short_si()),
            content_headers: SI_CT.to_owned(),
            app_id: None,
        },
        Case {
            name: "long SI",
            doc: PushDocument::Si(long_si()),
            content_headers: SI_CT.to_owned(),
            app_id: None,
        },
        Case {
            name: "SL",
            doc: PushDocument::Sl(sl()),
            content_headers: SL_CT.to_owned(),
            app_id: None,
        },
        Case {
            name: "SI for push.sia",
            doc: PushDocument::Si(short_si()),
            content_headers: format!("{SI_CT}\r\nX-Wap-Application-Id: x-wap-application:push.sia"),
            app_id: Some(ApplicationId::Code(APP_ID_PUSH_SIA)),
        },
        Case {
            name: "UTF-8 SI, escaped href, delete",
            doc: PushDocument::Si(utf8_si),
            content_headers: SI_CT.to_owned(),
            app_id: None,
        },
        Case {
            name: "SL https:// with cache",
            doc: PushDocument::Sl(plain_sl),
            content_headers: SL_CT.to_owned(),
            app_id: None,
        },
    ]
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Uppercase hex without separators.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The recording: case name → Kannel's submits in part order.
pub fn recorded() -> BTreeMap<String, Vec<Submit>> {
    parse_recording(RECORDING)
}

/// Parses the TSV form (`#` lines are comments).
pub fn parse_recording(text: &str) -> BTreeMap<String, Vec<Submit>> {
    let mut out: BTreeMap<String, Vec<Submit>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let parsed = match f.as_slice() {
            [name, esm, dcs, sm] => (|| {
                Some((
                    (*name).to_owned(),
                    Submit {
                        esm_class: u8::from_str_radix(esm, 16).ok()?,
                        data_coding: u8::from_str_radix(dcs, 16).ok()?,
                        short_message: unhex(sm)?,
                    },
                ))
            })(),
            _ => None,
        };
        let (name, s) = parsed.unwrap_or_else(|| panic!("kannel_ppg.tsv line {}: {line:?}", n + 1));
        out.entry(name).or_default().push(s);
    }
    out
}

/// The TSV form of one case's submits.
pub fn recording_lines(name: &str, submits: &[Submit]) -> String {
    submits
        .iter()
        .map(|s| {
            format!(
                "{name}\t{:02X}\t{:02X}\t{}\n",
                s.esm_class,
                s.data_coding,
                hex(&s.short_message)
            )
        })
        .collect()
}
