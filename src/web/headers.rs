//! The security headers of the proxy's own answers, set in one place: every answer can neither
//! be sniffed into a script nor loaded cross-origin ([`harden`]); pages and private answers are
//! not cached ([`no_store`]); pages are not framed and leak no `Referer` ([`page_headers`]).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Content-Type-Options` (names parsed once, at compile time: the hot path only hashes them).
const NOSNIFF_NAME: HeaderName = HeaderName::from_static("x-content-type-options");
/// `Cross-Origin-Resource-Policy`.
const CORP_NAME: HeaderName = HeaderName::from_static("cross-origin-resource-policy");

/// Adds the headers every response of the proxy's listeners carries: a page can neither sniff
/// one into a script or style nor load one as a cross-origin subresource.
pub fn harden(headers: &mut HeaderMap) {
    headers.insert(NOSNIFF_NAME, HeaderValue::from_static("nosniff"));
    headers.insert(CORP_NAME, HeaderValue::from_static("same-origin"));
}

/// `Cache-Control: no-store`.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The headers of an HTML page of the admin listener: not cached, not framed, no `Referer`, no
/// content sniffing, and the page's Content-Security-Policy.
pub fn page_headers(headers: &mut HeaderMap, csp: &'static str) {
    no_store(headers);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(NOSNIFF_NAME, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_helper_sets_its_headers() {
        let mut h = HeaderMap::new();
        harden(&mut h);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        let mut p = HeaderMap::new();
        page_headers(&mut p, "default-src 'none'");
        for (name, value) in [
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("content-security-policy", "default-src 'none'"),
        ] {
            assert_eq!(p[name], value, "{name}");
        }
    }
}
