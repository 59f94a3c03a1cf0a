#![forbid(unsafe_code)]
//! zoho-auth-proxy: a scope-enforcing reverse proxy in front of the Zoho CRM REST API.
//!
//! Layout (see `STYLE.md`): a request flows listener → canonical request → policy decision →
//! token → forward → response. This tree holds the pure `policy` layer; the other modules are
//! merged from their own branches.

pub mod policy;
