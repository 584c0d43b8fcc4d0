//! [`Campaigns`]: the facade over the SQLite store and the in-memory subscriber table.
//!
//! The CLI (`sluice campaign …`) and the HTTP API call these methods. The subscriber table
//! lives in memory (columnar, for fast scans) and is written through to SQLite on every
//! import, so [`Campaigns::open`] after a restart sees exactly what was acknowledged.
//! Not `Sync`: share it as `Arc<Mutex<Campaigns>>` (see [`crate::api`]).

use std::io::{BufRead, Read};
use std::path::Path;

use jiff::Timestamp;
use rusqlite::Connection;

use crate::error::Result;
use crate::import::{ImportReport, import_csv};
use crate::launch::{self, BulkSpec, PlanReport};
use crate::lifecycle::{self, TaskState};
use crate::routing::MoSettings;
use crate::segment::{self, NumbersReport, SegmentInfo, SetOp, Step, StepCount};
use crate::table::SubscriberTable;
use crate::{feedback, persist, report, store};

/// Campaign service state: store + subscriber table.
#[derive(Debug)]
pub struct Campaigns {
    /// The SQLite connection (public so advanced callers and tests can query history).
    pub conn: Connection,
    /// The columnar subscriber table (mirror of the `subscribers` tables).
    pub table: SubscriberTable,
    /// Reply routing: the sending account's service numbers and the unsubscribe keywords
    /// (defaults: none, [`crate::routing::DEFAULT_UNSUBSCRIBE_KEYWORDS`]; the gateway sets
    /// them from its config when it hosts the service).
    pub mo: MoSettings,
    /// What trigger matching keeps between steps (compiled triggers, contact history);
    /// rebuilt from the store after a restart.
    pub matching: crate::triggers::engine::Matching,
}

impl Campaigns {
    /// Opens (creating/migrating) the store at `path` and loads the subscriber table.
    ///
    /// # Errors
    /// Store errors.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = store::open(path)?;
        let table = persist::load(&conn)?;
        crate::rules::fold_legacy_members(&mut conn, &table)?;
        Ok(Self {
            conn,
            table,
            mo: MoSettings::default(),
            matching: crate::triggers::engine::Matching::default(),
        })
    }

    /// An in-memory service (tests, demo).
    ///
    /// # Errors
    /// Store errors.
    pub fn in_memory() -> Result<Self> {
        Ok(Self {
            conn: store::open_in_memory()?,
            table: SubscriberTable::default(),
            mo: MoSettings::default(),
            matching: crate::triggers::engine::Matching::default(),
        })
    }

    /// Imports subscribers from CSV and persists the changed rows in one transaction
    /// (all or nothing: on a fatal error nothing is written and the table is reloaded
    /// from the file, so memory and disk never disagree).
    ///
    /// Parsing and writing run one after the other. Overlapping them on a writer thread
    /// was tried and measured slower on the shared 2-core box (32.8 s vs 28.8 s for 12 M
    /// rows), so the simpler sequential form stays.
    ///
    /// # Errors
    /// Fatal import errors (I/O, header) or store errors; bad lines are in the report.
    pub fn import_subscribers<R: Read>(
        &mut self,
        input: R,
        total_bytes: Option<u64>,
    ) -> Result<ImportReport> {
        let result = import_csv(&mut self.table, input, total_bytes).and_then(|report| {
            persist::save(&mut self.conn, &self.table, &report.changed)?;
            Ok(report)
        });
        result.or_else(|e| {
            self.table = persist::load(&self.conn)?;
            Err(e)
        })
    }

    /// Replaces nothing, adds everything in `table` (synthetic cities) and persists it.
    ///
    /// # Errors
    /// Store errors.
    pub fn load_synthetic(&mut self, n: u32, seed: u64) -> Result<()> {
        let start = self.table.len();
        for i in 0..u64::from(n) {
            self.table.upsert(&crate::synth::subscriber(i, seed));
        }
        let mut changed = roaring::RoaringBitmap::new();
        changed.insert_range(start..self.table.len());
        persist::save(&mut self.conn, &self.table, &changed)?;
        Ok(())
    }

    /// Instant count of a condition.
    ///
    /// # Errors
    /// Parse/eval errors naming the column.
    pub fn count(&self, condition: &str) -> Result<u64> {
        segment::count_condition(&self.table, condition)
    }

    /// Creates a segment from a condition.
    ///
    /// # Errors
    /// Parse/eval/store errors.
    pub fn segment_from_condition(
        &self,
        name: &str,
        condition: &str,
        now: Timestamp,
    ) -> Result<SegmentInfo> {
        segment::create_from_condition(&self.conn, &self.table, name, condition, now.as_second())
    }

    /// Creates a segment from a file of numbers.
    ///
    /// # Errors
    /// I/O/store errors.
    pub fn segment_from_numbers<R: BufRead>(
        &self,
        name: &str,
        input: R,
        now: Timestamp,
    ) -> Result<(SegmentInfo, NumbersReport)> {
        segment::create_from_numbers(&self.conn, &self.table, name, input, now.as_second())
    }

    /// Creates `a op b`.
    ///
    /// # Errors
    /// Unknown segments, store errors.
    pub fn segment_from_algebra(
        &self,
        name: &str,
        op: SetOp,
        a: i64,
        b: i64,
        now: Timestamp,
    ) -> Result<SegmentInfo> {
        segment::create_from_algebra(&self.conn, name, op, a, b, now.as_second())
    }

    /// Creates a segment from accumulated rule steps (count after each step).
    ///
    /// # Errors
    /// Parse/eval/store errors.
    pub fn segment_from_steps(
        &mut self,
        name: &str,
        steps: &[Step],
        now: Timestamp,
    ) -> Result<(SegmentInfo, Vec<StepCount>)> {
        segment::create_from_steps(&mut self.conn, &self.table, name, steps, now.as_second())
    }

    /// Moves a task through the approval state machine (no authenticated user: the local
    /// CLI and the runner).
    ///
    /// # Errors
    /// [`crate::CampaignError::IllegalTransition`] and store errors.
    pub fn transition(
        &mut self,
        task: i64,
        to: TaskState,
        actor: &str,
        now: Timestamp,
        note: &str,
    ) -> Result<()> {
        self.transition_by(task, to, actor, None, now, note)
    }

    /// Moves a task through the approval state machine on behalf of user `user` (named
    /// `actor`; see [`lifecycle::transition_by`] for the self-approval rule).
    ///
    /// Resuming (paused → running) marks the task's unfinished slices for a fresh rule
    /// check, so subscribers blacklisted or capped during the pause are not sent.
    ///
    /// # Errors
    /// [`crate::CampaignError::IllegalTransition`], [`crate::CampaignError::SelfApproval`]
    /// and store errors.
    pub fn transition_by(
        &mut self,
        task: i64,
        to: TaskState,
        actor: &str,
        user: Option<i64>,
        now: Timestamp,
        note: &str,
    ) -> Result<()> {
        let from = lifecycle::task_state(&self.conn, task)?;
        lifecycle::transition_by(&mut self.conn, task, to, actor, user, now.as_second(), note)?;
        if from == TaskState::Paused && to == TaskState::Running {
            launch::recheck_unfinished(&self.conn, task)?;
        }
        Ok(())
    }

    /// Creates a bulk send under a task.
    ///
    /// # Errors
    /// Validation errors naming the field.
    pub fn create_bulk(&self, task: i64, spec: &BulkSpec) -> Result<i64> {
        launch::create_bulk(&self.conn, &self.table, task, spec)
    }

    /// Launch planning (idempotent).
    ///
    /// # Errors
    /// [`crate::CampaignError::NotSendable`] unless scheduled/running.
    pub fn plan(&mut self, bulk: i64, now: Timestamp) -> Result<PlanReport> {
        launch::plan_with(&mut self.conn, &self.table, bulk, now.as_second(), &self.mo)
    }

    /// Funnel of a task (per group and channel).
    ///
    /// # Errors
    /// Store errors.
    pub fn funnel(&self, task: i64) -> Result<Vec<report::FunnelRow>> {
        report::funnel(&self.conn, task)
    }

    /// Uplift of each variant over control (two-proportion z-test).
    ///
    /// # Errors
    /// Store errors.
    pub fn uplift(&self, task: i64) -> Result<Vec<report::UpliftRow>> {
        report::uplift(&self.conn, task)
    }

    /// Daily report in time zone `tz`.
    ///
    /// # Errors
    /// Unknown zone, store errors.
    pub fn daily_report(&self, tz: &str) -> Result<Vec<report::DailyRow>> {
        report::daily(&self.conn, tz)
    }

    /// Imports an order/conversion CSV with the default 7-day attribution window.
    ///
    /// # Errors
    /// Fatal CSV/I/O or store errors; bad lines are in the report.
    pub fn import_orders<R: Read>(&mut self, input: R) -> Result<feedback::OrdersReport> {
        feedback::import_orders(
            &mut self.conn,
            &self.table,
            input,
            feedback::DEFAULT_WINDOW_DAYS,
            crate::window::DEFAULT_TZ,
        )
    }
}
