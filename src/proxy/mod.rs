//! One request's journey: pick the account ([`route`]), decide with the policy (`decide.rs`),
//! attach the token, forward and stream the response back (`send.rs`), and log one access line
//! (`access_log.rs`).
//!
//! Owns header hygiene, body limits and the single replay after `INVALID_TOKEN`. Does not parse
//! config or mint tokens: it asks the account's [`TokenHandle`](crate::token::TokenHandle).

mod access_log;
mod admit;
mod decide;
pub mod error;
pub mod headers;
pub mod route;
mod send;

pub use route::ACCOUNT_HEADER;

use crate::access::Transport;
use crate::rt::timer::ConnTimer;
use crate::state::{AccountRuntime, AppState, ListenerRole, Runtime};
use crate::web::body::ProxyBody;
use access_log::Access;
use error::ProxyError;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::time::Instant;

/// One request's exchange: what travels with it from the decision to the end of its response.
struct Exchange<'a> {
    /// Shared state (metrics, observations, the admin address).
    state: &'a AppState,
    /// The snapshot the request loaded once and uses to the end.
    runtime: &'a Runtime,
    /// The account it goes to.
    account: &'a AccountRuntime,
    /// Its access log line, filled in on the way.
    access: &'a mut Access,
    /// Held until the response body ends.
    in_flight: InFlight,
    /// The connection's request deadlines.
    deadlines: &'a ConnTimer,
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
    let account = match route::select_account(&runtime, &role, req.headers()) {
        Ok(a) => a,
        Err(e) => {
            // Not the first account's label: a bad header must not count as that account's traffic.
            let access = Access {
                log: true,
                account: runtime.unrouted_meter(client).clone(),
                method,
                path: crate::util::log_safe(req.uri().path()),
                decision: "invalid",
                scope: String::new(),
                started,
                upstream_ms: None,
                credits: 0,
                cache: "",
                organization: String::new(),
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
        cache: "",
        organization: String::new(),
    };
    // An identified client decides with its own (narrower) allow list, on its accounts only.
    let policy = match client.and_then(|i| runtime.access.clients().get(i)) {
        None => &account.policy,
        Some(c) => match c.policy(account.index) {
            Some(p) => p,
            None => {
                access.path = crate::util::log_safe(req.uri().path());
                access.decision = "denied";
                let e = ProxyError::ClientAccountNotAllowed {
                    client: c.name.to_string(),
                    account: account.name.to_string(),
                };
                return Ok(local_error(e, &access, &state));
            }
        },
    };
    let exchange = Exchange {
        state: &state,
        runtime: &runtime,
        account,
        access: &mut access,
        in_flight,
        deadlines: &deadlines,
    };
    let result = decide::forward(exchange, policy, req).await;
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
            .map(|v| crate::util::log_safe(&String::from_utf8_lossy(v.as_bytes())))
    };
    let access = Access {
        log: true,
        account: runtime.unrouted.clone(),
        method: req.method().clone(),
        path: crate::util::log_safe(req.uri().path()),
        decision: "refused",
        scope: String::new(),
        started,
        upstream_ms: None,
        credits: 0,
        cache: "",
        organization: String::new(),
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
