//! Typed errors. A malformed PDU says what to answer: [`DecodeError::response`] builds the
//! CONNECT_RESP / SUBMIT_RESP / DELIVER_RESP / CANCEL_RESP the specification wants, with
//! the status or result code that fits the fault.

use super::cancel::CancelResp;
use super::codes::{CommandId, ConnectStatus, ResultCode};
use super::connect::ConnectResp;
use super::deliver::DeliverResp;
use super::header::Header;
use super::msg_id::MsgId;
use super::pdu::Pdu;
use super::submit::SubmitResp;
use super::version::Version;

/// The stream cannot be framed any further: the link should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Total_Length smaller than the header itself.
    #[error("Total_Length {total_length} is below the 12-byte header")]
    TooShort {
        /// The declared length.
        total_length: u32,
    },
    /// Total_Length larger than the accepted maximum.
    #[error("Total_Length {total_length} exceeds the maximum of {max}")]
    TooLong {
        /// The declared length.
        total_length: u32,
        /// The caller's maximum.
        max: u32,
    },
}

/// What was wrong with a well-framed PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The body ended inside a field.
    #[error("body ends inside {field} (offset {offset}, {needed} bytes needed)")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its offset in the body.
        offset: usize,
        /// Its width.
        needed: usize,
    },
    /// The bytes handed to the decoder disagree with Total_Length.
    #[error("Total_Length says {declared} bytes but the frame has {actual}")]
    FrameLength {
        /// Total_Length from the header.
        declared: u32,
        /// Bytes actually given.
        actual: usize,
    },
    /// DestUsr_tl outside 1..=100.
    #[error("DestUsr_tl {0} is outside 1..=100")]
    DestCount(u8),
    /// A status report (Registered_Delivery = 1) whose Msg_Length is neither 60 nor 71.
    #[error("status report Msg_Length {0} is neither 60 (2.0) nor 71 (3.0)")]
    ReportLength(u8),
    /// A response body whose length fits neither version's layout.
    #[error("response body of {0} bytes fits neither the 2.0 nor the 3.0 layout")]
    ResponseLength(usize),
    /// A Command_Id this codec does not decode.
    #[error("command id not decoded by this codec")]
    UnknownCommand,
}

/// A PDU that framed correctly but did not decode. The frame has been consumed; the link
/// can go on after answering with [`DecodeError::response`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} seq {}: {kind}", header.command_id, header.sequence_id)]
pub struct DecodeError {
    /// The PDU's header.
    pub header: Header,
    /// Msg_Id when it was read before the fault (DELIVER: the answer must echo it).
    pub msg_id: Option<MsgId>,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// The CONNECT_RESP Status to answer a malformed CONNECT with.
    pub fn connect_status(&self) -> ConnectStatus {
        ConnectStatus::StructureError
    }

    /// The SUBMIT_RESP / DELIVER_RESP Result that fits the fault: 4 for a length fault
    /// (truncated body, Msg_Length disagreeing with the body), 2 for an unknown command,
    /// 1 for any other structure fault.
    pub fn result_code(&self) -> ResultCode {
        match self.kind {
            DecodeErrorKind::Truncated { .. }
            | DecodeErrorKind::FrameLength { .. }
            | DecodeErrorKind::ReportLength(_)
            | DecodeErrorKind::ResponseLength(_) => ResultCode::MessageLengthError,
            DecodeErrorKind::UnknownCommand => ResultCode::CommandWordError,
            DecodeErrorKind::DestCount(_) => ResultCode::MessageStructureError,
        }
    }

    /// The answer the specification expects for the malformed request, on a link of
    /// `version`; send it with the same Sequence_Id (`self.header.sequence_id`).
    ///
    /// `None` for responses (nothing answers a response), for QUERY (its answer has no
    /// error field), and for commands this codec does not know (CMPP has no generic NACK).
    pub fn response(&self, version: Version) -> Option<Pdu> {
        let msg_id = self.msg_id.unwrap_or_default();
        match self.header.command_id {
            CommandId::Connect => Some(Pdu::ConnectResp(ConnectResp {
                status: self.connect_status(),
                authenticator_ismg: [0; 16],
                version: version.byte(),
            })),
            CommandId::Submit => Some(Pdu::SubmitResp(SubmitResp {
                msg_id,
                result: self.result_code(),
            })),
            CommandId::Deliver => Some(Pdu::DeliverResp(DeliverResp {
                msg_id,
                result: self.result_code(),
            })),
            CommandId::Cancel => Some(Pdu::CancelResp(CancelResp { success_id: 1 })),
            _ => None,
        }
    }
}

/// A value that cannot be encoded strictly for the link's version. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field value longer than its wire width.
    #[error("{field} is {len} bytes, the field holds {max} in {version}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The value's length.
        len: usize,
        /// The field width in this version.
        max: usize,
        /// The link's version.
        version: Version,
    },
    /// A 3.0-only field (terminal types, LinkID) set on a 2.0 link.
    #[error("{field} does not exist in {version} and must be left empty")]
    NotInVersion {
        /// The field.
        field: &'static str,
        /// The link's version.
        version: Version,
    },
    /// A status/result value larger than the 2.0 one-byte field.
    #[error("{field} = {value} does not fit the one-byte field of {version}")]
    ValueTooLarge {
        /// The field.
        field: &'static str,
        /// The value.
        value: u32,
        /// The link's version.
        version: Version,
    },
    /// A SUBMIT destination list outside 1..=100.
    #[error("a SUBMIT needs 1 to 100 destination terminals, got {0}")]
    DestCount(usize),
}

impl From<super::octets::Short> for DecodeErrorKind {
    fn from(s: super::octets::Short) -> Self {
        Self::Truncated {
            field: s.field,
            offset: s.offset,
            needed: s.needed,
        }
    }
}
