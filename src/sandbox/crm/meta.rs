//! The fake CRM's answers to the proxy's own reads: `GET /crm/{v}/org` with an edition tests set
//! (`license_details.paid_type`, and `trial_type`), and `GET /crm/{v}/__apis` with the credit
//! costs tests set (CREDITS.md §6's shape). A scope a test takes away from the token
//! ([`FakeControl::deny_scope`](crate::sandbox::FakeControl::deny_scope)) makes the call that
//! needs it answer `401 OAUTH_SCOPE_MISMATCH`, as Zoho does.
//!
//! Must not: charge, count or record anything (the CRM server around it does).

use serde_json::{json, Value};

use super::records::{error_body, Reply, ORG_ID};

/// What the org and `__apis` answers say (set through `FakeControl`).
#[derive(Debug, Clone)]
pub(crate) struct FakeOrg {
    /// `license_details.paid_type` (`None`: null).
    pub paid_type: Option<String>,
    /// `license_details.trial_type` (`None`: absent).
    pub trial_type: Option<String>,
    /// The `__apis` entries: (method, path template, credits).
    pub costs: Vec<(String, String, u64)>,
    /// Scopes the token lacks (`ZohoCRM.org.READ`, `ZohoCRM.apis.READ`).
    pub denied: Vec<String>,
}

impl Default for FakeOrg {
    fn default() -> Self {
        FakeOrg {
            paid_type: Some("enterprise".into()),
            trial_type: None,
            costs: Vec::new(),
            denied: Vec::new(),
        }
    }
}

fn scope_mismatch() -> Reply {
    Reply::Json(
        401,
        error_body(
            "OAUTH_SCOPE_MISMATCH",
            "invalid oauth scope to access this URL",
            json!({}),
        ),
    )
}

impl FakeOrg {
    fn denies(&self, scope: &str) -> bool {
        self.denied.iter().any(|d| d.eq_ignore_ascii_case(scope))
    }

    /// `GET /org`.
    pub(crate) fn org(&self) -> Reply {
        if self.denies("ZohoCRM.org.READ") {
            return scope_mismatch();
        }
        let mut license = json!({
            "paid": self.paid_type.as_deref().is_some_and(|p| p != "free"),
            "paid_type": self.paid_type,
            "users_license_purchased": 10,
        });
        if let Some(trial) = &self.trial_type {
            license["trial_type"] = Value::from(trial.as_str());
        }
        Reply::Json(
            200,
            json!({
                "org": [{
                    "id": ORG_ID, "zgid": ORG_ID, "company_name": "Fake Zoho Org",
                    "primary_email": "admin@fake-zoho.invalid", "domain_name": "org554023000",
                    "currency": "US Dollar", "currency_symbol": "$", "iso_code": "USD",
                    "time_zone": "Etc/UTC", "country_code": "US", "type": "production",
                    "license_details": license
                }]
            }),
        )
    }

    /// `GET /__apis` of `version`: one entry per path, its methods as operation types.
    pub(crate) fn apis(&self, version: &str) -> Reply {
        if self.denies("ZohoCRM.apis.READ") {
            return scope_mismatch();
        }
        let mut paths: Vec<(String, Vec<Value>)> = Vec::new();
        for (method, path, credits) in &self.costs {
            let path = path.replace("{version}", version);
            let op = json!({
                "method": method, "oauth_scope": "ZohoCRM.modules.ALL",
                "max_credits": credits, "min_credits": credits,
            });
            match paths.iter_mut().find(|(p, _)| *p == path) {
                Some((_, ops)) => ops.push(op),
                None => paths.push((path, vec![op])),
            }
        }
        let apis: Vec<Value> = paths
            .into_iter()
            .map(|(path, ops)| json!({ "path": path, "operation_types": ops }))
            .collect();
        Reply::Json(200, json!({ "__apis": apis }))
    }
}
