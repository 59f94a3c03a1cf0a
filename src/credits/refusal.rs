//! Why the credit gate refused a request. The credits service's own error type: the proxy's
//! edge maps it to an HTTP answer once (`From<Refusal> for ProxyError` in `proxy/error.rs`), so
//! credits never names a type of a layer above it.

/// A request the credit gate did not admit (nothing was sent to Zoho).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The account has no ledger (it is not configured).
    #[error("unknown account {name}")]
    UnknownAccount {
        /// The name given.
        name: String,
    },
    /// A budget (`credits.daily_limit` or `clients[].credits_per_day`) has no room for the
    /// request's cost in the rolling day.
    #[error("the {budget} budget of {limit} credits a day is used up ({used} used, this request costs {cost})")]
    CreditsExhausted {
        /// `account NAME` or `client NAME`.
        budget: String,
        /// Its limit.
        limit: u64,
        /// Credits used in the window.
        used: u64,
        /// What the request costs.
        cost: u64,
        /// Seconds until enough credits age out.
        retry_after: u64,
    },
    /// Zoho answered 429 and its back-off for the account still runs.
    #[error("Zoho is throttling account {account}")]
    ZohoThrottled {
        /// Account name.
        account: String,
        /// Seconds left of the back-off.
        retry_after: u64,
    },
}
