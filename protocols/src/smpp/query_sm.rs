//! query_sm and query_sm_resp: the state of a previously submitted message.

use bytes::{BufMut, BytesMut};

use super::address::{Address, SOURCE};
use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::tlv::MessageState;
use super::wire::{Reader, cstr_len, put_cstr};

/// Body of query_sm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct QuerySm {
    /// The SMSC's message id.
    pub message_id: Octets,
    /// Source address of the original message.
    pub source: Address,
}

impl Body for QuerySm {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let v = Self {
            message_id: r.cstr("message_id")?,
            source: Address::decode(r, SOURCE)?,
        };
        r.ignore_rest();
        Ok(v)
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.message_id, "message_id")? + self.source.encoded_len("source_addr")?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.message_id);
        self.source.encode(buf);
    }
}

/// Body of query_sm_resp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuerySmResp {
    /// The queried message id.
    pub message_id: Octets,
    /// When the message reached a final state; empty if not final.
    pub final_date: Octets,
    /// Current state.
    pub message_state: MessageState,
    /// Network error code (GSM), 0 if none.
    pub error_code: u8,
}

impl Default for QuerySmResp {
    fn default() -> Self {
        Self {
            message_id: Octets::new(),
            final_date: Octets::new(),
            message_state: MessageState::Scheduled,
            error_code: 0,
        }
    }
}

impl Body for QuerySmResp {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let v = Self {
            message_id: r.cstr("message_id")?,
            final_date: r.cstr("final_date")?,
            message_state: MessageState::from_u8(r.u8("message_state")?),
            error_code: r.u8_or_zero("error_code")?,
        };
        r.ignore_rest();
        Ok(v)
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.message_id, "message_id")?
            + cstr_len(&self.final_date, "final_date")?
            + 2)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.message_id);
        put_cstr(buf, &self.final_date);
        buf.put_u8(self.message_state.to_u8());
        buf.put_u8(self.error_code);
    }
}
