//! The request body's type (security catalogue K27–K29), judged from the head alone.
//!
//! - **By default:** no rule. Zoho accepts JSON sent as `text/plain` (the Java SDK), with no
//!   type (the Python and Node SDKs) and as `application/x-www-form-urlencoded` (what `curl -d`
//!   and PHP's `CURLOPT_POSTFIELDS` send, as in Zoho's own examples), so all of them are
//!   forwarded. A browser's cross-site form post carries `Origin` and `Sec-Fetch-Site` and is
//!   refused by the browser rule before the body type is looked at.
//! - **With `strict_content_type: true`** ([`strict`]): a request with a body must carry exactly one
//!   `Content-Type`, `application/json` (any case, parameters ignored), or `multipart/form-data`
//!   on an upload operation ([`is_upload`]). A request without a body is not judged.
//!
//! Must not: read the body, or depend on the policy (the upload table is its own, on the raw
//! path, which the policy forwards byte for byte or refuses).

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method};

/// The URL-encoded form type (`curl -d`); refused under `strict_content_type` only.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// The media type JSON bodies need under `strict_content_type`.
pub const JSON: &str = "application/json";

/// The media type uploads take.
pub const MULTIPART: &str = "multipart/form-data";

/// The media type of one `Content-Type` value, without parameters and surrounding spaces.
fn media(value: &HeaderValue) -> &[u8] {
    value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// Why `strict_content_type` refuses a request's body type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictRefusal {
    /// A body and no `Content-Type`.
    Missing,
    /// More than one `Content-Type` field.
    Duplicated,
    /// `multipart/form-data` on an operation that is not an upload.
    MultipartNotUpload,
    /// Any other media type (`text/plain`, `text/json`, `application/jsonx`, …).
    NotJson,
}

impl StrictRefusal {
    /// What is wrong, for the error body (never echoes the header's value).
    pub fn reason(self) -> &'static str {
        match self {
            StrictRefusal::Missing => "the request has a body but no Content-Type",
            StrictRefusal::Duplicated => "the request has more than one Content-Type",
            StrictRefusal::MultipartNotUpload => {
                "multipart/form-data is taken only by upload operations (POST …/Attachments, …/photo, /files, /upload)"
            }
            StrictRefusal::NotJson => "the body's Content-Type is not application/json",
        }
    }
}

/// The `strict_content_type` rule. `has_body`: the request may carry body bytes (not known
/// empty from its head).
pub fn strict(
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    has_body: bool,
) -> Result<(), StrictRefusal> {
    if !has_body {
        return Ok(());
    }
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(StrictRefusal::Missing),
        (Some(_), Some(_)) => return Err(StrictRefusal::Duplicated),
        (Some(v), None) => v,
    };
    let media = media(value);
    if media.eq_ignore_ascii_case(JSON.as_bytes()) {
        Ok(())
    } else if media.eq_ignore_ascii_case(MULTIPART.as_bytes()) {
        if is_upload(method, path) {
            Ok(())
        } else {
            Err(StrictRefusal::MultipartNotUpload)
        }
    } else {
        Err(StrictRefusal::NotJson)
    }
}

/// Whether `method path` is one of Zoho CRM's upload operations, which take
/// `multipart/form-data`: `POST /crm/{version}/{module}/{id}/Attachments`,
/// `…/{module}/{id}/photo`, `…/org/photo`, `…/files` and `…/upload` (bulk write).
pub fn is_upload(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let mut segments = path.split('/');
    let (Some(""), Some("crm"), Some(version)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return false;
    };
    if !version.starts_with('v') || version.len() < 2 {
        return false;
    }
    let rest: Vec<&str> = segments.collect();
    match rest.as_slice() {
        ["files"] | ["upload"] | ["org", "photo"] => true,
        [module, id, "Attachments" | "photo"] => !module.is_empty() && !id.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::test_headers;

    #[test]
    fn strict_takes_json_in_any_spelling_and_refuses_the_rest() {
        let leads = "/crm/v8/Leads";
        let post = Method::POST;
        let judge =
            |pairs: &[(&str, &str)], has_body| strict(&test_headers(pairs), &post, leads, has_body);
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            " application/json ;charset=UTF-8",
        ] {
            assert_eq!(judge(&[("content-type", json)], true), Ok(()), "{json}");
        }
        for (ct, why) in [
            ("text/plain; charset=UTF-8", StrictRefusal::NotJson),
            ("text/plain;charset=UTF-8", StrictRefusal::NotJson),
            ("text/json", StrictRefusal::NotJson),
            ("application/jsonx", StrictRefusal::NotJson),
            ("application/json-patch+json", StrictRefusal::NotJson),
            (FORM, StrictRefusal::NotJson),
            (
                "application/x-www-form-urlencoded; charset=UTF-8",
                StrictRefusal::NotJson,
            ),
            ("", StrictRefusal::NotJson),
            (
                "multipart/form-data; boundary=x",
                StrictRefusal::MultipartNotUpload,
            ),
        ] {
            assert_eq!(judge(&[("content-type", ct)], true), Err(why), "{ct}");
        }
        assert_eq!(judge(&[], true), Err(StrictRefusal::Missing));
        assert_eq!(
            judge(&[("content-type", JSON), ("content-type", JSON)], true),
            Err(StrictRefusal::Duplicated)
        );
        // No body: nothing to judge (GET, DELETE), whatever the headers say.
        assert_eq!(judge(&[], false), Ok(()));
        assert_eq!(judge(&[("content-type", "text/plain")], false), Ok(()));
    }

    #[test]
    fn multipart_is_taken_on_the_upload_operations_only() {
        let multipart = test_headers(&[("content-type", "multipart/form-data; boundary=b")]);
        for path in [
            "/crm/v8/Leads/123/Attachments",
            "/crm/v2.1/Deals/9/Attachments",
            "/crm/v8/Contacts/5/photo",
            "/crm/v8/org/photo",
            "/crm/v8/files",
            "/crm/v8/upload",
        ] {
            assert!(is_upload(&Method::POST, path), "{path}");
            assert_eq!(
                strict(&multipart, &Method::POST, path, true),
                Ok(()),
                "{path}"
            );
        }
        for (method, path) in [
            (Method::PUT, "/crm/v8/Leads/123/Attachments"),
            (Method::GET, "/crm/v8/files"),
            (Method::POST, "/crm/v8/Leads"),
            (Method::POST, "/crm/v8/Leads/123/Attachments/456"),
            (Method::POST, "/crm/v8/Leads/Attachments"),
            (Method::POST, "/crm/v8//1/Attachments"),
            (Method::POST, "/crm/v8/Leads/123/attachments"),
            (Method::POST, "/crm/v8/files/x"),
            (Method::POST, "/crm/files"),
            (Method::POST, "/crm/bulk/v8/upload"),
            (Method::POST, "/x/v8/upload"),
        ] {
            assert!(!is_upload(&method, path), "{method} {path}");
        }
    }
}
