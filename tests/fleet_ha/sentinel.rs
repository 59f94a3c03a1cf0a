//! Redis Sentinel: a primary, its replica and three `redis-server --sentinel` processes
//! (`down-after-milliseconds 1000`, `failover-timeout 3000`).

use super::*;

/// A primary, its replica and three sentinels watching it as `zap`.
struct Sentinels {
    primary: Node,
    replica: Node,
    sentinels: Vec<Node>,
}

impl Sentinels {
    async fn start(server: &Path) -> Sentinels {
        Sentinels::start_with(server, None, None).await
    }

    /// With `tls`, the primary and the replica speak TLS only; the sentinels answer clients in
    /// plain text and reach the data nodes (and each other) over TLS. With `passwords`
    /// (data nodes, sentinels), each kind requires its own.
    async fn start_with(
        server: &Path,
        tls: Option<&Tls>,
        passwords: Option<(&str, &str)>,
    ) -> Sentinels {
        let auth: Vec<String> = match passwords {
            Some((data, _)) => vec![
                "--requirepass".into(),
                data.into(),
                "--masterauth".into(),
                data.into(),
            ],
            None => Vec::new(),
        };
        let mut args = vec!["--repl-diskless-sync-delay".into(), "0".into()];
        args.extend(auth.iter().cloned());
        let mut primary = Node::start_with(server, None, &args, tls).await;
        primary.password = passwords.map(|(data, _)| data.to_string());
        let mut args = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ];
        args.extend(auth.iter().cloned());
        let mut replica = Node::start_with(server, None, &args, tls).await;
        replica.password = primary.password.clone();
        let linked = poll_until(Duration::from_secs(10), || async {
            replica
                .query::<String>(&["INFO", "replication"])
                .await
                .is_ok_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        assert!(linked, "the replica syncs from the primary");
        let mut conf = format!(
            "port PORT\nsentinel monitor {MASTER} 127.0.0.1 {} 2\nsentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 3000\nsentinel parallel-syncs {MASTER} 1\n",
            primary.port
        );
        if let Some((data, sentinel)) = passwords {
            conf.push_str(&format!(
                "sentinel auth-pass {MASTER} {data}\nrequirepass {sentinel}\nsentinel sentinel-pass {sentinel}\n"
            ));
        }
        let sentinels = join_all((0..3).map(|_| {
            let mut conf = conf.clone();
            if let Some(t) = tls {
                let file = |name: &str| t.dir.path().join(name).display().to_string();
                conf.push_str(&format!(
                    "tls-port {}\ntls-replication yes\ntls-auth-clients no\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                    free_port(),
                    file("server.pem"),
                    file("server.key"),
                    file("ca.pem")
                ));
            }
            Node::start(server, Some(conf), &[])
        }))
        .await;
        let mut sentinels = sentinels;
        for s in &mut sentinels {
            s.password = passwords.map(|(_, sentinel)| sentinel.to_string());
        }
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
    assert_unready_naming(
        &wrong,
        &["none knows a master named `nosuch`"],
        Duration::from_secs(10),
        "a wrong master name",
    )
    .await;
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
    assert_unready_naming(
        &alone,
        &["no sentinel answered"],
        Duration::from_secs(10),
        "unreachable sentinels",
    )
    .await;
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

#[tokio::test]
async fn rediss_sentinel_reaches_tls_data_nodes_through_plain_text_sentinels() {
    let (server, _) = require_redis!();
    let zoho = Zoho::start().await;
    let tls = Tls::new();
    let redis = Sentinels::start_with(&server, Some(&tls), None).await;
    let url = redis
        .url(MASTER)
        .replace("redis+sentinel://", "rediss+sentinel://");
    let fleet = tls_pair_sharing_one_token(
        &zoho,
        &url,
        &tls,
        "two replicas share one token through TLS data nodes",
    )
    .await;
    assert_eq!(
        mint_log_len(&redis.primary).await,
        1,
        "the mint log is on the TLS primary"
    );
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn the_sentinels_and_the_data_nodes_each_get_their_own_password() {
    let (server, _) = require_redis!();
    let zoho = Zoho::start().await;
    const DATA: &str = "DATA-PW-CANARY-0123";
    const SENTINEL: &str = "SENTINEL-PW-CANARY-4567";
    let redis = Sentinels::start_with(&server, None, Some((DATA, SENTINEL))).await;
    let config = fleet_config(
        &zoho,
        &format!(
            "  store: {}\n  redis_password: ${{TEST_REDIS_PASSWORD}}\n  sentinel_password: ${{TEST_SENTINEL_PASSWORD}}\n",
            redis.url(MASTER)
        ),
    );
    let right = [
        ("TEST_REDIS_PASSWORD", DATA),
        ("TEST_SENTINEL_PASSWORD", SENTINEL),
    ];
    let fleet = join_all((0..2).map(|_| RunningProxy::spawn_file(&config, &right))).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "with both passwords the fleet shares one token"
    );

    // The data nodes' password offered to the sentinels: refused, and named.
    let swapped = [
        ("TEST_REDIS_PASSWORD", DATA),
        ("TEST_SENTINEL_PASSWORD", DATA),
    ];
    let wrong = RunningProxy::spawn_file(&config, &swapped).await;
    assert_unready_naming(
        &wrong,
        &["check token.sentinel_password_file"],
        Duration::from_secs(10),
        "a wrong sentinel password",
    )
    .await;
    for p in fleet.iter().chain([&wrong]) {
        let logs = p.logs();
        assert!(
            !logs.contains(DATA) && !logs.contains(SENTINEL),
            "no Redis password in the output"
        );
    }
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn an_acl_user_in_the_url_is_who_the_proxy_is_on_the_data_nodes() {
    let (server, _) = require_redis!();
    let zoho = Zoho::start().await;
    const PASSWORD: &str = "ACL-PW-CANARY-89ab";
    let redis = Sentinels::start(&server).await;
    // The default user keeps no password (the sentinels and the replica use it); the proxy's own
    // user has one. A password without the user name cannot log in: the default user has none.
    for node in [&redis.primary, &redis.replica] {
        add_acl_user(node, "zproxy", PASSWORD).await;
    }
    let with_user = redis
        .url(MASTER)
        .replace("redis+sentinel://", "redis+sentinel://zproxy@");
    let fleet = acl_user_pair_sharing_one_token(&zoho, &with_user, PASSWORD).await;
    let clients: String = redis
        .primary
        .query(&["CLIENT", "LIST"])
        .await
        .expect("CLIENT LIST");
    assert!(
        clients.contains("user=zproxy"),
        "the proxy's connections are the ACL user's: {clients}"
    );

    // The same password without the user name: refused, and named in /readyz. (Its own file:
    // the running fleet's stays as it is.)
    let without = zoho.dir.path().join("fleet-without-user.yaml");
    let text = zoho.config(
        ALLOW_LEADS,
        &format!(
            "token:\n  store: {}\n  redis_password: ${{TEST_REDIS_PASSWORD}}\n",
            redis.url(MASTER)
        ),
    );
    std::fs::write(&without, text).expect("write config");
    let wrong = RunningProxy::spawn_file(&without, &[("TEST_REDIS_PASSWORD", PASSWORD)]).await;
    assert_unready_naming(
        &wrong,
        &["authentication failed", "the user name in token.store"],
        Duration::from_secs(10),
        "a password without its user name",
    )
    .await;
    for p in fleet.iter().chain([&wrong]) {
        assert!(
            !p.logs().contains(PASSWORD),
            "no Redis password in the output"
        );
    }
    assert_fleet_keeps_secrets(&zoho, &fleet);
}
