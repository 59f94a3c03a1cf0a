//! Which requests the metadata cache concerns, from the method and the canonical target the
//! policy decided on: a read of one of Zoho's metadata resources (stored and answered), a write
//! to the settings, the org or the users (purges the account's cache), or anything else.
//!
//! Pure and cheap: no allocation, no lock. Runs for every request, so a record path is told
//! apart within its first segments. Must not: look at headers or bodies.

use http::Method;

/// What a request means to the metadata cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Not the cache's business (records, search, COQL, bulk, files, …).
    Other,
    /// `GET`/`HEAD` of a metadata resource: answered from the cache when it holds it.
    Read,
    /// A write to `settings/…`, `org` or `users`: the account's cached metadata may be stale.
    Write,
}

/// The metadata resources under `settings/` that are cached (with or without one more segment:
/// `settings/modules/Leads`, `settings/layouts/{id}`).
const SETTINGS: &[&str] = &[
    "modules",
    "fields",
    "layouts",
    "related_lists",
    "custom_views",
    "profiles",
    "roles",
];

/// Classifies `method` on the canonical `path` and `query` (`/crm/v8/settings/fields`,
/// `module=Leads`).
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> Class {
    let write = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let read = *method == Method::GET || *method == Method::HEAD;
    if !read && !write {
        return Class::Other;
    }
    let Some(rest) = path.strip_prefix("/crm/").and_then(strip_version) else {
        return Class::Other;
    };
    let mut segments = rest.split('/');
    let (first, second, third, more) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next().is_some(),
    );
    if write {
        return match first {
            Some("settings" | "org" | "users") => Class::Write,
            _ => Class::Other,
        };
    }
    let metadata = match (first, second, third, more) {
        (Some("settings"), Some(resource), third, false) => {
            SETTINGS.contains(&resource) && third.is_none_or(|s| !s.is_empty())
        }
        (Some("org"), None, None, false) => true,
        (Some("users"), None, None, false) => is_current_user(query),
        _ => false,
    };
    if metadata {
        Class::Read
    } else {
        Class::Other
    }
}

/// `v8/rest` → `rest` for a version segment `v<digits>` or `v<digits>.<digits>`.
fn strip_version(after_crm: &str) -> Option<&str> {
    let (version, rest) = after_crm.split_once('/')?;
    let digits = version.strip_prefix('v')?;
    let (major, minor) = digits.split_once('.').unwrap_or((digits, "0"));
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(major) && numeric(minor) && !rest.is_empty()).then_some(rest)
}

/// Whether the query asks for the current user (`type=CurrentUser`).
fn is_current_user(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair == "type=CurrentUser"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_reads_writes_and_everything_else_are_told_apart() {
        use Class::*;
        const CASES: &[(&str, &str, Option<&str>, Class)] = &[
            (
                "GET",
                "/crm/v8/settings/fields",
                Some("module=Leads&"),
                Read,
            ),
            (
                "HEAD",
                "/crm/v8/settings/fields",
                Some("module=Leads"),
                Read,
            ),
            ("GET", "/crm/v2/settings/modules", None, Read),
            ("GET", "/crm/v2.1/settings/modules/Leads", None, Read),
            (
                "GET",
                "/crm/v7/settings/layouts",
                Some("module=Deals"),
                Read,
            ),
            (
                "GET",
                "/crm/v8/settings/related_lists",
                Some("module=Leads"),
                Read,
            ),
            (
                "GET",
                "/crm/v8/settings/custom_views",
                Some("module=Leads"),
                Read,
            ),
            ("GET", "/crm/v8/settings/profiles", None, Read),
            ("GET", "/crm/v8/settings/roles", None, Read),
            ("GET", "/crm/v8/org", None, Read),
            ("GET", "/crm/v8/users", Some("type=CurrentUser"), Read),
            (
                "GET",
                "/crm/v8/users",
                Some("page=1&type=CurrentUser"),
                Read,
            ),
            // Not metadata, or not this shape of it.
            ("GET", "/crm/v8/users", Some("type=AllUsers"), Other),
            ("GET", "/crm/v8/users", None, Other),
            ("GET", "/crm/v8/users/1234", Some("type=CurrentUser"), Other),
            ("GET", "/crm/v8/settings/pipeline", None, Other),
            ("GET", "/crm/v8/settings/fields/1/x", None, Other),
            ("GET", "/crm/v8/Leads", None, Other),
            ("GET", "/crm/v8/Leads/search", Some("word=x"), Other),
            ("GET", "/crm/v8/org/photo", None, Other),
            ("GET", "/crm/bulk/v8/read/1", None, Other),
            ("GET", "/crm/v8/files", Some("id=x"), Other),
            ("GET", "/crm/settings/fields", None, Other),
            ("GET", "/crm/vx/org", None, Other),
            ("POST", "/crm/v8/coql", None, Other),
            ("OPTIONS", "/crm/v8/org", None, Other),
            // Writes that purge.
            (
                "PUT",
                "/crm/v8/settings/fields",
                Some("module=Leads"),
                Write,
            ),
            ("POST", "/crm/v8/settings/layouts", None, Write),
            ("PATCH", "/crm/v8/org", None, Write),
            ("DELETE", "/crm/v8/users/1", None, Write),
            ("POST", "/crm/v8/users", None, Write),
            ("POST", "/crm/v8/Leads", None, Other),
            ("PUT", "/crm/bulk/v8/write", None, Other),
        ];
        for (method, path, query, want) in CASES {
            let method: Method = method.parse().expect("method");
            assert_eq!(
                classify(&method, path, *query),
                *want,
                "{method} {path}?{query:?}"
            );
        }
    }
}
