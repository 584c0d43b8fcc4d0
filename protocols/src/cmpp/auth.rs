//! CONNECT authenticators: AuthenticatorSource (SP → ISMG) and AuthenticatorISMG (answer).
//!
//! - AuthenticatorSource = MD5(Source_Addr + 9 × 0x00 + shared secret + timestamp), where the
//!   timestamp is the CONNECT Timestamp field written as 10 decimal digits `MMDDHHMMSS`.
//! - AuthenticatorISMG = MD5(Status + AuthenticatorSource + shared secret), with Status in
//!   its version's width: 1 byte in 2.0, 4 bytes big-endian in 3.0.
//!
//! Sans-IO: the caller passes the timestamp (see [`timestamp`]); nothing here reads a clock.
//! Verification compares digests in constant time so a wrong secret leaks no prefix length.

use md5::{Digest, Md5};

use super::codes::ConnectStatus;
use super::version::Version;

/// Builds the CONNECT Timestamp value `MMDDHHMMSS` as a decimal u32 from calendar parts,
/// or `None` if a part is out of range.
pub fn timestamp(month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<u32> {
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(
        u32::from(month) * 100_000_000
            + u32::from(day) * 1_000_000
            + u32::from(hour) * 10_000
            + u32::from(minute) * 100
            + u32::from(second),
    )
}

/// AuthenticatorSource for a CONNECT. `source_addr` is the SP id as sent (≤ 6 bytes).
pub fn authenticator_source(source_addr: &[u8], shared_secret: &[u8], timestamp: u32) -> [u8; 16] {
    let mut ts = [0u8; 10];
    let mut t = timestamp;
    for slot in ts.iter_mut().rev() {
        *slot = b'0' + (t % 10) as u8;
        t /= 10;
    }
    let mut h = Md5::new();
    h.update(source_addr);
    h.update([0u8; 9]);
    h.update(shared_secret);
    h.update(ts);
    digest(h)
}

/// AuthenticatorISMG for a CONNECT_RESP with `status`, answering `auth_source`.
///
/// In 2.0 the Status byte is the low byte of `status` (the encoder rejects larger values).
pub fn authenticator_ismg(
    version: Version,
    status: ConnectStatus,
    auth_source: &[u8; 16],
    shared_secret: &[u8],
) -> [u8; 16] {
    let mut h = Md5::new();
    match version {
        Version::V20 => h.update([status.raw() as u8]),
        Version::V30 => h.update(status.raw().to_be_bytes()),
    }
    h.update(auth_source);
    h.update(shared_secret);
    digest(h)
}

/// ISMG side: does a CONNECT's AuthenticatorSource match our copy of the secret?
pub fn verify_source(
    source_addr: &[u8],
    shared_secret: &[u8],
    timestamp: u32,
    received: &[u8; 16],
) -> bool {
    constant_time_eq(
        &authenticator_source(source_addr, shared_secret, timestamp),
        received,
    )
}

/// SP side: does a CONNECT_RESP's AuthenticatorISMG prove the ISMG knows the secret?
pub fn verify_ismg(
    version: Version,
    status: ConnectStatus,
    auth_source: &[u8; 16],
    shared_secret: &[u8],
    received: &[u8; 16],
) -> bool {
    constant_time_eq(
        &authenticator_ismg(version, status, auth_source, shared_secret),
        received,
    )
}

fn digest(h: Md5) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize());
    out
}

/// Compares every byte whatever the first difference; `black_box` keeps the optimiser
/// from turning the fold back into an early exit.
fn constant_time_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_decimal_mmddhhmmss() {
        assert_eq!(timestamp(1, 2, 3, 4, 5), Some(102_030_405));
        assert_eq!(timestamp(12, 31, 23, 59, 59), Some(1_231_235_959));
        assert_eq!(timestamp(13, 1, 0, 0, 0), None);
        assert_eq!(timestamp(1, 0, 0, 0, 0), None);
    }

    #[test]
    fn source_pads_timestamp_to_ten_digits() {
        // Independently assembled input: "901234" + 9 NULs + "secret" + "0102030405".
        let mut input = b"901234".to_vec();
        input.extend_from_slice(&[0; 9]);
        input.extend_from_slice(b"secret");
        input.extend_from_slice(b"0102030405");
        let mut want = [0u8; 16];
        want.copy_from_slice(&Md5::digest(&input));
        assert_eq!(
            authenticator_source(b"901234", b"secret", 102_030_405),
            want
        );
        assert!(verify_source(b"901234", b"secret", 102_030_405, &want));
        assert!(!verify_source(b"901234", b"secreT", 102_030_405, &want));
    }

    #[test]
    fn ismg_status_width_follows_version() {
        let src = authenticator_source(b"901234", b"secret", 1_126_015_300);
        let v2 = authenticator_ismg(Version::V20, ConnectStatus::Ok, &src, b"secret");
        let v3 = authenticator_ismg(Version::V30, ConnectStatus::Ok, &src, b"secret");
        assert_ne!(v2, v3);
        let mut input = vec![0u8, 0, 0, 0];
        input.extend_from_slice(&src);
        input.extend_from_slice(b"secret");
        assert_eq!(v3.as_slice(), Md5::digest(&input).as_slice());
        assert!(verify_ismg(
            Version::V20,
            ConnectStatus::Ok,
            &src,
            b"secret",
            &v2
        ));
        assert!(!verify_ismg(
            Version::V30,
            ConnectStatus::Ok,
            &src,
            b"secret",
            &v2
        ));
    }
}
