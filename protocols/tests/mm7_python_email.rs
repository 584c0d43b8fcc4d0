//! Every multipart body the MM7 builder makes is read by an independent parser, python's
//! standard `email` package, into the same tree of parts, content types, Content-IDs,
//! Content-Locations and decoded bodies. A missing python3 is skipped, or FAILS when
//! SLUICE_INTEROP=1 (as in CI).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use sluice_protocols::mm7::mime::{self, Part, TransferEncoding};
use sluice_protocols::mm7::soap::{self, Address, REL_6_MM7_1_4, SubmitReq};

const WALK: &str = r#"
import sys, json, email
from email import policy
msg = email.message_from_binary_file(sys.stdin.buffer, policy=policy.compat32)
if msg.defects:
    sys.exit("defects: %r" % msg.defects)
out = []
for p in msg.walk():
    out.append({
        "type": p.get_content_type(),
        "cid": p.get("Content-ID"),
        "loc": p.get("Content-Location"),
        "body": None if p.is_multipart() else p.get_payload(decode=True).hex(),
    })
print(json.dumps(out))
"#;

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import email"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var_os("SLUICE_INTEROP").is_some_and(|v| v == "1") {
        panic!("python3 not installed but SLUICE_INTEROP=1");
    }
    println!("skipped: python3 not installed");
    false
}

/// Python's walk: the root and then every part depth first.
fn python_walk(content_type: &str, body: &[u8]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", WALK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input =
        format!("MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n").into_bytes();
    input.extend_from_slice(body);
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Our parse in the same order and shape as python's walk.
fn our_walk(content_type: &str, parts: &[Part], out: &mut Vec<Value>) {
    out.push(serde_json::json!({"type": mime::media_type(content_type), "cid": null, "loc": null, "body": null}));
    for part in parts {
        if part.nested.is_empty() {
            out.push(serde_json::json!({
                "type": mime::media_type(&part.content_type),
                "cid": part.content_id.as_ref().map(|c| format!("<{c}>")),
                "loc": part.content_location,
                "body": part.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            }));
        } else {
            let mut nested = Vec::new();
            our_walk(&part.content_type, &part.nested, &mut nested);
            nested[0]["cid"] = part.content_id.as_ref().map(|c| format!("<{c}>")).into();
            nested[0]["loc"] = part.content_location.clone().into();
            out.extend(nested);
        }
    }
}

#[test]
fn python_email_reads_our_mm7_submit_body_into_the_same_parts() {
    if !python_ready() {
        return;
    }
    let image: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let inner = mime::build_related(
        "inner=_b",
        "application/smil",
        &[
            Part::new(
                "application/smil",
                TransferEncoding::EightBit,
                b"<smil><body/></smil>".to_vec(),
            )
            .with_content_id("smil"),
            Part::new("image/jpeg", TransferEncoding::Base64, image)
                .with_content_id("img@sluice")
                .with_content_location("a.jpg"),
            Part::new(
                "text/plain; charset=utf-8",
                TransferEncoding::EightBit,
                "冬季促销 ok".as_bytes().to_vec(),
            )
            .with_content_location("t.txt"),
        ],
    )
    .unwrap();
    let req = SubmitReq {
        transaction_id: "tx".into(),
        vaspid: "1".into(),
        vasid: "2".into(),
        sender_address: None,
        recipients: vec![Address::Number("8613800138000".into())],
        service_code: None,
        linked_id: None,
        delivery_report: Some(true),
        subject: Some("s".into()),
        charged_party: None,
        content_id: "content".into(),
    };
    let outer = mime::build_related(
        "outer=_b",
        "text/xml",
        &[
            Part::new(
                "text/xml; charset=utf-8",
                TransferEncoding::EightBit,
                soap::encode_submit_req(REL_6_MM7_1_4, &req).into_bytes(),
            )
            .with_content_id("soap"),
            Part::new(&inner.content_type, TransferEncoding::Binary, inner.body)
                .with_content_id("content"),
        ],
    )
    .unwrap();

    let theirs = python_walk(&outer.content_type, &outer.body);
    let mut ours = Vec::new();
    our_walk(
        &outer.content_type,
        &mime::parse(&outer.content_type, &outer.body).unwrap(),
        &mut ours,
    );
    assert_eq!(theirs.len(), 6, "{theirs:#?}");
    assert_eq!(ours, theirs);
}
