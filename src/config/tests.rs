//! Config validation tests: every error names its key (and line when known), never a secret.

use super::error::line_of;
use super::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

const GOOD: &str = "listen: 127.0.0.1:8080
zoho:
  data_center: eu
  client_id: ${ZOHO_CLIENT_ID}
  client_secret: ${ZOHO_CLIENT_SECRET}
  refresh_token: ${ZOHO_REFRESH_TOKEN}
allow:
  - ZohoCRM.modules.leads.READ
";

fn parse(text: &str) -> Result<Config, ConfigError> {
    let e = env(&[
        ("ZOHO_CLIENT_ID", "1000.ID"),
        ("ZOHO_CLIENT_SECRET", "CS-CANARY"),
        ("ZOHO_REFRESH_TOKEN", "RT-CANARY"),
    ]);
    Config::from_yaml_str_with(text, &e, Path::new("/tmp"))
}

#[test]
fn the_documented_single_account_form_is_valid() {
    let c = parse(GOOD).expect("valid config");
    assert_eq!(c.accounts.len(), 1);
    let a = &c.accounts[0];
    assert_eq!(a.name, "default");
    assert_eq!(a.data_center, DataCenter::Eu);
    assert_eq!(a.accounts_url.as_str(), "https://accounts.zoho.eu/");
    assert_eq!(a.client_secret.expose(), "CS-CANARY");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9901");
    let described = c.describe().to_string();
    assert!(
        !described.contains("CS-CANARY") && !described.contains("RT-CANARY"),
        "check output hides secrets: {described}"
    );
    assert!(!format!("{c:?}").contains("CANARY"), "Debug hides secrets");
}

/// (case, yaml, key the error must name, line if the parser or locator knows it)
const BAD: &[(&str, &str, &str, Option<usize>)] = &[
    ("yaml syntax", "listen: 127.0.0.1:8080\nallow: [a, b\n", "(file)", Some(3)),
    ("unknown top key", "listen: 127.0.0.1:8080\nallowlst: []\n", "(file)", Some(2)),
    ("unknown nested key", "zoho:\n  client_idd: x\n", "zoho", Some(2)),
    ("duplicate key", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", "(file)", Some(2)),
    ("missing secret", "zoho:\n  client_id: a\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.client_secret", None),
    ("unset variable", "zoho:\n  client_id: a\n  client_secret: ${NOPE}\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.client_secret", Some(3)),
    ("empty secret", "zoho:\n  client_id: a\n  client_secret: ''\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.client_secret", Some(3)),
    ("unreadable secret file", "zoho:\n  client_id: a\n  client_secret_file: /nonexistent/secret\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.client_secret_file", Some(3)),
    ("bad url", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  api_url: 'not a url'\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.api_url", Some(5)),
    ("plain http remote", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  accounts_url: http://accounts.zoho.com\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.accounts_url", Some(5)),
    ("url with path", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  api_url: https://www.zohoapis.com/crm\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.api_url", Some(5)),
    ("foreign api host", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  api_url: https://evil.example\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.api_url", Some(5)),
    ("cross-dc api host", "zoho:\n  data_center: eu\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  api_url: https://www.zohoapis.com\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.api_url", Some(6)),
    ("foreign accounts host", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  accounts_url: https://accounts.evil.example\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.accounts_url", Some(5)),
    ("unknown data center", "zoho:\n  data_center: mars\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.data_center", Some(2)),
    ("empty allowlist", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: []\n", "allow", Some(5)),
    ("bad scope", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READS]\n", "allow", Some(5)),
    ("remote listen", "listen: 0.0.0.0:8080\nzoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "listen", Some(1)),
    ("bad duration", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\nlimits:\n  request_timeout: soon\n", "limits.request_timeout", Some(7)),
    ("limit key that does nothing", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\nlimits:\n  policy_body: 1MiB\n", "limits", Some(7)),
    ("bad size", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\nlimits:\n  max_body: lots\n", "limits.max_body", Some(7)),
    ("budget over zoho's", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\ntoken:\n  mint_budget: 11\n", "token.mint_budget", Some(7)),
    ("grant without store", "zoho:\n  client_id: a\n  client_secret: s\n  grant_token: g\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.grant_token", Some(4)),
    ("no refresh token", "zoho:\n  client_id: a\n  client_secret: s\nallow: [ZohoCRM.modules.leads.READ]\n", "zoho.refresh_token", None),
    ("empty file", "   \n", "(file)", None),
    ("no workers", "workers: 0\nzoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "workers", Some(1)),
    ("too many workers", "workers: 100000\nzoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "workers", Some(1)),
    ("workers word", "workers: many\nzoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "workers", Some(1)),
];

#[test]
fn bad_configs_name_the_key_and_line() {
    for (case, yaml, key, line) in BAD {
        let err = match parse(yaml) {
            Ok(_) => panic!("{case}: accepted"),
            Err(e) => e,
        };
        assert_eq!(err.key, *key, "{case}: key in {err}");
        if line.is_some() {
            assert_eq!(err.line, *line, "{case}: line in {err}");
        }
        let text = err.to_string();
        assert!(
            !text.contains("CS-CANARY") && !text.contains("RT-CANARY"),
            "{case}: no secret in {text}"
        );
    }
}

#[test]
fn upstream_concurrency_is_auto_by_default_or_a_number() {
    use crate::config::UpstreamConcurrency::{Auto, Fixed};
    // (limits section, the setting, or the key an error names)
    const CASES: &[(&str, Result<crate::config::UpstreamConcurrency, &str>)] = &[
        ("", Ok(Auto)),
        ("limits:\n  upstream_concurrency: auto\n", Ok(Auto)),
        ("limits:\n  upstream_concurrency: AUTO\n", Ok(Auto)),
        ("limits:\n  upstream_concurrency: 25\n", Ok(Fixed(25))),
        ("limits:\n  upstream_concurrency: 0\n", Ok(Fixed(0))),
        (
            "limits:\n  upstream_concurrency: edition\n",
            Err("limits.upstream_concurrency"),
        ),
        (
            "limits:\n  upstream_replicas: 0\n",
            Err("limits.upstream_replicas"),
        ),
    ];
    for (section, want) in CASES {
        let got = parse(&format!("{GOOD}{section}"))
            .map(|c| c.limits.upstream_concurrency)
            .map_err(|e| e.key);
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            want.as_ref().map_err(|k| *k),
            "{section:?}"
        );
    }
    let three = parse(&format!("{GOOD}limits:\n  upstream_replicas: 3\n")).expect("valid");
    assert_eq!(three.limits.per_replica(20), 6, "20 over 3 replicas");
    assert_eq!(three.limits.per_replica(2), 1, "at least one");
}

#[test]
fn workers_are_one_by_default_or_as_written() {
    let auto = crate::rt::workers::auto_count().min(MAX_WORKERS);
    assert_eq!(parse(GOOD).expect("valid").workers, 1);
    assert_eq!(DEFAULT_WORKERS, 1);
    assert_eq!(
        parse(&format!("workers: auto\n{GOOD}"))
            .expect("valid")
            .workers,
        auto
    );
    assert_eq!(
        parse(&format!("workers: 3\n{GOOD}"))
            .expect("valid")
            .workers,
        3
    );
    assert_eq!(
        parse(&format!("workers: '${{ZOHO_CLIENT_ID:-x}}'\n{GOOD}"))
            .map(|_| ())
            .expect_err("not a number")
            .key,
        "workers"
    );
    let e = env(&[
        ("ZOHO_CLIENT_ID", "1000.ID"),
        ("ZOHO_CLIENT_SECRET", "CS-CANARY"),
        ("ZOHO_REFRESH_TOKEN", "RT-CANARY"),
        ("WORKERS", "2"),
    ]);
    let from_env = Config::from_yaml_str_with(
        &format!("workers: ${{WORKERS}}\n{GOOD}"),
        &e,
        Path::new("/tmp"),
    )
    .expect("valid");
    assert_eq!(from_env.workers, 2);
}

#[test]
fn unknown_key_messages_name_the_key() {
    let err = parse("listen: 127.0.0.1:8080\nallowlst: []\n")
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("allowlst"), "{err}");
    let err = parse("zoho:\n  client_id: a\n  client_id: b\n")
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("duplicate"), "{err}");
}

#[test]
fn multi_account_form_with_shared_store_gets_one_file_per_account() {
    let yaml = "routing: header
token:
  store: /var/lib/zap/token.json
accounts:
  - name: acme
    client_id: a
    client_secret: s
    refresh_token: r
    allow: [ZohoCRM.modules.leads.READ]
  - name: globex
    client_type: server
    data_center: eu
    client_id: b
    client_secret: s2
    redirect_uri: http://127.0.0.1:9901/oauth/callback
    listen: 127.0.0.1:8081
    allow: [ZohoCRM.modules.contacts.READ]
";
    let c = parse(yaml).expect("valid multi-account config");
    assert_eq!(c.routing, Routing::Header);
    let stores: Vec<_> = c.accounts.iter().map(|a| a.token.store.clone()).collect();
    assert_eq!(
        stores,
        vec![
            StoreConfig::File(PathBuf::from("/var/lib/zap/token.acme.json")),
            StoreConfig::File(PathBuf::from("/var/lib/zap/token.globex.json"))
        ]
    );
    assert_eq!(c.accounts[1].client_type, ClientType::Server);
    let err = parse(&yaml.replace("name: globex", "name: acme"))
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("duplicate account name"), "{err}");
}

#[test]
fn loopback_http_overrides_are_accepted_for_local_stand_ins() {
    let yaml = GOOD.replace(
        "  data_center: eu\n",
        "  accounts_url: http://127.0.0.1:9\n  api_url: https://127.0.0.1:10\n",
    );
    let c = parse(&yaml).expect("loopback http accepted");
    assert_eq!(c.accounts[0].accounts_url.as_str(), "http://127.0.0.1:9/");
}

#[test]
fn line_locator_finds_nested_and_indexed_keys() {
    let text =
        "a: 1\naccounts:\n  - name: x\n    allow:\n      - A\n  - name: y\n    allow:\n      - B\n";
    assert_eq!(line_of(text, "accounts[1].allow"), Some(7));
    assert_eq!(line_of(text, "accounts[0].name"), Some(3));
}

const SERVER: &str = "token:
  store: /var/lib/zap/token.json
accounts:
  - name: globex
    client_type: server
    client_id: b
    client_secret: s2
    redirect_uri: REDIRECT
    scopes: SCOPES
    allow: [ZohoCRM.modules.contacts.READ]
";

#[test]
fn server_accounts_check_redirect_uri_and_scopes() {
    let with = |redirect: &str, scopes: &str| {
        parse(
            &SERVER
                .replace("REDIRECT", redirect)
                .replace("SCOPES", scopes),
        )
    };
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "loopback http",
            "http://127.0.0.1:9901/oauth/callback",
            "[ZohoCRM.modules.ALL]",
            None,
        ),
        (
            "localhost http",
            "http://localhost:9901/oauth/callback",
            "[ZohoCRM.modules.ALL]",
            None,
        ),
        (
            "public https",
            "https://proxy.example.com/zoho/oauth/callback",
            "[ZohoCRM.modules.ALL, ZohoCRM.users.READ]",
            None,
        ),
        (
            "public plain http",
            "http://proxy.example.com/oauth/callback",
            "[ZohoCRM.modules.ALL]",
            Some("accounts[0].redirect_uri"),
        ),
        (
            "credentials",
            "https://u:p@proxy.example.com/oauth/callback",
            "[ZohoCRM.modules.ALL]",
            Some("accounts[0].redirect_uri"),
        ),
        (
            "fragment",
            "https://proxy.example.com/oauth/callback#x",
            "[ZohoCRM.modules.ALL]",
            Some("accounts[0].redirect_uri"),
        ),
        (
            "other scheme",
            "ftp://127.0.0.1/oauth/callback",
            "[ZohoCRM.modules.ALL]",
            Some("accounts[0].redirect_uri"),
        ),
        (
            "scope with comma",
            "http://127.0.0.1:9901/oauth/callback",
            "['ZohoCRM.modules.ALL,x']",
            Some("accounts[0].scopes[0]"),
        ),
        (
            "scope with space",
            "http://127.0.0.1:9901/oauth/callback",
            "[ZohoCRM.users.READ, 'a b']",
            Some("accounts[0].scopes[1]"),
        ),
    ];
    for (case, redirect, scopes, bad_key) in cases {
        match (with(redirect, scopes), bad_key) {
            (Ok(_), None) => {}
            (Err(e), Some(key)) => assert_eq!(e.key, *key, "{case}: key in {e}"),
            (got, want) => panic!(
                "{case}: expected error at {want:?}, got {:?}",
                got.map(|_| ())
            ),
        }
    }
    let c = with("http://127.0.0.1:9901/oauth/callback", "[]")
        .expect("empty scopes fall back to allow");
    assert_eq!(
        c.accounts[0].scopes,
        vec!["ZohoCRM.modules.contacts.READ".to_string()],
        "scopes default to the allowlist"
    );
}

#[test]
fn the_authorize_start_url_follows_the_redirect_uri() {
    let admin = ListenAddr::Tcp("127.0.0.1:9901".parse().expect("addr"));
    let cases: &[(&str, &str)] = &[
        (
            "http://127.0.0.1:9901/oauth/callback",
            "http://127.0.0.1:9901/oauth/start?account=globex",
        ),
        (
            "https://proxy.example.com/zoho/oauth/callback",
            "https://proxy.example.com/zoho/oauth/start?account=globex",
        ),
        (
            "https://proxy.example.com/cb",
            "http://127.0.0.1:9901/oauth/start?account=globex",
        ),
    ];
    for (redirect, want) in cases {
        let c =
            parse(&SERVER.replace("REDIRECT", redirect).replace("SCOPES", "[]")).expect("valid");
        assert_eq!(
            c.accounts[0].authorize_start_url(&admin),
            *want,
            "start URL for redirect_uri {redirect}"
        );
    }
}

#[test]
fn the_repository_example_proxy_yaml_is_valid() {
    let text = include_str!("../../proxy.yaml");
    let e = env(&[
        ("ZOHO_CLIENT_ID", "1000.ID"),
        ("ZOHO_CLIENT_SECRET", "s"),
        ("ZOHO_REFRESH_TOKEN", "r"),
    ]);
    let c = Config::from_yaml_str_with(text, &e, Path::new("/tmp")).expect("proxy.yaml is valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        c.limits,
        Limits::default(),
        "the example documents the defaults"
    );
}

#[test]
fn store_values_that_are_not_a_supported_url_or_a_plain_path_are_refused_naming_the_key() {
    // (token section, key named, fragment of the message)
    let cases: &[(&str, &str, &str)] = &[
        (
            "  store: memcached://cache:11211/0\n",
            "token.store",
            "unsupported scheme `memcached`",
        ),
        (
            "  store: redis+sentinel:/127.0.0.1:26379,127.0.0.1:26380/zap/0\n",
            "token.store",
            "mistyped URL",
        ),
        (
            "  store: 'redis:127.0.0.1:6379'\n",
            "token.store",
            "mistyped URL",
        ),
        (
            "  store: redis+sentinel://127.0.0.1:26379\n",
            "token.store",
            "names no master",
        ),
        (
            "  store: redis+cluster://127.0.0.1:7000/2\n",
            "token.store",
            "database 0 only",
        ),
        (
            "  store: redis+sentinel://:pw@127.0.0.1:26379/zap\n",
            "token.store",
            "password",
        ),
        (
            "  store: redis://redis:6379/0\n  sentinel_password: x\n",
            "token.sentinel_password",
            "Redis Sentinel only",
        ),
        (
            "  store: /var/lib/zap/token.json\n  sentinel_password_file: /x\n",
            "token.sentinel_password_file",
            "Redis Sentinel only",
        ),
    ];
    for (token, key, fragment) in cases {
        let yaml = format!("{GOOD}token:\n{token}");
        let err = parse(&yaml).map(|_| ()).expect_err(token);
        assert_eq!(err.key, *key, "{token}: {err}");
        assert!(err.message.contains(fragment), "{token}: {err}");
        assert!(
            !err.to_string().contains("pw@"),
            "{token}: value not echoed: {err}"
        );
        assert!(err.line.is_some(), "{token}: the line is named: {err}");
    }
    // The same rule for an account's own token section, named with its index.
    let yaml = "routing: header
accounts:
  - name: acme
    client_id: a
    client_secret: s
    refresh_token: r
    allow: [ZohoCRM.modules.leads.READ]
  - name: globex
    client_id: b
    client_secret: s2
    refresh_token: r2
    allow: [ZohoCRM.modules.leads.READ]
    token:
      store: sentinel://h:26379/zap
";
    let err = parse(yaml).map(|_| ()).expect_err("refused");
    assert_eq!(err.key, "accounts[1].token.store", "{err}");
    assert!(
        err.message.contains("unsupported scheme `sentinel`"),
        "{err}"
    );
    assert!(
        err.message.contains("redis+cluster://[USER@]HOST:PORT"),
        "lists the supported forms: {err}"
    );
}

#[test]
fn sentinel_and_cluster_stores_are_parsed_with_their_passwords() {
    let yaml = format!(
        "{GOOD}token:\n  store: rediss+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster/2\n  redis_password: ${{ZOHO_CLIENT_SECRET}}\n  sentinel_password: ${{ZOHO_REFRESH_TOKEN}}\n"
    );
    let c = parse(&yaml).expect("valid sentinel store");
    let StoreConfig::Redis {
        url,
        topology,
        password,
        sentinel_password,
    } = &c.accounts[0].token.store
    else {
        panic!("a Redis store: {:?}", c.accounts[0].token.store);
    };
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    assert_eq!(
        topology,
        &RedisTopology::Sentinel {
            sentinels: vec![
                RedisNode {
                    host: "10.0.0.1".into(),
                    port: 26379
                },
                RedisNode {
                    host: "10.0.0.2".into(),
                    port: 26380
                },
            ],
            master: "mymaster".into(),
            db: 2,
            tls: true,
            username: None,
        }
    );
    assert_eq!(
        password.as_ref().map(|p| p.expose()),
        Some("CS-CANARY"),
        "data nodes' password"
    );
    assert_eq!(
        sentinel_password.as_ref().map(|p| p.expose()),
        Some("RT-CANARY"),
        "the sentinels' own password"
    );
    let yaml = format!("{GOOD}token:\n  store: redis+cluster://10.0.0.1:7000,10.0.0.2:7001\n");
    let c = parse(&yaml).expect("valid cluster store");
    assert!(
        matches!(&c.accounts[0].token.store, StoreConfig::Redis { topology: RedisTopology::Cluster { seeds, tls: false, username: None }, .. } if seeds.len() == 2),
        "{:?}",
        c.accounts[0].token.store
    );
    assert!(
        !format!("{:?}", c.accounts[0].token.store).contains("CANARY"),
        "Debug hides passwords"
    );
}

#[test]
fn a_file_store_folder_is_checked_when_the_config_is_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("proxy.yaml");
    let yaml = |store: &str| {
        format!("listen: 127.0.0.1:8080\nzoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow:\n  - ZohoCRM.modules.leads.READ\ntoken:\n  store: {store}\n")
    };
    std::fs::write(&path, yaml("state/token.json")).expect("write");
    let err = Config::load(&path).map(|_| ()).expect_err("missing folder");
    assert_eq!(err.key, "token.store", "{err}");
    assert_eq!(err.line, Some(9), "{err}");
    assert!(
        err.message.contains("state") && err.message.contains("create it"),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("state")).expect("mkdir");
    Config::load(&path).expect("the folder exists now");
    std::fs::write(&path, yaml("/proc/token.json")).expect("write");
    if Path::new("/proc/self").exists() {
        let err = Config::load(&path)
            .map(|_| ())
            .expect_err("read-only folder");
        assert!(err.message.contains("not writable"), "{err}");
    }
}

#[test]
fn url_scheme_refusals_keep_their_wording() {
    let url = |s: &str| url::Url::parse(s).expect("a URL");
    assert_eq!(
        check_base_url(&url("http://example.com")).expect_err("refused"),
        "`http://example.com/` uses plain http; tokens only travel over https (plain http is accepted only for a loopback host)"
    );
    assert_eq!(
        check_base_url(&url("ftp://example.com")).expect_err("refused"),
        "`ftp://example.com/` has scheme `ftp`; use https"
    );
    assert_eq!(
        check_redirect_uri(&url("http://example.com/oauth/callback")).expect_err("refused"),
        "`http://example.com/oauth/callback` uses plain http to a non-loopback host: the authorization code would travel in clear; use https (or a 127.0.0.1 address)"
    );
    assert_eq!(
        check_redirect_uri(&url("ftp://example.com/cb")).expect_err("refused"),
        "`ftp://example.com/cb` has scheme `ftp`; use http://127.0.0.1:PORT/oauth/callback or an https URL"
    );
    assert!(check_base_url(&url("http://LOCALHOST:8080")).is_ok());
    assert!(check_redirect_uri(&url("http://[::1]:9901/oauth/callback")).is_ok());
    assert_eq!(
        check_redirect_uri(&url("unix:/tmp/x")).expect_err("refused"),
        "`unix:/tmp/x` has no host"
    );
}
