//! Mobile-originated messages, whatever the protocol: reassembly of long MOs and the UDH
//! split that SMPP and CMPP share.
//!
//! A long MO arrives in parts, concatenated by UDH (IE 0x00 / 0x08) or, in SMPP, SAR TLVs;
//! [`MoAssembler`] reassembles them per channel (parts may come on different binds) and hands
//! back the whole body when the last part is in. Memory is bounded (the protocols `sms`
//! reassembler's limits) and incomplete messages expire after its TTL; a part that cannot be
//! reassembled (bad numbers) is passed on alone rather than dropped.

use std::sync::Mutex;
use std::time::Instant;

use sluice_protocols::sms::{Concat, Outcome, Reassembler, ReassemblyConfig, Udh};
use tracing::debug;

/// Per-channel MO reassembly (shared by the channel's binds).
#[derive(Debug)]
pub struct MoAssembler {
    mo: Mutex<Reassembler>,
}

impl Default for MoAssembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

impl MoAssembler {
    /// With the given reassembly limits.
    #[must_use]
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            mo: Mutex::new(Reassembler::new(config)),
        }
    }

    /// The whole MO body once every part of it is in; `None` while parts are missing (or
    /// for a duplicate part). A single-part message comes straight back.
    pub fn assemble(
        &self,
        source: &str,
        dest: &str,
        concat: Option<Concat>,
        body: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let Some(c) = concat.filter(|c| c.total > 1) else {
            return Some(body.to_vec());
        };
        let mut mo = self
            .mo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = mo.expire(now);
        if !expired.is_empty() {
            debug!(
                count = expired.len(),
                "Incomplete MO messages expired before their last part."
            );
        }
        match mo.push(source, dest, c, body, now) {
            Outcome::Complete(parts) => Some(parts.concat()),
            Outcome::Pending | Outcome::Duplicate => None,
            Outcome::Rejected => Some(body.to_vec()),
        }
    }
}

/// Splits a payload that starts with a UDH into its concatenation numbers (if any) and the
/// body after the header. A broken header passes the bytes after its declared length on as
/// they are.
#[must_use]
pub fn split_udh(payload: &[u8]) -> (Option<Concat>, &[u8]) {
    match Udh::parse(payload) {
        Ok((udh, body)) => (udh.concat(), body),
        Err(_) => {
            let udhl = payload.first().map_or(0, |&l| usize::from(l) + 1);
            (None, payload.get(udhl..).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_parts_make_one_body_and_broken_headers_pass() {
        let m = MoAssembler::default();
        let now = Instant::now();
        let first = Concat {
            reference: 7,
            total: 2,
            seq: 1,
        };
        assert_eq!(m.assemble("138", "10658", Some(first), b"ab", now), None);
        let second = Concat { seq: 2, ..first };
        assert_eq!(
            m.assemble("138", "10658", Some(second), b"cd", now),
            Some(b"abcd".to_vec())
        );
        assert_eq!(
            m.assemble("138", "10658", None, b"x", now),
            Some(b"x".to_vec())
        );
        let (c, body) = split_udh(&[5, 0, 3, 9, 2, 1, b'h', b'i']);
        assert_eq!(body, b"hi");
        assert_eq!(c.map(|c| (c.reference, c.total, c.seq)), Some((9, 2, 1)));
        let (c, body) = split_udh(&[2, 0xFF, b'h', b'i']);
        assert!(c.is_none());
        assert_eq!(body, b"i");
    }
}
