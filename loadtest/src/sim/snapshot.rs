//! Live tally file: while the simulator runs, rewrite the tally JSON every interval.
//!
//! Scripts that drive a separate gateway process against the simulator (the Kannel vs sluice
//! comparison in `loadtest/peers/kannel.sh`) need to know *when* the simulator has received
//! N messages, not only the total at exit. This task gives them that without an HTTP server:
//! they poll the file.
//!
//! Invariants:
//! - Readers never see a half-written file: every write goes to `<path>.tmp` and is renamed
//!   over `<path>` (rename is atomic on one filesystem).
//! - The file is rewritten only when the snapshot changed, so an idle simulator does no IO.
//! - The task ends when the simulator shuts down; the final tally is then written by
//!   [`super::SimHandle::shutdown`], so the last file always holds the exact final counts.
//! - A failed write is logged and retried at the next tick; it never stops the simulator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::tally::{Tally, TallySnapshot};

/// Writes `tally` to `path` every `every` (when changed) until `shutdown` fires.
///
/// The write is a few hundred bytes of synchronous IO; doing it on the runtime thread costs
/// less than a `spawn_blocking` hand-off at the intervals this is meant for (≥ 10 ms).
pub(crate) async fn run(
    tally: Arc<Tally>,
    path: PathBuf,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last: Option<TallySnapshot> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snap = tally.snapshot();
        if last.as_ref() == Some(&snap) {
            continue;
        }
        match snap.write_json_atomic(&path) {
            Ok(()) => last = Some(snap),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Cannot write the live tally file.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::Piece;

    fn record(t: &Tally, text: &[u8]) {
        t.record(Piece {
            source: b"1",
            dest: b"2",
            payload: text,
            concat: None,
            udh: &[],
            eight_bit: false,
        });
    }

    fn read(path: &std::path::Path) -> Option<TallySnapshot> {
        let s = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&s).expect("the live file is always whole JSON"))
    }

    #[tokio::test(start_paused = true)]
    async fn rewrites_on_change_only_and_stops_on_shutdown() {
        let dir = std::env::temp_dir().join(format!("sluice-live-tally-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tally.json");
        let _ = std::fs::remove_file(&path);

        let tally = Arc::new(Tally::new());
        record(&tally, b"a");
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            tally.clone(),
            path.clone(),
            Duration::from_millis(100),
            stop_rx,
        ));

        // First tick fires at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read(&path).map(|s| s.unique_messages), Some(1));

        // Nothing changed: the file is not written again.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(read(&path).is_none(), "unchanged tally was rewritten");

        // A change shows up at the next tick.
        record(&tally, b"b");
        record(&tally, b"b");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = read(&path).expect("file after a change");
        assert_eq!((s.unique_messages, s.duplicates), (2, 1));
        assert!(
            !dir.join("tally.json.tmp").exists(),
            "temporary file left behind"
        );

        // Shutdown ends the task; later changes are not written by it.
        stop.send(true).unwrap();
        task.await.unwrap();
        record(&tally, b"c");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(read(&path).map(|s| s.unique_messages), Some(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
