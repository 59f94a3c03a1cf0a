//! `strict_content_type` (catalogue K27 and K29): JSON bodies need `application/json`,
//! `multipart/form-data` goes to upload operations only, and the default keeps the SDKs' shapes.

use crate::common::*;
use crate::*;
use std::time::Duration;

const UPLOAD: &str = "/crm/v8/Leads/123/Attachments";
const MULTIPART_BODY: &str =
    "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--b--\r\n";

/// A POST of `body` to `path` with these header lines (besides Host).
async fn post(proxy: &RunningProxy, path: &str, headers: &[&str], body: &str) -> Answer {
    let mut all = vec!["Host: localhost:8080"];
    all.extend_from_slice(headers);
    send(proxy.proxy, &format!("POST {path} HTTP/1.1"), &all, body).await
}

#[tokio::test]
async fn strict_content_type_takes_json_and_uploads_only_and_turns_off_on_reload() {
    let allow = [ALLOW, &["ZohoCRM.modules.attachments.CREATE"]].concat();
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(
        zoho.dir.path(),
        &zoho.config(&allow, "strict_content_type: true\n"),
    )
    .await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    // What Zoho's SDKs send (Java: text/plain; Python and Node: no type; Node's fetch with a
    // string), JSON under other names, and a duplicated type: all refused before Zoho.
    for headers in [
        &["Content-Type: text/plain; charset=UTF-8"][..],
        &[][..],
        &["Content-Type: text/plain;charset=UTF-8"][..],
        &["Content-Type: text/json"][..],
        &["Content-Type: application/jsonx"][..],
        &[
            "Content-Type: application/json",
            "Content-Type: application/json",
        ][..],
        &["Content-Type: multipart/form-data; boundary=b"][..],
    ] {
        let a = post(&proxy, LEADS, headers, JSON_LEAD).await;
        assert_refusal(
            &a,
            415,
            "PROXY_CONTENT_TYPE_NOT_ALLOWED",
            "application/json",
        );
        assert!(
            a.body.contains("strict_content_type"),
            "{headers:?}: the body names the setting: {}",
            a.body
        );
    }
    assert!(
        fake.crm_requests().is_empty(),
        "no refused body reached Zoho"
    );
    // JSON in any spelling, a body-less GET, and a multipart upload are served.
    for headers in [
        &["Content-Type: application/json"][..],
        &["Content-Type: application/json; charset=utf-8"][..],
        &["Content-Type: Application/JSON"][..],
    ] {
        assert_served(
            &post(&proxy, LEADS, headers, JSON_LEAD).await,
            &format!("{headers:?}"),
        );
    }
    assert_served(
        &get(proxy.proxy, "localhost", &[]).await,
        "a GET without a type",
    );
    let upload = post(
        &proxy,
        UPLOAD,
        &["Content-Type: multipart/form-data; boundary=b"],
        MULTIPART_BODY,
    )
    .await;
    assert_eq!(
        upload.code(),
        "",
        "no proxy error on the upload: {}",
        upload.body
    );
    let seen = fake.crm_requests();
    let forwarded = seen.iter().find(|r| r.path_and_query == UPLOAD);
    assert!(
        forwarded.is_some_and(|r| r.body_prefix == MULTIPART_BODY.as_bytes()),
        "the multipart upload reached Zoho whole"
    );
    assert_eq!(
        fake.crm_requests().len(),
        5,
        "the accepted requests reached Zoho"
    );
    let (count, metrics) = refusals(&proxy, "proxy", "content_type").await;
    assert_eq!(count, 7.0, "strict refusals are counted:\n{metrics}");
    assert_eq!(
        proxy.status_json().await["access"]["strict_content_type"],
        true,
        "/status shows the setting"
    );

    // Turned off by a reload: the SDKs' shapes pass again, and so does a URL-encoded body
    // (curl -d) from a program.
    let config = zoho.config(&allow, "");
    std::fs::write(&proxy.config_path, config).expect("rewrite");
    proxy.signal("HUP");
    let off = poll_until(Duration::from_secs(5), || async {
        proxy.status_json().await["access"]["strict_content_type"] == false
    })
    .await;
    assert!(off, "the reload applies: {}", proxy.logs());
    assert!(
        proxy.logs().contains("strict_content_type"),
        "the reload logs the changed setting: {}",
        proxy.logs()
    );
    assert_served(
        &post(
            &proxy,
            LEADS,
            &["Content-Type: text/plain; charset=UTF-8"],
            JSON_LEAD,
        )
        .await,
        "text/plain after the reload",
    );
    let form = post(
        &proxy,
        LEADS,
        &["Content-Type: application/x-www-form-urlencoded"],
        JSON_LEAD,
    )
    .await;
    assert_eq!(
        form.status, 201,
        "a URL-encoded body is forwarded once strict_content_type is off: {}",
        form.body
    );
}
