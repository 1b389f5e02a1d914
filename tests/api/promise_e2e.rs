//! The promise end to end: ship dates, planning in time and purchase orders, over gRPC.
//!
//! Two campaigns sharing steel lock a week apart. One cycle with a six-week horizon plans
//! both and buys their steel in one order that reaches the better price break; the same
//! cycle with a one-period horizon plans only the batch due within it, at the first
//! break. The order is received in two parts, a second cycle uses what was left over, a
//! consumer's pre-order shows the promise then the planned date, a factory's rejection
//! moves it and returns the steel, and a promise too short for any plan shows late.
//! Every expected number is worked out here from the catalogue below.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use tonic::Code;

use c2m_domain::{Clock, ManualClock};
use c2m_proto::v1 as pb;
use c2m_proto::v1::purchasing_service_client::PurchasingServiceClient;
use tonic::transport::Channel;

use crate::common::{
    assert_refused, error_meta, export, import, pg_admin_url, place, ts, Clients, TestServer,
};

/// Steel at 100 a kg below 150 kg, 70 from 150 kg; a kettle takes 2 kg, a pot 3 kg.
/// f1 makes both cheaper than f2. Lead time 0 days, so a one-week horizon can buy.
const CATALOGUE: &str = r#"
name = "promise"
currency = "CNY"

[[products]]
sku = "kettle-steel"
demand = 0
bom = { steel = 2.0 }

[[products]]
sku = "pot-steel"
demand = 0
bom = { steel = 3.0 }

[[materials]]
id = "steel"
unit = "kg"
on_hand = 0.0
holding_cost = 1.0

[[factories]]
id = "f1"
capacity_hours = 100.0

[[factories.lines]]
sku = "kettle-steel"
unit_cost = 1000.0
hours_per_unit = 0.5

[[factories.lines]]
sku = "pot-steel"
unit_cost = 1200.0
hours_per_unit = 0.5

[[factories]]
id = "f2"
capacity_hours = 100.0

[[factories.lines]]
sku = "kettle-steel"
unit_cost = 1500.0
hours_per_unit = 0.5

[[factories.lines]]
sku = "pot-steel"
unit_cost = 1800.0
hours_per_unit = 0.5

[[suppliers]]
id = "steelco"
lead_days = 0

[[suppliers.offers]]
material = "steel"
breaks = [{ min_qty = 0.0, unit_price = 100.0 }, { min_qty = 150.0, unit_price = 70.0 }]
"#;

const FIRST_PRICE: f64 = 100.0;
const BETTER_PRICE: f64 = 70.0;
const BETTER_BREAK: f64 = 150.0;
/// 30 kettles (60 kg) and 20 pots (60 kg).
const STEEL_A: f64 = 60.0;
const STEEL_B: f64 = 60.0;

fn start() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::seconds(1))
        .expect("whole seconds")
}

fn campaign(
    key: &str,
    sku: &str,
    threshold: i64,
    promise: i64,
    t0: DateTime<Utc>,
) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        idempotency_key: key.into(),
        sku: sku.into(),
        title: format!("{sku} for the promise test"),
        currency: "CNY".into(),
        unit_price_minor: 20_000,
        // The full price: a batch is ready for production when it locks.
        deposit_minor: 20_000,
        batch_threshold: threshold,
        batch_cap: None,
        max_per_order: None,
        max_per_consumer: None,
        total_cap: None,
        opens_at: None,
        deadline: Some(ts(t0 + Duration::days(30))),
        price_ladder: vec![],
        balance_window_seconds: None,
        ships_within_days: Some(promise),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn at(t: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("a time")
}

fn purchasing(c: &Clients) -> PurchasingServiceClient<Channel> {
    PurchasingServiceClient::new(c.channel.clone())
}

async fn steel_on_hand(c: &mut Clients) -> f64 {
    let text = c
        .catalogue
        .export_scenario(pb::ExportScenarioRequest {
            format: pb::ScenarioFormat::Toml as i32,
        })
        .await
        .expect("export")
        .into_inner()
        .text;
    let s = c2m_planner::Scenario::from_toml_str(&text).expect("a scenario");
    s.materials
        .iter()
        .find(|m| m.id == "steel")
        .expect("steel")
        .on_hand
}

async fn ship_date(c: &mut Clients, preorder: &str) -> pb::ShipDate {
    c.preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: preorder.into(),
        })
        .await
        .expect("get pre-order")
        .into_inner()
        .ship_date
        .expect("a locked pre-order has a ship date")
}

async fn run_cycle(c: &mut Clients, key: &str) -> pb::Plan {
    c.planning
        .run_planning(pb::RunPlanningRequest {
            idempotency_key: key.into(),
        })
        .await
        .expect("a cycle")
        .into_inner()
}

/// What [`set_up`] made: campaign C (not locked yet) and the first consumer's pre-order
/// in A.
struct Setup {
    c: String,
    preorder_a: String,
}

/// What both servers do before their first cycle: the catalogue, two campaigns locking a
/// week apart, and a third that locks later.
async fn set_up(c: &mut Clients, clock: &ManualClock, t0: DateTime<Utc>) -> Setup {
    c.catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: "promise-catalogue".into(),
            text: CATALOGUE.into(),
            format: pb::ScenarioFormat::Toml as i32,
            mode: pb::ImportMode::Replace as i32,
            calendar_starts_at: None,
        })
        .await
        .expect("catalogue");
    let mut ids = Vec::new();
    for (key, sku, threshold, promise) in [
        ("cmp-a", "kettle-steel", 30, 14),
        ("cmp-b", "pot-steel", 20, 14),
        // A promise no weekly plan can keep.
        ("cmp-c", "kettle-steel", 10, 3),
    ] {
        let got = c
            .campaigns
            .create_campaign(campaign(key, sku, threshold, promise, t0))
            .await
            .expect("campaign")
            .into_inner();
        assert_eq!(got.ships_within_days, promise);
        ids.push(got.id);
    }
    let shown = c
        .campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.campaign.unwrap().ships_within_days, 14);
    // A locks now, B a week later.
    let a1 = c
        .preorders
        .place_preorder(place("a1", &ids[0], "con_a1", 10))
        .await
        .unwrap()
        .into_inner();
    c.preorders
        .place_preorder(place("a2", &ids[0], "con_a2", 20))
        .await
        .unwrap();
    clock.advance(Duration::days(7));
    c.preorders
        .place_preorder(place("b1", &ids[1], "con_b1", 20))
        .await
        .unwrap();
    Setup {
        c: ids[2].clone(),
        preorder_a: a1.id,
    }
}

/// The story on SQLite, or on the PostgreSQL database `url`.
async fn promise_story(url: Option<&str>) {
    let t0 = start();
    // The same cycle with a one-period horizon, on a server of its own.
    let clock1 = Arc::new(ManualClock::new(t0));
    let one = TestServer::custom(
        |s| (s.plan_horizon_days, s.plan_period_days) = (7, 7),
        clock1.clone(),
        None,
    )
    .await;
    let mut c1 = one.clients().await;
    set_up(&mut c1, &clock1, t0).await;
    let short = run_cycle(&mut c1, "cycle-one-period").await;
    one.shutdown().await;

    let clock = Arc::new(ManualClock::new(t0));
    let server = TestServer::custom(|s| s.plan_horizon_days = 42, clock.clone(), url).await;
    let mut c = server.clients().await;
    let setup = set_up(&mut c, &clock, t0).await;
    let due_a = t0 + Duration::days(14);

    // Before any plan: the promise.
    let before = ship_date(&mut c, &setup.preorder_a).await;
    assert_eq!(at(before.promised_by.as_ref().unwrap()), due_a);
    assert_eq!(at(before.expected_at.as_ref().unwrap()), due_a);
    assert!(!before.planned && !before.late);
    let queued = c
        .planning
        .list_queued_batches(pb::ListQueuedBatchesRequest {})
        .await
        .unwrap()
        .into_inner()
        .batches;
    assert_eq!(queued.len(), 2);

    // Six weeks: both batches, one steel order at the better break.
    let plan = run_cycle(&mut c, "cycle-six-weeks").await;
    assert_eq!(
        plan.batch_ids.len(),
        2,
        "both batches are due within six weeks"
    );
    assert_eq!(plan.purchase_orders.len(), 1, "{:?}", plan.purchase_orders);
    let po = plan.purchase_orders[0].clone();
    assert_eq!(
        (po.supplier_id.as_str(), po.material_id.as_str()),
        ("steelco", "steel")
    );
    assert_eq!((po.tier, po.unit_price), (1, BETTER_PRICE));
    assert!(
        close(po.quantity, BETTER_BREAK),
        "the least that reaches the break: {po:?}"
    );
    assert!(close(po.allocated, STEEL_A + STEEL_B), "{po:?}");
    assert_eq!(po.state(), pb::PurchaseOrderState::Open);
    assert_eq!(po.batch_ids.len(), 2);
    // One period: only A is due within it, bought alone at the first break.
    assert_eq!(short.batch_ids.len(), 1);
    assert_eq!(short.purchase_orders.len(), 1);
    let alone = &short.purchase_orders[0];
    assert_eq!((alone.tier, alone.unit_price), (0, FIRST_PRICE));
    assert!(close(alone.quantity, STEEL_A), "{alone:?}");
    // Buying each batch's steel on its own, as one-period cycles do, against one order.
    let separately = alone.unit_price * (STEEL_A + STEEL_B);
    let together = po.unit_price * po.quantity;
    assert!(close(
        separately - together,
        FIRST_PRICE * 120.0 - BETTER_PRICE * 150.0
    ));
    assert!(together < separately);
    assert_eq!(
        po.total.as_ref().unwrap().minor,
        (BETTER_PRICE * BETTER_BREAK) as i64
    );

    // Work orders carry their schedule; the pre-order shows the planned date.
    let wo = plan
        .work_orders
        .iter()
        .find(|w| w.factory_id == "f1")
        .expect("f1 makes them")
        .clone();
    for run in &wo.runs {
        let (s, e) = (
            at(run.starts_at.as_ref().unwrap()),
            at(run.ends_at.as_ref().unwrap()),
        );
        let period = run.period.expect("a period");
        assert_eq!(s, clock.now() + Duration::days(7 * period));
        assert_eq!(e - s, Duration::days(7));
        assert!(run.hours > 0.0);
    }
    let planned = ship_date(&mut c, &setup.preorder_a).await;
    assert!(planned.planned);
    let run_a_end = wo
        .runs
        .iter()
        .filter(|r| r.sku == "kettle-steel")
        .map(|r| at(r.ends_at.as_ref().unwrap()))
        .max()
        .unwrap();
    assert_eq!(at(planned.expected_at.as_ref().unwrap()), run_a_end);
    assert!(
        run_a_end <= due_a && !planned.late,
        "A is due by the end of period 0"
    );

    // Received in two parts; a retry counts once; more than ordered is refused.
    let mut p = purchasing(&c);
    let receive = |key: &str, qty: f64| pb::ReceivePurchaseOrderRequest {
        idempotency_key: key.into(),
        purchase_order_id: po.id.clone(),
        quantity: qty,
    };
    let first = p
        .receive_purchase_order(receive("rcv-1", 60.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.state(), first.received),
        (pb::PurchaseOrderState::PartlyReceived, 60.0)
    );
    let again = p
        .receive_purchase_order(receive("rcv-1", 60.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.received, 60.0, "the retry counted once");
    let over = p
        .receive_purchase_order(receive("rcv-x", 91.0))
        .await
        .unwrap_err();
    assert_refused(&over, Code::FailedPrecondition, "OVER_RECEIVED");
    let bad = p
        .receive_purchase_order(receive("rcv-y", 0.0))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("quantity"), "{bad:?}");
    let rest = p
        .receive_purchase_order(receive("rcv-2", 90.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (rest.state(), rest.received),
        (pb::PurchaseOrderState::Received, 150.0)
    );
    let listed = p
        .list_purchase_orders(pb::ListPurchaseOrdersRequest {
            supplier_id: "steelco".into(),
            state: pb::PurchaseOrderState::Received as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.purchase_orders.len(), 1);
    let cancel = p
        .cancel_purchase_order(pb::CancelPurchaseOrderRequest {
            idempotency_key: "cancel-received".into(),
            purchase_order_id: po.id.clone(),
        })
        .await
        .unwrap_err();
    assert_refused(&cancel, Code::FailedPrecondition, "PURCHASE_ORDER_NOT_OPEN");
    let free = BETTER_BREAK - STEEL_A - STEEL_B;
    assert!(
        close(steel_on_hand(&mut c).await, free),
        "what the work order does not use"
    );

    // A day later C locks with a three-day promise: the second cycle makes it from the
    // steel received, buys nothing, and shows it late with the reason.
    clock.advance(Duration::days(1));
    let c1 = c
        .preorders
        .place_preorder(place("c1", &setup.c, "con_c1", 10))
        .await
        .unwrap()
        .into_inner();
    let second = run_cycle(&mut c, "cycle-second").await;
    assert_eq!(second.batch_ids.len(), 1);
    assert!(second.purchase_orders.is_empty(), "the receipt covers it");
    assert!(close(steel_on_hand(&mut c).await, free - 20.0));
    let late = ship_date(&mut c, &c1.id).await;
    let promised = at(late.promised_by.as_ref().unwrap());
    let expected = at(late.expected_at.as_ref().unwrap());
    assert_eq!(promised, clock.now() + Duration::days(3));
    assert_eq!(
        expected,
        clock.now() + Duration::days(7),
        "the end of period 0"
    );
    assert!(late.planned && late.late);
    assert_eq!(late.days_late, 4);
    assert!(
        late.late_reason.contains("planning period"),
        "{}",
        late.late_reason
    );

    // f1 rejects the first plan's work order: A and B wait again (their date is the promise
    // again), the steel returns, and the next cycle moves them to f2 from stock.
    c.factory
        .report(pb::ReportRequest {
            idempotency_key: "reject".into(),
            factory_id: "f1".into(),
            work_order_id: wo.id.clone(),
            progress: Some(pb::report_request::Progress::Rejected(pb::Rejected {
                reason: "press broken".into(),
            })),
        })
        .await
        .expect("rejected");
    let waiting = ship_date(&mut c, &setup.preorder_a).await;
    assert!(!waiting.planned);
    assert_eq!(
        at(waiting.expected_at.as_ref().unwrap()),
        due_a,
        "back to the promise"
    );
    assert!(close(
        steel_on_hand(&mut c).await,
        free - 20.0 + STEEL_A + STEEL_B
    ));
    let third = run_cycle(&mut c, "cycle-third").await;
    assert_eq!(third.batch_ids.len(), 2);
    assert!(
        third.purchase_orders.is_empty(),
        "the returned steel covers them"
    );
    assert!(third.work_orders.iter().all(|w| w.factory_id == "f2"));
    let moved = ship_date(&mut c, &setup.preorder_a).await;
    assert!(moved.planned);
    let moved_at = at(moved.expected_at.as_ref().unwrap());
    assert_ne!(moved_at, run_a_end, "the rejection moved the date");
    assert_eq!(
        moved.late,
        moved_at.date_naive() > due_a.date_naive(),
        "late by dates: a promise is kept through the end of its day"
    );
    assert!(close(steel_on_hand(&mut c).await, free - 20.0));

    // Each move of A's date, as its pre-order showed it (the promise, planned, back to the
    // promise, planned elsewhere), is one `ship_date.changed` naming A's pre-order; a step
    // that left the date where it was (a plan on the promise exactly) is none.
    let mut watch = crate::events_e2e::Watch::open(&c, Some(0), "")
        .await
        .expect("subscribe");
    let (events, _) = watch.drain(std::time::Duration::from_millis(800)).await;
    let moves: Vec<_> = events
        .iter()
        .filter(|e| {
            e.data
                .preorders()
                .iter()
                .any(|p| p.preorder_id.as_str() == setup.preorder_a)
        })
        .filter_map(|e| match &e.data {
            c2m_domain::events::EventData::ShipDateChanged {
                previous,
                expected,
                promised,
                planned,
                ..
            } => Some((*previous, *expected, *promised, *planned)),
            _ => None,
        })
        .collect();
    let shown = [
        (due_a, false),
        (run_a_end, true),
        (due_a, false),
        (moved_at, true),
    ];
    let implied: Vec<_> = shown
        .windows(2)
        .filter(|w| w[0].0 != w[1].0)
        .map(|w| (Some(w[0].0), w[1].0, due_a, w[1].1))
        .collect();
    assert!(!implied.is_empty());
    assert_eq!(moves, implied);
    drop(watch);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_story_on_sqlite() {
    promise_story(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_story_on_postgres() {
    let Some(admin) = pg_admin_url() else { return };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    promise_story(Some(&url)).await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_promises_and_calendars_are_refused_naming_the_field() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let t0 = start();
    for days in [0, -1] {
        let e = c
            .campaigns
            .create_campaign(campaign("bad", "kettle-17-white", 2, days, t0))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("ships_within_days"), "{e:?}");
    }
    let listed = c
        .campaigns
        .list_campaigns(pb::ListCampaignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.campaigns.is_empty(), "nothing written");
    // A calendar's periods must be the server's (weeks here): capacity is hours per
    // period, so a calendar in days would give each week a day's hours.
    let calendar = |n: usize, period_days: i64| {
        let hours = vec!["40.0"; n].join(", ");
        format!(
            "name = \"cal\"\ncurrency = \"CNY\"\n\n[horizon]\nperiods = {n}\n\
             period_days = {period_days}\n\n[[factories]]\nid = \"f1\"\n\
             capacity_hours = [{hours}]\n"
        )
    };
    let e = import(&mut c, "cal-days", &calendar(14, 1), pb::ImportMode::Merge)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("horizon.period_days"), "{e:?}");
    // Its start is a date a cycle can add weeks to.
    let e = c
        .catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: "cal-far".into(),
            text: calendar(5, 7),
            format: pb::ScenarioFormat::Toml as i32,
            mode: pb::ImportMode::Merge as i32,
            calendar_starts_at: Some(prost_types::Timestamp {
                seconds: 253_402_300_799,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("calendar_starts_at"), "{e:?}");
    // A horizon of no period, or of more than a scenario may have, and a calendar of
    // another length than its horizon are refused naming the field, and nothing is
    // written: a horizon of 0 periods with an empty calendar used to store the factory
    // with no hours.
    for (key, periods, hours, field, says) in [
        (
            "cal-none",
            "0",
            "",
            "horizon.periods",
            "between 1 and 520, got 0",
        ),
        (
            "cal-huge",
            "9223372036854775807",
            "5.0",
            "horizon.periods",
            "between 1 and 520",
        ),
        (
            "cal-short",
            "3",
            "5.0, 5.0",
            "factories[0].capacity_hours",
            "3 periods, got 2",
        ),
        (
            "cal-empty",
            "3",
            "",
            "factories[0].capacity_hours",
            "3 periods, got 0",
        ),
    ] {
        let text = format!(
            "name = \"cal\"\ncurrency = \"CNY\"\n\n[horizon]\nperiods = {periods}\n\
             period_days = 7\n\n[[factories]]\nid = \"f1\"\ncapacity_hours = [{hours}]\n"
        );
        let e = import(&mut c, key, &text, pb::ImportMode::Merge)
            .await
            .expect_err(key);
        assert_refused(&e, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(error_meta(&e, "field").as_deref(), Some(field), "{key}");
        assert!(e.message().contains(says), "{key}: {e:?}");
    }
    // An id given twice in one file is refused in a merge as in a replace, naming the
    // second: a merge used to fold the two into one entry, the last silently winning.
    let twice = "name = \"twice\"\ncurrency = \"CNY\"\n\n[[materials]]\nid = \"steel\"\n\
                 unit = \"kg\"\non_hand = 180.0\n\n[[materials]]\nid = \"steel\"\nunit = \"kg\"\n\
                 on_hand = 1.0\n";
    for mode in [pb::ImportMode::Merge, pb::ImportMode::Replace] {
        let e = import(&mut c, &format!("twice-{mode:?}"), twice, mode)
            .await
            .expect_err("an id twice");
        assert_refused(&e, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(
            error_meta(&e, "field").as_deref(),
            Some("materials[1].id"),
            "{mode:?}"
        );
    }
    // What the catalogue does not keep is checked too: a due period outside the horizon
    // and a late cost that is no number were taken (and dropped) without a word.
    let with_product = |due: &str, late: &str| {
        format!(
            "name = \"dues\"\ncurrency = \"CNY\"\n\n[horizon]\nperiods = 3\nperiod_days = 7\n\n\
             [[products]]\nsku = \"pot\"\ndue = [ {{ period = {due}, quantity = 5 }} ]\n\
             late_cost = {late}\nbom = {{}}\n"
        )
    };
    for (key, text, field) in [
        (
            "due-out",
            with_product("3", "1.0"),
            "products[0].due[0].period",
        ),
        (
            "late-nan",
            with_product("1", "nan"),
            "products[0].late_cost",
        ),
    ] {
        let e = import(&mut c, key, &text, pb::ImportMode::Merge)
            .await
            .expect_err(key);
        assert_refused(&e, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(error_meta(&e, "field").as_deref(), Some(field), "{key}");
    }
    let exported = export(&mut c, pb::ScenarioFormat::Toml).await;
    assert!(!exported.contains("\"f1\""), "nothing written: {exported}");
    assert!(
        !exported.contains("\"steel\""),
        "nothing written: {exported}"
    );
    assert!(!exported.contains("\"pot\""), "nothing written: {exported}");
    // A calendar is dates: it may cover fewer weeks than the horizon, or more.
    for weeks in [5, 12, 20] {
        import(
            &mut c,
            &format!("cal-{weeks}"),
            &calendar(weeks, 7),
            pb::ImportMode::Merge,
        )
        .await
        .unwrap_or_else(|e| panic!("a calendar of {weeks} weeks: {e:?}"));
    }
    server.shutdown().await;
}

/// Creates a campaign of ten steel kettles promised in `promise` days and locks its batch
/// with one order; returns the campaign id.
async fn locked_kettles(c: &mut Clients, key: &str, promise: i64, t0: DateTime<Utc>) -> String {
    let id = c
        .campaigns
        .create_campaign(campaign(key, "kettle-steel", 10, promise, t0))
        .await
        .expect("campaign")
        .into_inner()
        .id;
    c.preorders
        .place_preorder(place(&format!("{key}-1"), &id, &format!("con_{key}"), 10))
        .await
        .expect("locks");
    id
}

/// A cycle the server refuses: its status.
async fn cycle_refused(c: &mut Clients, key: &str) -> tonic::Status {
    c.planning
        .run_planning(pb::RunPlanningRequest {
            idempotency_key: key.into(),
        })
        .await
        .expect_err("the cycle is refused")
}

/// Factory f1's hours per period in a plan's scenario.
fn f1_hours(plan: &pb::Plan) -> Vec<f64> {
    let s = c2m_planner::Scenario::from_toml_str(&plan.scenario_toml).expect("the plan's scenario");
    let f1 = s.factories.iter().find(|f| f.id == "f1").expect("f1");
    f1.calendar.clone().expect("a calendar")
}

/// The catalogue with f1 on a calendar of `weeks` weeks, closed in the fourth.
fn with_calendar(weeks: usize) -> String {
    let mut hours = vec!["100.0"; weeks];
    hours[3] = "0.0";
    CATALOGUE.replace("demand = 0\n", "due = []\n").replacen(
        "[[factories]]\nid = \"f1\"\ncapacity_hours = 100.0\n",
        &format!(
            "[[factories]]\nid = \"f1\"\ncapacity_hours = [{}]\n",
            hours.join(", ")
        ),
        1,
    ) + &format!("\n[horizon]\nperiods = {weeks}\nperiod_days = 7\n")
}

/// A factory calendar is dates. The week it closes stays that week as cycles run later
/// (before, it was always the fourth week from whenever a cycle ran), it survives a
/// restart with another horizon, and a retry of the import under its key, later, is the
/// same request (its calendars keep the first import's dates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_keeps_its_dates_as_cycles_move_and_the_horizon_changes() {
    let t0 = start();
    let clock = Arc::new(ManualClock::new(t0));
    assert!(with_calendar(12).contains("capacity_hours = [100.0, 100.0, 100.0, 0.0,"));
    let server = TestServer::sqlite_in(tempfile::tempdir().expect("tempdir"), clock.clone(), |s| {
        s.plan_horizon_days = 84
    })
    .await;
    let mut c = server.clients().await;
    let first = import(
        &mut c,
        "twelve",
        &with_calendar(12),
        pb::ImportMode::Replace,
    )
    .await
    .expect("a twelve-week calendar");
    locked_kettles(&mut c, "cal-a", 14, t0).await;
    let plan = run_cycle(&mut c, "at-import").await;
    assert_eq!(f1_hours(&plan)[..5], [100.0, 100.0, 100.0, 0.0, 100.0]);
    let dir = server.shutdown().await.expect("the data directory");

    // Two weeks later, planned in eight weeks: the closed week is now the second.
    clock.advance(Duration::days(14));
    let server = TestServer::sqlite_in(dir, clock.clone(), |s| s.plan_horizon_days = 56).await;
    let mut c = server.clients().await;
    let again = import(
        &mut c,
        "twelve",
        &with_calendar(12),
        pb::ImportMode::Replace,
    )
    .await
    .expect("the same import, retried");
    assert_eq!(again.version, first.version, "a replay, not a new change");
    locked_kettles(&mut c, "cal-b", 14, clock.now()).await;
    let plan = run_cycle(&mut c, "two-weeks-later").await;
    let hours = f1_hours(&plan);
    assert_eq!(hours.len(), 8, "{hours:?}");
    assert_eq!(hours[1], 0.0, "the closed week, on its dates: {hours:?}");
    // The calendar covers ten more weeks: all open but that one.
    assert!(
        hours
            .iter()
            .enumerate()
            .all(|(t, h)| (t == 1) == (*h == 0.0)),
        "{hours:?}"
    );

    // An export keeps the calendar: a version 2 scenario from the import's date, which,
    // imported back at the date the export names, plans the same hours.
    let exported = export_with_start(&mut c).await;
    let from = exported.calendar_starts_at.expect("the calendars' start");
    assert_eq!(
        from.seconds,
        t0.timestamp(),
        "period 0 is the import's moment"
    );
    let s = c2m_planner::Scenario::from_toml_str(&exported.text).expect("a scenario");
    assert_eq!(s.horizon.as_ref().map(|h| h.periods), Some(12));
    let f1 = s.factories.iter().find(|f| f.id == "f1").expect("f1");
    assert_eq!(
        f1.calendar.as_ref().map(|c| c[3]),
        Some(0.0),
        "{:?}",
        f1.calendar
    );
    let f1_calendar = |c: c2m_store::Catalogue| {
        c.factories
            .into_iter()
            .find(|f| f.id == "f1")
            .and_then(|f| f.calendar)
            .expect("f1's calendar")
    };
    let before = f1_calendar(server.store.catalogue().await.expect("catalogue"));
    c.catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: "re-import".into(),
            text: exported.text.clone(),
            format: 0,
            mode: pb::ImportMode::Replace as i32,
            calendar_starts_at: Some(from),
        })
        .await
        .expect("the export imports back");
    assert_eq!(
        f1_calendar(server.store.catalogue().await.expect("catalogue")),
        before,
        "the same hours on the same dates after the round trip"
    );
    let twice = export_with_start(&mut c).await;
    assert_eq!(
        (twice.text, twice.calendar_starts_at),
        (exported.text, Some(from))
    );
    server.shutdown().await;
}

/// Imports `text` with its calendars starting at `at`.
async fn import_dated(
    c: &mut Clients,
    key: &str,
    text: &str,
    mode: pb::ImportMode,
    at: DateTime<Utc>,
) -> Result<pb::CatalogueChange, tonic::Status> {
    c.catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: key.into(),
            text: text.into(),
            format: pb::ScenarioFormat::Toml as i32,
            mode: mode as i32,
            calendar_starts_at: Some(ts(at)),
        })
        .await
        .map(|r| r.into_inner())
}

/// The refusal of calendars too far apart for one scenario, as export and import give it:
/// f1's calendar starting at `old`, f9's ending twelve weeks after `t0`, 586 weeks.
#[track_caller]
fn assert_too_far_apart(e: &tonic::Status, old: DateTime<Utc>, t0: DateTime<Utc>, what: &str) {
    let ends = t0 + Duration::weeks(12);
    let periods = ((ends - old).num_days() + 6) / 7;
    assert_eq!(periods, 586);
    assert_refused(e, Code::FailedPrecondition, "CALENDARS_SPAN_TOO_LONG");
    let meta = |k: &str| error_meta(e, k);
    assert_eq!(meta("firstFactoryId").as_deref(), Some("f1"));
    assert_eq!(meta("startsAt"), Some(old.to_rfc3339()));
    assert_eq!(meta("lastFactoryId").as_deref(), Some("f9"));
    assert_eq!(meta("endsAt"), Some(ends.to_rfc3339()));
    assert_eq!(meta("periods"), Some(periods.to_string()));
    assert_eq!(meta("maxPeriods").as_deref(), Some("520"));
    assert_eq!(meta("periodDays").as_deref(), Some("7"));
    for said in ["f1", "f9", "586 periods of 7 days", "at most 520", what] {
        assert!(e.message().contains(said), "{said}: {}", e.message());
    }
}

/// The catalogue exported (TOML), with its calendars' start.
async fn export_with_start(c: &mut Clients) -> pb::ExportScenarioResponse {
    c.catalogue
        .export_scenario(pb::ExportScenarioRequest { format: 0 })
        .await
        .expect("export")
        .into_inner()
}

/// A server whose clock reads now (`t0`) with f1's twelve-week calendar imported as
/// starting eleven years ago (`old`): the calendar tests' start.
async fn f1_eleven_years_ago() -> (TestServer, Clients, DateTime<Utc>, DateTime<Utc>) {
    let t0 = start();
    let old = t0 - Duration::days(11 * 365);
    let server = TestServer::sqlite_with_clock(Arc::new(ManualClock::new(t0))).await;
    let mut c = server.clients().await;
    import_dated(
        &mut c,
        "old",
        &with_calendar(12),
        pb::ImportMode::Replace,
        old,
    )
    .await
    .expect("f1's calendar, eleven years ago");
    (server, c, t0, old)
}

/// Calendars years apart cannot all keep their dates in one scenario a server can import
/// (at most 520 periods), so an import that would leave them so is refused as the export
/// would be: `CALENDARS_SPAN_TOO_LONG`, naming the factory whose calendar starts first and
/// the one whose calendar ends last, with the dates and the periods; nothing is written,
/// and a retry under the key is refused again. The same factory nearer the other is taken.
/// Before, the import was taken and only the export, later, refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendars_too_far_apart_for_one_scenario_refuse_the_import_naming_them() {
    let (server, mut c, t0, old) = f1_eleven_years_ago().await;
    let before = server.store.catalogue().await.expect("catalogue");
    let f9 = with_calendar(12).replace("id = \"f1\"", "id = \"f9\"");
    for _ in 0..2 {
        let e = import_dated(&mut c, "new", &f9, pb::ImportMode::Merge, t0)
            .await
            .expect_err("f9's calendar, from now: eleven years after f1's");
        assert_too_far_apart(&e, old, t0, "import one of these factories again");
        let after = server.store.catalogue().await.expect("catalogue");
        assert_eq!(after, before, "nothing written");
    }
    c.catalogue
        .export_scenario(pb::ExportScenarioRequest { format: 0 })
        .await
        .expect("the catalogue still exports");

    // 500 weeks after f1's start, f9's twelve weeks end within 520 periods of it.
    let near = old + Duration::weeks(500);
    import_dated(&mut c, "near", &f9, pb::ImportMode::Merge, near)
        .await
        .expect("f9's calendar, nearer f1's");
    let exported = export_with_start(&mut c).await;
    assert_eq!(exported.calendar_starts_at, Some(ts(old)));
    let s = c2m_planner::Scenario::from_toml_str(&exported.text).expect("a scenario");
    assert_eq!(s.horizon.as_ref().map(|h| h.periods), Some(512));
    server.shutdown().await;
}

/// A catalogue holds `material_deadline_days` (version 1) or factory calendars (version
/// 2), never both, so its export keeps what it holds: the version 2 kettle-weeks merged
/// into the catalogue of kettle-c2m.toml (deadline 14 days) is refused naming both,
/// `DEADLINE_WITH_CALENDARS`, nothing written (again under the same key); imported with
/// `Replace` it is taken, and merging a version 1 file with a deadline into it is refused
/// the same way (the whole kettle-c2m.toml merged is taken: its Cixi, without a calendar,
/// replaces the calendared one). Before, the merge was taken and the export wrote version 1 without Cixi's closed
/// week, so an export edited and imported again opened it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_and_calendars_are_never_in_one_catalogue() {
    let v1 = include_str!("../../examples/scenarios/kettle-c2m.toml");
    let v2 = include_str!("../../examples/scenarios/kettle-weeks.toml");
    let t0 = start();
    let server = TestServer::sqlite_with_clock(Arc::new(ManualClock::new(t0))).await;
    let mut c = server.clients().await;
    import_dated(&mut c, "v1", v1, pb::ImportMode::Replace, t0)
        .await
        .expect("kettle-c2m, with material_deadline_days = 14");
    let before = server.store.catalogue().await.expect("catalogue");
    assert_eq!(before.material_deadline_days, Some(14));
    for _ in 0..2 {
        let e = import_dated(&mut c, "merge-v2", v2, pb::ImportMode::Merge, t0)
            .await
            .expect_err("a calendar merged into a catalogue with a deadline");
        assert_refused(&e, Code::FailedPrecondition, "DEADLINE_WITH_CALENDARS");
        assert_eq!(
            error_meta(&e, "materialDeadlineDays").as_deref(),
            Some("14")
        );
        assert_eq!(error_meta(&e, "factoryId").as_deref(), Some("cixi-1"));
        assert!(e.message().contains("REPLACE"), "{}", e.message());
        assert_eq!(
            server.store.catalogue().await.expect("catalogue"),
            before,
            "nothing written"
        );
    }

    import_dated(&mut c, "replace-v2", v2, pb::ImportMode::Replace, t0)
        .await
        .expect("the whole catalogue as version 2");
    let weeks = server.store.catalogue().await.expect("catalogue");
    assert_eq!(weeks.material_deadline_days, None);
    // A version 1 file with a deadline and one material, merged: Cixi keeps its calendar.
    let deadline = "name = \"deadline\"\ncurrency = \"CNY\"\nmaterial_deadline_days = 14\n\n\
                    [[materials]]\nid = \"steel-304\"\nunit = \"kg\"\non_hand = 200.0\n";
    let e = import_dated(&mut c, "merge-v1", deadline, pb::ImportMode::Merge, t0)
        .await
        .expect_err("a deadline merged into a catalogue with calendars");
    assert_refused(&e, Code::FailedPrecondition, "DEADLINE_WITH_CALENDARS");
    assert_eq!(error_meta(&e, "factoryId").as_deref(), Some("cixi-1"));
    assert_eq!(server.store.catalogue().await.expect("catalogue"), weeks);

    // What it holds, its export keeps: version 2, Cixi closed in week 4.
    let exported = export_with_start(&mut c).await;
    assert_eq!(exported.calendar_starts_at, Some(ts(t0)));
    let s = c2m_planner::Scenario::from_toml_str(&exported.text).expect("a scenario");
    let cixi = s.factories.iter().find(|f| f.id == "cixi-1").expect("cixi");
    assert_eq!(
        cixi.calendar.as_ref().map(|h| h[4]),
        Some(0.0),
        "{:?}",
        cixi.calendar
    );
    server.shutdown().await;
}

/// A catalogue an older server let drift that far apart (it took any import) is refused
/// at the export, naming the calendars, and writes nothing. Changes that do not widen the
/// span are still taken, and importing the old factory again with a calendar nearer the
/// other, as the message says, makes the export one that imports back. Before, the export
/// wrote a version 2 scenario of 586 periods, which every import refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendars_too_far_apart_for_one_scenario_refuse_the_export_naming_them() {
    let (server, mut c, t0, old) = f1_eleven_years_ago().await;
    // f9's calendar from now, as an older server took it (this one refuses the import).
    let mut catalogue = server.store.catalogue().await.expect("catalogue");
    let mut f9 = catalogue.factories[0].clone();
    assert_eq!(f9.id, "f1");
    f9.id = "f9".into();
    if let Some(cal) = f9.calendar.as_mut() {
        cal.starts_at = Some(t0);
    }
    catalogue.factories.push(f9);
    server
        .store
        .change_catalogue(
            &c2m_store::ChangeCatalogue {
                idempotency_key: c2m_domain::IdempotencyKey::parse("older").expect("key"),
                edit: c2m_store::CatalogueEdit::Replace(catalogue),
            },
            Arc::new(|_, _| Ok(())),
            t0,
        )
        .await
        .expect("f9's calendar, from now, written as before");

    let e = c
        .catalogue
        .export_scenario(pb::ExportScenarioRequest { format: 0 })
        .await
        .expect_err("an export that could not be imported back");
    assert_too_far_apart(&e, old, t0, "imported back");

    // f9 again, on the same dates: the span is no wider, so the change is taken.
    let f9 = with_calendar(12).replace("id = \"f1\"", "id = \"f9\"");
    import_dated(&mut c, "f9-again", &f9, pb::ImportMode::Merge, t0)
        .await
        .expect("a change that does not widen the span");

    // f1 again, from now: the export is of twelve weeks and imports back.
    import_dated(
        &mut c,
        "old-again",
        &with_calendar(12),
        pb::ImportMode::Merge,
        t0,
    )
    .await
    .expect("f1's calendar, from now");
    let exported = export_with_start(&mut c).await;
    assert_eq!(exported.calendar_starts_at, Some(ts(t0)));
    let s = c2m_planner::Scenario::from_toml_str(&exported.text).expect("a scenario");
    assert_eq!(s.horizon.as_ref().map(|h| h.periods), Some(12));
    c.catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: "round-trip".into(),
            text: exported.text,
            format: 0,
            mode: pb::ImportMode::Replace as i32,
            calendar_starts_at: exported.calendar_starts_at,
        })
        .await
        .expect("the export imports back");
    server.shutdown().await;
}

/// A calendar stored before calendars had dates counts from each cycle's start; one
/// written for another horizon is not silently dropped when the server is restarted with
/// another: the cycle refuses, naming the factory, until the catalogue is imported again
/// (planning with the plain capacity would open the week the calendar closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undated_calendar_for_another_horizon_stops_planning_until_it_is_imported_again() {
    let t0 = start();
    let clock = Arc::new(ManualClock::new(t0));
    let server = TestServer::sqlite_in(tempfile::tempdir().expect("tempdir"), clock.clone(), |s| {
        s.plan_horizon_days = 56
    })
    .await;
    let mut c = server.clients().await;
    import(&mut c, "plain", CATALOGUE, pb::ImportMode::Replace)
        .await
        .expect("the catalogue");
    // As an older server stored it: twelve weeks of hours, no dates.
    let mut catalogue = server.store.catalogue().await.expect("catalogue");
    let f1 = catalogue
        .factories
        .iter_mut()
        .find(|f| f.id == "f1")
        .expect("f1");
    let mut hours = vec![100.0; 12];
    hours[3] = 0.0;
    f1.calendar = Some(c2m_store::catalogue::FactoryCalendar {
        hours,
        period_days: None,
        starts_at: None,
    });
    server
        .store
        .change_catalogue(
            &c2m_store::ChangeCatalogue {
                idempotency_key: c2m_domain::IdempotencyKey::parse("undated").expect("key"),
                edit: c2m_store::CatalogueEdit::Replace(catalogue),
            },
            Arc::new(|_, _| Ok(())),
            t0,
        )
        .await
        .expect("an undated calendar, written as before");
    locked_kettles(&mut c, "cal-a", 14, t0).await;
    let e = cycle_refused(&mut c, "eight-weeks").await;
    assert_refused(&e, Code::FailedPrecondition, "CALENDAR_HORIZON_MISMATCH");
    assert_eq!(error_meta(&e, "factoryId").as_deref(), Some("f1"), "{e:?}");
    assert_eq!(error_meta(&e, "calendarPeriods").as_deref(), Some("12"));
    assert_eq!(error_meta(&e, "periods").as_deref(), Some("8"));
    let plans = c
        .planning
        .list_plans(pb::ListPlansRequest::default())
        .await
        .expect("plans")
        .into_inner();
    assert!(plans.plans.is_empty(), "no plan stored: {plans:?}");

    import(&mut c, "eight", &with_calendar(8), pb::ImportMode::Replace)
        .await
        .expect("an eight-week calendar");
    let plan = run_cycle(&mut c, "eight-weeks-again").await;
    assert_eq!(plan.summary.expect("summary").batches, 1);
    server.shutdown().await;
}

/// A cycle with nothing to plan says what waits and why: a batch due after the horizon is
/// counted, not reported as "no batches are waiting".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_plan_says_what_waits_beyond_the_horizon() {
    let t0 = start();
    let clock = Arc::new(ManualClock::new(t0));
    let server = TestServer::custom(
        |s| (s.plan_horizon_days, s.plan_period_days) = (7, 7),
        clock.clone(),
        None,
    )
    .await;
    let mut c = server.clients().await;
    let nothing = cycle_refused(&mut c, "empty").await;
    assert_refused(&nothing, Code::FailedPrecondition, "NOTHING_TO_PLAN");
    assert_eq!(
        error_meta(&nothing, "dueAfterHorizon").as_deref(),
        Some("0")
    );
    import(
        &mut c,
        "later-catalogue",
        CATALOGUE,
        pb::ImportMode::Replace,
    )
    .await
    .expect("catalogue");
    // Promised in 30 days: beyond the one-week horizon.
    locked_kettles(&mut c, "later", 30, t0).await;
    let e = cycle_refused(&mut c, "later").await;
    assert_refused(&e, Code::FailedPrecondition, "NOTHING_TO_PLAN");
    assert_eq!(error_meta(&e, "dueAfterHorizon").as_deref(), Some("1"));
    assert_eq!(error_meta(&e, "noFactory").as_deref(), Some("0"));
    assert!(e.message().contains("1 batch wait"), "{e:?}");
    server.shutdown().await;
}

/// Lamps take one housing (counted in pieces) and a little glue (kg). The offer's minimum
/// of 8 housings makes a batch of 5 buy 8: 3 of them free stock once they arrive.
const LAMPS: &str = r#"
name = "lamps"
currency = "CNY"

[[products]]
sku = "lamp"
demand = 0
bom = { housing = 1.0, glue = 0.1 }

[[materials]]
id = "housing"
unit = "pcs"
on_hand = 0.0

[[materials]]
id = "glue"
unit = "kg"
on_hand = 100.0

[[factories]]
id = "f1"
capacity_hours = 100.0

[[factories.lines]]
sku = "lamp"
unit_cost = 1000.0
hours_per_unit = 0.5

[[suppliers]]
id = "partsco"
lead_days = 0

[[suppliers.offers]]
material = "housing"
moq = 8.0
breaks = [{ min_qty = 0.0, unit_price = 10.0 }]
"#;

/// What the purchase order has received so far.
async fn received(p: &mut PurchasingServiceClient<Channel>, id: &str) -> f64 {
    p.get_purchase_order(pb::GetPurchaseOrderRequest {
        purchase_order_id: id.to_owned(),
    })
    .await
    .expect("get the purchase order")
    .into_inner()
    .received
}

/// A material counted in pieces is received whole: 2.5 housings are refused
/// (INVALID_ARGUMENT, `INVALID_FIELD` naming the field, the material and the value) and
/// nothing is counted; a catalogue holding 1.5 housings is refused the same way. A receipt
/// on an order whose material left the catalogue (`DeleteCatalogueEntry` after the plan)
/// is refused with `MATERIAL_NOT_IN_CATALOGUE` naming the material; once the merchant adds
/// it back, the receipt counts its free part as stock. Before, the 2.5 were taken, and the
/// receipt on the removed material was recorded while its 3 free housings were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_are_received_whole_and_a_removed_material_is_not_received_into_nothing() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    import(&mut c, "lamps", LAMPS, pb::ImportMode::Replace)
        .await
        .expect("catalogue");
    let cmp = c
        .campaigns
        .create_campaign(campaign("cmp-lamp", "lamp", 5, 14, start()))
        .await
        .expect("campaign")
        .into_inner();
    c.preorders
        .place_preorder(place("lamp-1", &cmp.id, "con_1", 5))
        .await
        .expect("locks");
    let plan = run_cycle(&mut c, "lamp-cycle").await;
    let po = plan
        .purchase_orders
        .iter()
        .find(|p| p.material_id == "housing")
        .expect("housings bought")
        .clone();
    assert!(close(po.quantity, 8.0), "{po:?}");
    let mut p = purchasing(&c);
    let receive = |key: &str, qty: f64| pb::ReceivePurchaseOrderRequest {
        idempotency_key: key.into(),
        purchase_order_id: po.id.clone(),
        quantity: qty,
    };
    let on_hand = |text: String, id: &str| {
        let s = c2m_planner::Scenario::from_toml_str(&text).expect("a scenario");
        s.materials.iter().find(|m| m.id == id).map(|m| m.on_hand)
    };

    let half = p
        .receive_purchase_order(receive("rcv-half", 2.5))
        .await
        .expect_err("2.5 housings");
    assert_refused(&half, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(error_meta(&half, "field").as_deref(), Some("quantity"));
    assert_eq!(error_meta(&half, "material").as_deref(), Some("housing"));
    assert_eq!(error_meta(&half, "value").as_deref(), Some("2.5"));
    assert!(half.message().contains("housing"), "{half:?}");
    assert_eq!(received(&mut p, &po.id).await, 0.0, "nothing was counted");

    // The catalogue's own stock of a material counted in pieces is whole too.
    let odd = "name = \"lamps\"\ncurrency = \"CNY\"\n\n[[materials]]\nid = \"housing\"\n\
               unit = \"pcs\"\non_hand = 1.5\n";
    let refused = import(&mut c, "odd-stock", odd, pb::ImportMode::Merge)
        .await
        .expect_err("1.5 housings in stock");
    assert_refused(&refused, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(
        error_meta(&refused, "field").as_deref(),
        Some("materials[0].on_hand")
    );
    assert_eq!(error_meta(&refused, "material").as_deref(), Some("housing"));

    // The merchant takes housings out of the lamp, drops their supplier, then removes
    // them from the catalogue.
    let lamp = "name = \"lamps\"\ncurrency = \"CNY\"\n\n[[products]]\nsku = \"lamp\"\n\
                demand = 0\nbom = { glue = 0.1 }\n";
    import(&mut c, "lamp-without", lamp, pb::ImportMode::Merge)
        .await
        .expect("lamp without housing");
    for (kind, id) in [
        (pb::CatalogueKind::Supplier, "partsco"),
        (pb::CatalogueKind::Material, "housing"),
    ] {
        c.catalogue
            .delete_catalogue_entry(pb::DeleteCatalogueEntryRequest {
                idempotency_key: format!("drop-{id}"),
                kind: kind as i32,
                id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{id} removed: {e:?}"));
    }
    let gone = p
        .receive_purchase_order(receive("rcv-gone", 8.0))
        .await
        .expect_err("no housing in the catalogue");
    assert_refused(&gone, Code::FailedPrecondition, "MATERIAL_NOT_IN_CATALOGUE");
    assert_eq!(error_meta(&gone, "material").as_deref(), Some("housing"));
    assert_eq!(
        error_meta(&gone, "purchaseOrderId").as_deref(),
        Some(po.id.as_str())
    );
    assert_eq!(received(&mut p, &po.id).await, 0.0, "nothing was recorded");

    // Added back, the same receipt counts: 5 are the work order's, 3 are free stock.
    let back = "name = \"lamps\"\ncurrency = \"CNY\"\n\n[[materials]]\nid = \"housing\"\n\
                unit = \"pcs\"\non_hand = 0.0\n";
    import(&mut c, "housing-back", back, pb::ImportMode::Merge)
        .await
        .expect("housing back");
    let done = p
        .receive_purchase_order(receive("rcv-back", 8.0))
        .await
        .expect("received")
        .into_inner();
    assert_eq!(done.state(), pb::PurchaseOrderState::Received);
    let text = export(&mut c, pb::ScenarioFormat::Toml).await;
    assert_eq!(on_hand(text, "housing"), Some(3.0));
    server.shutdown().await;
}

/// A purchase the plan places in a later week is PLANNED until its order date: not yet to
/// send to the supplier, listed apart from the orders to place now, and OPEN once the
/// clock reaches its order date. Both factories are closed for the first three weeks and
/// steel costs holding, so the kettles are made in week 3 or later (they are due in week 5)
/// and their steel is bought in the week they are made.
/// Before, such an order was OPEN at once, and the CSV for suppliers sent it weeks early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_placed_in_a_later_week_is_planned_until_its_order_date() {
    let t0 = start();
    let clock = Arc::new(ManualClock::new(t0));
    let server = TestServer::sqlite_in(tempfile::tempdir().expect("tempdir"), clock.clone(), |s| {
        s.plan_horizon_days = 84
    })
    .await;
    let mut c = server.clients().await;
    let closed_first = |id: &str| {
        (
            format!("[[factories]]\nid = \"{id}\"\ncapacity_hours = 100.0\n"),
            format!(
                "[[factories]]\nid = \"{id}\"\ncapacity_hours = [0.0, 0.0, 0.0{}]\n",
                ", 100.0".repeat(9)
            ),
        )
    };
    let mut text = CATALOGUE.replace("demand = 0\n", "due = []\n")
        + "\n[horizon]\nperiods = 12\nperiod_days = 7\n";
    for id in ["f1", "f2"] {
        let (from, to) = closed_first(id);
        assert!(text.contains(&from));
        text = text.replacen(&from, &to, 1);
    }
    import(&mut c, "closed-first", &text, pb::ImportMode::Replace)
        .await
        .expect("catalogue");
    locked_kettles(&mut c, "later", 35, t0).await;
    let plan = run_cycle(&mut c, "later-cycle").await;
    assert_eq!(plan.purchase_orders.len(), 1, "{:?}", plan.purchase_orders);
    let po = plan.purchase_orders[0].clone();
    assert!((3..=4).contains(&po.order_period), "{po:?}");
    let ordered_at = at(po.ordered_at.as_ref().expect("ordered_at"));
    assert_eq!(ordered_at, t0 + Duration::days(7 * po.order_period));
    assert_eq!(po.state(), pb::PurchaseOrderState::Planned);

    // GetPurchaseOrder shows `state`, and listing by state finds it there and not under
    // the other one.
    let p = purchasing(&c);
    let shown_as = |state: pb::PurchaseOrderState| {
        let (mut p, id) = (p.clone(), po.id.clone());
        async move {
            let got = p
                .get_purchase_order(pb::GetPurchaseOrderRequest {
                    purchase_order_id: id.clone(),
                })
                .await
                .expect("get")
                .into_inner();
            assert_eq!(got.state(), state);
            for s in [
                pb::PurchaseOrderState::Planned,
                pb::PurchaseOrderState::Open,
            ] {
                let ids: Vec<String> = p
                    .list_purchase_orders(pb::ListPurchaseOrdersRequest {
                        state: s as i32,
                        ..Default::default()
                    })
                    .await
                    .expect("list")
                    .into_inner()
                    .purchase_orders
                    .into_iter()
                    .map(|o| o.id)
                    .collect();
                let want = if s == state { vec![id.clone()] } else { vec![] };
                assert_eq!(ids, want, "listed as {s:?}");
            }
        }
    };
    shown_as(pb::PurchaseOrderState::Planned).await;
    // Its order date comes: it is due to be placed.
    clock.advance(ordered_at - t0 - Duration::seconds(1));
    shown_as(pb::PurchaseOrderState::Planned).await;
    clock.advance(Duration::seconds(1));
    shown_as(pb::PurchaseOrderState::Open).await;
    server.shutdown().await;
}

/// A factory's flat `capacity_hours` are hours per period of the server that imported
/// them, and a server planning in other periods (a replica given another
/// `--plan-period-days`, or a restart with one) reads the same hours per day. Imported in
/// weeks at 35 hours, the factory has 70 hours a fortnight: 60 lamps, an hour each, due
/// within the first fortnight, are on time, and the export in fortnights says 70. Before,
/// the fortnight server read 35 hours a fortnight and showed 25 of them late.
#[tokio::test]
async fn a_capacity_imported_in_weeks_counts_per_day_in_fortnights() {
    const LAMPS: &str = r#"
name = "lamps"
currency = "CNY"

[[products]]
sku = "lamp"
demand = 0
bom = {}

[[factories]]
id = "f1"
capacity_hours = 35.0

[[factories.lines]]
sku = "lamp"
unit_cost = 100.0
hours_per_unit = 1.0
"#;
    let clock = Arc::new(ManualClock::new(start()));
    let weeks = TestServer::sqlite_in(tempfile::tempdir().expect("tempdir"), clock.clone(), |s| {
        (s.plan_horizon_days, s.plan_period_days) = (28, 7)
    })
    .await;
    let mut c = weeks.clients().await;
    import(&mut c, "lamps", LAMPS, pb::ImportMode::Replace)
        .await
        .expect("import");
    let dir = weeks.shutdown().await.expect("its data directory");

    let fortnights = TestServer::sqlite_in(dir, clock.clone(), |s| {
        (s.plan_horizon_days, s.plan_period_days) = (28, 14)
    })
    .await;
    let mut c = fortnights.clients().await;
    let mut req = crate::common::campaign_request("lamps", 60);
    req.sku = "lamp".into();
    req.max_per_order = None;
    req.deposit_minor = req.unit_price_minor;
    req.ships_within_days = Some(14);
    let cmp = crate::common::created(&mut c, req).await;
    let order = c
        .preorders
        .place_preorder(place("lamps-order", &cmp.id, "consumer-1", 60))
        .await
        .expect("order")
        .into_inner();
    let plan = run_cycle(&mut c, "fortnight-cycle").await;
    assert_eq!(plan.batch_ids.len(), 1);
    let made: i64 = plan
        .work_orders
        .iter()
        .flat_map(|w| &w.runs)
        .filter(|r| r.period == Some(0))
        .map(|r| r.quantity)
        .sum();
    assert_eq!(made, 60, "all 60 in the first fortnight: {plan:?}");
    let shipped = ship_date(&mut c, &order.id).await;
    assert!(shipped.planned && !shipped.late, "{shipped:?}");
    let exported = export(&mut c, pb::ScenarioFormat::Toml).await;
    assert!(
        exported.contains("capacity_hours = 70.0"),
        "the export gives hours per fortnight: {exported}"
    );
    fortnights.shutdown().await;
}
