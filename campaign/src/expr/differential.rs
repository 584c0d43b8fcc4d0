//! The column scans ([`super::eval`]) against the row-at-a-time oracle
//! ([`super::reference`]) over random tables and random conditions: same members, same
//! count, same error.

use proptest::prelude::*;

use super::{CmpOp, Expr, Literal, Operand, count, evaluate, reference};
use crate::table::{SubscriberRow, SubscriberTable};

const BRANDS: [&str; 4] = ["", "gotone", "mzone", "12.5"];
const REGIONS: [&str; 3] = ["", "lanzhou", "tianshui"];
const SCORES: [&str; 5] = ["", "7", "10", "x", "-3"];
const NUMS: [Option<f64>; 8] = [
    None,
    Some(0.0),
    Some(7.0),
    Some(49.99),
    Some(50.0),
    Some(-13.0),
    Some(1234.0),
    Some(f64::INFINITY),
];

fn row() -> impl Strategy<Value = (u64, usize, usize, usize, usize, usize)> {
    (
        13_800_000_000u64..13_800_000_100,
        0..4usize,
        0..3usize,
        0..5usize,
        0..8usize,
        0..8usize,
    )
}

fn table() -> impl Strategy<Value = SubscriberTable> {
    // Up to 200 rows: partial last words and several whole ones.
    proptest::collection::vec(row(), 0..200).prop_map(|rows| {
        let mut t = SubscriberTable::default();
        for (m, b, r, s, a, g) in rows {
            t.upsert(&SubscriberRow {
                msisdn: m,
                brand: BRANDS[b].into(),
                region: REGIONS[r].into(),
                arpu: NUMS[a],
                age: NUMS[g],
                custom: if SCORES[s].is_empty() {
                    Vec::new()
                } else {
                    vec![("score".into(), SCORES[s].into())]
                },
                ..Default::default()
            });
        }
        t
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        prop::sample::select(vec![
            "gotone", "mzone", "lanzhou", "tianshui", "12.5", "7", "50", "x", ""
        ])
        .prop_map(|s| Literal::Str(s.to_owned())),
        prop::sample::select(vec![
            0.0,
            7.0,
            10.0,
            12.5,
            49.99,
            50.0,
            -13.0,
            4.0,
            13_800_000_042.0,
            f64::NAN
        ])
        .prop_map(Literal::Num),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop::sample::select(vec![
        Operand::Column("brand".into()),
        Operand::Column("region".into()),
        Operand::Column("score".into()),
        Operand::Column("arpu".into()),
        Operand::Column("age".into()),
        Operand::Column("msisdn".into()),
        Operand::Column("nope".into()),
        Operand::LastDigit("msisdn".into()),
        Operand::LastDigit("arpu".into()),
        Operand::LastDigit("brand".into()),
    ])
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ])
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (operand(), op(), literal()).prop_map(|(operand, op, value)| Expr::Cmp {
            operand,
            op,
            value,
            column: 1
        }),
        (
            operand(),
            any::<bool>(),
            proptest::collection::vec(literal(), 0..4)
        )
            .prop_map(|(operand, negated, list)| Expr::In {
                operand,
                negated,
                list,
                column: 1
            }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn column_scans_equal_the_row_at_a_time_oracle(t in table(), e in expr()) {
        let want = reference::evaluate(&e, &t);
        let got = evaluate(&e, &t);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(count(&e, &t), want.map(|b| b.len()));
    }
}
