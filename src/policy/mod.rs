//! The scope policy: which Zoho OAuth scopes a request needs, and whether `proxy.yaml` allows them.
//!
//! Flow for one request: [`Policy::evaluate`] refuses methods it does not classify (405) and
//! non-canonical targets (400), locates the path in the CRM API, classifies it with the route
//! table (`routes.rs`) and compares the required scopes with the allowlist. Requests whose scopes
//! depend on their body (COQL, bulk jobs, composite) come back as [`Evaluation::NeedsBody`]; the
//! proxy reads the body under [`PendingBody::max_bytes`] and calls [`Policy::evaluate_body`].
//!
//! The decision is always taken on the exact bytes that will be forwarded: nothing is
//! normalised, anything non-canonical is rejected. Pure: no async, no I/O, no tokens or sockets;
//! the body-less path allocates nothing (`tests/policy_alloc.rs` measures it).
//!
//! Decisions worth knowing (details at each rule):
//! - Methods: GET, HEAD (= GET), POST, PUT, PATCH, DELETE, exactly; anything else is 405.
//! - Targets: origin-form only (400 `PROXY_BAD_TARGET`). Paths: segments of `[A-Za-z0-9_.-]`, no
//!   `%`, no dot or empty segments, no trailing `/` (400 `PROXY_BAD_PATH`). A query carrying a
//!   method-override parameter in any spelling or encoding is 400 `PROXY_BAD_QUERY`; otherwise
//!   the query is forwarded unchanged.
//! - Fixed words are case-sensitive; a case variant of one is 400 (`/crm/v8/SETTINGS/fields`), a
//!   fixed word in a module position is never a module (`GET /crm/v8/coql` is unknown, 403).
//!   Module names are case-insensitive (`LEADS` = `leads`).
//! - Unclassifiable requests are `Denied` with an empty [`Required`] whose
//!   [`Required::unclassified_reason`] is `UnknownOperation` (403 `PROXY_UNKNOWN_OPERATION`) or
//!   `NotCrm` (403 `PROXY_NOT_CRM`). Report mode forwards denials except `NotCrm`.
//! - COQL: `ZohoCRM.coql.READ` + READ on every module after FROM/JOIN; a dotted lookup field
//!   (`Account_Name.Account_Name`) also needs `ZohoCRM.modules.READ`, except through the queried
//!   module's own name or alias and the user lookups `Owner`, `Created_By`, `Modified_By`.
//!   Backslash escapes, comments, `;`, double-quoted names: 400.
//! - Composite: `ZohoCRM.composite_requests.CUSTOM` + every sub-request through the same
//!   canonicaliser and table; COQL and bulk sub-requests are classified from their `body`; a
//!   nested composite, an unknown key, a forbidden header or a rejected sub-request is 400; an
//!   unknown or non-CRM sub-request is 403.
//! - JSON bodies: duplicate keys and keys differing from an expected key only in case are 400.

mod body;
mod canonical;
pub mod cost;
mod explain;
mod modules;
mod organizations;
pub mod products;
mod required;
mod routes;
mod scope;
mod table_eval;
pub mod zoho_costs;

use std::fmt;
use std::sync::Arc;

use http::{Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};

pub use cost::{BodyView, Cost, CostOverrides, CostedOp};
pub use explain::{Decision, Explanation, PolicySummary, ScopeCoverage};
pub use organizations::OrganizationError;
pub use products::{Product, PRODUCTS};
pub use required::{Required, Unclassified};
pub use routes::BodyKind;
pub use scope::{Operation, Scope, ScopeError, Service};
pub use zoho_costs::{ZohoCosts, ZohoRange};

use canonical::{check_path, check_query, check_target, method_not_allowed, Verb};
pub(crate) use canonical::{locate, Area, Located};
use modules::ModuleMap;
use routes::Classified;
pub(crate) use scope::sanitize;

/// Whether denials are enforced or only reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Denied requests get 403 and never reach Zoho.
    Enforce,
    /// Requests the policy would deny are forwarded anyway (and logged and counted by the proxy),
    /// so an operator can learn the allowlist from real traffic. Requests outside the CRM API and
    /// malformed requests are still refused (see [`Evaluation::forwards`]).
    Report,
}

impl PolicyMode {
    /// `enforce` or `report`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Report => "report",
        }
    }
}

impl fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PolicyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enforce" => Ok(PolicyMode::Enforce),
            "report" => Ok(PolicyMode::Report),
            other => Err(format!(
                "unknown policy mode `{}`; use `enforce` or `report`",
                scope::sanitize(other)
            )),
        }
    }
}

/// Errors building a policy from config. Display names the offending entry and, for a near
/// miss, suggests the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `allow:` is empty: such a proxy would deny everything, which is never what was meant.
    #[error(
        "allow: the list is empty; name at least one scope, e.g. `ZohoCRM.modules.leads.READ`"
    )]
    EmptyAllowlist,
    /// An `allow:` entry is not a scope the proxy knows.
    #[error("allow[{index}]: {source}")]
    Scope {
        /// Position in the `allow:` list, from 0.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: ScopeError,
    },
    /// A narrowed allow list (a client's) names a scope its account's list does not cover.
    #[error("allow[{index}]: `{scope}` is not covered by the account's allow list; a client's list may only narrow it")]
    NotCovered {
        /// Position in the narrowed list, from 0.
        index: usize,
        /// The scope, canonical.
        scope: String,
    },
    /// A `modules:` key is not a module API name.
    #[error("modules[{index}]: `{key}` is not a module API name (letters, digits and `_`, starting with a letter)")]
    ModuleKey {
        /// Position in the `modules:` map, from 0.
        index: usize,
        /// The key, with control characters escaped.
        key: String,
    },
    /// A `modules:` value is not a Zoho module scope name.
    #[error("modules[{index}]: `{key}: {value}`: `{value}` is not a Zoho module scope name{}", suggest(.suggestion))]
    ModuleScope {
        /// Position in the `modules:` map, from 0.
        index: usize,
        /// The key, with control characters escaped.
        key: String,
        /// The value, with control characters escaped.
        value: String,
        /// The closest scope name.
        suggestion: Option<String>,
    },
    /// The same API name appears twice in `modules:` (keys are case-insensitive).
    #[error(
        "modules[{index}]: `{key}` appears more than once (module names are case-insensitive)"
    )]
    DuplicateModule {
        /// Position of the second occurrence, from 0.
        index: usize,
        /// The key, with control characters escaped.
        key: String,
    },
}

fn suggest(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; use a name such as `leads`, `salesorders` or `custom`".to_string(),
    }
}

/// One parsed allow entry.
#[derive(Clone, Debug)]
struct AllowEntry {
    index: usize,
    scope: Scope,
}

/// A validated scope policy: the allowlist, the module map and the mode. Cheap to share behind
/// an `Arc`; every method takes `&self`.
#[derive(Clone, Debug)]
pub struct Policy {
    allow: Vec<AllowEntry>,
    modules: ModuleMap,
    mode: PolicyMode,
    /// The organization ids Books and Inventory requests may name (`None`: any).
    organizations: Option<Arc<[String]>>,
}

/// The canonical request target to forward: byte for byte the path (and query) that was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanonicalTarget<'a> {
    /// The path, e.g. `/crm/v8/Leads/1`.
    pub path: &'a str,
    /// The query without `?`, forwarded unchanged.
    pub query: Option<&'a str>,
    /// The product the path belongs to (CRM for paths outside every product).
    pub product: &'static Product,
    /// The organization the request acts on (Books, Inventory), once checked.
    pub organization: Option<&'a str>,
}

impl<'a> CanonicalTarget<'a> {
    /// A CRM target (or one outside every product).
    pub fn crm(path: &'a str, query: Option<&'a str>) -> CanonicalTarget<'a> {
        CanonicalTarget {
            path,
            query,
            product: products::crm(),
            organization: None,
        }
    }
}

impl CanonicalTarget<'_> {
    /// `path?query` (or just the path), for building the upstream URI.
    pub fn path_and_query(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CanonicalTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path)?;
        if let Some(q) = self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// A refused request: malformed, non-canonical or not classifiable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 405, 413, or 403 for a composite sub-request outside what the proxy knows.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `PROXY_BAD_PATH`.
    pub code: &'static str,
    /// What to fix. Never echoes raw control bytes.
    pub message: String,
}

/// A request whose decision depends on its body. Holds a copy of the target so the final
/// [`Evaluation`] can borrow from it.
#[derive(Clone, Debug)]
pub struct PendingBody {
    kind: BodyKind,
    base: Required,
    verb: Verb,
    path: String,
    query: Option<String>,
}

impl PendingBody {
    /// The most body bytes the proxy may read; a larger body gets 413 from the proxy.
    pub fn max_bytes(&self) -> usize {
        match self.kind {
            BodyKind::Composite => body::COMPOSITE_BODY,
            BodyKind::Coql | BodyKind::BulkRead | BodyKind::BulkWrite => body::SMALL_BODY,
        }
    }

    /// What kind of body is expected.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// The scopes needed whatever the body says (e.g. `ZohoCRM.coql.READ`).
    pub fn base_required(&self) -> &Required {
        &self.base
    }

    /// The checked target.
    pub fn target(&self) -> CanonicalTarget<'_> {
        CanonicalTarget::crm(&self.path, self.query.as_deref())
    }
}

/// The outcome of evaluating one request.
#[derive(Clone, Debug)]
pub enum Evaluation<'a> {
    /// Every required scope is covered. `target` is the canonical path and query to forward,
    /// byte for byte the path that was checked; `required` lists the scopes (for logs/metrics).
    Allowed {
        /// What to forward.
        target: CanonicalTarget<'a>,
        /// The scopes the request needs.
        required: Required,
    },
    /// Some scope is not covered. In report mode the proxy forwards anyway (see
    /// [`Evaluation::forwards`]), so `target` is still given. A request the classifier cannot
    /// map (unknown CRM operation, path outside the CRM API) is denied with an empty `required`
    /// whose [`Required::unclassified_reason`] says why; `missing` carries the same marker.
    Denied {
        /// What would be forwarded.
        target: CanonicalTarget<'a>,
        /// The scopes the request needs.
        required: Required,
        /// The required scopes no allow entry covers.
        missing: Required,
    },
    /// The decision depends on the body: read up to `pending.max_bytes()` bytes and call
    /// [`Policy::evaluate_body`].
    NeedsBody {
        /// What will be forwarded.
        target: CanonicalTarget<'a>,
        /// What to pass to [`Policy::evaluate_body`].
        pending: PendingBody,
    },
    /// Malformed or non-canonical: never forwarded, whatever the mode.
    Rejected(Rejection),
}

/// A ready-to-serialise proxy error body:
/// `{"code":…,"message":…,"details":{…},"status":"error"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `PROXY_SCOPE_DENIED`.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Machine-readable details.
    pub details: ErrorDetails,
    /// Always `"error"`, like Zoho's own error bodies.
    pub status: &'static str,
}

/// The `details` object of an [`ErrorBody`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorDetails {
    /// Every scope the request needs (denials only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    /// The scopes proxy.yaml does not allow (denials only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// The request method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The checked path (denials only; rejected paths are not echoed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn method_text(method: &Method) -> String {
    scope::sanitize(&method.as_str().chars().take(32).collect::<String>())
}

impl Evaluation<'_> {
    /// Whether the proxy forwards this request in `mode`: allowed requests always; denied ones
    /// only in report mode and only when they are CRM API paths (a path outside `/crm` is never
    /// sent upstream with the token); pending and rejected ones never.
    pub fn forwards(&self, mode: PolicyMode) -> bool {
        match self {
            Evaluation::Allowed { .. } => true,
            Evaluation::Denied { required, .. } => {
                mode == PolicyMode::Report
                    && required.unclassified_reason() != Some(Unclassified::NotCrm)
            }
            Evaluation::NeedsBody { .. } | Evaluation::Rejected(_) => false,
        }
    }

    /// A short label for logs and metrics: `allowed`, `denied`, `needs_body`, `rejected`.
    pub fn label(&self) -> &'static str {
        match self {
            Evaluation::Allowed { .. } => "allowed",
            Evaluation::Denied { .. } => "denied",
            Evaluation::NeedsBody { .. } => "needs_body",
            Evaluation::Rejected(_) => "rejected",
        }
    }

    /// The target to forward, unless rejected.
    pub fn target(&self) -> Option<&CanonicalTarget<'_>> {
        match self {
            Evaluation::Allowed { target, .. }
            | Evaluation::Denied { target, .. }
            | Evaluation::NeedsBody { target, .. } => Some(target),
            Evaluation::Rejected(_) => None,
        }
    }

    /// The required scopes, when decided.
    pub fn required(&self) -> Option<&Required> {
        match self {
            Evaluation::Allowed { required, .. } | Evaluation::Denied { required, .. } => {
                Some(required)
            }
            Evaluation::NeedsBody { .. } | Evaluation::Rejected(_) => None,
        }
    }

    /// The error status and stable code for a refusal (`None` when allowed or pending).
    pub fn error_code(&self) -> Option<(StatusCode, &'static str)> {
        match self {
            Evaluation::Denied { required, .. } => Some((
                StatusCode::FORBIDDEN,
                match required.unclassified_reason() {
                    Some(Unclassified::NotCrm) => "PROXY_NOT_CRM",
                    Some(Unclassified::UnknownOperation) => "PROXY_UNKNOWN_OPERATION",
                    None => "PROXY_SCOPE_DENIED",
                },
            )),
            Evaluation::Rejected(r) => Some((r.status, r.code)),
            Evaluation::Allowed { .. } | Evaluation::NeedsBody { .. } => None,
        }
    }

    /// The human message for a refusal, e.g. "GET /crm/v8/Contacts needs
    /// ZohoCRM.modules.contacts.READ, which proxy.yaml does not allow".
    pub fn denial_message(&self, method: &Method) -> Option<String> {
        let m = method_text(method);
        match self {
            Evaluation::Denied {
                target,
                required,
                missing,
            } => Some(match required.unclassified_reason() {
                Some(Unclassified::NotCrm) => format!(
                    "{m} {} is outside the Zoho APIs this proxy serves ({}); it forwards only their requests",
                    target.path,
                    products::roots()
                ),
                Some(Unclassified::UnknownOperation) => format!(
                    "{m} {} is not a {} API operation this proxy knows; it is denied by default",
                    target.path, target.product.title
                ),
                None if missing.len() == required.len() && required.len() == 1 => format!(
                    "{m} {} needs {required}, which proxy.yaml does not allow",
                    target.path
                ),
                None => format!(
                    "{m} {} needs {required}; proxy.yaml does not allow {missing}",
                    target.path
                ),
            }),
            Evaluation::Rejected(r) => Some(r.message.clone()),
            Evaluation::Allowed { .. } | Evaluation::NeedsBody { .. } => None,
        }
    }

    /// The JSON error body the proxy sends for a refusal (`None` when allowed or pending).
    pub fn error_body(&self, method: &Method) -> Option<ErrorBody> {
        let (_, code) = self.error_code()?;
        let message = self.denial_message(method)?;
        let details = match self {
            Evaluation::Denied {
                target,
                required,
                missing,
            } => ErrorDetails {
                required: Some(required.to_strings()),
                missing: Some(missing.to_strings()),
                method: Some(method_text(method)),
                path: Some(target.path.to_string()),
            },
            _ => ErrorDetails {
                method: Some(method_text(method)),
                ..ErrorDetails::default()
            },
        };
        Some(ErrorBody {
            code,
            message,
            details,
            status: "error",
        })
    }
}

/// The classification of one method + path, before the allowlist is consulted.
pub(crate) enum Step {
    Scopes(Required, Option<BodyKind>),
    Unclassified(Unclassified),
    Reject(Rejection),
}

impl Policy {
    /// Builds a policy. `allow`: the raw `allow:` entries; `modules`: the `modules:` map from
    /// YAML (API name → scope name, e.g. `Appointments__s` → `appointments`), which adds to or
    /// overrides the built-in table (keys case-insensitive). An empty allowlist is an error.
    pub fn new(
        allow: &[String],
        modules: &[(String, String)],
        mode: PolicyMode,
    ) -> Result<Policy, PolicyError> {
        let entries = allow_entries(allow, |_| Ok(()))?;
        let mut overrides: Vec<(String, &'static str)> = Vec::with_capacity(modules.len());
        for (index, (key, value)) in modules.iter().enumerate() {
            if !modules::is_api_name(key) {
                return Err(PolicyError::ModuleKey {
                    index,
                    key: scope::sanitize(key),
                });
            }
            if overrides.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                return Err(PolicyError::DuplicateModule {
                    index,
                    key: scope::sanitize(key),
                });
            }
            let Some(target) = modules::module_scope(value) else {
                let suggestion = modules::standard_scope_for(value)
                    .or_else(|| scope::closest(value, modules::MODULE_SCOPES.iter().copied()))
                    .map(str::to_string);
                return Err(PolicyError::ModuleScope {
                    index,
                    key: scope::sanitize(key),
                    value: scope::sanitize(value),
                    suggestion,
                });
            };
            overrides.push((key.clone(), target));
        }
        Ok(Policy {
            allow: entries,
            modules: ModuleMap::new(overrides),
            mode,
            organizations: None,
        })
    }

    /// The same policy (module map, mode) with a narrower allowlist: every entry of `allow` must
    /// be covered by an entry of this policy's list.
    pub fn narrowed(&self, allow: &[String]) -> Result<Policy, PolicyError> {
        let entries = allow_entries(allow, |entry| match self.covering_entry(&entry.scope) {
            Some(_) => Ok(()),
            None => Err(PolicyError::NotCovered {
                index: entry.index,
                scope: entry.scope.to_string(),
            }),
        })?;
        Ok(Policy {
            allow: entries,
            modules: self.modules.clone(),
            mode: self.mode,
            organizations: self.organizations.clone(),
        })
    }

    /// Enforce or report.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// Step 1, for every request: method and raw request target (`req.uri()`, possibly
    /// absolute-form, authority-form or `*`) → decision. Allocation-free for body-less requests.
    pub fn evaluate<'a>(&self, method: &Method, uri: &'a Uri) -> Evaluation<'a> {
        let Some(verb) = Verb::from_method(method) else {
            return Evaluation::Rejected(method_not_allowed(method));
        };
        if let Err(r) = check_target(uri) {
            return Evaluation::Rejected(r);
        }
        let target = CanonicalTarget::crm(uri.path(), uri.query());
        if let Some(product) = products::table_product(target.path) {
            return self.evaluate_table(verb, product, target);
        }
        match self.classify_path(verb, target.path, target.query) {
            Step::Reject(r) => Evaluation::Rejected(r),
            Step::Unclassified(reason) => Evaluation::Denied {
                target,
                required: Required::unclassified(reason),
                missing: Required::unclassified(reason),
            },
            Step::Scopes(base, Some(kind)) => Evaluation::NeedsBody {
                target,
                pending: PendingBody {
                    kind,
                    base,
                    verb,
                    path: target.path.to_string(),
                    query: target.query.map(str::to_string),
                },
            },
            Step::Scopes(required, None) => self.decide(target, required),
        }
    }

    /// Step 2, only after [`Evaluation::NeedsBody`]: the proxy has read the body (at most
    /// [`PendingBody::max_bytes`]) and passes it here. Never returns `NeedsBody`.
    pub fn evaluate_body<'p>(&self, pending: &'p PendingBody, body: &[u8]) -> Evaluation<'p> {
        let target = pending.target();
        if body.len() > pending.max_bytes() {
            return Evaluation::Rejected(Rejection {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "PROXY_BODY_TOO_LARGE",
                message: format!(
                    "{} {} bodies are classified by the proxy and may be at most {} bytes",
                    pending.verb.as_str(),
                    pending.path,
                    pending.max_bytes()
                ),
            });
        }
        let mut required = pending.base.clone();
        match body::add_body_scopes(self, pending.kind, body, &mut required) {
            Err(r) => Evaluation::Rejected(r),
            Ok(()) => self.decide(target, required),
        }
    }

    /// For `check`: the normalised allow entries, the module overrides and the mode.
    pub fn summary(&self) -> PolicySummary {
        explain::summary(self)
    }

    /// For `explain`: the scopes a request needs, the allow entry covering each (or none), and
    /// the decision. `body` is used when the request's scopes depend on it.
    pub fn explain(&self, method: &Method, uri: &Uri, body: Option<&[u8]>) -> Explanation {
        explain::explain(self, method, uri, body)
    }

    /// The allow entry (index and canonical scope) covering `scope`, if any.
    pub fn covering_entry(&self, scope: &Scope) -> Option<(usize, Scope)> {
        self.allow
            .iter()
            .find(|e| e.scope.covers(scope))
            .map(|e| (e.index, e.scope))
    }

    fn decide<'a>(&self, target: CanonicalTarget<'a>, required: Required) -> Evaluation<'a> {
        if required.unclassified_reason().is_some() || required.is_empty() {
            let reason = required
                .unclassified_reason()
                .unwrap_or(Unclassified::UnknownOperation);
            return Evaluation::Denied {
                target,
                required: Required::unclassified(reason),
                missing: Required::unclassified(reason),
            };
        }
        let mut missing = Required::new();
        for scope in required.iter() {
            if !self.allow.iter().any(|e| e.scope.covers(scope)) {
                missing.push(*scope);
            }
        }
        if missing.is_empty() {
            Evaluation::Allowed { target, required }
        } else {
            Evaluation::Denied {
                target,
                required,
                missing,
            }
        }
    }

    /// Canonical checks and classification of one method + path (+ query).
    pub(crate) fn classify_path(&self, verb: Verb, path: &str, query: Option<&str>) -> Step {
        if let Err(r) = check_path(path) {
            return Step::Reject(r);
        }
        if let Some(q) = query {
            if let Err(r) = check_query(q) {
                return Step::Reject(r);
            }
        }
        match locate(path) {
            Err(r) => Step::Reject(r),
            Ok(Located::NotCrm) => Step::Unclassified(Unclassified::NotCrm),
            Ok(Located::UnknownCrm) => Step::Unclassified(Unclassified::UnknownOperation),
            Ok(Located::Crm(area, segments)) => {
                match routes::classify(&self.modules, area, segments.as_slice(), verb) {
                    Classified::Scopes(required, body) => Step::Scopes(required, body),
                    Classified::Unknown => Step::Unclassified(Unclassified::UnknownOperation),
                    Classified::Ambiguous(r) => Step::Reject(r),
                }
            }
        }
    }
}

/// Parses an allow list (non-empty), keeping each entry's index for error messages; `check`
/// vets each entry as it is parsed, so the first bad entry in list order is the one reported.
fn allow_entries(
    allow: &[String],
    check: impl Fn(&AllowEntry) -> Result<(), PolicyError>,
) -> Result<Vec<AllowEntry>, PolicyError> {
    if allow.is_empty() {
        return Err(PolicyError::EmptyAllowlist);
    }
    allow
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let scope =
                Scope::parse(text).map_err(|source| PolicyError::Scope { index, source })?;
            let entry = AllowEntry { index, scope };
            check(&entry)?;
            Ok(entry)
        })
        .collect()
}

// The policy is shared across request tasks behind an `Arc`/`ArcSwap`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<PendingBody>();
};

#[cfg(test)]
mod tests;
