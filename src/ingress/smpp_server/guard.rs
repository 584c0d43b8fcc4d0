//! Per peer IP address admission for the SMPP server: open connections, bind attempts per
//! second, failed binds (answer delay and lockout).
//!
//! Why per IP and not per account: a bind flood or a password guesser names accounts it does
//! not own; locking the account would let anyone lock a customer out. Locking the address
//! stops the guesser and leaves the customer's own binds (from its own addresses) alone.
//! Accounts keep their own `smpp_max_binds` (`AccountHub::register`).
//!
//! Invariants: every [`ConnPermit`] gives its connection back when dropped; the table is
//! bounded ([`MAX_PEERS`]): when full, addresses with no open connection and no lockout are
//! forgotten first. Time is a parameter (`now`), so the rules are tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First delay before a failed bind is answered.
pub const FAIL_DELAY_BASE: Duration = Duration::from_millis(200);
/// Longest delay before a failed bind is answered.
pub const FAIL_DELAY_MAX: Duration = Duration::from_secs(5);
/// Addresses remembered at once.
pub const MAX_PEERS: usize = 100_000;

/// The limits, from config `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Open connections per address.
    pub max_connections: u32,
    /// Bind attempts per address per second.
    pub binds_per_sec: u32,
    /// Failed binds that lock the address out.
    pub lockout_failures: u32,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            binds_per_sec: 20,
            lockout_failures: 10,
            lockout: Duration::from_secs(300),
        }
    }
}

/// Why a bind is refused before its credentials are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRefusal {
    /// More than `binds_per_sec` attempts this second.
    Rate,
    /// The address failed `lockout_failures` binds and is locked out.
    LockedOut,
}

impl BindRefusal {
    /// Metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "bind_rate",
            Self::LockedOut => "lockout",
        }
    }
}

#[derive(Debug)]
struct Peer {
    conns: u32,
    second: Instant,
    binds_this_second: u32,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Self {
            conns: 0,
            second: now,
            binds_this_second: 0,
            failures: 0,
            locked_until: None,
        }
    }
}

/// The admission table shared by the accept loop and every connection.
#[derive(Debug, Default)]
pub struct PeerGuard {
    limits: PeerLimits,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

/// An admitted connection; gives its slot back when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    guard: Arc<PeerGuard>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut peers = self.guard.lock();
        if let Some(p) = peers.get_mut(&self.ip) {
            p.conns = p.conns.saturating_sub(1);
        }
    }
}

impl PeerGuard {
    /// A table enforcing `limits`.
    pub fn new(limits: PeerLimits) -> Self {
        Self {
            limits,
            peers: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry of `ip`, making room when the table is full.
    fn entry(peers: &mut HashMap<IpAddr, Peer>, ip: IpAddr, now: Instant) -> &mut Peer {
        if peers.len() >= MAX_PEERS && !peers.contains_key(&ip) {
            peers.retain(|_, p| p.conns > 0 || p.locked_until.is_some_and(|t| t > now));
            if peers.len() >= MAX_PEERS {
                // Every slot holds a live connection or lockout: forget the lockouts.
                peers.retain(|_, p| p.conns > 0);
            }
        }
        peers.entry(ip).or_insert_with(|| Peer::new(now))
    }

    /// Admits a new connection from `ip`, or `None` when the address already has
    /// `max_connections` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<ConnPermit> {
        let mut peers = self.lock();
        let p = Self::entry(&mut peers, ip, now);
        if p.conns >= self.limits.max_connections {
            return None;
        }
        p.conns += 1;
        drop(peers);
        Some(ConnPermit {
            guard: Arc::clone(self),
            ip,
        })
    }

    /// Counts a bind attempt from `ip`; refuses it when the address is locked out or over
    /// its rate.
    ///
    /// # Errors
    /// The [`BindRefusal`]: answer `ESME_RBINDFAIL` without looking at the credentials.
    pub fn bind_attempt(&self, ip: IpAddr, now: Instant) -> Result<(), BindRefusal> {
        let mut peers = self.lock();
        let p = Self::entry(&mut peers, ip, now);
        match p.locked_until {
            Some(t) if t > now => return Err(BindRefusal::LockedOut),
            Some(_) => {
                p.locked_until = None;
                p.failures = 0;
            }
            None => {}
        }
        if now.saturating_duration_since(p.second) >= Duration::from_secs(1) {
            p.second = now;
            p.binds_this_second = 0;
        }
        p.binds_this_second = p.binds_this_second.saturating_add(1);
        if p.binds_this_second > self.limits.binds_per_sec {
            return Err(BindRefusal::Rate);
        }
        Ok(())
    }

    /// Counts a failed bind (wrong system_id or password) from `ip`: returns how long to
    /// wait before answering it (doubling from [`FAIL_DELAY_BASE`] to [`FAIL_DELAY_MAX`])
    /// and locks the address out at `lockout_failures`.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut peers = self.lock();
        let p = Self::entry(&mut peers, ip, now);
        p.failures = p.failures.saturating_add(1);
        if p.failures >= self.limits.lockout_failures {
            p.locked_until = Some(now + self.limits.lockout);
        }
        FAIL_DELAY_BASE
            .saturating_mul(
                1u32.checked_shl(p.failures.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(FAIL_DELAY_MAX)
    }

    /// A bind from `ip` succeeded: its failures are forgiven.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Some(p) = self.lock().get_mut(&ip) {
            p.failures = 0;
            p.locked_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_connections: u32, binds_per_sec: u32, lockout_failures: u32) -> Arc<PeerGuard> {
        Arc::new(PeerGuard::new(PeerLimits {
            max_connections,
            binds_per_sec,
            lockout_failures,
            lockout: Duration::from_secs(60),
        }))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let g = guard(2, 10, 10);
        let t = Instant::now();
        let one = g.admit(A, t).expect("first");
        let _two = g.admit(A, t).expect("second");
        assert!(g.admit(A, t).is_none());
        assert!(g.admit(B, t).is_some(), "another address is not affected");
        drop(one);
        assert!(g.admit(A, t).is_some());
    }

    #[test]
    fn bind_attempts_are_rated_per_second() {
        let g = guard(10, 3, 100);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.bind_attempt(A, t), Ok(()));
        }
        assert_eq!(g.bind_attempt(A, t), Err(BindRefusal::Rate));
        assert_eq!(g.bind_attempt(B, t), Ok(()));
        assert_eq!(g.bind_attempt(A, t + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn failures_delay_then_lock_out_until_the_lockout_ends() {
        let g = guard(10, 100, 3);
        let t = Instant::now();
        assert_eq!(g.failed(A, t), FAIL_DELAY_BASE);
        assert_eq!(g.failed(A, t), FAIL_DELAY_BASE * 2);
        assert_eq!(g.bind_attempt(A, t), Ok(()));
        let _ = g.failed(A, t);
        assert_eq!(g.bind_attempt(A, t), Err(BindRefusal::LockedOut));
        assert_eq!(g.bind_attempt(B, t), Ok(()));
        let later = t + Duration::from_secs(61);
        assert_eq!(g.bind_attempt(A, later), Ok(()));
        // The lockout ended and its failures with it.
        assert_eq!(g.failed(A, later), FAIL_DELAY_BASE);
    }

    #[test]
    fn a_success_forgives_failures() {
        let g = guard(10, 100, 2);
        let t = Instant::now();
        let _ = g.failed(A, t);
        g.succeeded(A);
        let _ = g.failed(A, t);
        assert_eq!(g.bind_attempt(A, t), Ok(()));
    }
}
