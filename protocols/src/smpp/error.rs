//! Typed decode / encode errors, each able to say what to answer the peer.
//!
//! Hot-path errors do not allocate: fields are `&'static str` names and numbers.
//! [`DecodeError::response`] turns a failure into the PDU the SMPP specification expects
//! (generic_nack for framing and unknown ids, the command's own response with an error
//! status otherwise), echoing the sequence number whenever it could be read.

use super::command_id::CommandId;
use super::command_status::CommandStatus;
use super::pdu::{Command, Pdu};

/// The 16-byte header announced a length we refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// `command_length` below the 16-byte header.
    #[error("command_length {length} is below the 16-byte header")]
    TooShort {
        /// The announced length.
        length: u32,
        /// The sequence number read from the header.
        sequence: u32,
    },
    /// `command_length` above the configured maximum.
    #[error("command_length {length} exceeds the maximum {max}")]
    TooLong {
        /// The announced length.
        length: u32,
        /// The configured maximum.
        max: usize,
        /// The sequence number read from the header.
        sequence: u32,
    },
    /// The buffer handed to a decoder does not hold exactly one whole PDU.
    #[error("buffer holds {actual} bytes but command_length says {length}")]
    LengthMismatch {
        /// The announced length.
        length: u32,
        /// Bytes given.
        actual: usize,
    },
}

impl FrameError {
    /// generic_nack with ESME_RINVCMDLEN, echoing the sequence when the header was readable.
    pub fn response(&self) -> Command {
        let sequence = match *self {
            Self::TooShort { sequence, .. } | Self::TooLong { sequence, .. } => sequence,
            Self::LengthMismatch { .. } => 0,
        };
        Command::new(CommandStatus::EsmeRinvcmdlen, sequence, Pdu::GenericNack)
    }
}

/// What was wrong inside a PDU body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body ended inside a mandatory field.
    #[error("body ended inside mandatory field {field}")]
    UnexpectedEnd {
        /// Field name from the specification.
        field: &'static str,
    },
    /// `sm_length` points past the end of the body and no message_payload explains it.
    #[error("sm_length {sm_length} exceeds the {remaining} bytes left")]
    SmLength {
        /// Announced length.
        sm_length: u8,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// A destination in submit_multi had a dest_flag other than 1 or 2.
    #[error("invalid dest_flag {flag}")]
    DestFlag {
        /// The flag read.
        flag: u8,
    },
}

impl BodyError {
    /// The status the specification asks for.
    pub const fn status(self) -> CommandStatus {
        match self {
            Self::UnexpectedEnd { .. } | Self::SmLength { .. } => CommandStatus::EsmeRinvmsglen,
            Self::DestFlag { .. } => CommandStatus::EsmeRinvdestflag,
        }
    }
}

/// A PDU could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame itself is unacceptable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The command id is not one we know.
    #[error("unknown command_id 0x{id:08X}")]
    UnknownCommandId {
        /// The raw id.
        id: u32,
        /// The sequence number from the header.
        sequence: u32,
    },
    /// The body of a known command is malformed.
    #[error("{command_id}: {error}")]
    Body {
        /// The command whose body failed.
        command_id: CommandId,
        /// The sequence number from the header.
        sequence: u32,
        /// What failed.
        error: BodyError,
    },
}

impl DecodeError {
    /// The sequence number, when it could be read.
    pub const fn sequence(&self) -> Option<u32> {
        match *self {
            Self::Frame(FrameError::TooShort { sequence, .. })
            | Self::Frame(FrameError::TooLong { sequence, .. })
            | Self::UnknownCommandId { sequence, .. }
            | Self::Body { sequence, .. } => Some(sequence),
            Self::Frame(_) => None,
        }
    }

    /// What to send back, or `None` when nothing should be sent (a malformed *response*
    /// from the peer is the caller's to handle: it is not answered).
    ///
    /// - bad length → generic_nack ESME_RINVCMDLEN (then close the connection);
    /// - unknown command id → generic_nack ESME_RINVCMDID;
    /// - malformed request body → that request's response (e.g. submit_sm_resp) with
    ///   ESME_RINVMSGLEN / ESME_RINVDESTFLAG and an empty body; generic_nack for requests
    ///   that have no response (outbind, alert_notification).
    pub fn response(&self) -> Option<Command> {
        match *self {
            Self::Frame(f) => Some(f.response()),
            Self::UnknownCommandId { id, sequence } => {
                // A response with an unknown id is not answered either.
                (id & 0x8000_0000 == 0)
                    .then(|| Command::new(CommandStatus::EsmeRinvcmdid, sequence, Pdu::GenericNack))
            }
            Self::Body {
                command_id,
                sequence,
                error,
            } => {
                if command_id.is_response() {
                    return None;
                }
                let pdu = Pdu::empty_response_for(command_id).unwrap_or(Pdu::GenericNack);
                Some(Command::new(error.status(), sequence, pdu))
            }
        }
    }
}

/// A command that cannot be encoded strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A C-octet string contains a NUL byte, which would end it early on the wire.
    #[error("field {field} contains a NUL byte")]
    NulInCString {
        /// Field name.
        field: &'static str,
    },
    /// A field is longer than its length prefix can express.
    #[error("field {field} is {len} bytes, more than {max}")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Actual length.
        len: usize,
        /// Largest encodable.
        max: usize,
    },
}
