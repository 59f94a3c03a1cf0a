//! Deciding a request: the policy's evaluation (reading a bounded body when the operation is
//! decided on it: COQL, composite, bulk), the answer to a denial (403, or logged and forwarded in
//! report mode), and the errors a refused evaluation becomes.

use super::access_log::Access;
use super::error::ProxyError;
use super::send::{send_decided, Decided, Outgoing, Prepared};
use super::{content_length, Exchange};
use crate::config::Limits;
use crate::observed::{Outcome, Seen};
use crate::policy::{Evaluation, Policy};
use crate::state::{AccountRuntime, AppState};
use crate::web::body::{collect_capped, BodyFault, Collected, ProxyBody};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

/// Decides `req` with `policy` (reading the body first when the decision needs it), then sends
/// what was allowed (or reported) through [`send_decided`].
pub(super) async fn forward(
    exchange: Exchange<'_>,
    policy: &Policy,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Exchange {
        state,
        runtime,
        account,
        access,
        in_flight,
        deadlines,
    } = exchange;
    let limits = &runtime.limits;
    let (parts, body) = req.into_parts();
    let evaluation = policy.evaluate(&parts.method, &parts.uri);
    let content_length = content_length(&parts.headers);
    if let Some(len) = content_length {
        if len > limits.max_body {
            access.path = crate::util::log_safe(parts.uri.path());
            access.decision = "invalid";
            return Err(ProxyError::BodyTooLarge {
                limit: limits.max_body,
                key: "limits.max_body",
            });
        }
    }

    // 1. Decide (on the body too where the operation is decided on it: COQL, composite, bulk).
    let (target, scope, body) = match &evaluation {
        Evaluation::Rejected(_) => {
            access.path = crate::util::log_safe(parts.uri.path());
            access.decision = "invalid";
            return Err(refusal(&evaluation, &parts.method));
        }
        Evaluation::NeedsBody { target, pending } => {
            access.path = access.text(|| target.path.to_string());
            let cap = pending.max_bytes() as u64;
            let bytes = read_for_policy(body, cap, limits, access).await?;
            let second = policy.evaluate_body(pending, &bytes);
            let scope = outcome(state, account, policy, &parts.method, &second, access)?;
            (*target, scope, Prepared::Ready(Outgoing::Replayable(bytes)))
        }
        Evaluation::Allowed { target, .. } | Evaluation::Denied { target, .. } => {
            access.path = access.text(|| target.path.to_string());
            let scope = outcome(state, account, policy, &parts.method, &evaluation, access)?;
            (*target, scope, Prepared::Body(body, content_length))
        }
    };
    if let Some(org) = target.organization {
        access.organization = access.text(|| org.to_string());
    }
    let exchange = Exchange {
        state,
        runtime,
        account,
        access,
        in_flight,
        deadlines,
    };
    let decided = Decided {
        method: parts.method,
        headers: parts.headers,
        target,
        client_target: parts.uri.path_and_query(),
        scope,
        body,
    };
    send_decided(exchange, decided).await
}

/// Reads the body the policy decides on, up to the operation's inspection cap.
async fn read_for_policy(
    body: Incoming,
    cap: u64,
    limits: &Limits,
    access: &mut Access,
) -> Result<Bytes, ProxyError> {
    match collect_capped(body, cap, limits.body_idle_timeout).await {
        Ok(Collected::Complete(b)) => Ok(b),
        Ok(Collected::Exceeded(..)) => {
            access.decision = "invalid";
            Err(ProxyError::BodyTooLarge {
                limit: cap,
                key: "the policy's inspection cap for this operation",
            })
        }
        Err(fault) => {
            access.decision = "invalid";
            Err(fault_error(fault, limits.max_body))
        }
    }
}

/// What a decided evaluation leads to: an allowed one is recorded and its scopes go to the
/// access log; a denied one is refused, or reported and forwarded ([`denied`]); a rejected one,
/// or a body that still cannot be classified, is invalid.
fn outcome(
    state: &AppState,
    account: &AccountRuntime,
    policy: &Policy,
    method: &Method,
    evaluation: &Evaluation<'_>,
    access: &mut Access,
) -> Result<String, ProxyError> {
    match evaluation {
        Evaluation::Rejected(_) => {
            access.decision = "invalid";
            Err(refusal(evaluation, method))
        }
        Evaluation::Allowed { required, .. } => {
            state
                .observed
                .record_scopes(&account.name, required, Outcome::Allowed);
            Ok(access.text(|| required.render()))
        }
        Evaluation::Denied { required, .. } => {
            access.scope = access.text(|| required.render());
            denied(state, account, policy, method, evaluation, access)?;
            Ok(access.text(|| required.render()))
        }
        Evaluation::NeedsBody { .. } => {
            access.decision = "invalid";
            Err(ProxyError::Policy {
                status: StatusCode::BAD_REQUEST,
                code: "PROXY_BAD_BODY",
                message: "the request body could not be classified".into(),
                details: serde_json::Value::Null,
            })
        }
    }
}

/// A denied decision: 403 in enforce mode; logged, counted and forwarded in report mode (never
/// for paths outside the CRM API).
fn denied(
    state: &AppState,
    account: &AccountRuntime,
    policy: &Policy,
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
        let seen = Seen {
            account: &account.name,
            client: access.account.identified_client(),
            method: method.as_str(),
            path: target.path,
        };
        let outcome = if forwards {
            Outcome::Reported
        } else {
            Outcome::Denied
        };
        state
            .observed
            .record_decision(&seen, outcome, required, missing);
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

pub(super) fn fault_error(fault: BodyFault, max_body: u64) -> ProxyError {
    match fault {
        BodyFault::TooLarge => ProxyError::BodyTooLarge {
            limit: max_body,
            key: "limits.max_body",
        },
        BodyFault::Idle => ProxyError::BodyTimeout,
        BodyFault::Broken => ProxyError::BodyBroken,
    }
}
