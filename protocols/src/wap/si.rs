//! Service Indication (WAP-167-ServiceInd-20010731-a) → WBXML, public id 0x05.
//!
//! Token tables (WAP-167 §9.3): tags `si` 0x05, `indication` 0x06; attribute starts
//! `action=signal-none..delete` 0x05..0x09, `created` 0x0A, `href` 0x0B, `href=http://` 0x0C,
//! `href=http://www.` 0x0D, `href=https://` 0x0E, `href=https://www.` 0x0F, `si-expires`
//! 0x10, `si-id` 0x11, `class` 0x12; URL values `.com/` 0x85, `.edu/` 0x86, `.net/` 0x87,
//! `.org/` 0x88.
//!
//! Layout produced (Kannel's byte choices): `02 05 6A 00`, `si` with content (0x45),
//! `indication` with attributes (0x80) and content (0x40) when it has text, the attributes in
//! the order href, si-id, created, si-expires, action, class, `END`, the text as an inline
//! string, `END`, `END`. The text is whitespace-normalised as Kannel does (runs of white
//! space become one space, ends trimmed); empty text means no content bit. `info`/`item`
//! elements are not supported.

use super::error::WapError;
use super::wbxml::{self, END, TAG_ATTRS, TAG_CONTENT, WapDateTime};

/// WBXML public identifier of SI 1.0.
pub const PUBLIC_ID: u32 = 0x05;

const TAG_SI: u8 = 0x05;
const TAG_INDICATION: u8 = 0x06;
const ATTR_CREATED: u8 = 0x0A;
const ATTR_HREF: u8 = 0x0B;
const ATTR_SI_EXPIRES: u8 = 0x10;
const ATTR_SI_ID: u8 = 0x11;
const ATTR_CLASS: u8 = 0x12;

/// Longest first, as in Kannel's table, so `https://www.` wins over `https://`.
const HREF_PREFIXES: [(&str, u8); 4] = [
    ("https://www.", 0x0F),
    ("http://www.", 0x0D),
    ("https://", 0x0E),
    ("http://", 0x0C),
];

/// SI `action` attribute (WAP-167 §8.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiAction {
    /// `signal-none`.
    SignalNone,
    /// `signal-low`.
    SignalLow,
    /// `signal-medium` (the default when the attribute is absent).
    SignalMedium,
    /// `signal-high`.
    SignalHigh,
    /// `delete`: remove the SI with the same si-id.
    Delete,
}

impl SiAction {
    const fn token(self) -> u8 {
        match self {
            Self::SignalNone => 0x05,
            Self::SignalLow => 0x06,
            Self::SignalMedium => 0x07,
            Self::SignalHigh => 0x08,
            Self::Delete => 0x09,
        }
    }

    /// Every action, in token order.
    pub const ALL: [Self; 5] = [
        Self::SignalNone,
        Self::SignalLow,
        Self::SignalMedium,
        Self::SignalHigh,
        Self::Delete,
    ];

    /// The action named by its XML attribute value (`signal-high`, `delete`, …).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The XML attribute value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SignalNone => "signal-none",
            Self::SignalLow => "signal-low",
            Self::SignalMedium => "signal-medium",
            Self::SignalHigh => "signal-high",
            Self::Delete => "delete",
        }
    }
}

/// An SI document: `<si><indication ...>text</indication></si>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ServiceIndication {
    /// URL the user is offered.
    pub href: Option<String>,
    /// Identity for replacing/deleting earlier SIs (defaults to href on the handset).
    pub si_id: Option<String>,
    /// Creation time; newer SIs replace older ones with the same si-id.
    pub created: Option<WapDateTime>,
    /// Expiry time after which the handset deletes the SI.
    pub si_expires: Option<WapDateTime>,
    /// Signal level or delete.
    pub action: Option<SiAction>,
    /// `class` attribute (rare).
    pub class: Option<String>,
    /// The message text shown to the user.
    pub text: String,
}

/// Collapses runs of ASCII white space into one space and trims the ends (Kannel's
/// `octstr_shrink_blanks` + `octstr_strip_blanks`).
pub(crate) fn normalise_text(text: &str) -> String {
    text.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

impl ServiceIndication {
    /// Encodes the document as WBXML.
    ///
    /// # Errors
    /// [`WapError::NulInString`] if a string holds NUL.
    pub fn to_wbxml(&self) -> Result<Vec<u8>, WapError> {
        let text = normalise_text(&self.text);
        let mut out =
            Vec::with_capacity(32 + text.len() + self.href.as_ref().map_or(0, String::len));
        wbxml::write_header(&mut out, PUBLIC_ID);
        out.push(TAG_SI | TAG_CONTENT);
        let has_attrs = self.href.is_some()
            || self.si_id.is_some()
            || self.created.is_some()
            || self.si_expires.is_some()
            || self.action.is_some()
            || self.class.is_some();
        let mut tag = TAG_INDICATION;
        if has_attrs {
            tag |= TAG_ATTRS;
        }
        if !text.is_empty() {
            tag |= TAG_CONTENT;
        }
        out.push(tag);
        if let Some(href) = &self.href {
            wbxml::write_href(&mut out, href, &HREF_PREFIXES, ATTR_HREF)?;
        }
        if let Some(id) = &self.si_id {
            out.push(ATTR_SI_ID);
            wbxml::write_inline_str(&mut out, id)?;
        }
        if let Some(d) = &self.created {
            out.push(ATTR_CREATED);
            wbxml::write_opaque(&mut out, &d.packed());
        }
        if let Some(d) = &self.si_expires {
            out.push(ATTR_SI_EXPIRES);
            wbxml::write_opaque(&mut out, &d.packed());
        }
        if let Some(a) = self.action {
            out.push(a.token());
        }
        if let Some(class) = &self.class {
            out.push(ATTR_CLASS);
            wbxml::write_inline_str(&mut out, class)?;
        }
        if has_attrs {
            out.push(END);
        }
        if !text.is_empty() {
            wbxml::write_inline_str(&mut out, &text)?;
            out.push(END);
        }
        out.push(END);
        Ok(out)
    }

    /// The textual SI document (what a PAP client posts to a PPG), attributes in the same
    /// order as [`Self::to_wbxml`] writes them.
    ///
    /// The prolog declares `encoding="UTF-8"`: without it Kannel's PPG takes the document as
    /// ISO-8859-1 and double-encodes every non-ASCII character (seen in `tests/wap_kannel.rs`).
    #[must_use]
    pub fn to_xml(&self) -> String {
        use wbxml::xml_escape as esc;
        let mut attrs = String::new();
        let mut attr = |name: &str, value: &str| {
            attrs.push_str(&format!(" {name}=\"{}\"", esc(value)));
        };
        if let Some(v) = &self.href {
            attr("href", v);
        }
        if let Some(v) = &self.si_id {
            attr("si-id", v);
        }
        if let Some(v) = &self.created {
            attr("created", &v.to_iso());
        }
        if let Some(v) = &self.si_expires {
            attr("si-expires", &v.to_iso());
        }
        if let Some(v) = self.action {
            attr("action", v.as_str());
        }
        if let Some(v) = &self.class {
            attr("class", v);
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE si PUBLIC \"-//WAPFORUM//DTD SI 1.0//EN\" \
             \"http://www.wapforum.org/DTD/si.dtd\">\n<si><indication{attrs}>{}</indication></si>\n",
            esc(&self.text)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WAP-167 Appendix example.
    #[test]
    fn spec_example() {
        let si = ServiceIndication {
            href: Some("http://www.xyz.com/email/123/abc.wml".into()),
            created: Some(WapDateTime::parse("1999-06-25T15:23:15Z").unwrap()),
            si_expires: Some(WapDateTime::parse("1999-06-30T00:00:00Z").unwrap()),
            text: "You have 4 new emails".into(),
            ..Default::default()
        };
        let mut expect = vec![0x02, 0x05, 0x6A, 0x00, 0x45, 0xC6, 0x0D, 0x03];
        expect.extend_from_slice(b"xyz\0");
        expect.push(0x85);
        expect.push(0x03);
        expect.extend_from_slice(b"email/123/abc.wml\0");
        expect.extend_from_slice(&[0x0A, 0xC3, 0x07, 0x19, 0x99, 0x06, 0x25, 0x15, 0x23, 0x15]);
        expect.extend_from_slice(&[0x10, 0xC3, 0x04, 0x19, 0x99, 0x06, 0x30, 0x01, 0x03]);
        expect.extend_from_slice(b"You have 4 new emails\0");
        expect.extend_from_slice(&[0x01, 0x01]);
        assert_eq!(si.to_wbxml().unwrap(), expect);
    }

    #[test]
    fn prefixes_actions_and_empty_text() {
        let si = ServiceIndication {
            href: Some("https://example.org/".into()),
            si_id: Some("id1".into()),
            action: Some(SiAction::Delete),
            ..Default::default()
        };
        let mut expect = vec![0x02, 0x05, 0x6A, 0x00, 0x45, 0x86, 0x0E, 0x03];
        expect.extend_from_slice(b"example\0");
        expect.extend_from_slice(&[0x88, 0x03, 0x00, 0x11, 0x03]);
        expect.extend_from_slice(b"id1\0");
        expect.extend_from_slice(&[0x09, 0x01, 0x01]);
        assert_eq!(si.to_wbxml().unwrap(), expect);
    }

    #[test]
    fn text_is_normalised_and_nul_refused() {
        let si = ServiceIndication {
            text: "  a \n\t b ".into(),
            ..Default::default()
        };
        assert_eq!(
            si.to_wbxml().unwrap(),
            [2, 5, 0x6A, 0, 0x45, 0x46, 3, b'a', b' ', b'b', 0, 1, 1]
        );
        let bad = ServiceIndication {
            text: "a\0b".into(),
            ..Default::default()
        };
        assert_eq!(bad.to_wbxml(), Err(WapError::NulInString));
    }
}
