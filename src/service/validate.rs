//! Small input checks shared by services. Each error names the field and never echoes the
//! value (it may be huge, or a secret pasted in the wrong place).

use crate::error::{Error, Result};

/// A trimmed, non-empty text of at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::bad_input(format!("{field} must not be empty")));
    }
    bounded(field, value, max)
}

/// An optional text: empty means none.
pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => bounded(field, v, max).map(Some),
    }
}

fn bounded(field: &str, value: &str, max: usize) -> Result<String> {
    if value.chars().count() > max {
        return Err(Error::bad_input(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::bad_input(format!(
            "{field} contains control characters"
        )));
    }
    Ok(value.to_owned())
}

/// A positive limit, or none.
pub fn optional_limit(field: &str, value: Option<i64>) -> Result<Option<i64>> {
    match value {
        Some(v) if v < 1 => Err(Error::bad_input(format!("{field} must be at least 1"))),
        other => Ok(other),
    }
}

/// Escapes `%`, `_` and the escape character itself for a `LIKE … ESCAPE '\\'` pattern.
pub fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
