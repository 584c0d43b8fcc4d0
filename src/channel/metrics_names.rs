//! Metric names of the egress channels, in one place.
//!
//! The ingress helper owns `src/metrics.rs`; until the two lists are unified, the channel's
//! names live here. Labels: `channel`, `bind`, `lane`, `status` (hex command_status).

/// Gauge: messages queued between dispatch and the channel worker (labels channel, lane).
pub const CHANNEL_QUEUE_DEPTH: &str = "sluice_channel_queue_depth";
/// Counter: submit_sm PDUs written to the center (label channel).
pub const CHANNEL_SUBMITS: &str = "sluice_channel_submits_total";
/// Counter: submit responses by command_status (labels channel, status).
pub const CHANNEL_RESPONSES: &str = "sluice_channel_responses_total";
/// Counter: ESME_ROK submit responses without a message_id, retried as temporary failures
/// (label channel).
pub const CHANNEL_EMPTY_MESSAGE_IDS: &str = "sluice_channel_empty_message_ids_total";
/// Counter: throttle answers (ESME_RTHROTTLED / ESME_RMSGQFUL) (label channel).
pub const CHANNEL_THROTTLED: &str = "sluice_channel_throttled_total";
/// Gauge: the AIMD send rate in msg/s (label channel).
pub const CHANNEL_RATE: &str = "sluice_channel_rate";
/// Gauge: outstanding requests in the bind's window (labels channel, bind).
pub const CHANNEL_WINDOW_IN_USE: &str = "sluice_channel_window_in_use";
/// Counter: submit requests that got no response in time (label channel).
pub const CHANNEL_RESPONSE_TIMEOUTS: &str = "sluice_channel_response_timeouts_total";
/// Counter: binds established (labels channel, bind).
pub const CHANNEL_BINDS_UP: &str = "sluice_channel_binds_up_total";
/// Counter: binds lost (labels channel, bind).
pub const CHANNEL_BINDS_DOWN: &str = "sluice_channel_binds_down_total";
/// Counter: messages leased by dispatch (labels channel, lane).
pub const DISPATCH_LEASED: &str = "sluice_dispatch_leased_total";
