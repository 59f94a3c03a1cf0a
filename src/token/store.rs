//! Token persistence: what survives a restart (the access token, its expiry and API host, the
//! refresh token obtained from a grant, and recent mint times).
//!
//! The file store writes atomically (temp file, fsync, rename, mode 0600) from a blocking thread.
//! A corrupt or foreign file is renamed aside, never overwritten in place. The Redis store (fleet
//! mode, `redis_store/`) is read here like any store; its writes need the minting lease and are
//! made by the refresher's fleet code, never through [`Store::save`].

use crate::util::clock::now_unix_ms;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Current format version.
pub const STORE_VERSION: u32 = 1;

/// Everything persisted for one account.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredState {
    /// Format version.
    pub version: u32,
    /// The client these tokens belong to.
    pub client_id: String,
    /// SHA-256 of the refresh token the access token and mint log belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_sha256: Option<String>,
    /// A refresh token the proxy obtained itself (grant exchange or browser authorization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The accounts server that issued `refresh_token` (server-based clients in other DCs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts_url: Option<String>,
    /// Browser authorization only: SHA-256 of the configured refresh token that `refresh_token`
    /// superseded (`None`: none was configured). Once the configured one changes, it wins again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes_sha256: Option<String>,
    /// Current access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Its wall-clock expiry (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_unix_ms: Option<u64>,
    /// Its lifetime as issued (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<f64>,
    /// The API host it was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_domain: Option<String>,
    /// Recent token requests (Unix ms).
    #[serde(default)]
    pub mints_unix_ms: Vec<u64>,
    /// Zoho throttled us until then (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_until_unix_ms: Option<u64>,
    /// SHA-256 of the grant token already exchanged (never exchange it twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchanged_grant_sha256: Option<String>,
}

impl std::fmt::Debug for StoredState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredState")
            .field("client_id", &self.client_id)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("has_access_token", &self.access_token.is_some())
            .field("expires_at_unix_ms", &self.expires_at_unix_ms)
            .field("api_domain", &self.api_domain)
            .field("mints", &self.mints_unix_ms.len())
            .finish()
    }
}

impl StoredState {
    /// Nothing stored yet for `client_id`, in the current format.
    pub fn for_client(client_id: &str) -> StoredState {
        StoredState {
            version: STORE_VERSION,
            client_id: client_id.to_string(),
            ..Default::default()
        }
    }

    /// The stored access token's lifetime as issued (an hour, Zoho's usual, if none is stored).
    pub fn lifetime(&self) -> Duration {
        self.lifetime_secs
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(3600))
    }

    /// Records a new access token: its value, wall-clock expiry (Unix ms) and lifetime.
    pub fn record_access_token(
        &mut self,
        value: &str,
        expires_at_unix_ms: u64,
        lifetime: Duration,
    ) {
        self.access_token = Some(value.to_string());
        self.expires_at_unix_ms = Some(expires_at_unix_ms);
        self.lifetime_secs = Some(lifetime.as_secs_f64());
    }
}

/// SHA-256 hex of a secret (to recognise it without storing it).
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Result of reading a store.
#[derive(Debug)]
pub enum Loaded {
    /// Nothing stored yet.
    Empty,
    /// A usable state for this client (boxed: it is much larger than the other variants).
    State(Box<StoredState>),
    /// The file was unusable and has been moved aside; the message says where and why.
    SetAside(String),
    /// The store could not be reached (fleet mode: Redis down); nothing was changed.
    Unavailable(String),
}

/// A JSON file store.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (created on first save).
    pub fn new(path: PathBuf) -> FileStore {
        FileStore { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the store. A file for another client, or one that does not parse, is renamed to
    /// `<file>.foreign-<ms>` / `<file>.corrupt-<ms>` and reported.
    pub async fn load(&self, client_id: &str) -> Loaded {
        let path = self.path.clone();
        let client_id = client_id.to_string();
        tokio::task::spawn_blocking(move || load_blocking(&path, &client_id))
            .await
            .unwrap_or_else(|e| Loaded::SetAside(format!("store reader failed: {e}")))
    }

    /// Writes the state atomically with mode 0600.
    pub async fn save(&self, state: &StoredState) -> Result<(), String> {
        let path = self.path.clone();
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| format!("cannot encode the store: {e}"))?;
        tokio::task::spawn_blocking(move || {
            crate::store::file::write_atomic(&path, &bytes)
                .map_err(|e| format!("cannot write token store {}: {e}", path.display()))
        })
        .await
        .map_err(|e| format!("store writer failed: {e}"))?
    }

    /// A warning if the file is readable or writable by group or others.
    pub fn permission_warning(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "token store {} has mode {:o}: others can read tokens; run chmod 600 on it",
                self.path.display(),
                mode & 0o777
            )
        })
    }
}

fn set_aside(path: &Path, kind: &str, why: &str) -> Loaded {
    let aside = PathBuf::from(format!("{}.{kind}-{}", path.display(), now_unix_ms()));
    match std::fs::rename(path, &aside) {
        Ok(()) => Loaded::SetAside(format!(
            "token store {} {why}; moved it to {} and starting without it",
            path.display(),
            aside.display()
        )),
        Err(e) => Loaded::SetAside(format!(
            "token store {} {why}, and it could not be moved aside ({e}); starting without it",
            path.display()
        )),
    }
}

fn load_blocking(path: &Path, client_id: &str) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Empty,
        Err(e) => {
            return Loaded::SetAside(format!("cannot read token store {}: {e}", path.display()))
        }
    };
    let state: StoredState = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(_) => return set_aside(path, "corrupt", "is not a valid token store"),
    };
    if state.version != STORE_VERSION {
        return set_aside(
            path,
            "foreign",
            &format!("has format version {}", state.version),
        );
    }
    if state.client_id != client_id {
        return set_aside(path, "foreign", "belongs to another client_id");
    }
    Loaded::State(Box::new(state))
}

/// Where an account's token state lives.
#[derive(Debug, Clone)]
pub enum Store {
    /// Nowhere: a restart starts from scratch.
    Memory,
    /// A local JSON file.
    File(FileStore),
    /// A Redis shared by a fleet of replicas (fleet mode).
    Redis(std::sync::Arc<crate::token::redis_store::RedisStore>),
}

impl Store {
    /// Reads the stored state for `client_id`. The Redis store keeps one state per refresh token,
    /// so it needs `refresh_token` (without one it has nothing to read).
    pub async fn load(&self, client_id: &str, refresh_token: Option<&str>) -> Loaded {
        match self {
            Store::Memory => Loaded::Empty,
            Store::File(f) => f.load(client_id).await,
            Store::Redis(r) => match refresh_token {
                Some(rt) => r.load(&r.namespace(rt), fingerprint(rt)).await,
                None => Loaded::Empty,
            },
        }
    }

    /// Persists the state. A no-op for Redis: the shared state is written only by the lease
    /// holder (`refresher/fleet/`), never wholesale.
    pub async fn save(&self, state: &StoredState) -> Result<(), String> {
        match self {
            Store::Memory | Store::Redis(_) => Ok(()),
            Store::File(f) => f.save(state).await,
        }
    }

    /// A human description (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Store::Memory => "memory".to_string(),
            Store::File(f) => f.path().display().to_string(),
            Store::Redis(r) => format!("Redis at {}", r.url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> StoredState {
        StoredState {
            version: STORE_VERSION,
            client_id: "1000.CLIENT".into(),
            access_token: Some("1000.a.b".into()),
            expires_at_unix_ms: Some(now_unix_ms() + 3_600_000),
            mints_unix_ms: vec![1, 2],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn save_then_load_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().join("sub/token.json"));
        let saved = state();
        store.save(&saved).await.expect("save");
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "store file mode");
        assert!(store.permission_warning().is_none(), "no warning at 0600");
        match store.load("1000.CLIENT").await {
            Loaded::State(s) => assert!(*s == saved, "round trip"),
            other => panic!("expected state, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn corrupt_and_foreign_files_are_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.json");
        std::fs::write(&path, b"{not json").expect("write");
        let store = FileStore::new(path.clone());
        assert!(
            matches!(store.load("1000.CLIENT").await, Loaded::SetAside(m) if m.contains("corrupt"))
        );
        assert!(!path.exists(), "corrupt file moved away");
        let aside = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(aside, 1, "the corrupt file is kept beside, not deleted");

        store.save(&state()).await.expect("save");
        assert!(
            matches!(store.load("1000.OTHER").await, Loaded::SetAside(m) if m.contains("another client_id"))
        );
        assert!(
            matches!(store.load("1000.CLIENT").await, Loaded::Empty),
            "foreign file moved away"
        );
    }

    #[test]
    fn debug_output_has_no_tokens() {
        let text = format!("{:?}", state());
        assert!(!text.contains("1000.a.b"), "{text}");
    }
}
