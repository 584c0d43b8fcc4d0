//! Pratt parser: tokens → [`Expr`].
//!
//! Binding powers: `or` 1, `and` 2 (both left-associative), prefix `not` 3. Comparisons are
//! atoms, so `not brand = "x" and arpu > 1` reads `(not (brand = "x")) and (arpu > 1)`.

use super::lexer::{Tok, Token};
use super::{CmpOp, Expr, Literal, Operand, ParseError};

/// Deepest nesting of parentheses and `not` accepted. The parser recurses once per level, so
/// without a bound a request body of `((((…` or `not not not …` would overflow the stack
/// (an abort, not an error); real conditions nest a few levels.
pub(super) const MAX_DEPTH: usize = 64;

/// Most `and` / `or` operators in one condition. A chain is parsed by a loop, but the tree
/// it builds is as deep as the chain is long, and evaluating or dropping it recurses per
/// level: 5 000 terms (40 KB of text) overflowed a 2 MB stack. Real conditions have a few.
pub(super) const MAX_OPERATORS: usize = 256;

pub(super) struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// Open parentheses and `not`s around the current position.
    depth: usize,
    /// `and` / `or` operators read so far.
    operators: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str, toks: Vec<Token>) -> Self {
        Self {
            src,
            toks,
            pos: 0,
            depth: 0,
            operators: 0,
        }
    }

    /// One level deeper, or an error past [`MAX_DEPTH`].
    fn descend(&mut self) -> Result<(), ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!(
                "a condition nested at most {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn peek(&self) -> &Token {
        // lex() always ends with Eof and we never advance past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn error(&self, expected: &str) -> ParseError {
        let t = self.peek();
        ParseError::at(self.src, t.offset, expected, &t.tok.describe())
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<(), ParseError> {
        if &self.peek().tok == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// Parses the whole input.
    pub(super) fn parse_all(mut self) -> Result<Expr, ParseError> {
        let e = self.expr(0)?;
        if self.peek().tok != Tok::Eof {
            return Err(self.error("`and`, `or` or end of input"));
        }
        Ok(e)
    }

    fn expr(&mut self, min_bp: u8) -> Result<Expr, ParseError> {
        let mut lhs = match self.peek().tok {
            Tok::Not => {
                self.descend()?;
                self.bump();
                let e = Expr::Not(Box::new(self.expr(3)?));
                self.depth -= 1;
                e
            }
            Tok::LParen => {
                self.descend()?;
                self.bump();
                let e = self.expr(0)?;
                self.expect(&Tok::RParen, "`)`")?;
                self.depth -= 1;
                e
            }
            _ => self.comparison()?,
        };
        loop {
            let (bp, is_and) = match self.peek().tok {
                Tok::Or => (1, false),
                Tok::And => (2, true),
                _ => break,
            };
            if bp <= min_bp {
                break;
            }
            if self.operators >= MAX_OPERATORS {
                return Err(self.error(&format!(
                    "end of input: a condition has at most {MAX_OPERATORS} `and`/`or`"
                )));
            }
            self.operators += 1;
            self.bump();
            let rhs = self.expr(bp)?;
            lhs = if is_and {
                Expr::And(Box::new(lhs), Box::new(rhs))
            } else {
                Expr::Or(Box::new(lhs), Box::new(rhs))
            };
        }
        Ok(lhs)
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let start = self.peek().offset;
        let column = column_of(self.src, start);
        let name = match self.peek().tok.clone() {
            Tok::Ident(s) => {
                self.bump();
                s
            }
            _ => return Err(self.error("a column name, `not` or `(`")),
        };
        let operand = if self.peek().tok == Tok::LParen {
            self.bump();
            let arg = match self.peek().tok.clone() {
                Tok::Ident(a) => {
                    self.bump();
                    a
                }
                _ => return Err(self.error("a column name")),
            };
            self.expect(&Tok::RParen, "`)`")?;
            match name.as_str() {
                "last_digit" => Operand::LastDigit(arg),
                _ => {
                    return Err(ParseError::at(
                        self.src,
                        start,
                        "a known function (last_digit)",
                        &format!("`{name}`"),
                    ));
                }
            }
        } else {
            Operand::Column(name)
        };
        let op = match self.peek().tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::In => {
                self.bump();
                let list = self.list()?;
                return Ok(Expr::In {
                    operand,
                    negated: false,
                    list,
                    column,
                });
            }
            Tok::Not => {
                self.bump();
                self.expect(&Tok::In, "`in` after `not`")?;
                let list = self.list()?;
                return Ok(Expr::In {
                    operand,
                    negated: true,
                    list,
                    column,
                });
            }
            _ => return Err(self.error("a comparison operator (= != < <= > >= in, not in)")),
        };
        self.bump();
        let value = self.literal()?;
        Ok(Expr::Cmp {
            operand,
            op,
            value,
            column,
        })
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        match self.peek().tok.clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Literal::Str(s))
            }
            Tok::Num(n) => {
                self.bump();
                Ok(Literal::Num(n))
            }
            _ => Err(self.error("a string or number literal")),
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, ParseError> {
        self.expect(&Tok::LBracket, "`[`")?;
        let mut items = Vec::new();
        if self.peek().tok == Tok::RBracket {
            self.bump();
            return Ok(items);
        }
        loop {
            items.push(self.literal()?);
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBracket => {
                    self.bump();
                    return Ok(items);
                }
                _ => return Err(self.error("`,` or `]`")),
            }
        }
    }
}

/// 1-based character column of byte `offset`.
pub(super) fn column_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(offset, |s| s.chars().count()) + 1
}
