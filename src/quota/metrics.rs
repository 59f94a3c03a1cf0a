//! The quota metrics, registered by the quota service itself in the registry the wiring hands it
//! (prefix `zoho_proxy`).
//!
//! Organization ids come from requests, so their label is capped: the first
//! [`MAX_LABELLED_ORGS`] organizations get their own, every later one shares `other`.

use crate::metrics::AccountLabel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Arc;

/// Organizations with a label of their own; later ones are counted as `other`.
pub const MAX_LABELLED_ORGS: usize = 1_000;
/// The shared label of the organizations beyond the cap.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Requests {
    account: AccountLabel,
    product: &'static str,
    organization: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refused {
    account: AccountLabel,
    product: &'static str,
    organization: AccountLabel,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Window {
    product: &'static str,
    organization: AccountLabel,
}

/// The quota families (cheap to clone).
#[derive(Clone, Debug, Default)]
pub(super) struct QuotaMetrics {
    requests: Family<Requests, Counter>,
    refused: Family<Refused, Counter>,
    window: Family<Window, Gauge>,
}

impl QuotaMetrics {
    pub(super) fn register(registry: &mut Registry) -> QuotaMetrics {
        let m = QuotaMetrics::default();
        registry.register(
            "org_requests",
            "Books and Inventory requests admitted by the per-organization quota, by account, product and organization (`other` past the first 1,000 organizations)",
            m.requests.clone(),
        );
        registry.register(
            "org_refused",
            "Books and Inventory requests refused by the per-organization quota, by reason (rate_limited, daily_calls, zoho_throttled)",
            m.refused.clone(),
        );
        registry.register(
            "org_window_used",
            "Requests of the organization in its 60-second window at its last admission, waiting ones included (fleet-wide in fleet mode)",
            m.window.clone(),
        );
        m
    }

    /// The admitted-requests counter of one (account, product, organization label).
    pub(super) fn requests(
        &self,
        account: &Arc<str>,
        product: &'static str,
        org: &Arc<str>,
    ) -> Counter {
        self.requests
            .get_or_create(&Requests {
                account: AccountLabel(account.clone()),
                product,
                organization: AccountLabel(org.clone()),
            })
            .clone()
    }

    pub(super) fn refused(
        &self,
        account: &Arc<str>,
        product: &'static str,
        org: &Arc<str>,
        reason: &'static str,
    ) {
        self.refused
            .get_or_create(&Refused {
                account: AccountLabel(account.clone()),
                product,
                organization: AccountLabel(org.clone()),
                reason,
            })
            .inc();
    }

    /// The window gauge of an organization with its own label (`None` for `other`: a gauge
    /// shared by many organizations would mean nothing).
    pub(super) fn window(&self, product: &'static str, org: &Arc<str>) -> Option<Gauge> {
        (&**org != OTHER).then(|| {
            self.window
                .get_or_create(&Window {
                    product,
                    organization: AccountLabel(org.clone()),
                })
                .clone()
        })
    }
}

/// Hands out organization labels, at most [`MAX_LABELLED_ORGS`] distinct ones.
#[derive(Debug, Default)]
pub(super) struct OrgLabels {
    given: HashSet<Arc<str>>,
    other: Option<Arc<str>>,
}

impl OrgLabels {
    /// The label of `organization`: its id while there is room, else `other`.
    pub(super) fn label(&mut self, organization: &str) -> Arc<str> {
        if let Some(l) = self.given.get(organization) {
            return l.clone();
        }
        if self.given.len() < MAX_LABELLED_ORGS {
            let l: Arc<str> = organization.into();
            self.given.insert(l.clone());
            return l;
        }
        self.other.get_or_insert_with(|| OTHER.into()).clone()
    }
}
