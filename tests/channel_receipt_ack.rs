//! A delivery receipt or an MO is answered to the center only after the receipt layer says it
//! is kept (`DeliverAck`): ESME_ROK after `done`, ESME_RX_T_APPN after `fail`, so a crash
//! before it is durable makes the center resend it instead of losing it.

use crate::channel_common;

use std::time::Duration;

use bytes::BytesMut;
use channel_common::{Rig, WAIT, config};
use sluice::channel::{ChannelEvent, DeliverAck};
use sluice_protocols::smpp::{
    Address, BindResp, Command, CommandStatus, DEFAULT_MAX_LEN, Pdu, Sm, check, decode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_command(stream: &mut TcpStream, buf: &mut BytesMut) -> Command {
    loop {
        if let Some(len) = check(buf, DEFAULT_MAX_LEN).expect("frame") {
            let pdu = buf.split_to(len).freeze();
            return decode(pdu).expect("decode").command;
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(buf))
            .await
            .expect("center read timed out")
            .expect("read");
        assert!(n > 0, "gateway closed the connection");
    }
}

/// Reads until a deliver_sm_resp arrives or `within` passes (answering enquire_links).
async fn deliver_resp(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    within: Duration,
) -> Option<Command> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let cmd = tokio::time::timeout_at(deadline, read_command(stream, buf))
            .await
            .ok()?;
        if matches!(cmd.pdu, Pdu::DeliverSmResp(_)) {
            return Some(cmd);
        }
    }
}

fn receipt(id: &str, seq: u32) -> Command {
    let sm = Sm {
        source: Address::new(1, 1, "8613800138000"),
        esm_class: 0x04,
        short_message: format!(
            "id:{id} sub:001 dlvrd:001 submit date:2611260100 done date:2611260101 stat:DELIVRD err:000 text:x"
        )
        .into_bytes()
        .into(),
        ..Sm::default()
    };
    Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(sm))
}

/// The next event that `pick` takes (bind up/down events are skipped).
async fn next_event<T>(rig: &mut Rig, pick: fn(ChannelEvent) -> Option<T>) -> T {
    loop {
        let event = tokio::time::timeout(WAIT, rig.events.recv())
            .await
            .expect("channel event")
            .expect("events open");
        if let Some(t) = pick(event) {
            return t;
        }
    }
}

/// Binds a fake center, sends `kept` (its ack is `done()`) and `lost` (its ack is `fail()`),
/// and checks each deliver_sm_resp waits for the ack and carries the matching status.
async fn answered_only_when_kept(
    kept: Command,
    lost: Command,
    pick: fn(ChannelEvent) -> Option<DeliverAck>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut rig = Rig::start(config(addr, 100));
    let (mut stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("gateway connects")
        .unwrap();
    let mut buf = BytesMut::new();
    let bind = read_command(&mut stream, &mut buf).await;
    let resp = Command::new(
        CommandStatus::EsmeRok,
        bind.sequence,
        Pdu::BindTransceiverResp(BindResp {
            system_id: "center".into(),
            ..BindResp::default()
        }),
    );
    stream.write_all(&resp.to_bytes().unwrap()).await.unwrap();

    // Kept: answered ESME_ROK only after done().
    stream.write_all(&kept.to_bytes().unwrap()).await.unwrap();
    let ack = next_event(&mut rig, pick).await;
    assert!(
        deliver_resp(&mut stream, &mut buf, Duration::from_millis(300))
            .await
            .is_none(),
        "answered before the receipt layer kept it"
    );
    ack.done();
    let resp = deliver_resp(&mut stream, &mut buf, WAIT)
        .await
        .expect("answered");
    assert_eq!(
        (resp.sequence, resp.status),
        (kept.sequence, CommandStatus::EsmeRok)
    );

    // Not kept (the store commit failed): the center is told to resend it.
    stream.write_all(&lost.to_bytes().unwrap()).await.unwrap();
    next_event(&mut rig, pick).await.fail();
    let resp = deliver_resp(&mut stream, &mut buf, WAIT)
        .await
        .expect("answered");
    assert_eq!(
        (resp.sequence, resp.status),
        (lost.sequence, CommandStatus::EsmeRxTAppn)
    );
    drop(stream);
    rig.stop().await;
}

#[tokio::test]
async fn receipt_is_answered_only_when_kept() {
    answered_only_when_kept(receipt("77", 1), receipt("78", 2), |e| match e {
        ChannelEvent::Receipt { center_id, ack, .. } => {
            assert!(center_id == "77" || center_id == "78", "{center_id}");
            Some(ack)
        }
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn mo_is_answered_only_when_kept() {
    // Kept means durable in the MO outbox.
    answered_only_when_kept(mo("YES", 5), mo("NO", 6), |e| match e {
        ChannelEvent::Mo { text, ack, .. } => {
            assert!(text == "YES" || text == "NO", "{text}");
            Some(ack)
        }
        _ => None,
    })
    .await;
}

fn mo(text: &str, seq: u32) -> Command {
    let sm = Sm {
        source: Address::new(1, 1, "8613800138000"),
        dest: Address::new(0, 0, "10690000"),
        short_message: text.as_bytes().to_vec().into(),
        ..Sm::default()
    };
    Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(sm))
}
