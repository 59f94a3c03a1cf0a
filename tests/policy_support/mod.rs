//! Helpers shared by the `policy_*` integration tests: sample values for the spec's path
//! placeholders, sample bodies, and the corpus of canonical requests the variant tests mutate.
#![allow(dead_code)]

use zoho_auth_proxy::policy::BodyKind;

pub mod invariants;

/// The v8 operations file.
pub const OPERATIONS: &str = include_str!("../data/crm-v8-operations.tsv");

/// Sample values for the spec's path placeholders.
pub fn fill(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or(rest.len() - 1);
        let name = &rest[start + 1..end];
        out.push_str(match name {
            "module" | "module_api_name" | "module_name" | "moduleName" => "Leads",
            "related_list_api_name" => "Contacts",
            "external_value" | "external_field_value" => "EXT-1001",
            "api_name" => "Sales_Target",
            "portal" | "portal_name" => "PartnerPortal",
            "feature_api_name" => "record_locking",
            "message_id" => "c6085fae06cbd7b75001fe669d4e5e0c",
            "download_url" => "v2/crm/4150868/backup/file.zip",
            _ => "4150868000000224005",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A representative body for each body-dependent endpoint.
pub fn sample_body(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Coql => r#"{"select_query":"select Last_Name from Leads where id is not null"}"#,
        BodyKind::BulkRead => r#"{"query":{"module":{"api_name":"Leads"}}}"#,
        BodyKind::BulkWrite => {
            r#"{"operation":"insert","resource":[{"type":"data","module":{"api_name":"Leads"},"file_id":"1"}]}"#
        }
        BodyKind::Composite => {
            r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads/4150868000000224005"}]}"#
        }
    }
}

/// (method, filled path) of every spec operation, deduplicated, plus extra shapes.
pub fn corpus() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in OPERATIONS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .skip(1)
    {
        let mut cols = line.split('\t');
        let (Some(m), Some(p)) = (cols.next(), cols.next()) else {
            continue;
        };
        let item = (m.to_string(), fill(p));
        if !out.contains(&item) {
            out.push(item);
        }
    }
    for (m, p) in [
        ("GET", "/crm/v2/Leads"),
        ("GET", "/crm/v2.1/Contacts/4150868000000224005"),
        ("HEAD", "/crm/v8/Deals"),
        ("GET", "/crm/v8/My_Custom_Module"),
        ("GET", "/crm/v8/Sales_Orders/1/Products"),
        ("DELETE", "/crm/v8/Price_Books/1"),
        ("GET", "/crm/v8/Leads/1/Notes/2"),
        ("GET", "/crm/v3/Accounts/search"),
        ("GET", "/oauth/v2/token"),
        ("GET", "/crm/v8/Foo/1/bar/baz/qux"),
    ] {
        out.push((m.to_string(), p.to_string()));
    }
    out
}
