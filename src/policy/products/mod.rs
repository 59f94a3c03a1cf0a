//! The Zoho products the proxy serves, as data: one row each in [`PRODUCTS`].
//!
//! A row holds what differs between products: the path prefix and API versions, the scope
//! service, the operation table, whether requests name an organization, how an invalid token
//! is reported, and the limit model. The classifier, the organization check, the token replay
//! and the request windows read the row; nothing branches on a product's name.
//!
//! CRM keeps its built-in route table (`routes/`, body-dependent scopes included). Books and
//! Inventory are classified from Zoho's official operation tables, embedded verbatim
//! (`tests/data/*-operations.tsv`, read by `table.rs`). Adding a product (Desk, Bigin) is a new
//! row, its operation table and its `Service` spelling; `docs/products.md` lists the steps.
//!
//! Must not: know about allow lists, config files or requests beyond method and path.

mod organization;
mod table;

use super::scope::{Family, Service};

pub(crate) use organization::{query_organization, valid_organization_id};
pub(crate) use table::{OrgRule, TableMatch};

/// How a product's API reports an invalid or expired access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidToken {
    /// HTTP 401 with this string in the body's `code` (CRM: `INVALID_TOKEN`).
    CodeText(&'static str),
    /// HTTP 401 with this number in the body's `code` (Books, Inventory: 57).
    CodeNumber(i64),
}

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidToken::CodeText(text) => f.write_str(text),
            InvalidToken::CodeNumber(n) => write!(f, "code {n}"),
        }
    }
}

/// How Zoho limits a product's use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitModel {
    /// API credits per org over a rolling day, and concurrency by edition (CRM).
    Credits,
    /// Requests per minute per organization (and daily calls by plan), answered with 429.
    PerOrganization {
        /// The default of `limits.requests_per_minute.<product>`.
        requests_per_minute: u32,
    },
}

/// Where a product's operations are classified.
#[derive(Clone, Copy, Debug)]
pub enum Operations {
    /// The built-in CRM route table (`policy/routes/`).
    Crm,
    /// An embedded operation table: Zoho's OpenAPI operations, one per line, as
    /// `method <TAB> path <TAB> operation_id <TAB> scope <TAB> organization_id <TAB> ...`.
    Table(&'static str),
}

/// One product the proxy serves.
#[derive(Debug)]
pub struct Product {
    /// Short name, used in config keys (`limits.requests_per_minute.books`), metrics and logs.
    pub name: &'static str,
    /// Its name for people (`Zoho Books`).
    pub title: &'static str,
    /// The first path segment (`/books/...`).
    pub prefix: &'static str,
    /// The API versions served (the second segment); CRM's own rule when empty.
    pub versions: &'static [&'static str],
    /// The scope service (`ZohoBooks`).
    pub service: Service,
    /// Where its operations are classified.
    pub operations: Operations,
    /// The query parameter naming the organization a request acts on, if the API takes one.
    pub organization: Option<&'static str>,
    /// How an invalid token is reported.
    pub invalid_token: InvalidToken,
    /// How Zoho limits its use.
    pub limits: LimitModel,
}

/// Every product, CRM first.
pub static PRODUCTS: [Product; 3] = [
    Product {
        name: "crm",
        title: "Zoho CRM",
        prefix: "crm",
        versions: &[],
        service: Service::Crm,
        operations: Operations::Crm,
        organization: None,
        invalid_token: InvalidToken::CodeText("INVALID_TOKEN"),
        limits: LimitModel::Credits,
    },
    Product {
        name: "books",
        title: "Zoho Books",
        prefix: "books",
        versions: &["v3"],
        service: Service::Books,
        operations: Operations::Table(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/books-v3-operations.tsv"
        ))),
        organization: Some("organization_id"),
        invalid_token: InvalidToken::CodeNumber(57),
        limits: LimitModel::PerOrganization {
            requests_per_minute: 100,
        },
    },
    Product {
        name: "inventory",
        title: "Zoho Inventory",
        prefix: "inventory",
        versions: &["v1"],
        service: Service::Inventory,
        operations: Operations::Table(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/inventory-v1-operations.tsv"
        ))),
        organization: Some("organization_id"),
        invalid_token: InvalidToken::CodeNumber(57),
        limits: LimitModel::PerOrganization {
            requests_per_minute: 100,
        },
    },
];

/// Zoho CRM's row.
pub fn crm() -> &'static Product {
    &PRODUCTS[0]
}

/// The product named `name` (`crm`, `books`, `inventory`).
pub fn by_name(name: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.name == name)
}

/// The product whose path prefix is exactly `segment`.
pub(crate) fn by_prefix(segment: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.prefix == segment)
}

/// The product whose prefix `segment` spells in another letter case (`/Books/...`).
pub(crate) fn by_prefix_ignoring_case(segment: &str) -> Option<&'static Product> {
    PRODUCTS
        .iter()
        .find(|p| p.prefix.eq_ignore_ascii_case(segment))
}

/// The table-driven product whose prefix is the path's first segment, exactly.
pub(crate) fn table_product(path: &str) -> Option<&'static Product> {
    let first = path.get(1..)?.split('/').next()?;
    by_prefix(first).filter(|p| matches!(p.operations, Operations::Table(_)))
}

/// Every product's root, for messages: `/crm/..., /books/v3/..., /inventory/v1/...`.
pub(crate) fn roots() -> String {
    PRODUCTS
        .iter()
        .map(|p| match p.versions.first() {
            Some(v) => format!("/{}/{v}/...", p.prefix),
            None => format!("/{}/...", p.prefix),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The products limited per organization, with their default requests per minute.
pub fn per_organization() -> impl Iterator<Item = (&'static Product, u32)> {
    PRODUCTS.iter().filter_map(|p| match p.limits {
        LimitModel::PerOrganization {
            requests_per_minute,
        } => Some((p, requests_per_minute)),
        LimitModel::Credits => None,
    })
}

// Products are rows of one static table: the same row is the same product.
impl PartialEq for Product {
    fn eq(&self, other: &Product) -> bool {
        self.name == other.name
    }
}

impl Eq for Product {}

impl Product {
    /// The product's operation table (`None` for CRM, or when the embedded table is broken,
    /// which a test rules out).
    pub(crate) fn table(&'static self) -> Option<&'static table::OpTable> {
        table::of(self)
    }

    /// How many operations its table lists (`None` for CRM's built-in table).
    pub fn operations(&'static self) -> Option<usize> {
        self.table().map(|t| t.operations())
    }

    /// The path prefix with its version, as documented (`/books/v3`).
    pub fn root(&self) -> String {
        match self.versions.first() {
            Some(v) => format!("/{}/{v}", self.prefix),
            None => format!("/{}/v8", self.prefix),
        }
    }

    /// Whether a 401 body reports an invalid token in this product's envelope.
    pub fn is_invalid_token(&self, body: &[u8]) -> bool {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        let code = value.get("code");
        match self.invalid_token {
            InvalidToken::CodeText(text) => code.and_then(|c| c.as_str()) == Some(text),
            InvalidToken::CodeNumber(n) => code.and_then(|c| c.as_i64()) == Some(n),
        }
    }
}

/// The families of a table-driven product's service (empty for the built-in services).
pub(crate) fn table_families(service: Service) -> &'static [Family] {
    PRODUCTS
        .iter()
        .filter(|p| p.service == service)
        .find_map(|p| p.table())
        .map_or(&[], |t| t.families())
}

#[cfg(test)]
mod tests;
