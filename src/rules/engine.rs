//! The public rules of a running gateway: `rules.db` written through to the in-memory view.
//!
//! Job: one object every user of the rules shares — ingress (checks, quiet hours), the
//! management API (edits), the receipt consumer (delivered contacts) and the unsubscribe
//! handler. Invariants:
//! - Write-through, disk first: an edit commits to SQLite (`synchronous=FULL`) and only then
//!   changes the view, under the database lock, so the view never shows what a crash would
//!   lose and concurrent edits reach the view in commit order.
//! - Reads never touch SQLite: a check takes the view's read lock and a few hash probes.
//! - Which lanes are bound is configuration (`[rules] exempt_lanes`); an exempt lane is
//!   never refused, never deferred by quiet hours and its deliveries never count.
//! - Caps count delivered contacts per local day in the configured zone; counts are kept for
//!   [`MIN_HISTORY_DAYS`] days or the longest cap's span, whichever is longer (a cap made
//!   longer later sees only the history kept until then).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::db::{AuditEntry, DbError, Delivered, RuleDb};
use super::model::{Cap, Channel, ListEdit, ListKind, Refusal, Scope, day_number, msisdn_key};
use super::view::View;
use crate::clock::{AnyClock, Clock};
use crate::schedule::TimeWindow;
use crate::store::{Lane, MessageKind};

/// Contact counts are kept at least this many days (a calendar month).
pub const MIN_HISTORY_DAYS: u16 = 31;

/// Why a rules operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The database failed; nothing changed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A value the caller gave is not acceptable (422 over HTTP).
    #[error("{field}: {reason}")]
    Invalid {
        /// Field at fault.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The public rules. Share it in an `Arc`.
#[derive(Debug)]
pub struct Rules {
    db: Mutex<RuleDb>,
    view: RwLock<View>,
    tz: TimeZone,
    /// Indexed by `Lane::as_byte`: `true` = exempt.
    exempt: [bool; 3],
    clock: AnyClock,
    /// The quiet hours of an exempt lane, shared: ingress asks for every message.
    none: Arc<[TimeWindow]>,
}

impl Rules {
    /// Opens `path` (created if missing) and loads the view.
    ///
    /// # Errors
    /// [`RulesError::Db`] when the file cannot be opened or read.
    pub fn open(
        path: &Path,
        tz: TimeZone,
        exempt_lanes: &[Lane],
        clock: AnyClock,
    ) -> Result<Self, RulesError> {
        Self::with_db(RuleDb::open(path)?, tz, exempt_lanes, clock)
    }

    /// Rules kept in memory only (tests; nothing survives the process).
    ///
    /// # Errors
    /// [`RulesError::Db`] when SQLite cannot start.
    pub fn in_memory(
        tz: TimeZone,
        exempt_lanes: &[Lane],
        clock: AnyClock,
    ) -> Result<Self, RulesError> {
        Self::with_db(RuleDb::open_in_memory()?, tz, exempt_lanes, clock)
    }

    fn with_db(
        db: RuleDb,
        tz: TimeZone,
        exempt_lanes: &[Lane],
        clock: AnyClock,
    ) -> Result<Self, RulesError> {
        let mut exempt = [false; 3];
        for l in exempt_lanes {
            exempt[usize::from(l.as_byte())] = true;
        }
        let rules = Self {
            db: Mutex::new(db),
            view: RwLock::new(View::default()),
            tz,
            exempt,
            clock,
            none: Arc::from(Vec::new()),
        };
        let loaded = rules.lock_db().load(rules.history_start(&[]))?;
        {
            let mut v = rules.write_view();
            for (list, scope, n) in loaded.entries {
                v.add(list, scope, &[n]);
            }
            for (n, c, day, count) in loaded.contacts {
                v.count_contact(n, c, day, count);
            }
            v.set_quiet(parse_quiet(&loaded.quiet)?);
            v.set_caps(loaded.caps);
        }
        let start = rules.history_start(rules.read_view().caps());
        rules.write_view().prune(start);
        Ok(rules)
    }

    fn lock_db(&self) -> MutexGuard<'_, RuleDb> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Today's local date in the configured zone, on the gateway's clock.
    pub fn today(&self) -> Date {
        self.tz.to_datetime(self.clock.now()).date()
    }

    /// The local date of `at` in the configured zone.
    pub fn date_of(&self, at: jiff::Timestamp) -> Date {
        self.tz.to_datetime(at).date()
    }

    /// Whether messages of `lane` are subject to the rules.
    pub fn binds(&self, lane: Lane) -> bool {
        !self.exempt[usize::from(lane.as_byte())]
    }

    /// The rule that refuses a message to `to` of `kind` on `lane` today, if any. Exempt
    /// lanes and numbers that are not national mobiles are never refused.
    pub fn check(&self, to: &str, kind: MessageKind, lane: Lane, today: Date) -> Option<Refusal> {
        if !self.binds(lane) {
            return None;
        }
        let key = msisdn_key(to)?;
        self.read_view().check(key, Channel::of_kind(kind), today)
    }

    /// The rule that would refuse `msisdn` on `channel` today (the `check` endpoint).
    pub fn check_key(&self, msisdn: u64, channel: Channel, today: Date) -> Option<Refusal> {
        self.read_view().check(msisdn, channel, today)
    }

    /// Quiet hours that defer messages of `lane` (empty for exempt lanes).
    pub fn quiet_hours_for(&self, lane: Lane) -> Arc<[TimeWindow]> {
        if self.binds(lane) {
            self.read_view().quiet()
        } else {
            Arc::clone(&self.none)
        }
    }

    fn stamp(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    /// Adds numbers to a list durably, then to the view; returns how many were new.
    ///
    /// # Errors
    /// [`RulesError::Db`]: nothing changed.
    pub fn add(
        &self,
        who: &str,
        list: ListKind,
        scope: Scope,
        msisdns: &[u64],
    ) -> Result<usize, RulesError> {
        self.edit(who, ListEdit::Add, list, scope, msisdns)
    }

    /// Adds numbers to a list or removes them, durably, then in the view; returns how many
    /// the edit changed (new ones, or ones that were there).
    ///
    /// # Errors
    /// [`RulesError::Db`]: nothing changed.
    pub fn edit(
        &self,
        who: &str,
        edit: ListEdit,
        list: ListKind,
        scope: Scope,
        msisdns: &[u64],
    ) -> Result<usize, RulesError> {
        // The database lock is held across the view update so concurrent edits reach the
        // view in commit order.
        let mut db = self.lock_db();
        let changed = db.edit(edit, list, scope, msisdns, (who, self.stamp()))?;
        let mut view = self.write_view();
        match edit {
            ListEdit::Add => view.add(list, scope, &changed),
            ListEdit::Remove => view.remove(list, scope, &changed),
        };
        Ok(changed.len())
    }

    /// One page of a list: numbers after `after`, at most `limit`.
    ///
    /// # Errors
    /// [`RulesError::Db`].
    pub fn page(
        &self,
        list: ListKind,
        scope: Scope,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, RulesError> {
        Ok(self.lock_db().page(list, scope, after, limit)?)
    }

    /// The caps.
    pub fn caps(&self) -> Vec<Cap> {
        self.read_view().caps().to_vec()
    }

    /// Replaces the caps.
    ///
    /// # Errors
    /// [`RulesError::Invalid`] for a cap of 0 or two caps on the same channel;
    /// [`RulesError::Db`]: nothing changed.
    pub fn set_caps(&self, who: &str, caps: Vec<Cap>) -> Result<(), RulesError> {
        for (i, c) in caps.iter().enumerate() {
            if c.max == 0 {
                return Err(RulesError::Invalid {
                    field: format!("caps[{i}].max"),
                    reason: "must be at least 1 (list the numbers instead)".into(),
                });
            }
            if caps[..i]
                .iter()
                .any(|o| o.channel == c.channel && o.period == c.period)
            {
                return Err(RulesError::Invalid {
                    field: format!("caps[{i}]"),
                    reason: "a cap with this channel and period is already given".into(),
                });
            }
        }
        let json = serde_json::to_string(&caps).unwrap_or_default();
        let mut db = self.lock_db();
        db.set("caps", &json, (who, self.stamp()))?;
        self.write_view().set_caps(caps);
        Ok(())
    }

    /// Quiet hours as written.
    pub fn quiet_hours(&self) -> Vec<String> {
        self.read_view()
            .quiet()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Replaces the quiet hours (`"HH:MM-HH:MM"` local windows).
    ///
    /// # Errors
    /// [`RulesError::Invalid`] naming the bad window; [`RulesError::Db`]: nothing changed.
    pub fn set_quiet_hours(&self, who: &str, windows: &[String]) -> Result<(), RulesError> {
        let parsed = parse_quiet(windows)?;
        let canonical: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        let json = serde_json::to_string(&canonical).unwrap_or_default();
        let mut db = self.lock_db();
        db.set("quiet_hours", &json, (who, self.stamp()))?;
        self.write_view().set_quiet(parsed);
        Ok(())
    }

    /// Counts delivered contacts (replayed message ids are skipped); returns how many were
    /// counted now.
    ///
    /// # Errors
    /// [`RulesError::Db`]: nothing was counted (the caller may retry the batch).
    pub fn count_delivered(&self, delivered: &[Delivered]) -> Result<usize, RulesError> {
        let mut db = self.lock_db();
        let start = self.history_start(self.read_view().caps());
        let counted = db.count(delivered, start)?;
        let mut v = self.write_view();
        for d in &counted {
            v.count_contact(d.msisdn, d.channel, d.day, 1);
        }
        v.prune(start);
        Ok(counted.len())
    }

    /// The first local day whose counts are kept.
    fn history_start(&self, caps: &[Cap]) -> i32 {
        let keep = caps
            .iter()
            .map(|c| c.period.max_days())
            .fold(MIN_HISTORY_DAYS, u16::max);
        day_number(self.today()) - i32::from(keep)
    }

    /// The newest audit entries, newest first.
    ///
    /// # Errors
    /// [`RulesError::Db`].
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, RulesError> {
        Ok(self.lock_db().audit(limit)?)
    }

    /// Numbers on a list for `scope` (in memory).
    pub fn len(&self, list: ListKind, scope: Scope) -> usize {
        self.read_view().len(list, scope)
    }
}

fn parse_quiet<S: AsRef<str>>(windows: &[S]) -> Result<Vec<TimeWindow>, RulesError> {
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            w.as_ref()
                .parse()
                .map_err(|e: crate::schedule::WindowError| RulesError::Invalid {
                    field: format!("windows[{i}]"),
                    reason: e.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::rules::model::Period;

    fn rules_at(path: &Path, clock: &ManualClock) -> Rules {
        Rules::open(
            path,
            TimeZone::get("Asia/Shanghai").expect("tz"),
            &[Lane::Otp, Lane::Notification],
            AnyClock::Manual(clock.clone()),
        )
        .expect("open")
    }

    #[test]
    fn edits_take_effect_at_once_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rules.db");
        let clock = ManualClock::new("2026-12-05T10:00:00+08:00".parse().expect("ts"));
        let today = Date::constant(2026, 12, 5);
        {
            let r = rules_at(&path, &clock);
            assert_eq!(
                r.check("+8613800138000", MessageKind::Sms, Lane::Marketing, today),
                None
            );
            r.add(
                "ops",
                ListKind::DoNotDisturb,
                Some(Channel::Sms),
                &[13_800_138_000],
            )
            .expect("add");
            assert_eq!(
                r.check("+8613800138000", MessageKind::Sms, Lane::Marketing, today)
                    .map(|x| x.to_string()),
                Some("blocked: do_not_disturb/sms".into())
            );
            // Exempt lanes pass.
            assert_eq!(
                r.check("13800138000", MessageKind::Sms, Lane::Otp, today),
                None
            );
            r.set_quiet_hours("ops", &["21:00-08:00".into()])
                .expect("quiet");
            assert!(r.set_quiet_hours("ops", &["25:00-08:00".into()]).is_err());
        }
        let r = rules_at(&path, &clock);
        assert!(
            r.check("13800138000", MessageKind::Sms, Lane::Marketing, today)
                .is_some()
        );
        assert_eq!(r.quiet_hours(), ["21:00-08:00"]);
        assert_eq!(r.quiet_hours_for(Lane::Marketing).len(), 1);
        assert!(r.quiet_hours_for(Lane::Otp).is_empty());
    }

    #[test]
    fn delivered_contacts_fill_a_cap_once_each() {
        let clock = ManualClock::new("2026-12-05T10:00:00+08:00".parse().expect("ts"));
        let r = Rules::in_memory(
            TimeZone::get("Asia/Shanghai").expect("tz"),
            &[Lane::Otp],
            AnyClock::Manual(clock),
        )
        .expect("rules");
        let today = r.today();
        r.set_caps(
            "ops",
            vec![Cap {
                channel: Some(Channel::Sms),
                max: 2,
                period: Period::Day,
            }],
        )
        .expect("caps");
        assert!(
            r.set_caps(
                "ops",
                vec![Cap {
                    channel: None,
                    max: 0,
                    period: Period::Day
                }]
            )
            .is_err()
        );
        let d = |id: &str| Delivered {
            message_id: id.into(),
            msisdn: 13_800_138_000,
            channel: Channel::Sms,
            day: day_number(today),
        };
        assert_eq!(r.count_delivered(&[d("a"), d("a")]).expect("count"), 1);
        assert_eq!(
            r.check("13800138000", MessageKind::Sms, Lane::Notification, today),
            None
        );
        assert_eq!(r.count_delivered(&[d("b")]).expect("count"), 1);
        assert_eq!(
            r.check("13800138000", MessageKind::Sms, Lane::Notification, today),
            Some(Refusal::ChannelCap(Channel::Sms))
        );
        assert_eq!(r.audit(10).expect("audit")[0].action, "caps_set");
    }
}
