//! The contact history per subscriber, in memory, for rules decided one subscriber at a
//! time (triggered sends).
//!
//! The `contacts` and `conversions` tables stay the one record: batch launches and
//! triggered sends write them, in their own transactions. This index follows those tables
//! by their `id` (append-only rowids: rows are never deleted), so it sees every writer —
//! batch launch, triggered sends, another process on the same file — without a second
//! write path that could forget one. [`ContactIndex::sync`] reads the rows added since the
//! last call; it runs before every matching step and after its commit.
//!
//! It holds every row with `at >= since()`. A rule that looks further back than that asks
//! [`ContactIndex::cover`] first, which reloads the older rows from the store, so a
//! question about a span the index holds is answered exactly as the SQL over the tables
//! would ([`crate::rules`] checks that on random histories). Rows older than what the
//! running triggers need are dropped by [`ContactIndex::prune`].
//!
//! After a restart the index is empty (`since` = +∞) and the first step loads what its
//! rules need: a restart rebuilds nothing else.

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::fxhash::FxHashMap;

/// One contact or conversion, with its strings interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    at: i64,
    task: i64,
    /// Interned channel; conversions keep theirs too.
    channel: u32,
    offer: u32,
    campaign_type: u32,
    conversion: bool,
}

/// A contact as a rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact<'a> {
    pub at: i64,
    pub task: i64,
    pub channel: &'a str,
    pub offer: &'a str,
    pub campaign_type: &'a str,
}

/// Strings seen in the history, stored once.
#[derive(Debug, Default)]
struct Interner {
    codes: FxHashMap<Box<str>, u32>,
    values: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = self.values.len() as u32;
        self.values.push(s.into());
        self.codes.insert(s.into(), c);
        c
    }
    fn value(&self, c: u32) -> &str {
        &self.values[c as usize]
    }
}

/// The in-memory contact history (see the module docs).
#[derive(Debug)]
pub struct ContactIndex {
    /// Every row with `at >= since` is held; `i64::MAX` = nothing loaded yet.
    since: i64,
    last_contact: i64,
    last_conversion: i64,
    by_sub: FxHashMap<u32, Vec<Entry>>,
    /// Contact times per task (daily budgets).
    by_task: FxHashMap<i64, Vec<i64>>,
    strings: Interner,
    entries: usize,
}

impl Default for ContactIndex {
    fn default() -> Self {
        Self {
            since: i64::MAX,
            last_contact: 0,
            last_conversion: 0,
            by_sub: FxHashMap::default(),
            by_task: FxHashMap::default(),
            strings: Interner::default(),
            entries: 0,
        }
    }
}

impl ContactIndex {
    /// The earliest `at` the index answers for.
    pub const fn since(&self) -> i64 {
        self.since
    }

    /// Rows held (contacts and conversions).
    pub const fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is held.
    pub const fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Makes the index answer for every row with `at >= since`: reloads from the store when
    /// it holds less than that, else reads the rows added since the last call.
    ///
    /// # Errors
    /// SQLite failure (the index is then left empty, and reloads next time).
    pub fn cover(&mut self, conn: &Connection, since: i64) -> Result<()> {
        if since < self.since {
            *self = Self::default();
            let r = self.load(conn, since);
            if r.is_err() {
                *self = Self::default();
            }
            return r;
        }
        self.sync(conn)
    }

    fn load(&mut self, conn: &Connection, since: i64) -> Result<()> {
        // One connection: no row can be added between these reads.
        self.last_contact =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM contacts", [], |r| {
                r.get(0)
            })?;
        self.last_conversion =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM conversions", [], |r| {
                r.get(0)
            })?;
        self.since = since;
        let (contacts, conversions) = (self.last_contact, self.last_conversion);
        self.read(
            conn,
            "SELECT id, sub_id, task_id, channel, offer, campaign_type, at FROM contacts
             WHERE at >= ?1 AND id <= ?2",
            params![since, contacts],
            false,
        )?;
        self.read(
            conn,
            "SELECT id, sub_id, task_id, channel, offer, '', at FROM conversions
             WHERE at >= ?1 AND id <= ?2",
            params![since, conversions],
            true,
        )?;
        Ok(())
    }

    /// Reads the contacts and conversions added since the last call.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn sync(&mut self, conn: &Connection) -> Result<()> {
        if self.since == i64::MAX {
            return Ok(());
        }
        let last = self.read(
            conn,
            "SELECT id, sub_id, task_id, channel, offer, campaign_type, at FROM contacts
             WHERE id > ?1 ORDER BY id",
            [self.last_contact],
            false,
        )?;
        self.last_contact = last.max(self.last_contact);
        let last = self.read(
            conn,
            "SELECT id, sub_id, task_id, channel, offer, '', at FROM conversions
             WHERE id > ?1 ORDER BY id",
            [self.last_conversion],
            true,
        )?;
        self.last_conversion = last.max(self.last_conversion);
        Ok(())
    }

    /// Reads rows into the index (those at or after `since`); returns the largest id read.
    fn read(
        &mut self,
        conn: &Connection,
        sql: &str,
        p: impl rusqlite::Params,
        conversion: bool,
    ) -> Result<i64> {
        let mut st = conn.prepare_cached(sql)?;
        let mut q = st.query(p)?;
        let mut last = 0;
        while let Some(r) = q.next()? {
            last = last.max(r.get::<_, i64>(0)?);
            let at: i64 = r.get(6)?;
            let Ok(sub) = u32::try_from(r.get::<_, i64>(1)?) else {
                continue;
            };
            if at < self.since {
                continue;
            }
            let task: i64 = r.get(2)?;
            let e = Entry {
                at,
                task,
                channel: self.strings.intern(r.get_ref(3)?.as_str().unwrap_or("")),
                offer: self.strings.intern(r.get_ref(4)?.as_str().unwrap_or("")),
                campaign_type: self.strings.intern(r.get_ref(5)?.as_str().unwrap_or("")),
                conversion,
            };
            self.by_sub.entry(sub).or_default().push(e);
            if !conversion {
                self.by_task.entry(task).or_default().push(at);
            }
            self.entries += 1;
        }
        Ok(last)
    }

    /// Drops rows older than `before` (no rule running needs them); a later [`Self::cover`]
    /// of an earlier span reloads them.
    pub fn prune(&mut self, before: i64) {
        if before <= self.since || self.since == i64::MAX {
            return;
        }
        self.since = before;
        let mut n = 0;
        self.by_sub.retain(|_, es| {
            es.retain(|e| e.at >= before);
            n += es.len();
            !es.is_empty()
        });
        self.by_task.retain(|_, ats| {
            ats.retain(|&at| at >= before);
            !ats.is_empty()
        });
        self.entries = n;
    }

    fn view(&self, e: &Entry) -> Contact<'_> {
        Contact {
            at: e.at,
            task: e.task,
            channel: self.strings.value(e.channel),
            offer: self.strings.value(e.offer),
            campaign_type: self.strings.value(e.campaign_type),
        }
    }

    /// `sub`'s contacts with `at >= since` (`since` must be covered).
    pub fn contacts(&self, sub: u32, since: i64) -> impl Iterator<Item = Contact<'_>> {
        debug_assert!(since >= self.since, "span not covered");
        self.by_sub
            .get(&sub)
            .into_iter()
            .flatten()
            .filter(move |e| !e.conversion && e.at >= since)
            .map(|e| self.view(e))
    }

    /// `sub`'s conversions with `at >= since`, as (task, offer).
    pub fn conversions(&self, sub: u32, since: i64) -> impl Iterator<Item = Contact<'_>> {
        debug_assert!(since >= self.since, "span not covered");
        self.by_sub
            .get(&sub)
            .into_iter()
            .flatten()
            .filter(move |e| e.conversion && e.at >= since)
            .map(|e| self.view(e))
    }

    /// Contacts of `task` with `at >= since`.
    pub fn task_count(&self, task: i64, since: i64) -> u64 {
        debug_assert!(since >= self.since, "span not covered");
        self.by_task.get(&task).map_or(0, |ats| {
            ats.iter().filter(|&&at| at >= since).count() as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(conn: &Connection, sub: i64, task: i64, offer: &str, at: i64) {
        conn.execute(
            "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer,
                campaign_type, at) VALUES (?1, ?2, 0, 0, 'A', 'sms', ?3, 'promo', ?4)",
            params![sub, task, offer, at],
        )
        .unwrap();
    }

    #[test]
    fn follows_the_table_reloads_older_spans_and_prunes() {
        let conn = crate::store::open_in_memory().unwrap();
        contact(&conn, 1, 10, "A", 100);
        contact(&conn, 1, 11, "B", 200);
        let mut ix = ContactIndex::default();
        ix.cover(&conn, 150).unwrap();
        assert_eq!(
            ix.contacts(1, 150).map(|c| c.offer).collect::<Vec<_>>(),
            ["B"]
        );
        // A row written by any path is seen at the next sync.
        contact(&conn, 1, 10, "C", 300);
        conn.execute(
            "INSERT INTO conversions (sub_id, task_id, bulk_id, grp, channel, kind, offer, at)
             VALUES (1, 10, 0, 'A', 'sms', 'order', 'C', 310)",
            [],
        )
        .unwrap();
        ix.cover(&conn, 150).unwrap();
        assert_eq!(ix.contacts(1, 150).count(), 2);
        assert_eq!(ix.conversions(1, 150).count(), 1);
        assert_eq!(ix.task_count(10, 150), 1);
        // An earlier span reloads.
        ix.cover(&conn, 0).unwrap();
        assert_eq!(ix.since(), 0);
        assert_eq!(ix.contacts(1, 0).count(), 3);
        assert_eq!(ix.task_count(10, 0), 2);
        ix.prune(250);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.contacts(1, 250).count(), 1);
        assert_eq!(ix.task_count(11, 250), 0);
    }
}
