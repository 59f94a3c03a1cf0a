//! Evaluating a request to a table-driven product (Books, Inventory): canonical checks, the
//! version, the operation table, then the organization the request acts on.
//!
//! Order, chosen so that each refusal says the most useful thing: a malformed target is 400; an
//! operation the table does not know is 403 unknown; a scope the allow list lacks is 403 naming
//! it; only then, for a request that would be forwarded, the organization: none where one is
//! needed is `400 PROXY_ORGANIZATION_REQUIRED`, one outside the list `403
//! PROXY_ORGANIZATION_NOT_ALLOWED`. Neither is forwarded, in report mode either. With a list in
//! force, a write names its organization in the query even where the table needs none.

use http::StatusCode;

use super::canonical::{ambiguous, check_path, check_query, Verb, MAX_SEGMENTS};
use super::products::{query_organization, valid_organization_id, OrgRule, Product, TableMatch};
use super::{CanonicalTarget, Evaluation, Policy, Rejection, Required, Unclassified};

fn rejection(status: StatusCode, code: &'static str, message: String) -> Rejection {
    Rejection {
        status,
        code,
        message,
    }
}

impl Policy {
    /// [`Policy::evaluate`] for a path under a table-driven product's prefix.
    pub(super) fn evaluate_table<'a>(
        &self,
        verb: Verb,
        product: &'static Product,
        mut target: CanonicalTarget<'a>,
    ) -> Evaluation<'a> {
        target.product = product;
        if let Err(r) = check_path(target.path) {
            return Evaluation::Rejected(r);
        }
        if let Some(q) = target.query {
            if let Err(r) = check_query(q) {
                return Evaluation::Rejected(r);
            }
        }
        let path: &'a str = target.path;
        let mut parts = path[1..].split('/').skip(1);
        let version = parts.next().unwrap_or("");
        if !product.versions.contains(&version) {
            if let Some(v) = product
                .versions
                .iter()
                .find(|v| v.eq_ignore_ascii_case(version))
            {
                return Evaluation::Rejected(ambiguous(version, v));
            }
            return self.unknown(verb, product, target);
        }
        let mut items = [""; MAX_SEGMENTS];
        let mut len = 0;
        for part in parts {
            if len == MAX_SEGMENTS {
                return self.unknown(verb, product, target);
            }
            items[len] = part;
            len += 1;
        }
        let segments = &items[..len];
        let Some(table) = product.table() else {
            return self.unknown(verb, product, target);
        };
        let (scope, rule) = match table.classify(verb, segments) {
            TableMatch::Found(scope, rule) => (scope, rule),
            TableMatch::Unknown => return self.unknown(verb, product, target),
            TableMatch::Ambiguous(r) => return Evaluation::Rejected(r),
        };
        let param = product.organization.unwrap_or("organization_id");
        let from_query = match query_organization(target.query, param) {
            Ok(found) => found.filter(|id| !id.is_empty()),
            Err(r) => return Evaluation::Rejected(r),
        };
        target.organization = match rule {
            OrgRule::Query | OrgRule::Optional => from_query,
            OrgRule::Path(i) => {
                let id = segments.get(i).copied().unwrap_or("");
                if !valid_organization_id(id) {
                    return Evaluation::Rejected(rejection(
                        StatusCode::BAD_REQUEST,
                        "PROXY_BAD_PATH",
                        format!(
                            "`{}` is not an organization id",
                            crate::util::escape(id, 64)
                        ),
                    ));
                }
                Some(id)
            }
        };
        let mut required = Required::new();
        required.push(scope);
        let evaluation = self.decide(target, required);
        if !evaluation.forwards(self.mode) {
            return evaluation;
        }
        // `/organizations/{id}?organization_id=…`: the query one, if another, must be listed too.
        let also = from_query.filter(|q| Some(*q) != target.organization);
        match self
            .check_organization(verb, product, rule, target)
            .and_then(|()| also.map_or(Ok(()), |id| self.listed(id)))
        {
            Ok(()) => evaluation,
            Err(r) => Evaluation::Rejected(r),
        }
    }

    /// An operation the product's table does not know: denied, or in report mode forwarded, but
    /// then only for an organization the list allows (as an operation that needs one).
    fn unknown<'a>(
        &self,
        verb: Verb,
        product: &Product,
        mut target: CanonicalTarget<'a>,
    ) -> Evaluation<'a> {
        let denied = |target| Evaluation::Denied {
            target,
            required: Required::unclassified(Unclassified::UnknownOperation),
            missing: Required::unclassified(Unclassified::UnknownOperation),
        };
        if !denied(target).forwards(self.mode) {
            return denied(target);
        }
        let param = product.organization.unwrap_or("organization_id");
        target.organization = match query_organization(target.query, param) {
            Ok(found) => found.filter(|id| !id.is_empty()),
            Err(r) => return Evaluation::Rejected(r),
        };
        let rule = match self.organizations {
            Some(_) => OrgRule::Query,
            None => OrgRule::Optional,
        };
        match self.check_organization(verb, product, rule, target) {
            Ok(()) => denied(target),
            Err(r) => Evaluation::Rejected(r),
        }
    }

    /// Whether the request names an organization where it must, and one it may use.
    fn check_organization(
        &self,
        verb: Verb,
        product: &Product,
        rule: OrgRule,
        target: CanonicalTarget<'_>,
    ) -> Result<(), Rejection> {
        let param = product.organization.unwrap_or("organization_id");
        let Some(id) = target.organization else {
            // A write the table says needs none (`POST /organizations/address`) could still pick
            // an organization through a form body; with a list in force it names one in the
            // query, which Zoho reads first.
            let write = !matches!(verb, Verb::Get | Verb::Head);
            if rule == OrgRule::Query || (write && self.organizations.is_some()) {
                return Err(rejection(
                    StatusCode::BAD_REQUEST,
                    "PROXY_ORGANIZATION_REQUIRED",
                    format!(
                        "{} {} needs the organization it acts on: add `?{param}=<id>` to the query (list your organizations with GET {}/organizations)",
                        verb.as_str(),
                        target.path,
                        product.root()
                    ),
                ));
            }
            return Ok(());
        };
        self.listed(id)
    }

    /// Whether `id` is one the list allows (any, without a list).
    fn listed(&self, id: &str) -> Result<(), Rejection> {
        match &self.organizations {
            Some(list) if !list.iter().any(|allowed| allowed == id) => Err(rejection(
                StatusCode::FORBIDDEN,
                "PROXY_ORGANIZATION_NOT_ALLOWED",
                format!(
                    "organization {id} is not one this proxy lets you use (allowed: {}); to use it, add `{id}` to `organizations:` of the account in proxy.yaml, and of the client if it has its own list",
                    list.join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }
}
