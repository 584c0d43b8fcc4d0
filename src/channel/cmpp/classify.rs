//! What a SUBMIT_RESP Result means for the message.
//!
//! CMPP 2.0 §7.4.3.2 / 3.0 §7.4.3.2: 0 success, 1 message structure error, 2 command word
//! error, 3 duplicate sequence, 4 message length error, 5 fee code error, 6 content too long,
//! 7 service code error, 8 flow control, 9 other (2.0) / fee terminal not served (3.0),
//! 10–13 Src_Id / Msg_src / Fee_terminal_Id / Dest_terminal_Id errors (3.0).
//!
//! - 8 (flow control) is the ISMG's throttle: the same AIMD as SMPP's ESME_RTHROTTLED.
//! - 3 (duplicate sequence), 2.0's 9 ("other error") and unknown codes are retried later
//!   with backoff, bounded by the retry policy: they say nothing about the message, and giving
//!   up on a message we could have delivered is worse than one more attempt. In 3.0, 9 names
//!   the message's fee terminal, so it fails like the other field errors.
//! - The rest describe the message itself (its fields, length, numbers, fees) and fail the
//!   same way every time: the message fails (`REJECTD`).
//! - Success with Msg_Id 0 is retried: a zero id can never be matched by a status report.

use sluice_protocols::cmpp::{ResultCode, Version};

use crate::channel::egress::Disposition;

/// Classifies a SUBMIT_RESP `result` (on a `version` link) with its Msg_Id written as
/// decimal digits.
#[must_use]
pub fn classify(result: u32, center_id: &str, version: Version) -> Disposition {
    use ResultCode as R;
    match ResultCode::from_raw(result) {
        R::Success if center_id.is_empty() || center_id == "0" => Disposition::Temporary,
        R::Success => Disposition::Accepted,
        R::FlowControl => Disposition::Throttled,
        R::FeeTerminalNotServed if version == Version::V30 => Disposition::Permanent,
        R::DuplicateSequence | R::FeeTerminalNotServed | R::Other(_) => Disposition::Temporary,
        R::MessageStructureError
        | R::CommandWordError
        | R::MessageLengthError
        | R::FeeCodeError
        | R::ContentTooLong
        | R::ServiceCodeError
        | R::SrcIdError
        | R::MsgSrcError
        | R::FeeTerminalIdError
        | R::DestTerminalIdError => Disposition::Permanent,
    }
}

/// A Result for logs and the client: `CMPP result 8 (flow control)`.
#[must_use]
pub fn describe(result: u32) -> String {
    match ResultCode::from_raw(result).label() {
        Some(label) => format!("CMPP result {result} ({label})"),
        None => format!("CMPP result {result}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let v2 = Version::V20;
        assert_eq!(
            classify(0, "6917529027641081857", v2),
            Disposition::Accepted
        );
        assert_eq!(classify(0, "0", v2), Disposition::Temporary);
        assert_eq!(classify(8, "", v2), Disposition::Throttled);
        assert_eq!(classify(3, "", v2), Disposition::Temporary);
        assert_eq!(
            classify(9, "", v2),
            Disposition::Temporary,
            "2.0: other error"
        );
        assert_eq!(
            classify(9, "", Version::V30),
            Disposition::Permanent,
            "3.0: fee terminal"
        );
        assert_eq!(classify(77, "", v2), Disposition::Temporary);
        for permanent in [1, 2, 4, 5, 6, 7, 10, 11, 12, 13] {
            assert_eq!(
                classify(permanent, "", v2),
                Disposition::Permanent,
                "{permanent}"
            );
        }
        assert_eq!(describe(8), "CMPP result 8 (flow control)");
        assert_eq!(describe(200), "CMPP result 200");
    }
}
