//! The simulator's formula engine: exactly the subset the origin emits (`OR`, `AND`, `NOT`,
//! `RECORD_ID()`, `TRUE()`, `FALSE()`, `LOWER`, `TRIM`, `{field}`, string and number literals,
//! `=`). Anything else is a parse error, which the simulator answers as Airtable does: 422
//! `INVALID_FILTER_BY_FORMULA`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Field(String),
    Text(String),
    Number(f64),
    Call(Func, Vec<Expr>),
    Equals(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Or,
    And,
    Not,
    RecordId,
    True,
    False,
    Lower,
    Trim,
}

/// A value during evaluation, with Airtable's coercions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Blank,
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Cell {
    /// A stored cell: arrays (links, lookups) read as their items joined by `", "`.
    pub(crate) fn of(value: Option<&Value>) -> Self {
        match value {
            None | Some(Value::Null) => Self::Blank,
            Some(Value::String(s)) => Self::Text(s.clone()),
            Some(Value::Number(n)) => n.as_f64().map_or(Self::Blank, Self::Number),
            Some(Value::Bool(b)) => Self::Bool(*b),
            Some(Value::Array(items)) => Self::Text(
                items
                    .iter()
                    .map(|v| Self::of(Some(v)).text())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Some(other) => Self::Text(other.to_string()),
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Blank => String::new(),
            Self::Text(s) => s.clone(),
            Self::Number(n) => format_number(*n),
            Self::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        }
    }

    pub(crate) fn truthy(&self) -> bool {
        match self {
            Self::Blank => false,
            Self::Text(s) => !s.is_empty(),
            Self::Number(n) => *n != 0.0,
            Self::Bool(b) => *b,
        }
    }

    fn equals(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Bool(b), x) | (x, Self::Bool(b)) => x.truthy() == *b,
            (Self::Number(a), Self::Number(b)) => a == b,
            (Self::Number(n), Self::Text(t)) | (Self::Text(t), Self::Number(n)) => {
                t.trim().parse::<f64>().is_ok_and(|t| t == *n)
            }
            (Self::Blank, Self::Number(n)) | (Self::Number(n), Self::Blank) => *n == 0.0,
            (Self::Blank, Self::Text(t)) | (Self::Text(t), Self::Blank) => t.is_empty(),
            (Self::Blank, Self::Blank) => true,
            (Self::Text(a), Self::Text(b)) => a == b,
        }
    }

    /// The order of a sort: blanks first, numbers by value, the rest as text.
    pub(crate) fn sort_cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Blank, Self::Blank) => Ordering::Equal,
            (Self::Blank, _) => Ordering::Less,
            (_, Self::Blank) => Ordering::Greater,
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            (a, b) => a.text().cmp(&b.text()),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl Expr {
    /// Evaluates the formula for one record.
    pub(crate) fn eval(&self, id: &str, fields: &Map<String, Value>) -> Cell {
        match self {
            Self::Field(name) => Cell::of(fields.get(name)),
            Self::Text(s) => Cell::Text(s.clone()),
            Self::Number(n) => Cell::Number(*n),
            Self::Equals(a, b) => Cell::Bool(a.eval(id, fields).equals(&b.eval(id, fields))),
            Self::Call(func, args) => match func {
                Func::Or => Cell::Bool(args.iter().any(|a| a.eval(id, fields).truthy())),
                Func::And => Cell::Bool(args.iter().all(|a| a.eval(id, fields).truthy())),
                Func::Not => Cell::Bool(!args.iter().any(|a| a.eval(id, fields).truthy())),
                Func::RecordId => Cell::Text(id.to_owned()),
                Func::True => Cell::Bool(true),
                Func::False => Cell::Bool(false),
                Func::Lower => Cell::Text(args.iter().map(|a| a.eval(id, fields).text().to_lowercase()).collect()),
                Func::Trim => Cell::Text(
                    args.iter()
                        .map(|a| a.eval(id, fields).text().trim().to_owned())
                        .collect(),
                ),
            },
        }
    }
}

/// Parses a formula of the supported subset; the error says where it stopped.
pub(crate) fn parse(formula: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        chars: formula.chars().collect(),
        pos: 0,
    };
    let expr = parser.expr()?;
    parser.skip_ws();
    if parser.pos != parser.chars.len() {
        return Err(format!("unexpected text at character {}", parser.pos));
    }
    Ok(expr)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.pos).copied()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{c}` at character {}", self.pos))
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let lhs = self.term()?;
        if self.peek() == Some('=') {
            self.pos += 1;
            let rhs = self.term()?;
            return Ok(Expr::Equals(Box::new(lhs), Box::new(rhs)));
        }
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let start = self.pos;
                while self.chars.get(self.pos).is_some_and(|c| *c != '}') {
                    self.pos += 1;
                }
                if self.pos >= self.chars.len() {
                    return Err("unterminated field reference".to_owned());
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                Ok(Expr::Field(name))
            }
            Some(quote @ ('\'' | '"')) => {
                self.pos += 1;
                let mut text = String::new();
                loop {
                    let Some(c) = self.chars.get(self.pos).copied() else {
                        return Err("unterminated string".to_owned());
                    };
                    self.pos += 1;
                    match c {
                        '\\' => {
                            let Some(e) = self.chars.get(self.pos).copied() else {
                                return Err("unterminated string".to_owned());
                            };
                            self.pos += 1;
                            text.push(match e {
                                'n' => '\n',
                                'r' => '\r',
                                't' => '\t',
                                other => other,
                            });
                        }
                        c if c == quote => return Ok(Expr::Text(text)),
                        c => text.push(c),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                text.parse()
                    .map(Expr::Number)
                    .map_err(|_| format!("bad number {text:?}"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                let func = match name.as_str() {
                    "OR" => Func::Or,
                    "AND" => Func::And,
                    "NOT" => Func::Not,
                    "RECORD_ID" => Func::RecordId,
                    "TRUE" => Func::True,
                    "FALSE" => Func::False,
                    "LOWER" => Func::Lower,
                    "TRIM" => Func::Trim,
                    other => return Err(format!("unknown function {other}")),
                };
                self.expect('(')?;
                let mut args = Vec::new();
                if self.peek() != Some(')') {
                    loop {
                        args.push(self.expr()?);
                        if self.peek() == Some(',') {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(')')?;
                let arity_ok = match func {
                    Func::RecordId | Func::True | Func::False => args.is_empty(),
                    Func::Not | Func::Lower | Func::Trim => args.len() == 1,
                    Func::Or | Func::And => !args.is_empty(),
                };
                if !arity_ok {
                    return Err(format!("wrong number of arguments to {name}"));
                }
                Ok(Expr::Call(func, args))
            }
            Some(c) => Err(format!("unexpected `{c}` at character {}", self.pos)),
            None => Err("unexpected end of formula".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matches(formula: &str, id: &str, fields: Value) -> bool {
        let Value::Object(fields) = fields else { panic!() };
        parse(formula).unwrap().eval(id, &fields).truthy()
    }

    #[test]
    fn evaluates_the_subset() {
        assert!(matches("RECORD_ID()='recA'", "recA", json!({})));
        assert!(!matches("OR(RECORD_ID()='recB',RECORD_ID()='recC')", "recA", json!({})));
        assert!(matches("AND({n}=3,{s}='x')", "r", json!({"n": 3, "s": "x"})));
        assert!(matches("{done}=FALSE()", "r", json!({})), "an empty checkbox is false");
        assert!(matches("{event_id}='recE'", "r", json!({"event_id": ["recE"]})));
        assert!(matches("LOWER(TRIM({e}))='a@b'", "r", json!({"e": "  A@B "})));
        assert!(matches(r"{s}='it\'s \\ \n'", "r", json!({"s": "it's \\ \n"})));
        assert!(matches("NOT({done})", "r", json!({})));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "SEARCH('a',{b})",
            "{a}>1",
            "{a",
            "'open",
            "OR(",
            "RECORD_ID(1)",
            "{a}='x' extra",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
