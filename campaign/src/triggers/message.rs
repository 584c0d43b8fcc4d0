//! A trigger's message template: the subscriber fields of [`crate::template`] plus the
//! event's own, so the text can say where the subscriber just arrived.
//!
//! Event placeholders: `{attrs.<name>}` (an attribute of the event), `{event.type}`,
//! `{event.id}`; each takes a `|fallback` like subscriber fields (`{attrs.country|abroad}`).
//! Everything between them is an ordinary [`Template`] (subscriber fields, `{{` / `}}`).

use serde_json::Value;

use crate::error::{CampaignError, Result};
use crate::events::Event;
use crate::table::SubscriberTable;
use crate::template::Template;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Subscriber(Template),
    Event { name: String, fallback: String },
}

/// A parsed trigger template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTemplate {
    parts: Vec<Part>,
}

impl EventTemplate {
    /// Parses `src`, checking subscriber fields against `table`.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] (`template`) for an unknown field, an unclosed `{` or an
    /// unknown `event.` field.
    pub fn parse(src: &str, table: &SubscriberTable) -> Result<Self> {
        let mut parts = Vec::new();
        let mut start = 0;
        let b = src.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'{' && b.get(i + 1) == Some(&b'{') {
                i += 2;
                continue;
            }
            let rest = &src[i..];
            if b[i] == b'{' && (rest.starts_with("{attrs.") || rest.starts_with("{event.")) {
                let end = rest.find('}').ok_or_else(|| {
                    CampaignError::invalid("template", format!("unclosed `{{` at byte {i}"))
                })?;
                let inner = &rest[1..end];
                let (name, fallback) = inner.split_once('|').unwrap_or((inner, ""));
                let name = name.trim();
                if name.starts_with("event.") && !matches!(name, "event.type" | "event.id") {
                    return Err(CampaignError::invalid(
                        "template",
                        format!(
                            "unknown field `{name}` at byte {i} (event.type, event.id, attrs.<name>)"
                        ),
                    ));
                }
                if start < i {
                    parts.push(Part::Subscriber(Template::parse(&src[start..i], table)?));
                }
                parts.push(Part::Event {
                    name: name.to_owned(),
                    fallback: fallback.to_owned(),
                });
                i += end + 1;
                start = i;
                continue;
            }
            i += 1;
        }
        if start < src.len() {
            parts.push(Part::Subscriber(Template::parse(&src[start..], table)?));
        }
        Ok(Self { parts })
    }

    /// The text for subscriber `sub` and event `ev`.
    pub fn render(&self, table: &SubscriberTable, sub: u32, ev: &Event) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Subscriber(t) => out.push_str(&t.render(table, sub)),
                Part::Event { name, fallback } => {
                    let v = match name.as_str() {
                        "event.type" => ev.kind.clone(),
                        "event.id" => ev.id.clone(),
                        n => match n.strip_prefix("attrs.").and_then(|a| ev.attrs.get(a)) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(v) => v.to_string(),
                        },
                    };
                    out.push_str(if v.is_empty() { fallback } else { &v });
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
    fn event_and_subscriber_fields_render_together() {
        let mut t = SubscriberTable::default();
        t.upsert(&SubscriberRow {
            msisdn: 13_800_000_001,
            city: "Nanjing".into(),
            ..Default::default()
        });
        let tpl = EventTemplate::parse(
            "Welcome to {attrs.country|abroad}, {city} customer! {{roam}} {attrs.pct}% ({event.type})",
            &t,
        )
        .unwrap();
        let ev = Event {
            id: "e1".into(),
            msisdn: 13_800_000_001,
            kind: "roaming_arrival".into(),
            ts: 0,
            attrs: serde_json::json!({"country": "Thailand", "pct": 80})
                .as_object()
                .cloned()
                .unwrap(),
        };
        assert_eq!(
            tpl.render(&t, 0, &ev),
            "Welcome to Thailand, Nanjing customer! {roam} 80% (roaming_arrival)"
        );
        let bare = Event {
            attrs: serde_json::Map::new(),
            ..ev
        };
        assert!(tpl.render(&t, 0, &bare).starts_with("Welcome to abroad,"));
        assert!(EventTemplate::parse("{nope}", &t).is_err());
        assert!(EventTemplate::parse("{event.when}", &t).is_err());
        assert!(EventTemplate::parse("{attrs.x", &t).is_err());
    }
}
