//! The durable intake: parse a batch (JSON array or NDJSON), store the valid events in one
//! SQLite transaction with `synchronous=FULL`, and only then acknowledge.
//!
//! - Each event is stored once: `events.id` is unique and a second event with the same id
//!   is counted as a duplicate and dropped (`INSERT OR IGNORE`), whatever else it says.
//! - `events.seq` (the rowid) is the order matching reads them in; matching keeps its own
//!   cursor, so intake never waits for matching.
//! - The rest of the connection runs `synchronous=NORMAL` (WAL): cheap commits that may be
//!   lost in a power cut. An acknowledged event must survive one, so the intake's commit
//!   alone is made with `FULL` (the WAL is fsync'd before the commit returns).
//! - A batch may hold at most [`MAX_BATCH_LINES`] lines; an NDJSON body is split as it
//!   arrives ([`LineSplitter`]), so a 10 k-line body is never held twice.

use rusqlite::{Connection, params};

use super::{Event, LineError, MAX_BATCH_LINES, MAX_LINE_BYTES, from_json, from_line};
use crate::error::{CampaignError, Result};

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IntakeReport {
    /// Lines read (valid or not; blank NDJSON lines are not counted).
    pub lines: u64,
    /// New events stored (durable when this report is returned).
    pub accepted: u64,
    /// Valid events whose id was already stored (or repeated in the batch): ignored.
    pub duplicates: u64,
    /// Rejected lines, each naming its field.
    pub errors: Vec<LineError>,
}

/// A batch being assembled from lines.
#[derive(Debug, Default)]
pub struct Batch {
    events: Vec<Event>,
    report: IntakeReport,
}

impl Batch {
    /// Adds one NDJSON line (blank lines are skipped but keep the numbering).
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] (`body`) once the batch exceeds [`MAX_BATCH_LINES`].
    pub fn push_line(&mut self, line: u64, text: &[u8]) -> Result<()> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.count_line(line)?;
        match from_line(line, text) {
            Ok(e) => self.events.push(e),
            Err(e) => self.report.errors.push(e),
        }
        Ok(())
    }

    /// Counts `line` (1-based, as the client numbers it) against [`MAX_BATCH_LINES`].
    fn count_line(&mut self, line: u64) -> Result<()> {
        self.report.lines += 1;
        if self.report.lines > MAX_BATCH_LINES as u64 {
            return Err(CampaignError::invalid(
                "body",
                format!("line {line}: more than {MAX_BATCH_LINES} events in one batch; split it"),
            ));
        }
        Ok(())
    }

    /// Adds the elements of a JSON array (element `i` is line `i + 1`).
    ///
    /// # Errors
    /// As [`Self::push_line`].
    pub fn push_array(&mut self, items: Vec<serde_json::Value>) -> Result<()> {
        for (i, v) in items.into_iter().enumerate() {
            self.count_line(i as u64 + 1)?;
            match from_json(i as u64 + 1, v) {
                Ok(e) => self.events.push(e),
                Err(e) => self.report.errors.push(e),
            }
        }
        Ok(())
    }

    /// Stores the valid events durably and returns the report (the acknowledgement).
    ///
    /// # Errors
    /// SQLite failure: nothing of the batch is stored then.
    pub fn commit(self, conn: &Connection, now: i64) -> Result<IntakeReport> {
        let mut report = self.report;
        let accepted = store(conn, &self.events, now)?;
        report.accepted = accepted;
        report.duplicates = self.events.len() as u64 - accepted;
        Ok(report)
    }

    /// Valid events so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no valid event was read.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Parses a whole body: a JSON array when its first non-blank byte is `[`, else NDJSON.
///
/// # Errors
/// [`CampaignError::Invalid`] (`body`) for a malformed array or too many lines.
pub fn parse_body(body: &[u8]) -> Result<Batch> {
    let mut b = Batch::default();
    if body.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'[') {
        let items: Vec<serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| CampaignError::invalid("body", format!("not a JSON array: {e}")))?;
        b.push_array(items)?;
        return Ok(b);
    }
    let mut split = LineSplitter::default();
    split.feed(body, |n, l| b.push_line(n, l))?;
    split.finish(|n, l| b.push_line(n, l))?;
    Ok(b)
}

/// Splits a byte stream into numbered lines as chunks arrive. A line longer than
/// [`MAX_LINE_BYTES`] fails the body (naming the line) before more of it is buffered, so a
/// client streaming one endless line cannot grow memory.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    line: u64,
}

impl LineSplitter {
    /// Feeds a chunk; calls `f(line, text)` for every complete line.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        while let Some(nl) = chunk.iter().position(|&c| c == b'\n') {
            self.line += 1;
            check_length(self.line, self.partial.len() + nl)?;
            if self.partial.is_empty() {
                f(self.line, &chunk[..nl])?;
            } else {
                self.partial.extend_from_slice(&chunk[..nl]);
                let l = std::mem::take(&mut self.partial);
                f(self.line, &l)?;
            }
            chunk = &chunk[nl + 1..];
        }
        // The line being received is the next one.
        check_length(self.line + 1, self.partial.len() + chunk.len())?;
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// Flushes a last line without a newline.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn finish(mut self, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        if !self.partial.is_empty() {
            self.line += 1;
            f(self.line, &self.partial)?;
        }
        Ok(())
    }
}

/// Refuses line `line` when it is `len` bytes long, over [`MAX_LINE_BYTES`].
fn check_length(line: u64, len: usize) -> Result<()> {
    if len > MAX_LINE_BYTES {
        return Err(CampaignError::invalid(
            "body",
            format!("line {line}: longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Inserts `events` (ignoring known ids) in one `synchronous=FULL` transaction; returns how
/// many were new.
///
/// # Errors
/// SQLite failure (the transaction is rolled back).
pub fn store(conn: &Connection, events: &[Event], now: i64) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let out = (|| -> Result<u64> {
        let tx = conn.unchecked_transaction()?;
        let mut n = 0;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (id, msisdn, type, ts, attrs, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in events {
                let attrs = serde_json::Value::Object(e.attrs.clone()).to_string();
                n += ins.execute(params![e.id, e.msisdn as i64, e.kind, e.ts, attrs, now])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    })();
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_blank_lines_keep_numbers() {
        let mut seen = Vec::new();
        let mut s = LineSplitter::default();
        for chunk in [&b"ab"[..], b"c\n\nde", b"f\ng"] {
            s.feed(chunk, |n, l| {
                seen.push((n, l.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        s.finish(|n, l| {
            seen.push((n, l.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (1, b"abc".to_vec()),
                (2, vec![]),
                (3, b"def".to_vec()),
                (4, b"g".to_vec())
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_stored_once() {
        let conn = crate::store::open_in_memory().unwrap();
        let body = concat!(
            r#"{"id":"a","msisdn":"13800000001","type":"balance_low","ts":100}"#,
            "\n",
            r#"{"id":"b","msisdn":"12","type":"balance_low","ts":100}"#,
            "\n\n",
            r#"{"id":"a","msisdn":"13800000002","type":"balance_low","ts":100}"#,
            "\n",
            r#"{"id":"c","msisdn":"13800000003","type":"balance_low","ts":100}"#,
        );
        let rep = parse_body(body.as_bytes())
            .unwrap()
            .commit(&conn, 5)
            .unwrap();
        assert_eq!(rep.lines, 4);
        assert_eq!(rep.accepted, 2);
        assert_eq!(rep.duplicates, 1);
        assert_eq!(rep.errors.len(), 1);
        assert_eq!(
            (rep.errors[0].line, rep.errors[0].field.as_str()),
            (2, "msisdn")
        );
        let again = parse_body(format!("[{}]", body.lines().next().unwrap()).as_bytes())
            .unwrap()
            .commit(&conn, 6)
            .unwrap();
        assert_eq!((again.accepted, again.duplicates), (0, 1));
        let mode: String = conn
            .pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))
            .map(|v| v.to_string())
            .unwrap();
        assert_eq!(
            mode, "1",
            "the connection is back to NORMAL after the commit"
        );
    }

    #[test]
    fn an_endless_line_is_refused_naming_it() {
        let mut split = LineSplitter::default();
        let mut seen = 0;
        split
            .feed(b"{}\n{}\n", |_, _| {
                seen += 1;
                Ok(())
            })
            .expect("two short lines");
        assert_eq!(seen, 2);
        let chunk = vec![b'x'; 8192];
        let mut err = None;
        for _ in 0..(MAX_LINE_BYTES / chunk.len() + 2) {
            if let Err(e) = split.feed(&chunk, |_, _| Ok(())) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("refused before the line ends");
        assert!(e.to_string().contains("line 3:"), "{e}");
    }

    #[test]
    fn too_many_lines_are_refused() {
        let line = r#"{"id":"a","msisdn":"13800000001","type":"x","ts":1}"#;
        let body = vec![line; MAX_BATCH_LINES + 1].join("\n");
        assert!(matches!(
            parse_body(body.as_bytes()),
            Err(CampaignError::Invalid { field: "body", .. })
        ));
    }
}
