//! Tests of the token handle: refresh and safety margins, redacted and header-safe tokens,
//! rejections by generation.

use super::*;

#[test]
fn margins_scale_with_lifetime() {
    assert_eq!(
        refresh_margin(Duration::from_secs(3600)),
        Duration::from_secs(300)
    );
    assert_eq!(
        refresh_margin(Duration::from_secs(5)),
        Duration::from_millis(500)
    );
    assert_eq!(
        refresh_margin(Duration::from_secs(60)),
        Duration::from_secs(6)
    );
    assert_eq!(
        safety_margin(Duration::from_secs(3600)),
        Duration::from_secs(2)
    );
    assert_eq!(
        safety_margin(Duration::from_secs(2)),
        Duration::from_millis(100)
    );
}

#[test]
fn token_debug_is_redacted_and_header_sensitive() {
    let api = ApiBase::from_url(&url::Url::parse("https://www.zohoapis.com").expect("url"))
        .expect("base");
    let t = AccessToken::new(
        "1000.secret.value",
        1,
        Duration::from_secs(60),
        Duration::from_secs(60),
        api,
    )
    .expect("token");
    assert!(
        !format!("{t:?}").contains("secret"),
        "Debug hides the token"
    );
    assert!(t.authorization().is_sensitive(), "header marked sensitive");
    assert!(AccessToken::new(
        "bad\r\nX: y",
        1,
        Duration::from_secs(1),
        Duration::from_secs(1),
        t.api.clone()
    )
    .is_none());
}

#[tokio::test]
async fn reject_of_an_old_generation_returns_the_newer_token_without_waiting() {
    let (h, _rx) = TokenHandle::new(
        "a",
        Secrets {
            client_secret: "s".to_string().into(),
            refresh_token: None,
        },
        8,
        String::new(),
    );
    let api = ApiBase::from_url(&url::Url::parse("https://www.zohoapis.com").expect("url"))
        .expect("base");
    h.install(
        AccessToken::new(
            "t2",
            2,
            Duration::from_secs(60),
            Duration::from_secs(60),
            api,
        )
        .expect("token"),
    );
    let got = h
        .reject(1, Duration::from_millis(1))
        .await
        .map(|t| t.generation);
    assert_eq!(
        got,
        Some(2),
        "a request that failed with generation 1 gets generation 2"
    );
    assert_eq!(
        h.invalidated(),
        0,
        "no invalidation recorded when a newer token exists"
    );
}
