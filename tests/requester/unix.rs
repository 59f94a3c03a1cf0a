//! Unix-socket listeners: the peer uid as a client identity, `unix.allowed_uids` (catalogue K45)
//! closing other peers before any HTTP is read, and abstract sockets (K46), which need it.

use crate::common::*;
use crate::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The uid this test runs as (the owner of a file it creates).
fn own_uid(dir: &std::path::Path) -> u32 {
    let marker = dir.join("uid-marker");
    std::fs::write(&marker, "x").expect("marker");
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&marker).expect("meta"))
}

/// Writes `request` on `s` and reads until the proxy closes (at most 10 s): every byte it sent.
async fn exchange(mut s: tokio::net::UnixStream, request: &str) -> Vec<u8> {
    // A peer closed at accept may reset the write; what matters is what comes back.
    let _ = s.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

/// One request over the socket file at `socket`.
async fn over_socket(socket: &std::path::Path, request: String) -> Answer {
    let s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    parse(&exchange(s, &request).await)
}

/// A config for `zoho` whose proxy listener is `listen` (a `unix:` address), plus `extra`.
fn unix_config(zoho: &Zoho, listen: &str, extra: &str) -> String {
    zoho.config(ALLOW, extra)
        .replacen("listen: 127.0.0.1:0\n", &format!("listen: {listen}\n"), 1)
}

#[tokio::test]
async fn a_unix_socket_peer_uid_identifies_a_client() {
    let zoho = Zoho::start().await;
    let uid = own_uid(zoho.dir.path());
    let socket = zoho.dir.path().join("proxy.sock");
    let config = zoho
        .config(
            ALLOW,
            &format!(
                "clients:\n  - name: local-app\n    unix_uid: {uid}\n    allow: [ZohoCRM.modules.leads.READ]\n  - name: someone-else\n    unix_uid: {}\n",
                uid + 1
            ),
        )
        .replacen("listen: 127.0.0.1:0\n", &format!("listen: unix:{}\n", socket.display()), 1);
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &config).await;
    // Any Host on a Unix socket (browsers cannot dial one), no key: identified by uid.
    let a = over_socket(
        &socket,
        format!("GET {LEADS} HTTP/1.1\r\nHost: anything\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(
        a.status, 200,
        "the peer uid identifies local-app: {}",
        a.body
    );
    let denied = over_socket(
        &socket,
        "GET /crm/v8/Contacts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(denied.status, 403, "local-app's narrower list applies");
    let browser = over_socket(&socket, format!("GET {LEADS} HTTP/1.1\r\nHost: localhost\r\nOrigin: http://x\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(
        browser.code(),
        "PROXY_BROWSER_REQUEST",
        "a relayed browser request is refused on the socket too"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"client="local-app""#),
        "counted as local-app:\n{metrics}"
    );
    drop(proxy);

    // With only another uid configured, the same peer is unauthenticated.
    let socket = zoho.dir.path().join("proxy2.sock");
    let other = zoho
        .config(
            ALLOW,
            &format!(
                "clients:\n  - name: someone-else\n    unix_uid: {}\n",
                uid + 1
            ),
        )
        .replacen(
            "listen: 127.0.0.1:0\n",
            &format!("listen: unix:{}\n", socket.display()),
            1,
        );
    let dir2 = tempfile::tempdir().expect("dir");
    let _proxy = RunningProxy::spawn_ready(dir2.path(), &other).await;
    let a = over_socket(
        &socket,
        format!("GET {LEADS} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (401, "PROXY_CLIENT_UNAUTHENTICATED"),
        "another uid: {}",
        a.body
    );
}

#[tokio::test]
async fn unix_allowed_uids_close_other_peers_unread_and_reload() {
    let zoho = Zoho::start().await;
    let fake = zoho.control();
    let uid = own_uid(zoho.dir.path());
    let socket = zoho.dir.path().join("proxy.sock");
    let listen = format!("unix:{}", socket.display());
    let only = |uids: String| {
        unix_config(
            &zoho,
            &listen,
            &format!("unix:\n  allowed_uids: [{uids}]\n"),
        )
    };
    // Only another uid may connect: this test's own connections are closed unread.
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &only(format!("{}", uid + 1))).await;
    fake.clear_crm_requests();
    let request = format!("GET {LEADS} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let s = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("the socket mode lets this uid connect");
    let answer = exchange(s, &request).await;
    assert!(
        answer.is_empty(),
        "a peer outside unix.allowed_uids gets no HTTP at all: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(fake.crm_requests().is_empty(), "nothing reached Zoho");
    let (count, metrics) = refusals(&proxy, "proxy", "peer").await;
    assert_eq!(count, 1.0, "the closed connection is counted:\n{metrics}");
    assert!(
        proxy.logs().contains("unix.allowed_uids") && proxy.logs().contains(&format!("uid={uid}")),
        "the refusal is logged with the peer's uid: {}",
        proxy.logs()
    );
    assert_eq!(
        proxy.status_json().await["access"]["unix_allowed_uids"],
        serde_json::json!([uid + 1]),
        "/status shows the list"
    );

    // A reload that lists this uid lets it in, without a restart.
    std::fs::write(&proxy.config_path, only(format!("{}, {uid}", uid + 1))).expect("rewrite");
    proxy.signal("HUP");
    let served = poll_until(Duration::from_secs(5), || async {
        over_socket(&socket, request.clone()).await.status == 200
    })
    .await;
    assert!(
        served,
        "a listed uid is served after the reload: {}",
        proxy.logs()
    );
    assert_eq!(fake.crm_requests().len(), 1, "and its request reached Zoho");
}

#[tokio::test]
async fn an_abstract_socket_needs_unix_allowed_uids() {
    use std::os::linux::net::SocketAddrExt;
    let zoho = Zoho::start().await;
    let uid = own_uid(zoho.dir.path());
    let name = format!(
        "zap-test-{}-{}",
        std::process::id(),
        zoho.dir.path().display().to_string().len()
    );
    let listen = format!("unix:@{name}");
    // Without a uid list: exit 2 naming the key, before binding anything.
    let path = zoho.dir.path().join("abstract.yaml");
    std::fs::write(&path, unix_config(&zoho, &listen, "")).expect("write");
    let out = run_to_exit(&path);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "exit 2: {text}");
    assert!(
        text.contains("listen") && text.contains("unix.allowed_uids"),
        "the error names the key and the fix: {text}"
    );

    // With this uid listed, the abstract socket serves it.
    let _proxy = RunningProxy::spawn_ready(
        zoho.dir.path(),
        &unix_config(&zoho, &listen, &format!("unix:\n  allowed_uids: [{uid}]\n")),
    )
    .await;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let s = std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect");
    s.set_nonblocking(true).expect("non-blocking");
    let s = tokio::net::UnixStream::from_std(s).expect("tokio");
    let answer = parse(
        &exchange(
            s,
            &format!("GET {LEADS} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await,
    );
    assert_eq!(
        answer.status, 200,
        "served over the abstract socket: {}",
        answer.body
    );
}
