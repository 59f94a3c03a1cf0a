//! The scope grammar's tables: parsing, suggestions, coverage.

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
