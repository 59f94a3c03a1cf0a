//! Redis Cluster: three primaries with one replica each (`redis-cli --cluster create`,
//! `cluster-node-timeout 1000`), and a cluster with an uncovered slot.

use super::*;

/// Redis Cluster nodes (`cluster-node-timeout 1000`).
struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    async fn nodes(server: &Path, n: usize) -> Vec<Node> {
        Cluster::nodes_with(server, n, None).await
    }

    async fn nodes_with(server: &Path, n: usize, tls: Option<&Tls>) -> Vec<Node> {
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
        join_all((0..n).map(|_| Node::start_with(server, None, &args, tls))).await
    }

    /// Three primaries with one replica each, made by `redis-cli --cluster create`.
    async fn start(server: &Path, cli: &Path) -> Cluster {
        Cluster::create(server, cli, 6, None).await
    }

    /// A cluster of `nodes` nodes: pairs of primary and replica, or (with `tls`) primaries only.
    async fn create(server: &Path, cli: &Path, nodes: usize, tls: Option<&Tls>) -> Cluster {
        let nodes = Cluster::nodes_with(server, nodes, tls).await;
        let mut cmd = tokio::process::Command::new(cli);
        if let Some(t) = tls {
            cmd.arg("--tls").arg("--cacert").arg(t.ca_file());
        }
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        let replicas = if tls.is_some() { "0" } else { "1" };
        cmd.args(["--cluster-replicas", replicas, "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("redis-cli --cluster create finishes")
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
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
    assert_unready_naming(
        &proxy,
        &["Redis at redis+cluster://", "cluster is down"],
        Duration::from_secs(15),
        "an uncovered slot",
    )
    .await;
    assert_eq!(
        injected_token(&proxy).await,
        Err(503),
        "no token while the cluster is down (when_redis_down: refuse)"
    );
    assert_eq!(zoho.control().token_requests(), 0, "no token request");
}

#[tokio::test]
async fn rediss_cluster_shares_one_token_over_tls_trusting_ssl_cert_file() {
    let (server, cli) = require_redis!();
    let zoho = Zoho::start().await;
    let tls = Tls::new();
    let cluster = Cluster::create(&server, &cli, 3, Some(&tls)).await;
    let url = cluster
        .url()
        .replace("redis+cluster://", "rediss+cluster://");
    let fleet = tls_pair_sharing_one_token(
        &zoho,
        &url,
        &tls,
        "two replicas on a TLS cluster share one token",
    )
    .await;
    let (owner, _) = cluster.owner(cluster.slot().await).await;
    assert_eq!(
        mint_log_len(&cluster.nodes[owner]).await,
        1,
        "the mint log is on the TLS cluster"
    );
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn an_acl_user_in_the_url_is_who_the_proxy_is_on_every_node() {
    let (server, cli) = require_redis!();
    let zoho = Zoho::start().await;
    const PASSWORD: &str = "ACL-PW-CANARY-cdef";
    let cluster = Cluster::start(&server, &cli).await;
    // The nodes' default user has no password; the proxy's own user has one (on every node: a
    // redirection may send the proxy to any of them).
    for node in &cluster.nodes {
        add_acl_user(node, "zproxy", PASSWORD).await;
    }
    let url = cluster
        .url()
        .replace("redis+cluster://", "redis+cluster://zproxy@");
    let fleet = acl_user_pair_sharing_one_token(&zoho, &url, PASSWORD).await;
    let mut as_user = 0;
    for node in &cluster.nodes {
        let clients: String = node.query(&["CLIENT", "LIST"]).await.expect("CLIENT LIST");
        as_user += clients.matches("user=zproxy").count();
    }
    assert!(as_user > 0, "the proxy's connections are the ACL user's");
    for p in &fleet {
        assert!(
            !p.logs().contains(PASSWORD),
            "no Redis password in the output"
        );
    }
    assert_fleet_keeps_secrets(&zoho, &fleet);
}
