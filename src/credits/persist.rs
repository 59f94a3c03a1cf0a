//! The file backend of the credit ledgers: one JSON file per account beside its token file
//! (`token.json` → `token.credits.json`), and one for the client ledgers beside the first
//! file-backed account's token (`token.clients-credits.json`). Written atomically (temp file,
//! fsync, rename, mode 0600: the token store's own writer) by one background task, woken after
//! each charge and at most every [`WRITE_INTERVAL`], and once more at shutdown; read at start.
//!
//! Must not: write on the request path or block the runtime (all file I/O runs on the blocking
//! pool).

use super::ledger::Ledger;
use super::{lock, Backend, Credits};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Current file format.
const VERSION: u32 = 1;
/// Writes are coalesced over this interval: a crash loses at most this much counting.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// One ledger file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    /// `(minute, credits)` pairs.
    #[serde(default)]
    buckets: Vec<(u64, u64)>,
    /// The client ledgers (clients file only).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    clients: HashMap<String, Vec<(u64, u64)>>,
}

fn sibling(token_path: &Path, suffix: &str) -> PathBuf {
    let stem = token_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token".into());
    token_path.with_file_name(format!("{stem}.{suffix}.json"))
}

/// The account ledger file beside `token_path`.
pub(super) fn account_path(token_path: &Path) -> PathBuf {
    sibling(token_path, "credits")
}

/// The client ledgers file beside `token_path`.
pub(super) fn clients_path(token_path: &Path) -> PathBuf {
    sibling(token_path, "clients-credits")
}

async fn read(path: PathBuf) -> Option<LedgerFile> {
    let shown = path.display().to_string();
    let bytes = match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Ok(Err(e)) => {
            warn!("credits: cannot read {shown}: {e}; starting that ledger empty");
            return None;
        }
        Err(_) => return None,
    };
    match serde_json::from_slice::<LedgerFile>(&bytes) {
        Ok(f) if f.version == VERSION => Some(f),
        _ => {
            warn!("credits: {shown} is not a credit ledger of this version; starting that ledger empty (it will be overwritten)");
            None
        }
    }
}

async fn write(path: PathBuf, file: LedgerFile) -> Result<(), String> {
    let bytes = serde_json::to_vec(&file).map_err(|e| format!("cannot encode: {e}"))?;
    tokio::task::spawn_blocking(move || crate::store::file::write_atomic(&path, &bytes))
        .await
        .map_err(|e| format!("writer failed: {e}"))?
        .map_err(|e| e.to_string())
}

impl Credits {
    /// Reads the persisted ledgers (file backend) and, in fleet mode, the shared figures.
    pub async fn restore(&self) {
        let now = (self.clock)();
        for acc in &self.accounts {
            if let Backend::File(path) = &acc.backend {
                if let Some(f) = read(path.clone()).await {
                    lock(&acc.state).ledger = Ledger::from_buckets(f.buckets, now);
                }
            }
        }
        if let Some(path) = &self.clients_file {
            if let Some(f) = read(path.clone()).await {
                let mut clients = lock(&self.clients);
                for (name, buckets) in f.clients {
                    clients.insert(name, Ledger::from_buckets(buckets, now));
                }
            }
        }
    }

    /// Writes the dirty ledgers once.
    pub async fn flush(&self) {
        for acc in &self.accounts {
            let Backend::File(path) = &acc.backend else {
                continue;
            };
            let buckets = {
                let mut state = lock(&acc.state);
                if !std::mem::take(&mut state.dirty) {
                    continue;
                }
                state.ledger.buckets().collect()
            };
            let file = LedgerFile {
                version: VERSION,
                buckets,
                clients: HashMap::new(),
            };
            if let Err(e) = write(path.clone(), file).await {
                lock(&acc.state).dirty = true;
                warn!(account = %acc.name, "credits: cannot write {}: {e}", path.display());
            }
        }
        if let Some(path) = &self.clients_file {
            if !std::mem::take(&mut *lock(&self.clients_dirty)) {
                return;
            }
            let clients = lock(&self.clients)
                .iter()
                .map(|(name, l)| (name.clone(), l.buckets().collect()))
                .collect();
            let file = LedgerFile {
                version: VERSION,
                buckets: Vec::new(),
                clients,
            };
            if let Err(e) = write(path.clone(), file).await {
                *lock(&self.clients_dirty) = true;
                warn!("credits: cannot write {}: {e}", path.display());
            }
        }
    }

    /// The writer task: flushes after charges (coalesced) until `cancel`, then once more.
    pub async fn run_writer(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.dirty.notified() => {}
            }
            self.flush().await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(WRITE_INTERVAL) => {}
            }
        }
        self.flush().await;
    }
}
