//! COQL: the tokeniser and the modules a `select_query` reads (joins, sub-queries and lookup
//! fields included), refusing what it cannot read with certainty.

use serde_json::{Map, Value};

use super::{bad_body, get_exact, module_scope, modules_read, USER_LOOKUPS};
use crate::policy::modules::ModuleMap;
use crate::policy::required::Required;
use crate::policy::scope::{Operation, Scope, Service};
use crate::policy::Rejection;

#[derive(Debug, PartialEq)]
enum Tok<'q> {
    Word(&'q str),
    Str,
    Num,
    Punct,
}

fn tokenize(query: &str) -> Result<Vec<Tok<'_>>, Rejection> {
    let b = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(bad_body("the COQL query has an unterminated string literal")),
                    Some(b'\\') => {
                        return Err(bad_body(
                            "the COQL query escapes with a backslash; the proxy cannot tell where such a string \
                             ends: write a quote inside a string as ''",
                        ))
                    }
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            out.push(Tok::Str);
        } else if c == b'"' || c == b'`' {
            return Err(bad_body(
                "the COQL query uses double quotes or backticks; write module and field API names unquoted and \
                 values in single quotes",
            ));
        } else if (c == b'-' && next == Some(b'-'))
            || (c == b'/' && next == Some(b'*'))
            || c == b'#'
        {
            return Err(bad_body("the COQL query contains a comment; remove it"));
        } else if c == b';' {
            return Err(bad_body(
                "the COQL query contains `;`; send exactly one query",
            ));
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'$'))
            {
                i += 1;
            }
            out.push(Tok::Word(&query[start..i]));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if !c.is_ascii() || c.is_ascii_control() {
            return Err(bad_body(
                "the COQL query contains a control or non-ASCII character outside a string literal",
            ));
        } else {
            out.push(Tok::Punct);
            i += 1;
        }
    }
    Ok(out)
}

const COQL_KEYWORDS: &[&str] = &[
    "select", "from", "where", "order", "group", "by", "limit", "offset", "join", "inner", "left",
    "right", "outer", "on", "as", "and", "or", "not", "in", "like", "between", "is", "null",
    "having", "asc", "desc",
];

fn is_keyword(word: &str) -> bool {
    COQL_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// The modules a COQL query reads: every identifier after FROM or JOIN. A dotted field reference
/// (`Account_Name.Account_Name`) reads another module through a lookup whose target the query
/// does not name, so it needs `ZohoCRM.modules.READ` (every module) unless it starts with the
/// queried module, one of its aliases, or a user lookup (`Owner`, `Created_By`, `Modified_By`).
pub(crate) fn coql_modules(query: &str) -> Result<(Vec<&str>, bool), Rejection> {
    let tokens = tokenize(query)?;
    match tokens.first() {
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("select") => {}
        _ => return Err(bad_body("the COQL query must start with SELECT")),
    }
    let mut modules: Vec<&str> = Vec::new();
    let mut aliases: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Tok::Word(w) = tokens[i] {
            if w.eq_ignore_ascii_case("from") || w.eq_ignore_ascii_case("join") {
                let Some(Tok::Word(module)) = tokens.get(i + 1) else {
                    return Err(bad_body("FROM must be followed by a module API name"));
                };
                if module.contains('.') || is_keyword(module) {
                    return Err(bad_body("FROM must be followed by a module API name"));
                }
                modules.push(module);
                // `FROM Leads AS l` or `FROM Leads l`
                match (tokens.get(i + 2), tokens.get(i + 3)) {
                    (Some(Tok::Word(a)), Some(Tok::Word(alias)))
                        if a.eq_ignore_ascii_case("as") =>
                    {
                        aliases.push(alias);
                    }
                    (Some(Tok::Word(alias)), _) if !is_keyword(alias) && !alias.contains('.') => {
                        aliases.push(alias);
                    }
                    _ => {}
                }
                i += 2;
                continue;
            }
        }
        i += 1;
    }
    if modules.is_empty() {
        return Err(bad_body(
            "the COQL query has no FROM clause naming a module",
        ));
    }
    let lookup = tokens.iter().any(|t| match t {
        Tok::Word(w) => match w.split_once('.') {
            Some((head, _)) => {
                let own = |list: &[&str]| list.iter().any(|m| m.eq_ignore_ascii_case(head));
                !own(&modules) && !own(&aliases) && !own(USER_LOOKUPS)
            }
            None => false,
        },
        _ => false,
    });
    Ok((modules, lookup))
}

pub(super) fn coql(
    map: &ModuleMap,
    object: &Map<String, Value>,
    out: &mut Required,
) -> Result<(), Rejection> {
    let query = match get_exact(object, "select_query")? {
        Some(Value::String(q)) => q,
        Some(_) => return Err(bad_body("`select_query` must be a string")),
        None => return Err(bad_body("the body has no `select_query`")),
    };
    let (modules, lookup) = coql_modules(query)?;
    out.push(Scope::from_parts(
        Service::Crm,
        "coql",
        None,
        Operation::Read,
    ));
    for module in modules {
        out.push(module_scope(
            map,
            module,
            Operation::Read,
            "the module after FROM",
        )?);
    }
    if lookup {
        out.push(modules_read(Operation::Read));
    }
    Ok(())
}
