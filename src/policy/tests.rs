//! Table-driven tests of the whole policy: canonical checks, classification and the allowlist
//! decision together, through the public `evaluate` / `evaluate_body`.

use http::{Method, Uri};

use super::*;

/// (required scopes, (status, code) when refused, missing scopes)
type Outcome = (
    Option<Vec<String>>,
    Option<(u16, &'static str)>,
    Vec<String>,
);

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Allowed with exactly these required scopes (in order).
    Allowed(&'static [&'static str]),
    /// Denied (403) with this code and exactly these missing scopes.
    Denied(&'static str, &'static [&'static str]),
    /// Rejected with this status and code.
    Rejected(u16, &'static str),
}
use Expect::*;

const LEADS_RO: &[&str] = &["ZohoCRM.modules.leads.READ"];
const LEADS_COQL: &[&str] = &["ZohoCRM.modules.leads.READ", "ZohoCRM.coql.READ"];
const BROAD: &[&str] = &[
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.users.ALL",
    "ZohoCRM.org.ALL",
    "ZohoSearch.securesearch.READ",
    "ZohoCRM.coql.READ",
    "ZohoCRM.bulk.ALL",
    "ZohoCRM.composite_requests.CUSTOM",
];

/// (allow, method, target, body, expectation)
#[allow(clippy::type_complexity)]
const CASES: &[(&[&str], &str, &str, Option<&str>, Expect)] = &[
    // Plain module reads and writes.
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "HEAD",
        "/crm/v8/Leads",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/leads?fields=Last_Name",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/LEADS/554023000000235011",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v2.1/Leads",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v9/Leads",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "POST",
        "/crm/v8/Leads",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.leads.CREATE"]),
    ),
    (
        LEADS_RO,
        "DELETE",
        "/crm/v8/Leads/1",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.leads.DELETE"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Contacts",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/CONTACTS",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        &["ZohoCRM.modules.READ"],
        "GET",
        "/crm/v8/Sales_Orders",
        None,
        Allowed(&["ZohoCRM.modules.salesorders.READ"]),
    ),
    (
        &["ZohoCRM.modules.leads.WRITE"],
        "PUT",
        "/crm/v8/Leads/1",
        None,
        Allowed(&["ZohoCRM.modules.leads.UPDATE"]),
    ),
    (
        &["ZohoCRM.modules.leads.WRITE"],
        "PATCH",
        "/crm/v8/Leads",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    (
        &["ZohoCRM.modules.custom.READ"],
        "GET",
        "/crm/v8/My_Module__c",
        None,
        Allowed(&["ZohoCRM.modules.custom.READ"]),
    ),
    (
        &["ZohoCRM.modules.custom.READ"],
        "GET",
        "/crm/v8/LeadsX",
        None,
        Allowed(&["ZohoCRM.modules.custom.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/LeadsX",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.custom.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads_Archive",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.custom.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads.json",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    // Upsert needs UPDATE too.
    (
        &["ZohoCRM.modules.leads.CREATE"],
        "POST",
        "/crm/v8/Leads/upsert",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.leads.UPDATE"]),
    ),
    // Related lists need the related module.
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/1/Contacts",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        &[
            "ZohoCRM.modules.leads.READ",
            "ZohoCRM.modules.contacts.READ",
        ],
        "GET",
        "/crm/v8/Leads/1/contacts",
        None,
        Allowed(&[
            "ZohoCRM.modules.leads.READ",
            "ZohoCRM.modules.contacts.READ",
        ]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/1/Notes",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.notes.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/1/photo",
        None,
        Allowed(&["ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/1/Photo",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/1/Contacts/2",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    // Search and count need ZohoSearch.
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/search?word=x",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoSearch.securesearch.READ"]),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/SEARCH?word=x",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/Search",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        LEADS_RO,
        "GET",
        "/crm/v8/Leads/actions/count",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoSearch.securesearch.READ"]),
    ),
    // Record actions with their own families.
    (
        &["ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/Leads/actions/mass_delete",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.mass_delete.leads.DELETE"]),
    ),
    (
        &["ZohoCRM.mass_update.UPDATE"],
        "POST",
        "/crm/v8/Leads/actions/mass_update",
        None,
        Allowed(&["ZohoCRM.mass_update.leads.UPDATE"]),
    ),
    (
        &["ZohoCRM.send_mail.all.CREATE"],
        "POST",
        "/crm/v8/Deals/1/actions/send_mail",
        None,
        Allowed(&["ZohoCRM.send_mail.deals.CREATE"]),
    ),
    (
        &["ZohoCRM.share.leads.READ"],
        "GET",
        "/crm/v8/Leads/1/actions/share",
        None,
        Allowed(&["ZohoCRM.share.leads.READ"]),
    ),
    (
        &["ZohoCRM.modules.leads.CREATE"],
        "POST",
        "/crm/v8/Leads/1/actions/convert",
        None,
        Allowed(&["ZohoCRM.modules.leads.CREATE"]),
    ),
    (
        &["ZohoCRM.change_owner.CREATE"],
        "POST",
        "/crm/v8/Leads/1/actions/change_owner",
        None,
        Allowed(&["ZohoCRM.change_owner.CREATE"]),
    ),
    // Fixed areas.
    (
        BROAD,
        "GET",
        "/crm/v8/settings/fields?module=Leads",
        None,
        Allowed(&["ZohoCRM.settings.fields.READ"]),
    ),
    (
        &["ZohoCRM.settings.layouts.READ"],
        "GET",
        "/crm/v8/settings/fields",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.settings.fields.READ"]),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/SETTINGS/fields",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/settings/Fields",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/settings",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/users/actions",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Users",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "POST",
        "/crm/v8/Coql",
        Some(r#"{"select_query":"select a from Leads"}"#),
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/users?type=CurrentUser",
        None,
        Allowed(&["ZohoCRM.users.READ"]),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/org",
        None,
        Allowed(&["ZohoCRM.org.READ"]),
    ),
    (
        &["ZohoCRM.notifications.READ"],
        "GET",
        "/crm/v8/actions/watch",
        None,
        Allowed(&["ZohoCRM.notifications.READ"]),
    ),
    (
        &["ZohoCRM.notifications.READ"],
        "PATCH",
        "/crm/v8/actions/watch",
        None,
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.notifications.UPDATE"]),
    ),
    (
        &["ZohoCRM.functions.execute.READ"],
        "GET",
        "/crm/v8/functions/my_fn/actions/execute?auth_type=oauth",
        None,
        Allowed(&["ZohoCRM.functions.execute.READ"]),
    ),
    (
        BROAD,
        "GET",
        "/crm/bulk/v8/read/123",
        None,
        Allowed(&["ZohoCRM.bulk.READ"]),
    ),
    (
        BROAD,
        "GET",
        "/crm/BULK/v8/read/123",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    // Unknown and non-CRM paths.
    (
        BROAD,
        "GET",
        "/crm/v8/Leads/1/bar/baz/qux",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    (
        BROAD,
        "GET",
        "/crm/v1/Leads",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    (
        BROAD,
        "GET",
        "/crm/V8/Leads",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/CRM/v8/Leads",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (BROAD, "GET", "/", None, Denied("PROXY_NOT_CRM", &[])),
    (
        BROAD,
        "POST",
        "/oauth/v2/token",
        None,
        Denied("PROXY_NOT_CRM", &[]),
    ),
    (
        BROAD,
        "GET",
        "/desk/v1/tickets",
        None,
        Denied("PROXY_NOT_CRM", &[]),
    ),
    // Canonical form.
    (
        BROAD,
        "GET",
        "/crm/v8/Leads/",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Leads/../Contacts",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Leads/%2e%2e/Contacts",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8//Leads",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Le%61ds",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Leads;x=1",
        None,
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        BROAD,
        "GET",
        "http://evil.example/crm/v8/Leads",
        None,
        Rejected(400, "PROXY_BAD_TARGET"),
    ),
    (
        BROAD,
        "GET",
        "evil.example:443",
        None,
        Rejected(400, "PROXY_BAD_TARGET"),
    ),
    (
        BROAD,
        "OPTIONS",
        "*",
        None,
        Rejected(405, "PROXY_METHOD_NOT_ALLOWED"),
    ),
    (BROAD, "GET", "*", None, Rejected(400, "PROXY_BAD_TARGET")),
    (
        BROAD,
        "TRACE",
        "/crm/v8/Leads",
        None,
        Rejected(405, "PROXY_METHOD_NOT_ALLOWED"),
    ),
    (
        BROAD,
        "CONNECT",
        "/crm/v8/Leads",
        None,
        Rejected(405, "PROXY_METHOD_NOT_ALLOWED"),
    ),
    (
        BROAD,
        "get",
        "/crm/v8/Leads",
        None,
        Rejected(405, "PROXY_METHOD_NOT_ALLOWED"),
    ),
    (
        BROAD,
        "PROPFIND",
        "/crm/v8/Leads",
        None,
        Rejected(405, "PROXY_METHOD_NOT_ALLOWED"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Leads?_method=DELETE",
        None,
        Rejected(400, "PROXY_BAD_QUERY"),
    ),
    (
        BROAD,
        "GET",
        "/crm/v8/Leads?x-http-method-override=DELETE",
        None,
        Rejected(400, "PROXY_BAD_QUERY"),
    ),
    // COQL.
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"select_query":"select Last_Name from Leads where id is not null"}"#),
        Allowed(&["ZohoCRM.coql.READ", "ZohoCRM.modules.leads.READ"]),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"select_query":"select Email from Contacts where id is not null"}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"select_query":"select Email from contacts where id is not null"}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        LEADS_RO,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"select_query":"select Last_Name from Leads"}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.coql.READ"]),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"select_query":"select Account_Name.Account_Name from Leads"}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.READ"]),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(
            r#"{"select_query":"select Last_Name from Leads","select_query":"select Email from Contacts"}"#,
        ),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"query":"select Last_Name from Leads"}"#),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some("not json"),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        LEADS_COQL,
        "POST",
        "/crm/v8/coql",
        Some(r#"{"select_query":42}"#),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        LEADS_COQL,
        "GET",
        "/crm/v8/coql",
        None,
        Denied("PROXY_UNKNOWN_OPERATION", &[]),
    ),
    // Bulk.
    (
        &["ZohoCRM.bulk.READ", "ZohoCRM.modules.leads.READ"],
        "POST",
        "/crm/bulk/v8/read",
        Some(r#"{"query":{"module":{"api_name":"Leads"},"fields":["Last_Name"]}}"#),
        Allowed(&["ZohoCRM.bulk.READ", "ZohoCRM.modules.leads.READ"]),
    ),
    (
        &["ZohoCRM.bulk.READ", "ZohoCRM.modules.leads.READ"],
        "POST",
        "/crm/bulk/v8/read",
        Some(r#"{"query":{"module":{"api_name":"Contacts"}}}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        &["ZohoCRM.bulk.READ", "ZohoCRM.modules.leads.READ"],
        "POST",
        "/crm/bulk/v8/read",
        Some(r#"{"query":{"module":"Contacts"}}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        &["ZohoCRM.bulk.READ"],
        "POST",
        "/crm/bulk/v8/read",
        Some(r#"{"query":{}}"#),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        &["ZohoCRM.bulk.CREATE", "ZohoCRM.modules.leads.CREATE"],
        "POST",
        "/crm/bulk/v8/write",
        Some(
            r#"{"operation":"insert","resource":[{"type":"data","module":{"api_name":"Leads"},"file_id":"1"}]}"#,
        ),
        Allowed(&["ZohoCRM.bulk.CREATE", "ZohoCRM.modules.leads.CREATE"]),
    ),
    (
        &["ZohoCRM.bulk.CREATE", "ZohoCRM.modules.leads.CREATE"],
        "POST",
        "/crm/bulk/v8/write",
        Some(
            r#"{"operation":"upsert","resource":[{"module":{"api_name":"Leads"}},{"module":{"api_name":"Deals"}}]}"#,
        ),
        Denied(
            "PROXY_SCOPE_DENIED",
            &[
                "ZohoCRM.modules.leads.UPDATE",
                "ZohoCRM.modules.deals.CREATE",
                "ZohoCRM.modules.deals.UPDATE",
            ],
        ),
    ),
    // Composite.
    (
        &[
            "ZohoCRM.composite_requests.CUSTOM",
            "ZohoCRM.modules.leads.READ",
        ],
        "POST",
        "/crm/v8/__composite_requests",
        Some(r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads/1"}]}"#),
        Allowed(&[
            "ZohoCRM.composite_requests.CUSTOM",
            "ZohoCRM.modules.leads.READ",
        ]),
    ),
    (
        &[
            "ZohoCRM.composite_requests.CUSTOM",
            "ZohoCRM.modules.leads.READ",
        ],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads/1"},{"method":"DELETE","uri":"/crm/v8/Contacts/1"}]}"#,
        ),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.DELETE"]),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads/%2e%2e/Contacts"}]}"#,
        ),
        Rejected(400, "PROXY_BAD_PATH"),
    ),
    (
        &[
            "ZohoCRM.composite_requests.CUSTOM",
            "ZohoCRM.modules.ALL",
            "ZohoCRM.coql.READ",
        ],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"POST","uri":"/crm/v8/coql","body":{"select_query":"select a from Contacts"}}]}"#,
        ),
        Allowed(&[
            "ZohoCRM.composite_requests.CUSTOM",
            "ZohoCRM.coql.READ",
            "ZohoCRM.modules.contacts.READ",
        ]),
    ),
    (
        &[
            "ZohoCRM.composite_requests.CUSTOM",
            "ZohoCRM.modules.leads.READ",
            "ZohoCRM.coql.READ",
        ],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"POST","uri":"/crm/v8/coql","body":{"select_query":"select a from Contacts"}}]}"#,
        ),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.modules.contacts.READ"]),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"POST","uri":"/crm/v8/__composite_requests","body":{"__composite_requests":[]}}]}"#,
        ),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads","headers":{"X-HTTP-Method-Override":"DELETE"}}]}"#,
        ),
        Rejected(400, "PROXY_BAD_QUERY"),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads","params":{"_method":"DELETE"}}]}"#,
        ),
        Rejected(400, "PROXY_BAD_QUERY"),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(r#"{"__composite_requests":[{"method":"get","uri":"/crm/v8/Leads"}]}"#),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(r#"{"__composite_requests":[{"method":"GET","uri":"/oauth/v2/token"}]}"#),
        Rejected(403, "PROXY_NOT_CRM"),
    ),
    (
        &["ZohoCRM.composite_requests.CUSTOM", "ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(
            r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads"},{"method":"GET","uri":"/crm/v8/Leads"},{"method":"GET","uri":"/crm/v8/Leads"},{"method":"GET","uri":"/crm/v8/Leads"},{"method":"GET","uri":"/crm/v8/Leads"},{"method":"GET","uri":"/crm/v8/Leads"}]}"#,
        ),
        Rejected(400, "PROXY_BAD_BODY"),
    ),
    (
        &["ZohoCRM.modules.ALL"],
        "POST",
        "/crm/v8/__composite_requests",
        Some(r#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads"}]}"#),
        Denied("PROXY_SCOPE_DENIED", &["ZohoCRM.composite_requests.CUSTOM"]),
    ),
];

fn run(policy: &Policy, method: &str, target: &str, body: Option<&str>) -> Outcome {
    let method = Method::from_bytes(method.as_bytes()).expect("test method is a token");
    let uri: Uri = target.parse().expect("test target parses as a Uri");
    let first = policy.evaluate(&method, &uri);
    let evaluation = match (&first, body) {
        (Evaluation::NeedsBody { pending, .. }, Some(b)) => {
            let second = policy.evaluate_body(pending, b.as_bytes());
            assert!(
                !matches!(second, Evaluation::NeedsBody { .. }),
                "evaluate_body never asks for a body again"
            );
            return summarize(&second, &method);
        }
        (Evaluation::NeedsBody { .. }, None) => {
            panic!("{method} {target}: needs a body but the case gives none")
        }
        (e, _) => e.clone(),
    };
    summarize(&evaluation, &method)
}

fn summarize(e: &Evaluation<'_>, method: &Method) -> Outcome {
    let missing = match e {
        Evaluation::Denied { missing, .. } => missing.to_strings(),
        _ => Vec::new(),
    };
    if let Some(msg) = e.denial_message(method) {
        assert!(
            !msg.chars().any(|c| c.is_control()),
            "messages never carry control characters: {msg:?}"
        );
    }
    (
        e.required().map(Required::to_strings),
        e.error_code().map(|(s, c)| (s.as_u16(), c)),
        missing,
    )
}

#[test]
fn decision_table() {
    for (allow, method, target, body, expect) in CASES {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        let policy =
            Policy::new(&allow, &[], PolicyMode::Enforce).expect("test allowlist is valid");
        let case = format!("{method} {target} with {allow:?}");
        let (required, code, missing) = run(&policy, method, target, *body);
        match expect {
            Allowed(scopes) => {
                assert_eq!(code, None, "case {case}: expected allowed");
                let mut got = required.unwrap_or_default();
                let mut want: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
                got.sort();
                want.sort();
                assert_eq!(got, want, "case {case}: required scopes");
            }
            Denied(want_code, scopes) => {
                assert_eq!(
                    code,
                    Some((403, *want_code)),
                    "case {case}: expected 403 {want_code}"
                );
                let want: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
                assert_eq!(missing, want, "case {case}: missing scopes");
            }
            Rejected(status, want_code) => {
                assert_eq!(
                    code,
                    Some((*status, *want_code)),
                    "case {case}: expected rejection"
                );
            }
        }
    }
}

#[test]
fn denial_body_matches_the_documented_shape() {
    let policy = Policy::new(
        &["ZohoCRM.modules.leads.READ".to_string()],
        &[],
        PolicyMode::Enforce,
    )
    .expect("valid allowlist");
    let uri: Uri = "/crm/v8/Contacts".parse().expect("uri");
    let e = policy.evaluate(&Method::GET, &uri);
    let body = e
        .error_body(&Method::GET)
        .expect("a denial has an error body");
    let json = serde_json::to_value(&body).expect("error body serialises");
    assert_eq!(
        json,
        serde_json::json!({
            "code": "PROXY_SCOPE_DENIED",
            "message": "GET /crm/v8/Contacts needs ZohoCRM.modules.contacts.READ, which proxy.yaml does not allow",
            "details": {
                "required": ["ZohoCRM.modules.contacts.READ"],
                "missing": ["ZohoCRM.modules.contacts.READ"],
                "method": "GET",
                "path": "/crm/v8/Contacts"
            },
            "status": "error"
        }),
        "403 body wording and fields"
    );
}

#[test]
fn unknown_operation_message() {
    let policy = Policy::new(
        &["ZohoCRM.modules.ALL".to_string()],
        &[],
        PolicyMode::Enforce,
    )
    .expect("valid");
    let uri: Uri = "/crm/v8/Foo/1/bar/baz/qux".parse().expect("uri");
    let e = policy.evaluate(&Method::GET, &uri);
    assert_eq!(
        e.denial_message(&Method::GET).as_deref(),
        Some("GET /crm/v8/Foo/1/bar/baz/qux is not a Zoho CRM API operation this proxy knows; it is denied by default"),
        "unknown-operation wording"
    );
}

#[test]
fn report_mode_forwards_denials_but_not_non_crm() {
    let policy = Policy::new(
        &["ZohoCRM.modules.leads.READ".to_string()],
        &[],
        PolicyMode::Report,
    )
    .expect("valid");
    let contacts: Uri = "/crm/v8/Contacts".parse().expect("uri");
    let oauth: Uri = "/oauth/v2/token".parse().expect("uri");
    let bad: Uri = "/crm/v8/Leads/..".parse().expect("uri");
    assert!(
        policy
            .evaluate(&Method::GET, &contacts)
            .forwards(PolicyMode::Report),
        "report mode forwards a scope denial"
    );
    assert!(
        !policy
            .evaluate(&Method::GET, &contacts)
            .forwards(PolicyMode::Enforce),
        "enforce mode does not"
    );
    assert!(
        !policy
            .evaluate(&Method::GET, &oauth)
            .forwards(PolicyMode::Report),
        "non-CRM paths are never forwarded"
    );
    assert!(
        !policy
            .evaluate(&Method::GET, &bad)
            .forwards(PolicyMode::Report),
        "rejected requests are never forwarded"
    );
}

#[test]
fn modules_map_overrides_and_validates() {
    let allow = vec!["ZohoCRM.modules.appointments.READ".to_string()];
    let map = vec![("My_Visits".to_string(), "Appointments".to_string())];
    let policy = Policy::new(&allow, &map, PolicyMode::Enforce).expect("valid map");
    let uri: Uri = "/crm/v8/my_visits".parse().expect("uri");
    assert!(
        matches!(
            policy.evaluate(&Method::GET, &uri),
            Evaluation::Allowed { .. }
        ),
        "override maps a custom API name"
    );

    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("Bad-Key", "leads")], "is not a module API name"),
        (&[("Visits", "appointment")], "did you mean `appointments`?"),
        (&[("Visits", "Sales_Orders")], "did you mean `salesorders`?"),
        (
            &[("Visits", "leads"), ("VISITS", "leads")],
            "appears more than once",
        ),
    ];
    for (map, needle) in cases {
        let map: Vec<(String, String)> = map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let err =
            Policy::new(&allow, &map, PolicyMode::Enforce).expect_err("invalid map is refused");
        assert!(
            err.to_string().contains(needle),
            "case {map:?}: {err} should contain {needle:?}"
        );
    }
}

#[test]
fn allow_errors_name_the_index() {
    let allow: Vec<String> = [
        "ZohoCRM.modules.leads.READ",
        "ZohoCRM.modules.contacts.READ",
        "ZohoCRM.modules.leads.READS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let err = Policy::new(&allow, &[], PolicyMode::Enforce).expect_err("typo refused");
    assert_eq!(
        err.to_string(),
        "allow[2]: unknown operation in `ZohoCRM.modules.leads.READS`; did you mean `ZohoCRM.modules.leads.READ`?",
        "documented wording"
    );
    assert_eq!(
        Policy::new(&[], &[], PolicyMode::Enforce).expect_err("empty refused"),
        PolicyError::EmptyAllowlist,
        "empty allowlist is a config error"
    );
}

#[test]
fn summary_normalises_and_dedups() {
    let allow: Vec<String> = [
        "zohocrm.modules.leads.read",
        "ZohoCRM.modules.leads.READ",
        "ZOHOCRM.SETTINGS.ALL",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let policy = Policy::new(&allow, &[], PolicyMode::Report).expect("valid");
    let summary = policy.summary();
    assert_eq!(
        summary.allow,
        vec!["ZohoCRM.modules.leads.READ", "ZohoCRM.settings.ALL"],
        "canonical, deduplicated"
    );
    assert_eq!(summary.mode, PolicyMode::Report, "mode carried");
    let json = serde_json::to_value(&summary).expect("summary serialises");
    assert_eq!(json["mode"], "report", "mode serialises lower-case");
}

#[test]
fn explain_names_the_required_scope_and_entry() {
    let allow: Vec<String> = ["ZohoCRM.modules.ALL"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let policy = Policy::new(&allow, &[], PolicyMode::Enforce).expect("valid");
    let uri: Uri = "/crm/v8/Leads/1/Contacts".parse().expect("uri");
    let ex = policy.explain(&Method::GET, &uri, None);
    assert_eq!(ex.decision, Decision::Allowed, "allowed by modules.ALL");
    assert_eq!(ex.required.len(), 2, "leads and contacts");
    assert_eq!(
        ex.required[1].scope, "ZohoCRM.modules.contacts.READ",
        "related module scope named"
    );
    assert_eq!(
        ex.required[1].covered_by.as_deref(),
        Some("allow[0]: ZohoCRM.modules.ALL"),
        "covering entry named"
    );
    let text = ex.to_string();
    assert!(
        text.contains("ZohoCRM.modules.contacts.READ  allowed by allow[0]"),
        "human text: {text}"
    );

    let coql: Uri = "/crm/v8/coql".parse().expect("uri");
    let pending = policy.explain(&Method::POST, &coql, None);
    assert_eq!(pending.decision, Decision::NeedsBody, "COQL without --body");
    let with_body = policy.explain(
        &Method::POST,
        &coql,
        Some(br#"{"select_query":"select a from Leads"}"#),
    );
    assert_eq!(
        with_body.decision,
        Decision::Denied,
        "coql.READ is not allowed"
    );
    assert!(
        with_body
            .required
            .iter()
            .any(|c| c.scope == "ZohoCRM.coql.READ" && c.covered_by.is_none()),
        "the uncovered coql scope is listed"
    );
}

#[test]
fn oversized_body_is_refused() {
    let policy =
        Policy::new(&["ZohoCRM.coql.READ".to_string()], &[], PolicyMode::Enforce).expect("valid");
    let uri: Uri = "/crm/v8/coql".parse().expect("uri");
    let Evaluation::NeedsBody { pending, .. } = policy.evaluate(&Method::POST, &uri) else {
        panic!("coql needs a body");
    };
    assert_eq!(pending.max_bytes(), 64 * 1024, "COQL cap is 64 KiB");
    let big = vec![b' '; pending.max_bytes() + 1];
    let e = policy.evaluate_body(&pending, &big);
    assert_eq!(
        e.error_code().map(|(s, c)| (s.as_u16(), c)),
        Some((413, "PROXY_BODY_TOO_LARGE")),
        "over the cap"
    );
}
