//! Sending a decided request: the token, the body (kept for one replay when small), its
//! admission (`admit.rs`: credits and upstream slots, or the organization's window), the exchange
//! with its deadline, the one replay after an invalid-token 401, and the response wrapped so its
//! end releases what the request held and logs its access line.

use super::access_log::Access;
use super::admit::{admit, settle};
use super::decide::fault_error;
use super::error::ProxyError;
use super::{content_length, headers, Exchange};
use crate::cache;
use crate::config::Limits;
use crate::policy::CanonicalTarget;
use crate::rt::timer::ConnTimer;
use crate::state::{AccountRuntime, AppState};
use crate::token::AccessToken;
use crate::upstream;
use crate::web::body::{
    self, collect_capped, full, BodyWatch, Collected, ProxyBody, RequestBody, ResponseBody,
};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Largest 401 body inspected for `INVALID_TOKEN`.
const MAX_401_BODY: u64 = 64 * 1024;

/// The request body as it will be sent.
pub(super) enum Outgoing {
    /// Fully read (small): can be replayed once.
    Replayable(Bytes),
    /// Streaming: sent once.
    Streaming(RequestBody),
}

/// The body before or after preparation.
pub(super) enum Prepared {
    Body(Incoming, Option<u64>),
    Ready(Outgoing),
}

/// A request the policy let through: what goes to Zoho.
pub(super) struct Decided<'a> {
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    /// The path and query the policy decided on (forwarded byte for byte).
    pub(super) target: CanonicalTarget<'a>,
    /// The client's own request target (reused when it is the same text).
    pub(super) client_target: Option<&'a PathAndQuery>,
    /// The scopes it required, for the access log.
    pub(super) scope: String,
    pub(super) body: Prepared,
}

/// The body as it will go out, and what its framing says.
struct Body {
    outgoing: Outgoing,
    watch: Arc<BodyWatch>,
    /// Whether the client sent a body at all (an empty one with `Content-Length: 0` included).
    had_body: bool,
    /// The `Content-Length` of a streamed body.
    stream_len: Option<u64>,
}

/// Prepares the body: a small one is read whole (and kept for one replay), a large one streams.
async fn prepare(body: Prepared, headers: &HeaderMap, limits: &Limits) -> Result<Body, ProxyError> {
    let watch = Arc::new(BodyWatch::default());
    let outgoing = match body {
        Prepared::Ready(o) => o,
        Prepared::Body(incoming, len) => {
            if http_body::Body::is_end_stream(&incoming) {
                Outgoing::Replayable(Bytes::new())
            } else if len.is_some_and(|l| l > limits.replay_body) {
                Outgoing::Streaming(RequestBody::new(
                    incoming,
                    None,
                    limits.max_body,
                    limits.body_idle_timeout,
                    watch.clone(),
                ))
            } else {
                match collect_capped(incoming, limits.replay_body, limits.body_idle_timeout).await {
                    Ok(Collected::Complete(b)) => Outgoing::Replayable(b),
                    Ok(Collected::Exceeded(prefix, rest)) => Outgoing::Streaming(RequestBody::new(
                        rest,
                        Some(prefix),
                        limits.max_body,
                        limits.body_idle_timeout,
                        watch.clone(),
                    )),
                    Err(fault) => return Err(fault_error(fault, limits.max_body)),
                }
            }
        }
    };
    if matches!(outgoing, Outgoing::Replayable(_)) {
        watch.mark_finished();
    }
    let had_body = !matches!(&outgoing, Outgoing::Replayable(b) if b.is_empty())
        || content_length(headers).is_some();
    let stream_len = match &outgoing {
        Outgoing::Streaming(_) => content_length(headers),
        Outgoing::Replayable(_) => None,
    };
    Ok(Body {
        outgoing,
        watch,
        had_body,
        stream_len,
    })
}

/// Sends a decided request: a token (never an expired one), the body, credits and slots, then
/// the exchange; after `INVALID_TOKEN` one refresh (shared) and one replay if the body allows.
pub(super) async fn send_decided(
    exchange: Exchange<'_>,
    decided: Decided<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Exchange {
        state,
        runtime,
        account,
        access,
        in_flight,
        deadlines,
    } = exchange;
    let Decided {
        method,
        headers,
        target,
        client_target,
        scope,
        body,
    } = decided;
    let limits = &runtime.limits;
    let path = target.path;
    access.scope = scope;

    // 1b. The metadata cache: a hit costs no token, credit or slot.
    let idle = limits.body_idle_timeout;
    let fill = match consult_cache(account, &method, &headers, target, access) {
        Ok(fill) => fill,
        Err(hit) => return Ok(respond(state, hit.response(), access, idle, in_flight)),
    };

    // 2. A token (never an expired one).
    let token = match account.token.usable() {
        Some(t) => t,
        // Boxed: the wait's futures stay out of every request's future (most find a token).
        None => Box::pin(token_or_wait(state, account, limits.token_wait)).await?,
    };

    // 3. The body: small ones are kept for one replay, large ones stream.
    let Body {
        outgoing,
        watch,
        had_body,
        stream_len,
    } = prepare(body, &headers, limits).await?;

    // 4. Credits and upstream slots (CRM), or the organization's window (Books, Inventory).
    let mut held = admit(runtime, account, access, &method, target, &outgoing).await?;

    // 5. Send; after INVALID_TOKEN, refresh once (shared) and replay once if the body allows.
    let mut token = token;
    let mut outgoing = Some(outgoing);
    let mut replayed = false;
    let mut resent = false;
    loop {
        let (body, replay_copy, len) = this_attempt(outgoing.take(), had_body, stream_len);
        let request = build_request(&method, &headers, &token, target, client_target, body, len)?;
        let sent = Instant::now();
        let (response, upstream) =
            match send(account, request, &watch, limits, &token, deadlines).await {
                Ok(exchange) => exchange,
                Err(unsent) => {
                    outgoing = Some(resend(account, path, unsent, replay_copy, resent)?);
                    resent = true;
                    continue;
                }
            };
        let upstream_ms = sent.elapsed();
        access.upstream_ms = Some(upstream_ms.as_millis() as u64);
        state
            .metrics
            .upstream_latency(&account.label, upstream_ms.as_secs_f64());
        settle(
            runtime,
            account,
            target,
            &mut held,
            response.status(),
            response.headers(),
        )
        .await;

        if response.status() == StatusCode::UNAUTHORIZED && !replayed {
            // Boxed: its body read and token wait stay out of every request's future.
            let verdict = Box::pin(unauthorized(
                account,
                target,
                &token,
                replay_copy,
                limits,
                response,
            ));
            match verdict.await {
                Unauthorized::Replay(fresh, copy) => {
                    token = fresh;
                    outgoing = Some(Outgoing::Replayable(copy));
                    replayed = true;
                    continue;
                }
                Unauthorized::Answer(response) => {
                    return Ok(respond(
                        state,
                        response,
                        access,
                        limits.body_idle_timeout,
                        (held, in_flight, upstream),
                    ));
                }
            }
        }
        let response = response.map(BodyExt::boxed);
        let response = cache::attach(fill, response, &method, access.credits);
        let held = (held, in_flight, upstream);
        return Ok(respond(state, response, access, idle, held));
    }
}

/// The metadata cache, after the decision and before any token, credit or slot: a write to the
/// metadata purges the account's entries; a read the cache holds is answered from it (`Err`);
/// any other read goes on, with what stores Zoho's answer. A request the cache does not concern
/// costs one path check (no allocation, no lock, no clock).
fn consult_cache(
    account: &AccountRuntime,
    method: &Method,
    headers: &HeaderMap,
    target: CanonicalTarget<'_>,
    access: &mut Access,
) -> Result<Option<cache::Fill>, cache::Hit> {
    match cache::classify(method, target.path, target.query) {
        cache::Class::Other => Ok(None),
        cache::Class::Write => {
            let dropped = account.cache.purge();
            debug!(account = %account.name, dropped, "metadata write: the account's cache purged");
            Ok(None)
        }
        cache::Class::Read => {
            let refresh = cache::refresh_requested(headers);
            match account.cache.lookup(&target.path_and_query(), refresh) {
                cache::Lookup::Off => Ok(None),
                cache::Lookup::Hit(hit) => {
                    access.cache = "hit";
                    access.credits = 0;
                    Err(hit)
                }
                cache::Lookup::Miss(fill) => {
                    access.cache = if refresh { "refresh" } else { "miss" };
                    Ok(Some(fill))
                }
            }
        }
    }
}

/// The body of one attempt: a replayable body is copied (kept for a replay), a streamed one goes
/// once. Also its copy for a replay and the `Content-Length` to send.
fn this_attempt(
    outgoing: Option<Outgoing>,
    had_body: bool,
    stream_len: Option<u64>,
) -> (ProxyBody, Option<Bytes>, Option<u64>) {
    match outgoing {
        Some(Outgoing::Replayable(b)) => {
            let len = (had_body || !b.is_empty()).then_some(b.len() as u64);
            (full(b.clone()), Some(b), len)
        }
        Some(Outgoing::Streaming(s)) => (s.boxed(), None, stream_len),
        None => (body::empty(), None, None),
    }
}

/// A request the API server refused unprocessed (it was closing its HTTP/2 connection, as
/// servers do after so many requests) goes once more, on a new connection, when its body was
/// kept; anything else is the request's error.
fn resend(
    account: &AccountRuntime,
    path: &str,
    unsent: Unsent,
    replay_copy: Option<Bytes>,
    resent: bool,
) -> Result<Outgoing, ProxyError> {
    let Unsent { error, unprocessed } = unsent;
    match replay_copy {
        Some(copy) if unprocessed && !resent => {
            debug!(account = %account.name, path = %path, "request refused unprocessed by the API server; sending it again");
            Ok(Outgoing::Replayable(copy))
        }
        _ => {
            if unprocessed {
                warn!(account = %account.name, path = %path, "the API server refused the request unprocessed, and it cannot be sent again (sent once already, or its body streamed)");
            }
            Err(error)
        }
    }
}

/// What a 401 from Zoho leads to.
enum Unauthorized {
    /// `INVALID_TOKEN` and a replayable body: send it once more with this newer token.
    Replay(Arc<AccessToken>, Bytes),
    /// Anything else: this response goes to the client (its body read so far, then the rest).
    Answer(Response<ProxyBody>),
}

/// A 401 from Zoho: reads up to [`MAX_401_BODY`] of it; when it reports an invalid token in
/// the product's envelope (CRM `INVALID_TOKEN`, Books/Inventory code 57) marks `token` rejected
/// (one refresh, shared) and, when the body can be replayed, asks for one replay.
async fn unauthorized(
    account: &AccountRuntime,
    target: CanonicalTarget<'_>,
    token: &AccessToken,
    replay_copy: Option<Bytes>,
    limits: &crate::config::Limits,
    response: Response<upstream::UpstreamBody>,
) -> Unauthorized {
    let (parts, incoming) = response.into_parts();
    let (head, rest) = match collect_capped(incoming, MAX_401_BODY, Duration::from_secs(5)).await {
        Ok(Collected::Complete(b)) => (b, None),
        Ok(Collected::Exceeded(b, rest)) => (b, Some(rest)),
        Err(_) => (Bytes::new(), None),
    };
    if rest.is_none() && target.product.is_invalid_token(&head) {
        let fresh = account
            .token
            .reject(token.generation, limits.token_wait)
            .await;
        if let (Some(fresh), Some(copy)) = (fresh, replay_copy) {
            let path = target.path;
            let marker = target.product.invalid_token;
            info!(account = %account.name, path = %path, product = target.product.name, "token rejected by Zoho ({marker}); replaying once with a new token");
            return Unauthorized::Replay(fresh, copy);
        }
    }
    let body: ProxyBody = match rest {
        None => full(head),
        Some(rest) => {
            http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<_, body::BodyError>(
                http_body::Frame::data(head),
            )]))
            .boxed()
            .with_trailers_or_rest(rest)
        }
    };
    Unauthorized::Answer(Response::from_parts(parts, body))
}

/// Chains the rest of a partially read body after its head.
trait ChainRest {
    fn with_trailers_or_rest(self, rest: upstream::UpstreamBody) -> ProxyBody;
}

impl ChainRest for ProxyBody {
    fn with_trailers_or_rest(self, rest: upstream::UpstreamBody) -> ProxyBody {
        use futures_util::StreamExt;
        let head = http_body_util::BodyStream::new(self);
        let tail = http_body_util::BodyStream::new(rest);
        BodyExt::boxed(http_body_util::StreamBody::new(head.chain(tail)))
    }
}

async fn token_or_wait(
    state: &AppState,
    account: &AccountRuntime,
    wait: Duration,
) -> Result<Arc<AccessToken>, ProxyError> {
    if let Some(t) = account.token.usable_or_wait(wait).await {
        return Ok(t);
    }
    let status = account.token.status();
    if status.state == crate::token::TokenState::NotAuthorized
        || (account.client_type == crate::config::ClientType::Server
            && status.last_refresh_unix_ms.is_none()
            && status.last_error.is_none())
    {
        let runtime = state.runtime.load();
        let start_url = match runtime.config.account(&account.name) {
            Some(config) => config.authorize_start_url(&state.admin_listen),
            None => format!(
                "http://{}/oauth/start?account={}",
                state.admin_listen, account.name
            ),
        };
        return Err(ProxyError::AccountNotAuthorized {
            account: account.name.to_string(),
            start_url,
        });
    }
    Err(ProxyError::TokenUnavailable {
        reason: account
            .token
            .ready()
            .err()
            .unwrap_or_else(|| "no valid access token".into()),
        retry_after: account.token.retry_after_secs(),
    })
}

/// The upstream request for `target`, the path and query the policy checked. The client's own
/// request target is forwarded as it is (shared, not formatted and parsed again) when it is the
/// same text, nearly always.
fn build_request(
    method: &Method,
    client_headers: &HeaderMap,
    token: &AccessToken,
    target: CanonicalTarget<'_>,
    client_target: Option<&PathAndQuery>,
    body: ProxyBody,
    content_length: Option<u64>,
) -> Result<Request<ProxyBody>, ProxyError> {
    let (path, query) = (target.path, target.query);
    let path_and_query = match client_target.filter(|pq| pq.path() == path && pq.query() == query) {
        Some(pq) => pq.clone(),
        None => PathAndQuery::try_from(target.path_and_query()).map_err(|_| bad_target())?,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(token.api.scheme.clone());
    parts.authority = Some(token.api.authority.clone());
    parts.path_and_query = Some(path_and_query);
    let uri = Uri::from_parts(parts).map_err(|_| bad_target())?;
    // The forwarded path must be byte-identical to the one the policy decided on.
    if uri.path() != path || uri.query() != query {
        return Err(bad_target());
    }
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() =
        headers::upstream_request_headers(client_headers, token.authorization(), content_length);
    Ok(request)
}

fn bad_target() -> ProxyError {
    ProxyError::Policy {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_PATH",
        message: "the request target could not be forwarded unchanged".into(),
        details: serde_json::Value::Null,
    }
}

/// Why [`send`] got no response, and whether the server left the request unprocessed (then it
/// may be sent again).
struct Unsent {
    error: ProxyError,
    unprocessed: bool,
}

impl From<ProxyError> for Unsent {
    fn from(error: ProxyError) -> Unsent {
        Unsent {
            error,
            unprocessed: false,
        }
    }
}

async fn send(
    account: &AccountRuntime,
    request: Request<ProxyBody>,
    watch: &BodyWatch,
    limits: &crate::config::Limits,
    token: &AccessToken,
    deadlines: &ConnTimer,
) -> Result<(Response<upstream::UpstreamBody>, upstream::InFlightUpstream), Unsent> {
    // Pinned in this frame: `select!` polls them through the pins and does not move them again.
    let exchange = std::pin::pin!(account.upstream.send(request));
    // Once the request body is fully sent, Zoho has `request_timeout` to answer. While the body
    // streams, the deadline restarts whenever the upstream takes a frame, so an upstream that
    // never completes the handshake or never reads the body is cut too (it would never poll the
    // body, and the body's own idle timer would never fire).
    let deadline = std::pin::pin!(async {
        loop {
            if watch.is_finished() {
                // Nothing left to stream (from the start for a body-less or buffered request):
                // one deadline, on the connection's timer (no tokio timer of its own).
                deadlines.after(limits.request_timeout).await;
                return;
            }
            let frames = watch.frames_sent();
            tokio::select! {
                () = watch.finished() => {}
                () = tokio::time::sleep(limits.request_timeout) => {
                    if watch.frames_sent() == frames {
                        return;
                    }
                }
            }
        }
    });
    let result = tokio::select! {
        r = exchange => r,
        _ = deadline => {
            if let Some(fault) = watch.fault() {
                return Err(fault_error(fault, limits.max_body).into());
            }
            return Err(ProxyError::UpstreamTimeout {
                host: token.api.authority.to_string(),
                secs: limits.request_timeout.as_secs(),
            }
            .into());
        }
    };
    result.map_err(|e| {
        if let Some(fault) = watch.fault() {
            return fault_error(fault, limits.max_body).into();
        }
        let host = token.api.authority.to_string();
        let reason = crate::token::client::error_chain(&e);
        let unprocessed = e.unprocessed();
        if unprocessed {
            debug!(account = %account.name, upstream = %host, "upstream refused the request unprocessed: {reason}");
        } else {
            warn!(account = %account.name, upstream = %host, "upstream request failed: {reason}");
        }
        Unsent {
            error: ProxyError::UpstreamUnreachable {
                host,
                reason: e.reason().into(),
            },
            unprocessed,
        }
    })
}

pub(super) fn respond(
    state: &AppState,
    response: Response<ProxyBody>,
    access: &mut Access,
    idle: Duration,
    held: impl Send + Sync + 'static,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    headers::clean_response_headers(&mut parts.headers);
    let status = parts.status;
    // No body by definition (RFC 9110 §6.4.1): hyper sends none and never polls ours.
    let no_content = access.method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let metrics = state.metrics.clone();
    let access = Access {
        log: access.log,
        account: access.account.clone(),
        method: access.method.clone(),
        path: std::mem::take(&mut access.path),
        decision: access.decision,
        scope: std::mem::take(&mut access.scope),
        started: access.started,
        upstream_ms: access.upstream_ms,
        credits: access.credits,
        cache: access.cache,
        organization: std::mem::take(&mut access.organization),
    };
    let on_finish: body::OnFinish = Box::new(move |bytes, complete| {
        // Held until the response body ends (one allocation with the callback): the upstream
        // slot, the in-flight gauge and the worker's upstream in-flight count (only the gauge
        // for an answer from the cache).
        let _held = held;
        access.log(status, bytes, complete, &metrics);
    });
    let body = ResponseBody::new(body, idle, on_finish);
    let body = if no_content {
        body.without_content()
    } else {
        body
    };
    Response::from_parts(parts, body.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AccessToken {
        let url = url::Url::parse("https://www.zohoapis.eu").expect("url");
        let api = crate::token::ApiBase::from_url(&url).expect("api base");
        let hour = Duration::from_secs(3600);
        AccessToken::new("t", 1, hour, hour, api).expect("token")
    }

    fn forwarded(path: &str, query: Option<&str>, client: &str) -> Result<Uri, ProxyError> {
        let client: Uri = client.parse().expect("client target");
        let target = CanonicalTarget::crm(path, query);
        let (method, headers) = (Method::GET, HeaderMap::new());
        let client_target = client.path_and_query();
        build_request(
            &method,
            &headers,
            &token(),
            target,
            client_target,
            body::empty(),
            None,
        )
        .map(|r| r.uri().clone())
    }

    #[test]
    fn the_checked_target_is_forwarded_byte_for_byte_whether_or_not_the_clients_is_reused() {
        // The client's own target is the checked one: reused.
        let uri = forwarded("/crm/v8/Leads", Some("page=2"), "/crm/v8/Leads?page=2").expect("ok");
        assert_eq!(
            uri.to_string(),
            "https://www.zohoapis.eu/crm/v8/Leads?page=2"
        );
        let uri = forwarded(
            "/crm/v8/Leads",
            None,
            "http://127.0.0.1:8080/crm/v8/Leads#x",
        );
        assert_eq!(
            uri.expect("ok").to_string(),
            "https://www.zohoapis.eu/crm/v8/Leads"
        );
        // The policy checked another text than the client sent: that text is what goes out.
        let uri = forwarded("/crm/v8/Deals", Some("a=1"), "/crm/v8/Leads?a=1").expect("ok");
        assert_eq!(uri.to_string(), "https://www.zohoapis.eu/crm/v8/Deals?a=1");
        let uri = forwarded("/crm/v8/Leads", None, "/crm/v8/Leads?").expect("ok");
        assert_eq!(uri.to_string(), "https://www.zohoapis.eu/crm/v8/Leads");
        // A checked text that would not survive as a request target is refused, not altered.
        let refused = forwarded("/crm/v8/Leads Deals", None, "/crm/v8/Leads");
        assert!(matches!(
            refused,
            Err(ProxyError::Policy {
                code: "PROXY_BAD_PATH",
                ..
            })
        ));
    }
}
