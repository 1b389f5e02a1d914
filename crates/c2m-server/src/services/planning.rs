//! `PlanningService`: run a cycle on demand, look at plans and at the queue.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use c2m_domain::Refusal;
use c2m_proto::v1 as pb;
use c2m_proto::v1::planning_service_server::PlanningService;

use super::Ctx;
use crate::convert;
use crate::convert::planning::{plan, summary};
use crate::planning::{CycleOutcome, PlanningCycles};
use crate::status::{cycle_status, domain_status, store_status};

pub struct PlanningSvc {
    pub ctx: Ctx,
    pub cycles: Arc<PlanningCycles>,
}

#[tonic::async_trait]
impl PlanningService for PlanningSvc {
    #[tracing::instrument(skip_all, fields(key = %req.get_ref().idempotency_key))]
    async fn run_planning(
        &self,
        req: Request<pb::RunPlanningRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let key = convert::idempotency_key(&req.get_ref().idempotency_key)?;
        // The cycle runs in a task of its own, not in this call's future: a call ended by
        // its deadline (the server's, or the client's `grpc-timeout`) or by a client that
        // went away would otherwise drop the cycle at its next await, throwing away a
        // solve that may have run for the whole time limit and storing nothing, so that a
        // retry solved again from scratch, and was cut again. Detached, the cycle stores
        // its plan under the key, and the retry with the same key waits for it and gets it.
        let cycle = self.cycles.spawn(key).await.map_err(|e| {
            tracing::error!(error = %e, "planning cycle task failed");
            crate::status::internal()
        })?;
        match cycle.map_err(cycle_status)? {
            CycleOutcome::Idle {
                due_later,
                no_factory,
            } => Err(domain_status(
                &Refusal::NothingToPlan {
                    due_later: due_later as i64,
                    no_factory: no_factory as i64,
                }
                .into(),
            )),
            CycleOutcome::Planned { plan_id, .. } => {
                let p = self
                    .ctx
                    .store
                    .get_plan(&plan_id)
                    .await
                    .map_err(store_status)?;
                Ok(Response::new(plan(&p, self.ctx.clock.now())?))
            }
        }
    }

    #[tracing::instrument(skip_all, fields(plan = %req.get_ref().plan_id))]
    async fn get_plan(
        &self,
        req: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let id = convert::reference("plan_id", &req.get_ref().plan_id)?;
        let p = self.ctx.store.get_plan(&id).await.map_err(store_status)?;
        Ok(Response::new(plan(&p, self.ctx.clock.now())?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_plans(
        &self,
        req: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let r = req.into_inner();
        let query = c2m_domain::PageQuery::new("ListPlans", &[]);
        let page = c2m_domain::PageRequest::parse(r.page_size, &r.page_token, query)
            .map_err(|e| domain_status(&e))?;
        let p = self
            .ctx
            .store
            .list_plans(page)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListPlansResponse {
            plans: p.items.iter().map(summary).collect(),
            next_page_token: p.next_token(query),
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
                    rejections: q
                        .rejections
                        .iter()
                        .map(|x| pb::FactoryRejection {
                            factory_id: x.factory_id.clone(),
                            reason: x.reason.clone(),
                            rejected_at: Some(convert::timestamp(x.at)),
                        })
                        .collect(),
                    units_to_plan: q.units_to_plan,
                    last_plan: q.last_plan.as_ref().map(summary),
                    due_at: Some(convert::timestamp(q.due_at)),
                })
                .collect(),
        }))
    }
}
