//! Fuzz target for the scope policy: arbitrary method + request target (or a COQL, bulk or
//! composite body) must never panic, and must satisfy the invariants in
//! `tests/policy_support/invariants.rs` (the same ones the proptest suite checks in CI).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zoho_auth_proxy::policy::Policy;

#[path = "../../tests/policy_support/invariants.rs"]
mod invariants;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(invariants::fuzz_policy)
}

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = invariants::check_input(policy(), data) {
        panic!("policy invariant violated: {violation}");
    }
});
