//! Reading a batch body: JSON (`{"messages":[…]}`) or NDJSON (one object per line).
//!
//! Job: turn the request body into validated [`Item`]s, or the first error with the line and
//! field at fault. Nothing is stored here; the caller stores all items or none.
//!
//! - NDJSON is parsed line by line as chunks arrive from the body stream: a bad line fails
//!   the request before the rest is read, and memory holds at most one partial line plus the
//!   validated items.
//! - JSON is collected up to [`BatchLimits::max_body_bytes`] (answering 413 as soon as the
//!   limit is crossed) and then walked element by element with a serde visitor, so each
//!   message is validated while parsing and the count limit stops the walk early.
//! - Line numbers are 1-based: the array index + 1 for JSON, the physical line for NDJSON
//!   (blank lines are skipped but counted).

use std::cell::RefCell;
use std::fmt;

use bytes::BytesMut;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::message::{FieldError, SenderPolicy, Submission, WireMessage, validate};

/// Size limits of one request.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most messages per request (contract: 10 000).
    pub max_messages: usize,
    /// Most body bytes per request.
    pub max_body_bytes: usize,
    /// Longest NDJSON line in bytes.
    pub max_line_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            // 10 000 messages of ~3 KiB each; a request of max-size texts must use NDJSON
            // streams of several requests.
            max_body_bytes: 32 * 1024 * 1024,
            max_line_bytes: 128 * 1024,
        }
    }
}

/// Body format, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: `{"messages":[…]}`.
    Json,
    /// `application/x-ndjson`: one message object per line.
    Ndjson,
}

/// One validated message and where it was in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based line (JSON: array index + 1).
    pub line: usize,
    /// The validated message.
    pub submission: Submission,
}

/// Why a body was refused; each maps to one HTTP status (see `http.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not JSON (400). Line/column point into the body (NDJSON: line of the body, column in it).
    #[error("malformed JSON: {reason}")]
    Malformed {
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// Parser message.
        reason: String,
    },
    /// A message is invalid (422); nothing from the batch is stored.
    #[error("invalid message at line {line}: {error}")]
    Invalid {
        /// 1-based line of the message.
        line: usize,
        /// Field and reason.
        error: FieldError,
    },
    /// More than `max` messages (413).
    #[error("more than {max} messages (line {line})")]
    TooManyMessages {
        /// The limit.
        max: usize,
        /// 1-based line of the first message over the limit (NDJSON: physical line).
        line: usize,
    },
    /// Body or line larger than allowed (413).
    #[error("{what} larger than {max} bytes")]
    TooLarge {
        /// `body` or `line`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The body stream failed (client went away, bad chunking) (400).
    #[error("reading body: {0}")]
    Body(String),
    /// No messages at all (422, field `messages`).
    #[error("empty batch")]
    Empty,
}

/// Reads and validates a whole batch from a body stream.
///
/// # Errors
/// The first problem found, see [`BatchError`].
pub async fn read<S, E>(
    body: S,
    format: Format,
    limits: BatchLimits,
    senders: &SenderPolicy,
) -> Result<Vec<Item>, BatchError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let items = match format {
        Format::Ndjson => read_ndjson(body, limits, senders).await?,
        Format::Json => {
            let bytes = collect(body, limits.max_body_bytes).await?;
            parse_json(&bytes, limits, senders)?
        }
    };
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(items)
}

async fn collect<S, E>(mut body: S, max: usize) -> Result<BytesMut, BatchError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BatchError::Body(e.to_string()))?;
        if buf.len() + chunk.len() > max {
            return Err(BatchError::TooLarge { what: "body", max });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn read_ndjson<S, E>(
    mut body: S,
    limits: BatchLimits,
    senders: &SenderPolicy,
) -> Result<Vec<Item>, BatchError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let mut parser = NdjsonParser::new(limits, senders);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BatchError::Body(e.to_string()))?;
        parser.push(&chunk)?;
    }
    parser.finish()
}

/// Incremental NDJSON parser: feed chunks with [`NdjsonParser::push`], then
/// [`NdjsonParser::finish`]. Kept separate from the stream so it is testable with any split.
struct NdjsonParser<'a> {
    limits: BatchLimits,
    senders: &'a SenderPolicy,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    /// Line number of the first line in `buf`.
    line: usize,
    total: usize,
    items: Vec<Item>,
}

impl<'a> NdjsonParser<'a> {
    fn new(limits: BatchLimits, senders: &'a SenderPolicy) -> Self {
        Self {
            limits,
            senders,
            buf: BytesMut::new(),
            scanned: 0,
            line: 1,
            total: 0,
            items: Vec::new(),
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), BatchError> {
        self.total += chunk.len();
        if self.total > self.limits.max_body_bytes {
            return Err(BatchError::TooLarge {
                what: "body",
                max: self.limits.max_body_bytes,
            });
        }
        self.buf.extend_from_slice(chunk);
        while let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + pos;
            let line = self.buf.split_to(end + 1);
            self.scanned = 0;
            self.take_line(&line[..end])?;
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.limits.max_line_bytes {
            return Err(BatchError::TooLarge {
                what: "line",
                max: self.limits.max_line_bytes,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Item>, BatchError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.take_line(&rest)?;
        }
        Ok(self.items)
    }

    fn take_line(&mut self, raw: &[u8]) -> Result<(), BatchError> {
        let line_no = self.line;
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if self.items.len() == self.limits.max_messages {
            return Err(BatchError::TooManyMessages {
                max: self.limits.max_messages,
                line: line_no,
            });
        }
        let mut de = serde_json::Deserializer::from_slice(raw);
        // Parsed without tracking the path (an allocation per field); a line that fails is
        // parsed again with it, so its error names the field.
        let wire = match WireMessage::deserialize(&mut de) {
            Ok(wire) => wire,
            Err(_) => {
                let mut de = serde_json::Deserializer::from_slice(raw);
                serde_path_to_error::deserialize::<_, WireMessage>(&mut de).map_err(|e| {
                    json_error(e.path().to_string(), e.into_inner(), Some(line_no), line_no)
                })?
            }
        };
        de.end()
            .map_err(|e| json_error(String::new(), e, Some(line_no), line_no))?;
        let submission = validate(wire, self.senders).map_err(|error| BatchError::Invalid {
            line: line_no,
            error,
        })?;
        self.items.push(Item {
            line: line_no,
            submission,
        });
        Ok(())
    }
}

/// Classifies a serde_json error: syntax/EOF → 400 with position; data → 422 with field.
///
/// `body_line` is the body line for 400s (NDJSON: the physical line, since serde_json counts
/// within the line); `None` keeps serde_json's own line (JSON mode).
fn json_error(
    path: String,
    e: serde_json::Error,
    body_line: Option<usize>,
    msg_line: usize,
) -> BatchError {
    let reason = strip_position(&e);
    match e.classify() {
        serde_json::error::Category::Data => BatchError::Invalid {
            line: msg_line,
            error: FieldError {
                field: field_name(&path, &reason),
                reason,
            },
        },
        _ => BatchError::Malformed {
            line: body_line.or((e.line() > 0).then(|| e.line())),
            column: (e.column() > 0).then(|| e.column()),
            reason,
        },
    }
}

/// serde_json appends " at line L column C"; the 4xx body carries those as fields instead.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    s.strip_suffix(&suffix).map(str::to_owned).unwrap_or(s)
}

/// The field a data error is about: the path when it names one, else the field quoted in
/// serde's "unknown field `x`" / "missing field `x`" messages, else `message` (the whole
/// object was the wrong type).
fn field_name(path: &str, reason: &str) -> String {
    if !path.is_empty() && path != "." && path != "?" {
        return path.to_owned();
    }
    for prefix in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = reason.strip_prefix(prefix)
            && let Some(end) = rest.find('`')
        {
            return rest[..end].to_owned();
        }
    }
    "message".to_owned()
}

/// Parses `{"messages":[…]}`, validating each element as it is reached.
fn parse_json(
    body: &[u8],
    limits: BatchLimits,
    senders: &SenderPolicy,
) -> Result<Vec<Item>, BatchError> {
    // Parsed without tracking paths first (an allocation per field of every message); a
    // body that fails on a serde error is parsed again with them, so its error names the
    // field. The same input fails at the same place both times.
    let parse = |track_paths: bool| {
        let failure = RefCell::new(None);
        let ctx = Ctx {
            limits,
            senders,
            failure: &failure,
            track_paths,
            // serde_json gives no length for an array: about one message per 128 bytes
            // saves the doublings of a large batch (each a copy into fresh pages).
            capacity: (body.len() / 128).min(limits.max_messages),
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        let result = EnvelopeSeed(&ctx)
            .deserialize(&mut de)
            .and_then(|items| de.end().map(|()| items));
        result.map_err(|e| (failure.into_inner(), e))
    };
    match parse(false) {
        Ok(items) => Ok(items),
        Err((Some(failure), _)) => Err(failure),
        Err((None, _)) => match parse(true) {
            Ok(items) => Ok(items),
            Err((failure, e)) => {
                Err(failure.unwrap_or_else(|| json_error(String::new(), e, None, 0)))
            }
        },
    }
    .map_err(|e| match e {
        // A data error outside any message (e.g. the envelope is an array) names `messages`.
        BatchError::Invalid { line: 0, error } => BatchError::Invalid {
            line: 0,
            error: FieldError {
                field: if error.field == "message" {
                    "messages".into()
                } else {
                    error.field
                },
                reason: error.reason,
            },
        },
        other => other,
    })
}

struct Ctx<'a> {
    limits: BatchLimits,
    senders: &'a SenderPolicy,
    /// The precise error; serde only carries a string through its error type.
    failure: &'a RefCell<Option<BatchError>>,
    /// Whether messages are parsed with their paths tracked (`MessageSeed`).
    track_paths: bool,
    /// Messages to make room for at the start.
    capacity: usize,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&self, e: BatchError) -> E {
        let msg = e.to_string();
        *self.failure.borrow_mut() = Some(e);
        E::custom(msg)
    }

    /// A fault in the `{"messages": [...]}` envelope itself (line 0: before any message).
    fn envelope<E: de::Error>(&self, field: impl Into<String>, reason: &str) -> E {
        self.fail(BatchError::Invalid {
            line: 0,
            error: FieldError {
                field: field.into(),
                reason: reason.into(),
            },
        })
    }
}

struct EnvelopeSeed<'c, 'a>(&'c Ctx<'a>);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_, '_> {
    type Value = Vec<Item>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_, '_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {\"messages\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "messages" {
                return Err(self
                    .0
                    .envelope(key.into_owned(), "unknown field; expected `messages`"));
            }
            if items.is_some() {
                return Err(self.0.envelope("messages", "duplicate field"));
            }
            items = Some(map.next_value_seed(MessagesSeed(self.0))?);
        }
        items.ok_or_else(|| self.0.envelope("messages", "missing"))
    }
}

struct MessagesSeed<'c, 'a>(&'c Ctx<'a>);

impl<'de> DeserializeSeed<'de> for MessagesSeed<'_, '_> {
    type Value = Vec<Item>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MessagesSeed<'_, '_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of message objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.0;
        let mut items = Vec::with_capacity(
            seq.size_hint()
                .unwrap_or(ctx.capacity)
                .min(ctx.limits.max_messages),
        );
        loop {
            let line = items.len() + 1;
            if items.len() == ctx.limits.max_messages {
                // One more element present → too many; the array ending here is fine.
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(ctx.fail(BatchError::TooManyMessages {
                        max: ctx.limits.max_messages,
                        line,
                    }));
                }
                return Ok(items);
            }
            let Some(wire) = seq.next_element_seed(MessageSeed { ctx, line })? else {
                return Ok(items);
            };
            let submission = validate(wire, ctx.senders)
                .map_err(|error| ctx.fail::<A::Error>(BatchError::Invalid { line, error }))?;
            items.push(Item { line, submission });
        }
    }
}

/// Deserializes one message; with `track_paths`, tracking the path, so a type error names
/// its field.
struct MessageSeed<'c, 'a> {
    ctx: &'c Ctx<'a>,
    line: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, '_> {
    type Value = WireMessage;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if !self.ctx.track_paths {
            return WireMessage::deserialize(d);
        }
        serde_path_to_error::deserialize(d).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let reason = inner.to_string();
            // Only data errors reach here as custom messages from serde's derive; syntax
            // errors surface from serde_json itself and are classified by the caller, so
            // only record a failure when the message is about the data.
            if !looks_like_syntax(&reason) {
                *self.ctx.failure.borrow_mut() = Some(BatchError::Invalid {
                    line: self.line,
                    error: FieldError {
                        field: field_name(&path, &reason),
                        reason,
                    },
                });
            }
            inner
        })
    }
}

/// serde_json's syntax messages (from `ErrorCode`'s Display) versus serde data messages.
fn looks_like_syntax(reason: &str) -> bool {
    const SYNTAX: &[&str] = &[
        "EOF while parsing",
        "expected",
        "trailing",
        "key must be a string",
        "invalid escape",
        "invalid number",
        "number out of range",
        "invalid unicode code point",
        "control character",
        "lone leading surrogate",
        "unexpected end of hex escape",
        "recursion limit exceeded",
    ];
    SYNTAX.iter().any(|s| reason.starts_with(s)) && !reason.starts_with("expected one of")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senders() -> SenderPolicy {
        SenderPolicy {
            allowed: vec![],
            default: Some("10086".into()),
            callbacks: false,
        }
    }

    fn json(body: &str) -> Result<Vec<Item>, BatchError> {
        parse_json(body.as_bytes(), BatchLimits::default(), &senders())
    }

    fn ndjson_split(body: &str, split: usize) -> Result<Vec<Item>, BatchError> {
        let s = senders();
        let mut p = NdjsonParser::new(BatchLimits::default(), &s);
        for chunk in body.as_bytes().chunks(split.max(1)) {
            p.push(chunk)?;
        }
        p.finish()
    }

    #[test]
    fn json_batch_lines_are_indexes() {
        let items = json(r#"{"messages":[{"to":"13800138000","text":"a"},{"to":"+8613800138001","text":"b","lane":"otp"}]}"#)
            .expect("valid");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].line, 2);
        assert_eq!(items[1].submission.to, "+8613800138001");
    }

    #[test]
    fn json_invalid_field_names_line_and_field() {
        let e = json(r#"{"messages":[{"to":"13800138000","text":"a"},{"to":"12ab","text":"b"}]}"#)
            .expect_err("invalid");
        assert_eq!(
            e,
            BatchError::Invalid {
                line: 2,
                error: FieldError {
                    field: "to".into(),
                    reason: "not a phone number: \"12ab\"".into()
                }
            }
        );
    }

    #[test]
    fn json_type_errors_name_the_field() {
        let e = json(r#"{"messages":[{"to":"13800138000","text":5}]}"#).expect_err("type");
        assert!(
            matches!(&e, BatchError::Invalid { line: 1, error } if error.field == "text"),
            "{e:?}"
        );
        let e = json(r#"{"messages":[{"to":"13800138000","text":"x","lane":"vip"}]}"#)
            .expect_err("enum");
        assert!(
            matches!(&e, BatchError::Invalid { line: 1, error } if error.field == "lane"),
            "{e:?}"
        );
        let e = json(r#"{"messages":[{"to":"13800138000","txt":"x"}]}"#).expect_err("unknown");
        assert!(
            matches!(&e, BatchError::Invalid { line: 1, error } if error.field == "txt"),
            "{e:?}"
        );
        let e = json(r#"{"messages":[{"text":"x"}]}"#).expect_err("missing");
        assert!(
            matches!(&e, BatchError::Invalid { line: 1, error } if error.field == "to"),
            "{e:?}"
        );
        let e = json(r#"{"messages":[{"to":"13800138000","text":"x","tags":{"a":1}}]}"#)
            .expect_err("tag");
        assert!(
            matches!(&e, BatchError::Invalid { line: 1, error } if error.field == "tags.a"),
            "{e:?}"
        );
        let e = json(r#"{"msgs":[]}"#).expect_err("envelope");
        assert!(
            matches!(&e, BatchError::Invalid { line: 0, error } if error.field == "msgs"),
            "{e:?}"
        );
        let e = json(r#"[1,2]"#).expect_err("not an object");
        assert!(
            matches!(&e, BatchError::Invalid { line: 0, error } if error.field == "messages"),
            "{e:?}"
        );
    }

    #[test]
    fn wap_push_errors_name_the_nested_field() {
        let ok = r#"{"to":"13800138000","kind":"wap_push","si":{"href":"http://www.sluice.com/a","text":"hi"}}"#;
        let cases = [
            (
                r#"{"to":"13800138000","kind":"wap_push","si":{"href":5}}"#,
                "si.href",
            ),
            (
                r#"{"to":"13800138000","kind":"wap_push","si":{"url":"http://a.com/"}}"#,
                "si.url",
            ),
            (
                r#"{"to":"13800138000","kind":"wap_push","si":{"href":"http://a.com/","action":"loud"}}"#,
                "si.action",
            ),
            (
                r#"{"to":"13800138000","kind":"wap_push","sl":{"href":"mailto:x@y.z"}}"#,
                "sl.href",
            ),
            (
                r#"{"to":"13800138000","kind":"wap_push","si":"http://a.com/"}"#,
                "si",
            ),
        ];
        for (bad, field) in cases {
            let body = format!(r#"{{"messages":[{ok},{bad}]}}"#);
            let e = json(&body).expect_err(bad);
            assert!(
                matches!(&e, BatchError::Invalid { line: 2, error } if error.field == field),
                "{bad}: {e:?}"
            );
        }
        let items = json(&format!(r#"{{"messages":[{ok}]}}"#)).expect("valid");
        assert_eq!(items[0].submission.kind, crate::store::MessageKind::WapPush);
    }

    #[test]
    fn json_syntax_error_has_position() {
        let e =
            json("{\"messages\":[\n{\"to\":\"1380013800\" \"text\":\"x\"}]}").expect_err("syntax");
        assert!(
            matches!(
                e,
                BatchError::Malformed {
                    line: Some(2),
                    column: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = json("{\"messages\":[").expect_err("eof");
        assert!(matches!(e, BatchError::Malformed { .. }), "{e:?}");
        let e = json(r#"{"messages":[]} x"#).expect_err("trailing");
        assert!(matches!(e, BatchError::Malformed { .. }), "{e:?}");
    }

    #[test]
    fn json_count_limit() {
        let one = r#"{"to":"13800138000","text":"a"}"#;
        let limits = BatchLimits {
            max_messages: 3,
            ..BatchLimits::default()
        };
        let ok = format!("{{\"messages\":[{}]}}", [one; 3].join(","));
        assert_eq!(
            parse_json(ok.as_bytes(), limits, &senders())
                .expect("3 ok")
                .len(),
            3
        );
        let too_many = format!("{{\"messages\":[{}]}}", [one; 4].join(","));
        assert_eq!(
            parse_json(too_many.as_bytes(), limits, &senders()),
            Err(BatchError::TooManyMessages { max: 3, line: 4 })
        );
    }

    #[test]
    fn ndjson_any_split_gives_same_items() {
        let body = "{\"to\":\"13800138000\",\"text\":\"a\"}\r\n\n{\"to\":\"13800138001\",\"text\":\"b\"}\n{\"to\":\"13800138002\",\"text\":\"c\"}";
        let whole = ndjson_split(body, body.len()).expect("valid");
        assert_eq!(
            whole.iter().map(|i| i.line).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        for split in 1..body.len() {
            assert_eq!(
                ndjson_split(body, split).expect("valid"),
                whole,
                "split {split}"
            );
        }
    }

    #[test]
    fn ndjson_errors_carry_the_line() {
        let body = "{\"to\":\"13800138000\",\"text\":\"a\"}\n{\"to\":\"x\",\"text\":\"b\"}\n";
        let e = ndjson_split(body, 7).expect_err("invalid");
        assert!(
            matches!(&e, BatchError::Invalid { line: 2, error } if error.field == "to"),
            "{e:?}"
        );
        let body = "{\"to\":\"13800138000\",\"text\":\"a\"}\n\n{\"to\":\"13800138000\" oops}\n";
        let e = ndjson_split(body, 5).expect_err("syntax");
        assert!(
            matches!(
                e,
                BatchError::Malformed {
                    line: Some(3),
                    column: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
        let body = "{\"to\":\"13800138000\",\"text\":\"a\"} {}\n";
        let e = ndjson_split(body, 64).expect_err("two objects on a line");
        assert!(
            matches!(e, BatchError::Malformed { line: Some(1), .. }),
            "{e:?}"
        );
        let e = ndjson_split("{\"to\":\"13800138000\",\"text\":1}", 3).expect_err("type");
        assert!(
            matches!(&e, BatchError::Invalid { line: 1, error } if error.field == "text"),
            "{e:?}"
        );
    }

    #[test]
    fn ndjson_limits() {
        let s = senders();
        let limits = BatchLimits {
            max_messages: 2,
            max_body_bytes: 1000,
            max_line_bytes: 50,
        };
        let mut p = NdjsonParser::new(limits, &s);
        let line = "{\"to\":\"13800138000\",\"text\":\"a\"}\n";
        p.push(line.as_bytes()).expect("1");
        p.push(line.as_bytes()).expect("2");
        assert_eq!(
            p.push(line.as_bytes()),
            Err(BatchError::TooManyMessages { max: 2, line: 3 })
        );
        let mut p = NdjsonParser::new(limits, &s);
        assert_eq!(
            p.push(&[b' '; 51]),
            Err(BatchError::TooLarge {
                what: "line",
                max: 50
            })
        );
        let mut p = NdjsonParser::new(limits, &s);
        assert_eq!(
            p.push(&[b'\n'; 1001]),
            Err(BatchError::TooLarge {
                what: "body",
                max: 1000
            })
        );
    }

    #[tokio::test]
    async fn read_from_stream_and_empty_batch() {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
            Ok(bytes::Bytes::from_static(
                b"{\"messages\":[{\"to\":\"1380013",
            )),
            Ok(bytes::Bytes::from_static(b"8000\",\"text\":\"a\"}]}")),
        ];
        let items = read(
            futures::stream::iter(chunks),
            Format::Json,
            BatchLimits::default(),
            &senders(),
        )
        .await
        .expect("valid");
        assert_eq!(items.len(), 1);
        let empty: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok(bytes::Bytes::from_static(b"\n\n"))];
        let e = read(
            futures::stream::iter(empty),
            Format::Ndjson,
            BatchLimits::default(),
            &senders(),
        )
        .await
        .expect_err("empty");
        assert_eq!(e, BatchError::Empty);
        let e = read(
            futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
                b' ';
                100
            ]))]),
            Format::Json,
            BatchLimits {
                max_body_bytes: 10,
                ..BatchLimits::default()
            },
            &senders(),
        )
        .await
        .expect_err("too large");
        assert_eq!(
            e,
            BatchError::TooLarge {
                what: "body",
                max: 10
            }
        );
    }

    /// Fuzz cases: `default`, or 1 000 000 with `SLUICE_FUZZ_LONG=1`.
    fn fuzz_cases(default: u32) -> u32 {
        if std::env::var("SLUICE_FUZZ_LONG").is_ok_and(|v| v == "1") {
            1_000_000
        } else {
            default
        }
    }

    /// A valid NDJSON body using every field kind the parser reads.
    const NDJSON_SEED: &str = r#"{"to":"+8613800138000","text":"hi \u00e9 \ud83d\ude00","client_ref":"a1","lane":"otp"}
{"to":"13800138001","binary":"0605040b8423f0","udh":"050003010201","not_before":"2030-01-01T00:00:00Z","tags":{"k":"v"}}
{"to":"13800138002","text":"x","from":"10086","window":"09:00-18:00","expires_at":"2030-01-02T00:00:00+08:00"}
"#;

    #[test]
    fn the_fuzz_seed_is_a_valid_body() {
        let s = senders();
        let mut p = NdjsonParser::new(BatchLimits::default(), &s);
        p.push(NDJSON_SEED.as_bytes()).expect("push");
        let items = p.finish().expect("finish");
        assert_eq!(items.len(), 3, "{items:?}");
    }

    /// Both parsers on `body`, the NDJSON one fed in chunks of `chunk` bytes.
    fn parse_both(body: &[u8], chunk: usize) {
        let s = senders();
        let _ = parse_json(body, BatchLimits::default(), &s);
        let mut p = NdjsonParser::new(BatchLimits::default(), &s);
        for c in body.chunks(chunk.max(1)) {
            if p.push(c).is_err() {
                return;
            }
        }
        let _ = p.finish();
    }

    proptest::proptest! {
        // 100 000 each by default (issue 18): seconds in a debug build.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(fuzz_cases(100_000)))]
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            parse_both(&body, body.len());
        }

        /// Byte edits of a valid body (and of its JSON envelope) reach the field decoders.
        #[test]
        fn parsers_never_panic_on_mutated_lines(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), 0u8..3), 1..8),
            chunk in 1usize..64,
            json in proptest::prelude::any::<bool>(),
        ) {
            let mut body = if json {
                let lines: Vec<&str> = NDJSON_SEED.lines().collect();
                format!("{{\"messages\":[{}]}}", lines.join(",")).into_bytes()
            } else {
                NDJSON_SEED.as_bytes().to_vec()
            };
            for (at, byte, how) in edits {
                let i = at % body.len().max(1);
                match how {
                    0 => { if let Some(b) = body.get_mut(i) { *b = byte; } }
                    1 => body.insert(i, byte),
                    _ => { if i < body.len() { body.remove(i); } }
                }
            }
            parse_both(&body, chunk);
        }
    }
}
