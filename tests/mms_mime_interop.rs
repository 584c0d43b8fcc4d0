//! Interop: the MMS content sluice builds at ingress (`ingress::mms::build`: SMIL root,
//! base64 media, 8bit text) is parsed by a MIME parser nobody here wrote — python's `email`
//! package (tests/peers/python/mms_mime.py) — into the same parts, media types, Content-IDs,
//! Content-Locations and bytes.
//!
//! Skip rule: without python3 the test prints "skipped: …" and passes, unless
//! `SLUICE_INTEROP=1`, where it fails.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sluice::ingress::mms::{ReadyPart, build};

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn python_email_parses_our_mms_content_into_the_same_parts() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/mms_mime.py");
    let jpeg: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let parts = vec![
        ReadyPart {
            content_type: "image/jpeg".into(),
            name: "a.jpg".into(),
            data: jpeg,
        },
        ReadyPart {
            content_type: "text/plain;charset=utf-8".into(),
            name: "a.txt".into(),
            data: "春季特惠 — spring offer".as_bytes().to_vec(),
        },
        ReadyPart {
            content_type: "audio/amr".into(),
            name: "s.amr".into(),
            data: b"#!AMR\n\x00\x01".to_vec(),
        },
    ];
    let built = build(&parts, None).expect("build");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mms.eml");
    let mut raw = format!(
        "MIME-Version: 1.0\r\nContent-Type: {}\r\n\r\n",
        built.content_type
    )
    .into_bytes();
    raw.extend_from_slice(&built.body);
    std::fs::write(&file, raw).expect("write");
    let out = match Command::new("python3").arg(&script).arg(&file).output() {
        Ok(o) => o,
        Err(e) => {
            if std::env::var("SLUICE_INTEROP").as_deref() == Ok("1") {
                panic!("SLUICE_INTEROP=1 but python3 is missing: {e}");
            }
            println!("skipped: python3 not installed ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json from python");
    assert_eq!(v["type"], "multipart/related");
    assert_eq!(v["root_type"], "application/smil");
    assert_eq!(v["start"], "<smil>");
    assert_eq!(v["defects"], serde_json::json!([]));
    let got = v["parts"].as_array().expect("parts");
    assert_eq!(got.len(), parts.len() + 1, "{v}");
    assert_eq!(got[0]["content_type"], "application/smil");
    assert_eq!(got[0]["content_id"], "<smil>");
    for (p, g) in parts.iter().zip(&got[1..]) {
        let media = p.content_type.split(';').next().unwrap_or_default();
        assert_eq!(g["content_type"], media, "{g}");
        assert_eq!(g["content_id"], format!("<{}>", p.name));
        assert_eq!(g["content_location"], p.name.as_str());
        assert_eq!(
            g["sha256"],
            hex(&p.data),
            "{} decoded to other bytes",
            p.name
        );
        assert_eq!(g["defects"], serde_json::json!([]));
    }
}
