//! Per-connection writer task: the only place a simulator socket is written.
//!
//! The reader (and the delivery scheduler) hand it encoded bytes: `Now` chunks are written as
//! they come, `At` chunks wait in a heap until due (response latency, held-back responses
//! after an early DLR). Everything ready is gathered into one buffer and written with one
//! `write_all`, so a read batch of N submits costs one syscall for N responses. The shared
//! `outstanding` counter drops only after a response reached the socket: that is what the
//! window limit compares against.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a writer is asked to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Write now; `responses` of them count against the window.
    Now { bytes: Bytes, responses: usize },
    /// Write at `at`.
    At {
        at: Instant,
        bytes: Bytes,
        responses: usize,
    },
    /// Write what is due, then close the connection.
    Close,
    /// Drop the connection now, losing anything unsent (random disconnects).
    Abort,
}

struct Timed {
    at: Instant,
    order: u64,
    bytes: Bytes,
    responses: usize,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

/// Runs until the channel closes, `Close`/`Abort` arrives or the peer stops reading.
pub(crate) async fn run(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    outstanding: Arc<AtomicUsize>,
) {
    let mut heap: BinaryHeap<Timed> = BinaryHeap::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut order = 0u64;
    let mut closing = false;
    loop {
        let next = heap.peek().map(|t| t.at);
        // `None` here means "a timer fired": only due heap items are written.
        let mut msg = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => break,
            },
            _ = sleep_until_opt(next) => None,
        };
        let mut responses = 0usize;
        let mut single: Option<Bytes> = None;
        while let Some(m) = msg.take() {
            match m {
                Out::Now {
                    bytes,
                    responses: n,
                } => {
                    responses += n;
                    if bytes.is_empty() {
                        // nothing to write
                    } else if single.is_none() && buf.is_empty() {
                        single = Some(bytes);
                    } else {
                        if let Some(s) = single.take() {
                            buf.extend_from_slice(&s);
                        }
                        buf.extend_from_slice(&bytes);
                    }
                }
                Out::At {
                    at,
                    bytes,
                    responses,
                } => {
                    order += 1;
                    heap.push(Timed {
                        at,
                        order,
                        bytes,
                        responses,
                    });
                }
                Out::Close => closing = true,
                Out::Abort => return,
            }
            if let Ok(m) = rx.try_recv() {
                msg = Some(m);
            }
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|t| t.at <= now || closing) {
            let Some(t) = heap.pop() else { break };
            if let Some(s) = single.take() {
                buf.extend_from_slice(&s);
            }
            buf.extend_from_slice(&t.bytes);
            responses += t.responses;
        }
        let res = match single.take() {
            Some(s) => wr.write_all(&s).await,
            None if !buf.is_empty() => {
                let r = wr.write_all(&buf).await;
                buf.clear();
                r
            }
            None => Ok(()),
        };
        if res.is_err() {
            break;
        }
        if responses > 0 {
            outstanding.fetch_sub(responses, Ordering::Relaxed);
        }
        if closing {
            let _ = wr.shutdown().await;
            break;
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
