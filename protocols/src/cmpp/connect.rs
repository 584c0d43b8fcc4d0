//! CMPP_CONNECT and CMPP_CONNECT_RESP, and version negotiation.
//!
//! CONNECT (same in 2.0 and 3.0): Source_Addr(6) AuthenticatorSource(16) Version(1)
//! Timestamp(4) = 27 bytes.
//! CONNECT_RESP: Status (1 byte in 2.0, 4 in 3.0) AuthenticatorISMG(16) Version(1)
//! = 18 / 21 bytes.

use bytes::{BufMut, BytesMut};

use super::auth;
use super::codes::ConnectStatus;
use super::error::{DecodeErrorKind, EncodeError};
use super::octets::{
    FixedStr, Reader, check_status, finish, put_fixed, put_status, response_status_width,
};
use super::tolerated::{Tolerance, Tolerated};
use super::version::Version;

/// CMPP_CONNECT: the SP logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// SP id (企业代码), 6 octets.
    pub source_addr: FixedStr<6>,
    /// MD5 proof of the shared secret, see [`auth::authenticator_source`].
    pub authenticator_source: [u8; 16],
    /// Requested Version byte as sent (0x20, 0x30; some peers send 0x21 / 0x31).
    pub version: u8,
    /// `MMDDHHMMSS` as a decimal u32, also hashed into the authenticator.
    pub timestamp: u32,
}

impl Connect {
    /// A CONNECT for `version`, with the authenticator computed from the secret and the
    /// caller's timestamp (see [`auth::timestamp`]).
    pub fn new(
        source_addr: FixedStr<6>,
        shared_secret: &[u8],
        version: Version,
        timestamp: u32,
    ) -> Self {
        Self {
            authenticator_source: auth::authenticator_source(
                source_addr.as_bytes(),
                shared_secret,
                timestamp,
            ),
            source_addr,
            version: version.byte(),
            timestamp,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, tol: &mut Tolerated) -> Result<Self, DecodeErrorKind> {
        let source_addr = r.fixed(6, "Source_Addr", tol)?;
        let mut authenticator_source = [0u8; 16];
        authenticator_source.copy_from_slice(r.take(16, "AuthenticatorSource")?);
        let version = r.u8("Version")?;
        if matches!(Version::from_byte(version), Some((_, false))) {
            tol.insert(Tolerance::VersionMinor);
        }
        let timestamp = r.u32("Timestamp")?;
        finish(r, tol);
        Ok(Self {
            source_addr,
            authenticator_source,
            version,
            timestamp,
        })
    }

    pub(crate) fn body_len(&self, _v: Version) -> Result<usize, EncodeError> {
        Ok(27)
    }

    pub(crate) fn write(&self, _v: Version, dst: &mut BytesMut) {
        put_fixed(dst, &self.source_addr, 6);
        dst.put_slice(&self.authenticator_source);
        dst.put_u8(self.version);
        dst.put_u32(self.timestamp);
    }
}

/// ISMG side of negotiation: the version to run for a CONNECT's Version byte, given the
/// highest version we support, or the CONNECT_RESP Status to refuse with.
///
/// A minor nibble (0x21, 0x31) is read by its major nibble. A request above `highest` is
/// answered with our highest version (the SP may accept or drop); a byte that names no
/// CMPP 2.x/3.x version is refused with Status 4 when above 3.x, Status 1 otherwise.
pub fn negotiate(requested: u8, highest: Version) -> Result<Version, ConnectStatus> {
    match Version::from_byte(requested) {
        Some((v, _)) => Ok(v.min(highest)),
        None if requested > 0x3F => Err(ConnectStatus::VersionTooHigh),
        None => Err(ConnectStatus::StructureError),
    }
}

/// CMPP_CONNECT_RESP: the ISMG's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResp {
    /// 0 = accepted; 1 structure error, 2 illegal source, 3 auth error, 4 version too high.
    pub status: ConnectStatus,
    /// MD5 proof the ISMG knows the secret, see [`auth::authenticator_ismg`].
    pub authenticator_ismg: [u8; 16],
    /// The version the ISMG will run.
    pub version: u8,
}

impl ConnectResp {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        v: Version,
        tol: &mut Tolerated,
    ) -> Result<Self, DecodeErrorKind> {
        let width = response_status_width(r.remaining(), 17, v, tol);
        let status = ConnectStatus::from_raw(r.status(width, "Status")?);
        let mut authenticator_ismg = [0u8; 16];
        authenticator_ismg.copy_from_slice(r.take(16, "AuthenticatorISMG")?);
        let version = r.u8("Version")?;
        if matches!(Version::from_byte(version), Some((_, false))) {
            tol.insert(Tolerance::VersionMinor);
        }
        finish(r, tol);
        Ok(Self {
            status,
            authenticator_ismg,
            version,
        })
    }

    pub(crate) fn body_len(&self, v: Version) -> Result<usize, EncodeError> {
        check_status("Status", self.status.raw(), v)?;
        Ok(v.status_len() + 17)
    }

    pub(crate) fn write(&self, v: Version, dst: &mut BytesMut) {
        put_status(dst, self.status.raw(), v.status_len());
        dst.put_slice(&self.authenticator_ismg);
        dst.put_u8(self.version);
    }
}
