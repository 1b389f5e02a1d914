//! The fill forecast, the merchant's levers, the advice and the insights, end to end over
//! gRPC with an injected clock (issue 17).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tonic::Code;

use crate::common::*;
use c2m_domain::ManualClock;
use c2m_proto::v1 as pb;

/// A campaign of `threshold` units, a deadline `days` after `start`, one price, deposits of
/// a quarter.
async fn campaign(
    c: &mut Clients,
    key: &str,
    threshold: i64,
    start: DateTime<Utc>,
    days: i64,
) -> pb::Campaign {
    let mut req = campaign_request(key, threshold);
    req.max_per_order = None;
    req.deadline = Some(ts(start + Duration::days(days)));
    created(c, req).await
}

/// A campaign for the catalogue's `lever-kettle` (imported first) with a deadline five
/// days after `start`.
async fn kettle_campaign(
    c: &mut Clients,
    key: &str,
    threshold: i64,
    start: DateTime<Utc>,
) -> pb::Campaign {
    let mut req = campaign_request(key, threshold);
    req.sku = "lever-kettle".into();
    req.max_per_order = None;
    req.deadline = Some(ts(start + Duration::days(5)));
    created(c, req).await
}

/// The advice at the defaults (margin 0.15, target 0.8).
async fn advice(c: &mut Clients, campaign: &str) -> pb::Advice {
    c.levers
        .get_advice(pb::GetAdviceRequest {
            campaign_id: campaign.to_owned(),
            margin: 0.15,
            target_probability: 0.8,
        })
        .await
        .expect("advice")
        .into_inner()
}

/// Places `orders` orders of `units` each, one every `every` of the clock.
async fn orders(
    c: &mut Clients,
    clock: &ManualClock,
    campaign: &str,
    tag: &str,
    orders: usize,
    units: i64,
    every: Duration,
) -> Vec<pb::Preorder> {
    let mut out = Vec::new();
    for i in 0..orders {
        clock.advance(every);
        out.push(
            c.preorders
                .place_preorder(place(
                    &format!("{tag}-{i}"),
                    campaign,
                    &format!("{tag}-consumer-{i}"),
                    units,
                ))
                .await
                .expect("order")
                .into_inner(),
        );
    }
    out
}

async fn money(c: &mut Clients, id: &str) -> pb::CampaignMoney {
    let mut ledger =
        c2m_proto::v1::ledger_service_client::LedgerServiceClient::new(c.channel.clone());
    ledger
        .get_campaign_money(pb::GetCampaignMoneyRequest {
            campaign_id: id.into(),
        })
        .await
        .expect("money")
        .into_inner()
}

fn minor(m: &Option<pb::Money>) -> i64 {
    m.as_ref().expect("money").minor
}

/// A campaign on pace to fill shows a high lock probability and an expected lock time
/// before the deadline; one far behind shows a low one and the units it is expected to
/// miss; a campaign with no open batch shows no forecast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_campaign_shows_the_open_batchs_fill_forecast() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;

    // 100 units over 10 days (10 a day would fill it). Over the first two days the fast one
    // takes 2 units every 2 hours (24 a day), the slow one 1 unit every 8 hours (3 a day,
    // about 30 by the deadline).
    let fast = campaign(&mut c, "fast", 100, start, 10).await;
    let slow = campaign(&mut c, "slow", 100, start, 10).await;
    let empty = campaign(&mut c, "empty", 100, start, 10).await;
    for round in 0..6 {
        orders(
            &mut c,
            &clock,
            &fast.id,
            &format!("f{round}"),
            4,
            2,
            Duration::hours(2),
        )
        .await;
        orders(
            &mut c,
            &clock,
            &slow.id,
            &format!("s{round}"),
            1,
            1,
            Duration::zero(),
        )
        .await;
    }

    let f = progress(&mut c, &fast.id).await;
    let ff = f.forecast.expect("a forecast for the open batch");
    assert_eq!(ff.units_needed, 52);
    assert!(ff.lock_probability > 0.9, "fast: {ff:?}");
    let lock_at = ff.expected_lock_at.expect("expected lock time");
    assert!(lock_at.seconds < ts(start + Duration::days(10)).seconds);
    assert!(ff.expected_shortfall < 2.0, "{ff:?}");
    assert_eq!(ff.orders_seen, 24);

    let s = progress(&mut c, &slow.id).await;
    let sf = s.forecast.expect("a forecast for the open batch");
    assert_eq!(sf.units_needed, 94);
    assert!(sf.lock_probability < 0.1, "slow: {sf:?}");
    assert!(sf.expected_shortfall > 30.0, "{sf:?}");
    assert!(sf.projected_units_p10 <= sf.projected_units_p50);
    assert!(sf.projected_units_p50 <= sf.projected_units_p90);
    assert!(sf.projected_units_p90 < 100, "{sf:?}");

    let e = progress(&mut c, &empty.id).await;
    assert!(e.forecast.is_none(), "no batch is open");
    server.shutdown().await;
}

/// A sku whose cost per unit falls with the batch: 20 000 fen a unit and a setup of
/// 200 000, so at a price of 39 900 and a 15% margin (cost at most 33 915) the smallest
/// batch that pays is 15 units (33 333.33 a unit; 14 would cost 34 285.71).
const LEVER_KETTLE: &str = r#"
name = "levers"
currency = "CNY"

[[products]]
sku = "lever-kettle"
demand = 0
bom = {}

[[factories]]
id = "foshan-1"
capacity_hours = 1000.0

[[factories.lines]]
sku = "lever-kettle"
unit_cost = 20000.0
setup_cost = 200000.0
hours_per_unit = 0.1
"#;

/// A SQLite server whose clock the test moves, its clients, and the clock's start.
async fn on_a_manual_clock() -> (DateTime<Utc>, ManualClock, TestServer, Clients) {
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let server = TestServer::sqlite_with_clock(Arc::new(clock.clone())).await;
    let c = server.clients().await;
    (start, clock, server, c)
}

async fn ledger(c: &mut Clients, id: &str) -> Vec<pb::LedgerEntry> {
    let mut client =
        c2m_proto::v1::ledger_service_client::LedgerServiceClient::new(c.channel.clone());
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_ledger_entries(pb::ListLedgerEntriesRequest {
                campaign_id: id.into(),
                page_size: 500,
                page_token: token.clone(),
            })
            .await
            .expect("ledger")
            .into_inner();
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// A campaign on course is not advised to extend its deadline: the advice says no
/// extension is needed (it once offered a day's extension that read a hair lower).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_course_advice_offers_no_extension() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    import(&mut c, "lever-kettle", LEVER_KETTLE, pb::ImportMode::Merge)
        .await
        .expect("catalogue");
    let cmp = kettle_campaign(&mut c, "on-course", 20, start).await;
    // 16 units in two days against 20 needed, three days left.
    orders(
        &mut c,
        &clock,
        &cmp.id,
        "on-course",
        8,
        2,
        Duration::hours(6),
    )
    .await;
    let forecast = progress(&mut c, &cmp.id).await.forecast.expect("forecast");
    assert!(forecast.lock_probability >= 0.8, "{forecast:?}");
    let advice = advice(&mut c, &cmp.id).await;
    assert!(advice.extension.is_none(), "{advice:?}");
    assert!(!advice.summary.contains("extending"), "{}", advice.summary);
    assert!(
        advice
            .notes
            .iter()
            .any(|n| n.contains("no extension needed")),
        "{:?}",
        advice.notes
    );
    server.shutdown().await;
}

/// Lowering the threshold to the advised one gives the lock probability the advice said
/// it would: with no order and no time in between, `GetCampaign`'s forecast after the
/// lever is the advice's figure (as after an extension). Before, the lowered threshold
/// also lowered a first campaign's prior pace, so the forecast fell below the advice that
/// had recommended it (0.90 advised, 0.76 shown, in a QA pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_after_lowering_to_the_advised_threshold_is_the_advices() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    import(&mut c, "lever-kettle", LEVER_KETTLE, pb::ImportMode::Merge)
        .await
        .expect("catalogue");
    let cmp = kettle_campaign(&mut c, "advised", 80, start).await;
    // 4 units in a day: far below 80, below the 15 the advice names.
    orders(&mut c, &clock, &cmp.id, "advised", 4, 1, Duration::hours(6)).await;
    let advice = advice(&mut c, &cmp.id).await;
    let lower = advice.lower_threshold.expect("a threshold");
    assert_eq!(lower.batch_threshold, 15, "{advice:?}");
    c.levers
        .lower_threshold(pb::LowerThresholdRequest {
            idempotency_key: "to-the-advice".into(),
            campaign_id: cmp.id.clone(),
            batch_threshold: lower.batch_threshold,
        })
        .await
        .expect("lowered");
    let forecast = progress(&mut c, &cmp.id)
        .await
        .forecast
        .expect("still open");
    assert_eq!(forecast.units_needed, 11);
    assert!(
        (forecast.lock_probability - lower.lock_probability).abs() < 1e-9,
        "the forecast {} against the advice's {}",
        forecast.lock_probability,
        lower.lock_probability
    );
    server.shutdown().await;
}

/// A campaign falling short shows a low probability; the advice names the threshold the
/// planner's costs allow (15, computed above by hand) with a better probability; lowering
/// the threshold to it locks the open batch at once, capturing every deposit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falling_short_advice_and_a_lower_threshold_that_locks_at_once() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    import(&mut c, "lever-kettle", LEVER_KETTLE, pb::ImportMode::Merge)
        .await
        .expect("catalogue");
    let cmp = kettle_campaign(&mut c, "short", 80, start).await;
    // 16 units in two days: 8 a day, about 40 by the deadline against 80 needed.
    let placed = orders(&mut c, &clock, &cmp.id, "short", 8, 2, Duration::hours(6)).await;

    let forecast = progress(&mut c, &cmp.id).await.forecast.expect("forecast");
    assert_eq!(forecast.units_needed, 64);
    assert!(forecast.lock_probability < 0.2, "{forecast:?}");

    let advice = advice(&mut c, &cmp.id).await;
    assert!(advice.falling_short);
    assert!(advice.expected_miss_units > 5.0, "{advice:?}");
    let lower = advice.lower_threshold.expect("a threshold");
    assert_eq!(lower.batch_threshold, 15, "{advice:?}");
    assert!((lower.cost_per_unit_minor - 20_000.0 - 200_000.0 / 15.0).abs() < 1.0);
    assert!((lower.margin - (1.0 - (20_000.0 + 200_000.0 / 15.0) / 39_900.0)).abs() < 1e-3);
    assert!(
        lower.lock_probability > 0.99,
        "16 units are already in: {lower:?}"
    );
    // The shortfall in words is per miss, not averaged over the outcomes that lock.
    let short = advice.expected_miss_units
        / (1.0 - advice.forecast.as_ref().expect("forecast").lock_probability);
    assert!(
        advice.summary.starts_with(&format!(
            "at the current rate the batch is likely to miss: {:.2} chance to lock by the deadline, about {short:.0} units short if it does;",
            advice.forecast.as_ref().expect("forecast").lock_probability
        )),
        "{}",
        advice.summary
    );
    assert!(
        advice.summary.contains("lowering the threshold to 15"),
        "{}",
        advice.summary
    );
    if let Some(x) = &advice.extension {
        assert!(x.lock_probability >= 0.8 && x.days >= 1, "{x:?}");
    }

    // Raising is refused, naming the field, and writes nothing.
    let up = c
        .levers
        .lower_threshold(pb::LowerThresholdRequest {
            idempotency_key: "raise".into(),
            campaign_id: cmp.id.clone(),
            batch_threshold: 90,
        })
        .await
        .expect_err("raising");
    assert_refused(&up, Code::FailedPrecondition, "THRESHOLD_NOT_LOWER");
    assert_eq!(error_meta(&up, "field").as_deref(), Some("batch_threshold"));

    let lower_req = pb::LowerThresholdRequest {
        idempotency_key: "lower-to-15".into(),
        campaign_id: cmp.id.clone(),
        batch_threshold: lower.batch_threshold,
    };
    let out = c
        .levers
        .lower_threshold(lower_req.clone())
        .await
        .expect("lower")
        .into_inner();
    let locked = out.locked_batch.clone().expect("locked at once");
    assert_eq!(locked.status, pb::BatchStatus::Locked as i32);
    assert_eq!((locked.units, locked.threshold), (16, 15));
    for p in all_preorders(&mut c, &cmp.id).await {
        assert_eq!(p.status, pb::PreorderStatus::Locked as i32);
        assert_eq!(minor(&p.deposit_captured), p.quantity * 5_000);
    }
    assert_eq!(placed.len(), 8);
    let again = c
        .levers
        .lower_threshold(lower_req)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        again.locked_batch, out.locked_batch,
        "a retry answers as the first time"
    );
    let m = money(&mut c, &cmp.id).await;
    assert_eq!((minor(&m.captured), minor(&m.held)), (16 * 5_000, 0));
    let p = progress(&mut c, &cmp.id).await;
    assert_eq!(
        (p.batches_locked, p.campaign.expect("c").batch_threshold),
        (1, 15)
    );
    server.shutdown().await;
}

/// A campaign extended (never into the past), sold after its old deadline, then closed:
/// the open batch fails and every deposit is released exactly once; closing again and
/// extending a closed campaign are refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_then_closed_releases_every_deposit_once() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    let cmp = campaign(&mut c, "extend", 50, start, 3).await;
    orders(&mut c, &clock, &cmp.id, "e", 3, 2, Duration::hours(1)).await;

    let past = c
        .levers
        .extend_deadline(pb::ExtendDeadlineRequest {
            idempotency_key: "past".into(),
            campaign_id: cmp.id.clone(),
            deadline: Some(ts(start - Duration::days(1))),
        })
        .await
        .expect_err("into the past");
    assert_refused(&past, Code::FailedPrecondition, "DEADLINE_NOT_LATER");
    assert_eq!(error_meta(&past, "field").as_deref(), Some("deadline"));
    let new_deadline = start + Duration::days(7);
    let extended = c
        .levers
        .extend_deadline(pb::ExtendDeadlineRequest {
            idempotency_key: "extend".into(),
            campaign_id: cmp.id.clone(),
            deadline: Some(ts(new_deadline)),
        })
        .await
        .expect("extend")
        .into_inner();
    assert_eq!(
        extended
            .campaign
            .expect("campaign")
            .deadline
            .map(|t| t.seconds),
        Some(new_deadline.timestamp())
    );
    // Past the old deadline the campaign still sells.
    clock.advance(Duration::days(4));
    orders(&mut c, &clock, &cmp.id, "late", 1, 1, Duration::zero()).await;

    let close = pb::CloseCampaignRequest {
        idempotency_key: "close".into(),
        campaign_id: cmp.id.clone(),
    };
    let closed = c
        .levers
        .close_campaign(close.clone())
        .await
        .expect("close")
        .into_inner();
    assert_eq!(closed.deposits_released, 4);
    assert!(closed.locked_batch.is_none());
    assert_eq!(
        closed.failed_batch.as_ref().map(|b| b.status),
        Some(pb::BatchStatus::Failed as i32)
    );
    assert!(closed.campaign.as_ref().expect("c").closed_at.is_some());
    let again = c
        .levers
        .close_campaign(close)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again, closed, "a retry answers as the first time");
    let twice = c
        .levers
        .close_campaign(pb::CloseCampaignRequest {
            idempotency_key: "close-again".into(),
            campaign_id: cmp.id.clone(),
        })
        .await
        .expect_err("closing a closed campaign");
    assert_refused(&twice, Code::FailedPrecondition, "CAMPAIGN_ENDED");
    assert_eq!(error_meta(&twice, "field").as_deref(), Some("campaign_id"));
    let late = c
        .levers
        .extend_deadline(pb::ExtendDeadlineRequest {
            idempotency_key: "extend-closed".into(),
            campaign_id: cmp.id.clone(),
            deadline: Some(ts(new_deadline + Duration::days(3))),
        })
        .await
        .expect_err("extending a closed campaign");
    assert_refused(&late, Code::FailedPrecondition, "CAMPAIGN_ENDED");
    assert_eq!(error_meta(&late, "field").as_deref(), Some("deadline"));
    let order = c
        .preorders
        .place_preorder(place("after-close", &cmp.id, "zoe", 1))
        .await
        .expect_err("a closed campaign sells no more");
    assert_refused(&order, Code::FailedPrecondition, "CAMPAIGN_CLOSED");

    let m = money(&mut c, &cmp.id).await;
    assert_eq!(minor(&m.deposited), 7 * 5_000);
    assert_eq!(minor(&m.released), 7 * 5_000);
    assert_eq!(minor(&m.held), 0);
    let entries = ledger(&mut c, &cmp.id).await;
    let mut released: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == "release")
        .map(|e| e.preorder_id.as_str())
        .collect();
    released.sort_unstable();
    released.dedup();
    assert_eq!(released.len(), 4, "one release per pre-order");
    assert_eq!(entries.iter().filter(|e| e.kind == "release").count(), 4);
    let p = progress(&mut c, &cmp.id).await;
    assert!(p.forecast.is_none());
    // No batch is open, so none needs units: the progress said 50 still to lock (the
    // threshold), as if more orders could lock a closed campaign's batch.
    assert_eq!(
        (
            p.open_batch_seq,
            p.open_batch_units,
            p.units_to_threshold,
            p.units_to_next_tier
        ),
        (0, 0, 0, 0),
        "{p:?}"
    );
    server.shutdown().await;
}

/// Cancelling a campaign with a locked batch (one balance paid, one not) and an open
/// batch: the locked batch's deposits and the paid balance come back through `refund`
/// movements, the open batch's deposit through a release, each once and to the minor unit;
/// every consumer's account is back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_campaign_refunds_deposits_and_balances_to_the_minor_unit() {
    let (_, clock, server, mut c) = on_a_manual_clock().await;
    let mut req = campaign_request("cancel", 5);
    req.max_per_order = None;
    req.balance_window_seconds = Some(2 * 86_400);
    let cmp = created(&mut c, req).await;
    clock.advance(Duration::minutes(1));
    let a = c
        .preorders
        .place_preorder(place("a", &cmp.id, "ann", 3))
        .await
        .expect("a")
        .into_inner();
    let b = c
        .preorders
        .place_preorder(place("b", &cmp.id, "bob", 2))
        .await
        .expect("b")
        .into_inner();
    assert_eq!(b.status, pb::PreorderStatus::Locked as i32);
    c.preorders
        .place_preorder(place("o", &cmp.id, "oli", 1))
        .await
        .expect("o");
    let a = c
        .preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: a.id.clone(),
        })
        .await
        .expect("a")
        .into_inner();
    let balance = minor(&a.balance_due);
    assert_eq!(balance, 3 * 39_900 - 3 * 5_000);
    c.preorders
        .pay_balance(pb::PayBalanceRequest {
            idempotency_key: "pay-a".into(),
            preorder_id: a.id.clone(),
            consumer_id: String::new(),
            amount: a.balance_due.clone(),
        })
        .await
        .expect("pay");

    let cancel = pb::CancelCampaignRequest {
        idempotency_key: "cancel".into(),
        campaign_id: cmp.id.clone(),
    };
    let out = c
        .levers
        .cancel_campaign(cancel.clone())
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(out.preorders_refunded, 2);
    assert_eq!(out.deposits_released, 1);
    assert_eq!(minor(&out.refunded), 3 * 39_900 + 2 * 5_000);
    let again = c
        .levers
        .cancel_campaign(cancel)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again, out);
    let twice = c
        .levers
        .cancel_campaign(pb::CancelCampaignRequest {
            idempotency_key: "cancel-again".into(),
            campaign_id: cmp.id.clone(),
        })
        .await
        .expect_err("cancelling twice");
    assert_refused(&twice, Code::FailedPrecondition, "CAMPAIGN_ENDED");

    // The campaign's events end with one `campaign.changed` carrying each refund of the
    // locked batch, then the open batch's failure it caused (oli's deposit released).
    let mut watch = crate::events_e2e::Watch::open(&c, Some(0), &cmp.id)
        .await
        .expect("subscribe");
    let (events, _) = watch.drain(std::time::Duration::from_millis(800)).await;
    type Refs = Vec<(String, String, Option<i64>)>;
    let tail: Vec<(&str, Refs)> = events
        .iter()
        .skip(events.len().saturating_sub(2))
        .map(|e| {
            let mut refs: Vec<_> = e
                .data
                .preorders()
                .iter()
                .map(|p| {
                    (
                        p.preorder_id.as_str().to_owned(),
                        p.consumer_id.as_str().to_owned(),
                        p.amount.map(|m| m.minor),
                    )
                })
                .collect();
            refs.sort();
            (e.data.kind(), refs)
        })
        .collect();
    let oli = all_preorders(&mut c, &cmp.id)
        .await
        .into_iter()
        .find(|p| p.consumer_id == "oli")
        .expect("oli");
    let mut refunds = vec![
        (a.id.clone(), "ann".to_owned(), Some(3 * 39_900)),
        (b.id.clone(), "bob".to_owned(), Some(2 * 5_000)),
    ];
    refunds.sort();
    assert_eq!(
        tail,
        [
            ("campaign.changed", refunds),
            (
                "batch.failed",
                vec![(oli.id, "oli".to_owned(), Some(5_000))]
            ),
        ]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.data.kind() == "campaign.changed")
            .count(),
        1,
        "the retry wrote no second event"
    );
    drop(watch);

    let m = money(&mut c, &cmp.id).await;
    assert_eq!(minor(&m.refunded), 3 * 39_900 + 2 * 5_000);
    assert_eq!(
        minor(&m.refunded),
        minor(&m.captured) + minor(&m.balances_paid)
    );
    assert_eq!(minor(&m.released), 5_000);
    assert_eq!(
        (minor(&m.held), minor(&m.escrow), minor(&m.merchant)),
        (0, 0, 0)
    );
    assert_eq!(minor(&m.balances_outstanding), 0);
    let entries = ledger(&mut c, &cmp.id).await;
    let refunds: Vec<&pb::LedgerEntry> = entries.iter().filter(|e| e.kind == "refund").collect();
    assert_eq!(refunds.len(), 2);
    let mut per_consumer: std::collections::BTreeMap<String, i64> = Default::default();
    for e in &entries {
        for p in &e.postings {
            if p.account.starts_with("consumer:") {
                *per_consumer.entry(p.account.clone()).or_default() += minor(&p.amount);
            }
        }
    }
    assert_eq!(per_consumer.len(), 3);
    assert!(
        per_consumer.values().all(|v| *v == 0),
        "every consumer has all their money back: {per_consumer:?}"
    );
    for p in all_preorders(&mut c, &cmp.id).await {
        assert_ne!(p.status, pb::PreorderStatus::Locked as i32, "{p:?}");
        if p.id == a.id || p.id == b.id {
            assert_eq!(p.money_state, pb::MoneyState::Refunded as i32, "{p:?}");
            assert!(p.refunded_at.is_some());
            // The amount is on the pre-order: the captured deposit and the paid balance.
            assert_eq!(
                minor(&p.refunded),
                minor(&p.deposit_captured) + minor(&p.balance_paid),
                "{p:?}"
            );
            assert!(minor(&p.refunded) > 0, "{p:?}");
        } else {
            assert_eq!(minor(&p.refunded), 0, "{p:?}");
        }
    }
    server.shutdown().await;
}

/// Pre-orders carrying channels, regions and referrers: the insights add up to the orders,
/// the top referrer is the one who brought most units, and a consumer naming themselves as
/// referrer is refused naming the field, with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_of_a_campaign_add_up_to_its_orders() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    let cmp = campaign(&mut c, "insights", 500, start, 10).await;
    let channels = ["app", "wechat", "web"];
    let regions = ["SH", "BJ"];
    let mut units = 0;
    for i in 0..12i64 {
        clock.advance(Duration::hours(5));
        let mut req = place(&format!("i-{i}"), &cmp.id, &format!("con_{i}"), 1 + i % 3);
        req.channel = Some(channels[(i % 3) as usize].into());
        req.region = (i % 4 != 0).then(|| regions[(i % 2) as usize].into());
        req.referrer = (i > 0).then(|| {
            if i % 2 == 0 {
                "con_100".into()
            } else {
                "con_101".into()
            }
        });
        c.preorders.place_preorder(req).await.expect("order");
        units += 1 + i % 3;
    }
    let mut own = place("own", &cmp.id, "con_99", 1);
    own.referrer = Some("con_99".into());
    let e = c
        .preorders
        .place_preorder(own)
        .await
        .expect_err("self-referral");
    assert_refused(&e, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(error_meta(&e, "field").as_deref(), Some("referrer"));

    let i = c
        .levers
        .get_insights(pb::GetInsightsRequest {
            campaign_id: cmp.id.clone(),
            bucket_seconds: 86_400,
            top: 1,
        })
        .await
        .expect("insights")
        .into_inner();
    assert_eq!((i.preorders, i.units), (12, units));
    for split in [&i.by_channel, &i.by_region, &i.by_referrer] {
        assert_eq!(
            split.iter().map(|s| s.units).sum::<i64>(),
            units,
            "{split:?}"
        );
        assert_eq!(split.iter().map(|s| s.preorders).sum::<i64>(), 12);
    }
    let sum_over_time: i64 = i.units_over_time.iter().map(|u| u.units).sum();
    assert_eq!(sum_over_time, units);
    assert_eq!(
        i.units_over_time.last().map(|u| u.cumulative_units),
        Some(units)
    );
    // 60 hours in day buckets: days 0, 1 and 2.
    assert_eq!(i.units_over_time.len(), 3);
    // con_100 referred orders 2, 4, ..., 10 (units 3+2+1+3+2 = 11); con_101 orders 1, 3,
    // ..., 11 (2+1+3+2+1+3 = 12).
    assert_eq!(i.top_referrers.len(), 1);
    assert_eq!(
        (i.top_referrers[0].key.as_str(), i.top_referrers[0].units),
        ("con_101", 12)
    );
    assert_eq!(
        i.by_region
            .iter()
            .find(|s| s.key.is_empty())
            .map(|s| s.preorders),
        Some(3)
    );
    assert!(i.forecast.is_some());
    assert_eq!(i.consumers, 12);
    server.shutdown().await;
}

/// The storefront example's `campaign` shows what the levers change and whether the
/// campaign still sells: its status, threshold and deadline beside the progress. Before,
/// it printed the progress alone, so after `extend` or `lower-threshold` the new deadline
/// and threshold were nowhere, and a closed campaign read like an open one with no time
/// left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_example_shows_a_campaigns_terms_and_status() {
    let (start, _clock, server, mut c) = on_a_manual_clock().await;
    let cmp = campaign(&mut c, "shown", 50, start, 3).await;
    let deadline = start + Duration::days(9);
    c.levers
        .extend_deadline(pb::ExtendDeadlineRequest {
            idempotency_key: "shown-extend".into(),
            campaign_id: cmp.id.clone(),
            deadline: Some(ts(deadline)),
        })
        .await
        .expect("extend");
    c.levers
        .lower_threshold(pb::LowerThresholdRequest {
            idempotency_key: "shown-lower".into(),
            campaign_id: cmp.id.clone(),
            batch_threshold: 40,
        })
        .await
        .expect("lower");
    let show = |id: String| async move {
        let out = storefront(server.addr, &["campaign", &id]).await;
        serde_json::from_slice::<serde_json::Value>(&out).expect("JSON")
    };
    let shown = show(cmp.id.clone()).await;
    assert_eq!(shown["status"], "open", "{shown}");
    assert_eq!(shown["threshold"], 40, "{shown}");
    let shown_deadline = shown["deadline"]
        .as_str()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .unwrap_or_else(|| panic!("a deadline in {shown}"));
    assert_eq!(shown_deadline.timestamp(), deadline.timestamp(), "{shown}");
    c.levers
        .close_campaign(pb::CloseCampaignRequest {
            idempotency_key: "shown-close".into(),
            campaign_id: cmp.id.clone(),
        })
        .await
        .expect("close");
    let shown = show(cmp.id.clone()).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert!(shown["closed_at"].is_string(), "{shown}");

    // A reader that went away (`storefront campaign ID | head -c0`) ends the example
    // quietly with success; it panicked ("failed printing to stdout"), exit status 101.
    let out = crate::common::storefront_command(server.addr, &["campaign", &cmp.id])
        .await
        .stdout(crate::common::closed_pipe())
        .stderr(std::process::Stdio::piped())
        // Not `output()`: it pipes stdout whatever was set.
        .spawn()
        .expect("storefront starts")
        .wait_with_output()
        .await
        .expect("storefront runs");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    server.shutdown().await;
}

/// A threshold beyond the largest demand the planner takes (10^9 units) is still advised:
/// the scan stops at that demand, finds the factory's limit (10 000 units) below its first
/// grid point, and advises 15 units as for any threshold. Before, the scan asked the
/// planner for 499 999 999 units, which it refuses, and the advice only said the planner
/// could not price the sku.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_beyond_the_planners_largest_demand_is_still_advised() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    import(&mut c, "lever-kettle", LEVER_KETTLE, pb::ImportMode::Merge)
        .await
        .expect("catalogue");
    let cmp = kettle_campaign(&mut c, "huge", 10_000_000_000, start).await;
    orders(&mut c, &clock, &cmp.id, "huge", 4, 4, Duration::hours(6)).await;
    let advice = advice(&mut c, &cmp.id).await;
    assert!(
        !advice.notes.iter().any(|n| n.contains("could not price")),
        "{:?}",
        advice.notes
    );
    assert_eq!(
        advice.lower_threshold.map(|t| t.batch_threshold),
        Some(15),
        "{:?}",
        advice.notes
    );
    server.shutdown().await;
}

/// The shipped kettle catalogue (`kettle-17-white` alone is about 3 800 units of the two
/// factories' hours).
const KETTLE_CATALOGUE: &str = include_str!("../../examples/scenarios/kettle-c2m.toml");

/// Volumes the planner finds no plan for reach the merchant: with a microsecond per volume
/// (`--advice-time-limit`) the solver finds nothing and each volume's plan is the greedy
/// rules' or none. At 30 CNY against costs over 30 CNY a unit no volume keeps the margin,
/// so the scan walks its grid to the factories' limit, where the rules plan none: the
/// advice lists those volumes (`no_plan`), a note says a threshold among them was not
/// judged, and the note on the margin says it is about the volumes planned. Before, the
/// advice's time limit was fixed at 2 s, so no server could be made to show this path.
/// (HiGHS finds a plan even within a microsecond: the test needs the default microlp.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(feature = "highs", ignore = "HiGHS plans every volume even within 1µs")]
async fn advice_names_the_volumes_the_planner_found_no_plan_for() {
    let (server, mut c, cmp) = advised_campaign(
        |s| s.advice_time_limit = std::time::Duration::from_micros(1),
        KETTLE_CATALOGUE,
        "cheap",
        5_000,
        (3_000, 1_000),
    )
    .await;

    let advice = advice(&mut c, &cmp.id).await;
    assert!(advice.lower_threshold.is_none(), "{advice:?}");
    assert!(!advice.no_plan.is_empty(), "{advice:?}");
    for n in &advice.no_plan {
        assert!((1..5_000).contains(&n.volume), "{n:?}");
        assert_eq!(n.reason, "no plan found within the time limit of 1µs");
    }
    assert!(
        advice.no_plan.windows(2).all(|w| w[0].volume < w[1].volume),
        "in volume order: {:?}",
        advice.no_plan
    );
    let first = &advice.no_plan[0];
    assert!(first.volume > 3_000, "near the factories' limit: {first:?}");
    let unjudged = format!(
        "the planner found no plan at {} of the volumes it priced below 5000 (the first at {} \
         units: no plan found within the time limit of 1µs); a threshold among them was not \
         judged",
        advice.no_plan.len(),
        first.volume
    );
    assert!(advice.notes.contains(&unjudged), "{:?}", advice.notes);
    assert_no_planned_threshold_keeps_the_margin(&advice, 5000);
    server.shutdown().await;
}

/// The note of an advice that found no threshold below `threshold`, among the volumes
/// the planner planned, that keeps a 15% margin.
fn assert_no_planned_threshold_keeps_the_margin(advice: &pb::Advice, threshold: i64) {
    let note = format!(
        "no threshold below {threshold} that the planner planned keeps a 15% margin at the \
         planned cost"
    );
    assert!(advice.notes.contains(&note), "{:?}", advice.notes);
}

/// A server set up by `settings` with `catalogue`, and a five-day campaign `key` with
/// `threshold`, `(unit price, deposit)` and no per-order cap, four orders of ten units
/// placed six hours apart on its clock: what the advice tests ask about.
async fn advised_campaign(
    settings: impl FnOnce(&mut c2m_server::Settings),
    catalogue: &str,
    key: &str,
    threshold: i64,
    (price, deposit): (i64, i64),
) -> (TestServer, Clients, pb::Campaign) {
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let server = TestServer::custom(settings, Arc::new(clock.clone()), None).await;
    let mut c = server.clients().await;
    import(&mut c, key, catalogue, pb::ImportMode::Replace)
        .await
        .expect("catalogue");
    let mut req = campaign_request(key, threshold);
    req.unit_price_minor = price;
    req.deposit_minor = deposit;
    req.max_per_order = None;
    req.deadline = Some(ts(start + Duration::days(5)));
    let cmp = created(&mut c, req).await;
    orders(&mut c, &clock, &cmp.id, key, 4, 10, Duration::hours(6)).await;
    (server, c, cmp)
}

/// Forty factories of uneven hours whose setups cost in proportion to their hours: which
/// to open for a volume is a subset sum, and microlp seldom proves a plan optimal within
/// seconds (each volume above one factory's hours runs to its time limit), whatever the
/// machine. Stock covers every part, so only the factories cost.
fn slow_factories() -> String {
    let mut text = format!(
        "name = \"slow\"\ncurrency = \"CNY\"\n\n[[products]]\nsku = \"{CAMPAIGN_SKU}\"\n\
         demand = 0\nbom = {{ part = 1 }}\n\n[[materials]]\nid = \"part\"\nunit = \"pcs\"\n\
         on_hand = 1000000.0\nholding_cost = 0.0\n"
    );
    for i in 0..40u32 {
        let hours = 600.0 + f64::from((i * 7919) % 997) + 0.371 * f64::from(i + 1);
        text.push_str(&format!(
            "\n[[factories]]\nid = \"f{i:02}\"\ncapacity_hours = {hours:.3}\n\n\
             [[factories.lines]]\nsku = \"{CAMPAIGN_SKU}\"\nunit_cost = 100.0\n\
             setup_cost = {:.2}\nmin_run = 1\nhours_per_unit = 1.0\nsetup_hours = 0.0\n",
            hours * 20.0
        ));
    }
    text
}

/// GetAdvice answers within the request's timeout, with what it judged, however many
/// slow volumes its scan meets. With a 5 s `--request-timeout` and 4.5 s per volume
/// (`--advice-time-limit`), the scan of a 20 001-unit threshold (twenty grid volumes, each
/// above 1 000 units a subset sum the solver runs to its time limit on) would take minutes
/// on a few cores; it ends a fifth of the call's budget before its deadline instead: the
/// advice is OK within the 5 s, judges what it planned (1 000 units, proven optimal at
/// once; no volume keeps the margin at 1 CNY a unit), names the volumes it did not reach
/// (`not_reached`, the grid's stretch above the last grid volume planned) and says so in a
/// note. Before, the call was answered DEADLINE_EXCEEDED at 5 s and the merchant had no
/// advice at all. (HiGHS may prove these plans optimal in time: the test needs microlp.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    feature = "highs",
    ignore = "HiGHS may plan every volume within its time"
)]
async fn advice_answers_within_the_request_timeout_naming_the_volumes_not_reached() {
    let timeout = std::time::Duration::from_secs(5);
    let took = advice_within(timeout, None).await;
    assert!(took < timeout, "answered after {took:?}");
}

/// A client's own shorter deadline (`grpc-timeout`) ends the scan in time too: with the
/// server's 60 s and the client's 5 s, the advice is OK within the 5 s, naming what it did
/// not reach. Before, the client's deadline passed with no advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    feature = "highs",
    ignore = "HiGHS may plan every volume within its time"
)]
async fn advice_answers_within_the_clients_own_deadline_naming_the_volumes_not_reached() {
    let timeout = std::time::Duration::from_secs(5);
    let took = advice_within(std::time::Duration::from_secs(60), Some(timeout)).await;
    assert!(took < timeout, "answered after {took:?}");
}

/// Asks for the advice on a campaign of [`slow_factories`] with 4.5 s per volume, a server
/// whose `--request-timeout` is `server` and the client's deadline, and checks what it
/// says (see above); answers how long the call took.
async fn advice_within(
    server: std::time::Duration,
    client: Option<std::time::Duration>,
) -> std::time::Duration {
    let (server, mut c, cmp) = advised_campaign(
        |s| {
            s.request_timeout = server;
            s.advice_time_limit = std::time::Duration::from_millis(4_500);
        },
        &slow_factories(),
        "slow",
        20_001,
        (100, 10),
    )
    .await;

    let asked = std::time::Instant::now();
    let mut req = tonic::Request::new(pb::GetAdviceRequest {
        campaign_id: cmp.id.clone(),
        margin: 0.15,
        target_probability: 0.8,
    });
    if let Some(t) = client {
        req.set_timeout(t);
    }
    let advice = c.levers.get_advice(req).await.expect("advice").into_inner();
    let took = asked.elapsed();
    assert!(advice.lower_threshold.is_none(), "{advice:?}");
    assert!(!advice.not_reached.is_empty(), "{advice:?}");
    for r in &advice.not_reached {
        assert!(
            1 <= r.first && r.first <= r.last && r.last < 20_001,
            "{r:?}"
        );
    }
    assert!(
        (advice.not_reached.windows(2)).all(|w| w[0].last < w[1].first),
        "in volume order: {:?}",
        advice.not_reached
    );
    // The last grid volume, up to the threshold, was not reached; 1 000 units was judged.
    let last = advice.not_reached.last().expect("a range");
    assert_eq!(last.last, 20_000, "{:?}", advice.not_reached);
    assert!(
        (advice.not_reached.iter()).all(|r| r.last < 1_000 || r.first > 1_000),
        "{:?}",
        advice.not_reached
    );
    let ranges: Vec<String> = (advice.not_reached.iter())
        .map(|r| match r.last - r.first {
            0 => r.first.to_string(),
            _ => format!("{} to {}", r.first, r.last),
        })
        .collect();
    let unreached = format!(
        "the planner's scan ran out of time before it reached these volumes below 20001: {} \
         (it ends before the call's deadline, and each volume may take up to 4.5s); a \
         threshold among them was not judged",
        ranges.join(", ")
    );
    assert!(advice.notes.contains(&unreached), "{:?}", advice.notes);
    assert_no_planned_threshold_keeps_the_margin(&advice, 20001);
    server.shutdown().await;
    took
}

/// A client deadline that leaves the scan less than `--advice-time-limit` per volume still
/// judges every volume the planner settles in that time: here all of them. With 20 s per
/// volume and the client's 10 s (the scan ends at 8 s), each volume's solve gets the time
/// left; a threshold of 100 000 kettles puts the scan's first grid volume (4 999) past the
/// factories' capacity, the solver proves it cannot be made, and the scan bisects down to
/// the largest volume that can and advises a lower threshold. Such a proof used to count
/// only with the whole time limit, so under a deadline below `--advice-time-limit` / 0.8
/// (2.5 s by default) the advice judged nothing and said the scan "ran out of time" before
/// every volume from 1 to 99 999, answering at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_under_a_short_client_deadline_judges_the_volumes_it_has_time_for() {
    let (server, mut c, cmp) = advised_campaign(
        |s| {
            s.request_timeout = std::time::Duration::from_secs(60);
            s.advice_time_limit = std::time::Duration::from_secs(20);
        },
        KETTLE_CATALOGUE,
        "short",
        100_000,
        (39_900, 5_000),
    )
    .await;
    let mut req = tonic::Request::new(pb::GetAdviceRequest {
        campaign_id: cmp.id.clone(),
        margin: 0.15,
        target_probability: 0.8,
    });
    req.set_timeout(std::time::Duration::from_secs(10));
    let advice = c.levers.get_advice(req).await.expect("advice").into_inner();
    assert!(advice.not_reached.is_empty(), "{advice:?}");
    assert!(
        !advice.notes.iter().any(|n| n.contains("ran out of time")),
        "{:?}",
        advice.notes
    );
    let lower = advice.lower_threshold.expect("a lower threshold");
    assert!((1..4_999).contains(&lower.batch_threshold), "{lower:?}");
    server.shutdown().await;
}

/// Insights of a campaign that opened long before its orders come in buckets a client can
/// take: a minute's buckets over twenty years (ten million) are refused, naming
/// `bucket_seconds` and the narrowest width that fits (`minBucketSeconds`), and that width
/// is answered. Before,
/// the server listed every empty bucket from the opening (gigabytes for an opening set
/// centuries back) and then could not send the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_over_a_long_span_refuse_more_buckets_than_can_be_sent() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    let mut req = campaign_request("long-ago", 50);
    req.opens_at = Some(ts(start - Duration::days(20 * 365)));
    req.deadline = Some(ts(start + Duration::days(3)));
    let cmp = created(&mut c, req).await;
    orders(
        &mut c,
        &clock,
        &cmp.id,
        "long-ago",
        2,
        1,
        Duration::hours(1),
    )
    .await;
    let ask = |bucket_seconds: i64| pb::GetInsightsRequest {
        campaign_id: cmp.id.clone(),
        bucket_seconds,
        top: 0,
    };
    let refused = c.levers.get_insights(ask(60)).await.expect_err("too many");
    assert_refused(&refused, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(
        error_meta(&refused, "field").as_deref(),
        Some("bucket_seconds")
    );
    // The metadata names a width that fits (the message too); asking with it is
    // answered.
    let width: i64 = error_meta(&refused, "minBucketSeconds")
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("a width in {refused:?}"));
    assert!(
        refused
            .message()
            .contains(&format!("at least {width} seconds")),
        "{refused:?}"
    );
    let i = c
        .levers
        .get_insights(ask(width))
        .await
        .expect("a width that fits")
        .into_inner();
    assert!(
        i.units_over_time.len() <= 50_000,
        "{}",
        i.units_over_time.len()
    );
    assert_eq!(i.units, 2);
    server.shutdown().await;
}

/// The storefront example's insights table says "(none)" under a heading with no rows:
/// the top referrers of a campaign whose orders named no referrer. Before, the heading
/// stood alone, as if the table had been cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_insights_table_says_none_under_an_empty_heading() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    let cmp = campaign(&mut c, "no-referrer", 50, start, 3).await;
    orders(
        &mut c,
        &clock,
        &cmp.id,
        "no-referrer",
        2,
        1,
        Duration::hours(1),
    )
    .await;
    let out = storefront(server.addr, &["insights", &cmp.id, "--format", "table"]).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let after = text
        .split("top referrers")
        .nth(1)
        .unwrap_or_else(|| panic!("a top referrers table in {text}"));
    assert_eq!(after.lines().nth(1), Some("(none)"), "{text}");
    server.shutdown().await;
}

/// The storefront example's insights table keeps its numbers in line whatever the keys: a
/// channel in Chinese (two terminal cells a character) and a referrer longer than the
/// key column. Before, `{:<25}` padded by characters, so the numbers after 微信 stood two
/// cells right of the others, and a long referrer pushed its row's numbers out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_insights_table_lines_up_wide_and_long_keys() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    let cmp = campaign(&mut c, "wide-keys", 50, start, 3).await;
    let long_referrer = "con_a_referrer_whose_id_is_forty_chars_x";
    assert_eq!(long_referrer.len(), 40);
    for (i, channel) in ["微信", "app", "微信小程序"].into_iter().enumerate() {
        clock.advance(Duration::hours(1));
        let mut req = place(&format!("wide-{i}"), &cmp.id, &format!("con_w{i}"), 1);
        req.channel = Some(channel.into());
        req.referrer = (i == 1).then(|| long_referrer.into());
        c.preorders.place_preorder(req).await.expect("order");
    }
    let out = storefront(server.addr, &["insights", &cmp.id, "--format", "table"]).await;
    let text = String::from_utf8_lossy(&out).to_string();
    // Terminal cells, counted independently of the example: the CJK ideographs here take
    // two, everything else one.
    let cells = |line: &str| -> usize {
        line.chars()
            .map(|ch| {
                if ('\u{4e00}'..='\u{9fff}').contains(&ch) {
                    2
                } else {
                    1
                }
            })
            .sum()
    };
    for heading in ["channel", "referrer"] {
        let section: Vec<&str> = text
            .split("\n\n")
            .find(|s| s.starts_with(heading))
            .unwrap_or_else(|| panic!("a {heading} table in {text}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(section.len() >= 3, "{heading}: {section:?}");
        let widths: Vec<usize> = section.iter().map(|l| cells(l)).collect();
        assert!(
            widths.iter().all(|&w| w == widths[0]),
            "{heading}: rows of {widths:?} cells:\n{}",
            section.join("\n")
        );
    }
    for key in ["微信", "微信小程序", long_referrer] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "{key} in full in {text}"
        );
    }
    server.shutdown().await;
}

/// `storefront create-campaign` and `extend` run again with the same `--key` (a retry
/// after a timeout) must be the same request: with `--deadline-days` / `--days` counted
/// from the run's own now (or the deadline the first run had already moved), the retry
/// was refused `IDEMPOTENCY_KEY_REUSED`. With `--deadline` / `--to` it answers the
/// original, and `create-campaign` prints the deadline the server stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_retries_with_a_key_and_a_date_are_the_same_request() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    ensure_skus(&mut c, &[CAMPAIGN_SKU]).await;
    let deadline = (Utc::now() + Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let create = [
        "create-campaign",
        "--sku",
        CAMPAIGN_SKU,
        "--threshold",
        "5",
        "--deadline",
        deadline.as_str(),
        "--key",
        "retry-create",
    ];
    let first: serde_json::Value =
        serde_json::from_slice(&storefront(server.addr, &create).await).expect("JSON");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again: serde_json::Value =
        serde_json::from_slice(&storefront(server.addr, &create).await).expect("JSON");
    assert_eq!(first, again, "the retry answers the original");
    let id = first["id"].as_str().expect("an id").to_owned();
    let stored = c
        .campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: id.clone(),
        })
        .await
        .expect("the campaign")
        .into_inner()
        .campaign
        .and_then(|c| c.deadline)
        .expect("a deadline");
    let printed = first["deadline"]
        .as_str()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .unwrap_or_else(|| panic!("a deadline in {first}"));
    assert_eq!(printed.timestamp(), stored.seconds, "{first}");
    assert_eq!(
        printed.format("%Y-%m-%d").to_string(),
        deadline,
        "midnight UTC of the date given"
    );

    let to = (Utc::now() + Duration::days(20))
        .format("%Y-%m-%d")
        .to_string();
    let extend = [
        "extend",
        id.as_str(),
        "--to",
        to.as_str(),
        "--key",
        "retry-extend",
    ];
    let first = storefront(server.addr, &extend).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again = storefront(server.addr, &extend).await;
    assert_eq!(first, again, "the retry answers the original");
    let shown: serde_json::Value = serde_json::from_slice(&first).expect("JSON");
    assert!(
        shown["deadline"].as_str().unwrap_or("").starts_with(&to),
        "{shown}"
    );
}

/// `storefront` passes a negative number on, for the server to refuse naming its field:
/// `--price -1` and `extend ID --days -2` were "unexpected argument '-1' found", naming no
/// flag, while `--price=-1` worked. A date the calendar lacks is called that (it was
/// "premature end of input").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_takes_negative_numbers_to_the_server_and_names_bad_dates() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    ensure_skus(&mut c, &[CAMPAIGN_SKU]).await;
    let run = async |args: &[&str]| {
        let out = storefront_command(server.addr, args)
            .await
            .output()
            .await
            .expect("storefront runs");
        assert!(!out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let price = run(&["create-campaign", "--sku", CAMPAIGN_SKU, "--price", "-1"]).await;
    assert!(
        price.contains("InvalidArgument") && price.contains("INVALID_FIELD"),
        "{price}"
    );
    let date = run(&[
        "create-campaign",
        "--sku",
        CAMPAIGN_SKU,
        "--deadline",
        "2027-13-45",
    ])
    .await;
    assert!(
        date.contains("--deadline") && date.contains("2027-13-45 is no date"),
        "{date}"
    );
    let created: serde_json::Value = serde_json::from_slice(
        &storefront(server.addr, &["create-campaign", "--sku", CAMPAIGN_SKU]).await,
    )
    .expect("JSON");
    let id = created["id"].as_str().expect("an id");
    let days = run(&["extend", id, "--days", "-2"]).await;
    assert!(
        !days.contains("unexpected argument") && days.contains("FailedPrecondition"),
        "{days}"
    );
}

/// Forecasts that cannot be done within the call's budget hold neither the progress call
/// nor anything else. A campaign of a million units at one minor unit each, one order in:
/// its forecast costs a few tenths of a second of a core in a debug build, and forecasts
/// compute one a core at once, so of 24 `GetCampaign` calls sent together most wait past
/// their forecast's budget. With `--request-timeout 1s`, every one answers with the
/// progress within its deadline, some without the forecast, and health checks sent
/// meanwhile are answered at once. Before forecasts left the request workers, one such call
/// answered after 12 s whatever the timeout and other calls waited behind it (QA 13-B saw
/// 18 s). Should forecasts ever cost so little that all 24 are done within the budget,
/// the test says so: it then no longer exercises the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_forecast_holds_neither_the_progress_nor_other_calls() {
    const CALLS: usize = 24;
    let server = TestServer::sqlite_with(|s| {
        s.request_timeout = std::time::Duration::from_secs(1);
        s.advice_time_limit = std::time::Duration::from_millis(500);
    })
    .await;
    let mut c = server.clients().await;
    let mut req = campaign_request("a-million", 1_000_000);
    (req.unit_price_minor, req.deposit_minor, req.max_per_order) = (1, 1, None);
    let cmp = created(&mut c, req).await;
    c.preorders
        .place_preorder(place("first", &cmp.id, "con-1", 7))
        .await
        .expect("an order");
    let get = |mut c: Clients, id: String| async move {
        let started = std::time::Instant::now();
        let p = c
            .campaigns
            .get_campaign(pb::GetCampaignRequest { campaign_id: id })
            .await
            .map(|r| r.into_inner());
        (started.elapsed(), p)
    };
    let calls: Vec<_> = (0..CALLS)
        .map(|_| tokio::spawn(get(c.clone(), cmp.id.clone())))
        .collect();
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    for _ in 0..5 {
        let started = std::time::Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "a health check waited {:?} behind the forecasts",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut without = 0;
    for call in calls {
        let (took, answered) = call.await.unwrap();
        let progress = answered.expect("the progress, not DEADLINE_EXCEEDED");
        assert_eq!(progress.units_to_threshold, 1_000_000 - 7, "{progress:?}");
        assert!(
            took < std::time::Duration::from_millis(1_500),
            "answered after {took:?}"
        );
        without += usize::from(progress.forecast.is_none());
    }
    assert!(
        without > 0,
        "all {CALLS} forecasts were done within the budget: the test no longer exercises it"
    );
    server.shutdown().await;
}

/// `GetCampaign` shows the progress and the forecast of one snapshot: under a stream of
/// orders, which lock a batch of five every five units, the units to the threshold and the
/// forecast's units needed agree in every answer. Read in two snapshots, an order between
/// them set them apart, even by a batch (QA 13-B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_and_its_forecast_agree_under_concurrent_orders() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let mut req = campaign_request("busy", 5);
    req.max_per_order = None;
    let cmp = created(&mut c, req).await;
    c.preorders
        .place_preorder(place("first", &cmp.id, "con-0", 1))
        .await
        .expect("an order");
    let placing = {
        let (mut c, id) = (c.clone(), cmp.id.clone());
        tokio::spawn(async move {
            for i in 1..=300 {
                c.preorders
                    .place_preorder(place(&format!("o-{i}"), &id, &format!("con-{i}"), 1))
                    .await
                    .expect("an order");
            }
        })
    };
    let mut checked = 0;
    while !placing.is_finished() {
        let p = c
            .campaigns
            .get_campaign(pb::GetCampaignRequest {
                campaign_id: cmp.id.clone(),
            })
            .await
            .expect("progress")
            .into_inner();
        if let Some(f) = &p.forecast {
            assert_eq!(
                p.units_to_threshold, f.units_needed,
                "the progress and its forecast disagree: {p:?}"
            );
            checked += 1;
        }
    }
    placing.await.unwrap();
    assert!(checked >= 10, "only {checked} answers had a forecast");
    server.shutdown().await;
}

/// A campaign whose total cap leaves its open batch short of the threshold (a cap of 14 on
/// batches of 10: the second batch holds 4 and can take no more) cannot lock by orders: its forecast says so (no chance, no lock times, at least the units the cap
/// leaves it short, nothing projected past the cap), and so does the advice (no extension,
/// a note naming the cap and the threshold that can lock). The same orders without the cap
/// forecast a fair chance. Before, a sold-out campaign read 0.73 to lock, with 58 units
/// projected where the cap allowed 4, and was advised a 12-day extension (QA 13-B). The
/// sku has no factory here, and the advice says the planner cannot make it (it said no
/// threshold kept the margin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_cap_short_of_the_threshold_forecasts_no_lock() {
    let (start, clock, server, mut c) = on_a_manual_clock().await;
    let capped = {
        let mut req = campaign_request("capped", 10);
        req.max_per_order = None;
        req.total_cap = Some(14);
        req.deadline = Some(ts(start + Duration::days(10)));
        created(&mut c, req).await
    };
    let free = campaign(&mut c, "free", 10, start, 10).await;
    // Ten units lock the first batch; four open the second, which the cap of 14 leaves
    // six short with no room.
    for id in [&capped.id, &free.id] {
        orders(&mut c, &clock, id, id, 7, 2, Duration::hours(2)).await;
    }
    let forecast = |p: pb::CampaignProgress| p.forecast.expect("a forecast");
    let open = forecast(progress(&mut c, &free.id).await);
    assert!(open.lock_probability > 0.3, "{open:?}");

    let sold_out = progress(&mut c, &capped.id).await;
    assert_eq!(sold_out.units_available, Some(0));
    let f = forecast(sold_out);
    assert_eq!(f.lock_probability, 0.0, "{f:?}");
    assert!(
        f.expected_lock_at.is_none() && f.lock_by_p90.is_none(),
        "{f:?}"
    );
    assert!(f.expected_shortfall >= 6.0, "{f:?}");
    assert!(
        f.projected_units_p90 <= 4 && f.projected_units_mean <= 4.0,
        "{f:?}"
    );

    let a = advice(&mut c, &capped.id).await;
    assert!(a.extension.is_none(), "{a:?}");
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("total cap leaves room for 0")
                && n.contains("a threshold of at most 4 can")),
        "{:?}",
        a.notes
    );
    // The test catalogue has the sku but no factory to make it: the advice says so, not
    // that no threshold keeps the margin (it did).
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("cannot make kettle-17-white at any volume")),
        "{:?}",
        a.notes
    );
    assert!(
        !a.notes.iter().any(|n| n.contains("keeps a 15% margin")),
        "{:?}",
        a.notes
    );
    server.shutdown().await;
}
