//! Interop with third-party SMPP peers over real 127.0.0.1 sockets:
//! - python smpplib as ESME against a listener driven by our codec;
//! - node `smpp` 0.5.1 as ESME against our listener, and as SMSC (`createServer`) that our
//!   codec binds to, submits to and receives a receipt from.
//!
//! Each side asserts what it parsed: we decode every PDU with our codec; the scripts print
//! JSON lines that we check. A missing peer is skipped, or FAILS when SLUICE_INTEROP=1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use sluice_protocols::smpp::*;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers")
}

/// True when the peer is there; otherwise skip, or fail under SLUICE_INTEROP=1.
fn peer_ready(name: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("SLUICE_INTEROP").is_some_and(|v| v == "1") {
        panic!("{name} not installed but SLUICE_INTEROP=1");
    }
    println!("skipped: {name} not installed");
    false
}

fn python_ready() -> bool {
    let ok = Process::new("python3")
        .args(["-c", "import smpplib"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    peer_ready("python smpplib", ok)
}

fn node_ready() -> bool {
    let ok = peers_dir().join("node/node_modules/smpp").is_dir()
        && Process::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    peer_ready("node smpp", ok)
}

/// Kills the child if the test fails midway.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    fn spawn(program: &str, args: &[&str]) -> Self {
        let child = Process::new(program)
            .args(args)
            .current_dir(peers_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer");
        Self(child)
    }

    /// Waits for exit and returns the JSON lines it printed.
    fn finish(mut self) -> Vec<Value> {
        let mut out = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.0.wait().unwrap();
        assert!(status.success(), "peer failed: {status}\n{out}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// A blocking SMPP connection framed by our codec.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Self {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    fn read(&mut self) -> Decoded {
        loop {
            if let Some(len) = check(&self.buf, DEFAULT_MAX_LEN).expect("valid frame") {
                let frame = self.buf.split_to(len).freeze();
                let d = decode(frame.clone()).unwrap_or_else(|e| panic!("{e}: {frame:02X?}"));
                assert!(
                    d.tolerated.is_empty(),
                    "peer PDU needed tolerance {:?}: {:?}",
                    d.tolerated,
                    d.command
                );
                // Strict peers' PDUs re-encode byte-identically with our encoder.
                if d.command.status.is_ok() {
                    assert_eq!(d.command.to_bytes().unwrap(), frame, "{:?}", d.command);
                }
                return d;
            }
            let mut tmp = [0u8; 4096];
            let n = self.stream.read(&mut tmp).expect("read from peer");
            assert!(n > 0, "peer closed the connection");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn send(&mut self, c: &Command) {
        self.stream.write_all(&c.to_bytes().unwrap()).unwrap();
    }

    fn respond(&mut self, req: &Command, pdu: Pdu) {
        self.send(&Command::new(CommandStatus::EsmeRok, req.sequence, pdu));
    }
}

fn events<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == name).collect()
}

fn dlr_deliver_sm(seq: u32, smsc_id: &str, text_id: &str) -> Command {
    let mut sm = Sm {
        source: Address::new(1, 1, "8613800138000"),
        dest: Address::new(5, 0, "sluice"),
        esm_class: ESM_CLASS_DELIVERY_RECEIPT,
        ..Sm::default()
    };
    let receipt = ReceiptText {
        id: Some(text_id.as_bytes()),
        sub: Some(1),
        dlvrd: Some(1),
        submit_date: ReceiptDate::parse(b"2511260153"),
        done_date: ReceiptDate::parse(b"2511260154"),
        stat: Some(ReceiptStat::Delivered),
        err: Some(b"000"),
        text: Some(b"hello"),
    };
    sm.short_message = Octets::from(receipt.to_vec());
    sm.tlvs.set_receipted_message_id(smsc_id.as_bytes());
    sm.tlvs.set_message_state(MessageState::Delivered);
    Command::request(seq, Pdu::DeliverSm(sm))
}

#[test]
fn python_smpplib_esme_against_our_listener() {
    if !python_ready() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let script = peers_dir().join("python/smpp_client.py");
    let peer = Peer::spawn("python3", &[script.to_str().unwrap(), &port]);
    let (stream, _) = listener.accept().unwrap();
    let mut conn = Conn::new(stream);

    let bind = conn.read().command;
    let Pdu::BindTransceiver(b) = &bind.pdu else {
        panic!("{bind:?}")
    };
    assert_eq!(
        (&b.system_id[..], &b.password[..], &b.system_type[..]),
        (&b"esme1"[..], &b"secret"[..], &b"interop"[..])
    );
    assert_eq!(b.interface_version, INTERFACE_VERSION_34);
    let mut resp = BindResp {
        system_id: Octets::from_static(b"sluice"),
        ..BindResp::default()
    };
    resp.tlvs.push(tlv::tags::SC_INTERFACE_VERSION, vec![0x34]);
    conn.respond(&bind, Pdu::BindTransceiverResp(resp));

    let short = conn.read().command;
    let Pdu::SubmitSm(sm) = &short.pdu else {
        panic!("{short:?}")
    };
    assert_eq!((sm.source.ton, &sm.source.addr[..]), (5, &b"sluice"[..]));
    assert_eq!(
        (sm.dest.ton, sm.dest.npi, &sm.dest.addr[..]),
        (1, 1, &b"8613800138000"[..])
    );
    assert_eq!(&sm.short_message[..], b"hello from smpplib");
    assert_eq!(sm.registered_delivery, 1);
    // The SMSC answers in hex; its receipt will quote the id in decimal.
    conn.respond(&short, Pdu::SubmitSmResp(MessageIdResp::new("1A2B")));

    // Long UCS-2 text in UDH-concatenated parts.
    let mut parts: Vec<(u8, Bytes)> = Vec::new();
    let total = loop {
        let c = conn.read().command;
        let Pdu::SubmitSm(sm) = &c.pdu else {
            panic!("{c:?}")
        };
        assert_eq!(sm.data_coding, 8);
        assert!(sm.has_udh());
        let m = &sm.short_message;
        assert_eq!(&m[..3], &[5, 0, 3], "8-bit concat UDH");
        let total = m[4];
        parts.push((m[5], Bytes::copy_from_slice(&m[6..])));
        conn.respond(
            &c,
            Pdu::SubmitSmResp(MessageIdResp::new(format!("{:X}", 0x1000 + parts.len()))),
        );
        if parts.len() == total as usize {
            break total;
        }
    };
    parts.sort_by_key(|p| p.0);
    let ucs2: Vec<u8> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
    let units: Vec<u16> = ucs2
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let long = String::from_utf16(&units).unwrap();
    assert!(long.starts_with("Sluice 长短信测试: 你好世界"), "{long}");
    assert!(total >= 2);

    conn.send(&dlr_deliver_sm(1, "1A2B", "6699"));
    let dresp = conn.read().command;
    assert_eq!((dresp.sequence, dresp.status), (1, CommandStatus::EsmeRok));
    assert!(matches!(dresp.pdu, Pdu::DeliverSmResp(_)));

    let el = conn.read().command;
    assert_eq!(el.pdu, Pdu::EnquireLink);
    conn.respond(&el, Pdu::EnquireLinkResp);
    let unbind = conn.read().command;
    assert_eq!(unbind.pdu, Pdu::Unbind);
    conn.respond(&unbind, Pdu::UnbindResp);
    drop(conn);

    let lines = peer.finish();
    let bound = events(&lines, "bound");
    assert_eq!(bound[0]["system_id"], "sluice");
    let resps = events(&lines, "submit_sm_resp");
    assert_eq!(resps.len(), 1 + total as usize);
    assert_eq!(resps[0]["message_id"], "1A2B");
    assert_eq!(events(&lines, "parts")[0]["count"], total);
    let dlr = events(&lines, "deliver_sm");
    assert_eq!(dlr.len(), 1);
    assert_eq!(dlr[0]["esm_class"], 4);
    assert_eq!(dlr[0]["receipted_message_id"], "1A2B");
    assert_eq!(dlr[0]["message_state"], 2);
    let text = dlr[0]["short_message"].as_str().unwrap();
    let parsed = ReceiptText::parse(text.as_bytes());
    assert_eq!(parsed.stat, Some(ReceiptStat::Delivered));
    // Hex id from submit_sm_resp and decimal id in the text normalise to the same key.
    assert_eq!(
        canonical_id(b"1A2B", IdFormat::Hex),
        canonical_id(parsed.id.unwrap(), IdFormat::Decimal)
    );
    assert_eq!(events(&lines, "enquire_link_resp").len(), 1);
    assert_eq!(events(&lines, "unbound")[0]["command"], "unbind_resp");
}

#[test]
fn node_smpp_esme_against_our_listener() {
    if !node_ready() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let peer = Peer::spawn("node", &["node/smpp_client.js", &port]);
    let (stream, _) = listener.accept().unwrap();
    let mut conn = Conn::new(stream);

    let bind = conn.read().command;
    let Pdu::BindTransceiver(b) = &bind.pdu else {
        panic!("{bind:?}")
    };
    assert_eq!(
        (&b.system_id[..], &b.password[..]),
        (&b"nodeesme"[..], &b"pw"[..])
    );
    conn.respond(
        &bind,
        Pdu::BindTransceiverResp(BindResp {
            system_id: Octets::from_static(b"sluice"),
            ..BindResp::default()
        }),
    );

    let submit = conn.read().command;
    let Pdu::SubmitSm(sm) = &submit.pdu else {
        panic!("{submit:?}")
    };
    assert_eq!(&sm.short_message[..], b"hello from node");
    assert_eq!(&sm.dest.addr[..], b"8613900139000");
    assert_eq!(sm.tlvs.user_message_reference(), Some(77));
    conn.respond(&submit, Pdu::SubmitSmResp(MessageIdResp::new("abc-1")));

    conn.send(&dlr_deliver_sm(9, "abc-1", "abc-1"));
    let dresp = conn.read().command;
    assert_eq!(dresp.sequence, 9);
    assert!(matches!(dresp.pdu, Pdu::DeliverSmResp(_)));
    let el = conn.read().command;
    assert_eq!(el.pdu, Pdu::EnquireLink);
    conn.respond(&el, Pdu::EnquireLinkResp);
    let unbind = conn.read().command;
    assert_eq!(unbind.pdu, Pdu::Unbind);
    conn.respond(&unbind, Pdu::UnbindResp);
    // The SMSC closes after unbind_resp, which lets node's socket finish.
    drop(conn);

    let lines = peer.finish();
    assert_eq!(events(&lines, "bound")[0]["system_id"], "sluice");
    assert_eq!(events(&lines, "submit_sm_resp")[0]["message_id"], "abc-1");
    let dlr = events(&lines, "deliver_sm");
    assert_eq!(dlr[0]["esm_class"], 4);
    assert_eq!(dlr[0]["receipted_message_id"], "abc-1");
    assert_eq!(dlr[0]["message_state"], 2);
    let parsed = ReceiptText::parse(dlr[0]["short_message"].as_str().unwrap().as_bytes());
    assert_eq!(parsed.id, Some(&b"abc-1"[..]));
    assert_eq!(parsed.stat, Some(ReceiptStat::Delivered));
    assert_eq!(events(&lines, "unbound")[0]["status"], 0);
}

#[test]
fn our_esme_against_node_smpp_server() {
    if !node_ready() {
        return;
    }
    let mut peer = Peer::spawn("node", &["node/smpp_server.js"]);
    let mut stdout = BufReader::new(peer.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let listening: Value = serde_json::from_str(&first).unwrap();
    let port = listening["port"].as_u64().unwrap();
    let mut conn = Conn::new(TcpStream::connect(("127.0.0.1", port as u16)).unwrap());

    conn.send(&Command::request(
        1,
        Pdu::BindTransceiver(Bind {
            system_id: Octets::from_static(b"sluice"),
            password: Octets::from_static(b"s3cret"),
            ..Bind::default()
        }),
    ));
    let r = conn.read().command;
    assert_eq!((r.sequence, r.status), (1, CommandStatus::EsmeRok));
    let Pdu::BindTransceiverResp(br) = &r.pdu else {
        panic!("{r:?}")
    };
    assert_eq!(&br.system_id[..], b"nodesmsc");

    let mut sm = Sm {
        source: Address::new(5, 0, "sluice"),
        dest: Address::new(1, 1, "8613700137000"),
        registered_delivery: 1,
        short_message: Octets::from_static(b"hello node smsc"),
        ..Sm::default()
    };
    sm.tlvs.push(
        tlv::tags::USER_MESSAGE_REFERENCE,
        4242u16.to_be_bytes().to_vec(),
    );
    conn.send(&Command::request(2, Pdu::SubmitSm(sm)));

    // The submit_sm_resp and the receipt may arrive in either order.
    let mut receipt = None;
    let mut message_id = None;
    while receipt.is_none() || message_id.is_none() {
        let c = conn.read().command;
        match &c.pdu {
            Pdu::SubmitSmResp(r) => {
                assert_eq!((c.sequence, c.status), (2, CommandStatus::EsmeRok));
                message_id = Some(r.message_id.clone());
            }
            Pdu::DeliverSm(d) => {
                let report = DeliveryReport::from_sm(d).expect("a receipt");
                assert_eq!(report.message_id, b"node-42");
                assert_eq!(report.state, Some(MessageState::Delivered));
                let text = report.text.expect("receipt text");
                assert_eq!(text.id, Some(&b"node-42"[..]));
                assert_eq!(
                    text.done_date.map(|d| (d.day, d.hour, d.minute)),
                    Some((26, 1, 54))
                );
                conn.respond(&c, Pdu::DeliverSmResp(MessageIdResp::default()));
                receipt = Some(c.sequence);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(message_id.as_deref(), Some(&b"node-42"[..]));

    conn.send(&Command::request(3, Pdu::EnquireLink));
    let r = conn.read().command;
    assert_eq!((r.sequence, &r.pdu), (3, &Pdu::EnquireLinkResp));
    conn.send(&Command::request(4, Pdu::Unbind));
    let r = conn.read().command;
    assert_eq!((r.sequence, &r.pdu), (4, &Pdu::UnbindResp));
    drop(conn);

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = peer.0.wait().unwrap();
    assert!(status.success(), "{rest}");
    let lines: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bind = events(&lines, "bind_transceiver");
    assert_eq!(bind[0]["system_id"], "sluice");
    assert_eq!(bind[0]["password"], "s3cret");
    assert_eq!(bind[0]["interface_version"], 0x34);
    let submit = events(&lines, "submit_sm");
    assert_eq!(submit[0]["source_addr"], "sluice");
    assert_eq!(submit[0]["destination_addr"], "8613700137000");
    assert_eq!(submit[0]["dest_addr_ton"], 1);
    assert_eq!(submit[0]["registered_delivery"], 1);
    assert_eq!(submit[0]["user_message_reference"], 4242);
    assert_eq!(submit[0]["short_message"], "hello node smsc");
    assert_eq!(events(&lines, "deliver_sm_resp")[0]["status"], 0);
    assert_eq!(events(&lines, "enquire_link").len(), 1);
    assert_eq!(events(&lines, "unbind").len(), 1);
    assert!(events(&lines, "error").is_empty(), "{lines:?}");
}
