//! The Zoho OAuth scope grammar: `Service.family[.sub].OPERATION`.
//!
//! Owns parsing an allow entry into a typed [`Scope`] (case-insensitively, with a "did you mean"
//! suggestion for near misses), the canonical spelling printed back to people, and the coverage
//! rule (`ALL` ⊇ everything, `WRITE` ⊇ CREATE/UPDATE/DELETE, group scopes ⊇ their members).
//! Every valid scope is built from the static tables below, so a [`Scope`] is `Copy` and never
//! allocates. Must not know about requests, paths or configuration files.

use std::fmt;

use super::modules;

/// What a scope allows doing: the last part of a scope string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Every operation.
    All,
    /// Reading (GET, HEAD, and the POST endpoints that only read).
    Read,
    /// Alias for CREATE, UPDATE and DELETE.
    Write,
    /// Creating.
    Create,
    /// Updating.
    Update,
    /// Deleting.
    Delete,
    /// Used only by `ZohoCRM.composite_requests.CUSTOM`.
    Custom,
}

impl Operation {
    /// Every operation, in the order they are listed in messages.
    pub const EVERY: [Operation; 7] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Custom,
    ];

    /// The canonical (upper-case) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::All => "ALL",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Custom => "CUSTOM",
        }
    }

    /// Parses an operation, ignoring ASCII case.
    pub fn parse(text: &str) -> Option<Operation> {
        Operation::EVERY
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether a grant of `self` allows an operation that needs `required`.
    pub fn covers(self, required: Operation) -> bool {
        match self {
            Operation::All => true,
            Operation::Write => matches!(
                required,
                Operation::Write | Operation::Create | Operation::Update | Operation::Delete
            ),
            granted => granted == required,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Zoho service a scope belongs to (its first part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `ZohoCRM`
    Crm,
    /// `ZohoSearch` (record search and count need `ZohoSearch.securesearch.READ`).
    Search,
    /// `ZohoFiles` (bulk-write upload).
    Files,
}

impl Service {
    const EVERY: [Service; 3] = [Service::Crm, Service::Search, Service::Files];

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Crm => "ZohoCRM",
            Service::Search => "ZohoSearch",
            Service::Files => "ZohoFiles",
        }
    }
}

/// Which third parts (sub-scopes) a family accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subs {
    /// No sub-scope: `ZohoCRM.users.READ`.
    None,
    /// A module scope name (`leads`, `salesorders`, `custom`, ...) or `all`.
    Module,
    /// A settings sub-scope (`fields`, `layouts`, ...).
    Settings,
    /// One of a fixed list.
    Fixed(&'static [&'static str]),
}

/// One scope family: `Service.family`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Family {
    pub service: Service,
    pub name: &'static str,
    pub subs: Subs,
    /// A scope without a sub-scope is a group covering every sub-scope of the family
    /// (`ZohoCRM.modules.READ` covers `ZohoCRM.modules.leads.READ`). Only where Zoho documents it.
    pub group: bool,
    /// The sub-scope is mandatory (`ZohoCRM.functions.execute.READ`).
    pub sub_required: bool,
}

const fn family(service: Service, name: &'static str, subs: Subs, group: bool) -> Family {
    Family {
        service,
        name,
        subs,
        group,
        sub_required: false,
    }
}

/// Every family the proxy knows (REFERENCE.md §6). Canonical spellings.
pub(crate) const FAMILIES: &[Family] = &[
    family(Service::Crm, "modules", Subs::Module, true),
    family(Service::Crm, "settings", Subs::Settings, true),
    family(Service::Crm, "users", Subs::None, false),
    family(Service::Crm, "org", Subs::None, false),
    family(Service::Crm, "coql", Subs::None, false),
    family(Service::Crm, "bulk", Subs::Fixed(&["backup"]), false),
    family(Service::Crm, "notifications", Subs::None, false),
    family(Service::Crm, "Files", Subs::None, false),
    family(Service::Crm, "mass_update", Subs::Module, true),
    family(Service::Crm, "mass_delete", Subs::Module, true),
    family(Service::Crm, "mass_convert", Subs::Module, true),
    family(Service::Crm, "change_owner", Subs::None, false),
    family(Service::Crm, "share", Subs::Module, true),
    family(Service::Crm, "send_mail", Subs::Module, true),
    family(
        Service::Crm,
        "templates",
        Subs::Fixed(&["email", "inventory"]),
        false,
    ),
    family(Service::Crm, "features", Subs::None, false),
    family(Service::Crm, "apis", Subs::None, false),
    Family {
        sub_required: true,
        ..family(Service::Crm, "Zia", Subs::Fixed(&["enrichment"]), false)
    },
    family(Service::Crm, "composite_requests", Subs::None, false),
    Family {
        sub_required: true,
        ..family(Service::Crm, "functions", Subs::Fixed(&["execute"]), false)
    },
    family(Service::Search, "securesearch", Subs::None, false),
    family(Service::Files, "files", Subs::None, false),
];

/// Settings sub-scopes (`ZohoCRM.settings.{sub}.{op}`), REFERENCE.md §6 plus the v8 pages.
pub(crate) const SETTINGS_SUBS: &[&str] = &[
    "modules",
    "fields",
    "layouts",
    "custom_views",
    "related_lists",
    "roles",
    "profiles",
    "territories",
    "variables",
    "variable_groups",
    "tags",
    "tab_groups",
    "macros",
    "custom_links",
    "custom_buttons",
    "currencies",
    "pipeline",
    "wizards",
    "assignment_rules",
    "business_hours",
    "clientportal",
    "duplicate_check_preference",
    "emails",
    "fiscal_year",
    "global_picklist",
    "intelligence",
    "map_dependency",
    "record_locking_configurations",
    "recycle_bin",
    "scoring_rules",
    "signals",
    "unsubscribe",
    "user_groups",
    "users_unavailability",
    "audit_logs",
    "cadences",
    "mailmerge",
    "data_sharing",
    "contact_roles",
];

/// One OAuth scope, e.g. `ZohoCRM.modules.leads.READ`. Built only from the static grammar
/// tables, so it is `Copy`, compares by canonical spelling, and prints canonically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    service: Service,
    family: &'static str,
    sub: Option<&'static str>,
    op: Operation,
}

impl Scope {
    /// A placeholder used to fill unused inline slots; never shown.
    pub(crate) const PLACEHOLDER: Scope = Scope {
        service: Service::Crm,
        family: "",
        sub: None,
        op: Operation::All,
    };

    /// Builds a scope from canonical parts (the classifier's tables). Not validated: callers
    /// pass table constants.
    pub(crate) const fn from_parts(
        service: Service,
        family: &'static str,
        sub: Option<&'static str>,
        op: Operation,
    ) -> Scope {
        Scope {
            service,
            family,
            sub,
            op,
        }
    }

    /// Parses an allow entry, ignoring ASCII case. Errors name the problem and, for a near
    /// miss, suggest the fix.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        parse(text)
    }

    /// The service (`ZohoCRM`, ...).
    pub fn service(&self) -> Service {
        self.service
    }

    /// The family in canonical spelling (`modules`, `settings`, ...).
    pub fn family(&self) -> &'static str {
        self.family
    }

    /// The sub-scope in canonical spelling (`leads`, `fields`, ...), if any.
    pub fn sub(&self) -> Option<&'static str> {
        self.sub
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        self.op
    }

    /// Whether a grant of `self` allows a request that needs `required`.
    pub fn covers(&self, required: &Scope) -> bool {
        if self.service != required.service || self.family != required.family {
            return false;
        }
        if !self.op.covers(required.op) {
            return false;
        }
        match (self.sub, required.sub) {
            (None, None) => true,
            (None, Some(_)) => find_family(self.service, self.family).is_some_and(|f| f.group),
            // `ZohoCRM.send_mail.all.CREATE`: `all` in the sub position stands for every module.
            (Some("all"), _) => true,
            (Some(granted), Some(needed)) => granted == needed,
            (Some(_), None) => false,
        }
    }
}

impl Scope {
    /// The scope's text, as pieces (`ZohoCRM`, `.`, `modules`, ...): written piece by piece, it
    /// costs no formatting machinery (the access log writes one per request).
    pub fn pieces(&self) -> impl Iterator<Item = &'static str> {
        let sub = self.sub.map(|s| [s, "."]);
        [self.service.as_str(), ".", self.family, "."]
            .into_iter()
            .chain(sub.into_iter().flatten())
            .chain(std::iter::once(self.op.as_str()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pieces().try_for_each(|p| f.write_str(p))
    }
}

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
    /// The first part is not ZohoCRM, ZohoSearch or ZohoFiles.
    #[error("unknown service in `{entry}`{}", hint_or(.suggestion, "; known services: ZohoCRM, ZohoSearch, ZohoFiles"))]
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

/// Escapes anything that is not printable ASCII and caps the length, so an error message never
/// carries raw control bytes from a config file or a request.
pub(crate) fn sanitize(text: &str) -> String {
    crate::util::escape(text, 120)
}

pub(crate) fn find_family(service: Service, name: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.service == service && f.name.eq_ignore_ascii_case(name))
}

fn sub_candidates(family: &Family) -> Vec<&'static str> {
    match family.subs {
        Subs::None => Vec::new(),
        Subs::Module => {
            let mut v: Vec<&'static str> = modules::MODULE_SCOPES.to_vec();
            v.push("all");
            v
        }
        Subs::Settings => SETTINGS_SUBS.to_vec(),
        Subs::Fixed(list) => list.to_vec(),
    }
}

fn find_sub(family: &Family, text: &str) -> Option<&'static str> {
    sub_candidates(family)
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(text))
}

/// Levenshtein distance over ASCII-lower-cased bytes.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<u8> = a.bytes().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<u8> = b.bytes().map(|c| c.to_ascii_lowercase()).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate within a distance proportional to the word's length.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn join(parts: &[&str]) -> String {
    parts.join(".")
}

fn parse(text: &str) -> Result<Scope, ScopeError> {
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

    // Service.
    let service = match Service::EVERY
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(parts[0]))
    {
        Some(s) => s,
        None => {
            let suggestion =
                closest(parts[0], Service::EVERY.iter().map(|s| s.as_str())).map(|s| {
                    let mut fixed = parts.clone();
                    fixed[0] = s;
                    join(&fixed)
                });
            return Err(ScopeError::UnknownService { entry, suggestion });
        }
    };

    // Family.
    let fam = match find_family(service, parts[1]) {
        Some(f) => f,
        None => {
            let names = FAMILIES
                .iter()
                .filter(|f| f.service == service)
                .map(|f| f.name);
            let suggestion = closest(parts[1], names).map(|name| {
                let mut fixed = parts.clone();
                fixed[0] = service.as_str();
                fixed[1] = name;
                join(&fixed)
            });
            return Err(ScopeError::UnknownFamily { entry, suggestion });
        }
    };
    let canonical_head = [service.as_str(), fam.name];

    // Sub-scope (four parts) or missing operation (three parts ending in a sub-scope).
    let op_text = parts[parts.len() - 1];
    let mut sub = None;
    if parts.len() == 4 {
        let text_sub = parts[2];
        if matches!(fam.subs, Subs::None) {
            let suggestion = Operation::parse(op_text)
                .map(|op| join(&[canonical_head[0], canonical_head[1], op.as_str()]));
            return Err(ScopeError::SubShape {
                entry,
                problem: format!("`{}.{}` takes no sub-scope", service.as_str(), fam.name),
                suggestion,
            });
        }
        match find_sub(fam, text_sub) {
            Some(s) => sub = Some(s),
            None => {
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
                let suggestion =
                    fix.map(|s| join(&[canonical_head[0], canonical_head[1], s, op_fixed]));
                return Err(ScopeError::UnknownSub {
                    entry,
                    what,
                    suggestion,
                });
            }
        }
    }

    let op = match Operation::parse(op_text) {
        Some(op) => op,
        None => {
            if parts.len() == 3 {
                if let Some(s) = find_sub(fam, op_text) {
                    return Err(ScopeError::MissingOperation {
                        entry,
                        suggestion: Some(join(&[canonical_head[0], canonical_head[1], s, "READ"])),
                    });
                }
            }
            let suggestion =
                closest(op_text, Operation::EVERY.iter().map(|o| o.as_str())).map(|o| {
                    let mut fixed: Vec<&str> = canonical_head.to_vec();
                    if let Some(s) = sub {
                        fixed.push(s);
                    }
                    fixed.push(o);
                    join(&fixed)
                });
            return Err(ScopeError::UnknownOperation { entry, suggestion });
        }
    };

    if sub.is_none() && fam.sub_required {
        let first = sub_candidates(fam).first().copied().unwrap_or("?");
        return Err(ScopeError::SubShape {
            entry,
            problem: format!("`{}.{}` needs a sub-scope", service.as_str(), fam.name),
            suggestion: Some(join(&[
                canonical_head[0],
                canonical_head[1],
                first,
                op.as_str(),
            ])),
        });
    }

    Ok(Scope {
        service,
        family: fam.name,
        sub,
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (entry, Ok(canonical) | Err(substring of the message))
    const PARSE_CASES: &[(&str, Result<&str, &str>)] = &[
        ("ZohoCRM.modules.leads.READ", Ok("ZohoCRM.modules.leads.READ")),
        ("zohocrm.MODULES.Leads.read", Ok("ZohoCRM.modules.leads.READ")),
        ("ZohoCRM.modules.ALL", Ok("ZohoCRM.modules.ALL")),
        ("ZohoCRM.modules.READ", Ok("ZohoCRM.modules.READ")),
        ("ZohoCRM.settings.fields.all", Ok("ZohoCRM.settings.fields.ALL")),
        ("ZohoCRM.files.CREATE", Ok("ZohoCRM.Files.CREATE")),
        ("ZohoCRM.send_mail.all.CREATE", Ok("ZohoCRM.send_mail.all.CREATE")),
        ("ZohoSearch.securesearch.READ", Ok("ZohoSearch.securesearch.READ")),
        ("ZohoCRM.composite_requests.CUSTOM", Ok("ZohoCRM.composite_requests.CUSTOM")),
        ("ZohoCRM.functions.execute.READ", Ok("ZohoCRM.functions.execute.READ")),
        ("ZohoCRM.bulk.backup.ALL", Ok("ZohoCRM.bulk.backup.ALL")),
        (
            "ZohoCRM.modules.leads.READS",
            Err("unknown operation in `ZohoCRM.modules.leads.READS`; did you mean `ZohoCRM.modules.leads.READ`?"),
        ),
        (
            "ZohoCRM.modulez.leads.READ",
            Err("did you mean `ZohoCRM.modules.leads.READ`?"),
        ),
        (
            "ZohoCRM.modules.lead.READ",
            Err("did you mean `ZohoCRM.modules.leads.READ`?"),
        ),
        (
            "ZohoCRM.modules.Sales_Orders.READ",
            Err("did you mean `ZohoCRM.modules.salesorders.READ`?"),
        ),
        ("ZohoCRM.modules.*.READ", Err("write `ZohoCRM.modules.READ`")),
        ("ZohoCRM..READ", Err("empty part")),
        ("", Err("empty entry")),
        ("ZohoCRM.modules.leads", Err("missing operation")),
        ("ZohoCRM.modules.leads.READ.x", Err("is not `Service.family")),
        ("ZohoCMR.modules.leads.READ", Err("did you mean `ZohoCRM.modules.leads.READ`?")),
        ("ZohoCRM.users.leads.READ", Err("takes no sub-scope")),
        ("ZohoCRM.functions.READ", Err("needs a sub-scope")),
        ("ZohoCRM.modules.leads.READ ", Err("whitespace")),
        ("ZohoCRM.modules.leads.VIEW", Err("operations are ALL, READ")),
    ];

    #[test]
    fn parse_table() {
        for (entry, expected) in PARSE_CASES {
            let got = Scope::parse(entry);
            match (expected, got) {
                (Ok(canon), Ok(scope)) => {
                    assert_eq!(
                        scope.to_string(),
                        *canon,
                        "case {entry:?}: canonical spelling"
                    )
                }
                (Err(needle), Err(e)) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(needle),
                        "case {entry:?}: message {msg:?} should contain {needle:?}"
                    )
                }
                (exp, got) => panic!("case {entry:?}: expected {exp:?}, got {got:?}"),
            }
        }
    }

    /// (granted, required, covers?)
    const COVER_CASES: &[(&str, &str, bool)] = &[
        ("ZohoCRM.modules.ALL", "ZohoCRM.modules.leads.READ", true),
        ("ZohoCRM.modules.READ", "ZohoCRM.modules.custom.READ", true),
        (
            "ZohoCRM.modules.READ",
            "ZohoCRM.modules.leads.CREATE",
            false,
        ),
        (
            "ZohoCRM.modules.leads.WRITE",
            "ZohoCRM.modules.leads.DELETE",
            true,
        ),
        (
            "ZohoCRM.modules.leads.WRITE",
            "ZohoCRM.modules.leads.READ",
            false,
        ),
        (
            "ZohoCRM.modules.leads.ALL",
            "ZohoCRM.modules.contacts.READ",
            false,
        ),
        ("ZohoCRM.modules.leads.READ", "ZohoCRM.modules.READ", false),
        (
            "ZohoCRM.settings.ALL",
            "ZohoCRM.settings.fields.UPDATE",
            true,
        ),
        (
            "ZohoCRM.settings.fields.ALL",
            "ZohoCRM.settings.layouts.READ",
            false,
        ),
        (
            "ZohoCRM.send_mail.all.CREATE",
            "ZohoCRM.send_mail.leads.CREATE",
            true,
        ),
        ("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.backup.READ", false),
        ("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.READ", true),
        (
            "ZohoCRM.composite_requests.ALL",
            "ZohoCRM.composite_requests.CUSTOM",
            true,
        ),
        (
            "ZohoCRM.composite_requests.WRITE",
            "ZohoCRM.composite_requests.CUSTOM",
            false,
        ),
        ("ZohoCRM.users.ALL", "ZohoCRM.org.READ", false),
        (
            "ZohoSearch.securesearch.ALL",
            "ZohoSearch.securesearch.READ",
            true,
        ),
    ];

    #[test]
    fn covers_table() {
        for (granted, required, expected) in COVER_CASES {
            let g = Scope::parse(granted).expect("test grant parses");
            let r = Scope::parse(required).expect("test requirement parses");
            assert_eq!(g.covers(&r), *expected, "case {granted} covers {required}");
        }
    }

    #[test]
    fn canonical_spelling_round_trips() {
        for fam in FAMILIES {
            let text = format!("{}.{}.READ", fam.service.as_str(), fam.name);
            if fam.sub_required {
                continue;
            }
            let scope = Scope::parse(&text.to_ascii_lowercase()).expect("every family parses");
            assert_eq!(
                scope.to_string(),
                text,
                "family {} prints canonically",
                fam.name
            );
        }
    }
}
