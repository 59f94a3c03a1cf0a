//! The Zoho OAuth scope grammar: `Service.family[.sub].OPERATION`.
//!
//! Owns parsing an allow entry into a typed [`Scope`] (case-insensitively, with a "did you mean"
//! suggestion for near misses), the canonical spelling printed back to people, and the coverage
//! rule (`ALL` ⊇ everything, `WRITE` ⊇ CREATE/UPDATE/DELETE, group scopes ⊇ their members).
//! Every valid scope is built from the static tables below, so a [`Scope`] is `Copy` and never
//! allocates. Must not know about requests, paths or configuration files.

use std::fmt;

use super::modules;

mod parse;
pub use parse::ScopeError;

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
    /// `ZohoBooks` (families from the Books operation table).
    Books,
    /// `ZohoInventory` (families from the Inventory operation table).
    Inventory,
}

impl Service {
    pub(crate) const EVERY: [Service; 5] = [
        Service::Crm,
        Service::Search,
        Service::Files,
        Service::Books,
        Service::Inventory,
    ];

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Crm => "ZohoCRM",
            Service::Search => "ZohoSearch",
            Service::Files => "ZohoFiles",
            Service::Books => "ZohoBooks",
            Service::Inventory => "ZohoInventory",
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

/// The family name that covers every family of its service (`ZohoBooks.fullaccess.ALL`), for
/// the products whose families come from an operation table.
pub(crate) const FULL_ACCESS: &str = "fullaccess";

pub(crate) const fn family(
    service: Service,
    name: &'static str,
    subs: Subs,
    group: bool,
) -> Family {
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
        parse::parse(text)
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
        if self.service != required.service {
            return false;
        }
        if self.family != required.family {
            // `ZohoBooks.fullaccess.ALL`: every family of the service (table-driven products).
            return self.family == FULL_ACCESS && self.op.covers(required.op);
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

/// Escapes anything that is not printable ASCII and caps the length, so an error message never
/// carries raw control bytes from a config file or a request.
pub(crate) fn sanitize(text: &str) -> String {
    crate::util::escape(text, 120)
}

/// Every family of `service`: the built-in ones, or those of its product's operation table.
pub(crate) fn families_of(service: Service) -> impl Iterator<Item = &'static Family> {
    FAMILIES
        .iter()
        .filter(move |f| f.service == service)
        .chain(crate::policy::products::table_families(service).iter())
}

pub(crate) fn find_family(service: Service, name: &str) -> Option<&'static Family> {
    families_of(service).find(|f| f.name.eq_ignore_ascii_case(name))
}

pub(crate) fn sub_candidates(family: &Family) -> Vec<&'static str> {
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

pub(crate) fn find_sub(family: &Family, text: &str) -> Option<&'static str> {
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

#[cfg(test)]
mod tests;
