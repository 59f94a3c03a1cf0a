//! What a configuration problem looks like ([`ConfigError`]: key, line, message) and where a
//! dotted key stands in the file text.
//!
//! Must not: hold or render a secret value, or decide what is wrong (the validators do).

/// A configuration problem: which key, where, and what to do. Never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", key, line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    /// Dotted key path, e.g. `zoho.client_secret` or `accounts[1].allow[0]`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Best-effort 1-based line of a dotted key (`zoho.client_secret`, `accounts[1].allow[0]`).
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    let mut found = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let pos = (from..lines.len()).find(|&i| {
            let l = lines[i].trim_start().trim_start_matches("- ").trim_start();
            l.strip_prefix(name)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })?;
        found = Some(pos);
        from = pos + 1;
        if let Some(index) = index {
            let items: Vec<usize> = (from..lines.len())
                .filter(|&i| lines[i].trim_start().starts_with('-'))
                .collect();
            let indent = items
                .first()
                .map(|&i| lines[i].len() - lines[i].trim_start().len())?;
            let item = items
                .into_iter()
                .filter(|&i| lines[i].len() - lines[i].trim_start().len() == indent)
                .nth(index)?;
            found = Some(item);
            from = item;
        }
    }
    found.map(|i| i + 1)
}
