//! Configuration: `proxy.yaml` → [`RawConfig`] (serde mirror) → validated, typed [`Config`].
//!
//! Owns env interpolation, secret files, URL and listen-address checks and the error messages
//! that name the key and line. Reads the config file, secret files and `ca_file`, and (in
//! [`Config::load`], at start and reload) checks with a probe file that each file token store's
//! folder is writable; nothing else.
//! After start-up the rest of the program only sees [`Config`].
//!
//! One file per reason to change: the typed data (`model.rs`), reading the file (`load.rs`),
//! validation section by section (`validate/`, plus `access.rs` and `admin.rs`, which hold
//! their section's types too), [`Config::describe`] (`describe.rs`), checks of single values
//! (`checks.rs`), and [`ConfigError`] with its line locator (`error.rs`). The serde mirror
//! (`raw.rs`), `${VAR}` (`interpolate.rs`), sizes and durations (`units.rs`), data centers
//! (`datacenter.rs`) and `token.store` values (`store.rs`) have a file each.
//!
//! Must not: import anything above `policy` and the leaf helpers (`util`, `web`, `rt`): it is
//! plain data, and every `pub` item is reached as `crate::config::X`.

mod access;
mod admin;
mod checks;
mod datacenter;
pub mod describe;
mod error;
mod interpolate;
mod load;
mod model;
mod raw;
mod store;
mod units;
mod validate;

pub use access::{AccessConfig, ClientConfig, ANONYMOUS, MIN_KEY_CHARS};
pub use admin::AdminAuth;
pub use checks::{check_base_url, check_redirect_uri, parse_listen};
pub use datacenter::{check_override_host, is_zoho_api_host, DataCenter, Endpoint};
pub use error::ConfigError;
pub use load::{process_env, read_secret_file, EnvLookup};
pub use model::{
    AccountConfig, CacheConfig, ClientType, Config, CreditsConfig, Limits, ListenAddr, LogFormat,
    OrgLimits, RedisDownPolicy, Routing, SecretValue, StoreConfig, TokenConfig,
    UpstreamConcurrency, UpstreamProtocol, DEFAULT_WORKERS, MAX_WORKERS, UNIX_SOCKET_MODE,
};
pub use raw::RawConfig;
pub use store::{RedisNode, RedisTopology, SUPPORTED_STORES};
pub use units::{parse_duration, parse_size};

use validate::Validator;

#[cfg(test)]
mod tests;
