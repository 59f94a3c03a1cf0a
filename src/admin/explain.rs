//! `/explain`: what the proxy would decide for a request, without forwarding anything. The
//! same answer as the `explain` command (it calls [`Policy::explain`](crate::policy::Policy)),
//! for a method and path in the query (`GET /explain?method=GET&path=/crm/v8/Leads`), a `POST`
//! whose body is the request body to decide on, or the console's form. HTML by default, JSON
//! for `Accept: application/json`.

use super::html::{self, esc};
use super::{json_response, param, wants_json, Admin};
use crate::policy::{Decision, Explanation};
use crate::web::body::ProxyBody;
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

impl Admin {
    /// Explains the request described by `params` (`method`, `path`, `account`), with `body`.
    pub(super) fn explain(
        &self,
        params: &[u8],
        body: Option<&[u8]>,
        headers: &HeaderMap,
    ) -> Response<ProxyBody> {
        let json = wants_json(headers);
        let runtime = self.state.runtime.load_full();
        let method_text = param(params, "method")
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "GET".into());
        let path = param(params, "path").unwrap_or_default();
        let path = path.trim();
        let account_name = param(params, "account").filter(|a| !a.is_empty());
        let refuse = |status: StatusCode, message: String| {
            if json {
                json_response(
                    status,
                    json!({"code": "PROXY_BAD_EXPLAIN", "message": message, "status": "error"}),
                )
            } else {
                let form = super::console::explain_form(
                    &runtime,
                    account_name.as_deref(),
                    &method_text,
                    path,
                    &String::from_utf8_lossy(body.unwrap_or_default()),
                );
                html::html(
                    status,
                    html::page(
                        "Explain",
                        &format!(
                            "<h1>Explain</h1><p class=\"decision-rejected\">{}</p>{form}<p><a href=\"/\">Back to the console</a></p>",
                            esc(&message)
                        ),
                    ),
                )
            }
        };
        let account = match account_name.as_deref() {
            Some(name) => runtime.account(name),
            None => runtime.accounts.first(),
        };
        let Some(account) = account else {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("unknown account; known: {}", runtime.account_names()),
            );
        };
        if path.is_empty() {
            return refuse(
                StatusCode::BAD_REQUEST,
                "give a request path, e.g. /explain?method=GET&path=/crm/v8/Leads".into(),
            );
        }
        let (Ok(method), Ok(uri)) = (
            http::Method::from_bytes(method_text.as_bytes()),
            path.parse::<http::Uri>(),
        ) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the method or the path is not valid HTTP".into(),
            );
        };
        if uri.scheme().is_some() || uri.authority().is_some() {
            return refuse(
                StatusCode::BAD_REQUEST,
                "give the path only (e.g. /crm/v8/Leads), not a full URL".into(),
            );
        }
        let mut explanation = account.policy.explain(&method, &uri, body);
        if explanation.decision == Decision::NeedsBody {
            // The command's hint names its flag; here the body comes from the form or a POST.
            explanation.message = explanation.message.map(|m| {
                m.replace(
                    "pass it with --body FILE",
                    "give it in the Body field, or POST it to /explain",
                )
            });
        }
        if json {
            let mut value = serde_json::to_value(&explanation).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("account".into(), json!(&*account.name));
                map.insert("missing".into(), json!(missing(&explanation)));
            }
            return json_response(StatusCode::OK, value);
        }
        let form = super::console::explain_form(
            &runtime,
            Some(&account.name),
            &method_text,
            path,
            &String::from_utf8_lossy(body.unwrap_or_default()),
        );
        html::html(
            StatusCode::OK,
            html::page(
                "Explain",
                &format!(
                    "<h1>Explain</h1>{}<h2>Another request</h2>{form}<p><a href=\"/\">Back to the console</a></p>",
                    result_html(&account.name, &explanation)
                ),
            ),
        )
    }
}

/// The required scopes no allow entry covers.
fn missing(e: &Explanation) -> Vec<&str> {
    e.required
        .iter()
        .filter(|c| c.covered_by.is_none())
        .map(|c| c.scope.as_str())
        .collect()
}

fn decision_class(d: Decision) -> &'static str {
    match d {
        Decision::Allowed => "allowed",
        Decision::Denied => "denied",
        Decision::Rejected => "rejected",
        Decision::NeedsBody => "needs_body",
    }
}

fn result_html(account: &str, e: &Explanation) -> String {
    let class = decision_class(e.decision);
    let status = match (e.status, e.code) {
        (Some(s), Some(c)) => format!(" ({s} <code>{}</code>)", esc(c)),
        _ => String::new(),
    };
    let rows: String = e
        .required
        .iter()
        .map(|c| {
            let (cell_class, covered) = match &c.covered_by {
                Some(entry) => (
                    "decision-allowed",
                    format!("allowed by <code>{}</code>", esc(entry)),
                ),
                None => ("decision-denied", "not allowed".to_string()),
            };
            format!(
                "<tr><td class=\"mono\">{}</td><td class=\"{cell_class}\">{covered}</td></tr>",
                esc(&c.scope)
            )
        })
        .collect();
    let required = if rows.is_empty() {
        "<p class=\"muted\">No scope proxy.yaml could allow.</p>".to_string()
    } else {
        format!("<table id=\"explain-scopes\"><thead><tr><th>Required scope</th><th>Covered</th></tr></thead><tbody>{rows}</tbody></table>")
    };
    format!(
        "<div id=\"explain-result\"><p class=\"mono\">{method} {target} <span class=\"muted\">(account {account})</span></p>\
<p>Decision: <span id=\"explain-decision\" class=\"decision-{class}\">{decision}</span>{status}. Mode {mode}: {forwarded}. Nothing was sent to Zoho.</p>{message}{required}</div>",
        method = esc(&e.method),
        target = esc(&e.target),
        account = esc(account),
        decision = class.replace('_', " "),
        mode = e.mode,
        forwarded = if e.forwarded { "the proxy would forward it" } else { "the proxy would not forward it" },
        message = e.message.as_deref().map(|m| format!("<p>{}</p>", esc(m))).unwrap_or_default(),
    )
}
