//! Human and JSON views of a policy for the `check` and `explain` commands.
//!
//! Owns only presentation: it calls the same `evaluate`/`evaluate_body` the proxy uses, so an
//! explanation can never disagree with a real decision.

use std::collections::BTreeMap;
use std::fmt;

use http::{Method, Uri};
use serde::Serialize;

use super::{Evaluation, Policy, PolicyMode};

/// The effective policy, as `zoho-auth-proxy check` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicySummary {
    /// Enforce or report.
    pub mode: PolicyMode,
    /// The allow entries in canonical spelling, in config order (duplicates removed).
    pub allow: Vec<String>,
    /// The `modules:` overrides: API name as written → scope name.
    pub modules: BTreeMap<String, String>,
}

impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy mode: {}", self.mode)?;
        writeln!(f, "allow:")?;
        for entry in &self.allow {
            writeln!(f, "  - {entry}")?;
        }
        if self.modules.is_empty() {
            writeln!(f, "modules: (built-in table only)")?;
        } else {
            writeln!(f, "modules:")?;
            for (api, scope) in &self.modules {
                writeln!(f, "  {api}: {scope}")?;
            }
        }
        Ok(())
    }
}

pub(crate) fn summary(policy: &Policy) -> PolicySummary {
    let mut allow: Vec<String> = Vec::new();
    for entry in &policy.allow {
        let text = entry.scope.to_string();
        if !allow.contains(&text) {
            allow.push(text);
        }
    }
    let modules = policy
        .modules
        .overrides()
        .iter()
        .map(|(api, scope)| (api.clone(), (*scope).to_string()))
        .collect();
    PolicySummary {
        mode: policy.mode,
        allow,
        modules,
    }
}

/// What `explain` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Every required scope is allowed.
    Allowed,
    /// Some required scope is not allowed, or the operation is unknown / outside the CRM API.
    Denied,
    /// The request is malformed or non-canonical.
    Rejected,
    /// The decision depends on a body that was not given.
    NeedsBody,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Rejected => "rejected",
            Decision::NeedsBody => "needs a body",
        }
    }
}

/// One required scope and the allow entry that covers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeCoverage {
    /// The required scope, e.g. `ZohoCRM.modules.leads.READ`.
    pub scope: String,
    /// The covering allow entry, `allow[i]: Scope`, or `None`.
    pub covered_by: Option<String>,
}

/// The answer of `zoho-auth-proxy explain`: Serialize for `--json`, Display for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The request method.
    pub method: String,
    /// The request target as given (sanitised).
    pub target: String,
    /// The policy mode.
    pub mode: PolicyMode,
    /// The decision.
    pub decision: Decision,
    /// Whether the proxy would forward the request in this mode.
    pub forwarded: bool,
    /// HTTP status the proxy answers with when it refuses (403, 400, 405, 413).
    pub status: Option<u16>,
    /// Stable error code when refused.
    pub code: Option<&'static str>,
    /// The message the client would see, or a hint.
    pub message: Option<String>,
    /// Every required scope, with its covering entry.
    pub required: Vec<ScopeCoverage>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, self.target)?;
        if self.required.is_empty() {
            writeln!(f, "  required scopes: none that proxy.yaml could allow")?;
        } else {
            writeln!(f, "  required scopes:")?;
            let width = self
                .required
                .iter()
                .map(|c| c.scope.len())
                .max()
                .unwrap_or(0);
            for c in &self.required {
                match &c.covered_by {
                    Some(entry) => writeln!(f, "    {:width$}  allowed by {entry}", c.scope)?,
                    None => writeln!(f, "    {:width$}  NOT ALLOWED", c.scope)?,
                }
            }
        }
        let status = match (self.status, self.code) {
            (Some(s), Some(c)) => format!(" ({s} {c})"),
            _ => String::new(),
        };
        writeln!(f, "  decision: {}{status}", self.decision.as_str())?;
        writeln!(
            f,
            "  mode {}: {}",
            self.mode,
            if self.forwarded {
                "forwarded to Zoho"
            } else {
                "not forwarded"
            }
        )?;
        if let Some(m) = &self.message {
            writeln!(f, "  {m}")?;
        }
        Ok(())
    }
}

pub(crate) fn explain(
    policy: &Policy,
    method: &Method,
    uri: &Uri,
    body: Option<&[u8]>,
) -> Explanation {
    let first = policy.evaluate(method, uri);
    let mut base = Explanation {
        method: super::method_text(method),
        target: super::scope::sanitize(&uri.to_string()),
        mode: policy.mode,
        decision: Decision::Rejected,
        forwarded: false,
        status: None,
        code: None,
        message: None,
        required: Vec::new(),
    };
    match first {
        Evaluation::NeedsBody { ref pending, .. } => match body {
            Some(bytes) => {
                let second = policy.evaluate_body(pending, bytes);
                fill(policy, method, &second, &mut base);
            }
            None => {
                base.decision = Decision::NeedsBody;
                base.required = coverage(policy, pending.base_required());
                base.message = Some(format!(
                    "the scopes of this request also depend on its body ({:?}); pass it with --body FILE",
                    pending.kind()
                ));
            }
        },
        ref evaluation => fill(policy, method, evaluation, &mut base),
    }
    base
}

fn coverage(policy: &Policy, required: &super::Required) -> Vec<ScopeCoverage> {
    required
        .iter()
        .map(|scope| ScopeCoverage {
            scope: scope.to_string(),
            covered_by: policy
                .covering_entry(scope)
                .map(|(i, entry)| format!("allow[{i}]: {entry}")),
        })
        .collect()
}

fn fill(policy: &Policy, method: &Method, evaluation: &Evaluation<'_>, out: &mut Explanation) {
    out.forwarded = evaluation.forwards(policy.mode);
    if let Some(required) = evaluation.required() {
        out.required = coverage(policy, required);
    }
    if let Some((status, code)) = evaluation.error_code() {
        out.status = Some(status.as_u16());
        out.code = Some(code);
    }
    out.message = evaluation.denial_message(method);
    out.decision = match evaluation {
        Evaluation::Allowed { .. } => Decision::Allowed,
        Evaluation::Denied { .. } => Decision::Denied,
        Evaluation::NeedsBody { .. } => Decision::NeedsBody,
        Evaluation::Rejected(_) => Decision::Rejected,
    };
}
