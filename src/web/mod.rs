//! HTTP plumbing shared by the proxy, the admin listener, the upstream client and the fake
//! Zoho: body types and bounded collection, the security headers every answer carries, the pure
//! Host/DNS-name parser, and the one JSON error-body renderer. Knows nothing of Zoho's rules.

pub mod body;
pub mod error;
pub mod headers;
pub mod host;
