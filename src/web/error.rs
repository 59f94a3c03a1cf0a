//! The one renderer of the proxy's own JSON answers: an error body (`code`, `message`,
//! `status: "error"`, optional `details`) with `x-zoho-proxy-error` naming the code, and the
//! admin listener's JSON documents. Callers own the wording; this owns the shape and headers.

use crate::web::body::{full, ProxyBody};
use crate::web::headers::{harden, no_store};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// Header naming the proxy's own error code, so callers can tell our errors from Zoho's.
pub const ERROR_HEADER: &str = "x-zoho-proxy-error";

/// A JSON error answer: `body` (already holding `code`, `message` and `status`) with the code in
/// [`ERROR_HEADER`] and the hardening headers.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    body: &serde_json::Value,
) -> Response<ProxyBody> {
    let mut response = json(status, serde_json::to_vec(body).unwrap_or_default());
    let headers = response.headers_mut();
    headers.insert(ERROR_HEADER, HeaderValue::from_static(code));
    harden(headers);
    response
}

/// The error body's usual shape: `{"code", "message", "status": "error"}`.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "code": code, "message": message, "status": "error" })
}

/// A JSON document of the admin listener, pretty-printed and never cached.
pub fn document(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = json(status, serde_json::to_vec_pretty(value).unwrap_or_default());
    no_store(response.headers_mut());
    harden(response.headers_mut());
    response
}

fn json(status: StatusCode, bytes: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
