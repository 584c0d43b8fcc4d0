//! Contact rules: exclusion lists, recently-marketed, conflicting offers, frequency caps.
//!
//! Rules are applied as bitmap subtractions, in this fixed order; an excluded subscriber is
//! counted once, under the FIRST reason that matches:
//!
//! 1. `blacklist`
//! 2. `graylist`
//! 3. `staff`
//! 4. `do_not_disturb` — lists for the task's channel, and channel-less (all-channel) lists
//! 5. `custom` — any custom list
//! 6. `conflicting_offer` — contacted with, or converted on, an offer that conflicts with
//!    the task's offer within `conflict_days`
//! 7. `recently_marketed` — contacted with the same offer or the same campaign type within
//!    `recent_days` (any channel)
//! 8. `channel_cap` — already `max` contacts on this channel within the cap's period
//! 9. `overall_cap` — already `max` contacts over all non-passive channels within the period
//!
//! Passive channels (`web`) never count toward caps. Rules are applied at launch, again
//! when each slice is first dispatched, and on resume (with the then-current history).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use roaring::RoaringBitmap;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{CampaignError, Result};
use crate::msisdn;
use crate::store::{bitmap_to_blob, blob_to_bitmap};
use crate::table::SubscriberTable;

const DAY: i64 = 86_400;

/// Contact channels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    Mms,
    WapPush,
    /// Passive (banner on a web portal): recorded but never counted toward caps.
    Web,
}

impl Channel {
    /// Stable name (SQLite, API, gateway `kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Mms => "mms",
            Self::WapPush => "wap_push",
            Self::Web => "web",
        }
    }
    /// Passive channels do not count toward frequency caps.
    pub const fn is_passive(self) -> bool {
        matches!(self, Self::Web)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self> {
        [Self::Sms, Self::Mms, Self::WapPush, Self::Web]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| CampaignError::invalid("channel", format!("unknown channel {s:?}")))
    }
}

/// Kinds of exclusion list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Blacklist,
    Graylist,
    Staff,
    DoNotDisturb,
    Custom,
}

impl ListKind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Blacklist => "blacklist",
            Self::Graylist => "graylist",
            Self::Staff => "staff",
            Self::DoNotDisturb => "do_not_disturb",
            Self::Custom => "custom",
        }
    }
}

/// Why a subscriber was excluded, in evaluation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Blacklist,
    Graylist,
    Staff,
    DoNotDisturb,
    Custom,
    ConflictingOffer,
    RecentlyMarketed,
    ChannelCap,
    OverallCap,
}

impl Reason {
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blacklist => "blacklist",
            Self::Graylist => "graylist",
            Self::Staff => "staff",
            Self::DoNotDisturb => "do_not_disturb",
            Self::Custom => "custom",
            Self::ConflictingOffer => "conflicting_offer",
            Self::RecentlyMarketed => "recently_marketed",
            Self::ChannelCap => "channel_cap",
            Self::OverallCap => "overall_cap",
        }
    }
}

/// A frequency cap: at most `max` contacts within `period_days`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cap {
    /// `None`: overall over all non-passive channels.
    pub channel: Option<Channel>,
    pub max: u32,
    pub period_days: u32,
}

/// Contact rules of a bulk send.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ContactPolicy {
    /// Recently-marketed window; 0 disables the rule.
    #[serde(default)]
    pub recent_days: u32,
    /// Conflicting-offer window; 0 disables the rule.
    #[serde(default)]
    pub conflict_days: u32,
    #[serde(default)]
    pub caps: Vec<Cap>,
}

/// What the rules need to know about the task being sent.
#[derive(Debug, Clone)]
pub struct RuleContext<'a> {
    pub channel: Channel,
    pub offer: &'a str,
    pub campaign_type: &'a str,
    pub policy: &'a ContactPolicy,
}

/// Excluded counts per reason (reasons with zero are omitted).
pub type ExclusionCounts = BTreeMap<Reason, u64>;

/// Adds numbers to an exclusion list; returns (added, unknown or invalid numbers).
///
/// `channel` is only meaningful for do-not-disturb (`None` = every channel); `name`
/// distinguishes several custom lists.
///
/// # Errors
/// SQLite failure.
pub fn add_to_list(
    conn: &Connection,
    table: &SubscriberTable,
    kind: ListKind,
    channel: Option<Channel>,
    name: &str,
    numbers: &[&str],
) -> Result<(u64, Vec<String>)> {
    let ch = channel.map_or("", Channel::as_str);
    let key = params![kind.as_str(), ch, name];
    let blob: Option<Vec<u8>> = conn
        .query_row(
            "SELECT members FROM exclusion_lists WHERE kind = ?1 AND channel = ?2 AND name = ?3",
            key,
            |r| r.get(0),
        )
        .optional()?;
    let mut set = match blob {
        Some(b) => blob_to_bitmap(&b, "exclusion_lists", 0)?,
        None => RoaringBitmap::new(),
    };
    let before = set.len();
    let mut rejected = Vec::new();
    for n in numbers {
        match msisdn::normalize(n).ok().and_then(|m| table.id_of(m)) {
            Some(id) => {
                set.insert(id);
            }
            None => rejected.push((*n).to_owned()),
        }
    }
    conn.execute(
        "INSERT OR REPLACE INTO exclusion_lists (kind, channel, name, members) VALUES (?1, ?2, ?3, ?4)",
        params![kind.as_str(), ch, name, bitmap_to_blob(&set)],
    )?;
    Ok((set.len() - before, rejected))
}

fn lists(conn: &Connection, kind: ListKind, channel: Option<Channel>) -> Result<RoaringBitmap> {
    let mut st = conn.prepare(
        "SELECT members FROM exclusion_lists WHERE kind = ?1 AND (channel = '' OR channel = ?2)",
    )?;
    let ch = channel.map_or("", Channel::as_str);
    let mut out = RoaringBitmap::new();
    let rows = st.query_map(params![kind.as_str(), ch], |r| r.get::<_, Vec<u8>>(0))?;
    for b in rows {
        out |= blob_to_bitmap(&b?, "exclusion_lists", 0)?;
    }
    Ok(out)
}

fn ids(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<RoaringBitmap> {
    let mut st = conn.prepare_cached(sql)?;
    let mut out = RoaringBitmap::new();
    let mut q = st.query(p)?;
    while let Some(r) = q.next()? {
        let id: i64 = r.get(0)?;
        if let Ok(id) = u32::try_from(id) {
            out.insert(id);
        }
    }
    Ok(out)
}

fn conflicting_offers(conn: &Connection, offer: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT offer_b FROM offer_conflicts WHERE offer_a = ?1
         UNION SELECT offer_a FROM offer_conflicts WHERE offer_b = ?1",
    )?;
    let rows = st.query_map([offer], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Declares two offers as conflicting (symmetric).
///
/// # Errors
/// SQLite failure.
pub fn add_conflict(conn: &Connection, a: &str, b: &str) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO offer_conflicts (offer_a, offer_b) VALUES (?1, ?2)",
        params![a, b],
    )?;
    Ok(())
}

/// The set of subscribers matching `reason` at `now` (before intersecting with a candidate set).
fn reason_set(
    conn: &Connection,
    ctx: &RuleContext<'_>,
    reason: Reason,
    now: i64,
) -> Result<RoaringBitmap> {
    let p = ctx.policy;
    Ok(match reason {
        Reason::Blacklist => lists(conn, ListKind::Blacklist, None)?,
        Reason::Graylist => lists(conn, ListKind::Graylist, None)?,
        Reason::Staff => lists(conn, ListKind::Staff, None)?,
        Reason::DoNotDisturb => lists(conn, ListKind::DoNotDisturb, Some(ctx.channel))?,
        Reason::Custom => {
            let mut st =
                conn.prepare("SELECT members FROM exclusion_lists WHERE kind = 'custom'")?;
            let mut out = RoaringBitmap::new();
            for b in st.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
                out |= blob_to_bitmap(&b?, "exclusion_lists", 0)?;
            }
            out
        }
        Reason::ConflictingOffer => {
            if p.conflict_days == 0 || ctx.offer.is_empty() {
                return Ok(RoaringBitmap::new());
            }
            let since = now - i64::from(p.conflict_days) * DAY;
            let mut out = RoaringBitmap::new();
            for o in conflicting_offers(conn, ctx.offer)? {
                out |= ids(
                    conn,
                    "SELECT sub_id FROM contacts WHERE at >= ?1 AND offer = ?2",
                    params![since, o],
                )?;
                out |= ids(
                    conn,
                    "SELECT sub_id FROM conversions WHERE at >= ?1 AND offer = ?2",
                    params![since, o],
                )?;
            }
            out
        }
        Reason::RecentlyMarketed => {
            if p.recent_days == 0 {
                return Ok(RoaringBitmap::new());
            }
            let since = now - i64::from(p.recent_days) * DAY;
            ids(
                conn,
                "SELECT sub_id FROM contacts WHERE at >= ?1
                 AND ((offer = ?2 AND ?2 != '') OR (campaign_type = ?3 AND ?3 != ''))",
                params![since, ctx.offer, ctx.campaign_type],
            )?
        }
        Reason::ChannelCap => {
            let mut out = RoaringBitmap::new();
            if ctx.channel.is_passive() {
                return Ok(out);
            }
            for c in p.caps.iter().filter(|c| c.channel == Some(ctx.channel)) {
                let since = now - i64::from(c.period_days) * DAY;
                out |= ids(
                    conn,
                    "SELECT sub_id FROM contacts WHERE at >= ?1 AND channel = ?2
                     GROUP BY sub_id HAVING COUNT(*) >= ?3",
                    params![since, ctx.channel.as_str(), c.max],
                )?;
            }
            out
        }
        Reason::OverallCap => {
            let mut out = RoaringBitmap::new();
            if ctx.channel.is_passive() {
                return Ok(out);
            }
            for c in p.caps.iter().filter(|c| c.channel.is_none()) {
                let since = now - i64::from(c.period_days) * DAY;
                out |= ids(
                    conn,
                    "SELECT sub_id FROM contacts WHERE at >= ?1 AND channel != 'web'
                     GROUP BY sub_id HAVING COUNT(*) >= ?2",
                    params![since, c.max],
                )?;
            }
            out
        }
    })
}

/// All reasons in evaluation order.
pub const ORDER: [Reason; 9] = [
    Reason::Blacklist,
    Reason::Graylist,
    Reason::Staff,
    Reason::DoNotDisturb,
    Reason::Custom,
    Reason::ConflictingOffer,
    Reason::RecentlyMarketed,
    Reason::ChannelCap,
    Reason::OverallCap,
];

/// Applies every rule to `candidates`; returns the kept set and counts per first reason.
///
/// # Errors
/// SQLite failure or a corrupt list BLOB.
pub fn apply(
    conn: &Connection,
    ctx: &RuleContext<'_>,
    candidates: &RoaringBitmap,
    now: i64,
) -> Result<(RoaringBitmap, ExclusionCounts)> {
    let mut kept = candidates.clone();
    let mut counts = ExclusionCounts::new();
    for reason in ORDER {
        if kept.is_empty() {
            break;
        }
        let set = reason_set(conn, ctx, reason, now)?;
        let hit = kept.intersection_len(&set);
        if hit > 0 {
            kept -= &set;
            counts.insert(reason, hit);
        }
    }
    Ok((kept, counts))
}
