//! Shared state of one simulated center (one listener): accounts and bind counts, the
//! throughput bucket, message-id generation, the registry of live sessions (for routing
//! receipts and MOs) and the behaviour draws every session makes per submit.
//!
//! Invariant: a session is in the registry only while bound and its connection task runs;
//! the registry never holds more binds of an account than its `max_binds`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;

use super::dlr::{Delivery, MsgRef, Stat};
use super::writer::Out;
use crate::bucket::TokenBucket;
use crate::config::{IdFormat, ListenerConfig};
use crate::dist::pick_weighted;
use crate::tally::{Tally, lock};
use sluice_protocols::cmpp::{Deliver, MsgId, MsgIdParts};

/// A live bind, as seen by the registry and the delivery scheduler.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub(crate) id: u64,
    pub(crate) account: Arc<str>,
    /// Whether the bind may receive deliver_sm (receiver / transceiver; all CMPP binds).
    pub(crate) receives: bool,
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    /// SMPP binds: due deliveries go to the session task as items, which its `Smsc`
    /// session encodes, numbers and tracks. `None` for CMPP binds, which take `delivers`.
    pub(crate) items: Option<mpsc::UnboundedSender<Vec<Delivery>>>,
    /// CMPP binds: DELIVERs go to the session task, whose `IsmgSession` numbers and windows
    /// them. `None` for SMPP binds, which take `items`.
    pub(crate) delivers: Option<mpsc::UnboundedSender<Vec<(super::dlr::Delivery, Deliver)>>>,
}

impl SessionHandle {
    /// Whether the connection behind this handle is gone.
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
            || self.items.as_ref().is_some_and(|i| i.is_closed())
            || self.delivers.as_ref().is_some_and(|d| d.is_closed())
    }
}

impl SessionHandle {}

/// What the center decided for one submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    QueueFull,
    Throttled,
    Permanent,
    Temporary,
}

/// Why a bind was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindRefusal {
    UnknownAccount,
    BadPassword,
    TooManyBinds,
}

pub(crate) struct Center {
    pub(crate) cfg: ListenerConfig,
    pub(crate) tally: Arc<Tally>,
    bucket: Option<Mutex<TokenBucket>>,
    next_id: AtomicU64,
    next_session: AtomicU64,
    sessions: Mutex<Vec<SessionHandle>>,
    pub(crate) deliveries: mpsc::UnboundedSender<Delivery>,
    pub(crate) seed: Option<u64>,
    stats: Vec<(Stat, f64)>,
    rr: AtomicU64,
    /// Binds refused so far by `refuse_binds`.
    refused_binds: AtomicU32,
}

impl Center {
    pub(crate) fn new(
        cfg: ListenerConfig,
        tally: Arc<Tally>,
        deliveries: mpsc::UnboundedSender<Delivery>,
        seed: Option<u64>,
    ) -> Self {
        let bucket = (cfg.throughput > 0.0).then(|| {
            let burst = if cfg.burst > 0.0 {
                cfg.burst
            } else {
                (cfg.throughput / 10.0).max(1.0)
            };
            Mutex::new(TokenBucket::new(cfg.throughput, burst, Instant::now()))
        });
        let stats = cfg
            .dlr
            .mix
            .iter()
            .filter_map(|(k, w)| Stat::parse(k).map(|s| (s, *w)))
            .collect();
        Self {
            cfg,
            tally,
            bucket,
            next_id: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            sessions: Mutex::new(Vec::new()),
            deliveries,
            seed,
            stats,
            rr: AtomicU64::new(0),
            refused_binds: AtomicU32::new(0),
        }
    }

    /// A per-session RNG: reproducible when the config has a seed.
    pub(crate) fn session_rng(&self, session: u64) -> SmallRng {
        use rand::SeedableRng;
        match self.seed {
            Some(s) => SmallRng::seed_from_u64(s ^ session.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            None => rand::make_rng(),
        }
    }

    pub(crate) fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Finds the account's password (shared secret for CMPP); `Ok(None)` = open listener.
    pub(crate) fn password_of(&self, system_id: &[u8]) -> Result<Option<&str>, BindRefusal> {
        if self.cfg.accounts.is_empty() {
            return Ok(None);
        }
        self.cfg
            .accounts
            .iter()
            .find(|a| a.system_id.as_bytes() == system_id)
            .map(|a| Some(a.password.as_str()))
            .ok_or(BindRefusal::UnknownAccount)
    }

    /// SMPP authentication: system_id and password from the config.
    pub(crate) fn authenticate(
        &self,
        system_id: &[u8],
        password: &[u8],
    ) -> Result<(), BindRefusal> {
        match self.password_of(system_id)? {
            Some(p) if p.as_bytes() != password => Err(BindRefusal::BadPassword),
            _ => Ok(()),
        }
    }

    /// Whether this bind attempt is one of the first `refuse_binds` (counted here, so each
    /// attempt is judged once).
    pub(crate) fn refuses_bind_now(&self) -> bool {
        let limit = self.cfg.refuse_binds;
        limit > 0
            && self
                .refused_binds
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_ok()
    }

    /// Whether the response to an accepted submit is lost (`drop_response_share`); counted.
    pub(crate) fn drops_response(&self, rng: &mut SmallRng) -> bool {
        let p = self.cfg.drop_response_share;
        let dropped = p > 0.0 && rng.random::<f64>() < p;
        if dropped {
            self.tally.responses_dropped.fetch_add(1, Ordering::Relaxed);
        }
        dropped
    }

    /// Adds a bind, enforcing the account's max_binds. `before_visible` runs under the
    /// registry lock just before the session becomes routable (sessions queue their
    /// bind response there, so no receipt can overtake it).
    pub(crate) fn register(
        &self,
        h: SessionHandle,
        before_visible: impl FnOnce(),
    ) -> Result<(), BindRefusal> {
        let max = self
            .cfg
            .accounts
            .iter()
            .find(|a| *a.system_id == *h.account)
            .map_or(0, |a| a.max_binds);
        let mut s = lock(&self.sessions);
        if max > 0 && s.iter().filter(|x| x.account == h.account).count() >= max as usize {
            return Err(BindRefusal::TooManyBinds);
        }
        before_visible();
        s.push(h);
        Ok(())
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.sessions).retain(|s| s.id != id);
    }

    /// The session to deliver to: `prefer` if it receives, else another receiver of the
    /// account (round-robin), else — for MOs with an empty account — any receiver.
    pub(crate) fn receiver_for(&self, account: &str, prefer: u64) -> Option<SessionHandle> {
        let s = lock(&self.sessions);
        if let Some(h) = s
            .iter()
            .find(|h| h.id == prefer && h.receives && !h.is_closed())
        {
            return Some(h.clone());
        }
        let candidates: Vec<&SessionHandle> = s
            .iter()
            .filter(|h| {
                h.receives && !h.is_closed() && (account.is_empty() || *h.account == *account)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) as usize % candidates.len();
        Some(candidates[i].clone())
    }

    /// Decides the fate of one submit. `outstanding` = unanswered submits on the bind,
    /// including this one.
    pub(crate) fn judge(&self, outstanding: usize, rng: &mut SmallRng) -> Verdict {
        if self.cfg.window > 0 && outstanding > self.cfg.window as usize {
            return Verdict::QueueFull;
        }
        if let Some(b) = &self.bucket
            && !lock(b).try_take(Instant::now())
        {
            return Verdict::Throttled;
        }
        let e = &self.cfg.errors;
        if e.permanent > 0.0 || e.temporary > 0.0 {
            let x: f64 = rng.random();
            if x < e.permanent {
                return Verdict::Permanent;
            }
            if x < e.permanent + e.temporary {
                return Verdict::Temporary;
            }
        }
        Verdict::Accept
    }

    /// A fresh SMPP message id in the configured format, written into `buf`.
    pub(crate) fn smpp_message_id<'b>(&self, buf: &'b mut [u8; 24]) -> &'b [u8] {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut w = std::io::Cursor::new(&mut buf[..]);
        use std::io::Write;
        let _ = match self.cfg.message_id {
            IdFormat::Hex => write!(w, "{n:X}"),
            IdFormat::Decimal => write!(w, "{n}"),
            IdFormat::DecimalPadded => write!(w, "{n:010}"),
        };
        let len = w.position() as usize;
        &buf[..len]
    }

    /// A fresh CMPP Msg_Id: spec layout, with the 22-bit gateway field used as the high bits
    /// of a counter so ids stay unique beyond 65 536 per second.
    pub(crate) fn cmpp_msg_id(&self) -> u64 {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        cmpp_msg_id(
            jiff::Timestamp::now(),
            ((n >> 16) & 0x3F_FFFF) as u32,
            n as u16,
        )
    }

    /// A fresh id of the same protocol as `like`, never given to any client: the id of a
    /// receipt for an unknown message (`dlr.unknown_share`).
    pub(crate) fn unknown_ref(&self, like: &MsgRef) -> MsgRef {
        match like {
            MsgRef::Smpp(_) => {
                let mut buf = [0u8; 24];
                let id = self.smpp_message_id(&mut buf);
                MsgRef::Smpp(String::from_utf8_lossy(id).into())
            }
            MsgRef::Cmpp(_) => MsgRef::Cmpp(self.cmpp_msg_id()),
        }
    }

    /// Draws the final state of a receipt from the configured mix.
    pub(crate) fn draw_stat(&self, rng: &mut SmallRng) -> Stat {
        pick_weighted(self.stats.iter().map(|s| s.1), rng)
            .map_or(Stat::Delivrd, |i| self.stats[i].0)
    }
}

/// A CMPP Msg_Id for `now` (UTC) with the given gateway code and sequence.
pub(crate) fn cmpp_msg_id(now: jiff::Timestamp, gateway: u32, sequence: u16) -> u64 {
    let t = now.to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime();
    let parts = MsgIdParts {
        month: t.month() as u8,
        day: t.day() as u8,
        hour: t.hour() as u8,
        minute: t.minute() as u8,
        second: t.second() as u8,
        gateway: gateway & 0x3F_FFFF,
        sequence,
    };
    MsgId::from_parts(parts).map_or(0, |m| m.0)
}
