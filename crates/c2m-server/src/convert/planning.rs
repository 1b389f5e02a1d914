//! Plans, their summaries and work orders, protobuf side.

use tonic::Status;

use c2m_proto::v1 as pb;
use c2m_store::planning::WorkOrder;
use c2m_store::{PlanStatus, PlanSummary, StoredPlan};

use super::{minor_money, timestamp};
use crate::status::store_status;

fn plan_status(s: PlanStatus) -> i32 {
    (match s {
        PlanStatus::Optimal => pb::PlanStatus::Optimal,
        PlanStatus::Feasible => pb::PlanStatus::Feasible,
        PlanStatus::Infeasible => pb::PlanStatus::Infeasible,
    }) as i32
}

pub fn summary(p: &PlanSummary) -> pb::PlanSummary {
    pb::PlanSummary {
        id: p.id.clone(),
        status: plan_status(p.status),
        total_cost: Some(minor_money(p.total_cost, &p.currency)),
        gap: p.gap,
        solver: p.solver.clone(),
        batches: p.batches,
        created_at: Some(timestamp(p.created_at)),
    }
}

pub fn work_order(w: &WorkOrder) -> pb::WorkOrder {
    pb::WorkOrder {
        id: w.id.clone(),
        plan_id: w.plan_id.clone(),
        factory_id: w.factory_id.clone(),
        seq: w.seq,
        runs: w
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
                    })
                    .collect(),
            })
            .collect(),
        materials: w
            .materials
            .iter()
            .map(|m| pb::MaterialDelivery {
                material: m.material.clone(),
                supplier: m.supplier.clone().unwrap_or_default(),
                quantity: m.quantity,
            })
            .collect(),
        due_at: Some(timestamp(w.due_at)),
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
    }
}

pub fn plan(p: &StoredPlan) -> Result<pb::Plan, Status> {
    let cur = &p.summary.currency;
    let b: c2m_planner::CostBreakdown = serde_json::from_str(&p.cost_breakdown).map_err(|e| {
        store_status(c2m_store::StoreError::Corrupt(format!(
            "cost breakdown: {e}"
        )))
    })?;
    let diagnosis = match &p.diagnosis {
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
        }),
        solve_seconds: p.solve_seconds,
        diagnosis,
        scenario_toml: p.scenario.clone(),
        plan_json: p.plan.clone(),
        batch_ids: p.batches.iter().map(|b| b.to_string()).collect(),
        work_orders: p.work_orders.iter().map(work_order).collect(),
    })
}
