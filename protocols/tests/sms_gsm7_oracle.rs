//! Differential test: our GSM 03.38 packing against the independent `gsm7` crate (0.4.1).
//!
//! `gsm7`'s writer pads with a CR septet when the bit count leaves exactly one spare bit
//! (`bits % 8 == 7`), so in that case only the octets before the last are compared. Its
//! reader must decode our packed output back to the original text.

use std::io;

use ::gsm7::{Gsm7Reader, Gsm7Writer};
use proptest::prelude::*;
use sluice_protocols::sms::gsm7 as ours;

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
}
