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

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for (open, close) in [("(", ")"), ("not ", "")] {
        let deep = format!(
            "{}arpu > 1{}",
            open.repeat(64 * 1024 / open.len()),
            close.repeat(64 * 1024 / open.len())
        );
        let e = parse(&deep).expect_err("too deep");
        assert!(e.expected.contains("nested"), "{e:?}");
    }
    let ok = format!(
        "{}arpu > 1{}",
        "(".repeat(parser::MAX_DEPTH),
        ")".repeat(parser::MAX_DEPTH)
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn long_chains_are_bounded() {
    let t = table();
    let longest = vec!["arpu > 1"; parser::MAX_OPERATORS + 1].join(" or ");
    assert!(evaluate(&parse(&longest).expect("at the limit"), &t).is_ok());
    // 64 KB of `and`s: an error, not a tree deep enough to overflow the stack.
    let flat = vec!["arpu > 1"; 5_000].join(" and ");
    let e = parse(&flat).expect_err("too long");
    assert!(e.expected.contains("at most"), "{e:?}");
}

/// Fuzz cases: `default`, or 1 000 000 with `SLUICE_FUZZ_LONG=1`.
fn fuzz_cases(default: u32) -> u32 {
    if std::env::var("SLUICE_FUZZ_LONG").is_ok_and(|v| v == "1") {
        1_000_000
    } else {
        default
    }
}

/// Tokens of the grammar (and near misses), joined into inputs that get past the lexer.
const TOKENS: &[&str] = &[
    "arpu",
    "brand",
    "city",
    "age",
    "msisdn",
    "last_digit(",
    "(",
    ")",
    ">=",
    ">",
    "<",
    "<=",
    "=",
    "!=",
    "and",
    "or",
    "not",
    "in",
    "[",
    "]",
    ",",
    "'x'",
    "\"y\"",
    "12",
    "1.5",
    "-3",
    "1e400",
    "99999999999999999999999",
    "'",
    "\"",
    "é",
    "\u{0}",
    " ",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(fuzz_cases(100_000)))]
    #[test]
    fn never_panics_on_arbitrary_input(s in "\\PC{0,40}") {
        let _ = parse(&s);
    }

    /// Sequences of grammar tokens parse or fail with a column; what parses evaluates.
    #[test]
    fn token_soup_never_panics(picks in proptest::collection::vec(0usize..TOKENS.len(), 0..60), spaced in proptest::prelude::any::<bool>()) {
        let sep = if spaced { " " } else { "" };
        let s = picks.iter().map(|&i| TOKENS[i]).collect::<Vec<_>>().join(sep);
        if let Ok(e) = parse(&s) {
            let _ = evaluate(&e, &table());
        }
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
