//! `sluice_receipts_total` counts each message's final state once: long messages (one
//! receipt per part), receipts that arrive before their submit response (held, then applied
//! by the response), and a restart of the gateway in the middle of it (held receipts
//! survive in the store, not in the receipt layer's memory). The sum over its `state` labels
//! must equal the number of messages, not the number of parts or of receipts.

use crate::e2e_support;

use std::collections::HashSet;
use std::time::Duration;

use e2e_support::{
    Hook, KEY, accepted_ids, config_text, metric_sum, post, sim_listener, start_hook, start_sim,
};
use serde_json::json;
use sluice::config::Config;
use sluice::serve::{ServeOptions, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_final_state_is_counted_once() {
    let handle = sluice::metrics::install().expect("first recorder of this test binary");
    sluice::tls::install_provider();
    let mut l = sim_listener();
    // Half the receipts come before the submit response, which is held back meanwhile.
    l.dlr.early_share = 0.5;
    l.dlr.early_lead_ms = 200;
    let sim = start_sim(l, Some(18)).await;
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), sim.addrs()[0].port(), &hook_url, "");
    let opts = || ServeOptions {
        drain_deadline: Duration::from_secs(5),
        metrics: Some(handle.clone()),
        ..ServeOptions::default()
    };
    let client = reqwest::Client::new();

    let (long, short) = (150usize, 50usize);
    let messages: Vec<_> = (0..long + short)
        .map(|i| {
            // 400 GSM characters: three parts.
            let body = if i < long {
                "x".repeat(380)
            } else {
                "short".into()
            };
            json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64),
                   "text": format!("count-{i} {body}")})
        })
        .collect();
    let gw = start(Config::parse(&text, "a.toml").expect("config"), opts())
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let (status, body) = post(&client, &base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202, "{body}");
    let ids: HashSet<String> = accepted_ids(&body);
    assert_eq!(ids.len(), long + short);
    // Restart while parts, responses and held receipts are in flight.
    while sim.tally().parts_accepted < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.shutdown().await;
    let gw = start(Config::parse(&text, "b.toml").expect("config"), opts())
        .await
        .expect("gateway restarts");
    let base = format!("http://{}", gw.http_addr());

    let receipts = || hook.receipt_ids();
    let done =
        e2e_support::wait_until(Duration::from_secs(60), || receipts().len() == ids.len()).await;
    let tally = sim.tally();
    assert!(
        done,
        "receipts for {} of {} messages; tally {tally:?}",
        receipts().len(),
        ids.len()
    );
    assert_eq!(receipts(), ids);
    let scrape = client
        .get(format!("{base}/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(
        tally.parts_accepted >= (3 * long + short) as u64,
        "long messages went in parts: {tally:?}"
    );
    assert_eq!(
        metric_sum(&scrape, "sluice_receipts_total", ""),
        (long + short) as f64,
        "one count per message; tally {tally:?}\n{scrape}"
    );
    gw.shutdown().await;
    let _ = sim.shutdown().await;
}
