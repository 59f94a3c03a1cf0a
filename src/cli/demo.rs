//! `zoho-auth-proxy demo`: the proxy in front of the built-in fake Zoho, no account needed.
//!
//! Starts the sandbox (token endpoint, a small CRM and small Books and Inventory APIs over TLS
//! with a generated CA), writes the
//! CA to a temporary file, builds an ordinary config pointing at the sandbox and runs the real
//! proxy with it, after printing curl commands to try. Each printed command ends in a comment
//! naming the HTTP status it gets (`# 403 denied: …`); `tests/demo.rs` runs every one of them,
//! taken from this output, and checks that status.

use crate::app::StartError;
use crate::config::Config;
use crate::logging::SetLogLevel;
use crate::sandbox::{FakeZoho, FakeZohoOptions, TestCa};
use std::future::Future;
use std::path::Path;

/// Demo listen addresses.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Proxy listener.
    pub listen: String,
    /// Admin listener.
    pub admin: String,
}

/// The demo's config text (also used by tests to check it stays valid).
pub fn demo_config(fake: &FakeZoho, ca_file: &Path, options: &DemoOptions) -> String {
    format!(
        r#"listen: {listen}
admin:
  listen: {admin}
zoho:
  data_center: us
  accounts_url: {accounts}
  api_url: {api}
  client_id: {client_id}
  client_secret: {secret}
  refresh_token: {refresh}
  ca_file: {ca}
allow:
  - ZohoCRM.modules.leads.ALL
  - ZohoCRM.modules.contacts.READ
  - ZohoCRM.coql.READ
  - ZohoBooks.invoices.ALL
  - ZohoBooks.settings.READ
organizations: [60001]
"#,
        listen = options.listen,
        admin = options.admin,
        accounts = fake.accounts_url(),
        api = fake.api_url(),
        client_id = fake.options().client_id,
        secret = fake.options().client_secret,
        refresh = fake.options().refresh_token(),
        ca = ca_file.display(),
    )
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(
    options: DemoOptions,
    set_log_level: SetLogLevel,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let ca = TestCa::new();
    let fake = FakeZoho::start(FakeZohoOptions::default(), &ca)
        .await
        .map_err(|e| StartError::Runtime(format!("cannot start the fake Zoho: {e}")))?;
    // The proxy's own reads find a Professional org (15 requests in flight: `limits.upstream_
    // concurrency: auto`) and Zoho's costs for the Leads calls the commands below make.
    fake.control().set_edition(Some("professional"), None);
    fake.control().set_api_costs(&[
        ("GET", "/crm/{version}/Leads", 1),
        ("POST", "/crm/{version}/Leads", 1),
        ("GET", "/crm/{version}/Leads/{{id}}", 1),
    ]);
    let dir = std::env::temp_dir().join(format!("zoho-auth-proxy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    let ca_file = dir.join("demo-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem())
        .map_err(|e| StartError::Runtime(format!("cannot write {}: {e}", ca_file.display())))?;
    let text = demo_config(&fake, &ca_file, &options);
    let config = Config::from_yaml_str_with(&text, &|_| None, &dir)?;
    let p = &options.listen;
    let a = &options.admin;
    println!(
        r#"
zoho-auth-proxy demo: the proxy on http://{p} in front of a fake Zoho (token endpoint {acc}, CRM, Books and Inventory APIs {api}).
Allowed: ZohoCRM.modules.leads.ALL, ZohoCRM.modules.contacts.READ, ZohoCRM.coql.READ,
ZohoBooks.invoices.ALL, ZohoBooks.settings.READ; Books organization 60001 only. Try:

  curl -s 'http://{p}/crm/v8/Leads?fields=Last_Name,Email'   # 200: leads, two fields
  curl -s -X POST http://{p}/crm/v8/Leads -H 'Content-Type: application/json' -d '{{"data":[{{"Last_Name":"Lovelace","Email":"ada@example.com"}}]}}'   # 201: lead created
  curl -s -X POST http://{p}/crm/v8/Leads -d '{{"data":[{{"Last_Name":"X"}}]}}'   # 201: curl -d without a Content-Type, as in Zoho's own examples
  curl -s http://{p}/crm/v8/Contacts   # 200: contacts are readable
  curl -s http://{p}/crm/v8/Deals   # 403 denied: names the missing scope
  curl -s -X DELETE http://{p}/crm/v8/Contacts/1   # 403 denied: contacts are read-only here
  curl -s -X POST http://{p}/crm/v8/coql -d '{{"select_query":"select Last_Name from Deals where Last_Name is not null"}}'   # 403 denied: COQL reads Deals
  curl -s --path-as-is 'http://{p}/crm/v8/Leads/../Deals'   # 400 rejected: dot segments
  curl -s 'http://{p}/books/v3/organizations'   # 200: Zoho Books, your organizations (no id needed)
  curl -s 'http://{p}/books/v3/invoices?organization_id=60001'   # 200: Books invoices of organization 60001
  curl -s -X POST 'http://{p}/books/v3/invoices?organization_id=60001' -H 'Content-Type: application/json' -d '{{"customer_id":"1","line_items":[]}}'   # 201: invoice created
  curl -s 'http://{p}/books/v3/invoices'   # 400 refused: PROXY_ORGANIZATION_REQUIRED
  curl -s 'http://{p}/books/v3/invoices?organization_id=60002'   # 403 refused: PROXY_ORGANIZATION_NOT_ALLOWED (only 60001 is listed)
  curl -s 'http://{p}/books/v3/bills?organization_id=60001'   # 403 denied: names ZohoBooks.bills.READ
  curl -s -H 'Host: attacker.example' http://{p}/crm/v8/Leads   # 403 refused: PROXY_HOST_NOT_ALLOWED (DNS rebinding)
  curl -s -H 'Origin: https://attacker.example' -X POST http://{p}/crm/v8/Leads -d '{{}}'   # 403 refused: PROXY_BROWSER_REQUEST
  curl -s http://{a}/status   # 200: accounts, token state, credits, concurrency from the org's edition (no secret)
  curl -s http://{a}/metrics | grep zoho_proxy_requests   # 200: request counters
  curl -s -H 'Accept: application/json' 'http://{a}/explain?method=GET&path=/crm/v8/Deals'   # 200: explains the decision, nothing forwarded

Operator console (accounts, token state, denied and refused requests, the allow list the traffic needs):

  http://{a}/

Press Ctrl-C to stop.
"#,
        acc = fake.accounts_url(),
        api = fake.api_url(),
    );
    let result = crate::app::run(config, None, set_log_level, shutdown).await;
    fake.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
