//! Tests of the Redis store that need no running Redis: namespaces, redacted output, an unreachable
//! server.

use super::*;

#[test]
fn namespaces_separate_clients_and_refresh_tokens_without_showing_the_token() {
    let a = Namespace::new("1000.A", "1000.rt-one.secret");
    let b = Namespace::new("1000.A", "1000.rt-two.secret");
    let c = Namespace::new("1000.B", "1000.rt-one.secret");
    assert_ne!(a, b, "another refresh token, another namespace");
    assert_ne!(a, c, "another client, another namespace");
    for ns in [&a, &b, &c] {
        assert!(
            !ns.key("token").contains("secret"),
            "the refresh token is not in the key: {}",
            ns.key("token")
        );
        assert!(
            ns.key("token").starts_with("zoho-auth-proxy:{1000."),
            "prefixed and hash-tagged: {}",
            ns.key("token")
        );
    }
    assert!(
        a.channel().ends_with("}:updated"),
        "channel name: {}",
        a.channel()
    );
}

#[test]
fn debug_output_hides_the_token_and_the_password() {
    let pw = SecretValue {
        value: SecretString::from("REDIS-PW-CANARY".to_string()),
        file: None,
    };
    let store = RedisStore::new(
        "redis://127.0.0.1:1/0",
        &RedisTopology::Single,
        Some(&pw),
        None,
        "1000.A",
    )
    .expect("store");
    assert!(!format!("{store:?}").contains("CANARY"), "{store:?}");
    let token = SharedToken {
        access_token: SecretString::from("1000.TOKEN-CANARY".to_string()),
        expires_at_unix_ms: 1,
        lifetime: Duration::from_secs(1),
        api_domain: None,
        minted_by: "r1".into(),
    };
    assert!(!format!("{token:?}").contains("CANARY"), "{token:?}");
}

#[tokio::test]
async fn an_unreachable_redis_is_named_in_the_error() {
    // Port 1 on loopback: nothing listens there.
    let store = RedisStore::new(
        "redis://127.0.0.1:1/0",
        &RedisTopology::Single,
        None,
        None,
        "1000.A",
    )
    .expect("store");
    let err = store
        .token(&store.namespace("rt"))
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        err.contains("Redis at redis://127.0.0.1:1/0"),
        "names Redis and its URL: {err}"
    );
}
