//! MM7 codec: envelopes inside multipart/related round trip through our own parser; decoding of
//! the hand-written fixtures in `mm7_fixtures/` (see its README for their origin); the MIME
//! parser on arbitrary bytes; status classification.

use proptest::prelude::*;
use sluice_protocols::mm7::mime::{self, Part, TransferEncoding};
use sluice_protocols::mm7::soap::{
    self, Address, Message, REL_5_MM7_1_0, REL_6_MM7_1_4, Status, SubmitReq,
};
use sluice_protocols::mm7::status::{Disposition, StatusClass, class, disposition};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/mm7_fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn submit_req() -> SubmitReq {
    SubmitReq {
        transaction_id: "tx-1".into(),
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: Some(Address::ShortCode("10658888".into())),
        recipients: vec![
            Address::Number("8613800138000".into()),
            Address::Number("8613800138001".into()),
        ],
        service_code: Some("MMS_PROMO".into()),
        linked_id: Some("link-1".into()),
        delivery_report: Some(true),
        subject: Some("Winter <sale> & more".into()),
        charged_party: Some("Sender".into()),
        content_id: "content-1".into(),
    }
}

/// The MMS content: a nested multipart/related with SMIL, an image (base64) and text (8bit).
fn content_part(image: &[u8]) -> Part {
    let smil =
        b"<smil><body><par><img src=\"a.jpg\"/><text src=\"t.txt\"/></par></body></smil>".to_vec();
    let inner = mime::build_related(
        "inner-b",
        "application/smil",
        &[
            Part::new("application/smil", TransferEncoding::EightBit, smil).with_content_id("smil"),
            Part::new("image/jpeg", TransferEncoding::Base64, image.to_vec())
                .with_content_id("img")
                .with_content_location("a.jpg"),
            Part::new(
                "text/plain;charset=utf-8",
                TransferEncoding::EightBit,
                "冬季促销".as_bytes().to_vec(),
            )
            .with_content_location("t.txt"),
        ],
    )
    .unwrap();
    Part::new(&inner.content_type, TransferEncoding::Binary, inner.body)
        .with_content_id("content-1")
}

#[test]
fn submit_req_in_multipart_round_trips() {
    let image: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    for ns in [REL_6_MM7_1_4, REL_5_MM7_1_0] {
        let req = submit_req();
        let xml = soap::encode_submit_req(ns, &req);
        let built = mime::build_related(
            "outer-b",
            "text/xml",
            &[
                Part::new(
                    "text/xml; charset=utf-8",
                    TransferEncoding::EightBit,
                    xml.into_bytes(),
                )
                .with_content_id("soap"),
                content_part(&image),
            ],
        )
        .unwrap();
        assert_eq!(
            mime::header_param(&built.content_type, "start").as_deref(),
            Some("<soap>")
        );
        assert_eq!(
            mime::header_param(&built.content_type, "type").as_deref(),
            Some("text/xml")
        );

        let parts = mime::parse(&built.content_type, &built.body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_id.as_deref(), Some("soap"));
        let env = soap::decode(&parts[0].body).unwrap();
        assert_eq!(env.transaction_id.as_deref(), Some("tx-1"));
        assert_eq!(env.namespace.as_deref(), Some(ns));
        assert_eq!(env.message, Message::SubmitReq(req));

        let content = &parts[1];
        assert_eq!(content.content_id.as_deref(), Some("content-1"));
        assert_eq!(mime::media_type(&content.content_type), "multipart/related");
        assert_eq!(content.nested.len(), 3);
        assert_eq!(content.nested[0].content_type, "application/smil");
        assert_eq!(content.nested[1].content_id.as_deref(), Some("img"));
        assert_eq!(content.nested[1].content_location.as_deref(), Some("a.jpg"));
        assert_eq!(
            content.nested[1].transfer_encoding,
            TransferEncoding::Base64
        );
        assert_eq!(content.nested[1].body, image);
        assert_eq!(content.nested[2].body, "冬季促销".as_bytes());
    }
}

#[test]
fn submit_req_elements_follow_schema_order() {
    let xml = soap::encode_submit_req(REL_6_MM7_1_4, &submit_req());
    let order = [
        "<MM7Version>6.8.0<",
        "<SenderIdentification>",
        "<VASPID>",
        "<VASID>",
        "<SenderAddress><ShortCode>",
        "<Recipients><To><Number>8613800138000<",
        "<ServiceCode>",
        "<LinkedID>",
        "<DeliveryReport>true<",
        "<Subject>Winter &lt;sale&gt; &amp; more<",
        "<ChargedParty>Sender<",
        "<Content href=\"cid:content-1\"/>",
    ];
    let mut at = 0;
    for piece in order {
        let found = xml[at..]
            .find(piece)
            .unwrap_or_else(|| panic!("{piece} not after offset {at} in {xml}"));
        at += found + piece.len();
    }
}

#[test]
fn parser_accepts_preamble_lf_lines_and_folded_headers() {
    let body = b"preamble text\n--b\nContent-Type: text/plain;\n\tcharset=utf-8\nContent-ID: <x>\n\nhello\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: BASE64\n\naGVs\nbG8=\n--b--\nepilogue";
    let parts = mime::parse("multipart/related; boundary=b", body).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].content_type, "text/plain; charset=utf-8");
    assert_eq!(parts[0].content_id.as_deref(), Some("x"));
    assert_eq!(parts[0].body, b"hello");
    assert_eq!(parts[1].body, b"hello");
}

#[test]
fn parser_errors_are_typed() {
    use mime::MimeError;
    assert_eq!(
        mime::parse("multipart/related", b"--b\r\n"),
        Err(MimeError::NoBoundary)
    );
    assert_eq!(
        mime::parse("multipart/related; boundary=b", b"nothing"),
        Err(MimeError::NoOpeningDelimiter)
    );
    assert_eq!(
        mime::parse(
            "multipart/related; boundary=b",
            b"--b\r\nContent-Type: a/b\r\n\r\nbody"
        ),
        Err(MimeError::NoClosingDelimiter)
    );
    assert_eq!(
        mime::parse(
            "multipart/related; boundary=b",
            b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b--"
        ),
        Err(MimeError::Base64)
    );
    assert_eq!(
        mime::parse(
            "multipart/related; boundary=b",
            b"--b\r\nContent-Transfer-Encoding: uuencode\r\n\r\nx\r\n--b--"
        ),
        Err(MimeError::UnsupportedEncoding("uuencode".into()))
    );
}

#[test]
fn parser_bounds_nesting() {
    // Each level's only part is the next level, declared multipart with the same boundary
    // scheme; the parser must stop at MAX_DEPTH rather than recurse without end.
    let mut body = b"leaf".to_vec();
    let mut ct = "text/plain".to_string();
    for level in 0..8 {
        let built = mime::build_related(
            &format!("b{level}"),
            "x/y",
            &[Part::new(&ct, TransferEncoding::Binary, body)],
        )
        .unwrap();
        body = built.body;
        ct = built.content_type;
    }
    assert_eq!(mime::parse(&ct, &body), Err(mime::MimeError::TooDeep));
}

#[test]
fn decodes_submit_rsp_fixtures() {
    let env = soap::decode(&fixture("submit_rsp.xml")).unwrap();
    assert_eq!(env.transaction_id.as_deref(), Some("vas00001-sub"));
    assert_eq!(env.namespace.as_deref(), Some(REL_6_MM7_1_4));
    let Message::SubmitRsp(rsp) = env.message else {
        panic!("{:?}", env.message)
    };
    assert_eq!(
        rsp.status,
        Status {
            code: 1000,
            text: Some("Success".into())
        }
    );
    assert_eq!(rsp.message_id.as_deref(), Some("041502073667"));

    let env = soap::decode(&fixture("submit_rsp_rel5_prefixed.xml")).unwrap();
    assert_eq!(env.transaction_id.as_deref(), Some("0000000017"));
    assert_eq!(env.namespace.as_deref(), Some(REL_5_MM7_1_0));
    let Message::SubmitRsp(rsp) = env.message else {
        panic!("{:?}", env.message)
    };
    assert_eq!(rsp.status.code, 2002);
    assert_eq!(rsp.message_id, None);
    assert_eq!(disposition(rsp.status.code), Disposition::Fail);
}

#[test]
fn decodes_delivery_report_req_and_answers_it() {
    let env = soap::decode(&fixture("delivery_report_req.xml")).unwrap();
    let Message::DeliveryReportReq(dr) = env.message else {
        panic!("{:?}", env.message)
    };
    assert_eq!(dr.message_id, "041502073667");
    assert_eq!(dr.recipient, Some(Address::Number("8613800138000".into())));
    assert_eq!(dr.sender, Some(Address::ShortCode("10658888".into())));
    assert_eq!(dr.date.as_deref(), Some("2026-12-05T18:20:11+08:00"));
    assert_eq!(dr.mm_status, "Retrieved");
    assert_eq!(dr.status_text.as_deref(), Some("Retrieved & read"));

    let tx = env.transaction_id.unwrap();
    let ok = Status {
        code: 1000,
        text: Some("Success".into()),
    };
    let rsp = soap::encode_delivery_report_rsp(REL_6_MM7_1_4, &tx, &ok);
    let back = soap::decode(rsp.as_bytes()).unwrap();
    assert_eq!(back.transaction_id.as_deref(), Some("dr-7d1a"));
    assert_eq!(back.message, Message::DeliveryReportRsp(ok));
}

#[test]
fn decodes_deliver_req_and_answers_it() {
    let env = soap::decode(&fixture("deliver_req.xml")).unwrap();
    assert!(env.namespace.as_deref().unwrap().ends_with("REL-5-MM7-1-2"));
    let Message::DeliverReq(mo) = env.message else {
        panic!("{:?}", env.message)
    };
    assert_eq!(mo.linked_id.as_deref(), Some("mo-link-9"));
    assert_eq!(mo.sender, Some(Address::Number("8613900139000".into())));
    assert_eq!(mo.recipients, vec![Address::ShortCode("10658888".into())]);
    assert_eq!(mo.subject.as_deref(), Some("Re: <offer>"));
    assert_eq!(mo.content_id.as_deref(), Some("mo-content"));

    let ok = Status {
        code: 1000,
        text: None,
    };
    let rsp = soap::encode_deliver_rsp(REL_5_MM7_1_0, "mo-0042", &ok, Some("MO_FREE"));
    assert!(rsp.contains("<ServiceCode>MO_FREE</ServiceCode>"));
    assert_eq!(
        soap::decode(rsp.as_bytes()).unwrap().message,
        Message::DeliverRsp(ok)
    );
}

#[test]
fn decodes_error_responses_and_fault() {
    let env = soap::decode(&fixture("rs_error_rsp.xml")).unwrap();
    assert_eq!(
        env.message,
        Message::RsErrorRsp(Status {
            code: 4004,
            text: Some("Validation error".into())
        })
    );

    let env = soap::decode(&fixture("fault.xml")).unwrap();
    assert_eq!(env.transaction_id.as_deref(), Some("vas00003-sub"));
    assert_eq!(env.namespace.as_deref(), Some(REL_6_MM7_1_4));
    let Message::Fault(fault) = env.message else {
        panic!("{:?}", env.message)
    };
    assert_eq!(fault.code, "env:Server");
    assert_eq!(fault.string, "Server Error");
    assert_eq!(
        fault.status,
        Some(Status {
            code: 3001,
            text: Some("Not Possible".into())
        })
    );
    assert_eq!(disposition(3001), Disposition::Retry);

    let vasp = fixture("rs_error_rsp.xml");
    let vasp = String::from_utf8(vasp)
        .unwrap()
        .replace("RSErrorRsp", "VASPErrorRsp");
    assert!(
        matches!(soap::decode(vasp.as_bytes()).unwrap().message, Message::VaspErrorRsp(s) if s.code == 4004)
    );
}

#[test]
fn refuses_foreign_namespaces_and_non_envelopes() {
    let other = String::from_utf8(fixture("submit_rsp.xml"))
        .unwrap()
        .replace(
            "REL-6-MM7-1-4\">\n      <MM7Version>",
            "REL-7-MM7-9-9\">\n      <MM7Version>",
        );
    assert!(matches!(
        soap::decode(other.as_bytes()),
        Err(soap::SoapError::Namespace(_))
    ));
    assert_eq!(soap::decode(b"<a/>"), Err(soap::SoapError::NotEnvelope));
    assert!(soap::decode(b"<env:Envelope xmlns:env=\"x\">").is_err());
    let no_code = String::from_utf8(fixture("submit_rsp.xml"))
        .unwrap()
        .replace("<StatusCode>1000</StatusCode>", "");
    assert_eq!(
        soap::decode(no_code.as_bytes()),
        Err(soap::SoapError::Missing("Status/StatusCode"))
    );
}

#[test]
fn status_classes_and_dispositions() {
    assert_eq!(class(1000), StatusClass::Success);
    assert_eq!(class(1100), StatusClass::PartialSuccess);
    assert_eq!(class(2004), StatusClass::ClientError);
    assert_eq!(class(3001), StatusClass::ServerError);
    assert_eq!(class(4006), StatusClass::ServiceError);
    assert_eq!(class(999), StatusClass::Invalid);
    assert_eq!(class(5000), StatusClass::Invalid);
    for (code, want) in [
        (1000, Disposition::Accept),
        (1100, Disposition::Accept),
        (1999, Disposition::Accept),
        (2000, Disposition::Fail),
        (2002, Disposition::Fail),
        (2007, Disposition::Fail),
        (2099, Disposition::Fail),
        (3000, Disposition::Retry),
        (3001, Disposition::Retry),
        (3002, Disposition::Fail),
        (3003, Disposition::Fail),
        (3004, Disposition::Fail),
        (3006, Disposition::Retry),
        (4000, Disposition::Fail),
        (4001, Disposition::Fail),
        (4004, Disposition::Fail),
        (4005, Disposition::Retry),
        (4006, Disposition::Retry),
        (4008, Disposition::Fail),
        (4099, Disposition::Fail),
        (0, Disposition::Fail),
        (6000, Disposition::Fail),
    ] {
        assert_eq!(disposition(code), want, "code {code}");
    }
}

proptest! {
    #[test]
    fn mime_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), boundary in "[a-z-]{1,8}") {
        let _ = mime::parse(&format!("multipart/related; boundary=\"{boundary}\""), &body);
    }

    #[test]
    fn mime_parser_never_panics_near_valid_bodies(noise in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..400) {
        let built = mime::build_related("b", "text/xml", &[
            Part::new("text/xml", TransferEncoding::EightBit, b"<a/>".to_vec()).with_content_id("s"),
            Part::new("multipart/related; boundary=c", TransferEncoding::Binary,
                b"--c\r\nContent-Type: text/plain\r\n\r\nx\r\n--c--".to_vec()),
        ]).unwrap();
        let mut body = built.body[..cut.min(built.body.len())].to_vec();
        body.extend_from_slice(&noise);
        body.extend_from_slice(&built.body[cut.min(built.body.len())..]);
        let _ = mime::parse(&built.content_type, &body);
    }

    #[test]
    fn soap_decoder_never_panics(xml in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = soap::decode(&xml);
    }

    #[test]
    fn binary_parts_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2048), b64 in any::<bool>()) {
        let enc = if b64 { TransferEncoding::Base64 } else { TransferEncoding::Binary };
        let boundary = "=_sluice_boundary_7f3a";
        match mime::build_related(boundary, "text/xml", &[Part::new("application/octet-stream", enc, data.clone())]) {
            Ok(built) => {
                let parts = mime::parse(&built.content_type, &built.body).unwrap();
                prop_assert_eq!(parts.len(), 1);
                prop_assert_eq!(&parts[0].body, &data);
            }
            Err(e) => prop_assert_eq!(e, mime::MimeError::BoundaryInBody),
        }
    }
}
