//! What every page of the admin listener shares: escaping, the security headers, the page
//! shell and stylesheet (templates beside this file), the CSRF tokens of the console's forms,
//! and time formatting.
//!
//! Pages are built from escaped parts only: [`esc`] is applied to every value that did not come
//! from this file, including names from proxy.yaml and paths from clients.

use crate::web::body::{full, ProxyBody};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The page shell: `{{title}}` and `{{body}}` are filled in.
const SHELL: &str = include_str!("shell.html");
/// The stylesheet, served at [`STYLESHEET_PATH`] (the CSP forbids inline styles).
pub const STYLESHEET: &str = include_str!("console.css");
/// Where the stylesheet is served.
pub const STYLESHEET_PATH: &str = "/console.css";
/// The console pages' Content-Security-Policy: nothing from elsewhere, no inline script or
/// style, never framed.
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// How long a form's CSRF token stays valid.
pub const CSRF_TTL: Duration = Duration::from_secs(3600);

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{{key}}` markers of a template with already escaped values.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// A page in the shell (`body` is markup built from escaped parts).
pub fn page(title: &str, body: &str) -> String {
    fill(
        SHELL,
        &[
            ("title", &esc(title)),
            ("stylesheet", STYLESHEET_PATH),
            ("body", body),
        ],
    )
}

/// The headers of every console page and asset: not cached, not framed, no `Referer`, no
/// content sniffing, the strict CSP.
pub fn security_headers(headers: &mut http::HeaderMap) {
    page_headers(headers, CSP);
}

pub use crate::web::headers::page_headers;

/// An HTML response with the security headers.
pub fn html(status: StatusCode, markup: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(markup)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(r.headers_mut());
    r
}

/// A short page saying what went wrong.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response<ProxyBody> {
    html(
        status,
        page(
            title,
            &format!(
                "<h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the console</a></p>",
                esc(title),
                esc(text)
            ),
        ),
    )
}

/// The stylesheet response.
pub fn stylesheet() -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from_static(STYLESHEET.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    security_headers(r.headers_mut());
    r
}

/// Issues and checks the CSRF tokens of the console's forms.
///
/// A token is `ISSUED.NONCE.MAC`: the issue time (Unix seconds), a fresh random nonce per page,
/// and an HMAC-SHA256 under a key drawn at start over the form's action, the time and the nonce.
/// It is valid for [`CSRF_TTL`], for that action only, and only in this process. The key never
/// leaves the process; a page from another origin can neither read a token (CSP, same-origin
/// policy) nor forge one.
pub struct Csrf {
    key: [u8; 32],
}

impl Default for Csrf {
    fn default() -> Csrf {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Csrf { key }
    }
}

impl Csrf {
    /// A token for a form posting to `action`, issued at `now_s` (Unix seconds).
    pub fn issue(&self, action: &str, now_s: u64) -> String {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let nonce = hex(&nonce);
        let mac = self.mac(action, now_s, &nonce);
        format!("{now_s}.{nonce}.{mac}")
    }

    /// Whether `token` was issued by [`Csrf::issue`] for `action` less than [`CSRF_TTL`] before
    /// `now_s`.
    pub fn verify(&self, action: &str, token: &str, now_s: u64) -> bool {
        let mut parts = token.split('.');
        let (Some(issued), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(issued) = issued.parse::<u64>() else {
            return false;
        };
        if issued > now_s || now_s - issued >= CSRF_TTL.as_secs() || nonce.len() != 32 {
            return false;
        }
        constant_time_eq(self.mac(action, issued, nonce).as_bytes(), mac.as_bytes())
    }

    fn mac(&self, action: &str, issued: u64, nonce: &str) -> String {
        hex(&hmac_sha256(
            &self.key,
            format!("{action}\n{issued}\n{nonce}").as_bytes(),
        ))
    }
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference (lengths are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `2026-12-01 08:16:42 UTC` for Unix milliseconds.
pub fn utc(unix_ms: u64) -> String {
    let (y, m, d, h, mi, s) = crate::util::clock::utc_fields(unix_ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `1h 02m`, `4m 05s`, `12s` for a number of seconds.
pub fn duration_text(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        let cases: &[(&str, &str)] = &[
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            ("a\"b'c&d", "a&quot;b&#39;c&amp;d"),
            ("plain /crm/v8/Leads", "plain /crm/v8/Leads"),
        ];
        for (input, want) in cases {
            assert_eq!(esc(input), *want, "escape of {input}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_action_time_and_process() {
        let csrf = Csrf::default();
        let t = csrf.issue("/oauth/start", 1_000);
        let cases: &[(&str, &str, String, u64, bool)] = &[
            ("fresh token", "/oauth/start", t.clone(), 1_000, true),
            (
                "just before expiry",
                "/oauth/start",
                t.clone(),
                1_000 + 3599,
                true,
            ),
            ("expired", "/oauth/start", t.clone(), 1_000 + 3600, false),
            (
                "issued in the future",
                "/oauth/start",
                t.clone(),
                999,
                false,
            ),
            ("other action", "/explain", t.clone(), 1_000, false),
            ("empty", "/oauth/start", String::new(), 1_000, false),
            ("garbage", "/oauth/start", "1000.x.y".into(), 1_000, false),
            (
                "tampered time",
                "/oauth/start",
                t.replacen("1000.", "1001.", 1),
                1_001,
                false,
            ),
            (
                "other process",
                "/oauth/start",
                Csrf::default().issue("/oauth/start", 1_000),
                1_000,
                false,
            ),
        ];
        for (name, action, token, now, want) in cases {
            assert_eq!(csrf.verify(action, token, *now), *want, "{name}");
        }
        assert_ne!(
            csrf.issue("/oauth/start", 1_000),
            t,
            "every page gets its own token"
        );
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2 uses the key "Jefe"; pad it the way HMAC does (zeros).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_112_202_000), "2026-12-01 08:03:22 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(duration_text(3725), "1h 02m");
        assert_eq!(duration_text(245), "4m 05s");
        assert_eq!(duration_text(9), "9s");
    }
}
