//! `[limits]`: what the listeners tolerate from a client before they answer "no" or hang up.
//!
//! Why a table of its own: these numbers bound what one hostile or broken client can cost
//! (memory, sockets, account lockouts) and operators tune them per deployment; the defaults
//! are sane for a gateway facing a handful of ESMEs and API clients.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits of the SMPP server and the HTTP listeners.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// SMPP: a connection that has not bound this long after connecting is closed, ms
    /// (slowloris before bind).
    pub smpp_bind_timeout_ms: u64,
    /// SMPP: a PDU started but not finished, with no byte for this long, closes the
    /// connection, ms (half-sent PDUs).
    pub smpp_read_timeout_ms: u64,
    /// SMPP: requests answered `ESME_RINVBNDSTS` before a bind; the next one closes the
    /// connection (PDU floods before bind).
    pub smpp_max_unbound_requests: u32,
    /// SMPP: open connections from one IP address at once; more are closed on accept.
    pub smpp_max_connections_per_ip: u32,
    /// SMPP: bind attempts from one IP address per second; more are answered
    /// `ESME_RBINDFAIL` and closed.
    pub smpp_binds_per_ip_per_sec: u32,
    /// SMPP: failed binds from one IP address that lock it out.
    pub smpp_lockout_failures: u32,
    /// SMPP: how long a locked-out IP address gets `ESME_RBINDFAIL` for every bind, s.
    pub smpp_lockout_secs: u64,
    /// HTTP: most header fields in one request; more → 431.
    pub http_max_headers: usize,
    /// HTTP: most bytes of a request head (request line and headers); more → 431.
    pub http_max_header_bytes: usize,
    /// HTTP: a request head not complete this long after it began closes the connection, ms
    /// (slowloris on HTTP).
    pub http_header_read_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            smpp_bind_timeout_ms: 10_000,
            smpp_read_timeout_ms: 30_000,
            smpp_max_unbound_requests: 10,
            smpp_max_connections_per_ip: 64,
            smpp_binds_per_ip_per_sec: 20,
            smpp_lockout_failures: 10,
            smpp_lockout_secs: 300,
            http_max_headers: 100,
            http_max_header_bytes: 64 * 1024,
            http_header_read_timeout_ms: 10_000,
        }
    }
}

impl LimitsConfig {
    /// `smpp_bind_timeout_ms` as a duration.
    pub fn smpp_bind_timeout(&self) -> Duration {
        Duration::from_millis(self.smpp_bind_timeout_ms)
    }

    /// `smpp_read_timeout_ms` as a duration.
    pub fn smpp_read_timeout(&self) -> Duration {
        Duration::from_millis(self.smpp_read_timeout_ms)
    }

    /// `http_header_read_timeout_ms` as a duration.
    pub fn http_header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_read_timeout_ms)
    }

    /// The first key whose value cannot work, with the reason.
    pub(crate) fn check(&self) -> Option<(&'static str, &'static str)> {
        if self.smpp_bind_timeout_ms == 0 {
            return Some(("smpp_bind_timeout_ms", "must be positive"));
        }
        if self.smpp_read_timeout_ms == 0 {
            return Some(("smpp_read_timeout_ms", "must be positive"));
        }
        if self.smpp_max_connections_per_ip == 0 {
            return Some(("smpp_max_connections_per_ip", "must be positive"));
        }
        if self.smpp_binds_per_ip_per_sec == 0 {
            return Some(("smpp_binds_per_ip_per_sec", "must be positive"));
        }
        if self.smpp_lockout_failures == 0 {
            return Some(("smpp_lockout_failures", "must be positive"));
        }
        if self.http_max_headers == 0 {
            return Some(("http_max_headers", "must be positive"));
        }
        // hyper refuses a read buffer under 8 KiB.
        if self.http_max_header_bytes < 8192 {
            return Some(("http_max_header_bytes", "must be at least 8192"));
        }
        if self.http_header_read_timeout_ms == 0 {
            return Some(("http_header_read_timeout_ms", "must be positive"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_unworkable_values_name_their_key() {
        assert_eq!(LimitsConfig::default().check(), None);
        let l = LimitsConfig {
            smpp_read_timeout_ms: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(l.check().map(|c| c.0), Some("smpp_read_timeout_ms"));
        let l = LimitsConfig {
            http_max_header_bytes: 4096,
            ..LimitsConfig::default()
        };
        assert_eq!(l.check().map(|c| c.0), Some("http_max_header_bytes"));
    }

    /// The commented `[limits]` block of config/sluice.toml shows the real defaults.
    #[test]
    fn the_documented_values_are_the_defaults() {
        let block: String = crate::config::EMBEDDED
            .lines()
            .skip_while(|l| l.trim() != "# [limits]")
            .skip(1)
            .take_while(|l| l.starts_with("# ") && l.contains(" = "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert!(block.lines().count() >= 10, "{block}");
        let documented: LimitsConfig = toml::from_str(&block).expect("documented block parses");
        assert_eq!(documented, LimitsConfig::default());
    }
}
