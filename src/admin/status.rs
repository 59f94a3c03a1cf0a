//! `/status`: every account's token state, policy and observed scopes, the credits and the
//! upstream concurrency limit in force, and the metadata cache's hits, misses and credits saved
//! per account, as JSON (never a token or secret).

use super::{json_response, Admin};
use crate::token::TokenState;
use crate::web::body::ProxyBody;
use http::{Response, StatusCode};
use serde_json::json;

impl Admin {
    pub(super) fn status(&self) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load();
        let now = crate::util::clock::now_unix_ms();
        let observed = &self.state.observed;
        let accounts: Vec<_> = runtime
            .accounts
            .iter()
            .map(|a| {
                let status = a.token.status();
                let config = runtime.config.account(&a.name);
                let authorize = (status.state == TokenState::NotAuthorized)
                    .then(|| config.map(|c| c.authorize_start_url(&self.state.admin_listen)))
                    .flatten();
                json!({
                    "name": &*a.name,
                    "client_type": a.client_type,
                    "listen": config.and_then(|c| c.listen.as_ref()).map(|l| l.to_string()),
                    "data_center": config.map(|c| c.data_center.code()),
                    "api_host": status.api_host,
                    "ready": a.token.ready().is_ok(),
                    "authorize": authorize,
                    "token": {
                        "state": status.state,
                        "expires_in_s": a.token.seconds_left().floor(),
                        "last_refresh_unix_ms": status.last_refresh_unix_ms,
                        "last_refresh_ago_s": status.last_refresh_unix_ms.map(|t| now.saturating_sub(t) / 1000),
                        "last_error": status.last_error,
                        "next_attempt_in_s": status.next_attempt_unix_ms.map(|t| t.saturating_sub(now).div_ceil(1000)),
                        "mint_budget_left": status.mint_budget_left,
                        "mint_budget": status.mint_budget,
                        "store_error": status.store_error,
                    },
                    "policy": a.policy.summary(),
                    "organizations": crate::config::describe::organizations_text(a.policy.organizations()),
                    "observed_scopes": observed.scopes(&a.name).into_iter().map(|o| o.scope).collect::<Vec<_>>(),
                    "observed_outcomes": observed.scopes(&a.name),
                    "suggested_allow": observed.suggested_allow(&a.name),
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.started.elapsed().as_secs(),
                "listen": runtime.config.listen.to_string(),
                "routing": runtime.config.routing,
                "access": runtime.config.access.describe(),
                "credits": runtime.credits.status_json(),
                "cache": runtime.caches.status_json(),
                "concurrency": super::concurrency::status_json(&runtime),
                "products": crate::policy::PRODUCTS.iter().map(|p| json!({
                    "name": p.name,
                    "root": p.root(),
                    "operations": p.operations().map_or_else(|| json!("built-in CRM table"), |n| json!(n)),
                })).collect::<Vec<_>>(),
                "organizations": runtime.quotas.snapshot(),
                "accounts": accounts,
            }),
        )
    }
}
