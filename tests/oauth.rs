//! Server-based OAuth client (issue 9): accounts in two data centers authorized through the
//! browser flow, routing by `X-Zoho-Account` and by listener, per-account allowlists, refused
//! callbacks, unauthorized accounts, restarts, the headless `authorize` command, and one run of
//! the consent redirect in a real browser (headless Chromium).
//!
//! Two fake Zoho instances play two data centers: `us` (consent redirect says `location=us`) and
//! `eu` (`location=eu`); each reports its own URL as `accounts-server`, which the proxy accepts
//! because it is the account's configured `accounts_url`. The fakes' `api_domain` is a loopback
//! address, which the proxy never honours (only `https://*.zohoapis.*`), so every account sets
//! `api_url`. Real binary, real sockets, real TLS. The state expiry (10 minutes) is tested in
//! `src/oauth.rs` with an injected clock.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const READY: Duration = Duration::from_secs(20);

/// Two data centers sharing one test CA.
struct Dcs {
    us: Zoho,
    eu: FakeZoho,
}

impl Dcs {
    async fn start() -> Dcs {
        let us = Zoho::start_with(FakeZohoOptions {
            location: "us".into(),
            ..options()
        })
        .await;
        let eu_options = FakeZohoOptions {
            location: "eu".into(),
            refresh_tokens: Vec::new(),
            ..options()
        };
        let eu = FakeZoho::start(eu_options, &us.ca)
            .await
            .expect("eu fake starts");
        Dcs { us, eu }
    }

    fn dir(&self) -> &std::path::Path {
        self.us.dir.path()
    }

    /// One account entry. `dc` picks the fake; `kind` is `self` or `server`.
    fn account(&self, name: &str, kind: &str, dc: &str, allow: &str, extra: &str) -> String {
        let (accounts, api) = match dc {
            "eu" => (self.eu.accounts_url(), self.eu.api_url()),
            _ => (self.us.fake.accounts_url(), self.us.fake.api_url()),
        };
        let credentials = match kind {
            "self" => "    refresh_token: ${TEST_REFRESH_TOKEN}\n".to_string(),
            _ => "    client_type: server\n".to_string(),
        };
        format!(
            "  - name: {name}\n    data_center: {dc}\n    accounts_url: {accounts}\n    api_url: {api}\n    client_id: {CLIENT_ID}\n    \
             client_secret: ${{TEST_CLIENT_SECRET}}\n{credentials}    ca_file: {ca}\n    allow: [{allow}]\n{extra}",
            ca = self.us.ca_file.display()
        )
    }

    /// The four-account config of these tests: `own` (self client, us), `globex` (server, us),
    /// `initech` (server, eu, own listener), `hooli` (server, eu, never authorized).
    fn config(&self, admin: &str, redirect_uri: &str) -> String {
        let redirect = format!("    redirect_uri: {redirect_uri}\n");
        format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: {admin}\nrouting: header\nlimits:\n  token_wait: 1s\ntoken:\n  store: {store}\naccounts:\n{}{}{}{}",
            self.account("own", "self", "us", "ZohoCRM.modules.leads.READ", ""),
            self.account("globex", "server", "us", "ZohoCRM.modules.leads.ALL", &redirect),
            self.account("initech", "server", "eu", "ZohoCRM.modules.contacts.READ", &format!("{redirect}    listen: 127.0.0.1:0\n")),
            self.account("hooli", "server", "eu", "ZohoCRM.modules.leads.READ", &redirect),
            store = self.dir().join("token.json").display(),
        )
    }
}

/// A registered redirect URI nobody listens on: the tests deliver the callback to the admin
/// listener themselves (its port is only known once the proxy runs).
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

fn query_map(url: &str) -> HashMap<String, String> {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("`{url}` is a URL: {e}"));
    url.query_pairs().into_owned().collect()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a Location header on the {} answer", resp.status()))
        .to_string()
}

/// `/oauth/start` → 302 to the fake's consent page → 302 to the redirect URI. Returns the
/// callback query (not yet delivered) and checks both hops on the way.
async fn consent(
    proxy: &RunningProxy,
    tls: &reqwest::Client,
    account: &str,
    accounts_url: &str,
    dc: &str,
) -> String {
    let start = client()
        .get(proxy.admin_url(&format!("/oauth/start?account={account}")))
        .send()
        .await
        .expect("GET /oauth/start");
    assert_eq!(
        start.status(),
        302,
        "/oauth/start?account={account} redirects to Zoho"
    );
    let authorize = location(&start);
    assert!(
        authorize.starts_with(&format!("{accounts_url}/oauth/v2/auth?")),
        "{account}: redirect to its accounts server: {authorize}"
    );
    let q = query_map(&authorize);
    for (key, want) in [
        ("client_id", CLIENT_ID),
        ("response_type", "code"),
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("redirect_uri", REDIRECT),
    ] {
        assert_eq!(
            q.get(key).map(String::as_str),
            Some(want),
            "{account}: authorize parameter {key}"
        );
    }
    assert!(
        q.get("scope").is_some_and(|s| s.starts_with("ZohoCRM.")),
        "{account}: scope requested: {q:?}"
    );
    assert!(
        q.get("state").is_some_and(|s| s.len() >= 32),
        "{account}: a long random state: {q:?}"
    );

    let consent = tls
        .get(&authorize)
        .send()
        .await
        .expect("GET the consent page");
    assert_eq!(
        consent.status(),
        302,
        "the fake consent page approves with a redirect"
    );
    let callback = location(&consent);
    assert!(
        callback.starts_with(&format!("{REDIRECT}?")),
        "{account}: back to the registered redirect_uri: {callback}"
    );
    let c = query_map(&callback);
    assert_eq!(
        c.get("state"),
        q.get("state"),
        "{account}: the state comes back unchanged"
    );
    assert_eq!(
        c.get("location").map(String::as_str),
        Some(dc),
        "{account}: Zoho reports the data center"
    );
    assert_eq!(
        c.get("accounts-server").map(String::as_str),
        Some(accounts_url),
        "{account}: and its accounts server"
    );
    assert!(
        c.get("code").is_some_and(|code| !code.is_empty()),
        "{account}: a code"
    );
    callback
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default()
}

/// Delivers a callback query to the admin listener; returns status and page.
async fn deliver(proxy: &RunningProxy, query: &str) -> (u16, String) {
    let resp = client()
        .get(proxy.admin_url(&format!("/oauth/callback?{query}")))
        .send()
        .await
        .expect("GET /oauth/callback");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        ct.starts_with("text/html"),
        "the callback answers with an HTML page, got {ct}"
    );
    (status, resp.text().await.expect("page"))
}

async fn authorize(
    proxy: &RunningProxy,
    tls: &reqwest::Client,
    account: &str,
    accounts_url: &str,
    dc: &str,
) {
    let query = consent(proxy, tls, account, accounts_url, dc).await;
    let (status, page) = deliver(proxy, &query).await;
    assert_eq!(
        status,
        200,
        "{account}: callback accepted: {page}\n{}",
        proxy.logs()
    );
    assert!(
        page.contains("<h1>Authorized</h1>") && page.contains(account),
        "{account}: the Authorized page names the account: {page}"
    );
}

/// The token in the one request `control` recorded since it was cleared.
fn forwarded_token(control: &FakeControl, what: &str) -> String {
    let seen = control.crm_requests();
    assert_eq!(
        seen.len(),
        1,
        "{what}: exactly one request reached this data center"
    );
    let r = &seen[0];
    assert_eq!(
        r.header_count("authorization"),
        1,
        "{what}: one Authorization header"
    );
    assert_eq!(
        r.header_count("x-zoho-account"),
        0,
        "{what}: X-Zoho-Account is not forwarded"
    );
    let auth = r
        .header_str("authorization")
        .expect("authorization is text");
    let token = auth
        .strip_prefix("Zoho-oauthtoken ")
        .unwrap_or_else(|| panic!("{what}: Zoho-oauthtoken scheme: {auth}"));
    assert!(
        control.is_live(token),
        "{what}: the token is live at this data center"
    );
    control.clear_crm_requests();
    token.to_string()
}

fn live(control: &FakeControl) -> HashSet<String> {
    control.live_tokens().into_iter().collect()
}

/// Sends `GET path` with an optional account header to `base`; returns status and JSON body.
async fn get(
    base: std::net::SocketAddr,
    path: &str,
    account: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = client().get(format!("http://{base}{path}"));
    if let Some(a) = account {
        req = req.header("X-Zoho-Account", a);
    }
    let resp = req.send().await.expect("request through the proxy");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// (what, listener, X-Zoho-Account, path, data center, tokens of the account)
type RouteCase<'a> = (
    &'a str,
    std::net::SocketAddr,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a HashSet<String>,
);

const LEADS: &str = "/crm/v8/Leads?__fake=echo";
const CONTACTS: &str = "/crm/v8/Contacts?__fake=echo";

#[tokio::test]
async fn two_data_centers_authorized_in_the_browser_are_served_by_header_and_by_listener() {
    let dcs = Dcs::start().await;
    let (us, eu) = (dcs.us.control(), dcs.eu.control());
    let proxy = RunningProxy::spawn(dcs.dir(), &dcs.config("127.0.0.1:0", REDIRECT)).await;
    let tls = tls_client(&dcs.us.ca);
    let main = proxy.proxy;
    let initech_listener = proxy.listening("account:initech").await;

    // The self client is ready on its own; the server accounts wait for a person.
    assert!(
        proxy.wait_ready(READY).await,
        "ready with the self client alone: {}",
        proxy.logs()
    );
    let ready: serde_json::Value = client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    let waiting: Vec<&str> = ready["awaiting_authorization"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        waiting,
        ["globex", "initech", "hooli"],
        "/readyz lists the accounts awaiting authorization"
    );
    let one = client()
        .get(proxy.admin_url("/readyz?account=globex"))
        .send()
        .await
        .expect("readyz?account");
    assert_eq!(
        one.status(),
        503,
        "an unauthorized account is not ready on its own"
    );
    assert!(
        one.text()
            .await
            .unwrap_or_default()
            .contains("/oauth/start?account=globex"),
        "its readiness says how to authorize it"
    );
    let own_tokens = live(us);
    assert_eq!(own_tokens.len(), 1, "one token minted for the self client");

    // Before authorization: 503 with instructions, nothing reaches Zoho.
    let (status, body) = get(main, LEADS, Some("globex")).await;
    assert_eq!(status, 503, "unauthorized account → 503: {body}");
    assert_eq!(
        body["code"], "PROXY_ACCOUNT_NOT_AUTHORIZED",
        "stable code: {body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/oauth/start?account=globex") && message.contains("authorize --config"),
        "instructions: {message}"
    );
    assert!(
        us.crm_requests().is_empty(),
        "no request forwarded for an unauthorized account"
    );

    // Authorize globex (us) and initech (eu) through the flow.
    authorize(&proxy, &tls, "globex", &dcs.us.fake.accounts_url(), "us").await;
    let globex_tokens: HashSet<String> = live(us).difference(&own_tokens).cloned().collect();
    assert_eq!(
        globex_tokens.len(),
        1,
        "the code exchange minted one token for globex at us"
    );
    assert_eq!(
        eu.token_requests(),
        0,
        "nothing asked the eu data center yet"
    );
    authorize(&proxy, &tls, "initech", &dcs.eu.accounts_url(), "eu").await;
    let initech_tokens = live(eu);
    assert_eq!(
        initech_tokens.len(),
        1,
        "the code exchange minted one token for initech at eu"
    );
    let exchange = eu
        .accounts_requests()
        .into_iter()
        .find(|r| r.path_and_query.starts_with("/oauth/v2/token"))
        .expect("a token request at eu");
    let form = String::from_utf8_lossy(&exchange.body_prefix).to_string();
    assert!(
        form.contains("grant_type=authorization_code"),
        "code grant: {form}"
    );
    assert!(
        form.contains(&format!(
            "redirect_uri={}",
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
        )),
        "the registered redirect_uri is sent: {form}"
    );

    // Routing by header (main listener) and by listener reach the right DC with the right token.
    us.clear_crm_requests();
    eu.clear_crm_requests();
    let cases: &[RouteCase<'_>] = &[
        ("own by header", main, Some("own"), LEADS, "us", &own_tokens),
        (
            "globex by header",
            main,
            Some("globex"),
            LEADS,
            "us",
            &globex_tokens,
        ),
        (
            "initech by header",
            main,
            Some("initech"),
            CONTACTS,
            "eu",
            &initech_tokens,
        ),
        (
            "initech by its listener",
            initech_listener,
            None,
            CONTACTS,
            "eu",
            &initech_tokens,
        ),
        (
            "initech listener ignores a header naming another account",
            initech_listener,
            Some("globex"),
            CONTACTS,
            "eu",
            &initech_tokens,
        ),
    ];
    for (what, base, header, path, dc, tokens) in cases {
        let (status, body) = get(*base, path, *header).await;
        assert_eq!(status, 200, "{what}: 200: {body}");
        let (right, wrong) = if *dc == "us" { (us, eu) } else { (eu, us) };
        assert!(
            wrong.crm_requests().is_empty(),
            "{what}: nothing reached the other data center"
        );
        let token = forwarded_token(right, what);
        assert!(
            tokens.contains(&token),
            "{what}: the account's own token was injected"
        );
    }

    // Each account has its own allowlist.
    for (what, base, header, path) in [
        (
            "globex may not read contacts",
            main,
            Some("globex"),
            CONTACTS,
        ),
        ("initech may not read leads", initech_listener, None, LEADS),
        (
            "own may not write leads",
            main,
            Some("own"),
            "/crm/v8/Leads/1?__fake=echo",
        ),
    ] {
        let resp = client().request(
            if path.contains("/1?") {
                reqwest::Method::DELETE
            } else {
                reqwest::Method::GET
            },
            format!("http://{base}{path}"),
        );
        let resp = match header {
            Some(h) => resp.header("X-Zoho-Account", h),
            None => resp,
        };
        let resp = resp.send().await.expect("send");
        assert_eq!(resp.status(), 403, "{what}");
    }
    assert!(
        us.crm_requests().is_empty() && eu.crm_requests().is_empty(),
        "denied requests never reach Zoho"
    );

    // Unknown, missing and repeated account headers → 400 naming the known accounts.
    let (status, body) = get(main, LEADS, Some("umbrella")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("PROXY_UNKNOWN_ACCOUNT")),
        "unknown account: {body}"
    );
    assert_eq!(
        body["details"]["known_accounts"],
        serde_json::json!(["own", "globex", "initech", "hooli"]),
        "known accounts listed: {body}"
    );
    let (status, body) = get(main, LEADS, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("PROXY_ACCOUNT_REQUIRED")),
        "no header with header routing: {body}"
    );
    let twice = client()
        .get(format!("http://{main}{LEADS}"))
        .header("X-Zoho-Account", "own")
        .header("X-Zoho-Account", "globex")
        .send()
        .await
        .expect("send");
    assert_eq!(twice.status(), 400, "two account headers are ambiguous");
    let (status, body) = get(main, LEADS, Some("hooli")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("PROXY_ACCOUNT_NOT_AUTHORIZED")),
        "hooli is still unauthorized: {body}"
    );
    assert!(
        us.crm_requests().is_empty() && eu.crm_requests().is_empty(),
        "refused requests never reach Zoho"
    );

    // Self-client still on its first token; no extra mints anywhere.
    assert_eq!(
        us.token_requests(),
        2,
        "us: one refresh for own, one code exchange for globex"
    );
    assert_eq!(eu.token_requests(), 1, "eu: one code exchange for initech");

    // Readiness, status and metrics per account.
    let one = client()
        .get(proxy.admin_url("/readyz?account=initech"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(one.status(), 200, "initech is ready once authorized");
    let ready: serde_json::Value = client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready["awaiting_authorization"],
        serde_json::json!(["hooli"]),
        "only hooli still waits: {ready}"
    );
    let status: serde_json::Value = proxy.status_json().await;
    let entries: HashMap<String, serde_json::Value> = status["accounts"]
        .as_array()
        .expect("accounts in /status")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_string(),
                a.clone(),
            )
        })
        .collect();
    for (name, client_type, ready, dc) in [
        ("own", "self", true, "us"),
        ("globex", "server", true, "us"),
        ("initech", "server", true, "eu"),
        ("hooli", "server", false, "eu"),
    ] {
        let e = &entries[name];
        assert_eq!(e["client_type"], client_type, "/status {name}: client type");
        assert_eq!(e["ready"], ready, "/status {name}: ready");
        assert_eq!(e["data_center"], dc, "/status {name}: data center");
    }
    assert_eq!(
        entries["hooli"]["token"]["state"], "not_authorized",
        "/status shows hooli as not authorized"
    );
    assert!(
        entries["hooli"]["authorize"]
            .as_str()
            .is_some_and(|u| u.ends_with("/oauth/start?account=hooli")),
        "/status links the authorization"
    );
    assert_eq!(
        entries["initech"]["listen"].as_str(),
        Some("127.0.0.1:0"),
        "/status shows initech's configured listener"
    );
    assert!(
        entries["globex"]["listen"].is_null(),
        "/status: globex has no listener of its own"
    );
    let metrics = proxy.metrics_text().await;
    for line in [
        r#"zoho_proxy_token_ready{account="globex"} 1"#,
        r#"zoho_proxy_token_ready{account="initech"} 1"#,
        r#"zoho_proxy_token_ready{account="hooli"} 0"#,
        r#"zoho_proxy_requests_total{account="initech",client="(anonymous)",method="GET",decision="allowed",status_class="2xx"} 3"#,
        r#"zoho_proxy_requests_total{account="hooli",client="(anonymous)",method="GET",decision="allowed",status_class="5xx"} 1"#,
    ] {
        assert!(
            metrics.contains(line),
            "metrics line `{line}` in:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains(r#"account="own",method="GET",decision="invalid""#),
        "bad headers are not counted as the first account's traffic"
    );

    let mut all: Vec<String> = us.live_tokens();
    all.extend(eu.live_tokens());
    all.extend(us.issued_auth_codes());
    all.extend(eu.issued_auth_codes());
    proxy.assert_no_secrets(&all);
}

#[tokio::test]
async fn forged_reused_and_foreign_callbacks_are_refused_without_sending_the_secret() {
    let dcs = Dcs::start().await;
    let (us, eu) = (dcs.us.control(), dcs.eu.control());
    let proxy = RunningProxy::spawn(dcs.dir(), &dcs.config("127.0.0.1:0", REDIRECT)).await;
    let tls = tls_client(&dcs.us.ca);
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    let before = us.token_requests();

    // Forged: a state this proxy never issued.
    let (status, page) = deliver(
        &proxy,
        "state=0123456789abcdef0123456789abcdef&code=1000.x&location=us",
    )
    .await;
    assert_eq!(status, 400, "forged state → 400: {page}");
    assert!(
        page.contains("start again from /oauth/start"),
        "the page says what to do: {page}"
    );
    let (status, _) = deliver(&proxy, "code=1000.x").await;
    assert_eq!(status, 400, "missing state → 400");

    // A HEAD (link scanner) neither consumes the state nor spends the code.
    let query = consent(&proxy, &tls, "globex", &dcs.us.fake.accounts_url(), "us").await;
    let head = client()
        .head(proxy.admin_url(&format!("/oauth/callback?{query}")))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 405, "HEAD on the callback is refused");
    assert_eq!(
        us.token_requests(),
        before,
        "the refused callbacks sent no token request"
    );

    // Reused: the first delivery works, a replay of the same URL is refused.
    let (status, page) = deliver(&proxy, &query).await;
    assert_eq!(status, 200, "first delivery accepted: {page}");
    assert_eq!(us.token_requests(), before + 1, "one code exchange");
    let (status, page) = deliver(&proxy, &query).await;
    assert_eq!(status, 400, "reused state → 400: {page}");
    assert_eq!(
        us.token_requests(),
        before + 1,
        "the replay sent no token request"
    );

    // Foreign accounts server: a valid state and code, but `accounts-server` names another host
    // (the eu fake, which the proxy's CA would even trust). The secret must not go there.
    let query = consent(&proxy, &tls, "globex", &dcs.us.fake.accounts_url(), "us").await;
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    for (k, v) in &mut params {
        if k == "accounts-server" {
            *v = dcs.eu.accounts_url();
        }
    }
    let forged: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let (status, page) = deliver(&proxy, &forged).await;
    assert_eq!(status, 400, "foreign accounts-server → 400: {page}");
    assert!(
        page.contains("not a Zoho accounts server"),
        "the page explains: {page}"
    );
    assert!(
        eu.accounts_requests().is_empty(),
        "nothing at all was sent to the foreign accounts server"
    );
    assert_eq!(
        us.token_requests(),
        before + 1,
        "and nothing to the configured one either"
    );
    let (status, _) = deliver(&proxy, &query).await;
    assert_eq!(
        status, 400,
        "the state was consumed by the refused callback"
    );

    // Zoho's own refusal (the person clicked Deny) is reported.
    let start = client()
        .get(proxy.admin_url("/oauth/start?account=initech"))
        .send()
        .await
        .expect("start");
    let state = query_map(&location(&start)).remove("state").expect("state");
    let (status, page) = deliver(&proxy, &format!("state={state}&error=access_denied")).await;
    assert_eq!(status, 400, "denied → 400: {page}");
    assert!(
        page.contains("access_denied"),
        "the page says Zoho refused: {page}"
    );

    // Start refuses unknown and self-client accounts.
    let unknown = client()
        .get(proxy.admin_url("/oauth/start?account=nope"))
        .send()
        .await
        .expect("start");
    assert_eq!(unknown.status(), 400, "unknown account");
    assert!(
        unknown.text().await.unwrap_or_default().contains("globex"),
        "the page lists the accounts"
    );
    let own = client()
        .get(proxy.admin_url("/oauth/start?account=own"))
        .send()
        .await
        .expect("start");
    assert_eq!(own.status(), 400, "a self client has no browser flow");
    proxy.assert_no_secrets(&us.issued_auth_codes());
}

#[tokio::test]
async fn an_authorization_survives_a_restart_and_refreshes_at_its_own_data_center() {
    let dcs = Dcs::start().await;
    let (us, eu) = (dcs.us.control(), dcs.eu.control());
    let config = dcs.config("127.0.0.1:0", REDIRECT);
    let mut proxy = RunningProxy::spawn(dcs.dir(), &config).await;
    let tls = tls_client(&dcs.us.ca);
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    authorize(&proxy, &tls, "initech", &dcs.eu.accounts_url(), "eu").await;
    let store = dcs.dir().join("token.initech.json");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&store).expect("initech's store exists"))
            .expect("store is JSON");
    assert_eq!(
        stored["accounts_url"].as_str(),
        Some(dcs.eu.accounts_url().as_str()),
        "the store remembers the authorizing accounts server"
    );
    assert!(
        stored["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "the store holds the refresh token"
    );
    let token = live(eu).into_iter().next().expect("initech's token");

    proxy.signal("TERM");
    assert!(
        proxy
            .wait_exit(Duration::from_secs(30))
            .await
            .is_some_and(|s| s.success()),
        "clean exit"
    );
    let (us_before, eu_before) = (us.token_requests(), eu.token_requests());
    let proxy = RunningProxy::spawn(dcs.dir(), &config).await;
    let initech = proxy.listening("account:initech").await;
    let ready = poll_until(READY, || async {
        client()
            .get(proxy.admin_url("/readyz?account=initech"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "initech is ready after a restart: {}", proxy.logs());
    assert_eq!(
        eu.token_requests(),
        eu_before,
        "the stored access token was reused: no token request at eu"
    );
    assert_eq!(
        us.token_requests(),
        us_before,
        "and the self client reused its stored token too"
    );
    eu.clear_crm_requests();
    let (status, body) = get(initech, CONTACTS, None).await;
    assert_eq!(status, 200, "initech serves after the restart: {body}");
    assert_eq!(
        forwarded_token(eu, "after restart"),
        token,
        "with the stored token"
    );

    // The access token dies: the proxy refreshes with the stored refresh token at eu, then replays.
    eu.revoke_all_access_tokens();
    let (status, body) = get(initech, CONTACTS, None).await;
    assert_eq!(
        status,
        200,
        "the request succeeds after a reactive refresh: {body}\n{}",
        proxy.logs()
    );
    assert_eq!(
        eu.token_requests(),
        eu_before + 1,
        "one refresh, at the eu accounts server"
    );
    assert_eq!(
        us.token_requests(),
        us_before,
        "nothing asked the us accounts server"
    );
    let seen = eu.crm_requests();
    assert_eq!(seen.len(), 2, "the rejected request and its replay");
    let fresh = seen[1]
        .header_str("authorization")
        .and_then(|a| a.strip_prefix("Zoho-oauthtoken "))
        .unwrap_or_default();
    assert!(
        eu.is_live(fresh) && fresh != token,
        "the replay carries the new token"
    );
    let (status, body) = get(proxy.proxy, LEADS, Some("hooli")).await;
    assert_eq!(
        status, 503,
        "hooli is still unauthorized after the restart: {body}"
    );

    // The person removes the app in Zoho (refresh token revoked): initech needs authorization
    // again, requests say how, and a new pass through the flow restores service.
    let revoked = stored["refresh_token"]
        .as_str()
        .expect("stored refresh token")
        .to_string();
    eu.revoke_refresh_token(&revoked);
    let (status, _) = get(initech, CONTACTS, None).await;
    assert_eq!(
        status, 401,
        "the request that finds the token dead gets Zoho's 401 (the refresh failed)"
    );
    let last = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let told = poll_until(READY, || {
        let last = last.clone();
        async move {
            let (status, body) = get(initech, CONTACTS, None).await;
            let told = status == 503 && body["code"] == "PROXY_ACCOUNT_NOT_AUTHORIZED";
            *last.lock().expect("lock") = body;
            told
        }
    })
    .await;
    assert!(
        told,
        "a revoked account answers 503 with authorization instructions: {:?}",
        last.lock().map(|l| l.to_string())
    );
    let ready: serde_json::Value = client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready["awaiting_authorization"],
        serde_json::json!(["globex", "initech", "hooli"]),
        "initech awaits authorization again: {ready}"
    );
    authorize(&proxy, &tls, "initech", &dcs.eu.accounts_url(), "eu").await;
    eu.clear_crm_requests();
    let (status, body) = get(initech, CONTACTS, None).await;
    assert_eq!(
        status, 200,
        "initech serves again after re-authorization: {body}"
    );
    forwarded_token(eu, "after re-authorization");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&store).expect("store")).expect("JSON");
    assert!(
        stored["refresh_token"]
            .as_str()
            .is_some_and(|t| t != revoked),
        "the store holds the new refresh token"
    );
    proxy.assert_no_secrets(&eu.live_tokens());
}

#[tokio::test]
async fn the_authorize_command_stores_the_refresh_token_for_a_headless_machine() {
    use tokio::io::AsyncBufReadExt;
    let dcs = Dcs::start().await;
    let eu = dcs.eu.control();
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/oauth/callback");
    let config_path = dcs.dir().join("proxy.yaml");
    std::fs::write(&config_path, dcs.config("127.0.0.1:0", &redirect)).expect("write config");

    let mut cli = tokio::process::Command::new(binary())
        .args(["authorize", "--config"])
        .arg(&config_path)
        .args(["--account", "initech"])
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn authorize");
    let mut lines = tokio::io::BufReader::new(cli.stdout.take().expect("stdout")).lines();
    let mut printed = String::new();
    let url = tokio::time::timeout(READY, async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("https://")) {
                return Some(url.to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("authorize printed no URL:\n{printed}"));
    assert!(
        url.starts_with(&format!("{}/oauth/v2/auth?", dcs.eu.accounts_url())),
        "the URL goes to initech's accounts server: {url}"
    );

    let consent = tls_client(&dcs.us.ca)
        .get(&url)
        .send()
        .await
        .expect("consent page");
    let callback = location(&consent);
    assert!(
        callback.starts_with(&redirect),
        "back to the loopback redirect_uri: {callback}"
    );
    let forged = client()
        .get(format!("{redirect}?state=feed&code=x"))
        .send()
        .await
        .expect("forged callback");
    assert_eq!(
        forged.status(),
        400,
        "the command refuses a forged state and keeps waiting"
    );
    let page = client().get(&callback).send().await.expect("callback");
    assert_eq!(page.status(), 200, "the callback is accepted");
    assert!(
        page.text()
            .await
            .unwrap_or_default()
            .contains("<h1>Authorized</h1>"),
        "the browser gets the Authorized page"
    );
    let status = tokio::time::timeout(READY, cli.wait())
        .await
        .expect("authorize exits")
        .expect("exit status");
    let rest = tokio::time::timeout(READY, async {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
        }
        rest
    })
    .await
    .unwrap_or_default();
    assert!(status.success(), "authorize exits 0: {printed}{rest}");
    assert!(
        rest.contains("initech") && rest.contains("authorized"),
        "it says so: {rest}"
    );
    assert_eq!(eu.token_requests(), 1, "one code exchange, no extra mint");

    // The proxy started afterwards serves initech without any further authorization.
    let proxy = RunningProxy::spawn_file(&config_path, &[]).await;
    let ready = poll_until(READY, || async {
        client()
            .get(proxy.admin_url("/readyz?account=initech"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(
        ready,
        "initech ready from the stored authorization: {}",
        proxy.logs()
    );
    let (status, body) = get(proxy.listening("account:initech").await, CONTACTS, None).await;
    assert_eq!(status, 200, "initech serves: {body}");
    assert_eq!(
        eu.token_requests(),
        1,
        "the proxy reused the stored access token"
    );
    proxy.assert_no_secrets(&eu.live_tokens());
}

/// A loopback port that was free a moment ago (for addresses that must be known before start:
/// the registered redirect URI).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn headless_chromium_completes_the_consent_redirect() {
    let Some(browser) = chromium() else {
        eprintln!("\n*** SKIPPED headless_chromium_completes_the_consent_redirect: no chromium in PATH (apt-get install chromium chromium-driver) ***\n");
        return;
    };
    let dcs = Dcs::start().await;
    let us = dcs.us.control();
    // The browser really follows the redirect to the registered URI, so it must be the admin
    // listener's real address.
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let config = dcs.config(&admin, &format!("http://{admin}/oauth/callback"));
    let proxy = RunningProxy::spawn(dcs.dir(), &config).await;
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    let profile = tempfile::tempdir().expect("fresh browser profile");
    let before = live(us);

    let output = chromium_dump_dom(
        &browser,
        profile.path(),
        &["--disable-quic", "--ignore-certificate-errors"],
        &format!("http://{admin}/oauth/start?account=globex"),
    )
    .await;
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("<h1>Authorized</h1>") && dom.contains("globex"),
        "the browser ends on the proxy's Authorized page; DOM:\n{dom}\nstderr:\n{}\nproxy:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.logs()
    );

    let minted: HashSet<String> = live(us).difference(&before).cloned().collect();
    assert_eq!(minted.len(), 1, "the code exchange minted globex's token");
    us.clear_crm_requests();
    let (status, body) = get(proxy.proxy, LEADS, Some("globex")).await;
    assert_eq!(status, 200, "globex serves after the browser flow: {body}");
    assert!(
        minted.contains(&forwarded_token(us, "globex after chromium")),
        "with globex's token"
    );
    proxy.assert_no_secrets(&us.live_tokens());
}
