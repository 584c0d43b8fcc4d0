//! `[[channels]]`: one outbound channel to one message center, typed per protocol.
//!
//! A channel table is read flat ([`RawChannel`], so unknown keys and wrong types are caught by
//! serde with their line) and then turned into a [`ChannelConfig`] whose [`Protocol`] has one
//! variant per kind this build serves. A key of another kind is refused with its path
//! (`channels[1].interface_version: an smpp key; a cmpp channel does not take it`), so a CMPP
//! channel cannot silently carry SMPP-only settings. `password` is shared by SMPP (bind
//! password) and MM7 (HTTP basic auth toward the MMSC).
//!
//! An MM7 channel names its MMSC with `url`, not `host` / `port` (which SMPP and CMPP
//! require); its typed `host` and `port` are read from the URL.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Checker, ConfigError, check_windows, is_name};

/// Protocol of a channel, as written in `kind`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// SMPP 3.4 / 5.0.
    Smpp,
    /// CMPP 2.0 / 3.0.
    Cmpp,
    /// MM7 (3GPP TS 23.140) over HTTP to an MMSC.
    Mm7,
}

/// How SMPP binds are made.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum BindMode {
    /// One transceiver bind per connection.
    #[default]
    #[serde(rename = "transceiver")]
    Transceiver,
    /// A transmitter and a receiver bind.
    #[serde(rename = "transmitter+receiver", alias = "transmitter_receiver")]
    TransmitterReceiver,
}

/// How a center writes message ids (submit responses or receipts), so that both sides of a
/// receipt match (Kannel's `msg-id-type`). `text` compares ids as opaque, case-insensitive
/// strings — right whenever a center quotes the id exactly as it answered it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdFormatSetting {
    /// Opaque text (default).
    #[default]
    Text,
    /// Base-10 digits (leading zeros ignored).
    Decimal,
    /// Base-16 digits.
    Hex,
}

impl IdFormatSetting {
    /// The codec's id format.
    #[must_use]
    pub const fn format(self) -> sluice_protocols::smpp::IdFormat {
        use sluice_protocols::smpp::IdFormat;
        match self {
            Self::Text => IdFormat::Text,
            Self::Decimal => IdFormat::Decimal,
            Self::Hex => IdFormat::Hex,
        }
    }
}

/// How long messages are split.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Concatenation {
    /// UDH with an 8-bit reference (IE 0x00).
    #[default]
    Udh8,
    /// UDH with a 16-bit reference (IE 0x08).
    Udh16,
    /// SAR TLVs (SMPP only).
    Sar,
}

impl Concatenation {
    /// The codec's scheme.
    #[must_use]
    pub const fn scheme(self) -> sluice_protocols::sms::ConcatScheme {
        use sluice_protocols::sms::ConcatScheme;
        match self {
            Self::Udh8 => ConcatScheme::Udh8,
            Self::Udh16 => ConcatScheme::Udh16,
            Self::Sar => ConcatScheme::Sar,
        }
    }
}

/// CMPP protocol version, written `"2.0"` or `"3.0"`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum CmppVersion {
    /// CMPP 2.0 (Version 0x20): 21-octet terminal ids, 1-octet SUBMIT_RESP Result.
    #[default]
    #[serde(rename = "2.0")]
    V20,
    /// CMPP 3.0 (Version 0x30): 32-octet terminal ids, terminal types, LinkID.
    #[serde(rename = "3.0")]
    V30,
}

impl CmppVersion {
    /// The codec's version.
    #[must_use]
    pub const fn version(self) -> sluice_protocols::cmpp::Version {
        use sluice_protocols::cmpp::Version;
        match self {
            Self::V20 => Version::V20,
            Self::V30 => Version::V30,
        }
    }
}

/// Retry policy for retryable submit failures.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts before the message fails.
    pub max_attempts: u32,
    /// First backoff, ms (doubles per attempt).
    pub backoff_base_ms: u64,
    /// Backoff cap, ms.
    pub backoff_max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
        }
    }
}

impl RetryConfig {
    /// Delay before attempt `attempt + 1` after `attempt` failures (exponential, capped).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.min(63)).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.backoff_base_ms
                .saturating_mul(factor)
                .min(self.backoff_max_ms),
        )
    }
}

/// One `[[channels]]` table as written: every key of every kind, the kind-specific ones
/// optional. [`RawChannel::typed`] checks it and sorts the keys into a [`ChannelConfig`].
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    name: String,
    kind: ChannelKind,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "one")]
    binds: u32,
    #[serde(default)]
    window: Option<u32>,
    #[serde(default = "default_lease_batch")]
    lease_batch: u32,
    rate: u32,
    #[serde(default = "one")]
    burst: u32,
    #[serde(default)]
    windows: Vec<String>,
    #[serde(default)]
    quiet_hours: Vec<String>,
    #[serde(default)]
    retry: RetryConfig,
    /// `timeout_ms` is the name MM7 channels are usually written with.
    #[serde(default = "default_response_timeout", alias = "timeout_ms")]
    response_timeout_ms: u64,
    #[serde(default)]
    enquire_link_secs: Option<u64>,
    #[serde(default)]
    message_id_format: Option<IdFormatSetting>,
    #[serde(default)]
    dlr_id_format: Option<IdFormatSetting>,
    #[serde(default)]
    concatenation: Option<Concatenation>,
    // TLS toward the center
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
    // SMPP
    #[serde(default)]
    system_id: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    system_type: Option<String>,
    #[serde(default)]
    bind_mode: Option<BindMode>,
    #[serde(default)]
    interface_version: Option<u8>,
    // CMPP
    #[serde(default)]
    source_addr: Option<String>,
    #[serde(default)]
    shared_secret: Option<String>,
    #[serde(default)]
    version: Option<CmppVersion>,
    #[serde(default)]
    service_id: Option<String>,
    #[serde(default)]
    src_id: Option<String>,
    #[serde(default)]
    fee_user_type: Option<u8>,
    #[serde(default)]
    fee_type: Option<String>,
    #[serde(default)]
    fee_code: Option<String>,
    #[serde(default)]
    link_id: Option<String>,
    #[serde(default)]
    active_test_misses: Option<u32>,
    // MM7
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    vasp_id: Option<String>,
    #[serde(default)]
    vas_id: Option<String>,
    #[serde(default)]
    service_code: Option<String>,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    delivery_report: Option<bool>,
    #[serde(default)]
    charged_party: Option<String>,
    #[serde(default)]
    max_recipients: Option<u32>,
    #[serde(default)]
    max_content_bytes: Option<u64>,
    #[serde(default)]
    inbound_username: Option<String>,
    #[serde(default)]
    inbound_password_sha256: Option<String>,
}

fn one() -> u32 {
    1
}
fn default_lease_batch() -> u32 {
    256
}
fn default_response_timeout() -> u64 {
    10_000
}

/// An outbound channel to one message center: the settings every kind shares, and the
/// protocol's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Unique name (used in routes and the store).
    pub name: String,
    /// Center host.
    pub host: String,
    /// Center port.
    pub port: u16,
    /// Connections to keep (SMPP: binds, or transmitter + receiver pairs).
    pub binds: u32,
    /// Outstanding requests per connection (SMPP default 10, CMPP 16).
    pub window: u32,
    /// Messages dispatch leases from the store per round trip and lane. Each lease waits its
    /// turn in the store writer's queue (behind the group being fsync'd), so the channel can
    /// go no faster than this many messages per writer cycle.
    pub lease_batch: u32,
    /// Messages per second over all connections.
    pub rate: u32,
    /// Burst.
    pub burst: u32,
    /// Allowed sending windows; empty = any time.
    pub windows: Vec<String>,
    /// Windows in which nothing is sent.
    pub quiet_hours: Vec<String>,
    /// Retries.
    pub retry: RetryConfig,
    /// Response timeout, ms (MM7: the whole HTTP request, answer included).
    pub response_timeout_ms: u64,
    /// Keep-alive interval (enquire_link / ACTIVE_TEST), s.
    pub enquire_link_secs: u64,
    /// Splitting of long messages.
    pub concatenation: Concatenation,
    /// How the center writes ids in submit responses (`text`, `decimal`, `hex`).
    pub message_id_format: IdFormatSetting,
    /// How the center writes ids in delivery receipts.
    pub dlr_id_format: IdFormatSetting,
    /// The protocol and its own settings.
    pub protocol: Protocol,
    /// TLS toward an SMPP or CMPP center (`tls = true`); `None`: plaintext TCP. MM7 channels
    /// take TLS from an `https` url instead.
    pub tls: Option<ChannelTls>,
    /// The private CA certificates of `ca_file`, the only roots trusted for this channel's
    /// TLS (SMPP / CMPP with `tls`, MM7 with an https url); empty: the bundled Mozilla roots.
    pub ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// How a channel checks its center's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelTls {
    /// The name the certificate must carry (`server_name`, else `host`).
    pub server_name: String,
}

/// A channel's protocol, one variant per kind this build serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// SMPP 3.4 / 5.0 to an SMSC.
    Smpp(SmppSettings),
    /// CMPP 2.0 / 3.0 to a China Mobile ISMG.
    Cmpp(CmppSettings),
    /// MM7 over HTTP to an MMSC.
    Mm7(Mm7Settings),
}

/// SMPP-only keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SmppSettings {
    /// system_id (≤ 15 characters).
    pub system_id: String,
    /// Password (≤ 8 characters).
    pub password: String,
    /// system_type (≤ 12 characters, usually empty).
    pub system_type: String,
    /// Bind mode.
    pub bind_mode: BindMode,
    /// interface_version: 0x34 or 0x50.
    pub interface_version: u8,
}

/// CMPP-only keys.
#[derive(Clone, PartialEq, Eq)]
pub struct CmppSettings {
    /// SP enterprise code (Source_Addr of CONNECT, Msg_src of SUBMIT), 1–6 characters.
    pub source_addr: String,
    /// Shared secret of the MD5 authenticator.
    pub shared_secret: String,
    /// 2.0 or 3.0.
    pub version: CmppVersion,
    /// Service_Id (业务代码), ≤ 10 characters.
    pub service_id: String,
    /// Src_Id: the SP service number (e.g. `10658000`); a message's own sender, when it
    /// has one, must start with it (the rest is the extension).
    pub src_id: String,
    /// Fee_UserType: 0 destination, 1 source, 2 SP, 3 Fee_terminal_Id.
    pub fee_user_type: u8,
    /// FeeType: `01` free, `02` per message, `03` monthly, …
    pub fee_type: String,
    /// FeeCode in fen, ≤ 6 digits.
    pub fee_code: String,
    /// LinkID (3.0), ≤ 20 characters.
    pub link_id: String,
    /// ACTIVE_TEST answers missed in a row before the connection is dropped.
    pub active_test_misses: u32,
}

/// MM7-only keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Mm7Settings {
    /// The MMSC's MM7 endpoint (`http` or `https`), where SubmitReqs are POSTed.
    pub url: String,
    /// Basic auth user toward the MMSC; `None` sends no credentials.
    pub username: Option<String>,
    /// Basic auth password toward the MMSC (sent, so kept as written; never logged).
    pub password: Option<String>,
    /// VASPID of SenderIdentification: the operator's id for this service provider.
    pub vasp_id: String,
    /// VASID of SenderIdentification: the service within the provider.
    pub vas_id: String,
    /// ServiceCode (charging code) of every SubmitReq, when the MMSC wants one.
    pub service_code: Option<String>,
    /// SenderAddress when a message has no sender of its own.
    pub sender: Option<String>,
    /// The MM7 schema namespace sent (REL-5-MM7-1-0 … REL-6-MM7-1-4), as a full URI.
    pub namespace: String,
    /// DeliveryReport flag of every SubmitReq: ask the MMSC for delivery reports.
    pub delivery_report: bool,
    /// ChargedParty (Sender, Recipient, Both, Neither, ThirdParty), when set.
    pub charged_party: Option<String>,
    /// Most recipients in one SubmitReq (1 = one recipient per request).
    pub max_recipients: u32,
    /// Largest MMS content accepted for this channel, in bytes of the encoded content
    /// (ingress refuses larger messages with a per-line error).
    pub max_content_bytes: usize,
    /// Basic auth user the MMSC must present on `/mm7/{channel}`.
    pub inbound_username: Option<String>,
    /// SHA-256 of the password the MMSC must present on `/mm7/{channel}` (the password
    /// itself is never stored: the MMSC sends it on every request, like an API key).
    pub inbound_password_sha256: Option<[u8; 32]>,
}

impl fmt::Debug for Mm7Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mm7Settings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("vasp_id", &self.vasp_id)
            .field("vas_id", &self.vas_id)
            .field("service_code", &self.service_code)
            .field("sender", &self.sender)
            .field("namespace", &self.namespace)
            .field("delivery_report", &self.delivery_report)
            .field("charged_party", &self.charged_party)
            .field("max_recipients", &self.max_recipients)
            .field("max_content_bytes", &self.max_content_bytes)
            .field("inbound_username", &self.inbound_username)
            .field(
                "inbound_password_sha256",
                &self.inbound_password_sha256.map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Default `max_content_bytes`: 300 KB, the usual MMSC limit for one MM.
pub const MM7_DEFAULT_MAX_CONTENT_BYTES: usize = 307_200;

impl ChannelConfig {
    /// The kind tag.
    #[must_use]
    pub const fn kind(&self) -> ChannelKind {
        match self.protocol {
            Protocol::Smpp(_) => ChannelKind::Smpp,
            Protocol::Cmpp(_) => ChannelKind::Cmpp,
            Protocol::Mm7(_) => ChannelKind::Mm7,
        }
    }

    /// The largest MMS content this channel takes (bytes), `None` for channels that carry
    /// no MMS. Ingress checks a message's content against it.
    #[must_use]
    pub const fn max_content_bytes(&self) -> Option<usize> {
        match &self.protocol {
            Protocol::Mm7(m) => Some(m.max_content_bytes),
            Protocol::Smpp(_) | Protocol::Cmpp(_) => None,
        }
    }

    /// Response timeout.
    #[must_use]
    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    /// Keep-alive interval.
    #[must_use]
    pub fn enquire_link_interval(&self) -> Duration {
        Duration::from_secs(self.enquire_link_secs)
    }

    /// The login the center knows this channel by (SMPP system_id, CMPP Source_Addr).
    #[must_use]
    pub fn login(&self) -> (&str, &str) {
        match &self.protocol {
            Protocol::Smpp(s) => (&s.system_id, &s.password),
            Protocol::Cmpp(c) => (&c.source_addr, &c.shared_secret),
            Protocol::Mm7(m) => (
                m.username.as_deref().unwrap_or(""),
                m.password.as_deref().unwrap_or(""),
            ),
        }
    }
}

/// Keys every kind takes.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "host",
    "port",
    "binds",
    "window",
    "lease_batch",
    "rate",
    "burst",
    "windows",
    "quiet_hours",
    "retry",
    "response_timeout_ms",
    "enquire_link_secs",
    "message_id_format",
    "dlr_id_format",
    "concatenation",
    "tls",
    "ca_file",
    "server_name",
];
/// Keys only SMPP channels take (`password` is shared with MM7).
pub const SMPP_KEYS: &[&str] = &[
    "system_id",
    "password",
    "system_type",
    "bind_mode",
    "interface_version",
];
/// Keys only CMPP channels take.
pub const CMPP_KEYS: &[&str] = &[
    "source_addr",
    "shared_secret",
    "version",
    "service_id",
    "src_id",
    "fee_user_type",
    "fee_type",
    "fee_code",
    "link_id",
    "active_test_misses",
];
/// Keys only MM7 channels take (besides `password`, listed with SMPP's).
pub const MM7_KEYS: &[&str] = &[
    "url",
    "username",
    "vasp_id",
    "vas_id",
    "service_code",
    "sender",
    "namespace",
    "delivery_report",
    "charged_party",
    "max_recipients",
    "max_content_bytes",
    "inbound_username",
    "inbound_password_sha256",
];

impl RawChannel {
    /// Names of the kind-specific keys present in this table, each with the kind it
    /// belongs to.
    fn present(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let flags = [
            self.system_id.is_some(),
            self.password.is_some(),
            self.system_type.is_some(),
            self.bind_mode.is_some(),
            self.interface_version.is_some(),
        ];
        out.extend(
            SMPP_KEYS
                .iter()
                .zip(flags)
                .filter(|(_, f)| *f)
                .map(|(k, _)| (*k, "smpp")),
        );
        let flags = [
            self.source_addr.is_some(),
            self.shared_secret.is_some(),
            self.version.is_some(),
            self.service_id.is_some(),
            self.src_id.is_some(),
            self.fee_user_type.is_some(),
            self.fee_type.is_some(),
            self.fee_code.is_some(),
            self.link_id.is_some(),
            self.active_test_misses.is_some(),
        ];
        out.extend(
            CMPP_KEYS
                .iter()
                .zip(flags)
                .filter(|(_, f)| *f)
                .map(|(k, _)| (*k, "cmpp")),
        );
        let flags = [
            self.url.is_some(),
            self.username.is_some(),
            self.vasp_id.is_some(),
            self.vas_id.is_some(),
            self.service_code.is_some(),
            self.sender.is_some(),
            self.namespace.is_some(),
            self.delivery_report.is_some(),
            self.charged_party.is_some(),
            self.max_recipients.is_some(),
            self.max_content_bytes.is_some(),
            self.inbound_username.is_some(),
            self.inbound_password_sha256.is_some(),
        ];
        out.extend(
            MM7_KEYS
                .iter()
                .zip(flags)
                .filter(|(_, f)| *f)
                .map(|(k, _)| (*k, "mm7")),
        );
        out
    }

    /// Whether a key owned by `owner` may appear on a channel of `kind`.
    fn takes(kind: &str, key: &str, owner: &str) -> bool {
        owner == kind || (key == "password" && kind == "mm7")
    }

    /// Checks the table and builds the typed channel; `i` is its index for key paths.
    pub(super) fn typed(&self, i: usize, c: &Checker<'_>) -> Result<ChannelConfig, ConfigError> {
        let k = |f: &str| format!("channels[{i}].{f}");
        let kind_name = match self.kind {
            ChannelKind::Smpp => "smpp",
            ChannelKind::Cmpp => "cmpp",
            ChannelKind::Mm7 => "mm7",
        };
        for (key, owner) in self.present() {
            if !Self::takes(kind_name, key, owner) {
                return Err(c.err(
                    k(key),
                    format!("an {owner} key; a {kind_name} channel does not take it"),
                ));
            }
        }
        if !is_name(&self.name) {
            return Err(c.err(k("name"), "must be non-empty, without control characters"));
        }
        let (host, port) = if self.kind == ChannelKind::Mm7 {
            self.mm7_endpoint(&k, c)?
        } else {
            let host = self
                .host
                .clone()
                .ok_or_else(|| c.err(k("host"), format!("must be set for {kind_name}")))?;
            let port = self
                .port
                .ok_or_else(|| c.err(k("port"), format!("must be set for {kind_name}")))?;
            (host, port)
        };
        if host.is_empty() {
            return Err(c.err(k("host"), "must not be empty"));
        }
        if port == 0 {
            return Err(c.err(k("port"), "must not be 0"));
        }
        if self.binds == 0 {
            return Err(c.err(k("binds"), "must be at least 1"));
        }
        let window = self.window.unwrap_or(match self.kind {
            ChannelKind::Cmpp | ChannelKind::Mm7 => 16,
            ChannelKind::Smpp => 10,
        });
        if window == 0 {
            return Err(c.err(k("window"), "must be at least 1"));
        }
        if !(1..=65_536).contains(&self.lease_batch) {
            return Err(c.err(k("lease_batch"), "must be between 1 and 65536"));
        }
        if self.rate == 0 {
            return Err(c.err(k("rate"), "must be greater than 0"));
        }
        if self.burst == 0 {
            return Err(c.err(k("burst"), "must be at least 1"));
        }
        if self.response_timeout_ms == 0 {
            return Err(c.err(k("response_timeout_ms"), "must be greater than 0"));
        }
        let enquire_link_secs = self.enquire_link_secs.unwrap_or(match self.kind {
            // CMPP's recommended ACTIVE_TEST period (T = 180 s in the specification) is
            // long for NATs and load balancers; 60 s keeps idle links open.
            ChannelKind::Cmpp => 60,
            _ => 30,
        });
        if enquire_link_secs == 0 {
            return Err(c.err(k("enquire_link_secs"), "must be greater than 0"));
        }
        if self.retry.max_attempts == 0 {
            return Err(c.err(k("retry.max_attempts"), "must be at least 1"));
        }
        if self.retry.backoff_base_ms == 0 {
            return Err(c.err(k("retry.backoff_base_ms"), "must be greater than 0"));
        }
        if self.retry.backoff_max_ms < self.retry.backoff_base_ms {
            return Err(c.err(
                k("retry.backoff_max_ms"),
                "must not be below backoff_base_ms",
            ));
        }
        check_windows(c, &self.windows, &k("windows"))?;
        check_windows(c, &self.quiet_hours, &k("quiet_hours"))?;
        let concatenation = self.concatenation.unwrap_or_default();
        let protocol = match self.kind {
            ChannelKind::Smpp => Protocol::Smpp(self.smpp(&k, c)?),
            ChannelKind::Cmpp => {
                if concatenation == Concatenation::Sar {
                    return Err(c.err(k("concatenation"), "sar TLVs exist only in SMPP"));
                }
                Protocol::Cmpp(self.cmpp(&k, c)?)
            }
            ChannelKind::Mm7 => Protocol::Mm7(self.mm7(&k, c)?),
        };
        let (tls, ca_roots) = self.tls_settings(&host, &k, c)?;
        // CMPP Msg_Ids are u64 numbers: the channel compares them as decimal unless told.
        let id_default = match self.kind {
            ChannelKind::Cmpp => IdFormatSetting::Decimal,
            _ => IdFormatSetting::Text,
        };
        Ok(ChannelConfig {
            name: self.name.clone(),
            host,
            port,
            binds: self.binds,
            window,
            lease_batch: self.lease_batch,
            rate: self.rate,
            burst: self.burst,
            windows: self.windows.clone(),
            quiet_hours: self.quiet_hours.clone(),
            retry: self.retry.clone(),
            response_timeout_ms: self.response_timeout_ms,
            enquire_link_secs,
            concatenation,
            message_id_format: self.message_id_format.unwrap_or(id_default),
            dlr_id_format: self.dlr_id_format.unwrap_or(id_default),
            protocol,
            tls,
            ca_roots,
        })
    }

    /// `tls`, `server_name` and `ca_file`: checked here, the CA file read once (a missing or
    /// bad file is a start error naming the key).
    #[allow(clippy::type_complexity)]
    fn tls_settings(
        &self,
        host: &str,
        k: &dyn Fn(&str) -> String,
        c: &Checker<'_>,
    ) -> Result<
        (
            Option<ChannelTls>,
            Vec<rustls::pki_types::CertificateDer<'static>>,
        ),
        ConfigError,
    > {
        let https = self
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if self.kind == ChannelKind::Mm7 {
            if self.tls {
                return Err(c.err(k("tls"), "an mm7 channel uses TLS when its url is https"));
            }
            if self.server_name.is_some() {
                return Err(c.err(k("server_name"), "an mm7 channel checks the url's host"));
            }
            if self.ca_file.is_some() && !https {
                return Err(c.err(k("ca_file"), "needs an https url"));
            }
        } else if !self.tls {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("server_name", self.server_name.is_some()),
            ] {
                if set {
                    return Err(c.err(k(key), "needs tls = true"));
                }
            }
        }
        let roots = match &self.ca_file {
            Some(path) => {
                crate::tls::load_ca_file(path).map_err(|e| c.err(k("ca_file"), e.to_string()))?
            }
            None => Vec::new(),
        };
        let tls = if self.tls {
            let server_name = self.server_name.clone().unwrap_or_else(|| host.to_owned());
            if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
                return Err(c.err(
                    k(if self.server_name.is_some() {
                        "server_name"
                    } else {
                        "host"
                    }),
                    "is not a DNS name or IP address a certificate can carry",
                ));
            }
            Some(ChannelTls { server_name })
        } else {
            None
        };
        Ok((tls, roots))
    }

    fn smpp(
        &self,
        k: &dyn Fn(&str) -> String,
        c: &Checker<'_>,
    ) -> Result<SmppSettings, ConfigError> {
        let s = SmppSettings {
            system_id: self.system_id.clone().unwrap_or_default(),
            password: self.password.clone().unwrap_or_default(),
            system_type: self.system_type.clone().unwrap_or_default(),
            bind_mode: self.bind_mode.unwrap_or_default(),
            interface_version: self.interface_version.unwrap_or(0x34),
        };
        if !matches!(s.interface_version, 0x34 | 0x50) {
            return Err(c.err(
                k("interface_version"),
                format!(
                    "0x{:02X} is not SMPP 3.4 (0x34) or 5.0 (0x50)",
                    s.interface_version
                ),
            ));
        }
        // SMPP C-octet string limits, excluding the NUL.
        for (f, v, max) in [
            ("system_id", &s.system_id, 15),
            ("password", &s.password, 8),
            ("system_type", &s.system_type, 12),
        ] {
            if v.len() > max {
                return Err(c.err(k(f), format!("longer than SMPP's {max} characters")));
            }
        }
        if s.system_id.is_empty() {
            return Err(c.err(k("system_id"), "must not be empty for smpp"));
        }
        Ok(s)
    }

    fn cmpp(
        &self,
        k: &dyn Fn(&str) -> String,
        c: &Checker<'_>,
    ) -> Result<CmppSettings, ConfigError> {
        let s = CmppSettings {
            source_addr: self.source_addr.clone().unwrap_or_default(),
            shared_secret: self.shared_secret.clone().unwrap_or_default(),
            version: self.version.unwrap_or_default(),
            service_id: self.service_id.clone().unwrap_or_default(),
            src_id: self.src_id.clone().unwrap_or_default(),
            fee_user_type: self.fee_user_type.unwrap_or(0),
            fee_type: self.fee_type.clone().unwrap_or_else(|| "01".into()),
            fee_code: self.fee_code.clone().unwrap_or_else(|| "000000".into()),
            link_id: self.link_id.clone().unwrap_or_default(),
            active_test_misses: self.active_test_misses.unwrap_or(3),
        };
        if s.source_addr.is_empty() || s.source_addr.len() > 6 || !s.source_addr.is_ascii() {
            return Err(c.err(
                k("source_addr"),
                "the SP code (CMPP Source_Addr) is 1 to 6 ASCII characters",
            ));
        }
        for (f, v, max) in [
            ("service_id", &s.service_id, 10),
            ("src_id", &s.src_id, 21),
            ("link_id", &s.link_id, 20),
        ] {
            if v.len() > max || !v.is_ascii() {
                return Err(c.err(k(f), format!("at most {max} ASCII characters in CMPP")));
            }
        }
        if !s.src_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(c.err(k("src_id"), "the service number is digits only"));
        }
        if s.src_id.is_empty() {
            return Err(c.err(
                k("src_id"),
                "must be the SP service number (e.g. \"10658000\"): every SUBMIT carries it",
            ));
        }
        if s.fee_user_type > 3 {
            return Err(c.err(
                k("fee_user_type"),
                "0 destination, 1 source, 2 SP or 3 fee terminal",
            ));
        }
        if s.fee_type.len() != 2 || !s.fee_type.bytes().all(|b| b.is_ascii_digit()) {
            return Err(c.err(k("fee_type"), "two digits, e.g. \"01\" (free)"));
        }
        if s.fee_code.is_empty()
            || s.fee_code.len() > 6
            || !s.fee_code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(c.err(k("fee_code"), "1 to 6 digits (fen)"));
        }
        if !s.link_id.is_empty() && s.version == CmppVersion::V20 {
            return Err(c.err(k("link_id"), "LinkID exists only in CMPP 3.0"));
        }
        if s.active_test_misses == 0 {
            return Err(c.err(k("active_test_misses"), "must be at least 1"));
        }
        Ok(s)
    }

    /// Host and port of an MM7 channel, from its `url` (which it must have, instead of
    /// `host` / `port`).
    fn mm7_endpoint(
        &self,
        k: &dyn Fn(&str) -> String,
        c: &Checker<'_>,
    ) -> Result<(String, u16), ConfigError> {
        for (key, set) in [("host", self.host.is_some()), ("port", self.port.is_some())] {
            if set {
                return Err(c.err(k(key), "an mm7 channel names its MMSC with `url` instead"));
            }
        }
        let raw = self
            .url
            .as_deref()
            .ok_or_else(|| c.err(k("url"), "must be set for mm7 (the MMSC's MM7 endpoint)"))?;
        let url = reqwest::Url::parse(raw).map_err(|e| c.err(k("url"), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(c.err(k("url"), "must be an http or https URL"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| c.err(k("url"), "has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| c.err(k("url"), "has no port"))?;
        Ok((host, port))
    }

    fn mm7(&self, k: &dyn Fn(&str) -> String, c: &Checker<'_>) -> Result<Mm7Settings, ConfigError> {
        // One HTTP request task per window slot: `window` is the concurrency, so a second
        // dimension of connections would only say the same thing twice.
        if self.binds != 1 {
            return Err(c.err(
                k("binds"),
                "an mm7 channel has no binds; `window` sets its concurrent requests",
            ));
        }
        if self.enquire_link_secs.is_some() {
            return Err(c.err(
                k("enquire_link_secs"),
                "MM7 over HTTP has no keep-alive PDU",
            ));
        }
        if self.concatenation.is_some() {
            return Err(c.err(k("concatenation"), "an MMS is never split"));
        }
        let namespace = match self.namespace.as_deref() {
            None => sluice_protocols::mm7::soap::REL_6_MM7_1_4.to_owned(),
            Some(ns) if ns.starts_with("REL-") => {
                format!("{}{ns}", sluice_protocols::mm7::soap::MM7_SCHEMA_BASE)
            }
            Some(ns) => ns.to_owned(),
        };
        if !sluice_protocols::mm7::soap::is_mm7_namespace(&namespace) {
            return Err(c.err(
                k("namespace"),
                "must name an MM7 schema release REL-5-MM7-1-0 … REL-5-MM7-1-5 or \
                 REL-6-MM7-1-0 … REL-6-MM7-1-4 (the release name or its full URI)",
            ));
        }
        let vasp_id = self.vasp_id.clone().unwrap_or_default();
        if vasp_id.is_empty() {
            return Err(c.err(
                k("vasp_id"),
                "must be set for mm7 (SenderIdentification/VASPID)",
            ));
        }
        if let Some(p) = &self.charged_party
            && !matches!(
                p.as_str(),
                "Sender" | "Recipient" | "Both" | "Neither" | "ThirdParty"
            )
        {
            return Err(c.err(
                k("charged_party"),
                "one of Sender, Recipient, Both, Neither, ThirdParty",
            ));
        }
        if self.username.is_none() && self.password.is_some() {
            return Err(c.err(k("password"), "basic auth needs `username` too"));
        }
        let max_recipients = self.max_recipients.unwrap_or(1);
        if !(1..=1000).contains(&max_recipients) {
            return Err(c.err(k("max_recipients"), "must be between 1 and 1000"));
        }
        let max_content_bytes = match self.max_content_bytes {
            None => MM7_DEFAULT_MAX_CONTENT_BYTES,
            Some(0) => return Err(c.err(k("max_content_bytes"), "must be greater than 0")),
            Some(n) => usize::try_from(n)
                .map_err(|_| c.err(k("max_content_bytes"), "too large for this machine"))?,
        };
        let inbound_password_sha256 = match &self.inbound_password_sha256 {
            None => None,
            Some(hex) => Some(crate::ingress::account::parse_key_hash(hex).map_err(|e| {
                c.err(
                    k("inbound_password_sha256"),
                    format!(
                        "must be the SHA-256 of the password the MMSC sends as 64 hex digits \
                         (printf %s PASSWORD | sha256sum): {e}"
                    ),
                )
            })?),
        };
        if self.inbound_username.is_some() != inbound_password_sha256.is_some() {
            return Err(c.err(
                k(if self.inbound_username.is_some() {
                    "inbound_password_sha256"
                } else {
                    "inbound_username"
                }),
                "inbound basic auth needs both inbound_username and inbound_password_sha256",
            ));
        }
        Ok(Mm7Settings {
            url: self.url.clone().unwrap_or_default(),
            username: self.username.clone(),
            password: self.password.clone(),
            vasp_id,
            vas_id: self.vas_id.clone().unwrap_or_default(),
            service_code: self.service_code.clone().filter(|s| !s.is_empty()),
            sender: self.sender.clone().filter(|s| !s.is_empty()),
            namespace,
            delivery_report: self.delivery_report.unwrap_or(true),
            charged_party: self.charged_party.clone(),
            max_recipients,
            max_content_bytes,
            inbound_username: self.inbound_username.clone(),
            inbound_password_sha256,
        })
    }
}

/// The table as written holds every secret of the channel: only its identity is printed.
impl fmt::Debug for RawChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawChannel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SmppSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmppSettings")
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("bind_mode", &self.bind_mode)
            .field("interface_version", &self.interface_version)
            .finish()
    }
}

impl fmt::Debug for CmppSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmppSettings")
            .field("source_addr", &self.source_addr)
            .field("shared_secret", &"<redacted>")
            .field("version", &self.version)
            .field("service_id", &self.service_id)
            .field("src_id", &self.src_id)
            .field("fee_user_type", &self.fee_user_type)
            .field("fee_type", &self.fee_type)
            .field("fee_code", &self.fee_code)
            .field("link_id", &self.link_id)
            .field("active_test_misses", &self.active_test_misses)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key lists are the struct's fields, no more and no fewer, so the "key of another
    /// kind" check and the documentation test below cover every key.
    #[test]
    fn key_lists_are_the_fields() {
        let raw: RawChannel =
            toml::from_str("name = \"a\"\nkind = \"smpp\"\nhost = \"h\"\nport = 1\nrate = 1")
                .expect("minimal table");
        let value = serde_json::to_value(&raw).expect("json");
        let mut fields: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut listed: Vec<&str> = [COMMON_KEYS, SMPP_KEYS, CMPP_KEYS, MM7_KEYS].concat();
        listed.sort_unstable();
        assert_eq!(fields, listed);
    }

    /// Every key of every kind is documented in the embedded config, set or commented.
    #[test]
    fn every_key_is_documented_in_the_embedded_config() {
        let doc = super::super::EMBEDDED;
        for key in [COMMON_KEYS, SMPP_KEYS, CMPP_KEYS, MM7_KEYS].concat() {
            assert!(
                doc.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key},"))
                }),
                "channels key {key:?} is not documented in config/sluice.toml"
            );
        }
    }
}
