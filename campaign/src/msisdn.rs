//! Phone number normalisation.
//!
//! Invariant: every stored subscriber number is an 11-digit Chinese national mobile number
//! starting with `1`, held as a `u64`. Accepted spellings: `13800138000`, `+8613800138000`,
//! `008613800138000`, `8613800138000`; spaces and dashes are not accepted (reject
//! non-digits so typos surface at import instead of at the SMSC).

/// Why a number was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    #[error("empty number")]
    Empty,
    #[error("non-digit character {0:?}")]
    NonDigit(char),
    #[error("expected 11 national digits starting with 1, got {0} digits")]
    Length(usize),
}

/// Normalises a number to its 11-digit national form.
///
/// # Errors
/// [`MsisdnError`] if the text is empty, has a non-digit (after an optional leading `+`),
/// or does not reduce to 11 digits starting with `1`.
pub fn normalize(raw: &str) -> Result<u64, MsisdnError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(MsisdnError::Empty);
    }
    let digits = s.strip_prefix('+').unwrap_or(s);
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
        return Err(MsisdnError::NonDigit(c));
    }
    let national = if digits.len() == 15 && digits.starts_with("0086") {
        &digits[4..]
    } else if digits.len() == 13 && digits.starts_with("86") {
        &digits[2..]
    } else {
        digits
    };
    if national.len() != 11 || !national.starts_with('1') {
        return Err(MsisdnError::Length(national.len()));
    }
    // 11 ASCII digits always fit in u64.
    national
        .parse()
        .map_err(|_| MsisdnError::Length(national.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped() {
        for s in [
            "13800138000",
            "+8613800138000",
            "008613800138000",
            "8613800138000",
        ] {
            assert_eq!(normalize(s), Ok(13_800_138_000), "{s}");
        }
    }

    #[test]
    fn bad_numbers_are_rejected() {
        assert_eq!(normalize(""), Err(MsisdnError::Empty));
        assert_eq!(normalize("1380013800a"), Err(MsisdnError::NonDigit('a')));
        assert_eq!(normalize("138-0013-8000"), Err(MsisdnError::NonDigit('-')));
        assert_eq!(normalize("1380013800"), Err(MsisdnError::Length(10)));
        assert_eq!(normalize("23800138000"), Err(MsisdnError::Length(11)));
        assert_eq!(normalize("+4413800138000"), Err(MsisdnError::Length(13)));
    }
}
