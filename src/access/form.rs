//! Form-encoded request bodies (security catalogue K28): refused on every operation.
//!
//! `application/x-www-form-urlencoded` is one of the three body types a web page may send to any
//! origin without a preflight. Zoho's CRM API takes JSON (and `multipart/form-data` for uploads),
//! never a URL-encoded form, so no program needs it here and refusing it closes the plain HTML
//! form (`<form method=POST>`) route of cross-site request forgery for browsers that send neither
//! `Origin` nor `Sec-Fetch-*` (Firefox before 70 on a POST). `text/plain` and a body without a
//! type stay accepted: Zoho's Java, Python and Node SDKs send those (K27).
//!
//! Must not: read the body, or judge any other media type.

use http::header::CONTENT_TYPE;
use http::HeaderMap;

/// The media type refused.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// Whether any `Content-Type` of the request names a URL-encoded form (the media type compared
/// without case, parameters and surrounding spaces ignored).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_TYPE).iter().any(|v| {
        let media = v
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(FORM.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::test_headers;

    #[test]
    fn url_encoded_forms_are_recognised_in_every_spelling_and_nothing_else() {
        for form in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "  application/x-www-form-urlencoded ;charset=utf-8",
        ] {
            assert!(is_form(&test_headers(&[("content-type", form)])), "{form}");
        }
        // A second Content-Type naming a form is a form too.
        assert!(is_form(&test_headers(&[
            ("content-type", "application/json"),
            ("content-type", FORM),
        ])));
        for other in [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain; charset=UTF-8",
            "text/plain;charset=UTF-8",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencodedx",
            "",
        ] {
            assert!(
                !is_form(&test_headers(&[("content-type", other)])),
                "{other}"
            );
        }
        assert!(!is_form(&HeaderMap::new()), "no Content-Type");
    }
}
