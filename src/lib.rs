//! zoho-auth-proxy: a local reverse proxy that lets programs without OAuth code call the Zoho
//! CRM, Books and Inventory APIs. It decides from each request's method and path which Zoho OAuth
//! scope it needs, refuses what `proxy.yaml` does not allow, attaches a continually refreshed
//! access token and forwards over TLS, streaming bodies.
//!
//! Read from the folder names, a request goes [`server`] (listener, connection limits) →
//! [`access`] (who is asking) → [`proxy`] (route the account) → [`policy`] (decide, cost) →
//! [`cache`] (answer metadata it holds) → [`credits`] (admit; Books and Inventory: [`quota`]) →
//! [`token`] (attach) → [`upstream`] (send, Zoho's concurrency slots) → [`proxy`] (stream back,
//! log). The admin listener is [`admin`], reload is [`reload`], the wiring is [`app`], the
//! command line [`cli`], and the fake Zoho behind `demo` and the tests is [`sandbox`].
//!
//! # Layers
//!
//! Imports point one way: a module imports only what its row allows ("the layers below" means
//! every module of a lower layer). `tests/layers.rs` reads `src/`, derives the imports between
//! top-level modules and checks each against this table; it also fails on any cycle.
//!
//! Rules: an item used by two modules moves down to the lowest module both may import; a lower
//! module never names a higher module's error type (it has its own, mapped to HTTP once at the
//! edge, as `access::Refusal` and `credits::Refusal` are); `config/` holds plain data; a service
//! registers its own metrics in the registry it is handed; state that travels together is one
//! struct.
//!
//! | layer | module | its one job | may import |
//! |---|---|---|---|
//! | 0 | `util/` | leaf helpers: the 429 back-off, the text escaper, wall clock and calendar, `FastMap`, the redacting `Debug` marker, rustls/PEM setup | crates only |
//! | 0 | `rt/` | runtime mechanics: worker threads (with an on-thread-start hook), the per-connection timer, the drain future | crates only |
//! | 0 | `web/` | HTTP plumbing: body types and bounded collection, security headers, the Host/DNS-name parser, the JSON error renderer | `util` |
//! | 1 | `policy/` | what a request is: canonical target, required scopes, the allow decision, the credit cost; pure | `util` |
//! | 2 | `config/` | `proxy.yaml` → plain typed `Config`; validation per section; `describe` | `policy`, `util`, `web`, `rt` |
//! | 3a | `metrics`, `logging/`, `store/` | the metric registry and shared families; tracing and the batched writer; the atomic 0600 file and the Redis connection | the layers below |
//! | 3b | `access/`, `token/`, `credits/`, `upstream/`, `cache/`, `quota/`, `observed` | who may ask; the per-account token; credit ledgers and budgets; the client to Zoho and its concurrency slots; the metadata cache; per-organization request windows and daily call budgets (Books, Inventory); what the traffic needed | the layers below |
//! | 4 | `state` | the reloadable snapshot (`Runtime`) and `AppState`; building one has no side effects | the layers below |
//! | 5 | `proxy/`, `admin/`, `server/`, `reload`, `discover/` | one request's path; the admin listener; listeners and accept loops; reload; the proxy's own calls (the org's edition, Zoho's costs) | the layers below |
//! | 6 | `app/` | the wiring: `App::build`, `App::run` | the layers below |
//! | 7 | `cli/`, `lib` | the command line (`demo` included); this module list | the layers below, and `sandbox` |
//! | side | `sandbox/` | the fake Zoho for `demo` and the tests; nothing else imports it | `policy`, `web`, `util` |

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod credits;
pub mod discover;
pub mod logging;
pub mod metrics;
pub mod observed;
pub mod policy;
pub mod proxy;
pub mod quota;
pub mod reload;
pub mod rt;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod store;
pub mod token;
pub mod upstream;
pub mod util;
pub mod web;
