//! The test-facing remote control of a running fake: shared state, counters, recorded CRM
//! requests and the knobs that change how the token endpoint answers.
//!
//! Owns: [`FakeControl`], [`TokenBehavior`], [`RecordedRequest`] and the `Shared` state the two
//! servers read. Must not: speak HTTP (the servers in `accounts.rs` and `crm/` do) or block:
//! locks are std mutexes held for a few instructions and never across an `.await`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::books::state::BooksState;
use super::books::store::BooksStore;
use super::books::FinanceProduct;
use super::crm::records::CrmStore;
use super::ledger::Ledger;

/// How `POST /oauth/v2/token` answers (after counting the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBehavior {
    /// Real Zoho behaviour (mint, errors, throttle, eviction).
    Normal,
    /// `200 {"error": "<code>"}`, e.g. `invalid_client`, `invalid_code`, `invalid_client_secret`.
    Error(String),
    /// The "Access Denied" throttle body with the configured throttle status.
    AccessDenied,
    /// The given status with an HTML error page (as a misrouted or broken front end would send).
    Html(u16),
    /// Accept the request and never answer (until the fake shuts down).
    Hang,
    /// Exactly this status and body, `Content-Type: application/json;charset=UTF-8`.
    Raw {
        /// HTTP status.
        status: u16,
        /// Body, sent verbatim.
        body: String,
    },
    /// Answer normally after this many milliseconds.
    DelayMs(u64),
}

/// One request as the CRM API server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query exactly as on the request line (`:path` for HTTP/2).
    pub path_and_query: String,
    /// Every header field, lower-case names. Order is hyper's: first appearance of each name,
    /// with repeated fields of the same name adjacent and in received order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Request body bytes received.
    pub body_len: u64,
    /// SHA-256 of the received body, lower-case hex.
    pub body_sha256: String,
    /// The first 64 KiB of the body.
    pub body_prefix: Vec<u8>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Whether the body was read to its end (false while it streams, or if the client aborted).
    pub body_complete: bool,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// How many fields named `name` (case-insensitive) the request carried.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The first value of header `name` as UTF-8 text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Token-endpoint knobs changed at run time.
#[derive(Debug)]
pub(crate) struct TokenKnobs {
    pub behavior: TokenBehavior,
    /// Consumed one per token request before `behavior` applies.
    pub queued: VecDeque<TokenBehavior>,
    /// What `expires_in` says; `Null` means omit the field.
    pub expires_in: serde_json::Value,
    pub throttle_status: u16,
}

/// State shared by both servers and every [`FakeControl`]. Deliberately not `Debug`: it holds
/// the client secret and live tokens.
pub(crate) struct Shared {
    pub accounts_url: String,
    pub api_domain: Mutex<String>,
    pub location: String,
    /// Server-side lifetime when `expires_in` is not a positive integer.
    pub default_lifetime: Duration,
    pub ledger: Mutex<Ledger>,
    pub knobs: Mutex<TokenKnobs>,
    pub token_requests: AtomicU64,
    pub crm_log: Mutex<RequestLog>,
    /// The proxy's own calls (`User-Agent: zoho-auth-proxy/…`), apart from the clients'.
    pub own_log: Mutex<RequestLog>,
    /// The org's edition, the `__apis` costs and the scopes the token lacks (`crm/meta.rs`).
    pub org: Mutex<crate::sandbox::crm::meta::FakeOrg>,
    pub accounts_log: Mutex<RequestLog>,
    pub issued_codes: Mutex<Vec<String>>,
    pub crm: Mutex<CrmStore>,
    /// The Books/Inventory levers and counters (`books/state.rs`).
    pub books: Mutex<BooksState>,
    /// The Books/Inventory records (`books/store.rs`).
    pub books_store: Mutex<BooksStore>,
    /// API credits and concurrency (`crm/credits.rs`).
    pub credits: Mutex<crate::sandbox::crm::credits::FakeCredits>,
    pub accounts_connections: AtomicU64,
    pub crm_connections: AtomicU64,
    /// Woken on every counter or log change, for the `wait_for_*` helpers.
    pub changed: Notify,
    /// Cancelled when the fake stops; hanging handlers wake up and end.
    pub cancel: CancellationToken,
}

/// How many requests a [`RequestLog`] keeps: the newest, so a demo under load (millions of
/// requests) keeps a bounded memory while every test sees all of its own requests.
pub(crate) const REQUEST_LOG_ENTRIES: usize = 10_000;

/// The last [`REQUEST_LOG_ENTRIES`] recorded requests with a sequence number each, so a request
/// still streaming its body can update its own entry even after `clear_crm_requests`.
#[derive(Debug)]
pub(crate) struct RequestLog {
    next_seq: u64,
    capacity: usize,
    entries: VecDeque<(u64, RecordedRequest)>,
}

impl Default for RequestLog {
    fn default() -> RequestLog {
        RequestLog::with_capacity(REQUEST_LOG_ENTRIES)
    }
}

impl RequestLog {
    /// A log keeping the newest `capacity` requests (at least one).
    pub(crate) fn with_capacity(capacity: usize) -> RequestLog {
        RequestLog {
            next_seq: 0,
            capacity: capacity.max(1),
            entries: VecDeque::new(),
        }
    }

    /// Appends a request, dropping the oldest when full; returns its sequence number.
    pub(crate) fn push(&mut self, req: RecordedRequest) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((seq, req));
        seq
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.entries.iter().map(|(_, r)| r.clone()).collect()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn update(&mut self, seq: u64, f: impl FnOnce(&mut RecordedRequest)) {
        if let Some((_, req)) = self.entries.iter_mut().rev().find(|(s, _)| *s == seq) {
            f(req);
        }
    }
}

/// Locks a std mutex, ignoring poisoning (a panicking test thread must not cascade).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Counts a change and wakes waiters.
    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Server-side lifetime of a token minted while `expires_in` reads `value`: a positive
    /// integer (number or numeric string, seconds, capped at ten years) is honoured; anything
    /// else falls back to the configured default so tests probe the client, not the server.
    pub(crate) fn lifetime_for(&self, value: &serde_json::Value) -> Duration {
        const TEN_YEARS: u64 = 10 * 365 * 24 * 3600;
        let secs = match value {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match secs.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0) {
            Some(s) => Duration::from_secs(s.min(TEN_YEARS)),
            None => self.default_lifetime,
        }
    }

    /// Waits until `done()` holds or `deadline` passes; returns the final value of `done()`.
    pub(crate) async fn wait_until(&self, deadline: Duration, done: impl Fn() -> bool) -> bool {
        let end = Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking so a change between check and await is not lost.
            notified.as_mut().enable();
            if done() {
                return true;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return done();
            }
        }
    }
}

/// A cheap, cloneable handle to a running fake's state.
#[derive(Clone)]
pub struct FakeControl {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counters only: tokens and the client secret stay out of Debug output.
        f.debug_struct("FakeControl")
            .field("accounts_url", &self.shared.accounts_url)
            .field("token_requests", &self.token_requests())
            .field("mints", &self.mints())
            .finish_non_exhaustive()
    }
}

impl FakeControl {
    /// API credits per day of the fake org (`None`: unlimited, the default). Once half are
    /// used, answers carry `X-API-CREDITS-REMAINING`; past the limit, 429 TOO_MANY_REQUESTS.
    pub fn set_credit_limit(&self, limit: Option<u64>) {
        let mut c = lock(&self.shared.credits);
        c.daily_limit = limit;
        c.used = 0;
    }

    /// Credits the fake has charged (with a limit set).
    pub fn credits_used(&self) -> u64 {
        lock(&self.shared.credits).used
    }

    /// Sends `X-API-CREDITS-REMAINING: n` on every answer (`None`: only from 50 % used).
    pub fn set_credits_remaining_header(&self, remaining: Option<u64>) {
        lock(&self.shared.credits).remaining_header = remaining;
    }

    /// Answers every CRM request 429 TOO_MANY_REQUESTS for `duration`, with `Retry-After:
    /// retry_after` if given.
    pub fn throttle_for(&self, duration: std::time::Duration, retry_after: Option<u64>) {
        let mut c = lock(&self.shared.credits);
        c.throttle_until = Some(crate::sandbox::crm::credits::deadline(duration));
        c.throttle_retry_after = retry_after;
    }

    /// Whether a throttle set by [`throttle_for`](Self::throttle_for) still runs.
    pub fn throttled_now(&self) -> bool {
        lock(&self.shared.credits)
            .throttle_until
            .is_some_and(|u| tokio::time::Instant::now() < u)
    }

    /// Concurrent CRM requests allowed before 429 (`None`: unlimited).
    pub fn set_concurrency_limit(&self, limit: Option<usize>) {
        lock(&self.shared.credits).concurrency_limit = limit;
    }

    /// The most CRM requests in flight at once so far (all, heavy).
    pub fn max_in_flight(&self) -> (usize, usize) {
        let c = lock(&self.shared.credits);
        (c.max_in_flight, c.max_heavy_in_flight)
    }

    /// CRM requests in flight now (all, heavy).
    pub fn in_flight(&self) -> (usize, usize) {
        let c = lock(&self.shared.credits);
        (c.in_flight, c.heavy_in_flight)
    }

    /// The edition `GET /crm/{v}/org` names in `license_details.paid_type` (`None`: null; the
    /// default is `enterprise`), and the `trial_type` it adds (`None`: none).
    pub fn set_edition(&self, paid_type: Option<&str>, trial_type: Option<&str>) {
        let mut org = lock(&self.shared.org);
        org.paid_type = paid_type.map(str::to_owned);
        org.trial_type = trial_type.map(str::to_owned);
    }

    /// The operations `GET /crm/{v}/__apis` lists: (method, path template with `{version}` and
    /// `{{id}}`-style placeholders, credits). Empty by default.
    pub fn set_api_costs(&self, costs: &[(&str, &str, u64)]) {
        lock(&self.shared.org).costs = costs
            .iter()
            .map(|(m, p, c)| ((*m).to_owned(), (*p).to_owned(), *c))
            .collect();
    }

    /// Takes `scope` (`ZohoCRM.org.READ`, `ZohoCRM.apis.READ`) away from every token: the call
    /// that needs it answers `401 OAUTH_SCOPE_MISMATCH`.
    pub fn deny_scope(&self, scope: &str) {
        lock(&self.shared.org).denied.push(scope.to_owned());
    }

    /// The proxy's own calls received so far (requests with `User-Agent: zoho-auth-proxy/…`,
    /// kept out of [`crm_requests`](Self::crm_requests)).
    pub fn own_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.own_log).snapshot()
    }

    /// CRM requests answered 429 by the credit, throttle and concurrency rules.
    pub fn throttled_answers(&self) -> u64 {
        lock(&self.shared.credits).throttled
    }

    /// Sets how every following token request is answered (until changed).
    pub fn set_token_behavior(&self, b: TokenBehavior) {
        lock(&self.shared.knobs).behavior = b;
    }

    /// Queues behaviours used one each by the next token requests, before the standing
    /// behaviour applies again (e.g. `[Error("invalid_code".into())]` fails just the next one).
    pub fn queue_token_behaviors(&self, bs: impl IntoIterator<Item = TokenBehavior>) {
        lock(&self.shared.knobs).queued.extend(bs);
    }

    /// Sets what successful token responses put in `expires_in`: any JSON value, `Null` omits
    /// the field. A positive integer also becomes the tokens' real lifetime on the CRM side.
    pub fn set_expires_in(&self, secs: serde_json::Value) {
        lock(&self.shared.knobs).expires_in = secs;
    }

    /// Changes what later token responses put in `api_domain` (e.g. to simulate another DC).
    pub fn set_api_domain(&self, domain: &str) {
        *lock(&self.shared.api_domain) = domain.to_owned();
    }

    /// Sets the HTTP status of the "Access Denied" throttle response (200 or 400 in the wild).
    pub fn set_throttle_status(&self, status: u16) {
        lock(&self.shared.knobs).throttle_status = status;
    }

    /// Server-side revoke: every live access token dies, refresh tokens stay valid.
    pub fn revoke_all_access_tokens(&self) {
        lock(&self.shared.ledger).revoke_all_access();
        self.shared.notify();
    }

    /// Revokes a refresh token (and its access tokens); the refresh grant then answers
    /// `{"error":"invalid_code"}`.
    pub fn revoke_refresh_token(&self, rt: &str) {
        lock(&self.shared.ledger).revoke_refresh(rt);
        self.shared.notify();
    }

    /// Makes `rt` a valid refresh token (e.g. after revoking it).
    pub fn add_refresh_token(&self, rt: &str) {
        lock(&self.shared.ledger).add_refresh_token(rt);
    }

    /// Adds a self-client grant code valid for the configured code lifetime from now.
    pub fn add_grant_code(&self, code: &str) {
        lock(&self.shared.ledger).add_self_client_code(code, Instant::now());
    }

    /// Every `POST /oauth/v2/token` seen, whatever the outcome.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Access tokens actually issued.
    pub fn mints(&self) -> u64 {
        lock(&self.shared.ledger).mints()
    }

    /// Currently valid access tokens, in no particular order.
    pub fn live_tokens(&self) -> Vec<String> {
        lock(&self.shared.ledger).live_tokens(Instant::now())
    }

    /// Whether `token` is currently a valid access token.
    pub fn is_live(&self, token: &str) -> bool {
        lock(&self.shared.ledger).is_live(token, Instant::now())
    }

    /// The organizations Books and Inventory know, as (organization_id, name); the first is the
    /// default org. Replaces the list (default `("60001", "Acme")`, `("60002", "Globex")`);
    /// records of organizations no longer listed stay but cannot be reached.
    pub fn set_organizations(&self, orgs: &[(&str, &str)]) {
        lock(&self.shared.books).orgs = orgs
            .iter()
            .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
            .collect();
    }

    /// Requests per minute allowed per (product, organization) before Books/Inventory answer
    /// `429 {"code":45,"message":"Request Limit Exceeded"}` (`None`: unlimited, the default).
    /// Counts afresh from the call.
    pub fn set_books_rate_limit(&self, per_minute: Option<usize>) {
        lock(&self.shared.books).set_rate_limit(per_minute);
    }

    /// Makes the next `n` Books/Inventory client requests answer `401 {"code":57,...}` even with
    /// a live token (replacing any count left). The proxy's own calls do not use them up.
    pub fn fail_next_with_code57(&self, n: usize) {
        lock(&self.shared.books).fail_code57 = n;
    }

    /// Forced code-57 failures not yet used up.
    pub fn code57_pending(&self) -> usize {
        lock(&self.shared.books).fail_code57
    }

    /// Books/Inventory requests that named organization `org` (the query's `organization_id`,
    /// or the path's for `/organizations/{id}`) and reached the fake, whatever the answer
    /// (refused tokens, unknown orgs, 429s and the proxy's own calls included).
    pub fn org_request_count(&self, product: FinanceProduct, org: &str) -> usize {
        lock(&self.shared.books).arrivals(product, org)
    }

    /// Every request the API server received (rejected ones too; CRM, Books and Inventory
    /// alike), in arrival order.
    pub fn crm_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.crm_log).snapshot()
    }

    /// Forgets the recorded CRM requests.
    pub fn clear_crm_requests(&self) {
        lock(&self.shared.crm_log).clear();
        self.shared.notify();
    }

    /// Every request the accounts server received (token, revoke, consent), in arrival order,
    /// with body prefix: e.g. to check that credentials travel in the body, not the URL.
    pub fn accounts_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.accounts_log).snapshot()
    }

    /// Waits until at least `n` token requests were seen or `deadline` passed; returns whether
    /// the count was reached.
    pub fn wait_for_token_requests(
        &self,
        n: u64,
        deadline: Duration,
    ) -> impl Future<Output = bool> + Send + 'static {
        let this = self.clone();
        async move {
            this.shared
                .wait_until(deadline, || this.token_requests() >= n)
                .await
        }
    }

    /// Waits until at least `n` CRM requests are recorded or `deadline` passed; returns whether
    /// the count was reached. A request counts as soon as its headers arrived.
    pub fn wait_for_crm_requests(
        &self,
        n: usize,
        deadline: Duration,
    ) -> impl Future<Output = bool> + Send + 'static {
        let this = self.clone();
        async move {
            this.shared
                .wait_until(deadline, || lock(&this.shared.crm_log).len() >= n)
                .await
        }
    }

    /// Waits until at least `n` access tokens were minted or `deadline` passed.
    pub fn wait_for_mints(
        &self,
        n: u64,
        deadline: Duration,
    ) -> impl Future<Output = bool> + Send + 'static {
        let this = self.clone();
        async move { this.shared.wait_until(deadline, || this.mints() >= n).await }
    }

    /// Codes issued by the auto-approving consent page (`GET /oauth/v2/auth`), oldest first.
    pub fn issued_auth_codes(&self) -> Vec<String> {
        lock(&self.shared.issued_codes).clone()
    }

    /// TLS connections accepted by the accounts server so far.
    pub fn accounts_connections(&self) -> u64 {
        self.shared.accounts_connections.load(Ordering::SeqCst)
    }

    /// TLS connections accepted by the CRM API server so far (tests of connection reuse).
    pub fn crm_connections(&self) -> u64 {
        self.shared.crm_connections.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path_and_query: format!("/crm/v8/Leads/{n}"),
            headers: Vec::new(),
            body_len: 0,
            body_sha256: String::new(),
            body_prefix: Vec::new(),
            version: "HTTP/1.1".into(),
            body_complete: true,
        }
    }

    #[test]
    fn the_request_log_keeps_the_newest_entries_only() {
        let mut log = RequestLog::with_capacity(3);
        let seqs: Vec<u64> = (0..5).map(|n| log.push(request(n))).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4], "sequence numbers keep counting");
        assert_eq!(log.len(), 3, "bounded at its capacity");
        let paths: Vec<String> = log
            .snapshot()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect();
        assert_eq!(
            paths,
            ["/crm/v8/Leads/2", "/crm/v8/Leads/3", "/crm/v8/Leads/4"],
            "the oldest are dropped, order kept"
        );
        // A dropped request finishing its body changes nothing; a kept one is updated.
        log.update(0, |r| r.body_len = 7);
        log.update(4, |r| r.body_len = 9);
        let lens: Vec<u64> = log.snapshot().iter().map(|r| r.body_len).collect();
        assert_eq!(lens, [0, 0, 9], "only the live entry is updated");
    }

    #[test]
    fn the_default_log_holds_ten_thousand_requests() {
        let mut log = RequestLog::default();
        for n in 0..REQUEST_LOG_ENTRIES + 50 {
            log.push(request(n));
        }
        assert_eq!(log.len(), REQUEST_LOG_ENTRIES, "bounded by default");
        assert_eq!(
            log.snapshot()[0].path_and_query,
            "/crm/v8/Leads/50",
            "the first 50 were dropped"
        );
    }
}
