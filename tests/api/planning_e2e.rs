//! Catalogue and planning cycles end to end over gRPC (SQLite): two campaigns that share a
//! material lock batches, one cycle plans both, the stored plan checks out against the
//! planner's independent verifier, an infeasible cycle leaves its batches queued with a
//! diagnosis, and the catalogue round-trips through scenario files.

use crate::common::*;
use c2m_planner::{verify_plan, Plan, Scenario};
use c2m_proto::v1 as pb;
use std::time::Duration;
use tonic::Code;

async fn queued(c: &mut Clients) -> Vec<pb::QueuedBatch> {
    c.planning
        .list_queued_batches(pb::ListQueuedBatchesRequest {})
        .await
        .expect("queue")
        .into_inner()
        .batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cycle_plans_two_campaigns_that_share_a_material() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;

    // Import, export, compare: the catalogue is the scenario (demand is not kept).
    import(&mut c, "import-1", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let input = Scenario::from_toml_str(PHONE_CASES).unwrap();
    assert_eq!(
        Scenario::from_toml_str(&export(&mut c, pb::ScenarioFormat::Toml).await).unwrap(),
        input
    );
    assert_eq!(
        Scenario::from_json_str(&export(&mut c, pb::ScenarioFormat::Json).await).unwrap(),
        input
    );

    // A campaign needs its sku in the catalogue.
    let mut unknown = campaign_request("unknown", 10);
    unknown.sku = "case-z".into();
    let err = c.campaigns.create_campaign(unknown).await.unwrap_err();
    assert_refused(&err, Code::FailedPrecondition, "SKU_NOT_IN_CATALOGUE");
    assert_eq!(error_meta(&err, "sku").as_deref(), Some("case-z"));

    // Nothing waits yet.
    assert_refused(
        &run_planning(&mut c, "too-early").await.unwrap_err(),
        Code::FailedPrecondition,
        "NOTHING_TO_PLAN",
    );

    let a = locked_batch(&mut c, "cmp-a", "case-a", 20).await;
    let b = locked_batch(&mut c, "cmp-b", "case-b", 15).await;
    let q = queued(&mut c).await;
    assert_eq!(q.len(), 2);

    // One cycle plans both.
    let plan = run_planning(&mut c, "cycle-1").await.expect("cycle");
    let summary = plan.summary.clone().unwrap();
    assert_eq!(summary.status, pb::PlanStatus::Optimal as i32, "{plan:?}");
    let mut batch_ids = plan.batch_ids.clone();
    batch_ids.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(batch_ids, expected);
    assert!(
        queued(&mut c).await.is_empty(),
        "planned batches leave the queue"
    );

    // The stored scenario and plan reproduce and verify independently.
    let scenario = Scenario::from_toml_str(&plan.scenario_toml).expect("stored scenario parses");
    let demand: Vec<(String, i64)> = scenario
        .products
        .iter()
        .map(|p| (p.sku.clone(), p.demand))
        .collect();
    assert_eq!(demand, vec![("case-a".into(), 20), ("case-b".into(), 15)]);
    let validated = scenario.clone().validate().expect("valid");
    let stored: Plan = serde_json::from_str(&plan.plan_json).expect("stored plan parses");
    verify_plan(&validated, &stored).expect("the stored plan passes the verifier");
    assert_eq!(
        summary.total_cost.as_ref().unwrap().minor,
        stored.total_cost
    );
    let tpu_bought: f64 = stored
        .purchases
        .iter()
        .filter(|p| p.material == "tpu")
        .map(|p| p.quantity)
        .sum();
    assert!(
        tpu_bought >= 2.0 - 1e-9,
        "both products' tpu together reach the 2 kg break: {tpu_bought}"
    );

    // Work orders: one per factory that runs, seq 1 each, the batches' units all placed.
    let mut placed: std::collections::HashMap<String, i64> = Default::default();
    for w in &plan.work_orders {
        assert_eq!(w.seq, 1, "first work order of {}", w.factory_id);
        for r in &w.runs {
            for x in &r.batches {
                *placed.entry(x.batch_id.clone()).or_default() += x.units;
            }
        }
    }
    assert_eq!(placed.get(&a), Some(&20));
    assert_eq!(placed.get(&b), Some(&15));

    // Stock on hand used by the plan is reserved.
    let after = Scenario::from_toml_str(&export(&mut c, pb::ScenarioFormat::Toml).await).unwrap();
    let tpu = after.materials.iter().find(|m| m.id == "tpu").unwrap();
    assert!(tpu.on_hand < 0.5, "tpu stock reserved: {}", tpu.on_hand);

    // A retry returns the same plan; GetPlan and ListPlans show it.
    let again = run_planning(&mut c, "cycle-1").await.expect("retry");
    assert_eq!(again.summary.unwrap().id, summary.id);
    let got = c
        .planning
        .get_plan(pb::GetPlanRequest {
            plan_id: summary.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, plan);
    let listed = c
        .planning
        .list_plans(pb::ListPlansRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.plans.len(), 1);

    // An infeasible cycle: no factory has the hours. Stored with its diagnosis; the batch
    // stays queued, visible with the plan that tried it.
    // (Hours are per planning period: 0.01 an hour a week is not one unit in twelve weeks.)
    let small = PHONE_CASES.replace("capacity_hours = 40.0", "capacity_hours = 0.01");
    import(&mut c, "import-small", &small, pb::ImportMode::Replace)
        .await
        .expect("import");
    let late = locked_batch(&mut c, "cmp-c", "case-a", 12).await;
    let infeasible = run_planning(&mut c, "cycle-2")
        .await
        .expect("infeasible cycle is stored");
    let s = infeasible.summary.unwrap();
    assert_eq!(s.status, pb::PlanStatus::Infeasible as i32);
    assert_eq!(
        (&s.total_cost, s.gap),
        (&None, None),
        "no plan, no cost: {s:?}"
    );
    assert!(!infeasible.diagnosis.is_empty());
    assert!(infeasible.work_orders.is_empty());
    let q = queued(&mut c).await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].batch.as_ref().unwrap().id, late);
    assert_eq!(q[0].last_plan.as_ref().unwrap().id, s.id);

    // Fix the catalogue (merge one factory) and plan again.
    let fix = "name = \"fix\"\ncurrency = \"CNY\"\n\n[[factories]]\nid = \"ningbo-2\"\ncapacity_hours = 40.0\n\n[[factories.lines]]\nsku = \"case-a\"\nunit_cost = 350.0\nhours_per_unit = 0.04\n";
    import(&mut c, "fix", fix, pb::ImportMode::Merge)
        .await
        .expect("merge");
    let replanned = run_planning(&mut c, "cycle-3").await.expect("cycle");
    assert_ne!(
        replanned.summary.as_ref().unwrap().status,
        pb::PlanStatus::Infeasible as i32
    );
    assert_eq!(replanned.work_orders.len(), 1);
    assert_eq!(replanned.work_orders[0].factory_id, "ningbo-2");
    assert!(queued(&mut c).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn scenario_errors_name_the_place_and_campaign_skus_stay() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let bad = PHONE_CASES.replace(
        "{ min_qty = 2.0, unit_price = 2400.0 }",
        "{ min_qty = 0.0, unit_price = 2400.0 }",
    );
    let err = import(&mut c, "bad", &bad, pb::ImportMode::Replace)
        .await
        .unwrap_err();
    assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(
        error_meta(&err, "field").as_deref(),
        Some("suppliers[0].offers[0].breaks[1].min_qty")
    );
    let err = import(&mut c, "typo", "name = \"x\"\ncurrency = \"CNY\"\n[[materials]]\nid = \"a\"\nunit = \"kg\"\non_hnd = 1.0\n", pb::ImportMode::Replace).await.unwrap_err();
    assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
    assert!(
        error_meta(&err, "field").is_some_and(|f| f.starts_with("materials[0]")),
        "{err:?}"
    );

    // A made-up currency is refused at the import, by the rule campaigns are held to:
    // taken, it left a catalogue no campaign could ever be created on.
    let made_up = PHONE_CASES.replace("currency = \"CNY\"", "currency = \"ABC\"");
    assert_ne!(made_up, PHONE_CASES);
    let export = async |c: &mut Clients| {
        let r = (c
            .catalogue
            .export_scenario(pb::ExportScenarioRequest::default())
            .await)
            .expect("export")
            .into_inner();
        (r.version, r.text)
    };
    let before = export(&mut c).await;
    let err = import(&mut c, "abc", &made_up, pb::ImportMode::Replace)
        .await
        .unwrap_err();
    assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(error_meta(&err, "field").as_deref(), Some("currency"));
    assert!(
        err.message().contains("not an ISO 4217 currency"),
        "{err:?}"
    );
    assert_eq!(export(&mut c).await, before, "nothing written");

    import(&mut c, "good", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    // A product factory lines make is not deleted from under them: the catalogue's state
    // refuses it (the request is well formed), naming who makes it.
    let delete = |key: &str, kind: pb::CatalogueKind, id: &str| pb::DeleteCatalogueEntryRequest {
        idempotency_key: key.into(),
        kind: kind as i32,
        id: id.into(),
    };
    let err = (c.catalogue)
        .delete_catalogue_entry(delete("del-b", pb::CatalogueKind::Product, "case-b"))
        .await
        .unwrap_err();
    assert_refused(&err, Code::FailedPrecondition, "ENTRY_IN_USE");
    let meta = |k| error_meta(&err, k);
    assert_eq!(
        [
            meta("kind"),
            meta("id"),
            meta("usedByKind"),
            meta("usedBy"),
            meta("uses")
        ],
        ["product", "case-b", "factory", "dongguan-1", "2"].map(|v| Some(v.to_owned()))
    );
    let err = (c.catalogue)
        .delete_catalogue_entry(delete("del-ink", pb::CatalogueKind::Material, "ink"))
        .await
        .unwrap_err();
    assert_refused(&err, Code::FailedPrecondition, "ENTRY_IN_USE");
    assert_eq!(error_meta(&err, "usedBy").as_deref(), Some("case-a"));
    locked_batch(&mut c, "cmp-a", "case-a", 10).await;
    let err = c
        .catalogue
        .delete_catalogue_entry(pb::DeleteCatalogueEntryRequest {
            idempotency_key: "del".into(),
            kind: pb::CatalogueKind::Product as i32,
            id: "case-a".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&err, Code::FailedPrecondition, "SKU_IN_USE");
    assert_eq!(error_meta(&err, "sku").as_deref(), Some("case-a"));
    server.shutdown().await;
}

/// A `RunPlanning` call that ends before its cycle does (its deadline passed, or its
/// client went away) does not throw the cycle away: the cycle runs on in a task of its
/// own and stores its plan under the call's key, and the retry with that key returns
/// that plan rather than solving again. The call is driven by hand here, polled once
/// (far enough to start the cycle, which needs the store and cannot finish on that poll)
/// and then dropped, which is exactly what the transport does to a call it ends; before
/// this, the cycle was dropped with it and no plan ever appeared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_outlives_the_call_that_started_it() {
    use c2m_proto::v1::planning_service_server::PlanningService;
    use std::sync::Arc;
    use std::task::Poll;

    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    locked_batch(&mut c, "cmp-a", "case-a", 20).await;

    let settings = c2m_server::Settings::for_tests(std::env::temp_dir());
    let clock: Arc<dyn c2m_domain::Clock> = Arc::new(c2m_server::SystemClock);
    let horizon = settings.plan_horizon().expect("horizon");
    let svc = c2m_server::services::planning::PlanningSvc {
        ctx: c2m_server::services::Ctx {
            store: server.store.clone(),
            clock: clock.clone(),
            plan_horizon: horizon,
            advice_time_limit: settings.advice_time_limit,
            request_timeout: settings.request_timeout,
        },
        cycles: Arc::new(c2m_server::planning::PlanningCycles::new(
            server.store.clone(),
            clock,
            settings.plan_time_limit,
            horizon,
            c2m_server::services::factory::Deliveries::new(),
        )),
    };
    let mut call = svc.run_planning(tonic::Request::new(pb::RunPlanningRequest {
        idempotency_key: "cut-short".into(),
    }));
    let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_pending())).await;
    assert!(
        first,
        "a cycle reads the store: it cannot be done on its first poll"
    );
    drop(call);

    // Nobody waits for the cycle now; its plan must appear all the same.
    let list = |mut c: Clients| async move {
        c.planning
            .list_plans(pb::ListPlansRequest {
                page_size: 10,
                page_token: String::new(),
            })
            .await
            .expect("list plans")
            .into_inner()
            .plans
    };
    let started = std::time::Instant::now();
    let stored = loop {
        let plans = list(c.clone()).await;
        if !plans.is_empty() {
            break plans;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the dropped call's cycle stored no plan"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(stored.len(), 1);

    // The retry with the key gets that plan; nothing is solved twice.
    let retry = run_planning(&mut c, "cut-short").await.expect("retry");
    assert_eq!(retry.summary.unwrap().id, stored[0].id);
    assert_eq!(list(c.clone()).await.len(), 1);
    server.shutdown().await;
}

/// A stop waits (within its grace) for a cycle run for a call whose client went away, and
/// the cycle stores its plan: the retry with the key after a restart gets that plan, not a
/// new solve. Before, the cycle ran detached from the drain, so the server stopped under
/// it; in the binary the runtime then waited for the solve (24 s past a 5 s grace in a QA
/// pass) and dropped the cycle before it could store anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_a_cycle_whose_caller_went_away_store_its_plan() {
    let clock: std::sync::Arc<dyn c2m_domain::Clock> = std::sync::Arc::new(c2m_server::SystemClock);
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut server = TestServer::sqlite_in(dir, clock.clone(), |s| {
        s.plan_time_limit = Duration::from_secs(4)
    })
    .await;
    let mut c = server.clients().await;
    six_locked_kettle_batches(&mut c).await;
    assert_eq!(queued(&mut c).await.len(), 6);

    // The caller gives up after half a second; the cycle runs on.
    let mut call = tonic::Request::new(pb::RunPlanningRequest {
        idempotency_key: "the-cycle".into(),
    });
    call.set_timeout(Duration::from_millis(500));
    // (The client's own timer may end it before the server's answer: either way.)
    let gone = c.planning.run_planning(call).await.expect_err("cut short");
    assert!(
        matches!(gone.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{gone:?}"
    );
    drop(c);
    server.begin_shutdown();
    let dir = server.shutdown().await.expect("its folder");

    // Right after the stop, the plan is stored; the retry answers it without solving.
    let server = TestServer::sqlite_in(dir, clock, |_| {}).await;
    let mut c = server.clients().await;
    let plans = c
        .planning
        .list_plans(pb::ListPlansRequest::default())
        .await
        .expect("plans")
        .into_inner()
        .plans;
    assert_eq!(
        plans.len(),
        1,
        "the cycle's plan was stored before the stop ended"
    );
    let retried = run_planning(&mut c, "the-cycle").await.expect("the retry");
    assert_eq!(retried.summary.expect("summary").id, plans[0].id);
    assert!(queued(&mut c).await.is_empty(), "every batch planned");
    server.shutdown().await;
}

/// The kettle catalogue and six locked batches of its three kettles: a cycle that takes
/// the solver its whole time limit.
async fn six_locked_kettle_batches(c: &mut Clients) {
    let kettles = include_str!("../../examples/scenarios/kettle-c2m.toml");
    import(c, "kettles", kettles, pb::ImportMode::Replace)
        .await
        .expect("import");
    // Six locked batches: a cycle that takes the solver a while.
    let batches = [
        ("kettle-17-white", 310, 29),
        ("kettle-17-white", 170, 43),
        ("kettle-17-sage", 230, 36),
        ("kettle-12-travel", 260, 50),
        ("kettle-12-travel", 90, 64),
        ("kettle-17-sage", 120, 71),
    ];
    for (n, (sku, units, ships)) in batches.into_iter().enumerate() {
        let mut req = campaign_request(&format!("c{n}"), units);
        req.sku = sku.into();
        req.max_per_order = None;
        req.deposit_minor = req.unit_price_minor;
        req.ships_within_days = Some(ships);
        let cmp = created(c, req).await;
        c.preorders
            .place_preorder(place(&format!("o{n}"), &cmp.id, "consumer-1", units))
            .await
            .expect("order");
    }
    assert_eq!(queued(c).await.len(), 6);
}

/// A stop does not wait for a solve past its grace: the binary exits about a second after
/// the grace, with a solve of its whole 30 s time limit still running (its batches stay
/// queued for the next cycle). Before, the runtime's drop waited for the solve's blocking
/// thread, so the process outlived its grace by as long as the solver ran.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_past_its_grace_for_a_solve() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("c2m.db").display());
    let flags = ["--plan-time-limit", "30s", "--shutdown-grace", "1s"];
    let ServerProcess { addr, mut child } =
        ServerProcess::spawn_with(&url, dir.path(), &flags).await;
    let mut c = Clients::connect(addr).await;
    six_locked_kettle_batches(&mut c).await;
    let call = tokio::spawn(async move { run_planning(&mut c, "cut-off").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let signalled = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("the server stops")
        .expect("status");
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(8),
        "stopped {took:?} after the signal, with a grace of 1 s"
    );
    let answer = call.await.expect("the caller");
    assert!(answer.is_err(), "the call was cut off: {answer:?}");
}

/// Replicas take turns at scheduled cycles: while another replica of the store holds the
/// cycle's turn (here, a lease taken through the store as a second replica would take
/// it), this server's schedule plans nothing, however long batches wait; once the turn
/// is given up, its next tick plans them. Before, every replica's schedule solved the same
/// queue at the same moment, and all but one threw the solve away when storing it found
/// the batches planned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_cycle_waits_its_turn_behind_another_replica() {
    let server = TestServer::sqlite_with(|s| s.plan_when_waiting = 1).await;
    let mut c = server.clients().await;
    import(&mut c, "import-1", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let now = chrono::Utc::now();
    assert!(server
        .store
        .take_cycle_lease("another-replica", now, now + chrono::Duration::hours(1))
        .await
        .expect("lease"));
    locked_batch(&mut c, "cmp-a", "case-a", 20).await;
    // The schedule looks each second; give it several.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        queued(&mut c).await.len(),
        1,
        "planned during another's turn"
    );
    server
        .store
        .release_cycle_lease("another-replica", chrono::Utc::now())
        .await
        .expect("release");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !queued(&mut c).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "not planned after the turn was given up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}
