//! Contact rules: exclusion lists, recently-marketed, conflicting offers, frequency caps.
//!
//! Rules are applied as bitmap subtractions, in this fixed order; an excluded subscriber is
//! counted once, under the FIRST reason that matches:
//!
//! 1. `blacklist`
//! 2. `graylist`
//! 3. `staff`
//! 4. `do_not_disturb` — lists for the task's channel, and channel-less (all-channel) lists
//! 5. `custom` — the custom lists the bulk send names (`custom_lists` of its spec); a custom
//!    list applies to no other task
//! 6. `conflicting_offer` — contacted with, or converted on, an offer that conflicts with
//!    the task's offer within `conflict_days`
//! 7. `recently_marketed` — contacted with the same offer or the same campaign type within
//!    `recent_days` (any channel)
//! 8. `channel_cap` — already `max` contacts on this channel within the cap's period
//! 9. `overall_cap` — already `max` contacts over all non-passive channels within the period
//!
//! Passive channels (`web`) never count toward caps. Rules are applied at launch, again
//! when each slice is first dispatched, and on resume (with the then-current history).
//!
//! Lists hold normalised msisdns (`list_numbers`), not subscriber ids, and are resolved
//! against the subscriber table at evaluation: a number listed before its subscriber row
//! exists is excluded from the first launch after it is imported. Lists of the older
//! id-only form are folded into numbers when the service opens ([`fold_legacy_members`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use roaring::RoaringBitmap;
use rusqlite::{Connection, params};

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

impl FromStr for ListKind {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self> {
        [
            Self::Blacklist,
            Self::Graylist,
            Self::Staff,
            Self::DoNotDisturb,
            Self::Custom,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| {
            CampaignError::invalid(
                "kind",
                format!(
                    "unknown list kind {s:?} (blacklist, graylist, staff, do_not_disturb, custom)"
                ),
            )
        })
    }
}

impl ListKind {
    /// Stable name (SQLite, API path).
    pub const fn as_str(self) -> &'static str {
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
    /// Names of the custom lists this bulk send applies (its spec's `custom_lists`).
    pub custom_lists: &'a [String],
    /// Resolves listed numbers to subscribers at evaluation.
    pub table: &'a SubscriberTable,
}

/// Excluded counts per reason (reasons with zero are omitted).
pub type ExclusionCounts = BTreeMap<Reason, u64>;

/// What a list change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListChange {
    /// Numbers newly listed (add) or unlisted (remove).
    pub changed: u64,
    /// Of the numbers given, valid ones that are not (yet) subscribers: listed all the
    /// same, excluded once imported.
    pub not_subscribers: u64,
    /// Entries that are not phone numbers, as given.
    pub invalid: Vec<String>,
}

/// One listed number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListEntry {
    pub msisdn: u64,
    /// Do-not-disturb channel (`""` = every channel).
    pub channel: String,
    pub name: String,
    pub added_at: i64,
    /// Whether the number is a subscriber now.
    pub subscriber: bool,
}

/// Adds numbers to an exclusion list (idempotent).
///
/// `channel` is only meaningful for do-not-disturb (`None` = every channel); `name`
/// distinguishes several lists of a kind (custom lists are applied by name). Numbers are
/// normalised and stored as numbers, whether or not they are subscribers yet.
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
) -> Result<ListChange> {
    change_list(conn, table, kind, channel, name, numbers, true)
}

/// Removes numbers from an exclusion list (numbers not on it are ignored).
///
/// # Errors
/// SQLite failure.
pub fn remove_from_list(
    conn: &Connection,
    table: &SubscriberTable,
    kind: ListKind,
    channel: Option<Channel>,
    name: &str,
    numbers: &[&str],
) -> Result<ListChange> {
    change_list(conn, table, kind, channel, name, numbers, false)
}

fn change_list(
    conn: &Connection,
    table: &SubscriberTable,
    kind: ListKind,
    channel: Option<Channel>,
    name: &str,
    numbers: &[&str],
    add: bool,
) -> Result<ListChange> {
    let ch = channel.map_or("", Channel::as_str);
    let now = jiff::Timestamp::now().as_second();
    let mut out = ListChange::default();
    let mut ins = conn.prepare_cached(
        "INSERT OR IGNORE INTO list_numbers (kind, channel, name, msisdn, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut del = conn.prepare_cached(
        "DELETE FROM list_numbers WHERE kind = ?1 AND channel = ?2 AND name = ?3 AND msisdn = ?4",
    )?;
    for n in numbers {
        let Ok(m) = msisdn::normalize(n) else {
            out.invalid.push((*n).to_owned());
            continue;
        };
        if table.id_of(m).is_none() {
            out.not_subscribers += 1;
        }
        let n = if add {
            ins.execute(params![kind.as_str(), ch, name, m as i64, now])?
        } else {
            del.execute(params![kind.as_str(), ch, name, m as i64])?
        };
        out.changed += n as u64;
    }
    Ok(out)
}

/// A page of listed numbers of `kind` (optionally one `name` / one `channel`), ordered by
/// number, after `after`.
///
/// # Errors
/// SQLite failure.
pub fn list_entries(
    conn: &Connection,
    table: &SubscriberTable,
    kind: ListKind,
    channel: Option<Channel>,
    name: Option<&str>,
    after: u64,
    limit: u32,
) -> Result<Vec<ListEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT msisdn, channel, name, added_at FROM list_numbers
         WHERE kind = ?1 AND (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR name = ?3)
         AND msisdn > ?4 ORDER BY msisdn, channel, name LIMIT ?5",
    )?;
    let rows = st.query_map(
        params![
            kind.as_str(),
            channel.map(Channel::as_str),
            name,
            after as i64,
            limit
        ],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (m, channel, name, added_at) = row?;
        let msisdn = m as u64;
        out.push(ListEntry {
            msisdn,
            channel,
            name,
            added_at,
            subscriber: table.id_of(msisdn).is_some(),
        });
    }
    Ok(out)
}

/// Folds lists of the older id-only form (`exclusion_lists.members`) into numbers, once:
/// each member's msisdn is listed and the bitmap emptied, so numbers are the one record of
/// a list. Run at open, after the subscriber table is loaded.
///
/// # Errors
/// SQLite failure or a corrupt BLOB.
pub fn fold_legacy_members(conn: &mut Connection, table: &SubscriberTable) -> Result<()> {
    let rows: Vec<(String, String, String, Vec<u8>)> = {
        let mut st = conn.prepare(
            "SELECT kind, channel, name, members FROM exclusion_lists WHERE length(members) > 8",
        )?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<std::result::Result<_, _>>()?
    };
    if rows.is_empty() {
        return Ok(());
    }
    let now = jiff::Timestamp::now().as_second();
    let tx = conn.transaction()?;
    {
        let mut ins = tx.prepare(
            "INSERT OR IGNORE INTO list_numbers (kind, channel, name, msisdn, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (kind, ch, name, blob) in &rows {
            for id in blob_to_bitmap(blob, "exclusion_lists", 0)? {
                if let Some(m) = table.msisdn(id) {
                    ins.execute(params![kind, ch, name, m as i64, now])?;
                }
            }
        }
        tx.execute(
            "UPDATE exclusion_lists SET members = ?1",
            [bitmap_to_blob(&RoaringBitmap::new())],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Subscribers on the lists `sql` selects (numbers resolved through `table`).
fn listed(
    conn: &Connection,
    table: &SubscriberTable,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<RoaringBitmap> {
    let mut st = conn.prepare_cached(sql)?;
    let mut out = RoaringBitmap::new();
    let mut q = st.query(p)?;
    while let Some(r) = q.next()? {
        let m: i64 = r.get(0)?;
        if let Some(id) = table.id_of(m as u64) {
            out.insert(id);
        }
    }
    Ok(out)
}

fn lists(
    conn: &Connection,
    table: &SubscriberTable,
    kind: ListKind,
    channel: Option<Channel>,
) -> Result<RoaringBitmap> {
    listed(
        conn,
        table,
        "SELECT msisdn FROM list_numbers WHERE kind = ?1 AND (channel = '' OR channel = ?2)",
        params![kind.as_str(), channel.map_or("", Channel::as_str)],
    )
}

/// Refuses custom list names that name no list: a typo would otherwise silently exclude
/// nobody.
///
/// # Errors
/// [`CampaignError::Invalid`] (`custom_lists`) naming the unknown list; SQLite failure.
pub fn check_custom_lists(conn: &Connection, names: &[String]) -> Result<()> {
    let known = custom_list_names(conn)?;
    match names.iter().find(|n| !known.iter().any(|(k, _)| k == *n)) {
        Some(n) => Err(CampaignError::invalid(
            "custom_lists",
            format!("no custom list named {n:?}"),
        )),
        None => Ok(()),
    }
}

/// The custom lists, by name, with their sizes in numbers.
///
/// # Errors
/// SQLite failure.
pub fn custom_list_names(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut st = conn.prepare(
        "SELECT name, COUNT(*) FROM list_numbers WHERE kind = 'custom' GROUP BY name ORDER BY name",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
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

/// Declares two offers as conflicting (symmetric; stored once, in name order).
///
/// # Errors
/// [`CampaignError::Invalid`] for an empty offer or an offer conflicting with itself;
/// SQLite failure.
pub fn add_conflict(conn: &Connection, a: &str, b: &str) -> Result<()> {
    let (a, b) = conflict_key(a, b)?;
    conn.execute(
        "INSERT OR IGNORE INTO offer_conflicts (offer_a, offer_b)
         SELECT ?1, ?2 WHERE NOT EXISTS
           (SELECT 1 FROM offer_conflicts WHERE offer_a = ?2 AND offer_b = ?1)",
        params![a, b],
    )?;
    Ok(())
}

/// Withdraws a conflict declaration (either order); returns whether one existed.
///
/// # Errors
/// As [`add_conflict`].
pub fn remove_conflict(conn: &Connection, a: &str, b: &str) -> Result<bool> {
    let (a, b) = conflict_key(a, b)?;
    let n = conn.execute(
        "DELETE FROM offer_conflicts WHERE (offer_a = ?1 AND offer_b = ?2)
         OR (offer_a = ?2 AND offer_b = ?1)",
        params![a, b],
    )?;
    Ok(n > 0)
}

/// Every declared conflict, as (offer, offer) in name order.
///
/// # Errors
/// SQLite failure.
pub fn conflicts(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut st = conn.prepare("SELECT offer_a, offer_b FROM offer_conflicts")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out: Vec<(String, String)> = rows
        .collect::<std::result::Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn conflict_key<'s>(a: &'s str, b: &'s str) -> Result<(&'s str, &'s str)> {
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() || b.is_empty() {
        return Err(CampaignError::invalid("offer", "offers must not be empty"));
    }
    if a == b {
        return Err(CampaignError::invalid(
            "offer",
            format!("{a:?} cannot conflict with itself"),
        ));
    }
    Ok(if a <= b { (a, b) } else { (b, a) })
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
        Reason::Blacklist => lists(conn, ctx.table, ListKind::Blacklist, None)?,
        Reason::Graylist => lists(conn, ctx.table, ListKind::Graylist, None)?,
        Reason::Staff => lists(conn, ctx.table, ListKind::Staff, None)?,
        Reason::DoNotDisturb => lists(conn, ctx.table, ListKind::DoNotDisturb, Some(ctx.channel))?,
        Reason::Custom => {
            let mut out = RoaringBitmap::new();
            for name in ctx.custom_lists {
                out |= listed(
                    conn,
                    ctx.table,
                    "SELECT msisdn FROM list_numbers WHERE kind = 'custom' AND name = ?1",
                    [name],
                )?;
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
    let (kept, excluded) = apply_sets(conn, ctx, candidates, now)?;
    let counts = excluded.iter().map(|(r, set)| (*r, set.len())).collect();
    Ok((kept, counts))
}

/// As [`apply`], but returns who was excluded under each first reason (triggered sends
/// record the reason per subscriber).
///
/// # Errors
/// SQLite failure or a corrupt list BLOB.
pub fn apply_sets(
    conn: &Connection,
    ctx: &RuleContext<'_>,
    candidates: &RoaringBitmap,
    now: i64,
) -> Result<(RoaringBitmap, Vec<(Reason, RoaringBitmap)>)> {
    let mut kept = candidates.clone();
    let mut excluded = Vec::new();
    for reason in ORDER {
        if kept.is_empty() {
            break;
        }
        let hit = &kept & &reason_set(conn, ctx, reason, now)?;
        if !hit.is_empty() {
            kept -= &hit;
            excluded.push((reason, hit));
        }
    }
    Ok((kept, excluded))
}
