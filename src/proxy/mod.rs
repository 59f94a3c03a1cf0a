//! One request's journey: pick the account, decide (policy), attach the token, forward,
//! stream the response back, and log one access line.
//!
//! Owns header hygiene, body limits and the single replay after `INVALID_TOKEN`. Does not parse
//! config or mint tokens: it asks the account's [`TokenHandle`](crate::token::TokenHandle).

pub mod body;
pub mod error;
pub mod headers;
mod send;
pub mod upstream;

use crate::access::Transport;
use crate::observed::Outcome;
use crate::policy::Evaluation;
use crate::state::{AccountRuntime, AppState, ListenerRole, Runtime};
use crate::timer::ConnTimer;
use body::{collect_capped, BodyFault, Collected, ProxyBody};
use error::ProxyError;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use send::{send_decided, Outgoing, Prepared};
use std::convert::Infallible;
use std::time::Instant;
use tracing::{info, warn};

/// Header that picks the account when `routing: header` is on.
pub const ACCOUNT_HEADER: &str = "x-zoho-account";

/// Escapes a client- or network-controlled string for logs: no control characters, bounded length.
pub fn log_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(256));
    for c in text.chars().take(256) {
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().count() > 256 {
        out.push('…');
    }
    out
}

/// What the access log line says about a request.
struct Access {
    /// Whether the access log is enabled: the strings below are only built when it is.
    log: bool,
    account: crate::metrics::AccountMeter,
    method: Method,
    path: String,
    decision: &'static str,
    scope: String,
    started: Instant,
    upstream_ms: Option<u64>,
    /// Estimated Zoho API credits of the request (0 when refused before pricing).
    credits: u64,
}

impl Access {
    /// A string for the log line, built only when the access log is on (hot path).
    fn text(&self, build: impl FnOnce() -> String) -> String {
        if self.log {
            build()
        } else {
            String::new()
        }
    }

    fn log(
        &self,
        status: StatusCode,
        bytes: u64,
        complete: bool,
        metrics: &crate::metrics::Metrics,
    ) {
        metrics.request(&self.account, &self.method, self.decision, status);
        if !crate::logging::access_enabled() {
            return;
        }
        use crate::logging::line::Value;
        let total_ms = self.started.elapsed().as_millis() as u64;
        let fields = [
            ("account", Value::Display(&self.account.label().0)),
            ("client", Value::Display(&self.account.client().0)),
            ("method", Value::Display(self.method.as_str())),
            ("path", Value::Display(&self.path)),
            ("decision", Value::Str(self.decision)),
            ("scope", Value::Display(&self.scope)),
            ("status", Value::U64(u64::from(status.as_u16()))),
            (
                "upstream_ms",
                self.upstream_ms.map_or(Value::None, Value::U64),
            ),
            ("credits", Value::U64(self.credits)),
            ("total_ms", Value::U64(total_ms)),
            ("bytes", Value::U64(bytes)),
            ("complete", Value::Bool(complete)),
        ];
        if crate::logging::line::write("access", &fields) {
            return;
        }
        info!(
            target: "access",
            account = %self.account.label().0,
            client = %self.account.client().0,
            method = %self.method,
            path = %self.path,
            decision = self.decision,
            scope = %self.scope,
            status = status.as_u16(),
            upstream_ms = self.upstream_ms,
            credits = self.credits,
            total_ms,
            bytes,
            complete,
        );
    }
}

/// Decrements the in-flight gauge when dropped.
struct InFlight(prometheus_client::metrics::gauge::Gauge);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The service function of the proxied listeners.
pub async fn handle(
    state: AppState,
    role: ListenerRole,
    transport: Transport,
    deadlines: ConnTimer,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    state.metrics.in_flight().inc();
    let in_flight = InFlight(state.metrics.in_flight().clone());
    let runtime = state.runtime.load_full();
    let method = req.method().clone();
    // Who is asking, before anything else (and before the body is read).
    let head = crate::access::Head {
        transport,
        method: req.method(),
        uri: req.uri(),
        version: req.version(),
        headers: req.headers(),
        has_body: !is_empty_body(req.body()),
    };
    let client = match runtime.access.check_data(head) {
        Ok(client) => client,
        Err(refusal) => return Ok(refused(&state, &runtime, refusal, &req, started)),
    };
    let account = match select_account(&runtime, &role, req.headers()) {
        Ok(a) => a,
        Err(e) => {
            // Not the first account's label: a bad header must not count as that account's traffic.
            let access = Access {
                log: true,
                account: runtime.unrouted_meter(client).clone(),
                method,
                path: log_safe(req.uri().path()),
                decision: "invalid",
                scope: String::new(),
                started,
                upstream_ms: None,
                credits: 0,
            };
            return Ok(local_error(e, &access, &state));
        }
    };
    let mut access = Access {
        log: crate::logging::access_enabled(),
        account: account.meter(client).clone(),
        method: method.clone(),
        path: String::new(),
        decision: "allowed",
        scope: String::new(),
        started,
        upstream_ms: None,
        credits: 0,
    };
    // An identified client decides with its own (narrower) allow list, on its accounts only.
    let policy = match client.and_then(|i| runtime.access.clients().get(i)) {
        None => &account.policy,
        Some(c) => match c.policy(account.index) {
            Some(p) => p,
            None => {
                access.path = log_safe(req.uri().path());
                access.decision = "denied";
                let e = ProxyError::ClientAccountNotAllowed {
                    client: c.name.to_string(),
                    account: account.name.to_string(),
                };
                return Ok(local_error(e, &access, &state));
            }
        },
    };
    let result = forward(
        &state,
        &runtime,
        account,
        policy,
        req,
        &mut access,
        in_flight,
        &deadlines,
    )
    .await;
    Ok(match result {
        Ok(response) => response,
        Err(e) => local_error(e, &access, &state),
    })
}

/// A request the requester checks refused: counted, logged (with the Host and Origin escaped)
/// and answered without reading the body or touching a token.
fn refused(
    state: &AppState,
    runtime: &Runtime,
    refusal: crate::access::Refusal,
    req: &Request<Incoming>,
    started: Instant,
) -> Response<ProxyBody> {
    state.metrics.refused("proxy", refusal.rule);
    state.observed.record_refusal(
        refusal.code,
        refusal.rule,
        req.method().as_str(),
        req.uri().path(),
    );
    let header = |name: http::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| log_safe(&String::from_utf8_lossy(v.as_bytes())))
    };
    let access = Access {
        log: true,
        account: runtime.unrouted.clone(),
        method: req.method().clone(),
        path: log_safe(req.uri().path()),
        decision: "refused",
        scope: String::new(),
        started,
        upstream_ms: None,
        credits: 0,
    };
    tracing::debug!(
        rule = refusal.rule,
        code = refusal.code,
        host = header(http::header::HOST).as_deref(),
        origin = header(http::header::ORIGIN).as_deref(),
        sec_fetch_site = header(http::HeaderName::from_static("sec-fetch-site")).as_deref(),
        "request refused by the requester checks"
    );
    local_error(ProxyError::Refused(refusal), &access, state)
}

fn local_error(e: ProxyError, access: &Access, state: &AppState) -> Response<ProxyBody> {
    let response = e.into_response();
    let bytes = http_body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    access.log(response.status(), bytes, true, &state.metrics);
    response
}

fn select_account<'r>(
    runtime: &'r Runtime,
    role: &ListenerRole,
    headers: &HeaderMap,
) -> Result<&'r AccountRuntime, ProxyError> {
    let by_name = |name: &str| {
        runtime
            .account(name)
            .ok_or_else(|| ProxyError::UnknownAccount {
                name: log_safe(name),
                known: runtime.account_names(),
            })
    };
    match role {
        ListenerRole::Account(name) => by_name(name),
        // An account's own listener serves that account whatever the header says (the header is
        // removed before forwarding either way).
        ListenerRole::Main => {
            let mut values = headers.get_all(ACCOUNT_HEADER).iter();
            let first = runtime
                .accounts
                .first()
                .ok_or_else(|| ProxyError::UnknownAccount {
                    name: String::new(),
                    known: String::new(),
                });
            match (runtime.routing, values.next(), values.next()) {
                (crate::config::Routing::Header, Some(_), Some(_)) => {
                    Err(ProxyError::AccountRequired {
                        known: runtime.account_names(),
                    })
                }
                (crate::config::Routing::Header, Some(value), None) => {
                    let name = value.to_str().map_err(|_| ProxyError::UnknownAccount {
                        name: "(non-ASCII)".into(),
                        known: runtime.account_names(),
                    })?;
                    by_name(name.trim())
                }
                // With several accounts, guessing would act on the wrong organisation's data.
                (crate::config::Routing::Header, None, _) if runtime.accounts.len() > 1 => {
                    Err(ProxyError::AccountRequired {
                        known: runtime.account_names(),
                    })
                }
                _ => first,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &AppState,
    runtime: &Runtime,
    account: &AccountRuntime,
    policy: &crate::policy::Policy,
    req: Request<Incoming>,
    access: &mut Access,
    in_flight: InFlight,
    deadlines: &ConnTimer,
) -> Result<Response<ProxyBody>, ProxyError> {
    let limits = &runtime.limits;
    let (parts, body) = req.into_parts();
    let evaluation = policy.evaluate(&parts.method, &parts.uri);
    let content_length = content_length(&parts.headers);
    if let Some(len) = content_length {
        if len > limits.max_body {
            access.path = log_safe(parts.uri.path());
            access.decision = "invalid";
            return Err(ProxyError::BodyTooLarge {
                limit: limits.max_body,
                key: "limits.max_body",
            });
        }
    }

    // 1. Decide.
    let (target, required) = match evaluation {
        Evaluation::Rejected(_) => {
            access.path = log_safe(parts.uri.path());
            access.decision = "invalid";
            return Err(refusal(&evaluation, &parts.method));
        }
        Evaluation::Allowed {
            ref target,
            ref required,
        } => {
            state
                .observed
                .record_scopes(&account.name, required, Outcome::Allowed);
            (*target, access.text(|| required.render()))
        }
        Evaluation::Denied {
            ref target,
            ref required,
            ..
        } => {
            access.path = access.text(|| target.path.to_string());
            access.scope = access.text(|| required.render());
            denied(state, account, policy, &parts.method, &evaluation, access)?;
            (*target, access.text(|| required.render()))
        }
        Evaluation::NeedsBody { target, pending } => {
            access.path = access.text(|| target.path.to_string());
            let cap = pending.max_bytes() as u64;
            let bytes = match collect_capped(body, cap, limits.body_idle_timeout).await {
                Ok(Collected::Complete(b)) => b,
                Ok(Collected::Exceeded(..)) => {
                    access.decision = "invalid";
                    return Err(ProxyError::BodyTooLarge {
                        limit: cap,
                        key: "the policy's inspection cap for this operation",
                    });
                }
                Err(fault) => {
                    access.decision = "invalid";
                    return Err(fault_error(fault, limits.max_body));
                }
            };
            let second = policy.evaluate_body(&pending, &bytes);
            let decided = match &second {
                Evaluation::Rejected(_) => {
                    access.decision = "invalid";
                    return Err(refusal(&second, &parts.method));
                }
                Evaluation::Allowed { required, .. } => {
                    state
                        .observed
                        .record_scopes(&account.name, required, Outcome::Allowed);
                    access.text(|| required.render())
                }
                Evaluation::Denied { required, .. } => {
                    access.scope = access.text(|| required.render());
                    denied(state, account, policy, &parts.method, &second, access)?;
                    access.text(|| required.render())
                }
                Evaluation::NeedsBody { .. } => {
                    access.decision = "invalid";
                    return Err(ProxyError::Policy {
                        status: StatusCode::BAD_REQUEST,
                        code: "PROXY_BAD_BODY",
                        message: "the request body could not be classified".into(),
                        details: serde_json::Value::Null,
                    });
                }
            };
            return send_decided(
                state,
                runtime,
                account,
                parts.method,
                parts.headers,
                target,
                parts.uri.path_and_query(),
                decided,
                Prepared::Ready(Outgoing::Replayable(bytes)),
                access,
                in_flight,
                deadlines,
            )
            .await;
        }
    };
    access.path = access.text(|| target.path.to_string());
    send_decided(
        state,
        runtime,
        account,
        parts.method,
        parts.headers,
        target,
        parts.uri.path_and_query(),
        required,
        Prepared::Body(body, content_length),
        access,
        in_flight,
        deadlines,
    )
    .await
}

/// A denied decision: 403 in enforce mode; logged, counted and forwarded in report mode (never
/// for paths outside the CRM API).
fn denied(
    state: &AppState,
    account: &AccountRuntime,
    policy: &crate::policy::Policy,
    method: &Method,
    evaluation: &Evaluation<'_>,
    access: &mut Access,
) -> Result<(), ProxyError> {
    let forwards = evaluation.forwards(policy.mode());
    if let Evaluation::Denied {
        target,
        required,
        missing,
    } = evaluation
    {
        let client = access.account.identified_client();
        state.observed.record_decision(
            &account.name,
            client,
            if forwards {
                Outcome::Reported
            } else {
                Outcome::Denied
            },
            method.as_str(),
            target.path,
            required,
            missing,
        );
    }
    if forwards {
        access.decision = "reported";
        warn!(
            account = %account.name,
            method = %method,
            path = %evaluation.target().map(|t| t.path).unwrap_or(""),
            "policy would deny (report mode): {}",
            evaluation.denial_message(method).unwrap_or_default()
        );
        return Ok(());
    }
    access.decision = "denied";
    Err(refusal(evaluation, method))
}

/// The proxy error for a refused evaluation.
fn refusal(evaluation: &Evaluation<'_>, method: &Method) -> ProxyError {
    let status = evaluation
        .error_code()
        .map_or(StatusCode::FORBIDDEN, |(s, _)| s);
    match evaluation.error_body(method) {
        Some(body) => ProxyError::Policy {
            status,
            code: body.code,
            message: body.message,
            details: serde_json::to_value(&body.details).unwrap_or_default(),
        },
        None => ProxyError::Policy {
            status: StatusCode::FORBIDDEN,
            code: "PROXY_SCOPE_DENIED",
            message: "the request is not allowed".into(),
            details: serde_json::Value::Null,
        },
    }
}

fn fault_error(fault: BodyFault, max_body: u64) -> ProxyError {
    match fault {
        BodyFault::TooLarge => ProxyError::BodyTooLarge {
            limit: max_body,
            key: "limits.max_body",
        },
        BodyFault::Idle => ProxyError::BodyTimeout,
        BodyFault::Broken => ProxyError::BodyBroken,
    }
}

/// The request's head says its body is empty (no `Content-Length` and no chunking, or
/// `Content-Length: 0`).
fn is_empty_body(body: &Incoming) -> bool {
    use hyper::body::Body;
    body.is_end_stream() || body.size_hint().exact() == Some(0)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_safe_escapes_control_characters_and_bounds_length() {
        assert_eq!(log_safe("a\r\nb"), "a\\r\\nb");
        assert_eq!(log_safe("\u{1b}[31m"), "\\u{1b}[31m");
        assert_eq!(log_safe(&"x".repeat(300)).chars().count(), 257);
    }
}
