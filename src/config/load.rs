//! Reading `proxy.yaml`: the size cap, UTF-8, the YAML parse (errors with key and line), the
//! process environment for `${VAR}`, secret files, and the writable check of file token stores'
//! folders; then hands the parsed mirror to `validate`.
//!
//! Must not: decide whether a value is valid (that is `validate`), or read any file other than
//! the config file, secret files and the store folders' probe.

use super::error::line_of;
use super::validate::Validator;
use super::{store, Config, ConfigError, RawConfig, StoreConfig};
use std::path::Path;

/// The largest config file we read (a guard against pasting a huge file by mistake).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads variables for `${VAR}`; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Looks variables up in the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and validates a config file. Relative paths inside resolve against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file_error = |message: String| ConfigError {
            key: path.display().to_string(),
            line: None,
            message,
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| file_error(format!("cannot read the config file: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(file_error(format!(
                "the config file is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| file_error(format!("cannot read the config file: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| file_error("the config file is not UTF-8 text".to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_yaml_str_with(&text, &process_env, base)?;
        config.check_store_dirs(&text)?;
        config.watched_files.insert(0, path.to_path_buf());
        Ok(config)
    }

    /// Each file store's folder exists and is writable (checked at start, not at the first
    /// token, which may be an hour away).
    fn check_store_dirs(&self, text: &str) -> Result<(), ConfigError> {
        for account in &self.accounts {
            if let StoreConfig::File(path) = &account.token.store {
                store::check_file_store_dir(path).map_err(|message| ConfigError {
                    key: account.token.store_key.clone(),
                    line: line_of(text, &account.token.store_key),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Validates YAML text using the process environment (for tests and tools).
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str_with(text, &process_env, Path::new("."))
    }

    /// Validates YAML text with an explicit environment and base folder.
    pub fn from_yaml_str_with(
        text: &str,
        env: EnvLookup<'_>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError {
                key: "(file)".to_string(),
                line: None,
                message: "the config file is empty; start from the annotated proxy.yaml"
                    .to_string(),
            });
        }
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&e, text))?;
        Validator { text, env, base }.validate(raw)
    }
}

/// Turns a serde_yaml error into a `ConfigError` naming the key and line.
fn yaml_error(e: &serde_yaml::Error, text: &str) -> ConfigError {
    let rendered = e.to_string();
    // serde_yaml formats as "path.to.key: message at line L column C".
    let (key, message) = match rendered.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => (k.to_string(), m.to_string()),
        _ => ("(file)".to_string(), rendered.clone()),
    };
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let mut line = e.location().map(|l| l.line());
    // serde reports a duplicate at the start of its mapping; point at the second occurrence.
    if let Some(name) = message
        .strip_prefix("duplicate field `")
        .and_then(|r| r.split('`').next())
    {
        let start = line.unwrap_or(1).saturating_sub(1);
        let hits: Vec<usize> = text
            .lines()
            .enumerate()
            .skip(start)
            .filter(|(_, l)| {
                let l = l.trim_start().trim_start_matches("- ");
                l.strip_prefix(name)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map(|(i, _)| i + 1)
            .collect();
        if let Some(second) = hits.get(1) {
            line = Some(*second);
        }
    }
    ConfigError { key, line, message }
}

/// Reads a secret file: trimmed, non-empty, at most 16 KiB.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > 16 * 1024 {
        return Err(format!(
            "{} is larger than 16 KiB; is it the right file?",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_string())
}
