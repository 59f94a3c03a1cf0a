//! TLS client settings shared by the upstream client and the token client.
//!
//! Trust is webpki's Mozilla roots plus an optional extra PEM file (`ca_file`). The crypto
//! provider is always named explicitly (ring), never taken from a process default.

use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// Reads every certificate of a PEM file; an error names the problem, never the content.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} contains no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The root store: webpki roots plus the certificates of `ca_file`.
pub fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in read_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: certificate rejected: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// A rustls client config (TLS 1.2+, ring provider) with the given ALPN protocols.
pub fn client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
