//! A receipt that beats its submit response reaches the webhook as soon as the response is
//! recorded: the submit response's store answer (`ReceiptApplied`) goes from dispatch to the
//! receipt layer, which counts the message and wakes the outbox. Every periodic timer that
//! could stand in for that path — the receipt layer's give-up check, the outbox pump's idle
//! poll, housekeeping (which wakes the outbox) — is set to an hour here, so only that path
//! can deliver them within the test's wait.

use crate::e2e_support;

use std::collections::HashSet;
use std::time::Duration;

use e2e_support::{
    Hook, KEY, accepted_ids, config_text, metric_sum, post, sim_listener, start_hook, start_sim,
};
use serde_json::json;
use sluice::config::Config;
use sluice::receipt::ReceiptConfig;
use sluice::receipt::outbox::WebhookConfig;
use sluice::serve::{ServeOptions, start};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_receipts_reach_the_webhook_without_any_sweep() {
    let handle = sluice::metrics::install().expect("first recorder of this test binary");
    sluice::tls::install_provider();
    let mut l = sim_listener();
    // Every receipt is written 200 ms before its submit response, which waits meanwhile: the
    // receipt's commit always comes first and is held by the store.
    l.dlr.early_share = 1.0;
    l.dlr.early_lead_ms = 200;
    let sim = start_sim(l, Some(7)).await;
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), sim.addrs()[0].port(), &hook_url, "");
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        housekeeping_every: HOUR,
        metrics: Some(handle.clone()),
        receipts: ReceiptConfig {
            sweep_every: HOUR,
            webhook: WebhookConfig {
                idle_poll: HOUR,
                ..WebhookConfig::default()
            },
            ..ReceiptConfig::default()
        },
        ..ServeOptions::default()
    };
    let gw = start(Config::parse(&text, "early.toml").expect("config"), opts)
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();
    let n = 40usize;
    let messages: Vec<_> = (0..n)
        .map(|i| json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64), "text": format!("early {i}")}))
        .collect();
    let (status, body) = post(&client, &base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202, "{body}");
    let ids: HashSet<String> = accepted_ids(&body);
    let receipts = || hook.receipt_ids();
    // Far below the hour any timer would need; the simulator's lead is 200 ms.
    let done =
        e2e_support::wait_until(Duration::from_secs(30), || receipts().len() == ids.len()).await;
    let tally = sim.tally();
    assert!(
        done,
        "receipts for {} of {n} messages; tally {tally:?}",
        receipts().len()
    );
    assert_eq!(receipts(), ids);
    assert!(tally.dlrs_sent >= n as u64, "{tally:?}");
    let scrape = client
        .get(format!("{base}/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    // Counted once each, by the receipt layer; none left pending or counted unmatched.
    assert_eq!(
        metric_sum(&scrape, "sluice_receipts_total", ""),
        n as f64,
        "{scrape}"
    );
    assert_eq!(
        metric_sum(&scrape, "sluice_receipts_pending", "channel=\"sim\""),
        0.0,
        "{scrape}"
    );
    assert_eq!(
        metric_sum(&scrape, "sluice_receipts_unmatched_total", ""),
        0.0,
        "{scrape}"
    );
    gw.shutdown().await;
    let _ = sim.shutdown().await;
}
