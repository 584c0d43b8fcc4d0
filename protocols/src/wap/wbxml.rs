//! WBXML 1.2 writer for the two push content types (WAP-192 WBXML, no string table).
//!
//! Job: the byte-level pieces SI and SL share — document header, inline strings, OPAQUE
//! dates, `mb_u_int32`, and the href URL tokenisation.
//!
//! Wire format of a document: `version 0x02 (1.2)`, `public id` (mb_u_int32; SI 0x05, SL
//! 0x06), `charset` (mb_u_int32 MIBenum; UTF-8 = 106 = 0x6A), `string table length` 0,
//! then the body tokens. This matches Kannel's `simple_binary_output`.
//!
//! Kannel compatibility choices (checked against gw/xml_shared.c and the SI/SL compilers):
//! URL value tokens (`.com/` etc.) are looked up in table order and only the first match is
//! tokenised once; the text before and after it is always written as inline strings, even
//! when empty (`03 00`).

use super::error::WapError;

/// Global token: end of element / attribute list.
pub const END: u8 = 0x01;
/// Global token: inline string follows, NUL-terminated.
pub const STR_I: u8 = 0x03;
/// Global token: opaque data follows, `mb_u_int32` length first.
pub const OPAQUE: u8 = 0xC3;
/// Tag bit: the element has attributes.
pub const TAG_ATTRS: u8 = 0x80;
/// Tag bit: the element has content.
pub const TAG_CONTENT: u8 = 0x40;
/// WBXML version 1.2.
pub const VERSION_1_2: u8 = 0x02;
/// IANA MIBenum of UTF-8.
pub const CHARSET_UTF8: u32 = 106;

/// Appends `value` as a WAP `mb_u_int32` / WSP `uintvar`: 7 bits per octet, most
/// significant group first, continuation bit 0x80 on all but the last octet.
pub fn write_uintvar(out: &mut Vec<u8>, value: u32) {
    let mut groups = [0u8; 5];
    let mut n = 0;
    let mut v = value;
    loop {
        groups[n] = (v & 0x7F) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

/// Writes the document header for `public_id` in UTF-8 with an empty string table.
pub(crate) fn write_header(out: &mut Vec<u8>, public_id: u32) {
    out.push(VERSION_1_2);
    write_uintvar(out, public_id);
    write_uintvar(out, CHARSET_UTF8);
    write_uintvar(out, 0);
}

/// Writes `STR_I text 00`.
///
/// # Errors
/// [`WapError::NulInString`] if `text` contains NUL.
pub(crate) fn write_inline_str(out: &mut Vec<u8>, text: &str) -> Result<(), WapError> {
    if text.contains('\0') {
        return Err(WapError::NulInString);
    }
    out.push(STR_I);
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    Ok(())
}

/// Writes `OPAQUE len data`.
pub(crate) fn write_opaque(out: &mut Vec<u8>, data: &[u8]) {
    out.push(OPAQUE);
    write_uintvar(out, data.len() as u32);
    out.extend_from_slice(data);
}

/// URL value tokens shared by SI (WAP-167 §9.3.3) and SL (WAP-168 §10.3.3), in the order
/// they are looked for.
const URL_VALUES: [(&str, u8); 4] = [
    (".com/", 0x85),
    (".edu/", 0x86),
    (".net/", 0x87),
    (".org/", 0x88),
];

/// Writes an href: the attribute-start token chosen from `prefixes` (first match in slice
/// order; `fallback` when none matches), then the rest of the URL with one URL value token.
///
/// # Errors
/// [`WapError::NulInString`].
pub(crate) fn write_href(
    out: &mut Vec<u8>,
    href: &str,
    prefixes: &[(&str, u8)],
    fallback: u8,
) -> Result<(), WapError> {
    let (token, rest) = prefixes
        .iter()
        .find(|(p, _)| href.starts_with(p))
        .map_or((fallback, href), |(p, t)| (*t, &href[p.len()..]));
    out.push(token);
    match URL_VALUES
        .iter()
        .find_map(|(v, t)| rest.find(v).map(|pos| (pos, *v, *t)))
    {
        Some((pos, v, t)) => {
            write_inline_str(out, &rest[..pos])?;
            out.push(t);
            write_inline_str(out, &rest[pos + v.len()..])
        }
        None => write_inline_str(out, rest),
    }
}

/// A WAP push date (`YYYY-MM-DDThh:mm:ssZ`, UTC), as SI `created` / `si-expires` use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WapDateTime {
    /// The 14 decimal digits `YYYYMMDDhhmmss`.
    digits: [u8; 14],
}

impl WapDateTime {
    /// Parses `YYYY-MM-DDThh:mm:ssZ` and checks the field ranges.
    ///
    /// # Errors
    /// [`WapError::InvalidDate`].
    pub fn parse(s: &str) -> Result<Self, WapError> {
        let bad = || WapError::InvalidDate(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 20 {
            return Err(bad());
        }
        let shape = b"dddd-dd-ddTdd:dd:ddZ";
        let mut digits = [0u8; 14];
        let mut n = 0;
        for (&c, &expect) in b.iter().zip(shape) {
            if expect == b'd' {
                if !c.is_ascii_digit() {
                    return Err(bad());
                }
                digits[n] = c - b'0';
                n += 1;
            } else if c != expect {
                return Err(bad());
            }
        }
        let num = |i: usize| digits[i] * 10 + digits[i + 1];
        let (month, day, hour, minute, second) = (num(4), num(6), num(8), num(10), num(12));
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad());
        }
        Ok(Self { digits })
    }

    /// Builds a date from UTC components (e.g. from `jiff`), with the same range checks as
    /// [`Self::parse`].
    ///
    /// # Errors
    /// [`WapError::InvalidDate`] for a year above 9999 or out-of-range fields.
    pub fn from_parts(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Result<Self, WapError> {
        Self::parse(&format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
        ))
    }

    /// The WBXML form (WAP-167 §9.2.2): digits packed two per octet (BCD, first digit in the
    /// high nibble), then trailing zero octets removed — `1999-06-30T00:00:00Z` becomes
    /// `19 99 06 30`.
    #[must_use]
    pub fn packed(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self
            .digits
            .chunks_exact(2)
            .map(|p| p[0] << 4 | p[1])
            .collect();
        while out.last() == Some(&0) {
            out.pop();
        }
        out
    }

    /// Back to `YYYY-MM-DDThh:mm:ssZ`.
    #[must_use]
    pub fn to_iso(&self) -> String {
        let d: Vec<char> = self.digits.iter().map(|&x| char::from(b'0' + x)).collect();
        format!(
            "{}{}{}{}-{}{}-{}{}T{}{}:{}{}:{}{}Z",
            d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13]
        )
    }
}

/// Escapes text for an XML attribute value or element content.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uintvar() {
        for (v, bytes) in [
            (0u32, &[0x00][..]),
            (0x6A, &[0x6A]),
            (0x7F, &[0x7F]),
            (0x80, &[0x81, 0x00]),
            (0xA0, &[0x81, 0x20]),
            (u32::MAX, &[0x8F, 0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            write_uintvar(&mut out, v);
            assert_eq!(out, bytes, "{v:#x}");
        }
    }

    #[test]
    fn dates_pack_and_drop_trailing_zeros() {
        let d = WapDateTime::parse("1999-06-25T15:23:15Z").unwrap();
        assert_eq!(d.packed(), [0x19, 0x99, 0x06, 0x25, 0x15, 0x23, 0x15]);
        assert_eq!(d.to_iso(), "1999-06-25T15:23:15Z");
        let d = WapDateTime::parse("1999-06-30T00:00:00Z").unwrap();
        assert_eq!(d.packed(), [0x19, 0x99, 0x06, 0x30]);
        // Only whole zero octets go: 10:00 keeps the 0x10.
        let d = WapDateTime::parse("2002-04-16T10:00:00Z").unwrap();
        assert_eq!(d.packed(), [0x20, 0x02, 0x04, 0x16, 0x10]);
        assert_eq!(
            WapDateTime::from_parts(1999, 6, 30, 0, 0, 0)
                .unwrap()
                .packed(),
            [0x19, 0x99, 0x06, 0x30]
        );
        assert!(WapDateTime::from_parts(10_000, 1, 1, 0, 0, 0).is_err());
        assert!(WapDateTime::from_parts(2026, 2, 1, 24, 0, 0).is_err());
        for bad in [
            "1999-13-01T00:00:00Z",
            "1999-06-25 15:23:15Z",
            "1999-06-25T15:23:15",
            "x",
        ] {
            assert!(WapDateTime::parse(bad).is_err(), "{bad}");
        }
    }
}
