//! SMPP egress: the ESME side of sluice toward an SMSC, plugged into the neutral
//! [`crate::channel::worker`].
//!
//! - [`bind`]: the tokio task that drives one `sluice_protocols::smpp::session::esme` session
//!   over TCP and reconnects.
//! - [`inbound`]: deliver_sm → receipt / MO events (MO reassembly).
//! - [`parts`]: message → submit_sm bodies (encoding, splitting, concatenation mode).
//! - [`classify`]: what a submit_sm_resp status means (accepted / throttled / temporary /
//!   permanent).
//! - [`config`]: the channel's settings (and their derivation from the gateway config).
//! - [`spawn`]: the channel: the neutral worker with [`SmppWire`] and this protocol's binds.

pub mod bind;
pub mod classify;
pub mod config;
pub mod inbound;
pub mod parts;

use std::sync::Arc;

use sluice_protocols::smpp::session::esme::{BindKind, SessionConfig};
use sluice_protocols::smpp::{CommandStatus, Sm};
use tokio::sync::mpsc;

use self::bind::{BindLinks, BindSpec};
use self::classify::classify_response;
pub use self::config::{BindMode, WorkerConfig};
use self::inbound::Inbound;
use self::parts::{BuildError, PartSettings, build_parts};
use crate::channel::ChannelEvent;
use crate::channel::egress::{Disposition, OutboundMessage, Settled, WorkerHandle};
use crate::channel::worker::{self, Wire};

/// SMPP's answers to the neutral worker: submit_sm bodies and command_status meanings.
#[derive(Debug, Clone)]
pub struct SmppWire {
    /// How parts are built.
    pub parts: PartSettings,
}

impl Wire for SmppWire {
    type Part = Sm;
    type Error = BuildError;

    fn build(&self, msg: &OutboundMessage, reference: u16) -> Result<Vec<Box<Sm>>, BuildError> {
        build_parts(msg, &self.parts, reference)
    }

    fn classify(&self, status: u32, center_id: &str) -> Disposition {
        classify_response(CommandStatus::from_u32(status), center_id.as_bytes())
    }

    fn status_text(&self, status: u32) -> String {
        CommandStatus::from_u32(status).to_string()
    }
}

/// Starts an SMPP channel: the neutral worker and `config.binds` binds (pairs in
/// transmitter + receiver mode).
///
/// `input` is the bounded queue from dispatch (size it with [`WorkerConfig::capacity`]);
/// outcomes go to `outcomes` (drop each [`Settled`] only after its store commit), receipts
/// and MO to `events`.
#[must_use]
pub fn spawn(
    config: WorkerConfig,
    input: mpsc::Receiver<OutboundMessage>,
    outcomes: mpsc::Sender<Settled>,
    events: mpsc::Sender<ChannelEvent>,
) -> WorkerHandle {
    let wire = SmppWire {
        parts: config.parts.clone(),
    };
    worker::spawn(config.limits(), wire, input, outcomes, |links| {
        let inbound = Arc::new(Inbound::default());
        let kinds: &[BindKind] = match config.mode {
            BindMode::Transceiver => &[BindKind::Transceiver],
            BindMode::TransmitterReceiver => &[BindKind::Transmitter, BindKind::Receiver],
        };
        let mut binds = Vec::new();
        for _ in 0..config.binds.max(1) {
            for kind in kinds {
                let mut spec = BindSpec::new(
                    Arc::clone(&config.name),
                    binds.len(),
                    config.addr.clone(),
                    SessionConfig {
                        bind_kind: *kind,
                        ..config.session.clone()
                    },
                );
                spec.driver.backoff = config.reconnect;
                spec.driver.tls.clone_from(&config.tls);
                let links = BindLinks {
                    worker: links.clone(),
                    events: events.clone(),
                    inbound: Arc::clone(&inbound),
                };
                binds.push(tokio::spawn(bind::run(spec, links)));
            }
        }
        binds
    })
}
