//! The vocabulary of public contact rules: lists, channels, caps, periods and the refusal a
//! rule gives, with their one text form each (API, SQLite, reason strings, metric labels).
//!
//! Msisdns are keyed one way everywhere: [`msisdn_key`] is the campaign service's
//! normalisation (`sluice_campaign::msisdn::normalize`: `+86` / `86` / `0086` prefixes → the
//! 11-digit national mobile number as a `u64`), so a number listed by an operator, a number
//! a campaign excludes and a number a direct client sends to are the same key. A destination
//! that does not normalise (a foreign or short number) cannot be listed and is never refused.

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::store::MessageKind;

/// The rule key of a number an operator lists, with the reason when it is not a national
/// mobile number (see the module doc).
///
/// # Errors
/// The campaign normalisation's [`sluice_campaign::msisdn::MsisdnError`].
pub fn parse_msisdn(raw: &str) -> Result<u64, sluice_campaign::msisdn::MsisdnError> {
    sluice_campaign::msisdn::normalize(raw)
}

/// The rule key of a destination; `None` when it is not a national mobile number (such a
/// destination cannot be listed, so no rule refuses it).
pub fn msisdn_key(raw: &str) -> Option<u64> {
    parse_msisdn(raw).ok()
}

/// The lists an operator keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Never contact (fraud, complaints).
    Blacklist,
    /// Do not contact for marketing until reviewed.
    Graylist,
    /// The subscriber asked not to be contacted (per channel, or on every channel).
    DoNotDisturb,
}

impl ListKind {
    /// Every list, in the order a check looks at them (the first hit names the refusal).
    pub const ALL: [Self; 3] = [Self::Blacklist, Self::Graylist, Self::DoNotDisturb];

    /// Name in the API, SQLite and reason strings.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blacklist => "blacklist",
            Self::Graylist => "graylist",
            Self::DoNotDisturb => "do_not_disturb",
        }
    }

    /// Index into per-list tables.
    pub const fn index(self) -> usize {
        match self {
            Self::Blacklist => 0,
            Self::Graylist => 1,
            Self::DoNotDisturb => 2,
        }
    }
}

impl FromStr for ListKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown list {s:?} (blacklist, graylist, do_not_disturb)"))
    }
}

/// Which way a list edit goes. Adding and removing numbers share one path through the
/// database, the view and the API, so the two can never differ in how they commit, audit or
/// answer; this says where they do differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListEdit {
    /// Put numbers on a list.
    Add,
    /// Take numbers off a list.
    Remove,
}

impl ListEdit {
    /// The audit action recorded for the edit.
    pub const fn action(self) -> &'static str {
        match self {
            Self::Add => "list_add",
            Self::Remove => "list_remove",
        }
    }

    /// The field of the API answer that counts the numbers the edit changed.
    pub const fn counted_as(self) -> &'static str {
        match self {
            Self::Add => "added",
            Self::Remove => "removed",
        }
    }
}

/// A contact channel: the kind of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Plain SMS.
    Sms,
    /// MMS.
    Mms,
    /// WAP Push.
    WapPush,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Self; 3] = [Self::Sms, Self::Mms, Self::WapPush];

    /// Name in the API, SQLite, reason strings and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Mms => "mms",
            Self::WapPush => "wap_push",
        }
    }

    /// The channel a message of `kind` contacts its recipient on.
    pub const fn of_kind(kind: MessageKind) -> Self {
        match kind {
            MessageKind::Sms => Self::Sms,
            MessageKind::Mms => Self::Mms,
            MessageKind::WapPush => Self::WapPush,
        }
    }

    /// Index into per-channel tables (0 is "all channels", see [`scope_slot`]).
    const fn slot(self) -> usize {
        match self {
            Self::Sms => 1,
            Self::Mms => 2,
            Self::WapPush => 3,
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown channel {s:?} (sms, mms, wap_push)"))
    }
}

/// Where a list entry applies: one channel, or every channel (`None`).
pub type Scope = Option<Channel>;

/// Index of a scope in per-scope tables: 0 every channel, then one per channel.
pub const fn scope_slot(scope: Scope) -> usize {
    match scope {
        None => 0,
        Some(c) => c.slot(),
    }
}

/// A scope's text form: the channel name, or `""` for every channel (SQLite key).
pub const fn scope_str(scope: Scope) -> &'static str {
    match scope {
        None => "",
        Some(c) => c.as_str(),
    }
}

/// Why a rule refuses a message. Its `Display` is the reason string the API returns
/// (`blocked: do_not_disturb/sms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The number is on a list, for every channel (`scope` `None`) or for this one.
    Listed {
        /// Which list.
        list: ListKind,
        /// The entry's scope.
        scope: Scope,
    },
    /// The channel's cap is used up.
    ChannelCap(Channel),
    /// The cap over every channel is used up.
    OverallCap,
}

impl Refusal {
    /// The rule's name for the `rule` metric label (bounded set).
    pub const fn rule(self) -> &'static str {
        match self {
            Self::Listed { list, .. } => list.as_str(),
            Self::ChannelCap(_) => "channel_cap",
            Self::OverallCap => "overall_cap",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listed { list, scope: None } => write!(f, "blocked: {}", list.as_str()),
            Self::Listed {
                list,
                scope: Some(c),
            } => write!(f, "blocked: {}/{}", list.as_str(), c.as_str()),
            Self::ChannelCap(c) => write!(f, "blocked: channel_cap/{}", c.as_str()),
            Self::OverallCap => f.write_str("blocked: overall_cap"),
        }
    }
}

/// The span a cap counts over, in local calendar days of the configured zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Today.
    Day,
    /// The current week, Monday to Sunday.
    Week,
    /// The current calendar month.
    Month,
    /// Today and the N−1 days before it (rolling).
    Days(u16),
}

impl Period {
    /// The first day counted when today is `today`.
    pub fn start(self, today: Date) -> Date {
        let back = match self {
            Self::Day => 0,
            Self::Week => i64::from(today.weekday().to_monday_zero_offset()),
            Self::Month => i64::from(today.day()) - 1,
            Self::Days(n) => i64::from(n.max(1)) - 1,
        };
        today
            .checked_sub(jiff::Span::new().days(back))
            .unwrap_or(today)
    }

    /// The most days any period of this kind spans (what counts must be kept for).
    pub const fn max_days(self) -> u16 {
        match self {
            Self::Day => 1,
            Self::Week => 7,
            Self::Month => 31,
            Self::Days(n) => n,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Day => f.write_str("day"),
            Self::Week => f.write_str("week"),
            Self::Month => f.write_str("month"),
            Self::Days(n) => write!(f, "{n}d"),
        }
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            _ => s
                .strip_suffix('d')
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|n| (1..=366).contains(n))
                .map(Self::Days)
                .ok_or_else(|| format!("bad period {s:?} (day, week, month or 1d..366d)")),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// At most `max` delivered contacts per `period`, on one channel or over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    /// The channel counted; absent = every channel (the overall cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Most delivered contacts in the period; the next message is refused once reached.
    pub max: u32,
    /// The period.
    pub period: Period,
}

/// A local date as days since 1970-01-01 (the `day` column of contact counts).
pub fn day_number(d: Date) -> i32 {
    let epoch = Date::constant(1970, 1, 1);
    // A date span's largest unit is days, so this is the whole distance.
    epoch.until(d).map_or(0, |s| s.get_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_rule_and_channel() {
        let dnd = Refusal::Listed {
            list: ListKind::DoNotDisturb,
            scope: Some(Channel::Sms),
        };
        assert_eq!(dnd.to_string(), "blocked: do_not_disturb/sms");
        let black = Refusal::Listed {
            list: ListKind::Blacklist,
            scope: None,
        };
        assert_eq!(black.to_string(), "blocked: blacklist");
        assert_eq!(
            Refusal::ChannelCap(Channel::Sms).to_string(),
            "blocked: channel_cap/sms"
        );
        assert_eq!(Refusal::OverallCap.to_string(), "blocked: overall_cap");
        assert_eq!(dnd.rule(), "do_not_disturb");
    }

    #[test]
    fn one_key_for_every_spelling() {
        for s in [
            "13800138000",
            "+8613800138000",
            "8613800138000",
            "008613800138000",
        ] {
            assert_eq!(msisdn_key(s), Some(13_800_138_000), "{s}");
        }
        assert_eq!(msisdn_key("+447700900123"), None);
    }

    #[test]
    fn periods_parse_and_start_where_operators_expect() {
        let today = Date::constant(2026, 12, 5); // a Saturday
        assert_eq!("day".parse::<Period>().map(|p| p.start(today)), Ok(today));
        assert_eq!(
            "week".parse::<Period>().map(|p| p.start(today)),
            Ok(Date::constant(2026, 11, 30))
        );
        assert_eq!(
            "month".parse::<Period>().map(|p| p.start(today)),
            Ok(Date::constant(2026, 12, 1))
        );
        assert_eq!(
            "10d".parse::<Period>().map(|p| p.start(today)),
            Ok(Date::constant(2026, 11, 26))
        );
        assert!("0d".parse::<Period>().is_err());
        assert!("fortnight".parse::<Period>().is_err());
        assert_eq!(Period::Days(10).to_string(), "10d");
        assert_eq!(day_number(Date::constant(1970, 1, 2)), 1);
    }

    #[test]
    fn caps_round_trip_as_json() {
        let cap: Cap =
            serde_json::from_str(r#"{"channel":"sms","max":4,"period":"month"}"#).expect("cap");
        assert_eq!(
            cap,
            Cap {
                channel: Some(Channel::Sms),
                max: 4,
                period: Period::Month
            }
        );
        let overall: Cap = serde_json::from_str(r#"{"max":10,"period":"30d"}"#).expect("cap");
        assert_eq!(overall.channel, None);
        assert_eq!(
            serde_json::to_string(&overall).expect("json"),
            r#"{"max":10,"period":"30d"}"#
        );
    }
}
