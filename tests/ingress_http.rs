//! The HTTP contract (docs/http-api.md) over a real socket on 127.0.0.1 with a real store:
//! 202 results, 4xx bodies with line/field, auth, rate limit, idempotency, GET status, metrics.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Value, json};
use sluice::ingress::accept::simple_place;
use sluice::ingress::account::{AccountSpec, Accounts, key_hash};
use sluice::ingress::batch::BatchLimits;
use sluice::ingress::http::{IngressState, router};
use sluice::ingress::message::{Kind, SenderPolicy};
use sluice::store::{BackendKind, MessageId, MessageState, Store, WriterConfig, open_store};

const NOW_MS: u64 = 1_790_000_000_000;

struct Api {
    base: String,
    client: reqwest::Client,
    store: Store<sluice::store::AnyBackend>,
    _dir: tempfile::TempDir,
}

fn account(name: &str, key: &str, rate: Option<u32>, burst: Option<u32>) -> AccountSpec {
    AccountSpec {
        name: name.into(),
        key_sha256: vec![key_hash(key)],
        rate_per_sec: rate.and_then(NonZeroU32::new),
        burst: burst.and_then(NonZeroU32::new),
        senders: SenderPolicy {
            allowed: vec!["10086".into(), "1069*".into()],
            default: Some("10086".into()),
            callbacks: true,
        },
        webhook_url: None,
        mo_url: None,
    }
}

async fn start(limits: BatchLimits) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(
        BackendKind::Redb,
        dir.path(),
        WriterConfig::default(),
        NOW_MS,
    )
    .expect("open store");
    // Destinations starting with +999 have no route (to test the 422 for unroutable numbers).
    let place = simple_place(|_acc, kind, to| {
        (kind == Kind::Sms && !to.starts_with("+999")).then(|| "sim".to_owned())
    });
    let handle = crate::e2e_support::metrics();
    let state = Arc::new(IngressState {
        accounts: Accounts::new([
            account("acme", "acme-key", None, None),
            account("slow", "slow-key", Some(1), Some(3)),
        ]),
        store: store.clone().into(),
        place,
        on_commit: Arc::new(|_| {}),
        limits,
        metrics: Some(handle),
        ready: Arc::new(|| true),
        now_ms: Arc::new(|| NOW_MS),
        draining: AtomicBool::new(false),
        // No public rules are listed here (tests/public_rules.rs covers them).
        rules: Arc::new(
            sluice::rules::Rules::in_memory(
                jiff::tz::TimeZone::UTC,
                &[],
                sluice::clock::AnyClock::System,
            )
            .expect("rules"),
        ),
        mms: sluice::ingress::mms::MmsIngress::new(std::collections::HashMap::new())
            .expect("mms fetcher"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    sluice::tls::install_provider();
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        _dir: dir,
    }
}

impl Api {
    async fn post(
        &self,
        key: &str,
        ctype: &str,
        body: String,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(key)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, v)
    }

    async fn json(&self, key: &str, body: Value) -> (u16, Value) {
        let (s, _, v) = self.post(key, "application/json", body.to_string()).await;
        (s, v)
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap_or(Value::Null))
    }
}

fn id_of(v: &Value) -> MessageId {
    v.as_str().expect("id string").parse().expect("valid id")
}

#[tokio::test]
async fn json_batch_is_stored_and_answered_in_order() {
    let api = start(BatchLimits::default()).await;
    let (status, body) = api
        .json(
            "acme-key",
            json!({"messages":[
                {"to":"+8613800138000","text":"hello","client_ref":"a1","tags":{"task":"42"}},
                {"to":"13800138001","text":"x".repeat(400),"lane":"otp","from":"1069001"},
                {"to":"13800138002","binary":"0102","udh":"0605040B8423F0","not_before":"2030-01-01T00:00:00Z"}
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["line"], i + 1);
        assert_eq!(r["duplicate"], false);
    }
    assert_eq!(results[0]["client_ref"], "a1");
    let first = api
        .store
        .get(id_of(&results[0]["id"]))
        .expect("read")
        .expect("stored");
    assert_eq!(first.to, "+8613800138000");
    assert_eq!(first.channel, "sim");
    assert_eq!(first.account, "acme");
    assert_eq!(first.state, MessageState::Queued);
    assert_eq!(first.tags.get("task").map(String::as_str), Some("42"));
    let third = api
        .store
        .get(id_of(&results[2]["id"]))
        .expect("read")
        .expect("stored");
    assert_eq!(
        third.state,
        MessageState::Scheduled,
        "not_before in the future"
    );
}

#[tokio::test]
async fn ndjson_batch_lines_count_blank_lines() {
    let api = start(BatchLimits::default()).await;
    let body =
        "{\"to\":\"13800138000\",\"text\":\"a\"}\n\n{\"to\":\"13800138001\",\"text\":\"b\"}\n";
    let (status, _, v) = api
        .post("acme-key", "application/x-ndjson", body.into())
        .await;
    assert_eq!(status, 202, "{v}");
    let lines: Vec<u64> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![1, 3]);
}

#[tokio::test]
async fn invalid_batch_is_422_with_line_and_field_and_stores_nothing() {
    let api = start(BatchLimits::default()).await;
    let (status, body) = api
        .json(
            "acme-key",
            json!({"messages":[
                {"to":"13800138000","text":"ok","client_ref":"kept-out"},
                {"to":"12ab","text":"bad"}
            ]}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"error":"invalid message","line":2,"field":"to","reason":"not a phone number: \"12ab\""})
    );
    assert_eq!(
        api.store.by_client_ref("acme", "kept-out").expect("read"),
        None
    );

    let (status, body) = api
        .json(
            "acme-key",
            json!({"messages":[{"to":"13800138000","text":"x","from":"95555"}]}),
        )
        .await;
    assert_eq!((status, body["field"].clone()), (422, json!("from")));

    let (status, body) = api
        .json(
            "acme-key",
            json!({"messages":[{"to":"13800138000","text":"x"},{"to":"+99912345","text":"x"}]}),
        )
        .await;
    assert_eq!(
        (status, body["line"].clone(), body["field"].clone()),
        (422, json!(2), json!("to"))
    );
}

#[tokio::test]
async fn malformed_too_many_and_media_type() {
    let api = start(BatchLimits {
        max_messages: 2,
        ..BatchLimits::default()
    })
    .await;
    let (status, _, body) = api
        .post(
            "acme-key",
            "application/json",
            "{\"messages\":[\n{\"to\" 1}]}".into(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["line"], 2);
    assert!(body["column"].as_u64().is_some(), "{body}");

    let m = json!({"to":"13800138000","text":"a"});
    let (status, body) = api.json("acme-key", json!({"messages":[m, m, m]})).await;
    assert_eq!(status, 413, "{body}");

    let (status, _, _) = api.post("acme-key", "text/plain", "hi".into()).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn auth_is_required_and_per_account() {
    let api = start(BatchLimits::default()).await;
    let msg = json!({"messages":[{"to":"13800138000","text":"a"}]});
    let (status, _) = api.json("wrong-key", msg.clone()).await;
    assert_eq!(status, 401);
    let r = api
        .client
        .post(format!("{}/v1/messages", api.base))
        .header("content-type", "application/json")
        .body(msg.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    // A message is visible only to its own account.
    let (status, body) = api.json("acme-key", msg).await;
    assert_eq!(status, 202);
    let id = body["results"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.get("acme-key", &format!("/v1/messages/{id}")).await.0,
        200
    );
    assert_eq!(
        api.get("slow-key", &format!("/v1/messages/{id}")).await.0,
        404
    );
    assert_eq!(
        api.get("nobody", &format!("/v1/messages/{id}")).await.0,
        401
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let api = start(BatchLimits::default()).await;
    let two = json!({"messages":[{"to":"13800138000","text":"a"},{"to":"13800138001","text":"b"}]});
    let (s1, _) = api.json("slow-key", two.clone()).await;
    assert_eq!(s1, 202);
    let (status, headers, body) = api
        .post("slow-key", "application/json", two.to_string())
        .await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!(retry >= 1);
    // Another account is not affected.
    assert_eq!(api.json("acme-key", two).await.0, 202);
}

#[tokio::test]
async fn resubmitting_a_client_ref_returns_the_first_id() {
    let api = start(BatchLimits::default()).await;
    let batch = json!({"messages":[{"to":"13800138000","text":"a","client_ref":"order-7"}]});
    let (_, first) = api.json("acme-key", batch.clone()).await;
    let (status, again) = api.json("acme-key", batch).await;
    assert_eq!(status, 202);
    assert_eq!(again["results"][0]["id"], first["results"][0]["id"]);
    assert_eq!(again["results"][0]["duplicate"], true);
    assert_eq!(first["results"][0]["duplicate"], false);
    // Within one batch too.
    let (_, same) = api
        .json(
            "acme-key",
            json!({"messages":[{"to":"13800138000","text":"a","client_ref":"r9"},
                               {"to":"13800138000","text":"a","client_ref":"r9"}]}),
        )
        .await;
    assert_eq!(same["results"][0]["id"], same["results"][1]["id"]);
    assert_eq!(same["results"][1]["duplicate"], true);
}

#[tokio::test]
async fn get_status_shows_state_parts_and_tags() {
    let api = start(BatchLimits::default()).await;
    let (_, body) = api
        .json(
            "acme-key",
            json!({"messages":[{"to":"13800138000","text":"a","client_ref":"c1","tags":{"group":"A"}}]}),
        )
        .await;
    let id = body["results"][0]["id"].as_str().expect("id").to_owned();
    let (status, v) = api.get("acme-key", &format!("/v1/messages/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(v["id"], id);
    assert_eq!(v["state"], "queued");
    assert_eq!(v["to"], "13800138000");
    assert_eq!(v["channel"], "sim");
    assert_eq!(v["parts"], json!([]));
    assert_eq!(v["receipts"], json!([]));
    assert_eq!(v["client_ref"], "c1");
    assert_eq!(v["tags"], json!({"group":"A"}));
    assert_eq!(api.get("acme-key", "/v1/messages/not-an-id").await.0, 404);
    assert_eq!(
        api.get("acme-key", "/v1/messages/01JD3Q5V8Q0000000000000001")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let api = start(BatchLimits::default()).await;
    assert_eq!(api.get("", "/healthz").await.0, 200);
    assert_eq!(api.get("", "/readyz").await.0, 200);
    let (status, _) = api
        .json(
            "acme-key",
            json!({"messages":[{"to":"13800138000","text":"m"}]}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(api.json("wrong", json!({})).await.0, 401);
    let text = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("# HELP sluice_ingress_accepted_total"),
        "{text}"
    );
    assert!(
        text.contains("sluice_ingress_accepted_total{account=\"acme\"}"),
        "{text}"
    );
    assert!(
        text.contains("sluice_ingress_rejected_total{reason=\"auth\"}"),
        "{text}"
    );
    assert!(
        text.contains("sluice_batch_accept_latency_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn ten_thousand_messages_of_several_megabytes_are_accepted_and_one_more_is_413() {
    let api = start(BatchLimits::default()).await;
    let text = "y".repeat(300);
    let line = |i: usize| {
        format!(
            "{{\"to\":\"86{:011}\",\"text\":\"{text}\"}}\n",
            13_000_000_000u64 + i as u64
        )
    };
    let body: String = (0..10_000).map(line).collect();
    assert!(
        body.len() > 3_000_000,
        "bigger than axum's 2 MB default extractor limit"
    );
    let (status, _, v) = api
        .post("acme-key", "application/x-ndjson", body.clone())
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(10_000));
    let (status, _, v) = api
        .post("acme-key", "application/x-ndjson", body + &line(10_000))
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["max"], 10_000);
}
