//! `admin.auth`: the opt-in credential of the admin listener (HTTP Basic, the password read from
//! a file), and the paths exempt from it.
//!
//! Must not: check a request (that is `admin/`), or accept the password inline in the file.

use super::raw::RawAdminAuth;
use super::{read_secret_file, SecretValue, Validator};
use secrecy::SecretString;

/// Admin paths that may be exempted from `admin.auth` (probes and scrapers cannot log in).
pub const EXEMPTABLE: &[&str] = &["/healthz", "/readyz", "/metrics", "/status"];
/// Exempt when `admin.auth.exempt` is not set.
pub const DEFAULT_EXEMPT: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// HTTP Basic credential for the admin listener.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminAuth {
    /// The user name (`admin.auth.username`, default `admin`).
    pub username: String,
    /// The password (`admin.auth.password_file`).
    pub password: SecretValue,
    /// Paths served without the credential (`admin.auth.exempt`). `/oauth/callback` is always
    /// exempt: Zoho's redirect arrives from a browser that may not send the credential.
    pub exempt: Vec<String>,
}

impl Validator<'_> {
    pub(super) fn admin_auth(
        &self,
        raw: Option<RawAdminAuth>,
    ) -> Result<Option<AdminAuth>, super::ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let username = self
            .string("admin.auth.username", &raw.username)?
            .unwrap_or_else(|| "admin".to_string());
        if username.contains(':') || username.chars().any(char::is_control) {
            return Err(self.err(
                "admin.auth.username",
                "must not contain `:` or control characters (HTTP Basic)",
            ));
        }
        let path = self
            .path("admin.auth.password_file", &raw.password_file)?
            .ok_or_else(|| {
                self.err(
                    "admin.auth.password_file",
                    "is required with admin.auth: a file holding the admin password",
                )
            })?;
        let value = read_secret_file(&path).map_err(|m| self.err("admin.auth.password_file", m))?;
        if value.contains('\n') {
            return Err(self.err(
                "admin.auth.password_file",
                "must hold the password only, on one line",
            ));
        }
        let exempt = match raw.exempt {
            None => DEFAULT_EXEMPT.iter().map(|p| p.to_string()).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for (i, entry) in list.iter().enumerate() {
                    let key = format!("admin.auth.exempt[{i}]");
                    let entry = entry.trim();
                    if !EXEMPTABLE.contains(&entry) {
                        return Err(self.err(
                            &key,
                            format!(
                                "`{}` cannot be exempted; use some of {}",
                                crate::util::log_safe(entry),
                                EXEMPTABLE.join(", ")
                            ),
                        ));
                    }
                    out.push(entry.to_string());
                }
                out
            }
        };
        Ok(Some(AdminAuth {
            username,
            password: SecretValue {
                value: SecretString::from(value),
                file: Some(path),
            },
            exempt,
        }))
    }
}
