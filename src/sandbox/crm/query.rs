//! The fake CRM's two tiny query languages: COQL (`POST /coql`) and search `criteria`.
//!
//! Owns: parsing a useful subset (`select .. from .. where a = 'x' and b like '%y%' or c is
//! null .. limit n[, m]`; `(Field:equals|starts_with|not_equal:value)` groups) and matching
//! records. Must not: hold records or build responses (that is `records.rs`).

use serde_json::Value;

use super::records::Record;

/// A value as text for comparisons (strings bare, others as JSON).
pub(super) fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_owned),
        other => Some(other.to_string()),
    }
}

/// A record predicate.
pub(super) type Matcher = Box<dyn Fn(&Record) -> bool>;

/// `(Field:op:value)` groups joined by `and` / `or` (mixing: any `or` makes it a disjunction).
pub(super) fn parse_criteria(c: &str) -> Option<Matcher> {
    let mut atoms = Vec::new();
    let mut depth_start = None;
    for (i, ch) in c.char_indices() {
        match ch {
            '(' => depth_start = Some(i + 1),
            ')' => {
                if let Some(s) = depth_start.take() {
                    atoms.push(c.get(s..i)?.to_owned());
                }
            }
            _ => {}
        }
    }
    if atoms.is_empty() {
        return None;
    }
    let mut preds = Vec::new();
    for atom in atoms {
        let mut it = atom.splitn(3, ':');
        let (field, op, value) = (
            it.next()?.to_owned(),
            it.next()?.to_owned(),
            it.next()?.to_owned(),
        );
        if !matches!(op.as_str(), "equals" | "starts_with" | "not_equal") {
            return None;
        }
        preds.push((field, op, value));
    }
    let any = c.to_ascii_lowercase().contains(")or(");
    Some(Box::new(move |r: &Record| {
        let test = |(f, op, v): &(String, String, String)| {
            let actual = as_text(r.get(f.as_str()));
            match op.as_str() {
                "equals" => actual.is_some_and(|a| a.eq_ignore_ascii_case(v)),
                "not_equal" => !actual.is_some_and(|a| a.eq_ignore_ascii_case(v)),
                _ => actual.is_some_and(|a| a.to_lowercase().starts_with(&v.to_lowercase())),
            }
        };
        if any {
            preds.iter().any(test)
        } else {
            preds.iter().all(test)
        }
    }))
}

/// A tiny COQL subset.
#[derive(Debug, PartialEq)]
pub(super) struct Coql {
    pub fields: Vec<String>,
    pub module: String,
    /// Disjunction of conjunctions of conditions.
    filter: Vec<Vec<Cond>>,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, PartialEq)]
enum Cond {
    Eq(String, String),
    Ne(String, String),
    Like(String, String),
    IsNull(String),
    NotNull(String),
}

/// Position of `word` (ASCII case-insensitive, surrounded by spaces) in `s`.
fn find_kw(s: &str, word: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    lower.find(&format!(" {word} ")).map(|i| i + 1)
}

impl Coql {
    /// Parses `select f1, f2 from Module [where ...] [order by ...] [limit n[, m]]`.
    pub(super) fn parse(q: &str) -> Option<Coql> {
        let q = q.trim().trim_end_matches(';');
        let padded = format!(" {q} ");
        let lower = padded.to_ascii_lowercase();
        if !lower.trim_start().starts_with("select ") {
            return None;
        }
        let from = find_kw(&padded, "from")?;
        let fields: Vec<String> = padded
            .get(lower.find("select")? + 6..from)?
            .split(',')
            .map(|f| f.trim().to_owned())
            .collect();
        if fields.iter().any(String::is_empty) {
            return None;
        }
        let rest = padded.get(from + 4..)?;
        let where_at = find_kw(rest, "where");
        let limit_at = find_kw(rest, "limit");
        let order_at = find_kw(rest, "order");
        let module_end = [where_at, order_at, limit_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let module = rest.get(..module_end)?.trim().to_owned();
        if module.is_empty() || module.contains(' ') {
            return None;
        }
        let mut filter = Vec::new();
        if let Some(w) = where_at {
            let end = [order_at, limit_at]
                .into_iter()
                .flatten()
                .filter(|e| *e > w)
                .min()
                .unwrap_or(rest.len());
            let clause = format!(" {} ", rest.get(w + 5..end)?.trim());
            for disj in split_kw(&clause, "or") {
                let mut conj = Vec::new();
                for atom in split_kw(&format!(" {} ", disj.trim()), "and") {
                    conj.push(parse_cond(atom.trim())?);
                }
                filter.push(conj);
            }
        }
        let (mut limit, mut offset) = (200, 0);
        if let Some(l) = limit_at {
            let spec = rest.get(l + 5..)?.trim().to_ascii_lowercase();
            if let Some((a, b)) = spec.split_once(',') {
                offset = a.trim().parse().ok()?;
                limit = b.trim().parse().ok()?;
            } else if let Some((a, b)) = spec.split_once(" offset ") {
                limit = a.trim().parse().ok()?;
                offset = b.trim().parse().ok()?;
            } else {
                limit = spec.parse().ok()?;
            }
        }
        Some(Coql {
            fields,
            module,
            filter,
            limit,
            offset,
        })
    }

    /// Whether `r` passes the `where` clause.
    pub(super) fn matches(&self, r: &Record) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        self.filter.iter().any(|conj| {
            conj.iter().all(|c| match c {
                Cond::Eq(f, v) => as_text(r.get(f)).is_some_and(|a| a.eq_ignore_ascii_case(v)),
                Cond::Ne(f, v) => !as_text(r.get(f)).is_some_and(|a| a.eq_ignore_ascii_case(v)),
                Cond::Like(f, pat) => as_text(r.get(f)).is_some_and(|a| like(&a, pat)),
                Cond::IsNull(f) => as_text(r.get(f)).is_none(),
                Cond::NotNull(f) => as_text(r.get(f)).is_some(),
            })
        })
    }
}

fn split_kw<'a>(s: &'a str, word: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = find_kw(rest, word) {
        parts.push(&rest[..i]);
        rest = &rest[i + word.len()..];
    }
    parts.push(rest);
    parts
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v)
        .to_owned()
}

fn parse_cond(atom: &str) -> Option<Cond> {
    let lower = atom.to_ascii_lowercase();
    if let Some(f) = lower.strip_suffix(" is not null") {
        return Some(Cond::NotNull(atom.get(..f.len())?.trim().to_owned()));
    }
    if let Some(f) = lower.strip_suffix(" is null") {
        return Some(Cond::IsNull(atom.get(..f.len())?.trim().to_owned()));
    }
    if let Some(i) = lower.find(" like ") {
        return Some(Cond::Like(
            atom.get(..i)?.trim().to_owned(),
            unquote(atom.get(i + 6..)?),
        ));
    }
    if let Some((f, v)) = atom.split_once("!=") {
        return Some(Cond::Ne(f.trim().to_owned(), unquote(v)));
    }
    let (f, v) = atom.split_once('=')?;
    let f = f.trim();
    (!f.is_empty()).then(|| Cond::Eq(f.to_owned(), unquote(v)))
}

/// SQL `like` with `%` wildcards, case-insensitive.
fn like(s: &str, pat: &str) -> bool {
    let s = s.to_lowercase();
    let pat = pat.to_lowercase();
    let parts: Vec<&str> = pat.split('%').collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            if !s.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if i == parts.len() - 1 {
            return s.len() >= pos + part.len() && s.ends_with(part);
        } else {
            match s[pos..].find(part) {
                Some(j) => pos += j + part.len(),
                None => return false,
            }
        }
    }
    true
}
