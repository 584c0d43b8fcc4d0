//! Lexer for condition expressions: text → tokens with byte offsets.
//!
//! Keywords (`and`, `or`, `not`, `in`) are case-insensitive. Strings use double or single
//! quotes with `\"`, `\'` and `\\` escapes. Numbers are decimal, optionally negative and
//! fractional. Every token carries the byte offset where it starts so errors can name the
//! column.

use super::ParseError;

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    And,
    Or,
    Not,
    In,
    Eof,
}

impl Tok {
    /// How the token is shown in "found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Ident(s) => format!("identifier `{s}`"),
            Self::Str(s) => format!("string {s:?}"),
            Self::Num(n) => format!("number {n}"),
            Self::Eq => "`=`".into(),
            Self::Ne => "`!=`".into(),
            Self::Lt => "`<`".into(),
            Self::Le => "`<=`".into(),
            Self::Gt => "`>`".into(),
            Self::Ge => "`>=`".into(),
            Self::LParen => "`(`".into(),
            Self::RParen => "`)`".into(),
            Self::LBracket => "`[`".into(),
            Self::RBracket => "`]`".into(),
            Self::Comma => "`,`".into(),
            Self::And => "`and`".into(),
            Self::Or => "`or`".into(),
            Self::Not => "`not`".into(),
            Self::In => "`in`".into(),
            Self::Eof => "end of input".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub offset: usize,
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
///
/// # Errors
/// [`ParseError`] at the first character that starts no token, or an unterminated string.
pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let simple = |t: Tok, n: usize| (t, n);
        let (tok, len) = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => simple(Tok::LParen, 1),
            b')' => simple(Tok::RParen, 1),
            b'[' => simple(Tok::LBracket, 1),
            b']' => simple(Tok::RBracket, 1),
            b',' => simple(Tok::Comma, 1),
            b'=' if bytes.get(i + 1) == Some(&b'=') => simple(Tok::Eq, 2),
            b'=' => simple(Tok::Eq, 1),
            b'!' if bytes.get(i + 1) == Some(&b'=') => simple(Tok::Ne, 2),
            b'<' if bytes.get(i + 1) == Some(&b'=') => simple(Tok::Le, 2),
            b'<' if bytes.get(i + 1) == Some(&b'>') => simple(Tok::Ne, 2),
            b'<' => simple(Tok::Lt, 1),
            b'>' if bytes.get(i + 1) == Some(&b'=') => simple(Tok::Ge, 2),
            b'>' => simple(Tok::Gt, 1),
            b'"' | b'\'' => {
                let (s, n) = lex_string(src, i)?;
                (Tok::Str(s), n)
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                    j += 1;
                }
                let text = &src[i..j];
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => (Tok::Num(n), j - i),
                    _ => return Err(ParseError::at(src, i, "a number", &format!("`{text}`"))),
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let mut j = i;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || bytes[j] == b'_'
                        || bytes[j] >= 0x80
                        // `attrs.percent`: dotted names address event attributes in
                        // trigger conditions; a subscriber column never has a dot.
                        || (bytes[j] == b'.' && j > i))
                {
                    j += 1;
                }
                let word = &src[i..j];
                let tok = match word.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "in" => Tok::In,
                    _ => Tok::Ident(word.to_owned()),
                };
                (tok, j - i)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ParseError::at(src, i, "a token", &format!("`{ch}`")));
            }
        };
        out.push(Token { tok, offset: start });
        i += len;
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: src.len(),
    });
    Ok(out)
}

/// Lexes a quoted string starting at byte `start`; returns the value and byte length.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\'' | '\\'))) => out.push(e),
                Some((k2, e)) => {
                    return Err(ParseError::at(
                        src,
                        start + 1 + k2,
                        "an escape (\\\", \\' or \\\\)",
                        &format!("`{e}`"),
                    ));
                }
                None => break,
            },
            c if c == quote => return Ok((out, k + 2)),
            c => out.push(c),
        }
    }
    Err(ParseError::at(
        src,
        src.len(),
        &format!("closing {quote}"),
        "end of input",
    ))
}
