//! Settings of a CMPP channel: the neutral worker's [`Limits`], the SP session, how SUBMITs
//! are built — and their derivation from the gateway's `[[channels]]` config.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use sluice_protocols::cmpp::SpConfig;

use super::parts::PartSettings;
use crate::channel::backoff::Backoff;
use crate::channel::egress::RetryPolicy;
use crate::channel::worker::Limits;
use crate::config::{ChannelConfig, CmppSettings};

/// Everything a CMPP channel needs.
#[derive(Debug, Clone)]
pub struct CmppChannelConfig {
    /// The neutral worker's settings (rate, retries, capacity = window × connections).
    pub limits: Limits,
    /// `host:port` of the ISMG.
    pub addr: String,
    /// Connections to keep (each a transmitter and receiver at once, as CMPP connections are).
    pub connections: usize,
    /// The SP session of each connection (credentials, version, window, timers).
    pub session: SpConfig,
    /// How SUBMITs are built.
    pub parts: PartSettings,
    /// Reconnect policy.
    pub reconnect: Backoff,
    /// Zone of the CONNECT timestamp (MMDDHHMMSS, the SP's local time).
    pub tz: TimeZone,
    /// TLS toward the ISMG (every connection); `None`: plaintext TCP.
    pub tls: Option<crate::tls::client::ClientTls>,
}

impl CmppChannelConfig {
    /// Defaults around an ISMG address and an SP session: one connection.
    #[must_use]
    pub fn new(name: &str, addr: String, session: SpConfig, rate: NonZeroU32) -> Self {
        let capacity = session.window.max(1);
        Self {
            limits: Limits {
                name: Arc::from(name),
                rate,
                burst: rate,
                retry: RetryPolicy::default(),
                local_retries: 3,
                throttle_retries: 100,
                hold_when_down: Duration::from_secs(30),
                capacity,
                binds: 1,
            },
            addr,
            connections: 1,
            parts: PartSettings {
                msg_src: session.source_addr.clone(),
                ..PartSettings::default()
            },
            session,
            reconnect: Backoff::default(),
            tz: TimeZone::fixed(jiff::tz::offset(8)),
            tls: None,
        }
    }

    /// The channel for a CMPP `[[channels]]` entry in zone `tz`.
    #[must_use]
    pub fn from_config(c: &ChannelConfig, cmpp: &CmppSettings, tz: TimeZone) -> Self {
        let session = SpConfig {
            source_addr: cmpp.source_addr.clone(),
            shared_secret: cmpp.shared_secret.clone(),
            version: cmpp.version.version(),
            window: usize::try_from(c.window.max(1)).unwrap_or(1),
            response_timeout: c.response_timeout(),
            active_test_interval: c.enquire_link_interval(),
            active_test_misses: cmpp.active_test_misses,
            ..SpConfig::default()
        };
        let rate = NonZeroU32::new(c.rate).unwrap_or(NonZeroU32::MIN);
        let mut w = Self::new(&c.name, format!("{}:{}", c.host, c.port), session, rate);
        w.connections = usize::try_from(c.binds.max(1)).unwrap_or(1);
        w.limits.burst = NonZeroU32::new(c.burst).unwrap_or(NonZeroU32::MIN);
        w.limits.retry = RetryPolicy::from_config(&c.retry);
        w.parts = PartSettings::from_config(c, cmpp);
        w.tz = tz;
        w.resize();
        w
    }

    /// Recomputes the worker's capacity and part queue after `connections` or the session
    /// window changed.
    pub fn resize(&mut self) {
        self.limits.binds = self.connections.max(1);
        self.limits.capacity = (self.session.window * self.limits.binds).max(1);
    }

    /// Messages the worker holds at once, and the dispatch queue length that feeds it.
    #[must_use]
    pub fn capacity(&self) -> usize {
        (self.session.window * self.connections.max(1)).max(1)
    }
}
