//! An SMPP bind: the ESME session of `sluice_protocols::smpp::session::esme` as a
//! [`Link`] for the shared connection driver (`channel::driver`), which connects, moves
//! bytes, batches writes, pulls parts, answers receipts once durable and reconnects.
//!
//! What only SMPP knows lives here: framing and decoding what was read (counting the
//! deviations the codec tolerated), winding down with unbind once the window is empty, and
//! turning session events into the channel's terms — deliver_sm / data_sm become receipt or
//! MO events through [`Inbound`] (an MO part held for reassembly is answered at once), and
//! a refused or lost deliver is answered ESME_RX_T_APPN so the center resends it.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use metrics::counter;
use sluice_protocols::smpp::session::esme::{CloseReason, Event, Session, SessionConfig, State};
use sluice_protocols::smpp::{CommandStatus, DEFAULT_MAX_LEN, Sm, check, decode};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::inbound::Inbound;
use crate::channel::driver::{self, DriverSpec, Link, Output};
use crate::channel::egress::{PartOutcome, PartTag, WorkerLinks};
use crate::channel::{ChannelEvent, compact_lossy};
use crate::metrics::CHANNEL_TOLERATED;

/// Everything one bind task needs.
#[derive(Debug, Clone)]
pub struct BindSpec {
    /// Where and how to connect.
    pub driver: DriverSpec,
    /// Session settings (credentials, bind kind, window, timers).
    pub session: SessionConfig,
    /// Largest PDU accepted from the center.
    pub max_pdu: usize,
}

impl BindSpec {
    /// A spec with default reconnect policy and limits.
    #[must_use]
    pub fn new(channel: Arc<str>, index: usize, addr: String, session: SessionConfig) -> Self {
        Self {
            driver: DriverSpec::new(channel, index, addr),
            session,
            max_pdu: DEFAULT_MAX_LEN,
        }
    }
}

/// Channels a bind task talks on.
#[derive(Debug, Clone)]
pub struct BindLinks {
    /// The part queue, reports and shutdown shared with the channel's worker.
    pub worker: WorkerLinks<Sm>,
    /// Receipts and MO to the receipt layer.
    pub events: mpsc::Sender<ChannelEvent>,
    /// MO reassembly shared by the channel's binds.
    pub inbound: Arc<Inbound>,
}

/// Runs one bind until shutdown: connect, bind, serve, reconnect.
pub async fn run(spec: BindSpec, links: BindLinks) {
    let BindSpec {
        driver: driver_spec,
        session,
        max_pdu,
    } = spec;
    let channel = Arc::clone(&driver_spec.channel);
    let inbound = links.inbound;
    driver::run(driver_spec, links.worker, links.events, move || {
        Ok(SmppLink {
            session: Session::new(session.clone(), Instant::now()),
            sends: session.bind_kind.sends(),
            max_pdu,
            inbound: Arc::clone(&inbound),
            channel: Arc::clone(&channel),
        })
    })
    .await;
}

/// One bind's session with what it needs to speak for the channel.
struct SmppLink {
    session: Session<PartTag>,
    sends: bool,
    max_pdu: usize,
    inbound: Arc<Inbound>,
    channel: Arc<str>,
}

/// Answering a deliver_sm (or data_sm) needs its sequence and which of the two it was.
type DeliverRef = (u32, bool);

impl Link for SmppLink {
    type Part = Sm;
    type Ack = DeliverRef;

    fn encode_queued(&mut self, out: &mut BytesMut) {
        while let Some(command) = self.session.poll_transmit() {
            if let Err(e) = command.encode(out) {
                // Parts are validated before they are queued, so this is a bug, not input.
                warn!(error = %e, sequence = command.sequence, "Dropping PDU that does not encode.");
            }
        }
    }

    fn read(&mut self, now: Instant, buf: &mut BytesMut) {
        loop {
            match check(buf, self.max_pdu) {
                Ok(Some(len)) => {
                    let pdu = buf.split_to(len).freeze();
                    match decode(pdu) {
                        Ok(decoded) => {
                            for kind in decoded.tolerated.names() {
                                counter!(CHANNEL_TOLERATED, "channel" => self.channel.to_string(), "kind" => kind).increment(1);
                            }
                            self.session.handle_pdu(now, decoded.command);
                        }
                        Err(e) => {
                            warn!(error = %e, "Undecodable PDU from center.");
                            self.session.handle_decode_error(now, &e);
                        }
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "Bad frame from center; closing.");
                    self.session.handle_decode_error(now, &e.into());
                    buf.clear();
                    return;
                }
            }
            if self.session.is_closed() {
                return;
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    fn handle_disconnect(&mut self) {
        self.session.handle_disconnect();
    }

    fn can_submit(&self) -> bool {
        self.session.can_submit()
    }

    fn in_flight(&self) -> usize {
        self.session.in_flight()
    }

    fn submit(&mut self, now: Instant, tag: PartTag, body: Box<Sm>) -> Result<(), PartTag> {
        self.session
            .submit(now, tag, body)
            .map(|_| ())
            .map_err(|refused| refused.tag)
    }

    fn wind_down(&mut self, now: Instant, first: bool) {
        match self.session.state() {
            // Unbind once every submit in the window is answered (or has timed out, which
            // the session guarantees within `response_timeout`).
            State::Bound if self.session.in_flight() == 0 => self.session.unbind(now),
            State::Bound | State::Unbinding | State::Closed(_) => {}
            // Still binding: nothing to unbind, just go.
            State::Binding if first => self.session.handle_disconnect(),
            State::Binding => {}
        }
    }

    fn answer(&mut self, (sequence, data_sm): DeliverRef, kept: bool) {
        let status = if kept {
            CommandStatus::EsmeRok
        } else {
            CommandStatus::EsmeRxTAppn
        };
        self.session.answer_deliver(sequence, data_sm, status);
    }

    fn poll_output(&mut self) -> Option<Output<DeliverRef>> {
        loop {
            let output = match self.session.poll_event()? {
                Event::Bound { system_id } => {
                    info!(center = %String::from_utf8_lossy(&system_id), "Bound.");
                    Output::Up { sends: self.sends }
                }
                Event::Response {
                    tag,
                    status,
                    message_id,
                    sent_at,
                } => Output::Part {
                    tag,
                    outcome: PartOutcome::Response {
                        status: status.to_u32(),
                        center_id: compact_lossy(&message_id),
                    },
                    sent_at,
                },
                Event::ResponseTimeout { tag, sent_at } => Output::Part {
                    tag,
                    outcome: PartOutcome::Timeout,
                    sent_at,
                },
                Event::Aborted { tag, sent_at } => Output::Part {
                    tag,
                    outcome: PartOutcome::Aborted,
                    sent_at,
                },
                Event::Deliver {
                    sequence,
                    data_sm,
                    sm,
                } => match self.inbound.event(&sm, Instant::now()) {
                    Some(event) => Output::Inbound {
                        event,
                        ack: (sequence, data_sm),
                    },
                    // An MO part held for reassembly: the whole MO is answered when kept.
                    None => {
                        self.answer((sequence, data_sm), true);
                        continue;
                    }
                },
                Event::Closed(reason) => Output::Closed(describe(&reason)),
            };
            return Some(output);
        }
    }
}

fn describe(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Unbound => "unbound".into(),
        CloseReason::PeerUnbind => "center unbound".into(),
        CloseReason::BindRejected(status) => format!("bind rejected: {status}"),
        CloseReason::BindTimeout => "bind timed out".into(),
        CloseReason::EnquireLinkTimeout => "enquire_link timed out".into(),
        CloseReason::Protocol => "protocol error".into(),
        CloseReason::Disconnected => "disconnected".into(),
    }
}
