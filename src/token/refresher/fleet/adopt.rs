//! Fleet mode, adopting: whether a token another replica shared should replace this replica's,
//! installing it (through the refresher's one install) and never taking back one Zoho rejected.
//!
//! Must not: adopt a token Zoho rejected, one already due, or one older than a good token of ours.

use super::Refresher;
use crate::token::redis_store::{Namespace, RedisStore, SharedToken};
use crate::token::refresh_margin;
use crate::token::refresher::mint::{NewToken, Origin};
use crate::token::store::fingerprint;
use crate::util::clock::now_unix_ms;
use secrecy::ExposeSecret;
use std::time::{Duration, Instant};
use tracing::warn;

/// Rejected tokens remembered (never adopted again).
const REJECTED_KEPT: usize = 8;

impl Refresher {
    /// Remembers the current token as rejected if Zoho rejected it, so it is never adopted again.
    pub(super) fn note_rejection(&mut self) {
        let Some(current) = self.handle.current() else {
            return;
        };
        if current.generation > self.handle.invalidated() || current.generation != self.generation {
            return;
        }
        let (Some(f), Some(value)) = (self.fleet.as_mut(), self.state.access_token.as_deref())
        else {
            return;
        };
        let fp = fingerprint(value);
        if !f.rejected.contains(&fp) {
            if f.rejected.len() == REJECTED_KEPT {
                f.rejected.pop_front();
            }
            f.rejected.push_back(fp);
        }
    }

    /// Whether the shared token should replace ours: not ours, never rejected, not itself due,
    /// and (if ours is still good) later-expiring.
    pub(super) fn adoptable(&self, t: &SharedToken) -> bool {
        let fp = fingerprint(t.access_token.expose_secret());
        if self.state.access_token.as_deref().map(fingerprint).as_ref() == Some(&fp) {
            return false;
        }
        if self
            .fleet
            .as_ref()
            .is_some_and(|f| f.rejected.contains(&fp))
        {
            return false;
        }
        let remaining = Duration::from_millis(t.expires_at_unix_ms.saturating_sub(now_unix_ms()));
        if remaining <= refresh_margin(t.lifetime) {
            return false;
        }
        let ours_good = self.handle.current().is_some_and(|c| {
            c.generation > self.handle.invalidated() && c.usable_at(Instant::now())
        });
        !ours_good || t.expires_at_unix_ms > self.state.expires_at_unix_ms.unwrap_or(0)
    }

    /// Adopts `shared` if it should replace ours, loading the fleet's mint log first (once the
    /// token is installed the replica reports ready); `true` if it was adopted.
    pub(super) async fn adopt_if_newer(
        &mut self,
        store: &RedisStore,
        ns: &Namespace,
        shared: Option<SharedToken>,
    ) -> bool {
        let Some(t) = shared.filter(|t| self.adoptable(t)) else {
            return false;
        };
        self.refresh_budget(store, ns).await;
        self.adopt(t)
    }

    /// Installs the fleet's token through [`Refresher::install`]; `false` if it cannot be used.
    fn adopt(&mut self, t: SharedToken) -> bool {
        let value = t.access_token.expose_secret();
        let new = NewToken {
            value,
            lifetime: t.lifetime,
            remaining: Duration::from_millis(t.expires_at_unix_ms.saturating_sub(now_unix_ms())),
            expires_at_unix_ms: t.expires_at_unix_ms,
            api_domain: t.api_domain.as_deref(),
            origin: Origin::Fleet {
                minted_by: &t.minted_by,
            },
        };
        if self.install(new) {
            return true;
        }
        warn!(account = %self.account.name, "the token in Redis cannot be sent as a header; ignoring it");
        if let Some(f) = self.fleet.as_mut() {
            f.rejected.push_back(fingerprint(value));
        }
        false
    }
}
