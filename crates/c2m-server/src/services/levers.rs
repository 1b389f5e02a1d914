use tonic::{Request, Response, Status};

use c2m_proto::v1 as pb;
use c2m_proto::v1::levers_service_server::LeversService;

use c2m_store::Lever;

use super::Ctx;
use crate::convert::{self, levers as conv};
use crate::forecast;
use crate::limits::CallDeadline;
use crate::status::store_status;

pub struct LeversSvc(pub Ctx);

#[tonic::async_trait]
impl LeversService for LeversSvc {
    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id, key = %req.get_ref().idempotency_key))]
    async fn extend_deadline(
        &self,
        req: Request<pb::ExtendDeadlineRequest>,
    ) -> Result<Response<pb::LeverOutcome>, Status> {
        let cmd = conv::extend_deadline(req.into_inner())?;
        let now = self.0.clock.now();
        let out = self
            .0
            .store
            .pull_lever(&Lever::Extend(cmd), now)
            .await
            .map_err(store_status)?;
        tracing::info!(deadline = %out.campaign.terms.deadline, "deadline extended");
        Ok(Response::new(conv::lever_outcome(&out, self.0.clock.now())))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id, key = %req.get_ref().idempotency_key))]
    async fn lower_threshold(
        &self,
        req: Request<pb::LowerThresholdRequest>,
    ) -> Result<Response<pb::LeverOutcome>, Status> {
        let cmd = conv::lower_threshold(req.into_inner())?;
        let now = self.0.clock.now();
        let out = self
            .0
            .store
            .pull_lever(&Lever::Lower(cmd), now)
            .await
            .map_err(store_status)?;
        tracing::info!(
            threshold = out.campaign.terms.batch_threshold,
            locked = out.locked_batch.is_some(),
            "threshold lowered"
        );
        Ok(Response::new(conv::lever_outcome(&out, self.0.clock.now())))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id, key = %req.get_ref().idempotency_key))]
    async fn close_campaign(
        &self,
        req: Request<pb::CloseCampaignRequest>,
    ) -> Result<Response<pb::LeverOutcome>, Status> {
        let cmd = conv::close_campaign(req.into_inner())?;
        let now = self.0.clock.now();
        let out = self
            .0
            .store
            .pull_lever(&Lever::Close(cmd), now)
            .await
            .map_err(store_status)?;
        tracing::info!(
            locked = out.locked_batch.is_some(),
            released = out.deposits_released,
            "campaign closed"
        );
        Ok(Response::new(conv::lever_outcome(&out, self.0.clock.now())))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id, key = %req.get_ref().idempotency_key))]
    async fn cancel_campaign(
        &self,
        req: Request<pb::CancelCampaignRequest>,
    ) -> Result<Response<pb::LeverOutcome>, Status> {
        let cmd = conv::cancel_campaign(req.into_inner())?;
        let now = self.0.clock.now();
        let out = self
            .0
            .store
            .pull_lever(&Lever::Cancel(cmd), now)
            .await
            .map_err(store_status)?;
        tracing::info!(
            released = out.deposits_released,
            refunded = out.preorders_refunded,
            in_production = out.batches_in_production,
            withdrawn = out.work_orders_withdrawn,
            "campaign cancelled"
        );
        Ok(Response::new(conv::lever_outcome(&out, self.0.clock.now())))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id))]
    async fn get_advice(
        &self,
        req: Request<pb::GetAdviceRequest>,
    ) -> Result<Response<pb::Advice>, Status> {
        let scan_end = forecast::scan_end(
            req.extensions().get::<CallDeadline>().copied(),
            self.0.request_timeout,
        );
        let r = req.into_inner();
        let id = convert::campaign_id(&r.campaign_id)?;
        let (margin, target) = conv::advice_params(&r)?;
        let now = self.0.clock.now();
        let Some(fitted) = forecast::fit(&*self.0.store, &id, now)
            .await
            .map_err(store_status)?
        else {
            let refusal = c2m_domain::DomainError::from(c2m_domain::Refusal::NothingToForecast);
            return Err(crate::status::domain_status(&refusal));
        };
        let advice = forecast::advice(
            &*self.0.store,
            fitted,
            margin,
            target,
            self.0.advice_time_limit,
            scan_end,
            self.0.plan_horizon.period_days,
        )
        .await
        .map_err(store_status)?;
        Ok(Response::new(conv::advice(&r.campaign_id, &advice)))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id))]
    async fn get_insights(
        &self,
        req: Request<pb::GetInsightsRequest>,
    ) -> Result<Response<pb::Insights>, Status> {
        let r = req.into_inner();
        let id = convert::campaign_id(&r.campaign_id)?;
        let (bucket, top) = conv::insights_params(&r)?;
        let now = self.0.clock.now();
        let insights = self
            .0
            .store
            .insights(&id, bucket, top)
            .await
            .map_err(store_status)?;
        let fitted = forecast::fit(&*self.0.store, &id, now)
            .await
            .map_err(store_status)?;
        let open_units = fitted
            .as_ref()
            .and_then(|f| f.input.open_batch)
            .map_or(0, |b| b.units);
        Ok(Response::new(conv::insights(
            &insights,
            fitted.as_ref().map(|f| &f.forecast),
            open_units,
        )))
    }
}
