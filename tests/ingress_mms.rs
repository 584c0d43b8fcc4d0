//! MMS through `POST /v1/messages` over a real socket with a real store: content built
//! (SMIL generated, parsed back), per-line errors with line and field, the per-channel size
//! limit after encoding, URL parts fetched from a local HTTP server, and one content file for
//! 10 000 recipients that goes with the last reference.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::http::{StatusCode, header};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};
use sluice::ingress::accept::simple_place;
use sluice::ingress::account::{AccountSpec, Accounts, key_hash};
use sluice::ingress::batch::BatchLimits;
use sluice::ingress::http::{IngressState, router};
use sluice::ingress::message::{Kind, SenderPolicy};
use sluice::ingress::mms::MmsIngress;
use sluice::store::{
    AnyBackend, BackendKind, MessageId, MessageState, Op, Payload, Store, WriterConfig, open_store,
};
use sluice_protocols::mm7::mime;

const NOW_MS: u64 = 1_790_000_000_000;
/// A JPEG-looking body (SOI marker, bytes that include "--" to exercise the boundary check).
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0x2D, 0x2D, 0x00, 0x10, 0xFF, 0xD9];

struct Api {
    base: String,
    client: reqwest::Client,
    store: Store<AnyBackend>,
    dir: tempfile::TempDir,
}

/// A gateway whose mms messages route to channel `mm7` (limit: the default) or, for numbers
/// starting with +86139, to `tiny` (limit 600 bytes).
async fn start() -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(
        BackendKind::Redb,
        dir.path(),
        WriterConfig::default(),
        NOW_MS,
    )
    .expect("open store");
    let place = simple_place(|_acc, kind, to| match kind {
        Kind::Mms if to.starts_with("+86139") => Some("tiny".to_owned()),
        Kind::Mms => Some("mm7".to_owned()),
        _ => Some("sim".to_owned()),
    });
    let mut limits = HashMap::new();
    limits.insert("tiny".to_owned(), 600);
    let state = Arc::new(IngressState {
        accounts: Accounts::new([AccountSpec {
            name: "acme".into(),
            key_sha256: vec![key_hash("acme-key")],
            rate_per_sec: None,
            burst: None,
            senders: SenderPolicy {
                allowed: vec![],
                default: Some("10086".into()),
                callbacks: false,
            },
            webhook_url: None,
            mo_url: None,
        }]),
        store: store.clone().into(),
        place,
        on_commit: Arc::new(|_| {}),
        limits: BatchLimits::default(),
        metrics: None,
        ready: Arc::new(|| true),
        now_ms: Arc::new(|| NOW_MS),
        draining: AtomicBool::new(false),
        rules: Arc::new(
            sluice::rules::Rules::in_memory(
                jiff::tz::TimeZone::UTC,
                &[],
                sluice::clock::AnyClock::System,
            )
            .expect("rules"),
        ),
        mms: MmsIngress::new(limits).expect("fetcher"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        dir,
    }
}

/// A local media server: `/a.jpg` (image/jpeg), `/untyped` (no Content-Type), anything
/// else 404.
async fn media_server() -> String {
    let app = axum::Router::new()
        .route(
            "/a.jpg",
            get(|| async { ([(header::CONTENT_TYPE, "image/jpeg")], JPEG.to_vec()) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such media") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

impl Api {
    async fn post(&self, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth("acme-key")
            .json(body)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/v1/messages/{id}", self.base))
            .bearer_auth("acme-key")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }

    /// Content files on disk (not temporaries).
    fn content_files(&self) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let top = self.dir.path().join("content");
        for sub in std::fs::read_dir(&top).expect("content dir").flatten() {
            if sub.path().is_dir() {
                out.extend(
                    std::fs::read_dir(sub.path())
                        .expect("sub")
                        .flatten()
                        .map(|f| f.path()),
                );
            }
        }
        out
    }
}

fn image_and_text(to: &str) -> Value {
    json!({
        "to": to,
        "kind": "mms",
        "subject": "Spring offer",
        "parts": [
            {"content_type": "image/jpeg", "name": "a.jpg",
             "base64": base64::engine::general_purpose::STANDARD.encode(JPEG)},
            {"content_type": "text/plain;charset=utf-8", "text": "Hello 你好"}
        ]
    })
}

fn digest_of(store: &Store<AnyBackend>, id: MessageId) -> ([u8; 32], String) {
    match store.get(id).expect("get").expect("stored").payload {
        Payload::Mms {
            digest,
            content_type,
            ..
        } => (digest, content_type),
        other => panic!("not an mms payload: {other:?}"),
    }
}

#[tokio::test]
async fn image_and_text_are_accepted_with_a_generated_smil() {
    let api = start().await;
    let (status, v) = api
        .post(&json!({"messages": [image_and_text("+8613800138000")]}))
        .await;
    assert_eq!(status, 202, "{v}");
    let id_text = v["results"][0]["id"].as_str().expect("id").to_owned();
    let id: MessageId = id_text.parse().expect("id");
    let (digest, content_type) = digest_of(&api.store, id);
    let body = api
        .store
        .load_content(&digest)
        .expect("load")
        .expect("content file present after the 202");
    let parts = mime::parse(&content_type, &body).expect("our own MIME parses back");
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].content_type, "application/smil");
    assert_eq!(
        mime::header_param(&content_type, "type").as_deref(),
        Some("application/smil")
    );
    assert_eq!(
        mime::header_param(&content_type, "start").as_deref(),
        Some("<smil>")
    );
    let smil = String::from_utf8(parts[0].body.clone()).expect("utf-8 smil");
    assert!(
        smil.contains("<img src=\"a.jpg\" region=\"Image\"/>"),
        "{smil}"
    );
    assert!(
        smil.contains("<text src=\"part2.txt\" region=\"Text\"/>"),
        "{smil}"
    );
    assert_eq!(parts[1].body, JPEG);
    assert_eq!(parts[2].body, "Hello 你好".as_bytes());
    for p in &parts {
        assert!(
            p.content_id.is_some() && p.content_location.is_some(),
            "{p:?}"
        );
    }
    let view = api.get(&id_text).await;
    assert_eq!(view["kind"], "mms");
    assert_eq!(view["mms"]["subject"], "Spring offer");
    assert_eq!(view["mms"]["size"], body.len());
    assert_eq!(
        view["mms"]["content_digest"].as_str().map(str::len),
        Some(64)
    );
}

#[tokio::test]
async fn bad_parts_are_refused_per_line_and_field() {
    let api = start().await;
    let mut bad = image_and_text("+8613800138001");
    bad["parts"][0]["base64"] = json!("###");
    let (status, v) = api
        .post(&json!({"messages": [image_and_text("+8613800138000"), bad]}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["line"], 2);
    assert_eq!(v["field"], "parts[0].base64");

    let mut unknown = image_and_text("+8613800138000");
    unknown["parts"][0]["content_type"] = json!("application/x-msdownload");
    let (status, v) = api.post(&json!({"messages": [unknown]})).await;
    assert_eq!(
        (status, v["field"].clone()),
        (422, json!("parts[0].content_type"))
    );

    let empty = json!({"to": "+8613800138000", "kind": "mms", "parts": []});
    let (status, v) = api.post(&json!({"messages": [empty]})).await;
    assert_eq!((status, v["field"].clone()), (422, json!("parts")));

    let text_too = json!({"to": "+8613800138000", "kind": "mms", "text": "x",
                          "parts": [{"text": "x"}]});
    let (status, v) = api.post(&json!({"messages": [text_too]})).await;
    assert_eq!((status, v["field"].clone()), (422, json!("text")));
    // Nothing of a refused batch was stored, content included.
    assert!(api.content_files().is_empty());
}

#[tokio::test]
async fn content_over_the_channel_limit_is_refused_after_encoding() {
    let api = start().await;
    // 10 bytes of JPEG are far below 600, but the encoded body (SMIL, headers, base64) is not.
    let (status, v) = api
        .post(&json!({"messages": [image_and_text("+8613800138000"),
                                   image_and_text("+8613912345678")]}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["line"], 2);
    assert_eq!(v["field"], "parts");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("limit of 600 bytes")),
        "{v}"
    );
}

#[tokio::test]
async fn url_parts_are_fetched_and_a_404_is_refused() {
    let api = start().await;
    let media = media_server().await;
    let msg = json!({"to": "+8613800138000", "kind": "mms",
                     "parts": [{"url": format!("{media}/a.jpg")}, {"text": "from a URL"}]});
    let (status, v) = api.post(&json!({"messages": [msg]})).await;
    assert_eq!(status, 202, "{v}");
    let id: MessageId = v["results"][0]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("id");
    let (digest, ct) = digest_of(&api.store, id);
    let body = api
        .store
        .load_content(&digest)
        .expect("load")
        .expect("file");
    let parts = mime::parse(&ct, &body).expect("parse");
    assert_eq!(
        parts[1].content_type, "image/jpeg",
        "type taken from the response"
    );
    assert_eq!(parts[1].body, JPEG);

    let missing = json!({"to": "+8613800138000", "kind": "mms",
                         "parts": [{"url": format!("{media}/gone.jpg")}]});
    let (status, v) = api.post(&json!({"messages": [missing]})).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["field"], "parts[0].url");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains("404")),
        "{v}"
    );
}

#[tokio::test]
async fn one_content_file_for_ten_thousand_recipients_until_the_last_is_purged() {
    let api = start().await;
    let messages: Vec<Value> = (0..10_000)
        .map(|i| image_and_text(&format!("+86138{i:08}")))
        .collect();
    let (status, v) = api.post(&json!({ "messages": messages })).await;
    assert_eq!(status, 202);
    let ids: Vec<MessageId> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(api.content_files().len(), 1, "content stored once");
    let (digest, _) = digest_of(&api.store, ids[0]);
    assert_eq!(api.store.content_refs(&digest).expect("refs"), 10_000);
    // End all but one, purge: the file stays for the last reference.
    let finish = |id| Op::Finish {
        id,
        state: MessageState::Failed,
        stat: "FAILED".into(),
        err: "000".into(),
        now_ms: NOW_MS,
    };
    api.store
        .submit(ids[1..].iter().copied().map(finish).collect())
        .await
        .expect("finish");
    while api.store.purge(NOW_MS + 1, 4096).await.expect("purge") > 0 {}
    assert_eq!(api.store.content_refs(&digest).expect("refs"), 1);
    assert_eq!(api.content_files().len(), 1);
    api.store
        .submit(vec![finish(ids[0])])
        .await
        .expect("finish");
    while api.store.purge(NOW_MS + 1, 4096).await.expect("purge") > 0 {}
    assert_eq!(api.store.content_refs(&digest).expect("refs"), 0);
    assert!(
        api.content_files().is_empty(),
        "file removed with its last reference"
    );
    assert_eq!(api.store.load_content(&digest).expect("load"), None);
}
