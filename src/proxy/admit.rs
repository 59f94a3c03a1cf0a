//! Admitting a decided request before it goes to Zoho: CRM requests are priced and charged to
//! the credit ledgers and take Zoho's concurrency slots; Books and Inventory requests take their
//! organization's turn in its window. Zoho's answer goes back to whichever admitted it.

use super::access_log::Access;
use super::error::ProxyError;
use super::send::Outgoing;
use crate::credits::Charge;
use crate::policy::products::LimitModel;
use crate::policy::{BodyView, CanonicalTarget};
use crate::state::{AccountRuntime, Runtime};
use crate::upstream::slots::SlotGuard;
use http::{HeaderMap, Method, StatusCode};

/// What an admitted request holds while it is with Zoho.
pub(super) enum Held {
    /// A CRM request: its credit charge and its concurrency slot (held until the response
    /// ends).
    Credits { charge: Charge, _slot: SlotGuard },
    /// A request to a product limited per organization (Books, Inventory): admitted by its
    /// organization's window, it spends no CRM credit and takes no CRM slot.
    PerOrganization,
}

/// Admits the request. CRM: prices it and charges its credits (refused, nothing sent, when a
/// budget or Zoho's 429 back-off says so; given back if the request never reaches Zoho), then
/// takes Zoho's concurrency slots (a heavy call takes its group slot first, so it never holds an
/// ordinary one while queued). Books and Inventory: the organization's request window.
pub(super) async fn admit(
    runtime: &Runtime,
    account: &AccountRuntime,
    access: &mut Access,
    method: &Method,
    target: CanonicalTarget<'_>,
    outgoing: &Outgoing,
) -> Result<Held, ProxyError> {
    if let LimitModel::PerOrganization { .. } = target.product.limits {
        access.credits = 0;
        if let Some(org) = target.organization {
            // Boxed: a wait for the window stays out of every CRM request's future.
            Box::pin(
                runtime
                    .quotas
                    .admit(&account.name, target.product.name, org),
            )
            .await?;
        }
        return Ok(Held::PerOrganization);
    }
    let body_view = match outgoing {
        Outgoing::Replayable(b) if b.is_empty() => BodyView::None,
        Outgoing::Replayable(b) => BodyView::Whole(b),
        Outgoing::Streaming(_) => BodyView::Streaming,
    };
    let (path, query) = (target.path, target.query);
    let cost = (runtime.credits).price(&account.name, method.as_str(), path, query, body_view);
    access.credits = cost.credits;
    let client = access.account.identified_client();
    let charge = runtime.credits.admit(&account.name, client, cost).await?;
    let permit = runtime
        .slots
        .take(&cost)
        .await
        .map_err(|busy| match busy.heavy {
            true => ProxyError::HeavyBusy,
            false => ProxyError::UpstreamBusy,
        })?;
    Ok(Held::Credits {
        charge,
        _slot: permit,
    })
}

/// Tells the service that admitted the request what Zoho answered (a 429 starts its back-off).
pub(super) async fn settle(
    runtime: &Runtime,
    account: &AccountRuntime,
    target: CanonicalTarget<'_>,
    held: &mut Held,
    status: StatusCode,
    headers: &HeaderMap,
) {
    match held {
        Held::Credits { charge, .. } => runtime.credits.on_response(charge, status, headers).await,
        Held::PerOrganization => {
            if let Some(org) = target.organization {
                let retry_after = headers.get(http::header::RETRY_AFTER).map(|v| v.as_bytes());
                let quotas = &runtime.quotas;
                let product = target.product.name;
                Box::pin(quotas.on_response(
                    &account.name,
                    product,
                    org,
                    status.as_u16(),
                    retry_after,
                ))
                .await;
            }
        }
    }
}
