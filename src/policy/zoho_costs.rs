//! Zoho's own cost table, `GET /crm/{version}/__apis` (CREDITS.md §6), as a lookup built once
//! per read: (method, path template) → the credits Zoho names (`min_credits`, `max_credits`).
//!
//! Templates name their variable segments in double braces (`/crm/v8/Quotes/{{id}}/actions/send_mail`,
//! `{{module_api_name}}`, `{{record_id}}`, …): any such segment matches any one request segment. The
//! version segment (`v8`) matches any version, so one read prices every version's traffic. Where
//! several templates match, the one with the most literal segments wins (`/Leads/search` over
//! `/Leads/{{id}}`).
//!
//! Pricing a request walks the request path's segments without allocating. Must not: read sockets,
//! or decide anything but a number of credits.

use super::canonical::is_version;
use serde::Deserialize;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Matched byte for byte.
    Literal(Box<str>),
    /// `{{…}}`: any one segment.
    Any,
    /// An API version (`v8`, `v2.1`): any version.
    Version,
}

/// The credits Zoho names for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZohoRange {
    /// `min_credits` (equal to `max_credits` when Zoho names one only).
    pub min: u64,
    /// `max_credits`.
    pub max: u64,
}

#[derive(Debug)]
struct Template {
    segs: Box<[Seg]>,
    literals: usize,
    range: ZohoRange,
}

/// Zoho's table, ready for lookups.
#[derive(Debug, Default)]
pub struct ZohoCosts {
    /// Per method (a handful), the templates by segment count.
    methods: Vec<(Box<str>, Vec<Vec<Template>>)>,
    covered: usize,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "__apis", default)]
    apis: Vec<Api>,
}

#[derive(Deserialize)]
struct Api {
    path: Option<String>,
    #[serde(default)]
    operation_types: Vec<OperationType>,
}

#[derive(Deserialize)]
struct OperationType {
    method: Option<String>,
    max_credits: Option<u64>,
    min_credits: Option<u64>,
}

/// Why Zoho's answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the __apis answer is not the documented JSON: {0}")]
pub struct ZohoCostsError(String);

fn segments(path: &str) -> impl Iterator<Item = &str> + Clone {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

fn template_seg(seg: &str) -> Seg {
    if seg.starts_with("{{") && seg.ends_with("}}") {
        Seg::Any
    } else if is_version(seg) {
        Seg::Version
    } else {
        Seg::Literal(seg.into())
    }
}

/// `HEAD` is priced as `GET`.
fn method_key(method: &str) -> &str {
    if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    }
}

impl ZohoCosts {
    /// Builds the lookup from the body of `GET /crm/{version}/__apis`. Operations without
    /// `max_credits` are left to the built-in table.
    pub fn parse(body: &[u8]) -> Result<ZohoCosts, ZohoCostsError> {
        let answer: Answer =
            serde_json::from_slice(body).map_err(|e| ZohoCostsError(e.to_string()))?;
        let mut costs = ZohoCosts::default();
        for api in answer.apis {
            let Some(path) = api.path.filter(|p| p.starts_with('/')) else {
                continue;
            };
            let segs: Box<[Seg]> = segments(&path).map(template_seg).collect();
            let literals = segs.iter().filter(|s| matches!(s, Seg::Literal(_))).count();
            for op in api.operation_types {
                let (Some(method), Some(max)) = (op.method, op.max_credits) else {
                    continue;
                };
                let method = method.to_ascii_uppercase();
                let range = ZohoRange {
                    min: op.min_credits.unwrap_or(max).min(max),
                    max,
                };
                let list = costs.shape(method_key(&method), segs.len());
                if list.iter().any(|t: &Template| t.segs == segs) {
                    continue;
                }
                list.push(Template {
                    segs: segs.clone(),
                    literals,
                    range,
                });
                costs.covered += 1;
            }
        }
        for (_, by_len) in &mut costs.methods {
            for list in by_len {
                // Most specific first, so the first match is the best one.
                list.sort_by_key(|t| std::cmp::Reverse(t.literals));
            }
        }
        Ok(costs)
    }

    /// The templates of `method` with `len` segments, made on first use.
    fn shape(&mut self, method: &str, len: usize) -> &mut Vec<Template> {
        let at = match self.methods.iter().position(|(m, _)| &**m == method) {
            Some(at) => at,
            None => {
                self.methods.push((method.into(), Vec::new()));
                self.methods.len() - 1
            }
        };
        let by_len = &mut self.methods[at].1;
        if by_len.len() <= len {
            by_len.resize_with(len + 1, Vec::new);
        }
        &mut by_len[len]
    }

    /// How many (method, path template) operations the table prices.
    pub fn covered(&self) -> usize {
        self.covered
    }

    /// The credits Zoho names for `method` on `path` (a canonical path, no query).
    pub fn lookup(&self, method: &str, path: &str) -> Option<ZohoRange> {
        let method = method_key(method);
        let (_, by_len) = self.methods.iter().find(|(m, _)| &**m == method)?;
        by_len
            .get(segments(path).count())?
            .iter()
            .find(|t| {
                t.segs
                    .iter()
                    .zip(segments(path))
                    .all(|(seg, got)| match seg {
                        Seg::Literal(l) => **l == *got,
                        Seg::Any => !got.is_empty(),
                        Seg::Version => is_version(got),
                    })
            })
            .map(|t| t.range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"{"__apis": [
        {"path": "/crm/v8/Leads", "operation_types": [
            {"method": "GET", "oauth_scope": "ZohoCRM.modules.leads.READ", "max_credits": 2, "min_credits": 2},
            {"method": "POST", "oauth_scope": "ZohoCRM.modules.leads.CREATE", "max_credits": 10, "min_credits": 1}]},
        {"path": "/crm/v8/Leads/{{id}}", "operation_types": [
            {"method": "GET", "max_credits": 1, "min_credits": 1}]},
        {"path": "/crm/v8/Leads/search", "operation_types": [
            {"method": "GET", "max_credits": 4}]},
        {"path": "/crm/v8/{{module_api_name}}/{{record_id}}/actions/send_mail", "operation_types": [
            {"method": "POST", "max_credits": 20, "min_credits": 20}]},
        {"path": "/crm/v8/coql", "operation_types": [{"method": "POST", "min_credits": 1}]},
        {"operation_types": [{"method": "GET", "max_credits": 9}]}
    ]}"#;

    /// (method, path, expected (min, max)).
    type Case = (&'static str, &'static str, Option<(u64, u64)>);

    const CASES: &[Case] = &[
        ("GET", "/crm/v8/Leads", Some((2, 2))),
        ("HEAD", "/crm/v8/Leads", Some((2, 2))),
        ("GET", "/crm/v2.1/Leads", Some((2, 2))),
        ("POST", "/crm/v8/Leads", Some((1, 10))),
        ("GET", "/crm/v8/Leads/4150868000000224005", Some((1, 1))),
        ("GET", "/crm/v8/Leads/search", Some((4, 4))),
        ("POST", "/crm/v8/Quotes/1/actions/send_mail", Some((20, 20))),
        ("POST", "/crm/v8/coql", None),
        ("GET", "/crm/v8/Contacts", None),
        ("DELETE", "/crm/v8/Leads", None),
        ("GET", "/crm/Leads/v8", None),
        ("GET", "/crm/v8/Leads/1/Notes", None),
    ];

    #[test]
    fn templates_match_requests() {
        let costs = ZohoCosts::parse(TABLE.as_bytes()).expect("the table parses");
        assert_eq!(
            costs.covered(),
            5,
            "entries without max_credits or path are left out"
        );
        for (method, path, want) in CASES {
            let got = costs.lookup(method, path).map(|r| (r.min, r.max));
            assert_eq!(got, *want, "{method} {path}");
        }
    }

    #[test]
    fn a_body_that_is_not_the_table_is_refused() {
        assert!(ZohoCosts::parse(b"<html>").is_err());
        let empty = ZohoCosts::parse(br#"{"__apis": []}"#).expect("empty table");
        assert_eq!(empty.covered(), 0);
    }
}
