//! Fleet mode on highly available Redis: real `redis-server --sentinel` processes watching a
//! primary and its replica, and a real Redis Cluster (`--cluster-enabled yes`, `redis-cli
//! --cluster create`), on free loopback ports; replicas are child processes of the real binary
//! against one fake Zoho. Also: a `token.store` of an unknown scheme exits 2.
//!
//! Failover timing is tuned down (`down-after-milliseconds 1000`, `failover-timeout 3000`,
//! `cluster-node-timeout 1000`) so the file runs in well under two minutes.
//!
//! Without `redis-server`/`redis-cli` each Redis test prints a loud SKIPPED message and returns
//! (`apt-get install -y redis-server`; `.ci/run` installs it).

#[path = "../common/mod.rs"]
mod common;

use common::*;
use futures_util::future::join_all;
use nodes::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ALLOW_LEADS: &[&str] = &["ZohoCRM.modules.leads.ALL"];
const MASTER: &str = "zap";

/// `redis-server` and `redis-cli`, if installed.
fn redis_tools() -> Option<(PathBuf, PathBuf)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let find = |name: &str| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    Some((find("redis-server")?, find("redis-cli")?))
}

macro_rules! require_redis {
    () => {
        match redis_tools() {
            Some(b) => b,
            None => {
                eprintln!(
                    "\n\n!!!!!!!!!! SKIPPED {}: redis-server/redis-cli are not installed; run `apt-get install -y redis-server` to run the fleet HA tests !!!!!!!!!!\n\n",
                    module_path!()
                );
                return;
            }
        }
    };
}

mod cluster;
mod nodes;
mod sentinel;

/// The fleet's proxy.yaml with `token:` lines.
fn fleet_config(zoho: &Zoho, token: &str) -> PathBuf {
    let config = zoho.config(ALLOW_LEADS, &format!("token:\n{token}"));
    let path = zoho.dir.path().join("fleet.yaml");
    std::fs::write(&path, config).expect("write config");
    path
}

async fn start_fleet(config: &Path, n: usize) -> Vec<RunningProxy> {
    join_all((0..n).map(|_| RunningProxy::spawn_file(config, &[]))).await
}

/// Two replicas on the TLS store at `url` (trusting `tls`'s CA through `SSL_CERT_FILE`), ready
/// and sharing one token, which they got with exactly one token request (`what` says where).
async fn tls_pair_sharing_one_token(
    zoho: &Zoho,
    url: &str,
    tls: &Tls,
    what: &str,
) -> Vec<RunningProxy> {
    let config = fleet_config(zoho, &format!("  store: {url}\n"));
    let ca = tls.ca_file();
    let env = [("SSL_CERT_FILE", ca.to_str().expect("utf-8 path"))];
    let fleet = join_all((0..2).map(|_| RunningProxy::spawn_file(&config, &env))).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(zoho.control().token_requests(), 1, "{what}");
    fleet
}

/// Waits until every replica injects one and the same live token; returns it.
/// Two replicas on `url` (a store URL naming a Redis ACL user) with that user's `password`: both
/// ready, one shared token, one token request.
async fn acl_user_pair_sharing_one_token(
    zoho: &Zoho,
    url: &str,
    password: &str,
) -> Vec<RunningProxy> {
    let config = fleet_config(
        zoho,
        &format!("  store: {url}\n  redis_password: ${{TEST_REDIS_PASSWORD}}\n"),
    );
    let env = [("TEST_REDIS_PASSWORD", password)];
    let fleet = join_all((0..2).map(|_| RunningProxy::spawn_file(&config, &env))).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "as the ACL user the fleet shares one token"
    );
    fleet
}

async fn wait_for_one_shared_token(
    zoho: &Zoho,
    fleet: &[RunningProxy],
    deadline: Duration,
) -> String {
    let end = Instant::now() + deadline;
    loop {
        let tokens: Vec<Result<String, u16>> = join_all(fleet.iter().map(injected_token)).await;
        if let Ok(t) = &tokens[0] {
            if tokens.iter().all(|x| x.as_ref() == Ok(t)) && zoho.control().is_live(t) {
                return t.clone();
            }
        }
        assert!(
            Instant::now() < end,
            "all replicas converge on one live token; they answer: {:?}",
            tokens
                .iter()
                .map(|t| t.as_ref().map(|s| &s[..12.min(s.len())]))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(proxy: &RunningProxy) -> (u16, String) {
    match client().get(proxy.admin_url("/readyz")).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Waits up to `within` for `proxy`'s /readyz to answer 503 with a body holding every one of
/// `texts`; fails naming `what` and the last answer otherwise.
async fn assert_unready_naming(proxy: &RunningProxy, texts: &[&str], within: Duration, what: &str) {
    let named = poll_until(within, || async {
        let (status, body) = readyz(proxy).await;
        status == 503 && texts.iter().all(|t| body.contains(t))
    })
    .await;
    assert!(
        named,
        "{what} is named in /readyz: {:?}",
        readyz(proxy).await
    );
}

/// Steady requests on every replica until `stop`; each task returns (successes, failures).
fn steady_traffic(
    fleet: &[RunningProxy],
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<(u32, Vec<u16>)>> {
    fleet
        .iter()
        .map(|p| {
            let url = p.url("/crm/v8/Leads/554023000000235011");
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = client();
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.is_cancelled() {
                    match c.get(&url).send().await {
                        Ok(r) if r.status().is_success() => ok += 1,
                        Ok(r) => failed.push(r.status().as_u16()),
                        Err(_) => failed.push(0),
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                (ok, failed)
            })
        })
        .collect()
}

/// Revokes every access token and sends a request through each replica: all must succeed (by
/// replay with the fleet's new token).
async fn revoke_and_recover(zoho: &Zoho, fleet: &[RunningProxy]) {
    zoho.control().revoke_all_access_tokens();
    let statuses = join_all(fleet.iter().map(|p| async move {
        client()
            .get(p.url("/crm/v8/Leads"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }))
    .await;
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "every request after the revoke succeeded by replay: {statuses:?}"
    );
}

fn assert_fleet_keeps_secrets(zoho: &Zoho, fleet: &[RunningProxy]) {
    let tokens = zoho.control().live_tokens();
    for p in fleet {
        p.assert_no_secrets(&tokens);
    }
}

// ---------------------------------------------------------------------------------------------
// Store values.

#[tokio::test]
async fn an_unknown_or_mistyped_store_exits_2_naming_token_store() {
    let zoho = Zoho::start().await;
    let missing = zoho.dir.path().join("no-such-dir/token.json");
    let cases = [
        (
            "memcached://cache:11211/0",
            "unsupported scheme `memcached`",
        ),
        (
            "redis+sentinel:/127.0.0.1:26379,127.0.0.1:26380/zap/0",
            "mistyped URL",
        ),
        (missing.to_str().expect("utf-8"), "no-such-dir"),
    ];
    for (store, needle) in cases {
        let path = zoho.dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            zoho.config(ALLOW_LEADS, &format!("token:\n  store: '{store}'\n")),
        )
        .expect("write config");
        let out = tokio::process::Command::new(binary())
            .arg("--config")
            .arg(&path)
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
            .current_dir(zoho.dir.path())
            .output()
            .await
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{store}: exit 2: {stderr}");
        assert!(
            stderr.contains("token.store") && stderr.contains(needle),
            "{store}: names token.store and `{needle}`: {stderr}"
        );
        assert!(
            !zoho.dir.path().join("redis+sentinel:").exists(),
            "{store}: no directory tree named after the URL"
        );
    }
}

#[test]
fn the_kubernetes_sentinel_example_is_a_config_the_proxy_accepts() {
    use zoho_auth_proxy::config::{Config, RedisTopology, StoreConfig};
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes/fleet-sentinel/configmap.yaml");
    let configmap: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read the ConfigMap"))
            .expect("ConfigMap YAML");
    let proxy_yaml = configmap["data"]["proxy.yaml"]
        .as_str()
        .expect("data.proxy.yaml");
    // The Secret files the pod mounts, here in a temp dir.
    let secrets = tempfile::tempdir().expect("temp dir");
    for (name, value) in [
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", REFRESH_TOKEN),
        ("redis-password", "REDIS-PW-CANARY"),
    ] {
        std::fs::write(secrets.path().join(name), value).expect("write secret");
    }
    let dir = format!("{}/", secrets.path().display());
    let text = proxy_yaml
        .replace("/run/secrets/zoho/", &dir)
        .replace("/run/secrets/redis/", &dir);
    let env = |name: &str| (name == "ZOHO_CLIENT_ID").then(|| CLIENT_ID.to_string());
    let config = Config::from_yaml_str_with(&text, &env, secrets.path())
        .expect("the example's proxy.yaml is a valid config");
    let StoreConfig::Redis {
        topology,
        password,
        sentinel_password,
        ..
    } = &config.accounts[0].token.store
    else {
        panic!("a Redis store: {:?}", config.accounts[0].token.store);
    };
    let RedisTopology::Sentinel {
        sentinels, master, ..
    } = topology
    else {
        panic!("Sentinel: {topology:?}");
    };
    assert_eq!(master, "mymaster", "the Bitnami chart's master name");
    assert_eq!(sentinels.len(), 3, "one sentinel per chart pod");
    assert!(
        sentinels
            .iter()
            .all(|s| s.port == 26379 && s.host.ends_with(".redis-headless")),
        "the chart's per-pod sentinel names: {sentinels:?}"
    );
    assert!(
        password.is_some() && sentinel_password.is_some(),
        "both passwords come from the chart's Secret"
    );
}
