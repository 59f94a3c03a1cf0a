//! The proxy's own calls to the API, at start and then daily, with each self-client account's
//! token: `GET /crm/v8/org` sizes `limits.upstream_concurrency: auto` from the org's edition, and
//! `GET /crm/v8/__apis` puts Zoho's credit costs in force. Each result is installed as data: the
//! edition in [`Discovered`](crate::state::Discovered) and a rebuilt runtime snapshot (requests in
//! flight keep their slots), the costs in [`Credits`](crate::credits::Credits).
//!
//! The calls are the proxy's own: no allow list or budget applies, they carry
//! `User-Agent: zoho-auth-proxy/<version>`, take an upstream slot like any call, and their credits
//! go to the ledger's `(proxy)` client. `v8` is read whatever version the clients use: both
//! answers are the org's, the same in every version, and `__apis` templates match any version.
//!
//! Must not: forward a client's request, mint tokens, or parse answers beyond handing them to
//! the pure readers (`edition.rs`, `policy::ZohoCosts`).

pub mod edition;

use crate::config::ClientType;
use crate::policy::{BodyView, Cost, CostedOp, ZohoCosts};
use crate::state::{AccountRuntime, AppState, OrgReport, Runtime};
use crate::upstream::slots::{FALLBACK_FIX, FALLBACK_LIMIT};
use crate::web::body::{collect_capped, empty, Collected};
use bytes::Bytes;
use edition::{AnswerKind, OrgFinding};
use http::header::{AUTHORIZATION, USER_AGENT};
use http::{Method, Request};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The version the proxy's own calls use.
pub const VERSION: &str = "v8";
/// `User-Agent` of the proxy's own calls.
pub const USER_AGENT_VALUE: &str = concat!("zoho-auth-proxy/", env!("CARGO_PKG_VERSION"));
/// How often each read is repeated after it answered.
pub const EVERY: Duration = Duration::from_secs(24 * 3600);
/// When a read failed for a passing reason (network, 5xx, 429, a token Zoho rejected).
const RETRY: Duration = Duration::from_secs(300);
/// How often the task looks at what is due (a read waits for the account's first token).
const TICK: Duration = Duration::from_secs(1);
/// Largest answer read (Zoho's `__apis` lists every operation of the version).
const MAX_ANSWER: u64 = 16 << 20;

/// When each read of one account is next due.
#[derive(Debug, Clone, Copy)]
struct Due {
    org: Instant,
    apis: Instant,
}

/// The discovery task.
pub struct Discovery {
    /// Shared state (the snapshot it reads and swaps).
    pub state: AppState,
}

impl Discovery {
    /// Runs until cancelled: each self-client account's reads as soon as its token is usable,
    /// then daily; keeps the snapshot's slots in line with what `auto` gives.
    pub async fn run(self, cancel: CancellationToken) {
        let start = Instant::now();
        let mut due: Vec<Due> = Vec::new();
        let mut warned_none = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let runtime = self.state.runtime.load_full();
            due.resize(
                runtime.accounts.len(),
                Due {
                    org: start,
                    apis: start,
                },
            );
            let auto = runtime.limits.upstream_concurrency.fixed().is_none();
            let self_clients = runtime
                .accounts
                .iter()
                .filter(|a| a.client_type == ClientType::SelfClient);
            if auto && self_clients.clone().next().is_none() && !warned_none {
                warned_none = true;
                warn!("limits.upstream_concurrency: auto uses {FALLBACK_LIMIT}: no self-client account to read the org's edition with; set limits.upstream_concurrency");
            }
            for account in self_clients {
                let Some(when) = due.get_mut(account.index) else {
                    continue;
                };
                if account.token.usable().is_none() {
                    continue;
                }
                let now = Instant::now();
                if auto && now >= when.org {
                    when.org = now + read_org(&runtime, account).await;
                }
                if now >= when.apis {
                    when.apis = now + read_apis(&runtime, account).await;
                }
            }
            install(&self.state);
        }
    }
}

/// Swaps in a snapshot whose slots have the limit `auto` gives, when the one in force differs
/// (after a read, or when a reload raced an install).
fn install(state: &AppState) {
    let stale = |r: &Runtime| {
        r.limits.upstream_concurrency.fixed().is_none() && {
            let want = r.discovered.auto_limit();
            r.slots.source != want.source
                || r.slots.upstream_limit != r.limits.per_replica(want.limit)
        }
    };
    if stale(&state.runtime.load()) {
        state.runtime.rcu(|old| {
            if stale(old) {
                old.rebuilt().into()
            } else {
                old.clone()
            }
        });
        let r = state.runtime.load();
        info!(
            limit = r.slots.upstream_limit,
            source = %r.slots.source,
            "upstream concurrency limit in force"
        );
    }
}

/// Reads the org's edition for `account` and records it; returns when to read again.
async fn read_org(runtime: &Runtime, account: &AccountRuntime) -> Duration {
    let path = format!("/crm/{VERSION}/org");
    let (report, again) = match call(runtime, account, &path).await {
        Err(e) => (
            fallback(account, format!("the org read failed ({e})")),
            RETRY,
        ),
        Ok((status, body)) => match edition::classify(status, &body) {
            AnswerKind::Read => match edition::org_edition(&body) {
                OrgFinding::Edition { name, limit } => {
                    info!(account = %account.name, edition = %name, limit, "the org's edition sizes limits.upstream_concurrency");
                    let report = OrgReport {
                        account: account.name.to_string(),
                        edition: Some(name),
                        limit,
                        at_unix_ms: crate::util::clock::now_unix_ms(),
                        problem: None,
                    };
                    (report, EVERY)
                }
                OrgFinding::Unknown(name) => {
                    let what = name.map_or("no edition".to_string(), |n| {
                        format!("the unknown edition {n:?}")
                    });
                    (fallback(account, format!("the org named {what}")), EVERY)
                }
            },
            AnswerKind::ScopeMissing => (
                fallback(account, "the token lacks ZohoCRM.org.READ".to_string()),
                EVERY,
            ),
            AnswerKind::Failed(e) => (
                fallback(account, format!("the org read failed ({e})")),
                RETRY,
            ),
        },
    };
    runtime.discovered.record(report);
    again
}

/// The fallback's report for `account`, logged as a warning naming the fix.
fn fallback(account: &AccountRuntime, why: String) -> OrgReport {
    warn!(account = %account.name, "limits.upstream_concurrency: auto uses {FALLBACK_LIMIT}: {why}; {FALLBACK_FIX}");
    OrgReport {
        account: account.name.to_string(),
        edition: None,
        limit: FALLBACK_LIMIT,
        at_unix_ms: crate::util::clock::now_unix_ms(),
        problem: Some(format!("{why}; {FALLBACK_FIX}")),
    }
}

/// Reads Zoho's cost table for `account` and puts it in force; returns when to read again.
async fn read_apis(runtime: &Runtime, account: &AccountRuntime) -> Duration {
    let path = format!("/crm/{VERSION}/__apis");
    let credits = &runtime.credits;
    let unavailable = |note: String| {
        warn!(account = %account.name, "credit costs stay built in: {note}");
        credits.zoho_costs_unavailable(&account.name, note);
    };
    match call(runtime, account, &path).await {
        Err(e) => unavailable(format!("the __apis read failed ({e})")),
        Ok((status, body)) => match edition::classify(status, &body) {
            AnswerKind::Read => match ZohoCosts::parse(&body) {
                Ok(table) => {
                    info!(account = %account.name, operations = table.covered(), "credit costs from Zoho's __apis");
                    let now = crate::util::clock::now_unix_ms();
                    credits.install_zoho_costs(&account.name, table, now);
                    return EVERY;
                }
                Err(e) => unavailable(e.to_string()),
            },
            AnswerKind::ScopeMissing => {
                unavailable("the token lacks ZohoCRM.apis.READ".into());
                return EVERY;
            }
            AnswerKind::Failed(e) => unavailable(format!("the __apis read failed ({e})")),
        },
    }
    RETRY
}

/// One own call: `GET path` with the account's token and the proxy's `User-Agent`, in an
/// upstream slot, within `limits.request_timeout`; a 2xx answer's credits go to `(proxy)`.
async fn call(
    runtime: &Runtime,
    account: &AccountRuntime,
    path: &str,
) -> Result<(u16, Bytes), String> {
    if let Some(wait) = runtime.credits.zoho_backoff(&account.name) {
        return Err(format!(
            "Zoho's 429 back-off runs {} s more",
            wait.as_secs()
        ));
    }
    let token = account.token.usable().ok_or("no usable token")?;
    let uri: http::Uri = format!("{}{path}", token.api.origin())
        .parse()
        .map_err(|_| "the API host makes no valid URL".to_string())?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(AUTHORIZATION, token.authorization())
        .body(empty())
        .map_err(|e| e.to_string())?;
    let one = Cost {
        op: CostedOp::Default,
        credits: 1,
        slots: 1,
        heavy: 0,
    };
    let limits = &runtime.limits;
    let _slot = runtime
        .slots
        .take(&one)
        .await
        .map_err(|_| "no upstream slot came free".to_string())?;
    let (response, _in_flight) =
        tokio::time::timeout(limits.request_timeout, account.upstream.send(request))
            .await
            .map_err(|_| "no answer within limits.request_timeout".to_string())?
            .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    if status == 429 {
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| crate::credits::backoff::parse_retry_after(v.as_bytes()));
        runtime.credits.own_throttled(&account.name, retry_after);
    }
    let body =
        match collect_capped(response.into_body(), MAX_ANSWER, limits.body_idle_timeout).await {
            Ok(Collected::Complete(body)) => body,
            Ok(Collected::Exceeded(..)) => return Err("the answer is too large".into()),
            Err(_) => return Err("the answer broke off".into()),
        };
    if (200..300).contains(&status) {
        let price = runtime
            .credits
            .price(&account.name, "GET", path, None, BodyView::None);
        runtime.credits.record_own(&account.name, price.credits);
    }
    Ok((status, body))
}
