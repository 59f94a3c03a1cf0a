//! Why the quota gate refused a request. The quota service's own error type: the proxy's edge
//! maps it to an HTTP answer once (429 with a `Retry-After` of [`Refusal::retry_after_secs`]), so
//! `quota/` never names a type of a layer above it.

/// A request the quota gate did not admit (nothing was sent to Zoho, nothing was counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The organization's 60-second window is full for longer than `queue_timeout`
    /// (the proxy answers `429 PROXY_RATE_LIMITED`).
    #[error(
        "{product} organization {organization} has used its {limit} requests a minute \
         (limits.requests_per_minute.{product}); retry in {retry_after_secs} s, or spread the \
         requests out"
    )]
    RateLimited {
        /// `books` or `inventory`.
        product: &'static str,
        /// The organization id.
        organization: String,
        /// The limit in force (`limits.requests_per_minute.<product>`).
        limit: u32,
        /// Seconds until a slot frees.
        retry_after_secs: u64,
    },
    /// The organization's calls of the rolling 24 hours reached the budget
    /// (`429 PROXY_DAILY_CALLS_EXHAUSTED`).
    #[error(
        "{product} organization {organization} has used its {limit} calls a day \
         (limits.daily_calls.{product}); retry in {retry_after_secs} s, when the oldest calls \
         leave the rolling 24 hours, or raise the budget if the organization's plan allows more"
    )]
    DailyCallsExhausted {
        /// `books` or `inventory`.
        product: &'static str,
        /// The organization id.
        organization: String,
        /// The budget in force (`limits.daily_calls.<product>`).
        limit: u64,
        /// Seconds until a call fits again.
        retry_after_secs: u64,
    },
    /// Zoho answered 429 for this organization and the back-off still runs
    /// (`429 PROXY_ZOHO_THROTTLED`).
    #[error(
        "Zoho is throttling {product} organization {organization} (it answered 429); retry in \
         {retry_after_secs} s, and lower limits.requests_per_minute.{product} if this recurs"
    )]
    ZohoThrottled {
        /// `books` or `inventory`.
        product: &'static str,
        /// The organization id.
        organization: String,
        /// Seconds left of the back-off.
        retry_after_secs: u64,
    },
}

impl Refusal {
    /// The `Retry-After` to send, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::RateLimited {
                retry_after_secs, ..
            }
            | Refusal::DailyCallsExhausted {
                retry_after_secs, ..
            }
            | Refusal::ZohoThrottled {
                retry_after_secs, ..
            } => *retry_after_secs,
        }
    }

    /// The reason label of `zoho_proxy_org_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::DailyCallsExhausted { .. } => "daily_calls",
            Refusal::ZohoThrottled { .. } => "zoho_throttled",
        }
    }
}
