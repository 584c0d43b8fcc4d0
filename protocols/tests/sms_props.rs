//! Property tests for the `sms` module: split → reassemble is the identity, parts respect the
//! 140-octet limit and never cut a character, and every decoder survives arbitrary bytes.

use std::time::Instant;

use proptest::prelude::*;
use sluice_protocols::sms::{
    ConcatScheme, Encoding, EncodingSet, Gsm7Form, Outcome, Part, Reassembler, ReassemblyConfig,
    SplitOptions, Udh, choose, decode, gsm7, split_text, ucs2,
};

/// Characters that stress every path: ASCII, GSM extension chars, non-ASCII GSM chars,
/// Latin-1-only chars, CJK, emoji (surrogate pairs) and a combining mark.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => prop::sample::select(vec!['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{000C}']),
        1 => prop::sample::select(vec!['é', 'Δ', 'ß', '£', '¿', 'Ñ', '\n', ' ', '@']),
        1 => prop::sample::select(vec!['ç', 'þ', '½', '`']),
        1 => proptest::char::range('\u{4E00}', '\u{4E80}'),
        1 => proptest::char::range('\u{1F600}', '\u{1F64F}'),
        1 => Just('\u{0301}'),
        1 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..700).prop_map(|v| v.into_iter().collect())
}

fn scheme() -> impl Strategy<Value = ConcatScheme> {
    prop::sample::select(vec![
        ConcatScheme::Udh8,
        ConcatScheme::Udh16,
        ConcatScheme::Sar,
    ])
}

fn allowed() -> impl Strategy<Value = EncodingSet> {
    prop::sample::select(vec![
        EncodingSet::SMPP_DEFAULT,
        EncodingSet::SMPP_DEFAULT | EncodingSet::LATIN1,
        EncodingSet::CMPP_DEFAULT,
        EncodingSet::UCS2,
    ])
}

/// The text units of a part as the receiver would decode them (packed GSM unpacked first).
fn part_units(p: &Part, form: Gsm7Form) -> Vec<u8> {
    match (p.encoding, form) {
        (Encoding::Gsm7, Gsm7Form::Packed) => {
            let udh = p.udh.as_ref().map_or(0, Vec::len);
            let fill = if udh > 0 { gsm7::fill_bits(udh) } else { 0 };
            gsm7::unpack(&p.payload, fill, p.units)
        }
        _ => p.payload.clone(),
    }
}

/// 512 cases by default; `SLUICE_LONG_TESTS=1` runs 20 000.
fn split_cases() -> u32 {
    if std::env::var("SLUICE_LONG_TESTS").as_deref() == Ok("1") {
        20_000
    } else {
        512
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(split_cases()))]

    #[test]
    fn split_then_reassemble_is_identity(
        text in text(),
        scheme in scheme(),
        allowed in allowed(),
        packed in any::<bool>(),
        reference in any::<u16>(),
    ) {
        let form = if packed { Gsm7Form::Packed } else { Gsm7Form::Unpacked };
        let Some(choice) = choose(&text, allowed, scheme) else {
            // Only possible when UCS-2 is not allowed; every set here allows it.
            prop_assert!(false, "no encoding for {text:?}");
            return Ok(());
        };
        let mut opts = SplitOptions::new(scheme, reference);
        opts.gsm7_form = form;
        let parts = split_text(&text, choice.encoding, &opts).unwrap();
        prop_assert_eq!(parts.len(), choice.parts);

        for p in &parts {
            // The 140-octet air limit, UDH included.
            prop_assert!(p.air_octets() <= 140, "air octets {}", p.air_octets());
            if form == Gsm7Form::Packed || p.encoding != Encoding::Gsm7 {
                prop_assert!(p.short_message().len() <= 140);
            }
            // UDH xor SAR, and the UDH parses back to the same numbers.
            match (scheme, &p.udh) {
                (ConcatScheme::Sar, udh) => prop_assert!(udh.is_none()),
                (_, Some(udh)) => {
                    let (parsed, rest) = Udh::parse(udh).unwrap();
                    prop_assert!(rest.is_empty());
                    prop_assert_eq!(parsed.concat().map(|c| (c.total, c.seq)),
                                    p.concat.map(|c| (c.total, c.seq)));
                }
                (_, None) => prop_assert!(p.concat.is_none()),
            }
            prop_assert_eq!(p.esm_udhi, p.udh.is_some());
            // No part ends inside a character: each part decodes on its own.
            let units = part_units(p, form);
            if p.encoding == Encoding::Gsm7 {
                prop_assert_ne!(units.last(), Some(&gsm7::ESC));
            }
            prop_assert!(decode(&units, p.encoding).is_ok());
        }

        // Reassemble in reverse order, as if the network reordered them.
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let now = Instant::now();
        let mut complete = None;
        for p in parts.iter().rev() {
            let units = part_units(p, form);
            match p.concat {
                None => complete = Some(vec![units]),
                Some(c) => {
                    if let Outcome::Complete(all) = r.push("src", "dst", c, &units, now) {
                        complete = Some(all);
                    }
                }
            }
        }
        let joined: Vec<u8> = complete.expect("message completed").concat();
        prop_assert_eq!(decode(&joined, choice.encoding).unwrap(), text);
    }

    #[test]
    fn gsm_pack_unpack_round_trips(septets in prop::collection::vec(0u8..0x80, 0..200), fill in 0u8..7) {
        let packed = gsm7::pack(&septets, fill);
        prop_assert_eq!(gsm7::unpack(&packed, fill, septets.len()), septets);
    }

    #[test]
    fn ucs2_round_trips(s in any::<String>()) {
        prop_assert_eq!(ucs2::decode(&ucs2::encode(&s)).unwrap(), s);
    }
}

proptest! {
    // Decoders on arbitrary bytes: must never panic. Cheap per case, so many cases.
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), fill in any::<u8>(), n in any::<u16>()) {
        if let Ok((udh, payload)) = Udh::parse(&bytes) {
            prop_assert!(payload.len() < bytes.len());
            let _ = (udh.concat(), udh.ports());
            let _ = udh.encode();
        }
        let septets = gsm7::unpack(&bytes, fill, usize::from(n));
        prop_assert!(septets.iter().all(|&s| s < 0x80));
        prop_assert!(gsm7::decode_unpacked(&septets).is_ok());
        let _ = gsm7::decode_unpacked(&bytes);
        let _ = ucs2::decode(&bytes);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let _ = r.push_udh("s", "d", &bytes, Instant::now());
        for enc in [Encoding::Gbk, Encoding::Latin1, Encoding::Binary] {
            let _ = decode(&bytes, enc);
        }
    }
}
