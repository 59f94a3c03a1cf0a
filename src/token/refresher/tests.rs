//! The refresher's own tests: credentials and data centers, restore. Plan and back-off tables
//! are beside their code (`plan.rs`), fleet timing in `fleet/`.

use super::*;
use crate::token::store::{fingerprint, STORE_VERSION};
use secrecy::ExposeSecret;

/// A refresher for the first account of `yaml` (no I/O until restore).
fn refresher(yaml: &str) -> Refresher {
    let config = crate::config::Config::from_yaml_str(yaml).expect("test config is valid");
    let account = &config.accounts[0];
    let secrets = super::super::Secrets {
        client_secret: account.client_secret.value.clone(),
        refresh_token: account.refresh_token.as_ref().map(|s| s.value.clone()),
    };
    let (handle, commands) = TokenHandle::new(&account.name, secrets, 8, String::new());
    Refresher::new(
        account,
        handle,
        commands,
        crate::token::TokenMetrics::default(),
    )
    .expect("refresher builds")
}

fn server_yaml(store: &std::path::Path, extra: &str) -> String {
    format!(
        "accounts:\n  - name: globex\n    client_type: server\n    data_center: us\n    client_id: 1000.CID\n    client_secret: s\n    \
         redirect_uri: http://127.0.0.1:9901/oauth/callback\n    token:\n      store: {}\n    allow: [ZohoCRM.modules.leads.READ]\n{extra}",
        store.display()
    )
}

#[test]
fn the_user_data_center_decides_where_tokens_and_requests_go() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut r = refresher(&server_yaml(&dir.path().join("t.json"), ""));
    assert_eq!(
        r.accounts_url().as_str(),
        "https://accounts.zoho.com/",
        "configured DC before authorization"
    );
    r.state.refresh_token = Some("1000.rt.eu".into());
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        // (stored accounts_url, api_domain of the token reply, token endpoint used, API host used)
        (
            "https://accounts.zoho.eu",
            Some("https://www.zohoapis.eu"),
            "https://accounts.zoho.eu/",
            "https://www.zohoapis.eu",
        ),
        (
            "https://accounts.zoho.eu",
            None,
            "https://accounts.zoho.eu/",
            "https://www.zohoapis.eu",
        ),
        (
            "https://accounts.zoho.in",
            Some("https://evil.example"),
            "https://accounts.zoho.in/",
            "https://www.zohoapis.in",
        ),
        (
            "https://accounts.zoho.com.au",
            Some("https://sandbox.zohoapis.com.au"),
            "https://accounts.zoho.com.au/",
            "https://sandbox.zohoapis.com.au",
        ),
        (
            "https://evil.example",
            None,
            "https://accounts.zoho.com/",
            "https://www.zohoapis.com",
        ),
        (
            "https://accounts.zoho.eu/oauth/v2/token",
            None,
            "https://accounts.zoho.com/",
            "https://www.zohoapis.com",
        ),
    ];
    for (stored, api_domain, token_endpoint, api) in cases {
        r.state.accounts_url = Some(stored.to_string());
        assert_eq!(
            r.accounts_url().as_str(),
            *token_endpoint,
            "token endpoint for stored {stored}"
        );
        assert_eq!(
            r.api_base(*api_domain, false).origin(),
            *api,
            "API host for stored {stored}, api_domain {api_domain:?}"
        );
    }
}

#[test]
fn a_configured_api_url_overrides_every_api_domain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut r = refresher(&server_yaml(
        &dir.path().join("t.json"),
        "    api_url: https://127.0.0.1:4444\n",
    ));
    r.state.refresh_token = Some("1000.rt.eu".into());
    r.state.accounts_url = Some("https://accounts.zoho.eu".into());
    assert_eq!(
        r.api_base(Some("https://www.zohoapis.eu"), false).origin(),
        "https://127.0.0.1:4444",
        "api_url wins"
    );
}

#[test]
fn an_authorized_refresh_token_supersedes_the_configured_one_until_that_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut r = refresher(&server_yaml(
        &dir.path().join("t.json"),
        "    refresh_token: 1000.configured\n",
    ));
    let current = |r: &Refresher| r.refresh_token().map(|t| t.expose_secret().to_string());
    assert_eq!(
        current(&r).as_deref(),
        Some("1000.configured"),
        "configured token before authorization"
    );
    r.state.refresh_token = Some("1000.authorized".into());
    r.state.accounts_url = Some("https://accounts.zoho.eu".into());
    assert_eq!(
        current(&r).as_deref(),
        Some("1000.configured"),
        "a stored token alone does not override the config"
    );
    assert_eq!(
        r.accounts_url().as_str(),
        "https://accounts.zoho.com/",
        "the configured token goes to the configured DC"
    );
    r.state.supersedes_sha256 = Some(fingerprint("1000.configured"));
    assert_eq!(
        current(&r).as_deref(),
        Some("1000.authorized"),
        "authorization supersedes the configured token"
    );
    assert_eq!(
        r.accounts_url().as_str(),
        "https://accounts.zoho.eu/",
        "and uses the DC that authorized it"
    );
    r.handle.set_secrets(super::super::Secrets {
        client_secret: "s".to_string().into(),
        refresh_token: Some("1000.rotated".to_string().into()),
    });
    assert_eq!(
        current(&r).as_deref(),
        Some("1000.rotated"),
        "a changed configured token wins again"
    );
}

#[tokio::test]
async fn a_restart_restores_an_authorized_account_from_its_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.json");
    let never = refresher(&server_yaml(&path, ""));
    let mut never = never;
    never.restore().await;
    assert_eq!(
        never.handle.status().state,
        TokenState::NotAuthorized,
        "no store: not authorized right after restore"
    );
    assert!(never.handle.usable().is_none(), "no token");

    let state = StoredState {
        version: STORE_VERSION,
        client_id: "1000.CID".into(),
        refresh_token: Some("1000.rt.eu".into()),
        refresh_token_sha256: Some(fingerprint("1000.rt.eu")),
        accounts_url: Some("https://accounts.zoho.eu".into()),
        access_token: Some("1000.at.eu".into()),
        expires_at_unix_ms: Some(now_unix_ms() + 3_000_000),
        lifetime_secs: Some(3600.0),
        api_domain: Some("https://www.zohoapis.eu".into()),
        ..Default::default()
    };
    FileStore::new(path.clone())
        .save(&state)
        .await
        .expect("store written");
    let mut r = refresher(&server_yaml(&path, ""));
    r.restore().await;
    let token = r
        .handle
        .usable()
        .expect("the stored access token is installed");
    assert_eq!(
        token.api.origin(),
        "https://www.zohoapis.eu",
        "requests go to the authorizing DC's API"
    );
    assert_eq!(
        r.handle.status().state,
        TokenState::Ready,
        "ready without a token request"
    );
    assert_eq!(
        r.refresh_token()
            .map(|t| t.expose_secret().to_string())
            .as_deref(),
        Some("1000.rt.eu"),
        "stored refresh token used"
    );
    assert_eq!(
        r.accounts_url().as_str(),
        "https://accounts.zoho.eu/",
        "refreshes go to the authorizing DC"
    );
    let generation = token.generation;
    r.restore().await;
    assert_eq!(
        r.handle.usable().map(|t| t.generation),
        Some(generation),
        "a second restore is a no-op"
    );
}
