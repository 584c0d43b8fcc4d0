//! A trigger's condition, checked against ONE event and ONE subscriber.
//!
//! Same grammar and semantics as segment conditions ([`crate::expr`]), so a planner writes
//! `type = "usage_threshold" and attrs.percent >= 80 and plan in ["4g_58","4g_88"]` the
//! way they write a segment. The segment evaluator scans whole columns into a bitmap; an
//! event concerns one subscriber, so this evaluator walks the same [`Expr`] for one row.
//!
//! Names: `type`, `id` and `ts` are the event's own fields, `attrs.<name>` an event
//! attribute, anything else a subscriber attribute (built-in or custom column; `msisdn` is
//! the subscriber's, the same number as the event's). An event name shadows a subscriber
//! column of the same name. As in segments, a comparison never
//! matches a missing value (a missing attribute, a number compared with text that is not a
//! number), `not` is the complement.

use serde_json::Value as Json;

use crate::error::{CampaignError, Result};
use crate::events::Event;
use crate::expr::{self, CmpOp, Expr, Literal, Operand};
use crate::table::{ColumnRef, SubscriberTable};

/// A parsed, name-checked condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    expr: Option<Expr>,
}

/// Where a name's value comes from.
enum Source<'a> {
    Type,
    Id,
    Ts,
    Attr(&'a str),
    Subscriber(&'a str),
}

fn source(name: &str) -> Source<'_> {
    match name {
        "type" => Source::Type,
        "id" => Source::Id,
        "ts" => Source::Ts,
        _ => match name.strip_prefix("attrs.") {
            Some(a) => Source::Attr(a),
            None => Source::Subscriber(name),
        },
    }
}

enum Val<'a> {
    Str(std::borrow::Cow<'a, str>),
    Num(f64),
}

impl Val<'_> {
    fn cmp(&self, op: CmpOp, lit: &Literal) -> bool {
        match (self, lit) {
            (Val::Str(s), Literal::Str(l)) => op.holds(&s.as_ref(), &l.as_str()),
            (Val::Str(s), Literal::Num(n)) => s.parse::<f64>().is_ok_and(|x| op.holds(&x, n)),
            (Val::Num(x), Literal::Num(n)) => op.holds(x, n),
            (Val::Num(x), Literal::Str(l)) => l.parse::<f64>().is_ok_and(|n| op.holds(x, &n)),
        }
    }
}

impl Condition {
    /// Parses `src` (empty = always true) and checks every subscriber name against `table`.
    ///
    /// # Errors
    /// [`CampaignError::Parse`] with the column; [`CampaignError::Invalid`] (`condition`)
    /// for an unknown subscriber attribute or `last_digit` of an event field.
    pub fn parse(src: &str, table: &SubscriberTable) -> Result<Self> {
        if src.trim().is_empty() {
            return Ok(Self { expr: None });
        }
        let e = expr::parse(src)?;
        check(&e, table)?;
        Ok(Self { expr: Some(e) })
    }

    /// Whether event `ev` about subscriber `sub` satisfies the condition.
    pub fn matches(&self, ev: &Event, table: &SubscriberTable, sub: u32) -> bool {
        self.expr.as_ref().is_none_or(|e| eval(e, ev, table, sub))
    }
}

fn check(e: &Expr, table: &SubscriberTable) -> Result<()> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(a, table)?;
            check(b, table)
        }
        Expr::Not(a) => check(a, table),
        Expr::Cmp { operand, .. } | Expr::In { operand, .. } => {
            let (name, last_digit) = match operand {
                Operand::Column(n) => (n, false),
                Operand::LastDigit(n) => (n, true),
            };
            match source(name) {
                Source::Subscriber(s) if table.column(s).is_none() => {
                    return Err(CampaignError::invalid(
                        "condition",
                        format!(
                            "unknown attribute `{s}` (event: type, id, ts, attrs.<name>; subscriber: {})",
                            table.column_names().join(", ")
                        ),
                    ));
                }
                Source::Subscriber(_) => {}
                _ if last_digit => {
                    return Err(CampaignError::invalid(
                        "condition",
                        format!("last_digit() takes a subscriber attribute, not `{name}`"),
                    ));
                }
                _ => {}
            }
            Ok(())
        }
    }
}

fn value<'a>(
    name: &str,
    last_digit: bool,
    ev: &'a Event,
    t: &'a SubscriberTable,
    sub: u32,
) -> Option<Val<'a>> {
    let v = match source(name) {
        Source::Type => Val::Str(ev.kind.as_str().into()),
        Source::Id => Val::Str(ev.id.as_str().into()),
        Source::Ts => Val::Num(ev.ts as f64),
        Source::Attr(a) => match ev.attrs.get(a)? {
            Json::String(s) => Val::Str(s.as_str().into()),
            Json::Number(n) => Val::Num(n.as_f64()?),
            Json::Bool(b) => Val::Str(if *b { "true" } else { "false" }.into()),
            _ => return None,
        },
        Source::Subscriber(s) => {
            let i = sub as usize;
            match t.column(s)? {
                ColumnRef::Msisdn(m) => Val::Num(*m.get(i)? as f64),
                ColumnRef::Num(xs) => {
                    let x = *xs.get(i)?;
                    if x.is_nan() {
                        return None;
                    }
                    Val::Num(x)
                }
                ColumnRef::Str(c) => {
                    let code = *c.codes.get(i)?;
                    if code == 0 {
                        return None;
                    }
                    Val::Str(c.dict.value(code).into())
                }
            }
        }
    };
    if !last_digit {
        return Some(v);
    }
    match v {
        Val::Num(x) => Some(Val::Num((x.abs().trunc() % 10.0).trunc())),
        Val::Str(_) => None,
    }
}

fn eval(e: &Expr, ev: &Event, t: &SubscriberTable, sub: u32) -> bool {
    match e {
        Expr::And(a, b) => eval(a, ev, t, sub) && eval(b, ev, t, sub),
        Expr::Or(a, b) => eval(a, ev, t, sub) || eval(b, ev, t, sub),
        Expr::Not(a) => !eval(a, ev, t, sub),
        Expr::Cmp {
            operand,
            op,
            value: lit,
            ..
        } => operand_value(operand, ev, t, sub).is_some_and(|v| v.cmp(*op, lit)),
        Expr::In {
            operand,
            negated,
            list,
            ..
        } => operand_value(operand, ev, t, sub)
            .is_some_and(|v| list.iter().any(|l| v.cmp(CmpOp::Eq, l)) != *negated),
    }
}

fn operand_value<'a>(
    o: &'a Operand,
    ev: &'a Event,
    t: &'a SubscriberTable,
    sub: u32,
) -> Option<Val<'a>> {
    match o {
        Operand::Column(n) => value(n, false, ev, t, sub),
        Operand::LastDigit(n) => value(n, true, ev, t, sub),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::SubscriberRow;

    fn table() -> SubscriberTable {
        let mut t = SubscriberTable::default();
        t.upsert(&SubscriberRow {
            msisdn: 13_800_000_001,
            plan: "4g_58".into(),
            arpu: Some(40.0),
            ..Default::default()
        });
        t.upsert(&SubscriberRow {
            msisdn: 13_800_000_002,
            plan: "5g_99".into(),
            ..Default::default()
        });
        t
    }

    fn ev(kind: &str, attrs: serde_json::Value) -> Event {
        Event {
            id: "e".into(),
            msisdn: 13_800_000_001,
            kind: kind.into(),
            ts: 0,
            attrs: attrs.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn event_and_subscriber_names_mix_like_the_issue_example() {
        let t = table();
        let c = Condition::parse(
            r#"type = "usage_threshold" and attrs.percent >= 80 and plan in ["4g_58","4g_88"]"#,
            &t,
        )
        .unwrap();
        let hit = ev("usage_threshold", serde_json::json!({"percent": 85}));
        assert!(c.matches(&hit, &t, 0));
        assert!(!c.matches(&hit, &t, 1), "plan 5g_99");
        assert!(!c.matches(
            &ev("usage_threshold", serde_json::json!({"percent": 79})),
            &t,
            0
        ));
        assert!(
            !c.matches(&ev("usage_threshold", serde_json::json!({})), &t, 0),
            "missing attr"
        );
        let not = Condition::parse("not attrs.country = \"CN\" and arpu > 10", &t).unwrap();
        assert!(not.matches(
            &ev("roaming_arrival", serde_json::json!({"country": "TH"})),
            &t,
            0
        ));
        assert!(
            !not.matches(
                &ev("roaming_arrival", serde_json::json!({"country": "TH"})),
                &t,
                1
            ),
            "arpu missing"
        );
        assert!(Condition::parse("", &t).unwrap().matches(&hit, &t, 1));
    }

    #[test]
    fn unknown_subscriber_attributes_are_refused() {
        let t = table();
        assert!(matches!(
            Condition::parse("colour = \"red\"", &t),
            Err(CampaignError::Invalid {
                field: "condition",
                ..
            })
        ));
        assert!(Condition::parse("attrs.anything = 1", &t).is_ok());
        assert!(matches!(
            Condition::parse("attrs.x >", &t),
            Err(CampaignError::Parse(_))
        ));
    }
}
