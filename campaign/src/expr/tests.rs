use super::*;
use crate::table::{SubscriberRow, SubscriberTable};

fn table() -> SubscriberTable {
    let mut t = SubscriberTable::default();
    let rows = [
        (13_800_000_001, "gotone", "lanzhou", Some(150.0), Some(30.0)),
        (13_800_000_002, "gotone", "tianshui", Some(99.0), Some(40.0)),
        (13_800_000_003, "mzone", "lanzhou", Some(200.0), Some(20.0)),
        (13_800_000_004, "", "baiyin", None, None),
        (
            13_800_000_005,
            "easyown",
            "tianshui",
            Some(100.0),
            Some(61.0),
        ),
    ];
    for (m, b, r, a, g) in rows {
        t.upsert(&SubscriberRow {
            msisdn: m,
            brand: b.into(),
            region: r.into(),
            arpu: a,
            age: g,
            custom: vec![("score".into(), format!("{}", m % 10 * 10))],
            ..Default::default()
        });
    }
    t
}

fn ids(src: &str) -> Vec<u32> {
    let e = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    evaluate(&e, &table()).unwrap().iter().collect()
}

#[test]
fn brief_example() {
    assert_eq!(
        ids(r#"brand = "gotone" and arpu >= 100 and region in ["lanzhou","tianshui"]"#),
        vec![0]
    );
}

#[test]
fn precedence_and_parentheses() {
    // and binds tighter than or.
    assert_eq!(
        ids(r#"brand = "mzone" or brand = "gotone" and arpu < 100"#),
        vec![1, 2]
    );
    assert_eq!(
        ids(r#"(brand = "mzone" or brand = "gotone") and arpu < 100"#),
        vec![1]
    );
    // not binds tighter than and.
    assert_eq!(
        ids(r#"not brand = "gotone" and region = "lanzhou""#),
        vec![2]
    );
    assert_eq!(
        ids(r#"not (brand = "gotone" and region = "lanzhou")"#),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn missing_values_never_match_but_not_includes_them() {
    assert_eq!(ids(r#"brand != "gotone""#), vec![2, 4]);
    assert_eq!(ids(r#"not brand = "gotone""#), vec![2, 3, 4]);
    assert_eq!(ids("arpu > 0"), vec![0, 1, 2, 4]);
}

#[test]
fn in_not_in_functions_and_numeric_text() {
    assert_eq!(ids("last_digit(msisdn) in [1,3]"), vec![0, 2]);
    assert_eq!(ids(r#"region not in ["lanzhou", 'tianshui']"#), vec![3]);
    assert_eq!(ids("score >= 30"), vec![2, 3, 4]);
    assert_eq!(ids("age >= 20 AND age <= 40"), vec![0, 1, 2]);
    assert_eq!(ids("msisdn = 13800000005"), vec![4]);
    assert_eq!(ids("arpu in []"), Vec::<u32>::new());
}

#[test]
fn parse_errors_name_column_and_expectation() {
    let cases = [
        ("brand = ", 9, "a string or number literal", "end of input"),
        (
            "brand gotone",
            7,
            "a comparison operator (= != < <= > >= in, not in)",
            "identifier `gotone`",
        ),
        ("(arpu > 1", 10, "`)`", "end of input"),
        (
            "arpu > 1 brand = 'x'",
            10,
            "`and`, `or` or end of input",
            "identifier `brand`",
        ),
        ("region in [\"a\" \"b\"]", 16, "`,` or `]`", "string \"b\""),
        ("and x = 1", 1, "a column name, `not` or `(`", "`and`"),
        ("brand = \"gotone", 16, "closing \"", "end of input"),
        ("arpu > 1 & age < 3", 10, "a token", "`&`"),
        ("品牌 = 1 or = 2", 11, "a column name, `not` or `(`", "`=`"),
        ("region not ['a']", 12, "`in` after `not`", "`[`"),
        (
            "foo(msisdn) = 1",
            1,
            "a known function (last_digit)",
            "`foo`",
        ),
    ];
    for (src, column, expected, found) in cases {
        let e = parse(src).expect_err(src);
        assert_eq!(
            e,
            ParseError {
                column,
                expected: expected.into(),
                found: found.into()
            },
            "{src}"
        );
    }
    assert_eq!(
        parse("brand = ").unwrap_err().to_string(),
        "column 9: expected a string or number literal, found end of input"
    );
}

#[test]
fn eval_errors_name_column() {
    let t = table();
    let e = evaluate(&parse("arpu > 1 and colour = 'red'").unwrap(), &t).unwrap_err();
    assert!(
        matches!(e, EvalError::UnknownColumn { column: 14, .. }),
        "{e}"
    );
    let e = evaluate(&parse("arpu = 'high'").unwrap(), &t).unwrap_err();
    assert_eq!(
        e,
        EvalError::NeedsNumber {
            column: 1,
            name: "arpu".into()
        }
    );
    let e = evaluate(&parse("last_digit(brand) = 1").unwrap(), &t).unwrap_err();
    assert!(matches!(e, EvalError::NeedsNumericArg { column: 1, .. }));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    #[test]
    fn never_panics_on_arbitrary_input(s in "\\PC{0,40}") {
        let _ = parse(&s);
    }

    #[test]
    fn and_or_match_set_algebra(a in 0.0f64..250.0, b in 0.0f64..250.0) {
        let t = table();
        let x = evaluate(&parse(&format!("arpu >= {a}")).unwrap(), &t).unwrap();
        let y = evaluate(&parse(&format!("arpu < {b}")).unwrap(), &t).unwrap();
        let and = evaluate(&parse(&format!("arpu >= {a} and arpu < {b}")).unwrap(), &t).unwrap();
        let or = evaluate(&parse(&format!("arpu >= {a} or arpu < {b}")).unwrap(), &t).unwrap();
        proptest::prop_assert_eq!(and, &x & &y);
        proptest::prop_assert_eq!(or, &x | &y);
    }
}
