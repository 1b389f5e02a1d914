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
    c.campaigns
        .create_campaign(req)
        .await
        .expect("campaign")
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

async fn progress(c: &mut Clients, id: &str) -> pb::CampaignProgress {
    c.campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: id.into(),
        })
        .await
        .expect("get")
        .into_inner()
}

async fn money(c: &mut Clients, id: &str) -> pb::CampaignMoney {
    let mut ledger = c2m_proto::v1::ledger_service_client::LedgerServiceClient::new(
        c.channel.clone(),
    );
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
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let server = TestServer::sqlite_with_clock(Arc::new(clock.clone())).await;
    let mut c = server.clients().await;

    // 100 units over 10 days (10 a day would fill it). Over the first two days the fast one
    // takes 2 units every 2 hours (24 a day), the slow one 1 unit every 8 hours (3 a day,
    // about 30 by the deadline).
    let fast = campaign(&mut c, "fast", 100, start, 10).await;
    let slow = campaign(&mut c, "slow", 100, start, 10).await;
    let empty = campaign(&mut c, "empty", 100, start, 10).await;
    for round in 0..6 {
        orders(&mut c, &clock, &fast.id, &format!("f{round}"), 4, 2, Duration::hours(2)).await;
        orders(&mut c, &clock, &slow.id, &format!("s{round}"), 1, 1, Duration::zero()).await;
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
