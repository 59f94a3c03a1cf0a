//! Leaf helpers that know nothing of Zoho or HTTP and serve at least two modules: the 429
//! back-off arithmetic, the text escaper, the wall clock and calendar, the redacting `Debug`
//! marker, the fast map and the TLS client setup. Imports crates only.

pub mod backoff;
pub mod clock;
pub mod escape;
pub mod redact;
pub mod tls;

pub use escape::{escape, log_safe};
pub use redact::REDACTED;

/// A hash map with a fast non-cryptographic hasher (FxHash), for maps looked up on every request
/// whose keys come from the config, never from a client (account, client and scope names): std's
/// SipHash cost about 200 instructions a lookup, several times a request. A client cannot choose
/// these keys, so hash flooding does not apply.
pub type FastMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;
