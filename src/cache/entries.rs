//! The entries of one account's cache: a map from the canonical target to Zoho's stored answer,
//! with expiry and a least-recently-used order bounded by `cache.max_bytes`.
//!
//! Plain data behind the account's lock: the caller passes the time, so the rules here are
//! table-tested without a clock. Must not: lock, await, or know about HTTP exchanges.

use crate::config::CacheConfig;
use crate::util::FastMap;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Zoho's answer as it is stored and replayed.
#[derive(Debug)]
pub struct Stored {
    /// Zoho's status (200: only complete `200` answers are stored).
    pub status: StatusCode,
    /// Zoho's content headers (`Content-Type` and the like; never hop-by-hop or `Set-Cookie`).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The credits the request that fetched it was priced at (what each hit saves).
    pub credits: u64,
}

impl Stored {
    /// What the entry counts against `cache.max_bytes`: its key, headers and body.
    fn size(&self, key: &str) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        (key.len() + headers + self.body.len()) as u64
    }
}

/// One stored answer.
#[derive(Debug)]
struct Entry {
    stored: Arc<Stored>,
    expires: Instant,
    /// The `Entries::clock` value of its last use (the least recently used goes first).
    last_used: u64,
    size: u64,
}

/// What a look-up found.
#[derive(Debug)]
pub(super) enum Found {
    /// A fresh entry, and how long it stays fresh.
    Fresh(Arc<Stored>, Duration),
    /// Nothing fresh (an expired entry is dropped).
    Nothing,
}

/// One account's entries and settings.
#[derive(Debug)]
pub(super) struct Entries {
    pub settings: CacheConfig,
    map: FastMap<Box<str>, Entry>,
    /// Bytes held (sizes of all entries).
    pub bytes: u64,
    /// Counts uses, for the least-recently-used order.
    clock: u64,
    /// Raised by every purge: a fetch that began before it stores nothing.
    pub generation: u64,
}

/// The largest entry stored: an eighth of `max_bytes` (2 MiB by default), so that one big
/// answer never pushes out all the others.
pub fn entry_cap(max_bytes: u64) -> u64 {
    max_bytes / 8
}

impl Entries {
    pub fn new(settings: CacheConfig) -> Entries {
        Entries {
            settings,
            map: FastMap::default(),
            bytes: 0,
            clock: 0,
            generation: 0,
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The fresh entry for `key` at `now`, marked used.
    pub fn get(&mut self, key: &str, now: Instant) -> Found {
        self.clock += 1;
        let clock = self.clock;
        let Some(entry) = self.map.get_mut(key) else {
            return Found::Nothing;
        };
        if entry.expires > now {
            entry.last_used = clock;
            return Found::Fresh(entry.stored.clone(), entry.expires - now);
        }
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.size;
        }
        Found::Nothing
    }

    /// Stores `stored` under `key` at `now` if the fetch began at the current generation, the
    /// cache is on and the entry fits its cap; then evicts the least recently used entries
    /// until the total fits `max_bytes`. Whether it was stored.
    pub fn put(&mut self, key: &str, stored: Arc<Stored>, generation: u64, now: Instant) -> bool {
        let size = stored.size(key);
        let CacheConfig {
            metadata_ttl,
            max_bytes,
        } = self.settings;
        if generation != self.generation || metadata_ttl.is_zero() || size > entry_cap(max_bytes) {
            return false;
        }
        self.clock += 1;
        let entry = Entry {
            stored,
            expires: now + metadata_ttl,
            last_used: self.clock,
            size,
        };
        if let Some(old) = self.map.insert(key.into(), entry) {
            self.bytes -= old.size;
        }
        self.bytes += size;
        self.shrink_to(max_bytes);
        true
    }

    /// Drops the least recently used entries until at most `max` bytes are held.
    fn shrink_to(&mut self, max: u64) {
        while self.bytes > max {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            if let Some(old) = self.map.remove(&oldest) {
                self.bytes -= old.size;
            }
        }
    }

    /// New settings (a reload): entries are kept, within the new size; turning the cache off
    /// empties it.
    pub fn configure(&mut self, settings: CacheConfig) {
        self.settings = settings;
        if settings.metadata_ttl.is_zero() {
            self.purge();
        } else {
            self.shrink_to(settings.max_bytes);
        }
    }

    /// Drops every entry; fetches under way store nothing. How many were dropped.
    pub fn purge(&mut self) -> usize {
        let dropped = self.map.len();
        self.map.clear();
        self.bytes = 0;
        self.generation += 1;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(len: usize) -> Arc<Stored> {
        Arc::new(Stored {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; len]),
            credits: 1,
        })
    }

    fn settings(ttl_s: u64, max_bytes: u64) -> CacheConfig {
        CacheConfig {
            metadata_ttl: Duration::from_secs(ttl_s),
            max_bytes,
        }
    }

    fn fresh(e: &mut Entries, key: &str, now: Instant) -> bool {
        matches!(e.get(key, now), Found::Fresh(..))
    }

    #[test]
    fn an_entry_is_fresh_until_its_ttl_then_gone() {
        let t0 = Instant::now();
        let mut e = Entries::new(settings(60, 8000));
        assert!(e.put("a", stored(10), 0, t0), "stored");
        assert!(
            fresh(&mut e, "a", t0 + Duration::from_secs(59)),
            "fresh at 59 s"
        );
        match e.get("a", t0 + Duration::from_secs(30)) {
            Found::Fresh(_, left) => assert_eq!(left, Duration::from_secs(30), "time left"),
            Found::Nothing => panic!("fresh at 30 s"),
        }
        assert!(
            !fresh(&mut e, "a", t0 + Duration::from_secs(60)),
            "expired at 60 s"
        );
        assert_eq!((e.len(), e.bytes), (0, 0), "the expired entry is dropped");
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_and_oversize_ones_never_enter() {
        let t0 = Instant::now();
        // 8000 bytes: entries up to 1000 bytes.
        let mut e = Entries::new(settings(60, 8000));
        for key in ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"] {
            assert!(e.put(key, stored(990), 0, t0), "{key} stored");
        }
        assert!(fresh(&mut e, "k0", t0), "k0 used: now the most recent");
        assert!(e.put("k8", stored(990), 0, t0), "k8 stored");
        assert!(e.bytes <= 8000, "within max_bytes: {}", e.bytes);
        assert!(fresh(&mut e, "k0", t0), "k0 kept (recently used)");
        assert!(!fresh(&mut e, "k1", t0), "k1 evicted (least recently used)");
        assert!(
            !e.put("big", stored(1001), 0, t0),
            "over the entry cap: not stored"
        );
        assert!(!fresh(&mut e, "big", t0), "not held");
    }

    #[test]
    fn a_purge_drops_everything_and_fetches_begun_before_it_store_nothing() {
        let t0 = Instant::now();
        let mut e = Entries::new(settings(60, 8000));
        assert!(e.put("a", stored(10), 0, t0), "stored");
        assert_eq!(e.purge(), 1, "one entry purged");
        assert!(!fresh(&mut e, "a", t0), "gone");
        assert!(
            !e.put("a", stored(10), 0, t0),
            "fetch from before the purge"
        );
        assert!(e.put("a", stored(10), 1, t0), "fetch from after the purge");
    }

    #[test]
    fn settings_change_in_place_and_zero_ttl_turns_the_cache_off() {
        let t0 = Instant::now();
        let mut e = Entries::new(settings(60, 8000));
        assert!(e.put("a", stored(500), 0, t0), "a");
        assert!(e.put("b", stored(500), 0, t0), "b");
        e.configure(settings(60, 600));
        assert_eq!(e.len(), 1, "shrunk to the new max_bytes");
        e.configure(settings(0, 600));
        assert_eq!(e.len(), 0, "off: emptied");
        assert!(
            !e.put("a", stored(10), e.generation, t0),
            "off: nothing stored"
        );
    }
}
