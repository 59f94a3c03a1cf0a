//! `zoho-auth-proxy authorize --config FILE --account NAME`: the browser authorization flow for
//! headless machines. Prints the authorize URL, serves the account's `redirect_uri` on loopback
//! until a valid callback arrives, exchanges the code (through the account's refresher, the only
//! token minter) and stores the refresh token in the account's file store.
//!
//! Must not run beside a proxy that serves the same account: both would write its store (the
//! proxy's admin listener usually holds the redirect port anyway, and then this command says so).

use crate::admin::oauth::{html_page, Callback, OAuthFlows, STATE_TTL};
use crate::config::{AccountConfig, ClientType, Config, StoreConfig};
use crate::token::{Command, Refresher, Secrets, TokenHandle};
use crate::web::body::{full, ProxyBody};
use bytes::Bytes;
use http::{Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The outcome of a callback, kept until its connection has closed.
type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

fn page(status: StatusCode, title: &str, message: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(html_page(title, message))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Runs the flow for account `name`; returns a message for the person.
pub async fn authorize_cli(config: &Config, name: &str) -> Result<String, String> {
    let (account, redirect) = callback_account(config, name)?;
    let port = redirect.port_or_known_default().unwrap_or(80);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for the callback (is the proxy running? then use its /oauth/start): {e}"))?;

    let cancel = CancellationToken::new();
    let (handle, refresher_task) = start_refresher(account, &cancel)?;

    let flows = Arc::new(OAuthFlows::default());
    let url = flows.start(account)?;
    println!(
        "Open this URL in a browser and approve the access (valid for 10 minutes):\n\n  {url}\n"
    );
    println!("Waiting for Zoho to redirect to {redirect} ...");

    let server = Arc::new(CallbackServer {
        flows,
        accounts: config.accounts.clone(),
        handle,
        path: redirect.path().to_string(),
    });
    let outcome = await_callback(&listener, server).await;
    cancel.cancel();
    let _ = refresher_task.await;
    outcome.map(|()| {
        format!("account `{name}` is authorized; the refresh token is in its token store")
    })
}

/// The account `name` and its redirect URI, if this command can authorize it: a server-based
/// client with an http loopback `redirect_uri` and a token store that outlives the command.
fn callback_account<'a>(
    config: &'a Config,
    name: &str,
) -> Result<(&'a AccountConfig, url::Url), String> {
    let account = config.account(name).ok_or_else(|| {
        format!(
            "unknown account `{name}`; known: {}",
            config
                .accounts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if account.client_type != ClientType::Server {
        return Err(format!(
            "account `{name}` is a self client; use `exchange --code` for self-client grant tokens"
        ));
    }
    let redirect = account
        .redirect_uri
        .clone()
        .ok_or("the account has no redirect_uri")?;
    let loopback = matches!(redirect.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(redirect.host(), Some(url::Host::Domain("localhost")));
    if redirect.scheme() != "http" || !loopback {
        return Err(format!(
            "redirect_uri {redirect} is not an http loopback address; register one like http://127.0.0.1:9901/oauth/callback for headless authorization"
        ));
    }
    if account.token.store == StoreConfig::Memory {
        return Err(format!(
            "account `{name}` keeps tokens in memory only; set token.store to a file so the refresh token survives this command"
        ));
    }
    Ok((account, redirect))
}

/// The account's token handle, and its refresher answering commands only (never minting on
/// its own) until `cancel`.
fn start_refresher(
    account: &AccountConfig,
    cancel: &CancellationToken,
) -> Result<(Arc<TokenHandle>, JoinHandle<()>), String> {
    // A one-off command: its token metrics are counted but never exposed.
    let metrics = crate::token::TokenMetrics::default();
    let secrets = Secrets {
        client_secret: account.client_secret.value.clone(),
        refresh_token: account.refresh_token.as_ref().map(|s| s.value.clone()),
    };
    let (handle, commands) = TokenHandle::new(
        &account.name,
        secrets,
        account.token.mint_budget,
        String::new(),
    );
    let refresher = Refresher::new(account, handle.clone(), commands, metrics)?;
    let task = tokio::spawn(refresher.run_commands_only(cancel.clone()));
    Ok((handle, task))
}

/// Serves callbacks until one has been answered (its outcome), the listener fails, or the
/// authorization expires.
async fn await_callback(listener: &TcpListener, server: Arc<CallbackServer>) -> Result<(), String> {
    let (done_tx, mut done_rx) = mpsc::channel::<Result<(), String>>(1);
    let serve = async {
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            tokio::spawn(serve_connection(stream, server.clone(), done_tx.clone()));
        }
        #[allow(unreachable_code)]
        Ok::<(), String>(())
    };
    tokio::select! {
        r = serve => r.and(Err("the callback listener stopped".to_string())),
        r = done_rx.recv() => r.unwrap_or_else(|| Err("no callback".into())),
        _ = tokio::time::sleep(STATE_TTL) => Err("no callback within 10 minutes".into()),
    }
}

/// Serves one browser connection.
async fn serve_connection(
    stream: TcpStream,
    server: Arc<CallbackServer>,
    done: mpsc::Sender<Result<(), String>>,
) {
    // The outcome is reported only after the connection has closed, i.e. after the
    // browser got its page: the process exits right after.
    let outcome: Outcome = Arc::default();
    let slot = outcome.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let server = server.clone();
        let slot = slot.clone();
        async move { Ok::<_, Infallible>(server.answer(req, &slot).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
    let result = outcome.lock().ok().and_then(|mut s| s.take());
    if let Some(result) = result {
        let _ = done.send(result).await;
    }
}

/// What the callback listener answers with: the pending flow, the accounts, the account's token
/// handle and the redirect path.
struct CallbackServer {
    flows: Arc<OAuthFlows>,
    accounts: Vec<AccountConfig>,
    handle: Arc<TokenHandle>,
    path: String,
}

impl CallbackServer {
    /// Answers one request: a valid callback's code is exchanged (its outcome goes to `slot`);
    /// anything else gets a page saying why not.
    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
        slot: &Outcome,
    ) -> Response<ProxyBody> {
        if req.uri().path() != self.path {
            return page(
                StatusCode::NOT_FOUND,
                "Not found",
                "waiting for the OAuth callback",
            );
        }
        if req.method() != http::Method::GET {
            return page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "the callback answers GET only",
            );
        }
        let callback = match self
            .flows
            .callback(req.uri().query().unwrap_or(""), &self.accounts)
        {
            Ok(c) => c,
            Err(e) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Authorization refused",
                    &e.to_string(),
                )
            }
        };
        let result = self.exchange(callback).await;
        let mut response = match &result {
            Ok(()) => page(
                StatusCode::OK,
                "Authorized",
                "The proxy stored the refresh token. You can close this window.",
            ),
            Err(e) => page(StatusCode::BAD_GATEWAY, "Authorization failed", e),
        };
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        if let Ok(mut s) = slot.lock() {
            *s = Some(result);
        }
        response
    }

    /// Hands the callback's code to the refresher and waits for its answer.
    async fn exchange(&self, callback: Callback) -> Result<(), String> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let cmd = Command::Authorize {
            code: callback.code,
            accounts_url: callback.accounts_url,
            reply,
        };
        match self.handle.command(cmd).await {
            Ok(()) => outcome
                .await
                .unwrap_or_else(|_| Err("the refresher stopped".into())),
            Err(e) => Err(e),
        }
    }
}
