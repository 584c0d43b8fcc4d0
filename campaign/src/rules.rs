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
//! Each rule is stated once, as data, by [`prepare`]; two evaluators read it: [`apply_sets`]
//! over the tables for a whole audience (launch, slices, resume) and
//! [`Prepared::first_reason`] for one subscriber over the in-memory history
//! ([`crate::contact_index`]; triggered sends). Both read the same `contacts` rows, so
//! batch and triggered sends count against the same caps.
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

use crate::contact_index::{Contact, ContactIndex};
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

/// Which lists a list rule reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListScope {
    /// Only the all-channel lists of the kind (`channel = ''`).
    AllChannels,
    /// The all-channel lists and those of this channel.
    AllAnd(Channel),
    /// The lists of these names, whatever their channel.
    Named(Vec<String>),
}

/// Which contacts a history rule counts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    /// Contacts (and, with `conversions`, conversions) with one of these offers.
    Offers(Vec<String>),
    /// Contacts with this offer or of this campaign type (an empty one matches nothing).
    OfferOrType {
        offer: String,
        campaign_type: String,
    },
    /// Contacts on this channel.
    Channel(Channel),
    /// Contacts on every channel that is not passive.
    Active,
}

impl Pick {
    fn selects(&self, c: &Contact<'_>) -> bool {
        match self {
            Self::Offers(os) => os.iter().any(|o| o == c.offer),
            Self::OfferOrType {
                offer,
                campaign_type,
            } => {
                (!offer.is_empty() && c.offer == offer)
                    || (!campaign_type.is_empty() && c.campaign_type == campaign_type)
            }
            Self::Channel(ch) => c.channel == ch.as_str(),
            Self::Active => c.channel != Channel::Web.as_str(),
        }
    }
}

/// One rule of a context, as data. Both evaluators read these — the set one over the
/// tables ([`apply_sets`]: launches, slices, resume) and the one-subscriber one over the
/// in-memory history ([`Prepared::first_reason`]: triggered sends) — so what a rule means
/// is written once, in [`prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    /// The number is on a list of `kind` within `scope`.
    Listed { kind: ListKind, scope: ListScope },
    /// At least `at_least` contacts since `since` that `pick` selects, or (with
    /// `conversions`) one conversion since then with an offer it selects.
    History {
        since: i64,
        pick: Pick,
        at_least: u32,
        conversions: bool,
    },
}

/// The rules of one context at one time, ready to evaluate (see [`Test`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// In [`ORDER`]; a reason may have several tests (one per cap).
    tests: Vec<(Reason, Test)>,
}

/// One list entry of a number, as [`Prepared::first_reason`] reads it ([`listings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub kind: String,
    pub channel: String,
    pub name: String,
}

/// The lists `msisdn` is on.
///
/// # Errors
/// SQLite failure.
pub fn listings(conn: &Connection, msisdn: u64) -> Result<Vec<Listing>> {
    let mut st =
        conn.prepare_cached("SELECT kind, channel, name FROM list_numbers WHERE msisdn = ?1")?;
    let rows = st.query_map([msisdn as i64], |r| {
        Ok(Listing {
            kind: r.get(0)?,
            channel: r.get(1)?,
            name: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Whether any number is on any list (a step with none skips [`listings`]).
///
/// # Errors
/// SQLite failure.
pub fn any_listed(conn: &Connection) -> Result<bool> {
    Ok(
        conn.query_row("SELECT EXISTS (SELECT 1 FROM list_numbers)", [], |r| {
            r.get(0)
        })?,
    )
}

/// The rules of `ctx` at `now` (reads the declared offer conflicts).
///
/// # Errors
/// SQLite failure.
pub fn prepare(conn: &Connection, ctx: &RuleContext<'_>, now: i64) -> Result<Prepared> {
    let p = ctx.policy;
    let mut tests = Vec::new();
    for reason in ORDER {
        let listed = |kind, scope| Test::Listed { kind, scope };
        match reason {
            Reason::Blacklist => {
                tests.push((reason, listed(ListKind::Blacklist, ListScope::AllChannels)));
            }
            Reason::Graylist => {
                tests.push((reason, listed(ListKind::Graylist, ListScope::AllChannels)));
            }
            Reason::Staff => tests.push((reason, listed(ListKind::Staff, ListScope::AllChannels))),
            Reason::DoNotDisturb => tests.push((
                reason,
                listed(ListKind::DoNotDisturb, ListScope::AllAnd(ctx.channel)),
            )),
            Reason::Custom => {
                if !ctx.custom_lists.is_empty() {
                    tests.push((
                        reason,
                        listed(
                            ListKind::Custom,
                            ListScope::Named(ctx.custom_lists.to_vec()),
                        ),
                    ));
                }
            }
            Reason::ConflictingOffer => {
                if p.conflict_days > 0 && !ctx.offer.is_empty() {
                    let offers = conflicting_offers(conn, ctx.offer)?;
                    if !offers.is_empty() {
                        tests.push((
                            reason,
                            Test::History {
                                since: now - i64::from(p.conflict_days) * DAY,
                                pick: Pick::Offers(offers),
                                at_least: 1,
                                conversions: true,
                            },
                        ));
                    }
                }
            }
            Reason::RecentlyMarketed => {
                if p.recent_days > 0 {
                    tests.push((
                        reason,
                        Test::History {
                            since: now - i64::from(p.recent_days) * DAY,
                            pick: Pick::OfferOrType {
                                offer: ctx.offer.to_owned(),
                                campaign_type: ctx.campaign_type.to_owned(),
                            },
                            at_least: 1,
                            conversions: false,
                        },
                    ));
                }
            }
            Reason::ChannelCap | Reason::OverallCap => {
                if ctx.channel.is_passive() {
                    continue;
                }
                let (want, pick) = if reason == Reason::ChannelCap {
                    (Some(ctx.channel), Pick::Channel(ctx.channel))
                } else {
                    (None, Pick::Active)
                };
                for c in p.caps.iter().filter(|c| c.channel == want) {
                    tests.push((
                        reason,
                        Test::History {
                            since: now - i64::from(c.period_days) * DAY,
                            pick: pick.clone(),
                            at_least: c.max,
                            conversions: false,
                        },
                    ));
                }
            }
        }
    }
    Ok(Prepared { tests })
}

impl Prepared {
    /// The earliest contact time any rule reads (`None`: no rule reads the history).
    pub fn since(&self) -> Option<i64> {
        self.tests
            .iter()
            .filter_map(|(_, t)| match t {
                Test::History { since, .. } => Some(*since),
                Test::Listed { .. } => None,
            })
            .min()
    }

    /// Whether any rule reads the lists.
    pub fn reads_lists(&self) -> bool {
        self.tests
            .iter()
            .any(|(_, t)| matches!(t, Test::Listed { .. }))
    }

    /// The first reason excluding subscriber `sub` whose number is on `listed`, with its
    /// history in `history` (which must cover [`Self::since`]); `None`: kept. The same
    /// answer [`apply_sets`] gives for a set holding `sub`.
    pub fn first_reason(
        &self,
        sub: u32,
        listed: &[Listing],
        history: &ContactIndex,
    ) -> Option<Reason> {
        self.tests
            .iter()
            .find(|(_, t)| match t {
                Test::Listed { kind, scope } => listed.iter().any(|l| {
                    l.kind == kind.as_str()
                        && match scope {
                            ListScope::AllChannels => l.channel.is_empty(),
                            ListScope::AllAnd(c) => l.channel.is_empty() || l.channel == c.as_str(),
                            ListScope::Named(ns) => ns.contains(&l.name),
                        }
                }),
                Test::History {
                    since,
                    pick,
                    at_least,
                    conversions,
                } => {
                    let n = history
                        .contacts(sub, *since)
                        .filter(|c| pick.selects(c))
                        .take(*at_least as usize)
                        .count();
                    n >= *at_least as usize
                        || (*conversions
                            && history.conversions(sub, *since).any(|c| pick.selects(&c)))
                }
            })
            .map(|(r, _)| *r)
    }
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

/// The subscribers `test` excludes, over the tables.
fn test_set(conn: &Connection, table: &SubscriberTable, test: &Test) -> Result<RoaringBitmap> {
    Ok(match test {
        Test::Listed { kind, scope } => match scope {
            ListScope::AllChannels | ListScope::AllAnd(_) => {
                let ch = match scope {
                    ListScope::AllAnd(c) => c.as_str(),
                    _ => "",
                };
                listed(
                    conn,
                    table,
                    "SELECT msisdn FROM list_numbers WHERE kind = ?1 AND (channel = '' OR channel = ?2)",
                    params![kind.as_str(), ch],
                )?
            }
            ListScope::Named(names) => {
                let mut out = RoaringBitmap::new();
                for name in names {
                    out |= listed(
                        conn,
                        table,
                        "SELECT msisdn FROM list_numbers WHERE kind = ?1 AND name = ?2",
                        params![kind.as_str(), name],
                    )?;
                }
                out
            }
        },
        Test::History {
            since,
            pick,
            at_least,
            conversions,
        } => match pick {
            Pick::Offers(offers) => {
                let mut out = RoaringBitmap::new();
                for o in offers {
                    out |= ids(
                        conn,
                        "SELECT sub_id FROM contacts WHERE at >= ?1 AND offer = ?2
                         GROUP BY sub_id HAVING COUNT(*) >= ?3",
                        params![since, o, at_least],
                    )?;
                    if *conversions {
                        out |= ids(
                            conn,
                            "SELECT sub_id FROM conversions WHERE at >= ?1 AND offer = ?2",
                            params![since, o],
                        )?;
                    }
                }
                out
            }
            Pick::OfferOrType {
                offer,
                campaign_type,
            } => ids(
                conn,
                "SELECT sub_id FROM contacts WHERE at >= ?1
                 AND ((offer = ?2 AND ?2 != '') OR (campaign_type = ?3 AND ?3 != ''))
                 GROUP BY sub_id HAVING COUNT(*) >= ?4",
                params![since, offer, campaign_type, at_least],
            )?,
            Pick::Channel(ch) => ids(
                conn,
                "SELECT sub_id FROM contacts WHERE at >= ?1 AND channel = ?2
                 GROUP BY sub_id HAVING COUNT(*) >= ?3",
                params![since, ch.as_str(), at_least],
            )?,
            Pick::Active => ids(
                conn,
                "SELECT sub_id FROM contacts WHERE at >= ?1 AND channel != ?2
                 GROUP BY sub_id HAVING COUNT(*) >= ?3",
                params![since, Channel::Web.as_str(), at_least],
            )?,
        },
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

/// As [`apply`], but returns who was excluded under each first reason.
///
/// # Errors
/// SQLite failure or a corrupt list BLOB.
pub fn apply_sets(
    conn: &Connection,
    ctx: &RuleContext<'_>,
    candidates: &RoaringBitmap,
    now: i64,
) -> Result<(RoaringBitmap, Vec<(Reason, RoaringBitmap)>)> {
    let prepared = prepare(conn, ctx, now)?;
    let mut kept = candidates.clone();
    let mut excluded: Vec<(Reason, RoaringBitmap)> = Vec::new();
    for (reason, test) in &prepared.tests {
        if kept.is_empty() {
            break;
        }
        let hit = &kept & &test_set(conn, ctx.table, test)?;
        if hit.is_empty() {
            continue;
        }
        kept -= &hit;
        match excluded.last_mut() {
            Some((r, set)) if r == reason => *set |= hit,
            _ => excluded.push((*reason, hit)),
        }
    }
    Ok((kept, excluded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::SubscriberRow;

    fn refs(r: &[String]) -> Vec<&str> {
        r.iter().map(String::as_str).collect()
    }

    /// Random histories, lists and policies: the one-subscriber evaluator over the index
    /// gives every subscriber the first reason the set evaluator over the tables gives.
    #[test]
    fn one_subscriber_path_agrees_with_the_set_path() {
        let conn = crate::store::open_in_memory().unwrap();
        let mut table = SubscriberTable::default();
        for i in 0..40u64 {
            table.upsert(&SubscriberRow {
                msisdn: 13_800_000_000 + i,
                ..SubscriberRow::default()
            });
        }
        add_conflict(&conn, "A", "B").unwrap();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let now = 100 * DAY;
        let offers = ["A", "B", "C", ""];
        let types = ["promo", "care", ""];
        let channels = ["sms", "mms", "web"];
        for _ in 0..400 {
            conn.execute(
                "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer,
                    campaign_type, at) VALUES (?1, ?2, 0, 0, 'A', ?3, ?4, ?5, ?6)",
                params![
                    next(40) as i64,
                    1 + next(3) as i64,
                    channels[next(3) as usize],
                    offers[next(4) as usize],
                    types[next(3) as usize],
                    now - next(10 * DAY as u64) as i64
                ],
            )
            .unwrap();
        }
        for _ in 0..20 {
            conn.execute(
                "INSERT INTO conversions (sub_id, task_id, bulk_id, grp, channel, kind, offer, at)
                 VALUES (?1, 1, 0, 'A', 'sms', 'order', ?2, ?3)",
                params![
                    next(40) as i64,
                    offers[next(3) as usize],
                    now - next(10 * DAY as u64) as i64
                ],
            )
            .unwrap();
        }
        let n = |i: u64| (13_800_000_000 + i).to_string();
        let nums: Vec<String> = (0..8).map(|_| n(next(40))).collect();
        add_to_list(
            &conn,
            &table,
            ListKind::Blacklist,
            None,
            "",
            &refs(&nums[0..2]),
        )
        .unwrap();
        add_to_list(
            &conn,
            &table,
            ListKind::Blacklist,
            Some(Channel::Sms),
            "",
            &refs(&nums[2..3]),
        )
        .unwrap();
        add_to_list(
            &conn,
            &table,
            ListKind::DoNotDisturb,
            Some(Channel::Sms),
            "",
            &refs(&nums[3..5]),
        )
        .unwrap();
        add_to_list(
            &conn,
            &table,
            ListKind::Custom,
            None,
            "vip",
            &refs(&nums[5..8]),
        )
        .unwrap();
        let custom = vec!["vip".to_owned()];
        let mut index = ContactIndex::default();
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..60 {
            let channel = [Channel::Sms, Channel::Mms, Channel::Web][next(3) as usize];
            let policy = ContactPolicy {
                recent_days: next(3) as u32,
                conflict_days: next(4) as u32,
                caps: (0..next(3))
                    .map(|_| Cap {
                        channel: [None, Some(Channel::Sms), Some(Channel::Mms)][next(3) as usize],
                        max: 1 + next(4) as u32,
                        period_days: 1 + next(7) as u32,
                    })
                    .collect(),
            };
            let ctx = RuleContext {
                channel,
                offer: offers[next(4) as usize],
                campaign_type: types[next(3) as usize],
                policy: &policy,
                custom_lists: if round % 2 == 0 { &custom } else { &[] },
                table: &table,
            };
            let all: RoaringBitmap = (0..40).collect();
            let (kept, sets) = apply_sets(&conn, &ctx, &all, now).unwrap();
            let prepared = prepare(&conn, &ctx, now).unwrap();
            if let Some(since) = prepared.since() {
                index.cover(&conn, since).unwrap();
            }
            for sub in 0..40u32 {
                let listed = listings(&conn, table.msisdn(sub).unwrap()).unwrap();
                let want = sets.iter().find(|(_, s)| s.contains(sub)).map(|(r, _)| *r);
                seen.extend(want);
                assert_eq!(want.is_none(), kept.contains(sub));
                assert_eq!(
                    prepared.first_reason(sub, &listed, &index),
                    want,
                    "round {round}, subscriber {sub}, {ctx:?}"
                );
            }
        }
        // Every rule decided someone somewhere, so the comparison covered it.
        for r in ORDER
            .iter()
            .filter(|r| **r != Reason::Graylist && **r != Reason::Staff)
        {
            assert!(seen.contains(r), "{r:?} never excluded anyone: {seen:?}");
        }
    }
}
