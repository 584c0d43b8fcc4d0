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
    /// Reserved for the MM7 MMSC (not implemented yet; rejected at start).
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
}

impl Default for DlrConfig {
    fn default() -> Self {
        Self {
            mix: BTreeMap::from([("DELIVRD".to_owned(), 1.0)]),
            delay: Delay::Zero,
            early_share: 0.0,
            early_lead_ms: 20,
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
    /// Accept TCP connections but never answer anything.
    pub stall: bool,
    /// Resend a receipt or MO whose response never came (the session closed first) on the
    /// account's next receiver bind, as real centers do. On by default.
    pub resend_unanswered: bool,
    pub mo: MoConfig,
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
            resend_unanswered: true,
            mo: MoConfig::default(),
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
        assert_eq!(cfg.listeners.len(), 4);
        assert_eq!(cfg.listeners[0].mo.reply.len(), 2);
        assert!(cfg.listeners[2].stall);
        assert_eq!(cfg.listeners[3].protocol, Protocol::Cmpp);
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
        let e = SimConfig::from_toml_str("[[listener]]\ndlr = { mix = { DELIVERED = 1.0 } }\n")
            .unwrap_err();
        assert!(e.to_string().contains("DELIVERED"), "{e}");
    }
}
