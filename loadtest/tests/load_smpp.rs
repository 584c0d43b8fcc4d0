//! The SMPP load generator against a scripted center (not the simulator): what the ESME
//! session port must keep — a generic_nack'd submit is resubmitted and counted under its own
//! error key (not as a response), the center's enquire_link is answered, and the run ends
//! with an unbind.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::load;
use sluice_loadtest::load::run;
use sluice_protocols::smpp::{
    self as p, BindResp, Command, CommandStatus as St, MessageIdResp, Pdu,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the scripted center saw.
#[derive(Debug, Default)]
struct Seen {
    submits: u32,
    enquire_link_resps: u32,
    unbinds: u32,
    transmitter_binds: u32,
}

/// One connection: bind, nack the 2nd submit (answered in the same write as the 1st when
/// they arrive together), accept the others, send one enquire_link, answer unbind.
async fn center(listener: TcpListener) -> Seen {
    let (mut sock, _) = listener.accept().await.expect("accept");
    let mut seen = Seen::default();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    let mut id = 0u32;
    loop {
        match sock.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return seen,
            Ok(_) => {}
        }
        while let Some(len) = p::check(&rbuf, p::DEFAULT_MAX_LEN).expect("frame") {
            let c = p::decode(rbuf.split_to(len).freeze())
                .expect("decodes")
                .command;
            let reply = match c.pdu {
                Pdu::BindTransmitter(_) => {
                    seen.transmitter_binds += 1;
                    // Ask for a keep-alive answer right after the bind.
                    Command::new(St::EsmeRok, 0x7000_0000, Pdu::EnquireLink)
                        .encode(&mut out)
                        .expect("encodes");
                    Command::new(
                        St::EsmeRok,
                        c.sequence,
                        Pdu::BindTransmitterResp(BindResp::default()),
                    )
                }
                Pdu::SubmitSm(_) => {
                    seen.submits += 1;
                    if seen.submits == 2 {
                        Command::new(St::EsmeRinvcmdlen, c.sequence, Pdu::GenericNack)
                    } else {
                        id += 1;
                        Command::new(
                            St::EsmeRok,
                            c.sequence,
                            Pdu::SubmitSmResp(MessageIdResp::new(format!("{id:X}"))),
                        )
                    }
                }
                Pdu::EnquireLinkResp => {
                    seen.enquire_link_resps += 1;
                    continue;
                }
                Pdu::Unbind => {
                    seen.unbinds += 1;
                    Command::new(St::EsmeRok, c.sequence, Pdu::UnbindResp)
                }
                _ => continue,
            };
            reply.encode(&mut out).expect("encodes");
        }
        if !out.is_empty() {
            sock.write_all(&out).await.expect("write");
            out.clear();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_nack_is_resubmitted_enquire_link_answered_and_run_unbinds() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr().expect("addr");
    let center = tokio::spawn(center(listener));
    let mut cfg = load(addr, 5);
    cfg.connections = 1;
    cfg.window = 2;
    let s = tokio::time::timeout(Duration::from_secs(20), run(cfg))
        .await
        .expect("run ends")
        .expect("run");
    let seen = tokio::time::timeout(Duration::from_secs(5), center)
        .await
        .expect("center ends")
        .expect("center task");
    assert_eq!(s.messages_accepted, 5, "{s}");
    assert_eq!(s.messages_failed, 0, "{s}");
    assert_eq!(s.resubmits, 1, "{s}");
    assert_eq!(s.submits_sent, 6, "{s}");
    assert_eq!(s.responses, 5, "a nack is not a response: {s}");
    assert_eq!(
        s.errors.get("smpp:generic_nack:0x00000002"),
        Some(&1),
        "{:?}",
        s.errors
    );
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.disconnects, 0, "{s}");
    assert_eq!(seen.transmitter_binds, 1, "no --dlr: transmitter");
    assert_eq!(seen.submits, 6);
    assert_eq!(seen.enquire_link_resps, 1);
    assert_eq!(seen.unbinds, 1);
}
