//! The Host rule: which names a request may address the proxy by.
//!
//! DNS rebinding always presents the attacker's *name* in `Host`, so a request is served only when
//! its `Host` is `localhost`, an IP literal (IPv4 dotted quad, or IPv6 in brackets) other than the
//! unspecified `0.0.0.0` / `[::]`, or a name the operator listed in `accept_hosts`. Names are
//! compared whole and ASCII case-folded: no prefix, suffix or substring matching, no trailing dot.
//! The port is ignored (a browser's port always equals the one it connected to). Pure: no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a `Host` value was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostProblem {
    /// Not a well-formed `host[:port]` (400).
    Malformed(&'static str),
    /// Well-formed, but not a name this proxy answers to (403).
    NotAllowed,
}

/// A parsed `Host` (or authority) value, borrowing the name (no allocation on the hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName<'a> {
    /// An IP literal.
    Ip(std::net::IpAddr),
    /// A DNS name as written (compare it ASCII case-insensitively).
    Name(&'a str),
}

/// Parses `host[:port]` strictly (RFC 9112 §3.2 / RFC 3986 §3.2.2, without user info, zone ids
/// or percent-encoding).
pub fn parse(value: &[u8]) -> Result<HostName<'_>, HostProblem> {
    // ASCII is UTF-8: one pass checks both.
    let text = value
        .is_ascii()
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
        .ok_or(HostProblem::Malformed(
            "the Host header must be plain ASCII",
        ))?;
    if text.is_empty() {
        return Err(HostProblem::Malformed("the Host header is empty"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or(HostProblem::Malformed("an IPv6 literal must end with `]`"))?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| {
            HostProblem::Malformed(
                "the bracketed value is not an IPv6 address (zone ids are not accepted)",
            )
        })?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostProblem::Malformed(
                "only `:port` may follow an IPv6 literal",
            ))?),
        };
        (HostName::Ip(ip.into()), port)
    } else {
        let (name, port) = match text.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (text, None),
        };
        if name.is_empty() {
            return Err(HostProblem::Malformed("the Host header has no host name"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(HostProblem::Malformed(
                "a host name may hold only letters, digits, `-`, `_` and `.` (an IPv6 address goes in brackets)",
            ));
        }
        // Only a strict dotted quad is an IPv4 literal; `127.1`, `0x7f000001` and `2130706433`
        // stay names (and are then not allowed).
        let host = match dotted_quad(name.as_bytes()) {
            Some(ip) => HostName::Ip(ip.into()),
            None => HostName::Name(name),
        };
        (host, port)
    };
    if let Some(port) = port {
        if !valid_port(port.as_bytes()) {
            return Err(HostProblem::Malformed(
                "the port after the host name must be a number from 0 to 65535",
            ));
        }
    }
    Ok(host)
}

/// A strict dotted quad: four decimal octets from 0 to 255, without leading zeros (`127.1`,
/// `0177.0.0.1`, `127.000.000.001` and `0x7f000001` are not IPv4 literals here).
fn dotted_quad(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|b| *b == b'.');
    for octet in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return None;
        }
        let mut n = 0u16;
        for b in p {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(b - b'0');
        }
        *octet = u8::try_from(n).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// The names a listener answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRule {
    /// Extra names (`accept_hosts`), lower-cased.
    pub accept: Vec<String>,
    /// `allow_any_host: true`: the check is off (warned about at start and on reload).
    pub any: bool,
}

impl HostRule {
    /// Checks one `Host` value.
    pub fn check(&self, value: &[u8]) -> Result<(), HostProblem> {
        if plain_loopback(value) {
            // What the full parse below decides for these values too (hot path: nearly every
            // local client sends one of them).
            return Ok(());
        }
        self.check_parsed(value)
    }

    /// [`HostRule::check`] without the fast path.
    fn check_parsed(&self, value: &[u8]) -> Result<(), HostProblem> {
        let host = parse(value)?;
        if self.any {
            return Ok(());
        }
        match host {
            HostName::Ip(ip) if ip.is_unspecified() => Err(HostProblem::NotAllowed),
            HostName::Ip(_) => Ok(()),
            HostName::Name(name) if name.eq_ignore_ascii_case("localhost") => Ok(()),
            HostName::Name(name) if self.accept.iter().any(|a| a.eq_ignore_ascii_case(name)) => {
                Ok(())
            }
            HostName::Name(_) => Err(HostProblem::NotAllowed),
        }
    }
}

/// `127.0.0.1` or `localhost` (lower case), alone or with a valid `:port`.
fn plain_loopback(value: &[u8]) -> bool {
    let rest = value
        .strip_prefix(b"127.0.0.1")
        .or_else(|| value.strip_prefix(b"localhost"));
    match rest {
        Some([]) => true,
        Some([b':', port @ ..]) => valid_port(port),
        _ => false,
    }
}

/// A port: 1 to 5 decimal digits, at most 65535.
fn valid_port(port: &[u8]) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0')) <= 65_535
}

/// Validates one `accept_hosts` entry: an exact DNS name (no wildcard, port, scheme or trailing
/// dot), returned lower-cased.
pub fn accept_entry(text: &str) -> Result<String, String> {
    if text.contains('*') {
        return Err("wildcards are not accepted: list each name exactly (or, to switch the Host check off, set allow_any_host: true)".into());
    }
    if text.contains("://") || text.contains('/') || text.contains(':') {
        return Err("list a bare host name, without a scheme, port or path".into());
    }
    if text.ends_with('.') {
        return Err("drop the trailing dot: names are matched exactly".into());
    }
    match parse(text.as_bytes()) {
        Ok(HostName::Name(name)) => Ok(name.to_ascii_lowercase()),
        Ok(HostName::Ip(_)) => Ok(text.to_ascii_lowercase()),
        Err(HostProblem::Malformed(why)) => Err(why.into()),
        Err(HostProblem::NotAllowed) => Err("not a host name".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED: &[&str] = &[
        "localhost",
        "localhost:8080",
        "LOCALHOST:8080",
        "LocalHost",
        "localhost:9999",
        "127.0.0.1",
        "127.0.0.1:8080",
        "127.0.0.2:8080",
        "10.42.0.17:9901",
        "[::1]:8080",
        "[::1]",
        "[0:0:0:0:0:0:0:1]:8080",
        "[::0:1]:8080",
        "[::ffff:127.0.0.1]:8080",
        "[fe80::1]:8080",
        "crm-proxy.internal:8080",
        "CRM-PROXY.INTERNAL",
    ];

    const REFUSED: &[&str] = &[
        "attacker.example:8080",
        "ATTACKER.Example",
        "localhost.attacker.example",
        "attacker.localhost",
        "127.0.0.1.nip.io",
        "zohoapis.com",
        "app.local",
        "app.internal",
        "localhost.:8080",
        "127.0.0.1.:8080",
        "attacker.example.:8080",
        "2130706433:8080",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "127.000.000.001",
        "0.0.0.0:8080",
        "[::]:8080",
        "x.crm-proxy.internal",
        "crm-proxy.internal.attacker.example",
        "crm-proxy.internal.",
    ];

    const MALFORMED: &[&[u8]] = &[
        b"",
        b"localhost@attacker.example",
        b"localhost,attacker.example",
        b"localhost attacker.example",
        b"::1:8080",
        b"[::1%25lo]:8080",
        b"[::1%lo]:8080",
        b"localhost:abc",
        b"localhost:99999",
        b"localhost:8080:1",
        b"l\xc3\xb6calhost",
        b"localhost/x",
        b"localhost?x",
        b"%6cocalhost",
        b"[::1]x",
        b":8080",
        b"[127.0.0.1]",
    ];

    fn rule() -> HostRule {
        HostRule {
            accept: vec!["crm-proxy.internal".into()],
            any: false,
        }
    }

    #[test]
    fn the_loopback_fast_path_decides_as_the_full_parse() {
        let edges: &[&[u8]] = &[
            b"127.0.0.1:",
            b"127.0.0.1:0",
            b"127.0.0.1:00080",
            b"127.0.0.1:65535",
            b"127.0.0.1:65536",
            b"127.0.0.1:123456",
            b"127.0.0.1:8080x",
            b"127.0.0.10",
            b"127.0.0.1x",
            b"localhost:",
            b"localhost:1",
            b"localhostx",
            b"localhost.",
        ];
        let all = ALLOWED
            .iter()
            .chain(REFUSED)
            .map(|h| h.as_bytes())
            .chain(MALFORMED.iter().copied())
            .chain(edges.iter().copied());
        let mut fast = 0;
        for value in all {
            if plain_loopback(value) {
                fast += 1;
                assert_eq!(rule().check_parsed(value), Ok(()), "{value:?}");
            }
            assert_eq!(rule().check(value), rule().check_parsed(value), "{value:?}");
        }
        assert_eq!(fast, 9, "the values the fast path takes");
    }

    #[test]
    fn allowed_forms_pass() {
        for host in ALLOWED {
            assert_eq!(rule().check(host.as_bytes()), Ok(()), "{host} should pass");
        }
    }

    #[test]
    fn foreign_names_and_unspecified_addresses_are_refused() {
        for host in REFUSED {
            assert_eq!(
                rule().check(host.as_bytes()),
                Err(HostProblem::NotAllowed),
                "{host} should be refused with 403"
            );
        }
    }

    #[test]
    fn malformed_values_are_bad_requests() {
        for host in MALFORMED {
            assert!(
                matches!(rule().check(host), Err(HostProblem::Malformed(_))),
                "{:?} should be a 400",
                String::from_utf8_lossy(host)
            );
        }
    }

    #[test]
    fn allow_any_host_accepts_every_well_formed_name_only() {
        let any = HostRule {
            accept: Vec::new(),
            any: true,
        };
        assert_eq!(any.check(b"attacker.example:8080"), Ok(()));
        assert!(matches!(
            any.check(b"localhost@x"),
            Err(HostProblem::Malformed(_))
        ));
    }

    #[test]
    fn dotted_quads_are_strict() {
        for (text, expected) in [
            ("127.0.0.1", Some([127, 0, 0, 1])),
            ("255.255.255.255", Some([255, 255, 255, 255])),
            ("0.0.0.0", Some([0, 0, 0, 0])),
            ("256.0.0.1", None),
            ("127.1", None),
            ("127.0.0.1.", None),
            ("127.0.0.01", None),
            ("0x7f.0.0.1", None),
            ("1.2.3.4.5", None),
            ("", None),
        ] {
            assert_eq!(
                dotted_quad(text.as_bytes()),
                expected.map(Ipv4Addr::from),
                "{text}"
            );
        }
    }

    #[test]
    fn accept_entries_are_exact_names() {
        assert_eq!(
            accept_entry("CRM-Proxy.internal").as_deref(),
            Ok("crm-proxy.internal")
        );
        for bad in [
            "*",
            "*.example.com",
            "http://x",
            "x:8080",
            "x.",
            "a b",
            "x/y",
        ] {
            assert!(accept_entry(bad).is_err(), "{bad} should be refused");
        }
    }
}
