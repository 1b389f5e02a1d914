//! `PlanningService`: run a cycle on demand, look at plans and at the queue.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use c2m_domain::{DomainError, Refusal};
use c2m_proto::v1 as pb;
use c2m_proto::v1::planning_service_server::PlanningService;
use c2m_store::planning::WorkOrder;
use c2m_store::{PlanStatus, PlanSummary, StoredPlan};

use super::Ctx;
use crate::convert;
use crate::planning::{CycleOutcome, PlanningCycles};
use crate::status::{cycle_status, domain_status, store_status};

pub struct PlanningSvc {
    pub ctx: Ctx,
    pub cycles: Arc<PlanningCycles>,
}

fn money(minor: i64, currency: &str) -> pb::Money {
    pb::Money {
        minor,
        currency: currency.to_owned(),
    }
}

fn status(s: PlanStatus) -> i32 {
    (match s {
        PlanStatus::Optimal => pb::PlanStatus::Optimal,
        PlanStatus::Feasible => pb::PlanStatus::Feasible,
        PlanStatus::Infeasible => pb::PlanStatus::Infeasible,
    }) as i32
}

pub fn summary(p: &PlanSummary) -> pb::PlanSummary {
    pb::PlanSummary {
        id: p.id.clone(),
        status: status(p.status),
        total_cost: Some(money(p.total_cost, &p.currency)),
        gap: p.gap,
        solver: p.solver.clone(),
        batches: p.batches,
        created_at: Some(convert::timestamp(p.created_at)),
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
        due_at: Some(convert::timestamp(w.due_at)),
        state: work_order_state(w.state) as i32,
        created_at: Some(convert::timestamp(w.created_at)),
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

fn plan(p: &StoredPlan) -> Result<pb::Plan, Status> {
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
            production: Some(money(b.production, cur)),
            setup: Some(money(b.setup, cur)),
            purchase: Some(money(b.purchase, cur)),
            ordering: Some(money(b.ordering, cur)),
            holding: Some(money(b.holding, cur)),
        }),
        solve_seconds: p.solve_seconds,
        diagnosis,
        scenario_toml: p.scenario.clone(),
        plan_json: p.plan.clone(),
        batch_ids: p.batches.iter().map(|b| b.to_string()).collect(),
        work_orders: p.work_orders.iter().map(work_order).collect(),
    })
}

#[tonic::async_trait]
impl PlanningService for PlanningSvc {
    #[tracing::instrument(skip_all, fields(key = %req.get_ref().idempotency_key))]
    async fn run_planning(
        &self,
        req: Request<pb::RunPlanningRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let key = convert::idempotency_key(&req.get_ref().idempotency_key)?;
        match self.cycles.run(Some(key)).await.map_err(cycle_status)? {
            CycleOutcome::Idle => Err(domain_status(&Refusal::NothingToPlan.into())),
            CycleOutcome::Planned { plan_id, .. } => {
                let p = self
                    .ctx
                    .store
                    .get_plan(&plan_id)
                    .await
                    .map_err(store_status)?;
                Ok(Response::new(plan(&p)?))
            }
        }
    }

    #[tracing::instrument(skip_all, fields(plan = %req.get_ref().plan_id))]
    async fn get_plan(
        &self,
        req: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let id = &req.get_ref().plan_id;
        if id.is_empty() {
            return Err(domain_status(&DomainError::invalid(
                "plan_id",
                "is required",
            )));
        }
        let p = self.ctx.store.get_plan(id).await.map_err(store_status)?;
        Ok(Response::new(plan(&p)?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_plans(
        &self,
        req: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let r = req.into_inner();
        let page = c2m_domain::PageRequest::parse(r.page_size, &r.page_token)
            .map_err(|e| domain_status(&e))?;
        let p = self
            .ctx
            .store
            .list_plans(page)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListPlansResponse {
            plans: p.items.iter().map(summary).collect(),
            next_page_token: p.next_token(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_queued_batches(
        &self,
        _req: Request<pb::ListQueuedBatchesRequest>,
    ) -> Result<Response<pb::ListQueuedBatchesResponse>, Status> {
        let q = self
            .ctx
            .store
            .planning_queue()
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListQueuedBatchesResponse {
            batches: q
                .iter()
                .map(|q| pb::QueuedBatch {
                    batch: Some(convert::batch(&q.batch)),
                    sku: q.sku.clone(),
                    excluded_factories: q.excluded_factories.clone(),
                    units_to_plan: q.units_to_plan,
                    last_plan: q.last_plan.as_ref().map(summary),
                })
                .collect(),
        }))
    }
}
