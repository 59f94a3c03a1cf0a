//! Foundation: forwarding with exactly one injected token, streaming, redirects, error mapping,
//! token-endpoint failures and bad configs. Real binary, real sockets, real TLS.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ALLOW_LEADS: &[&str] = &["ZohoCRM.modules.leads.ALL"];

#[tokio::test]
async fn every_method_arrives_with_exactly_one_proxy_token_and_no_client_credentials() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW_LEADS, "")).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready: {}",
        proxy.logs()
    );
    let c = client();
    for (method, path) in [
        ("GET", "/crm/v8/Leads"),
        ("POST", "/crm/v8/Leads"),
        ("PUT", "/crm/v8/Leads/554023000000235011"),
        ("DELETE", "/crm/v8/Leads/554023000000235012"),
    ] {
        zoho.control().clear_crm_requests();
        let mut req = c
            .request(method.parse().expect("method"), proxy.url(path))
            .header("Authorization", "Zoho-oauthtoken ATTACKER")
            .header("Cookie", "session=x")
            .header("Connection", "Authorization")
            .header("X-Forwarded-For", "1.2.3.4");
        if method == "POST" || method == "PUT" {
            req = req
                .header("content-type", "application/json")
                .body(r#"{"data":[{"Last_Name":"Lovelace"}]}"#);
        }
        let resp = req.send().await.expect("send");
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
        let seen = zoho.control().crm_requests();
        assert_eq!(seen.len(), 1, "{method}: exactly one upstream request");
        let r = &seen[0];
        assert_eq!(
            r.header_count("authorization"),
            1,
            "{method}: one Authorization header"
        );
        let auth = r.header_str("authorization").expect("authorization");
        let token = auth
            .strip_prefix("Zoho-oauthtoken ")
            .expect("Zoho-oauthtoken scheme");
        assert!(
            zoho.control().is_live(token),
            "{method}: the injected token is a live one"
        );
        assert_eq!(r.header_count("cookie"), 0, "{method}: no client cookie");
        assert_eq!(
            r.header_count("x-forwarded-for"),
            0,
            "{method}: no forwarded-for"
        );
        assert_eq!(
            r.header_count("host") + usize::from(r.version == "HTTP/2.0"),
            1,
            "{method}: one Host"
        );
    }
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}

#[tokio::test]
async fn a_thousand_requests_cause_one_token_request() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW_LEADS, "")).await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        let url = proxy.url("/crm/v8/Leads/554023000000235011");
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..125 {
                if c.get(&url)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("task");
    }
    assert_eq!(ok, 1000, "every request succeeded");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "one token request for 1000 requests"
    );
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_ahead_without_failed_requests() {
    let zoho = Zoho::start_with(FakeZohoOptions {
        expires_in: 3,
        ..options()
    })
    .await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(ALLOW_LEADS, "token:\n  mint_budget: 10\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    let c = client();
    let end = std::time::Instant::now() + Duration::from_secs(8);
    let mut failures = 0;
    let mut count = 0;
    while std::time::Instant::now() < end {
        let r = c
            .get(proxy.url("/crm/v8/Leads/554023000000235011"))
            .send()
            .await
            .expect("send");
        if !r.status().is_success() {
            failures += 1;
        }
        count += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(count > 100, "steady traffic was sent ({count})");
    assert_eq!(failures, 0, "no failed request across token lifetimes");
    let mints = zoho.control().mints();
    assert!(
        (3..=5).contains(&mints),
        "about one mint per 3 s lifetime over 8 s, got {mints}"
    );
}

#[tokio::test]
async fn large_bodies_stream_both_ways_with_flat_memory() {
    // Lone requests: HTTP/1.1 upstream under the default `auto`.
    stream_both_ways(200, false, "HTTP/1.1").await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways_over_http2_under_flow_control() {
    // 64 MiB each way is 32 times the 2 MiB stream window: the upload waits for window updates
    // and the download gives window back as the client reads.
    stream_both_ways(64, true, "HTTP/2.0").await;
}

/// Downloads and uploads `mib` MiB through the proxy (with `upstream_protocol: http2` when
/// `pinned`), checks both arrive whole, that the upstream saw `version`, and that memory stays
/// flat.
async fn stream_both_ways(mib: u64, pinned: bool, version: &str) {
    let zoho = Zoho::start().await;
    let proxy = if pinned {
        spawn_pinned_http2(&zoho, "", None).await
    } else {
        let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW_LEADS, "")).await;
        assert!(proxy.wait_ready(Duration::from_secs(10)).await);
        proxy
    };
    let (_, before) = proxy.memory_kib();
    let size: u64 = mib << 20;
    let c = client();
    let mut resp = c
        .get(proxy.url(&format!("/crm/v8/Leads?__fake=download&bytes={size}")))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        got += chunk.len() as u64;
        sha2::Digest::update(&mut hasher, &chunk);
    }
    assert_eq!(got, size, "all bytes arrived");
    let digest: String = sha2::Digest::finalize(hasher)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Hashing 200 MiB takes seconds in a debug build: off the runtime thread, so the client's
    // pooled connection still notices when the proxy closes it at the idle (header) timeout.
    let expected =
        tokio::task::spawn_blocking(move || zoho_auth_proxy::sandbox::download_sha256(size))
            .await
            .expect("digest task");
    assert_eq!(digest, expected, "download is byte-identical");

    let chunks = futures_util::stream::iter(
        (0..mib).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 1 << 20]))),
    );
    let resp = c
        .post(proxy.url("/crm/v8/Leads?__fake=upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["received"], size, "upload arrived whole");
    let (peak, _) = proxy.memory_kib();
    assert!(
        peak.saturating_sub(before) < 30 * 1024,
        "resident memory grew {} KiB (limit 30 MiB)",
        peak - before
    );
    let versions: Vec<String> = zoho
        .control()
        .crm_requests()
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(
        versions,
        [version, version],
        "both exchanges went over {version}"
    );
}

#[tokio::test]
async fn redirects_are_returned_unfollowed_and_the_other_host_sees_nothing() {
    let zoho = Zoho::start().await;
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let other = elsewhere.local_addr().expect("addr");
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW_LEADS, "")).await;
    let location = format!("http://{other}/steal");
    let resp = client()
        .get(proxy.url(&format!(
            "/crm/v8/Leads?__fake=redirect&status=302&location={location}"
        )))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 302, "the redirect reaches the client");
    assert_eq!(resp.headers()["location"], location.as_str());
    let accepted = tokio::time::timeout(Duration::from_millis(300), elsewhere.accept()).await;
    assert!(accepted.is_err(), "the redirect target got no connection");
    assert_eq!(
        zoho.control().crm_requests().len(),
        1,
        "one upstream request"
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_and_proxy_errors_are_marked() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(ALLOW_LEADS, "limits:\n  request_timeout: 1s\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    let c = client();
    let r = c
        .get(proxy.url("/crm/v8/Leads?__fake=status=500&html=1"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 500, "Zoho's 500 passes through");
    assert!(
        r.headers().get("x-zoho-proxy-error").is_none(),
        "not marked as ours"
    );
    let r = c
        .get(proxy.url("/crm/v8/Leads?__fake=hang"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 504, "an upstream that never answers gives 504");
    assert_eq!(r.headers()["x-zoho-proxy-error"], "PROXY_UPSTREAM_TIMEOUT");
    let v: serde_json::Value = r.json().await.expect("json body");
    assert_eq!(v["status"], "error");
}

/// Requests on one keep-alive connection share its deadline timer (crate::rt::timer): each request
/// still gets the whole `request_timeout` from its own send, not what is left of the previous
/// request's.
#[tokio::test]
async fn each_request_on_a_kept_alive_connection_gets_its_own_request_timeout() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(
        zoho.dir.path(),
        &zoho.config(ALLOW_LEADS, "limits:\n  request_timeout: 2s\n"),
    )
    .await;
    let c = client();
    // Most of the first request's 2 s go by before it is answered.
    let started = std::time::Instant::now();
    let r = c
        .get(proxy.url("/crm/v8/Leads?__fake=delay_ms=1500"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "answered within its 2 s");
    let _ = r.bytes().await.expect("body");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // The next one, on the same connection, never answered: cut 2 s after its own start.
    let started = std::time::Instant::now();
    let r = c
        .get(proxy.url("/crm/v8/Leads?__fake=hang"))
        .send()
        .await
        .expect("send");
    let waited = started.elapsed();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-zoho-proxy-error"], "PROXY_UPSTREAM_TIMEOUT");
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "timed out after {waited:?}: the deadline must count from this request's start"
    );
    let text = proxy.metrics_text().await;
    let open: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("zoho_proxy_open_connections{listener=\"proxy\"}"))
        .collect();
    assert_eq!(
        open,
        ["zoho_proxy_open_connections{listener=\"proxy\"} 1"],
        "both requests came over one client connection"
    );
}

#[tokio::test]
async fn unreachable_upstream_gives_502() {
    let zoho = Zoho::start().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let config = zoho
        .config(ALLOW_LEADS, "")
        .replace(&zoho.fake.api_url(), &format!("https://127.0.0.1:{port}"));
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    let r = client()
        .get(proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.headers()["x-zoho-proxy-error"],
        "PROXY_UPSTREAM_UNREACHABLE"
    );
}

#[tokio::test]
async fn token_endpoint_failures_give_503_quickly_with_few_token_calls() {
    for (name, behavior) in [
        ("invalid_code", TokenBehavior::Error("invalid_code".into())),
        ("html", TokenBehavior::Html(200)),
        ("500", TokenBehavior::Html(500)),
        ("hang", TokenBehavior::Hang),
    ] {
        let zoho = Zoho::start().await;
        zoho.control().set_token_behavior(behavior);
        let proxy = RunningProxy::spawn_with_env(
            zoho.dir.path(),
            &zoho.config(ALLOW_LEADS, "log:\n  level: trace\n"),
            &[],
        )
        .await;
        let started = std::time::Instant::now();
        let r = client()
            .get(proxy.url("/crm/v8/Leads"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 503, "{name}: no token means 503");
        assert!(
            r.headers().contains_key("retry-after"),
            "{name}: Retry-After"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name}: answered within 15 s"
        );
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["code"], "PROXY_TOKEN_UNAVAILABLE", "{name}");
        assert!(
            zoho.control().token_requests() <= 3,
            "{name}: a handful of token calls, got {}",
            zoho.control().token_requests()
        );
        assert!(
            zoho.control().crm_requests().is_empty(),
            "{name}: nothing forwarded without a token"
        );
        proxy.assert_no_secrets(&[]);
    }
}

#[tokio::test]
async fn invalid_client_names_the_accounts_host_and_the_data_center() {
    let zoho = Zoho::start().await;
    zoho.control()
        .set_token_behavior(TokenBehavior::Error("invalid_client".into()));
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW_LEADS, "")).await;
    let found = proxy
        .wait_for_output(Duration::from_secs(10), |t| t.contains("invalid_client"))
        .await;
    assert!(found, "invalid_client is logged");
    let logs = proxy.logs();
    assert!(
        logs.contains("127.0.0.1") && logs.contains("data center"),
        "names host and hints at data center: {logs}"
    );
    let status: serde_json::Value = proxy.status_json().await;
    let error = status["accounts"][0]["token"]["last_error"]
        .as_str()
        .unwrap_or("");
    assert!(error.contains("data center"), "status explains: {error}");
}

#[tokio::test]
async fn bad_configs_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        ("yaml", "listen: [\n  a\nallow: {\n", ""),
        ("unknown key", "listen: 127.0.0.1:0\nallowlst: []\n", "allowlst"),
        ("missing secret", "zoho:\n  client_id: a\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "client_secret"),
        ("bad url", "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\n  api_url: 'ht!tp://x'\nallow: [ZohoCRM.modules.leads.READ]\n", "api_url"),
        ("remote listen", "listen: 0.0.0.0:0\nzoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.modules.leads.READ]\n", "allow_remote_clients"),
    ];
    for (name, yaml, needle) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, yaml).expect("write");
        let out = std::process::Command::new(binary())
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{name}: exit code 2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{name}: message names `{needle}`: {stderr}"
        );
        assert!(
            stderr.lines().count() <= 2,
            "{name}: one clear message: {stderr}"
        );
    }
}

/// `upstream_protocol: auto` (the default): a request alone in flight on its worker goes over
/// HTTP/1.1, one that overlaps another goes over HTTP/2 (the fake offers both through ALPN);
/// `http2` keeps lone requests on HTTP/2 too.
#[tokio::test]
async fn auto_upstream_protocol_sends_lone_requests_over_http1_and_overlapping_ones_over_http2() {
    let zoho = Zoho::start().await;
    // One worker: both client connections land on the same worker, so the second request
    // really overlaps the first there.
    let proxy =
        RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW_LEADS, "workers: 1\n")).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready: {}",
        proxy.logs()
    );
    let version_of = |case: &str| {
        let needle = format!("case={case}");
        zoho.control()
            .crm_requests()
            .iter()
            .find(|r| r.path_and_query.contains(&needle))
            .map(|r| r.version.clone())
    };
    let c = client();
    for i in 0..3 {
        get_ok(
            &c,
            proxy.url(&format!("/crm/v8/Leads?case=seq{i}")),
            "sequential",
        )
        .await;
        assert_eq!(
            version_of(&format!("seq{i}")).as_deref(),
            Some("HTTP/1.1"),
            "a request alone in flight goes over HTTP/1.1"
        );
    }
    // A held request, then a second one while the first is still at Zoho.
    let slow = {
        let url = proxy.url("/crm/v8/Leads?__fake=delay_ms=3000&case=held");
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) })
    };
    assert!(
        poll_until(Duration::from_secs(10), || async {
            version_of("held").is_some()
        })
        .await,
        "the held request reached the fake"
    );
    get_ok(&c, proxy.url("/crm/v8/Leads?case=overlap"), "overlapping").await;
    assert_eq!(
        version_of("overlap").as_deref(),
        Some("HTTP/2.0"),
        "a request that overlaps another goes over HTTP/2"
    );
    assert_eq!(
        slow.await.expect("task").expect("held response"),
        200,
        "the held request completes"
    );
    assert_eq!(
        version_of("held").as_deref(),
        Some("HTTP/1.1"),
        "it started alone"
    );
    drop(proxy);

    let pinned = spawn_pinned_http2(&zoho, "", None).await;
    get_ok(&c, pinned.url("/crm/v8/Leads?case=pinned"), "pinned").await;
    assert_eq!(
        version_of("pinned").as_deref(),
        Some("HTTP/2.0"),
        "upstream_protocol: http2 sends lone requests over HTTP/2"
    );
}

#[tokio::test]
async fn an_api_server_without_http2_is_used_over_http1_even_when_http2_is_wanted() {
    // The API server answers ALPN with http/1.1 only; the proxy pins http2 and still works, both
    // for lone requests and for overlapping ones (which wait for the HTTP/2 dial, learn that the
    // server declined and go over HTTP/1.1).
    let zoho = Zoho::start_http1_only().await;
    let proxy = spawn_pinned_http2(&zoho, "workers: 1\n", None).await;
    let c = client();
    get_ok(&c, proxy.url("/crm/v8/Leads?case=first"), "first").await;
    let overlapping: Vec<_> = (0..6)
        .map(|i| {
            let (c, url) = (c.clone(), proxy.url(&format!("/crm/v8/Leads?case=o{i}")));
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for task in overlapping {
        assert_eq!(task.await.expect("task").expect("response"), 200);
    }
    get_ok(&c, proxy.url("/crm/v8/Leads?case=last"), "last").await;
    let requests = zoho.control().crm_requests();
    assert_eq!(
        requests.len(),
        8,
        "every request reached the API server once"
    );
    assert!(
        requests.iter().all(|r| r.version == "HTTP/1.1"),
        "all over HTTP/1.1: {:?}",
        requests.iter().map(|r| &r.version).collect::<Vec<_>>()
    );
}

/// The proxy in front of `zoho` (its API server replaced by `api_url` when given) with `extra`
/// config and `upstream_protocol: http2`, ready.
async fn spawn_pinned_http2(zoho: &Zoho, extra: &str, api_url: Option<String>) -> RunningProxy {
    let mut config = zoho
        .config(ALLOW_LEADS, extra)
        .replace("\nallow:\n", "\n  upstream_protocol: http2\nallow:\n");
    if let Some(api) = api_url {
        config = config.replace(&zoho.fake.api_url(), &api);
    }
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready: {}",
        proxy.logs()
    );
    proxy
}

/// Sends a GET and checks it succeeds.
async fn get_ok(c: &reqwest::Client, url: String, what: &str) {
    let status = c.get(url).send().await.expect("send").status();
    assert_eq!(status, 200, "{what} request");
}

/// An HTTP/2 API server that, like nginx after `keepalive_requests`, takes `every` requests on a
/// connection and then closes it with a GOAWAY: the streams the client opened beyond those are
/// refused unprocessed (`REFUSED_STREAM`). Counts the requests it answered.
async fn goaway_server(ca: &TestCa, every: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&["127.0.0.1"]));
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                // A second handle on the socket for a lingering close (as nginx does): after
                // h2 has finished and shut down its side, read what the client still sends until
                // it closes, so its late writes never meet a reset and it reads the GOAWAY.
                let Some((tcp, linger)) = tcp
                    .into_std()
                    .and_then(|s| Ok((s.try_clone()?, s)))
                    .ok()
                    .and_then(|(a, b)| {
                        Some((
                            tokio::net::TcpStream::from_std(a).ok()?,
                            tokio::net::TcpStream::from_std(b).ok()?,
                        ))
                    })
                else {
                    return;
                };
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                let mut taken = 0;
                while let Some(accepted) = conn.accept().await {
                    let (request, mut respond) = match accepted {
                        Ok(stream) => stream,
                        Err(e) => {
                            eprintln!("goaway server: {e}");
                            break;
                        }
                    };
                    if taken == every {
                        // Received before the GOAWAY went out, but beyond the limit.
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    taken += 1;
                    // The proxy's own daily reads (org, __apis) are not the clients' requests.
                    let own = request
                        .headers()
                        .get("user-agent")
                        .is_some_and(|ua| ua.as_bytes().starts_with(b"zoho-auth-proxy/"));
                    if !own {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    let response = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(())
                        .expect("response");
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(bytes::Bytes::from_static(b"{\"data\":[]}"), true);
                    }
                    if taken == every {
                        // GOAWAY; the streams taken are still answered.
                        conn.graceful_shutdown();
                    }
                }
                drop(conn);
                let mut linger = linger;
                let mut sink = [0u8; 4096];
                while matches!(
                    tokio::io::AsyncReadExt::read(&mut linger, &mut sink).await,
                    Ok(n) if n > 0
                ) {}
            });
        }
    });
    (addr, answered)
}

#[tokio::test]
async fn requests_the_api_server_refused_unprocessed_are_sent_again_on_a_new_connection() {
    let zoho = Zoho::start().await;
    let (api, answered) = goaway_server(&zoho.ca, 10).await;
    // 20 in flight at once need more than `auto`'s 10 slots before the edition is read.
    let extra = "workers: 1\nlog:\n  level: debug\nlimits:\n  upstream_concurrency: 25\n";
    let proxy = spawn_pinned_http2(&zoho, extra, Some(format!("https://{api}"))).await;
    let c = client();
    // 20 at a time on one upstream connection that takes 10: the other 10 are refused.
    for round in 0..5 {
        let batch: Vec<_> = (0..20)
            .map(|i| {
                let (c, url) = (
                    c.clone(),
                    proxy.url(&format!("/crm/v8/Leads?r={round}&i={i}")),
                );
                tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        for task in batch {
            assert_eq!(
                task.await.expect("task").expect("response"),
                200,
                "round {round}: {}",
                proxy.logs()
            );
        }
    }
    assert_eq!(
        answered.load(Ordering::SeqCst),
        100,
        "each request was answered once"
    );
    assert!(
        proxy.logs().contains("sending it again"),
        "some requests were refused and sent again: {}",
        proxy.logs()
    );
}
