//! WAP Push end to end on 127.0.0.1: `POST /v1/messages` with `si` / `sl` → ingress encodes
//! (protocols::wap) → durable store (binary + port UDH, kind wap_push) → route by kind →
//! SMPP part builder → simulator, whose tally reassembles and decodes the push.
//!
//! The bytes the simulator received are compared with what Kannel 1.4.5's PPG sent for the
//! same documents (the recording in `protocols/tests/wap_fixtures/`, shared with
//! `protocols/tests/wap_kannel.rs`): every part's UDH and the reassembled WSP PDU must be
//! identical except Kannel's free choices, the WSP TID and the concatenation reference,
//! which are taken from what sluice sent. A push is only counted by the tally when it came
//! 8-bit (data_coding 4) with a port UDH (esm_class UDHI), so the counts also prove those.

use crate::e2e_support;
use crate::wap_fixtures;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_support::{
    Hook, KEY, accepted_ids, config_text, init_tracing, post, sim_listener, start_hook, start_sim,
    wait_until,
};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{ServeOptions, start};
use sluice_loadtest::tally::PushRecord;
use sluice_protocols::wap::{PushDocument, ServiceIndication, ServiceLoading};
use wap_fixtures::{Submit, hex, long_si, recorded, short_si, sl};

const WAIT: Duration = Duration::from_secs(30);

/// A second channel to the same simulator and a route sending every wap_push there.
const WAP_CHANNEL: &str = r#"
[[channels]]
name = "wap"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "sluice"
password = "sim"
binds = 1
window = 16
rate = 1000
burst = 100
response_timeout_ms = 2000
[[routes]]
kinds = ["wap_push"]
channel = "wap"
"#;

fn si_json(d: &ServiceIndication) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(h) = &d.href {
        o.insert("href".into(), json!(h));
    }
    o.insert("text".into(), json!(d.text));
    if let Some(c) = &d.created {
        o.insert("created".into(), json!(c.to_iso()));
    }
    if let Some(e) = &d.si_expires {
        o.insert("si_expires".into(), json!(e.to_iso()));
    }
    if let Some(i) = &d.si_id {
        o.insert("si_id".into(), json!(i));
    }
    if let Some(a) = d.action {
        o.insert("action".into(), json!(a.as_str()));
    }
    Value::Object(o)
}

fn sl_json(d: &ServiceLoading) -> Value {
    let mut o = json!({ "href": d.href });
    if let Some(a) = d.action {
        o["action"] = json!(a.as_str());
    }
    o
}

/// Kannel's parts as (UDHs, reassembled payload), with its TID and concatenation reference
/// replaced by the ones sluice chose (read from `ours`).
fn kannel_with_our_choices(kannel: &[Submit], ours: &PushRecord) -> (Vec<String>, String) {
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let our_payload = unhex(&ours.payload);
    let our_udh: Vec<Vec<u8>> = ours.udh.iter().map(|u| unhex(u)).collect();
    let mut udhs = Vec::new();
    let mut payload = Vec::new();
    for (i, k) in kannel.iter().enumerate() {
        let sm = &k.short_message;
        let end = 1 + usize::from(sm[0]);
        let mut udh = sm[..end].to_vec();
        if udh.len() == 12 {
            // 0B 05 04 0B 84 23 F0 00 03 ref total seq: the reference is a free choice.
            udh[9] = our_udh.get(i).and_then(|u| u.get(9)).copied().unwrap_or(0);
        }
        udhs.push(hex(&udh));
        payload.extend_from_slice(&sm[end..]);
    }
    payload[0] = our_payload.first().copied().unwrap_or(0);
    (udhs, hex(&payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn si_and_sl_arrive_as_kannels_bytes() {
    init_tracing();
    let sim = start_sim(sim_listener(), Some(7)).await;
    let port = sim.addrs()[0].port();
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = WAP_CHANNEL.replace("{port}", &port.to_string());
    let cfg = Config::parse(
        &config_text(dir.path(), port, &hook_url, &extra),
        "e2e.toml",
    )
    .expect("config");
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    let gw = start(cfg, opts).await.expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();

    // A bad SI line refuses the batch (the contract is all or nothing), naming line and field.
    let good = json!({"kind": "wap_push", "to": "13800000001", "si": si_json(&short_si())});
    let bad = json!({"kind": "wap_push", "to": "13800000009",
                     "si": {"href": "http://www.sluice.com/x", "action": "signal-loud"}});
    let long = json!({"kind": "wap_push", "to": "13800000002", "si": si_json(&long_si())});
    let (status, body) = post(&client, &base, &json!({"messages": [good, bad, long]})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["line"], 2, "{body}");
    assert_eq!(body["field"], "si.action", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("signal-loud")),
        "{body}"
    );
    let (status, body) = post(
        &client,
        &base,
        &json!({"messages": [{"to": "13800000009", "kind": "wap_push",
                              "si": {"href": "http://a.com/"}, "sl": {"href": "http://a.com/"}}]}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("sl")),
        "{body}"
    );

    // The rest of the batch, without the bad line, is accepted.
    let sl_msg = json!({"to": "13800000003", "sl": sl_json(&sl())});
    let (status, body) = post(&client, &base, &json!({"messages": [good, long, sl_msg]})).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = accepted_ids(&body);
    assert_eq!(ids.len(), 3);

    let arrived = wait_until(WAIT, || {
        let w = sim.tally().wap_push;
        w.si >= 2 && w.sl >= 1
    })
    .await;
    let tally = sim.tally();
    assert!(arrived, "pushes did not arrive: {:?}", tally.wap_push);
    assert_eq!(
        (tally.wap_push.si, tally.wap_push.sl, tally.wap_push.other),
        (2, 1, 0),
        "{:?}",
        tally.wap_push
    );
    assert_eq!(tally.unique_messages, 3, "the refused batches sent nothing");
    assert!(
        wait_until(WAIT, || hook.receipts.lock().unwrap().len() >= 3).await,
        "receipts"
    );

    // Routed by kind: every push went over the wap channel.
    for id in &ids {
        let st: Value = client
            .get(format!("{base}/v1/messages/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(st["channel"], "wap", "{st}");
        assert_eq!(st["state"], "delivered", "{st}");
    }

    let by_dest: BTreeMap<&str, &PushRecord> = tally
        .wap_push
        .recent
        .iter()
        .map(|r| (r.dest.as_str(), r))
        .collect();
    let kannel = recorded();
    for (dest, case, kind, parts) in [
        ("13800000001", "short SI", "si", 1),
        ("13800000002", "long SI", "si", 3),
        ("13800000003", "SL", "sl", 1),
    ] {
        let ours = by_dest[dest];
        assert_eq!(ours.kind, kind, "{case}");
        assert_eq!(ours.udh.len(), parts, "{case}: parts");
        let (udh, payload) = kannel_with_our_choices(&kannel[case], ours);
        assert_eq!(ours.udh, udh, "{case}: each part's UDH is Kannel's");
        assert_eq!(ours.payload, payload, "{case}: the WSP PDU is Kannel's");
    }
    // The long SI repeats the port IE with a concatenation IE in every part.
    for (i, u) in by_dest["13800000002"].udh.iter().enumerate() {
        assert!(u.starts_with("0B05040B8423F00003"), "{u}");
        assert!(u.ends_with(&format!("030{}", i + 1)), "{u}");
    }
    // The documents themselves: the SL is Kannel's prefix rule, the SI the fixture.
    assert!(matches!(
        wap_fixtures::cases()[2].doc,
        PushDocument::Sl(ref d) if *d == sl()
    ));

    gw.shutdown().await;
    let _ = sim.shutdown().await;
}

/// A campaign bulk send on channel `wap_push` through the hosted campaign service and the
/// gateway's own HTTP API reaches the simulator as Service Indications, one per subscriber
/// sent, each carrying the rendered template text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_bulk_on_wap_push_arrives_as_si() {
    use sluice::demo::{DemoOptions, run};
    use sluice_campaign::template::PushSpec;
    let o = run(DemoOptions {
        subscribers: 400,
        seed: 5,
        progress: false,
        settle_timeout: Duration::from_secs(30),
        reply_a: 0.0,
        reply_b: 0.0,
        organic_rate: 0.0,
        // Only the bulk send here: the triggered part's SMS would share the tally.
        roaming_events: 0,
        dlr_mix: BTreeMap::from([("DELIVRD".to_owned(), 1.0)]),
        push: Some(PushSpec {
            href: "http://www.sluice.com/offer?c={city}".into(),
            action: Some("signal-high".into()),
        }),
        ..DemoOptions::default()
    })
    .await
    .expect("demo runs");
    assert!(o.settled, "{}", sluice::demo::render(&o));
    let sent: u64 = o.funnel.iter().map(|r| r.sent).sum();
    assert!(sent > 0);
    let w = &o.tally.wap_push;
    assert_eq!((w.si, w.sl, w.other), (sent, 0, 0), "{w:?}");
    assert_eq!(o.tally.unique_messages, sent);
    assert_eq!(o.receipts_matched, sent);
    // The SI text is the group's template (both say "… 10 yuan …" and end with their
    // "#OFFER-" marker) and the href the push URL.
    let text = hex(b"10 yuan");
    let marker = hex(b"#OFFER-");
    let host = hex(b"sluice");
    for r in &w.recent {
        assert_eq!(r.kind, "si");
        assert!(r.payload.contains(&text), "{}", r.payload);
        assert!(r.payload.contains(&marker), "{}", r.payload);
        assert!(r.payload.contains(&host), "{}", r.payload);
    }
}
