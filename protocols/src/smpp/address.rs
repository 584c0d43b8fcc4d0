//! An SMPP address triple: type of number, numbering plan, and the address C-octet string.

use bytes::{BufMut, BytesMut};

use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::wire::{Reader, cstr_len, put_cstr};

/// `(ton, npi, addr)` as it appears before source and destination addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Address {
    /// Type of number (0 unknown, 1 international, 2 national, 5 alphanumeric, …).
    pub ton: u8,
    /// Numbering plan indicator (0 unknown, 1 E.164, …).
    pub npi: u8,
    /// The address octets, without the NUL terminator.
    pub addr: Octets,
}

impl Address {
    /// Builds an address from its parts.
    pub fn new(ton: u8, npi: u8, addr: impl Into<Octets>) -> Self {
        Self {
            ton,
            npi,
            addr: addr.into(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, names: [&'static str; 3]) -> Result<Self, BodyError> {
        Ok(Self {
            ton: r.u8(names[0])?,
            npi: r.u8(names[1])?,
            addr: r.cstr(names[2])?,
        })
    }

    pub(crate) fn encoded_len(&self, field: &'static str) -> Result<usize, EncodeError> {
        Ok(2 + cstr_len(&self.addr, field)?)
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.ton);
        buf.put_u8(self.npi);
        put_cstr(buf, &self.addr);
    }
}

pub(crate) const SOURCE: [&str; 3] = ["source_addr_ton", "source_addr_npi", "source_addr"];
pub(crate) const DEST: [&str; 3] = ["dest_addr_ton", "dest_addr_npi", "destination_addr"];
pub(crate) const ESME: [&str; 3] = ["esme_addr_ton", "esme_addr_npi", "esme_addr"];
