//! The test oracle for [`super::eval`]: the row-at-a-time evaluator it replaced (one
//! predicate call per row through a `dyn Fn`, hits pushed into a roaring bitmap one by one).
//! Slow, obviously right, and kept only so the differential tests can hold the column scans
//! to the answers users got before.

use roaring::RoaringBitmap;

use super::eval::{EvalError, check_literals};
use super::{CmpOp, Expr, Literal, Operand};
use crate::table::{ColumnRef, SubscriberTable};

/// Evaluates `expr` over every subscriber, one row at a time.
pub(super) fn evaluate(expr: &Expr, t: &SubscriberTable) -> Result<RoaringBitmap, EvalError> {
    Ok(match expr {
        Expr::And(a, b) => evaluate(a, t)? & evaluate(b, t)?,
        Expr::Or(a, b) => evaluate(a, t)? | evaluate(b, t)?,
        Expr::Not(a) => {
            let mut all = RoaringBitmap::new();
            all.insert_range(0..t.len());
            all - evaluate(a, t)?
        }
        Expr::Cmp {
            operand,
            op,
            value,
            column,
        } => {
            check_literals(t, operand, *column, std::slice::from_ref(value))?;
            let op = *op;
            scan(t, operand, *column, &|v: &Value<'_>| v.cmp_lit(op, value))?
        }
        Expr::In {
            operand,
            negated,
            list,
            column,
        } => {
            check_literals(t, operand, *column, list)?;
            let hit = |v: &Value<'_>| list.iter().any(|l| v.cmp_lit(CmpOp::Eq, l));
            if *negated {
                scan(t, operand, *column, &|v: &Value<'_>| !hit(v))?
            } else {
                scan(t, operand, *column, &hit)?
            }
        }
    })
}

/// A present attribute value.
enum Value<'a> {
    Str(&'a str),
    Num(f64),
}

impl Value<'_> {
    fn cmp_lit(&self, op: CmpOp, lit: &Literal) -> bool {
        match (self, lit) {
            (Value::Str(s), Literal::Str(l)) => op.holds(s, &l.as_str()),
            (Value::Str(s), Literal::Num(n)) => s.parse::<f64>().is_ok_and(|x| op.holds(&x, n)),
            (Value::Num(x), Literal::Num(n)) => op.holds(x, n),
            (Value::Num(x), Literal::Str(l)) => l.parse::<f64>().is_ok_and(|n| op.holds(x, &n)),
        }
    }
}

fn scan(
    t: &SubscriberTable,
    operand: &Operand,
    column: usize,
    pred: &dyn Fn(&Value<'_>) -> bool,
) -> Result<RoaringBitmap, EvalError> {
    let (name, last_digit) = match operand {
        Operand::Column(n) => (n, false),
        Operand::LastDigit(n) => (n, true),
    };
    let col = t.column(name).ok_or_else(|| EvalError::UnknownColumn {
        column,
        name: name.clone(),
        known: t.column_names().join(", "),
    })?;
    let mut out = RoaringBitmap::new();
    match col {
        ColumnRef::Msisdn(m) => {
            for (i, &n) in m.iter().enumerate() {
                let v = if last_digit { n % 10 } else { n };
                if pred(&Value::Num(v as f64)) {
                    let _ = out.try_push(i as u32); // ids ascend: cannot fail
                }
            }
        }
        ColumnRef::Num(xs) => {
            for (i, &x) in xs.iter().enumerate() {
                if x.is_nan() {
                    continue;
                }
                let v = if last_digit {
                    (x.abs().trunc() % 10.0).trunc()
                } else {
                    x
                };
                if pred(&Value::Num(v)) {
                    let _ = out.try_push(i as u32); // ids ascend: cannot fail
                }
            }
        }
        ColumnRef::Str(c) => {
            if last_digit {
                return Err(EvalError::NeedsNumericArg {
                    column,
                    name: name.clone(),
                });
            }
            // Code 0 is "missing": never matches.
            let hits: Vec<bool> = c
                .dict
                .values()
                .enumerate()
                .map(|(code, v)| code != 0 && pred(&Value::Str(v)))
                .collect();
            for (i, &code) in c.codes.iter().enumerate() {
                if hits.get(code as usize).copied().unwrap_or(false) {
                    let _ = out.try_push(i as u32); // ids ascend: cannot fail
                }
            }
        }
    }
    Ok(out)
}
