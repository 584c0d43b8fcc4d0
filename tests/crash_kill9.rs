//! Crash test: the real `sluice serve` binary is SIGKILLed at random points while a client
//! pushes load over HTTP, then restarted on the same data directory. At the end the
//! simulator's tally must hold every acknowledged message (at least once), duplicates must
//! stay within the in-flight window per kill, and every acknowledged id must be known to the
//! gateway as sent or delivered.
//!
//! Default run: 5 000 messages, 2 kills. `SLUICE_LONG_TESTS=1`: 200 000 messages, 6 kills.
//! The client resends a batch whose POST failed with the same `client_ref`s, so
//! idempotency across crashes is exercised too.

use crate::e2e_support;

use std::collections::HashMap;
use std::time::Duration;

use e2e_support::{
    KEY, Receiver, Server, config_text, free_port, serve_http, sim_listener, start_sim,
    wait_healthy, wait_until,
};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_message() {
    let long = std::env::var("SLUICE_LONG_TESTS").is_ok_and(|v| v == "1");
    let (total, kills, batch) = if long {
        (200_000usize, 6usize, 1000usize)
    } else {
        (5_000, 2, 250)
    };
    let kills = std::env::var("SLUICE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(kills);
    let seed: u64 = rand::random();
    println!("crash test seed {seed}, {total} messages, {kills} kills");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    let sim = start_sim(sim_listener(), None).await;
    let sim_port = sim.addrs()[0].port();
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    // Receipts go to a closed port: webhook delivery keeps failing and retrying, which
    // must not disturb sending (and the outbox keeps every receipt).
    let text = config_text(&dir.path().join("data"), sim_port, "http://127.0.0.1:9", "").replace(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:{http_port}\""),
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).expect("write config");
    let log = dir.path().join("serve.log");
    let base = format!("http://127.0.0.1:{http_port}");
    sluice::tls::install_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let batches = total.div_ceil(batch);
    // Kill after these batch numbers (distinct, sorted), plus a random extra delay so the
    // kill lands while messages are in flight.
    let mut kill_at: Vec<usize> = (0..kills).map(|_| rng.random_range(1..batches)).collect();
    kill_at.sort_unstable();
    kill_at.dedup();

    let mut server = Some(Server::spawn(&config, &log));
    wait_healthy(&client, &base).await;
    let mut acked: HashMap<String, String> = HashMap::new(); // client_ref → id
    let mut restarts = 0;
    for b in 0..batches {
        let messages: Vec<Value> = (b * batch..((b + 1) * batch).min(total))
            .map(|i| {
                json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64),
                       "text": format!("crash-token-{i}"), "client_ref": format!("m{i}")})
            })
            .collect();
        let body = json!({ "messages": messages });
        // Resend until acknowledged (the gateway may be down or restarting).
        loop {
            let r = client
                .post(format!("{base}/v1/messages"))
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().as_u16() == 202 => {
                    let v: Value = resp.json().await.expect("json");
                    for r in v["results"].as_array().expect("results") {
                        let cref = r["client_ref"].as_str().expect("client_ref").to_owned();
                        let id = r["id"].as_str().expect("id").to_owned();
                        if let Some(prev) = acked.insert(cref.clone(), id.clone()) {
                            assert_eq!(prev, id, "a resent client_ref must keep its first id");
                        }
                    }
                    break;
                }
                Ok(resp) => panic!("unexpected status {}", resp.status()),
                Err(_) => {
                    // Down: make sure one is starting, then retry.
                    if server.is_none() {
                        server = Some(Server::spawn(&config, &log));
                    }
                    wait_healthy(&client, &base).await;
                }
            }
        }
        if kill_at.contains(&b) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..50))).await;
            if let Some(s) = server.take() {
                s.kill9();
            }
            restarts += 1;
            server = Some(Server::spawn(&config, &log));
            wait_healthy(&client, &base).await;
        }
    }
    assert_eq!(acked.len(), total, "every message acknowledged once");

    // Everything acknowledged reaches the center eventually: wait while the tally still
    // grows (a debug build on a busy machine is slow), fail after 30 s without progress.
    let mut delivered = false;
    let mut last = 0u64;
    let mut last_progress = tokio::time::Instant::now();
    while last_progress.elapsed() < Duration::from_secs(30) {
        let unique = sim.tally().unique_messages;
        if unique as usize >= total {
            delivered = true;
            break;
        }
        if unique > last {
            last = unique;
            last_progress = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tally = sim.tally();
    if !delivered {
        let mut states: HashMap<String, usize> = HashMap::new();
        for id in acked.values() {
            let v: Value = client
                .get(format!("{base}/v1/messages/{id}"))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            *states.entry(v["state"].to_string()).or_default() += 1;
        }
        println!("states: {states:?}");
    }
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        delivered,
        "unique {} of {total} acknowledged; tally {tally:?}\nlogs:\n{logs}",
        tally.unique_messages
    );
    assert_eq!(tally.unique_messages as usize, total, "{tally:?}");
    // Re-sent after a crash: at most what the killed process held leased, per kill: the
    // dispatcher's lease batch (256), the queue to the worker (window × binds = 128), the
    // binds' windows (128) and the worker's outcome queue (2 × 128 + 64), whose outcomes
    // dispatch writes in batched commits. Typical runs show 128–256 per kill.
    let window = 256 + 128 + 128 + (2 * 128 + 64);
    assert!(
        tally.duplicates as usize <= window * restarts,
        "duplicates {} > {} × {restarts}: {tally:?}",
        tally.duplicates,
        window
    );
    // The gateway knows every acknowledged id as accepted by the center (state updates
    // follow the center's responses, so poll briefly).
    for id in acked.values().take(if long { 2000 } else { 500 }) {
        let mut last = Value::Null;
        for _ in 0..500 {
            last = client
                .get(format!("{base}/v1/messages/{id}"))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            if matches!(last["state"].as_str(), Some("sent" | "delivered")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            matches!(last["state"].as_str(), Some("sent" | "delivered")),
            "{id}: {last}"
        );
    }
    drop(server);
    let _ = sim.shutdown().await;
    println!("crash test: {restarts} kills, tally {tally:?}");
}

/// A graceful stop (SIGTERM) mid-load drains: in-flight messages finish and are recorded, so
/// after the restart nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_restart_sends_nothing_twice() {
    let total = 2_000usize;
    let batch = 250usize;
    let sim = start_sim(sim_listener(), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    let text = config_text(
        &dir.path().join("data"),
        sim.addrs()[0].port(),
        "http://127.0.0.1:9",
        "",
    )
    .replace(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:{http_port}\""),
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).expect("write config");
    let log = dir.path().join("serve.log");
    let base = format!("http://127.0.0.1:{http_port}");
    sluice::tls::install_provider();
    let client = reqwest::Client::new();

    let mut server = Server::spawn_draining(&config, &log, 30);
    wait_healthy(&client, &base).await;
    for b in 0..total / batch {
        if b == total / batch / 2 {
            assert!(server.terminate(), "drained and exited 0");
            server = Server::spawn_draining(&config, &log, 30);
            wait_healthy(&client, &base).await;
        }
        let messages: Vec<Value> = (b * batch..(b + 1) * batch)
            .map(|i| {
                json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64),
                            "text": format!("term-token-{i}")})
            })
            .collect();
        let r = client
            .post(format!("{base}/v1/messages"))
            .bearer_auth(KEY)
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 202);
    }
    let mut done = false;
    for _ in 0..1500 {
        if sim.tally().unique_messages as usize >= total {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tally = sim.tally();
    assert!(done, "{tally:?}");
    assert_eq!(
        tally.duplicates, 0,
        "a drained stop resends nothing: {tally:?}"
    );
    drop(server);
    let _ = sim.shutdown().await;
}

/// A reply (MO) kept while its webhook is down survives a SIGKILL: the restarted gateway
/// delivers it once the webhook is back, exactly once (the kill came after the store had it,
/// before any 2xx, so there is nothing to resend twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_a_reply_whose_webhook_is_down() {
    let mut l = sim_listener();
    l.mo.reply = vec![sluice_loadtest::config::ReplyRule {
        contains: "VOTE".into(),
        probability: 1.0,
        text: "Y".into(),
        delay: Default::default(),
    }];
    let sim = start_sim(l, None).await;
    let hook = Receiver::new(false);
    let hook_url = serve_http(&hook).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    let text = config_text(
        &dir.path().join("data"),
        sim.addrs()[0].port(),
        &hook_url,
        "",
    )
    .replace(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:{http_port}\""),
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).expect("write config");
    let log = dir.path().join("serve.log");
    let base = format!("http://127.0.0.1:{http_port}");
    sluice::tls::install_provider();
    let client = reqwest::Client::new();

    let server = Server::spawn(&config, &log);
    wait_healthy(&client, &base).await;
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(KEY)
        .json(&json!({"messages":[{"to":"13800138000","text":"VOTE now"}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 202);
    // The pump only reads what the store committed: a refused POST means the reply is kept.
    let limit = Duration::from_secs(30);
    assert!(
        wait_until(limit, || hook
            .refused_mo
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1)
        .await,
        "the MO webhook was never tried"
    );
    server.kill9();

    hook.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let server = Server::spawn(&config, &log);
    wait_healthy(&client, &base).await;
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(limit, || hook.mo().len() == 1 && hook.receipts().len() == 1).await,
        "mo {:?} receipts {:?}\nlogs:\n{}",
        hook.mo(),
        hook.receipts(),
        logs()
    );
    assert!(server.terminate(), "drained and exited 0");
    let mo = hook.mo();
    assert_eq!(mo.len(), 1, "exactly once: {mo:?}");
    assert_eq!(
        (mo[0]["from"].as_str(), mo[0]["text"].as_str()),
        (Some("13800138000"), Some("Y"))
    );
    let tally = sim.shutdown().await.expect("sim shutdown");
    assert_eq!(tally.mo_sent, 1, "{tally:?}");
}
