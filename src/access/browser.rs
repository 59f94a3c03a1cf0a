//! Browser markers: was this request sent by a browser on behalf of a web page?
//!
//! A page can make the operator's browser send "simple" cross-site requests (a `no-cors` fetch,
//! an HTML form post) that need no CORS preflight, so CORS cannot protect a local API. Browsers
//! mark such requests: `Origin` (every cross-origin request except a GET navigation, and every
//! POST) and the Fetch Metadata header `Sec-Fetch-Site`. Programs (curl, SDKs, Node's fetch) send
//! neither; Node's fetch sends `Sec-Fetch-Mode: cors` alone, which is therefore not a signal.
//! Pure: no I/O.

use http::{HeaderMap, HeaderName, Method};

/// `Sec-Fetch-Site` (parsed once, at compile time).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// What the browser rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserFinding {
    /// No browser marker, or only the typed-URL marker `Sec-Fetch-Site: none`.
    NotABrowserPage,
    /// A page asked for this request: refuse.
    PageRequest(&'static str),
}

fn values(
    headers: &HeaderMap,
    name: impl http::header::AsHeaderName,
) -> impl Iterator<Item = &[u8]> {
    headers.get_all(name).iter().map(|v| v.as_bytes())
}

/// The data listener's rule: refuse any `Origin` (any value, `null` included), any
/// `Sec-Fetch-Site` but `none`, and any CORS preflight header.
pub fn data_listener(headers: &HeaderMap) -> BrowserFinding {
    if headers.contains_key(http::header::ORIGIN) {
        return BrowserFinding::PageRequest("the request carries an Origin header");
    }
    if values(headers, SEC_FETCH_SITE).any(|v| !v.eq_ignore_ascii_case(b"none")) {
        return BrowserFinding::PageRequest("the request carries Sec-Fetch-Site from a web page");
    }
    if preflight(headers) {
        return BrowserFinding::PageRequest("the request is a CORS preflight");
    }
    BrowserFinding::NotABrowserPage
}

fn preflight(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|n| n.as_str().starts_with("access-control-request-"))
}

/// The admin listener's rule, decided for the whole listener (so a route added later is covered):
///
/// - no marker at all (curl, kubelet, Prometheus, an old browser): allowed;
/// - from the admin's own origin (`Sec-Fetch-Site: same-origin`, whatever `Origin` says; or
///   `Sec-Fetch-Site` absent or `none` with any `Origin` equal to `http://<Host>`): allowed, POSTs
///   included (the console's forms; each carries a CSRF token its handler checks);
/// - cross-site or same-site: only the top-level `GET /oauth/callback` navigation that Zoho's
///   consent page redirects to (no `Origin`, mode `navigate`, destination `document`);
/// - anything else, `Origin: null` and every CORS preflight: refused.
pub fn admin_listener(
    method: &Method,
    path: &str,
    host: Option<&[u8]>,
    headers: &HeaderMap,
) -> BrowserFinding {
    if preflight(headers) {
        return BrowserFinding::PageRequest("the request is a CORS preflight");
    }
    let mut origins = values(headers, http::header::ORIGIN);
    let origin = origins.next();
    if origins.next().is_some() {
        return BrowserFinding::PageRequest("the request carries more than one Origin header");
    }
    let mut sites = values(headers, SEC_FETCH_SITE);
    let site = sites.next();
    if sites.next().is_some() {
        return BrowserFinding::PageRequest("the request carries more than one Sec-Fetch-Site");
    }
    let same_origin = |o: &[u8]| {
        let Some(host) = host else { return false };
        o.len() == host.len() + 7
            && o[..7].eq_ignore_ascii_case(b"http://")
            && o[7..].eq_ignore_ascii_case(host)
    };
    // `Sec-Fetch-Site` is computed by the browser and cannot be set by a page: `same-origin` is
    // authoritative. The console's own form posts carry `Origin: null` with it, because its pages
    // send `Referrer-Policy: no-referrer`.
    let site_same_origin = site.is_some_and(|s| s.eq_ignore_ascii_case(b"same-origin"));
    if let Some(o) = origin.filter(|_| !site_same_origin) {
        if !same_origin(o) {
            return BrowserFinding::PageRequest(
                "the request comes from a page of another origin (or Origin: null)",
            );
        }
    }
    match site {
        None => BrowserFinding::NotABrowserPage,
        Some(s) if s.eq_ignore_ascii_case(b"none") || s.eq_ignore_ascii_case(b"same-origin") => {
            BrowserFinding::NotABrowserPage
        }
        Some(s)
            if (s.eq_ignore_ascii_case(b"cross-site") || s.eq_ignore_ascii_case(b"same-site"))
                && origin.is_none()
                && *method == Method::GET
                && path == "/oauth/callback"
                && single_is(headers, "sec-fetch-mode", b"navigate")
                && single_is(headers, "sec-fetch-dest", b"document") =>
        {
            BrowserFinding::NotABrowserPage
        }
        Some(_) => BrowserFinding::PageRequest(
            "the request comes from a page of another site; only the OAuth callback navigation may",
        ),
    }
}

/// The header is present exactly once, with this value.
fn single_is(headers: &HeaderMap, name: &'static str, expected: &[u8]) -> bool {
    let mut all = values(headers, name);
    matches!((all.next(), all.next()), (Some(v), None) if v.eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        crate::access::test_headers(pairs)
    }

    #[test]
    fn data_listener_refuses_every_page_marker() {
        let refused: &[&[(&str, &str)]] = &[
            &[("origin", "http://127.0.0.2:7777")],
            &[("origin", "null")],
            &[("origin", "http://localhost:8080")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "foo")],
            &[
                ("sec-fetch-site", "none"),
                ("origin", "https://attacker.example"),
            ],
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            &[("access-control-request-method", "POST")],
            &[("access-control-request-private-network", "true")],
        ];
        for case in refused {
            assert!(
                matches!(
                    data_listener(&headers(case)),
                    BrowserFinding::PageRequest(_)
                ),
                "{case:?} should be refused"
            );
        }
    }

    #[test]
    fn data_listener_lets_programs_and_typed_urls_through() {
        let allowed: &[&[(&str, &str)]] = &[
            &[],
            &[
                ("sec-fetch-mode", "cors"),
                ("user-agent", "node"),
                ("accept-language", "*"),
            ],
            &[("sec-fetch-mode", "navigate")],
            &[
                ("sec-fetch-site", "none"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            &[("content-type", "text/plain; charset=UTF-8")],
        ];
        for case in allowed {
            assert_eq!(
                data_listener(&headers(case)),
                BrowserFinding::NotABrowserPage,
                "{case:?} should pass"
            );
        }
    }

    #[test]
    fn admin_listener_rules_per_shape() {
        let host = Some(&b"127.0.0.1:9901"[..]);
        let callback = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
            ("sec-fetch-user", "?1"),
        ];
        type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            // The console's form posts under Referrer-Policy: no-referrer.
            (
                Method::POST,
                "/oauth/start",
                &[("origin", "null"), ("sec-fetch-site", "same-origin")],
                true,
            ),
            (Method::POST, "/oauth/start", &[("origin", "null")], false),
            (Method::GET, "/status", &[], true),
            (
                Method::GET,
                "/status",
                &[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")],
                true,
            ),
            (Method::GET, "/", &[("sec-fetch-site", "same-origin")], true),
            (
                Method::POST,
                "/oauth/start",
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "http://127.0.0.1:9901"),
                ],
                true,
            ),
            (
                Method::POST,
                "/oauth/start",
                &[("origin", "http://127.0.0.1:9901")],
                true,
            ),
            (Method::GET, "/oauth/callback", &callback, true),
            (
                Method::GET,
                "/status",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-dest", "script"),
                ],
                false,
            ),
            (
                Method::GET,
                "/status",
                &[("sec-fetch-site", "same-site")],
                false,
            ),
            (Method::GET, "/status", &[("origin", "null")], false),
            (
                Method::GET,
                "/status",
                &[("origin", "https://attacker.example")],
                false,
            ),
            (
                Method::POST,
                "/oauth/start",
                &[
                    ("origin", "http://127.0.0.1:7777"),
                    ("sec-fetch-site", "same-site"),
                ],
                false,
            ),
            (Method::GET, "/oauth/start", &callback, false),
            (
                Method::GET,
                "/oauth/callback",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "no-cors"),
                    ("sec-fetch-dest", "image"),
                ],
                false,
            ),
            (
                Method::GET,
                "/oauth/callback",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "iframe"),
                ],
                false,
            ),
            (
                Method::GET,
                "/oauth/callback",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "cors"),
                    ("sec-fetch-dest", "empty"),
                ],
                false,
            ),
            (
                Method::OPTIONS,
                "/status",
                &[
                    ("origin", "http://127.0.0.1:9901"),
                    ("access-control-request-method", "POST"),
                ],
                false,
            ),
        ];
        for (method, path, pairs, allowed) in cases {
            let got = admin_listener(method, path, host, &headers(pairs));
            assert_eq!(
                got == BrowserFinding::NotABrowserPage,
                *allowed,
                "{method} {path} {pairs:?}: {got:?}"
            );
        }
    }
}
