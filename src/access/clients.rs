//! Client identities: which local program is asking, by key or by Unix-socket peer credentials.
//!
//! Keys are compared as SHA-256 digests in constant time over every configured client, so the
//! time taken says nothing about which key (or how much of one) matched. A presented key must
//! belong to a client; a connection on a Unix socket whose peer uid/gid matches a client is that
//! client without a key. The key itself is kept only as its digest here.

use crate::config::ClientConfig;
use crate::policy::Policy;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Header that carries a client key (besides `Authorization`).
pub const KEY_HEADER: &str = "x-zoho-proxy-key";

/// The credentials of a Unix-socket peer (`SO_PEERCRED`), taken at accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// One configured client.
pub struct Client {
    /// Name (letters, digits, `-`, `_`).
    pub name: Arc<str>,
    key_digest: Option<[u8; 32]>,
    unix_uid: Option<u32>,
    unix_gid: Option<u32>,
    /// Per account (config order): the client's policy there, `None` where it may not go.
    policies: Vec<Option<Arc<Policy>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("key", &crate::util::redact::redact_option(&self.key_digest))
            .field("unix_uid", &self.unix_uid)
            .field("unix_gid", &self.unix_gid)
            .finish()
    }
}

impl Client {
    /// The client's policy for the account at `index` (config order), if it may use it.
    pub fn policy(&self, index: usize) -> Option<&Arc<Policy>> {
        self.policies.get(index).and_then(Option::as_ref)
    }
}

/// Why no client could be identified (never said to the caller beyond "unauthenticated").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unidentified {
    /// No key and no matching peer.
    Missing,
    /// A key that belongs to no client, or several different keys.
    Wrong,
}

/// Every configured client (empty: identities are off).
#[derive(Debug, Default)]
pub struct ClientSet {
    clients: Vec<Client>,
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl ClientSet {
    /// Builds the set from validated config (`policies` come from the config's narrowing).
    pub fn new(configs: &[ClientConfig]) -> ClientSet {
        let clients = configs
            .iter()
            .map(|c| Client {
                name: c.name.as_str().into(),
                key_digest: c.key.as_ref().map(|k| digest(k.expose().as_bytes())),
                unix_uid: c.unix_uid,
                unix_gid: c.unix_gid,
                policies: c.policies.clone(),
            })
            .collect();
        ClientSet { clients }
    }

    /// Whether `clients:` is configured.
    pub fn enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    /// The clients, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.clients.iter()
    }

    /// The client at `index`.
    pub fn get(&self, index: usize) -> Option<&Client> {
        self.clients.get(index)
    }

    /// Identifies the client of a request: by its key, else by the Unix peer's credentials.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        peer: Option<PeerCred>,
    ) -> Result<usize, Unidentified> {
        match presented_key(headers)? {
            Some(key) => self.by_key(key).ok_or(Unidentified::Wrong),
            None => peer
                .and_then(|p| self.by_peer(p))
                .ok_or(Unidentified::Missing),
        }
    }

    fn by_key(&self, key: &[u8]) -> Option<usize> {
        let presented = digest(key);
        let mut found = None;
        // Every client is compared, with no early exit and no data-dependent branch per byte.
        for (i, client) in self.clients.iter().enumerate() {
            let Some(expected) = &client.key_digest else {
                continue;
            };
            let diff = expected
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(diff) == 0 {
                found = Some(i);
            }
        }
        found
    }

    fn by_peer(&self, peer: PeerCred) -> Option<usize> {
        self.clients.iter().position(|c| {
            (c.unix_uid.is_some() || c.unix_gid.is_some())
                && c.unix_uid.is_none_or(|u| u == peer.uid)
                && c.unix_gid.is_none_or(|g| g == peer.gid)
        })
    }
}

/// The one key a request presents: `Authorization: Bearer <key>`, `Authorization:
/// Zoho-oauthtoken <key>` (what Zoho's SDKs send when given the key as their access token) or
/// `X-Zoho-Proxy-Key: <key>`. Several different keys are refused.
fn presented_key(headers: &HeaderMap) -> Result<Option<&[u8]>, Unidentified> {
    let from_authorization = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| {
            let v = v.as_bytes();
            let (scheme, rest) = match v.iter().position(|b| *b == b' ') {
                Some(i) => (&v[..i], &v[i + 1..]),
                None => (v, &b""[..]),
            };
            if scheme.eq_ignore_ascii_case(b"bearer")
                || scheme.eq_ignore_ascii_case(b"zoho-oauthtoken")
            {
                Ok(rest.trim_ascii())
            } else {
                Err(Unidentified::Wrong)
            }
        });
    const KEY_NAME: http::HeaderName = http::HeaderName::from_static(KEY_HEADER);
    let from_header = headers
        .get_all(KEY_NAME)
        .iter()
        .map(|v| Ok(v.as_bytes().trim_ascii()));
    let mut key: Option<&[u8]> = None;
    for candidate in from_authorization.chain(from_header) {
        let candidate = candidate?;
        match key {
            Some(k) if k != candidate => return Err(Unidentified::Wrong),
            _ => key = Some(candidate),
        }
    }
    match key {
        Some([]) => Err(Unidentified::Wrong),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretValue;

    const KEY_A: &str = "a-key-for-the-sync-job-0123456789abcdef";
    const KEY_B: &str = "b-key-for-the-report-job-0123456789abcdef";

    fn config(name: &str, key: Option<&str>, uid: Option<u32>) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            key: key.map(|k| SecretValue::inline(k.to_string())),
            unix_uid: uid,
            unix_gid: None,
            allow: None,
            accounts: None,
            policies: Vec::new(),
            credits_per_day: None,
            organizations: None,
        }
    }

    fn set() -> ClientSet {
        ClientSet::new(&[
            config("sync", Some(KEY_A), None),
            config("report", Some(KEY_B), None),
            config("local", None, Some(1000)),
        ])
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        crate::access::test_headers(pairs)
    }

    #[test]
    fn each_key_form_identifies_its_client() {
        let set = set();
        for (pairs, expected) in [
            (vec![("authorization", format!("Bearer {KEY_A}"))], 0),
            (
                vec![("authorization", format!("Zoho-oauthtoken {KEY_B}"))],
                1,
            ),
            (
                vec![("authorization", format!("zoho-oauthtoken  {KEY_B}"))],
                1,
            ),
            (vec![("x-zoho-proxy-key", KEY_A.to_string())], 0),
            (
                vec![
                    ("x-zoho-proxy-key", KEY_A.to_string()),
                    ("authorization", format!("Bearer {KEY_A}")),
                ],
                0,
            ),
        ] {
            assert_eq!(
                set.identify(&headers(&pairs), None),
                Ok(expected),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn wrong_missing_or_conflicting_keys_identify_nobody() {
        let set = set();
        for (pairs, expected) in [
            (vec![], Unidentified::Missing),
            (
                vec![("authorization", "Bearer nope".to_string())],
                Unidentified::Wrong,
            ),
            (
                vec![("authorization", format!("Basic {KEY_A}"))],
                Unidentified::Wrong,
            ),
            (
                vec![("authorization", "Bearer ".to_string())],
                Unidentified::Wrong,
            ),
            (
                vec![
                    ("authorization", format!("Bearer {KEY_A}")),
                    ("x-zoho-proxy-key", KEY_B.to_string()),
                ],
                Unidentified::Wrong,
            ),
            (
                vec![("x-zoho-proxy-key", KEY_A[..20].to_string())],
                Unidentified::Wrong,
            ),
        ] {
            assert_eq!(
                set.identify(&headers(&pairs), None),
                Err(expected),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn unix_peers_are_identified_by_uid() {
        let set = set();
        let peer = |uid| Some(PeerCred { uid, gid: 100 });
        assert_eq!(set.identify(&HeaderMap::new(), peer(1000)), Ok(2));
        assert_eq!(
            set.identify(&HeaderMap::new(), peer(1001)),
            Err(Unidentified::Missing)
        );
        // A key wins over the peer, and a wrong key is refused even from a known peer.
        let with_key = headers(&[("x-zoho-proxy-key", KEY_A.to_string())]);
        assert_eq!(set.identify(&with_key, peer(1000)), Ok(0));
        let wrong = headers(&[("x-zoho-proxy-key", "wrong".to_string())]);
        assert_eq!(set.identify(&wrong, peer(1000)), Err(Unidentified::Wrong));
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let text = format!("{:?}", set());
        assert!(!text.contains(KEY_A) && !text.contains("a-key"), "{text}");
    }
}
