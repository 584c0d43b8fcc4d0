//! Message templates with per-subscriber field substitution.
//!
//! Syntax: literal text with `{field}` placeholders naming a subscriber attribute
//! (`msisdn`, `brand`, `region`, `city`, `arpu`, `age`, `plan` or a custom column);
//! `{field|fallback}` uses `fallback` when the attribute is missing; `{{` and `}}` are
//! literal braces. Templates are validated against the table once (unknown field → error
//! naming it and its byte position) and then rendered without re-parsing.

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
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field { name, fallback } => {
                    let v = table.field_text(name, id).unwrap_or_default();
                    if v.is_empty() {
                        out.push_str(fallback.as_deref().unwrap_or(""));
                    } else {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
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
}
