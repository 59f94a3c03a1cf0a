//! `token.store` values: a file path, or one of fleet mode's Redis URL forms (one Redis, Redis
//! Sentinel, Redis Cluster). Pure parsing, table-tested; the file store's directory is checked by
//! [`super::Config::load`], the only place that touches the file system.
//!
//! Must not: accept a value that would silently become a file path when a URL was meant (a
//! `redis+sentinel://…` typo once became a directory tree in the working directory, and each
//! replica minted on its own), or echo the value back (it may hold a password).

use serde::Serialize;
use std::path::Path;

/// What `token.store` may be, for error messages.
pub const SUPPORTED_STORES: &str = "a file path (e.g. /var/lib/zoho-auth-proxy/token.json); \
redis://HOST:PORT/DB or rediss://… (one Redis); \
redis+sentinel://[USER@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB] or rediss+sentinel://… (Redis Sentinel); \
redis+cluster://[USER@]HOST:PORT[,HOST:PORT…] or rediss+cluster://… (Redis Cluster)";

/// Default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;
/// Default port of a Redis node.
const REDIS_PORT: u16 = 6379;

/// One `HOST:PORT` of a sentinel or cluster list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisNode {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the fleet's Redis is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One primary behind a stable address (`redis://`, `rediss://`; a managed service may fail
    /// it over behind that name).
    Single,
    /// Sentinels name the current primary (`redis+sentinel://`, `rediss+sentinel://`).
    Sentinel {
        /// The sentinels, asked in turn.
        sentinels: Vec<RedisNode>,
        /// The name the sentinels monitor the primary under.
        master: String,
        /// Database number on the data nodes.
        db: i64,
        /// TLS to the data nodes (`rediss+sentinel://`); the sentinels are asked in plain text.
        tls: bool,
        /// The Redis ACL user on the data nodes (`redis+sentinel://USER@…`); the sentinels are
        /// asked as their default user.
        username: Option<String>,
    },
    /// A Redis Cluster reached through seed nodes (`redis+cluster://`, `rediss+cluster://`).
    Cluster {
        /// Seed nodes; the rest of the cluster is discovered from them.
        seeds: Vec<RedisNode>,
        /// TLS to every node (`rediss+cluster://`).
        tls: bool,
        /// The Redis ACL user on every node (`redis+cluster://USER@…`).
        username: Option<String>,
    },
}

/// A `token.store` value, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoreValue<'a> {
    /// A file path (relative paths resolve against the config file's folder).
    File(&'a str),
    /// A Redis URL of one of the supported forms.
    Redis(RedisTopology),
}

/// Classifies a `token.store` value; the error (without the value, which may hold a password)
/// names the scheme and the supported forms.
pub(super) fn classify(value: &str) -> Result<StoreValue<'_>, String> {
    if let Some((scheme, rest)) = value.split_once("://") {
        // Schemes are case-insensitive (RFC 3986 §3.1): `REDISS+CLUSTER://` asks for TLS too.
        let lower = scheme.to_ascii_lowercase();
        let tls = lower.starts_with("rediss");
        return match lower.as_str() {
            "redis" | "rediss" => Ok(StoreValue::Redis(RedisTopology::Single)),
            "redis+sentinel" | "rediss+sentinel" => sentinel(rest, tls).map(StoreValue::Redis),
            "redis+cluster" | "rediss+cluster" => cluster(rest, tls).map(StoreValue::Redis),
            _ => Err(format!(
                "unsupported scheme `{}`; use {SUPPORTED_STORES}",
                printable(scheme)
            )),
        };
    }
    // `redis:/host/0`, `redis+sentinel:host:26379/…`: a mistyped URL, not a file name.
    let first = value.split('/').next().unwrap_or_default();
    if first.contains(':') {
        let scheme = first.split(':').next().unwrap_or_default();
        return Err(format!(
            "looks like a mistyped URL (scheme `{}`, but no `://`); a file path must not start with a component containing `:`; use {SUPPORTED_STORES}",
            printable(scheme)
        ));
    }
    Ok(StoreValue::File(value))
}

/// Checks that the file store's folder exists and that this process can create files in it
/// (the store is written as a temporary file renamed into place). Creates and removes a probe
/// file: the only reliable test on read-only mounts and for other users' folders.
pub(super) fn check_file_store_dir(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        format!(
            "the folder of the token file, {}, is not usable ({e}); create it (writable by the proxy's user) or point token.store elsewhere",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "the folder of the token file, {}, is not a directory",
            dir.display()
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token".to_string());
    let probe = dir.join(format!(".{name}.probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "the folder of the token file, {}, is not writable by the proxy ({e}); the token file is written there",
            dir.display()
        )),
    }
}

/// `HOST:PORT[,…]/MASTER_NAME[/DB]`.
fn sentinel(rest: &str, tls: bool) -> Result<RedisTopology, String> {
    let scheme = if tls {
        "rediss+sentinel"
    } else {
        "redis+sentinel"
    };
    let form = format!("{scheme}://[USER@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (username, authority) = user(authority, &form)?;
    let sentinels = nodes(authority, SENTINEL_PORT, &form)?;
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or_default();
    if master.is_empty() {
        return Err(format!("names no master (the name the sentinels monitor the primary under, e.g. mymaster); use {form}"));
    }
    if !master
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "the master name may hold letters, digits, `-`, `_` and `.` only; use {form}"
        ));
    }
    let db = match parts.next() {
        None | Some("") => 0,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=65535).contains(n))
            .ok_or_else(|| format!("`/{}` is not a database number; use {form}", printable(n)))?,
    };
    if parts.next().is_some() {
        return Err(format!("has more path than MASTER_NAME/DB; use {form}"));
    }
    Ok(RedisTopology::Sentinel {
        sentinels,
        master: master.to_string(),
        db,
        tls,
        username,
    })
}

/// `HOST:PORT[,…]` and nothing else (a cluster has database 0 only).
fn cluster(rest: &str, tls: bool) -> Result<RedisTopology, String> {
    let scheme = if tls {
        "rediss+cluster"
    } else {
        "redis+cluster"
    };
    let form = format!("{scheme}://[USER@]HOST:PORT[,HOST:PORT…]");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (username, authority) = user(authority, &form)?;
    if !matches!(path, "" | "0") {
        return Err(format!(
            "a Redis Cluster has database 0 only; drop the path and use {form}"
        ));
    }
    let seeds = nodes(authority, REDIS_PORT, &form)?;
    Ok(RedisTopology::Cluster {
        seeds,
        tls,
        username,
    })
}

/// The user name in front of `@` (a Redis ACL user), and the rest. A password there is refused:
/// it belongs in a file, not in a URL that ends up in logs and process listings.
fn user<'a>(authority: &'a str, form: &str) -> Result<(Option<String>, &'a str), String> {
    let Some((user, rest)) = authority.rsplit_once('@') else {
        return Ok((None, authority));
    };
    if user.contains(':') {
        return Err("do not put a password in the URL; use token.redis_password_file (data nodes) and token.sentinel_password_file (sentinels)".to_string());
    }
    let valid = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
    if !valid {
        return Err(format!(
            "the user name may hold letters, digits, `-`, `_`, `.` and `~` only; use {form}"
        ));
    }
    Ok((Some(user.to_string()), rest))
}

/// A comma-separated `HOST[:PORT]` list, without user info or query.
fn nodes(authority: &str, default_port: u16, form: &str) -> Result<Vec<RedisNode>, String> {
    if authority.contains(['?', '#']) {
        return Err(format!("takes no query or fragment; use {form}"));
    }
    let mut out = Vec::new();
    for item in authority.split(',') {
        let bad = || format!("`{}` is not HOST:PORT; use {form}", printable(item));
        let (host, port) = if let Some(v6) = item.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else {
            match item.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (item, None),
            }
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !valid_host {
            return Err(bad());
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        };
        out.push(RedisNode {
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

/// At most 40 characters of a scheme-like fragment, control characters dropped.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> RedisNode {
        RedisNode {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn supported_forms_are_classified() {
        let cases: &[(&str, StoreValue)] = &[
            (
                "/var/lib/zap/token.json",
                StoreValue::File("/var/lib/zap/token.json"),
            ),
            ("./token.json", StoreValue::File("./token.json")),
            ("token.json", StoreValue::File("token.json")),
            (
                "/var/lib/a:b/token.json",
                StoreValue::File("/var/lib/a:b/token.json"),
            ),
            (
                "redis://redis:6379/0",
                StoreValue::Redis(RedisTopology::Single),
            ),
            (
                "rediss://redis:6380/0",
                StoreValue::Redis(RedisTopology::Single),
            ),
            (
                "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/zap/0",
                StoreValue::Redis(RedisTopology::Sentinel {
                    sentinels: vec![node("127.0.0.1", 26379), node("127.0.0.1", 26380)],
                    master: "zap".into(),
                    db: 0,
                    tls: false,
                    username: None,
                }),
            ),
            (
                "rediss+sentinel://redis.ns.svc/mymaster/3",
                StoreValue::Redis(RedisTopology::Sentinel {
                    sentinels: vec![node("redis.ns.svc", 26379)],
                    master: "mymaster".into(),
                    db: 3,
                    tls: true,
                    username: None,
                }),
            ),
            (
                "Rediss+Sentinel://redis.ns.svc/mymaster/3",
                StoreValue::Redis(RedisTopology::Sentinel {
                    sentinels: vec![node("redis.ns.svc", 26379)],
                    master: "mymaster".into(),
                    db: 3,
                    tls: true,
                    username: None,
                }),
            ),
            (
                "redis+sentinel://[::1]:26379/mymaster",
                StoreValue::Redis(RedisTopology::Sentinel {
                    sentinels: vec![node("::1", 26379)],
                    master: "mymaster".into(),
                    db: 0,
                    tls: false,
                    username: None,
                }),
            ),
            (
                "redis+sentinel://proxy@h1:26379,h2/mymaster/2",
                StoreValue::Redis(RedisTopology::Sentinel {
                    sentinels: vec![node("h1", 26379), node("h2", 26379)],
                    master: "mymaster".into(),
                    db: 2,
                    tls: false,
                    username: Some("proxy".into()),
                }),
            ),
        ];
        for (value, expect) in cases {
            assert_eq!(classify(value).as_ref(), Ok(expect), "{value}");
        }
    }

    #[test]
    fn cluster_forms_are_classified() {
        let cases: &[(&str, StoreValue)] = &[
            (
                "redis+cluster://10.0.0.1:7000,10.0.0.2",
                StoreValue::Redis(RedisTopology::Cluster {
                    seeds: vec![node("10.0.0.1", 7000), node("10.0.0.2", 6379)],
                    tls: false,
                    username: None,
                }),
            ),
            (
                "rediss+cluster://zoho-proxy_1@10.0.0.1:7000",
                StoreValue::Redis(RedisTopology::Cluster {
                    seeds: vec![node("10.0.0.1", 7000)],
                    tls: true,
                    username: Some("zoho-proxy_1".into()),
                }),
            ),
            (
                "REDISS+CLUSTER://10.0.0.1:7000",
                StoreValue::Redis(RedisTopology::Cluster {
                    seeds: vec![node("10.0.0.1", 7000)],
                    tls: true,
                    username: None,
                }),
            ),
            (
                "rediss+cluster://clustercfg.example.cache.amazonaws.com:6379/",
                StoreValue::Redis(RedisTopology::Cluster {
                    seeds: vec![node("clustercfg.example.cache.amazonaws.com", 6379)],
                    tls: true,
                    username: None,
                }),
            ),
        ];
        for (value, expect) in cases {
            assert_eq!(classify(value).as_ref(), Ok(expect), "{value}");
        }
    }

    #[test]
    fn unsupported_and_mistyped_values_are_refused_naming_the_scheme() {
        // (value, the error mentions)
        let cases: &[(&str, &str)] = &[
            ("memcached://cache:11211", "unsupported scheme `memcached`"),
            (
                "redis-sentinel://h:26379/m",
                "unsupported scheme `redis-sentinel`",
            ),
            ("sentinel://h:26379/m", "unsupported scheme `sentinel`"),
            ("file:///var/lib/token.json", "unsupported scheme `file`"),
            (
                "redis+sentinel:/127.0.0.1:26379/zap/0",
                "mistyped URL (scheme `redis+sentinel`",
            ),
            ("redis:127.0.0.1:6379", "mistyped URL (scheme `redis`"),
            ("redis+sentinel://h:26379", "names no master"),
            ("redis+sentinel://h:26379/", "names no master"),
            ("redis+sentinel://h:26379/m/x", "not a database number"),
            ("redis+sentinel://h:26379/m/0/9", "more path"),
            ("redis+sentinel://h:26379/my*master", "master name"),
            ("redis+sentinel://:pw@h:26379/m", "password"),
            ("redis+sentinel://h:99999/m", "not HOST:PORT"),
            ("redis+sentinel://h:1,,h:2/m", "not HOST:PORT"),
            ("redis+cluster://h:7000/1", "database 0 only"),
            ("redis+cluster://h:7000?x=1", "no query"),
            ("rediss+cluster://user:pw@h:7000", "password"),
            ("redis+cluster://@h:7000", "user name"),
            ("redis+cluster://us er@h:7000", "user name"),
            ("redis+sentinel://a@b@h:26379/m", "user name"),
        ];
        for (value, expect) in cases {
            let err = classify(value).expect_err(value);
            assert!(err.contains(expect), "{value}: {err}");
            assert!(
                !err.contains("pw@"),
                "{value}: the value is not echoed: {err}"
            );
            if err.contains("scheme") {
                assert!(
                    err.contains("redis+sentinel://[USER@]HOST:PORT"),
                    "{value}: lists the forms: {err}"
                );
            }
        }
    }

    #[test]
    fn the_file_store_folder_must_exist_and_be_writable() {
        let dir = tempfile::tempdir().expect("temp dir");
        check_file_store_dir(&dir.path().join("token.json")).expect("a writable folder");
        assert!(
            std::fs::read_dir(dir.path())
                .expect("list")
                .next()
                .is_none(),
            "the probe file is removed"
        );
        let missing = dir.path().join("missing/token.json");
        let err = check_file_store_dir(&missing).expect_err("a missing folder");
        assert!(
            err.contains("missing") && err.contains("create it"),
            "{err}"
        );
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").expect("write");
        let err = check_file_store_dir(&file.join("token.json")).expect_err("not a folder");
        assert!(err.contains("not a directory"), "{err}");
        // /proc refuses new files even to root (file permissions would not stop a root test run).
        if Path::new("/proc/self").exists() {
            let err = check_file_store_dir(Path::new("/proc/token.json")).expect_err("read-only");
            assert!(err.contains("not writable"), "{err}");
        }
    }
}
