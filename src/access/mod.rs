//! Who may use the proxy: the requester checks in front of `proxy/` and `admin`, like kubectl
//! proxy's filter.
//!
//! The local machine is not a trust boundary: any web page in the operator's browser can send
//! requests to `127.0.0.1`, DNS rebinding lets a page read the answers, and an SSRF bug in a
//! co-located app lets a remote attacker send them. In order, for every request:
//! 1. the request target must be origin-form and `Host` must name this machine ([`host`]; TCP
//!    listeners only: browsers cannot dial a Unix socket);
//! 2. no browser marker ([`browser`]);
//! 3. with `require_request_header`, exactly one `X-Zoho-Proxy-Request: true`;
//! 4. with `clients:`, the request must identify a client ([`clients`]);
//! 5. on the proxy listeners, with `strict_content_type`, the body's type ([`body_type`]): JSON
//!    (or multipart on an upload) only. Without it any type is forwarded, a URL-encoded form
//!    included: browsers are refused by rule 2, not by the body's type.
//!
//! Every check reads only the request head: a refusal answers before the body is read and never
//! touches the token. Knows nothing about tokens or Zoho.

pub mod body_type;
pub mod browser;
pub mod clients;

use crate::config::{AccessConfig, Config};
use crate::web::host::{HostProblem, HostRule};
pub use browser::BrowserFinding;
pub use clients::{Client, ClientSet, PeerCred, Unidentified, KEY_HEADER};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use serde_json::json;

/// The SSRF header `require_request_header` asks for.
pub const REQUEST_HEADER: &str = "x-zoho-proxy-request";

pub use crate::config::ANONYMOUS;

/// How a connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// A Unix socket, with the peer's credentials when the kernel gave them.
    Unix(Option<PeerCred>),
}

impl Transport {
    fn peer(self) -> Option<PeerCred> {
        match self {
            Transport::Unix(peer) => peer,
            Transport::Tcp => None,
        }
    }
}

/// A refused request: status, stable code, what to fix, and which rule refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 401, 403, 412 or 415.
    pub status: StatusCode,
    /// `PROXY_HOST_NOT_ALLOWED`, `PROXY_BAD_HOST`, `PROXY_BROWSER_REQUEST`, ….
    pub code: &'static str,
    /// What to fix (never echoes the Host, Origin or a key).
    pub message: String,
    /// The rule, for the log and metrics: `host`, `browser`, `request_header`, `client`,
    /// `content_type`.
    pub rule: &'static str,
}

impl Refusal {
    /// The JSON body: `{"code", "message", "status": "error", "details": {"rule"}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "code": self.code,
            "message": self.message,
            "status": "error",
            "details": { "rule": self.rule },
        })
    }

    /// The refusal as the listener's answer (the proxy's JSON error shape).
    pub fn into_response(self) -> http::Response<crate::web::body::ProxyBody> {
        crate::web::error::error_response(self.status, self.code, &self.body())
    }
}

/// Whether a Unix-socket peer may connect under `unix.allowed_uids` (`allowed`; empty: any
/// peer the socket's mode admits). A peer whose credentials the kernel did not give is refused
/// when a list is set.
pub fn peer_allowed(allowed: &[u32], peer: Option<PeerCred>) -> bool {
    allowed.is_empty() || peer.is_some_and(|p| allowed.contains(&p.uid))
}

/// The requester checks of one config snapshot.
#[derive(Debug)]
pub struct Gate {
    host: HostRule,
    require_request_header: bool,
    strict_content_type: bool,
    clients: ClientSet,
}

/// What the requester checks read of a request: its head, and whether a body may follow.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// How it arrived.
    pub transport: Transport,
    /// The method.
    pub method: &'a Method,
    /// The request target as received.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The header fields.
    pub headers: &'a HeaderMap,
    /// Body bytes may follow (the head does not say the body is empty).
    pub has_body: bool,
}

impl Gate {
    /// Builds the checks from validated config.
    pub fn new(access: &AccessConfig) -> Gate {
        Gate {
            host: HostRule {
                accept: access.accept_hosts.clone(),
                any: access.allow_any_host,
            },
            require_request_header: access.require_request_header,
            strict_content_type: access.strict_content_type,
            clients: ClientSet::new(&access.clients),
        }
    }

    /// The configured clients.
    pub fn clients(&self) -> &ClientSet {
        &self.clients
    }

    /// Checks a request to the proxy listeners. `Ok(Some(i))`: client `i` of
    /// [`clients`](Self::clients); `Ok(None)`: no `clients:` configured.
    pub fn check_data(&self, head: Head<'_>) -> Result<Option<usize>, Refusal> {
        let headers = head.headers;
        if head.transport == Transport::Tcp {
            self.check_host(head.uri, head.version, headers)?;
        }
        if let BrowserFinding::PageRequest(why) = browser::data_listener(headers) {
            return Err(browser_refusal(why, "the proxy listener"));
        }
        if self.require_request_header {
            const NAME: http::HeaderName = http::HeaderName::from_static(REQUEST_HEADER);
            let mut values = headers.get_all(NAME).iter();
            let ok = matches!((values.next(), values.next()), (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"true"));
            if !ok {
                return Err(Refusal {
                    status: StatusCode::PRECONDITION_FAILED,
                    code: "PROXY_REQUEST_HEADER_REQUIRED",
                    message: "this proxy requires the header `X-Zoho-Proxy-Request: true` (exactly once) on every request (require_request_header: true); add it to your client".into(),
                    rule: "request_header",
                });
            }
        }
        let client = if self.clients.enabled() {
            let client = self
                .clients
                .identify(headers, head.transport.peer())
                .map_err(|_| Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    code: "PROXY_CLIENT_UNAUTHENTICATED",
                    message: "this proxy serves identified clients only: send your client key as `Authorization: Bearer <key>`, `Authorization: Zoho-oauthtoken <key>` or `X-Zoho-Proxy-Key: <key>`".into(),
                    rule: "client",
                })?;
            Some(client)
        } else {
            None
        };
        self.check_body_type(head)?;
        Ok(client)
    }

    /// The body-type rule ([`body_type`]), under `strict_content_type` only.
    fn check_body_type(&self, head: Head<'_>) -> Result<(), Refusal> {
        let refusal = |message: String| Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "PROXY_CONTENT_TYPE_NOT_ALLOWED",
            message,
            rule: "content_type",
        };
        if !self.strict_content_type {
            return Ok(());
        }
        body_type::strict(head.headers, head.method, head.uri.path(), head.has_body).map_err(|why| {
            refusal(format!(
                "{} (strict_content_type: true): send the body as JSON with `Content-Type: {}`, or `{}` to an upload operation",
                why.reason(),
                body_type::JSON,
                body_type::MULTIPART,
            ))
        })
    }

    /// Checks a request to the admin listener: the same Host rule, and the admin's browser rule
    /// ([`browser::admin_listener`]) for the whole listener.
    pub fn check_admin(
        &self,
        transport: Transport,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        if transport == Transport::Tcp {
            self.check_host(uri, version, headers)?;
        }
        let host = headers.get(http::header::HOST).map(|h| h.as_bytes());
        match browser::admin_listener(method, uri.path(), host, headers) {
            BrowserFinding::NotABrowserPage => Ok(()),
            BrowserFinding::PageRequest(why) => Err(browser_refusal(why, "the admin listener")),
        }
    }

    fn check_host(&self, uri: &Uri, version: Version, headers: &HeaderMap) -> Result<(), Refusal> {
        let bad = |message: &str| Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "PROXY_BAD_HOST",
            message: message.to_string(),
            rule: "host",
        };
        // The target's authority would win over Host (RFC 9112 §3.2.2): never decide on one of
        // two names.
        if uri.authority().is_some() || uri.scheme().is_some() {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "PROXY_BAD_TARGET",
                message: "the request target must be a path such as /crm/v8/Leads (origin-form); absolute URLs and authority-form targets are not accepted".into(),
                rule: "host",
            });
        }
        let mut hosts = headers.get_all(http::header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) if version <= Version::HTTP_10 => Ok(()),
            (None, _) => Err(bad("HTTP/1.1 requests must carry a Host header")),
            (Some(_), Some(_)) => Err(bad("the request carries more than one Host header")),
            (Some(value), None) => match self.host.check(value.as_bytes()) {
                Ok(()) => Ok(()),
                Err(HostProblem::Malformed(why)) => Err(bad(why)),
                Err(HostProblem::NotAllowed) => Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    code: "PROXY_HOST_NOT_ALLOWED",
                    message: "the Host header names this proxy by a name it does not answer to (a page using DNS rebinding would); use localhost or 127.0.0.1, or list the name in accept_hosts: in proxy.yaml".into(),
                    rule: "host",
                }),
            },
        }
    }
}

/// Warns when the Host check is switched off (at start and on every reload).
pub fn warn_if_open(config: &Config) {
    if config.access.allow_any_host {
        tracing::warn!("allow_any_host: true: the Host check is off, so a web page using DNS rebinding can read this proxy's answers; list names in accept_hosts instead");
    }
}

fn browser_refusal(why: &str, listener: &str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        code: "PROXY_BROWSER_REQUEST",
        message: format!(
            "{why}: {listener} does not serve requests a web page makes a browser send (cross-site request forgery); call it from a program (curl, an SDK, a server-side HTTP client) instead"
        ),
        rule: "browser",
    }
}

/// A header map from `(name, value)` pairs (unit tests of the requester checks).
#[cfg(test)]
pub(crate) fn test_headers<V: AsRef<str>>(pairs: &[(&str, V)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.as_ref().parse().expect("value"),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(require: bool) -> Gate {
        Gate::new(&AccessConfig {
            accept_hosts: vec!["crm-proxy.internal".into()],
            allow_any_host: false,
            require_request_header: require,
            strict_content_type: false,
            unix_allowed_uids: Default::default(),
            clients: Vec::new(),
        })
    }

    /// The refusal code (or "ok") of a body-less GET.
    fn data(
        g: &Gate,
        transport: Transport,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> &'static str {
        code(g.check_data(Head {
            transport,
            method: &Method::GET,
            uri,
            version,
            headers,
            has_body: false,
        }))
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        super::test_headers(pairs)
    }

    fn code(r: Result<Option<usize>, Refusal>) -> &'static str {
        r.err().map_or("ok", |r| r.code)
    }

    #[test]
    fn host_presence_and_target_form() {
        let g = gate(false);
        let path: Uri = "/crm/v8/Leads".parse().expect("uri");
        let absolute: Uri = "http://127.0.0.1:8080/crm/v8/Leads".parse().expect("uri");
        type Case<'a> = (&'a Uri, Version, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&path, Version::HTTP_11, &[("host", "localhost:8080")], "ok"),
            (&path, Version::HTTP_10, &[], "ok"),
            (&path, Version::HTTP_11, &[], "PROXY_BAD_HOST"),
            (&path, Version::HTTP_11, &[("host", "")], "PROXY_BAD_HOST"),
            (
                &path,
                Version::HTTP_11,
                &[("host", "localhost"), ("host", "localhost")],
                "PROXY_BAD_HOST",
            ),
            (
                &path,
                Version::HTTP_11,
                &[("host", "localhost"), ("host", "attacker.example")],
                "PROXY_BAD_HOST",
            ),
            (
                &path,
                Version::HTTP_11,
                &[
                    ("host", "attacker.example:8080"),
                    ("x-forwarded-host", "localhost"),
                ],
                "PROXY_HOST_NOT_ALLOWED",
            ),
            (
                &path,
                Version::HTTP_11,
                &[
                    ("host", "attacker.example:8080"),
                    ("forwarded", "host=localhost"),
                ],
                "PROXY_HOST_NOT_ALLOWED",
            ),
            (
                &absolute,
                Version::HTTP_11,
                &[("host", "127.0.0.1:8080")],
                "PROXY_BAD_TARGET",
            ),
        ];
        for (uri, version, pairs, expected) in cases {
            assert_eq!(
                data(&g, Transport::Tcp, uri, *version, &head(pairs)),
                *expected,
                "{uri} {version:?} {pairs:?}"
            );
        }
        // Unix sockets: no Host rule, the browser rule still applies.
        assert_eq!(
            data(
                &g,
                Transport::Unix(None),
                &path,
                Version::HTTP_11,
                &head(&[("host", "anything")])
            ),
            "ok"
        );
        assert_eq!(
            data(
                &g,
                Transport::Unix(None),
                &path,
                Version::HTTP_11,
                &head(&[("origin", "null")])
            ),
            "PROXY_BROWSER_REQUEST"
        );
    }

    #[test]
    fn the_ssrf_header_must_be_present_once_with_true() {
        let g = gate(true);
        let path: Uri = "/crm/v8/Leads".parse().expect("uri");
        for (pairs, expected) in [
            (
                &[("host", "localhost")][..],
                "PROXY_REQUEST_HEADER_REQUIRED",
            ),
            (
                &[("host", "localhost"), ("x-zoho-proxy-request", "false")][..],
                "PROXY_REQUEST_HEADER_REQUIRED",
            ),
            (
                &[
                    ("host", "localhost"),
                    ("x-zoho-proxy-request", "true"),
                    ("x-zoho-proxy-request", "true"),
                ][..],
                "PROXY_REQUEST_HEADER_REQUIRED",
            ),
            (
                &[("host", "localhost"), ("x-zoho-proxy-request", "true")][..],
                "ok",
            ),
            (
                &[("host", "localhost"), ("x-zoho-proxy-request", "TRUE")][..],
                "ok",
            ),
            // Browser markers are refused first.
            (
                &[("host", "localhost"), ("origin", "http://x")][..],
                "PROXY_BROWSER_REQUEST",
            ),
        ] {
            assert_eq!(
                data(&g, Transport::Tcp, &path, Version::HTTP_11, &head(pairs)),
                expected,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn unix_peers_outside_the_allowed_uids_are_refused() {
        let peer = |uid| Some(PeerCred { uid, gid: 7 });
        assert!(peer_allowed(&[], peer(65534)), "no list: the mode decides");
        assert!(peer_allowed(&[], None));
        assert!(peer_allowed(&[1000, 0], peer(1000)));
        assert!(!peer_allowed(&[1000], peer(65534)));
        assert!(
            !peer_allowed(&[1000], None),
            "unknown credentials are refused"
        );
    }

    #[test]
    fn the_body_type_is_judged_last_and_strictly_only_when_asked() {
        let path: Uri = "/crm/v8/Leads".parse().expect("uri");
        let post = |g: &Gate, pairs: &[(&str, &str)], has_body| {
            code(g.check_data(Head {
                transport: Transport::Tcp,
                method: &Method::POST,
                uri: &path,
                version: Version::HTTP_11,
                headers: &head(pairs),
                has_body,
            }))
        };
        let lenient = gate(false);
        let strict = Gate::new(&AccessConfig {
            strict_content_type: true,
            ..AccessConfig::default()
        });
        let sdk = [
            ("host", "localhost"),
            ("content-type", "text/plain; charset=UTF-8"),
        ];
        let form = [("host", "localhost"), ("content-type", body_type::FORM)];
        let json = [("host", "localhost"), ("content-type", "application/json")];
        assert_eq!(
            post(&lenient, &sdk, true),
            "ok",
            "SDK bodies pass by default"
        );
        assert_eq!(post(&lenient, &[("host", "localhost")], true), "ok");
        assert_eq!(
            post(&lenient, &form, true),
            "ok",
            "a URL-encoded body without browser markers passes by default (curl -d)"
        );
        assert_eq!(
            post(&strict, &form, true),
            "PROXY_CONTENT_TYPE_NOT_ALLOWED",
            "strict_content_type refuses the form type"
        );
        assert_eq!(
            post(
                &lenient,
                &[
                    ("host", "localhost"),
                    ("origin", "https://evil.example"),
                    ("content-type", body_type::FORM)
                ],
                true
            ),
            "PROXY_BROWSER_REQUEST",
            "a form post with Origin is a browser's"
        );
        assert_eq!(post(&strict, &sdk, true), "PROXY_CONTENT_TYPE_NOT_ALLOWED");
        assert_eq!(
            post(&strict, &[("host", "localhost")], true),
            "PROXY_CONTENT_TYPE_NOT_ALLOWED"
        );
        assert_eq!(
            post(&strict, &[("host", "localhost")], false),
            "ok",
            "no body, nothing to judge"
        );
        assert_eq!(post(&strict, &json, true), "ok");
        // Host, browser and the SSRF header come first.
        assert_eq!(
            post(
                &strict,
                &[
                    ("host", "attacker.example"),
                    ("content-type", body_type::FORM)
                ],
                true
            ),
            "PROXY_HOST_NOT_ALLOWED"
        );
        assert_eq!(
            post(&gate(true), &form, true),
            "PROXY_REQUEST_HEADER_REQUIRED"
        );
        let refusal = strict
            .check_data(Head {
                transport: Transport::Tcp,
                method: &Method::POST,
                uri: &path,
                version: Version::HTTP_11,
                headers: &head(&sdk),
                has_body: true,
            })
            .expect_err("refused");
        assert_eq!(
            (refusal.status, refusal.rule),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type")
        );
        assert!(
            refusal.message.contains("application/json")
                && refusal.message.contains("strict_content_type"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn admin_listener_applies_the_host_rule_to_every_path() {
        let g = gate(false);
        for path in [
            "/healthz",
            "/status",
            "/metrics",
            "/oauth/callback",
            "/anything",
        ] {
            let uri: Uri = path.parse().expect("uri");
            let foreign = g.check_admin(
                Transport::Tcp,
                &Method::GET,
                &uri,
                Version::HTTP_11,
                &head(&[("host", "attacker.example:9901")]),
            );
            assert_eq!(
                foreign.err().map(|r| r.code),
                Some("PROXY_HOST_NOT_ALLOWED"),
                "{path}"
            );
            let pod_ip = g.check_admin(
                Transport::Tcp,
                &Method::GET,
                &uri,
                Version::HTTP_11,
                &head(&[
                    ("host", "10.42.0.17:9901"),
                    ("user-agent", "kube-probe/1.30"),
                ]),
            );
            assert_eq!(pod_ip, Ok(()), "{path}");
        }
    }
}
