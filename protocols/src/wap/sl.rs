//! Service Loading (WAP-168-ServiceLoad-20010731-a) → WBXML, public id 0x06.
//!
//! Token tables (WAP-168 §10.3): tag `sl` 0x05; attribute starts `action=execute-low` 0x05,
//! `execute-high` 0x06, `cache` 0x07, `href` 0x08, `href=http://` 0x09, `href=http://www.`
//! 0x0A, `href=https://` 0x0B, `href=https://www.` 0x0C; URL values as SI.
//!
//! Layout: `02 06 6A 00`, `sl` with attributes (0x85), href, action, `END`.
//!
//! Prefix choice: WAP-168's appendix example and [`HrefPrefixRule::Longest`] use
//! `http://www.` (0x0A). Kannel's SL compiler checks `http://` before `http://www.` and so
//! never emits 0x0A/0x0C; [`HrefPrefixRule::Kannel`] reproduces that byte for byte. Both
//! decode to the same URL.

use super::error::WapError;
use super::wbxml::{self, END, TAG_ATTRS};

/// WBXML public identifier of SL 1.0.
pub const PUBLIC_ID: u32 = 0x06;

const TAG_SL: u8 = 0x05;
const ATTR_HREF: u8 = 0x08;

const LONGEST: [(&str, u8); 4] = [
    ("https://www.", 0x0C),
    ("http://www.", 0x0A),
    ("https://", 0x0B),
    ("http://", 0x09),
];
const KANNEL: [(&str, u8); 4] = [
    ("http://", 0x09),
    ("http://www.", 0x0A),
    ("https://", 0x0B),
    ("https://www.", 0x0C),
];

/// Which href start token to pick when several prefixes match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HrefPrefixRule {
    /// The longest matching prefix (WAP-168 appendix example).
    #[default]
    Longest,
    /// Kannel's table order (never `http://www.` / `https://www.`).
    Kannel,
}

/// SL `action` attribute (WAP-168 §9.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlAction {
    /// `execute-low` (the default when absent).
    ExecuteLow,
    /// `execute-high`.
    ExecuteHigh,
    /// `cache`.
    Cache,
}

impl SlAction {
    const fn token(self) -> u8 {
        match self {
            Self::ExecuteLow => 0x05,
            Self::ExecuteHigh => 0x06,
            Self::Cache => 0x07,
        }
    }

    /// Every action, in token order.
    pub const ALL: [Self; 3] = [Self::ExecuteLow, Self::ExecuteHigh, Self::Cache];

    /// The action named by its XML attribute value (`execute-high`, `cache`, …).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The XML attribute value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExecuteLow => "execute-low",
            Self::ExecuteHigh => "execute-high",
            Self::Cache => "cache",
        }
    }
}

/// An SL document: `<sl href="..." action="..."/>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ServiceLoading {
    /// URL to load (required by the DTD).
    pub href: String,
    /// What the handset does with it.
    pub action: Option<SlAction>,
    /// Prefix tokenisation rule.
    pub prefix_rule: HrefPrefixRule,
}

impl ServiceLoading {
    /// Encodes the document as WBXML.
    ///
    /// # Errors
    /// [`WapError::NulInString`] if the href holds NUL.
    pub fn to_wbxml(&self) -> Result<Vec<u8>, WapError> {
        let mut out = Vec::with_capacity(16 + self.href.len());
        wbxml::write_header(&mut out, PUBLIC_ID);
        out.push(TAG_SL | TAG_ATTRS);
        let prefixes: &[(&str, u8)] = match self.prefix_rule {
            HrefPrefixRule::Longest => &LONGEST,
            HrefPrefixRule::Kannel => &KANNEL,
        };
        wbxml::write_href(&mut out, &self.href, prefixes, ATTR_HREF)?;
        if let Some(a) = self.action {
            out.push(a.token());
        }
        out.push(END);
        Ok(out)
    }

    /// The textual SL document, attributes in [`Self::to_wbxml`] order.
    ///
    /// The prolog declares `encoding="UTF-8"`: without it Kannel's PPG takes the document as
    /// ISO-8859-1 and double-encodes every non-ASCII character (seen in `tests/wap_kannel.rs`).
    #[must_use]
    pub fn to_xml(&self) -> String {
        let action = self
            .action
            .map(|a| format!(" action=\"{}\"", a.as_str()))
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE sl PUBLIC \"-//WAPFORUM//DTD SL 1.0//EN\" \
             \"http://www.wapforum.org/DTD/sl.dtd\">\n<sl href=\"{}\"{action}></sl>\n",
            wbxml::xml_escape(&self.href)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WAP-168 Appendix example.
    #[test]
    fn spec_example() {
        let sl = ServiceLoading {
            href: "http://www.xyz.com/ppaid/123/abc.wml".into(),
            ..Default::default()
        };
        let mut expect = vec![0x02, 0x06, 0x6A, 0x00, 0x85, 0x0A, 0x03];
        expect.extend_from_slice(b"xyz\0");
        expect.extend_from_slice(&[0x85, 0x03]);
        expect.extend_from_slice(b"ppaid/123/abc.wml\0");
        expect.push(0x01);
        assert_eq!(sl.to_wbxml().unwrap(), expect);
    }

    #[test]
    fn kannel_rule_and_action() {
        let sl = ServiceLoading {
            href: "http://www.xyz.com/a".into(),
            action: Some(SlAction::ExecuteHigh),
            prefix_rule: HrefPrefixRule::Kannel,
        };
        let mut expect = vec![0x02, 0x06, 0x6A, 0x00, 0x85, 0x09, 0x03];
        expect.extend_from_slice(b"www.xyz\0");
        expect.extend_from_slice(&[0x85, 0x03, b'a', 0x00, 0x06, 0x01]);
        assert_eq!(sl.to_wbxml().unwrap(), expect);
    }
}
