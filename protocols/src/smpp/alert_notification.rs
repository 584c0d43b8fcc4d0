//! alert_notification: the SMSC tells the ESME that a mobile became available.

use bytes::BytesMut;

use super::address::{Address, ESME, SOURCE};
use super::error::{BodyError, EncodeError};
use super::pdu::Body;
use super::tlv::Tlvs;
use super::wire::Reader;

/// Body of alert_notification (it has no response).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AlertNotification {
    /// The mobile that became available.
    pub source: Address,
    /// The ESME that asked to be alerted.
    pub esme: Address,
    /// Optional parameters (ms_availability_status).
    pub tlvs: Tlvs,
}

impl Body for AlertNotification {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        Ok(Self {
            source: Address::decode(r, SOURCE)?,
            esme: Address::decode(r, ESME)?,
            tlvs: Tlvs::decode(r),
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(self.source.encoded_len("source_addr")?
            + self.esme.encoded_len("esme_addr")?
            + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        self.source.encode(buf);
        self.esme.encode(buf);
        self.tlvs.encode(buf);
    }
}
