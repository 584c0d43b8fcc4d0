//! Borrowed view of CMPP_SUBMIT, the PDU on the SP → ISMG socket path, read in place.
//!
//! Why: the owned decode copies ten fixed-width fields into zeroed arrays, boxes the
//! 400-byte [`Submit`] into the [`Pdu`] enum and allocates the destination list, then frees
//! both again: most of a SUBMIT decode. The layout is fixed-width, so a view only has to
//! check, once, that the body holds the fields up to DestUsr_tl, the destinations, the
//! content Msg_Length announces and a whole trailer. Every field is then a slice at a
//! known offset of the frame, its padding trimmed when it is asked for.
//!
//! - [`Frame`]: header + body split off the read buffer ([`Frame::split`], the sans-IO step
//!   behind `CmppViewCodec`); [`Frame::view`] gives SUBMIT as [`SubmitRef`] and every other
//!   command owned, as [`Pdu::decode`] does.
//! - [`SubmitRef::to_owned`] and [`DecodedRef::to_owned`] equal [`Pdu::decode`]'s result for
//!   the same bytes, and [`Frame::view`] fails with the same [`DecodeError`].
//! - The padding tolerance ([`Tolerance::PaddingSpaces`]) needs every field looked at, so
//!   [`DecodedRef::tolerated`] computes it when called, not when the view is made.

use bytes::{Buf, Bytes, BytesMut};

use super::codes::{CommandId, MsgFmt};
use super::error::{DecodeError, FrameError};
use super::header::{self, HEADER_LEN, Header};
use super::msg_id::MsgId;
use super::octets::{FixedStr, padded_len, trim_padding};
use super::pdu::{Decoded, Pdu};
use super::submit::{MAX_DESTINATIONS, Submit};
use super::tolerated::{Tolerance, Tolerated};
use super::version::Version;

/// One whole PDU split off a read buffer: its header and exactly its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    header: Header,
    body: Bytes,
}

impl Frame {
    /// Splits the first whole frame off `buf`: `Ok(None)` while it has not fully arrived
    /// (having reserved what it still needs), an error for a Total_Length outside
    /// `12..=max_length` (the stream cannot be re-synchronised: close the link).
    ///
    /// # Errors
    /// [`FrameError`].
    #[inline]
    pub fn split(buf: &mut BytesMut, max_length: u32) -> Result<Option<Self>, FrameError> {
        let Some(header) = header::check(buf, max_length)? else {
            let want = match buf.first_chunk::<4>() {
                // The length passed `check` once the header is there: bounded by max_length.
                Some(l) if buf.len() >= HEADER_LEN => u32::from_be_bytes(*l) as usize,
                _ => HEADER_LEN,
            };
            buf.reserve(want.saturating_sub(buf.len()));
            return Ok(None);
        };
        buf.advance(HEADER_LEN);
        let body = buf
            .split_to(header.total_length as usize - HEADER_LEN)
            .freeze();
        Ok(Some(Self { header, body }))
    }

    /// A frame from its parsed header and body (`body` must be exactly the body:
    /// [`Frame::view`] and [`Frame::decode`] report a mismatch).
    pub fn new(header: Header, body: Bytes) -> Self {
        Self { header, body }
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The body (the bytes after the 12-byte header).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Decodes into the owned [`Decoded`] (content shares the frame's buffer).
    ///
    /// # Errors
    /// As [`Pdu::decode`].
    pub fn decode(&self, version: Version) -> Result<Decoded, DecodeError> {
        Pdu::decode(self.header, self.body.clone(), version)
    }

    /// Reads the frame in place: SUBMIT as a [`SubmitRef`], any other command owned.
    ///
    /// # Errors
    /// Exactly the errors [`Pdu::decode`] gives for the same frame.
    #[inline]
    pub fn view(&self, version: Version) -> Result<DecodedRef<'_>, DecodeError> {
        let pdu = if self.header.command_id == CommandId::Submit
            && self.header.total_length as usize == HEADER_LEN + self.body.len()
        {
            match SubmitRef::parse(&self.body, version) {
                Some(s) => PduRef::Submit(s),
                None => return Err(self.owned_error(version)),
            }
        } else {
            let d = self.decode(version)?;
            PduRef::Other {
                pdu: d.pdu,
                tolerated: d.tolerated,
            }
        };
        Ok(DecodedRef {
            header: self.header,
            pdu,
        })
    }

    /// The owned decoder's error for a frame the view refused: one path decides what a
    /// malformed SUBMIT is, the view only recognises that it is one.
    #[cold]
    fn owned_error(&self, version: Version) -> DecodeError {
        match self.decode(version) {
            Err(e) => e,
            // Unreachable while the view and the decoder agree (the proptests check it);
            // answered as a structure error rather than a panic on network input.
            Ok(_) => DecodeError {
                header: self.header,
                msg_id: None,
                kind: super::error::DecodeErrorKind::UnknownCommand,
            },
        }
    }
}

/// `raw` (a field of `W` bytes) without its padding: the NULs measured a word at a time on
/// the fixed-size field, the rare space padding trimmed as the owned decoder does.
#[inline(always)]
fn trimmed<const W: usize>(raw: &[u8]) -> &[u8] {
    let Some(field) = raw.first_chunk::<W>() else {
        return trim_padding(raw).0;
    };
    let end = padded_len(field);
    if end > 0 && field[end - 1] == b' ' {
        return trim_padding(raw).0;
    }
    &raw[..end]
}

/// A PDU read in place from a [`Frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRef<'a> {
    /// The header as received.
    pub header: Header,
    /// The body.
    pub pdu: PduRef<'a>,
}

impl DecodedRef<'_> {
    /// The deviations accepted while decoding; for a SUBMIT the padding of every field is
    /// looked at now (the view itself does not trim fields until asked).
    pub fn tolerated(&self) -> Tolerated {
        match &self.pdu {
            PduRef::Submit(s) => s.tolerated(),
            PduRef::Other { tolerated, .. } => *tolerated,
        }
    }

    /// The owned form, equal to [`Pdu::decode`]'s result for the same frame.
    pub fn to_owned(&self) -> Decoded {
        let pdu = match &self.pdu {
            PduRef::Submit(s) => Pdu::Submit(Box::new(s.to_owned())),
            PduRef::Other { pdu, .. } => pdu.clone(),
        };
        Decoded {
            header: self.header,
            pdu,
            tolerated: self.tolerated(),
        }
    }
}

/// The body of a [`DecodedRef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduRef<'a> {
    /// CMPP_SUBMIT, in place.
    Submit(SubmitRef<'a>),
    /// Any other command, owned, with its tolerances.
    Other {
        /// The body.
        pdu: Pdu,
        /// What was bent.
        tolerated: Tolerated,
    },
}

/// CMPP_SUBMIT read in place. Field offsets follow [`super::submit`]'s layout for the
/// link's version; everything up to the trailer was bounds-checked when the view was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRef<'a> {
    body: &'a Bytes,
    version: Version,
    /// Offset of the first Dest_terminal_Id.
    dests: usize,
    count: u8,
    /// Offset of Msg_Content and its length.
    content: usize,
    content_len: u8,
    /// Trailer tolerances (MissingTrailer, TrailingBytes), found while checking bounds.
    structural: Tolerated,
}

/// Offsets inside the SUBMIT body that do not depend on the destination count.
struct Layout {
    /// Fee_terminal_Id / Dest_terminal_Id width.
    tid: usize,
    /// TP_pId (after Fee_terminal_Id and, in 3.0, Fee_terminal_type).
    tp_pid: usize,
}

impl Layout {
    #[inline(always)]
    const fn of(v: Version) -> Self {
        let tid = v.terminal_id_len();
        let fee_type_len = match v {
            Version::V20 => 0,
            Version::V30 => 1,
        };
        Self {
            tid,
            tp_pid: 23 + tid + fee_type_len,
        }
    }
    /// Msg_src … Src_Id, then DestUsr_tl.
    const fn msg_src(&self) -> usize {
        self.tp_pid + 3
    }
    const fn count(&self) -> usize {
        self.msg_src() + 6 + 2 + 6 + 17 + 17 + 21
    }
}

impl<'a> SubmitRef<'a> {
    /// Checks the bounds of a SUBMIT body; `None` when the owned decoder would refuse it.
    #[inline(always)]
    fn parse(body: &'a Bytes, version: Version) -> Option<Self> {
        let l = Layout::of(version);
        let b: &[u8] = body;
        let count = *b.get(l.count())?;
        if count == 0 || usize::from(count) > MAX_DESTINATIONS {
            return None;
        }
        let dests = l.count() + 1;
        let mut at = dests + usize::from(count) * l.tid;
        if version == Version::V30 {
            at += 1; // Dest_terminal_type
        }
        let content_len = *b.get(at)?;
        let content = at + 1;
        let trailer = content + usize::from(content_len);
        let left = b.len().checked_sub(trailer)?;
        let mut structural = Tolerated::none();
        let want = match version {
            Version::V20 => 8,
            Version::V30 => 20,
        };
        if left == 0 {
            structural.insert(Tolerance::MissingTrailer);
        } else if left < want {
            return None;
        } else if left > want {
            structural.insert(Tolerance::TrailingBytes);
        }
        Some(Self {
            body,
            version,
            dests,
            count,
            content,
            content_len,
            structural,
        })
    }

    fn layout(&self) -> Layout {
        Layout::of(self.version)
    }

    /// The raw octets of a field (bounds checked at parse; empty if not, never a panic).
    #[inline(always)]
    fn raw(&self, at: usize, width: usize) -> &'a [u8] {
        self.body.get(at..at + width).unwrap_or_default()
    }

    /// A fixed-width field of `W` bytes at `at`, without its padding.
    #[inline(always)]
    fn fixed<const W: usize>(&self, at: usize) -> &'a [u8] {
        trimmed::<W>(self.raw(at, W))
    }

    /// A terminal id (21 bytes in 2.0, 32 in 3.0) at `at`, without its padding.
    #[inline(always)]
    fn terminal(&self, at: usize) -> &'a [u8] {
        match self.version {
            Version::V20 => self.fixed::<21>(at),
            Version::V30 => self.fixed::<32>(at),
        }
    }

    fn byte(&self, at: usize) -> u8 {
        self.body.get(at).copied().unwrap_or_default()
    }

    /// The link version the view was read with.
    pub fn version(&self) -> Version {
        self.version
    }
    /// Msg_Id (0 from an SP).
    pub fn msg_id(&self) -> MsgId {
        let mut id = [0u8; 8];
        id.copy_from_slice(self.raw(0, 8));
        MsgId(u64::from_be_bytes(id))
    }
    /// Pk_total.
    pub fn pk_total(&self) -> u8 {
        self.byte(8)
    }
    /// Pk_number.
    pub fn pk_number(&self) -> u8 {
        self.byte(9)
    }
    /// Registered_Delivery.
    pub fn registered_delivery(&self) -> u8 {
        self.byte(10)
    }
    /// Msg_level.
    pub fn msg_level(&self) -> u8 {
        self.byte(11)
    }
    /// Service_Id without padding.
    pub fn service_id(&self) -> &'a [u8] {
        self.fixed::<10>(12)
    }
    /// Fee_UserType.
    pub fn fee_user_type(&self) -> u8 {
        self.byte(22)
    }
    /// Fee_terminal_Id without padding.
    pub fn fee_terminal_id(&self) -> &'a [u8] {
        self.terminal(23)
    }
    /// Fee_terminal_type (3.0; 0 on 2.0).
    pub fn fee_terminal_type(&self) -> u8 {
        match self.version {
            Version::V20 => 0,
            Version::V30 => self.byte(23 + self.layout().tid),
        }
    }
    /// TP_pId.
    pub fn tp_pid(&self) -> u8 {
        self.byte(self.layout().tp_pid)
    }
    /// TP_udhi.
    pub fn tp_udhi(&self) -> u8 {
        self.byte(self.layout().tp_pid + 1)
    }
    /// Msg_Fmt.
    pub fn msg_fmt(&self) -> MsgFmt {
        MsgFmt::from_raw(self.byte(self.layout().tp_pid + 2))
    }
    /// Msg_src without padding.
    pub fn msg_src(&self) -> &'a [u8] {
        self.fixed::<6>(self.layout().msg_src())
    }
    /// FeeType without padding.
    pub fn fee_type(&self) -> &'a [u8] {
        self.fixed::<2>(self.layout().msg_src() + 6)
    }
    /// FeeCode without padding.
    pub fn fee_code(&self) -> &'a [u8] {
        self.fixed::<6>(self.layout().msg_src() + 8)
    }
    /// ValId_Time without padding.
    pub fn valid_time(&self) -> &'a [u8] {
        self.fixed::<17>(self.layout().msg_src() + 14)
    }
    /// At_Time without padding.
    pub fn at_time(&self) -> &'a [u8] {
        self.fixed::<17>(self.layout().msg_src() + 31)
    }
    /// Src_Id without padding.
    pub fn src_id(&self) -> &'a [u8] {
        self.fixed::<21>(self.layout().msg_src() + 48)
    }
    /// How many destinations (1..=100).
    pub fn dest_count(&self) -> usize {
        usize::from(self.count)
    }
    /// The destination terminals, without padding, in wire order.
    pub fn dest_terminal_ids(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + use<'a> {
        let (tid, v) = (self.layout().tid, self.version);
        let raw = self.raw(self.dests, usize::from(self.count) * tid);
        raw.chunks_exact(tid).map(move |d| match v {
            Version::V20 => trimmed::<21>(d),
            Version::V30 => trimmed::<32>(d),
        })
    }
    /// Dest_terminal_type (3.0; 0 on 2.0).
    pub fn dest_terminal_type(&self) -> u8 {
        match self.version {
            Version::V20 => 0,
            Version::V30 => self.byte(self.content - 2),
        }
    }
    /// Msg_Content, as encoded per Msg_Fmt.
    pub fn msg_content(&self) -> &'a [u8] {
        self.raw(self.content, usize::from(self.content_len))
    }
    /// Msg_Content as a shared slice of the frame (no copy).
    pub fn msg_content_bytes(&self) -> Bytes {
        self.body
            .slice(self.content..self.content + usize::from(self.content_len))
    }
    /// LinkID without padding (3.0; empty on 2.0 or when the trailer was absent).
    pub fn link_id(&self) -> &'a [u8] {
        match self.version {
            Version::V30 if !self.structural.contains(Tolerance::MissingTrailer) => {
                self.fixed::<20>(self.content + usize::from(self.content_len))
            }
            _ => &[],
        }
    }

    /// The deviations accepted: the trailer's (found at parse) and space padding in any
    /// fixed-width field (looked for now).
    pub fn tolerated(&self) -> Tolerated {
        let mut t = self.structural;
        let l = self.layout();
        let padded = |at: usize, width: usize| trim_padding(self.raw(at, width)).1;
        let m = l.msg_src();
        let mut spaces = padded(12, 10)
            || padded(23, l.tid)
            || [(m, 6), (m + 6, 2), (m + 8, 6), (m + 14, 17), (m + 31, 17)]
                .iter()
                .any(|&(at, w)| padded(at, w))
            || padded(m + 48, 21)
            || (0..usize::from(self.count)).any(|i| padded(self.dests + i * l.tid, l.tid));
        if self.version == Version::V30 && !self.structural.contains(Tolerance::MissingTrailer) {
            spaces |= padded(self.content + usize::from(self.content_len), 20);
        }
        if spaces {
            t.insert(Tolerance::PaddingSpaces);
        }
        t
    }

    /// The owned SUBMIT, equal to what [`Pdu::decode`] gives for the same frame.
    pub fn to_owned(&self) -> Submit {
        fn fs<const N: usize>(v: &[u8]) -> FixedStr<N> {
            // Trimmed slices of fields at most N wide always fit.
            FixedStr::new(v).unwrap_or_default()
        }
        Submit {
            msg_id: self.msg_id(),
            pk_total: self.pk_total(),
            pk_number: self.pk_number(),
            registered_delivery: self.registered_delivery(),
            msg_level: self.msg_level(),
            service_id: fs(self.service_id()),
            fee_user_type: self.fee_user_type(),
            fee_terminal_id: fs(self.fee_terminal_id()),
            fee_terminal_type: self.fee_terminal_type(),
            tp_pid: self.tp_pid(),
            tp_udhi: self.tp_udhi(),
            msg_fmt: self.msg_fmt(),
            msg_src: fs(self.msg_src()),
            fee_type: fs(self.fee_type()),
            fee_code: fs(self.fee_code()),
            valid_time: fs(self.valid_time()),
            at_time: fs(self.at_time()),
            src_id: fs(self.src_id()),
            dest_terminal_ids: self.dest_terminal_ids().map(fs).collect(),
            dest_terminal_type: self.dest_terminal_type(),
            msg_content: self.msg_content_bytes(),
            link_id: fs(self.link_id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit() -> Submit {
        let fs = |s: &[u8]| FixedStr::<32>::new(s).unwrap();
        Submit {
            pk_total: 1,
            pk_number: 1,
            registered_delivery: 1,
            service_id: FixedStr::new(b"MJS0019901").unwrap(),
            fee_user_type: 2,
            msg_fmt: MsgFmt::Ucs2,
            msg_src: FixedStr::new(b"901234").unwrap(),
            fee_type: FixedStr::new(b"01").unwrap(),
            fee_code: FixedStr::new(b"000000").unwrap(),
            src_id: FixedStr::new(b"1069001234").unwrap(),
            dest_terminal_ids: vec![fs(b"13800138000"), fs(b"13900139000")],
            msg_content: Bytes::from(vec![0x4F; 140]),
            ..Submit::default()
        }
    }

    fn frame(bytes: &[u8]) -> Frame {
        let mut buf = BytesMut::from(bytes);
        Frame::split(&mut buf, 4096).unwrap().unwrap()
    }

    #[test]
    fn view_reads_every_field_and_owns_back_equal() {
        for v in [Version::V20, Version::V30] {
            let mut s = submit();
            if v == Version::V30 {
                s.link_id = FixedStr::new(b"LINK42").unwrap();
                s.dest_terminal_type = 1;
                s.fee_terminal_type = 1;
            }
            let bytes = Pdu::Submit(Box::new(s.clone())).to_bytes(3, v).unwrap();
            let f = frame(&bytes);
            let d = f.view(v).unwrap();
            let PduRef::Submit(r) = &d.pdu else {
                panic!("not a submit view")
            };
            assert_eq!(r.src_id(), b"1069001234");
            assert_eq!(
                r.dest_terminal_ids().collect::<Vec<_>>(),
                vec![&b"13800138000"[..], b"13900139000"]
            );
            assert_eq!(r.msg_content(), &[0x4F; 140][..]);
            assert_eq!(r.to_owned(), s);
            assert!(d.tolerated().is_empty());
            assert_eq!(d.to_owned(), f.decode(v).unwrap());
        }
    }

    #[test]
    fn refusals_are_the_owned_decoders() {
        let v = Version::V20;
        let bytes = Pdu::Submit(Box::new(submit())).to_bytes(3, v).unwrap();
        // Cut inside the content, with Total_Length fixed up.
        let mut cut = bytes[..bytes.len() - 20].to_vec();
        let n = (cut.len() as u32).to_be_bytes();
        cut[..4].copy_from_slice(&n);
        let f = frame(&cut);
        assert_eq!(f.view(v).unwrap_err(), f.decode(v).unwrap_err());
        // Space padding is found when asked.
        let mut padded = bytes.to_vec();
        padded[12 + 12 + 9] = b' ';
        let f = frame(&padded);
        let d = f.view(v).unwrap();
        assert!(d.tolerated().contains(Tolerance::PaddingSpaces));
        assert_eq!(d.to_owned(), f.decode(v).unwrap());
    }
}
