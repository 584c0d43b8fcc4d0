//! Configuration of an MM7 channel: endpoint, credentials, SubmitReq fields, concurrency,
//! rate and retries — and how it is derived from the gateway's `[[channels]]` config.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::submit::SubmitSettings;
use crate::channel::backoff::Backoff;
use crate::channel::egress::RetryPolicy;
use crate::channel::worker::Limits;
use crate::config::{ChannelConfig, Mm7Settings};

/// Everything an MM7 channel needs.
#[derive(Clone)]
pub struct Mm7ChannelConfig {
    /// Channel name.
    pub name: Arc<str>,
    /// The MMSC's MM7 endpoint.
    pub url: reqwest::Url,
    /// Basic auth toward the MMSC (user, password).
    pub auth: Option<(String, Option<String>)>,
    /// The SubmitReq fields of every request.
    pub submit: SubmitSettings,
    /// Concurrent SubmitReqs (one request task each).
    pub window: usize,
    /// Recipients per SubmitReq at most.
    pub max_recipients: usize,
    /// Largest content sent (bytes).
    pub max_content_bytes: usize,
    /// Limit on one whole request, answer included.
    pub timeout: Duration,
    /// Configured rate (recipients/s): the AIMD ceiling.
    pub rate: NonZeroU32,
    /// Governor burst.
    pub burst: NonZeroU32,
    /// Message-level retries.
    pub retry: RetryPolicy,
    /// Back-off of a request task that marked itself down after transport errors.
    pub reconnect: Backoff,
    /// Transport errors in a row after which a request task reports itself down.
    pub down_after: u32,
    /// Re-sends of one recipient after a transport error before its message is retried
    /// through the store.
    pub local_retries: u32,
    /// Throttle answers one recipient may collect before its message goes back to the store.
    pub throttle_retries: u32,
    /// How long messages not yet sent are held while every request task is down.
    pub hold_when_down: Duration,
    /// The only roots trusted for an https url (the channel's `ca_file`); empty: the bundled
    /// Mozilla roots.
    pub ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for Mm7ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mm7ChannelConfig")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .field("submit", &self.submit)
            .field("window", &self.window)
            .field("max_recipients", &self.max_recipients)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl Mm7ChannelConfig {
    /// Defaults around an endpoint and the SubmitReq fields.
    #[must_use]
    pub fn new(name: &str, url: reqwest::Url, submit: SubmitSettings, rate: NonZeroU32) -> Self {
        Self {
            name: Arc::from(name),
            url,
            auth: None,
            submit,
            window: 16,
            max_recipients: 1,
            max_content_bytes: crate::config::MM7_DEFAULT_MAX_CONTENT_BYTES,
            timeout: Duration::from_secs(10),
            rate,
            burst: rate,
            retry: RetryPolicy::default(),
            reconnect: Backoff::default(),
            down_after: 3,
            local_retries: 3,
            throttle_retries: 100,
            hold_when_down: Duration::from_secs(30),
            ca_roots: Vec::new(),
        }
    }

    /// The channel of an `mm7` table of the gateway config (`mm7` is its protocol part).
    ///
    /// # Errors
    /// The URL does not parse (config validation has already checked it).
    pub fn from_config(c: &ChannelConfig, mm7: &Mm7Settings) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(&mm7.url).map_err(|e| format!("channel {}: url: {e}", c.name))?;
        let submit = SubmitSettings {
            namespace: mm7.namespace.clone(),
            vasp_id: mm7.vasp_id.clone(),
            vas_id: mm7.vas_id.clone(),
            service_code: mm7.service_code.clone(),
            sender: mm7.sender.clone(),
            delivery_report: mm7.delivery_report,
            charged_party: mm7.charged_party.clone(),
        };
        let rate = NonZeroU32::new(c.rate).unwrap_or(NonZeroU32::MIN);
        let mut w = Self::new(&c.name, url, submit, rate);
        w.auth = mm7.username.clone().map(|u| (u, mm7.password.clone()));
        w.ca_roots.clone_from(&c.ca_roots);
        w.window = usize::try_from(c.window.max(1)).unwrap_or(1);
        w.max_recipients = usize::try_from(mm7.max_recipients.max(1)).unwrap_or(1);
        w.max_content_bytes = mm7.max_content_bytes;
        w.timeout = c.response_timeout();
        w.burst = NonZeroU32::new(c.burst).unwrap_or(NonZeroU32::MIN);
        w.retry = RetryPolicy::from_config(&c.retry);
        Ok(w)
    }

    /// Messages the worker holds at once, and the dispatch queue length that feeds it:
    /// every request task's recipients, plus — with `max_recipients > 1` — one full request
    /// waiting in the part queue. Without that extra share the worker is full while every
    /// task is in flight, so a task that finishes finds only the few recipients dispatch
    /// refilled in the meantime and sends a small SubmitReq (tests/e2e_mms.rs saw 50
    /// recipients at max_recipients 10 go out in 10 requests instead of 5–6).
    #[must_use]
    pub fn capacity(&self) -> usize {
        let waiting = if self.max_recipients > 1 {
            self.max_recipients
        } else {
            0
        };
        (self.window * self.max_recipients + waiting).max(1)
    }

    /// The neutral worker's share of these settings. Its part queue is sized to hold one
    /// full multi-recipient request, so a task finds the recipients it may join already
    /// queued.
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
            binds: self.window.max(self.max_recipients).max(1),
        }
    }
}
