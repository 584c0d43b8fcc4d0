//! What a submit_sm_resp status means for the message: go on, slow down, retry later, or
//! give up.
//!
//! The split follows what operators' SMSCs mean by the codes (and what Kannel does in
//! `smpp_status_to_smscconn_failure_reason`): throttling and a full queue are flow control;
//! system errors and "temporary app error" are transient; anything about the message's own
//! content or addresses will fail the same way every time. Unknown codes are treated as
//! temporary, because giving up on a message we could have delivered is worse than one more
//! attempt bounded by the retry policy.

use sluice_protocols::smpp::CommandStatus;

pub use crate::channel::egress::Disposition;

/// Classifies a submit_sm_resp `command_status`.
#[must_use]
pub const fn classify(status: CommandStatus) -> Disposition {
    use CommandStatus as S;
    match status {
        S::EsmeRok => Disposition::Accepted,
        S::EsmeRthrottled | S::EsmeRmsgqful => Disposition::Throttled,
        S::EsmeRsyserr
        | S::EsmeRxTAppn
        | S::EsmeRdeliveryfailure
        | S::EsmeRunknownerr
        | S::EsmeRinvbndsts
        | S::EsmeRsubmitfail
        | S::Other(_) => Disposition::Temporary,
        S::EsmeRinvmsglen
        | S::EsmeRinvcmdlen
        | S::EsmeRinvcmdid
        | S::EsmeRinvsrcadr
        | S::EsmeRinvdstadr
        | S::EsmeRinvesmclass
        | S::EsmeRinvsrcton
        | S::EsmeRinvsrcnpi
        | S::EsmeRinvdstton
        | S::EsmeRinvdstnpi
        | S::EsmeRinvdcs
        | S::EsmeRxPAppn
        | S::EsmeRxRAppn
        | S::EsmeRinvtlvstream
        | S::EsmeRtlvnotallwd
        | S::EsmeRinvtlvlen
        | S::EsmeRmissingtlv
        | S::EsmeRinvtlvval
        | S::EsmeRinvsertyp
        | S::EsmeRsertypunauth
        | S::EsmeRprohibited
        | S::EsmeRsertypunavail
        | S::EsmeRsertypdenied
        | S::EsmeRinvsched
        | S::EsmeRinvexpiry
        | S::EsmeRinvprtflg
        | S::EsmeRinvregdlvflg
        | S::EsmeRinvdftmsgid
        | S::EsmeRinvrepflag => Disposition::Permanent,
        // Codes that make no sense for submit_sm (bind, cancel, broadcast …): a center that
        // sends them is confused; try again later rather than drop the message.
        _ => Disposition::Temporary,
    }
}

/// Classifies a whole submit response: like [`classify`], except that an ESME_ROK answer
/// without a message_id is [`Disposition::Temporary`]. Without a center id the receipt can
/// never be matched (and indexing the empty id would make every such message collide), so
/// the message is better sent again than marked accepted.
#[must_use]
pub const fn classify_response(status: CommandStatus, message_id: &[u8]) -> Disposition {
    match classify(status) {
        Disposition::Accepted if message_id.is_empty() => Disposition::Temporary,
        d => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_without_message_id_is_temporary() {
        assert_eq!(
            classify_response(CommandStatus::EsmeRok, b""),
            Disposition::Temporary
        );
        assert_eq!(
            classify_response(CommandStatus::EsmeRok, b"1A"),
            Disposition::Accepted
        );
        assert_eq!(
            classify_response(CommandStatus::from_u32(0x0B), b""),
            Disposition::Permanent
        );
    }

    #[test]
    fn classes() {
        assert_eq!(classify(CommandStatus::EsmeRok), Disposition::Accepted);
        assert_eq!(
            classify(CommandStatus::from_u32(0x58)),
            Disposition::Throttled
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x14)),
            Disposition::Throttled
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x08)),
            Disposition::Temporary
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x0B)),
            Disposition::Permanent
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x0A)),
            Disposition::Permanent
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x01)),
            Disposition::Permanent
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x0400)),
            Disposition::Temporary
        );
        assert_eq!(
            classify(CommandStatus::from_u32(0x0D)),
            Disposition::Temporary
        );
    }
}
