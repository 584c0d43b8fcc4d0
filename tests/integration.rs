//! The gateway's integration tests, one module per former test binary, linked once.
//!
//! Each test binary carries the whole gateway and its dependencies (about 100 MB in a debug
//! build), and with one binary per file the test build outgrew a fresh CI machine's disk: a
//! link died with a bus error. One binary links once. nextest still runs every test in its
//! own process, which the tests need: many install the process-wide metrics recorder and
//! count what they caused, and some measure the process's memory. Plain `cargo test`, which
//! runs a binary's tests as threads of one process, is not supported for this binary.
//! `outbox_alloc` stays its own binary: it swaps the global allocator.
//!
//! Run one former binary's tests with its module as the filter, e.g.
//! `cargo nextest run -p sluice --test integration store_crash::`.

mod channel_common;
mod e2e_support;
#[path = "../protocols/tests/wap_fixtures/mod.rs"]
mod wap_fixtures;

/// The name libtest knows test `name` of `module` (its `module_path!()`) by: the path without
/// the crate's name. Crash tests run one test of this binary again, in a child they kill.
fn test_name(module: &str, name: &str) -> String {
    let (_crate, path) = module
        .split_once("::")
        .expect("a test module below the crate");
    format!("{path}::{name}")
}

mod architecture;
mod campaign_e2e;
mod campaign_stop;
mod center_faults;
mod center_id_reuse;
mod channel_cmpp_interop;
mod channel_dispatch;
mod channel_interop_node;
mod channel_mm7;
mod channel_receipt_ack;
mod channel_sim;
mod config_fuzz;
mod console_browser;
mod crash_campaign;
mod crash_kill9;
mod crash_webhooks;
mod disk_full;
mod e2e_cmpp;
mod e2e_mms;
mod e2e_pipeline;
mod e2e_wap_push;
mod e2e_windows;
mod early_receipts_settled;
mod emergency_stop;
mod ingress_http;
mod ingress_mms;
mod isolation;
mod listener_abuse;
mod mms_mime_interop;
mod mo_routing;
mod no_secret_in_logs;
mod ops_api;
mod public_rules;
mod receipts_counted_once;
mod restart_queued;
mod slow_fsync;
mod smpp_server;
mod smpp_server_interop;
mod smpp_server_kannel;
mod store_compaction;
mod store_config;
mod store_content;
mod store_crash;
mod store_depth;
mod store_durability;
mod store_faults;
mod store_kv_model;
mod store_metrics;
mod store_schedule;
mod store_stop;
mod store_suite;
mod tls;
mod trigger_e2e;
mod webhook_delivery;
mod webhooks;
