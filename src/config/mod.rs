//! Gateway configuration: TOML, parsed with serde (`deny_unknown_fields`) and then validated.
//!
//! Every error names the file, the key path (`channels[0].window`) and the reason, plus the
//! line and column whenever the key (or its nearest present parent) appears in the text. That
//! holds for type errors found while deserialising and for the cross-checks done afterwards
//! (routes name existing channels, windows parse, rates are positive, …).
//!
//! [`Config::embedded`] is `config/sluice.toml`, compiled in: it runs with no file at all.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_campaign::signature::WebhookSecret;

mod channel;
mod limits;
mod runtime;

pub use channel::{
    BindMode, CMPP_KEYS, COMMON_KEYS, ChannelConfig, ChannelKind, ChannelTls, CmppSettings,
    CmppVersion, Concatenation, IdFormatSetting, MM7_DEFAULT_MAX_CONTENT_BYTES, MM7_KEYS,
    Mm7Settings, Protocol, RawChannel, RetryConfig, SMPP_KEYS, SmppSettings,
};

pub use limits::LimitsConfig;
pub use runtime::RuntimeConfig;

use crate::route::{Route, Router};
use crate::schedule::{TimeWindow, WindowRules, parse_windows};
use crate::store::{BackendKind, MessageKind, WriterConfig};

/// The embedded default configuration text.
pub const EMBEDDED: &str = include_str!("../../config/sluice.toml");
/// The plaintext development API key whose SHA-256 the embedded config's `dev` account
/// holds; documented in config/sluice.toml, for localhost use only.
pub const EMBEDDED_DEV_KEY: &str = "sluice-dev-key";

/// Name shown in errors for the embedded config.
pub const EMBEDDED_NAME: &str = "<embedded config/sluice.toml>";

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad syntax, a wrong type, an unknown key or a failed check.
    #[error("{}", Invalid(self))]
    Invalid {
        /// File.
        file: String,
        /// Key path, e.g. `channels[0].window`; empty for syntax errors.
        key: String,
        /// What is wrong.
        reason: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
    },
}

/// Display helper for [`ConfigError::Invalid`].
struct Invalid<'a>(&'a ConfigError);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfigError::Invalid {
            file,
            key,
            reason,
            line,
            column,
        } = self.0
        else {
            return Ok(());
        };
        write!(f, "{file}")?;
        if let Some(l) = line {
            write!(f, ":{l}")?;
            if let Some(c) = column {
                write!(f, ":{c}")?;
            }
        }
        if !key.is_empty() {
            write!(f, ": {key}")?;
        }
        write!(f, ": {reason}")
    }
}

impl ConfigError {
    /// The key path, for `Invalid`.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Read { .. } => None,
        }
    }

    /// The line, for `Invalid` when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => *line,
            Self::Read { .. } => None,
        }
    }
}

fn default_timezone() -> String {
    "Asia/Shanghai".into()
}

/// The whole configuration. Its `Debug` leaves out the raw channel tables and the key index
/// (secrets and key hashes; the typed channels and accounts print theirs redacted).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening addresses.
    #[serde(default)]
    pub listeners: ListenersConfig,
    /// Durable store.
    #[serde(default)]
    pub storage: StorageConfig,
    /// IANA zone for windows and quiet hours.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Client accounts.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// `[[channels]]` as written; [`Config::channels`] is the checked, typed form.
    #[serde(default, rename = "channels")]
    channel_tables: Vec<RawChannel>,
    /// Outbound channels to message centers (set by validation).
    #[serde(skip)]
    pub channels: Vec<ChannelConfig>,
    /// Routing rules.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The embedded simulator.
    #[serde(default)]
    pub simulator: SimulatorConfig,
    /// Webhook client settings (receipts and replies).
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// The hosted campaign service's reply handling.
    #[serde(default)]
    pub campaign: CampaignConfig,
    /// Public contact rules (`src/rules/`).
    #[serde(default)]
    pub rules: RulesConfig,
    /// What the SMPP server and HTTP listeners tolerate from a client (`limits.rs`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The threads `serve` runs its async side on (`runtime.rs`).
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Resolved `timezone` (set by validation).
    #[serde(skip)]
    tz: Option<TimeZone>,
    /// SHA-256 hex → account index (set by validation).
    #[serde(skip)]
    key_index: HashMap<String, usize>,
    /// The channels' and accounts' windows, parsed (set by validation).
    #[serde(skip)]
    parsed_windows: ParsedWindows,
}

/// The windows and quiet hours of `[[channels]]` and `[[accounts]]`, parsed once by
/// validation: placement asks for them for every message it places, and parsing the strings
/// (and finding the channel and account by name) each time was work a batch repeated per
/// line. Names without any are absent, so a message none apply to costs no allocation.
#[derive(Clone, Debug, Default)]
struct ParsedWindows {
    /// Channel name → its allowed windows and its quiet hours.
    channels: HashMap<String, (Vec<TimeWindow>, Vec<TimeWindow>)>,
    /// Account name → its allowed windows.
    accounts: HashMap<String, Vec<TimeWindow>>,
}

impl ParsedWindows {
    fn of(
        channels: &[ChannelConfig],
        accounts: &[AccountConfig],
    ) -> Result<Self, crate::schedule::WindowError> {
        let mut out = Self::default();
        for ch in channels {
            if !ch.windows.is_empty() || !ch.quiet_hours.is_empty() {
                let parsed = (parse_windows(&ch.windows)?, parse_windows(&ch.quiet_hours)?);
                out.channels.insert(ch.name.clone(), parsed);
            }
        }
        for a in accounts.iter().filter(|a| !a.windows.is_empty()) {
            out.accounts
                .insert(a.name.clone(), parse_windows(&a.windows)?);
        }
        Ok(out)
    }
}

/// Where sluice listens.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenersConfig {
    /// HTTP API.
    #[serde(default = "ListenersConfig::default_http")]
    pub http: SocketAddr,
    /// SMPP server for ESMEs (off when absent).
    #[serde(default)]
    pub smpp: Option<SocketAddr>,
    /// Prometheus metrics (off when absent). The documented example binds it to
    /// 127.0.0.1: the metrics carry account and channel names and need no login.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// TLS on the HTTP API (plaintext when absent).
    #[serde(default)]
    pub http_tls: Option<TlsFilesConfig>,
    /// TLS on the SMPP server (plaintext when absent; needs `smpp`).
    #[serde(default)]
    pub smpp_tls: Option<TlsFilesConfig>,
    /// TLS on the metrics listener (plaintext when absent; needs `metrics`).
    #[serde(default)]
    pub metrics_tls: Option<TlsFilesConfig>,
    /// Seconds between two looks at the TLS files' modification times; a changed pair is
    /// loaded for new handshakes without a restart.
    #[serde(default = "ListenersConfig::default_tls_reload_secs")]
    pub tls_reload_secs: u64,
}

/// A listener's certificate and key, PEM files (relative paths are from the working
/// directory). Read at start (a pair that does not load stops the start) and again when
/// either file changes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFilesConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
}

impl TlsFilesConfig {
    /// The files as the TLS module takes them.
    #[must_use]
    pub fn files(&self) -> crate::tls::server::CertFiles {
        crate::tls::server::CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

impl ListenersConfig {
    fn default_http() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    const fn default_tls_reload_secs() -> u64 {
        5
    }
}

impl Default for ListenersConfig {
    fn default() -> Self {
        Self {
            http: Self::default_http(),
            smpp: None,
            metrics: None,
            http_tls: None,
            smpp_tls: None,
            metrics_tls: None,
            tls_reload_secs: Self::default_tls_reload_secs(),
        }
    }
}

/// Durable store settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory.
    pub path: PathBuf,
    /// Engine.
    pub backend: BackendKind,
    /// Longest the writer lingers for more ops before committing, ms.
    pub commit_interval_ms: u64,
    /// Least time between the starts of two group commits, ms (see `WriterConfig::min_spacing`).
    pub commit_min_spacing_ms: u64,
    /// Most spacing the writer adds by itself while it is idle, ms; it shrinks to
    /// `commit_min_spacing_ms` as the writer gets busy (see `WriterConfig::max_spacing`).
    pub commit_max_spacing_ms: u64,
    /// Most ops per group commit.
    pub commit_max_ops: usize,
    /// Ops allowed queued or committing at once (backpressure).
    pub queue_ops: usize,
    /// Final messages are purged this many hours after they end.
    pub retention_hours: u64,
    /// Tag names the store indexes so an emergency stop can name them
    /// (`POST /v1/messages/cancel {"tag": …}`): each costs a write per tagged message.
    pub stop_tags: Vec<String>,
    /// Write the destination index operators' lookup by number reads (a write per message).
    pub index_by_number: bool,
    /// Make commits durable in the redo log under `path/log` (one fsync of an append, while
    /// the writer goes on) rather than in the engine's own commit; the engine checkpoints
    /// every 8 192 ops or second (`WriterConfig::redo_log`).
    pub redo_log: bool,
    /// This gateway's node number (0–255), in every message id it makes; only gateways that
    /// share one clustered store need distinct numbers (`WriterConfig::node`).
    pub node: u8,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let w = WriterConfig::default();
        Self {
            path: PathBuf::from("./data"),
            backend: BackendKind::Redb,
            commit_interval_ms: 0,
            commit_min_spacing_ms: u64::try_from(w.min_spacing.as_millis()).unwrap_or(u64::MAX),
            commit_max_spacing_ms: u64::try_from(w.max_spacing.as_millis()).unwrap_or(u64::MAX),
            commit_max_ops: w.max_ops,
            queue_ops: w.queue_ops,
            retention_hours: 72,
            stop_tags: vec!["task".to_owned()],
            index_by_number: w.index_by_number,
            redo_log: w.redo_log,
            node: w.node,
        }
    }
}

impl StorageConfig {
    /// The writer settings.
    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            max_ops: self.commit_max_ops,
            max_wait: Duration::from_millis(self.commit_interval_ms),
            queue_ops: self.queue_ops,
            min_spacing: Duration::from_millis(self.commit_min_spacing_ms),
            max_spacing: Duration::from_millis(self.commit_max_spacing_ms),
            index_by_number: self.index_by_number,
            redo_log: self.redo_log,
            node: self.node,
            ..WriterConfig::default()
        }
    }

    /// How long final messages are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours.saturating_mul(3600))
    }
}

/// A client account. `Debug` redacts the key hashes, the SMPP password hash and the
/// webhook secret.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Unique name.
    pub name: String,
    /// SHA-256 hex digests of the API keys (never the keys themselves).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Messages per second.
    pub rate: u32,
    /// Burst size.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Senders the account may use; empty = any.
    #[serde(default)]
    pub allowed_senders: Vec<String>,
    /// Sender when a message has none.
    #[serde(default)]
    pub default_sender: Option<String>,
    /// Default receipt webhook.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Where mobile-originated replies are POSTed.
    #[serde(default)]
    pub mo_url: Option<String>,
    /// Key of the `X-Sluice-Signature` HMAC every receipt and reply webhook of the account
    /// carries (at least 16 characters); required with `webhook_url` or `mo_url`. Its
    /// `Debug` is redacted, so printing the config never shows it.
    #[serde(default)]
    pub webhook_secret: Option<WebhookSecret>,
    /// Most receipts (and replies) per webhook POST, as one JSON array; 1 (the default) POSTs
    /// each one alone as a JSON object. Batching trades a little latency for far fewer
    /// requests when a receiver takes thousands of receipts a second.
    #[serde(default = "default_webhook_batch")]
    pub webhook_batch: u32,
    /// How long a batch that is not full may wait for more entries before it is sent, ms
    /// (only with `webhook_batch` > 1).
    #[serde(default)]
    pub webhook_linger_ms: u64,
    /// Allowed sending windows for this account's messages; empty = any time.
    #[serde(default)]
    pub windows: Vec<String>,
    /// SMPP login (system_id) for ESMEs binding to `listeners.smpp`; none = no SMPP access.
    #[serde(default)]
    pub smpp_system_id: Option<String>,
    /// SHA-256 (hex) of the SMPP password; required with `smpp_system_id`.
    #[serde(default)]
    pub smpp_password_sha256: Option<String>,
    /// Most simultaneous SMPP binds of this account.
    #[serde(default = "default_smpp_max_binds")]
    pub smpp_max_binds: u32,
    /// Per-bind window: submits awaiting their response, and deliver_sm awaiting theirs.
    #[serde(default = "default_smpp_window")]
    pub smpp_window: u32,
    /// Service numbers (digits) the account owns: replies to one of them, or to one plus an
    /// extension code, route to this account (longest prefix over every account's senders
    /// and service numbers), and the account may send from `number + extension`. A number
    /// belongs to one account only.
    #[serde(default)]
    pub service_numbers: Vec<String>,
    /// The account is an operator: with its API keys it manages the public contact rules
    /// (`/v1/rules`) and switches pauses (`/v1/channels/{name}/pause`,
    /// `/v1/accounts/{name}/pause`, …).
    #[serde(default)]
    pub operator: bool,
    /// Lane of the messages this account submits over SMPP (SMPP carries no lane): a
    /// marketing ESME sets `marketing`, so the public rules apply to it.
    #[serde(default)]
    pub smpp_lane: crate::store::Lane,
}

/// `[rules]`: which traffic the public contact rules bind.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Lanes the rules never refuse, defer or count (one-time passwords and notices must
    /// reach even a do-not-disturb number).
    pub exempt_lanes: Vec<crate::store::Lane>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            exempt_lanes: vec![crate::store::Lane::Otp, crate::store::Lane::Notification],
        }
    }
}

/// Largest `webhook_batch`: a POST body stays a few hundred kilobytes.
pub const MAX_WEBHOOK_BATCH: u32 = 1000;

fn default_webhook_batch() -> u32 {
    1
}

fn default_smpp_max_binds() -> u32 {
    4
}

fn default_smpp_window() -> u32 {
    64
}

/// `[campaign]`: how the hosted campaign service treats replies.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignConfig {
    /// Reply texts (trimmed, case-insensitive) that unsubscribe the sender: its number goes
    /// on the do-not-disturb list of the channel it was contacted on.
    pub unsubscribe_keywords: Vec<String>,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            unsubscribe_keywords: sluice_campaign::routing::DEFAULT_UNSUBSCRIBE_KEYWORDS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
        }
    }
}

fn default_burst() -> u32 {
    1
}

/// A routing rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Accounts; empty = all.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Kinds; empty = all.
    #[serde(default)]
    pub kinds: Vec<MessageKind>,
    /// Destination prefixes; empty = all.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Channel.
    pub channel: String,
    /// Failover channel.
    #[serde(default)]
    pub failover: Option<String>,
    /// Seconds the primary must be down before failover.
    #[serde(default = "default_down_after")]
    pub down_after_secs: u64,
}

fn default_down_after() -> u64 {
    60
}

/// The in-process simulator.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Start it with `serve`.
    pub enabled: bool,
    /// Port of its SMSC (SMPP) on 127.0.0.1.
    pub port: u16,
    /// Port of its ISMG (CMPP 2.0 / 3.0) on 127.0.0.1, opened when a `cmpp` channel points
    /// at it.
    pub cmpp_port: u16,
    /// Port of its MMSC (MM7 over HTTP) on 127.0.0.1, opened when an `mm7` channel's `url`
    /// points at it; its delivery reports and replies go to that channel's `/mm7/{name}` on
    /// this gateway's HTTP listener.
    pub mm7_port: u16,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: 2775,
            cmpp_port: 7890,
            mm7_port: 8088,
        }
    }
}

/// How webhooks (receipts and replies) are POSTed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// PEM file of private CA certificates trusted for https webhooks, in addition to the
    /// bundled Mozilla roots (relative paths are from the working directory). Read and
    /// checked at start.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file` (set by validation).
    #[serde(skip)]
    ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl WebhooksConfig {
    /// The private CA certificates read from `ca_file` (empty without one).
    pub fn ca_roots(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.ca_roots
    }
}

/// SHA-256 hex (lowercase) of an API key, as stored in `accounts[].api_keys`.
pub fn hash_api_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Byte offset → 1-based (line, column in chars).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// One step of a key path.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some((idx, after)) = rest.split_once(']') {
            if let Ok(i) = idx.parse() {
                out.push(Seg::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// Byte span of the deepest part of `path` present in the document.
fn span_of(text: &str, path: &str) -> Option<std::ops::Range<usize>> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let root_span = root.span();
    let root = toml::de::DeValue::Table(root.into_inner());
    let mut cur = &root;
    let mut span = None;
    for seg in split_path(path) {
        let next = match seg {
            Seg::Key(k) => cur.get(k),
            Seg::Index(i) => cur.get(i),
        };
        match next {
            Some(v) => {
                span = Some(v.span());
                cur = v.get_ref();
            }
            None => break,
        }
    }
    span.or(Some(root_span))
}

/// Collects problems found after deserialisation.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        let key = key.into();
        let (line, column) = span_of(self.text, &key)
            .filter(|s| s.start > 0 || !key.is_empty())
            .map(|s| line_col(self.text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key,
            reason: reason.into(),
            line,
            column,
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('\0') && !s.chars().any(char::is_control)
}

fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len()
}

impl Config {
    /// The embedded default (always valid; a test guards it).
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED, EMBEDDED_NAME)
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let checker = Checker { file, text };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_col(text, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            ConfigError::Invalid {
                file: file.to_owned(),
                key: String::new(),
                reason: e.message().to_owned(),
                line,
                column,
            }
        })?;
        let mut cfg: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            let inner = e.inner();
            let pos = inner.span().map(|s| line_col(text, s.start));
            match pos {
                Some((l, c)) => ConfigError::Invalid {
                    file: file.to_owned(),
                    key,
                    reason: inner.message().to_owned(),
                    line: Some(l),
                    column: Some(c),
                },
                None => checker.err(key, inner.message()),
            }
        })?;
        cfg.validate(&checker)?;
        Ok(cfg)
    }

    fn validate(&mut self, c: &Checker<'_>) -> Result<(), ConfigError> {
        self.tz = Some(
            TimeZone::get(&self.timezone)
                .map_err(|e| c.err("timezone", format!("unknown time zone: {e}")))?,
        );
        let s = &self.storage;
        if s.path.as_os_str().is_empty() {
            return Err(c.err("storage.path", "must not be empty"));
        }
        if s.commit_min_spacing_ms > 1_000 {
            return Err(c.err(
                "storage.commit_min_spacing_ms",
                "must be at most 1000 (every store round trip waits up to this long)",
            ));
        }
        if s.commit_max_spacing_ms > 1_000 {
            return Err(c.err(
                "storage.commit_max_spacing_ms",
                "must be at most 1000 (every store round trip waits up to this long)",
            ));
        }
        if s.commit_max_ops == 0 {
            return Err(c.err("storage.commit_max_ops", "must be at least 1"));
        }
        if s.queue_ops == 0 {
            return Err(c.err("storage.queue_ops", "must be at least 1"));
        }
        if s.retention_hours == 0 {
            return Err(c.err("storage.retention_hours", "must be at least 1"));
        }
        if self.simulator.enabled && self.simulator.port == 0 {
            return Err(c.err("simulator.port", "must not be 0"));
        }
        if self.simulator.enabled
            && (self.simulator.cmpp_port == 0 || self.simulator.cmpp_port == self.simulator.port)
        {
            return Err(c.err(
                "simulator.cmpp_port",
                "must be a port of its own (not 0, not simulator.port)",
            ));
        }
        if self.simulator.enabled
            && [0, self.simulator.port, self.simulator.cmpp_port].contains(&self.simulator.mm7_port)
        {
            return Err(c.err(
                "simulator.mm7_port",
                "must be a port of its own (not 0, not simulator.port or cmpp_port)",
            ));
        }
        let l = &self.listeners;
        if l.tls_reload_secs == 0 {
            return Err(c.err("listeners.tls_reload_secs", "must be at least 1"));
        }
        if l.smpp_tls.is_some() && l.smpp.is_none() {
            return Err(c.err("listeners.smpp_tls", "needs listeners.smpp"));
        }
        if l.metrics_tls.is_some() && l.metrics.is_none() {
            return Err(c.err("listeners.metrics_tls", "needs listeners.metrics"));
        }
        if let Some(path) = &self.webhooks.ca_file {
            self.webhooks.ca_roots = crate::tls::load_ca_file(path)
                .map_err(|e| c.err("webhooks.ca_file", e.to_string()))?;
        }
        if let Some((key, reason)) = self.limits.check() {
            return Err(c.err(format!("limits.{key}"), reason));
        }
        if let Some((key, reason)) = self.runtime.check() {
            return Err(c.err(key, reason));
        }
        self.validate_accounts(c)?;
        for (j, k) in self.campaign.unsubscribe_keywords.iter().enumerate() {
            if k.trim().is_empty() {
                return Err(c.err(
                    format!("campaign.unsubscribe_keywords[{j}]"),
                    "must not be empty",
                ));
            }
        }
        self.validate_channels(c)?;
        self.validate_routes(c)?;
        // Every list parsed when it was checked above, with its key; this keeps the result.
        self.parsed_windows = ParsedWindows::of(&self.channels, &self.accounts)
            .map_err(|e| c.err("windows", e.to_string()))?;
        Ok(())
    }

    fn validate_accounts(&mut self, c: &Checker<'_>) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut smpp_ids = HashSet::new();
        let mut index = HashMap::new();
        let mut numbers: HashMap<&str, &str> = HashMap::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let k = |f: &str| format!("accounts[{i}].{f}");
            if !is_name(&a.name) {
                return Err(c.err(k("name"), "must be non-empty, without control characters"));
            }
            if !names.insert(a.name.as_str()) {
                return Err(c.err(k("name"), format!("duplicate account {:?}", a.name)));
            }
            for (j, h) in a.api_keys.iter().enumerate() {
                let key = format!("accounts[{i}].api_keys[{j}]");
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(c.err(
                        key,
                        "must be the SHA-256 of the key as 64 hex digits (printf %s KEY | sha256sum)",
                    ));
                }
                if index.insert(h.to_ascii_lowercase(), i).is_some() {
                    return Err(c.err(key, "the same API key is listed twice"));
                }
            }
            if a.rate == 0 {
                return Err(c.err(k("rate"), "must be greater than 0"));
            }
            if a.burst == 0 {
                return Err(c.err(k("burst"), "must be at least 1"));
            }
            if let Some(d) = &a.default_sender
                && !a.allowed_senders.is_empty()
                && !a.allowed_senders.contains(d)
            {
                return Err(c.err(
                    k("default_sender"),
                    format!("{d:?} is not in allowed_senders"),
                ));
            }
            for (f, u) in [("webhook_url", &a.webhook_url), ("mo_url", &a.mo_url)] {
                if let Some(u) = u
                    && !is_url(u)
                {
                    return Err(c.err(k(f), format!("{u:?} is not an http(s) URL")));
                }
            }
            if a.webhook_secret.is_none()
                && let Some(f) = [("webhook_url", &a.webhook_url), ("mo_url", &a.mo_url)]
                    .iter()
                    .find_map(|(f, u)| u.as_ref().map(|_| *f))
            {
                return Err(c.err(
                    k("webhook_secret"),
                    format!(
                        "missing: {f} is set and every webhook is signed (X-Sluice-Signature) \
                         so receivers can refuse forged ones; make one with \
                         head -c32 /dev/urandom | base64"
                    ),
                ));
            }
            if a.webhook_batch == 0 || a.webhook_batch > MAX_WEBHOOK_BATCH {
                return Err(c.err(
                    k("webhook_batch"),
                    format!("must be 1 to {MAX_WEBHOOK_BATCH} receipts per POST"),
                ));
            }
            if a.webhook_linger_ms > 60_000 {
                return Err(c.err(k("webhook_linger_ms"), "must be at most 60000 (one minute)"));
            }
            check_windows(c, &a.windows, &k("windows"))?;
            match (&a.smpp_system_id, &a.smpp_password_sha256) {
                (Some(id), Some(h)) => {
                    // SMPP 3.4: system_id is a C-octet string of at most 16 octets.
                    if id.is_empty() || id.len() > 15 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(c.err(
                            k("smpp_system_id"),
                            "must be 1 to 15 printable ASCII characters (SMPP system_id)",
                        ));
                    }
                    if !smpp_ids.insert(id.as_str()) {
                        return Err(c.err(
                            k("smpp_system_id"),
                            format!("{id:?} is already the SMPP login of another account"),
                        ));
                    }
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(c.err(
                            k("smpp_password_sha256"),
                            "must be the SHA-256 of the password as 64 hex digits (printf %s PASSWORD | sha256sum)",
                        ));
                    }
                }
                (Some(_), None) => {
                    return Err(c.err(
                        k("smpp_password_sha256"),
                        "missing: smpp_system_id needs a password hash",
                    ));
                }
                (None, Some(_)) => {
                    return Err(c.err(
                        k("smpp_system_id"),
                        "missing: smpp_password_sha256 is set without a login",
                    ));
                }
                (None, None) => {}
            }
            if a.smpp_max_binds == 0 {
                return Err(c.err(k("smpp_max_binds"), "must be at least 1"));
            }
            if !(1..=10_000).contains(&a.smpp_window) {
                return Err(c.err(k("smpp_window"), "must be between 1 and 10000"));
            }
            for (j, n) in a.service_numbers.iter().enumerate() {
                let key = format!("accounts[{i}].service_numbers[{j}]");
                if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(c.err(key, format!("{n:?} is not 1 to 20 digits")));
                }
                if let Some(owner) = numbers.insert(n, &a.name) {
                    return Err(c.err(key, format!("{n:?} already belongs to account {owner:?}")));
                }
            }
        }
        if self.listeners.smpp.is_some() && smpp_ids.is_empty() {
            // A listener nobody can bind to is a mistake, not a feature: say so at start.
            return Err(c.err(
                "listeners.smpp",
                "is set but no account has smpp_system_id / smpp_password_sha256",
            ));
        }
        self.key_index = index;
        Ok(())
    }

    fn validate_channels(&mut self, c: &Checker<'_>) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut typed = Vec::with_capacity(self.channel_tables.len());
        for (i, raw) in self.channel_tables.iter().enumerate() {
            let ch = raw.typed(i, c)?;
            if !names.insert(ch.name.clone()) {
                return Err(c.err(
                    format!("channels[{i}].name"),
                    format!("duplicate channel {:?}", ch.name),
                ));
            }
            typed.push(ch);
        }
        self.channels = typed;
        Ok(())
    }

    fn validate_routes(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        let channel_exists = |n: &str| self.channels.iter().any(|ch| ch.name == n);
        for (i, r) in self.routes.iter().enumerate() {
            let k = |f: &str| format!("routes[{i}].{f}");
            if !channel_exists(&r.channel) {
                return Err(c.err(k("channel"), format!("no channel named {:?}", r.channel)));
            }
            if let Some(f) = &r.failover {
                if !channel_exists(f) {
                    return Err(c.err(k("failover"), format!("no channel named {f:?}")));
                }
                if *f == r.channel {
                    return Err(c.err(k("failover"), "is the primary channel itself"));
                }
            }
            // MMS travels only over MM7 and MM7 carries only MMS: a route either names kind
            // "mms" alone and MM7 channels, or no MM7 channel at all (a route without kinds
            // never carries an MMS; see `route::Route::kinds`).
            let is_mm7 = |n: &str| {
                self.channels
                    .iter()
                    .any(|ch| ch.name == n && ch.kind() == ChannelKind::Mm7)
            };
            let mms_only = r.kinds == [MessageKind::Mms];
            for (key, name) in std::iter::once(("channel", &r.channel))
                .chain(r.failover.iter().map(|f| ("failover", f)))
            {
                if is_mm7(name) != mms_only {
                    let reason = if mms_only {
                        format!(
                            "channel {name:?} is not an mm7 channel; kind \"mms\" goes only to mm7 channels"
                        )
                    } else {
                        format!("{name:?} is an mm7 channel: its route must set kinds = [\"mms\"]")
                    };
                    return Err(c.err(k(key), reason));
                }
            }
            if !mms_only && r.kinds.contains(&MessageKind::Mms) {
                return Err(c.err(
                    k("kinds"),
                    "\"mms\" goes only to mm7 channels: give it a route of its own",
                ));
            }
            for (j, a) in r.accounts.iter().enumerate() {
                if !self.accounts.iter().any(|acc| acc.name == *a) {
                    return Err(c.err(
                        format!("routes[{i}].accounts[{j}]"),
                        format!("no account named {a:?}"),
                    ));
                }
            }
            for (j, p) in r.prefixes.iter().enumerate() {
                let digits = p.strip_prefix('+').unwrap_or(p);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(c.err(
                        format!("routes[{i}].prefixes[{j}]"),
                        format!("{p:?} is not a digit prefix"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The resolved time zone.
    pub fn time_zone(&self) -> TimeZone {
        self.tz
            .clone()
            .or_else(|| TimeZone::get(&self.timezone).ok())
            .unwrap_or(TimeZone::UTC)
    }

    /// The account an API key belongs to (the key is hashed, never stored).
    pub fn account_for_key(&self, key: &str) -> Option<&AccountConfig> {
        self.key_index
            .get(&hash_api_key(key))
            .and_then(|&i| self.accounts.get(i))
    }

    /// An account by name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The routing table.
    pub fn router(&self) -> Router {
        Router::new(
            self.routes
                .iter()
                .map(|r| Route {
                    accounts: r.accounts.clone(),
                    kinds: r.kinds.clone(),
                    prefixes: r.prefixes.clone(),
                    channel: r.channel.clone(),
                    failover: r.failover.clone(),
                    down_after: Duration::from_secs(r.down_after_secs),
                })
                .collect(),
        )
    }

    /// Window rules for a message on `channel` from `account` with its own optional window.
    /// Names that do not exist, or have no windows, contribute nothing (an empty set of
    /// allowed windows restricts nothing); a bad message window is an error.
    pub fn window_rules(
        &self,
        channel: &str,
        account: &str,
        message_window: Option<&str>,
    ) -> Result<WindowRules, crate::schedule::WindowError> {
        let mut rules = WindowRules::default();
        if let Some((allowed, quiet)) = self.parsed_windows.channels.get(channel) {
            if !allowed.is_empty() {
                rules.allowed.push(allowed.clone());
            }
            rules.quiet.clone_from(quiet);
        }
        if let Some(allowed) = self.parsed_windows.accounts.get(account) {
            rules.allowed.push(allowed.clone());
        }
        if let Some(w) = message_window {
            rules.allowed.push(vec![w.parse::<TimeWindow>()?]);
        }
        Ok(rules)
    }
}

fn check_windows(c: &Checker<'_>, list: &[String], key: &str) -> Result<(), ConfigError> {
    for (j, w) in list.iter().enumerate() {
        if let Err(e) = w.parse::<TimeWindow>() {
            return Err(c.err(format!("{key}[{j}]"), e.to_string()));
        }
    }
    Ok(())
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listeners", &self.listeners)
            .field("storage", &self.storage)
            .field("timezone", &self.timezone)
            .field("accounts", &self.accounts)
            .field("channels", &self.channels)
            .field("routes", &self.routes)
            .field("simulator", &self.simulator)
            .field("webhooks", &self.webhooks)
            .field("campaign", &self.campaign)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const R: &str = "<redacted>";
        f.debug_struct("AccountConfig")
            .field("name", &self.name)
            .field(
                "api_keys",
                &self.api_keys.iter().map(|_| R).collect::<Vec<_>>(),
            )
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("allowed_senders", &self.allowed_senders)
            .field("default_sender", &self.default_sender)
            .field("webhook_url", &self.webhook_url)
            .field("mo_url", &self.mo_url)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| R))
            .field("windows", &self.windows)
            .field("smpp_system_id", &self.smpp_system_id)
            .field(
                "smpp_password_sha256",
                &self.smpp_password_sha256.as_ref().map(|_| R),
            )
            .field("smpp_max_binds", &self.smpp_max_binds)
            .field("smpp_window", &self.smpp_window)
            .field("service_numbers", &self.service_numbers)
            .field("operator", &self.operator)
            .field("smpp_lane", &self.smpp_lane)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_splitting() {
        let segs = split_path("channels[0].retry.max_attempts");
        assert_eq!(segs.len(), 4);
        assert!(matches!(segs[1], Seg::Index(0)));
        assert!(matches!(segs[3], Seg::Key("max_attempts")));
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }

    #[test]
    fn storage_commit_knobs_reach_the_writer_and_are_bounded() {
        let cfg = Config::parse(
            "[storage]\ncommit_min_spacing_ms = 5\ncommit_interval_ms = 1\n",
            "t.toml",
        )
        .expect("valid");
        let w = cfg.storage.writer();
        assert_eq!(w.min_spacing, Duration::from_millis(5));
        assert_eq!(w.max_wait, Duration::from_millis(1));
        let e = Config::parse("[storage]\ncommit_min_spacing_ms = 5000\n", "t.toml")
            .expect_err("too long");
        assert_eq!(e.key(), Some("storage.commit_min_spacing_ms"));
    }

    #[test]
    fn runtime_worker_counts_are_read_and_bounded() {
        let cfg = Config::parse(
            "[runtime]\nworker_threads = 3\ncampaign_worker_threads = 2\n",
            "t.toml",
        )
        .expect("valid");
        assert_eq!(cfg.runtime.gateway_workers(8), 3);
        assert_eq!(cfg.runtime.campaign_workers(), 2);
        assert_eq!(
            Config::embedded()
                .expect("valid")
                .runtime
                .gateway_workers(2),
            1
        );
        let e = Config::parse("[runtime]\nworker_threads = 0\n", "t.toml").expect_err("zero");
        assert_eq!(e.key(), Some("runtime.worker_threads"));
        let e = Config::parse("[runtime]\nthreads = 2\n", "t.toml").expect_err("unknown");
        assert_eq!(e.line(), Some(2));
    }

    #[test]
    fn webhooks_ca_file_is_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let text = format!(
            "[webhooks]\nca_file = {:?}\n",
            missing.display().to_string()
        );
        let e = Config::parse(&text, "t.toml").expect_err("missing CA file");
        assert_eq!(e.key(), Some("webhooks.ca_file"));
        assert_eq!(e.line(), Some(2));
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").expect("write");
        let text = format!("[webhooks]\nca_file = {:?}\n", bad.display().to_string());
        let e = Config::parse(&text, "t.toml").expect_err("no certificate");
        assert_eq!(e.key(), Some("webhooks.ca_file"));
        let e = Config::parse("[webhooks]\ncafile = \"x\"\n", "t.toml").expect_err("unknown key");
        assert!(e.to_string().contains("cafile"), "{e}");
        let ok = Config::parse("timezone = \"UTC\"\n", "t.toml").expect("no [webhooks]");
        assert!(ok.webhooks.ca_roots().is_empty());
    }

    #[test]
    fn webhook_batch_and_linger_are_bounded_and_default_to_one_per_post() {
        let acct = |extra: &str| format!("[[accounts]]\nname = \"a\"\nrate = 1\n{extra}\n");
        let ok = Config::parse(&acct(""), "t.toml").expect("valid");
        assert_eq!(
            (
                ok.accounts[0].webhook_batch,
                ok.accounts[0].webhook_linger_ms
            ),
            (1, 0)
        );
        let ok = Config::parse(
            &acct("webhook_batch = 1000\nwebhook_linger_ms = 50"),
            "t.toml",
        )
        .expect("valid");
        assert_eq!(ok.accounts[0].webhook_batch, 1000);
        for (extra, key) in [
            ("webhook_batch = 0", "accounts[0].webhook_batch"),
            ("webhook_batch = 1001", "accounts[0].webhook_batch"),
            ("webhook_linger_ms = 60001", "accounts[0].webhook_linger_ms"),
        ] {
            let e = Config::parse(&acct(extra), "t.toml").expect_err(extra);
            assert_eq!(e.key(), Some(key), "{extra}");
        }
    }

    #[test]
    fn smpp_login_keys_are_checked_and_named() {
        let h = hash_api_key("pw");
        let acct = |extra: &str| format!("[[accounts]]\nname = \"a\"\nrate = 1\n{extra}\n");
        let ok = Config::parse(
            &format!(
                "[listeners]\nsmpp = \"127.0.0.1:0\"\n{}",
                acct(&format!(
                    "smpp_system_id = \"esme\"\nsmpp_password_sha256 = \"{h}\""
                ))
            ),
            "t.toml",
        )
        .expect("valid");
        assert_eq!(ok.accounts[0].smpp_max_binds, 4);
        assert_eq!(ok.accounts[0].smpp_window, 64);
        for (extra, key) in [
            (
                "smpp_system_id = \"esme\"",
                "accounts[0].smpp_password_sha256",
            ),
            (
                "smpp_system_id = \"esme\"\nsmpp_password_sha256 = \"xyz\"",
                "accounts[0].smpp_password_sha256",
            ),
            (
                &format!("smpp_system_id = \"waytoolongsystemid\"\nsmpp_password_sha256 = \"{h}\""),
                "accounts[0].smpp_system_id",
            ),
            ("smpp_window = 0", "accounts[0].smpp_window"),
            ("smpp_max_binds = 0", "accounts[0].smpp_max_binds"),
        ] {
            let e = Config::parse(&acct(extra), "t.toml").expect_err(extra);
            assert_eq!(e.key(), Some(key), "{extra}: {e}");
        }
        // A listener nobody can bind to is refused.
        let e = Config::parse(
            &format!("[listeners]\nsmpp = \"127.0.0.1:0\"\n{}", acct("")),
            "t.toml",
        )
        .expect_err("no login");
        assert_eq!(e.key(), Some("listeners.smpp"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryConfig::default();
        assert_eq!(r.backoff(0), Duration::from_secs(1));
        assert_eq!(r.backoff(3), Duration::from_secs(8));
        assert_eq!(r.backoff(40), Duration::from_secs(300));
        assert_eq!(r.backoff(u32::MAX), Duration::from_secs(300));
    }
}
