//! Fleet mode: many replicas (child processes of the real binary) share one refresh token through
//! a real `redis-server` started on a free loopback port, against one fake Zoho.
//!
//! Without the `redis-server` binary each test prints a loud SKIPPED message and returns
//! (`apt-get install -y redis-server`; `.ci/run` installs it).

mod common;

use common::*;
use futures_util::future::join_all;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ALLOW_LEADS: &[&str] = &["ZohoCRM.modules.leads.ALL"];
const ECHO: &str = "/crm/v8/Leads?__fake=echo";
const REDIS_PASSWORD: &str = "REDISPW-CANARY-0123456789";

/// The `redis-server` binary, if installed.
fn redis_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

macro_rules! require_redis {
    () => {
        match redis_binary() {
            Some(b) => b,
            None => {
                eprintln!(
                    "\n\n!!!!!!!!!! SKIPPED {}: redis-server is not installed; run `apt-get install -y redis-server` to run the fleet tests !!!!!!!!!!\n\n",
                    module_path!()
                );
                return;
            }
        }
    };
}

/// A throw-away `redis-server` on loopback: no persistence, optional password.
struct Redis {
    binary: PathBuf,
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
    /// PEM of the CA that signed the server certificate, when it speaks TLS only.
    tls_ca: Option<String>,
}

impl Redis {
    async fn start(binary: &Path, password: Option<&str>) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = Redis {
            binary: binary.to_path_buf(),
            port,
            password: password.map(str::to_string),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            tls_ca: None,
        };
        redis.restart().await;
        redis
    }

    /// A server that accepts TLS only, with a certificate for 127.0.0.1 from a fresh CA.
    async fn start_tls(binary: &Path) -> Redis {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let key = KeyPair::generate().expect("server key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params")
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = Redis {
            binary: binary.to_path_buf(),
            port,
            password: None,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            tls_ca: Some(ca.pem()),
        };
        std::fs::write(redis.dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(redis.dir.path().join("server.pem"), leaf.pem()).expect("write certificate");
        std::fs::write(redis.dir.path().join("server.key"), key.serialize_pem())
            .expect("write key");
        redis.restart().await;
        redis
    }

    /// (Re)starts the server on the same port, empty.
    async fn restart(&mut self) {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        if self.tls_ca.is_some() {
            let file = |name: &str| self.dir.path().join(name);
            cmd.args(["--port", "0", "--tls-auth-clients", "no"])
                .arg("--tls-port")
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"));
        }
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
        let up = poll_until(Duration::from_secs(10), || async {
            self.connection().await.is_some()
        })
        .await;
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        assert!(
            up,
            "redis-server answers PING on port {}; its log:\n{log}",
            self.port
        );
    }

    /// Kills the server (as a crash or a node loss would).
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
        let down = poll_until(Duration::from_secs(5), || async {
            self.connection().await.is_none()
        })
        .await;
        assert!(down, "redis-server stopped");
    }

    fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(self.url().as_str()).ok()?;
        info.redis.password = self.password.clone();
        let client = match &self.tls_ca {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone().into_bytes()),
                },
            )
            .ok()?,
            None => redis::Client::open(info).ok()?,
        };
        let mut conn = tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
        (pong == "PONG").then_some(conn)
    }

    /// Entries in the fleet-wide mint logs.
    async fn mint_log_len(&self) -> usize {
        let mut conn = self.connection().await.expect("redis reachable");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("zoho-auth-proxy:*:mints")
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        let mut n = 0;
        for k in keys {
            let len: usize = redis::cmd("ZCARD")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .expect("ZCARD");
            n += len;
        }
        n
    }
}

/// The fleet's proxy.yaml: the usual test config plus a `token:` section pointing at Redis.
fn fleet_config(zoho: &Zoho, redis: &Redis, token_extra: &str) -> PathBuf {
    let password = if redis.password.is_some() {
        "  redis_password: ${TEST_REDIS_PASSWORD}\n"
    } else {
        ""
    };
    let config = zoho.config(
        ALLOW_LEADS,
        &format!("token:\n  store: {}\n{password}{token_extra}", redis.url()),
    );
    let path = zoho.dir.path().join("fleet.yaml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// Starts `n` replicas at the same time.
async fn start_fleet(config: &Path, n: usize) -> Vec<RunningProxy> {
    let env = [("TEST_REDIS_PASSWORD", REDIS_PASSWORD)];
    join_all((0..n).map(|_| RunningProxy::spawn_file(config, &env))).await
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
        let first = tokens[0].clone();
        if let Ok(t) = &first {
            if tokens.iter().all(|x| x.as_ref() == Ok(t)) && zoho.control().is_live(t) {
                return t.clone();
            }
        }
        assert!(
            Instant::now() < end,
            "all replicas converge on one live token; they inject: {:?}",
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

fn holders(fleet: &[RunningProxy]) -> Vec<usize> {
    fleet
        .iter()
        .enumerate()
        .filter(|(_, p)| p.logs().contains("holding the fleet lease"))
        .map(|(i, _)| i)
        .collect()
}

fn assert_fleet_keeps_secrets(zoho: &Zoho, fleet: &[RunningProxy]) {
    let tokens = zoho.control().live_tokens();
    for p in fleet {
        p.assert_no_secrets(&tokens);
        assert!(
            !p.logs().contains(REDIS_PASSWORD),
            "the Redis password stays out of the output"
        );
    }
}

#[tokio::test]
async fn ten_replicas_started_together_mint_exactly_once() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    let redis = Redis::start(&bin, Some(REDIS_PASSWORD)).await;
    let config = fleet_config(&zoho, &redis, "");
    let fleet = start_fleet(&config, 10).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;

    let token = wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(10)).await;
    assert!(zoho.control().is_live(&token), "the shared token is live");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "ten replicas started together made exactly one token request"
    );
    assert_eq!(
        holders(&fleet).len(),
        1,
        "exactly one replica held the lease and minted"
    );
    assert_eq!(
        redis.mint_log_len().await,
        1,
        "the fleet-wide mint log in Redis has the one request"
    );

    for (i, p) in fleet.iter().enumerate() {
        let status: serde_json::Value = p.status_json().await;
        let text = status.to_string();
        assert!(
            text.contains("\"mint_budget_left\":7"),
            "replica {i}: status shows the fleet-wide budget left (8 - 1): {text}"
        );
    }
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn three_expiry_cycles_cost_one_mint_each_fleet_wide_without_failed_requests() {
    let bin = require_redis!();
    let zoho = Zoho::start_with(FakeZohoOptions {
        expires_in: 4,
        ..options()
    })
    .await;
    let redis = Redis::start(&bin, None).await;
    let config = fleet_config(&zoho, &redis, "  mint_budget: 10\n");
    let fleet = start_fleet(&config, 6).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    let mut previous = wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(zoho.control().token_requests(), 1, "one mint at start");

    // Steady traffic on every replica across the cycles.
    let stop = tokio_util::sync::CancellationToken::new();
    let traffic: Vec<_> = fleet
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
        .collect();

    for cycle in 2..=4u64 {
        assert!(
            zoho.control()
                .wait_for_token_requests(cycle, Duration::from_secs(10))
                .await,
            "cycle {cycle}: the fleet refreshed the 4 s token"
        );
        // The token request is counted when it reaches the fake, before the fleet has the
        // answer: wait (bounded) until every replica injects the new token.
        let end = Instant::now() + Duration::from_secs(5);
        let token = loop {
            let token = wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(3)).await;
            if token != previous || Instant::now() >= end {
                break token;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_ne!(
            token, previous,
            "cycle {cycle}: every replica moved to the new token"
        );
        assert_eq!(
            zoho.control().token_requests(),
            cycle,
            "cycle {cycle}: one token request for the whole fleet"
        );
        previous = token;
    }
    stop.cancel();
    for (i, t) in traffic.into_iter().enumerate() {
        let (ok, failed) = t.await.expect("traffic task");
        assert!(
            ok > 50,
            "replica {i} carried steady traffic ({ok} requests)"
        );
        assert!(
            failed.is_empty(),
            "replica {i}: no failed request across three refreshes, got {failed:?}"
        );
    }
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn a_server_side_revoke_costs_one_mint_and_every_replica_recovers() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    let redis = Redis::start(&bin, Some(REDIS_PASSWORD)).await;
    let config = fleet_config(&zoho, &redis, "");
    // At trace level, so the leak check below sees everything the fleet code can log.
    let yaml = std::fs::read_to_string(&config).expect("read config") + "log:\n  level: trace\n";
    std::fs::write(&config, yaml).expect("write config");
    let fleet = start_fleet(&config, 8).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    let before = wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(zoho.control().token_requests(), 1, "one mint at start");

    zoho.control().revoke_all_access_tokens();
    assert!(!zoho.control().is_live(&before), "the old token is revoked");
    // Three concurrent requests on every replica, GETs and small POSTs: all rejected once upstream.
    let c = client();
    let requests = fleet.iter().flat_map(|p| {
        let c = c.clone();
        (0..3).map(move |k| {
            let c = c.clone();
            let url = p.url("/crm/v8/Leads");
            async move {
                let r = if k == 0 {
                    c.post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"data":[{"Last_Name":"Revoked"}]}"#)
                        .send()
                        .await
                } else {
                    c.get(&url).send().await
                };
                r.map(|r| r.status().as_u16()).unwrap_or(0)
            }
        })
    });
    let statuses = join_all(requests).await;
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "every request after the revoke succeeded by replay: {statuses:?}"
    );
    assert_eq!(
        zoho.control().token_requests(),
        2,
        "the revoke cost exactly one mint for the whole fleet"
    );
    let after = wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_ne!(after, before, "every replica uses the new token");
    assert_eq!(zoho.control().token_requests(), 2, "and still one mint");
    assert!(
        fleet
            .iter()
            .any(|p| p.logs().contains("another replica is minting")),
        "the leak check below covers debug output of replicas that waited for the lease holder"
    );
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn killing_the_lease_holder_mid_refresh_lets_another_replica_take_over_within_the_lease() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    // The first token request hangs long enough for the holder to be killed mid-request.
    zoho.control()
        .queue_token_behaviors([TokenBehavior::DelayMs(60_000)]);
    let redis = Redis::start(&bin, None).await;
    let lease = Duration::from_secs(3);
    let config = fleet_config(&zoho, &redis, "  lease: 3s\n");
    let mut fleet = start_fleet(&config, 5).await;

    assert!(
        zoho.control()
            .wait_for_token_requests(1, Duration::from_secs(20))
            .await,
        "the first token request arrives"
    );
    let found = poll_until(Duration::from_secs(5), || async {
        holders(&fleet).len() == 1
    })
    .await;
    assert!(
        found,
        "exactly one replica says it holds the lease: {:?}",
        holders(&fleet)
    );
    let holder = holders(&fleet)[0];
    let mut victim = fleet.remove(holder);
    victim.child.start_kill().expect("SIGKILL the lease holder");
    let killed_at = Instant::now();
    assert!(
        victim.wait_exit(Duration::from_secs(5)).await.is_some(),
        "the holder died"
    );

    assert!(
        zoho.control()
            .wait_for_token_requests(2, lease + Duration::from_secs(5))
            .await,
        "another replica requested a token after the holder died"
    );
    let took = killed_at.elapsed();
    eprintln!("takeover {took:?} after SIGKILL of the lease holder (lease {lease:?})");
    assert!(
        took <= lease + Duration::from_millis(1500),
        "takeover within the lease ({lease:?}) plus polling, took {took:?}"
    );
    wait_all_ready(&fleet, Duration::from_secs(10)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(
        zoho.control().token_requests(),
        2,
        "the dead holder's request and the one takeover, nothing else"
    );
    assert_eq!(
        holders(&fleet).len(),
        1,
        "exactly one survivor took the lease"
    );
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn a_mint_slower_than_the_lease_keeps_the_lease_renewed_and_costs_one_request() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    // 5 s at the token endpoint, with a 2 s lease: only renewal keeps the others waiting.
    zoho.control()
        .queue_token_behaviors([TokenBehavior::DelayMs(5_000)]);
    let redis = Redis::start(&bin, None).await;
    let config = fleet_config(&zoho, &redis, "  lease: 2s\n");
    let fleet = start_fleet(&config, 5).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "the holder renewed its lease through a 5 s mint; nobody else minted"
    );
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn redis_down_keeps_serving_reports_not_ready_then_refuses_after_expiry_and_recovers() {
    let bin = require_redis!();
    let zoho = Zoho::start_with(FakeZohoOptions {
        expires_in: 6,
        ..options()
    })
    .await;
    let mut redis = Redis::start(&bin, None).await;
    let config = fleet_config(&zoho, &redis, "  when_redis_down: refuse\n");
    let fleet = start_fleet(&config, 4).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    let token = wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;

    redis.stop().await;
    for (i, p) in fleet.iter().enumerate() {
        let named = poll_until(Duration::from_secs(5), || async {
            let (status, body) = readyz(p).await;
            status == 503 && body.contains("Redis at redis://127.0.0.1")
        })
        .await;
        assert!(
            named,
            "replica {i}: /readyz is 503 with a reason naming Redis, got {:?}",
            readyz(p).await
        );
        assert_eq!(
            injected_token(p).await,
            Ok(token.clone()),
            "replica {i}: keeps serving the cached token while Redis is down"
        );
    }

    // The token expires while Redis is down: refuse means no token request, and 503 naming Redis.
    for (i, p) in fleet.iter().enumerate() {
        let refused = poll_until(Duration::from_secs(10), || async {
            injected_token(p).await == Err(503)
        })
        .await;
        assert!(
            refused,
            "replica {i}: requests get 503 once the cached token expired"
        );
    }
    let resp = client().get(fleet[0].url(ECHO)).send().await.expect("send");
    assert!(
        resp.headers().contains_key("retry-after"),
        "the 503 says when to retry"
    );
    let body = resp.text().await.expect("body");
    assert!(body.contains("Redis"), "the 503 names Redis: {body}");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "no replica minted while Redis was down (when_redis_down: refuse)"
    );

    redis.restart().await;
    wait_all_ready(&fleet, Duration::from_secs(40)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(
        zoho.control().token_requests(),
        2,
        "after Redis came back the fleet minted once"
    );
    for p in &fleet {
        assert!(
            p.logs().contains("Redis is reachable again"),
            "each replica logs the recovery"
        );
    }
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn redis_down_with_mint_locally_mints_at_most_twice_per_replica_and_shares_the_log_later() {
    let bin = require_redis!();
    let zoho = Zoho::start_with(FakeZohoOptions {
        expires_in: 3,
        ..options()
    })
    .await;
    let mut redis = Redis::start(&bin, None).await;
    let config = fleet_config(
        &zoho,
        &redis,
        "  when_redis_down: mint_locally\n  mint_budget: 10\n",
    );
    let fleet = start_fleet(&config, 3).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(zoho.control().token_requests(), 1, "one mint at start");

    redis.stop().await;
    // Each replica mints on its own when its token is due: at least once each...
    assert!(
        zoho.control()
            .wait_for_token_requests(1 + 3, Duration::from_secs(10))
            .await,
        "every replica minted locally once its token was due ({} requests)",
        zoho.control().token_requests()
    );
    for (i, p) in fleet.iter().enumerate() {
        let served = poll_until(Duration::from_secs(5), || async {
            injected_token(p).await.is_ok()
        })
        .await;
        assert!(
            served,
            "replica {i}: serves with its own token while Redis is down"
        );
        let (status, body) = readyz(p).await;
        assert!(
            status == 503 && body.contains("Redis"),
            "replica {i}: still not ready, naming Redis: {status} {body}"
        );
    }
    // ...and never more than 2 per replica in the window, however short the tokens live.
    assert!(
        !zoho
            .control()
            .wait_for_token_requests(1 + 3 * 2 + 1, Duration::from_secs(10))
            .await,
        "at most 2 local mints per replica, got {} token requests in all",
        zoho.control().token_requests()
    );
    let local = zoho.control().token_requests() - 1;
    for p in &fleet {
        let refused = poll_until(Duration::from_secs(8), || async {
            injected_token(p).await == Err(503)
        })
        .await;
        assert!(
            refused,
            "with the local budget spent the replica answers 503"
        );
    }

    redis.restart().await;
    let synced = poll_until(Duration::from_secs(40), || async {
        redis.mint_log_len().await as u64 >= local
    })
    .await;
    assert!(synced, "the replicas added their {local} local token requests to the fleet's log once Redis was back");
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn rediss_connects_over_tls_trusting_the_system_store() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    let redis = Redis::start_tls(&bin).await;
    let config = fleet_config(&zoho, &redis, "");
    // rediss:// trusts the system store; SSL_CERT_FILE replaces it (as for a private CA).
    let ca = redis.dir.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let env = [("SSL_CERT_FILE", ca)];
    let fleet = join_all((0..2).map(|_| RunningProxy::spawn_file(&config, &env))).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    wait_for_one_shared_token(&zoho, &fleet, Duration::from_secs(5)).await;
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "two replicas over TLS share one token"
    );
    assert_eq!(
        redis.mint_log_len().await,
        1,
        "the mint log is in the TLS Redis"
    );

    // Without the CA the server certificate is refused, and readiness says so naming Redis.
    let untrusting =
        RunningProxy::spawn_file(&config, &[("SSL_CERT_FILE", "/nonexistent/ca.pem")]).await;
    let named = poll_until(Duration::from_secs(10), || async {
        let (status, body) = readyz(&untrusting).await;
        status == 503 && body.contains("Redis at rediss://127.0.0.1")
    })
    .await;
    let (_, body) = readyz(&untrusting).await;
    assert!(
        named,
        "an untrusted Redis certificate makes the replica not ready, naming Redis: {body}"
    );
    eprintln!("readiness with an untrusted Redis certificate: {body}");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "the untrusting replica did not mint"
    );
}

#[tokio::test]
async fn a_wrong_redis_password_is_reported_as_such() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    let redis = Redis::start(&bin, Some("the-right-password")).await;
    let config = fleet_config(&zoho, &redis, "");
    // fleet_config points redis_password at TEST_REDIS_PASSWORD, which start_fleet sets to a wrong one.
    let fleet = start_fleet(&config, 1).await;
    let named = poll_until(Duration::from_secs(10), || async {
        let (status, body) = readyz(&fleet[0]).await;
        status == 503 && body.contains("Redis") && body.contains("authentication failed")
    })
    .await;
    assert!(
        named,
        "readiness names Redis and the failed authentication: {:?}",
        readyz(&fleet[0]).await
    );
    assert_eq!(
        zoho.control().token_requests(),
        0,
        "nothing minted without the fleet (when_redis_down: refuse is the default)"
    );
    assert_fleet_keeps_secrets(&zoho, &fleet);
}

#[tokio::test]
async fn fleet_mode_without_a_configured_refresh_token_is_refused_at_start() {
    let zoho = Zoho::start().await;
    let config = zoho
        .config(ALLOW_LEADS, "token:\n  store: redis://127.0.0.1:1/0\n")
        .replace(
            "  refresh_token: ${TEST_REFRESH_TOKEN}\n",
            "  grant_token: 1000.GRANT.CODE\n",
        );
    let path = zoho.dir.path().join("grant.yaml");
    std::fs::write(&path, config).expect("write config");
    let out = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(&path)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("exits promptly")
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "refused to start: {text}");
    assert!(
        text.contains("zoho.refresh_token") && text.contains("fleet mode"),
        "says fleet mode needs a refresh token: {text}"
    );
}

#[test]
fn the_kubernetes_fleet_example_uses_the_fleet_keys_the_proxy_understands() {
    use zoho_auth_proxy::config::{Config, RedisDownPolicy, StoreConfig};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/fleet/configmap.yaml");
    let configmap: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read the ConfigMap"))
            .expect("ConfigMap YAML");
    let proxy_yaml = configmap["data"]["proxy.yaml"]
        .as_str()
        .expect("data.proxy.yaml");
    // The Secret files the pod mounts, here in a temp dir.
    let secrets = tempfile::tempdir().expect("temp dir");
    std::fs::write(secrets.path().join("client_secret"), CLIENT_SECRET).expect("write secret");
    std::fs::write(secrets.path().join("refresh_token"), REFRESH_TOKEN)
        .expect("write refresh token");
    let text = proxy_yaml.replace(
        "/run/secrets/zoho/",
        &format!("{}/", secrets.path().display()),
    );
    let env = |name: &str| (name == "ZOHO_CLIENT_ID").then(|| CLIENT_ID.to_string());
    let config = Config::from_yaml_str_with(&text, &env, secrets.path())
        .expect("the example's proxy.yaml is a valid config");
    let token = &config.accounts[0].token;
    assert!(
        matches!(&token.store, StoreConfig::Redis { url, password: None, .. } if url == "redis://redis:6379/0"),
        "the example uses the Redis Service of fleet/redis.yaml: {:?}",
        token.store
    );
    assert_eq!(token.lease, Duration::from_secs(15), "lease as documented");
    assert_eq!(
        token.when_redis_down,
        RedisDownPolicy::Refuse,
        "when_redis_down as documented"
    );
    assert!(
        config.accounts[0].refresh_token.is_some(),
        "fleet mode needs the refresh token configured"
    );
}

#[tokio::test]
async fn a_lease_left_without_expiry_cannot_block_the_fleet_for_ever() {
    let bin = require_redis!();
    let zoho = Zoho::start().await;
    let redis = Redis::start(&bin, None).await;
    // Someone SET the lease key by hand, with no expiry.
    let ns = zoho_auth_proxy::token::redis_store::Namespace::new(CLIENT_ID, REFRESH_TOKEN);
    let lease_key = ns.channel().replace(":updated", ":lease");
    let mut conn = redis.connection().await.expect("redis reachable");
    let _: () = redis::cmd("SET")
        .arg(&lease_key)
        .arg("by-hand")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let config = fleet_config(&zoho, &redis, "");
    let fleet = start_fleet(&config, 2).await;
    wait_all_ready(&fleet, Duration::from_secs(30)).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&lease_key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert_ne!(ttl, -1, "the stray lease got an expiry");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "once it expired, one replica minted for both"
    );
}

#[tokio::test]
async fn two_replicas_hold_one_books_organization_to_one_window_through_redis() {
    let binary = require_redis!();
    let redis = Redis::start(&binary, None).await;
    let zoho = Zoho::start().await;
    let config = zoho.config(
        &["ZohoBooks.invoices.READ"],
        &format!(
            "token:\n  store: {}\nlimits:\n  requests_per_minute: {{books: 10}}\n  upstream_queue_timeout: 1s\n",
            redis.url()
        ),
    );
    let path = zoho.dir.path().join("fleet.yaml");
    std::fs::write(&path, config).expect("write config");
    let fleet = start_fleet(&path, 2).await;
    wait_all_ready(&fleet, Duration::from_secs(20)).await;
    let burst = (0..30).map(|i| {
        let url = fleet[i % 2].url("/books/v3/invoices?organization_id=60001");
        async move {
            let resp = client().get(url).send().await.expect("answers");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, body["code"].clone())
        }
    });
    let answers = join_all(burst).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 10, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, c)| *s == 429 && c == "PROXY_RATE_LIMITED"),
        "{answers:?}"
    );
    let reached = zoho
        .control()
        .org_request_count(zoho_auth_proxy::sandbox::FinanceProduct::Books, "60001");
    assert_eq!(
        reached, 10,
        "the stand-in saw the fleet's window, not one per replica"
    );
    // Another organization has a window of its own.
    let resp = client()
        .get(fleet[1].url("/books/v3/invoices?organization_id=60002"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
}
