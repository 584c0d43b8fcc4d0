//! The redo log in front of the engine: what makes a commit durable when it is on.
//!
//! Why: an engine commit that is durable on its own costs the writer thread two fsyncs
//! (redb's quick repair commits in two phases) plus the allocator state, ≈ 1.7 ms of every
//! ≈ 3.4 ms writer cycle at full speed, and nothing else can run on that thread meanwhile.
//! With the log, a group of requests is appended here and fsync'd (one `fdatasync` of a
//! sequential append) by the log thread while the writer applies the previous group; the
//! writer then commits the group to the engine without waiting for the disk (redb's
//! `Durability::None`) and answers. Every `CHECKPOINT_OPS` ops (at most `CHECKPOINT_EVERY`
//! apart) the writer makes one durable engine commit, after which the log's older segments
//! go.
//!
//! After a crash the engine opens at its last durable commit, which names the last log
//! sequence it holds (key tag `LOG_SEQ`), and the groups after it are applied again from
//! the log, in order, through the same code that applied them the first time: ops carry
//! their own clock, so the result is the same state (see `writer::replay`).
//!
//! Layout: `dir/{first_seq:020}.log` segments, `dir/aborted` and `dir/spare.segment` (the
//! next segment, zero-filled ahead of need: see [`Spare`]). A record is `len: u32 LE,
//! crc32: u32 LE, payload`; the payload is a kind byte, the sequence (varint) and a body:
//! - [`KIND_GROUP`] (segments): the batches of one group, each a count of ops followed by
//!   the ops (each a length-prefixed op record, see [`encode_op`]);
//! - [`KIND_ABORT`] (`aborted`, written by the writer with [`AbortLog`] and fsync'd before
//!   the batch's producer hears it failed): a batch that failed when applied alone. Replay
//!   skips it.
//!
//! Group sequences are consecutive (a group whose write failed gives its number back). A
//! record that ends early, is too short to hold a kind and a sequence, or fails its checksum
//! ends its segment: it is the tail of a write that failed or was cut by the crash, never
//! acknowledged. The groups after the engine's must start right after it and follow on: a
//! gap means acknowledged groups are missing, and the store refuses to open (`Corrupt`,
//! naming the file).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::codec::{self, DecodeError, Reader, Writer};
use super::error::StoreError;
use super::id::MessageId;
use super::model::Lane;
use super::ops::Op;

/// A group of batches, as the writer applied them.
pub(crate) const KIND_GROUP: u8 = 1;
/// A batch of an earlier group that failed alone.
pub(crate) const KIND_ABORT: u8 = 2;

/// A segment is closed and a new one started past this size.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;

/// The next segment while it is zero-filled ([`Spare`]); not a segment name, so no reader
/// looks at it.
const SPARE: &str = "spare.segment";

/// Record header: length and checksum.
const HEADER: usize = 8;
/// Largest record read back (a group is at most a few MB; this only bounds a corrupt length).
const MAX_RECORD: usize = 1 << 30;

/// Ops whose fields are encoded here; any other op is its JSON form under [`OP_JSON`].
const OP_JSON: u8 = 0;
const OP_INSERT: u8 = 1;
const OP_LEASE: u8 = 2;
const OP_SUBMITTED: u8 = 3;
const OP_RECEIPT: u8 = 4;
const OP_OUTBOX_ACK: u8 = 5;
const OP_OUTBOX_DELETE: u8 = 6;
const OP_REQUEUE: u8 = 7;
const OP_RELEASE: u8 = 8;
const OP_FINISH: u8 = 9;
const OP_OUTBOX_DELETE_RUN: u8 = 10;

/// Appends `op`'s record to `out`. The ops of the message path have a field encoding (the
/// store's record codec: an insert is its message's body record with its first state); the
/// rare ones (stops, pauses, MO, housekeeping) are JSON.
pub(crate) fn encode_op(op: &Op, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let mut w = Writer(out);
    match op {
        Op::Insert(m) => {
            w.u8(OP_INSERT);
            w.bytes(&codec::encode_body_with_state(m));
        }
        Op::Lease {
            channel,
            lanes,
            now_ms,
            limit,
            lease_ms,
        } => {
            w.u8(OP_LEASE);
            w.str(channel);
            w.varint(lanes.len() as u64);
            for l in lanes {
                w.u8(l.as_byte());
            }
            w.varint(*now_ms);
            w.varint(*limit as u64);
            w.varint(*lease_ms);
        }
        Op::Submitted {
            id,
            part,
            parts,
            center_id,
            now_ms,
        } => {
            w.u8(OP_SUBMITTED);
            w.varint(id.0);
            w.varint(u64::from(*part));
            w.varint(u64::from(*parts));
            w.str(center_id);
            w.varint(*now_ms);
        }
        Op::Receipt {
            channel,
            center_id,
            part_state,
            stat,
            err,
            now_ms,
        } => {
            w.u8(OP_RECEIPT);
            w.str(channel);
            w.str(center_id);
            w.u8(codec::part_state_code(*part_state));
            w.str(stat);
            w.str(err);
            w.varint(*now_ms);
        }
        Op::OutboxAck {
            account,
            through_seq,
        } => {
            w.u8(OP_OUTBOX_ACK);
            w.str(account);
            w.varint(*through_seq);
        }
        Op::OutboxDelete { account, seq } => {
            w.u8(OP_OUTBOX_DELETE);
            w.str(account);
            w.varint(*seq);
        }
        Op::OutboxDeleteRun {
            account,
            from_seq,
            through_seq,
        } => {
            w.u8(OP_OUTBOX_DELETE_RUN);
            w.str(account);
            w.varint(*from_seq);
            w.varint(*through_seq);
        }
        Op::Requeue { id, due_ms } | Op::Release { id, due_ms } => {
            w.u8(if matches!(op, Op::Requeue { .. }) {
                OP_REQUEUE
            } else {
                OP_RELEASE
            });
            w.varint(id.0);
            w.varint(*due_ms);
        }
        Op::Finish {
            id,
            state,
            stat,
            err,
            now_ms,
        } => {
            w.u8(OP_FINISH);
            w.varint(id.0);
            w.u8(codec::state_code(*state));
            w.str(stat);
            w.str(err);
            w.varint(*now_ms);
        }
        other => {
            w.u8(OP_JSON);
            let json = serde_json::to_vec(other).map_err(|e| StoreError::Encode(e.to_string()))?;
            w.bytes(&json);
        }
    }
    Ok(())
}

fn small<T: TryFrom<u64>>(r: &mut Reader<'_>, field: &'static str) -> Result<T, DecodeError> {
    T::try_from(r.varint()?).map_err(|_| DecodeError::Range(field))
}

/// Reads back one op record of [`encode_op`].
pub(crate) fn decode_op(v: &[u8]) -> Result<Op, DecodeError> {
    let mut r = Reader::new(v);
    let op = match r.u8()? {
        OP_INSERT => {
            let body = codec::decode_body(r.bytes()?)?;
            Op::Insert(Box::new(body.message))
        }
        OP_LEASE => {
            let channel = r.str()?.to_owned();
            let n: usize = small(&mut r, "lanes")?;
            let mut lanes = Vec::with_capacity(n.min(Lane::ALL.len()));
            for _ in 0..n {
                lanes.push(codec::lane_from(r.u8()?)?);
            }
            Op::Lease {
                channel,
                lanes,
                now_ms: r.varint()?,
                limit: small(&mut r, "limit")?,
                lease_ms: r.varint()?,
            }
        }
        OP_SUBMITTED => Op::Submitted {
            id: MessageId(r.varint()?),
            part: small(&mut r, "part")?,
            parts: small(&mut r, "parts")?,
            center_id: r.str()?.into(),
            now_ms: r.varint()?,
        },
        OP_RECEIPT => Op::Receipt {
            channel: r.str()?.into(),
            center_id: r.str()?.into(),
            part_state: codec::part_state_from(r.u8()?)?,
            stat: r.str()?.into(),
            err: r.str()?.into(),
            now_ms: r.varint()?,
        },
        OP_OUTBOX_ACK => Op::OutboxAck {
            account: r.str()?.to_owned(),
            through_seq: r.varint()?,
        },
        OP_OUTBOX_DELETE => Op::OutboxDelete {
            account: r.str()?.to_owned(),
            seq: r.varint()?,
        },
        OP_OUTBOX_DELETE_RUN => Op::OutboxDeleteRun {
            account: r.str()?.to_owned(),
            from_seq: r.varint()?,
            through_seq: r.varint()?,
        },
        code @ (OP_REQUEUE | OP_RELEASE) => {
            let id = MessageId(r.varint()?);
            let due_ms = r.varint()?;
            if code == OP_REQUEUE {
                Op::Requeue { id, due_ms }
            } else {
                Op::Release { id, due_ms }
            }
        }
        OP_FINISH => Op::Finish {
            id: MessageId(r.varint()?),
            state: codec::state_from(r.u8()?)?,
            stat: r.str()?.to_owned(),
            err: r.str()?.to_owned(),
            now_ms: r.varint()?,
        },
        OP_JSON => {
            serde_json::from_slice(r.bytes()?).map_err(|e| DecodeError::Json(e.to_string()))?
        }
        code => return Err(DecodeError::BadCode { field: "op", code }),
    };
    r.finish()?;
    Ok(op)
}

/// Appends a whole record (header and payload) of `kind` and `seq` to `out`; `body` writes
/// the body.
fn record(
    out: &mut Vec<u8>,
    kind: u8,
    seq: u64,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    {
        let mut w = Writer(out);
        w.u8(kind);
        w.varint(seq);
    }
    body(out)?;
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len())
        .map_err(|_| StoreError::Encode("log record over 4 GiB".into()))?;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends the record of group `seq` made of `batches` to `out`.
pub(crate) fn group_record<'a>(
    out: &mut Vec<u8>,
    seq: u64,
    batches: impl ExactSizeIterator<Item = &'a [Op]>,
) -> Result<(), StoreError> {
    record(out, KIND_GROUP, seq, |out| {
        Writer(out).varint(batches.len() as u64);
        let mut op_buf = Vec::new();
        for ops in batches {
            Writer(out).varint(ops.len() as u64);
            for op in ops {
                op_buf.clear();
                encode_op(op, &mut op_buf)?;
                Writer(out).bytes(&op_buf);
            }
        }
        Ok(())
    })
}

/// One group read back from the log.
#[derive(Debug)]
pub(crate) struct LoggedGroup {
    pub(crate) seq: u64,
    /// Its batches; those that failed when applied are `None`.
    pub(crate) batches: Vec<Option<Vec<Op>>>,
}

/// The segments under `dir`, oldest first: (first sequence, path).
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::from_io(e)),
    };
    for entry in entries {
        let path = entry.map_err(StoreError::from_io)?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

fn corrupt_log(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: format!("redo log {}", path.display()),
        reason: reason.to_string(),
    }
}

/// What one file of records holds: its payloads up to the first bad one. A file that is not
/// there holds none (a segment a checkpoint let go between listing and reading).
fn read_segment(path: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::from_io(e)),
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        // A zeroed header (len 0, and the checksum of nothing is 0) is where a crash cut the
        // file, not a record: a real payload holds at least a kind and a sequence.
        if !(2..=MAX_RECORD).contains(&len) || crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload.to_vec());
        at += HEADER + len;
    }
    Ok(out)
}

/// Reads every group after `after` (up to `through`, if given) from the log under `dir`,
/// with the batches recorded as aborted marked `None`. Returns the groups and the last
/// group sequence found (`after` if none is later).
///
/// # Errors
/// `Corrupt` (naming the file) when a record cannot be read, or when the groups after
/// `after` do not start at `after + 1` and follow on: acknowledged groups are missing.
pub(crate) fn read(
    dir: &Path,
    after: u64,
    through: Option<u64>,
) -> Result<(Vec<LoggedGroup>, u64), StoreError> {
    let mut groups: Vec<LoggedGroup> = Vec::new();
    let mut next = after + 1;
    for (_, path) in segments(dir)? {
        for payload in read_segment(&path)? {
            let mut r = Reader::new(&payload);
            let kind = r.u8().map_err(|e| corrupt_log(&path, e))?;
            let seq = r.varint().map_err(|e| corrupt_log(&path, e))?;
            if kind != KIND_GROUP {
                return Err(corrupt_log(&path, format!("record kind {kind}")));
            }
            if seq <= after {
                continue;
            }
            if seq != next {
                return Err(corrupt_log(
                    &path,
                    format!(
                        "group {seq} where group {next} was due: acknowledged groups are missing"
                    ),
                ));
            }
            next += 1;
            if through.is_some_and(|t| seq > t) {
                continue;
            }
            let n: usize = small(&mut r, "batches").map_err(|e| corrupt_log(&path, e))?;
            let mut batches = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let k: usize = small(&mut r, "ops").map_err(|e| corrupt_log(&path, e))?;
                let mut ops = Vec::with_capacity(k.min(4096));
                for _ in 0..k {
                    let v = r.bytes().map_err(|e| corrupt_log(&path, e))?;
                    ops.push(decode_op(v).map_err(|e| corrupt_log(&path, e))?);
                }
                batches.push(Some(ops));
            }
            r.finish().map_err(|e| corrupt_log(&path, e))?;
            groups.push(LoggedGroup { seq, batches });
        }
    }
    for (seq, batch) in read_aborts(dir)? {
        if let Some(g) = groups.iter_mut().find(|g| g.seq == seq)
            && let Some(b) = g.batches.get_mut(batch)
        {
            *b = None;
        }
    }
    Ok((groups, next - 1))
}

/// Name of the file of aborted batches, beside the segments.
const ABORTED: &str = "aborted";

/// The batches recorded as aborted under `dir`: (group, batch).
fn read_aborts(dir: &Path) -> Result<Vec<(u64, usize)>, StoreError> {
    let path = dir.join(ABORTED);
    let mut out = Vec::new();
    for payload in read_segment(&path)? {
        let mut r = Reader::new(&payload);
        let kind = r.u8().map_err(|e| corrupt_log(&path, e))?;
        let seq = r.varint().map_err(|e| corrupt_log(&path, e))?;
        let batch: usize = small(&mut r, "batch").map_err(|e| corrupt_log(&path, e))?;
        if kind != KIND_ABORT {
            return Err(corrupt_log(&path, format!("record kind {kind}")));
        }
        out.push((seq, batch));
    }
    Ok(out)
}

/// The writer's record of batches that failed when applied. Each is fsync'd before its
/// producer is told, so no replay can apply a batch whose producer heard it failed.
#[derive(Debug)]
pub(crate) struct AbortLog {
    dir: PathBuf,
    /// The highest group recorded: once a checkpoint holds it, the file can be emptied.
    high: u64,
}

impl AbortLog {
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let high = read_aborts(dir)?.iter().map(|(s, _)| *s).max().unwrap_or(0);
        Ok(Self {
            dir: dir.to_owned(),
            high,
        })
    }

    /// Records batch `batch` of group `seq` as aborted, durably.
    pub(crate) fn record(&mut self, seq: u64, batch: usize) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        record(&mut buf, KIND_ABORT, seq, |out| {
            Writer(out).varint(batch as u64);
            Ok(())
        })?;
        let path = self.dir.join(ABORTED);
        let created = !path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(StoreError::from_io)?;
        f.write_all(&buf)
            .and_then(|()| f.sync_data())
            .map_err(StoreError::from_io)?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.high = self.high.max(seq);
        Ok(())
    }

    /// After a checkpoint that holds every group through `durable`: a replay starts after
    /// it, so the records go once they are all at or before it.
    pub(crate) fn checkpointed(&mut self, durable: u64) {
        if self.high == 0 || self.high > durable {
            return;
        }
        match std::fs::remove_file(self.dir.join(ABORTED)) {
            Ok(()) => self.high = 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.high = 0,
            Err(e) => tracing::warn!(error = %e, "Cannot remove the redo log's aborted batches."),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::from_io)
}

/// Starts the segment whose first group will be `first` (empty, its name durable in `dir`).
fn new_segment(dir: &Path, first: u64) -> Result<(File, PathBuf), StoreError> {
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(StoreError::from_io)?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// The next segment, zero-filled and synced by a helper thread while the current one fills.
///
/// Why: on ext4 (and journalling file systems generally) an `fdatasync` of a file that grew
/// must also commit the inode's new size — a journal write and a second cache flush behind
/// every group the log thread syncs. Over bytes that were written and synced before, it
/// flushes the data alone. Measured on the 2-core VM, a 20 KB group: p50 0.19 → 0.11 ms and
/// about 80 → 45 µs of CPU per sync (BENCHMARKS.md, "Whole-program optimisation, and
/// zero-filled log segments"). So a segment starts as [`SEGMENT_BYTES`] of zeros already on
/// disk, and the records overwrite them; [`read_segment`] already ends a segment at the
/// first zeroed header, which is where the records stop.
///
/// The filling starts once the current segment is half full (a store that never fills one,
/// as in most tests, never writes one), and the log thread takes the result only if it is
/// ready when the segment rotates; else that rotation starts a plain file as before, and the
/// spare waits for the next. A plain segment — the first after an open, or one such a
/// rotation started — gets its spare sooner, after [`PLAIN_FILL_AFTER`] bytes, and the
/// first checkpoint that finds it ready moves the log onto it: a gateway at a few thousand
/// messages a second writes a segment in minutes, so it would otherwise pay the growing
/// file's inode write on every sync of its first segment.
///
/// Dropping it (with its [`LogWriter`]) joins the helper, so a store opened again in the
/// same process never meets a helper still writing the file it renames.
#[derive(Debug, Default)]
struct Spare(Option<std::thread::JoinHandle<std::io::Result<File>>>);

/// Bytes a plain segment takes before its zero-filled replacement is started ([`Spare`]):
/// a store in use passes it within a second or two at a few thousand messages a second,
/// while most tests' stores never do (so they never write 16 MB of zeros).
const PLAIN_FILL_AFTER: u64 = 256 << 10;

impl Spare {
    /// Starts filling `dir/spare.segment` unless a fill is already running or ready.
    fn start(&mut self, dir: &Path) {
        if self.0.is_some() {
            return;
        }
        let path = dir.join(SPARE);
        let spawned = std::thread::Builder::new()
            .name("sluice-log-spare".into())
            .spawn(move || zero_filled(&path));
        match spawned {
            Ok(h) => self.0 = Some(h),
            Err(e) => tracing::warn!(error = %e, "Cannot start filling the next redo-log segment."),
        }
    }

    /// Whether a fill has ended (done or failed): [`Spare::take`] would not wait.
    fn is_ready(&self) -> bool {
        self.0.as_ref().is_some_and(|h| h.is_finished())
    }

    /// The filled spare as the segment whose first group is `first`, if it is ready; `None`
    /// (a plain file is started instead) while it is still being filled or if it failed.
    fn take(&mut self, dir: &Path, first: u64) -> Option<(File, PathBuf)> {
        if !self.0.as_ref()?.is_finished() {
            return None;
        }
        let spare = dir.join(SPARE);
        let path = dir.join(segment_name(first));
        let taken = match self.0.take()?.join() {
            Ok(Ok(file)) => std::fs::rename(&spare, &path)
                .map_err(StoreError::from_io)
                .and_then(|()| sync_dir(dir))
                .map(|()| (file, path)),
            Ok(Err(e)) => Err(StoreError::from_io(e)),
            Err(_) => Err(StoreError::Io("the spare segment's filler panicked".into())),
        };
        taken
            .inspect_err(|e| {
                tracing::warn!(error = %e, "Cannot use the zero-filled redo-log segment; starting a plain one.");
                let _ = std::fs::remove_file(&spare);
            })
            .ok()
    }
}

impl Drop for Spare {
    /// Waits for a fill still running (see the type's doc).
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// Creates `path` as [`SEGMENT_BYTES`] of zeros, durable, positioned at its start.
fn zero_filled(path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    std::io::copy(&mut std::io::repeat(0).take(SEGMENT_BYTES), &mut file)?;
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The appending end, owned by the log thread.
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: PathBuf,
    file: File,
    /// Length of the current segment that holds whole records only.
    len: u64,
    /// Whether bytes written since the last fsync await one.
    unsynced: bool,
    /// Older segments still needed: (first sequence, path); the current one is last.
    segments: Vec<(u64, PathBuf)>,
    /// A failed write could not be cut back: the bytes of a refused group may be in the
    /// segment, so nothing more is appended after them (every later group is refused).
    broken: Option<String>,
    /// The next segment, being zero-filled (joined when the writer drops).
    spare: Spare,
    /// The current segment was zero-filled ahead ([`Spare`]); false for a plain one.
    zeroed: bool,
    /// A fill was started early for the current plain segment (at most one each, so a
    /// fill that fails is not retried on every append).
    plain_fill_started: bool,
}

impl LogWriter {
    /// Starts a fresh segment whose first group will be `next_seq`, keeping the older
    /// segments of `dir` until a checkpoint covers them.
    pub(crate) fn open(dir: &Path, next_seq: u64) -> Result<Self, StoreError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(StoreError::from_io)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut segments = segments(dir)?;
        segments.retain(|(first, _)| *first != next_seq);
        // Left by a run that stopped while filling it: filled again when needed.
        match std::fs::remove_file(dir.join(SPARE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::from_io(e)),
        }
        let (file, path) = new_segment(dir, next_seq)?;
        segments.push((next_seq, path));
        Ok(Self {
            dir: dir.to_owned(),
            file,
            len: 0,
            unsynced: false,
            segments,
            broken: None,
            spare: Spare::default(),
            zeroed: false,
            plain_fill_started: false,
        })
    }

    /// Appends `bytes` (whole records) and, if `sync`, makes them durable. On failure the
    /// segment is cut back to its last whole record, so nothing of a refused group can be
    /// replayed later.
    pub(crate) fn append(&mut self, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
        if let Some(why) = &self.broken {
            return Err(StoreError::Io(format!(
                "the redo log is stopped after a write it could not cut back: {why}"
            )));
        }
        let r = self
            .file
            .write_all(bytes)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        match r {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.unsynced = !sync;
                if self.len >= SEGMENT_BYTES / 2 {
                    self.spare.start(&self.dir);
                } else if !self.zeroed && !self.plain_fill_started && self.len >= PLAIN_FILL_AFTER {
                    self.plain_fill_started = true;
                    self.spare.start(&self.dir);
                }
                Ok(())
            }
            Err(e) => {
                // Cut the segment back to its last whole record, and the cursor with it.
                let cut = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data())
                    .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(drop));
                if let Err(cut) = cut {
                    tracing::error!(error = %cut, "Cannot cut a failed redo-log write back; the log takes no more groups until a restart.");
                    self.broken = Some(cut.to_string());
                }
                Err(StoreError::from_io(e))
            }
        }
    }

    /// Appends from now on go to `file`, the segment whose first group is `first`.
    fn start_segment(&mut self, file: File, path: PathBuf, first: u64, zeroed: bool) {
        self.file = file;
        self.len = 0;
        self.segments.push((first, path));
        self.zeroed = zeroed;
        self.plain_fill_started = false;
    }

    /// Makes whatever was appended without a sync durable.
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            self.file.sync_data().map_err(StoreError::from_io)?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// After a checkpoint that holds every group through `durable`: deletes the segments
    /// it covers, and starts a new segment (first group `next_seq`) once the current one is
    /// past [`SEGMENT_BYTES`], or is a plain one whose zero-filled spare is ready.
    pub(crate) fn checkpointed(&mut self, durable: u64, next_seq: u64) -> Result<(), StoreError> {
        if self.len >= SEGMENT_BYTES {
            self.sync()?;
            match self.spare.take(&self.dir, next_seq) {
                Some((file, path)) => self.start_segment(file, path, next_seq, true),
                None => {
                    let (file, path) = new_segment(&self.dir, next_seq)?;
                    self.start_segment(file, path, next_seq, false);
                }
            }
        } else if !self.zeroed && self.spare.is_ready() {
            self.sync()?;
            // A failed fill leaves the plain segment in use, as a rotation would.
            if let Some((file, path)) = self.spare.take(&self.dir, next_seq) {
                self.start_segment(file, path, next_seq, true);
            }
        }
        // A segment can go when the next one starts at or before the first group not yet
        // held durably by the engine.
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].0 <= durable.saturating_add(1) {
            let (_, path) = self.segments.remove(0);
            match std::fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "Cannot remove an old redo-log segment.");
                }
            }
        }
        if removed {
            // So that a segment once gone stays gone after a crash (a stale one would sit
            // before the groups that follow it; harmless, but it would be read again).
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{Message, MessageState, PartState, Payload};
    use crate::store::stop::{PauseTarget, StopFilter};

    fn ops() -> Vec<Op> {
        let mut m = Message::new(
            MessageId(42),
            "acme",
            "+8613800138000",
            Payload::Text {
                text: "hello 测试".into(),
                encoding: Default::default(),
            },
            "smsc1",
            1_000,
            2_000,
        );
        m.client_ref = Some("ref-1".into());
        m.tags.insert("task".into(), "7".into());
        vec![
            Op::Insert(Box::new(m)),
            Op::Lease {
                channel: "smsc1".into(),
                lanes: Lane::ALL.to_vec(),
                now_ms: 5,
                limit: 256,
                lease_ms: 300_000,
            },
            Op::Submitted {
                id: MessageId(42),
                part: 2,
                parts: 3,
                center_id: "ABC1".into(),
                now_ms: 6,
            },
            Op::Receipt {
                channel: "smsc1".into(),
                center_id: "ABC1".into(),
                part_state: PartState::Delivered,
                stat: "DELIVRD".into(),
                err: "000".into(),
                now_ms: 7,
            },
            Op::OutboxAck {
                account: "acme".into(),
                through_seq: 9,
            },
            Op::OutboxDelete {
                account: "acme".into(),
                seq: 10,
            },
            Op::OutboxDeleteRun {
                account: "acme".into(),
                from_seq: 11,
                through_seq: 300,
            },
            Op::Requeue {
                id: MessageId(42),
                due_ms: 11,
            },
            Op::Release {
                id: MessageId(42),
                due_ms: 12,
            },
            Op::Finish {
                id: MessageId(42),
                state: MessageState::Rejected,
                stat: "REJECTD".into(),
                err: "0x45".into(),
                now_ms: 13,
            },
            Op::Purge {
                before_ms: 14,
                limit: 1000,
            },
            Op::Pause {
                target: PauseTarget::Channel("smsc1".into()),
                paused: true,
            },
            Op::Stop {
                account: "acme".into(),
                filter: StopFilter::Tag {
                    key: "task".into(),
                    value: "7".into(),
                },
                now_ms: 15,
                hold_ms: 16,
            },
            Op::ContentForget {
                digests: vec![[7; 32]],
            },
        ]
    }

    #[test]
    fn every_op_reads_back_as_written() {
        for op in ops() {
            let mut buf = Vec::new();
            encode_op(&op, &mut buf).unwrap();
            let back = decode_op(&buf).unwrap();
            assert_eq!(format!("{back:?}"), format!("{op:?}"));
        }
    }

    #[test]
    fn a_truncated_op_is_an_error_not_a_panic() {
        for op in ops() {
            let mut buf = Vec::new();
            encode_op(&op, &mut buf).unwrap();
            for cut in 0..buf.len() {
                assert!(decode_op(&buf[..cut]).is_err(), "{op:?} cut at {cut}");
            }
        }
    }

    fn write_groups(dir: &Path, first: u64, n: u64) -> LogWriter {
        let mut log = LogWriter::open(dir, first).unwrap();
        for seq in first..first + n {
            append_group(&mut log, seq);
        }
        log
    }

    fn append_group(log: &mut LogWriter, seq: u64) {
        let mut buf = Vec::new();
        let batch = ops();
        group_record(&mut buf, seq, [batch.as_slice(), &batch[1..3]].into_iter()).unwrap();
        log.append(&buf, true).unwrap();
    }

    fn seqs(groups: &[LoggedGroup]) -> Vec<u64> {
        groups.iter().map(|g| g.seq).collect()
    }

    #[test]
    fn a_rotation_takes_the_zero_filled_spare_and_reads_back_across_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = write_groups(dir.path(), 1, 2);
        // Pretend the segment is half full: the next append starts filling the spare.
        log.len = SEGMENT_BYTES / 2;
        append_group(&mut log, 3);
        wait_filled(&log);
        log.len = SEGMENT_BYTES;
        log.checkpointed(0, 4).unwrap();
        let (first, path) = segments(dir.path()).unwrap().pop().unwrap();
        assert_eq!(first, 4);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            SEGMENT_BYTES,
            "the new segment is the filled spare"
        );
        assert!(!dir.path().join(SPARE).exists());
        for seq in 4..7 {
            append_group(&mut log, seq);
        }
        drop(log);
        // The records overwrite the zeros; the zeros after them end the segment.
        let (groups, last) = read(dir.path(), 0, None).unwrap();
        assert_eq!((seqs(&groups), last), ((1..=6).collect(), 6));
        assert_eq!(seqs(&read(dir.path(), 4, None).unwrap().0), [5, 6]);
    }

    /// Waits (bounded) until the spare being filled is ready.
    fn wait_filled(log: &LogWriter) {
        let filling = log.spare.0.as_ref().expect("the spare is being filled");
        for _ in 0..2000 {
            if filling.is_finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(filling.is_finished(), "16 MB of zeros within 10 s");
    }

    /// The first segment after an open is a plain file. Once it holds [`PLAIN_FILL_AFTER`]
    /// bytes a spare is filled, and the next checkpoint moves the log onto it long before the
    /// plain one is full; groups read back across both, and the plain one goes once a
    /// checkpoint covers it.
    #[test]
    fn a_plain_segment_moves_onto_a_zero_filled_one_once_it_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = write_groups(dir.path(), 1, 2);
        assert!(log.spare.0.is_none(), "a few groups start no fill");
        log.checkpointed(0, 3).unwrap();
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            1,
            "nothing to move onto"
        );
        // Pretend the plain segment holds PLAIN_FILL_AFTER bytes: the next append starts a fill.
        log.len = PLAIN_FILL_AFTER;
        append_group(&mut log, 3);
        wait_filled(&log);
        // Durable through group 2: the plain segment still holds group 3, so it stays.
        log.checkpointed(2, 4).unwrap();
        let firsts = |dir: &Path| -> Vec<u64> {
            segments(dir).unwrap().into_iter().map(|(f, _)| f).collect()
        };
        assert_eq!(firsts(dir.path()), [1, 4]);
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT_BYTES);
        assert!(log.zeroed && log.spare.0.is_none());
        append_group(&mut log, 4);
        append_group(&mut log, 5);
        assert_eq!(seqs(&read(dir.path(), 0, None).unwrap().0), [1, 2, 3, 4, 5]);
        // A checkpoint through group 3 lets the plain segment go, and moves nothing.
        log.checkpointed(3, 6).unwrap();
        assert_eq!(firsts(dir.path()), [4]);
        drop(log);
        assert_eq!(seqs(&read(dir.path(), 3, None).unwrap().0), [4, 5]);
    }

    #[test]
    fn a_rotation_before_the_spare_is_ready_starts_a_plain_segment() {
        let dir = tempfile::tempdir().unwrap();
        // A spare left by a run that stopped while filling it is not taken as filled.
        std::fs::write(dir.path().join(SPARE), [7u8; 64]).unwrap();
        let mut log = write_groups(dir.path(), 1, 2);
        assert!(
            !dir.path().join(SPARE).exists(),
            "open removes a stale spare"
        );
        log.len = SEGMENT_BYTES;
        log.checkpointed(0, 3).unwrap();
        let (first, path) = segments(dir.path()).unwrap().pop().unwrap();
        assert_eq!((first, std::fs::metadata(&path).unwrap().len()), (3, 0));
        append_group(&mut log, 3);
        drop(log);
        assert_eq!(seqs(&read(dir.path(), 0, None).unwrap().0), [1, 2, 3]);
    }

    #[test]
    fn groups_after_the_engine_are_read_back_and_aborted_batches_left_out() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_groups(dir.path(), 1, 5));
        let mut aborts = AbortLog::open(dir.path()).unwrap();
        aborts.record(4, 0).unwrap();
        aborts.record(5, 1).unwrap();
        let (groups, last) = read(dir.path(), 2, None).unwrap();
        assert_eq!(last, 5);
        assert_eq!(groups.iter().map(|g| g.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(groups[0].batches.iter().flatten().count(), 2);
        assert!(groups[1].batches[0].is_none() && groups[1].batches[1].is_some());
        assert!(groups[2].batches[0].is_some() && groups[2].batches[1].is_none());
        let (through, _) = read(dir.path(), 0, Some(2)).unwrap();
        assert_eq!(through.iter().map(|g| g.seq).collect::<Vec<_>>(), [1, 2]);
        // Once a checkpoint holds group 5, the record of aborts goes; before, it stays.
        aborts.checkpointed(4);
        assert!(dir.path().join(ABORTED).exists());
        aborts.checkpointed(5);
        assert!(!dir.path().join(ABORTED).exists());
    }

    #[test]
    fn groups_missing_right_after_the_engine_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_groups(dir.path(), 5, 2));
        // The engine holds group 3: group 4 was acknowledged and is gone.
        let err = read(dir.path(), 3, None).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("group 5 where group 4 was due")),
            "{err}"
        );
        // The engine holds group 4 (or later): nothing is missing.
        assert_eq!(read(dir.path(), 4, None).unwrap().1, 6);
        assert_eq!(read(dir.path(), 9, None).unwrap().1, 9);
    }

    #[test]
    fn a_zeroed_tail_ends_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_groups(dir.path(), 1, 2));
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0; 4096]).unwrap();
        let (groups, last) = read(dir.path(), 0, None).unwrap();
        assert_eq!((groups.len(), last), (2, 2));
    }

    #[test]
    fn a_torn_tail_ends_a_segment_and_a_gap_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_groups(dir.path(), 1, 3));
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        // The crash cut the last record short: the two before it stand.
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 5).unwrap();
        let (groups, last) = read(dir.path(), 0, None).unwrap();
        assert_eq!((groups.len(), last), (2, 2));
        // A later segment that does not follow on: acknowledged groups are missing.
        drop(write_groups(dir.path(), 4, 1));
        let err = read(dir.path(), 0, None).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("group 4 where group 3 was due")),
            "{err}"
        );
    }

    #[test]
    fn a_checkpoint_removes_the_segments_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = write_groups(dir.path(), 1, 2);
        // Pretend the segment is full, so the checkpoint starts the next one.
        log.len = SEGMENT_BYTES;
        log.checkpointed(1, 3).unwrap();
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            2,
            "group 2 is not durable yet"
        );
        log.checkpointed(2, 3).unwrap();
        let left: Vec<u64> = segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(left, [3]);
    }
}
