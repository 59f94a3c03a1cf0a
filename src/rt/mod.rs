//! Runtime mechanics that know nothing of Zoho or HTTP: the data plane's worker threads, the
//! per-connection timer, and the drain future. Imports crates only.

pub mod drain;
pub mod timer;
pub mod workers;
