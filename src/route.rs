//! Which channel carries a message: by account, message kind and the longest matching
//! destination prefix, with failover when the chosen channel has been down too long.
//!
//! Pure logic: channel health is passed in ([`ChannelHealth`], updated by channel workers), and
//! so is `now`. Destinations and prefixes are compared without a leading `+`, so the caller
//! must hand in destinations already normalised to international digits (`8613800138000`).
//!
//! Specificity, most specific first: longer prefix, then a rule naming accounts, then a rule
//! naming kinds, then the earlier rule in the config.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::store::MessageKind;

/// One routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Accounts it applies to; empty = every account.
    pub accounts: Vec<String>,
    /// Kinds it applies to; empty = every kind an SMS center carries (sms, wap_push). An MMS
    /// goes only by a rule that names `mms` (to an MM7 channel), never by a catch-all rule.
    pub kinds: Vec<MessageKind>,
    /// Destination prefixes (operator number ranges); empty = every destination.
    pub prefixes: Vec<String>,
    /// Primary channel.
    pub channel: String,
    /// Channel used while the primary has been down at least `down_after`.
    pub failover: Option<String>,
    /// How long the primary must be down before failing over.
    pub down_after: Duration,
}

/// Why no channel was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No rule matches.
    #[error("no route for account {account:?}, kind {kind:?}, destination {to:?}")]
    NoRoute {
        /// Account.
        account: String,
        /// Kind.
        kind: MessageKind,
        /// Destination.
        to: String,
    },
}

/// When each channel went down (absent = up). Channel workers mark transitions.
#[derive(Clone, Debug, Default)]
pub struct ChannelHealth {
    down_since: HashMap<String, Timestamp>,
}

impl ChannelHealth {
    /// Records that `channel` is down since `at` (keeps the first time if already down).
    pub fn mark_down(&mut self, channel: &str, at: Timestamp) {
        self.down_since.entry(channel.to_owned()).or_insert(at);
    }

    /// Records that `channel` is up again.
    pub fn mark_up(&mut self, channel: &str) {
        self.down_since.remove(channel);
    }

    /// How long `channel` has been down at `now` (`None` if up).
    pub fn down_for(&self, channel: &str, now: Timestamp) -> Option<Duration> {
        self.down_since
            .get(channel)
            .map(|since| Duration::try_from(now.duration_since(*since)).unwrap_or_default())
    }
}

/// The router's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice<'a> {
    /// Channel to use.
    pub channel: &'a str,
    /// Whether this is the failover of the matched rule.
    pub failover: bool,
}

/// Routing table.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

fn strip_plus(s: &str) -> &str {
    s.strip_prefix('+').unwrap_or(s)
}

impl Router {
    /// A router over `routes` (config order breaks ties).
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The most specific matching rule and the length of the prefix it matched.
    fn best(&self, account: &str, kind: MessageKind, to: &str) -> Option<&Route> {
        let to = strip_plus(to);
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.accounts.is_empty() || r.accounts.iter().any(|a| a == account))
            .filter(|(_, r)| {
                r.kinds.contains(&kind) || (r.kinds.is_empty() && kind != MessageKind::Mms)
            })
            .filter_map(|(i, r)| {
                let len = if r.prefixes.is_empty() {
                    Some(0)
                } else {
                    r.prefixes
                        .iter()
                        .map(|p| strip_plus(p))
                        .filter(|p| to.starts_with(p))
                        .map(str::len)
                        .max()
                }?;
                // Higher is more specific; the negated index makes earlier rules win ties.
                Some((
                    (
                        len,
                        !r.accounts.is_empty(),
                        !r.kinds.is_empty(),
                        usize::MAX - i,
                    ),
                    r,
                ))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r)
    }

    /// Picks the channel for a message at `now`.
    pub fn pick<'a>(
        &'a self,
        account: &str,
        kind: MessageKind,
        to: &str,
        now: Timestamp,
        health: &ChannelHealth,
    ) -> Result<Choice<'a>, RouteError> {
        let r = self
            .best(account, kind, to)
            .ok_or_else(|| RouteError::NoRoute {
                account: account.to_owned(),
                kind,
                to: to.to_owned(),
            })?;
        let primary_out = health
            .down_for(&r.channel, now)
            .is_some_and(|d| d >= r.down_after);
        if primary_out && let Some(f) = &r.failover {
            // Only fail over to a channel that is not itself out.
            let failover_out = health.down_for(f, now).is_some_and(|d| d >= r.down_after);
            if !failover_out {
                return Ok(Choice {
                    channel: f,
                    failover: true,
                });
            }
        }
        Ok(Choice {
            channel: &r.channel,
            failover: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(accounts: &[&str], kinds: &[MessageKind], prefixes: &[&str], ch: &str) -> Route {
        Route {
            accounts: accounts.iter().map(|s| s.to_string()).collect(),
            kinds: kinds.to_vec(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            channel: ch.into(),
            failover: None,
            down_after: Duration::from_secs(60),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn pick<'a>(r: &'a Router, acc: &str, kind: MessageKind, to: &str) -> Option<&'a str> {
        r.pick(acc, kind, to, t(0), &ChannelHealth::default())
            .ok()
            .map(|c| c.channel)
    }

    #[test]
    fn longest_prefix_wins() {
        let r = Router::new(vec![
            route(&[], &[], &[], "default"),
            route(&[], &[], &["86"], "china"),
            route(&[], &[], &["+86138", "86139"], "cmcc"),
        ]);
        assert_eq!(
            pick(&r, "a", MessageKind::Sms, "+8613800138000"),
            Some("cmcc")
        );
        assert_eq!(
            pick(&r, "a", MessageKind::Sms, "8613900000000"),
            Some("cmcc")
        );
        assert_eq!(
            pick(&r, "a", MessageKind::Sms, "+8618600000000"),
            Some("china")
        );
        assert_eq!(
            pick(&r, "a", MessageKind::Sms, "+4915100000000"),
            Some("default")
        );
    }

    #[test]
    fn account_and_kind_filter_and_break_ties() {
        let r = Router::new(vec![
            route(&[], &[], &["86"], "shared"),
            route(&["vip"], &[], &["86"], "vip-line"),
            route(&[], &[MessageKind::Mms], &["86"], "mmsc"),
            route(&[], &[MessageKind::WapPush], &[], "wap"),
        ]);
        assert_eq!(pick(&r, "vip", MessageKind::Sms, "86138"), Some("vip-line"));
        assert_eq!(pick(&r, "other", MessageKind::Sms, "86138"), Some("shared"));
        assert_eq!(pick(&r, "other", MessageKind::Mms, "86138"), Some("mmsc"));
        // A rule without kinds never carries an MMS, however specific it is.
        assert_eq!(pick(&r, "vip", MessageKind::Mms, "86138"), Some("mmsc"));
        assert_eq!(pick(&r, "x", MessageKind::Mms, "1555"), None);
        // Account-specific beats kind-specific at equal prefix length.
        assert_eq!(
            pick(&r, "vip", MessageKind::WapPush, "86138"),
            Some("vip-line")
        );
        // Prefix length beats kind: "86" (len 2) over the kind-only rule (len 0).
        assert_eq!(pick(&r, "x", MessageKind::WapPush, "86138"), Some("shared"));
        assert_eq!(pick(&r, "x", MessageKind::WapPush, "1555"), Some("wap"));
        assert_eq!(pick(&r, "x", MessageKind::Sms, "1555"), None);
        let err = r
            .pick(
                "x",
                MessageKind::Sms,
                "1555",
                t(0),
                &ChannelHealth::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("1555"));
    }

    #[test]
    fn earlier_rule_wins_exact_tie() {
        let r = Router::new(vec![
            route(&[], &[], &["86"], "first"),
            route(&[], &[], &["86"], "second"),
        ]);
        assert_eq!(pick(&r, "a", MessageKind::Sms, "86"), Some("first"));
    }

    #[test]
    fn failover_after_down_after() {
        let mut primary = route(&[], &[], &["86"], "smsc1");
        primary.failover = Some("smsc2".into());
        let r = Router::new(vec![primary]);
        let mut h = ChannelHealth::default();
        let go = |h: &ChannelHealth, at| r.pick("a", MessageKind::Sms, "86138", at, h).unwrap();
        assert_eq!(
            go(&h, t(0)),
            Choice {
                channel: "smsc1",
                failover: false
            }
        );
        h.mark_down("smsc1", t(0));
        h.mark_down("smsc1", t(30)); // keeps the first time
        assert_eq!(go(&h, t(59)).channel, "smsc1");
        assert_eq!(
            go(&h, t(60)),
            Choice {
                channel: "smsc2",
                failover: true
            }
        );
        // Failover also down for long: stay on the primary (its queue waits).
        h.mark_down("smsc2", t(0));
        assert_eq!(go(&h, t(120)).channel, "smsc1");
        h.mark_up("smsc2");
        h.mark_up("smsc1");
        assert_eq!(go(&h, t(200)).channel, "smsc1");
        assert_eq!(h.down_for("smsc1", t(200)), None);
    }
}
