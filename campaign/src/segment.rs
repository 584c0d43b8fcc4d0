//! Customer segments (客户群): bitmaps of subscriber ids with a recorded definition.
//!
//! Ways to build one: a file of numbers, a condition expression ([`crate::expr`]), set algebra
//! over existing segments, a task's outcome for a second round ([`create_from_outcome`]),
//! or an accumulation of rule steps (each step's running count is
//! recorded in `segment_steps`). A segment is a snapshot: its members are frozen when it is
//! created, so later imports do not silently change an approved task's audience.

use std::io::{BufRead, Write};

use roaring::RoaringBitmap;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{CampaignError, Result};
use crate::store::{bitmap_to_blob, blob_to_bitmap};
use crate::table::{SubscriberRow, SubscriberTable};
use crate::{expr, msisdn};

/// Segment metadata (without the members).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SegmentInfo {
    pub id: i64,
    pub name: String,
    /// `file`, `condition`, `algebra`, `outcome` or `rules`.
    pub kind: String,
    /// The expression, the algebra, or a JSON list of steps.
    pub definition: String,
    pub count: u64,
    pub created_at: i64,
}

/// Set operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOp {
    Union,
    Intersection,
    Difference,
}

impl SetOp {
    /// Applies the operation.
    pub fn apply(self, a: &RoaringBitmap, b: &RoaringBitmap) -> RoaringBitmap {
        match self {
            Self::Union => a | b,
            Self::Intersection => a & b,
            Self::Difference => a - b,
        }
    }
}

/// Where a rule step's set comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Condition(String),
    Segment(i64),
}

/// One accumulated rule step: `op` combines the running set with `source`
/// (the first step's op is ignored: it starts the set).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub op: SetOp,
    pub source: Source,
}

/// Running count after a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepCount {
    pub step: usize,
    pub count: u64,
}

/// Numbers from a file that were not used.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NumbersReport {
    /// (1-based line, reason) for lines that are not phone numbers.
    pub invalid: Vec<(u64, String)>,
    /// Valid numbers that are not known subscribers.
    pub unknown: u64,
}

/// Evaluates a condition without saving anything (instant count).
///
/// # Errors
/// Parse or evaluation errors naming the column.
pub fn evaluate_condition(table: &SubscriberTable, src: &str) -> Result<RoaringBitmap> {
    let e = expr::parse(src)?;
    Ok(expr::evaluate(&e, table)?)
}

/// Counts a condition's members without building a bitmap (the interactive count).
///
/// # Errors
/// Parse or evaluation errors naming the column.
pub fn count_condition(table: &SubscriberTable, src: &str) -> Result<u64> {
    let e = expr::parse(src)?;
    Ok(expr::count(&e, table)?)
}

/// Resolves numbers (one per line; blank lines and a `msisdn` header skipped) to ids.
///
/// # Errors
/// I/O errors of the reader.
pub fn read_numbers<R: BufRead>(
    table: &SubscriberTable,
    input: R,
) -> Result<(RoaringBitmap, NumbersReport)> {
    let mut set = RoaringBitmap::new();
    let mut rep = NumbersReport::default();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        let field = line.split(',').next().unwrap_or("").trim();
        if field.is_empty() || field.eq_ignore_ascii_case("msisdn") {
            continue;
        }
        match msisdn::normalize(field) {
            Ok(n) => match table.id_of(n) {
                Some(id) => {
                    set.insert(id);
                }
                None => rep.unknown += 1,
            },
            Err(e) => rep.invalid.push((i as u64 + 1, e.to_string())),
        }
    }
    Ok((set, rep))
}

/// Saves a new segment.
///
/// # Errors
/// SQLite failure.
pub fn save(
    conn: &Connection,
    name: &str,
    kind: &str,
    definition: &str,
    members: &RoaringBitmap,
    now: i64,
) -> Result<SegmentInfo> {
    conn.execute(
        "INSERT INTO segments (name, kind, definition, members, count, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            name,
            kind,
            definition,
            bitmap_to_blob(members),
            members.len() as i64,
            now
        ],
    )?;
    Ok(SegmentInfo {
        id: conn.last_insert_rowid(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        definition: definition.to_owned(),
        count: members.len(),
        created_at: now,
    })
}

/// Creates a segment from a condition.
///
/// # Errors
/// Parse/eval errors, SQLite failure.
pub fn create_from_condition(
    conn: &Connection,
    table: &SubscriberTable,
    name: &str,
    src: &str,
    now: i64,
) -> Result<SegmentInfo> {
    let set = evaluate_condition(table, src)?;
    save(conn, name, "condition", src, &set, now)
}

/// Creates a segment from a file of numbers.
///
/// # Errors
/// I/O or SQLite failure.
pub fn create_from_numbers<R: BufRead>(
    conn: &Connection,
    table: &SubscriberTable,
    name: &str,
    input: R,
    now: i64,
) -> Result<(SegmentInfo, NumbersReport)> {
    let (set, rep) = read_numbers(table, input)?;
    let info = save(conn, name, "file", name, &set, now)?;
    Ok((info, rep))
}

/// Creates `a op b` from two saved segments.
///
/// # Errors
/// [`CampaignError::NotFound`] for unknown segments; SQLite failure.
pub fn create_from_algebra(
    conn: &Connection,
    name: &str,
    op: SetOp,
    a: i64,
    b: i64,
    now: i64,
) -> Result<SegmentInfo> {
    let set = op.apply(&members(conn, a)?, &members(conn, b)?);
    let def = format!("{op:?}({a}, {b})").to_lowercase();
    save(conn, name, "algebra", &def, &set, now)
}

/// What happened to a task's subscribers, for a second round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Contacted and replied to the task (any reply credited to it, unsubscribes included:
    /// the contact rules keep those out of later sends anyway).
    Responders,
    /// Contacted, not failed, and no reply: the natural retry audience.
    NonResponders,
    /// Every contact of the task failed (undeliverable, expired, rejected, failed).
    Failed,
    /// Contacted and converted (order or reply attributed to the task).
    Converted,
    /// At least one contact of the task was delivered.
    Delivered,
}

impl Outcome {
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Responders => "responders",
            Self::NonResponders => "non_responders",
            Self::Failed => "failed",
            Self::Converted => "converted",
            Self::Delivered => "delivered",
        }
    }
}

/// The subscribers of `task` with `outcome`, from its contacts, replies and conversions.
/// Hold-out control members were never contacted, so they are in no outcome.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown task; SQLite failure.
pub fn outcome_members(
    conn: &Connection,
    table: &SubscriberTable,
    task: i64,
    outcome: Outcome,
) -> Result<RoaringBitmap> {
    let known: Option<i64> = conn
        .query_row("SELECT id FROM tasks WHERE id = ?1", [task], |r| r.get(0))
        .optional()?;
    if known.is_none() {
        return Err(CampaignError::NotFound {
            what: "task",
            id: task,
        });
    }
    let ids = |sql: &str| -> Result<RoaringBitmap> {
        let mut st = conn.prepare(sql)?;
        let mut out = RoaringBitmap::new();
        for id in st.query_map([task], |r| r.get::<_, i64>(0))? {
            if let Ok(id) = u32::try_from(id?) {
                out.insert(id);
            }
        }
        Ok(out)
    };
    let contacted = ids("SELECT DISTINCT sub_id FROM contacts WHERE task_id = ?1")?;
    let failed_any = ids("SELECT DISTINCT sub_id FROM contacts WHERE task_id = ?1
         AND state IN ('undeliverable', 'expired', 'rejected', 'failed')")?;
    let not_failed = ids("SELECT DISTINCT sub_id FROM contacts WHERE task_id = ?1
         AND state NOT IN ('undeliverable', 'expired', 'rejected', 'failed')")?;
    let responders = || -> Result<RoaringBitmap> {
        let mut st = conn.prepare("SELECT DISTINCT msisdn FROM replies WHERE task_id = ?1")?;
        let mut out = RoaringBitmap::new();
        for m in st.query_map([task], |r| r.get::<_, i64>(0))? {
            if let Some(id) = table.id_of(m? as u64) {
                out.insert(id);
            }
        }
        Ok(out & &contacted)
    };
    Ok(match outcome {
        Outcome::Responders => responders()?,
        Outcome::NonResponders => &not_failed - &responders()?,
        Outcome::Failed => &failed_any - &not_failed,
        Outcome::Converted => {
            ids("SELECT DISTINCT sub_id FROM conversions WHERE task_id = ?1")? & &contacted
        }
        Outcome::Delivered => {
            ids("SELECT DISTINCT sub_id FROM contacts WHERE task_id = ?1 AND state = 'delivered'")?
        }
    })
}

/// Creates a segment of the subscribers of `task` with `outcome` (kind `outcome`,
/// definition `task <id>: <outcome>`), a snapshot like every segment.
///
/// # Errors
/// As [`outcome_members`].
pub fn create_from_outcome(
    conn: &Connection,
    table: &SubscriberTable,
    name: &str,
    task: i64,
    outcome: Outcome,
    now: i64,
) -> Result<SegmentInfo> {
    let set = outcome_members(conn, table, task, outcome)?;
    let def = format!("task {task}: {}", outcome.as_str());
    save(conn, name, "outcome", &def, &set, now)
}

/// Runs rule steps, returning the final set and the count after each step.
///
/// # Errors
/// Parse/eval errors, unknown segments.
pub fn run_steps(
    conn: &Connection,
    table: &SubscriberTable,
    steps: &[Step],
) -> Result<(RoaringBitmap, Vec<StepCount>)> {
    let mut acc = RoaringBitmap::new();
    let mut counts = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let set = match &s.source {
            Source::Condition(c) => evaluate_condition(table, c)?,
            Source::Segment(id) => members(conn, *id)?,
        };
        acc = if i == 0 { set } else { s.op.apply(&acc, &set) };
        counts.push(StepCount {
            step: i + 1,
            count: acc.len(),
        });
    }
    Ok((acc, counts))
}

/// Saves the result of accumulated rule steps with the per-step counts.
///
/// # Errors
/// As [`run_steps`], plus SQLite failure.
pub fn create_from_steps(
    conn: &mut Connection,
    table: &SubscriberTable,
    name: &str,
    steps: &[Step],
    now: i64,
) -> Result<(SegmentInfo, Vec<StepCount>)> {
    let (set, counts) = run_steps(conn, table, steps)?;
    let def = serde_json::to_string(steps).unwrap_or_default();
    let tx = conn.transaction()?;
    let info = save(&tx, name, "rules", &def, &set, now)?;
    for (s, c) in steps.iter().zip(&counts) {
        tx.execute(
            "INSERT INTO segment_steps (segment_id, step, op, definition, count) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                info.id,
                c.step as i64,
                format!("{:?}", s.op).to_lowercase(),
                serde_json::to_string(&s.source).unwrap_or_default(),
                c.count as i64
            ],
        )?;
    }
    tx.commit()?;
    Ok((info, counts))
}

/// Recorded step counts of a rules segment.
///
/// # Errors
/// SQLite failure.
pub fn step_counts(conn: &Connection, id: i64) -> Result<Vec<StepCount>> {
    let mut st =
        conn.prepare("SELECT step, count FROM segment_steps WHERE segment_id = ?1 ORDER BY step")?;
    let rows = st.query_map([id], |r| {
        Ok(StepCount {
            step: r.get::<_, i64>(0)? as usize,
            count: r.get::<_, i64>(1)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Members of a saved segment.
///
/// # Errors
/// [`CampaignError::NotFound`], corrupt BLOB, SQLite failure.
pub fn members(conn: &Connection, id: i64) -> Result<RoaringBitmap> {
    let blob: Option<Vec<u8>> = conn
        .query_row("SELECT members FROM segments WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let blob = blob.ok_or(CampaignError::NotFound {
        what: "segment",
        id,
    })?;
    Ok(blob_to_bitmap(&blob, "segments", id)?)
}

/// Metadata of every segment.
///
/// # Errors
/// SQLite failure.
pub fn list(conn: &Connection) -> Result<Vec<SegmentInfo>> {
    let mut st = conn.prepare(
        "SELECT id, name, kind, definition, count, created_at FROM segments ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(SegmentInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            definition: r.get(3)?,
            count: r.get::<_, i64>(4)? as u64,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Up to `n` members spread evenly over the segment (deterministic).
pub fn sample(table: &SubscriberTable, set: &RoaringBitmap, n: usize) -> Vec<SubscriberRow> {
    let len = set.len();
    if len == 0 || n == 0 {
        return Vec::new();
    }
    let n = (n as u64).min(len);
    (0..n)
        .filter_map(|k| set.select((k * len / n) as u32))
        .filter_map(|id| table.row(id))
        .collect()
}

/// Writes members as CSV (msisdn + built-in attributes).
///
/// # Errors
/// I/O errors of `out`.
pub fn export_csv<W: Write>(table: &SubscriberTable, set: &RoaringBitmap, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["msisdn", "brand", "region", "city", "arpu", "age", "plan"])?;
    let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for id in set {
        if let Some(r) = table.row(id) {
            w.write_record([
                r.msisdn.to_string(),
                r.brand,
                r.region,
                r.city,
                num(r.arpu),
                num(r.age),
                r.plan,
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_in_memory;
    use crate::synth::generate_city;

    #[test]
    fn condition_algebra_steps_and_export() {
        let mut c = open_in_memory().unwrap();
        let t = generate_city(5_000, 1);
        let a = create_from_condition(&c, &t, "gotone", r#"brand = "gotone""#, 1).unwrap();
        let b = create_from_condition(&c, &t, "rich", "arpu >= 100", 1).unwrap();
        let sa = members(&c, a.id).unwrap();
        let sb = members(&c, b.id).unwrap();
        assert_eq!(sa.len(), a.count);
        let i = create_from_algebra(&c, "i", SetOp::Intersection, a.id, b.id, 2).unwrap();
        let u = create_from_algebra(&c, "u", SetOp::Union, a.id, b.id, 2).unwrap();
        let d = create_from_algebra(&c, "d", SetOp::Difference, a.id, b.id, 2).unwrap();
        assert_eq!(i.count + u.count, a.count + b.count);
        assert_eq!(d.count, a.count - i.count);
        let via_expr = evaluate_condition(&t, r#"brand = "gotone" and not arpu >= 100"#).unwrap();
        assert_eq!(members(&c, d.id).unwrap(), via_expr);
        let steps = vec![
            Step {
                op: SetOp::Union,
                source: Source::Segment(a.id),
            },
            Step {
                op: SetOp::Union,
                source: Source::Condition("arpu >= 100".into()),
            },
            Step {
                op: SetOp::Difference,
                source: Source::Condition(r#"region = "lanzhou""#.into()),
            },
        ];
        let (info, counts) = create_from_steps(&mut c, &t, "acc", &steps, 3).unwrap();
        assert_eq!(counts[0].count, a.count);
        assert_eq!(counts[1].count, u.count);
        assert_eq!(counts[2].count, info.count);
        assert!(counts[2].count < counts[1].count);
        assert_eq!(step_counts(&c, info.id).unwrap(), counts);
        let sample = sample(&t, &sa, 10);
        assert_eq!(sample.len(), 10);
        assert!(sample.iter().all(|r| r.brand == "gotone"));
        let mut out = Vec::new();
        export_csv(&t, &sb, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap().lines().count() as u64,
            sb.len() + 1
        );
        assert!(sa.is_subset(&t.len().pipe_all()));
        assert!(matches!(
            members(&c, 999),
            Err(CampaignError::NotFound { .. })
        ));
    }

    trait PipeAll {
        fn pipe_all(self) -> RoaringBitmap;
    }
    impl PipeAll for u32 {
        fn pipe_all(self) -> RoaringBitmap {
            let mut b = RoaringBitmap::new();
            b.insert_range(0..self);
            b
        }
    }

    #[test]
    fn numbers_file_reports_invalid_and_unknown() {
        let c = open_in_memory().unwrap();
        let t = generate_city(100, 1);
        let known = t.msisdn(5).unwrap();
        let file = format!("msisdn\n{known}\n+86{known}\n\n12ab\n13999999999\n");
        let (info, rep) = create_from_numbers(&c, &t, "list", file.as_bytes(), 1).unwrap();
        assert_eq!(info.count, 1);
        assert_eq!(rep.unknown, 1);
        assert_eq!(rep.invalid, vec![(5, "non-digit character 'a'".to_owned())]);
    }
}
