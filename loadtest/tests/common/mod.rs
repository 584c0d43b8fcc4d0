//! Helpers shared by the integration tests: simulator start-up and the skip/FAIL rule for
//! third-party peers (missing peer: FAIL when SLUICE_INTEROP=1, else print "skipped").
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use sluice_loadtest::config::{Account, ListenerConfig, Protocol, SimConfig};
use sluice_loadtest::load::{LoadConfig, PayloadConfig, Target};
use sluice_loadtest::{SimHandle, Simulator};

/// Repository root (the workspace), for peer scripts under tests/peers/.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Returns true if the test should go on; handles the skip/FAIL rule when the peer is missing.
pub fn peer_available(name: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("SLUICE_INTEROP").as_deref() == Ok("1") {
        panic!("{name} not installed but SLUICE_INTEROP=1");
    }
    println!("skipped: {name} not installed");
    false
}

/// One listener on a free port with an `esme`/`pw` account.
pub fn listener(protocol: Protocol) -> ListenerConfig {
    ListenerConfig {
        protocol,
        accounts: vec![Account {
            system_id: "esme".into(),
            password: "pw".into(),
            max_binds: 0,
        }],
        ..ListenerConfig::default()
    }
}

pub async fn start(listeners: Vec<ListenerConfig>) -> SimHandle {
    Simulator::start(SimConfig {
        listeners,
        seed: Some(7),
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

/// A load run against `addr` with the `esme`/`pw` account.
pub fn load(addr: std::net::SocketAddr, count: u64) -> LoadConfig {
    LoadConfig {
        target: Target::Smpp {
            addr: addr.to_string(),
            system_id: "esme".into(),
            password: "pw".into(),
        },
        connections: 2,
        window: 64,
        count: Some(count),
        payload: PayloadConfig {
            run: "t".into(),
            ..Default::default()
        },
        dlr_wait: Duration::from_secs(10),
        bind_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(10),
        ..LoadConfig::default()
    }
}
