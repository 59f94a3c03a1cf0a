//! A table-driven product's classifier: Zoho's operation table (one OpenAPI operation a line)
//! read once into rows of method + path shape → the one scope the operation declares, and the
//! matcher over them.
//!
//! The spec's defects are handled as the tables' headers describe them:
//! - a regex group (`(\d+)`) is one path parameter;
//! - the same method and shape declared twice (same scope: checked) is one row;
//! - rows are tried most specific first (a literal segment before a parameter, left to right),
//!   so the root catch-alls (`/{module_name}`, `/{module_id}`) match last;
//! - the operation word is taken from the table, never from the method; the one invalid word
//!   (Inventory's `salesreturns.GET`) is read as `READ`;
//! - the organization is required where the table says `required`, taken from the path where a
//!   template has `{organization_id}`, and optional for the operations that declare none and for
//!   listing organizations (which needs none);
//! - Books' `POST /salesreceipts/{id}/email` declares none, an omission: required there.
//!
//! A parameter never takes a word that some row has as a literal at the same depth (`GET
//! /invoices/mapwithorder` is not an invoice id: unknown), and a case variant of such a word
//! is refused (400), so no spelling of a path gets a broader decision than its canonical form.

use std::sync::OnceLock;

use super::super::canonical::{ambiguous, Verb};
use super::super::routes::is_key;
use super::super::scope::{family, Family, Operation, Scope, Subs};
use super::super::Rejection;
use super::{Operations, Product, PRODUCTS};

/// Where a request's organization id comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrgRule {
    /// The query's `organization_id`, required.
    Query,
    /// The path segment at this index (`/organizations/{organization_id}`); a query one, if
    /// given, must name the same organization.
    Path(usize),
    /// None needed (listing organizations); a query one, if given, is checked.
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pat {
    Lit(&'static str),
    Param,
}

#[derive(Debug)]
struct Row {
    verbs: u8,
    pats: Vec<Pat>,
    scope: Scope,
    org: OrgRule,
}

/// One product's operations.
#[derive(Debug)]
pub(crate) struct OpTable {
    /// Rows by segment count, most specific first.
    by_len: Vec<Vec<Row>>,
    /// The literal words at each depth, sorted.
    literals: Vec<Vec<&'static str>>,
    families: Vec<Family>,
    operations: usize,
}

/// What the table says about one method + path.
#[derive(Debug)]
pub(crate) enum TableMatch {
    /// The operation's scope and where its organization id comes from.
    Found(Scope, OrgRule),
    /// No operation of the table has this method and path.
    Unknown,
    /// A case variant of a fixed word: 400.
    Ambiguous(Rejection),
}

static TABLES: [OnceLock<Option<OpTable>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// The table of `product` (`None` for CRM), read on first use.
pub(super) fn of(product: &'static Product) -> Option<&'static OpTable> {
    let index = PRODUCTS.iter().position(|p| std::ptr::eq(p, product))?;
    let Operations::Table(text) = product.operations else {
        return None;
    };
    TABLES
        .get(index)?
        .get_or_init(|| parse(product, text).ok())
        .as_ref()
}

fn verb_bit(verb: Verb) -> u8 {
    match verb {
        Verb::Get | Verb::Head => 1,
        Verb::Post => 2,
        Verb::Put => 4,
        Verb::Patch => 8,
        Verb::Delete => 16,
    }
}

fn method_bit(text: &str) -> Option<u8> {
    Some(match text {
        "GET" => 1,
        "POST" => 2,
        "PUT" => 4,
        "PATCH" => 8,
        "DELETE" => 16,
        _ => return None,
    })
}

/// Reads an operation table; `Err` names the first line that is not a valid row.
pub(crate) fn parse(product: &Product, text: &'static str) -> Result<OpTable, String> {
    let root = format!(
        "/{}/{}",
        product.prefix,
        product.versions.first().unwrap_or(&"")
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut families: Vec<&'static str> = Vec::new();
    let mut operations = 0;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.starts_with("method\t") || line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("{}: line {}: {what}", product.name, number + 1);
        let cols: Vec<&'static str> = line.split('\t').collect();
        let [method, path, _op_id, scope, org, ..] = cols[..] else {
            return Err(bad("fewer than five columns"));
        };
        let verbs = method_bit(method).ok_or_else(|| bad("unknown method"))?;
        let rest = path
            .strip_prefix(root.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| bad("path outside the product's root"))?;
        let mut pats = Vec::new();
        let mut org_rule = match org {
            "required" => OrgRule::Query,
            "path" | "absent" => OrgRule::Optional,
            _ => return Err(bad("organization_id is not required, path or absent")),
        };
        for (i, seg) in rest.split('/').enumerate() {
            if seg == "{organization_id}" {
                org_rule = OrgRule::Path(i);
            }
            pats.push(if seg.starts_with('{') || seg.starts_with('(') {
                Pat::Param
            } else if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                Pat::Lit(seg)
            } else {
                return Err(bad("path segment is neither a word nor a parameter"));
            });
        }
        // Listing organizations needs none (Inventory's spec says required: it is not).
        if verbs == 1 && pats == [Pat::Lit("organizations")] {
            org_rule = OrgRule::Optional;
        }
        // Books declares none here; every other operation on a record of an organization does.
        if org == "absent" && pats.first() == Some(&Pat::Lit("salesreceipts")) {
            org_rule = OrgRule::Query;
        }
        let scope = table_scope(product, scope, &mut families).ok_or_else(|| bad("scope"))?;
        operations += 1;
        match rows.iter().find(|r| r.verbs == verbs && r.pats == pats) {
            Some(same) if same.scope == scope => continue,
            Some(_) => return Err(bad("declared twice with different scopes")),
            None => rows.push(Row {
                verbs,
                pats,
                scope,
                org: org_rule,
            }),
        }
    }
    let depth = rows.iter().map(|r| r.pats.len()).max().unwrap_or(0);
    let mut literals: Vec<Vec<&'static str>> = vec![Vec::new(); depth];
    let mut by_len: Vec<Vec<Row>> = (0..=depth).map(|_| Vec::new()).collect();
    for row in rows {
        for (i, p) in row.pats.iter().enumerate() {
            if let Pat::Lit(word) = p {
                literals[i].push(word);
            }
        }
        by_len[row.pats.len()].push(row);
    }
    for words in &mut literals {
        words.sort_unstable();
        words.dedup();
    }
    for bucket in &mut by_len {
        // Stable: literal before parameter, left to right; table order otherwise.
        bucket.sort_by_key(|r| {
            r.pats
                .iter()
                .map(|p| matches!(p, Pat::Param))
                .collect::<Vec<_>>()
        });
    }
    let mut families: Vec<Family> = families
        .into_iter()
        .map(|name| family(product.service, name, Subs::None, false))
        .collect();
    families.push(family(
        product.service,
        super::super::scope::FULL_ACCESS,
        Subs::None,
        false,
    ));
    Ok(OpTable {
        by_len,
        literals,
        families,
        operations,
    })
}

/// `ZohoBooks.invoices.CREATE` → the scope, its family recorded.
fn table_scope(
    product: &Product,
    text: &'static str,
    families: &mut Vec<&'static str>,
) -> Option<Scope> {
    let mut parts = text.split('.');
    let (service, fam, op) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || service != product.service.as_str() || fam.is_empty() {
        return None;
    }
    // Inventory's `salesreturns.GET` (spec defect D1): READ is meant.
    let op = if op == "GET" {
        Operation::Read
    } else {
        Operation::parse(op).filter(|o| o.as_str() == op)?
    };
    if !families.contains(&fam) {
        families.push(fam);
    }
    Some(Scope::from_parts(product.service, fam, None, op))
}

impl OpTable {
    /// The families named by the table, plus `fullaccess`.
    pub(crate) fn families(&self) -> &[Family] {
        &self.families
    }

    /// How many operations the table lists (duplicates counted).
    pub(crate) fn operations(&self) -> usize {
        self.operations
    }

    /// Classifies the segments after `/{prefix}/{version}/`.
    pub(crate) fn classify(&self, verb: Verb, segments: &[&str]) -> TableMatch {
        let bit = verb_bit(verb);
        let Some(bucket) = self.by_len.get(segments.len()) else {
            return TableMatch::Unknown;
        };
        // A case variant of a literal at its depth is refused whatever the rows say.
        for (depth, seg) in segments.iter().enumerate() {
            let words = &self.literals[depth];
            if words.binary_search(seg).is_err() {
                if let Some(word) = words.iter().find(|w| w.eq_ignore_ascii_case(seg)) {
                    return TableMatch::Ambiguous(ambiguous(seg, word));
                }
            }
        }
        for row in bucket {
            if row.verbs & bit == 0 {
                continue;
            }
            let fits = row
                .pats
                .iter()
                .zip(segments)
                .enumerate()
                .all(|(depth, (p, seg))| match p {
                    Pat::Lit(word) => word == seg,
                    Pat::Param => is_key(seg) && self.literals[depth].binary_search(seg).is_err(),
                });
            if fits {
                return TableMatch::Found(row.scope, row.org);
            }
        }
        TableMatch::Unknown
    }
}
