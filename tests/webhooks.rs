//! Webhooks end to end on 127.0.0.1: https receivers (tokio-rustls with an rcgen private CA,
//! trusted through `[webhooks] ca_file`), and the durable MO outbox across a restart.
//!
//! The simulator answers every message with a delivery receipt, and a text containing "VOTE"
//! with a reply "Y" (an MO to the account's sender number), so one message exercises both
//! webhook kinds.

use crate::e2e_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2e_support::{
    Receiver, WEBHOOK_SECRET, config_text, init_tracing, post, serve_http, sim_listener, start_sim,
    wait_until,
};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice::store::{MoEvent, Op, OpResult, RedbBackend, Store, WriterConfig};
use sluice_campaign::signature::WebhookSecret;
use sluice_campaign::webhook_guard::{RefusedCounts, WebhookGuard};
use sluice_loadtest::SimHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const WAIT: Duration = Duration::from_secs(30);

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test private CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA cert");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf cert");
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

/// TCP + TLS handshake as an axum listener; failed handshakes are counted and skipped.
struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
    failed: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.tls.accept(tcp).await {
                Ok(stream) => return (stream, addr),
                Err(_) => {
                    self.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `r` over https with `pki`'s server certificate; returns the base URL.
async fn serve_https(r: &Receiver, pki: &Pki) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .expect("server cert");
    // axum serves HTTP/1.1 here (its http2 feature is off): the client offers h2 and 1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = TlsListener {
        tcp,
        tls: TlsAcceptor::from(Arc::new(cfg)),
        failed: Arc::clone(&r.failed_handshakes),
    };
    let app = r.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("https://localhost:{}", addr.port())
}

async fn simulator() -> SimHandle {
    let mut l = sim_listener();
    l.mo.reply = vec![sluice_loadtest::config::ReplyRule {
        contains: "VOTE".into(),
        probability: 1.0,
        text: "Y".into(),
        delay: Default::default(),
    }];
    start_sim(l, Some(11)).await
}

/// Starts the gateway on `data` with webhooks to `hook`; `extra` is appended to the config.
async fn gateway(data: &Path, sim: &SimHandle, hook: &str, extra: &str) -> Gateway {
    let text = format!(
        "{}\n{extra}\n",
        config_text(data, sim.addrs()[0].port(), hook, "")
    );
    gateway_from(&text).await
}

/// Starts the gateway from config `text` with fast webhook retries.
async fn gateway_from(text: &str) -> Gateway {
    init_tracing();
    let cfg = Config::parse(text, "webhooks.toml").expect("config");
    let mut opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    opts.receipts.webhook.backoff_base = Duration::from_millis(50);
    opts.receipts.webhook.backoff_max = Duration::from_millis(200);
    opts.receipts.webhook.idle_poll = Duration::from_millis(50);
    start(cfg, opts).await.expect("gateway starts")
}

async fn send_vote(gw: &Gateway) -> String {
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        &format!("http://{}", gw.http_addr()),
        &json!({"messages":[{"to":"13800138000","text":"VOTE now","client_ref":"v1"}]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["results"][0]["id"].as_str().expect("id").to_owned()
}

fn ca_config(dir: &Path, pki: &Pki) -> String {
    let ca = dir.join("private-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    format!("[webhooks]\nca_file = {:?}\n", ca.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_and_reply_reach_an_https_webhook_trusted_through_ca_file() {
    let pki = pki();
    let hook = Receiver::new(true);
    let url = serve_https(&hook, &pki).await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(
        &dir.path().join("data"),
        &sim,
        &url,
        &ca_config(dir.path(), &pki),
    )
    .await;
    let id = send_vote(&gw).await;
    assert!(
        wait_until(WAIT, || !hook.receipts().is_empty()
            && !hook.mo().is_empty())
        .await,
        "receipts {:?} mo {:?}",
        hook.receipts(),
        hook.mo()
    );
    let r = &hook.receipts()[0];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["state"], "delivered");
    let mo = &hook.mo()[0];
    assert_eq!(
        (mo["from"].as_str(), mo["text"].as_str()),
        (Some("13800138000"), Some("Y"))
    );
    assert_eq!(hook.failed_handshakes.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
    sim.shutdown().await.expect("sim shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_https_webhook_is_refused_and_kept() {
    // Same receiver, but the gateway is not given the private CA: certificate verification
    // must fail (no silent fallback), and the receipt stays in the outbox for a retry.
    let pki = pki();
    let hook = Receiver::new(true);
    let url = serve_https(&hook, &pki).await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(&dir.path().join("data"), &sim, &url, "").await;
    send_vote(&gw).await;
    assert!(
        wait_until(WAIT, || hook.failed_handshakes.load(Ordering::SeqCst) >= 2).await,
        "the client never tried the https receiver"
    );
    assert!(
        wait_until(WAIT, || !gw
            .store()
            .outbox("acme", 0, 10)
            .unwrap()
            .is_empty())
        .await,
        "the receipt is kept for a retry"
    );
    assert!(hook.receipts().is_empty() && hook.mo().is_empty());
    gw.shutdown().await;
    sim.shutdown().await.expect("sim shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_webhook_is_down_survives_a_restart_and_arrives_once() {
    let hook = Receiver::new(false);
    let url = serve_http(&hook).await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    // Run 1: the webhook is down. The reply is kept in the account's MO outbox.
    let gw = gateway(&data, &sim, &url, "").await;
    let mut sub = gw.receipts().subscribe();
    send_vote(&gw).await;
    assert!(
        wait_until(WAIT, || hook.refused_mo.load(Ordering::SeqCst) >= 2).await,
        "the MO webhook was tried (and refused) more than once"
    );
    let kept = gw.store().mo_outbox("acme", 0, 10).expect("mo outbox");
    assert_eq!(kept.len(), 1, "one reply kept");
    let stored: Value = serde_json::from_slice(&kept[0].body).expect("json");
    assert_eq!(stored["text"], "Y");
    // In-process subscribers still saw it on arrival.
    let saw = tokio::time::timeout(WAIT, async {
        loop {
            match sub.recv().await {
                Ok(sluice::receipt::Notification::Mo(m)) => return m,
                Ok(_) => {}
                Err(e) => panic!("subscription ended: {e}"),
            }
        }
    })
    .await
    .expect("subscriber saw the MO");
    assert_eq!(
        (saw.account.as_deref(), saw.text.as_str()),
        (Some("acme"), "Y")
    );
    gw.shutdown().await;
    assert!(hook.mo().is_empty());

    // Run 2 on the same data: the webhook is up; the kept reply is delivered, then deleted.
    hook.up.store(true, Ordering::SeqCst);
    let gw = gateway(&data, &sim, &url, "").await;
    assert!(
        wait_until(WAIT, || {
            hook.mo().len() == 1 && gw.store().mo_outbox("acme", 0, 10).unwrap().is_empty()
        })
        .await,
        "delivered and deleted; mo {:?}",
        hook.mo()
    );
    // Receipts were kept across the restart too.
    assert!(wait_until(WAIT, || hook.receipts().len() == 1).await);
    gw.shutdown().await;
    let mo = hook.mo();
    assert_eq!(mo.len(), 1, "exactly once: {mo:?}");
    assert_eq!(
        (
            mo[0]["from"].as_str(),
            mo[0]["to"].as_str(),
            mo[0]["text"].as_str()
        ),
        (Some("13800138000"), Some("10690000"), Some("Y"))
    );
    assert!(mo[0]["received_at"].is_string());
    let tally = sim.shutdown().await.expect("sim shutdown");
    assert_eq!(
        (tally.unique_messages, tally.duplicates, tally.mo_sent),
        (1, 0, 1),
        "one message sent once, one reply sent once"
    );
}

/// The campaign service's own webhook endpoints (standalone mode: signature checked with
/// `secret`) on 127.0.0.1:0, with the status of every answer recorded; returns the base URL
/// (`…/v1/campaign/webhooks`), the guard and the statuses by path.
async fn campaign_webhooks(
    secret: &str,
) -> (
    String,
    Arc<WebhookGuard>,
    Arc<std::sync::Mutex<Vec<(String, u16)>>>,
) {
    let svc = Arc::new(std::sync::Mutex::new(
        sluice_campaign::Campaigns::in_memory().expect("campaign store"),
    ));
    let guard = WebhookGuard::new(WebhookSecret::new(secret).expect("secret"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = sluice::campaign_cmd::wiring::webhooks(svc, Arc::clone(&guard)).layer(
        axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let log = Arc::clone(&log);
                async move {
                    let path = req.uri().path().to_owned();
                    let resp = next.run(req).await;
                    log.lock().unwrap().push((path, resp.status().as_u16()));
                    resp
                }
            },
        ),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/v1/campaign/webhooks"), guard, seen)
}

/// A gateway whose receipt and reply webhooks go to the campaign service's endpoints at
/// `base` (replies at `/replies`, where the campaign service takes them).
async fn gateway_to_campaign(data: &Path, sim: &SimHandle, base: &str) -> Gateway {
    let text = config_text(data, sim.addrs()[0].port(), base, "")
        .replace(&format!("{base}/mo"), &format!("{base}/replies"));
    gateway_from(&text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_webhooks_verify_at_the_campaign_service() {
    let (base, guard, seen) = campaign_webhooks(WEBHOOK_SECRET).await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway_to_campaign(&dir.path().join("data"), &sim, &base).await;
    send_vote(&gw).await;
    let ok = |p: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(path, s)| path.ends_with(p) && *s == 200)
    };
    assert!(
        wait_until(WAIT, || ok("/receipts") && ok("/replies")).await,
        "answers {:?}",
        seen.lock().unwrap()
    );
    // Accepted, so the gateway let go of both entries.
    assert!(
        wait_until(WAIT, || {
            gw.store().outbox("acme", 0, 10).unwrap().is_empty()
                && gw.store().mo_outbox("acme", 0, 10).unwrap().is_empty()
        })
        .await
    );
    assert_eq!(guard.refused(), RefusedCounts::default());
    gw.shutdown().await;
    sim.shutdown().await.expect("sim shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_service_with_another_secret_refuses_and_the_gateway_keeps_retrying() {
    let (base, guard, seen) = campaign_webhooks("not-the-account-secret").await;
    let sim = simulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway_to_campaign(&dir.path().join("data"), &sim, &base).await;
    send_vote(&gw).await;
    assert!(
        wait_until(WAIT, || guard.refused().forged >= 4).await,
        "refused {:?}",
        guard.refused()
    );
    assert!(seen.lock().unwrap().iter().all(|(_, s)| *s == 401));
    // Refused is not delivered: the receipt and the reply are still kept for a retry.
    assert_eq!(gw.store().outbox("acme", 0, 10).unwrap().len(), 1);
    assert_eq!(gw.store().mo_outbox("acme", 0, 10).unwrap().len(), 1);
    let r = guard.refused();
    assert_eq!((r.missing, r.malformed, r.stale), (0, 0, 0));
    gw.shutdown().await;
    sim.shutdown().await.expect("sim shutdown");
}

#[test]
fn mo_outbox_ops_survive_reopen_and_stay_apart_from_receipts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let event = |text: &str| MoEvent {
        account: Some("acme".into()),
        from: "+8613800138000".into(),
        to: "10690000".into(),
        text: text.into(),
        received_at: "2026-11-26T00:00:00Z".into(),
    };
    {
        let store = Store::open(
            RedbBackend::open(&path).expect("open"),
            WriterConfig::default(),
            0,
        )
        .expect("store");
        let r = store
            .submit_blocking(vec![
                Op::MoEnqueue {
                    account: "acme".into(),
                    event: event("one"),
                },
                Op::MoEnqueue {
                    account: "acme".into(),
                    event: event("two"),
                },
                Op::MoEnqueue {
                    account: String::new(),
                    event: event("nobody"),
                },
            ])
            .expect("commit");
        assert_eq!(r[0], OpResult::Enqueued(1));
        assert_eq!(r[1], OpResult::Enqueued(2));
        assert!(matches!(r[2], OpResult::Invalid(_)));
    }
    let store = Store::open(
        RedbBackend::open(&path).expect("reopen"),
        WriterConfig::default(),
        0,
    )
    .expect("store");
    let kept = store.mo_outbox("acme", 0, 10).expect("read");
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    let first: MoEvent = serde_json::from_slice(&kept[0].body).expect("decodes");
    assert_eq!((first.text.as_str(), first.account), ("one", None));
    assert_eq!(store.mo_outbox("acme", 1, 10).expect("read").len(), 1);
    assert!(store.outbox("acme", 0, 10).expect("read").is_empty());
    let r = store
        .submit_blocking(vec![
            Op::MoDelete {
                account: "acme".into(),
                seq: 1,
            },
            Op::MoDelete {
                account: "acme".into(),
                seq: 1,
            },
        ])
        .expect("delete");
    assert_eq!(r, [OpResult::Count(1), OpResult::Count(0)]);
    let left = store.mo_outbox("acme", 0, 10).expect("read");
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    // Sequences keep increasing after deletes.
    let r = store
        .submit_blocking(vec![Op::MoEnqueue {
            account: "acme".into(),
            event: event("three"),
        }])
        .expect("commit");
    assert_eq!(r[0], OpResult::Enqueued(3));
}
