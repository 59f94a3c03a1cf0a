//! `${VAR}` and `${VAR:-default}` interpolation of config string values.
//!
//! Interpolation runs on single string values after YAML parsing, never on the file text, so a
//! variable's value can never inject YAML structure. `$$` is a literal `$`.
//!
//! Must not: read the process environment itself (the caller passes the lookup), or put a
//! variable's value in an error.

/// Why a value could not be interpolated. Never carries a variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${NAME}` without a default and the variable is not set.
    Unset(String),
    /// A `${` without its closing brace, or an invalid variable name.
    Malformed(String),
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolateError::Unset(name) => {
                write!(f, "environment variable {name} is not set")
            }
            InterpolateError::Malformed(why) => write!(f, "bad ${{...}} reference: {why}"),
        }
    }
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `text` using `lookup`.
/// An empty variable counts as unset for `:-` (as in POSIX shells).
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = inner_start.find('}') else {
            return Err(InterpolateError::Malformed(
                "`${` without a closing `}`".to_string(),
            ));
        };
        let inner = &inner_start[..close];
        let (name, default) = match inner.find(":-") {
            Some(i) => (&inner[..i], Some(&inner[i + 2..])),
            None => (inner, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(InterpolateError::Malformed(format!(
                "`{name}` is not a valid variable name"
            )));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(InterpolateError::Unset(name.to_string())),
        }
        rest = &inner_start[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    const CASES: &[(&str, Result<&str, &str>)] = &[
        ("plain", Ok("plain")),
        ("${SET}", Ok("value")),
        ("a-${SET}-b", Ok("a-value-b")),
        ("${MISSING:-fallback}", Ok("fallback")),
        ("${EMPTY:-fallback}", Ok("fallback")),
        ("${SET:-fallback}", Ok("value")),
        ("$$SET", Ok("$SET")),
        ("cost $5", Ok("cost $5")),
        ("${MISSING}", Err("environment variable MISSING is not set")),
        ("${EMPTY}", Err("environment variable EMPTY is not set")),
        (
            "${SET",
            Err("bad ${...} reference: `${` without a closing `}`"),
        ),
        (
            "${1X}",
            Err("bad ${...} reference: `1X` is not a valid variable name"),
        ),
    ];

    #[test]
    fn interpolation_follows_the_table() {
        for (input, expected) in CASES {
            let got = interpolate(input, &env).map_err(|e| e.to_string());
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, expected, "interpolate({input:?})");
        }
    }
}
