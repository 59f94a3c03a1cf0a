//! Talking to Zoho Accounts: the refresh-token grant and the authorization-code exchange.
//!
//! Credentials travel only in form bodies (never in a URL), replies are read under a size cap,
//! and a reply is a success only if it carries a usable `access_token`, whatever its status.
//! Knows nothing about requests, schedules or storage.

use secrecy::{ExposeSecret, SecretString};
use std::path::Path;
use std::time::Duration;

/// Largest token-endpoint reply we read.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Longest access token we accept (Zoho's are ~70 characters).
const MAX_TOKEN_LEN: usize = 2048;
/// Lifetime assumed when a reply omits `expires_in` (Zoho's documented lifetime).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest lifetime believed.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// How a failure should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Needs a person (wrong client, revoked token): slow retry, not ready.
    Permanent,
    /// Network, 5xx, garbage: exponential backoff.
    Transient,
    /// Zoho's mint throttle: wait out the 10-minute window.
    Throttled,
}

/// Why a token request failed. Display text is for people and never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `invalid_client`.
    #[error(
        "Zoho answered invalid_client from {accounts_host}: the client id is unknown there. The data center is \
         probably wrong: a client registered at accounts.zoho.eu needs data_center: eu (check zoho.data_center \
         and zoho.accounts_url)"
    )]
    InvalidClient {
        /// The accounts server that was asked.
        accounts_host: String,
    },
    /// `invalid_client_secret`.
    #[error("Zoho answered invalid_client_secret from {accounts_host}: check client_secret for this client id")]
    InvalidClientSecret {
        /// The accounts server that was asked.
        accounts_host: String,
    },
    /// `invalid_code` for a grant token or authorization code.
    #[error(
        "Zoho answered invalid_code for the grant token: it expired (grant tokens live a few minutes) or was \
         already used. Generate a new one in the Zoho API console (Self Client → Generate Code)"
    )]
    InvalidGrantCode,
    /// `invalid_code` on a refresh: the refresh token is gone.
    #[error(
        "Zoho answered invalid_code for the refresh token: it was revoked (Connected Apps, password reset) or \
         pushed out by Zoho's limit of 20 refresh tokens per user. Create a new refresh token"
    )]
    RefreshTokenRejected,
    /// `invalid_redirect_uri`.
    #[error("Zoho answered invalid_redirect_uri: redirect_uri must match the one registered in the API console exactly")]
    InvalidRedirectUri,
    /// "Access Denied": the mint throttle.
    #[error(
        "Zoho answered Access Denied: its limit of 10 access tokens per refresh token per 10 minutes was hit; \
         waiting out the window before asking again"
    )]
    Throttled,
    /// Another `error` value.
    #[error("the token endpoint answered error `{0}`")]
    Other(String),
    /// Not a token reply at all.
    #[error("the token endpoint answered HTTP {status} without an access token ({what})")]
    BadReply {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        what: &'static str,
    },
    /// A token that cannot be put in a header.
    #[error("the token endpoint sent an access token with characters not allowed in a header, or over 2 KB; refused")]
    UnusableToken,
    /// No answer in time.
    #[error("the token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// Connect, TLS or I/O failure.
    #[error("cannot reach the token endpoint at {host}: {reason}")]
    Network {
        /// Host asked.
        host: String,
        /// Cause, without URL.
        reason: String,
    },
}

impl TokenError {
    /// How to retry after this failure.
    pub fn class(&self) -> FailureClass {
        match self {
            TokenError::InvalidClient { .. }
            | TokenError::InvalidClientSecret { .. }
            | TokenError::InvalidGrantCode
            | TokenError::RefreshTokenRejected
            | TokenError::InvalidRedirectUri => FailureClass::Permanent,
            TokenError::Throttled => FailureClass::Throttled,
            _ => FailureClass::Transient,
        }
    }

    /// Short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::InvalidClient { .. } => "invalid_client",
            TokenError::InvalidClientSecret { .. } => "invalid_client_secret",
            TokenError::InvalidGrantCode | TokenError::RefreshTokenRejected => "invalid_code",
            TokenError::InvalidRedirectUri => "invalid_redirect_uri",
            TokenError::Throttled => "access_denied",
            TokenError::Other(_) => "error",
            TokenError::BadReply { .. } => "bad_reply",
            TokenError::UnusableToken => "unusable_token",
            TokenError::Timeout(_) => "timeout",
            TokenError::Network { .. } => "network",
        }
    }
}

/// A freshly minted token.
pub struct Minted {
    /// The access token (validated header-safe).
    pub access_token: SecretString,
    /// Lifetime, clamped to (0, 1 h].
    pub lifetime: Duration,
    /// `api_domain` as sent (not yet checked against the Zoho host list).
    pub api_domain: Option<String>,
    /// A refresh token (authorization-code grant only).
    pub refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("access_token", &crate::util::REDACTED)
            .field("lifetime", &self.lifetime)
            .field("api_domain", &self.api_domain)
            .field(
                "refresh_token",
                &crate::util::redact::redact_option(&self.refresh_token),
            )
            .finish()
    }
}

/// What is being asked for.
pub enum Grant<'a> {
    /// `grant_type=refresh_token`.
    Refresh(&'a SecretString),
    /// `grant_type=authorization_code`, with the redirect URI for server-based clients.
    Code {
        /// The grant token / authorization code.
        code: &'a SecretString,
        /// Registered redirect URI (absent for self clients).
        redirect_uri: Option<&'a str>,
    },
}

/// An HTTP client for Zoho Accounts servers.
#[derive(Clone)]
pub struct AccountsClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl AccountsClient {
    /// Builds a client trusting webpki roots plus `ca_file`, with no proxy, no redirects, no cookies.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<AccountsClient, String> {
        let tls = crate::util::tls::client_config(ca_file, &[b"http/1.1"])?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .user_agent(concat!("zoho-auth-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the token client: {}", e.without_url()))?;
        Ok(AccountsClient { http, timeout })
    }

    /// Asks `{accounts_url}/oauth/v2/token` for a token.
    pub async fn request(
        &self,
        accounts_url: &url::Url,
        client_id: &str,
        client_secret: &SecretString,
        grant: Grant<'_>,
    ) -> Result<Minted, TokenError> {
        let host = accounts_url.host_str().unwrap_or("").to_string();
        let endpoint = accounts_url
            .join("/oauth/v2/token")
            .map_err(|_| TokenError::Network {
                host: host.clone(),
                reason: "bad accounts URL".into(),
            })?;
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
        ];
        let is_code = matches!(grant, Grant::Code { .. });
        match &grant {
            Grant::Refresh(rt) => {
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", rt.expose_secret()));
            }
            Grant::Code { code, redirect_uri } => {
                form.push(("grant_type", "authorization_code"));
                form.push(("code", code.expose_secret()));
                if let Some(uri) = redirect_uri {
                    form.push(("redirect_uri", uri));
                }
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let reply = self
            .http
            .post(endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.network_error(&host, e))?;
        let status = reply.status().as_u16();
        let bytes = read_capped(reply)
            .await
            .map_err(|e| self.network_error(&host, e))?;
        parse_reply(status, &bytes, &host, is_code)
    }

    fn network_error(&self, host: &str, e: reqwest::Error) -> TokenError {
        if e.is_timeout() {
            return TokenError::Timeout(self.timeout);
        }
        TokenError::Network {
            host: host.to_string(),
            reason: error_chain(&e.without_url()),
        }
    }
}

/// Reads a reply body, at most `MAX_REPLY_BYTES`.
async fn read_capped(mut reply: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = reply.chunk().await? {
        let room = MAX_REPLY_BYTES.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_REPLY_BYTES {
            break;
        }
    }
    Ok(out)
}

/// An error and its causes, one line, no URL.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Interprets a token-endpoint reply. Pure, so it is table-tested.
pub fn parse_reply(
    status: u16,
    body: &[u8],
    host: &str,
    is_code: bool,
) -> Result<Minted, TokenError> {
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            let what = if body.iter().take(512).any(|&b| b == b'<') {
                "HTML, not JSON"
            } else {
                "not a JSON object"
            };
            return Err(TokenError::BadReply { status, what });
        }
    };
    if let Some(token) = json.get("access_token") {
        let token = token.as_str().unwrap_or("");
        if token.is_empty() {
            return Err(TokenError::BadReply {
                status,
                what: "empty access_token",
            });
        }
        if token.len() > MAX_TOKEN_LEN
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(TokenError::UnusableToken);
        }
        let lifetime = lifetime_of(&json);
        let api_domain = json
            .get("api_domain")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let refresh_token = json
            .get("refresh_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_string()));
        return Ok(Minted {
            access_token: SecretString::from(token.to_string()),
            lifetime,
            api_domain,
            refresh_token,
        });
    }
    let error = json.get("error").and_then(|v| v.as_str()).unwrap_or("");
    let description = json
        .get("error_description")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let host = host.to_string();
    Err(match error {
        "" => TokenError::BadReply {
            status,
            what: "no access_token and no error",
        },
        "invalid_client" => TokenError::InvalidClient {
            accounts_host: host,
        },
        "invalid_client_secret" => TokenError::InvalidClientSecret {
            accounts_host: host,
        },
        "invalid_code" if is_code => TokenError::InvalidGrantCode,
        "invalid_code" => TokenError::RefreshTokenRejected,
        "invalid_redirect_uri" => TokenError::InvalidRedirectUri,
        e if is_throttle(e, description) => TokenError::Throttled,
        other => TokenError::Other(crate::util::escape(other, 64)),
    })
}

fn is_throttle(error: &str, description: &str) -> bool {
    let e = error.to_ascii_lowercase();
    let d = description.to_ascii_lowercase();
    e == "access denied"
        || e == "access_denied"
        || error == "拒绝访问"
        || d.contains("too many requests")
        || d.contains("throttle")
}

/// `expires_in` in seconds (or the legacy `expires_in_sec` + ms form), clamped to (0, 1 h];
/// missing or unreadable → Zoho's documented hour; zero or negative → 1 s, so the refresh
/// schedule (and the mint budget) stop a loop.
fn lifetime_of(json: &serde_json::Value) -> Duration {
    fn number(v: Option<&serde_json::Value>) -> Option<f64> {
        match v? {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    let secs = match number(json.get("expires_in_sec")) {
        Some(s) => Some(s),
        None => number(json.get("expires_in")),
    };
    match secs {
        None => DEFAULT_LIFETIME,
        Some(s) if !s.is_finite() => DEFAULT_LIFETIME,
        Some(s) if s < 1.0 => Duration::from_secs(1),
        Some(s) => Duration::from_secs_f64(s).min(MAX_LIFETIME),
    }
}

#[cfg(test)]
mod tests;
