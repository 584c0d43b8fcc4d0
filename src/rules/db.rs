//! `rules.db`: the durable half of the public rules (SQLite, WAL, `synchronous=FULL`).
//!
//! Job: keep what an operator was told is done — a list edit, caps, quiet hours — across
//! power loss, plus the delivered-contact counts caps read and the audit trail. Every write is
//! one transaction; `synchronous=FULL` makes its commit durable before the call returns, so
//! the HTTP answer that follows is never ahead of the disk.
//!
//! Schema (`user_version` 1):
//! ```text
//! list_entries (list, channel, msisdn, added_ms)   PK (list, channel, msisdn); channel '' = all
//! settings     (key, value)                        'caps', 'quiet_hours' as JSON
//! contacts     (msisdn, channel, day, count)       PK (msisdn, channel, day); day = local day no.
//! counted      (message_id, day)                   receipts already counted (replays are no-ops)
//! audit        (id, at_ms, who, action, detail)    every operator change, newest last
//! ```

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::model::{Cap, Channel, ListEdit, ListKind, Scope, scope_str};

/// A failure of the rules database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed (open, I/O, corruption).
    #[error("rules.db: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored setting did not decode.
    #[error("rules.db setting {key}: {reason}")]
    Setting {
        /// Setting key.
        key: &'static str,
        /// Decoder message.
        reason: String,
    },
}

/// One delivered contact to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Gateway message id (dedupes replayed receipts).
    pub message_id: String,
    /// Rule key of the recipient.
    pub msisdn: u64,
    /// Channel contacted.
    pub channel: Channel,
    /// Local day of the delivery.
    pub day: i32,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Sequence.
    pub id: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who (operator name, or the automatic source such as `unsubscribe`).
    pub who: String,
    /// What kind of change (`list_add`, `caps_set`, …).
    pub action: String,
    /// The change (JSON text).
    pub detail: String,
}

/// Everything `rules.db` holds that the view mirrors, read at open.
#[derive(Debug, Default)]
pub struct Loaded {
    /// (list, scope, msisdn) of every entry.
    pub entries: Vec<(ListKind, Scope, u64)>,
    /// The caps.
    pub caps: Vec<Cap>,
    /// Quiet-hour windows as written.
    pub quiet: Vec<String>,
    /// (msisdn, channel, day, count) since the oldest day asked for.
    pub contacts: Vec<(u64, Channel, i32, u32)>,
}

/// The open database.
#[derive(Debug)]
pub struct RuleDb {
    conn: Connection,
}

fn scope_of(s: &str) -> Option<Scope> {
    if s.is_empty() {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

fn key_sql(msisdn: u64) -> i64 {
    // Keys are 11-digit numbers: always in i64 range.
    i64::try_from(msisdn).unwrap_or(i64::MAX)
}

impl RuleDb {
    /// Opens (creating) the file at `path`.
    ///
    /// # Errors
    /// [`DbError`] when the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Self::init(Connection::open(path)?)
    }

    /// A database in memory (tests, and gateways without a data directory).
    ///
    /// # Errors
    /// [`DbError`] when SQLite fails.
    pub fn open_in_memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, DbError> {
        // WAL: readers (listing) never block the writer; FULL: a commit is on disk when it
        // returns, which is what lets the API acknowledge an edit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS list_entries (
                 list TEXT NOT NULL, channel TEXT NOT NULL, msisdn INTEGER NOT NULL,
                 added_ms INTEGER NOT NULL, PRIMARY KEY (list, channel, msisdn)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS contacts (
                 msisdn INTEGER NOT NULL, channel TEXT NOT NULL, day INTEGER NOT NULL,
                 count INTEGER NOT NULL, PRIMARY KEY (msisdn, channel, day)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS counted (
                 message_id TEXT PRIMARY KEY, day INTEGER NOT NULL) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS counted_day ON counted (day);
             CREATE TABLE IF NOT EXISTS audit (
                 id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, who TEXT NOT NULL,
                 action TEXT NOT NULL, detail TEXT NOT NULL);
             PRAGMA user_version = 1;",
        )?;
        Ok(Self { conn })
    }

    /// Reads everything the view mirrors; contact counts from `first_day` on.
    ///
    /// # Errors
    /// [`DbError`] on SQLite failure or an undecodable setting.
    pub fn load(&self, first_day: i32) -> Result<Loaded, DbError> {
        let mut loaded = Loaded::default();
        let mut st = self
            .conn
            .prepare("SELECT list, channel, msisdn FROM list_entries")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let list: String = r.get(0)?;
            let channel: String = r.get(1)?;
            let msisdn: i64 = r.get(2)?;
            if let (Ok(list), Some(scope), Ok(n)) = (
                list.parse::<ListKind>(),
                scope_of(&channel),
                u64::try_from(msisdn),
            ) {
                loaded.entries.push((list, scope, n));
            }
        }
        let mut st = self
            .conn
            .prepare("SELECT msisdn, channel, day, count FROM contacts WHERE day >= ?1")?;
        let mut rows = st.query([first_day])?;
        while let Some(r) = rows.next()? {
            let msisdn: i64 = r.get(0)?;
            let channel: String = r.get(1)?;
            if let (Ok(n), Ok(c)) = (u64::try_from(msisdn), channel.parse::<Channel>()) {
                loaded.contacts.push((n, c, r.get(2)?, r.get(3)?));
            }
        }
        if let Some(caps) = self.setting("caps")? {
            loaded.caps = serde_json::from_str(&caps).map_err(|e| DbError::Setting {
                key: "caps",
                reason: e.to_string(),
            })?;
        }
        if let Some(quiet) = self.setting("quiet_hours")? {
            loaded.quiet = serde_json::from_str(&quiet).map_err(|e| DbError::Setting {
                key: "quiet_hours",
                reason: e.to_string(),
            })?;
        }
        Ok(loaded)
    }

    fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Adds numbers to a list or removes them, and records the change, in one transaction;
    /// returns the numbers the edit changed (new ones for an add, present ones for a remove),
    /// so the view and the audit trail see only real changes.
    ///
    /// # Errors
    /// [`DbError`]: nothing was written.
    pub fn edit(
        &mut self,
        edit: ListEdit,
        list: ListKind,
        scope: Scope,
        msisdns: &[u64],
        audit: (&str, i64),
    ) -> Result<Vec<u64>, DbError> {
        let tx = self.conn.transaction()?;
        let mut changed = Vec::new();
        {
            let mut st = tx.prepare_cached(match edit {
                ListEdit::Add => {
                    "INSERT OR IGNORE INTO list_entries (list, channel, msisdn, added_ms)
                     VALUES (?1, ?2, ?3, ?4)"
                }
                ListEdit::Remove => {
                    "DELETE FROM list_entries WHERE list = ?1 AND channel = ?2 AND msisdn = ?3"
                }
            })?;
            for &n in msisdns {
                let (name, channel, key) = (list.as_str(), scope_str(scope), key_sql(n));
                // SQLite refuses a parameter the statement does not name: only an add stamps.
                let rows = match edit {
                    ListEdit::Add => st.execute(params![name, channel, key, audit.1])?,
                    ListEdit::Remove => st.execute(params![name, channel, key])?,
                };
                if rows > 0 {
                    changed.push(n);
                }
            }
        }
        if !changed.is_empty() {
            Self::record(&tx, audit, edit.action(), &change(list, scope, &changed))?;
        }
        tx.commit()?;
        Ok(changed)
    }

    /// One page of a list in number order: at most `limit` numbers greater than `after`.
    ///
    /// # Errors
    /// [`DbError`] on SQLite failure.
    pub fn page(
        &self,
        list: ListKind,
        scope: Scope,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, DbError> {
        let mut st = self.conn.prepare_cached(
            "SELECT msisdn FROM list_entries WHERE list = ?1 AND channel = ?2 AND msisdn > ?3
             ORDER BY msisdn LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![
                list.as_str(),
                scope_str(scope),
                key_sql(after),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| r.get::<_, i64>(0),
        )?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(n) = u64::try_from(r?) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Stores a setting (`caps`, `quiet_hours`) as JSON and records the change.
    ///
    /// # Errors
    /// [`DbError`]: nothing was written.
    pub fn set(&mut self, key: &str, json: &str, audit: (&str, i64)) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, json],
        )?;
        Self::record(&tx, audit, &format!("{key}_set"), json)?;
        tx.commit()?;
        Ok(())
    }

    /// Counts delivered contacts, skipping message ids counted before (a receipt replayed
    /// after a restart); returns the ones counted now. Counts older than `forget_before`
    /// (and their ids) are dropped in the same transaction.
    ///
    /// # Errors
    /// [`DbError`]: nothing was written.
    pub fn count(
        &mut self,
        delivered: &[Delivered],
        forget_before: i32,
    ) -> Result<Vec<Delivered>, DbError> {
        let tx = self.conn.transaction()?;
        let mut counted = Vec::new();
        {
            let mut seen = tx.prepare_cached(
                "INSERT OR IGNORE INTO counted (message_id, day) VALUES (?1, ?2)",
            )?;
            let mut add = tx.prepare_cached(
                "INSERT INTO contacts (msisdn, channel, day, count) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (msisdn, channel, day) DO UPDATE SET count = count + 1",
            )?;
            for d in delivered {
                if seen.execute(params![d.message_id, d.day])? == 0 {
                    continue;
                }
                add.execute(params![key_sql(d.msisdn), d.channel.as_str(), d.day])?;
                counted.push(d.clone());
            }
        }
        tx.execute("DELETE FROM contacts WHERE day < ?1", [forget_before])?;
        tx.execute("DELETE FROM counted WHERE day < ?1", [forget_before])?;
        tx.commit()?;
        Ok(counted)
    }

    /// The newest `limit` audit entries, newest first.
    ///
    /// # Errors
    /// [`DbError`] on SQLite failure.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, DbError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at_ms, who, action, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                who: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record(
        tx: &rusqlite::Transaction<'_>,
        (who, at_ms): (&str, i64),
        action: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        tx.execute(
            "INSERT INTO audit (at_ms, who, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![at_ms, who, action, detail],
        )?;
        Ok(())
    }
}

/// The audit detail of a list change: list, scope and the numbers (capped, with the total,
/// so a million-line import does not write a million-number audit row per chunk).
fn change(list: ListKind, scope: Scope, msisdns: &[u64]) -> String {
    const SHOWN: usize = 100;
    serde_json::json!({
        "list": list.as_str(),
        "channel": scope.map(Channel::as_str),
        "count": msisdns.len(),
        "msisdns": msisdns.iter().take(SHOWN).map(u64::to_string).collect::<Vec<_>>(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Period;

    #[test]
    fn edits_survive_reopening_and_are_audited() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rules.db");
        {
            let mut db = RuleDb::open(&path).expect("open");
            let added = db
                .edit(
                    ListEdit::Add,
                    ListKind::DoNotDisturb,
                    Some(Channel::Sms),
                    &[13_800_138_000, 13_900_139_000],
                    ("ops", 1),
                )
                .expect("add");
            assert_eq!(added.len(), 2);
            assert!(
                db.edit(
                    ListEdit::Add,
                    ListKind::DoNotDisturb,
                    Some(Channel::Sms),
                    &[13_800_138_000],
                    ("ops", 2)
                )
                .expect("add")
                .is_empty()
            );
            let removed = db
                .edit(
                    ListEdit::Remove,
                    ListKind::DoNotDisturb,
                    Some(Channel::Sms),
                    &[13_900_139_000, 1],
                    ("ops", 3),
                )
                .expect("remove");
            assert_eq!(removed, vec![13_900_139_000]);
            let caps = vec![Cap {
                channel: None,
                max: 3,
                period: Period::Week,
            }];
            db.set(
                "caps",
                &serde_json::to_string(&caps).expect("json"),
                ("ops", 4),
            )
            .expect("set");
        }
        let db = RuleDb::open(&path).expect("reopen");
        let loaded = db.load(0).expect("load");
        assert_eq!(
            loaded.entries,
            vec![(ListKind::DoNotDisturb, Some(Channel::Sms), 13_800_138_000)]
        );
        assert_eq!(loaded.caps.len(), 1);
        let audit = db.audit(10).expect("audit");
        let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["caps_set", "list_remove", "list_add"]);
        assert!(audit.iter().all(|a| a.who == "ops"));
    }

    #[test]
    fn pages_are_ordered_and_resume_after_the_cursor() {
        let mut db = RuleDb::open_in_memory().expect("open");
        let nums: Vec<u64> = (0..25).map(|i| 13_800_000_000 + i * 7).collect();
        db.edit(ListEdit::Add, ListKind::Blacklist, None, &nums, ("ops", 1))
            .expect("add");
        let first = db.page(ListKind::Blacklist, None, 0, 10).expect("page");
        assert_eq!(first, nums[..10]);
        let next = db
            .page(ListKind::Blacklist, None, *first.last().expect("last"), 100)
            .expect("page");
        assert_eq!(next, nums[10..]);
        assert!(
            db.page(ListKind::Blacklist, Some(Channel::Sms), 0, 10)
                .expect("page")
                .is_empty()
        );
    }

    #[test]
    fn a_replayed_receipt_is_counted_once() {
        let mut db = RuleDb::open_in_memory().expect("open");
        let d = Delivered {
            message_id: "m1".into(),
            msisdn: 13_800_138_000,
            channel: Channel::Sms,
            day: 100,
        };
        assert_eq!(
            db.count(std::slice::from_ref(&d), 0).expect("count").len(),
            1
        );
        assert!(db.count(&[d], 0).expect("count").is_empty());
        assert_eq!(
            db.load(0).expect("load").contacts,
            vec![(13_800_138_000, Channel::Sms, 100, 1)]
        );
        // Old days are forgotten.
        db.count(&[], 101).expect("prune");
        assert!(db.load(0).expect("load").contacts.is_empty());
    }
}
