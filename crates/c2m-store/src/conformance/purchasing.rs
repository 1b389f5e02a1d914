//! Conformance cases for the promise (due dates, planned ship dates) and purchase orders.
//! Every quantity a case expects is worked out here from what it stored.

use std::sync::Arc;

use chrono::Duration;

use c2m_domain::{BatchStatus, PageRequest, Progress, Refusal};

use super::{
    accept_all, batch_production, batches, consumer, create, invalid_field, key, locked_batch,
    new_plan, not_found, one_key_at_once, part_order, place, precondition, report_req, spec, t0,
    try_create, use_sample_catalogue, Fixture,
};
use crate::planning::RunSchedule;
use crate::{
    CancelPurchaseOrder, CatalogueEdit, CatalogueKind, ChangeCatalogue, NewPurchaseOrder,
    OrderDate, PlanStatus, PurchaseOrder, PurchaseOrderChange, PurchaseOrderFilter,
    PurchaseOrderState, ReceivePurchaseOrder, Store,
};

async fn on_hand(store: &dyn Store, material: &str) -> f64 {
    let c = store.catalogue().await.expect("catalogue");
    c.materials
        .iter()
        .find(|m| m.id == material)
        .map(|m| m.on_hand)
        .expect("material")
}

fn receive(id: &str, quantity: f64) -> ReceivePurchaseOrder {
    ReceivePurchaseOrder {
        idempotency_key: key(),
        purchase_order_id: id.into(),
        quantity,
    }
}

fn cancel(id: &str) -> CancelPurchaseOrder {
    CancelPurchaseOrder {
        idempotency_key: key(),
        purchase_order_id: id.into(),
    }
}

/// Receiving `quantity` on the order `id` under a fresh key.
async fn receipt(store: &dyn Store, id: &str, quantity: f64) -> crate::Result<PurchaseOrder> {
    store
        .change_purchase_order(&PurchaseOrderChange::Receive(receive(id, quantity)), t0())
        .await
}

/// The refusal of receiving `quantity` on the order `id` under a fresh key.
async fn receipt_refused(store: &dyn Store, id: &str, quantity: f64) -> Refusal {
    precondition(receipt(store, id, quantity).await)
}

/// The refusal of cancelling the order `id` under a fresh key.
async fn cancel_refused(store: &dyn Store, id: &str) -> Refusal {
    let change = PurchaseOrderChange::Cancel(cancel(id));
    precondition(store.change_purchase_order(&change, t0()).await)
}

pub async fn a_promise_gives_due_dates_and_plans_give_ship_dates(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    // 0 and negative promises are refused naming the field, and nothing is written.
    for days in [0, -5] {
        let mut s = spec(2, None);
        s.ships_within_days = Some(days);
        let r = try_create(&*store, s).await;
        assert_eq!(invalid_field(r), "ships_within_days");
    }
    let listed = store.list_campaigns(PageRequest::first(10)).await.unwrap();
    assert!(listed.items.is_empty(), "a refused campaign wrote nothing");

    use_sample_catalogue(&*store).await;
    let mut s = spec(2, None);
    s.deposit = s.unit_price;
    s.ships_within_days = Some(20);
    let c = create(&*store, s).await;
    assert_eq!(c.terms.ships_within_days, 20);
    let got = store.get_campaign(&c.id).await.unwrap();
    assert_eq!(got.campaign.terms.ships_within_days, 20);
    place(&*store, &c.id, &consumer(1), 2).await.expect("locks");
    let b = batches(&*store, &c.id).await.remove(0);
    assert_eq!(b.status, BatchStatus::Locked);
    let due = b.locked_at.expect("locked") + Duration::days(20);

    // Waiting for a plan: the promise is the date.
    let queue = store.planning_queue().await.unwrap();
    assert_eq!(queue[0].due_at, due);
    let p = batch_production(&*store, &[&b]).await;
    assert_eq!((p[0].due_at, p[0].planned_ship_at), (Some(due), None));

    // Planned: the end of its run, late after the due date with the plan's reason.
    let mut wo = part_order("f1", &b, 2);
    let ends = due + Duration::days(3);
    wo.runs[0].schedule = Some(RunSchedule {
        period: 2,
        starts_at: ends - Duration::days(7),
        ends_at: ends,
        hours: 0.2,
    });
    wo.runs[0].batches[0].late_reason = Some("f1 is closed until then".into());
    let mut plan = new_plan(PlanStatus::Optimal, vec![b.id.clone()], vec![wo]);
    plan.detail.reservations = vec![];
    store.store_plan(&plan, t0()).await.expect("stored");
    let p = batch_production(&*store, &[&b]).await;
    assert_eq!(p[0].planned_ship_at, Some(ends));
    assert_eq!(p[0].late_reason.as_deref(), Some("f1 is closed until then"));
    let frozen = store.frozen_work_orders().await.unwrap();
    assert_eq!(frozen.len(), 1);
    assert_eq!(
        frozen[0].order.runs[0].schedule.as_ref().unwrap().ends_at,
        ends
    );
}

/// Campaigns created before the promise (migration 0009) were given 42 days whatever their
/// balance window: with a window of 50 days, promised to ship 8 days before a balance was
/// due (QA pass eight). Migration 0014 gives exactly those campaigns the promise the rule
/// gives a campaign without one (the window plus 28 days: 78), and leaves a promise that
/// could be kept as it was. The case leaves two campaigns as such a c2m left them, then
/// opens the store again with the migration to run.
pub async fn an_older_promise_before_the_balance_is_due_moves_after_it(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let day = 86_400;
    let mut s = spec(5, None);
    s.balance_window_secs = Some(50 * day);
    let long = create(&*store, s).await;
    assert_eq!(long.terms.ships_within_days, 78, "the rule today");
    let mut s = spec(5, None);
    s.balance_window_secs = Some(20 * day);
    s.ships_within_days = Some(42);
    let kept = create(&*store, s).await;
    let mut s = spec(5, None);
    s.balance_window_secs = Some(41 * day + 1);
    s.ships_within_days = Some(43);
    let tight = create(&*store, s).await;
    let full_price = create(&*store, {
        let mut s = spec(5, None);
        s.deposit = s.unit_price;
        s.ships_within_days = Some(10);
        s
    })
    .await;
    // As a c2m before migration 0009 left them (its default, 42 days), and as if
    // migration 0014 had not run yet.
    fx.execute_past_the_store(&format!(
        "UPDATE campaigns SET ships_within_days = 42 WHERE id IN ('{}', '{}'); \
         DELETE FROM _sqlx_migrations WHERE version = 14",
        long.id.as_str(),
        tight.id.as_str()
    ))
    .await;
    let promise = |store: Arc<dyn Store>, id: crate::CampaignId| async move {
        let c = store.get_campaign(&id).await.expect("campaign");
        c.campaign.terms.ships_within_days
    };
    assert_eq!(promise(store.clone(), long.id.clone()).await, 42);

    let upgraded = fx.replica().await;
    assert_eq!(promise(upgraded.clone(), long.id.clone()).await, 50 + 28);
    assert_eq!(promise(upgraded.clone(), kept.id.clone()).await, 42);
    // 41 days and a second is 42 whole days: 42 was not longer, so 42 + 28.
    assert_eq!(promise(upgraded.clone(), tight.id.clone()).await, 42 + 28);
    assert_eq!(promise(upgraded, full_price.id.clone()).await, 10);
}

pub async fn purchase_orders_are_received_once_and_return_on_rejection(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    use_sample_catalogue(&*store).await;
    assert_eq!(on_hand(&*store, "steel").await, 10.0);
    let b = locked_batch(&*store, "kettle-17-white").await;
    // The work order takes 4 steel from stock and 6 from the first order; the plan buys
    // 10 on it (4 free when they arrive) and 5 more on a second, for nothing yet.
    let mut wo = part_order("f1", &b, 2);
    wo.materials.push(crate::planning::MaterialDelivery {
        material: "steel".into(),
        supplier: Some("steel-co".into()),
        quantity: 6.0,
        purchase_order: Some("pur_first".into()),
    });
    let mut plan = new_plan(PlanStatus::Optimal, vec![b.id.clone()], vec![wo]);
    plan.idempotency_key = Some(key());
    let po = |id: &str, qty: f64, allocated: f64, period: i64| NewPurchaseOrder {
        unit_price: 80.0,
        tier: 1,
        allocated,
        ..steel_order(id, qty, period, &b)
    };
    plan.purchase_orders = vec![po("pur_first", 10.0, 6.0, 0), po("pur_second", 5.0, 0.0, 1)];
    let plan_id = store.store_plan(&plan, t0()).await.expect("stored");
    assert_eq!(on_hand(&*store, "steel").await, 6.0, "4 reserved");
    // Storing the same plan again (same key) stores no second set of orders.
    assert_eq!(store.store_plan(&plan, t0()).await.unwrap(), plan_id);
    let stored = store.get_plan(&plan_id).await.unwrap();
    assert_eq!(stored.purchase_orders.len(), 2);
    let all = store
        .list_purchase_orders(&PurchaseOrderFilter::default(), PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    // The second is ordered a week on: planned until then, due from then.
    let by_date = |order_date| {
        let store = &store;
        async move {
            let filter = PurchaseOrderFilter {
                state: Some(PurchaseOrderState::Open),
                order_date: Some(order_date),
                ..Default::default()
            };
            let page = store
                .list_purchase_orders(&filter, PageRequest::first(10))
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|p| p.order.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by_date(OrderDate::Reached(t0())).await, ["pur_first"]);
    assert_eq!(by_date(OrderDate::Ahead(t0())).await, ["pur_second"]);
    let week = t0() + Duration::days(7);
    assert_eq!(
        by_date(OrderDate::Reached(week)).await,
        ["pur_first", "pur_second"]
    );
    assert!(by_date(OrderDate::Ahead(week)).await.is_empty());
    let second = store.get_purchase_order("pur_second").await.unwrap();
    assert!(second.is_planned(t0()) && !second.is_planned(week));
    let first = store.get_purchase_order("pur_first").await.unwrap();
    assert!(!first.is_planned(t0()));
    assert_eq!(
        (first.state, first.order.allocated, first.free_to_arrive()),
        (PurchaseOrderState::Open, 6.0, 4.0)
    );
    assert_eq!(first.currency, "CNY");
    assert_eq!(store.outstanding_purchase_orders().await.unwrap().len(), 2);
    not_found(
        store.get_purchase_order("pur_nowhere").await,
        "purchase order",
    );

    // Receiving in two parts; a retry with the same key counts once.
    let part = PurchaseOrderChange::Receive(receive("pur_first", 4.0));
    let r = store.change_purchase_order(&part, t0()).await.unwrap();
    assert_eq!(
        (r.state, r.received),
        (PurchaseOrderState::PartlyReceived, 4.0)
    );
    assert_eq!(store.change_purchase_order(&part, t0()).await.unwrap(), r);
    assert_eq!(
        on_hand(&*store, "steel").await,
        6.0,
        "the 4 arrived are the work order's"
    );
    // More than is still to arrive, a bad quantity: refused, nothing written.
    match receipt_refused(&*store, "pur_first", 7.0).await {
        Refusal::OverReceived { outstanding, .. } => assert_eq!(outstanding, "6"),
        other => panic!("expected OVER_RECEIVED, got {other:?}"),
    }
    assert_eq!(
        invalid_field(receipt(&*store, "pur_first", 0.0).await),
        "quantity"
    );
    assert_eq!(
        store
            .get_purchase_order("pur_first")
            .await
            .unwrap()
            .received,
        4.0
    );
    let r = receipt(&*store, "pur_first", 6.0).await.unwrap();
    assert_eq!((r.state, r.received), (PurchaseOrderState::Received, 10.0));
    assert_eq!(
        on_hand(&*store, "steel").await,
        10.0,
        "4 beyond the work order's 6 are free"
    );
    assert!(matches!(
        cancel_refused(&*store, "pur_first").await,
        Refusal::PurchaseOrderNotOpen { .. }
    ));

    // Cancelling an open order; a cancelled order receives nothing.
    let c = PurchaseOrderChange::Cancel(cancel("pur_second"));
    let done = store.change_purchase_order(&c, t0()).await.unwrap();
    assert_eq!(done.state, PurchaseOrderState::Cancelled);
    assert_eq!(store.change_purchase_order(&c, t0()).await.unwrap(), done);
    assert!(matches!(
        cancel_refused(&*store, "pur_second").await,
        Refusal::PurchaseOrderCancelled { .. }
    ));
    assert!(matches!(
        receipt_refused(&*store, "pur_second", 1.0).await,
        Refusal::PurchaseOrderCancelled { .. }
    ));
    let filter = PurchaseOrderFilter {
        supplier_id: Some("steel-co".into()),
        state: Some(PurchaseOrderState::Cancelled),
        order_date: None,
    };
    let cancelled = store
        .list_purchase_orders(&filter, PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(cancelled.items.len(), 1);
    assert_eq!(cancelled.items[0].order.id, "pur_second");
    assert!(store
        .outstanding_purchase_orders()
        .await
        .unwrap()
        .is_empty());

    // The factory rejects: its 4 from stock and its 6 received on the first order are free
    // stock again.
    let w = store
        .factory_work_orders("f1", 0, 10)
        .await
        .unwrap()
        .remove(0);
    store
        .report_progress(
            &report_req(
                "f1",
                &w.id,
                Progress::Rejected {
                    reason: "no steel press".into(),
                },
            ),
            t0(),
        )
        .await
        .expect("rejected");
    assert_eq!(on_hand(&*store, "steel").await, 20.0);
    assert_eq!(
        store
            .get_purchase_order("pur_first")
            .await
            .unwrap()
            .order
            .allocated,
        0.0
    );
}

/// A receipt of a material counted in pieces (the sample's `cord`, unit `pc`) is a whole
/// number, named with the material and the value when it is not, except the exact rest of
/// an order planned in decimals; a measured material (`steel`, kg) takes decimals. A
/// receipt on an order whose material left the catalogue is refused
/// (`MATERIAL_NOT_IN_CATALOGUE`) and writes nothing; once the material is back, the same
/// receipt counts its stock. Before, the fraction was taken as stock, and the removed
/// material's receipt was recorded while its freed stock went nowhere.
pub async fn receipts_count_pieces_whole_and_only_for_materials_in_the_catalogue(
    fx: Arc<dyn Fixture>,
) {
    use c2m_domain::DomainError;
    let store = fx.store();
    use_sample_catalogue(&*store).await;
    let b = locked_batch(&*store, "kettle-17-white").await;
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![part_order("f1", &b, 2)],
    );
    let po = |id: &str, material: &str, qty: f64, period: i64| NewPurchaseOrder {
        id: id.into(),
        supplier_id: "steel-co".into(),
        material_id: material.into(),
        quantity: qty,
        unit_price: 80.0,
        tier: 0,
        packs: None,
        order_period: period,
        ordered_at: t0(),
        expected_at: t0() + Duration::days(7),
        batches: vec![b.id.clone()],
        allocated: 0.0,
    };
    plan.purchase_orders = vec![
        po("pur_cord", "cord", 10.0, 0),
        po("pur_cord_decimal", "cord", 2.5, 1),
        po("pur_steel", "steel", 10.0, 0),
    ];
    store.store_plan(&plan, t0()).await.expect("stored");

    match receipt(&*store, "pur_cord", 2.5).await {
        Err(crate::StoreError::Domain(DomainError::NotWholePieces {
            field,
            material,
            unit,
            value,
        })) => assert_eq!(
            (
                field.as_str(),
                material.as_str(),
                unit.as_str(),
                value.as_str()
            ),
            ("quantity", "cord", "pc", "2.5")
        ),
        other => panic!("expected NotWholePieces, got {other:?}"),
    }
    let cord = store.get_purchase_order("pur_cord").await.unwrap();
    assert_eq!(cord.received, 0.0, "a refused receipt writes nothing");
    assert_eq!(on_hand(&*store, "cord").await, 0.0);
    // No piece at all (1e-300 rounds to 0) is refused too: taken, it would have made the
    // open order partly received with nothing received, and so no longer cancellable.
    for tiny in [1e-300, 5e-10] {
        match receipt(&*store, "pur_cord", tiny).await {
            Err(crate::StoreError::Domain(DomainError::NotWholePieces { field, .. })) => {
                assert_eq!(field, "quantity")
            }
            other => panic!("expected NotWholePieces for {tiny}, got {other:?}"),
        }
    }
    let cord = store.get_purchase_order("pur_cord").await.unwrap();
    assert_eq!(cord.state, PurchaseOrderState::Open, "nothing written");
    // A count a hair off a whole number is that number: `received` and stock stay whole.
    let r = receipt(&*store, "pur_cord", 1.000_000_000_1)
        .await
        .expect("one piece");
    assert_eq!(r.received, 1.0);
    let r = receipt(&*store, "pur_cord", 2.0)
        .await
        .expect("whole pieces");
    assert_eq!(r.received, 3.0);
    assert_eq!(on_hand(&*store, "cord").await, 3.0);
    let r = receipt(&*store, "pur_steel", 2.5)
        .await
        .expect("kilograms take decimals");
    assert_eq!(r.received, 2.5);
    // An order planned in decimals: whole pieces, then its exact rest.
    receipt(&*store, "pur_cord_decimal", 2.0)
        .await
        .expect("whole pieces");
    let r = receipt(&*store, "pur_cord_decimal", 0.5)
        .await
        .expect("the rest of the order");
    assert_eq!(r.state, PurchaseOrderState::Received);
    assert_eq!(on_hand(&*store, "cord").await, 5.5);

    // The material leaves the catalogue (the kettle's bill of materials first, or the
    // delete is ENTRY_IN_USE): its receipt is refused and nothing is written.
    let mut kettle = (store.catalogue().await.unwrap().products.into_iter())
        .find(|p| p.sku == "kettle-17-white")
        .expect("the sample's kettle");
    kettle.bom.remove("cord");
    super::change(
        &*store,
        crate::CatalogueEdit::Merge(crate::Catalogue {
            products: vec![kettle],
            ..crate::Catalogue::default()
        }),
        super::accept_all(),
    )
    .await
    .expect("the kettle without its cord");
    super::change(
        &*store,
        crate::CatalogueEdit::Delete {
            kind: crate::CatalogueKind::Material,
            id: "cord".into(),
        },
        super::accept_all(),
    )
    .await
    .expect("cord removed");
    let version = store.catalogue().await.unwrap().version;
    match receipt_refused(&*store, "pur_cord", 3.0).await {
        Refusal::MaterialNotInCatalogue {
            purchase_order,
            material,
        } => assert_eq!(
            (purchase_order.as_str(), material.as_str()),
            ("pur_cord", "cord")
        ),
        other => panic!("expected MATERIAL_NOT_IN_CATALOGUE, got {other:?}"),
    }
    let cord = store.get_purchase_order("pur_cord").await.unwrap();
    assert_eq!(
        (cord.received, cord.state),
        (3.0, PurchaseOrderState::PartlyReceived)
    );
    assert_eq!(store.catalogue().await.unwrap().version, version);

    // Back in the catalogue (with no stock), the receipt counts.
    let mut back = crate::Catalogue::default();
    back.materials.push(crate::catalogue::CatalogueMaterial {
        id: "cord".into(),
        unit: "pc".into(),
        on_hand: 0.0,
        holding_cost: 0.0,
    });
    super::change(
        &*store,
        crate::CatalogueEdit::Merge(back),
        super::accept_all(),
    )
    .await
    .expect("cord back");
    let r = receipt(&*store, "pur_cord", 3.0).await.expect("received");
    assert_eq!(r.received, 6.0);
    assert_eq!(on_hand(&*store, "cord").await, 3.0);
}

/// A catalogue delete, a purchase order's receipt of everything outstanding and its cancel,
/// and a factory's shipment in full, each with one key sent to two replicas at once: every
/// send answers as the first. The writes take a lock (the catalogue's, the planning lock,
/// the work order's) after looking the key up; a send that waited for the lock while the
/// other committed must replay that answer, not be refused by the state it left (the entry
/// gone, nothing left to receive, the order cancelled, the work order shipped).
pub async fn changes_sent_to_two_replicas_at_once_answer_as_the_first(fx: Arc<dyn Fixture>) {
    let stores = [fx.store(), fx.replica().await];
    use_sample_catalogue(&*stores[0]).await;

    let delete = ChangeCatalogue {
        idempotency_key: key(),
        edit: CatalogueEdit::Delete {
            kind: CatalogueKind::Product,
            id: "toaster".into(),
        },
    };
    one_key_at_once(&stores, "delete a product", move |s| {
        let delete = delete.clone();
        async move { s.change_catalogue(&delete, accept_all(), t0()).await }
    })
    .await;
    let left = stores[1].catalogue().await.expect("catalogue");
    assert!(left.products.iter().all(|p| p.sku != "toaster"));

    let b = locked_batch(&*stores[0], "kettle-17-white").await;
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![part_order("f1", &b, 2)],
    );
    plan.purchase_orders = vec![
        steel_order("pur_whole", 10.0, 0, &b),
        steel_order("pur_cancelled", 5.0, 1, &b),
    ];
    stores[0].store_plan(&plan, t0()).await.expect("plan");

    let before = on_hand(&*stores[0], "steel").await;
    let req = PurchaseOrderChange::Receive(receive("pur_whole", 10.0));
    let received = one_key_at_once(&stores, "receive everything", move |s| {
        let req = req.clone();
        async move { s.change_purchase_order(&req, t0()).await }
    })
    .await;
    assert_eq!(received.state, PurchaseOrderState::Received);
    assert_eq!(
        on_hand(&*stores[0], "steel").await,
        before + 10.0,
        "received once"
    );
    let req = PurchaseOrderChange::Cancel(cancel("pur_cancelled"));
    let cancelled = one_key_at_once(&stores, "cancel", move |s| {
        let req = req.clone();
        async move { s.change_purchase_order(&req, t0()).await }
    })
    .await;
    assert_eq!(cancelled.state, PurchaseOrderState::Cancelled);

    let w = stores[0].factory_work_orders("f1", 0, 10).await.unwrap()[0]
        .id
        .clone();
    for progress in [
        Progress::InProduction,
        Progress::QualityCheck {
            passed: 2,
            failed: 0,
        },
    ] {
        stores[0]
            .report_progress(&report_req("f1", &w, progress), t0())
            .await
            .expect("progress");
    }
    let shipped = report_req(
        "f1",
        &w,
        Progress::Shipped {
            quantities: [("kettle-17-white".to_string(), 2)].into_iter().collect(),
        },
    );
    let status = one_key_at_once(&stores, "ship in full", move |s| {
        let shipped = shipped.clone();
        async move { s.report_progress(&shipped, t0()).await }
    })
    .await;
    assert_eq!(status.state, c2m_domain::WorkOrderState::Shipped);
}

/// A purchase order of `quantity` kg of steel (packs of 5 kg) from steel-co for batch `b`,
/// ordered in week `period` and expected a week later, at 50 a kg (tier 0), nothing
/// allocated from stock.
/// A later plan whose work orders use an earlier plan's open purchase order adds its
/// batches to the order's, with the quantity; one that asks for more than is free is
/// refused and changes neither. Before, the quantity was added but not the batches, so an
/// order did not name every batch whose work orders use it (QA pass ten).
pub async fn a_later_plan_that_uses_an_earlier_order_adds_its_batches(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    use_sample_catalogue(&*store).await;
    let uses = |factory: &str, b: &c2m_domain::Batch, quantity: f64| {
        let mut wo = part_order(factory, b, 2);
        wo.materials = vec![crate::planning::MaterialDelivery {
            material: "steel".into(),
            supplier: Some("steel-co".into()),
            quantity,
            purchase_order: Some("pur_shared".into()),
        }];
        wo
    };
    let first = locked_batch(&*store, "kettle-17-white").await;
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![first.id.clone()],
        vec![uses("f1", &first, 6.0)],
    );
    plan.detail.reservations = vec![];
    plan.purchase_orders = vec![NewPurchaseOrder {
        allocated: 6.0,
        ..steel_order("pur_shared", 10.0, 0, &first)
    }];
    store.store_plan(&plan, t0()).await.expect("first plan");

    let second = locked_batch(&*store, "kettle-17-white").await;
    let later = |b: &c2m_domain::Batch, quantity: f64| {
        let mut plan = new_plan(
            PlanStatus::Optimal,
            vec![b.id.clone()],
            vec![uses("f2", b, quantity)],
        );
        plan.detail.reservations = vec![];
        plan.allocations = vec![crate::planning::Allocation {
            purchase_order: "pur_shared".into(),
            quantity,
            batches: vec![b.id.clone()],
        }];
        plan
    };
    store
        .store_plan(&later(&second, 3.0), t0())
        .await
        .expect("second plan");
    let po = store.get_purchase_order("pur_shared").await.expect("order");
    assert_eq!(po.order.allocated, 9.0);
    assert_eq!(po.order.batches, [first.id.clone(), second.id.clone()]);

    // One free unit left: a plan that wants two is refused, and the order stays as it was.
    let third = locked_batch(&*store, "kettle-17-white").await;
    let refused = store.store_plan(&later(&third, 2.0), t0()).await;
    assert!(
        matches!(precondition(refused), Refusal::StockChanged { .. }),
        "two of one free"
    );
    let po = store.get_purchase_order("pur_shared").await.expect("order");
    assert_eq!(po.order.allocated, 9.0);
    assert_eq!(po.order.batches, [first.id, second.id]);
}

fn steel_order(id: &str, quantity: f64, period: i64, b: &c2m_domain::Batch) -> NewPurchaseOrder {
    NewPurchaseOrder {
        id: id.into(),
        supplier_id: "steel-co".into(),
        material_id: "steel".into(),
        quantity,
        unit_price: 50.0,
        tier: 0,
        packs: Some((quantity / 5.0) as i64),
        order_period: period,
        ordered_at: t0() + Duration::days(7 * period),
        expected_at: t0() + Duration::days(7 * period + 7),
        batches: vec![b.id.clone()],
        allocated: 0.0,
    }
}
