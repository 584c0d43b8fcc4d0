//! A center that restarts its message-id counter (the embedded simulator does, whenever
//! `sluice serve` restarts) gives new messages the ids of older, final ones. With receipts
//! that overtake their submit responses, each new message's receipt still reaches the
//! webhook: the store holds a receipt that finds a final message, and the new message's
//! submit response applies it (`store::ops::receipt`).

use crate::e2e_support;

use std::collections::HashSet;
use std::time::Duration;

use e2e_support::{Hook, accepted_ids, config_text, post, sim_listener, start_hook, start_sim};
use serde_json::json;
use sluice::config::Config;
use sluice::serve::{ServeOptions, start};

/// Sends `n` messages through a gateway on `dir` and a fresh simulator (ids from its
/// start), and returns their ids once the webhook has all of their receipts (or panics).
async fn send_through_fresh_center(
    dir: &std::path::Path,
    hook: &Hook,
    hook_url: &str,
    round: usize,
    n: usize,
) -> HashSet<String> {
    let mut l = sim_listener();
    // Every receipt goes out before its submit response, which waits meanwhile.
    l.dlr.early_share = 1.0;
    l.dlr.early_lead_ms = 50;
    let sim = start_sim(l, Some(11)).await;
    let text = config_text(dir, sim.addrs()[0].port(), hook_url, "");
    let gw = start(
        Config::parse(&text, "reuse.toml").expect("config"),
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();
    let messages: Vec<_> = (0..n)
        .map(|i| json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64), "text": format!("round {round} #{i}")}))
        .collect();
    let (status, body) = post(&client, &base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202, "{body}");
    let ids: HashSet<String> = accepted_ids(&body);
    let received = || hook.receipt_ids();
    let done =
        e2e_support::wait_until(Duration::from_secs(20), || ids.is_subset(&received())).await;
    let tally = sim.tally();
    assert!(
        done,
        "round {round}: receipts for {} of {n} messages; simulator {tally:?}",
        ids.intersection(&received()).count()
    );
    gw.shutdown().await;
    let _ = sim.shutdown().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_new_messages_after_the_center_reuses_ids() {
    sluice::tls::install_provider();
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 5;
    let first = send_through_fresh_center(dir.path(), &hook, &hook_url, 1, n).await;
    // Same store, a new center whose ids start again: the same ids as the first round's.
    let second = send_through_fresh_center(dir.path(), &hook, &hook_url, 2, n).await;
    assert!(first.is_disjoint(&second));
    let receipts = hook.receipts.lock().unwrap().clone();
    assert_eq!(
        receipts.len(),
        2 * n,
        "one receipt per message: {receipts:?}"
    );
}
