//! Plans, their summaries and work orders, protobuf side.

use chrono::{DateTime, Utc};
use tonic::Status;

use c2m_proto::v1 as pb;
use c2m_store::planning::WorkOrder;
use c2m_store::{
    OrderDate, PlanStatus, PlanSummary, PurchaseOrder, PurchaseOrderState, StoredPlan,
};

use super::{minor_money, timestamp};
use crate::status::store_status;

fn plan_status(s: PlanStatus) -> i32 {
    (match s {
        PlanStatus::Optimal => pb::PlanStatus::Optimal,
        PlanStatus::Feasible => pb::PlanStatus::Feasible,
        PlanStatus::Infeasible => pb::PlanStatus::Infeasible,
    }) as i32
}

/// A plan's summary. An infeasible plan has no cost and no gap: the solver's figures for
/// it (a relaxation it gave up on) are no plan's, and a client reading "135,400, gap 0"
/// beside INFEASIBLE would take them for one.
pub fn summary(p: &PlanSummary) -> pb::PlanSummary {
    let feasible = p.status != PlanStatus::Infeasible;
    pb::PlanSummary {
        id: p.id.clone(),
        status: plan_status(p.status),
        total_cost: feasible.then(|| minor_money(p.total_cost, &p.currency)),
        gap: p.gap.filter(|_| feasible),
        solver: p.solver.clone(),
        batches: p.batches,
        created_at: Some(timestamp(p.created_at)),
    }
}

pub fn work_order(w: &WorkOrder) -> pb::WorkOrder {
    pb::WorkOrder {
        id: w.id.clone(),
        plan_id: w.plan_id.clone(),
        factory_id: w.order.factory_id.clone(),
        seq: w.seq,
        runs: w
            .order
            .runs
            .iter()
            .map(|r| pb::ProductionRun {
                sku: r.sku.clone(),
                quantity: r.quantity,
                batches: r
                    .batches
                    .iter()
                    .map(|b| pb::RunBatch {
                        batch_id: b.batch_id.to_string(),
                        units: b.units,
                        late_reason: b.late_reason.clone().unwrap_or_default(),
                    })
                    .collect(),
                period: r.schedule.as_ref().map(|s| s.period),
                starts_at: r.schedule.as_ref().map(|s| timestamp(s.starts_at)),
                ends_at: r.schedule.as_ref().map(|s| timestamp(s.ends_at)),
                hours: r.schedule.as_ref().map_or(0.0, |s| s.hours),
            })
            .collect(),
        materials: w
            .order
            .materials
            .iter()
            .map(|m| pb::MaterialDelivery {
                material: m.material.clone(),
                supplier: m.supplier.clone().unwrap_or_default(),
                quantity: m.quantity,
                purchase_order_id: m.purchase_order.clone().unwrap_or_default(),
            })
            .collect(),
        due_at: Some(timestamp(w.order.due_at)),
        state: work_order_state(w.state) as i32,
        created_at: Some(timestamp(w.created_at)),
    }
}

pub fn work_order_state(s: c2m_domain::WorkOrderState) -> pb::WorkOrderState {
    use c2m_domain::WorkOrderState as S;
    match s {
        S::Issued => pb::WorkOrderState::Issued,
        S::Accepted => pb::WorkOrderState::Accepted,
        S::Rejected => pb::WorkOrderState::Rejected,
        S::InProduction => pb::WorkOrderState::InProduction,
        S::QcPassed => pb::WorkOrderState::QcPassed,
        S::QcFailed => pb::WorkOrderState::QcFailed,
        S::Shipped => pb::WorkOrderState::Shipped,
        S::Withdrawn => pb::WorkOrderState::Withdrawn,
    }
}

/// A stored plan; `now` tells its planned purchase orders from the due ones.
pub fn plan(p: &StoredPlan, now: DateTime<Utc>) -> Result<pb::Plan, Status> {
    let cur = &p.summary.currency;
    let b: c2m_planner::CostBreakdown =
        serde_json::from_str(&p.detail.cost_breakdown).map_err(|e| {
            store_status(c2m_store::StoreError::Corrupt(format!(
                "cost breakdown: {e}"
            )))
        })?;
    let diagnosis = match &p.detail.diagnosis {
        Some(d) => {
            serde_json::from_str::<c2m_planner::Diagnosis>(d)
                .map_err(|e| {
                    store_status(c2m_store::StoreError::Corrupt(format!("diagnosis: {e}")))
                })?
                .reasons
        }
        None => Vec::new(),
    };
    Ok(pb::Plan {
        summary: Some(summary(&p.summary)),
        cost_breakdown: Some(pb::CostBreakdown {
            production: Some(minor_money(b.production, cur)),
            setup: Some(minor_money(b.setup, cur)),
            purchase: Some(minor_money(b.purchase, cur)),
            ordering: Some(minor_money(b.ordering, cur)),
            holding: Some(minor_money(b.holding, cur)),
            lateness: Some(minor_money(b.lateness, cur)),
        }),
        solve_seconds: p.detail.solve_seconds,
        diagnosis,
        scenario_toml: p.detail.scenario.clone(),
        plan_json: p.detail.plan.clone(),
        batch_ids: p.detail.batches.iter().map(|b| b.to_string()).collect(),
        work_orders: p.work_orders.iter().map(work_order).collect(),
        purchase_orders: p
            .purchase_orders
            .iter()
            .map(|o| purchase_order(o, now))
            .collect(),
    })
}

pub fn purchase_order_state(s: PurchaseOrderState) -> pb::PurchaseOrderState {
    match s {
        PurchaseOrderState::Open => pb::PurchaseOrderState::Open,
        PurchaseOrderState::PartlyReceived => pb::PurchaseOrderState::PartlyReceived,
        PurchaseOrderState::Received => pb::PurchaseOrderState::Received,
        PurchaseOrderState::Cancelled => pb::PurchaseOrderState::Cancelled,
    }
}

/// A state filter at `now`: the stored state, and for `PLANNED` and `OPEN` the side of
/// `now` the order date is on (both are stored open; see [`PurchaseOrder::is_planned`]).
/// `(None, None)` for unspecified (every state).
pub fn purchase_order_state_filter(
    s: i32,
    now: DateTime<Utc>,
) -> Result<(Option<PurchaseOrderState>, Option<OrderDate>), c2m_domain::DomainError> {
    let stored = |state| Ok((Some(state), None));
    match pb::PurchaseOrderState::try_from(s) {
        Ok(pb::PurchaseOrderState::Unspecified) => Ok((None, None)),
        Ok(pb::PurchaseOrderState::Planned) => {
            Ok((Some(PurchaseOrderState::Open), Some(OrderDate::Ahead(now))))
        }
        Ok(pb::PurchaseOrderState::Open) => Ok((
            Some(PurchaseOrderState::Open),
            Some(OrderDate::Reached(now)),
        )),
        Ok(pb::PurchaseOrderState::PartlyReceived) => stored(PurchaseOrderState::PartlyReceived),
        Ok(pb::PurchaseOrderState::Received) => stored(PurchaseOrderState::Received),
        Ok(pb::PurchaseOrderState::Cancelled) => stored(PurchaseOrderState::Cancelled),
        Err(_) => Err(c2m_domain::DomainError::invalid(
            "state",
            format!("unknown state {s}"),
        )),
    }
}

/// A purchase order as the API shows it at `now`: `PLANNED` while open with its order date
/// ahead.
pub fn purchase_order(p: &PurchaseOrder, now: DateTime<Utc>) -> pb::PurchaseOrder {
    let o = &p.order;
    pb::PurchaseOrder {
        id: o.id.clone(),
        plan_id: p.plan_id.clone(),
        supplier_id: o.supplier_id.clone(),
        material_id: o.material_id.clone(),
        quantity: o.quantity,
        unit_price: o.unit_price,
        currency: p.currency.clone(),
        tier: o.tier,
        packs: o.packs,
        order_period: o.order_period,
        ordered_at: Some(timestamp(o.ordered_at)),
        expected_at: Some(timestamp(o.expected_at)),
        batch_ids: o.batches.iter().map(|b| b.to_string()).collect(),
        allocated: o.allocated,
        received: p.received,
        state: if p.is_planned(now) {
            pb::PurchaseOrderState::Planned as i32
        } else {
            purchase_order_state(p.state) as i32
        },
        created_at: Some(timestamp(p.created_at)),
        state_at: Some(timestamp(p.state_at)),
        total: Some(minor_money(
            c2m_planner::round_money(o.quantity * o.unit_price),
            &p.currency,
        )),
    }
}
