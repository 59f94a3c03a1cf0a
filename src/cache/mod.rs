//! The metadata cache: Zoho's answers to `GET` of the settings (modules, fields, layouts, related
//! lists, custom views, profiles, roles), the org and the current user, held in memory per account
//! (and per replica) for `cache.metadata_ttl`, within `cache.max_bytes`, least recently used out
//! first. SDKs fetch these at every start; each fetch costs a credit from the org's shared pool.
//!
//! The proxy consults it after the requester checks and the policy allowed a request, and before
//! any token, credit or concurrency slot: a hit costs none of them. Writes to the settings, the
//! org or the users purge the account's entries, as do the admin's `POST /cache/purge` and the
//! console button. What is cached is decided in [`target`], the entries live in `entries`, a
//! miss's body is copied (bounded) while it streams in `tee`.
//!
//! Must not: import the token, credits, access, upstream, state or proxy layers, hold a lock
//! across an await, buffer a body beyond the entry cap, or look at a request that is not a
//! metadata read or write (the check in [`classify`] allocates nothing).

mod entries;
mod metrics;
mod target;
mod tee;

pub use entries::{entry_cap, Stored};
pub use metrics::CacheMetrics;
pub use target::{classify, Class};

use crate::config::{CacheConfig, Config};
use crate::web::body::{full, ProxyBody};
use entries::{Entries, Found};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The `Cache-Status` response header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Zoho's headers kept with a stored answer: what describes the content. Never hop-by-hop
/// headers, `Set-Cookie`, or Zoho's credit counters (a hit spends none).
const CONTENT_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::ETAG,
    header::LAST_MODIFIED,
];

/// Every account's cache, kept across reloads (a reload changes the settings in place).
pub struct Caches {
    metrics: CacheMetrics,
    accounts: Mutex<Vec<Arc<AccountCache>>>,
}

/// One account's cache.
pub struct AccountCache {
    name: Arc<str>,
    entries: Mutex<Entries>,
    meters: metrics::Meters,
}

/// What the cache says about a metadata read.
pub enum Lookup {
    /// The cache is off for the account (`metadata_ttl: 0s`): forward as usual.
    Off,
    /// Answer from the cache.
    Hit(Hit),
    /// Forward, and store the answer if it qualifies ([`Fill::attach`]).
    Miss(Fill),
}

/// A stored answer, fresh for `ttl_left`.
pub struct Hit {
    stored: Arc<Stored>,
    ttl_left: Duration,
}

/// A miss on its way to Zoho: where its answer will be stored.
pub struct Fill {
    cache: Arc<AccountCache>,
    key: Box<str>,
    /// The account's purge generation when the fetch began.
    generation: u64,
    /// `Cache-Control: no-cache`: the entry was not used, only refreshed.
    refresh: bool,
    /// The largest body stored.
    cap: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether the request asks for a fresh answer (`Cache-Control: no-cache`, or the HTTP/1.0
/// `Pragma: no-cache`).
pub fn refresh_requested(headers: &HeaderMap) -> bool {
    let says_no_cache = |name: HeaderName| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
            })
        })
    };
    says_no_cache(header::CACHE_CONTROL) || says_no_cache(header::PRAGMA)
}

impl Caches {
    /// No account yet: [`Caches::apply`] makes them.
    pub fn new(metrics: CacheMetrics) -> Caches {
        Caches {
            metrics,
            accounts: Mutex::default(),
        }
    }

    /// Applies each account's `cache:` settings, making the caches of accounts not seen before.
    /// Entries are kept (within a smaller `max_bytes`; none when the cache is turned off).
    pub fn apply(&self, config: &Config) {
        for account in &config.accounts {
            self.account(&account.name).configure(account.cache);
        }
    }

    /// The cache of `name` (made, with the default settings, if new).
    pub fn account(&self, name: &str) -> Arc<AccountCache> {
        let mut accounts = lock(&self.accounts);
        if let Some(found) = accounts.iter().find(|a| &*a.name == name) {
            return found.clone();
        }
        let made = Arc::new(AccountCache {
            name: name.into(),
            entries: Mutex::new(Entries::new(CacheConfig::default())),
            meters: self.metrics.meters(name),
        });
        accounts.push(made.clone());
        made
    }

    /// Purges the cache of `account`, or of every account: `(name, entries dropped)` each;
    /// `None` when no account has that name.
    pub fn purge(&self, account: Option<&str>) -> Option<Vec<(Arc<str>, usize)>> {
        let accounts = lock(&self.accounts).clone();
        let purged: Vec<_> = accounts
            .iter()
            .filter(|a| account.is_none_or(|n| *a.name == *n))
            .map(|a| (a.name.clone(), a.purge()))
            .collect();
        (account.is_none() || !purged.is_empty()).then_some(purged)
    }

    /// Every account's figures, for `/status` and the console.
    pub fn status_json(&self) -> serde_json::Value {
        let accounts = lock(&self.accounts).clone();
        serde_json::Value::Array(accounts.iter().map(|a| a.status_json()).collect())
    }
}

impl AccountCache {
    fn configure(&self, settings: CacheConfig) {
        let mut entries = lock(&self.entries);
        entries.configure(settings);
        self.meters.bytes.set(entries.bytes as i64);
    }

    /// Looks `key` (the canonical target with its query) up; `refresh` (the client sent
    /// `Cache-Control: no-cache`) skips the entry and refreshes it.
    pub fn lookup(self: &Arc<Self>, key: &str, refresh: bool) -> Lookup {
        let mut entries = lock(&self.entries);
        if entries.settings.metadata_ttl.is_zero() {
            return Lookup::Off;
        }
        if !refresh {
            if let Found::Fresh(stored, ttl_left) = entries.get(key, Instant::now()) {
                drop(entries);
                self.meters.hits.inc();
                self.meters.saved.inc_by(stored.credits);
                return Lookup::Hit(Hit { stored, ttl_left });
            }
        }
        let fill = Fill {
            cache: self.clone(),
            key: key.into(),
            generation: entries.generation,
            refresh,
            cap: entry_cap(entries.settings.max_bytes),
        };
        drop(entries);
        self.meters.misses.inc();
        Lookup::Miss(fill)
    }

    /// Drops every entry (a write to the metadata, or an operator's purge). How many.
    pub fn purge(&self) -> usize {
        let dropped = lock(&self.entries).purge();
        self.meters.bytes.set(0);
        dropped
    }

    /// Hits, misses, credits saved, bytes and entries held, and the settings in force.
    pub fn status_json(&self) -> serde_json::Value {
        let entries = lock(&self.entries);
        serde_json::json!({
            "account": &*self.name,
            "hits": self.meters.hits.get(),
            "misses": self.meters.misses.get(),
            "credits_saved": self.meters.saved.get(),
            "bytes": entries.bytes,
            "entries": entries.len(),
            "metadata_ttl_s": entries.settings.metadata_ttl.as_secs_f64(),
            "max_bytes": entries.settings.max_bytes,
        })
    }
}

impl Hit {
    /// The credits the stored answer cost when it was fetched: what this hit saves.
    pub fn credits_saved(&self) -> u64 {
        self.stored.credits
    }

    /// Zoho's stored answer: its status, content headers and body, with
    /// `Cache-Status: zoho-auth-proxy; hit; ttl=<seconds left>`.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(full(self.stored.body.clone()));
        *response.status_mut() = self.stored.status;
        *response.headers_mut() = self.stored.headers.clone();
        let ttl = self.ttl_left.as_secs_f64().ceil() as u64;
        if let Ok(value) = HeaderValue::from_str(&format!("zoho-auth-proxy; hit; ttl={ttl}")) {
            response.headers_mut().insert(CACHE_STATUS, value);
        }
        response
    }
}

/// Zoho's answer to a request: through [`Fill::attach`] for a miss, unchanged otherwise.
pub fn attach(
    fill: Option<Fill>,
    response: Response<ProxyBody>,
    method: &Method,
    credits: u64,
) -> Response<ProxyBody> {
    match fill {
        Some(fill) => fill.attach(response, method, credits),
        None => response,
    }
}

impl Fill {
    /// Zoho's answer to the miss, on its way to the client: marked with `Cache-Status`, and,
    /// when it qualifies (a `GET`'s `200`, not content-encoded, not announced larger than the
    /// entry cap), copied while it streams and stored once complete. `credits` is what the
    /// request was priced at.
    pub fn attach(
        self,
        response: Response<ProxyBody>,
        method: &Method,
        credits: u64,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = response.into_parts();
        let identity = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let storable = *method == Method::GET
            && parts.status == StatusCode::OK
            && identity
            && announced.is_none_or(|len| len <= self.cap);
        let status = match (self.refresh, storable) {
            (false, true) => "zoho-auth-proxy; fwd=miss; stored",
            (false, false) => "zoho-auth-proxy; fwd=miss",
            (true, true) => "zoho-auth-proxy; fwd=request; stored",
            (true, false) => "zoho-auth-proxy; fwd=request",
        };
        parts
            .headers
            .insert(CACHE_STATUS, HeaderValue::from_static(status));
        if !storable {
            return Response::from_parts(parts, body);
        }
        let headers: HeaderMap = CONTENT_HEADERS
            .iter()
            .flat_map(|name| {
                parts
                    .headers
                    .get_all(name)
                    .iter()
                    .map(move |v| (name.clone(), v.clone()))
            })
            .collect();
        let tee = tee::Tee {
            inner: body,
            copy: Some(bytes::BytesMut::new()),
            cap: self.cap,
            pending: Some((self, headers, credits)),
        };
        Response::from_parts(parts, tee.boxed())
    }

    /// Stores a complete answer (unless a purge came in between, or it is over the cap).
    fn store(self, headers: HeaderMap, body: bytes::Bytes, credits: u64) {
        let stored = Arc::new(Stored {
            status: StatusCode::OK,
            headers,
            body,
            credits,
        });
        let mut entries = lock(&self.cache.entries);
        entries.put(&self.key, stored, self.generation, Instant::now());
        self.cache.meters.bytes.set(entries.bytes as i64);
    }
}
