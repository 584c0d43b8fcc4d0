//! Differential test: our GSM 03.38 packing against the independent `gsm7` crate (0.4.1).
//!
//! `gsm7`'s writer pads with a CR septet when the bit count leaves exactly one spare bit
//! (`bits % 8 == 7`), so in that case only the octets before the last are compared. Its
//! reader must decode our packed output back to the original text.

use std::io;

use ::gsm7::{Gsm7Reader, Gsm7Writer};
use proptest::prelude::*;
use sluice_protocols::sms::gsm7 as ours;
use sluice_protocols::sms::{ConcatScheme, Encoding, Gsm7Form, SplitOptions, split_text};

fn gsm_text() -> impl Strategy<Value = String> {
    let pool: Vec<char> = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà^{}\\[~]|€\u{000C}"
        .chars()
        .collect();
    prop::collection::vec(prop::sample::select(pool), 0..300).prop_map(|v| v.into_iter().collect())
}

fn oracle_pack(text: &str) -> Vec<u8> {
    let mut w = Gsm7Writer::new(Vec::new());
    w.write_str(text).unwrap();
    w.into_writer().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn packing_matches_gsm7_crate(text in gsm_text()) {
        let packed = ours::encode_packed(&text).unwrap();
        let oracle = oracle_pack(&text);
        let bits = ours::septet_len(&text).unwrap() * 7;
        if bits % 8 == 7 {
            let n = packed.len() - 1;
            prop_assert_eq!(&oracle[..n], &packed[..n]);
        } else {
            prop_assert_eq!(&oracle, &packed);
        }
        let chars = text.chars().count();
        let decoded: io::Result<String> =
            Gsm7Reader::new(io::Cursor::new(&packed)).take(chars).collect();
        prop_assert_eq!(decoded.unwrap(), text);
    }

    /// The fill-bit rule, checked by the oracle's reader: reading a packed part's user data
    /// (UDH + payload) from bit `8 * udh_len + fill` must give the part's text.
    #[test]
    fn packed_parts_after_udh_read_back(text in gsm_text(), sixteen in any::<bool>()) {
        let scheme = if sixteen { ConcatScheme::Udh16 } else { ConcatScheme::Udh8 };
        let mut opts = SplitOptions::new(scheme, 77);
        opts.gsm7_form = Gsm7Form::Packed;
        let parts = split_text(&text, Encoding::Gsm7, &opts).unwrap();
        let mut joined = String::new();
        for p in &parts {
            let udh = p.udh.as_deref().unwrap_or_default();
            let fill = if udh.is_empty() { 0 } else { u32::from(ours::fill_bits(udh.len())) };
            let ud = p.short_message();
            let offset = udh.len() as u32 * 8 + fill;
            let chars = ours::decode_unpacked(&ours::unpack(&p.payload, fill as u8, p.units))
                .unwrap()
                .chars()
                .count();
            let reader = Gsm7Reader::new_with_bit_offset(io::Cursor::new(&ud), offset).unwrap();
            let part_text: io::Result<String> = reader.take(chars).collect();
            joined.push_str(&part_text.unwrap());
        }
        prop_assert_eq!(joined, text);
    }
}
