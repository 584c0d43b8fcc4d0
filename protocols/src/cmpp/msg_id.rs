//! Msg_Id: the ISMG's 64-bit message identifier and its packed time/gateway/sequence parts.
//!
//! Bit layout (most significant first, as in the CMPP 2.0/3.0 specifications and every
//! ISMG we know of):
//!
//! | bits   | width | part            |
//! |--------|-------|-----------------|
//! | 63..60 | 4     | month (1–12)    |
//! | 59..55 | 5     | day (1–31)      |
//! | 54..50 | 5     | hour (0–23)     |
//! | 49..44 | 6     | minute (0–59)   |
//! | 43..38 | 6     | second (0–59)   |
//! | 37..16 | 22    | gateway (ISMG) code |
//! | 15..0  | 16    | sequence        |
//!
//! It travels as a big-endian u64. Text forms differ between ISMGs and SP platforms:
//! - `Display` prints the plain decimal u64 (up to 20 digits); [`MsgId::to_padded_decimal`]
//!   zero-pads it to exactly 20 digits, the "20-digit" form some ISMGs and DLR texts use.
//! - [`MsgId::to_readable`] prints the parts as `MMDDHHMMSS` + gateway (7 digits, since 22
//!   bits reach 4 194 303) + sequence (5 digits): 22 digits in all. The brief called this
//!   form 20 digits; it cannot be, and common ISMG software (e.g. SMSGate) also uses 22.
//! - `{:x}` prints 16 lowercase hex digits, the form some libraries log.

use std::fmt;
use std::str::FromStr;

/// An ISMG message id (the raw wire value; any 64-bit value is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MsgId(pub u64);

/// The unpacked fields of a [`MsgId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsgIdParts {
    /// Month 1–12 (4 bits).
    pub month: u8,
    /// Day 1–31 (5 bits).
    pub day: u8,
    /// Hour 0–23 (5 bits).
    pub hour: u8,
    /// Minute 0–59 (6 bits).
    pub minute: u8,
    /// Second 0–59 (6 bits).
    pub second: u8,
    /// ISMG gateway code (22 bits).
    pub gateway: u32,
    /// Per-second sequence (16 bits).
    pub sequence: u16,
}

/// Why a Msg_Id could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgIdError {
    /// A part is outside its calendar range or bit width.
    #[error("Msg_Id {part} = {value} is out of range")]
    OutOfRange {
        /// Which part.
        part: &'static str,
        /// The rejected value.
        value: u32,
    },
    /// Text that is not one of the accepted forms.
    #[error("not a Msg_Id: {0:?}")]
    Syntax(String),
}

const GATEWAY_MAX: u32 = (1 << 22) - 1;

impl MsgId {
    /// Packs parts, checking calendar ranges (month 1–12, day 1–31, hour ≤ 23, minute and
    /// second ≤ 59) and the 22-bit gateway width.
    pub fn from_parts(p: MsgIdParts) -> Result<Self, MsgIdError> {
        let check = |part: &'static str, value: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(MsgIdError::OutOfRange { part, value })
            }
        };
        check("month", p.month.into(), 1, 12)?;
        check("day", p.day.into(), 1, 31)?;
        check("hour", p.hour.into(), 0, 23)?;
        check("minute", p.minute.into(), 0, 59)?;
        check("second", p.second.into(), 0, 59)?;
        check("gateway", p.gateway, 0, GATEWAY_MAX)?;
        Ok(Self(
            (u64::from(p.month) << 60)
                | (u64::from(p.day) << 55)
                | (u64::from(p.hour) << 50)
                | (u64::from(p.minute) << 44)
                | (u64::from(p.second) << 38)
                | (u64::from(p.gateway) << 16)
                | u64::from(p.sequence),
        ))
    }

    /// Unpacks the bit fields. Never fails: a peer's id may carry out-of-range parts,
    /// which are returned as found.
    pub const fn parts(self) -> MsgIdParts {
        let v = self.0;
        MsgIdParts {
            month: ((v >> 60) & 0xF) as u8,
            day: ((v >> 55) & 0x1F) as u8,
            hour: ((v >> 50) & 0x1F) as u8,
            minute: ((v >> 44) & 0x3F) as u8,
            second: ((v >> 38) & 0x3F) as u8,
            gateway: ((v >> 16) & GATEWAY_MAX as u64) as u32,
            sequence: (v & 0xFFFF) as u16,
        }
    }

    /// The decimal u64 zero-padded to 20 digits.
    pub fn to_padded_decimal(self) -> String {
        format!("{:020}", self.0)
    }

    /// The 22-digit `MMDDHHMMSS` + gateway(7) + sequence(5) form.
    pub fn to_readable(self) -> String {
        let p = self.parts();
        format!(
            "{:02}{:02}{:02}{:02}{:02}{:07}{:05}",
            p.month, p.day, p.hour, p.minute, p.second, p.gateway, p.sequence
        )
    }

    /// Parses the 22-digit readable form (inverse of [`MsgId::to_readable`] for ids whose
    /// parts are in range).
    pub fn parse_readable(s: &str) -> Result<Self, MsgIdError> {
        let syntax = || MsgIdError::Syntax(s.to_owned());
        if s.len() != 22 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| syntax());
        let small = |r: std::ops::Range<usize>| num(r).map(|v| v as u8);
        let sequence = num(17..22)?;
        if sequence > u32::from(u16::MAX) {
            return Err(MsgIdError::OutOfRange {
                part: "sequence",
                value: sequence,
            });
        }
        Self::from_parts(MsgIdParts {
            month: small(0..2)?,
            day: small(2..4)?,
            hour: small(4..6)?,
            minute: small(6..8)?,
            second: small(8..10)?,
            gateway: num(10..17)?,
            sequence: sequence as u16,
        })
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Accepts the decimal u64 (with or without zero padding) and the 22-digit readable form.
impl FromStr for MsgId {
    type Err = MsgIdError;

    fn from_str(s: &str) -> Result<Self, MsgIdError> {
        if s.len() == 22 {
            return Self::parse_readable(s);
        }
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MsgIdError::Syntax(s.to_owned()));
        }
        s.parse::<u64>()
            .map(Self)
            .map_err(|_| MsgIdError::Syntax(s.to_owned()))
    }
}

impl From<u64> for MsgId {
    fn from(v: u64) -> Self {
        Self(v)
    }
}
