//! The fake Zoho Books v3 and Inventory v1 APIs, served by the CRM API server under
//! `/books/v3/` and `/inventory/v1/`: one module, the product is data ([`FinanceProduct`]).
//!
//! Owns: the Books-style authentication answer (`401 {"code":57,...}`), the `organization_id`
//! gate, the per-organization per-minute limit and the routing of `organizations`, `contacts`,
//! `items` and `invoices`. Must not: record requests or parse `__fake` switches itself (the CRM
//! server records, `crm/faults.rs` applies the switches), or block.

pub(crate) mod state;
pub(crate) mod store;

use http::request::Parts;
use http::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::control::{lock, Shared};
use super::crm::faults::{self, Api};
use super::crm::records::Reply;
use super::crm::{authenticate, Auth, Captured, Query};
use super::http::{empty, json, response, Resp};
use store::{envelope, Resource};

/// A Zoho Finance product the fake serves, with its path prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinanceProduct {
    /// Zoho Books, `/books/v3`.
    Books,
    /// Zoho Inventory, `/inventory/v1`.
    Inventory,
}

impl FinanceProduct {
    /// Every product, in a fixed order.
    pub const ALL: [FinanceProduct; 2] = [FinanceProduct::Books, FinanceProduct::Inventory];

    /// The path prefix, e.g. `/books/v3`.
    pub fn prefix(self) -> &'static str {
        match self {
            FinanceProduct::Books => "/books/v3",
            FinanceProduct::Inventory => "/inventory/v1",
        }
    }

    /// The product whose prefix `path` starts with (the prefix alone counts too), and the rest.
    pub(crate) fn split(path: &str) -> Option<(FinanceProduct, &str)> {
        FinanceProduct::ALL.into_iter().find_map(|p| {
            let rest = path.strip_prefix(p.prefix())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((p, rest))
        })
    }
}

/// The message of code 57 (an invalid token, or a forced failure).
pub(crate) const CODE57_MESSAGE: &str = "You are not authorized to perform this operation";

/// `401 {"code":57,"message":"You are not authorized to perform this operation"}`.
pub(crate) fn code57() -> Resp {
    json(401, &envelope(57, CODE57_MESSAGE))
}

/// `429 {"code":45,"message":"Request Limit Exceeded"}`, without `Retry-After`.
pub(crate) fn limit_exceeded() -> Resp {
    json(429, &envelope(45, "Request Limit Exceeded"))
}

/// `404 {"code":5,"message":"Invalid URL Passed"}`.
fn invalid_url() -> Resp {
    json(404, &envelope(5, "Invalid URL Passed"))
}

/// `405 {"code":37,...}` for a method a known path does not take.
fn wrong_method() -> Resp {
    json(
        405,
        &envelope(
            37,
            "The HTTP method is not allowed for the requested resource",
        ),
    )
}

/// The Books-style body of `__fake=status=N`.
pub(crate) fn status_error(status: u16) -> Value {
    let (code, message) = match status {
        400 => (2, "Invalid value passed"),
        401 | 403 => (57, CODE57_MESSAGE),
        404 => (5, "Invalid URL Passed"),
        405 => (
            37,
            "The HTTP method is not allowed for the requested resource",
        ),
        429 => (45, "Request Limit Exceeded"),
        _ => (1000, "Internal error"),
    };
    envelope(code, message)
}

/// The organization a request names: the path's for `/organizations/{id}`, else the query's
/// `organization_id`.
fn named_org(rest: &str, query: Option<&str>) -> Option<String> {
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    if let ["organizations", id] = segs.as_slice() {
        return Some((*id).to_owned()).filter(|id| !id.is_empty());
    }
    Query::parse(query)
        .get("organization_id")
        .map(str::to_owned)
}

/// Counts a Books/Inventory request as it arrives (before authentication), for
/// `FakeControl::org_request_count`.
pub(crate) fn note_arrival(shared: &Shared, parts: &Parts) {
    let Some((product, rest)) = FinanceProduct::split(parts.uri.path()) else {
        return;
    };
    if let Some(org) = named_org(rest, parts.uri.query()) {
        lock(&shared.books).arrived(product, &org);
    }
}

/// Serves a recorded Books/Inventory request: the token check (and forced code-57 failures),
/// then the `__fake` switches, else the normal answer ([`route`]).
pub(crate) async fn serve(
    shared: &Shared,
    product: FinanceProduct,
    parts: &Parts,
    captured: &Captured,
    own: bool,
) -> Resp {
    if !matches!(authenticate(shared, &parts.headers), Auth::Ok) {
        return code57();
    }
    if !own && lock(&shared.books).take_code57() {
        shared.notify();
        return code57();
    }
    let query = Query::parse(parts.uri.query());
    faults::dispatch(shared, parts, captured, &query, Api::Finance(product, own)).await
}

/// What a resource path names.
#[derive(Clone, Copy)]
enum Target<'a> {
    Orgs,
    Org(&'a str),
    Collection(Resource),
    Record(Resource, &'a str),
}

fn target(rest: &str) -> Option<Target<'_>> {
    let segs: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    match segs.as_slice() {
        ["organizations"] => Some(Target::Orgs),
        ["organizations", id] if !id.is_empty() => Some(Target::Org(id)),
        [coll] => Resource::from_segment(coll).map(Target::Collection),
        [coll, id] if !id.is_empty() => Resource::from_segment(coll).map(|r| Target::Record(r, id)),
        _ => None,
    }
}

/// The normal answer: the path, then the organization (known, under its limit), then the
/// method. `own` calls are not refused by the limit.
pub(crate) fn route(
    shared: &Shared,
    product: FinanceProduct,
    own: bool,
    parts: &Parts,
    captured: &Captured,
    query: &Query,
) -> Resp {
    let Some((_, rest)) = FinanceProduct::split(parts.uri.path()) else {
        return invalid_url();
    };
    let Some(target) = target(rest) else {
        return invalid_url();
    };
    let method = &parts.method;
    let org = match target {
        Target::Orgs => {
            return match *method {
                Method::GET => organizations(shared),
                _ => wrong_method(),
            }
        }
        Target::Org(id) => id.to_owned(),
        Target::Collection(_) | Target::Record(..) => match query.get("organization_id") {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => return json(400, &envelope(2, "organization_id is required")),
        },
    };
    {
        let mut state = lock(&shared.books);
        if !state.knows(&org) {
            return json(
                400,
                &envelope(6041, "This user is not associated with the organization"),
            );
        }
        if !own && !state.admit(product, &org, Instant::now()) {
            return limit_exceeded();
        }
    }
    let body = captured.content.as_deref();
    let answer = match (target, method) {
        (Target::Org(id), &Method::GET) => return organization(shared, id),
        (Target::Collection(res), &Method::GET) => lock(&shared.books_store).list(
            product,
            &org,
            res,
            query.get("page"),
            query.get("per_page"),
        ),
        (Target::Collection(res), &Method::POST) => {
            lock(&shared.books_store).create(product, &org, res, body)
        }
        (Target::Record(res, id), &Method::GET) => {
            lock(&shared.books_store).get(product, &org, res, id)
        }
        (Target::Record(res, id), &Method::PUT) => {
            lock(&shared.books_store).update(product, &org, res, id, body)
        }
        (Target::Record(res, id), &Method::DELETE) => {
            lock(&shared.books_store).delete(product, &org, res, id)
        }
        _ => return wrong_method(),
    };
    match answer {
        Reply::Json(status, value) => json(status, &value),
        Reply::NoContent => response(204, empty()),
    }
}

/// One organization as `GET /organizations` lists it.
fn org_json(index: usize, id: &str, name: &str) -> Value {
    json!({
        "organization_id": id,
        "name": name,
        "contact_name": "Fake Owner",
        "email": "owner@example.com",
        "is_default_org": index == 0,
        "is_org_active": true,
        "currency_code": "USD",
        "time_zone": "Etc/UTC",
        "language_code": "en",
        "fiscal_year_start_month": 0,
    })
}

fn organizations(shared: &Shared) -> Resp {
    let state = lock(&shared.books);
    let orgs: Vec<Value> = state
        .orgs
        .iter()
        .enumerate()
        .map(|(i, (id, name))| org_json(i, id, name))
        .collect();
    json(
        200,
        &json!({ "code": 0, "message": "success", "organizations": orgs }),
    )
}

fn organization(shared: &Shared, id: &str) -> Resp {
    let state = lock(&shared.books);
    match state.org(id) {
        Some((i, name)) => json(
            200,
            &json!({ "code": 0, "message": "success", "organization": org_json(i, id, name) }),
        ),
        None => json(
            400,
            &envelope(6041, "This user is not associated with the organization"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_split() {
        const CASES: &[(&str, Option<(FinanceProduct, &str)>)] = &[
            (
                "/books/v3/invoices",
                Some((FinanceProduct::Books, "/invoices")),
            ),
            ("/books/v3", Some((FinanceProduct::Books, ""))),
            (
                "/inventory/v1/items/1",
                Some((FinanceProduct::Inventory, "/items/1")),
            ),
            ("/books/v30/x", None),
            ("/books/v4/invoices", None),
            ("/crm/v8/Leads", None),
        ];
        for (path, want) in CASES {
            assert_eq!(FinanceProduct::split(path), *want, "split({path})");
        }
    }

    #[test]
    fn the_named_org_comes_from_the_path_or_the_query() {
        assert_eq!(
            named_org("/organizations/7", Some("organization_id=8")),
            Some("7".into())
        );
        assert_eq!(
            named_org("/invoices", Some("a=1&organization_id=8")),
            Some("8".into())
        );
        assert_eq!(named_org("/organizations", None), None);
    }

    #[test]
    fn targets() {
        assert!(matches!(target("/organizations"), Some(Target::Orgs)));
        assert!(matches!(target("/organizations/1"), Some(Target::Org("1"))));
        assert!(matches!(
            target("/invoices"),
            Some(Target::Collection(Resource::Invoices))
        ));
        assert!(matches!(
            target("/items/9"),
            Some(Target::Record(Resource::Items, "9"))
        ));
        for bad in [
            "",
            "/",
            "/estimates",
            "/items/",
            "/items/1/x",
            "/invoices//",
        ] {
            assert!(target(bad).is_none(), "{bad:?} is not served");
        }
    }
}
