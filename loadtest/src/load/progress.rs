//! Progress while a run is going: an indicatif bar on a TTY, else a tracing line every 5 s.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;

pub(crate) async fn run(s: Arc<Shared>) {
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = match s.cfg.count {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        b.set_style(style);
        b
    });
    let period = if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval(period);
    let mut last = 0u64;
    loop {
        tick.tick().await;
        if s.stop.load(Ordering::Relaxed) {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return;
        }
        let accepted = s.c.messages_accepted.load(Ordering::Relaxed);
        let parts = s.c.parts_accepted.load(Ordering::Relaxed);
        let rate = (parts - last.min(parts)) as f64 / period.as_secs_f64();
        last = parts;
        match &bar {
            Some(b) => {
                b.set_position(accepted);
                b.set_message(format!("{rate:.0} parts/s"));
            }
            None => tracing::info!(
                messages_accepted = accepted,
                parts_accepted = parts,
                parts_per_s = rate as u64,
                "loadtest progress"
            ),
        }
    }
}
