//! Every operation of Zoho's official Books v3 (849) and Inventory v1 (268) OpenAPI sets, read
//! from `tests/data/*-operations.tsv` here, independently of the proxy's own reading of them:
//! each row, with its placeholders filled, is allowed by exactly its declared scope and denied
//! (403 naming that scope) by a list holding only another family's. The organization rules
//! (required, from the path, not needed, repeated, foreign, narrowed) are checked on top, and
//! every row without its `organization_id` is refused exactly where the table requires one.

use http::{Method, StatusCode, Uri};
use zoho_auth_proxy::policy::{Evaluation, Policy, PolicyMode};

const BOOKS: &str = include_str!("data/books-v3-operations.tsv");
const INVENTORY: &str = include_str!("data/inventory-v1-operations.tsv");
const ORG: &str = "60001";

struct Row {
    method: String,
    path: String,
    scope: String,
    organization: String,
}

fn rows(text: &str) -> Vec<Row> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Row {
                method: cols[0].to_string(),
                path: cols[1].to_string(),
                // Inventory's spec declares `salesreturns.GET` (defect D1): READ is meant.
                scope: cols[3].replace(".GET", ".READ"),
                organization: cols[4].to_string(),
            }
        })
        .collect()
}

/// The template with ids filled in (`{organization_id}` with [`ORG`]), and the query.
fn fill(row: &Row) -> String {
    let path: Vec<String> = row
        .path
        .split('/')
        .map(|seg| match seg {
            "{organization_id}" => ORG.to_string(),
            s if s.starts_with('{') => "4000000123".to_string(),
            s if s.starts_with('(') => "42".to_string(),
            s => s.to_string(),
        })
        .collect();
    format!("{}?organization_id={ORG}", path.join("/"))
}

fn policy(allow: &[&str]) -> Policy {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    Policy::new(&allow, &[], PolicyMode::Enforce).expect("valid policy")
}

fn eval(policy: &Policy, method: &str, target: &str) -> (String, Vec<String>) {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let uri: Uri = target.parse().expect("uri");
    let e = policy.evaluate(&method, &uri);
    let required = e.required().map(|r| r.to_strings()).unwrap_or_default();
    let label = match &e {
        Evaluation::Allowed { .. } => "allowed".to_string(),
        other => other
            .error_code()
            .map(|(s, c)| format!("{} {c}", s.as_u16()))
            .unwrap_or_else(|| other.label().to_string()),
    };
    (label, required)
}

/// A scope of another family of the same service, to prove the row's own is what decides.
fn other_family(scope: &str) -> String {
    let parts: Vec<&str> = scope.split('.').collect();
    let other = if parts[1] == "contacts" {
        "bills"
    } else {
        "contacts"
    };
    format!("{}.{other}.{}", parts[0], parts[2])
}

fn check_table(name: &str, text: &str, expected_rows: usize) {
    let rows = rows(text);
    assert_eq!(rows.len(), expected_rows, "{name}: rows read");
    let mut failures = Vec::new();
    for row in &rows {
        let target = fill(row);
        let (label, required) = eval(&policy(&[&row.scope]), &row.method, &target);
        if label != "allowed" || required != [row.scope.clone()] {
            failures.push(format!(
                "{} {} → {label} {required:?}, expected allowed [{}]",
                row.method, row.path, row.scope
            ));
        }
        // Without the query's organization_id: required where the table says so (listing
        // organizations needs none; Books' salesreceipts email declares none by omission).
        let bare = target.split('?').next().unwrap_or_default().to_string();
        let (label, _) = eval(&policy(&[&row.scope]), &row.method, &bare);
        let listing = row.method == "GET" && row.path.ends_with("/organizations");
        let omission = row.path.contains("/salesreceipts/");
        // `/organizations/{organization_id}`: the path names it (Inventory's spec also asks for
        // the query one; the proxy checks the path's).
        let in_path = row.path.contains("{organization_id}");
        let expected = match row.organization.as_str() {
            "required" if !listing && !in_path => "400 PROXY_ORGANIZATION_REQUIRED",
            "absent" if omission => "400 PROXY_ORGANIZATION_REQUIRED",
            _ => "allowed",
        };
        if label != expected {
            failures.push(format!(
                "{} {} without organization_id ({}) → {label}, expected {expected}",
                row.method, row.path, row.organization
            ));
        }
        let other = other_family(&row.scope);
        let (label, required) = eval(&policy(&[&other]), &row.method, &target);
        if label != "403 PROXY_SCOPE_DENIED" || required != [row.scope.clone()] {
            failures.push(format!(
                "{} {} with only {other} → {label} {required:?}, expected 403 naming {}",
                row.method, row.path, row.scope
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} rows misclassified:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn every_books_operation_needs_exactly_its_declared_scope() {
    check_table("books", BOOKS, 849);
}

#[test]
fn every_inventory_operation_needs_exactly_its_declared_scope() {
    check_table("inventory", INVENTORY, 268);
}

#[test]
fn the_same_path_needs_another_scope_in_each_product() {
    let p = policy(&["ZohoBooks.settings.READ", "ZohoInventory.items.READ"]);
    let books = eval(&p, "GET", "/books/v3/items?organization_id=1");
    assert_eq!(
        books,
        ("allowed".into(), vec!["ZohoBooks.settings.READ".into()])
    );
    let inventory = eval(&p, "GET", "/inventory/v1/items?organization_id=1");
    assert_eq!(
        inventory,
        ("allowed".into(), vec!["ZohoInventory.items.READ".into()])
    );
    let only_books = policy(&["ZohoBooks.settings.READ"]);
    let (label, required) = eval(&only_books, "GET", "/inventory/v1/items?organization_id=1");
    assert_eq!(label, "403 PROXY_SCOPE_DENIED");
    assert_eq!(required, ["ZohoInventory.items.READ"]);
    // `/vendorcredits` needs debitnotes; the operation word comes from the table.
    let (_, required) = eval(&p, "GET", "/books/v3/vendorcredits?organization_id=1");
    assert_eq!(required, ["ZohoBooks.debitnotes.READ"]);
    let (_, required) = eval(
        &p,
        "POST",
        "/books/v3/invoices/mapwithorder?organization_id=1",
    );
    assert_eq!(required, ["ZohoBooks.invoices.UPDATE"]);
}

#[test]
fn all_and_fullaccess_cover_their_family_and_service() {
    let p = policy(&["ZohoBooks.invoices.ALL"]);
    for (m, path) in [
        ("GET", "/books/v3/invoices"),
        ("POST", "/books/v3/invoices"),
        ("PUT", "/books/v3/invoices/1"),
        ("DELETE", "/books/v3/invoices/1"),
        ("POST", "/books/v3/invoices/mapwithorder"),
    ] {
        let (label, _) = eval(&p, m, &format!("{path}?organization_id=1"));
        assert_eq!(label, "allowed", "{m} {path}");
    }
    let (label, _) = eval(&p, "GET", "/books/v3/bills?organization_id=1");
    assert_eq!(label, "403 PROXY_SCOPE_DENIED");
    let full = policy(&["ZohoInventory.fullaccess.READ"]);
    assert_eq!(
        eval(&full, "GET", "/inventory/v1/bills?organization_id=1").0,
        "allowed"
    );
    assert_eq!(
        eval(&full, "POST", "/inventory/v1/bills?organization_id=1").0,
        "403 PROXY_SCOPE_DENIED"
    );
    assert_eq!(
        eval(&full, "GET", "/books/v3/bills?organization_id=1").0,
        "403 PROXY_SCOPE_DENIED"
    );
}

#[test]
fn unknown_and_misspelt_paths_under_a_product_are_refused() {
    let p = policy(&["ZohoBooks.fullaccess.ALL", "ZohoInventory.fullaccess.ALL"]);
    for (m, target, expected) in [
        (
            "GET",
            "/books/v3/invoices/1/nonsense/2/3?organization_id=1",
            "403 PROXY_UNKNOWN_OPERATION",
        ),
        (
            "GET",
            "/books/v3/invoices/mapwithorder?organization_id=1",
            "403 PROXY_UNKNOWN_OPERATION",
        ),
        (
            "GET",
            "/books/v4/invoices?organization_id=1",
            "403 PROXY_UNKNOWN_OPERATION",
        ),
        (
            "GET",
            "/books?organization_id=1",
            "403 PROXY_UNKNOWN_OPERATION",
        ),
        (
            "PATCH",
            "/books/v3/invoices/1?organization_id=1",
            "403 PROXY_UNKNOWN_OPERATION",
        ),
        (
            "GET",
            "/inventory/v1/nonsense?organization_id=1",
            "403 PROXY_UNKNOWN_OPERATION",
        ),
        (
            "GET",
            "/books/v3/Invoices?organization_id=1",
            "400 PROXY_BAD_PATH",
        ),
        (
            "GET",
            "/Books/v3/invoices?organization_id=1",
            "400 PROXY_BAD_PATH",
        ),
        (
            "GET",
            "/books/V3/invoices?organization_id=1",
            "400 PROXY_BAD_PATH",
        ),
        (
            "GET",
            "/books/v3/invoices/../bills?organization_id=1",
            "400 PROXY_BAD_PATH",
        ),
        (
            "GET",
            "/books/v3/invoices/%31?organization_id=1",
            "400 PROXY_BAD_PATH",
        ),
        ("GET", "/desk/v1/tickets", "403 PROXY_NOT_CRM"),
    ] {
        assert_eq!(eval(&p, m, target).0, expected, "{m} {target}");
    }
    // Books' custom-module catch-alls match last, and never a word another row has there.
    let (label, required) = eval(&p, "GET", "/books/v3/cm_debtors?organization_id=1");
    assert_eq!(
        (label.as_str(), required),
        ("allowed", vec!["ZohoBooks.custommodules.ALL".to_string()])
    );
    let (label, required) = eval(&p, "GET", "/books/v3/invoices?organization_id=1");
    assert_eq!(
        (label.as_str(), required),
        ("allowed", vec!["ZohoBooks.invoices.READ".to_string()])
    );
    assert_eq!(
        eval(&p, "DELETE", "/books/v3/organizations?organization_id=1").0,
        "403 PROXY_UNKNOWN_OPERATION"
    );
}

#[test]
fn organization_ids_are_required_checked_and_narrowed() {
    let base = policy(&["ZohoBooks.fullaccess.ALL", "ZohoInventory.fullaccess.ALL"]);
    let listed = base
        .with_organizations(Some(&["60001".to_string(), "60002".to_string()]), false)
        .expect("valid list");
    let client = listed
        .with_organizations(Some(&["60002".to_string()]), true)
        .expect("narrower list");
    assert!(listed
        .with_organizations(Some(&["70000".to_string()]), true)
        .is_err());
    assert!(base.with_organizations(Some(&[]), false).is_err());
    assert!(base
        .with_organizations(Some(&["60 001".to_string()]), false)
        .is_err());

    for (p, target, expected) in [
        (
            &base,
            "/books/v3/invoices",
            "400 PROXY_ORGANIZATION_REQUIRED",
        ),
        (
            &base,
            "/books/v3/invoices?organization_id=",
            "400 PROXY_ORGANIZATION_REQUIRED",
        ),
        (&base, "/books/v3/invoices?organization_id=99", "allowed"),
        (
            &listed,
            "/books/v3/invoices?organization_id=99",
            "403 PROXY_ORGANIZATION_NOT_ALLOWED",
        ),
        (
            &listed,
            "/books/v3/invoices?organization_id=60001",
            "allowed",
        ),
        (
            &client,
            "/books/v3/invoices?organization_id=60001",
            "403 PROXY_ORGANIZATION_NOT_ALLOWED",
        ),
        (
            &client,
            "/books/v3/invoices?organization_id=60002",
            "allowed",
        ),
        (
            &listed,
            "/books/v3/invoices?organization_id=60001&organization_id=60001",
            "400 PROXY_BAD_QUERY",
        ),
        (
            &listed,
            "/books/v3/invoices?organization_id=60001&organization_id=99",
            "400 PROXY_BAD_QUERY",
        ),
        (
            &listed,
            "/books/v3/invoices?organization_id=60001&organization%5Fid=99",
            "400 PROXY_BAD_QUERY",
        ),
        (
            &listed,
            "/books/v3/invoices?Organization_Id=60001",
            "400 PROXY_BAD_QUERY",
        ),
        // Listing organizations needs none; one given is still checked.
        (&listed, "/books/v3/organizations", "allowed"),
        (&listed, "/inventory/v1/organizations", "allowed"),
        (
            &listed,
            "/inventory/v1/organizations?organization_id=99",
            "403 PROXY_ORGANIZATION_NOT_ALLOWED",
        ),
        // From the path; a query one must agree.
        (&listed, "/books/v3/organizations/60001", "allowed"),
        (
            &listed,
            "/books/v3/organizations/99",
            "403 PROXY_ORGANIZATION_NOT_ALLOWED",
        ),
        // Both the path's and a different query one must be listed.
        (
            &listed,
            "/books/v3/organizations/60001?organization_id=60002",
            "allowed",
        ),
        (
            &listed,
            "/books/v3/organizations/60001?organization_id=99",
            "403 PROXY_ORGANIZATION_NOT_ALLOWED",
        ),
        (
            &listed,
            "/books/v3/organizations/99?organization_id=60001",
            "403 PROXY_ORGANIZATION_NOT_ALLOWED",
        ),
        (
            &listed,
            "/inventory/v1/organizations/60002?organization_id=60002",
            "allowed",
        ),
        // A write the table needs none for names one when a list is in force.
        (&base, "/books/v3/organizations/address", "allowed"),
        (
            &listed,
            "/books/v3/organizations/address",
            "400 PROXY_ORGANIZATION_REQUIRED",
        ),
        (
            &listed,
            "/books/v3/organizations/address?organization_id=60001",
            "allowed",
        ),
        // Books' spec omits it here; required all the same.
        (
            &base,
            "/books/v3/salesreceipts/1/email",
            "400 PROXY_ORGANIZATION_REQUIRED",
        ),
        (
            &listed,
            "/inventory/v1/items",
            "400 PROXY_ORGANIZATION_REQUIRED",
        ),
    ] {
        let method = if target.contains("/email") || target.contains("/address") {
            "POST"
        } else {
            "GET"
        };
        assert_eq!(eval(p, method, target).0, expected, "{target}");
    }
    // A scope denial is reported first; an organization refusal is never forwarded, even in
    // report mode.
    let narrow = policy(&["ZohoBooks.bills.READ"])
        .with_organizations(Some(&["60001".to_string()]), false)
        .expect("list");
    assert_eq!(
        eval(&narrow, "GET", "/books/v3/invoices").0,
        "403 PROXY_SCOPE_DENIED"
    );
    let report = Policy::new(
        &["ZohoBooks.bills.READ".to_string()],
        &[],
        PolicyMode::Report,
    )
    .expect("policy")
    .with_organizations(Some(&["60001".to_string()]), false)
    .expect("list");
    let uri: Uri = "/books/v3/invoices?organization_id=99"
        .parse()
        .expect("uri");
    let e = report.evaluate(&Method::GET, &uri);
    assert_eq!(
        e.error_code(),
        Some((StatusCode::FORBIDDEN, "PROXY_ORGANIZATION_NOT_ALLOWED"))
    );
    assert!(!e.forwards(PolicyMode::Report));
    let uri: Uri = "/books/v3/invoices?organization_id=60001"
        .parse()
        .expect("uri");
    let e = report.evaluate(&Method::GET, &uri);
    assert!(
        e.forwards(PolicyMode::Report),
        "a denied scope is still reported and forwarded"
    );
    assert_eq!(e.target().and_then(|t| t.organization), Some("60001"));
    assert_eq!(e.target().map(|t| t.product.name), Some("books"));
}

#[test]
fn allow_entries_of_the_new_services_parse_with_suggestions() {
    let bad = Policy::new(
        &["ZohoBooks.invoice.READ".to_string()],
        &[],
        PolicyMode::Enforce,
    )
    .expect_err("unknown family");
    assert!(bad.to_string().contains("ZohoBooks.invoices.READ"), "{bad}");
    let bad = Policy::new(
        &["ZohoBook.invoices.READ".to_string()],
        &[],
        PolicyMode::Enforce,
    )
    .expect_err("unknown service");
    assert!(bad.to_string().contains("ZohoBooks.invoices.READ"), "{bad}");
    let p = policy(&["zohobooks.INVOICES.read"]);
    assert_eq!(p.summary().allow, ["ZohoBooks.invoices.READ"]);
}
