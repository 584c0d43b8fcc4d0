//! The tokio codec through `tokio::io::duplex` at buffer sizes 4..=4096, so every PDU is
//! split across reads at every kind of boundary. Needs feature `tokio-codec`
//! (`cargo test -p sluice-protocols --all-features`; the workspace test run enables it).
#![cfg(feature = "tokio-codec")]

#[path = "smpp_common/mod.rs"]
mod common;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sluice_protocols::smpp::*;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, FramedRead, FramedWrite};

fn sample_commands(n: usize) -> Vec<Command> {
    let mut runner = TestRunner::deterministic();
    let s = common::command();
    (0..n)
        .map(|_| s.new_tree(&mut runner).unwrap().current())
        .collect()
}

fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (4..=40).collect();
    v.extend([
        47, 63, 64, 65, 100, 127, 128, 255, 256, 511, 777, 1024, 2048, 4095, 4096,
    ]);
    v
}

#[tokio::test]
async fn split_reads_at_every_size() {
    let commands = sample_commands(40);
    for size in sizes() {
        let (a, b) = tokio::io::duplex(size);
        let mut writer = FramedWrite::new(a, SmppCodec::default());
        let mut reader = FramedRead::new(b, SmppCodec::default());
        let sent = commands.clone();
        let w = tokio::spawn(async move {
            for c in &sent {
                writer.send(c).await.unwrap();
            }
            writer.into_inner().shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        while let Some(c) = reader.next().await {
            got.push(c.unwrap());
        }
        w.await.unwrap();
        assert_eq!(got, commands, "duplex size {size}");
    }
}

#[tokio::test]
async fn frame_codec_survives_a_bad_body() {
    let (mut a, b) = tokio::io::duplex(64);
    let mut reader = FramedRead::new(b, SmppFrameCodec::default());
    let mut bytes = BytesMut::new();
    // A truncated submit_sm, then a good enquire_link.
    bytes.extend_from_slice(&[0, 0, 0, 19, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1]);
    Command::request(10, Pdu::EnquireLink)
        .encode(&mut bytes)
        .unwrap();
    a.write_all(&bytes).await.unwrap();
    drop(a);
    let first = reader.next().await.unwrap().unwrap();
    let err = first.unwrap_err();
    let answer = err.response().unwrap();
    assert_eq!(answer.status, CommandStatus::EsmeRinvmsglen);
    assert_eq!(answer.sequence, 9);
    let second = reader.next().await.unwrap().unwrap().unwrap();
    assert_eq!(second.command, Command::request(10, Pdu::EnquireLink));
    assert!(reader.next().await.is_none());
}

#[test]
fn oversized_length_is_rejected_before_buffering() {
    let mut codec = SmppCodec::new(1024);
    let mut buf = BytesMut::from(&[0u8, 0, 0x10, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    let cap = buf.capacity();
    match codec.decode(&mut buf) {
        Err(CodecError::Frame(FrameError::TooLong {
            length: 4096,
            max: 1024,
            sequence: 1,
        })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.capacity(), cap, "nothing reserved for a refused PDU");
}

#[test]
fn counts_tolerances() {
    let mut codec = SmppCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 18, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0][..]);
    let c = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(c.pdu, Pdu::EnquireLink);
    let counts: Vec<_> = codec.tolerated_counts().filter(|(_, n)| *n > 0).collect();
    assert_eq!(counts, vec![("trailing_bytes", 1)]);
}
