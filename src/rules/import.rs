//! Importing a list file: one msisdn per line, with progress and per-line errors.
//!
//! Job: take a text body of any size without holding it in memory, answer with a job id,
//! and add its numbers to a list in chunks while the job's progress is readable.
//!
//! Flow: the body is streamed to a spool file under the data directory (bounded by
//! [`MAX_IMPORT_BYTES`]); then a blocking task reads it line by line, normalises each number
//! (the one msisdn key of `model::msisdn_key`), and adds every [`CHUNK`] valid numbers in one
//! durable transaction, so a crash mid-import keeps every chunk already acknowledged in the
//! progress. A bad line is recorded as `{line, reason}` (the first [`MAX_ERRORS`] are kept,
//! all are counted) and never aborts the import; blank lines are read but not errors.
//! Jobs live in memory: their progress is gone after a restart (the numbers are not).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::engine::Rules;
use super::model::{Channel, ListKind, Scope, parse_msisdn};

/// Valid numbers added per transaction.
pub const CHUNK: usize = 10_000;
/// Per-line errors kept in a job's progress (all are counted).
pub const MAX_ERRORS: usize = 1000;
/// Largest import body: 12 M numbers of 13 bytes fit with room to spare.
pub const MAX_IMPORT_BYTES: u64 = 512 * 1024 * 1024;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// The body is still arriving.
    Receiving,
    /// Lines are being added.
    Running,
    /// Every line was read.
    Done,
    /// Stopped early (body unreadable, too large, database failure); see `failure`.
    Failed,
}

/// One line that was not added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// A job's progress (the `GET /v1/rules/imports/{id}` body).
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Job id.
    pub id: u64,
    /// Target list.
    pub list: ListKind,
    /// Target channel; absent = every channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Where the job is.
    pub state: JobState,
    /// Lines read so far (blank ones included).
    pub lines_read: u64,
    /// Numbers newly added (already listed ones are not counted).
    pub added: u64,
    /// Lines refused so far.
    pub errors_total: u64,
    /// The first [`MAX_ERRORS`] refused lines.
    pub errors: Vec<LineError>,
    /// Why the job failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

type Job = Arc<Mutex<Progress>>;

/// The import jobs of this process.
#[derive(Debug)]
pub struct Imports {
    spool_dir: PathBuf,
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Job>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Imports {
    /// Jobs spooling their bodies under `spool_dir` (must exist).
    pub fn new(spool_dir: PathBuf) -> Self {
        Self {
            spool_dir,
            next: AtomicU64::new(1),
            jobs: Mutex::default(),
        }
    }

    /// A job's progress.
    pub fn progress(&self, id: u64) -> Option<Progress> {
        let job = lock(&self.jobs).get(&id).cloned()?;
        let p = lock(&job).clone();
        Some(p)
    }

    /// Spools `body`, then starts adding its lines to `list` for `scope` as `who`; returns
    /// the job id once the body is spooled (the adding goes on in the background).
    pub async fn start<S, B, E>(
        &self,
        rules: Arc<Rules>,
        who: String,
        list: ListKind,
        scope: Scope,
        body: S,
    ) -> u64
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let job: Job = Arc::new(Mutex::new(Progress {
            id,
            list,
            channel: scope,
            state: JobState::Receiving,
            lines_read: 0,
            added: 0,
            errors_total: 0,
            errors: Vec::new(),
            failure: None,
        }));
        lock(&self.jobs).insert(id, Arc::clone(&job));
        let path = self.spool_dir.join(format!("rules-import-{id}.txt"));
        if let Err(reason) = spool(&path, body).await {
            let _ = std::fs::remove_file(&path);
            let mut p = lock(&job);
            p.state = JobState::Failed;
            p.failure = Some(reason);
            return id;
        }
        lock(&job).state = JobState::Running;
        tokio::task::spawn_blocking(move || {
            let result = add_lines(&rules, &who, list, scope, &path, &job);
            let _ = std::fs::remove_file(&path);
            let mut p = lock(&job);
            match result {
                Ok(()) => p.state = JobState::Done,
                Err(reason) => {
                    p.state = JobState::Failed;
                    p.failure = Some(reason);
                }
            }
            tracing::info!(id, lines = p.lines_read, added = p.added, errors = p.errors_total, state = ?p.state, "Rules import finished.");
        });
        id
    }
}

async fn spool<S, B, E>(path: &std::path::Path, mut body: S) -> Result<(), String>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("spool file: {e}"))?;
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("reading body: {e}"))?;
        let bytes = chunk.as_ref();
        total += bytes.len() as u64;
        if total > MAX_IMPORT_BYTES {
            return Err(format!("body larger than {MAX_IMPORT_BYTES} bytes"));
        }
        file.write_all(bytes)
            .await
            .map_err(|e| format!("spool file: {e}"))?;
    }
    file.flush().await.map_err(|e| format!("spool file: {e}"))
}

/// Reads the spooled file and adds its numbers chunk by chunk, updating `job`.
fn add_lines(
    rules: &Rules,
    who: &str,
    list: ListKind,
    scope: Scope,
    path: &std::path::Path,
    job: &Job,
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("spool file: {e}"))?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut errors = Vec::new();
    let mut lines = 0u64;
    let flush = |chunk: &mut Vec<u64>, errors: &mut Vec<LineError>, lines: u64| {
        let added = if chunk.is_empty() {
            0
        } else {
            rules
                .add(who, list, scope, chunk)
                .map_err(|e| e.to_string())?
        };
        chunk.clear();
        let mut p = lock(job);
        p.lines_read = lines;
        p.added += added as u64;
        p.errors_total += errors.len() as u64;
        let room = MAX_ERRORS.saturating_sub(p.errors.len());
        p.errors.extend(errors.drain(..).take(room));
        errors.clear();
        Ok::<_, String>(())
    };
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| format!("spool file: {e}"))?;
        lines += 1;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_msisdn(text) {
            Ok(n) => chunk.push(n),
            Err(e) => errors.push(LineError {
                line: lines,
                reason: format!("{e}: {text:?}"),
            }),
        }
        if chunk.len() >= CHUNK {
            flush(&mut chunk, &mut errors, lines)?;
        }
    }
    flush(&mut chunk, &mut errors, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::AnyClock;
    use crate::store::Lane;

    #[tokio::test]
    async fn bad_lines_are_reported_and_the_rest_added() {
        let dir = tempfile::tempdir().expect("dir");
        let rules = Arc::new(
            Rules::in_memory(jiff::tz::TimeZone::UTC, &[Lane::Otp], AnyClock::System)
                .expect("rules"),
        );
        let imports = Imports::new(dir.path().to_path_buf());
        // Split mid-line: the spool must not care where chunks end.
        let body = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(b"13800138000\n+86139".to_vec()),
            Ok(b"00139000\n\nnot-a-number\r\n8613800138000\n12345".to_vec()),
        ]);
        let id = imports
            .start(
                Arc::clone(&rules),
                "ops".into(),
                ListKind::Blacklist,
                None,
                body,
            )
            .await;
        let mut p = imports.progress(id).expect("job");
        for _ in 0..200 {
            if p.state == JobState::Done {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            p = imports.progress(id).expect("job");
        }
        assert_eq!(p.state, JobState::Done);
        assert_eq!(p.lines_read, 6);
        assert_eq!(p.added, 2);
        assert_eq!(p.errors_total, 2);
        assert_eq!(p.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 6]);
        assert_eq!(rules.len(ListKind::Blacklist, None), 2);
        assert!(imports.progress(id + 1).is_none());
    }
}
