//! The tokio codec over a duplex pipe whose capacity forces split reads (4..=4096 bytes),
//! plus the stream-level error policy: malformed PDUs are items, bad lengths end the stream.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use sluice_protocols::cmpp::*;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};

fn sample(v: Version, i: u32) -> Pdu {
    let fs = |s: &str| FixedStr::<32>::new(s.as_bytes()).unwrap();
    match i % 5 {
        0 => Pdu::Submit(Box::new(Submit {
            msg_id: MsgId(0),
            pk_total: 1,
            pk_number: 1,
            registered_delivery: 1,
            msg_fmt: MsgFmt::Ucs2,
            src_id: FixedStr::new(b"1069001234").unwrap(),
            dest_terminal_ids: (0..(i % 7 + 1))
                .map(|n| fs(&format!("1380013{n:04}")))
                .collect(),
            msg_content: Bytes::from(vec![0x4F; (i as usize * 13) % 256]),
            ..Submit::default()
        })),
        1 => Pdu::SubmitResp(SubmitResp {
            msg_id: MsgId(u64::from(i) << 20),
            result: ResultCode::Success,
        }),
        2 => Pdu::Deliver(Box::new(Deliver {
            msg_id: MsgId(u64::from(i)),
            src_terminal_id: fs("13800138000"),
            content: DeliverContent::Report(StatusReport {
                msg_id: MsgId(u64::from(i) << 20),
                stat: FixedStr::new(b"DELIVRD").unwrap(),
                dest_terminal_id: fs("13800138000"),
                smsc_sequence: i,
                ..StatusReport::default()
            }),
            ..Deliver::default()
        })),
        3 => Pdu::ActiveTest,
        _ => Pdu::ConnectResp(ConnectResp {
            status: ConnectStatus::Ok,
            authenticator_ismg: [i as u8; 16],
            version: v.byte(),
        }),
    }
}

async fn pipe_frames(v: Version, chunk: usize) {
    let frames: Vec<Frame> = (0..40)
        .map(|i| Frame {
            sequence_id: i + 1,
            pdu: sample(v, i),
        })
        .collect();
    let (client, server) = tokio::io::duplex(chunk);
    let expected = frames.clone();
    let writer = tokio::spawn(async move {
        let mut w = FramedWrite::new(client, CmppCodec::new(v));
        for f in frames {
            w.send(f).await.unwrap();
        }
        w.into_inner().shutdown().await.unwrap();
    });
    let mut r = FramedRead::new(server, CmppCodec::new(v));
    let mut got = Vec::new();
    while let Some(item) = r.next().await {
        let d = item.unwrap().unwrap();
        assert!(d.tolerated.is_empty());
        got.push(Frame {
            sequence_id: d.header.sequence_id,
            pdu: d.pdu,
        });
    }
    writer.await.unwrap();
    assert_eq!(got, expected, "{v} chunk {chunk}");
}

#[tokio::test]
async fn split_reads_at_many_sizes() {
    for chunk in [
        4, 5, 7, 11, 12, 13, 17, 31, 64, 100, 127, 255, 512, 1000, 2048, 4096,
    ] {
        for v in [Version::V20, Version::V30] {
            tokio::time::timeout(std::time::Duration::from_secs(30), pipe_frames(v, chunk))
                .await
                .expect("codec stalled");
        }
    }
}

#[tokio::test]
async fn malformed_pdu_is_an_item_and_the_stream_goes_on() {
    let mut bytes = Vec::new();
    // A CONNECT with a 4-byte body, then a valid ACTIVE_TEST.
    bytes.extend_from_slice(&16u32.to_be_bytes());
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&7u32.to_be_bytes());
    bytes.extend_from_slice(b"9012");
    bytes.extend_from_slice(&Pdu::ActiveTest.to_bytes(8, Version::V30).unwrap());
    let mut r = FramedRead::new(&bytes[..], CmppCodec::new(Version::V30));
    let e = r.next().await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.header.sequence_id, 7);
    assert!(matches!(
        e.response(Version::V30),
        Some(Pdu::ConnectResp(_))
    ));
    let d = r.next().await.unwrap().unwrap().unwrap();
    assert_eq!(d.pdu, Pdu::ActiveTest);
    assert!(r.next().await.is_none());
}

#[tokio::test]
async fn oversized_length_ends_the_stream() {
    let mut bytes = 70_000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 1]);
    let mut r = FramedRead::new(&bytes[..], CmppCodec::new(Version::V20));
    let err = r.next().await.unwrap().unwrap_err();
    assert!(matches!(
        err,
        CodecError::Frame(FrameError::TooLong {
            total_length: 70_000,
            ..
        })
    ));
    // A smaller configured maximum applies too.
    let small = Pdu::ActiveTestResp(ActiveTestResp::default())
        .to_bytes(1, Version::V20)
        .unwrap();
    let mut r = FramedRead::new(&small[..], CmppCodec::new(Version::V20).with_max_length(12));
    assert!(r.next().await.unwrap().is_err());
}

#[tokio::test]
async fn encoder_refuses_what_the_version_cannot_carry() {
    let mut w = FramedWrite::new(Vec::new(), CmppCodec::new(Version::V20));
    let err = w
        .send(Frame {
            sequence_id: 1,
            pdu: Pdu::CancelResp(CancelResp { success_id: 256 }),
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CodecError::Encode(EncodeError::ValueTooLarge { .. })
    ));
    let mut codec = CmppCodec::new(Version::V20);
    codec.set_version(Version::V30);
    assert_eq!(codec.version(), Version::V30);
}
