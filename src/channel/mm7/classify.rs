//! What an MMSC's answer to a SubmitReq means for each recipient in it: go on, slow down,
//! retry later, or give up.
//!
//! The status the worker sees is a `u32` in one of two ranges:
//! - `1000..=4999`: the MM7 StatusCode of a SubmitRsp, an RSErrorRsp or a SOAP Fault's
//!   detail (a Fault without one counts as 2000 for `Client` faults and 3000 otherwise);
//! - [`HTTP_BASE`]` + code` (`10503`, …): an HTTP answer that carries no MM7 status, or one
//!   whose HTTP status alone decides (429 and 503 are flow control whatever the body says).
//!
//! | answer | disposition |
//! |---|---|
//! | 1000, 1100 with a MessageID | accepted |
//! | 1000, 1100 without a MessageID | temporary (no id to correlate reports with) |
//! | 4005, 4006 (service error, service unavailable) | throttled: AIMD halves the rate |
//! | 3000, 3001, other 3xxx but 3002–3004 | temporary: retried with backoff |
//! | 2xxx, 3002–3004, other 4xxx | permanent: the message fails `REJECTD` |
//! | HTTP 429, 503 | throttled |
//! | HTTP 401, 403, 404, 407, 408 without an MM7 answer | temporary (the channel's set-up, not the message) |
//! | other HTTP 4xx without an MM7 answer | permanent |
//! | HTTP 5xx, or 2xx without an MM7 answer | temporary |
//! | no answer (connect, reset, timeout) | the worker re-sends the part, then retries |
//!
//! The MM7 rows are `sluice_protocols::mm7::status`'s table (accept / retry / fail); of the
//! codes it retries, the service errors are the MMSC saying it is overloaded, so they slow
//! the channel down instead of only waiting.

use sluice_protocols::mm7::status::{self, StatusClass};

pub use crate::channel::egress::Disposition;

/// Statuses at and above this are HTTP status codes (`HTTP_BASE + 503`).
pub const HTTP_BASE: u32 = 10_000;

/// Classifies one recipient's answer: `status` as described in the module doc, `center_id`
/// the key its delivery reports will come back under (empty when the MMSC gave no
/// MessageID).
#[must_use]
pub fn classify(status: u32, center_id: &str) -> Disposition {
    if status >= HTTP_BASE {
        return http(status - HTTP_BASE);
    }
    let Ok(code) = u16::try_from(status) else {
        return Disposition::Permanent;
    };
    match status::disposition(code) {
        status::Disposition::Accept if center_id.is_empty() => Disposition::Temporary,
        status::Disposition::Accept => Disposition::Accepted,
        status::Disposition::Retry if status::class(code) == StatusClass::ServiceError => {
            Disposition::Throttled
        }
        status::Disposition::Retry => Disposition::Temporary,
        status::Disposition::Fail => Disposition::Permanent,
    }
}

/// An HTTP status that decides alone (see the module table).
const fn http(code: u32) -> Disposition {
    match code {
        429 | 503 => Disposition::Throttled,
        401 | 403 | 404 | 407 | 408 => Disposition::Temporary,
        400..=499 => Disposition::Permanent,
        _ => Disposition::Temporary,
    }
}

/// A status for logs and the client: `MM7 2002 (Address error)`, `HTTP 503`.
#[must_use]
pub fn status_text(status: u32) -> String {
    if status >= HTTP_BASE {
        return format!("HTTP {}", status - HTTP_BASE);
    }
    match name(status) {
        Some(n) => format!("MM7 {status} ({n})"),
        None => format!("MM7 {status}"),
    }
}

/// TS 23.140 Table 19's names of the request status codes.
const fn name(code: u32) -> Option<&'static str> {
    Some(match code {
        1000 => "Success",
        1100 => "Partial success",
        2000 => "Client error",
        2001 => "Operation restricted",
        2002 => "Address error",
        2003 => "Address not found",
        2004 => "Multimedia content refused",
        2005 => "Message ID not found",
        2006 => "LinkedID not found",
        2007 => "Message format corrupt",
        2008 => "Application ID not found",
        2009 => "Reply Application ID not found",
        3000 => "Server error",
        3001 => "Not possible",
        3002 => "Message rejected",
        3003 => "Multiple addresses not supported",
        3004 => "Application addressing not supported",
        4000 => "General service error",
        4001 => "Improper identification",
        4002 => "Unsupported version",
        4003 => "Unsupported operation",
        4004 => "Validation error",
        4005 => "Service error",
        4006 => "Service unavailable",
        4007 => "Service denied",
        4008 => "Application denied",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(classify(1000, "m/1"), Disposition::Accepted);
        assert_eq!(classify(1100, "m/1"), Disposition::Accepted);
        assert_eq!(classify(1000, ""), Disposition::Temporary);
        assert_eq!(classify(4006, "m/1"), Disposition::Throttled);
        assert_eq!(classify(4005, ""), Disposition::Throttled);
        assert_eq!(classify(4001, ""), Disposition::Permanent);
        assert_eq!(classify(3000, ""), Disposition::Temporary);
        assert_eq!(classify(3006, ""), Disposition::Temporary);
        assert_eq!(classify(3003, ""), Disposition::Permanent);
        assert_eq!(classify(2002, ""), Disposition::Permanent);
        assert_eq!(classify(999, ""), Disposition::Permanent);
        assert_eq!(classify(HTTP_BASE + 503, ""), Disposition::Throttled);
        assert_eq!(classify(HTTP_BASE + 429, ""), Disposition::Throttled);
        assert_eq!(classify(HTTP_BASE + 500, ""), Disposition::Temporary);
        assert_eq!(classify(HTTP_BASE + 401, ""), Disposition::Temporary);
        assert_eq!(classify(HTTP_BASE + 413, ""), Disposition::Permanent);
        assert_eq!(classify(HTTP_BASE + 200, ""), Disposition::Temporary);
    }

    #[test]
    fn texts_name_the_code() {
        assert_eq!(status_text(2002), "MM7 2002 (Address error)");
        assert_eq!(status_text(3006), "MM7 3006");
        assert_eq!(status_text(HTTP_BASE + 503), "HTTP 503");
    }
}
