//! The per-organization quota in fleet mode, through a real `redis-server` on loopback: two
//! `Quotas` (two replicas) share one window, one back-off, and keep counting when Redis dies.
//! Skipped, loudly, when `redis-server` is not installed.

mod common;

use common::{poll_until, start_redis};
use futures_util::future::join_all;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use zoho_auth_proxy::config::OrgLimits;
use zoho_auth_proxy::config::RedisTopology;
use zoho_auth_proxy::quota::{QuotaSettings, Quotas, Refusal};
use zoho_auth_proxy::store::redis::RedisClient;

const ACCOUNT: &str = "books";

fn store(port: u16) -> Arc<RedisClient> {
    Arc::new(
        RedisClient::new(
            &format!("redis://127.0.0.1:{port}/0"),
            &RedisTopology::Single,
            None,
            None,
        )
        .expect("store"),
    )
}

fn settings(rpm: u32, queue_secs: u64) -> QuotaSettings {
    QuotaSettings {
        accounts: [(
            ACCOUNT.to_string(),
            OrgLimits {
                requests_per_minute: vec![("books", rpm)],
                daily_calls: vec![("books", 1_000)],
            },
        )]
        .into_iter()
        .collect(),
        queue_timeout: Duration::from_secs(queue_secs),
    }
}

/// A replica: its own `Quotas` and its own connection to the shared Redis.
fn replica(port: u16, rpm: u32) -> Quotas {
    let stores: HashMap<String, Arc<RedisClient>> =
        [(ACCOUNT.to_string(), store(port))].into_iter().collect();
    Quotas::new(
        settings(rpm, 0),
        &stores,
        &mut Registry::with_prefix("zoho_proxy"),
    )
}

#[tokio::test]
async fn two_replicas_admit_exactly_the_limit_of_a_burst_between_them() {
    let Some((_redis, port, _dir)) = start_redis().await else {
        return;
    };
    let (a, b) = (replica(port, 10), replica(port, 10));
    // An organization id with the characters a key or a script could trip on: it must stay a
    // key suffix.
    let org = "org}{'\" x";
    let results = join_all((0..30).map(|i| {
        let q = if i % 2 == 0 { &a } else { &b };
        q.admit(ACCOUNT, "books", org)
    }))
    .await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        admitted, 10,
        "exactly the limit between both replicas: {results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(r, Refusal::RateLimited { limit: 10, retry_after_secs, .. } if (1..=61).contains(retry_after_secs)),
            "the others are refused with a Retry-After within the minute (a request read the clock up to a few ms before the admission it waits for): {r:?}"
        );
    }
    for (name, q) in [("first", &a), ("second", &b)] {
        assert!(
            q.admit(ACCOUNT, "books", org).await.is_err(),
            "the {name} replica sees the shared window full"
        );
    }

    let redis = store(port);
    let window: i64 = redis
        .query(redis::cmd("ZCARD").arg(format!("zoho-auth-proxy:{{quota}}:window:books:{org}")))
        .await
        .expect("ZCARD");
    assert_eq!(window, 10, "the shared window holds the ten admissions");
    let daily: Vec<i64> = redis
        .query(redis::cmd("HVALS").arg(format!("zoho-auth-proxy:{{quota}}:daily:books:{org}")))
        .await
        .expect("HVALS");
    assert_eq!(
        daily.iter().sum::<i64>(),
        10,
        "the daily count has the ten calls"
    );
    let keys: Vec<String> = redis
        .query(redis::cmd("KEYS").arg("*"))
        .await
        .expect("KEYS");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("zoho-auth-proxy:{quota}:")),
        "every key under the one hash tag: {keys:?}"
    );
    let seen = [&a, &b].map(|q| q.snapshot()[0].window_used);
    assert_eq!(
        seen.iter().max(),
        Some(&10),
        "the replica that made the tenth admission shows the fleet's full window: {seen:?}"
    );
}

#[tokio::test]
async fn a_429_seen_by_one_replica_holds_back_the_other() {
    let Some((_redis, port, _dir)) = start_redis().await else {
        return;
    };
    let (a, b) = (replica(port, 100), replica(port, 100));
    assert!(a.admit(ACCOUNT, "books", "77").await.is_ok());
    assert!(b.admit(ACCOUNT, "books", "77").await.is_ok());
    a.on_response(ACCOUNT, "books", "77", 429, Some(b"30"))
        .await;
    match b.admit(ACCOUNT, "books", "77").await {
        Err(Refusal::ZohoThrottled {
            retry_after_secs, ..
        }) => assert!(
            (29..=30).contains(&retry_after_secs),
            "the other replica waits out Zoho's Retry-After ({retry_after_secs} s)"
        ),
        other => panic!("the other replica is held back by the shared back-off: {other:?}"),
    }
    assert!(
        b.admit(ACCOUNT, "books", "78").await.is_ok(),
        "another organization is not"
    );
}

#[tokio::test]
async fn local_counting_continues_when_redis_dies() {
    let Some((mut redis, port, _dir)) = start_redis().await else {
        return;
    };
    let a = replica(port, 3);
    assert!(
        a.admit(ACCOUNT, "books", "5").await.is_ok(),
        "through Redis"
    );
    redis.kill().await.expect("kill redis-server");
    let gone = poll_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    assert!(gone, "redis-server is gone");
    let started = std::time::Instant::now();
    assert!(
        a.admit(ACCOUNT, "books", "5").await.is_ok(),
        "a Redis failure never fails the request"
    );
    assert!(a.admit(ACCOUNT, "books", "5").await.is_ok());
    assert!(
        matches!(
            a.admit(ACCOUNT, "books", "5").await,
            Err(Refusal::RateLimited { limit: 3, .. })
        ),
        "the local window counted the admission made through Redis and the two after it"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "after the first failure Redis is not waited for ({:?})",
        started.elapsed()
    );
}

/// The fleet's queue: with the clock held still, requests over the limit reserve the slots a
/// minute on, first come first served, and the one that would wait beyond `queue_timeout` is
/// refused. The waiting requests are aborted once their reservations are seen in Redis.
#[tokio::test]
async fn the_fleet_queues_in_order_within_the_queue_timeout() {
    let Some((_redis, port, _dir)) = start_redis().await else {
        return;
    };
    let t0 = zoho_auth_proxy::util::clock::now_unix_ms();
    let replica = |port| {
        let stores: HashMap<String, Arc<RedisClient>> =
            [(ACCOUNT.to_string(), store(port))].into_iter().collect();
        Arc::new(Quotas::with_clock(
            settings(2, 90),
            &stores,
            &mut Registry::with_prefix("zoho_proxy"),
            Arc::new(move || t0),
        ))
    };
    let (a, b) = (replica(port), replica(port));
    for q in [&a, &b] {
        assert_eq!(
            q.admit(ACCOUNT, "books", "42").await.map(|x| x.waited),
            Ok(Duration::ZERO),
            "the first two go at once"
        );
    }
    let redis = store(port);
    let key = "zoho-auth-proxy:{quota}:window:books:42";
    let mut waiting = Vec::new();
    for (i, q) in [&a, &b].into_iter().enumerate() {
        let q = q.clone();
        waiting.push(tokio::spawn(async move {
            q.admit(ACCOUNT, "books", "42").await
        }));
        let reserved = poll_until(Duration::from_secs(5), || async {
            redis
                .query::<i64>(redis::cmd("ZCARD").arg(key))
                .await
                .is_ok_and(|n| n == 3 + i as i64)
        })
        .await;
        assert!(reserved, "waiting request {i} has its reservation");
    }
    let scores: Vec<(String, f64)> = redis
        .query(
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
        .expect("ZRANGE");
    let at: Vec<u64> = scores.iter().map(|(_, s)| *s as u64 - t0).collect();
    assert_eq!(
        at,
        vec![0, 0, 60_000, 60_000],
        "both waiting requests go a minute after the first two"
    );
    assert_eq!(
        a.admit(ACCOUNT, "books", "42").await,
        Err(Refusal::RateLimited {
            product: "books",
            organization: "42".into(),
            limit: 2,
            retry_after_secs: 120,
        }),
        "the fifth would wait 120 s, beyond the 90 s queue timeout"
    );
    for w in waiting {
        assert!(!w.is_finished(), "a queued request sleeps until its slot");
        w.abort();
    }
}
