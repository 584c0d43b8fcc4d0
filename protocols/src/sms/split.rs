//! Splitting a message into SMS parts.
//!
//! Job: turn text (in a chosen [`Encoding`]) or raw binary into [`Part`]s that each fit one
//! SMS (140 octets of user data on the air interface, UDH included), with concatenation
//! info carried either in a UDH IE (8-bit reference IE 0x00 or 16-bit IE 0x08) or as plain
//! numbers for SMPP `sar_*` TLVs — never both.
//!
//! Limits per part (user data = 140 octets):
//!
//! | encoding | single | IE 0x00 (6-octet UDH) | IE 0x08 (7-octet UDH) | SAR |
//! |---|---|---|---|---|
//! | GSM 7-bit (septets) | 160 | 153 | 152 | 160 |
//! | Latin-1 / GBK / binary (octets) | 140 | 134 | 133 | 140 |
//! | UCS-2 (UTF-16 code units) | 70 | 67 | 66 | 70 |
//!
//! Caller IEs (e.g. WAP port addressing) are merged with the concatenation IE into one UDH
//! per part, caller IEs first (as Kannel's `sms_split` does), and reduce the room accordingly.
//!
//! Invariants:
//! - A part never ends inside a character: never between `ESC` and its code (GSM 7-bit),
//!   never between the two halves of a surrogate pair (UCS-2), never inside a GBK double byte.
//! - Concatenating the parts' payloads (unpacking GSM 7-bit first) gives back the encoded
//!   message exactly.
//! - A message that fits one part gets no concatenation info at all.
//! - `max_parts` is enforced before any part is built.

use std::borrow::Cow;

use super::error::SplitError;
use super::gsm7;
use super::udh::{Concat, InformationElement, Udh};
use super::{Encoding, encode};

/// Octets of user data in one SMS on the air interface (TS 23.040 TP-UD).
pub const MAX_USER_DATA: usize = 140;

/// How the parts of a long message are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConcatScheme {
    /// UDH IE 0x00: 8-bit reference, 5 octets (6 with UDHL).
    Udh8,
    /// UDH IE 0x08: 16-bit reference, 6 octets (7 with UDHL).
    Udh16,
    /// No UDH for concatenation; the caller sends [`Part::concat`] as SMPP
    /// `sar_msg_ref_num` / `sar_total_segments` / `sar_segment_seqnum` TLVs.
    Sar,
}

/// How GSM 7-bit text is laid into the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Gsm7Form {
    /// One septet per octet: what SMPP `data_coding` 0 usually carries.
    #[default]
    Unpacked,
    /// Packed 7-bit, with fill bits after a UDH (TS 23.040 §9.2.3.24).
    Packed,
}

/// Parameters of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SplitOptions {
    /// UDH IE or SAR.
    pub scheme: ConcatScheme,
    /// Concatenation reference: must be fresh per message (receivers key reassembly on it).
    /// Only the low 8 bits are used with [`ConcatScheme::Udh8`].
    pub reference: u16,
    /// The most parts the caller accepts (at most 255, the concatenation IE's limit).
    pub max_parts: usize,
    /// Payload form for GSM 7-bit text.
    pub gsm7_form: Gsm7Form,
}

impl SplitOptions {
    /// Options with the given scheme and reference, up to 255 parts, unpacked GSM 7-bit.
    #[must_use]
    pub const fn new(scheme: ConcatScheme, reference: u16) -> Self {
        Self {
            scheme,
            reference,
            max_parts: 255,
            gsm7_form: Gsm7Form::Unpacked,
        }
    }
}

/// One SMS of a (possibly single-part) message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Part {
    /// Encoding of `payload`; [`Encoding::smpp_data_coding`] gives SMPP `data_coding`
    /// (binary parts may also be sent as 0xF5, the GSM class-1 8-bit form).
    pub encoding: Encoding,
    /// The whole UDH including UDHL, when the part has one. SMPP: prepend it to
    /// `short_message` and set `esm_class` bit 0x40.
    pub udh: Option<Vec<u8>>,
    /// The payload after the UDH: unpacked septets, packed septets (fill bits first), or octets.
    pub payload: Vec<u8>,
    /// Concatenation numbers; `None` for a single-part message. With [`ConcatScheme::Sar`]
    /// these are the TLV values; with a UDH scheme they are already in `udh` (and the
    /// reference is the low 8 bits only for [`ConcatScheme::Udh8`], as on the wire).
    pub concat: Option<Concat>,
    /// True when `udh` is present (SMPP `esm_class` 0x40, CMPP `TP_udhi` 1).
    pub esm_udhi: bool,
    /// Septets of text in this part for GSM 7-bit (what TP-UDL counts besides the UDH),
    /// payload octets otherwise.
    pub units: usize,
}

impl Part {
    /// SMPP `short_message`: UDH (if any) followed by the payload.
    #[must_use]
    pub fn short_message(&self) -> Vec<u8> {
        let udh = self.udh.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(udh.len() + self.payload.len());
        out.extend_from_slice(udh);
        out.extend_from_slice(&self.payload);
        out
    }

    /// [`short_message`](Self::short_message), taking the part: a part without a UDH (a
    /// single-part message, the usual case) gives its payload as it is, without a copy.
    #[must_use]
    pub fn into_short_message(self) -> Vec<u8> {
        match &self.udh {
            None => self.payload,
            Some(_) => self.short_message(),
        }
    }

    /// Octets this part takes on the air interface (UDH + fill bits + packed text for GSM
    /// 7-bit, UDH + payload otherwise). Never above [`MAX_USER_DATA`] for parts built here.
    #[must_use]
    pub fn air_octets(&self) -> usize {
        let udh = self.udh.as_ref().map_or(0, Vec::len);
        match self.encoding {
            Encoding::Gsm7 => {
                let fill = usize::from(gsm7::fill_bits(udh)) * usize::from(udh > 0);
                (udh * 8 + fill + self.units * 7).div_ceil(8)
            }
            _ => udh + self.payload.len(),
        }
    }

    /// SMPP `data_coding` for this part (`None` for GBK, which SMPP does not define).
    #[must_use]
    pub const fn smpp_data_coding(&self) -> Option<u8> {
        self.encoding.smpp_data_coding()
    }
}

/// Octets of the concatenation IE (IEI + IEDL + data) for a scheme.
const fn concat_ie_len(scheme: ConcatScheme) -> usize {
    match scheme {
        ConcatScheme::Udh8 => 5,
        ConcatScheme::Udh16 => 6,
        ConcatScheme::Sar => 0,
    }
}

/// UDH octets (with UDHL) for caller IEs of `ies_len` octets, plus concatenation if `multi`.
const fn udh_len(ies_len: usize, scheme: ConcatScheme, multi: bool) -> usize {
    let concat = if multi { concat_ie_len(scheme) } else { 0 };
    if ies_len + concat == 0 {
        0
    } else {
        1 + ies_len + concat
    }
}

/// Payload capacity in encoded-byte units (septets for unpacked GSM, octets otherwise) after
/// a UDH of `udh` octets.
fn capacity(encoding: Encoding, udh: usize) -> usize {
    match encoding {
        Encoding::Gsm7 => gsm7::septet_capacity(MAX_USER_DATA, udh),
        Encoding::Ucs2 => MAX_USER_DATA.saturating_sub(udh) & !1,
        Encoding::Latin1 | Encoding::Ascii | Encoding::Gbk | Encoding::Binary => {
            MAX_USER_DATA.saturating_sub(udh)
        }
    }
}

/// Largest `end <= start + cap` that does not cut a character of `data` (already encoded in
/// `encoding`, GSM as unpacked septets). Returns `start` if not even one character fits.
fn next_cut(encoding: Encoding, data: &[u8], start: usize, cap: usize) -> usize {
    let end = (start + cap).min(data.len());
    if end == data.len() {
        return end;
    }
    match encoding {
        // Extension codes are never 0x1B, so an ESC just before the cut always starts a pair.
        Encoding::Gsm7 if end > start && data[end - 1] == gsm7::ESC => end - 1,
        Encoding::Ucs2 if end >= start + 2 && (0xD8..=0xDB).contains(&data[end - 2]) => end - 2,
        Encoding::Gbk => {
            // encoding_rs's GBK encoder emits 1 octet for ASCII and 0x80 (€), else 2.
            let mut i = start;
            while i < end {
                let step = if data[i] <= 0x80 { 1 } else { 2 };
                if i + step > end {
                    break;
                }
                i += step;
            }
            i
        }
        _ => end,
    }
}

/// Number of parts `data` needs and the per-part capacity used, or an error if it cannot be
/// cut at all.
fn plan(
    encoding: Encoding,
    data: &[u8],
    ies_len: usize,
    scheme: ConcatScheme,
) -> Result<(usize, usize), SplitError> {
    let single_udh = udh_len(ies_len, scheme, false);
    let single_cap = capacity(encoding, single_udh);
    if next_cut(encoding, data, 0, single_cap) == data.len() {
        return Ok((1, single_cap));
    }
    let multi_udh = udh_len(ies_len, scheme, true);
    let cap = capacity(encoding, multi_udh);
    let mut parts = 0;
    let mut start = 0;
    while start < data.len() {
        let end = next_cut(encoding, data, start, cap);
        if end == start {
            return Err(SplitError::UdhTooLong {
                udh_octets: multi_udh,
            });
        }
        parts += 1;
        start = end;
    }
    Ok((parts, cap))
}

/// Splits already-encoded data. Shared by text and binary. Owned data that fits one part
/// without a UDH becomes that part's payload as it is (no copy).
fn split_encoded(
    encoding: Encoding,
    data: Cow<'_, [u8]>,
    ies: &[InformationElement],
    opts: &SplitOptions,
) -> Result<Vec<Part>, SplitError> {
    let ies_len: usize = ies.iter().map(InformationElement::encoded_len).sum();
    let (total, cap) = plan(encoding, &data, ies_len, opts.scheme)?;
    let max = opts.max_parts.min(255);
    if total > max {
        return Err(SplitError::TooManyParts { needed: total, max });
    }
    let packed = encoding == Encoding::Gsm7 && opts.gsm7_form == Gsm7Form::Packed;
    if total == 1 && ies.is_empty() && !packed {
        let units = data.len();
        return Ok(vec![Part {
            encoding,
            esm_udhi: false,
            udh: None,
            payload: data.into_owned(),
            concat: None,
            units,
        }]);
    }
    // Report the reference as it travels: IE 0x00 only carries the low 8 bits.
    let reference = match opts.scheme {
        ConcatScheme::Udh8 => opts.reference & 0xFF,
        ConcatScheme::Udh16 | ConcatScheme::Sar => opts.reference,
    };
    let mut parts = Vec::with_capacity(total);
    let mut start = 0;
    for seq in 1..=total {
        let end = if total == 1 {
            data.len()
        } else {
            next_cut(encoding, &data, start, cap)
        };
        let chunk = &data[start..end];
        start = end;
        let concat = (total > 1).then_some(Concat {
            reference,
            total: total as u8,
            seq: seq as u8,
        });
        let mut udh = Udh { ies: ies.to_vec() };
        match (concat, opts.scheme) {
            (Some(c), ConcatScheme::Udh8) => udh.ies.push(InformationElement::concat8(c)),
            (Some(c), ConcatScheme::Udh16) => udh.ies.push(InformationElement::concat16(c)),
            _ => {}
        }
        let udh = if udh.ies.is_empty() {
            None
        } else {
            Some(udh.encode().map_err(|_| SplitError::UdhTooLong {
                udh_octets: udh.encoded_len(),
            })?)
        };
        let udh_octets = udh.as_ref().map_or(0, Vec::len);
        let payload = match (encoding, opts.gsm7_form) {
            (Encoding::Gsm7, Gsm7Form::Packed) => gsm7::pack(
                chunk,
                if udh_octets > 0 {
                    gsm7::fill_bits(udh_octets)
                } else {
                    0
                },
            ),
            _ => chunk.to_vec(),
        };
        parts.push(Part {
            encoding,
            esm_udhi: udh.is_some(),
            udh,
            payload,
            concat,
            units: chunk.len(),
        });
    }
    Ok(parts)
}

/// Splits `text` encoded as `encoding` (not [`Encoding::Binary`]).
///
/// # Errors
/// [`SplitError::Encode`] if the text does not fit the encoding, [`SplitError::TooManyParts`]
/// past `opts.max_parts`, [`SplitError::UnsupportedEncoding`] for `Binary`.
pub fn split_text(
    text: &str,
    encoding: Encoding,
    opts: &SplitOptions,
) -> Result<Vec<Part>, SplitError> {
    if encoding == Encoding::Binary {
        return Err(SplitError::UnsupportedEncoding(encoding));
    }
    let data = encode(text, encoding)?;
    split_encoded(encoding, Cow::Owned(data), &[], opts)
}

/// Splits raw binary `data`, putting the caller's IEs (e.g. WAP port addressing) into every
/// part's UDH ahead of the concatenation IE.
///
/// # Errors
/// [`SplitError::TooManyParts`], or [`SplitError::UdhTooLong`] when the IEs leave no room.
pub fn split_binary(
    data: &[u8],
    ies: &[InformationElement],
    opts: &SplitOptions,
) -> Result<Vec<Part>, SplitError> {
    split_encoded(Encoding::Binary, Cow::Borrowed(data), ies, opts)
}

/// Number of parts `text` needs in `encoding` under `scheme`, without building them.
/// `None` if the text cannot be encoded.
#[must_use]
pub fn count_parts(text: &str, encoding: Encoding, scheme: ConcatScheme) -> Option<usize> {
    // Per-character cost walk (no allocation) for the fixed-width cases.
    let cost: fn(char) -> Option<usize> = match encoding {
        Encoding::Gsm7 => |c| gsm7::char_septets(c).map(gsm7::Septets::len),
        Encoding::Latin1 => |c| super::latin1::is_latin1(c).then_some(1),
        Encoding::Ascii => |c| c.is_ascii().then_some(1),
        Encoding::Ucs2 => |c| Some(c.len_utf16() * 2),
        Encoding::Gbk | Encoding::Binary => {
            let data = encode(text, encoding).ok()?;
            return plan(encoding, &data, 0, scheme).ok().map(|(n, _)| n);
        }
    };
    let mut total = 0usize;
    for c in text.chars() {
        total += cost(c)?;
    }
    if total <= capacity(encoding, 0) {
        return Some(1);
    }
    let cap = capacity(encoding, udh_len(0, scheme, true));
    let (mut parts, mut used) = (1usize, 0usize);
    for c in text.chars() {
        let n = cost(c)?;
        if used + n > cap {
            parts += 1;
            used = 0;
        }
        used += n;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(scheme: ConcatScheme) -> SplitOptions {
        SplitOptions::new(scheme, 0x1234)
    }

    #[test]
    fn a_part_taken_whole_gives_the_same_short_message() {
        let long = "x".repeat(400);
        for (text, encoding) in [
            ("hello", Encoding::Gsm7),
            ("你好", Encoding::Ucs2),
            (long.as_str(), Encoding::Gsm7),
            (long.as_str(), Encoding::Ucs2),
        ] {
            for scheme in [ConcatScheme::Udh8, ConcatScheme::Sar] {
                let parts = split_text(text, encoding, &opts(scheme)).unwrap();
                for p in parts {
                    let want = p.short_message();
                    assert_eq!(p.into_short_message(), want, "{text:.10} {encoding:?}");
                }
            }
        }
        // A single part without a UDH is the encoded text itself.
        let one = split_text("hello", Encoding::Gsm7, &opts(ConcatScheme::Udh8)).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].udh.as_ref(), one[0].units), (None, 5));
        assert_eq!(one[0].payload, encode("hello", Encoding::Gsm7).unwrap());
    }

    #[test]
    fn single_part_limits() {
        for (enc, text) in [
            (Encoding::Gsm7, "a".repeat(160)),
            (Encoding::Latin1, "é".repeat(140)),
            (Encoding::Ucs2, "中".repeat(70)),
        ] {
            let parts = split_text(&text, enc, &opts(ConcatScheme::Udh8)).unwrap();
            assert_eq!(parts.len(), 1, "{enc:?}");
            assert_eq!(parts[0].udh, None);
            assert_eq!(parts[0].concat, None);
            assert!(!parts[0].esm_udhi);
        }
    }

    #[test]
    fn multipart_limits_per_scheme() {
        let cases = [
            (Encoding::Gsm7, "a", ConcatScheme::Udh8, 153),
            (Encoding::Gsm7, "a", ConcatScheme::Udh16, 152),
            (Encoding::Gsm7, "a", ConcatScheme::Sar, 160),
            (Encoding::Latin1, "é", ConcatScheme::Udh8, 134),
            (Encoding::Latin1, "é", ConcatScheme::Udh16, 133),
            (Encoding::Ucs2, "中", ConcatScheme::Udh8, 67),
            (Encoding::Ucs2, "中", ConcatScheme::Udh16, 66),
            (Encoding::Ucs2, "中", ConcatScheme::Sar, 70),
        ];
        for (enc, ch, scheme, per_part) in cases {
            let text = ch.repeat(per_part * 2 + 1);
            let parts = split_text(&text, enc, &opts(scheme)).unwrap();
            assert_eq!(parts.len(), 3, "{enc:?} {scheme:?}");
            assert_eq!(
                parts[0].units,
                per_part * if enc == Encoding::Ucs2 { 2 } else { 1 }
            );
            assert_eq!(count_parts(&text, enc, scheme), Some(3));
            for (i, p) in parts.iter().enumerate() {
                let c = p.concat.unwrap();
                let reference = if scheme == ConcatScheme::Udh8 {
                    0x34
                } else {
                    0x1234
                };
                assert_eq!((c.total, c.seq, c.reference), (3, i as u8 + 1, reference));
                assert!(p.air_octets() <= MAX_USER_DATA);
                match scheme {
                    ConcatScheme::Udh8 => {
                        assert_eq!(p.udh.as_deref(), Some(&[5, 0, 3, 0x34, 3, i as u8 + 1][..]));
                    }
                    ConcatScheme::Udh16 => assert_eq!(
                        p.udh.as_deref(),
                        Some(&[6, 8, 4, 0x12, 0x34, 3, i as u8 + 1][..])
                    ),
                    ConcatScheme::Sar => assert_eq!(p.udh, None),
                }
                assert_eq!(p.esm_udhi, scheme != ConcatScheme::Sar);
            }
        }
    }

    #[test]
    fn never_cuts_an_escape() {
        // 152 'a' then '€': the escape pair would straddle septets 153/154.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let parts = split_text(&text, Encoding::Gsm7, &opts(ConcatScheme::Udh8)).unwrap();
        assert_eq!(parts[0].payload.len(), 152);
        assert_eq!(&parts[1].payload[..2], &[gsm7::ESC, 0x65]);
    }

    #[test]
    fn never_cuts_a_surrogate_pair() {
        let text = format!("{}😀{}", "a".repeat(66), "x".repeat(10));
        let parts = split_text(&text, Encoding::Ucs2, &opts(ConcatScheme::Udh8)).unwrap();
        assert_eq!(parts[0].payload.len(), 132);
        assert_eq!(&parts[1].payload[..2], &[0xD8, 0x3D]);
    }

    #[test]
    fn packed_gsm_has_fill_bit_after_udh8() {
        let text = "a".repeat(200);
        let mut o = opts(ConcatScheme::Udh8);
        o.gsm7_form = Gsm7Form::Packed;
        let parts = split_text(&text, Encoding::Gsm7, &o).unwrap();
        assert_eq!(parts[0].units, 153);
        assert_eq!(parts[0].payload.len(), 134);
        assert_eq!(parts[0].air_octets(), 140);
        let septets = gsm7::unpack(&parts[0].payload, 1, parts[0].units);
        assert_eq!(septets, vec![b'a'; 153]);
    }

    #[test]
    fn too_many_parts_is_refused() {
        let mut o = opts(ConcatScheme::Udh8);
        o.max_parts = 2;
        let err = split_text(&"a".repeat(400), Encoding::Gsm7, &o).unwrap_err();
        assert_eq!(err, SplitError::TooManyParts { needed: 3, max: 2 });
    }

    #[test]
    fn binary_merges_caller_ies_first() {
        let ports = InformationElement::ports16(super::super::udh::Ports {
            dest: 2948,
            src: 9200,
        });
        let data = vec![0xAB; 200];
        let parts = split_binary(
            &data,
            std::slice::from_ref(&ports),
            &opts(ConcatScheme::Udh8),
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        let udh = parts[0].udh.as_deref().unwrap();
        assert_eq!(
            udh,
            [
                0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x34, 2, 1
            ]
        );
        assert_eq!(parts[0].payload.len(), 128);
        let single = split_binary(&data[..133], &[ports], &opts(ConcatScheme::Udh8)).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].udh.as_deref().unwrap().len(), 7);
    }

    #[test]
    fn gbk_never_cuts_double_bytes() {
        let text = format!("a{}", "中".repeat(100));
        let parts = split_text(&text, Encoding::Gbk, &opts(ConcatScheme::Udh8)).unwrap();
        assert_eq!(parts[0].payload.len(), 133);
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.payload.clone()).collect();
        assert_eq!(super::super::gbk::decode(&joined).unwrap(), text);
        for p in &parts {
            assert!(super::super::gbk::decode(&p.payload).is_ok());
        }
    }
}
