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

mod common;

use common::*;
use futures_util::future::join_all;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ALLOW_LEADS: &[&str] = &["ZohoCRM.modules.leads.ALL"];
const ECHO: &str = "/crm/v8/Leads?__fake=echo";
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

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if port < 55000 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// One `redis-server` process (data node or sentinel) on loopback.
struct Node {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl Node {
    /// Starts `redis-server` with `args` (a config file first, for sentinels) and waits for PING.
    async fn start(server: &Path, config: Option<String>, args: &[String]) -> Node {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = tokio::process::Command::new(server);
        if let Some(text) = config {
            let file = dir.path().join("sentinel.conf");
            std::fs::write(&file, text.replace("PORT", &port.to_string())).expect("write conf");
            cmd.arg(file).arg("--sentinel");
        }
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let node = Node {
            port,
            dir,
            child: Some(cmd.spawn().expect("spawn redis-server")),
        };
        let up = poll_until(Duration::from_secs(10), || async {
            node.query::<String>(&["PING"]).await.is_ok()
        })
        .await;
        assert!(
            up,
            "redis-server on {port} answers PING; log:\n{}",
            node.log()
        );
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash or a node loss would.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL redis-server");
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timeout")))??;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        tokio::time::timeout(Duration::from_secs(2), cmd.query_async(&mut conn))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timeout")))?
    }
}

/// The fleet's key prefix of the test refresh token (the hash tag every key shares).
fn namespace_base() -> String {
    let ns = zoho_auth_proxy::token::redis_store::Namespace::new(CLIENT_ID, REFRESH_TOKEN);
    ns.channel()
        .strip_suffix(":updated")
        .expect("channel name ends in :updated")
        .to_string()
}

/// Entries in the fleet-wide mint log, as `node` has it.
async fn mint_log_len(node: &Node) -> usize {
    node.query::<usize>(&["ZCARD", &format!("{}:mints", namespace_base())])
        .await
        .expect("ZCARD on the node serving the fleet's keys")
}

// ---------------------------------------------------------------------------------------------
// Sentinel.

/// A primary, its replica and three sentinels watching it as `zap`.
struct Sentinels {
    primary: Node,
    replica: Node,
    sentinels: Vec<Node>,
}

impl Sentinels {
    async fn start(server: &Path) -> Sentinels {
        let primary = Node::start(
            server,
            None,
            &["--repl-diskless-sync-delay".into(), "0".into()],
        )
        .await;
        let replica = Node::start(
            server,
            None,
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
            ],
        )
        .await;
        let linked = poll_until(Duration::from_secs(10), || async {
            replica
                .query::<String>(&["INFO", "replication"])
                .await
                .is_ok_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        assert!(linked, "the replica syncs from the primary");
        let conf = format!(
            "port PORT\nsentinel monitor {MASTER} 127.0.0.1 {} 2\nsentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 3000\nsentinel parallel-syncs {MASTER} 1\n",
            primary.port
        );
        let sentinels =
            join_all((0..3).map(|_| Node::start(server, Some(conf.clone()), &[]))).await;
        // A failover needs a quorum of sentinels that know each other and the replica.
        for s in &sentinels {
            let ready = poll_until(Duration::from_secs(20), || async {
                let peers = s
                    .query::<Vec<redis::Value>>(&["SENTINEL", "sentinels", MASTER])
                    .await
                    .map_or(0, |v| v.len());
                let replicas = s
                    .query::<Vec<redis::Value>>(&["SENTINEL", "replicas", MASTER])
                    .await
                    .map_or(0, |v| v.len());
                peers == 2 && replicas == 1
            })
            .await;
            assert!(
                ready,
                "sentinel {} knows its 2 peers and the replica; log:\n{}",
                s.port,
                s.log()
            );
        }
        Sentinels {
            primary,
            replica,
            sentinels,
        }
    }

    fn url(&self, master: &str) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{master}/0", list.join(","))
    }

    /// The primary's port as the first answering sentinel names it.
    async fn named_primary(&self) -> Option<u16> {
        for s in &self.sentinels {
            if let Ok(Some((_, port))) = s
                .query::<Option<(String, u16)>>(&["SENTINEL", "get-master-addr-by-name", MASTER])
                .await
            {
                return Some(port);
            }
        }
        None
    }
}

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

async fn wait_all_ready(fleet: &[RunningProxy], deadline: Duration) {
    let ready = join_all(fleet.iter().map(|p| p.wait_ready(deadline))).await;
    for (i, (ok, p)) in ready.iter().zip(fleet).enumerate() {
        assert!(ok, "replica {i} became ready; output:\n{}", p.logs());
    }
}

/// The token a replica injects (via the fake's echo), or the status it answered with.
async fn injected_token(proxy: &RunningProxy) -> Result<String, u16> {
    let resp = client()
        .get(proxy.url(ECHO))
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let v: serde_json::Value = resp.json().await.map_err(|_| status)?;
    v["headers"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h[0] == "authorization"))
        .and_then(|h| h[1].as_str())
        .and_then(|a| a.strip_prefix("Zoho-oauthtoken "))
        .map(str::to_string)
        .ok_or(status)
}

/// Waits until every replica injects one and the same live token; returns it.
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

#[tokio::test]
async fn four_replicas_behind_three_sentinels_mint_once_and_survive_a_primary_sigkill() {
    let (server, _) = require_redis!();
    let zoho = Zoho::start().await;
    let mut redis = Sentinels::start(&server).await;
    let config = fleet_config(&zoho, &format!("  store: {}\n", redis.url(MASTER)));
    let fleet = start_fleet(&config, 4).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "four replicas behind Sentinel made exactly one token request"
    );
    assert_eq!(
        mint_log_len(&redis.primary).await,
        1,
        "the mint log is on the primary the sentinels name"
    );
    let replicated = poll_until(Duration::from_secs(5), || async {
        mint_log_len(&redis.replica).await == 1
    })
    .await;
    assert!(replicated, "the mint log entry reached the replica");

    // SIGKILL the primary under steady traffic; Sentinel promotes the replica.
    let stop = tokio_util::sync::CancellationToken::new();
    let traffic = steady_traffic(&fleet, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = redis.primary.port;
    redis.primary.kill().await;
    let killed = Instant::now();
    let promoted = poll_until(Duration::from_secs(30), || async {
        redis.named_primary().await == Some(redis.replica.port)
    })
    .await;
    assert!(
        promoted,
        "Sentinel promoted the replica after the primary {old} was killed; sentinel log:\n{}",
        redis.sentinels[0].log()
    );
    eprintln!("Sentinel failover took {:?}", killed.elapsed());
    let followed = poll_until(Duration::from_secs(10), || async {
        fleet
            .iter()
            .all(|p| p.logs().contains("Redis Sentinel reports a failover"))
    })
    .await;
    assert!(
        followed,
        "every replica heard +switch-master and re-resolved the primary"
    );
    stop.cancel();
    for (i, t) in traffic.into_iter().enumerate() {
        let (ok, failed) = t.await.expect("traffic task");
        assert!(ok > 10, "replica {i} carried traffic ({ok} requests)");
        assert!(
            failed.is_empty(),
            "replica {i}: no failed request across the failover, got {failed:?}"
        );
    }
    assert_eq!(
        mint_log_len(&redis.replica).await,
        1,
        "the promoted replica has the mint log entry (written with WAIT before the token request)"
    );

    // A revoke after the failover goes through the new primary.
    revoke_and_recover(&zoho, &fleet).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    let mints = zoho.control().token_requests();
    eprintln!("token requests after failover and revoke: {mints}");
    assert!(
        mints <= 3,
        "start + revoke + at most one extra per failover (the README's bound): {mints}"
    );
    assert_eq!(
        mint_log_len(&redis.replica).await as u64,
        mints,
        "every token request is in the new primary's mint log"
    );
    wait_all_ready(&fleet, Duration::from_secs(10)).await;
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn a_wrong_master_name_and_unreachable_sentinels_are_named_in_readyz() {
    let (server, _) = require_redis!();
    let zoho = Zoho::start().await;
    let redis = Sentinels::start(&server).await;

    // Wrong master name, when_redis_down: refuse (the default): no token, 503, reason named.
    let config = fleet_config(&zoho, &format!("  store: {}\n", redis.url("nosuch")));
    let wrong = RunningProxy::spawn_file(&config, &[]).await;
    let named = poll_until(Duration::from_secs(10), || async {
        let (status, body) = readyz(&wrong).await;
        status == 503 && body.contains("none knows a master named `nosuch`")
    })
    .await;
    assert!(
        named,
        "a wrong master name is named in /readyz: {:?}",
        readyz(&wrong).await
    );
    let refused = poll_until(Duration::from_secs(10), || async {
        injected_token(&wrong).await == Err(503)
    })
    .await;
    assert!(
        refused,
        "no token: requests get 503 (when_redis_down: refuse)"
    );
    assert_eq!(
        zoho.control().token_requests(),
        0,
        "no token request without the fleet (when_redis_down: refuse)"
    );

    // Every sentinel down (nothing listens on these ports), when_redis_down: mint_locally.
    let dead: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let config = fleet_config(
        &zoho,
        &format!(
            "  store: redis+sentinel://{}/{MASTER}\n  when_redis_down: mint_locally\n",
            dead.join(",")
        ),
    );
    let alone = RunningProxy::spawn_file(&config, &[]).await;
    let named = poll_until(Duration::from_secs(10), || async {
        let (status, body) = readyz(&alone).await;
        status == 503 && body.contains("no sentinel answered")
    })
    .await;
    assert!(
        named,
        "unreachable sentinels are named in /readyz: {:?}",
        readyz(&alone).await
    );
    let served = poll_until(Duration::from_secs(10), || async {
        injected_token(&alone).await.is_ok()
    })
    .await;
    assert!(served, "when_redis_down: mint_locally serves a local token");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "one local token request (within the local budget)"
    );
    assert_fleet_keeps_secrets(&zoho, &[wrong, alone]);
}

// ---------------------------------------------------------------------------------------------
// Cluster.

/// Redis Cluster nodes (`cluster-node-timeout 1000`).
struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    async fn nodes(server: &Path, n: usize) -> Vec<Node> {
        let args: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "1000",
            "--save",
            "",
            "--appendonly",
            "no",
            // Replicas sync at once (the default waits 5 s for more replicas to share one RDB).
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        join_all((0..n).map(|_| Node::start(server, None, &args))).await
    }

    /// Three primaries with one replica each, made by `redis-cli --cluster create`.
    async fn start(server: &Path, cli: &Path) -> Cluster {
        let nodes = Cluster::nodes(server, 6).await;
        let mut cmd = tokio::process::Command::new(cli);
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("redis-cli --cluster create finishes")
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        cluster.wait_ok(Duration::from_secs(20)).await;
        // A replica that never synced cannot be promoted.
        for n in &cluster.nodes {
            let synced = poll_until(Duration::from_secs(20), || async {
                n.query::<String>(&["INFO", "replication"])
                    .await
                    .is_ok_and(|i| i.contains("role:master") || i.contains("master_link_status:up"))
            })
            .await;
            assert!(synced, "node {} is a primary or a synced replica", n.port);
        }
        cluster
    }

    /// Until every live node reports `cluster_state:ok` and agrees who serves our slot.
    async fn wait_ok(&self, deadline: Duration) {
        let ok = poll_until(deadline, || async {
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                let info = n.query::<String>(&["CLUSTER", "INFO"]).await;
                if !info.is_ok_and(|i| i.contains("cluster_state:ok")) {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(ok, "the cluster reaches cluster_state:ok");
    }

    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .take(3)
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The slot of the fleet's keys.
    async fn slot(&self) -> u16 {
        let live = self.live();
        live.query::<u16>(&["CLUSTER", "KEYSLOT", &namespace_base()])
            .await
            .expect("CLUSTER KEYSLOT")
    }

    fn live(&self) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node")
    }

    /// (index in `nodes`, node id) of the primary serving `slot`, as a live node sees it.
    async fn owner(&self, slot: u16) -> (usize, String) {
        match self.find_owner(slot).await {
            Ok(found) => found,
            Err(nodes) => panic!("no healthy primary serves slot {slot}:\n{nodes}"),
        }
    }

    /// The owner, or the `CLUSTER NODES` text if no healthy primary serves `slot`.
    async fn find_owner(&self, slot: u16) -> Result<(usize, String), String> {
        let text: String = self
            .live()
            .query(&["CLUSTER", "NODES"])
            .await
            .map_err(|e| e.to_string())?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| {
                let mut ends = r.split('-').map(|x| x.parse::<u16>().ok());
                match (ends.next().flatten(), ends.next().flatten()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if serves {
                let port: u16 = f[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .expect("node address");
                let i = self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("a known node");
                return Ok((i, f[0].to_string()));
            }
        }
        Err(text)
    }
}

#[tokio::test]
async fn six_replicas_on_a_three_primary_cluster_mint_once_and_survive_resharding_and_failover() {
    let (server, cli) = require_redis!();
    let zoho = Zoho::start().await;
    let mut cluster = Cluster::start(&server, &cli).await;
    let config = fleet_config(&zoho, &format!("  store: {}\n", cluster.url()));
    let fleet = start_fleet(&config, 6).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "six replicas on a Redis Cluster made exactly one token request"
    );
    let slot = cluster.slot().await;
    let (owner, owner_id) = cluster.owner(slot).await;
    assert_eq!(
        mint_log_len(&cluster.nodes[owner]).await,
        1,
        "the mint log is on the primary of the keys' slot"
    );

    revoke_and_recover(&zoho, &fleet).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(
        zoho.control().token_requests(),
        2,
        "a revoke costs exactly one more token request"
    );

    // Resharding: move the slot (and its keys) to another primary; replicas follow MOVED.
    let (target, target_id) = {
        let mut other = None;
        for s in [0u16, 8000, 16000] {
            let (i, id) = cluster.owner(s).await;
            if id != owner_id {
                other = Some((i, id));
                break;
            }
        }
        other.expect("another primary")
    };
    let slot_s = slot.to_string();
    let (src, dst) = (&cluster.nodes[owner], &cluster.nodes[target]);
    dst.query::<()>(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &owner_id])
        .await
        .expect("IMPORTING");
    src.query::<()>(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &target_id])
        .await
        .expect("MIGRATING");
    let keys: Vec<String> = src
        .query(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"])
        .await
        .expect("GETKEYSINSLOT");
    assert!(!keys.is_empty(), "the fleet's keys are in slot {slot}");
    let dst_port = dst.port.to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "KEYS"];
    migrate.extend(keys.iter().map(String::as_str));
    src.query::<String>(&migrate).await.expect("MIGRATE");
    for n in cluster.nodes.iter() {
        // Replicas refuse SETSLOT; the primaries' answer is what matters.
        let _ = n
            .query::<()>(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &target_id])
            .await;
    }
    let moved = poll_until(Duration::from_secs(10), || async {
        cluster
            .find_owner(slot)
            .await
            .is_ok_and(|(i, _)| i == target)
    })
    .await;
    assert!(moved, "slot {slot} moved to the other primary");
    revoke_and_recover(&zoho, &fleet).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(
        zoho.control().token_requests(),
        3,
        "after resharding a revoke still costs exactly one token request"
    );
    assert_eq!(
        mint_log_len(&cluster.nodes[target]).await,
        3,
        "the mint log moved with the slot"
    );

    // Kill the slot's primary; the cluster promotes its replica.
    cluster.nodes[target].kill().await;
    let killed = Instant::now();
    let promoted = poll_until(Duration::from_secs(30), || async {
        let info = cluster
            .live()
            .query::<String>(&["CLUSTER", "INFO"])
            .await
            .unwrap_or_default();
        info.contains("cluster_state:ok")
            && cluster
                .find_owner(slot)
                .await
                .is_ok_and(|(i, _)| i != target)
    })
    .await;
    let replica_logs: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| format!("--- {}:\n{}", n.port, n.log()))
        .collect();
    assert!(
        promoted,
        "the killed primary's replica was promoted: {:?}\n{}",
        cluster.find_owner(slot).await,
        replica_logs.join("\n")
    );
    eprintln!("cluster failover took {:?}", killed.elapsed());
    let (new_owner, _) = cluster.owner(slot).await;
    assert_eq!(
        mint_log_len(&cluster.nodes[new_owner]).await,
        3,
        "the promoted replica has the whole mint log (written with WAIT)"
    );
    revoke_and_recover(&zoho, &fleet).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    let mints = zoho.control().token_requests();
    assert!(
        (4..=5).contains(&mints),
        "after the failover a revoke costs one token request, at most one more for the failover: {mints}"
    );
    wait_all_ready(&fleet, Duration::from_secs(10)).await;
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn a_cluster_with_an_uncovered_slot_is_named_in_readyz_and_refuses() {
    let (server, _) = require_redis!();
    let zoho = Zoho::start().await;
    let nodes = Cluster::nodes(&server, 3).await;
    // Slots 16000-16383 are served by nobody: cluster_state:fail.
    for (n, (a, b)) in nodes
        .iter()
        .zip([("0", "5000"), ("5001", "10000"), ("10001", "15999")])
    {
        n.query::<()>(&["CLUSTER", "ADDSLOTSRANGE", a, b])
            .await
            .expect("ADDSLOTSRANGE");
    }
    for n in &nodes[1..] {
        nodes[0]
            .query::<()>(&["CLUSTER", "MEET", "127.0.0.1", &n.port.to_string()])
            .await
            .expect("MEET");
    }
    let met = poll_until(Duration::from_secs(10), || async {
        nodes[0]
            .query::<String>(&["CLUSTER", "INFO"])
            .await
            .is_ok_and(|i| i.contains("cluster_known_nodes:3") && i.contains("cluster_state:fail"))
    })
    .await;
    assert!(met, "three nodes know each other, slots uncovered");
    let cluster = Cluster { nodes };
    let config = fleet_config(&zoho, &format!("  store: {}\n", cluster.url()));
    let proxy = RunningProxy::spawn_file(&config, &[]).await;
    let named = poll_until(Duration::from_secs(15), || async {
        let (status, body) = readyz(&proxy).await;
        status == 503
            && body.contains("Redis at redis+cluster://")
            && body.contains("cluster is down")
    })
    .await;
    assert!(
        named,
        "an uncovered slot is named in /readyz: {:?}",
        readyz(&proxy).await
    );
    assert_eq!(
        injected_token(&proxy).await,
        Err(503),
        "no token while the cluster is down (when_redis_down: refuse)"
    );
    assert_eq!(zoho.control().token_requests(), 0, "no token request");
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
