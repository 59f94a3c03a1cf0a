//! Pure checks of single values: accounts/API base URLs, OAuth redirect URIs, listen addresses,
//! and whether a URL's host is loopback.
//!
//! Must not: know config keys or line numbers (callers attach them to the message), or touch the
//! network or the file system.

use super::ListenAddr;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Checks an accounts/API base URL: https (plain http only to a loopback host, for local
/// stand-ins), no credentials, path, query or fragment.
pub fn check_base_url(url: &url::Url) -> Result<(), String> {
    https_or_loopback_http(
        url,
        "; tokens only travel over https (plain http is accepted only for a loopback host)",
        "https",
    )?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{}` must not contain credentials",
            url.host_str().unwrap_or("")
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "`{url}` must be a bare origin without a path (got `{}`)",
            url.path()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    Ok(())
}

/// Checks a registered OAuth `redirect_uri`: https (plain http only to a loopback host, so the
/// authorization code never crosses a network in clear), no credentials, no fragment.
pub fn check_redirect_uri(url: &url::Url) -> Result<(), String> {
    https_or_loopback_http(
        url,
        " to a non-loopback host: the authorization code would travel in clear; use https (or a 127.0.0.1 address)",
        "http://127.0.0.1:PORT/oauth/callback or an https URL",
    )?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the redirect_uri must not contain credentials".to_string());
    }
    if url.fragment().is_some() {
        return Err(format!("`{url}` must not have a fragment"));
    }
    Ok(())
}

/// A URL with a host, over https or plain http to a loopback host. `plain_http` ends the
/// message that refuses plain http elsewhere; `use_instead` is offered for any other scheme.
fn https_or_loopback_http(
    url: &url::Url,
    plain_http: &str,
    use_instead: &str,
) -> Result<(), String> {
    if url.host().is_none() {
        return Err(format!("`{url}` has no host"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!("`{url}` uses plain http{plain_http}")),
        other => Err(format!("`{url}` has scheme `{other}`; use {use_instead}")),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub(super) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses `host:port`, `[v6]:port`, `localhost:port` or `unix:/path`.
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(
                "`unix:` needs a socket path, e.g. unix:/run/zoho-auth-proxy/proxy.sock"
                    .to_string(),
            );
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{text}` has a bad port"))?;
        return Ok(ListenAddr::Tcp(SocketAddr::new(
            IpAddr::from([127, 0, 0, 1]),
            port,
        )));
    }
    text.parse::<SocketAddr>()
        .map(ListenAddr::Tcp)
        .map_err(|_| {
            format!("`{text}` is not an address like 127.0.0.1:8080 or unix:/path/proxy.sock")
        })
}
