//! The fake Zoho CRM API server: records every request, checks the `Authorization` header
//! against the accounts ledger, applies `__fake` fault switches and routes CRM paths. Books and
//! Inventory paths are recorded here too, then handed to [`crate::sandbox::books`].
//!
//! Owns: request recording (streamed body hashing), the authentication answers of REFERENCE
//! contract 7 and path routing for `/crm/{version}/...`. Must not: buffer bodies beyond the
//! 1 MiB needed to parse JSON, or mint tokens.

pub(crate) mod credits;
pub(crate) mod faults;
pub(crate) mod meta;
mod query;
pub(crate) mod records;

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, Method, Request};
use hyper::body::Incoming;
use serde_json::json;
use tokio::time::Instant;

use super::books::{self, FinanceProduct};
use super::control::{lock, Shared};
use super::http::{empty, json, Resp};
pub(crate) use super::recorder::Captured;
use super::recorder::{drain, record_start};
use faults::Api;
use records::{error_body, Reply};

/// Bodies up to this size are kept whole so JSON routes can parse them.
const CONTENT_BYTES: usize = 1024 * 1024;

/// A parsed query string, keeping order and duplicates.
#[derive(Debug, Default)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Query {
        Query(
            q.map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// First value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one API request: Books and Inventory paths go to [`crate::sandbox::books`].
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    // The proxy's own calls are logged apart, so tests of client traffic see only theirs.
    let own = is_own_call(&parts.headers);
    let log = if own {
        &shared.own_log
    } else {
        &shared.crm_log
    };
    let seq = record_start(&shared, log, &parts);
    books::note_arrival(&shared, &parts);
    let captured = drain(&shared, log, seq, body, CONTENT_BYTES).await;
    if let Some((product, _)) = FinanceProduct::split(parts.uri.path()) {
        return books::serve(&shared, product, &parts, &captured, own).await;
    }
    match authenticate(&shared, &parts.headers) {
        Auth::Ok => {}
        Auth::Missing => {
            return json(
                401,
                &error_body("AUTHENTICATION_FAILURE", "Authentication failed", json!({})),
            )
        }
        Auth::Invalid => return invalid_token(),
    }
    let (_in_flight, remaining) = match credits::enter(&shared, &parts, &captured, own) {
        Ok(entered) => entered,
        Err(too_many) => return *too_many,
    };
    let query = Query::parse(parts.uri.query());
    let mut resp = faults::dispatch(&shared, &parts, &captured, &query, Api::Crm).await;
    credits::stamp(&mut resp, remaining);
    resp
}

/// Whether the request is one of the proxy's own calls (its `User-Agent`).
fn is_own_call(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(b"zoho-auth-proxy/"))
}

/// Outcome of the `Authorization` check.
pub(crate) enum Auth {
    Ok,
    /// No `Authorization` header at all.
    Missing,
    /// Several headers, another scheme, or a token that is not live.
    Invalid,
}

/// Exactly one `Authorization: Zoho-oauthtoken <live token>` passes.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Auth {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(first), None) = (values.next(), values.next()) else {
        return if headers.contains_key(AUTHORIZATION) {
            Auth::Invalid
        } else {
            Auth::Missing
        };
    };
    let token = first
        .as_bytes()
        .strip_prefix(b"Zoho-oauthtoken ")
        .and_then(|t| std::str::from_utf8(t).ok());
    match token {
        Some(t) if lock(&shared.ledger).is_live(t, Instant::now()) => Auth::Ok,
        _ => Auth::Invalid,
    }
}

/// `401 INVALID_TOKEN`.
pub(crate) fn invalid_token() -> Resp {
    json(
        401,
        &error_body("INVALID_TOKEN", "invalid oauth token", json!({})),
    )
}

/// `404 INVALID_URL_PATTERN`.
fn invalid_url() -> Resp {
    json(
        404,
        &error_body(
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
            json!({}),
        ),
    )
}

fn wrong_method() -> Resp {
    json(
        400,
        &error_body(
            "INVALID_REQUEST_METHOD",
            "The http request method type is not a valid one",
            json!({}),
        ),
    )
}

fn is_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let (major, minor) = rest.split_once('.').unwrap_or((rest, "0"));
    !major.is_empty()
        && !minor.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && minor.bytes().all(|b| b.is_ascii_digit())
}

/// The normal (no fault) answer for an authenticated request.
pub(crate) fn route(shared: &Shared, parts: &Parts, captured: &Captured, query: &Query) -> Resp {
    let path = parts.uri.path();
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let [crm, version, rest @ ..] = segs.as_slice() else {
        return invalid_url();
    };
    if *crm != "crm" || !is_version(version) || rest.is_empty() || rest.iter().any(|s| s.is_empty())
    {
        return invalid_url();
    }
    let q = |k: &str| query.get(k).map(str::to_owned);
    let body = captured.content.as_deref();
    let method = &parts.method;
    match (rest, method) {
        (["org"], &Method::GET) => return reply(lock(&shared.org).org()),
        (["__apis"], &Method::GET) => return reply(lock(&shared.org).apis(version)),
        _ => {}
    }
    let mut store = lock(&shared.crm);
    let answer = match rest {
        ["coql"] => match *method {
            Method::POST => store.coql(body),
            _ => return wrong_method(),
        },
        ["users"] | ["users", _] => match *method {
            Method::GET => store.users(rest.get(1).copied()),
            _ => return wrong_method(),
        },
        ["org"] | ["__apis"] => return wrong_method(),
        ["settings", "modules"] => match *method {
            Method::GET => store.settings_modules(),
            _ => return wrong_method(),
        },
        ["settings", "fields"] => match *method {
            Method::GET => store.settings_fields(query.get("module")),
            _ => return wrong_method(),
        },
        [module] => match *method {
            Method::GET => store.list(module, &q),
            Method::POST => store.create(module, body),
            Method::PUT => store.update(module, None, body),
            Method::DELETE => {
                let ids: Vec<&str> = query
                    .get("ids")
                    .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                store.delete(module, &ids)
            }
            _ => return wrong_method(),
        },
        [module, "search"] => match *method {
            Method::GET => store.search(module, &q),
            _ => return wrong_method(),
        },
        [module, id] if id.bytes().all(|b| b.is_ascii_digit()) => match *method {
            Method::GET => store.get(module, id, query.get("fields")),
            Method::PUT => store.update(module, Some(id), body),
            Method::DELETE => store.delete(module, &[id]),
            _ => return wrong_method(),
        },
        _ => return invalid_url(),
    };
    drop(store);
    reply(answer)
}

fn reply(answer: Reply) -> Resp {
    match answer {
        Reply::Json(status, value) => json(status, &value),
        Reply::NoContent => super::http::response(204, empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        const CASES: &[(&str, bool)] = &[
            ("v8", true),
            ("v2.1", true),
            ("v", false),
            ("v8.", false),
            ("8", false),
            ("vx", false),
        ];
        for (v, want) in CASES {
            assert_eq!(is_version(v), *want, "is_version({v})");
        }
    }
}
