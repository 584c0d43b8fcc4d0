//! The simulator's CMPP 2.0 ISMG side with the third-party `cmppprotocol` crate as the SP
//! client: CONNECT with authenticator check (both directions), SUBMIT (short ASCII and long
//! UCS-2 split with UDH by the crate), status reports as DELIVER, and a reply-rule MO.
//! (CMPP 3.0 is covered by unit tests with our own client: the crate is 2.0 only.)

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use cmppprotocol::{CmppConfig, CmppConnection, CmppProtocolParams, Event, SubmitOptions};
use common::start;
use sluice_loadtest::config::{Account, ListenerConfig, Protocol, ReplyRule};

fn ismg() -> ListenerConfig {
    ListenerConfig {
        protocol: Protocol::Cmpp,
        accounts: vec![Account {
            system_id: "901234".into(),
            password: "secret".into(),
            max_binds: 1,
        }],
        mo: sluice_loadtest::config::MoConfig {
            reply: vec![ReplyRule {
                contains: "variant-A".into(),
                probability: 1.0,
                text: "Y".into(),
                delay: Default::default(),
            }],
            ..Default::default()
        },
        ..ListenerConfig::default()
    }
}

fn client(port: u16, password: &str) -> CmppConfig {
    CmppConfig {
        host: "127.0.0.1".into(),
        port: port as i32,
        account: "901234".into(),
        password: password.into(),
        version: cmppprotocol::CMPP_VERSION_20,
        protocol_params: CmppProtocolParams {
            connect_timeout: 5,
            ..Default::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmppprotocol_client_submits_and_gets_reports_and_replies() {
    let sim = start(vec![ismg()]).await;
    let port = sim.addrs()[0].port();
    let conn = CmppConnection::connect(client(port, "secret"))
        .await
        .expect("CONNECT accepted, AuthenticatorISMG verified");
    let mut events = conn.take_events().await.expect("events");
    let mut segments = 0;
    for i in 0..10 {
        let opts = SubmitOptions::new("SVC", "901234", "10690001", format!("1380013{i:04}"));
        segments += conn
            .submit(&opts, &format!("cmpp:{i} variant-A offer"), None)
            .await
            .expect("submit")
            .len();
    }
    let long: String = "长短信测试".repeat(30);
    let opts = SubmitOptions::new("SVC", "901234", "10690001", "13900139000");
    let long_segments = conn
        .submit(&opts, &long, None)
        .await
        .expect("submit long")
        .len();
    assert!(long_segments >= 2);
    segments += long_segments;

    let (mut resp_ids, mut report_ids, mut replies) = (BTreeSet::new(), BTreeSet::new(), 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while resp_ids.len() < segments || report_ids.len() < segments || replies < 10 {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("all events before the deadline")
            .expect("open");
        match ev {
            Event::SubmitResp { msg_id, result, .. } => {
                assert_eq!(result, 0);
                resp_ids.insert(msg_id);
            }
            Event::Deliver(d) => match d.report() {
                Some(r) => {
                    assert_eq!(r.stat, "DELIVRD");
                    report_ids.insert(r.msg_id);
                }
                None => {
                    assert_eq!(d.msg_content, b"Y");
                    assert!(
                        d.src_terminal_id.starts_with("1380013"),
                        "reply comes from the handset: {d:?}"
                    );
                    replies += 1;
                }
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(resp_ids, report_ids, "every Msg_Id got its status report");
    conn.close().await;
    let t = sim.shutdown().await.unwrap();
    assert_eq!(
        (t.unique_messages, t.duplicates, t.incomplete_messages),
        (11, 0, 0),
        "{t:?}"
    );
    assert_eq!(
        t.parts_per_message.get(&long_segments.to_string()),
        Some(&1),
        "{t:?}"
    );
    assert_eq!(t.mo_sent, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmppprotocol_wrong_secret_is_refused() {
    let sim = start(vec![ismg()]).await;
    let port = sim.addrs()[0].port();
    assert!(
        CmppConnection::connect(client(port, "wrong"))
            .await
            .is_err()
    );
    let t = sim.shutdown().await.unwrap();
    assert_eq!((t.binds, t.bind_failures), (0, 1));
}
