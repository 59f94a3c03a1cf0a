//! The cache metrics, registered by the cache itself in the registry the wiring hands it:
//! hits, misses, bytes held and credits saved, per account.
//!
//! Labels are account names from the config, never from a request.

use crate::metrics::AccountLabel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountOnly {
    account: AccountLabel,
}

/// The metadata cache's metric families (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    hits: Family<AccountOnly, Counter>,
    misses: Family<AccountOnly, Counter>,
    bytes: Family<AccountOnly, Gauge>,
    saved: Family<AccountOnly, Counter>,
}

/// One account's series, looked up once when its cache is made.
#[derive(Clone, Debug)]
pub(super) struct Meters {
    pub hits: Counter,
    pub misses: Counter,
    pub bytes: Gauge,
    pub saved: Counter,
}

impl CacheMetrics {
    /// Registers the cache metrics in `registry` (prefix `zoho_proxy`).
    pub fn register(registry: &mut Registry) -> CacheMetrics {
        let m = CacheMetrics::default();
        registry.register(
            "cache_hits",
            "Metadata requests answered from the cache, by account",
            m.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Cacheable metadata requests sent to Zoho (not held, expired, or Cache-Control: no-cache), by account",
            m.misses.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes the metadata cache holds, by account",
            m.bytes.clone(),
        );
        registry.register(
            "credits_saved",
            "Estimated Zoho API credits not spent because the cache answered, by account",
            m.saved.clone(),
        );
        m
    }

    /// The series of `account`.
    pub(super) fn meters(&self, account: &str) -> Meters {
        let key = AccountOnly {
            account: AccountLabel(account.into()),
        };
        Meters {
            hits: self.hits.get_or_create(&key).clone(),
            misses: self.misses.get_or_create(&key).clone(),
            bytes: self.bytes.get_or_create(&key).clone(),
            saved: self.saved.get_or_create(&key).clone(),
        }
    }
}
