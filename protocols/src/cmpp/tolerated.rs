//! Deviations from the specification that the decoder accepted, reported per PDU.
//!
//! Decoding is lenient where real ISMGs are known to deviate and the meaning is still
//! unambiguous; each such acceptance is recorded here so the caller can count it (metrics)
//! instead of it disappearing silently. Encoding never produces any of these.

use std::fmt;

/// One kind of accepted deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tolerance {
    /// A Version byte with a non-zero minor nibble (0x21, 0x31), read by its major nibble.
    VersionMinor,
    /// Bytes after the last field of the body, ignored.
    TrailingBytes,
    /// A fixed-width Octet String padded with spaces instead of NULs.
    PaddingSpaces,
    /// The body ended right after Msg_Content: the 2.0 Reserve(8) or 3.0 LinkID(20) was absent.
    MissingTrailer,
    /// A response whose Status/Result width belongs to the other version (body length
    /// told which one, e.g. an 18-byte CONNECT_RESP on a 3.0 link).
    ResponseWidth,
    /// A status report whose struct length belongs to the other version (60 vs 71 bytes).
    ReportWidth,
}

impl Tolerance {
    /// Every kind, in bit order.
    pub const ALL: [Self; 6] = [
        Self::VersionMinor,
        Self::TrailingBytes,
        Self::PaddingSpaces,
        Self::MissingTrailer,
        Self::ResponseWidth,
        Self::ReportWidth,
    ];

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// A stable snake_case name, suitable as a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Self::VersionMinor => "version_minor",
            Self::TrailingBytes => "trailing_bytes",
            Self::PaddingSpaces => "padding_spaces",
            Self::MissingTrailer => "missing_trailer",
            Self::ResponseWidth => "response_width",
            Self::ReportWidth => "report_width",
        }
    }
}

/// The set of [`Tolerance`]s met while decoding one PDU (empty for a conforming PDU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tolerated(u8);

impl Tolerated {
    /// The empty set.
    pub const fn none() -> Self {
        Self(0)
    }

    /// Adds one kind.
    pub fn insert(&mut self, t: Tolerance) {
        self.0 |= t.bit();
    }

    /// Whether `t` was met.
    pub const fn contains(self, t: Tolerance) -> bool {
        self.0 & t.bit() != 0
    }

    /// True for a PDU that followed the specification exactly.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds met, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Tolerance> {
        Tolerance::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl fmt::Display for Tolerated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(t.name())?;
        }
        Ok(())
    }
}
