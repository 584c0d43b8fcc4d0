//! bind_transmitter / bind_receiver / bind_transceiver, their responses, and outbind.
//!
//! The three binds share one body; the [`super::Pdu`] variant says which one it is.
//! `interface_version` is kept as received: 0x34 and 0x50 are what peers send, anything
//! else is accepted and flagged [`Tolerated::UNKNOWN_INTERFACE_VERSION`].

use bytes::{BufMut, BytesMut};

use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::tlv::Tlvs;
use super::tolerated::Tolerated;
use super::wire::{Reader, cstr_len, put_cstr};

/// SMPP 3.4 interface version.
pub const INTERFACE_VERSION_34: u8 = 0x34;
/// SMPP 5.0 interface version.
pub const INTERFACE_VERSION_50: u8 = 0x50;

/// Body of the three bind requests. `Debug` redacts the password (a logged PDU must not
/// carry it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bind {
    /// Identifies the ESME requesting to bind.
    pub system_id: Octets,
    /// Password for authentication.
    pub password: Octets,
    /// Type of ESME system.
    pub system_type: Octets,
    /// SMPP version supported by the ESME (0x34 / 0x50; kept as received).
    pub interface_version: u8,
    /// TON for address_range.
    pub addr_ton: u8,
    /// NPI for address_range.
    pub addr_npi: u8,
    /// Addresses served by this ESME (receiver binds).
    pub address_range: Octets,
}

impl Default for Bind {
    fn default() -> Self {
        Self {
            system_id: Octets::new(),
            password: Octets::new(),
            system_type: Octets::new(),
            interface_version: INTERFACE_VERSION_34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: Octets::new(),
        }
    }
}

impl Body for Bind {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let system_id = r.cstr("system_id")?;
        let password = r.cstr("password")?;
        let system_type = r.cstr("system_type")?;
        let interface_version = r.u8("interface_version")?;
        if !(interface_version <= INTERFACE_VERSION_34 || interface_version == INTERFACE_VERSION_50)
        {
            r.tolerated |= Tolerated::UNKNOWN_INTERFACE_VERSION;
        }
        let addr_ton = r.u8_or_zero("addr_ton")?;
        let addr_npi = r.u8_or_zero("addr_npi")?;
        let address_range = r.cstr("address_range")?;
        r.ignore_rest();
        Ok(Self {
            system_id,
            password,
            system_type,
            interface_version,
            addr_ton,
            addr_npi,
            address_range,
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.system_id, "system_id")?
            + cstr_len(&self.password, "password")?
            + cstr_len(&self.system_type, "system_type")?
            + 3
            + cstr_len(&self.address_range, "address_range")?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.system_id);
        put_cstr(buf, &self.password);
        put_cstr(buf, &self.system_type);
        buf.put_u8(self.interface_version);
        buf.put_u8(self.addr_ton);
        buf.put_u8(self.addr_npi);
        put_cstr(buf, &self.address_range);
    }
}

/// Body of the three bind responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BindResp {
    /// Identifies the SMSC to the ESME.
    pub system_id: Octets,
    /// Optional parameters (sc_interface_version).
    pub tlvs: Tlvs,
}

impl Body for BindResp {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        Ok(Self {
            system_id: r.cstr("system_id")?,
            tlvs: Tlvs::decode(r),
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.system_id, "system_id")? + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.system_id);
        self.tlvs.encode(buf);
    }
}

/// Body of outbind (SMSC asks the ESME to bind_receiver).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Outbind {
    /// SMSC identifier.
    pub system_id: Octets,
    /// Password the ESME checks.
    pub password: Octets,
}

impl Body for Outbind {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let system_id = r.cstr("system_id")?;
        let password = r.cstr("password")?;
        r.ignore_rest();
        Ok(Self {
            system_id,
            password,
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.system_id, "system_id")? + cstr_len(&self.password, "password")?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.system_id);
        put_cstr(buf, &self.password);
    }
}

impl core::fmt::Debug for Bind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bind")
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("interface_version", &self.interface_version)
            .field("addr_ton", &self.addr_ton)
            .field("addr_npi", &self.addr_npi)
            .field("address_range", &self.address_range)
            .finish()
    }
}
