//! The quota's state behind its one lock: per product and organization the window, the daily
//! count, Zoho's back-off, the fleet's last counts and the metric handles; made on first sight,
//! idle organizations dropped past [`MAX_TRACKED_ORGS`].

use super::metrics::{OrgLabels, QuotaMetrics};
use super::window::{DailyCount, Window, WINDOW_MS};
use super::{MAX_TRACKED_ORGS, OTHER};
use crate::util::backoff::Backoff;
use crate::util::FastMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One product's organization.
#[derive(Debug)]
pub(super) struct OrgState {
    pub(super) window: Window,
    pub(super) daily: DailyCount,
    pub(super) backoff: Backoff,
    /// Fleet mode: the fleet's counts at the last admission `(at ms, window used, daily used)`.
    pub(super) fleet: Option<(u64, u64, u64)>,
    pub(super) limits: (Option<u32>, Option<u64>),
    /// The organization's metric label (its id, or `other` past the cap).
    pub(super) label: Arc<str>,
    pub(super) gauge: Option<Gauge>,
    /// Admitted-request counters by account (looked up once per account).
    pub(super) counters: Vec<(Arc<str>, Counter)>,
    pub(super) refused: [u64; 3],
}

impl Default for OrgState {
    fn default() -> OrgState {
        OrgState::new(OTHER.into(), None)
    }
}

impl OrgState {
    pub(super) fn new(label: Arc<str>, gauge: Option<Gauge>) -> OrgState {
        OrgState {
            window: Window::default(),
            daily: DailyCount::default(),
            backoff: Backoff::default(),
            fleet: None,
            limits: (None, None),
            label,
            gauge,
            counters: Vec::new(),
            refused: [0; 3],
        }
    }

    pub(super) fn idle(&mut self, now: u64) -> bool {
        self.window.used(now) == 0
            && self.daily.used(now) == 0
            && self.backoff.remaining(now).is_none()
    }

    pub(super) fn window_used(&mut self, now: u64) -> u64 {
        match self.fleet {
            Some((at, used, _)) if at + WINDOW_MS > now => used.max(self.window.used(now)),
            _ => self.window.used(now),
        }
    }

    pub(super) fn daily_used(&mut self, now: u64) -> u64 {
        let local = self.daily.used(now);
        match self.fleet {
            Some((at, _, daily)) if at + WINDOW_MS > now => daily.max(local),
            _ => local,
        }
    }
}

/// Everything behind the one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Per product, per organization id. Std's SipHash: organization ids come from requests.
    pub(super) products: Vec<(&'static str, HashMap<Box<str>, OrgState>)>,
    pub(super) labels: OrgLabels,
    /// Account names as labels, made once.
    pub(super) accounts: FastMap<String, Arc<str>>,
    /// Never used: what [`org`] would hand out if a map lost an entry it just inserted.
    pub(super) spare: OrgState,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The organization state of `product`/`organization`, made on first sight.
pub(super) fn org<'a>(
    state: &'a mut State,
    metrics: &QuotaMetrics,
    product: &'static str,
    organization: &str,
    now: u64,
) -> (&'a mut OrgState, &'a mut FastMap<String, Arc<str>>) {
    let State {
        products,
        labels,
        accounts,
        spare,
    } = state;
    let i = match products.iter().position(|(p, _)| *p == product) {
        Some(i) => i,
        None => {
            products.push((product, HashMap::new()));
            products.len() - 1
        }
    };
    let orgs = &mut products[i].1;
    if !orgs.contains_key(organization) {
        if orgs.len() >= MAX_TRACKED_ORGS {
            orgs.retain(|_, o| !o.idle(now));
        }
        let label = labels.label(organization);
        let gauge = metrics.window(product, &label);
        orgs.insert(organization.into(), OrgState::new(label, gauge));
    }
    // Present: found or inserted above. (`spare` only keeps this free of a panic path.)
    (orgs.get_mut(organization).unwrap_or(spare), accounts)
}

/// `account` as a label value, made once per account name.
pub(super) fn account_label(accounts: &mut FastMap<String, Arc<str>>, account: &str) -> Arc<str> {
    if let Some(l) = accounts.get(account) {
        return l.clone();
    }
    let l: Arc<str> = account.into();
    accounts.insert(account.to_string(), l.clone());
    l
}
