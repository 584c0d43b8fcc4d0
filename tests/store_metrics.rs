//! Gateway level: a message that is not due yet sits in the store's ready index, and
//! `GET /metrics` shows it in `sluice_store_queue_depth{channel,lane}` (refreshed from the
//! store's in-memory counters every second), with nothing in flight.

use crate::e2e_support;

use std::time::Duration;

use e2e_support::{Hook, KEY, config_text, post, sim_listener, start_hook, start_sim};
use serde_json::json;
use sluice::config::Config;
use sluice::serve::{ServeOptions, start};

/// The sample line of `name` whose labels include every one of `labels`, if any.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_store_queue_depth_of_a_scheduled_message() {
    let handle = sluice::metrics::install().expect("first recorder of this test binary");
    let sim = start_sim(sim_listener(), Some(7)).await;
    let hook_url = start_hook(Hook::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::parse(
        &config_text(dir.path(), sim.addrs()[0].port(), &hook_url, ""),
        "depth.toml",
    )
    .expect("config");
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        metrics: Some(handle),
        ..ServeOptions::default()
    };
    let gw = start(cfg, opts).await.expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();
    // Due in a year: it waits in the ready index, leased by nobody.
    let (status, body) = post(
        &client,
        &base,
        &json!({"messages": [
            {"to": "13800138000", "text": "later", "lane": "marketing",
             "not_before": "2099-01-01T00:00:00+08:00"},
        ]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let depth_labels = ["channel=\"sim\"", "lane=\"marketing\""];
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        text = client
            .get(format!("{base}/metrics"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        if sample(&text, "sluice_store_queue_depth", &depth_labels) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&text, "sluice_store_queue_depth", &depth_labels),
        Some(1.0),
        "{text}"
    );
    // Configured channels show every lane, empty ones at 0; nothing is leased.
    assert_eq!(
        sample(
            &text,
            "sluice_store_queue_depth",
            &["channel=\"sim\"", "lane=\"otp\""]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_store_inflight", &["channel=\"sim\""]),
        Some(0.0),
        "{text}"
    );
    assert!(text.contains("# HELP sluice_store_queue_depth"), "{text}");
    // The insert above was at least one commit of at least one op.
    let total = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert!(
        total("sluice_store_commits_total").is_some_and(|c| c >= 1.0),
        "{text}"
    );
    assert!(
        total("sluice_store_ops_total").is_some_and(|c| c >= 1.0),
        "{text}"
    );
    let d = gw.store().queue_depths();
    assert_eq!(d.ready("sim", sluice::store::Lane::Marketing), 1);
    gw.shutdown().await;
    sim.shutdown().await.expect("sim shutdown");
}

/// A configured metrics listener that cannot bind stops the start naming the address, like
/// the API's own listener (it used to be a warning in the log and no scrape target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_already_taken_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), 9, "http://127.0.0.1:9/hook", "").replacen(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:0\"\nmetrics = \"{addr}\""),
        1,
    );
    let cfg = Config::parse(&text, "metrics-taken.toml").expect("config");
    let (_recorder, handle) = sluice::metrics::local().expect("recorder");
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(2),
        metrics: Some(handle),
        ..ServeOptions::default()
    };
    let err = start(cfg, opts)
        .await
        .expect_err("a taken metrics address must stop the start");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
