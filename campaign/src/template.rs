//! Message templates with per-subscriber field substitution.
//!
//! Syntax: literal text with `{field}` placeholders naming a subscriber attribute
//! (`msisdn`, `brand`, `region`, `city`, `arpu`, `age`, `plan` or a custom column);
//! `{field|fallback}` uses `fallback` when the attribute is missing; `{{` and `}}` are
//! literal braces. Templates are validated against the table once (unknown field → error
//! naming it and its byte position) and then rendered without re-parsing.
//!
//! WAP Push ([`PushSpec`], bulk sends on channel `wap_push`): the message is a Service
//! Indication whose text is the (group) template and whose URL is [`PushSpec::href`], a
//! template too. Values substituted into the URL are percent-encoded (RFC 3986 unreserved
//! characters kept), so any subscriber value gives a valid URL; the literal part must start
//! with `http://` or `https://`.
//!
//! MMS ([`MmsSpec`], bulk sends on channel `mms`): the (group) template is the text under the
//! first image, `mms.image` that image (a URL the gateway fetches once per request), and
//! `mms.slides` further slides (image URL and/or text template each). The subject is literal,
//! so every subscriber's message differs only in its texts.

use serde::{Deserialize, Serialize};

use crate::error::{CampaignError, Result};
use crate::table::SubscriberTable;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field {
        name: String,
        fallback: Option<String>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `src` and checks every field exists in `table`.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] for an unclosed `{`, a stray `}` or an unknown field.
    pub fn parse(src: &str, table: &SubscriberTable) -> Result<Self> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut it = src.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            match c {
                '{' if it.peek().map(|p| p.1) == Some('{') => {
                    it.next();
                    text.push('{');
                }
                '}' if it.peek().map(|p| p.1) == Some('}') => {
                    it.next();
                    text.push('}');
                }
                '}' => {
                    return Err(CampaignError::invalid(
                        "template",
                        format!("stray `}}` at byte {i}"),
                    ));
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let end = rest.find('}').ok_or_else(|| {
                        CampaignError::invalid("template", format!("unclosed `{{` at byte {i}"))
                    })?;
                    let inner = &rest[..end];
                    let (name, fallback) = match inner.split_once('|') {
                        Some((n, f)) => (n.trim(), Some(f.to_owned())),
                        None => (inner.trim(), None),
                    };
                    if table.column(name).is_none() {
                        return Err(CampaignError::invalid(
                            "template",
                            format!("unknown field `{name}` at byte {i}"),
                        ));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field {
                        name: name.to_owned(),
                        fallback,
                    });
                    while it.peek().is_some_and(|p| p.0 <= i + 1 + end) {
                        it.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { parts })
    }

    /// Renders the text for subscriber `id`.
    pub fn render(&self, table: &SubscriberTable, id: u32) -> String {
        self.render_with(table, id, |v, out| out.push_str(v))
    }

    /// Renders with every substituted value (field or fallback) written by `put`.
    fn render_with(
        &self,
        table: &SubscriberTable,
        id: u32,
        put: impl Fn(&str, &mut String),
    ) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field { name, fallback } => {
                    let v = table.field_text(name, id).unwrap_or_default();
                    if v.is_empty() {
                        put(fallback.as_deref().unwrap_or(""), &mut out);
                    } else {
                        put(&v, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// SI `action` values (WAP-167 §8.2.2.1) the gateway accepts.
pub const SI_ACTIONS: [&str; 5] = [
    "signal-none",
    "signal-low",
    "signal-medium",
    "signal-high",
    "delete",
];

/// The WAP Push part of a bulk send on channel `wap_push`: a Service Indication whose text is
/// the bulk's template (per group) and whose URL is `href`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSpec {
    /// URL template, e.g. `https://m.example.com/offer?c={city}`.
    pub href: String,
    /// SI action (`signal-high`, …); the handset's default (`signal-medium`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A parsed [`PushSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTemplate {
    href: Template,
    action: Option<String>,
}

impl PushTemplate {
    /// Parses and checks `spec` against `table`.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] (`push.href`, `push.action`) for a template error, a URL
    /// not starting with `http://` / `https://`, or an unknown action.
    pub fn parse(spec: &PushSpec, table: &SubscriberTable) -> Result<Self> {
        let href = Template::parse(&spec.href, table).map_err(|e| match e {
            CampaignError::Invalid { reason, .. } => CampaignError::invalid("push.href", reason),
            other => other,
        })?;
        let literal_start = match href.parts.first() {
            Some(Part::Text(t)) => t.as_str(),
            _ => "",
        };
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| literal_start.len() > s.len() && literal_start.starts_with(s));
        if !scheme_ok {
            return Err(CampaignError::invalid(
                "push.href",
                format!(
                    "{:?} must start with http:// or https:// and a host",
                    spec.href
                ),
            ));
        }
        if href.parts.iter().any(|p| match p {
            Part::Text(t) => t.chars().any(char::is_whitespace),
            Part::Field { .. } => false,
        }) {
            return Err(CampaignError::invalid(
                "push.href",
                format!("{:?} contains white space", spec.href),
            ));
        }
        if let Some(a) = &spec.action
            && !SI_ACTIONS.contains(&a.as_str())
        {
            return Err(CampaignError::invalid(
                "push.action",
                format!("unknown SI action {a:?}: one of {}", SI_ACTIONS.join(", ")),
            ));
        }
        Ok(Self {
            href,
            action: spec.action.clone(),
        })
    }

    /// The URL for subscriber `id`, substituted values percent-encoded.
    pub fn href(&self, table: &SubscriberTable, id: u32) -> String {
        self.href.render_with(table, id, percent_encode)
    }

    /// The SI action.
    pub fn action(&self) -> Option<&str> {
        self.action.as_deref()
    }
}

/// Most slides of an MMS bulk send (the gateway takes 20 parts: image + text per slide).
pub const MAX_MMS_SLIDES: usize = 10;

/// The MMS part of a bulk send on channel `mms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmsSpec {
    /// Subject line (literal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Image of the first slide (http/https URL), shown above the bulk's template text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Further slides after the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slides: Vec<MmsSlide>,
}

/// One further slide of an MMS bulk send: an image URL, a text template, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmsSlide {
    /// Image URL (http/https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Text template with subscriber fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One part of a rendered MMS, as the gateway's `parts` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmsPart {
    /// Media fetched by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Text (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A parsed [`MmsSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmsTemplate {
    subject: Option<String>,
    image: Option<String>,
    slides: Vec<(Option<String>, Option<Template>)>,
}

fn check_image(field: &'static str, at: &str, url: &str) -> Result<()> {
    let ok = ["http://", "https://"]
        .iter()
        .any(|s| url.len() > s.len() && url.starts_with(s))
        && !url.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(CampaignError::invalid(
            field,
            format!("{at}{url:?} must be an http:// or https:// URL without white space"),
        ))
    }
}

impl MmsTemplate {
    /// Parses and checks `spec` against `table`.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] (`mms.image`, `mms.slides` with the slide's index in the
    /// reason, `mms.subject`).
    pub fn parse(spec: &MmsSpec, table: &SubscriberTable) -> Result<Self> {
        if let Some(s) = &spec.subject
            && s.chars().any(char::is_control)
        {
            return Err(CampaignError::invalid(
                "mms.subject",
                "contains control characters",
            ));
        }
        if let Some(u) = &spec.image {
            check_image("mms.image", "", u)?;
        }
        if spec.slides.len() > MAX_MMS_SLIDES {
            return Err(CampaignError::invalid(
                "mms.slides",
                format!("{} slides exceed {MAX_MMS_SLIDES}", spec.slides.len()),
            ));
        }
        let mut slides = Vec::with_capacity(spec.slides.len());
        for (i, sl) in spec.slides.iter().enumerate() {
            if sl.image.is_none() && sl.text.is_none() {
                return Err(CampaignError::invalid(
                    "mms.slides",
                    format!("[{i}]: give an image, a text or both"),
                ));
            }
            if let Some(u) = &sl.image {
                check_image("mms.slides", &format!("[{i}].image: "), u)?;
            }
            let text = sl
                .text
                .as_deref()
                .map(|t| {
                    Template::parse(t, table).map_err(|e| match e {
                        CampaignError::Invalid { reason, .. } => {
                            CampaignError::invalid("mms.slides", format!("[{i}].text: {reason}"))
                        }
                        other => other,
                    })
                })
                .transpose()?;
            slides.push((sl.image.clone(), text));
        }
        Ok(Self {
            subject: spec.subject.clone(),
            image: spec.image.clone(),
            slides,
        })
    }

    /// The subject.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The parts for subscriber `id`: the first image, `text` (the rendered bulk template),
    /// then each further slide's image and text.
    pub fn parts(&self, table: &SubscriberTable, id: u32, text: String) -> Vec<MmsPart> {
        let image = |u: &String| MmsPart {
            url: Some(u.clone()),
            text: None,
        };
        let text_part = |t: String| MmsPart {
            url: None,
            text: Some(t),
        };
        let mut out = Vec::with_capacity(2 + 2 * self.slides.len());
        out.extend(self.image.iter().map(image));
        if !text.is_empty() {
            out.push(text_part(text));
        }
        for (img, t) in &self.slides {
            out.extend(img.iter().map(image));
            if let Some(t) = t {
                let t = t.render(table, id);
                if !t.is_empty() {
                    out.push(text_part(t));
                }
            }
        }
        out
    }
}

/// Appends `v` with every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode(v: &str, out: &mut String) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::SubscriberRow;

    #[test]
    fn renders_fields_fallbacks_and_escapes() {
        let mut t = SubscriberTable::default();
        t.upsert(&SubscriberRow {
            msisdn: 13_800_000_001,
            brand: "gotone".into(),
            arpu: Some(128.0),
            custom: vec![("name".into(), "张三".into())],
            ..Default::default()
        });
        let tpl = Template::parse(
            "{name}您好，{{全球通}} {brand} ARPU {arpu} {city|兰州} {msisdn}",
            &t,
        )
        .unwrap();
        assert_eq!(
            tpl.render(&t, 0),
            "张三您好，{全球通} gotone ARPU 128 兰州 13800000001"
        );
        assert!(
            Template::parse("hi {nope}", &t)
                .unwrap_err()
                .to_string()
                .contains("unknown field `nope` at byte 3")
        );
        assert!(Template::parse("hi {name", &t).is_err());
        assert!(Template::parse("hi }", &t).is_err());
    }

    #[test]
    fn push_href_substitutes_percent_encoded_values() {
        let mut t = SubscriberTable::default();
        t.upsert(&SubscriberRow {
            msisdn: 13_800_000_001,
            city: "兰州 west".into(),
            ..Default::default()
        });
        let spec = |href: &str| PushSpec {
            href: href.into(),
            action: Some("signal-high".into()),
        };
        let p =
            PushTemplate::parse(&spec("https://m.sluice.com/o?c={city}&m={msisdn}"), &t).unwrap();
        assert_eq!(
            p.href(&t, 0),
            "https://m.sluice.com/o?c=%E5%85%B0%E5%B7%9E%20west&m=13800000001"
        );
        assert_eq!(p.action(), Some("signal-high"));
        for bad in [
            "ftp://x/",
            "{city}",
            "http://",
            "http://a b/",
            "https://x/{nope}",
        ] {
            let e = PushTemplate::parse(&spec(bad), &t).unwrap_err().to_string();
            assert!(e.contains("push.href"), "{bad}: {e}");
        }
        let mut s = spec("http://a.com/");
        s.action = Some("loud".into());
        let e = PushTemplate::parse(&s, &t).unwrap_err().to_string();
        assert!(e.contains("push.action"), "{e}");
    }
}
