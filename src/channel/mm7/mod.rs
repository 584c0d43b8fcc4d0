//! MM7 egress: the VASP side of sluice toward an MMSC (3GPP TS 23.140 over HTTP), plugged
//! into the neutral [`crate::channel::worker`].
//!
//! - [`submit`]: message → one recipient's [`submit::Submit`]; recipients → one SubmitReq
//!   body (SOAP envelope + the content, multipart/related); the center-id key of a recipient.
//! - [`classify`]: what an MMSC's answer means (accepted / throttled / temporary / permanent).
//! - [`client`]: the `window` request tasks (the channel's "binds") over one pooled HTTP/1.1
//!   client, multi-recipient batching, up / down.
//! - [`inbound`]: `POST /mm7/{channel}`: DeliveryReportReq → receipt, DeliverReq → MO.
//! - [`body`]: reading an MM7 HTTP body (bare SOAP or multipart/related).
//! - [`config`]: the channel's settings (and their derivation from the gateway config).
//! - [`spawn`]: the channel: the neutral worker with [`Mm7Wire`] and the request tasks.
//!
//! Each message is one part (an MMS is never split); with `max_recipients > 1` several
//! messages of one content share a SubmitReq, and each still gets its own outcome and its
//! own center id (`MessageID/recipient`), so delivery reports settle each one.

pub mod body;
pub mod classify;
pub mod client;
pub mod config;
pub mod inbound;
pub mod submit;

use std::sync::Arc;

use tokio::sync::mpsc;

pub use self::client::ClientError;
pub use self::config::Mm7ChannelConfig;
use self::submit::{BuildError, Submit};
use crate::channel::ChannelEvent;
use crate::channel::egress::{Disposition, OutboundMessage, Settled, WorkerHandle};
use crate::channel::worker::{self, Wire};

/// MM7's answers to the neutral worker: one [`Submit`] per message, MM7 / HTTP status
/// meanings.
#[derive(Debug, Clone)]
pub struct Mm7Wire {
    /// Largest content sent.
    pub max_content_bytes: usize,
}

impl Wire for Mm7Wire {
    type Part = Submit;
    type Error = BuildError;

    fn build(
        &self,
        msg: &OutboundMessage,
        _reference: u16,
    ) -> Result<Vec<Box<Submit>>, BuildError> {
        submit::build(msg, self.max_content_bytes).map(|s| vec![Box::new(s)])
    }

    fn classify(&self, status: u32, center_id: &str) -> Disposition {
        classify::classify(status, center_id)
    }

    fn status_text(&self, status: u32) -> String {
        classify::status_text(status)
    }
}

/// Starts an MM7 channel: the neutral worker and `config.window` request tasks.
///
/// `input` is the bounded queue from dispatch (size it with
/// [`Mm7ChannelConfig::capacity`]); outcomes go to `outcomes` (drop each [`Settled`] only
/// after its store commit). Receipts and MO do not come from here: the MMSC POSTs them to
/// [`inbound::router`], which sends them on the channel's event queue.
///
/// # Errors
/// [`ClientError`] when the HTTP client cannot be built (call
/// [`crate::tls::install_provider`] first).
pub fn spawn(
    config: Mm7ChannelConfig,
    input: mpsc::Receiver<OutboundMessage>,
    outcomes: mpsc::Sender<Settled>,
) -> Result<WorkerHandle, ClientError> {
    let client = client::http_client(config.window, config.timeout, &config.ca_roots)?;
    let wire = Mm7Wire {
        max_content_bytes: config.max_content_bytes,
    };
    let limits = config.limits();
    let window = config.window.max(1);
    let shared = Arc::new(client::Shared { config, client });
    Ok(worker::spawn(limits, wire, input, outcomes, |links| {
        (0..window)
            .map(|i| tokio::spawn(client::run(Arc::clone(&shared), i, links.clone())))
            .collect()
    }))
}

/// The inbound side of an MM7 channel of the gateway config, sending on `events`.
///
/// # Errors
/// The channel is not an MM7 channel.
pub fn inbound_channel(
    c: &crate::config::ChannelConfig,
    events: mpsc::Sender<ChannelEvent>,
) -> Result<inbound::InboundChannel, String> {
    let crate::config::Protocol::Mm7(m) = &c.protocol else {
        return Err(format!("channel {} is not an mm7 channel", c.name));
    };
    let auth = match (&m.inbound_username, m.inbound_password_sha256) {
        (Some(username), Some(password_sha256)) => Some(inbound::InboundAuth {
            username: username.clone(),
            password_sha256,
        }),
        _ => None,
    };
    Ok(inbound::InboundChannel {
        name: Arc::from(c.name.as_str()),
        namespace: m.namespace.clone(),
        auth,
        events,
        max_content_bytes: m.max_content_bytes,
    })
}
