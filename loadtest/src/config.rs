//! Simulator configuration (serde). Usable as the `[simulator]` section of `sluice.toml` or
//! as a standalone file with the same keys at top level; [`SimConfig::from_toml_str`] accepts
//! both. Every default is "a perfect, fast center", so a config only names what it perturbs.
//!
//! ```toml
//! [simulator]
//! tally_path = "tally.json"
//! [[simulator.listener]]
//! protocol = "smpp"
//! addr = "127.0.0.1:2775"
//! accounts = [{ system_id = "esme", password = "pw", max_binds = 4 }]
//! window = 100
//! throughput = 5000
//! latency = { kind = "exponential", mean_ms = 2 }
//! errors = { permanent = 0.01, temporary = 0.02 }
//! dlr = { mix = { DELIVRD = 0.9, UNDELIV = 0.1 }, delay = { kind = "fixed", ms = 50 }, early_share = 0.05 }
//! mo = { rate = 1.0, texts = ["HELP"], reply = [{ contains = "variant-A", probability = 0.3, text = "Y" }] }
//! ```
//!
//! Fault modes (all off by default): `disconnect_probability`, `stall`,
//! `drop_response_share`, `refuse_binds` / `refuse_bind_status`, `dlr.early_share`,
//! `dlr.unknown_share`, `dlr.duplicate`, `throughput` / `burst`; a center that is gone is a
//! simulator shut down and started again on the same address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dist::Delay;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("TOML syntax: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("at `{path}`: {message}")]
    Field { path: String, message: String },
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The whole simulator: listeners plus where to write the tally.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// If set, the tally is written there as JSON on shutdown.
    #[serde(default)]
    pub tally_path: Option<PathBuf>,
    /// Seed for every random choice (errors, DLR mix, delays); `None` = from the OS.
    #[serde(default)]
    pub seed: Option<u64>,
    /// One entry per port.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
}

/// Wire protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// SMPP 3.4 / 5.0 SMSC (server side).
    Smpp,
    /// CMPP 2.0 / 3.0 ISMG (version chosen by the client's CONNECT).
    Cmpp,
    /// MM7 MMSC (HTTP, SOAP in multipart/related): accepts SubmitReq, sends DeliveryReportReq
    /// and DeliverReq to `mm7.vasp_url`. Settings in [`Mm7Config`].
    Mm7,
}

/// An account allowed to bind (SMPP system_id/password; CMPP Source_Addr/shared secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub system_id: String,
    pub password: String,
    /// Concurrent binds allowed for this account (0 = unlimited).
    #[serde(default)]
    pub max_binds: u32,
}

/// Message-id format in submit_sm_resp (receivers must normalise between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// Upper-case hex, e.g. `1A2B3C`.
    #[default]
    Hex,
    /// Plain decimal, e.g. `1715`.
    Decimal,
    /// Decimal zero-padded to 10 digits, e.g. `0000001715`.
    DecimalPadded,
}

/// Share of submits answered with an error instead of accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorConfig {
    /// Share answered with `permanent_status` (client must not retry).
    pub permanent: f64,
    /// Share answered with `temporary_status` (client should retry).
    pub temporary: f64,
    /// SMPP status for permanent errors (default ESME_RINVDSTADR); CMPP uses Result 9.
    pub permanent_status: u32,
    /// SMPP status for temporary errors (default ESME_RSYSERR); CMPP uses Result 8.
    pub temporary_status: u32,
}

impl Default for ErrorConfig {
    fn default() -> Self {
        Self {
            permanent: 0.0,
            temporary: 0.0,
            permanent_status: 0x0B,
            temporary_status: 0x08,
        }
    }
}

/// Delivery receipts the center sends back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlrConfig {
    /// Weight per final state (`DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, `DELETED`, `UNKNOWN`, `ACCEPTD`).
    pub mix: BTreeMap<String, f64>,
    /// Delay after the submit before the receipt is sent.
    pub delay: Delay,
    /// Share of receipts sent BEFORE the submit response (a real race in production).
    pub early_share: f64,
    /// How long the submit response is held back after an early receipt, in ms.
    pub early_lead_ms: u64,
    /// Share of receipts followed by a second receipt for an id this center never gave to
    /// the client (a center confused about whose message it was). Tally: `unknown_receipts`.
    pub unknown_share: f64,
    /// Send every receipt twice, the copy right after the original (a center that repeats
    /// itself). Tally: `duplicate_receipts`.
    pub duplicate: bool,
}

impl Default for DlrConfig {
    fn default() -> Self {
        Self {
            mix: BTreeMap::from([("DELIVRD".to_owned(), 1.0)]),
            delay: Delay::Zero,
            early_share: 0.0,
            early_lead_ms: 20,
            unknown_share: 0.0,
            duplicate: false,
        }
    }
}

/// Answer a submitted message whose text contains `contains` with an MO `text`, with
/// probability `probability` (the campaign demo's per-variant reply rate).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    pub contains: String,
    pub probability: f64,
    #[serde(default = "default_reply_text")]
    pub text: String,
    #[serde(default)]
    pub delay: Delay,
}

fn default_reply_text() -> String {
    "Y".to_owned()
}

/// Mobile-originated messages the center generates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoConfig {
    /// Spontaneous MOs per second over all receiver binds (0 = none).
    pub rate: f64,
    /// Texts for spontaneous MOs, picked at random.
    pub texts: Vec<String>,
    /// Source numbers of spontaneous MOs are this prefix plus random digits.
    pub from_prefix: String,
    /// Destination (service number) of spontaneous MOs.
    pub to: String,
    /// Reply rules, first match wins.
    pub reply: Vec<ReplyRule>,
}

impl Default for MoConfig {
    fn default() -> Self {
        Self {
            rate: 0.0,
            texts: vec!["HELP".to_owned()],
            from_prefix: "86139".to_owned(),
            to: "10086".to_owned(),
            reply: Vec::new(),
        }
    }
}

/// One simulated center on one port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Name used in logs and in the tally.
    pub name: String,
    pub protocol: Protocol,
    /// Where to listen; port 0 picks a free port (see `SimHandle::addrs`).
    pub addr: SocketAddr,
    /// Our system_id in bind responses (SMPP).
    pub system_id: String,
    /// Accounts allowed to bind; empty = anyone, any password.
    pub accounts: Vec<Account>,
    /// Outstanding submits honoured per bind (0 = unlimited); above it: ESME_RMSGQFUL / Result 8.
    pub window: u32,
    /// Submits per second over the whole listener (0 = unlimited); above it: ESME_RTHROTTLED / Result 8.
    pub throughput: f64,
    /// Token-bucket depth for `throughput` (0 = one second's worth / 10, at least 1).
    pub burst: f64,
    /// Delay between reading a submit and writing its response.
    pub latency: Delay,
    pub errors: ErrorConfig,
    pub dlr: DlrConfig,
    pub message_id: IdFormat,
    /// Probability, per accepted submit, of dropping the connection right after accepting it
    /// (its response and anything unsent on that connection are lost).
    pub disconnect_probability: f64,
    /// Accept TCP connections but never answer anything (not even the bind).
    pub stall: bool,
    /// Share of accepted submits whose response is never written: the center keeps the
    /// message (tallied) but the client never learns its id, times out and sends it again.
    /// No receipt goes out for them. 1.0 = bound, but submits never answered. Tally:
    /// `responses_dropped`.
    pub drop_response_share: f64,
    /// Refuse the first this-many binds of the listener (with `refuse_bind_status` for SMPP,
    /// CONNECT Status 3 for CMPP), then accept as usual: a center that refuses the password
    /// for a while. Counted in the tally's `bind_failures`.
    pub refuse_binds: u32,
    /// SMPP command_status of a bind refused by `refuse_binds` (default ESME_RBINDFAIL).
    pub refuse_bind_status: u32,
    /// Resend a receipt or MO whose response never came (the session closed first) on the
    /// account's next receiver bind, as real centers do. On by default.
    pub resend_unanswered: bool,
    pub mo: MoConfig,
    /// MM7 only (`protocol = "mm7"`): the MMSC's HTTP side and its fault modes.
    pub mm7: Mm7Config,
    /// Serve TLS with this certificate and key instead of plaintext (every protocol).
    pub tls: Option<crate::sim::tls::TlsFiles>,
}

/// HTTP basic credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

/// The simulated MMSC (a `protocol = "mm7"` listener). The listener's `latency`, `errors`,
/// `throughput`, `burst`, `window` (in-flight SubmitReqs over the listener), `dlr` (`mix`,
/// `delay`), `message_id`, `stall` and `mo` apply as for the SMSC; `errors` answer with
/// `permanent_status` / `temporary_status`, throughput and window overruns with
/// `throttle_status`. `dlr.early_share` and `disconnect_probability` are SMPP/CMPP only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mm7Config {
    /// Where DeliveryReportReq and DeliverReq are POSTed (the gateway's `/mm7/{channel}`);
    /// none = the MMSC sends neither.
    pub vasp_url: Option<String>,
    /// MM7 namespace of what the MMSC sends (answers use the request's).
    pub namespace: String,
    /// Credentials a VASP must present (HTTP basic); none = open.
    pub auth: Option<BasicAuth>,
    /// Credentials the MMSC presents to `vasp_url`.
    pub vasp_auth: Option<BasicAuth>,
    /// Share of SubmitReqs never answered (the client times out).
    pub timeout_share: f64,
    /// Share of SubmitReqs answered HTTP 503 with no SOAP body.
    pub http_error_share: f64,
    /// Share of SubmitReqs answered after an extra `slow_delay`.
    pub slow_share: f64,
    pub slow_delay: crate::dist::Delay,
    /// MM7 status for `errors.permanent` (2002 address error).
    pub permanent_status: u16,
    /// MM7 status for `errors.temporary` (3001 not possible).
    pub temporary_status: u16,
    /// MM7 status when `throughput` or `window` is exceeded (4006 service unavailable).
    pub throttle_status: u16,
    /// A report or MO not answered with status 1000 within this is sent again.
    pub report_timeout_ms: u64,
    /// Pause before sending an unanswered report or MO again.
    pub resend_after_ms: u64,
    /// Attempts per report or MO before giving up (0 = until shutdown).
    pub max_attempts: u32,
    /// Reports and MOs in flight to the VASP at once.
    pub concurrency: usize,
    /// Largest accepted request body, bytes.
    pub max_body: usize,
}

impl Default for Mm7Config {
    fn default() -> Self {
        Self {
            vasp_url: None,
            namespace: sluice_protocols::mm7::soap::REL_6_MM7_1_4.to_owned(),
            auth: None,
            vasp_auth: None,
            timeout_share: 0.0,
            http_error_share: 0.0,
            slow_share: 0.0,
            slow_delay: crate::dist::Delay::Zero,
            permanent_status: 2002,
            temporary_status: 3001,
            throttle_status: 4006,
            report_timeout_ms: 5_000,
            resend_after_ms: 1_000,
            max_attempts: 10,
            concurrency: 64,
            max_body: 4 << 20,
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            name: "smsc".to_owned(),
            protocol: Protocol::Smpp,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: "sluicesim".to_owned(),
            accounts: Vec::new(),
            window: 0,
            throughput: 0.0,
            burst: 0.0,
            latency: Delay::Zero,
            errors: ErrorConfig::default(),
            dlr: DlrConfig::default(),
            message_id: IdFormat::Hex,
            disconnect_probability: 0.0,
            stall: false,
            drop_response_share: 0.0,
            refuse_binds: 0,
            refuse_bind_status: 0x0D,
            resend_unanswered: true,
            mo: MoConfig::default(),
            mm7: Mm7Config::default(),
            tls: None,
        }
    }
}

impl SimConfig {
    /// Parses either a standalone simulator file or a `sluice.toml` with a `[simulator]` table.
    /// Errors name the offending key path (`listener[0].window`).
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(s)?;
        let value = match table.get("simulator") {
            Some(v) => v.clone(),
            None => toml::Value::Table(table),
        };
        let cfg: Self =
            serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Field {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a file (see [`Self::from_toml_str`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let s = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&s)
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, l) in self.listeners.iter().enumerate() {
            let share = |name: &str, v: f64| {
                if (0.0..=1.0).contains(&v) {
                    Ok(())
                } else {
                    Err(ConfigError::Invalid(format!(
                        "listener[{i}].{name} = {v} is not within 0..=1"
                    )))
                }
            };
            share("errors.permanent", l.errors.permanent)?;
            share("errors.temporary", l.errors.temporary)?;
            share(
                "errors.permanent + errors.temporary",
                l.errors.permanent + l.errors.temporary,
            )?;
            share("dlr.early_share", l.dlr.early_share)?;
            share("disconnect_probability", l.disconnect_probability)?;
            share("drop_response_share", l.drop_response_share)?;
            share("dlr.unknown_share", l.dlr.unknown_share)?;
            share("mm7.timeout_share", l.mm7.timeout_share)?;
            share("mm7.http_error_share", l.mm7.http_error_share)?;
            share("mm7.slow_share", l.mm7.slow_share)?;
            share(
                "mm7.timeout_share + mm7.http_error_share",
                l.mm7.timeout_share + l.mm7.http_error_share,
            )?;
            if l.protocol == Protocol::Mm7 {
                if !sluice_protocols::mm7::soap::is_mm7_namespace(&l.mm7.namespace) {
                    return Err(ConfigError::Invalid(format!(
                        "listener[{i}].mm7.namespace {:?} is not an MM7 schema namespace",
                        l.mm7.namespace
                    )));
                }
                if let Some(url) = &l.mm7.vasp_url
                    && reqwest::Url::parse(url).is_err()
                {
                    return Err(ConfigError::Invalid(format!(
                        "listener[{i}].mm7.vasp_url {url:?} is not a URL"
                    )));
                }
                if l.mm7.concurrency == 0 {
                    return Err(ConfigError::Invalid(format!(
                        "listener[{i}].mm7.concurrency must be at least 1"
                    )));
                }
            }
            for (j, r) in l.mo.reply.iter().enumerate() {
                share(&format!("mo.reply[{j}].probability"), r.probability)?;
            }
            if !(l.throughput >= 0.0 && l.throughput.is_finite()) {
                return Err(ConfigError::Invalid(format!(
                    "listener[{i}].throughput must be >= 0"
                )));
            }
            if !(l.mo.rate >= 0.0 && l.mo.rate.is_finite()) {
                return Err(ConfigError::Invalid(format!(
                    "listener[{i}].mo.rate must be >= 0"
                )));
            }
            for stat in l.dlr.mix.keys() {
                if crate::sim::dlr::Stat::parse(stat).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "listener[{i}].dlr.mix: unknown state {stat:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_section_and_standalone() {
        let inner = "[[listener]]\nprotocol = \"cmpp\"\naddr = \"127.0.0.1:7890\"\nwindow = 16\n";
        let a = SimConfig::from_toml_str(inner).unwrap();
        let b = SimConfig::from_toml_str("[simulator]\n[[simulator.listener]]\nprotocol = \"cmpp\"\naddr = \"127.0.0.1:7890\"\nwindow = 16\n").unwrap();
        assert_eq!(a.listeners[0].window, 16);
        assert_eq!(b.listeners[0].protocol, Protocol::Cmpp);
        assert_eq!(b.listeners[0].addr.port(), 7890);
    }

    #[test]
    fn example_file_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sim.example.toml");
        let cfg = SimConfig::from_file(&path).unwrap();
        assert_eq!(cfg.listeners.len(), 5);
        assert_eq!(cfg.listeners[0].mo.reply.len(), 2);
        assert!(cfg.listeners[2].stall);
        assert_eq!(cfg.listeners[1].refuse_binds, 1);
        assert_eq!(cfg.listeners[1].refuse_bind_status, 0x0D);
        assert!(cfg.listeners[1].dlr.unknown_share > 0.0);
        assert_eq!(cfg.listeners[3].protocol, Protocol::Cmpp);
        assert_eq!(cfg.listeners[4].protocol, Protocol::Mm7);
        assert_eq!(cfg.listeners[4].mm7.resend_after_ms, 500);
    }

    #[test]
    fn mm7_keys_are_checked() {
        let e = SimConfig::from_toml_str(
            "[[listener]]\nprotocol = \"mm7\"\nmm7 = { namespace = \"urn:x\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mm7.namespace"), "{e}");
        let e = SimConfig::from_toml_str(
            "[[listener]]\nprotocol = \"mm7\"\nmm7 = { vasp_url = \"not a url\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("vasp_url"), "{e}");
        let e =
            SimConfig::from_toml_str("[[listener]]\nmm7 = { timeout_share = 2.0 }\n").unwrap_err();
        assert!(e.to_string().contains("mm7.timeout_share"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = SimConfig::from_toml_str("[[listener]]\nwindow = \"ten\"\n").unwrap_err();
        assert!(e.to_string().contains("listener[0].window"), "{e}");
        let e = SimConfig::from_toml_str("[[listener]]\nwindwo = 1\n").unwrap_err();
        assert!(e.to_string().contains("windwo"), "{e}");
        let e =
            SimConfig::from_toml_str("[[listener]]\nerrors = { permanent = 1.5 }\n").unwrap_err();
        assert!(e.to_string().contains("errors.permanent"), "{e}");
        let e = SimConfig::from_toml_str("[[listener]]\ndrop_response_share = 1.5\n").unwrap_err();
        assert!(e.to_string().contains("drop_response_share"), "{e}");
        let e =
            SimConfig::from_toml_str("[[listener]]\ndlr = { unknown_share = -0.1 }\n").unwrap_err();
        assert!(e.to_string().contains("dlr.unknown_share"), "{e}");
        let e = SimConfig::from_toml_str("[[listener]]\ndlr = { mix = { DELIVERED = 1.0 } }\n")
            .unwrap_err();
        assert!(e.to_string().contains("DELIVERED"), "{e}");
    }
}
