//! Subscriber events (the "moments" triggered marketing reacts to): their shape, how a
//! line of input becomes one, and how they are stored.
//!
//! - [`intake`]: validation per line (a bad line is reported as `{line, field, reason}`
//!   and the rest of the batch is unaffected), the durable commit (acknowledged only after
//!   it), deduplication by event id.
//! - [`source`]: the [`source::EventSource`] seam. The HTTP endpoint and the file replay
//!   (`sluice events import`) feed [`intake`]; a message-bus source (a JetStream or Kafka
//!   subject) plugs in the same way and commits its offset after the intake's commit.
//!   Matching ([`crate::triggers`]) reads only the stored `events` table, so no source
//!   knows about triggers and no trigger knows about sources.

pub mod intake;
pub mod source;

use serde_json::{Map, Value};

pub use crate::import::LineError;

/// Largest batch one request or one source batch may carry (lines).
pub const MAX_BATCH_LINES: usize = 10_000;

/// Longest NDJSON line of an event batch, in bytes: an event is a few hundred bytes; the
/// bound keeps one endless line from growing the reader's buffer.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Longest event id and type, in bytes (ids are dedup keys and stored forever).
pub const MAX_ID_BYTES: usize = 128;

/// One subscriber event: `{id, msisdn, type, ts, attrs{…}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    /// The producer's id; a second event with the same id is a duplicate and ignored.
    pub id: String,
    /// Normalised number ([`crate::msisdn::normalize`]).
    pub msisdn: u64,
    /// `roaming_arrival`, `usage_threshold`, `balance_low`, `payment_received`,
    /// `handset_change`, `churn_risk` or any custom name.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (Unix seconds, UTC).
    pub ts: i64,
    /// Free attributes; conditions address them as `attrs.<name>`.
    pub attrs: Map<String, Value>,
}

/// Builds an event from one parsed JSON value; `line` is 1-based, for the error.
///
/// `id` may be a string or an integer, `msisdn` a string or an integer, `ts` RFC 3339 or
/// Unix seconds; `attrs` is optional and must be an object of scalars (strings, numbers,
/// booleans) so every attribute can be compared in a condition.
///
/// # Errors
/// The first bad field as a [`LineError`].
pub fn from_json(line: u64, v: Value) -> Result<Event, LineError> {
    let err = |field: &str, reason: String| LineError {
        line,
        field: field.to_owned(),
        reason,
    };
    let Value::Object(mut o) = v else {
        return Err(err("*", "expected a JSON object".into()));
    };
    let id = match o.remove("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => return Err(err("id", "must be a non-empty string or an integer".into())),
        None => return Err(err("id", "missing".into())),
    };
    if id.len() > MAX_ID_BYTES {
        return Err(err("id", format!("longer than {MAX_ID_BYTES} bytes")));
    }
    let raw = match o.remove("msisdn") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(err("msisdn", "must be a string or an integer".into())),
        None => return Err(err("msisdn", "missing".into())),
    };
    let msisdn = crate::msisdn::normalize(&raw).map_err(|e| err("msisdn", e.to_string()))?;
    let kind = match o.remove("type") {
        Some(Value::String(s)) if valid_type(&s) => s,
        Some(_) => {
            return Err(err(
                "type",
                format!("must be 1–{MAX_ID_BYTES} characters of a–z, 0–9, _ or -"),
            ));
        }
        None => return Err(err("type", "missing".into())),
    };
    let ts = match o.remove("ts") {
        Some(Value::String(s)) => s
            .parse::<jiff::Timestamp>()
            .map_err(|e| err("ts", format!("not an RFC 3339 time: {e}")))?
            .as_second(),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|s| (0..=253_402_300_799).contains(s))
            .ok_or_else(|| {
                err(
                    "ts",
                    "Unix seconds must be an integer in 0..=9999-12-31".into(),
                )
            })?,
        Some(_) => return Err(err("ts", "must be RFC 3339 or Unix seconds".into())),
        None => return Err(err("ts", "missing".into())),
    };
    let attrs = match o.remove("attrs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => {
            if let Some((k, _)) = a
                .iter()
                .find(|(_, v)| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
            {
                return Err(err(
                    &format!("attrs.{k}"),
                    "must be a string, number or boolean".into(),
                ));
            }
            a
        }
        Some(_) => return Err(err("attrs", "must be an object".into())),
    };
    if let Some(k) = o.keys().next() {
        return Err(err(k, "unknown field".into()));
    }
    Ok(Event {
        id,
        msisdn,
        kind,
        ts,
        attrs,
    })
}

fn valid_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parses one NDJSON line (1-based `line`).
///
/// # Errors
/// Malformed JSON or a bad field, as a [`LineError`].
pub fn from_line(line: u64, text: &[u8]) -> Result<Event, LineError> {
    let v: Value = serde_json::from_slice(text).map_err(|e| LineError {
        line,
        field: "*".into(),
        reason: format!("not JSON: {e}"),
    })?;
    from_json(line, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_one_by_one() {
        let ok = from_line(
            1,
            br#"{"id":"e1","msisdn":"+8613800000001","type":"usage_threshold","ts":"2026-12-05T10:00:00Z","attrs":{"percent":85}}"#,
        )
        .expect("valid");
        assert_eq!(ok.msisdn, 13_800_000_001);
        assert_eq!(ok.attrs["percent"], 85);
        let bad = |s: &str| from_line(7, s.as_bytes()).expect_err("bad").field;
        assert_eq!(bad(r#"{"msisdn":"1","type":"a","ts":1}"#), "id");
        assert_eq!(
            bad(r#"{"id":1,"msisdn":"abc","type":"a","ts":1}"#),
            "msisdn"
        );
        assert_eq!(
            bad(r#"{"id":1,"msisdn":"13800000001","type":"A B","ts":1}"#),
            "type"
        );
        assert_eq!(
            bad(r#"{"id":1,"msisdn":"13800000001","type":"a","ts":"x"}"#),
            "ts"
        );
        assert_eq!(
            bad(r#"{"id":1,"msisdn":"13800000001","type":"a","ts":1,"attrs":{"x":[1]}}"#),
            "attrs.x"
        );
        assert_eq!(
            bad(r#"{"id":1,"msisdn":"13800000001","type":"a","ts":1,"y":2}"#),
            "y"
        );
        assert_eq!(bad("{"), "*");
        assert_eq!(from_line(7, b"[]").expect_err("array").line, 7);
    }
}
