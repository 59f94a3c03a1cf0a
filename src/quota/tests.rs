//! The quota with an injected clock: local mode only (the fleet is `tests/quota_redis.rs`).

use super::window::{Slot, Window, DAY_MINUTES, MAX_QUEUED, MINUTE_MS};
use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

const ACCOUNT: &str = "books-eu";
/// A minute boundary plus 5 s, so minute arithmetic is visible.
const T0: u64 = 29_000_000 * MINUTE_MS + 5_000;

fn settings(
    rpm: &[(&'static str, u32)],
    daily: &[(&'static str, u64)],
    queue: u64,
) -> QuotaSettings {
    let mut accounts = FastMap::default();
    accounts.insert(
        ACCOUNT.to_string(),
        OrgLimits {
            requests_per_minute: rpm.to_vec(),
            daily_calls: daily.to_vec(),
        },
    );
    QuotaSettings {
        accounts,
        queue_timeout: Duration::from_secs(queue),
    }
}

/// A hand-driven clock.
struct Manual(Arc<AtomicU64>);

impl Manual {
    fn new() -> (Manual, Clock) {
        let now = Arc::new(AtomicU64::new(T0));
        let c = now.clone();
        (Manual(now), Arc::new(move || c.load(Ordering::SeqCst)))
    }
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// A clock that follows tokio's (paused) time, so `admit`'s sleeps move it.
fn tokio_clock() -> Clock {
    let origin = tokio::time::Instant::now();
    Arc::new(move || T0 + origin.elapsed().as_millis() as u64)
}

fn quotas(s: QuotaSettings, clock: Clock) -> (Quotas, Registry) {
    let mut registry = Registry::with_prefix("zoho_proxy");
    let q = Quotas::with_clock(s, &HashMap::new(), &mut registry, clock);
    (q, registry)
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("metrics encode");
    out
}

#[tokio::test]
async fn a_burst_gets_exactly_the_limit_and_the_rest_learn_when_to_retry() {
    let (clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 5)], &[], 0), c);
    for i in 0..5 {
        let a = q.admit(ACCOUNT, "books", "600").await;
        assert_eq!(
            a,
            Ok(Admitted {
                waited: Duration::ZERO
            }),
            "request {i} fits"
        );
    }
    for _ in 0..3 {
        let refused = q.admit(ACCOUNT, "books", "600").await.expect_err("full");
        assert_eq!(
            refused,
            Refusal::RateLimited {
                product: "books",
                organization: "600".into(),
                limit: 5,
                retry_after_secs: 60,
            },
            "the window frees 60 s after the first admission"
        );
    }
    clock.advance(20_500);
    let refused = q.admit(ACCOUNT, "books", "600").await.expect_err("full");
    assert_eq!(refused.retry_after_secs(), 40, "39.5 s rounded up");
    clock.advance(39_500);
    for i in 0..5 {
        assert!(
            q.admit(ACCOUNT, "books", "600").await.is_ok(),
            "60 s after the burst its five slots are free ({i})"
        );
    }
    assert!(
        q.admit(ACCOUNT, "books", "600").await.is_err(),
        "and no more"
    );
    let row = &q.snapshot()[0];
    assert_eq!(
        (row.window_used, row.window_limit, row.refused_rate_limited),
        (5, Some(5), 5),
        "the snapshot counts the window and the refusals (refusals are not in the window)"
    );
}

#[tokio::test]
async fn the_window_frees_a_slot_exactly_60_s_after_each_admission() {
    let (clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 2)], &[], 0), c);
    assert!(q.admit(ACCOUNT, "books", "1").await.is_ok());
    clock.advance(10_000);
    assert!(q.admit(ACCOUNT, "books", "1").await.is_ok());
    clock.advance(49_999);
    assert_eq!(
        q.admit(ACCOUNT, "books", "1")
            .await
            .expect_err("1 ms early")
            .retry_after_secs(),
        1
    );
    clock.advance(1);
    assert!(q.admit(ACCOUNT, "books", "1").await.is_ok(), "at 60 s");
    assert_eq!(
        q.admit(ACCOUNT, "books", "1")
            .await
            .expect_err("the second's slot frees at 70 s")
            .retry_after_secs(),
        10
    );
}

#[tokio::test(start_paused = true)]
async fn requests_wait_in_order_for_a_slot_within_the_queue_timeout() {
    let (q, _r) = quotas(settings(&[("books", 2)], &[], 90), tokio_clock());
    let started = tokio::time::Instant::now();
    let results =
        futures_util::future::join_all((0..5).map(|_| q.admit(ACCOUNT, "books", "7"))).await;
    let waited: Vec<Result<u64, u64>> = results
        .iter()
        .map(|r| match r {
            Ok(a) => Ok(a.waited.as_secs()),
            Err(e) => Err(e.retry_after_secs()),
        })
        .collect();
    assert_eq!(
        waited,
        vec![Ok(0), Ok(0), Ok(60), Ok(60), Err(120)],
        "first come, first served: two now, two after 60 s, the fifth would wait 120 s > 90 s"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(60),
        "the waiting requests slept until their slot"
    );
    assert_eq!(
        q.snapshot()[0].window_used,
        2,
        "the first two left the window when the waiting two went"
    );
}

#[tokio::test]
async fn one_organization_or_product_does_not_hold_back_another() {
    let (_clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 1), ("inventory", 1)], &[], 0), c);
    assert!(q.admit(ACCOUNT, "books", "1").await.is_ok());
    assert!(
        q.admit(ACCOUNT, "books", "1").await.is_err(),
        "org 1 is full"
    );
    assert!(
        q.admit(ACCOUNT, "books", "2").await.is_ok(),
        "org 2 has its own window"
    );
    assert!(
        q.admit(ACCOUNT, "inventory", "1").await.is_ok(),
        "Inventory counts org 1 apart from Books"
    );
    assert!(
        q.admit(ACCOUNT, "crm", "1").await.is_ok() && q.admit(ACCOUNT, "crm", "1").await.is_ok(),
        "a product without a limit is not limited"
    );
    assert!(
        q.admit("another-account", "books", "1").await.is_ok(),
        "an account without limits is not limited"
    );
    let rows: Vec<(&str, String)> = q
        .snapshot()
        .into_iter()
        .map(|r| (r.product, r.organization))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("books", "1".to_string()),
            ("books", "2".to_string()),
            ("inventory", "1".to_string())
        ],
        "only limited (product, organization) pairs are tracked"
    );
}

#[tokio::test]
async fn the_daily_budget_refuses_until_the_oldest_calls_leave_the_day() {
    let (clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[], &[("books", 3)], 0), c);
    assert!(q.admit(ACCOUNT, "books", "9").await.is_ok());
    clock.advance(2 * MINUTE_MS);
    assert!(q.admit(ACCOUNT, "books", "9").await.is_ok());
    assert!(q.admit(ACCOUNT, "books", "9").await.is_ok());
    let now = T0 + 2 * MINUTE_MS;
    let first_minute = T0 / MINUTE_MS;
    let back_at = (first_minute + DAY_MINUTES) * MINUTE_MS;
    assert_eq!(
        q.admit(ACCOUNT, "books", "9").await,
        Err(Refusal::DailyCallsExhausted {
            product: "books",
            organization: "9".into(),
            limit: 3,
            retry_after_secs: (back_at - now).div_ceil(1000),
        }),
        "the first call's minute leaves the rolling day at the end of minute + 1440"
    );
    assert_eq!(q.snapshot()[0].daily_used, 3);
    assert_eq!(q.snapshot()[0].refused_daily_calls, 1);
    clock.advance(back_at - now);
    assert!(
        q.admit(ACCOUNT, "books", "9").await.is_ok(),
        "one call back, one call allowed"
    );
    assert!(q.admit(ACCOUNT, "books", "9").await.is_err());
}

#[tokio::test]
async fn zohos_429_starts_a_back_off_and_a_success_resets_it() {
    let (clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 100)], &[], 0), c);
    assert!(q.admit(ACCOUNT, "books", "5").await.is_ok());
    q.on_response(ACCOUNT, "books", "5", 429, None).await;
    assert_eq!(
        q.admit(ACCOUNT, "books", "5").await,
        Err(Refusal::ZohoThrottled {
            product: "books",
            organization: "5".into(),
            retry_after_secs: 1,
        }),
        "without Retry-After the back-off starts at 1 s"
    );
    assert!(
        q.admit(ACCOUNT, "books", "6").await.is_ok(),
        "another organization is not throttled"
    );
    clock.advance(1_000);
    assert!(
        q.admit(ACCOUNT, "books", "5").await.is_ok(),
        "over after 1 s"
    );
    q.on_response(ACCOUNT, "books", "5", 429, None).await;
    assert_eq!(
        q.admit(ACCOUNT, "books", "5")
            .await
            .expect_err("second 429")
            .retry_after_secs(),
        2,
        "a second 429 in a row doubles it"
    );
    q.on_response(ACCOUNT, "books", "5", 429, Some(b"7")).await;
    assert_eq!(
        q.admit(ACCOUNT, "books", "5")
            .await
            .expect_err("Zoho's Retry-After")
            .retry_after_secs(),
        7,
        "Zoho's Retry-After wins"
    );
    assert_eq!(q.snapshot()[0].backoff_remaining_secs, Some(7));
    q.on_response(ACCOUNT, "books", "5", 200, None).await;
    assert!(
        q.admit(ACCOUNT, "books", "5").await.is_ok(),
        "a success ends the back-off"
    );
    q.on_response(ACCOUNT, "books", "5", 429, None).await;
    assert_eq!(
        q.admit(ACCOUNT, "books", "5")
            .await
            .expect_err("429 after a success")
            .retry_after_secs(),
        1,
        "and restarts the doubling from 1 s"
    );
    assert_eq!(q.snapshot()[0].refused_zoho_throttled, 4);
}

#[tokio::test]
async fn a_reload_keeps_the_counts_and_applies_the_new_limit() {
    let (_clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 3)], &[], 0), c);
    for _ in 0..3 {
        assert!(q.admit(ACCOUNT, "books", "1").await.is_ok());
    }
    assert!(q.admit(ACCOUNT, "books", "1").await.is_err());
    q.apply(settings(&[("books", 5)], &[], 0));
    assert!(q.admit(ACCOUNT, "books", "1").await.is_ok());
    assert!(q.admit(ACCOUNT, "books", "1").await.is_ok());
    assert_eq!(
        q.admit(ACCOUNT, "books", "1")
            .await
            .expect_err("5 in the window"),
        Refusal::RateLimited {
            product: "books",
            organization: "1".into(),
            limit: 5,
            retry_after_secs: 60
        },
        "the three counted before the reload still count"
    );
    q.apply(settings(&[("books", 2)], &[], 0));
    assert!(
        q.admit(ACCOUNT, "books", "1").await.is_err(),
        "a lowered limit applies at once"
    );
}

#[tokio::test]
async fn metrics_count_per_organization_up_to_the_label_cap() {
    let (_clock, c) = Manual::new();
    let (q, registry) = quotas(settings(&[("books", 1)], &[], 0), c);
    for org in 0..MAX_LABELLED_ORGS + 5 {
        assert!(q.admit(ACCOUNT, "books", &org.to_string()).await.is_ok());
    }
    assert!(q.admit(ACCOUNT, "books", "0").await.is_err());
    assert!(q.admit(ACCOUNT, "books", "1003").await.is_err());
    let text = metrics_text(&registry);
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("zoho_proxy_org_requests_total{"))
        .collect();
    assert_eq!(
        requests.len(),
        MAX_LABELLED_ORGS + 1,
        "1,000 organizations with their own label, then `other`"
    );
    assert!(
        text.contains(
            "zoho_proxy_org_requests_total{account=\"books-eu\",product=\"books\",organization=\"other\"} 5"
        ),
        "the five past the cap share `other`:\n{}",
        requests.last().copied().unwrap_or_default()
    );
    assert!(text.contains(
        "zoho_proxy_org_refused_total{account=\"books-eu\",product=\"books\",organization=\"0\",reason=\"rate_limited\"} 1"
    ));
    assert!(text.contains(
        "zoho_proxy_org_refused_total{account=\"books-eu\",product=\"books\",organization=\"other\",reason=\"rate_limited\"} 1"
    ));
    assert!(text.contains("zoho_proxy_org_window_used{product=\"books\",organization=\"0\"} 1"));
    assert!(
        !text.contains("zoho_proxy_org_window_used{product=\"books\",organization=\"other\"}"),
        "no window gauge for `other`"
    );
    for help in [
        "# HELP zoho_proxy_org_requests ",
        "# HELP zoho_proxy_org_refused ",
        "# HELP zoho_proxy_org_window_used ",
    ] {
        assert!(text.contains(help), "{help} has a help text");
    }
}

#[test]
fn refusals_say_what_happened_and_name_the_key() {
    let r = Refusal::RateLimited {
        product: "books",
        organization: "600".into(),
        limit: 100,
        retry_after_secs: 12,
    };
    let text = r.to_string();
    for part in [
        "books",
        "600",
        "100",
        "limits.requests_per_minute.books",
        "12 s",
    ] {
        assert!(text.contains(part), "{text:?} names {part}");
    }
    let d = Refusal::DailyCallsExhausted {
        product: "inventory",
        organization: "7".into(),
        limit: 1000,
        retry_after_secs: 3,
    }
    .to_string();
    assert!(d.contains("limits.daily_calls.inventory") && d.contains("1000") && d.contains(" 7 "));
    assert_eq!(
        Refusal::ZohoThrottled {
            product: "books",
            organization: "7".into(),
            retry_after_secs: 3
        }
        .reason(),
        "zoho_throttled"
    );
}

#[test]
fn the_window_caps_waiting_reservations() {
    let mut w = Window::default();
    for _ in 0..1 + MAX_QUEUED {
        assert!(matches!(w.reserve(T0, 1, u64::MAX), Slot::At { .. }));
    }
    assert_eq!(w.queued(T0), MAX_QUEUED);
    assert!(
        matches!(w.reserve(T0, 1, u64::MAX), Slot::Full { .. }),
        "beyond the queue cap a request is refused however long it may wait"
    );
    assert!(
        matches!(
            Window::default().reserve(T0, 0, u64::MAX),
            Slot::Full { wait_ms: 60_000 }
        ),
        "a limit of 0 admits nothing"
    );
}

#[test]
fn idle_organizations_are_dropped_when_the_map_is_full() {
    let (clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 1)], &[], 0), c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for org in 0..MAX_TRACKED_ORGS {
            assert!(q.admit(ACCOUNT, "books", &org.to_string()).await.is_ok());
        }
    });
    // A day and a minute later nothing is in any window.
    clock.advance((DAY_MINUTES + 1) * MINUTE_MS);
    rt.block_on(async {
        assert!(q.admit(ACCOUNT, "books", "new").await.is_ok());
    });
    assert_eq!(
        q.snapshot().len(),
        1,
        "the idle organizations made room for the new one"
    );
}

#[tokio::test]
async fn a_product_without_limits_is_not_counted_but_waits_out_zohos_back_off() {
    let (clock, c) = Manual::new();
    let (q, _r) = quotas(settings(&[("books", 1)], &[], 0), c);
    for _ in 0..3 {
        assert!(q.admit(ACCOUNT, "inventory", "3").await.is_ok());
    }
    assert!(
        q.snapshot().is_empty(),
        "nothing tracked for an unlimited product"
    );
    q.on_response(ACCOUNT, "inventory", "3", 429, Some(b"5"))
        .await;
    assert_eq!(
        q.admit(ACCOUNT, "inventory", "3")
            .await
            .expect_err("Zoho's back-off")
            .retry_after_secs(),
        5,
        "Zoho's 429 holds for an unlimited product too"
    );
    clock.advance(5_000);
    assert!(q.admit(ACCOUNT, "inventory", "3").await.is_ok());
}

#[tokio::test]
async fn zero_requests_a_minute_is_no_window() {
    let (_clock, c) = Manual::new();
    // `limits.requests_per_minute: {books: 0}` turns the window off, as documented.
    let (q, _r) = quotas(settings(&[("books", 0)], &[], 0), c);
    for _ in 0..30 {
        assert!(q.admit(ACCOUNT, "books", "7").await.is_ok());
    }
}
