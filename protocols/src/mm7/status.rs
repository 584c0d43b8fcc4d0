//! MM7 request status codes (3GPP TS 23.140, Table 19 "MM7 Request Status Codes") and what a
//! sender does with each: accept, retry later, or fail the message.
//!
//! | Code | Meaning (TS 23.140)                       | Class          | Disposition |
//! |------|-------------------------------------------|----------------|-------------|
//! | 1000 | Success                                   | success        | accept      |
//! | 1100 | Partial success                           | partial        | accept ¹    |
//! | 2000 | Client error                              | client error   | fail        |
//! | 2001 | Operation restricted                      | client error   | fail        |
//! | 2002 | Address error                             | client error   | fail        |
//! | 2003 | Address not found                         | client error   | fail        |
//! | 2004 | Multimedia content refused                | client error   | fail        |
//! | 2005 | Message ID not found                      | client error   | fail        |
//! | 2006 | LinkedID not found                        | client error   | fail        |
//! | 2007 | Message format corrupt                    | client error   | fail        |
//! | 2008 | Application ID not found                  | client error   | fail        |
//! | 2009 | Reply Application ID not found            | client error   | fail        |
//! | 3000 | Server error                              | server error   | retry       |
//! | 3001 | Not possible (server could not do it now) | server error   | retry       |
//! | 3002 | Message rejected                          | server error   | fail        |
//! | 3003 | Multiple addresses not supported          | server error   | fail ²      |
//! | 3004 | Application addressing not supported      | server error   | fail        |
//! | 4000 | General service error                     | service error  | fail        |
//! | 4001 | Improper identification                   | service error  | fail        |
//! | 4002 | Unsupported version                       | service error  | fail        |
//! | 4003 | Unsupported operation                     | service error  | fail        |
//! | 4004 | Validation error                          | service error  | fail        |
//! | 4005 | Service error                             | service error  | retry       |
//! | 4006 | Service unavailable                       | service error  | retry ³     |
//! | 4007 | Service denied                            | service error  | fail        |
//! | 4008 | Application denied                        | service error  | fail        |
//!
//! Codes not in the table are handled as the x000 code of their class, as TS 23.140 asks of a
//! receiver that does not recognise a code: unknown 1xxx accept, 2xxx fail, 3xxx retry (so
//! operator-specific temporary codes such as 3006 are retried), 4xxx fail. Anything outside
//! 1000..=4999 is not an MM7 status and fails.
//!
//! Why: 2xxx say the request itself is wrong (address, content, format), so resending the same
//! bytes cannot succeed. 3000/3001 and 4005/4006 describe the server's state, not the request,
//! and pass with time. 4001–4004/4007/4008 are configuration or contract errors that need a human.
//!
//! ¹ Partial success: the MMSC took the message for some recipients; which ones failed arrive
//!   as per-recipient delivery reports, so the submission itself is not retried.
//! ² The channel should fall back to one recipient per SubmitReq; resending as-is cannot help.
//! ³ Overload: also a signal for the channel's AIMD to reduce its rate.

/// The class of a status code (its thousands digit, with 1100 set apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    PartialSuccess,
    ClientError,
    ServerError,
    ServiceError,
    /// Outside 1000..=4999.
    Invalid,
}

/// What the sender does with a message after this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Accept,
    Retry,
    Fail,
}

/// The class of `code`.
pub fn class(code: u16) -> StatusClass {
    match code {
        1100..=1199 => StatusClass::PartialSuccess,
        1000..=1999 => StatusClass::Success,
        2000..=2999 => StatusClass::ClientError,
        3000..=3999 => StatusClass::ServerError,
        4000..=4999 => StatusClass::ServiceError,
        _ => StatusClass::Invalid,
    }
}

/// What to do after `code` (the module table).
pub fn disposition(code: u16) -> Disposition {
    match code {
        3002..=3004 => Disposition::Fail,
        4005 | 4006 => Disposition::Retry,
        _ => match class(code) {
            StatusClass::Success | StatusClass::PartialSuccess => Disposition::Accept,
            StatusClass::ServerError => Disposition::Retry,
            StatusClass::ClientError | StatusClass::ServiceError | StatusClass::Invalid => {
                Disposition::Fail
            }
        },
    }
}
