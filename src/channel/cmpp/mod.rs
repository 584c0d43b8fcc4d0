//! CMPP egress: the SP side of sluice toward a China Mobile ISMG, plugged into the neutral
//! [`crate::channel::worker`].
//!
//! - [`bind`]: the tokio task that drives one `sluice_protocols::cmpp::SpSession` over TCP
//!   and reconnects.
//! - [`inbound`]: DELIVER → receipt / MO events.
//! - [`parts`]: message → SUBMITs (Msg_Fmt, UDH + Pk_total/Pk_number, fees, Src_Id).
//! - [`classify`]: what a SUBMIT_RESP Result means.
//! - [`config`]: the channel's settings (and their derivation from the gateway config).
//! - [`spawn`]: the channel: the neutral worker with [`CmppWire`] and `connections` links.
//!
//! Every CMPP connection sends and receives (there is no transmitter / receiver split), so
//! each counts as a sending bind for the worker and route health.

pub mod bind;
pub mod classify;
pub mod config;
pub mod inbound;
pub mod parts;

use std::sync::Arc;

use sluice_protocols::cmpp::Submit;
use tokio::sync::mpsc;

use self::bind::{ConnLinks, ConnSpec};
pub use self::config::CmppChannelConfig;
use self::inbound::Inbound;
use self::parts::{BuildError, PartSettings, build_parts};
use crate::channel::ChannelEvent;
use crate::channel::driver::DriverSpec;
use crate::channel::egress::{Disposition, OutboundMessage, Settled, WorkerHandle};
use crate::channel::worker::{self, Wire};

/// CMPP's answers to the neutral worker: SUBMIT bodies and Result meanings.
#[derive(Debug, Clone)]
pub struct CmppWire {
    /// How SUBMITs are built.
    pub parts: PartSettings,
}

impl Wire for CmppWire {
    type Part = Submit;
    type Error = BuildError;

    fn build(&self, msg: &OutboundMessage, reference: u16) -> Result<Vec<Box<Submit>>, BuildError> {
        build_parts(msg, &self.parts, reference)
    }

    fn classify(&self, status: u32, center_id: &str) -> Disposition {
        classify::classify(status, center_id, self.parts.version)
    }

    fn status_text(&self, status: u32) -> String {
        classify::describe(status)
    }
}

/// Starts a CMPP channel: the neutral worker and `config.connections` connections.
///
/// `input` is the bounded queue from dispatch (size it with
/// [`CmppChannelConfig::capacity`]); outcomes go to `outcomes` (drop each [`Settled`] only
/// after its store commit), status reports and MO to `events`.
#[must_use]
pub fn spawn(
    mut config: CmppChannelConfig,
    input: mpsc::Receiver<OutboundMessage>,
    outcomes: mpsc::Sender<Settled>,
    events: mpsc::Sender<ChannelEvent>,
) -> WorkerHandle {
    config.resize();
    config.parts.version = config.session.version;
    let wire = CmppWire {
        parts: config.parts.clone(),
    };
    worker::spawn(config.limits.clone(), wire, input, outcomes, |links| {
        let inbound = Arc::new(Inbound::default());
        (0..config.connections.max(1))
            .map(|index| {
                let mut driver =
                    DriverSpec::new(Arc::clone(&config.limits.name), index, config.addr.clone());
                driver.backoff = config.reconnect;
                driver.tls.clone_from(&config.tls);
                let spec = ConnSpec {
                    driver,
                    session: config.session.clone(),
                    tz: config.tz.clone(),
                };
                let links = ConnLinks {
                    worker: links.clone(),
                    events: events.clone(),
                    inbound: Arc::clone(&inbound),
                };
                tokio::spawn(bind::run(spec, links))
            })
            .collect()
    })
}
