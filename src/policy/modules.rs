//! Module API names (`Leads`, `Sales_Orders`, `Appointments__s`, custom names) and the scope
//! names Zoho uses for them (`leads`, `salesorders`, `appointments`, `custom`).
//!
//! Owns the built-in table and the operator's `modules:` overrides, and resolves a path or body
//! segment case-insensitively without allocating. Must not know about routes or allowlists.

/// Every module scope name Zoho documents (`ZohoCRM.modules.{name}.{op}`), REFERENCE.md §6.
pub(crate) const MODULE_SCOPES: &[&str] = &[
    "leads",
    "accounts",
    "contacts",
    "deals",
    "campaigns",
    "tasks",
    "cases",
    "events",
    "calls",
    "solutions",
    "products",
    "vendors",
    "pricebooks",
    "quotes",
    "salesorders",
    "purchaseorders",
    "invoices",
    "custom",
    "notes",
    "attachments",
    "emails",
    "appointments",
    "appointments_rescheduled_history",
    "services",
    "approvals",
    "dashboards",
    "search",
    "lockinginformation",
    "entity_scores",
    "activities",
];

/// Built-in API name → scope name table. Any other valid API name is a custom module.
const STANDARD: &[(&str, &str)] = &[
    ("Leads", "leads"),
    ("Accounts", "accounts"),
    ("Contacts", "contacts"),
    ("Deals", "deals"),
    ("Potentials", "deals"),
    ("Campaigns", "campaigns"),
    ("Tasks", "tasks"),
    ("Cases", "cases"),
    ("Events", "events"),
    ("Calls", "calls"),
    ("Solutions", "solutions"),
    ("Products", "products"),
    ("Vendors", "vendors"),
    ("Price_Books", "pricebooks"),
    ("PriceBooks", "pricebooks"),
    ("Quotes", "quotes"),
    ("Sales_Orders", "salesorders"),
    ("SalesOrders", "salesorders"),
    ("Purchase_Orders", "purchaseorders"),
    ("PurchaseOrders", "purchaseorders"),
    ("Invoices", "invoices"),
    ("Notes", "notes"),
    ("Attachments", "attachments"),
    ("Emails", "emails"),
    ("Appointments__s", "appointments"),
    ("Services__s", "services"),
    (
        "Appointments_Rescheduled_History__s",
        "appointments_rescheduled_history",
    ),
    ("Activities", "activities"),
    ("Entity_Scores__s", "entity_scores"),
    ("Locking_Information__s", "lockinginformation"),
];

/// The scope name of a built-in module API name (case-insensitive), if it is one.
pub(crate) fn standard_scope_for(api_name: &str) -> Option<&'static str> {
    STANDARD
        .iter()
        .find(|(api, _)| api.eq_ignore_ascii_case(api_name))
        .map(|(_, scope)| *scope)
}

/// The canonical scope-name spelling, if `name` is one (case-insensitive).
pub(crate) fn module_scope(name: &str) -> Option<&'static str> {
    MODULE_SCOPES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(name))
        .copied()
}

/// Whether `name` has the shape of a Zoho API name: `[A-Za-z][A-Za-z0-9_]*`, at most 100 bytes.
pub(crate) fn is_api_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 100
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// The effective module map: the operator's overrides first, then the built-in table, then
/// `custom` for any other valid API name.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModuleMap {
    /// (API name as written in proxy.yaml, scope name).
    overrides: Vec<(String, &'static str)>,
}

impl ModuleMap {
    pub(crate) fn new(overrides: Vec<(String, &'static str)>) -> ModuleMap {
        ModuleMap { overrides }
    }

    pub(crate) fn overrides(&self) -> &[(String, &'static str)] {
        &self.overrides
    }

    /// Resolves an API name to its scope name; `None` if the text is not an API name at all.
    /// Case-insensitive, allocation-free.
    pub(crate) fn resolve(&self, api_name: &str) -> Option<&'static str> {
        if !is_api_name(api_name) {
            return None;
        }
        if let Some((_, scope)) = self
            .overrides
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(api_name))
        {
            return Some(scope);
        }
        Some(standard_scope_for(api_name).unwrap_or("custom"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &[(&str, Option<&str>)] = &[
        ("Leads", Some("leads")),
        ("LEADS", Some("leads")),
        ("leads", Some("leads")),
        ("Sales_Orders", Some("salesorders")),
        ("price_books", Some("pricebooks")),
        ("Appointments__s", Some("appointments")),
        ("Potentials", Some("deals")),
        ("My_Module", Some("custom")),
        ("Override_Me", Some("contacts")),
        ("1Leads", None),
        ("Leads.json", None),
        ("", None),
    ];

    #[test]
    fn resolve_table() {
        let map = ModuleMap::new(vec![("override_me".to_string(), "contacts")]);
        for (name, expected) in CASES {
            assert_eq!(map.resolve(name), *expected, "case {name:?}");
        }
    }

    #[test]
    fn every_standard_scope_is_a_known_scope_name() {
        for (api, scope) in STANDARD {
            assert!(
                module_scope(scope).is_some(),
                "{api} maps to an unknown scope {scope}"
            );
        }
    }
}
