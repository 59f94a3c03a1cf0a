//! The organization ids a policy lets Books and Inventory requests name: the account's
//! `organizations:` list, narrowed per client. The check itself runs where the request is
//! classified (`table_eval.rs`).

use super::{products, scope, Policy, PRODUCTS};

/// Errors in an `organizations:` list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    /// `organizations: []` would refuse every Books and Inventory request.
    #[error(
        "the list is empty; name at least one organization id, or remove the key to allow any"
    )]
    Empty,
    /// Not a plain id.
    #[error("`{id}` is not an organization id (letters, digits, `_`, `-`, at most 64); write the id Zoho shows, e.g. `10234695`")]
    BadId {
        /// Position in the list, from 0.
        index: usize,
        /// The entry, escaped.
        id: String,
    },
    /// A client's list names an id its account's list does not.
    #[error("organization `{id}` is not in the account's `organizations:`; a client's list may only narrow it")]
    NotCovered {
        /// Position in the list, from 0.
        index: usize,
        /// The id.
        id: String,
    },
}

impl Policy {
    /// The same policy, letting Books and Inventory requests name only `organizations`
    /// (`None`: any). Each id must be a plain organization id; with `narrow`, every id must
    /// also be in this policy's list (a client's list narrows its account's).
    pub fn with_organizations(
        &self,
        organizations: Option<&[String]>,
        narrow: bool,
    ) -> Result<Policy, OrganizationError> {
        let Some(list) = organizations else {
            return Ok(self.clone());
        };
        if list.is_empty() {
            return Err(OrganizationError::Empty);
        }
        for (index, id) in list.iter().enumerate() {
            if !products::valid_organization_id(id) {
                return Err(OrganizationError::BadId {
                    index,
                    id: scope::sanitize(id),
                });
            }
            if narrow {
                if let Some(own) = &self.organizations {
                    if !own.contains(id) {
                        return Err(OrganizationError::NotCovered {
                            index,
                            id: id.clone(),
                        });
                    }
                }
            }
        }
        let mut ids: Vec<String> = Vec::with_capacity(list.len());
        for id in list {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        Ok(Policy {
            organizations: Some(ids.into()),
            ..self.clone()
        })
    }

    /// Whether some allow entry grants a scope of a product that names organizations (Books,
    /// Inventory).
    pub fn allows_organization_products(&self) -> bool {
        self.allow.iter().any(|e| {
            PRODUCTS
                .iter()
                .any(|p| p.organization.is_some() && p.service == e.scope.service())
        })
    }

    /// The organization ids Books and Inventory requests may name (`None`: any).
    pub fn organizations(&self) -> Option<&[String]> {
        self.organizations.as_deref()
    }
}
