//! Zoho data centers: each has its own accounts server and API host.
//!
//! The table comes from REFERENCE.md §3 (Zoho's SDKs and multi-DC pages).
//!
//! Must not: accept an override host that is neither the data center's own Zoho host nor
//! loopback, or contact Zoho.

use std::fmt;
use std::str::FromStr;

/// A Zoho data center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataCenter {
    /// United States (`us`, accounts.zoho.com).
    Us,
    /// Europe (`eu`, accounts.zoho.eu).
    Eu,
    /// India (`in`, accounts.zoho.in).
    In,
    /// Australia (`au`, accounts.zoho.com.au).
    Au,
    /// Japan (`jp`, accounts.zoho.jp).
    Jp,
    /// China (`cn`, accounts.zoho.com.cn).
    Cn,
    /// Canada (`ca`, accounts.zohocloud.ca).
    Ca,
    /// Saudi Arabia (`sa`, accounts.zoho.sa).
    Sa,
    /// United Kingdom (`uk`, accounts.zoho.uk).
    Uk,
}

/// (code, data center, accounts server, CRM API host)
const TABLE: &[(&str, DataCenter, &str, &str)] = &[
    (
        "us",
        DataCenter::Us,
        "https://accounts.zoho.com",
        "https://www.zohoapis.com",
    ),
    (
        "eu",
        DataCenter::Eu,
        "https://accounts.zoho.eu",
        "https://www.zohoapis.eu",
    ),
    (
        "in",
        DataCenter::In,
        "https://accounts.zoho.in",
        "https://www.zohoapis.in",
    ),
    (
        "au",
        DataCenter::Au,
        "https://accounts.zoho.com.au",
        "https://www.zohoapis.com.au",
    ),
    (
        "jp",
        DataCenter::Jp,
        "https://accounts.zoho.jp",
        "https://www.zohoapis.jp",
    ),
    (
        "cn",
        DataCenter::Cn,
        "https://accounts.zoho.com.cn",
        "https://www.zohoapis.com.cn",
    ),
    (
        "ca",
        DataCenter::Ca,
        "https://accounts.zohocloud.ca",
        "https://www.zohoapis.ca",
    ),
    (
        "sa",
        DataCenter::Sa,
        "https://accounts.zoho.sa",
        "https://www.zohoapis.sa",
    ),
    (
        "uk",
        DataCenter::Uk,
        "https://accounts.zoho.uk",
        "https://www.zohoapis.uk",
    ),
];

/// Top-level domains of Zoho API hosts (`*.zohoapis.<tld>`).
const API_TLDS: &[&str] = &[
    "com", "eu", "in", "com.au", "jp", "com.cn", "ca", "sa", "uk",
];

impl DataCenter {
    fn row(self) -> &'static (&'static str, DataCenter, &'static str, &'static str) {
        TABLE.iter().find(|row| row.1 == self).unwrap_or(&TABLE[0])
    }

    /// The short code used in `proxy.yaml` (`us`, `eu`, ...).
    pub fn code(self) -> &'static str {
        self.row().0
    }

    /// The data center's accounts server (token endpoint host).
    pub fn accounts_url(self) -> &'static str {
        self.row().2
    }

    /// The data center's CRM API base URL.
    pub fn api_url(self) -> &'static str {
        self.row().3
    }

    /// All codes, for error messages.
    pub fn codes() -> String {
        TABLE.iter().map(|r| r.0).collect::<Vec<_>>().join(" ")
    }

    /// The data center whose accounts server is `accounts_url` (as Zoho reports it in the
    /// `accounts-server` parameter of an OAuth redirect).
    pub fn from_accounts_url(accounts_url: &str) -> Option<DataCenter> {
        let trimmed = accounts_url.trim_end_matches('/');
        TABLE.iter().find(|r| r.2 == trimmed).map(|r| r.1)
    }
}

impl FromStr for DataCenter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TABLE
            .iter()
            .find(|r| r.0.eq_ignore_ascii_case(s.trim()))
            .map(|r| r.1)
            .ok_or_else(|| {
                format!(
                    "unknown data center `{s}`; use one of: {}",
                    DataCenter::codes()
                )
            })
    }
}

impl fmt::Display for DataCenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Whether `host` is a Zoho API host (`www.`, `sandbox.`, `developer.` or `content.` on
/// `zohoapis.<known tld>`), the only hosts an `api_domain` from a token response may name.
pub fn is_zoho_api_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some(rest) = ["www.", "sandbox.", "developer."]
        .iter()
        .find_map(|p| host.strip_prefix(p))
    else {
        return false;
    };
    rest.strip_prefix("zohoapis.")
        .is_some_and(|tld| API_TLDS.contains(&tld))
}

/// Which Zoho server a configured override URL stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `accounts_url`: the token endpoint (receives the client secret and refresh token).
    Accounts,
    /// `api_url`: the CRM API (receives the access token).
    Api,
}

/// Checks the host of an `accounts_url`/`api_url` override. Credentials go to that host, so it
/// must be the Zoho host of `dc` (any `www.`/`sandbox.`/`developer.` API host of the same data
/// center for `api_url`), or a loopback stand-in (tests, benchmarks, a local TLS relay). A
/// foreign host or another data center's host is refused (catalogue I5).
pub fn check_override_host(
    host: &str,
    loopback: bool,
    endpoint: Endpoint,
    dc: DataCenter,
) -> Result<(), String> {
    if loopback {
        return Ok(());
    }
    let host = host.to_ascii_lowercase();
    let (expected, found) = match endpoint {
        Endpoint::Accounts => {
            let expected = host_of(dc.accounts_url());
            let found = TABLE.iter().find(|r| host_of(r.2) == host).map(|r| r.1);
            (expected, found)
        }
        Endpoint::Api => {
            let expected = host_of(dc.api_url());
            let tld = |h: &str| h.split_once("zohoapis.").map(|(_, t)| t.to_string());
            let found = if is_zoho_api_host(&host) {
                TABLE
                    .iter()
                    .find(|r| tld(host_of(r.3)) == tld(&host))
                    .map(|r| r.1)
            } else {
                None
            };
            (expected, found)
        }
    };
    match found {
        Some(other) if other == dc => Ok(()),
        Some(other) => Err(format!(
            "`{host}` belongs to data center {other}, but the account's data_center is {dc}; \
             set data_center: {other}, or use {expected}"
        )),
        None => Err(format!(
            "`{host}` is not a Zoho {} host, and credentials would be sent to it; use {expected} \
             (data center {dc}) or a loopback stand-in",
            match endpoint {
                Endpoint::Accounts => "accounts",
                Endpoint::Api => "API",
            }
        )),
    }
}

/// The host of a table URL (`https://host`).
fn host_of(url: &str) -> &str {
    url.strip_prefix("https://").unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_https_hosts() {
        for (code, dc, accounts, api) in TABLE {
            assert_eq!(code.parse::<DataCenter>(), Ok(*dc), "parse {code}");
            assert_eq!(dc.code(), *code, "code of {dc:?}");
            assert!(accounts.starts_with("https://accounts."), "{code} accounts");
            assert!(api.starts_with("https://www.zohoapis."), "{code} api");
            assert_eq!(DataCenter::from_accounts_url(accounts), Some(*dc));
        }
        assert!(
            "xx".parse::<DataCenter>().is_err(),
            "unknown code is refused"
        );
    }

    const HOSTS: &[(&str, bool)] = &[
        ("www.zohoapis.com", true),
        ("www.zohoapis.eu", true),
        ("www.zohoapis.com.au", true),
        ("sandbox.zohoapis.in", true),
        ("WWW.ZOHOAPIS.COM", true),
        ("api.zoho.eu", false),
        ("www.zohoapis.com.evil.example", false),
        ("evil.example", false),
        ("www.zohoapis.co", false),
        ("127.0.0.1", false),
        ("zohoapis.com", false),
    ];

    #[test]
    fn api_host_check_follows_the_table() {
        for (host, expected) in HOSTS {
            assert_eq!(
                is_zoho_api_host(host),
                *expected,
                "is_zoho_api_host({host})"
            );
        }
    }

    #[test]
    fn override_hosts_must_be_the_data_centers_own_or_loopback() {
        use Endpoint::*;
        let cases: &[(&str, &str, bool, Endpoint, DataCenter, bool)] = &[
            (
                "own api host",
                "www.zohoapis.com",
                false,
                Api,
                DataCenter::Us,
                true,
            ),
            (
                "sandbox api host",
                "sandbox.zohoapis.eu",
                false,
                Api,
                DataCenter::Eu,
                true,
            ),
            (
                "upper-case host",
                "WWW.ZOHOAPIS.COM",
                false,
                Api,
                DataCenter::Us,
                true,
            ),
            (
                "loopback stand-in",
                "127.0.0.1",
                true,
                Api,
                DataCenter::Us,
                true,
            ),
            (
                "foreign api host",
                "evil.example",
                false,
                Api,
                DataCenter::Us,
                false,
            ),
            (
                "look-alike api host",
                "www.zohoapis.com.evil.example",
                false,
                Api,
                DataCenter::Us,
                false,
            ),
            (
                "other dc api host",
                "www.zohoapis.eu",
                false,
                Api,
                DataCenter::Us,
                false,
            ),
            (
                "own accounts host",
                "accounts.zoho.eu",
                false,
                Accounts,
                DataCenter::Eu,
                true,
            ),
            (
                "other dc accounts host",
                "accounts.zoho.com",
                false,
                Accounts,
                DataCenter::Eu,
                false,
            ),
            (
                "api host as accounts",
                "www.zohoapis.com",
                false,
                Accounts,
                DataCenter::Us,
                false,
            ),
            (
                "foreign accounts host",
                "accounts.evil.example",
                false,
                Accounts,
                DataCenter::Us,
                false,
            ),
        ];
        for (case, host, loopback, endpoint, dc, ok) in cases {
            let got = check_override_host(host, *loopback, *endpoint, *dc);
            assert_eq!(got.is_ok(), *ok, "{case}: {got:?}");
        }
    }
}
