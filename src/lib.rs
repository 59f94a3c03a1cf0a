#![forbid(unsafe_code)]
//! zoho-auth-proxy library. In this branch only the built-in fake Zoho (`sandbox`) exists; the
//! other modules are developed in parallel and merged later.

pub mod sandbox;
