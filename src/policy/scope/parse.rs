//! Parsing an allow entry: the shape (`Service.family[.sub].OPERATION`), then each part in turn,
//! with a "did you mean" suggestion for a near miss. Errors escape the entry (it comes from a
//! config file) and never guess in the permissive direction.

use super::{
    closest, families_of, find_family, find_sub, sanitize, sub_candidates, Family, Operation,
    Scope, Service, Subs,
};
use crate::policy::modules;

/// Why an allow entry is not a scope the proxy knows. Display says what is wrong and, where a
/// close spelling exists, which entry was probably meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The entry is empty.
    #[error("empty entry; write a scope such as `ZohoCRM.modules.leads.READ`")]
    Empty,
    /// Whitespace, control characters or non-ASCII inside the entry.
    #[error("`{entry}` contains whitespace, control or non-ASCII characters; write the scope alone, e.g. `ZohoCRM.modules.leads.READ`")]
    BadCharacters {
        /// The entry, with control characters escaped.
        entry: String,
    },
    /// `*` used as a wildcard.
    #[error("`{entry}` uses `*`, which is not a Zoho scope; {hint}")]
    Wildcard {
        /// The entry, with control characters escaped.
        entry: String,
        /// What to write instead.
        hint: String,
    },
    /// `ZohoCRM..READ` and the like.
    #[error("`{entry}` has an empty part; a scope is `Service.family[.sub].OPERATION`, e.g. `ZohoCRM.modules.leads.READ`")]
    EmptyPart {
        /// The entry, with control characters escaped.
        entry: String,
    },
    /// Fewer than three or more than four dot-separated parts.
    #[error("`{entry}` is not `Service.family[.sub].OPERATION`{}", hint(.suggestion))]
    Shape {
        /// The entry, with control characters escaped.
        entry: String,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
    /// The first part is not a service the proxy knows.
    #[error("unknown service in `{entry}`{}", hint_or(.suggestion, "; known services: ZohoCRM, ZohoSearch, ZohoFiles, ZohoBooks, ZohoInventory"))]
    UnknownService {
        /// The entry, with control characters escaped.
        entry: String,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
    /// The family is not one the proxy knows for that service.
    #[error("unknown scope family in `{entry}`{}", hint(.suggestion))]
    UnknownFamily {
        /// The entry, with control characters escaped.
        entry: String,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
    /// The sub-scope (module or settings name) is not known for that family.
    #[error("unknown {what} in `{entry}`{}", hint(.suggestion))]
    UnknownSub {
        /// The entry, with control characters escaped.
        entry: String,
        /// "module", "settings sub-scope", ...
        what: &'static str,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
    /// The family takes no sub-scope, or needs one.
    #[error("`{entry}`: {problem}{}", hint(.suggestion))]
    SubShape {
        /// The entry, with control characters escaped.
        entry: String,
        /// What is wrong.
        problem: String,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
    /// The last part is not an operation.
    #[error("unknown operation in `{entry}`{}", hint_or(.suggestion, "; operations are ALL, READ, WRITE, CREATE, UPDATE, DELETE, CUSTOM"))]
    UnknownOperation {
        /// The entry, with control characters escaped.
        entry: String,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
    /// The entry ends in a sub-scope: the operation is missing.
    #[error("missing operation in `{entry}`{}", hint(.suggestion))]
    MissingOperation {
        /// The entry, with control characters escaped.
        entry: String,
        /// A likely intended entry.
        suggestion: Option<String>,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

fn hint_or(suggestion: &Option<String>, otherwise: &str) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => otherwise.to_string(),
    }
}

fn join(parts: &[&str]) -> String {
    parts.join(".")
}

/// Parses an allow entry, ignoring ASCII case.
pub(super) fn parse(text: &str) -> Result<Scope, ScopeError> {
    let parts = shape(text)?;
    let entry = || sanitize(text);
    let service = service(&parts).map_err(|suggestion| ScopeError::UnknownService {
        entry: entry(),
        suggestion,
    })?;
    let fam = family(service, &parts).map_err(|suggestion| ScopeError::UnknownFamily {
        entry: entry(),
        suggestion,
    })?;
    let head = [service.as_str(), fam.name];
    let op_text = parts[parts.len() - 1];
    let sub = match parts.len() {
        4 => Some(sub(fam, head, parts[2], op_text).map_err(|e| e(entry()))?),
        _ => None,
    };
    let op = operation(fam, head, sub, op_text, parts.len()).map_err(|e| e(entry()))?;
    if sub.is_none() && fam.sub_required {
        let first = sub_candidates(fam).first().copied().unwrap_or("?");
        return Err(ScopeError::SubShape {
            entry: entry(),
            problem: format!("`{}.{}` needs a sub-scope", service.as_str(), fam.name),
            suggestion: Some(join(&[head[0], head[1], first, op.as_str()])),
        });
    }
    Ok(Scope {
        service,
        family: fam.name,
        sub,
        op,
    })
}

/// The entry's dot-separated parts, once its characters and shape are right.
fn shape(text: &str) -> Result<Vec<&str>, ScopeError> {
    if text.is_empty() {
        return Err(ScopeError::Empty);
    }
    let entry = sanitize(text);
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ScopeError::BadCharacters { entry });
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.contains(&"*") || text.contains('*') {
        let hint = if parts.len() == 4 && parts[2] == "*" {
            format!(
                "write `{}` to cover every member of the family",
                join(&[parts[0], parts[1], parts[3]])
            )
        } else {
            "name each scope, or use a group scope such as `ZohoCRM.modules.READ`".to_string()
        };
        return Err(ScopeError::Wildcard { entry, hint });
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ScopeError::EmptyPart { entry });
    }
    if parts.len() < 3 || parts.len() > 4 {
        return Err(ScopeError::Shape {
            entry,
            suggestion: None,
        });
    }
    Ok(parts)
}

/// The service the first part names, or the suggestion for an unknown one.
fn service(parts: &[&str]) -> Result<Service, Option<String>> {
    Service::EVERY
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(parts[0]))
        .ok_or_else(|| {
            closest(parts[0], Service::EVERY.iter().map(|s| s.as_str())).map(|s| {
                let mut fixed = parts.to_vec();
                fixed[0] = s;
                join(&fixed)
            })
        })
}

/// The family the second part names, or the suggestion for an unknown one.
fn family(service: Service, parts: &[&str]) -> Result<&'static Family, Option<String>> {
    find_family(service, parts[1]).ok_or_else(|| {
        let names = families_of(service).map(|f| f.name);
        closest(parts[1], names).map(|name| {
            let mut fixed = parts.to_vec();
            fixed[0] = service.as_str();
            fixed[1] = name;
            join(&fixed)
        })
    })
}

/// The error of an entry, once its escaped text is known.
type Partial = Box<dyn FnOnce(String) -> ScopeError>;

/// The sub-scope of a four-part entry.
fn sub(
    fam: &Family,
    head: [&'static str; 2],
    text_sub: &str,
    op_text: &str,
) -> Result<&'static str, Partial> {
    if matches!(fam.subs, Subs::None) {
        let suggestion = Operation::parse(op_text).map(|op| join(&[head[0], head[1], op.as_str()]));
        let problem = format!("`{}.{}` takes no sub-scope", head[0], head[1]);
        return Err(Box::new(move |entry| ScopeError::SubShape {
            entry,
            problem,
            suggestion,
        }));
    }
    if let Some(s) = find_sub(fam, text_sub) {
        return Ok(s);
    }
    let what = match fam.subs {
        Subs::Module => "module",
        Subs::Settings => "settings sub-scope",
        _ => "sub-scope",
    };
    // A module API name (`Sales_Orders`) instead of its scope name (`salesorders`).
    let by_api_name = match fam.subs {
        Subs::Module => modules::standard_scope_for(text_sub),
        _ => None,
    };
    let fix = by_api_name.or_else(|| closest(text_sub, sub_candidates(fam)));
    let op_fixed = Operation::parse(op_text)
        .map(|o| o.as_str())
        .unwrap_or(op_text);
    let suggestion = fix.map(|s| join(&[head[0], head[1], s, op_fixed]));
    Err(Box::new(move |entry| ScopeError::UnknownSub {
        entry,
        what,
        suggestion,
    }))
}

/// The operation the last part names; a three-part entry ending in a sub-scope is missing it.
fn operation(
    fam: &Family,
    head: [&'static str; 2],
    sub: Option<&'static str>,
    op_text: &str,
    parts: usize,
) -> Result<Operation, Partial> {
    if let Some(op) = Operation::parse(op_text) {
        return Ok(op);
    }
    if parts == 3 {
        if let Some(s) = find_sub(fam, op_text) {
            let suggestion = Some(join(&[head[0], head[1], s, "READ"]));
            return Err(Box::new(move |entry| ScopeError::MissingOperation {
                entry,
                suggestion,
            }));
        }
    }
    let suggestion = closest(op_text, Operation::EVERY.iter().map(|o| o.as_str())).map(|o| {
        let mut fixed: Vec<&str> = head.to_vec();
        if let Some(s) = sub {
            fixed.push(s);
        }
        fixed.push(o);
        join(&fixed)
    });
    Err(Box::new(move |entry| ScopeError::UnknownOperation {
        entry,
        suggestion,
    }))
}
