//! What the traffic since start needed: per account, every scope a decided request required
//! (with the decisions it was seen under), the last [`RECENT_DECISIONS`] denied, reported or
//! refused requests, and how many requests the requester checks refused per code. The operator
//! console and `/status` read it; the proxy records into it.
//!
//! Lives outside `policy/` so the policy stays pure: this only stores what the policy decided.
//! Keeps no query string, body or header value: a decision record holds the canonical path
//! (escaped), the method and scope names only. Recording an already seen scope set takes a read
//! lock and allocates nothing, so the hot path stays cheap.

use crate::policy::{Required, Scope};
use crate::util::FastMap;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, RwLock};

/// How many denied, reported or refused requests the console lists.
pub const RECENT_DECISIONS: usize = 50;
/// Longest path kept in a decision record (characters).
const MAX_PATH: usize = 200;

/// The outcome a scope was seen under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Forwarded: every scope allowed.
    Allowed,
    /// Refused (enforce mode).
    Denied,
    /// Would be refused; forwarded because `policy.mode: report`.
    Reported,
    /// Refused by the requester checks (Host, browser markers, SSRF header, client key, body
    /// type) before any policy decision: it has no account and no scopes.
    Refused,
}

impl Outcome {
    fn bit(self) -> u8 {
        match self {
            Outcome::Allowed => 1,
            Outcome::Denied => 2,
            Outcome::Reported => 4,
            Outcome::Refused => 8,
        }
    }

    /// `allowed`, `denied`, `reported`, `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Reported => "reported",
            Outcome::Refused => "refused",
        }
    }
}

const OUTCOMES: [Outcome; 3] = [Outcome::Allowed, Outcome::Denied, Outcome::Reported];

/// One denied, reported or refused request, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    /// When (Unix milliseconds).
    pub at_unix_ms: u64,
    /// Account name.
    pub account: String,
    /// The client identity, when the requester was identified.
    pub client: Option<String>,
    /// Denied or reported.
    pub outcome: Outcome,
    /// Request method.
    pub method: String,
    /// Canonical path, without the query, escaped for logs and bounded.
    pub path: String,
    /// The scopes no allow entry covers, or why the request maps to no scope.
    pub missing: Vec<String>,
    /// For a refused request: the error code sent (`PROXY_HOST_NOT_ALLOWED`, …).
    pub code: Option<&'static str>,
    /// For a refused request: the rule that refused it (`host`, `browser`, `request_header`,
    /// `client`, `content_type`).
    pub rule: Option<&'static str>,
}

/// How many requests the requester checks refused with one code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusalCount {
    /// The error code sent.
    pub code: &'static str,
    /// The rule behind it.
    pub rule: &'static str,
    /// Refusals since start.
    pub count: u64,
}

/// Per-account observed scopes and the recent decisions.
#[derive(Default)]
pub struct Observations {
    scopes: RwLock<FastMap<String, BTreeMap<Scope, u8>>>,
    recent: Mutex<VecDeque<DecisionRecord>>,
    refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// A scope the traffic needed and the outcomes it was seen under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedScope {
    /// Scope name.
    pub scope: String,
    /// `allowed`, `denied`, `reported` (those seen).
    pub outcomes: Vec<Outcome>,
}

/// Who asked for what, as a decision record shows it (escaped and cut when recorded).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The account the request was for.
    pub account: &'a str,
    /// The identified client, if any.
    pub client: Option<&'a str>,
    /// The request's method.
    pub method: &'a str,
    /// The request's path.
    pub path: &'a str,
}

impl Observations {
    /// Records the scopes one decided request required.
    pub fn record_scopes(&self, account: &str, required: &Required, outcome: Outcome) {
        if required.is_empty() {
            return;
        }
        let bit = outcome.bit();
        let known = self.scopes.read().is_ok_and(|map| {
            map.get(account).is_some_and(|seen| {
                required
                    .iter()
                    .all(|s| seen.get(s).is_some_and(|b| b & bit != 0))
            })
        });
        if known {
            return;
        }
        if let Ok(mut map) = self.scopes.write() {
            let seen = map.entry(account.to_string()).or_default();
            for scope in required.iter() {
                *seen.entry(*scope).or_default() |= bit;
            }
        }
    }

    /// Records a denied or reported request (and its scopes).
    pub fn record_decision(
        &self,
        seen: &Seen<'_>,
        outcome: Outcome,
        required: &Required,
        missing: &Required,
    ) {
        let Seen {
            account,
            client,
            method,
            path,
        } = *seen;
        self.record_scopes(account, required, outcome);
        let missing = match missing.unclassified_reason() {
            Some(crate::policy::Unclassified::NotCrm) => {
                vec!["(outside the Zoho APIs this proxy serves)".into()]
            }
            Some(crate::policy::Unclassified::UnknownOperation) => {
                vec!["(unknown operation)".into()]
            }
            None => missing.to_strings(),
        };
        let record = DecisionRecord {
            at_unix_ms: crate::util::clock::now_unix_ms(),
            account: account.to_string(),
            client: client.map(crate::util::log_safe),
            outcome,
            method: crate::util::escape(method, 32),
            path: crate::util::escape(path, MAX_PATH),
            missing,
            code: None,
            rule: None,
        };
        self.push_recent(record);
    }

    /// Records a request the requester checks refused, with its code and rule, and counts it per
    /// code (no client: a refused request has no established identity).
    pub fn record_refusal(&self, code: &'static str, rule: &'static str, method: &str, path: &str) {
        if let Ok(mut counts) = self.refusals.lock() {
            *counts.entry((code, rule)).or_default() += 1;
        }
        self.push_recent(DecisionRecord {
            at_unix_ms: crate::util::clock::now_unix_ms(),
            account: String::new(),
            client: None,
            outcome: Outcome::Refused,
            method: crate::util::escape(method, 32),
            path: crate::util::escape(path, MAX_PATH),
            missing: Vec::new(),
            code: Some(code),
            rule: Some(rule),
        });
    }

    fn push_recent(&self, record: DecisionRecord) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= RECENT_DECISIONS {
                recent.pop_front();
            }
            recent.push_back(record);
        }
    }

    /// Requester refusals since start per code and rule, most frequent first.
    pub fn refusal_counts(&self) -> Vec<RefusalCount> {
        let mut counts: Vec<RefusalCount> = self
            .refusals
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(&(code, rule), &count)| RefusalCount { code, rule, count })
                    .collect()
            })
            .unwrap_or_default();
        counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(b.code)));
        counts
    }

    /// The recent denied, reported or refused requests, newest first.
    pub fn recent(&self) -> Vec<DecisionRecord> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The scopes `account`'s traffic needed, in canonical order.
    pub fn scopes(&self, account: &str) -> Vec<ObservedScope> {
        self.scopes
            .read()
            .ok()
            .and_then(|map| {
                map.get(account).map(|seen| {
                    seen.iter()
                        .map(|(scope, bits)| ObservedScope {
                            scope: scope.to_string(),
                            outcomes: OUTCOMES
                                .into_iter()
                                .filter(|o| bits & o.bit() != 0)
                                .collect(),
                        })
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// The smallest allow list covering every scope `account`'s traffic needed: each observed
    /// scope, minus those another observed scope already covers. A group scope (one that covers
    /// a whole family) appears only when a request itself needed it.
    pub fn suggested_allow(&self, account: &str) -> Vec<String> {
        let Ok(map) = self.scopes.read() else {
            return Vec::new();
        };
        let Some(seen) = map.get(account) else {
            return Vec::new();
        };
        minimal_cover(seen.keys().copied())
    }
}

/// The scopes of `scopes` that no other one of them covers, in canonical order.
pub fn minimal_cover(scopes: impl IntoIterator<Item = Scope>) -> Vec<String> {
    let all: Vec<Scope> = scopes.into_iter().collect();
    all.iter()
        .filter(|s| !all.iter().any(|o| o != *s && o.covers(s)))
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required(names: &[&str]) -> Required {
        let mut r = Required::new();
        for n in names {
            r.push(Scope::parse(n).expect("test scope parses"));
        }
        r
    }

    #[test]
    fn observed_scopes_keep_every_outcome_and_the_cover_drops_what_is_covered() {
        let o = Observations::default();
        o.record_scopes(
            "a",
            &required(&["ZohoCRM.modules.leads.READ"]),
            Outcome::Allowed,
        );
        o.record_scopes(
            "a",
            &required(&["ZohoCRM.modules.leads.READ"]),
            Outcome::Allowed,
        );
        o.record_scopes(
            "a",
            &required(&["ZohoCRM.modules.leads.ALL", "ZohoCRM.settings.fields.READ"]),
            Outcome::Reported,
        );
        o.record_scopes("b", &required(&["ZohoCRM.org.READ"]), Outcome::Denied);
        let scopes = o.scopes("a");
        let names: Vec<&str> = scopes.iter().map(|s| s.scope.as_str()).collect();
        assert_eq!(
            names,
            [
                "ZohoCRM.modules.leads.ALL",
                "ZohoCRM.modules.leads.READ",
                "ZohoCRM.settings.fields.READ"
            ],
            "every scope once, sorted"
        );
        assert_eq!(
            scopes[1].outcomes,
            [Outcome::Allowed],
            "leads.READ was only allowed"
        );
        assert_eq!(
            o.suggested_allow("a"),
            ["ZohoCRM.modules.leads.ALL", "ZohoCRM.settings.fields.READ"],
            "leads.READ is covered by leads.ALL"
        );
        assert_eq!(o.suggested_allow("b"), ["ZohoCRM.org.READ"], "per account");
        assert!(o.suggested_allow("c").is_empty(), "nothing seen");
    }

    #[test]
    fn minimal_cover_never_adds_a_group_scope_on_its_own() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &[
                    "ZohoCRM.modules.leads.READ",
                    "ZohoCRM.modules.contacts.READ",
                ],
                &[
                    "ZohoCRM.modules.contacts.READ",
                    "ZohoCRM.modules.leads.READ",
                ],
            ),
            (
                &["ZohoCRM.modules.READ", "ZohoCRM.modules.contacts.READ"],
                &["ZohoCRM.modules.READ"],
            ),
            (
                &["ZohoCRM.modules.leads.READ", "ZohoCRM.modules.leads.CREATE"],
                &["ZohoCRM.modules.leads.CREATE", "ZohoCRM.modules.leads.READ"],
            ),
        ];
        for (input, want) in cases {
            let mut scopes: Vec<Scope> = input
                .iter()
                .map(|n| Scope::parse(n).expect("scope"))
                .collect();
            scopes.sort();
            let mut got = minimal_cover(scopes);
            got.sort();
            assert_eq!(&got, want, "cover of {input:?}");
        }
    }

    #[test]
    fn recent_decisions_are_bounded_escaped_and_newest_first() {
        let o = Observations::default();
        for i in 0..(RECENT_DECISIONS + 5) {
            let path = format!("/crm/v8/M{i}\n");
            let seen = Seen {
                account: "a",
                client: None,
                method: "GET",
                path: &path,
            };
            o.record_decision(
                &seen,
                Outcome::Denied,
                &required(&["ZohoCRM.modules.leads.READ"]),
                &required(&["ZohoCRM.modules.leads.READ"]),
            );
        }
        let recent = o.recent();
        assert_eq!(recent.len(), RECENT_DECISIONS, "bounded");
        assert_eq!(
            recent[0].path,
            format!("/crm/v8/M{}\\n", RECENT_DECISIONS + 4),
            "newest first, control characters escaped"
        );
        assert_eq!(recent[0].missing, ["ZohoCRM.modules.leads.READ"]);
        assert_eq!(
            o.scopes("a")[0].outcomes,
            [Outcome::Denied],
            "a decision also records its scopes"
        );
    }

    #[test]
    fn refusals_join_the_recent_decisions_and_are_counted_per_code() {
        let o = Observations::default();
        let seen = Seen {
            account: "a",
            client: None,
            method: "GET",
            path: "/crm/v8/Deals",
        };
        o.record_decision(
            &seen,
            Outcome::Denied,
            &required(&["ZohoCRM.modules.deals.READ"]),
            &required(&["ZohoCRM.modules.deals.READ"]),
        );
        for _ in 0..3 {
            o.record_refusal("PROXY_HOST_NOT_ALLOWED", "host", "GET", "/crm/v8/Leads");
        }
        o.record_refusal(
            "PROXY_BROWSER_REQUEST",
            "browser",
            "POST",
            "/crm/v8/Leads\x1b",
        );
        let recent = o.recent();
        assert_eq!(recent.len(), 5, "refusals are listed with the decisions");
        assert_eq!(
            (recent[0].outcome, recent[0].code, recent[0].rule),
            (
                Outcome::Refused,
                Some("PROXY_BROWSER_REQUEST"),
                Some("browser")
            ),
            "newest first, with code and rule"
        );
        assert_eq!(
            recent[0].path, "/crm/v8/Leads\\u{1b}",
            "the path is escaped"
        );
        assert_eq!(
            (recent[4].outcome, recent[4].code),
            (Outcome::Denied, None),
            "a policy denial has no requester code"
        );
        assert_eq!(
            o.refusal_counts(),
            [
                RefusalCount {
                    code: "PROXY_HOST_NOT_ALLOWED",
                    rule: "host",
                    count: 3
                },
                RefusalCount {
                    code: "PROXY_BROWSER_REQUEST",
                    rule: "browser",
                    count: 1
                },
            ],
            "counted per code, most frequent first"
        );
        assert!(o.scopes("").is_empty(), "a refusal records no scope");
    }
}
