//! Property tests for WAP push: any SI/SL document either encodes or is refused with an
//! error (NUL), the SMS parts stay within 140 octets, carry the WDP ports, and their
//! payloads concatenate back to exactly one WSP push PDU whose body is the WBXML.

use proptest::prelude::*;
use sluice_protocols::sms::Udh;
use sluice_protocols::wap::PushPdu;
use sluice_protocols::wap::wdp::PUSH_PORTS;
use sluice_protocols::wap::{
    PushDocument, PushOptions, ServiceIndication, ServiceLoading, SiAction, WapError, wap_push_sms,
};

fn url() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "http://",
        "https://",
        "http://www.",
        "https://www.",
        "",
        "ftp://",
    ]);
    let tail = "[a-z0-9./_\\-]{0,300}";
    (
        prefix,
        tail,
        prop::sample::select(vec!["", ".com/", ".org/x", ".net/"]),
    )
        .prop_map(|(p, t, s)| format!("{p}{t}{s}"))
}

fn doc() -> impl Strategy<Value = PushDocument> {
    let si = (url(), any::<String>(), prop::option::of(0usize..5)).prop_map(|(href, text, a)| {
        let action = a.map(|i| {
            [
                SiAction::SignalNone,
                SiAction::SignalLow,
                SiAction::SignalMedium,
                SiAction::SignalHigh,
                SiAction::Delete,
            ][i]
        });
        PushDocument::Si(ServiceIndication {
            href: Some(href),
            text,
            action,
            ..Default::default()
        })
    });
    let sl = url().prop_map(|href| {
        PushDocument::Sl(ServiceLoading {
            href,
            ..Default::default()
        })
    });
    prop_oneof![si, sl]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn push_parts_reassemble_to_the_pdu(doc in doc(), reference in any::<u16>(), tid in any::<u8>()) {
        let opts = PushOptions { tid, max_parts: 255, ..PushOptions::default() };
        let body = match doc.to_wbxml() {
            Ok(b) => b,
            Err(e) => {
                prop_assert_eq!(e, WapError::NulInString);
                return Ok(());
            }
        };
        let parts = wap_push_sms(&doc, reference, &opts).unwrap();
        let mut pdu = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            prop_assert!(p.short_message().len() <= 140);
            let (udh, rest) = Udh::parse(p.udh.as_deref().unwrap()).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(udh.ports(), Some(PUSH_PORTS));
            if parts.len() > 1 {
                let c = udh.concat().unwrap();
                prop_assert_eq!((c.seq as usize, c.total as usize), (i + 1, parts.len()));
            }
            pdu.extend_from_slice(&p.payload);
        }
        let parsed = PushPdu::parse(&pdu).unwrap();
        prop_assert_eq!(parsed.tid, tid);
        prop_assert_eq!(parsed.pdu_type, 0x06);
        prop_assert_eq!(parsed.body, &body[..]);
    }
}

/// 100 000 decoder cases, 1 000 000 with `SLUICE_FUZZ_LONG=1`.
fn decoder_cases() -> u32 {
    if std::env::var("SLUICE_FUZZ_LONG").is_ok_and(|v| v == "1") {
        1_000_000
    } else {
        100_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(decoder_cases()))]

    #[test]
    fn push_pdu_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = PushPdu::parse(&bytes) {
            prop_assert!(p.headers.len() + p.body.len() < bytes.len());
        }
    }
}
