//! The set of deviations from the specification that the decoder accepted.
//!
//! Real peers bend SMPP in harmless ways; we accept those, but say so, so that callers can
//! count them per peer (a metric per flag) and notice when a center changes behaviour.
//! Encoding never produces any of them.

/// A small bit set of [`Tolerated`] flags returned beside each decoded command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tolerated(u16);

impl Tolerated {
    /// Nothing was bent.
    pub const NONE: Self = Self(0);
    /// A C-octet string ran to the end of the body without its NUL terminator.
    pub const MISSING_NUL: Self = Self(1 << 0);
    /// Bytes after the mandatory fields that do not form a valid TLV were ignored.
    pub const TRAILING_BYTES: Self = Self(1 << 1);
    /// A bind carried an interface_version other than 0x00..=0x34 or 0x50.
    pub const UNKNOWN_INTERFACE_VERSION: Self = Self(1 << 2);
    /// `sm_length` pointed past the body while a message_payload TLV carried the text;
    /// the short_message was taken as empty.
    pub const SM_LENGTH_OVERRUN: Self = Self(1 << 3);
    /// A response with status 0 had an empty body; its fields were taken as empty.
    pub const EMPTY_RESPONSE_BODY: Self = Self(1 << 4);
    /// Trailing mandatory fields were absent at the end of the body and taken as empty/zero.
    pub const MISSING_FIELDS: Self = Self(1 << 5);

    /// Every flag, with a stable name for metrics labels.
    pub const ALL: [(Self, &'static str); 6] = [
        (Self::MISSING_NUL, "missing_nul"),
        (Self::TRAILING_BYTES, "trailing_bytes"),
        (Self::UNKNOWN_INTERFACE_VERSION, "unknown_interface_version"),
        (Self::SM_LENGTH_OVERRUN, "sm_length_overrun"),
        (Self::EMPTY_RESPONSE_BODY, "empty_response_body"),
        (Self::MISSING_FIELDS, "missing_fields"),
    ];

    /// True when no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every flag in `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Names of the flags set, in [`Self::ALL`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

impl core::ops::BitOr for Tolerated {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Tolerated {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}
