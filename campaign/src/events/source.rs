//! The seam between where events come from and the durable intake.
//!
//! A source yields batches of raw NDJSON lines; [`pump`] validates and stores each batch
//! through [`super::intake`] and only then calls [`EventSource::acknowledge`], so a
//! message-bus source commits its offset (a JetStream ack, a Kafka commit) after the
//! events are durable — a crash in between replays the batch and the intake drops the
//! duplicates by id. Matching never sees a source: it reads the stored `events` table.
//!
//! [`FileSource`] (NDJSON file replay, `sluice events import FILE`) is the one source in
//! the tree besides the HTTP endpoint (which is its own source: the response is the ack).

use std::future::Future;
use std::io::BufRead;
use std::sync::Mutex;

use super::MAX_BATCH_LINES;
use super::intake::{Batch, IntakeReport};
use crate::error::Result;
use crate::service::Campaigns;

/// A batch of raw lines and the 1-based number of the first one in its stream.
#[derive(Debug, Clone, Default)]
pub struct RawBatch {
    pub first_line: u64,
    pub lines: Vec<Vec<u8>>,
}

/// Something that yields batches of NDJSON event lines.
pub trait EventSource: Send {
    /// The next batch (at most [`MAX_BATCH_LINES`] lines), or `None` at the end.
    fn next_batch(&mut self) -> impl Future<Output = Result<Option<RawBatch>>> + Send;

    /// Called after the batch is durable (`report` is what the intake did with it).
    fn acknowledge(&mut self, report: &IntakeReport) -> impl Future<Output = Result<()>> + Send;
}

/// Replays an NDJSON file in batches of [`MAX_BATCH_LINES`] lines.
#[derive(Debug)]
pub struct FileSource<R> {
    reader: R,
    line: u64,
}

impl<R: BufRead + Send> FileSource<R> {
    /// A source over `reader`.
    pub const fn new(reader: R) -> Self {
        Self { reader, line: 0 }
    }
}

impl<R: BufRead + Send> EventSource for FileSource<R> {
    async fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        let mut b = RawBatch {
            first_line: self.line + 1,
            lines: Vec::new(),
        };
        while b.lines.len() < MAX_BATCH_LINES {
            let mut l = Vec::new();
            if self.reader.read_until(b'\n', &mut l)? == 0 {
                break;
            }
            self.line += 1;
            while l.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                l.pop();
            }
            b.lines.push(l);
        }
        Ok((!b.lines.is_empty()).then_some(b))
    }

    async fn acknowledge(&mut self, _report: &IntakeReport) -> Result<()> {
        Ok(())
    }
}

/// Drains `source` into the store; returns the summed report (error lines keep their
/// line numbers in the whole stream).
///
/// # Errors
/// Source or SQLite failure; batches before the failing one are stored and acknowledged.
pub async fn pump<S: EventSource>(
    source: &mut S,
    svc: &Mutex<Campaigns>,
    now: impl Fn() -> i64,
) -> Result<IntakeReport> {
    let mut total = IntakeReport::default();
    while let Some(raw) = source.next_batch().await? {
        let mut batch = Batch::default();
        for (i, l) in raw.lines.iter().enumerate() {
            batch.push_line(raw.first_line + i as u64, l)?;
        }
        let rep = {
            let c = svc
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            batch.commit(&c.conn, now())?
        };
        source.acknowledge(&rep).await?;
        total.lines += rep.lines;
        total.accepted += rep.accepted;
        total.duplicates += rep.duplicates;
        total.errors.extend(rep.errors);
    }
    Ok(total)
}
