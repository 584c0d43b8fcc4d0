//! Condition expressions over subscriber attributes: lexer, Pratt parser, evaluator.
//!
//! Grammar (EBNF; keywords case-insensitive, whitespace free between tokens):
//!
//! ```text
//! expr       = disjunct , { "or" , disjunct } ;
//! disjunct   = conjunct , { "and" , conjunct } ;
//! conjunct   = "not" , conjunct | "(" , expr , ")" | comparison ;
//! comparison = operand , ( cmp_op , literal | [ "not" ] , "in" , list ) ;
//! operand    = ident | ident , "(" , ident , ")" ;      (* function: last_digit(msisdn) *)
//! cmp_op     = "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;
//! list       = "[" , [ literal , { "," , literal } ] , "]" ;
//! literal    = string | number ;
//! string     = '"' , { char | '\"' | '\\' } , '"' | "'" , { char } , "'" ;
//! number     = [ "-" ] , digit , { digit } , [ "." , { digit } ] ;
//! ident      = ( letter | "_" | non-ASCII ) , { letter | digit | "_" | "." | non-ASCII } ;
//! ```
//!
//! Precedence: `not` binds tighter than `and`, which binds tighter than `or`.
//!
//! Semantics: a comparison never matches a subscriber whose attribute is missing (empty
//! string / no number) — including `!=`; `not` is the set complement over all subscribers,
//! so `not brand = "x"` does include subscribers with no brand. String attributes compared
//! with a number literal are parsed as numbers (non-numeric values never match), so custom
//! CSV columns can be numeric. `last_digit(msisdn)` is the number's last decimal digit.
//!
//! Errors name the 1-based character column and what was expected, e.g.
//! `column 19: expected a string or number literal, found end of input`.

mod bits;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod reference;

pub use eval::{EvalError, count, evaluate};
pub use lexer::{Tok, Token, lex};

/// A parse failure at a column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based character column.
    pub column: usize,
    pub expected: String,
    pub found: String,
}

impl ParseError {
    pub(crate) fn at(src: &str, offset: usize, expected: &str, found: &str) -> Self {
        Self {
            column: parser::column_of(src, offset),
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// Whether `a op b` holds (the segment scan and the per-event trigger check share it).
    pub fn holds<T: PartialOrd>(self, a: &T, b: &T) -> bool {
        match self {
            Self::Eq => a == b,
            Self::Ne => a != b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
        }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Literal {
    Str(String),
    Num(f64),
}

/// Left side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Operand {
    Column(String),
    /// `last_digit(col)`: last decimal digit of a number column.
    LastDigit(String),
}

/// Parsed expression. `column` is the 1-based column of the comparison (for eval errors).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Expr {
    And(Box<Self>, Box<Self>),
    Or(Box<Self>, Box<Self>),
    Not(Box<Self>),
    Cmp {
        operand: Operand,
        op: CmpOp,
        value: Literal,
        column: usize,
    },
    In {
        operand: Operand,
        negated: bool,
        list: Vec<Literal>,
        column: usize,
    },
}

/// Parses a condition expression.
///
/// # Errors
/// [`ParseError`] naming the column and what was expected.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    parser::Parser::new(src, toks).parse_all()
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
