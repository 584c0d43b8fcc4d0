//! MM7, the MMSC side: every envelope `rs` encodes decodes back to what was encoded (through
//! `rs::decode`, or `soap::decode` for the kinds the VASP reads), and the hand-written
//! MMSC-side fixtures in `mm7_fixtures/` (see its README) decode with every field.

use sluice_protocols::mm7::rs::{
    self, CancelReq, ErrorRsp, ReadReplyReq, ReplaceReq, RsMessage, Submission,
};
use sluice_protocols::mm7::soap::{
    self, Address, DeliverReq, DeliveryReportReq, Message, REL_5_MM7_1_0, REL_6_MM7_1_4, Status,
    SubmitReq, SubmitRsp,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/mm7_fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ok() -> Status {
    Status {
        code: 1000,
        text: Some("Success".into()),
    }
}

fn other(xml: &str) -> Message {
    match rs::decode(xml.as_bytes()).unwrap().message {
        RsMessage::Other(m) => m,
        m => panic!("expected a soap-side message, got {m:?}"),
    }
}

#[test]
fn mmsc_responses_and_requests_round_trip() {
    for ns in [REL_6_MM7_1_4, REL_5_MM7_1_0] {
        let rsp = SubmitRsp {
            status: ok(),
            message_id: Some("mid-1".into()),
        };
        let xml = rs::encode_submit_rsp(ns, "t1", &rsp);
        assert_eq!(other(&xml), Message::SubmitRsp(rsp.clone()));
        let env = soap::decode(xml.as_bytes()).unwrap();
        assert_eq!(env.transaction_id.as_deref(), Some("t1"));
        assert_eq!(env.namespace.as_deref(), Some(ns));

        let dr = DeliveryReportReq {
            message_id: "mid-1".into(),
            recipient: Some(Address::Number("8613800138000".into())),
            sender: Some(Address::ShortCode("10658888".into())),
            date: Some("2026-12-05T18:20:11Z".into()),
            mm_status: "Retrieved".into(),
            status_text: Some("ok & fine".into()),
        };
        let xml = rs::encode_delivery_report_req(ns, "t2", &dr);
        assert_eq!(other(&xml), Message::DeliveryReportReq(dr));

        let mo = DeliverReq {
            linked_id: Some("link-9".into()),
            sender: Some(Address::Number("8613900000001".into())),
            recipients: vec![Address::ShortCode("10658888".into())],
            subject: Some("Re: offer".into()),
            content_id: Some("mo-content".into()),
        };
        let xml = rs::encode_deliver_req(ns, "t3", &mo);
        assert_eq!(other(&xml), Message::DeliverReq(mo));

        for (kind, expect) in [
            (ErrorRsp::Rs, Message::RsErrorRsp as fn(Status) -> Message),
            (ErrorRsp::Vasp, Message::VaspErrorRsp),
        ] {
            let st = Status {
                code: 4004,
                text: None,
            };
            let xml = rs::encode_error_rsp(kind, ns, "t4", &st);
            assert_eq!(other(&xml), expect(st.clone()));
            let xml = rs::encode_fault(ns, "t4", rs::FAULT_CLIENT, "Client", kind, &st);
            match other(&xml) {
                Message::Fault(f) => {
                    assert_eq!(f.code, rs::FAULT_CLIENT);
                    assert_eq!(f.string, "Client");
                    assert_eq!(f.status, Some(st));
                }
                m => panic!("{m:?}"),
            }
        }
    }
}

#[test]
fn read_reply_cancel_replace_round_trip() {
    let ns = REL_6_MM7_1_4;
    let rr = ReadReplyReq {
        message_id: "mid-2".into(),
        recipient: Address::Number("8613800138000".into()),
        sender: Address::Email("news@example.net".into()),
        time_stamp: "2026-12-05T19:00:00+08:00".into(),
        mm_status: "Read".into(),
        status_text: None,
    };
    let xml = rs::encode_read_reply_req(ns, "r1", &rr);
    assert_eq!(
        rs::decode(xml.as_bytes()).unwrap().message,
        RsMessage::ReadReplyReq(rr)
    );
    let xml = rs::encode_read_reply_rsp(ns, "r1", &ok());
    assert_eq!(
        rs::decode(xml.as_bytes()).unwrap().message,
        RsMessage::ReadReplyRsp(ok())
    );

    let cancel = CancelReq {
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: Some(Address::ShortCode("10658888".into())),
        message_id: "mid-3".into(),
    };
    let xml = rs::encode_cancel_req(ns, "c1", &cancel);
    let env = rs::decode(xml.as_bytes()).unwrap();
    assert_eq!(env.transaction_id.as_deref(), Some("c1"));
    assert_eq!(env.message, RsMessage::CancelReq(cancel));
    let xml = rs::encode_cancel_rsp(ns, "c1", &ok());
    assert_eq!(
        rs::decode(xml.as_bytes()).unwrap().message,
        RsMessage::CancelRsp(ok())
    );

    let replace = ReplaceReq {
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: None,
        message_id: "mid-4".into(),
        service_code: Some("MMS_PROMO".into()),
        content_id: Some("new-content".into()),
    };
    let xml = rs::encode_replace_req(ns, "p1", &replace);
    assert_eq!(
        rs::decode(xml.as_bytes()).unwrap().message,
        RsMessage::ReplaceReq(replace)
    );
    let xml = rs::encode_replace_rsp(ns, "p1", &ok());
    assert_eq!(
        rs::decode(xml.as_bytes()).unwrap().message,
        RsMessage::ReplaceRsp(ok())
    );
}

#[test]
fn vasp_submit_req_decodes_on_the_mmsc_side() {
    let req = SubmitReq {
        transaction_id: "tx-9".into(),
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: Some(Address::ShortCode("10658888".into())),
        recipients: vec![
            Address::Number("8613800138000".into()),
            Address::Number("8613800138001".into()),
        ],
        service_code: Some("MMS_PROMO".into()),
        linked_id: None,
        delivery_report: Some(true),
        subject: Some("s".into()),
        charged_party: Some("Sender".into()),
        content_id: "c1".into(),
    };
    let xml = soap::encode_submit_req(REL_5_MM7_1_0, &req);
    let env = rs::decode(xml.as_bytes()).unwrap();
    assert_eq!(env.namespace.as_deref(), Some(REL_5_MM7_1_0));
    assert_eq!(
        env.message,
        RsMessage::SubmitReq(Submission {
            req,
            cc: vec![],
            bcc: vec![]
        })
    );
}

#[test]
fn fixture_submit_req_with_cc_and_bcc() {
    let env = rs::decode(&fixture("submit_req_cc_bcc.xml")).unwrap();
    assert_eq!(env.namespace.as_deref(), Some(REL_5_MM7_1_0));
    let RsMessage::SubmitReq(s) = env.message else {
        panic!("{:?}", env.message)
    };
    assert_eq!(s.req.transaction_id, "vas00001-sub");
    assert_eq!(s.req.vaspid, "901234");
    assert_eq!(s.req.vasid, "10658888");
    assert_eq!(
        s.req.sender_address,
        Some(Address::ShortCode("10658888".into()))
    );
    assert_eq!(
        s.req.recipients,
        vec![
            Address::Number("8613800138000".into()),
            Address::Email("a@example.net".into())
        ]
    );
    assert_eq!(s.cc, vec![Address::Number("8613800138001".into())]);
    assert_eq!(s.bcc, vec![Address::ShortCode("10086".into())]);
    assert_eq!(s.all_recipients().count(), 4);
    assert_eq!(s.req.service_code.as_deref(), Some("MMS_PROMO"));
    assert_eq!(s.req.linked_id.as_deref(), Some("mo-4411"));
    assert_eq!(s.req.delivery_report, Some(true));
    assert_eq!(s.req.subject.as_deref(), Some("Weekend offer"));
    assert_eq!(s.req.charged_party.as_deref(), Some("Recipient"));
    assert_eq!(s.req.content_id, "SaturnPics-01020930@example.net");
}

#[test]
fn fixture_cancel_req() {
    let env = rs::decode(&fixture("cancel_req.xml")).unwrap();
    assert_eq!(env.transaction_id.as_deref(), Some("vas00002-can"));
    assert_eq!(
        env.message,
        RsMessage::CancelReq(CancelReq {
            vaspid: "TNN".into(),
            vasid: "News".into(),
            sender_address: None,
            message_id: "vas00001-sub".into(),
        })
    );
}

#[test]
fn missing_required_elements_are_typed_errors() {
    let xml = rs::encode_cancel_req(
        REL_6_MM7_1_4,
        "c",
        &CancelReq {
            vaspid: "v".into(),
            vasid: "s".into(),
            sender_address: None,
            message_id: "m".into(),
        },
    )
    .replace("<MessageID>m</MessageID>", "");
    assert_eq!(
        rs::decode(xml.as_bytes()).unwrap_err(),
        soap::SoapError::Missing("MessageID")
    );
    let xml = rs::encode_cancel_rsp(REL_6_MM7_1_4, "c", &ok())
        .replace("REL-6-MM7-1-4\">", "REL-7-MM7-1-0\">");
    assert!(matches!(
        rs::decode(xml.as_bytes()),
        Err(soap::SoapError::Namespace(_))
    ));
}
