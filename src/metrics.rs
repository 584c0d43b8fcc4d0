//! Every metric name sluice emits, in one place, plus the Prometheus exporter.
//!
//! Job: name and describe each metric once, so dashboards and alerts have a single source of
//! truth, and install the `metrics` recorder whose text rendering `GET /metrics` serves.
//!
//! Invariants:
//! - Code elsewhere records through `metrics::counter!(X)` etc. with a const from this
//!   module, never with a string literal.
//! - Label keys are the `LABEL_*` consts; label values are bounded sets (channel names from
//!   config, lanes, status codes), never message ids or phone numbers.
//! - [`describe`] runs once at start-up, after [`install`], so `/metrics` shows HELP lines.

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{Lane, QueueDepths};

/// Label: channel name from config.
pub const LABEL_CHANNEL: &str = "channel";
/// Label: priority lane (`otp`, `notification`, `marketing`).
pub const LABEL_LANE: &str = "lane";
/// Label: account name from config.
pub const LABEL_ACCOUNT: &str = "account";
/// Label: protocol status as text (`0x00000058`) or HTTP status.
pub const LABEL_STATUS: &str = "status";
/// Label: why something was rejected (`auth`, `rate`, `invalid`, `malformed`, `too_large`).
pub const LABEL_REASON: &str = "reason";
/// Label: receipt state (`delivered`, `undeliverable`, …).
pub const LABEL_STATE: &str = "state";

// Egress channels and dispatch (labels channel, bind, lane, status).
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
/// Counter: deviations from the specification accepted from a center, by kind (labels
/// channel, kind): what real peers bend, counted so operators can see it.
pub const CHANNEL_TOLERATED: &str = "sluice_channel_tolerated_total";
/// Counter: binds lost (labels channel, bind).
pub const CHANNEL_BINDS_DOWN: &str = "sluice_channel_binds_down_total";
/// Counter: TCP connection attempts toward the center, successful or not (labels channel,
/// bind): with the binds-up count it shows a channel reconnecting at its backoff's pace,
/// not spinning, while a center is gone or refuses binds.
pub const CHANNEL_CONNECT_ATTEMPTS: &str = "sluice_channel_connect_attempts_total";
/// Counter: messages leased by dispatch (labels channel, lane).
pub const DISPATCH_LEASED: &str = "sluice_dispatch_leased_total";
/// Histogram: seconds dispatch waited on the store for a lease with nothing left to hand its
/// worker in that lane (label channel); the lease ahead keeps it near zero.
pub const DISPATCH_LEASE_WAIT: &str = "sluice_dispatch_lease_wait_seconds";

/// Histogram: seconds from the first part's submit to the final delivery receipt.
pub const DLR_LATENCY: &str = "sluice_dlr_latency_seconds";
/// Counter: messages a delivery receipt made final, once per message, by final state
/// (`receipt::FinalCounts` is the one place it moves).
pub const RECEIPTS: &str = "sluice_receipts_total";
/// Counter: receipts whose center id matched no part after the retry period.
pub const RECEIPTS_UNMATCHED: &str = "sluice_receipts_unmatched_total";
/// Gauge: receipts buffered because they arrived before the submit response.
pub const RECEIPTS_PENDING: &str = "sluice_receipts_pending";
/// Counter: receipts the store held because they arrived before their submit response was
/// stored (label channel); each costs the store a held record written and removed.
pub const RECEIPTS_EARLY: &str = "sluice_receipts_early_total";
/// Gauge: receipt/MO webhook deliveries waiting: the entries of every account's outbox that
/// a webhook pump delivers (the sum of [`OUTBOX_DEPTH`]).
pub const WEBHOOK_BACKLOG: &str = "sluice_webhook_backlog";
/// Gauge: entries in one account's outbox (labels `account`, `kind`: `receipt` / `mo`).
pub const OUTBOX_DEPTH: &str = "sluice_outbox_depth";
/// Gauge: age of the oldest entry of one account's outbox, seconds (0 when empty; labels
/// `account`, `kind`).
pub const OUTBOX_OLDEST_AGE: &str = "sluice_outbox_oldest_age_seconds";
/// Counter: webhook POSTs that failed, once per failed POST, by reason (`timeout`,
/// `connect`, `status_5xx`, `status_429`, `status_4xx`, `other`).
pub const WEBHOOK_FAILURES: &str = "sluice_webhook_failures_total";
/// Counter: webhook POSTs, by outcome status (`2xx`, `error`, HTTP code).
pub const WEBHOOK_ATTEMPTS: &str = "sluice_webhook_attempts_total";
/// Counter: webhook requests the standalone campaign service refused (label `reason`:
/// `missing`, `malformed`, `stale`, `forged`). The name is defined by the campaign crate,
/// which records it; here so this list stays complete.
pub const CAMPAIGN_WEBHOOK_REFUSED: &str = sluice_campaign::signature::REFUSED_METRIC;
/// Counter: mobile-originated messages received.
pub const MO_RECEIVED: &str = "sluice_mo_received_total";
/// Counter: messages accepted (durable) by ingress, per account.
pub const INGRESS_ACCEPTED: &str = "sluice_ingress_accepted_total";
/// Counter: messages accepted as duplicates of an earlier `client_ref`, per account.
pub const INGRESS_DUPLICATES: &str = "sluice_ingress_duplicates_total";
/// Counter: batches rejected by ingress, by reason.
pub const INGRESS_REJECTED: &str = "sluice_ingress_rejected_total";
/// Gauge: SMPP binds of ESMEs to sluice that are up, per account and bind kind.
pub const SMPP_SERVER_BINDS_UP: &str = "sluice_smpp_server_binds_up";
/// Counter: bind attempts refused by the SMPP server, by status.
pub const SMPP_SERVER_BINDS_REFUSED: &str = "sluice_smpp_server_binds_refused_total";
/// Counter: submit_sm / submit_multi / data_sm answered by the SMPP server, per account and
/// status (`ESME_ROK` = accepted durably).
pub const SMPP_SERVER_SUBMITS: &str = "sluice_smpp_server_submits_total";
/// Counter: submits answered `ESME_RTHROTTLED` (account rate or bind window), per account.
pub const SMPP_SERVER_THROTTLED: &str = "sluice_smpp_server_throttled_total";
/// Counter: receipts (kind `receipt`) and replies (kind `mo`) the ESME acknowledged with
/// deliver_sm_resp ESME_ROK, per account.
pub const SMPP_SERVER_DELIVERED: &str = "sluice_smpp_server_delivered_total";
/// Counter: SMPP connections or binds refused or closed for abuse, by reason
/// (`connections_per_ip`, `bind_rate`, `lockout`, `bind_timeout`, `read_timeout`,
/// `unbound_flood`, `command_length`).
pub const SMPP_SERVER_ABUSE: &str = "sluice_smpp_server_abuse_total";
/// Counter: store writes refused because the disk is full (answered 503 / ESME_RMSGQFUL).
pub const STORE_NO_SPACE: &str = "sluice_store_no_space_total";
/// Label: what a deliver_sm carried (`receipt` / `mo`) or the bind kind.
pub const LABEL_KIND: &str = "kind";
/// Histogram: seconds from the start of a batch request to its durable acknowledgement.
pub const BATCH_ACCEPT_LATENCY: &str = "sluice_batch_accept_latency_seconds";
/// Histogram: messages per accepted batch (an HTTP request; over SMPP, the submits one
/// connection stored in one store request).
pub const BATCH_SIZE: &str = "sluice_batch_size";
/// Gauge: messages in the store's ready index (due now or later), per channel and lane —
/// the real backlog, unlike `CHANNEL_QUEUE_DEPTH` (dispatch's in-memory hand-off).
pub const STORE_QUEUE_DEPTH: &str = "sluice_store_queue_depth";
/// Gauge: leased (in-flight) messages in the store, per channel.
pub const STORE_INFLIGHT: &str = "sluice_store_inflight";
/// Counter: group commits made by the store's writer. Ops per commit (`STORE_OPS` over this)
/// is the batching factor: every commit rewrites the B-tree paths it touched, so few ops per
/// commit means much page writing per message.
pub const STORE_COMMITS: &str = "sluice_store_commits_total";
/// Counter: ops applied by the store's writer.
pub const STORE_OPS: &str = "sluice_store_ops_total";
/// Counter: checkpoints of the redo log, durable engine commits that let its old segments
/// go (every 8 192 ops, at most a second apart: about 20 a second at full speed; none with
/// `storage.redo_log = false`).
pub const STORE_CHECKPOINTS: &str = "sluice_store_checkpoints_total";
/// Counter: microseconds of the store writer thread's wall time, by `phase` (`waiting`,
/// `applying`, `committing`; see `WriterPhase`), and of the redo log's thread (`logging`:
/// writing and fsyncing groups, beside the writer). Microseconds because the `metrics`
/// counters hold integers. The writer's three rates sum to 1 000 000 per second: a
/// `waiting` rate near 0 means the writer is saturated and bounds throughput; a `logging`
/// rate near 1 000 000 means the log's fsyncs do.
pub const STORE_WRITER_MICROS: &str = "sluice_store_writer_microseconds_total";
/// Counter: reads of a receipt outbox by the pumps, by `from`: `memory` (the writer's copy of
/// the newest entries, with their events: no engine read, no decoding) or `engine`. Engine
/// reads are expected after a restart and while a pump is far behind its outbox (a receiver
/// down); a steady `engine` rate otherwise means the pumps pay for reads they need not.
pub const STORE_OUTBOX_READS: &str = "sluice_store_outbox_reads_total";
/// Counter: receipt outbox entries the store writer held in memory instead of writing them
/// to the engine (redo log on), by `fate`: `held` (all of them) and `written` (those still
/// undelivered at the next durable commit, which wrote them). `held` minus `written` is the
/// engine writes and deletes saved; a `written` share near 1 means receipts wait longer than
/// a checkpoint interval (a slow or down receiver).
pub const STORE_OUTBOX_HELD: &str = "sluice_store_outbox_held_total";
/// Counter: messages removed by the retention purge. Beside the accepted count it shows
/// whether purge keeps up with intake (the store's size levels off only if it does).
pub const STORE_PURGED: &str = "sluice_store_purged_total";

// Public contact rules (src/rules/).
/// Label: the rule that refused a message (`blacklist`, `graylist`, `do_not_disturb`,
/// `channel_cap`, `overall_cap`).
pub const LABEL_RULE: &str = "rule";
/// Counter: messages refused at ingress by a public rule (labels rule, channel — the
/// contact channel `sms` / `mms` / `wap_push`, not a config channel name).
pub const RULES_REFUSED: &str = "sluice_rules_refused_total";
/// Counter: delivered contacts counted toward caps.
pub const RULES_CONTACTS_COUNTED: &str = "sluice_rules_contacts_counted_total";
/// Counter: numbers put on do-not-disturb by unsubscribe replies.
pub const RULES_UNSUBSCRIBES: &str = "sluice_rules_unsubscribes_total";
/// Counter: receipt-layer notifications the rules consumer missed by lagging (caps may
/// undercount).
pub const RULES_FEEDBACK_LAGGED: &str = "sluice_rules_feedback_lagged_total";

// Emergency stop and pause switches.
/// Counter: messages ended as `cancelled` by an emergency stop (by the cancel call, its
/// sweep, a lease or a hand-back that met it).
pub const CANCELLED: &str = "sluice_cancelled_total";
/// Counter: MMS messages failed because their content file was missing at dispatch (label
/// channel). Should stay 0: content is durable before the message that references it.
pub const MMS_CONTENT_MISSING: &str = "sluice_mms_content_missing_total";
/// Gauge: pause switches that are on (label kind: `channel` or `account`).
pub const PAUSED: &str = "sluice_paused";

// TLS.
/// Label: which listener a TLS certificate serves (`http`, `metrics`, `smpp`).
pub const LABEL_LISTENER: &str = "listener";
/// Counter: certificate reloads after the files changed (labels listener, result: `ok` or
/// `failed`; on `failed` the previous certificate stays in use).
pub const TLS_RELOADS: &str = "sluice_tls_reloads_total";

/// Buckets for latencies measured in seconds: 0.5 ms … 10 s. p99 batch accept < 20 ms is a
/// target, so the low end is fine-grained.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for dispatch's lease wait: 50 µs (a lease that was ready) … 1 s.
const WAIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];
/// Buckets for the DLR latency: centers report in seconds to hours.
const DLR_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Buckets for the batch size histogram (1 … 10 000 messages).
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Installs the Prometheus recorder as the global `metrics` recorder and describes every
/// metric. Call once per process; the handle renders the text exposition format.
///
/// # Errors
/// Fails when a global recorder is already installed (a second call in one process).
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    describe();
    spawn_upkeep(handle.clone());
    Ok(handle)
}

/// How often the installed recorder's histograms are drained when nobody scrapes (the
/// exporter's own default for the recorders it installs itself).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `install_recorder` leaves upkeep to its caller: without it every histogram sample
/// (several per message: accept, submit, receipt latencies) waits in the recorder until the
/// next scrape, so a gateway nobody scrapes — no metrics listener, or Prometheus down —
/// grows by them for as long as it runs. A plain thread, so it works whether or not the
/// caller is inside a runtime; it lives as long as the process-wide recorder does.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Metrics upkeep not started: histograms grow until scraped.");
    }
}

/// A recorder + handle that is NOT installed globally; tests use it with
/// `metrics::with_local_recorder`.
///
/// # Errors
/// Fails only if the bucket configuration is invalid (it is a constant here).
pub fn local() -> Result<
    (
        metrics_exporter_prometheus::PrometheusRecorder,
        PrometheusHandle,
    ),
    BuildError,
> {
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    Ok((recorder, handle))
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(BATCH_ACCEPT_LATENCY.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(DLR_LATENCY.into()), DLR_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(DISPATCH_LEASE_WAIT.into()), WAIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
}

/// Registers HELP text and units with the current recorder.
pub fn describe() {
    describe_counter!(
        TLS_RELOADS,
        Unit::Count,
        "TLS certificate reloads by listener and result (failed: the old certificate stays)."
    );
    describe_counter!(
        RULES_REFUSED,
        Unit::Count,
        "Messages refused at ingress by a public contact rule, by rule and contact channel."
    );
    describe_counter!(
        RULES_CONTACTS_COUNTED,
        Unit::Count,
        "Delivered marketing contacts counted toward public contact caps."
    );
    describe_counter!(
        RULES_UNSUBSCRIBES,
        Unit::Count,
        "Numbers put on do-not-disturb by unsubscribe replies."
    );
    describe_counter!(
        RULES_FEEDBACK_LAGGED,
        Unit::Count,
        "Receipt notifications the public rules consumer missed by lagging."
    );
    describe_gauge!(
        CHANNEL_QUEUE_DEPTH,
        Unit::Count,
        "Messages queued between dispatch and a channel worker, per channel and lane."
    );
    describe_counter!(
        CHANNEL_SUBMITS,
        Unit::Count,
        "Submit PDUs (one per part) sent to centers."
    );
    describe_counter!(
        CHANNEL_RESPONSES,
        Unit::Count,
        "Submit responses from centers, by status."
    );
    describe_counter!(
        CHANNEL_THROTTLED,
        Unit::Count,
        "Throttle answers from centers."
    );
    describe_gauge!(
        CHANNEL_RATE,
        "Current AIMD-adjusted send rate of a channel (msg/s)."
    );
    describe_gauge!(
        CHANNEL_WINDOW_IN_USE,
        Unit::Count,
        "Outstanding requests in a bind's window."
    );
    describe_counter!(
        CHANNEL_RESPONSE_TIMEOUTS,
        Unit::Count,
        "Submit requests that got no response in time."
    );
    describe_counter!(CHANNEL_BINDS_UP, Unit::Count, "Binds established.");
    describe_counter!(CHANNEL_BINDS_DOWN, Unit::Count, "Binds lost.");
    describe_counter!(
        CHANNEL_CONNECT_ATTEMPTS,
        Unit::Count,
        "TCP connection attempts toward the center."
    );
    describe_counter!(
        DISPATCH_LEASED,
        Unit::Count,
        "Messages leased by dispatch, per channel and lane."
    );
    describe_histogram!(
        DISPATCH_LEASE_WAIT,
        Unit::Seconds,
        "Time dispatch waited on a lease with its lane's buffer empty."
    );
    describe_histogram!(
        DLR_LATENCY,
        Unit::Seconds,
        "First submit to final delivery receipt."
    );
    describe_counter!(
        RECEIPTS,
        Unit::Count,
        "Messages a delivery receipt made final, once each, by state."
    );
    describe_counter!(
        RECEIPTS_UNMATCHED,
        Unit::Count,
        "Receipts whose center id matched no part after the retry period."
    );
    describe_gauge!(
        RECEIPTS_PENDING,
        Unit::Count,
        "Receipts buffered because they arrived before the submit response."
    );
    describe_counter!(
        RECEIPTS_EARLY,
        Unit::Count,
        "Receipts held by the store because their submit response was not stored yet."
    );
    describe_gauge!(
        WEBHOOK_BACKLOG,
        Unit::Count,
        "Webhook deliveries queued or in backoff."
    );
    describe_gauge!(
        OUTBOX_DEPTH,
        Unit::Count,
        "Entries in an account's receipt or reply outbox."
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest entry in an account's receipt or reply outbox."
    );
    describe_counter!(
        WEBHOOK_FAILURES,
        Unit::Count,
        "Failed webhook POSTs, by reason."
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        Unit::Count,
        "Webhook POST attempts, by outcome."
    );
    describe_counter!(
        CAMPAIGN_WEBHOOK_REFUSED,
        Unit::Count,
        "Webhook requests the campaign service refused (unsigned, malformed, stale, forged), by reason."
    );
    describe_counter!(
        MO_RECEIVED,
        Unit::Count,
        "Mobile-originated messages received."
    );
    describe_counter!(
        INGRESS_ACCEPTED,
        Unit::Count,
        "Messages accepted durably by ingress."
    );
    describe_counter!(
        INGRESS_DUPLICATES,
        Unit::Count,
        "Messages answered with an earlier id because their client_ref repeated."
    );
    describe_counter!(
        INGRESS_REJECTED,
        Unit::Count,
        "Batches rejected by ingress, by reason."
    );
    describe_gauge!(
        SMPP_SERVER_BINDS_UP,
        Unit::Count,
        "SMPP binds of ESMEs to sluice that are up, per account and bind kind."
    );
    describe_counter!(
        SMPP_SERVER_BINDS_REFUSED,
        Unit::Count,
        "Binds refused by the SMPP server, by status."
    );
    describe_counter!(
        SMPP_SERVER_SUBMITS,
        Unit::Count,
        "Submits answered by the SMPP server, per account and command status."
    );
    describe_counter!(
        SMPP_SERVER_THROTTLED,
        Unit::Count,
        "Submits answered ESME_RTHROTTLED by the SMPP server, per account."
    );
    describe_counter!(
        SMPP_SERVER_DELIVERED,
        Unit::Count,
        "Receipts and replies acknowledged by ESMEs over SMPP, per account and kind."
    );
    describe_counter!(
        SMPP_SERVER_ABUSE,
        Unit::Count,
        "SMPP connections or binds refused or closed for abuse, by reason."
    );
    describe_counter!(
        STORE_NO_SPACE,
        Unit::Count,
        "Store writes refused because the disk is full."
    );
    describe_histogram!(
        BATCH_ACCEPT_LATENCY,
        Unit::Seconds,
        "Batch request start to durable acknowledgement."
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "Messages per accepted batch.");
    describe_gauge!(
        STORE_QUEUE_DEPTH,
        Unit::Count,
        "Messages in the store's ready index (due now or later), per channel and lane."
    );
    describe_gauge!(
        STORE_INFLIGHT,
        Unit::Count,
        "Messages leased to a channel (in flight) in the store, per channel."
    );
    describe_counter!(
        STORE_COMMITS,
        Unit::Count,
        "Group commits made by the store writer."
    );
    describe_counter!(STORE_OPS, Unit::Count, "Ops applied by the store writer.");
    describe_counter!(
        STORE_CHECKPOINTS,
        Unit::Count,
        "Durable engine commits that checkpoint the store's redo log."
    );
    describe_counter!(
        STORE_OUTBOX_READS,
        Unit::Count,
        "Receipt outbox reads by the pumps, answered from memory or by the engine."
    );
    describe_counter!(
        STORE_OUTBOX_HELD,
        Unit::Count,
        "Receipt outbox entries held in the store writer's memory (held), and of them those a durable commit later wrote (written)."
    );
    describe_counter!(
        STORE_WRITER_MICROS,
        Unit::Microseconds,
        "Wall time of the store writer thread, by phase (waiting, applying, committing), and of the redo log's thread (logging)."
    );
    describe_counter!(
        STORE_PURGED,
        Unit::Count,
        "Messages removed by the retention purge."
    );
    describe_counter!(
        CANCELLED,
        Unit::Count,
        "Messages ended as cancelled by an emergency stop."
    );
    describe_counter!(
        MMS_CONTENT_MISSING,
        Unit::Count,
        "MMS messages failed at dispatch because their content file was missing."
    );
    describe_gauge!(
        PAUSED,
        Unit::Count,
        "Pause switches that are on, per kind (channel, account)."
    );
}

/// Copies the counts of receipt outbox entries held in memory (`MessageStore::outbox_held`).
pub fn record_outbox_held((held, written): (u64, u64)) {
    counter!(STORE_OUTBOX_HELD, "fate" => "held").absolute(held);
    counter!(STORE_OUTBOX_HELD, "fate" => "written").absolute(written);
}

/// Copies the writer's running totals into the store counters.
pub fn record_store_writer(stats: &crate::store::WriterStats) {
    counter!(STORE_COMMITS).absolute(stats.commits());
    counter!(STORE_OPS).absolute(stats.ops());
    counter!(STORE_CHECKPOINTS).absolute(stats.checkpoints());
    let (memory, engine) = stats.outbox_reads();
    counter!(STORE_OUTBOX_READS, "from" => "memory").absolute(memory);
    counter!(STORE_OUTBOX_READS, "from" => "engine").absolute(engine);
    for phase in crate::store::WriterPhase::ALL {
        // Whole microseconds: a counter holds integers, and the rate is what is read.
        let micros = u64::try_from(stats.time_in(phase).as_micros()).unwrap_or(u64::MAX);
        counter!(STORE_WRITER_MICROS, "phase" => phase.as_str()).absolute(micros);
    }
}

/// Sets the store gauges from `depths`: every lane of every channel in `channels` (config),
/// at 0 when it has nothing queued, and any other channel the store still holds messages for
/// (a channel removed from config keeps showing its backlog).
pub fn record_store_depths(depths: &QueueDepths, channels: &[String]) {
    for channel in channels {
        for lane in Lane::ALL {
            if !depths.ready.contains_key(&(channel.clone(), lane)) {
                gauge!(STORE_QUEUE_DEPTH, LABEL_CHANNEL => channel.clone(), LABEL_LANE => lane.as_str())
                    .set(0.0);
            }
        }
        if !depths.in_flight.contains_key(channel) {
            gauge!(STORE_INFLIGHT, LABEL_CHANNEL => channel.clone()).set(0.0);
        }
    }
    for ((channel, lane), n) in &depths.ready {
        gauge!(STORE_QUEUE_DEPTH, LABEL_CHANNEL => channel.clone(), LABEL_LANE => lane.as_str())
            .set(*n as f64);
    }
    for (channel, n) in &depths.in_flight {
        gauge!(STORE_INFLIGHT, LABEL_CHANNEL => channel.clone()).set(*n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_recorder_renders_described_metrics() {
        let (recorder, handle) = local().expect("constant buckets are valid");
        metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::counter!(INGRESS_ACCEPTED, LABEL_ACCOUNT => "a").increment(3);
            metrics::histogram!(BATCH_ACCEPT_LATENCY).record(0.004);
        });
        let text = handle.render();
        assert!(
            text.contains("sluice_ingress_accepted_total{account=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# HELP sluice_ingress_accepted_total"),
            "{text}"
        );
        assert!(
            text.contains("sluice_batch_accept_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn store_depths_render_per_channel_and_lane() {
        let (recorder, handle) = local().expect("constant buckets are valid");
        let mut d = QueueDepths::default();
        d.ready.insert(("sim".into(), Lane::Otp), 7);
        d.ready.insert(("gone".into(), Lane::Marketing), 2);
        d.in_flight.insert("sim".into(), 3);
        metrics::with_local_recorder(&recorder, || {
            describe();
            record_store_depths(&d, &["sim".to_owned()]);
        });
        let text = handle.render();
        for line in [
            "sluice_store_queue_depth{channel=\"sim\",lane=\"otp\"} 7",
            "sluice_store_queue_depth{channel=\"sim\",lane=\"notification\"} 0",
            "sluice_store_queue_depth{channel=\"sim\",lane=\"marketing\"} 0",
            "sluice_store_queue_depth{channel=\"gone\",lane=\"marketing\"} 2",
            "sluice_store_inflight{channel=\"sim\"} 3",
            "# HELP sluice_store_queue_depth",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("sluice_store_inflight{channel=\"gone\"}"),
            "{text}"
        );
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let all = [
            CHANNEL_QUEUE_DEPTH,
            CHANNEL_SUBMITS,
            CHANNEL_RESPONSES,
            CHANNEL_THROTTLED,
            CHANNEL_RATE,
            CHANNEL_WINDOW_IN_USE,
            CHANNEL_RESPONSE_TIMEOUTS,
            CHANNEL_BINDS_UP,
            CHANNEL_BINDS_DOWN,
            CHANNEL_CONNECT_ATTEMPTS,
            DISPATCH_LEASED,
            DISPATCH_LEASE_WAIT,
            DLR_LATENCY,
            RECEIPTS,
            RECEIPTS_UNMATCHED,
            RECEIPTS_PENDING,
            RECEIPTS_EARLY,
            WEBHOOK_BACKLOG,
            OUTBOX_DEPTH,
            OUTBOX_OLDEST_AGE,
            WEBHOOK_FAILURES,
            WEBHOOK_ATTEMPTS,
            CAMPAIGN_WEBHOOK_REFUSED,
            MO_RECEIVED,
            INGRESS_ACCEPTED,
            INGRESS_DUPLICATES,
            INGRESS_REJECTED,
            SMPP_SERVER_BINDS_UP,
            SMPP_SERVER_BINDS_REFUSED,
            SMPP_SERVER_SUBMITS,
            SMPP_SERVER_THROTTLED,
            SMPP_SERVER_DELIVERED,
            SMPP_SERVER_ABUSE,
            STORE_NO_SPACE,
            BATCH_ACCEPT_LATENCY,
            BATCH_SIZE,
            STORE_QUEUE_DEPTH,
            STORE_INFLIGHT,
            STORE_COMMITS,
            STORE_OPS,
            STORE_PURGED,
        ];
        let mut seen = std::collections::HashSet::new();
        for name in all {
            assert!(name.starts_with("sluice_"), "{name}");
            assert!(seen.insert(name), "duplicate metric name {name}");
        }
    }
}
