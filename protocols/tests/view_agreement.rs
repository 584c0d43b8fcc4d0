//! The borrowed views agree with the owned decoders: for every generated PDU and for
//! mutated bytes, [`smpp::Frame::view`] / [`cmpp::view::Frame::view`] either fail with the
//! owned decoder's error or give, after `to_owned()`, exactly the owned decoder's value
//! (tolerances included); receipts read from a view equal receipts read from the owned
//! deliver_sm.

#[path = "smpp_common/mod.rs"]
mod common;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use sluice_protocols::cmpp;
use sluice_protocols::smpp::{self, DecodeError, DeliveryReport, Frame, Pdu, PduRef};

/// SMPP: view vs owned on `b`, as the socket path meets it.
fn smpp_agree(b: &[u8]) -> Result<(), TestCaseError> {
    let owned = smpp::decode(Bytes::copy_from_slice(b));
    let frame = Frame::new(Bytes::copy_from_slice(b)).map_err(DecodeError::from);
    let viewed = frame.as_ref().map_err(|e| *e).and_then(|f| f.view());
    prop_assert_eq!(
        viewed.as_ref().map_err(|e| *e).and_then(|d| d.to_owned()),
        owned.clone()
    );
    if let (Ok(v), Ok(o)) = (&viewed, &owned)
        && let (PduRef::DeliverSm(sm_ref), Pdu::DeliverSm(sm)) = (&v.pdu, &o.command.pdu)
    {
        prop_assert_eq!(
            DeliveryReport::from_sm_ref(sm_ref),
            DeliveryReport::from_sm(sm)
        );
    }
    Ok(())
}

/// CMPP: view vs owned over a whole stream of frames.
fn cmpp_agree(b: &[u8], v: cmpp::Version) -> Result<(), TestCaseError> {
    let mut owned = BytesMut::from(b);
    let mut viewed = BytesMut::from(b);
    loop {
        let a = cmpp::decode_frame(&mut owned, v, cmpp::DEFAULT_MAX_LENGTH);
        let f = cmpp::view::Frame::split(&mut viewed, cmpp::DEFAULT_MAX_LENGTH);
        match (a, f) {
            (Ok(Some(item)), Ok(Some(frame))) => {
                prop_assert_eq!(frame.view(v).map(|d| d.to_owned()), item);
            }
            (Ok(None), Ok(None)) => return Ok(()),
            (Err(x), Err(y)) => {
                prop_assert_eq!(x, y);
                return Ok(());
            }
            (a, f) => prop_assert!(false, "framing differs: {a:?} vs {f:?}"),
        }
        prop_assert_eq!(&owned[..], &viewed[..]);
    }
}

/// Byte edits: (position as a fraction of the length, new byte), a cut, and whether to
/// rewrite the length word so the body decoder is reached.
fn mutations() -> impl Strategy<Value = (Vec<(u16, u8)>, Option<u16>, bool)> {
    (
        vec((any::<u16>(), any::<u8>()), 0..4),
        proptest::option::of(any::<u16>()),
        any::<bool>(),
    )
}

fn mutate(
    bytes: &[u8],
    header: usize,
    (edits, cut, fix_len): &(Vec<(u16, u8)>, Option<u16>, bool),
) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for &(at, byte) in edits {
        let i = usize::from(at) % b.len();
        b[i] = byte;
    }
    if let Some(c) = cut {
        let keep = header + usize::from(*c) % (b.len() - header + 1);
        b.truncate(keep);
    }
    if *fix_len && b.len() >= 4 {
        let n = (b.len() as u32).to_be_bytes();
        b[..4].copy_from_slice(&n);
    }
    b
}

fn fs<const N: usize>(width: usize) -> impl Strategy<Value = cmpp::FixedStr<N>> {
    // Digits, letters, NULs and spaces: padding of both kinds and embedded NULs.
    vec(
        prop_oneof![Just(0u8), Just(b' '), b'0'..=b'9', any::<u8>()],
        0..=width,
    )
    .prop_map(|v| cmpp::FixedStr::<N>::new(&v).unwrap())
}

fn cmpp_submit(v: cmpp::Version) -> impl Strategy<Value = cmpp::Submit> {
    let tid = v.terminal_id_len();
    let v3 = v == cmpp::Version::V30;
    let byte3 = move || any::<u8>().prop_map(move |b| if v3 { b } else { 0 });
    (
        (any::<u64>(), any::<[u8; 4]>(), fs::<10>(10), any::<u8>()),
        (fs::<32>(tid), byte3(), any::<[u8; 3]>(), fs::<6>(6)),
        (
            fs::<2>(2),
            fs::<6>(6),
            fs::<17>(17),
            fs::<17>(17),
            fs::<21>(21),
        ),
        (
            vec(fs::<32>(tid), 1..=12),
            byte3(),
            vec(any::<u8>(), 0..=255),
            fs::<20>(20).prop_map(move |l| if v3 { l } else { cmpp::FixedStr::EMPTY }),
        ),
    )
        .prop_map(
            |(
                (msg_id, [pk_total, pk_number, registered_delivery, msg_level], service_id, fut),
                (fee_terminal_id, fee_terminal_type, [tp_pid, tp_udhi, fmt], msg_src),
                (fee_type, fee_code, valid_time, at_time, src_id),
                (dest_terminal_ids, dest_terminal_type, content, link_id),
            )| cmpp::Submit {
                msg_id: cmpp::MsgId(msg_id),
                pk_total,
                pk_number,
                registered_delivery,
                msg_level,
                service_id,
                fee_user_type: fut,
                fee_terminal_id,
                fee_terminal_type,
                tp_pid,
                tp_udhi,
                msg_fmt: cmpp::MsgFmt::from_raw(fmt),
                msg_src,
                fee_type,
                fee_code,
                valid_time,
                at_time,
                src_id,
                dest_terminal_ids,
                dest_terminal_type,
                msg_content: Bytes::from(content),
                link_id,
            },
        )
}

fn version() -> impl Strategy<Value = cmpp::Version> {
    prop_oneof![Just(cmpp::Version::V20), Just(cmpp::Version::V30)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn smpp_view_agrees_on_every_generated_pdu(c in common::command()) {
        smpp_agree(&c.to_bytes().unwrap())?;
    }

    #[test]
    fn smpp_view_agrees_on_mutated_pdus(c in common::command(), m in mutations()) {
        let b = c.to_bytes().unwrap();
        smpp_agree(&mutate(&b, smpp::HEADER_LEN, &m))?;
    }

    #[test]
    fn smpp_view_agrees_on_receipts(
        text in vec(prop_oneof![
            Just(&b"id:1A2B3C "[..]), Just(&b"stat:DELIVRD "[..]), Just(&b"err:000 "[..]),
            Just(&b"submit date:2511260153 "[..]), Just(&b"text:hi"[..]), Just(&b"x"[..]),
        ], 0..8),
        sm in common::sm(),
        esm_receipt in any::<bool>(),
        m in mutations(),
    ) {
        let mut sm = sm;
        sm.short_message = text.concat().into();
        if esm_receipt {
            sm.esm_class = smpp::ESM_CLASS_DELIVERY_RECEIPT;
        }
        let b = smpp::Command::request(1, Pdu::DeliverSm(sm)).to_bytes().unwrap();
        smpp_agree(&b)?;
        smpp_agree(&mutate(&b, smpp::HEADER_LEN, &m))?;
    }
}

// CMPP SUBMITs are slow to generate (ten fixed fields, up to twelve destinations): fewer
// cases keep the debug run short; cmpp_fuzz.rs covers volume (100 000 frames per version).
proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn cmpp_view_agrees_on_every_generated_submit(
        (v, s) in version().prop_flat_map(|v| (Just(v), cmpp_submit(v))),
    ) {
        let b = cmpp::Pdu::Submit(Box::new(s)).to_bytes(9, v).unwrap();
        cmpp_agree(&b, v)?;
        // Read on the other version's layout too: a mismatched link must agree as well.
        let other = match v {
            cmpp::Version::V20 => cmpp::Version::V30,
            cmpp::Version::V30 => cmpp::Version::V20,
        };
        cmpp_agree(&b, other)?;
    }

    #[test]
    fn cmpp_view_agrees_on_mutated_submits(
        (v, s) in version().prop_flat_map(|v| (Just(v), cmpp_submit(v))),
        m in mutations(),
        extra in vec(any::<u8>(), 0..30),
    ) {
        let b = cmpp::Pdu::Submit(Box::new(s)).to_bytes(9, v).unwrap();
        let mut b = mutate(&b, cmpp::HEADER_LEN, &m);
        cmpp_agree(&b, v)?;
        // And as the head of a stream with more bytes behind it.
        b.extend_from_slice(&extra);
        cmpp_agree(&b, v)?;
    }
}
