//! A CMPP connection: the SP session of `sluice_protocols::cmpp::SpSession` as a [`Link`]
//! for the shared connection driver (`channel::driver`), which connects, moves bytes,
//! batches writes, pulls SUBMITs, answers DELIVERs once durable and reconnects.
//!
//! What only CMPP knows lives here: the CONNECT timestamp (the SP's local time, MMDDHHMMSS),
//! decoding what was read (the session frames it), winding down with TERMINATE (the session
//! waits for its window first), and turning session events into the channel's terms — a
//! DELIVER becomes a receipt or MO event through [`Inbound`] and is answered Result 0 once
//! kept, or Result 8 (flow control) so the ISMG resends what could not be kept. Tolerated
//! deviations of the ISMG are counted per kind (`sluice_channel_tolerated_total`).

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use compact_str::ToCompactString;
use jiff::tz::TimeZone;
use metrics::counter;
use sluice_protocols::cmpp::{MsgId, ResultCode, SpConfig, SpEvent, SpSession, SpState, Submit};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::inbound::Inbound;
use crate::channel::ChannelEvent;
use crate::channel::driver::{self, DriverSpec, Link, Output};
use crate::channel::egress::{PartOutcome, PartTag, WorkerLinks};
use crate::metrics::CHANNEL_TOLERATED;

/// Everything one connection task needs.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// Where and how to connect.
    pub driver: DriverSpec,
    /// Session settings.
    pub session: SpConfig,
    /// Zone of the CONNECT timestamp.
    pub tz: TimeZone,
}

/// Channels a connection task talks on.
#[derive(Debug, Clone)]
pub struct ConnLinks {
    /// The part queue, reports and shutdown shared with the channel's worker.
    pub worker: WorkerLinks<Submit>,
    /// Receipts and MO to the receipt layer.
    pub events: mpsc::Sender<ChannelEvent>,
    /// MO reassembly shared by the channel's connections.
    pub inbound: Arc<Inbound>,
}

/// CONNECT's Timestamp: the SP's local time as the decimal number MMDDHHMMSS.
#[must_use]
pub fn timestamp(tz: &TimeZone) -> u32 {
    let now = tz.to_datetime(jiff::Timestamp::now());
    [
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    ]
    .iter()
    .fold(0u32, |acc, v| acc * 100 + u32::try_from(*v).unwrap_or(0))
}

/// Runs one connection until shutdown: connect, log in, serve, reconnect.
pub async fn run(spec: ConnSpec, links: ConnLinks) {
    let ConnSpec {
        driver: driver_spec,
        session,
        tz,
    } = spec;
    let channel = Arc::clone(&driver_spec.channel);
    let inbound = links.inbound;
    driver::run(driver_spec, links.worker, links.events, move || {
        let session = SpSession::new(session.clone(), Instant::now(), timestamp(&tz))
            .map_err(|e| e.to_string())?;
        Ok(CmppLink {
            session,
            inbound: Arc::clone(&inbound),
            channel: Arc::clone(&channel),
        })
    })
    .await;
}

/// One connection's session with what it needs to speak for the channel.
struct CmppLink {
    session: SpSession<PartTag>,
    inbound: Arc<Inbound>,
    channel: Arc<str>,
}

/// Answering a DELIVER needs its sequence and its Msg_Id (echoed in DELIVER_RESP).
type DeliverRef = (u32, MsgId);

impl Link for CmppLink {
    type Part = Submit;
    type Ack = DeliverRef;

    fn encode_queued(&mut self, out: &mut BytesMut) {
        let version = self.session.version();
        while let Some(t) = self.session.poll_transmit() {
            if let Err(e) = t.encode(version, out) {
                // SUBMITs are validated before they are queued, so this is a bug, not input.
                warn!(error = %e, sequence = t.sequence_id, "Dropping PDU that does not encode.");
            }
        }
    }

    fn read(&mut self, now: Instant, buf: &mut BytesMut) {
        self.session.handle_bytes(now, buf);
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

    fn submit(&mut self, now: Instant, tag: PartTag, body: Box<Submit>) -> Result<(), PartTag> {
        self.session
            .submit(now, tag, body)
            .map(|_| ())
            .map_err(|refused| refused.tag)
    }

    fn wind_down(&mut self, now: Instant, first: bool) {
        match self.session.state() {
            // TERMINATE goes out once the window is empty (or after the response timeout).
            SpState::Connected => self.session.terminate(now),
            SpState::Terminating | SpState::Closed(_) => {}
            // Not logged in yet: nothing to terminate, just go.
            SpState::Connecting if first => self.session.handle_disconnect(),
            SpState::Connecting => {}
        }
    }

    fn answer(&mut self, (sequence, msg_id): DeliverRef, kept: bool) {
        let result = if kept {
            ResultCode::Success
        } else {
            ResultCode::FlowControl
        };
        self.session.answer_deliver(sequence, msg_id, result);
    }

    fn poll_output(&mut self) -> Option<Output<DeliverRef>> {
        loop {
            let output = match self.session.poll_event()? {
                SpEvent::Connected { version, ismg_auth } => {
                    info!(?version, ?ismg_auth, "Connected.");
                    Output::Up { sends: true }
                }
                SpEvent::Response {
                    tag,
                    msg_id,
                    result,
                    sent_at,
                } => Output::Part {
                    tag,
                    outcome: PartOutcome::Response {
                        status: result.raw(),
                        center_id: msg_id.0.to_compact_string(),
                    },
                    sent_at,
                },
                SpEvent::ResponseTimeout { tag, sent_at } => Output::Part {
                    tag,
                    outcome: PartOutcome::Timeout,
                    sent_at,
                },
                SpEvent::Aborted { tag, sent_at } => Output::Part {
                    tag,
                    outcome: PartOutcome::Aborted,
                    sent_at,
                },
                SpEvent::Deliver { sequence, deliver } => {
                    match self.inbound.event(&deliver, Instant::now()) {
                        Some(event) => Output::Inbound {
                            event,
                            ack: (sequence, deliver.msg_id),
                        },
                        // An MO part held for reassembly: the whole MO is answered when kept.
                        None => {
                            self.answer((sequence, deliver.msg_id), true);
                            continue;
                        }
                    }
                }
                SpEvent::Tolerated { tolerated, .. } => {
                    for t in tolerated.iter() {
                        counter!(CHANNEL_TOLERATED, "channel" => self.channel.to_string(), "kind" => t.name()).increment(1);
                    }
                    continue;
                }
                SpEvent::Undecodable(e) => {
                    warn!(error = %e, "Undecodable PDU from the ISMG.");
                    continue;
                }
                SpEvent::Closed(reason) => Output::Closed(reason.to_string()),
            };
            return Some(output);
        }
    }
}
