//! `GET /`: the operator console. Server-rendered HTML from escaped parts, no script, no
//! external assets: per account its state and an Authorize control (a POST carrying a CSRF
//! token bound to this page), credits, concurrency and the Books/Inventory organizations' windows,
//! the metadata cache with its Purge buttons (the same), the recent
//! denied or reported requests, the observed scopes with
//! the allow list that covers them, and the explain form.

use super::html::{self, esc, fill};
use super::Admin;
use crate::config::ClientType;
use crate::state::{AccountRuntime, Runtime};
use crate::token::TokenState;
use crate::web::body::ProxyBody;
use http::{Response, StatusCode};

const TEMPLATE: &str = include_str!("console.html");
/// The form action the Authorize buttons post to (and their CSRF tokens are bound to).
pub const AUTHORIZE_ACTION: &str = "/oauth/start";
/// Methods offered by the explain form.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

impl Admin {
    pub(super) fn console(&self) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load_full();
        let now_ms = crate::util::clock::now_unix_ms();
        let token = self.csrf.issue(AUTHORIZE_ACTION, now_ms / 1000);
        let accounts: String = runtime
            .accounts
            .iter()
            .map(|a| account_row(&runtime, a, &token, now_ms))
            .collect();
        let credits = credits_section(&runtime)
            + &super::concurrency::section(&runtime)
            + &super::organizations::section(&runtime);
        let purge_token = self.csrf.issue(super::cache::PURGE_ACTION, now_ms / 1000);
        let cache = super::cache::cache_section(&runtime, &purge_token);
        let body = fill(
            TEMPLATE,
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "uptime",
                    &html::duration_text(self.started.elapsed().as_secs()),
                ),
                (
                    "routing",
                    &esc(&format!("{:?}", runtime.routing).to_lowercase()),
                ),
                ("now", &html::utc(now_ms)),
                ("accounts", &accounts),
                ("credits", &credits),
                ("cache", &cache),
                (
                    "recent_limit",
                    &crate::observed::RECENT_DECISIONS.to_string(),
                ),
                ("decisions", &self.decisions_table()),
                (
                    "refusals",
                    &refusals_table(&self.state.observed.refusal_counts()),
                ),
                ("observed", &self.observed_blocks(&runtime)),
                (
                    "explain_form",
                    &explain_form(&runtime, None, "GET", "/crm/v8/Leads", ""),
                ),
            ],
        );
        html::html(StatusCode::OK, html::page("zoho-auth-proxy console", &body))
    }

    fn decisions_table(&self) -> String {
        decisions_table(&self.state.observed.recent())
    }

    fn observed_blocks(&self, runtime: &Runtime) -> String {
        let observed = &self.state.observed;
        let mut out = String::new();
        for a in &runtime.accounts {
            let scopes = observed.scopes(&a.name);
            out.push_str(&format!(
                "<div class=\"observed\" id=\"observed-{id}\"><h3>{name}</h3>",
                id = esc(&a.name),
                name = esc(&a.name)
            ));
            if scopes.is_empty() {
                out.push_str("<p class=\"muted\">No decided request yet.</p></div>\n");
                continue;
            }
            out.push_str("<table><thead><tr><th>Scope</th><th>Seen as</th></tr></thead><tbody>");
            for s in &scopes {
                let outcomes: Vec<String> = s
                    .outcomes
                    .iter()
                    .map(|o| format!("<span class=\"outcome-{0}\">{0}</span>", o.as_str()))
                    .collect();
                out.push_str(&format!(
                    "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
                    esc(&s.scope),
                    outcomes.join(", ")
                ));
            }
            out.push_str("</tbody></table>");
            let yaml = suggested_yaml(runtime, a, &observed.suggested_allow(&a.name));
            out.push_str(&format!(
                "<p>Allow list covering this traffic:</p><pre class=\"suggested\">{}</pre></div>\n",
                esc(&yaml)
            ));
        }
        out
    }
}

/// The recent decisions as a table; every client-controlled field is escaped.
fn decisions_table(recent: &[crate::observed::DecisionRecord]) -> String {
    if recent.is_empty() {
        return "<p id=\"no-decisions\">No request has been denied, reported or refused since start.</p>"
            .into();
    }
    let rows: String = recent
        .iter()
        .map(|d| {
            format!(
                "<tr><td class=\"mono\">{time}</td><td>{account}</td><td>{client}</td><td class=\"outcome-{outcome}\">{outcome}</td><td class=\"mono\">{method}</td><td class=\"mono\">{path}</td><td class=\"mono\">{missing}</td><td class=\"mono refusal\">{refusal}</td></tr>\n",
                time = html::utc(d.at_unix_ms),
                account = if d.account.is_empty() { "<span class=\"muted\">-</span>".into() } else { esc(&d.account) },
                refusal = match (d.code, d.rule) {
                    (Some(code), Some(rule)) => format!("{} (rule {})", esc(code), esc(rule)),
                    _ => String::new(),
                },
                client = d.client.as_deref().map(esc).unwrap_or_else(|| "<span class=\"muted\">-</span>".into()),
                outcome = d.outcome.as_str(),
                method = esc(&d.method),
                path = esc(&d.path),
                missing = esc(&d.missing.join(", ")),
            )
        })
        .collect();
    format!(
        "<table id=\"decision-list\"><thead><tr><th>Time</th><th>Account</th><th>Client</th><th>Decision</th><th>Method</th><th>Path</th><th>Missing scopes</th><th>Refusal code (rule)</th></tr></thead><tbody>\n{rows}</tbody></table>"
    )
}

/// Requester refusals per code since start.
fn refusals_table(counts: &[crate::observed::RefusalCount]) -> String {
    if counts.is_empty() {
        return "<p id=\"no-refusals\">No request has been refused by the requester checks since start.</p>".into();
    }
    let rows: String = counts
        .iter()
        .map(|c| {
            format!(
                "<tr id=\"refusals-{code}\"><td class=\"mono\">{code}</td><td>{rule}</td><td class=\"count\">{count}</td></tr>\n",
                code = esc(c.code),
                rule = esc(c.rule),
                count = c.count,
            )
        })
        .collect();
    format!(
        "<table id=\"refusal-counts\"><thead><tr><th>Code</th><th>Rule</th><th>Refused since start</th></tr></thead><tbody>\n{rows}</tbody></table>"
    )
}

/// The YAML to paste: the `allow:` list, under the account's entry when there are several.
fn suggested_yaml(runtime: &Runtime, account: &AccountRuntime, allow: &[String]) -> String {
    let single = runtime.config.accounts.len() == 1;
    let mut yaml = String::new();
    let indent = if single {
        yaml.push_str("allow:\n");
        "  "
    } else {
        yaml.push_str(&format!(
            "accounts:\n  - name: {}\n    allow:\n",
            account.name
        ));
        "      "
    };
    for scope in allow {
        yaml.push_str(&format!("{indent}- {scope}\n"));
    }
    yaml
}

fn account_row(runtime: &Runtime, a: &AccountRuntime, csrf: &str, now_ms: u64) -> String {
    let status = a.token.status();
    let config = runtime.config.account(&a.name);
    let client_type = match a.client_type {
        ClientType::SelfClient => "self",
        ClientType::Server => "server",
    };
    let state = serde_json::to_value(status.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut token = format!(
        "<span class=\"state state-{state}\">{}</span>",
        esc(&state.replace('_', " "))
    );
    let left = a.token.seconds_left();
    if left > 0.0 {
        token.push_str(&format!(
            "<br><span class=\"muted\">expires in {}</span>",
            html::duration_text(left as u64)
        ));
    }
    if let Some(e) = &status.last_error {
        token.push_str(&format!(
            "<br><span class=\"last-error\">last error: {}</span>",
            esc(e)
        ));
    }
    if let Some(next) = status.next_attempt_unix_ms {
        token.push_str(&format!(
            "<br><span class=\"muted\">next attempt in {}</span>",
            html::duration_text(next.saturating_sub(now_ms).div_ceil(1000))
        ));
    }
    if let Some(e) = &status.store_error {
        token.push_str(&format!(
            "<br><span class=\"last-error\">token store: {}</span>",
            esc(e)
        ));
    }
    let summary = a.policy.summary();
    let allow: String = summary
        .allow
        .iter()
        .map(|s| format!("<li class=\"mono\">{}</li>", esc(s)))
        .collect();
    let authorize = match a.client_type {
        ClientType::Server => {
            let label = if status.state == TokenState::NotAuthorized {
                "Authorize"
            } else {
                "Re-authorize"
            };
            format!(
                "<form class=\"inline\" method=\"post\" action=\"{AUTHORIZE_ACTION}\"><input type=\"hidden\" name=\"account\" value=\"{name}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" id=\"authorize-{name}\">{label}</button></form>",
                name = esc(&a.name),
                csrf = esc(csrf),
            )
        }
        ClientType::SelfClient => {
            "<span class=\"muted\">self client: refresh token from the API console</span>".into()
        }
    };
    format!(
        "<tr class=\"account\" id=\"account-{id}\" data-state=\"{state}\"><td><strong>{name}</strong>{listen}</td><td>{client_type}</td><td>{dc}</td><td class=\"mono\">{api}</td><td>{token}</td><td>{budget_left} of {budget}</td><td><span class=\"muted\">mode {mode}</span><ul class=\"scopes\">{allow}</ul></td><td>{authorize}</td></tr>\n",
        id = esc(&a.name),
        name = esc(&a.name),
        listen = config
            .and_then(|c| c.listen.as_ref())
            .map(|l| format!("<br><span class=\"muted\">listens on {}</span>", esc(&l.to_string())))
            .unwrap_or_default(),
        dc = config.map(|c| c.data_center.code()).unwrap_or("-"),
        api = if status.api_host.is_empty() { "-".to_string() } else { esc(&status.api_host) },
        budget_left = status.mint_budget_left,
        budget = status.mint_budget,
        mode = summary.mode,
    )
}

/// API credits per account and per client (the credits ledger's own `/status` view): used in
/// the rolling 24 hours, the budget and what is left, Zoho's last reported figure, any back-off.
fn credits_section(runtime: &Runtime) -> String {
    let status = runtime.credits.status_json();
    let num = |v: &serde_json::Value| {
        v.as_u64()
            .map_or_else(|| "-".to_string(), |n| n.to_string())
    };
    let mut out = String::from(
        "<h3>API credits (rolling 24 hours, estimated)</h3>\n<table>\n<thead><tr><th>Account</th><th>Used</th><th>Daily limit</th><th>Left</th><th>Zoho's remaining figure</th><th>Back-off</th></tr></thead>\n<tbody>\n",
    );
    for a in status["accounts"].as_array().into_iter().flatten() {
        let zoho = match (
            a["zoho_remaining"].as_u64(),
            a["zoho_remaining_age_s"].as_u64(),
        ) {
            (Some(r), Some(age)) => format!("{r} ({} ago)", html::duration_text(age)),
            _ => "not sent yet (under half used)".to_string(),
        };
        let backoff = a["backoff"]["retry_after_s"].as_u64().map_or_else(
            || "none".to_string(),
            |s| format!("Zoho throttling: {s} s left"),
        );
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(a["account"].as_str().unwrap_or("")),
            num(&a["used_in_window"]),
            a["daily_limit"]
                .as_u64()
                .map_or_else(|| "none (counting only)".to_string(), |n| n.to_string()),
            num(&a["left"]),
            esc(&zoho),
            esc(&backoff),
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    let clients: Vec<&serde_json::Value> =
        status["clients"].as_array().into_iter().flatten().collect();
    if !clients.is_empty() {
        out.push_str("<table>\n<thead><tr><th>Client</th><th>Used</th><th>Credits per day</th><th>Left</th></tr></thead>\n<tbody>\n");
        for c in clients {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(c["client"].as_str().unwrap_or("")),
                num(&c["used_in_window"]),
                c["credits_per_day"]
                    .as_u64()
                    .map_or_else(|| "none".to_string(), |n| n.to_string()),
                num(&c["left"]),
            ));
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out
}

/// The explain form, prefilled.
pub(super) fn explain_form(
    runtime: &Runtime,
    account: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let accounts: String = runtime
        .accounts
        .iter()
        .map(|a| {
            let selected = if Some(&*a.name) == account {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{}</option>", esc(&a.name))
        })
        .collect();
    let methods: String = METHODS
        .iter()
        .map(|m| {
            let selected = if m.eq_ignore_ascii_case(method) {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{m}</option>")
        })
        .collect();
    format!(
        "<form class=\"explain\" id=\"explain-form\" method=\"post\" action=\"/explain\">\
<label for=\"explain-account\">Account</label><select id=\"explain-account\" name=\"account\">{accounts}</select>\
<label for=\"explain-method\">Method</label><select id=\"explain-method\" name=\"method\">{methods}</select>\
<label for=\"explain-path\">Path</label><input id=\"explain-path\" name=\"path\" value=\"{path}\" placeholder=\"/crm/v8/Leads\" autocomplete=\"off\" spellcheck=\"false\">\
<label for=\"explain-body\">Body <span class=\"muted\">(optional)</span></label><textarea id=\"explain-body\" name=\"body\" spellcheck=\"false\">{body}</textarea>\
<div class=\"actions\"><button type=\"submit\" id=\"explain-submit\">Explain</button></div></form>",
        path = esc(path),
        body = esc(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{DecisionRecord, Outcome};

    #[test]
    fn client_controlled_fields_of_a_decision_are_escaped() {
        let record = DecisionRecord {
            at_unix_ms: 0,
            account: "a<b".into(),
            client: Some("<img src=x onerror=alert(1)>".into()),
            outcome: Outcome::Reported,
            method: "GET".into(),
            path: "/crm/v8/<script>alert(1)</script>/123".into(),
            missing: vec!["ZohoCRM.modules.<script>.READ".into()],
            code: None,
            rule: None,
        };
        let html = decisions_table(&[record]);
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "no markup from a client survives: {html}"
        );
        assert!(
            html.contains("/crm/v8/&lt;script&gt;alert(1)&lt;/script&gt;/123"),
            "the path is shown escaped: {html}"
        );
        assert!(html.contains("a&lt;b"), "the account too: {html}");
        assert!(
            decisions_table(&[]).contains("No request"),
            "an empty list says so"
        );
    }

    #[test]
    fn refusals_show_their_code_and_rule_and_are_counted() {
        let record = DecisionRecord {
            at_unix_ms: 0,
            account: String::new(),
            client: None,
            outcome: Outcome::Refused,
            method: "POST".into(),
            path: "/crm/v8/Leads".into(),
            missing: Vec::new(),
            code: Some("PROXY_BROWSER_REQUEST"),
            rule: Some("browser"),
        };
        let html = decisions_table(&[record]);
        assert!(
            html.contains("<td class=\"outcome-refused\">refused</td>")
                && html.contains("PROXY_BROWSER_REQUEST (rule browser)"),
            "a refusal row names its code and rule: {html}"
        );
        let counts = refusals_table(&[crate::observed::RefusalCount {
            code: "PROXY_HOST_NOT_ALLOWED",
            rule: "host",
            count: 7,
        }]);
        assert!(
            counts.contains("<td class=\"mono\">PROXY_HOST_NOT_ALLOWED</td><td>host</td><td class=\"count\">7</td>"),
            "one row per code with its count: {counts}"
        );
        assert!(
            refusals_table(&[]).contains("No request has been refused"),
            "no refusal yet says so"
        );
    }
}
