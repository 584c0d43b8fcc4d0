//! Configuration of an SMPP channel worker: binds, rate, parts, retries — and how it is
//! derived from the gateway's `[[channels]]` config.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::parts::PartSettings;
use sluice_protocols::smpp::session::esme::{BindKind, SessionConfig};

use crate::channel::backoff::Backoff;
use crate::channel::egress::RetryPolicy;
use crate::channel::worker::Limits;
use crate::config::{BindMode as CfgBindMode, ChannelConfig, SmppSettings};

/// How binds are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// One bind_transceiver per bind.
    Transceiver,
    /// A bind_transmitter plus a bind_receiver per bind.
    TransmitterReceiver,
}

/// Everything a channel worker needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Channel name.
    pub name: Arc<str>,
    /// `host:port` of the center.
    pub addr: String,
    /// Number of binds (pairs in transmitter+receiver mode).
    pub binds: usize,
    /// Bind PDUs to use.
    pub mode: BindMode,
    /// Session settings shared by all binds (`bind_kind` is set per bind from `mode`).
    pub session: SessionConfig,
    /// Configured rate (msg/s): the AIMD ceiling.
    pub rate: NonZeroU32,
    /// Governor burst.
    pub burst: NonZeroU32,
    /// How parts are built.
    pub parts: PartSettings,
    /// Message-level retries.
    pub retry: RetryPolicy,
    /// Reconnect policy of the binds.
    pub reconnect: Backoff,
    /// How many times one part is re-sent after a timeout or a lost bind before the whole
    /// message goes back to the store.
    pub local_retries: u32,
    /// How many throttle answers one part may collect before the message goes back to the
    /// store (a center that throttles forever must not pin messages in memory).
    pub throttle_retries: u32,
    /// How long messages not yet on the wire are held while no sending bind is up; then they
    /// go back to the store (their lease must not run out in here).
    pub hold_when_down: Duration,
    /// TLS toward the center (every bind); `None`: plaintext TCP.
    pub tls: Option<crate::tls::client::ClientTls>,
}

impl WorkerConfig {
    /// Defaults around a center address and credentials.
    #[must_use]
    pub fn new(name: &str, addr: String, session: SessionConfig, rate: NonZeroU32) -> Self {
        Self {
            name: Arc::from(name),
            addr,
            binds: 1,
            mode: BindMode::Transceiver,
            session,
            rate,
            burst: rate,
            parts: PartSettings::default(),
            retry: RetryPolicy::default(),
            reconnect: Backoff::default(),
            local_retries: 3,
            throttle_retries: 100,
            hold_when_down: Duration::from_secs(30),
            tls: None,
        }
    }

    /// The worker for an SMPP channel of the gateway config (`smpp` is its protocol
    /// part). Rate and burst below 1 are raised to 1 (config validation refuses them anyway).
    #[must_use]
    pub fn from_config(c: &ChannelConfig, smpp: &SmppSettings) -> Self {
        let session = SessionConfig {
            bind_kind: BindKind::Transceiver,
            system_id: smpp.system_id.clone(),
            password: smpp.password.clone(),
            system_type: smpp.system_type.clone(),
            interface_version: smpp.interface_version,
            window: usize::try_from(c.window.max(1)).unwrap_or(1),
            response_timeout: c.response_timeout(),
            enquire_link_interval: c.enquire_link_interval(),
        };
        let rate = NonZeroU32::new(c.rate).unwrap_or(NonZeroU32::MIN);
        let mut w = Self::new(&c.name, format!("{}:{}", c.host, c.port), session, rate);
        w.binds = usize::try_from(c.binds.max(1)).unwrap_or(1);
        w.mode = match smpp.bind_mode {
            CfgBindMode::Transceiver => BindMode::Transceiver,
            CfgBindMode::TransmitterReceiver => BindMode::TransmitterReceiver,
        };
        w.burst = NonZeroU32::new(c.burst).unwrap_or(NonZeroU32::MIN);
        w.parts.concat = c.concatenation.scheme();
        w.retry = RetryPolicy::from_config(&c.retry);
        w
    }

    /// Messages the worker holds at once, and the dispatch queue length that feeds it:
    /// the channel's windows (window × sending binds).
    #[must_use]
    pub fn capacity(&self) -> usize {
        (self.session.window * self.binds).max(1)
    }

    /// The neutral worker's share of these settings.
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits {
            name: Arc::clone(&self.name),
            rate: self.rate,
            burst: self.burst,
            retry: self.retry,
            local_retries: self.local_retries,
            throttle_retries: self.throttle_retries,
            hold_when_down: self.hold_when_down,
            capacity: self.capacity(),
            binds: self.binds.max(1),
        }
    }
}
