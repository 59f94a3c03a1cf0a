//! The fake accounts server's memory: which refresh tokens, grant codes and access tokens are
//! valid, the per-refresh-token mint budget and the live-token cap.
//!
//! Owns: the rules of §1/§2 of REFERENCE.md (single-use codes, `invalid_code`, throttle after
//! `mint_limit` mints in `mint_window`, eviction of the oldest token beyond `live_token_cap`,
//! revocation). Must not: do I/O, know about HTTP, or read the clock itself (callers pass `now`,
//! which keeps the rules table-testable).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Characters used for hex strings.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let b: u8 = rng.gen();
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Bytes as lower-case hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// A token in Zoho's shape: `1000.<32 hex>.<32 hex>`.
pub(crate) fn zoho_token() -> String {
    format!("1000.{}.{}", random_hex(16), random_hex(16))
}

/// Scopes reported for grants that did not name any (self-client codes given in the options).
pub(crate) const DEFAULT_SCOPE: &str = "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.users.READ ZohoCRM.org.READ ZohoCRM.coql.READ ZohoSearch.securesearch.READ";

/// Fixed limits of the ledger (not `Debug`: it holds the client secret).
#[derive(Clone)]
pub(crate) struct Limits {
    pub client_id: String,
    pub client_secret: String,
    pub mint_limit: u32,
    pub mint_window: Duration,
    pub live_token_cap: usize,
    pub grant_code_lifetime: Duration,
}

/// A grant code waiting to be exchanged.
#[derive(Debug, Clone)]
struct GrantCode {
    expires_at: Instant,
    /// `Some` for codes issued by `/oauth/v2/auth`: the exchange must repeat it exactly.
    redirect_uri: Option<String>,
    scope: String,
    /// Whether the exchange yields a refresh token (`access_type=offline`, always for self-client).
    offline: bool,
}

/// Book-keeping for one refresh token (or, for online web grants, one code).
#[derive(Debug, Default)]
struct Family {
    /// Refresh tokens can be revoked; online families have no refresh token and stay `false`.
    revoked: bool,
    is_refresh_token: bool,
    /// When each access token of the current window was minted (oldest first).
    mint_times: VecDeque<Instant>,
    /// Access tokens issued from this family, oldest first (may include dead ones; pruned lazily).
    issued: VecDeque<String>,
}

#[derive(Debug, Clone)]
struct AccessToken {
    family: String,
    expires_at: Instant,
}

/// The grant presented to the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `grant_type=refresh_token`.
    Refresh { refresh_token: String },
    /// `grant_type=authorization_code`.
    Code {
        code: String,
        redirect_uri: Option<String>,
    },
}

/// A successful mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Minted {
    pub access_token: String,
    /// Only for the authorization-code grant with offline access.
    pub refresh_token: Option<String>,
    /// Only for the authorization-code grant.
    pub scope: Option<String>,
}

/// What the token endpoint should answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MintOutcome {
    Minted(Minted),
    /// `200 {"error": "<code>"}`.
    Error(&'static str),
    /// The "Access Denied" throttle body.
    Throttled,
}

/// All accounts-server state (not `Debug`: it holds secrets and tokens).
pub(crate) struct Ledger {
    limits: Limits,
    families: HashMap<String, Family>,
    codes: HashMap<String, GrantCode>,
    access: HashMap<String, AccessToken>,
    mints: u64,
}

impl Ledger {
    /// A ledger knowing `refresh_tokens` and self-client `grant_codes` (valid from `now`).
    pub(crate) fn new(
        limits: Limits,
        refresh_tokens: &[String],
        grant_codes: &[String],
        now: Instant,
    ) -> Ledger {
        let mut ledger = Ledger {
            limits,
            families: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            mints: 0,
        };
        for rt in refresh_tokens {
            ledger.add_refresh_token(rt);
        }
        for code in grant_codes {
            ledger.add_self_client_code(code, now);
        }
        ledger
    }

    /// Makes `rt` a valid refresh token (again, if it was revoked).
    pub(crate) fn add_refresh_token(&mut self, rt: &str) {
        let family = self.families.entry(rt.to_owned()).or_default();
        family.revoked = false;
        family.is_refresh_token = true;
    }

    /// Adds a self-client grant code, valid for `grant_code_lifetime` from `now`.
    pub(crate) fn add_self_client_code(&mut self, code: &str, now: Instant) {
        self.codes.insert(
            code.to_owned(),
            GrantCode {
                expires_at: now + self.limits.grant_code_lifetime,
                redirect_uri: None,
                scope: DEFAULT_SCOPE.to_owned(),
                offline: true,
            },
        );
    }

    /// Issues a code for the redirect flow (`/oauth/v2/auth`), bound to `redirect_uri`.
    pub(crate) fn issue_web_code(
        &mut self,
        redirect_uri: &str,
        scope: &str,
        offline: bool,
        now: Instant,
    ) -> String {
        let code = zoho_token();
        self.codes.insert(
            code.clone(),
            GrantCode {
                expires_at: now + self.limits.grant_code_lifetime,
                redirect_uri: Some(redirect_uri.to_owned()),
                scope: scope.to_owned(),
                offline,
            },
        );
        code
    }

    /// Whether `client_id` is the registered client.
    pub(crate) fn knows_client(&self, client_id: &str) -> bool {
        self.limits.client_id == client_id
    }

    /// Handles one token request. `lifetime` is how long a minted access token stays valid.
    pub(crate) fn mint(
        &mut self,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        grant: Grant,
        lifetime: Duration,
        now: Instant,
    ) -> MintOutcome {
        if client_id != Some(self.limits.client_id.as_str()) {
            return MintOutcome::Error("invalid_client");
        }
        if client_secret != Some(self.limits.client_secret.as_str()) {
            return MintOutcome::Error("invalid_client_secret");
        }
        match grant {
            Grant::Refresh { refresh_token } => {
                self.mint_from_refresh(&refresh_token, lifetime, now)
            }
            Grant::Code { code, redirect_uri } => {
                self.mint_from_code(&code, redirect_uri.as_deref(), lifetime, now)
            }
        }
    }

    fn mint_from_refresh(&mut self, rt: &str, lifetime: Duration, now: Instant) -> MintOutcome {
        let window = self.limits.mint_window;
        let limit = self.limits.mint_limit as usize;
        let Some(family) = self.families.get_mut(rt) else {
            return MintOutcome::Error("invalid_code");
        };
        if family.revoked || !family.is_refresh_token {
            return MintOutcome::Error("invalid_code");
        }
        while family
            .mint_times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            family.mint_times.pop_front();
        }
        if family.mint_times.len() >= limit {
            return MintOutcome::Throttled;
        }
        let access_token = self.issue_access(rt, lifetime, now);
        MintOutcome::Minted(Minted {
            access_token,
            refresh_token: None,
            scope: None,
        })
    }

    fn mint_from_code(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
        lifetime: Duration,
        now: Instant,
    ) -> MintOutcome {
        let Some(grant) = self.codes.get(code).cloned() else {
            return MintOutcome::Error("invalid_code");
        };
        if now >= grant.expires_at {
            self.codes.remove(code);
            return MintOutcome::Error("invalid_code");
        }
        if let Some(bound) = &grant.redirect_uri {
            if redirect_uri != Some(bound.as_str()) {
                // Zoho keeps the code usable when only the redirect URI was wrong: UNCONFIRMED,
                // but burning it would hide the real mistake behind a later invalid_code.
                return MintOutcome::Error("invalid_redirect_uri");
            }
        }
        self.codes.remove(code);
        let (family_key, refresh_token) = if grant.offline {
            let rt = zoho_token();
            self.add_refresh_token(&rt);
            (rt.clone(), Some(rt))
        } else {
            let key = format!("online:{code}");
            self.families.entry(key.clone()).or_default();
            (key, None)
        };
        let access_token = self.issue_access(&family_key, lifetime, now);
        MintOutcome::Minted(Minted {
            access_token,
            refresh_token,
            scope: Some(grant.scope),
        })
    }

    /// Mints an access token for `family_key`, counting it and evicting beyond the live cap.
    fn issue_access(&mut self, family_key: &str, lifetime: Duration, now: Instant) -> String {
        let token = zoho_token();
        self.access.insert(
            token.clone(),
            AccessToken {
                family: family_key.to_owned(),
                expires_at: now + lifetime,
            },
        );
        self.mints += 1;
        let cap = self.limits.live_token_cap;
        let access = &mut self.access;
        let family = self.families.entry(family_key.to_owned()).or_default();
        family.mint_times.push_back(now);
        family.issued.push_back(token.clone());
        // Forget tokens that already died (expired, revoked, evicted) so only live ones count.
        family
            .issued
            .retain(|t| access.get(t).is_some_and(|a| a.expires_at > now));
        while family.issued.len() > cap {
            if let Some(oldest) = family.issued.pop_front() {
                access.remove(&oldest);
            }
        }
        token
    }

    /// Whether `token` is a live access token at `now`.
    pub(crate) fn is_live(&self, token: &str, now: Instant) -> bool {
        self.access.get(token).is_some_and(|a| a.expires_at > now)
    }

    /// Every live access token at `now`, in no particular order.
    pub(crate) fn live_tokens(&self, now: Instant) -> Vec<String> {
        self.access
            .iter()
            .filter(|(_, a)| a.expires_at > now)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Kills every access token; refresh tokens stay valid.
    pub(crate) fn revoke_all_access(&mut self) {
        self.access.clear();
        for family in self.families.values_mut() {
            family.issued.clear();
        }
    }

    /// Revokes a refresh token and every access token minted from it. Returns whether it was a
    /// valid refresh token.
    pub(crate) fn revoke_refresh(&mut self, rt: &str) -> bool {
        let Some(family) = self.families.get_mut(rt) else {
            return false;
        };
        if family.revoked || !family.is_refresh_token {
            return false;
        }
        family.revoked = true;
        family.issued.clear();
        self.access.retain(|_, a| a.family != rt);
        true
    }

    /// Access tokens issued so far.
    pub(crate) fn mints(&self) -> u64 {
        self.mints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            client_id: "1000.CID".into(),
            client_secret: "sec".into(),
            mint_limit: 3,
            mint_window: Duration::from_secs(600),
            live_token_cap: 2,
            grant_code_lifetime: Duration::from_secs(180),
        }
    }

    fn refresh(rt: &str) -> Grant {
        Grant::Refresh {
            refresh_token: rt.into(),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn client_checks_come_first() {
        let now = Instant::now();
        let mut l = Ledger::new(limits(), &["rt".into()], &[], now);
        const CASES: &[(Option<&str>, Option<&str>, &str, MintOutcome)] = &[
            (
                Some("1000.X"),
                Some("sec"),
                "rt",
                MintOutcome::Error("invalid_client"),
            ),
            (
                None,
                Some("sec"),
                "rt",
                MintOutcome::Error("invalid_client"),
            ),
            (
                Some("1000.CID"),
                Some("bad"),
                "rt",
                MintOutcome::Error("invalid_client_secret"),
            ),
            (
                Some("1000.CID"),
                None,
                "rt",
                MintOutcome::Error("invalid_client_secret"),
            ),
            (
                Some("1000.CID"),
                Some("sec"),
                "nope",
                MintOutcome::Error("invalid_code"),
            ),
        ];
        for (cid, sec, rt, want) in CASES {
            let got = l.mint(*cid, *sec, refresh(rt), HOUR, now);
            assert_eq!(&got, want, "case client_id={cid:?} secret={sec:?} rt={rt}");
        }
        assert_eq!(l.mints(), 0, "no error case may mint");
    }

    #[test]
    fn throttles_after_limit_within_window_then_recovers() {
        let t0 = Instant::now();
        let mut l = Ledger::new(limits(), &["rt".into()], &[], t0);
        for i in 0..3 {
            let got = l.mint(Some("1000.CID"), Some("sec"), refresh("rt"), HOUR, t0);
            assert!(
                matches!(got, MintOutcome::Minted(_)),
                "mint {i} within limit succeeds"
            );
        }
        let got = l.mint(Some("1000.CID"), Some("sec"), refresh("rt"), HOUR, t0);
        assert_eq!(
            got,
            MintOutcome::Throttled,
            "4th mint in window is throttled"
        );
        let later = t0 + Duration::from_secs(600);
        let got = l.mint(Some("1000.CID"), Some("sec"), refresh("rt"), HOUR, later);
        assert!(
            matches!(got, MintOutcome::Minted(_)),
            "window passed: mint allowed again"
        );
    }

    #[test]
    fn live_cap_evicts_oldest() {
        let now = Instant::now();
        let mut l = Ledger::new(limits(), &["rt".into()], &[], now);
        let mut tokens = Vec::new();
        for _ in 0..3 {
            match l.mint(Some("1000.CID"), Some("sec"), refresh("rt"), HOUR, now) {
                MintOutcome::Minted(m) => tokens.push(m.access_token),
                other => panic!("expected mint, got {other:?}"),
            }
        }
        assert!(
            !l.is_live(&tokens[0], now),
            "oldest token evicted beyond cap 2"
        );
        assert!(l.is_live(&tokens[1], now), "second token still live");
        assert!(l.is_live(&tokens[2], now), "newest token live");
    }

    #[test]
    fn codes_are_single_use_expire_and_bind_redirect_uri() {
        let t0 = Instant::now();
        let mut l = Ledger::new(limits(), &[], &["code1".into(), "code2".into()], t0);
        let code = |c: &str, r: Option<&str>| Grant::Code {
            code: c.into(),
            redirect_uri: r.map(str::to_owned),
        };
        let first = l.mint(Some("1000.CID"), Some("sec"), code("code1", None), HOUR, t0);
        let MintOutcome::Minted(m) = first else {
            panic!("self-client code exchange must succeed: {first:?}");
        };
        let rt = m.refresh_token.clone().unwrap_or_default();
        assert!(
            rt.starts_with("1000."),
            "code exchange returns a refresh token"
        );
        assert!(m.scope.is_some(), "code exchange reports scopes");
        let again = l.mint(Some("1000.CID"), Some("sec"), code("code1", None), HOUR, t0);
        assert_eq!(
            again,
            MintOutcome::Error("invalid_code"),
            "code is single use"
        );
        let late = t0 + Duration::from_secs(180);
        let expired = l.mint(
            Some("1000.CID"),
            Some("sec"),
            code("code2", None),
            HOUR,
            late,
        );
        assert_eq!(
            expired,
            MintOutcome::Error("invalid_code"),
            "code expires after 3 min"
        );
        let via_rt = l.mint(Some("1000.CID"), Some("sec"), refresh(&rt), HOUR, t0);
        assert!(
            matches!(via_rt, MintOutcome::Minted(_)),
            "new refresh token is valid"
        );

        let web = l.issue_web_code("https://app/cb", "ZohoCRM.modules.ALL", true, t0);
        let wrong = l.mint(
            Some("1000.CID"),
            Some("sec"),
            code(&web, Some("https://x/")),
            HOUR,
            t0,
        );
        assert_eq!(
            wrong,
            MintOutcome::Error("invalid_redirect_uri"),
            "redirect must match"
        );
        let right = l.mint(
            Some("1000.CID"),
            Some("sec"),
            code(&web, Some("https://app/cb")),
            HOUR,
            t0,
        );
        assert!(
            matches!(right, MintOutcome::Minted(_)),
            "matching redirect exchanges"
        );
    }

    #[test]
    fn revoke_kills_family_and_expiry_is_honoured() {
        let now = Instant::now();
        let mut l = Ledger::new(limits(), &["rt".into(), "rt2".into()], &[], now);
        let MintOutcome::Minted(a) =
            l.mint(Some("1000.CID"), Some("sec"), refresh("rt"), HOUR, now)
        else {
            panic!("mint from rt");
        };
        let MintOutcome::Minted(b) = l.mint(
            Some("1000.CID"),
            Some("sec"),
            refresh("rt2"),
            Duration::from_secs(5),
            now,
        ) else {
            panic!("mint from rt2");
        };
        assert!(l.revoke_refresh("rt"), "known refresh token revokes");
        assert!(!l.revoke_refresh("rt"), "second revoke reports unknown");
        assert!(
            !l.is_live(&a.access_token, now),
            "revoked family's token dies"
        );
        assert!(
            l.is_live(&b.access_token, now),
            "other family's token survives"
        );
        assert!(
            !l.is_live(&b.access_token, now + Duration::from_secs(5)),
            "token dies at expiry"
        );
        let got = l.mint(Some("1000.CID"), Some("sec"), refresh("rt"), HOUR, now);
        assert_eq!(
            got,
            MintOutcome::Error("invalid_code"),
            "revoked rt answers invalid_code"
        );
    }
}
