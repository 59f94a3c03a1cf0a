//! The SSRF header, client identities by key, bad `clients:` configs,
//! and Zoho's Node SDK with a client key.

use crate::common::*;
use crate::*;
use std::path::Path;
use std::time::Duration;

#[tokio::test]
async fn the_ssrf_header_is_required_when_configured_and_never_forwarded() {
    let (zoho, proxy) = start("require_request_header: true\n").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let without = get(proxy.proxy, "127.0.0.1", &[]).await;
    assert_refusal(
        &without,
        412,
        "PROXY_REQUEST_HEADER_REQUIRED",
        "X-Zoho-Proxy-Request: true",
    );
    let twice = get(
        proxy.proxy,
        "127.0.0.1",
        &["X-Zoho-Proxy-Request: true", "X-Zoho-Proxy-Request: true"],
    )
    .await;
    assert_eq!(twice.status, 412, "sent twice");
    let wrong = get(proxy.proxy, "127.0.0.1", &["X-Zoho-Proxy-Request: 1"]).await;
    assert_eq!(wrong.status, 412, "a value other than true");
    assert!(
        fake.crm_requests().is_empty(),
        "nothing forwarded without the header"
    );
    let with = get(proxy.proxy, "127.0.0.1", &["X-Zoho-Proxy-Request: true"]).await;
    assert_eq!(with.status, 200, "with the header: {}", with.body);
    let seen = fake.crm_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header_count("x-zoho-proxy-request"),
        0,
        "the header is removed before forwarding"
    );
}

fn clients_yaml(report_key_file: &Path) -> String {
    format!(
        "clients:\n  - name: sync\n    key: {KEY_SYNC}\n    allow: [ZohoCRM.modules.leads.READ]\n  - name: report\n    key_file: {}\n",
        report_key_file.display()
    )
}

#[tokio::test]
async fn client_keys_identify_narrow_and_rotate_on_reload() {
    let zoho = Zoho::start().await;
    let key_file = zoho.dir.path().join("report.key");
    std::fs::write(&key_file, format!("{KEY_REPORT}\n")).expect("key file");
    let config = zoho.config(ALLOW, &clients_yaml(&key_file));
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &config).await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let host = "127.0.0.1";

    // The three key forms.
    for form in [
        format!("Authorization: Bearer {KEY_SYNC}"),
        format!("Authorization: Zoho-oauthtoken {KEY_SYNC}"),
        format!("X-Zoho-Proxy-Key: {KEY_SYNC}"),
    ] {
        let a = get(proxy.proxy, host, &[form.as_str()]).await;
        assert_eq!(a.status, 200, "{form}: {}", a.body);
    }
    let seen = fake.crm_requests();
    assert_eq!(seen.len(), 3);
    let live = fake.live_tokens();
    for r in &seen {
        let auth = r.header_str("authorization").unwrap_or("");
        assert!(
            live.iter().any(|t| auth == format!("Zoho-oauthtoken {t}")),
            "Zoho sees the proxy's token, not the key"
        );
        assert_eq!(
            r.header_count("x-zoho-proxy-key"),
            0,
            "the key header is removed"
        );
    }
    fake.clear_crm_requests();

    // Missing and wrong keys: 401 with no hint.
    for extra in [
        vec![],
        vec!["Authorization: Bearer wrong-key-0123456789abcdef0123456789abcdef"],
        vec!["X-Zoho-Proxy-Key: nope"],
        vec!["Authorization: Basic c3luYzpzeW5j"],
    ] {
        let a = get(proxy.proxy, host, &extra).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "PROXY_CLIENT_UNAUTHENTICATED"),
            "{extra:?}"
        );
        assert!(
            !a.body.contains("sync") && !a.body.contains("report"),
            "no client name in the body: {}",
            a.body
        );
    }
    // sync may only read Leads; report has the account's whole list.
    let create = send(
        proxy.proxy,
        &format!("POST {LEADS} HTTP/1.1"),
        &[
            &format!("Host: {host}"),
            &format!("X-Zoho-Proxy-Key: {KEY_SYNC}"),
            "Content-Type: application/json",
        ],
        JSON_LEAD,
    )
    .await;
    assert_eq!(
        (create.status, create.code()),
        (403, "PROXY_SCOPE_DENIED"),
        "sync's narrower list: {}",
        create.body
    );
    let contacts = send(
        proxy.proxy,
        "GET /crm/v8/Contacts HTTP/1.1",
        &[
            &format!("Host: {host}"),
            &format!("X-Zoho-Proxy-Key: {KEY_SYNC}"),
        ],
        "",
    )
    .await;
    assert_eq!(contacts.status, 403, "sync may not read Contacts");
    let report_contacts = send(
        proxy.proxy,
        "GET /crm/v8/Contacts HTTP/1.1",
        &[
            &format!("Host: {host}"),
            &format!("Authorization: Bearer {KEY_REPORT}"),
        ],
        "",
    )
    .await;
    assert_eq!(
        report_contacts.status, 200,
        "report reads Contacts: {}",
        report_contacts.body
    );
    assert_eq!(
        fake.crm_requests().len(),
        1,
        "only report's request reached Zoho"
    );

    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"client="sync""#) && metrics.contains(r#"client="report""#),
        "requests_total has the client label:\n{metrics}"
    );
    let status = proxy.status_json().await;
    let text = status.to_string();
    assert!(
        text.contains("\"sync\"") && text.contains("ZohoCRM.modules.leads.READ"),
        "/status lists clients and allow lists: {text}"
    );
    for (what, secret) in [("metrics", &metrics), ("status", &text)] {
        assert!(
            !secret.contains(KEY_SYNC) && !secret.contains(KEY_REPORT),
            "no key in {what}"
        );
    }

    // Rotate report's key: rewrite the file and SIGHUP.
    std::fs::write(&key_file, format!("{KEY_REPORT_NEW}\n")).expect("rotate");
    proxy.signal("HUP");
    let rotated = poll_until(Duration::from_secs(5), || async {
        get(
            proxy.proxy,
            host,
            &[&format!("X-Zoho-Proxy-Key: {KEY_REPORT_NEW}")],
        )
        .await
        .status
            == 200
    })
    .await;
    assert!(
        rotated,
        "the new key works after the reload: {}",
        proxy.logs()
    );
    let old = get(
        proxy.proxy,
        host,
        &[&format!("X-Zoho-Proxy-Key: {KEY_REPORT}")],
    )
    .await;
    assert_eq!(old.status, 401, "the old key no longer works");

    // A broken reload (a short key) keeps the previous clients.
    std::fs::write(&key_file, "short\n").expect("short key");
    proxy.signal("HUP");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t
                .contains("keeping the previous configuration"))
            .await,
        "the bad reload is refused: {}",
        proxy.logs()
    );
    let kept = get(
        proxy.proxy,
        host,
        &[&format!("X-Zoho-Proxy-Key: {KEY_REPORT_NEW}")],
    )
    .await;
    assert_eq!(kept.status, 200, "the last good key still works");

    // Access lines are written in batches (up to 10 ms after the request): wait for the one
    // naming the client, then read the log for keys.
    let names_client = |t: &str| t.contains("client=sync") || t.contains(r#""client":"sync""#);
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), names_client)
            .await,
        "the access log names the client"
    );
    let logs = proxy.logs();
    for key in [KEY_SYNC, KEY_REPORT, KEY_REPORT_NEW] {
        assert!(!logs.contains(key), "a client key leaked into the logs");
    }
    proxy.assert_no_secrets(&fake.live_tokens());
}

#[tokio::test]
async fn bad_requester_settings_exit_2_naming_the_key() {
    let zoho = Zoho::start().await;
    let cases: &[(&str, &str, &str)] = &[
        ("short key", "clients:\n  - name: sync\n    key: tooshort-secret\n", "clients[0].key"),
        ("wider allow", "clients:\n  - name: sync\n    key: 0123456789abcdef0123456789abcdef\n    allow: [ZohoCRM.modules.deals.READ]\n", "clients[0].allow[0]"),
        ("bad name", "clients:\n  - name: sync job\n    key: 0123456789abcdef0123456789abcdef\n", "clients[0].name"),
        ("no identity", "clients:\n  - name: sync\n", "clients[0].key"),
        ("duplicate key", "clients:\n  - name: a\n    key: 0123456789abcdef0123456789abcdef\n  - name: b\n    key: 0123456789abcdef0123456789abcdef\n", "clients[1].key"),
        ("unknown account", "clients:\n  - name: a\n    key: 0123456789abcdef0123456789abcdef\n    accounts: [nope]\n", "clients[0].accounts[0]"),
        ("unknown key", "clients:\n  - name: a\n    secret: x\n", "clients[0]"),
        ("zero credits", "clients:\n  - name: a\n    key: 0123456789abcdef0123456789abcdef\n    credits_per_day: 0\n", "clients[0].credits_per_day"),
        ("wildcard host", "accept_hosts: ['*']\n", "accept_hosts[0]"),
        ("host with port", "accept_hosts: ['crm:8080']\n", "accept_hosts[0]"),
        ("empty uid list", "unix:\n  allowed_uids: []\n", "unix.allowed_uids"),
        ("uid not a number", "unix:\n  allowed_uids: [alice]\n", "allowed_uids"),
        ("client uid not allowed", "unix:\n  allowed_uids: [1000]\nclients:\n  - name: app\n    unix_uid: 1001\n", "clients[0].unix_uid"),
    ];
    for (name, extra, key) in cases {
        let path = zoho.dir.path().join("bad.yaml");
        std::fs::write(&path, zoho.config(ALLOW, extra)).expect("write");
        let out = run_to_exit(&path);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{name}: exit 2; output: {text}");
        assert!(text.contains(key), "{name}: the error names {key}: {text}");
        assert!(
            !text.contains("tooshort-secret") && !text.contains("0123456789abcdef0123456789abcdef"),
            "{name}: the key is never echoed: {text}"
        );
    }
}

#[tokio::test]
async fn zohos_node_sdk_works_with_a_client_key_as_its_access_token() {
    let Some(sdk) = node_sdk() else {
        eprintln!("\n*** SKIPPED zohos_node_sdk_works_with_a_client_key_as_its_access_token: Zoho's Node SDK is not installed (.ci/run: npm install --prefix target/node-sdk @zohocrm/nodejs-sdk-8.0) ***\n");
        return;
    };
    let zoho = Zoho::start().await;
    // What the SDK calls before its first record operation: the module's field metadata.
    let allow = ["ZohoCRM.modules.leads.READ", "ZohoCRM.settings.fields.READ"];
    let config = zoho.config(
        &allow,
        &format!("clients:\n  - name: node-sdk\n    key: {KEY_SYNC}\n"),
    );
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &config).await;
    let resources = tempfile::tempdir().expect("SDK resource dir");
    let run = |key: &'static str| run_node_sdk(&sdk, &proxy, key, resources.path());
    let (ok, output) = run(KEY_SYNC).await;
    assert_eq!(
        ok["status"],
        200,
        "the SDK gets Leads through the proxy: {output}\n{}",
        proxy.logs()
    );
    assert!(
        ok["records"].as_u64().unwrap_or(0) >= 1,
        "records came back: {output}"
    );
    let live = zoho.control().live_tokens();
    let seen = zoho.control().crm_requests();
    assert!(!seen.is_empty(), "the SDK's requests reached Zoho");
    for r in &seen {
        let auth = r.header_str("authorization").unwrap_or("");
        assert!(
            live.iter().any(|t| auth == format!("Zoho-oauthtoken {t}")),
            "Zoho sees the proxy's token, never the client key"
        );
    }
    let (refused, output) = run("a-wrong-key-0123456789abcdef0123456789ab").await;
    assert_ne!(refused["status"], 200, "a wrong key is refused: {output}");
    assert!(
        !proxy.logs().contains(KEY_SYNC),
        "the key never reaches the logs"
    );
}
