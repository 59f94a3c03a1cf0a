//! Canonical request form: which methods are classified, which request targets and paths are
//! accepted byte for byte, and which query strings are refused (method overrides).
//!
//! The rule is *reject, never normalise*: a path that is not already canonical gets a 400 that
//! names the problem, so the bytes that are checked are the bytes that are forwarded. Owns no
//! scope knowledge; must not allocate on the accepted path.

use http::{Method, StatusCode, Uri};

use super::Rejection;

/// The methods the classifier knows. Anything else (lower-case `get`, OPTIONS, TRACE, CONNECT,
/// extension methods) is refused with 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub(crate) fn from_method(method: &Method) -> Option<Verb> {
        // `Method` compares exactly, so `get` (an extension method) does not equal GET.
        if *method == Method::GET {
            Some(Verb::Get)
        } else if *method == Method::HEAD {
            Some(Verb::Head)
        } else if *method == Method::POST {
            Some(Verb::Post)
        } else if *method == Method::PUT {
            Some(Verb::Put)
        } else if *method == Method::PATCH {
            Some(Verb::Patch)
        } else if *method == Method::DELETE {
            Some(Verb::Delete)
        } else {
            None
        }
    }

    /// Exact upper-case spelling, for composite sub-requests.
    pub(crate) fn from_str_exact(text: &str) -> Option<Verb> {
        match text {
            "GET" => Some(Verb::Get),
            "POST" => Some(Verb::Post),
            "PUT" => Some(Verb::Put),
            "PATCH" => Some(Verb::Patch),
            "DELETE" => Some(Verb::Delete),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }
}

pub(crate) fn method_not_allowed(method: &Method) -> Rejection {
    let shown: String = method.as_str().chars().take(32).collect();
    Rejection {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "PROXY_METHOD_NOT_ALLOWED",
        message: format!(
            "method `{}` is not supported; use GET, HEAD, POST, PUT, PATCH or DELETE (methods are case-sensitive)",
            super::scope::sanitize(&shown)
        ),
    }
}

fn bad_target() -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_TARGET",
        message:
            "the request target must be a path such as /crm/v8/Leads (origin-form); absolute URLs, \
                  authority-form targets and `*` are not accepted"
                .to_string(),
    }
}

pub(crate) fn bad_path(message: String) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_PATH",
        message,
    }
}

/// Origin-form only: no scheme, no authority, not `*`, starts with `/`.
pub(crate) fn check_target(uri: &Uri) -> Result<(), Rejection> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(bad_target());
    }
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(bad_target());
    }
    Ok(())
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Whether a byte may appear in a canonical path segment.
fn segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Checks that `path` is canonical: `/`-separated non-empty segments of `[A-Za-z0-9_.-]`, no dot
/// segments, no trailing slash (except the root `/`). Names the first problem found.
pub(crate) fn check_path(path: &str) -> Result<(), Rejection> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(bad_path(
            "the path must start with `/`, e.g. /crm/v8/Leads".to_string(),
        ));
    }
    for &b in bytes {
        if b == b'/' || segment_byte(b) {
            continue;
        }
        let message = match b {
            b'%' => "the path contains percent-encoding (`%`); CRM paths are API names, digits and fixed words: \
                     send them unencoded"
                .to_string(),
            b'\\' => "the path contains a backslash; use `/` between segments and no backslash".to_string(),
            b if !b.is_ascii() => {
                "the path contains a non-ASCII byte; CRM paths are ASCII API names, digits and fixed words".to_string()
            }
            b if b.is_ascii_control() || b == b' ' => format!(
                "the path contains a control character or space ({}); remove it",
                describe_byte(b)
            ),
            b => format!(
                "the path contains {}, which is not allowed; path segments may contain only letters, digits, \
                 `_`, `-` and `.`",
                describe_byte(b)
            ),
        };
        return Err(bad_path(message));
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(bad_path(
            "the path ends with `/`; remove the trailing slash (e.g. /crm/v8/Leads)".to_string(),
        ));
    }
    for segment in slash_split(&path[1..]) {
        if segment.is_empty() {
            return Err(bad_path(
                "the path contains an empty segment (`//`); use single slashes".to_string(),
            ));
        }
        if segment.bytes().all(|b| b == b'.') {
            return Err(bad_path(
                "the path contains a dot segment (`.` or `..`); send the resolved path".to_string(),
            ));
        }
    }
    Ok(())
}

/// The method-override parameter names, with every non-alphanumeric byte removed and lower-cased:
/// `_method`, `X-HTTP-Method-Override`, `x_http_method`, `X-Method-Override`, ...
const OVERRIDE_NAMES: &[&[u8]] = &[
    b"method",
    b"xhttpmethodoverride",
    b"xhttpmethod",
    b"xmethodoverride",
    b"httpmethodoverride",
    b"httpmethod",
    b"methodoverride",
];

/// Longest normalised override name; anything longer after normalising cannot match.
const MAX_OVERRIDE: usize = 19;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes once into `out`; returns whether anything was decoded.
fn decode_once(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                changed = true;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    changed
}

/// Whether a query parameter name is a method override in any spelling: any case, `-`/`_`/`+`
/// or other separators, percent-encoded (also repeatedly).
pub(crate) fn is_override_name(name: &[u8]) -> bool {
    // Fast path, no allocation: nothing to decode.
    if !name.contains(&b'%') {
        return matches_override(name);
    }
    let mut current = name.to_vec();
    let mut next = Vec::with_capacity(current.len());
    for _ in 0..8 {
        if matches_override(&current) {
            return true;
        }
        if !decode_once(&current, &mut next) {
            return false;
        }
        std::mem::swap(&mut current, &mut next);
    }
    // Still decoding after eight rounds: treat as an override attempt.
    true
}

fn matches_override(name: &[u8]) -> bool {
    let mut buf = [0u8; MAX_OVERRIDE];
    let mut len = 0;
    for &b in name {
        if b.is_ascii_alphanumeric() {
            if len == MAX_OVERRIDE {
                return false;
            }
            buf[len] = b.to_ascii_lowercase();
            len += 1;
        }
    }
    OVERRIDE_NAMES.iter().any(|n| *n == &buf[..len])
}

pub(crate) fn method_override_rejection(where_: &str) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_QUERY",
        message: format!(
            "{where_} carries a method-override parameter (`_method`, `X-HTTP-Method-Override`, ...); the \
             proxy decides on the request-line method only: send the real method instead"
        ),
    }
}

/// Refuses a query string that carries a method-override parameter. Parameters are split on
/// `&` and `;` (some servers accept both); the query is otherwise forwarded unchanged.
pub(crate) fn check_query(query: &str) -> Result<(), Rejection> {
    for param in query.split(['&', ';']) {
        let name = param.split('=').next().unwrap_or("");
        if is_override_name(name.as_bytes()) {
            return Err(method_override_rejection("the query string"));
        }
    }
    Ok(())
}

/// Where a CRM path lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Area {
    /// `/crm/{version}/...`
    Crm,
    /// `/crm/bulk/{version}/...`
    Bulk,
    /// `/crm/email/{version}/...`
    Email,
}

/// The result of locating a canonical path in the API.
// Kept on the stack on purpose: boxing the segments would allocate on every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Located<'p> {
    /// A CRM path: the area and the segments after the version.
    Crm(Area, Segments<'p>),
    /// Under `/crm/` but not a shape the proxy knows (no version, unknown prefix).
    UnknownCrm,
    /// Outside `/crm`.
    NotCrm,
}

/// The most segments after the version the classifier looks at; deeper paths are unknown.
pub(crate) const MAX_SEGMENTS: usize = 12;

/// Up to [`MAX_SEGMENTS`] borrowed path segments, without allocating.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segments<'p> {
    items: [&'p str; MAX_SEGMENTS],
    len: usize,
}

impl<'p> Segments<'p> {
    pub(crate) fn as_slice(&self) -> &[&'p str] {
        &self.items[..self.len]
    }
}

/// Whether `segment` is an API version: `v2`, `v2.1`, `v8`, `v10`, `v123.45` (no leading zero,
/// at least v2).
pub(crate) fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let (major, minor) = match rest.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || major.starts_with('0') || major == "1" {
        return false;
    }
    minor.is_none_or(digits)
}

/// A fixed word that differs from `expected` only in letter case: the ambiguous 400.
pub(crate) fn ambiguous(segment: &str, expected: &str) -> Rejection {
    let shown: String = segment.chars().take(64).collect();
    bad_path(format!(
        "path segment `{shown}` differs only in letter case from the fixed word `{expected}`; fixed words are \
         case-sensitive: write `{expected}`"
    ))
}

fn bad_version(segment: &str) -> Rejection {
    let shown: String = segment.chars().take(16).collect();
    bad_path(format!(
        "API version `{shown}` must be written in lower case, e.g. `{}`",
        shown.to_ascii_lowercase()
    ))
}

/// `text.split('/')` as a plain byte loop: CRM path segments are a few bytes long, where the
/// `char` searcher's set-up costs more than the scan (hot path: two splits a request).
fn slash_split(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Splits a canonical path (already checked) into its area and the segments after the version.
pub(crate) fn locate(path: &str) -> Result<Located<'_>, Rejection> {
    let mut parts = slash_split(&path[1..]);
    let first = parts.next().unwrap_or("");
    if first != "crm" {
        if let Some(product) = super::products::by_prefix_ignoring_case(first) {
            if product.prefix != first {
                return Err(ambiguous(first, product.prefix));
            }
        }
        return Ok(Located::NotCrm);
    }
    let Some(second) = parts.next() else {
        return Ok(Located::UnknownCrm);
    };
    let area = if is_version(second) {
        Area::Crm
    } else {
        let area = match second {
            "bulk" => Area::Bulk,
            "email" => Area::Email,
            other => {
                if other.eq_ignore_ascii_case("bulk") {
                    return Err(ambiguous(other, "bulk"));
                }
                if other.eq_ignore_ascii_case("email") {
                    return Err(ambiguous(other, "email"));
                }
                if is_version(&other.to_ascii_lowercase()) {
                    return Err(bad_version(other));
                }
                return Ok(Located::UnknownCrm);
            }
        };
        match parts.next() {
            Some(v) if is_version(v) => area,
            Some(v) if is_version(&v.to_ascii_lowercase()) => return Err(bad_version(v)),
            _ => return Ok(Located::UnknownCrm),
        }
    };
    let mut segments = Segments {
        items: [""; MAX_SEGMENTS],
        len: 0,
    };
    for part in parts {
        if segments.len == MAX_SEGMENTS {
            return Ok(Located::UnknownCrm);
        }
        segments.items[segments.len] = part;
        segments.len += 1;
    }
    if segments.len == 0 {
        return Ok(Located::UnknownCrm);
    }
    Ok(Located::Crm(area, segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_split_splits_as_str_split() {
        for text in [
            "",
            "/",
            "a",
            "a/b",
            "/a/",
            "crm/v8/Leads/123",
            "a//b",
            "é/ü/x",
            "///",
        ] {
            assert_eq!(
                slash_split(text).collect::<Vec<_>>(),
                text.split('/').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }

    /// (path, Ok(()) or Err(substring of message))
    const PATH_CASES: &[(&str, Result<(), &str>)] = &[
        ("/crm/v8/Leads", Ok(())),
        ("/crm/v2.1/Leads/123", Ok(())),
        ("/", Ok(())),
        ("/crm/v8/Leads/", Err("trailing slash")),
        ("/crm/v8//Leads", Err("empty segment")),
        ("//crm/v8/Leads", Err("empty segment")),
        ("/crm/v8/Leads/../Contacts", Err("dot segment")),
        ("/crm/v8/Leads/./x", Err("dot segment")),
        ("/crm/v8/Leads/...", Err("dot segment")),
        ("/crm/v8/Leads/%2e%2e/Contacts", Err("percent-encoding")),
        ("/crm/v8/Leads\\..\\Contacts", Err("backslash")),
        ("/crm/v8/Leads;x=1", Err("`;`")),
        ("/crm/v8/Leads:1", Err("`:`")),
        ("/crm/v8/Le@ds", Err("`@`")),
        ("/crm/v8/Leads,Contacts", Err("`,`")),
        ("/crm/v8/Leads=", Err("`=`")),
        ("/crm/v8/Leads+", Err("`+`")),
        ("/crm/v8/Leads!", Err("`!`")),
        ("/crm/v8/Leads$", Err("`$`")),
        ("/crm/v8/Leads'", Err("`'`")),
        ("/crm/v8/(Leads)", Err("`(`")),
        ("/crm/v8/Leads*", Err("`*`")),
        ("/crm/v8/Leads~", Err("`~`")),
        ("/crm/v8/Leads\u{7f}", Err("byte 0x7f")),
        ("/crm/v8/Leads\n", Err("byte 0x0a")),
        ("/crm/v8/Lé", Err("non-ASCII")),
        ("crm/v8/Leads", Err("start with `/`")),
    ];

    #[test]
    fn path_table() {
        for (path, expected) in PATH_CASES {
            match (expected, check_path(path)) {
                (Ok(()), Ok(())) => {}
                (Err(needle), Err(r)) => {
                    assert_eq!(r.status, StatusCode::BAD_REQUEST, "case {path:?}: status");
                    assert!(
                        r.message.contains(needle),
                        "case {path:?}: message {:?} should contain {needle:?}",
                        r.message
                    );
                    assert!(
                        !r.message.contains('\n'),
                        "case {path:?}: message never echoes control bytes"
                    );
                }
                (exp, got) => panic!("case {path:?}: expected {exp:?}, got {got:?}"),
            }
        }
    }

    const QUERY_CASES: &[(&str, bool)] = &[
        ("fields=Last_Name&per_page=2", true),
        ("", true),
        ("_method=DELETE", false),
        ("a=1&X-HTTP-Method-Override=DELETE", false),
        ("x-http-method=PUT", false),
        ("X-Method-Override=PUT", false),
        ("%5Fmethod=DELETE", false),
        ("%255Fmethod=DELETE", false),
        ("x%2Dhttp%2Dmethod%2Doverride=1", false),
        ("a=1;_method=DELETE", false),
        ("_METHOD", false),
        ("x_http_method_override=DELETE", false),
        ("methods=1", true),
        ("criteria=(Method:equals:x)", true),
    ];

    #[test]
    fn query_table() {
        for (query, ok) in QUERY_CASES {
            assert_eq!(check_query(query).is_ok(), *ok, "case {query:?}");
        }
    }

    const VERSION_CASES: &[(&str, bool)] = &[
        ("v2", true),
        ("v2.1", true),
        ("v8", true),
        ("v10", true),
        ("v999.999", true),
        ("v1", false),
        ("v", false),
        ("V8", false),
        ("v8x", false),
        ("8", false),
        ("v08", false),
        ("v1000", false),
        ("v8.", false),
    ];

    #[test]
    fn version_table() {
        for (v, ok) in VERSION_CASES {
            assert_eq!(is_version(v), *ok, "case {v:?}");
        }
    }
}
