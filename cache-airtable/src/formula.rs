//! Airtable formulas the origin sends: record-id lists and equalities, with every value
//! written as a literal that no content can break out of.

use std::fmt::Write;

use crate::AirtableError;

/// A string literal in Airtable's formula language: single-quoted, with backslashes, both
/// quote characters and line breaks escaped, so that no value (`x', TRUE(), '`) can end the
/// literal and change the formula.
///
/// ```
/// use cache_airtable::formula::string_literal;
///
/// assert_eq!(string_literal("it's"), r"'it\'s'");
/// assert_eq!(string_literal("x', TRUE(), '"), r"'x\', TRUE(), \''");
/// assert_eq!(string_literal("a\\b\nc"), r"'a\\b\nc'");
/// ```
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A field reference, `{Email Address}`. Airtable has no escape inside braces, so a name with
/// a brace or a line break is refused rather than guessed at.
pub fn field_ref(name: &str) -> Result<String, AirtableError> {
    if name.is_empty() || name.contains(['{', '}', '\n', '\r']) {
        return Err(AirtableError::Limit(format!(
            "field name {name:?} cannot be written in a formula (empty, or with a brace or line break)"
        )));
    }
    Ok(format!("{{{name}}}"))
}

/// `RECORD_ID()='a'`, or `OR(RECORD_ID()='a',RECORD_ID()='b',…)` for several ids.
pub fn record_ids(ids: &[&str]) -> String {
    let mut terms = ids.iter().map(|id| format!("RECORD_ID()={}", string_literal(id)));
    match ids.len() {
        1 => terms.next().unwrap_or_default(),
        _ => {
            let mut out = String::from("OR(");
            for (i, term) in terms.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&term);
            }
            out.push(')');
            out
        }
    }
}

/// How a cell compares in a formula: Airtable's numbers and checkboxes are not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Text, a single-select, a link or a lookup of links: compared as text.
    Text,
    /// A number: compared as a number (`{points}=42`).
    Number,
    /// A checkbox: `TRUE()`/`FALSE()` (an unchecked box is empty, and equals `FALSE()`).
    Checkbox,
}

/// `{field}=value`, the value written for the cell's kind; `lowercase` compares
/// `LOWER(TRIM({field}))`. A number that does not parse is refused.
pub fn equals(field: &str, kind: CellKind, value: &str, lowercase: bool) -> Result<String, AirtableError> {
    let field = field_ref(field)?;
    let lhs = if lowercase {
        format!("LOWER(TRIM({field}))")
    } else {
        field
    };
    let rhs = match kind {
        CellKind::Text => string_literal(value),
        CellKind::Number => {
            let n: f64 = value
                .parse()
                .map_err(|_| AirtableError::Limit(format!("{value:?} is not a number")))?;
            if !n.is_finite() {
                return Err(AirtableError::Limit(format!("{value:?} is not a finite number")));
            }
            let mut out = String::new();
            let _ = write!(out, "{n}");
            out
        }
        CellKind::Checkbox => match value {
            "true" => "TRUE()".to_owned(),
            "false" => "FALSE()".to_owned(),
            other => return Err(AirtableError::Limit(format!("{other:?} is not a checkbox value"))),
        },
    };
    Ok(format!("{lhs}={rhs}"))
}

/// `AND(a,b,…)`; the single term alone; `None` for no terms.
pub fn and(terms: &[String]) -> Option<String> {
    match terms {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("AND({})", many.join(","))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_everything_that_ends_them() {
        assert_eq!(string_literal(""), "''");
        assert_eq!(string_literal("plain"), "'plain'");
        assert_eq!(string_literal("'"), r"'\''");
        assert_eq!(string_literal("\""), r#"'\"'"#);
        assert_eq!(string_literal("\\"), r"'\\'");
        assert_eq!(string_literal("\\'"), r"'\\\''");
        assert_eq!(string_literal("{x}"), "'{x}'");
        assert_eq!(string_literal("a\nb\r\tc"), r"'a\nb\r\tc'");
        assert_eq!(string_literal("x', TRUE(), '"), r"'x\', TRUE(), \''");
    }

    #[test]
    fn field_names_with_braces_are_refused() {
        assert_eq!(field_ref("Email Address").unwrap(), "{Email Address}");
        assert!(field_ref("a}b").is_err());
        assert!(field_ref("{a").is_err());
        assert!(field_ref("").is_err());
        assert!(field_ref("a\nb").is_err());
    }

    #[test]
    fn record_id_lists() {
        assert_eq!(record_ids(&["recA"]), "RECORD_ID()='recA'");
        assert_eq!(
            record_ids(&["recA", "recB"]),
            "OR(RECORD_ID()='recA',RECORD_ID()='recB')"
        );
    }

    #[test]
    fn equalities_by_kind() {
        assert_eq!(equals("name", CellKind::Text, "a'b", false).unwrap(), r"{name}='a\'b'");
        assert_eq!(equals("points", CellKind::Number, "42", false).unwrap(), "{points}=42");
        assert!(equals("points", CellKind::Number, "42) OR (1", false).is_err());
        assert!(equals("points", CellKind::Number, "NaN", false).is_err());
        assert_eq!(
            equals("done", CellKind::Checkbox, "false", false).unwrap(),
            "{done}=FALSE()"
        );
        assert!(equals("done", CellKind::Checkbox, "TRUE()", false).is_err());
        assert_eq!(
            equals("email", CellKind::Text, "a@b.c", true).unwrap(),
            "LOWER(TRIM({email}))='a@b.c'"
        );
        assert_eq!(and(&[]), None);
        assert_eq!(and(&["a".into()]).as_deref(), Some("a"));
        assert_eq!(and(&["a".into(), "b".into()]).as_deref(), Some("AND(a,b)"));
    }
}
