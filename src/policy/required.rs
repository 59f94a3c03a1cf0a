//! [`Required`]: the set of scopes one request needs, kept inline (no heap) for up to four
//! scopes, plus the marker for requests the classifier cannot map to any scope.
//!
//! Owns only the collection; what goes into it is decided by the classifier.

use std::fmt;

use super::scope::Scope;

const INLINE: usize = 4;

/// Why a request has no scopes: it is not something the policy can grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unclassified {
    /// A CRM path (under `/crm/`) the classifier does not know: denied by default, 403
    /// `PROXY_UNKNOWN_OPERATION`.
    UnknownOperation,
    /// A path outside the CRM API (`/`, `/oauth/...`, `/books/...`): 403 `PROXY_NOT_CRM`.
    NotCrm,
}

/// The scopes one request needs (all of them), deduplicated, in classification order.
///
/// No heap allocation for up to four scopes. When the request could not be classified at all,
/// the list is empty and [`Required::unclassified`] says why; no allow entry covers such a
/// request. Displays as comma-separated scope strings (`ZohoCRM.modules.leads.READ, ...`).
#[derive(Clone, PartialEq, Eq)]
pub struct Required {
    inline: [Scope; INLINE],
    len: usize,
    spill: Vec<Scope>,
    unclassified: Option<Unclassified>,
}

impl Required {
    /// An empty set.
    pub fn new() -> Required {
        Required {
            inline: [Scope::PLACEHOLDER; INLINE],
            len: 0,
            spill: Vec::new(),
            unclassified: None,
        }
    }

    /// The marker set for a request that maps to no scope.
    pub fn unclassified(reason: Unclassified) -> Required {
        Required {
            unclassified: Some(reason),
            ..Required::new()
        }
    }

    /// Why the request maps to no scope, if that is the case.
    pub fn unclassified_reason(&self) -> Option<Unclassified> {
        self.unclassified
    }

    /// Adds a scope unless it is already present.
    pub fn push(&mut self, scope: Scope) {
        if self.contains(&scope) {
            return;
        }
        if self.len < INLINE {
            self.inline[self.len] = scope;
            self.len += 1;
        } else {
            self.spill.push(scope);
        }
    }

    /// Adds every scope of `other` (and keeps its unclassified marker if set).
    pub fn extend_from(&mut self, other: &Required) {
        for scope in other.iter() {
            self.push(*scope);
        }
        if self.unclassified.is_none() {
            self.unclassified = other.unclassified;
        }
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.len + self.spill.len()
    }

    /// Whether there are no scopes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scopes, in classification order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> + '_ {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }

    /// The scopes as canonical strings (for JSON bodies and logs).
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(Scope::to_string).collect()
    }
}

impl Default for Required {
    fn default() -> Self {
        Required::new()
    }
}

impl<'r> IntoIterator for &'r Required {
    type Item = &'r Scope;
    type IntoIter = std::iter::Chain<std::slice::Iter<'r, Scope>, std::slice::Iter<'r, Scope>>;

    fn into_iter(self) -> Self::IntoIter {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }
}

impl Required {
    /// The set's text as [`Display`](fmt::Display) writes it, built without the formatting
    /// machinery (the access log needs it for every request).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(48);
        self.each_piece(|p| {
            out.push_str(p);
            Ok(())
        })
        .ok();
        out
    }

    fn each_piece(&self, mut put: impl FnMut(&str) -> fmt::Result) -> fmt::Result {
        if let Some(reason) = self.unclassified {
            return put(match reason {
                Unclassified::UnknownOperation => "(unknown operation)",
                Unclassified::NotCrm => "(outside the Zoho APIs this proxy serves)",
            });
        }
        for (n, scope) in self.iter().enumerate() {
            if n > 0 {
                put(", ")?;
            }
            scope.pieces().try_for_each(&mut put)?;
        }
        Ok(())
    }
}

impl fmt::Display for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.each_piece(|p| f.write_str(p))
    }
}

impl fmt::Debug for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Required({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_and_spills_past_four() {
        let names = [
            "ZohoCRM.modules.leads.READ",
            "ZohoCRM.modules.contacts.READ",
            "ZohoCRM.modules.leads.READ",
            "ZohoCRM.modules.deals.READ",
            "ZohoCRM.modules.calls.READ",
            "ZohoCRM.modules.tasks.READ",
        ];
        let mut req = Required::new();
        for n in names {
            req.push(Scope::parse(n).expect("test scope parses"));
        }
        assert_eq!(req.len(), 5, "duplicate leads.READ is stored once");
        assert_eq!(
            req.to_string(),
            "ZohoCRM.modules.leads.READ, ZohoCRM.modules.contacts.READ, ZohoCRM.modules.deals.READ, \
             ZohoCRM.modules.calls.READ, ZohoCRM.modules.tasks.READ",
            "display keeps insertion order across the inline/heap boundary"
        );
        assert_eq!(
            req.render(),
            req.to_string(),
            "render writes what Display writes"
        );
    }

    #[test]
    fn render_matches_display_for_sub_scopes_and_single_scopes() {
        for names in [
            &["ZohoCRM.settings.fields.READ"][..],
            &["ZohoCRM.settings.fields.READ", "ZohoCRM.org.ALL"][..],
            &["ZohoCRM.modules.ALL", "ZohoCRM.users.READ"][..],
        ] {
            let mut req = Required::new();
            for n in names {
                req.push(Scope::parse(n).expect("test scope parses"));
            }
            assert_eq!(req.render(), names.join(", "));
            assert_eq!(req.render(), req.to_string());
        }
        assert_eq!(Required::new().render(), "");
    }

    #[test]
    fn unclassified_displays_its_reason() {
        let req = Required::unclassified(Unclassified::NotCrm);
        assert!(req.is_empty(), "an unclassified set holds no scope");
        assert_eq!(
            req.to_string(),
            "(outside the Zoho APIs this proxy serves)",
            "display names the reason"
        );
        assert_eq!(req.render(), "(outside the Zoho APIs this proxy serves)");
    }
}
