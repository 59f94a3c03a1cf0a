//! Zoho data centers: each has its own accounts server and API host.
//!
//! The table comes from REFERENCE.md §3 (Zoho's SDKs and multi-DC pages).

use std::fmt;
use std::str::FromStr;

/// A Zoho data center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataCenter {
    Us,
    Eu,
    In,
    Au,
    Jp,
    Cn,
    Ca,
    Sa,
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
}
