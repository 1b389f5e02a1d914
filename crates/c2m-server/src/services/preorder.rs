use tonic::{Request, Response, Status};

use c2m_proto::v1 as pb;
use c2m_proto::v1::preorder_service_server::PreorderService;
use c2m_store::PreorderFilter;

use super::Ctx;
use crate::convert;
use crate::status::{domain_status, store_status};

pub struct PreorderSvc(pub Ctx);

impl PreorderSvc {
    /// Adds each locked pre-order's batch production (one store read for the lot).
    async fn with_production(
        &self,
        mut out: Vec<pb::Preorder>,
    ) -> Result<Vec<pb::Preorder>, Status> {
        let batches: Vec<c2m_domain::BatchId> = out
            .iter()
            .filter(|p| p.status == pb::PreorderStatus::Locked as i32)
            .map(|p| c2m_domain::BatchId::from_trusted(p.batch_id.clone()))
            .collect();
        if batches.is_empty() {
            return Ok(out);
        }
        let production = self
            .0
            .store
            .batch_production(&batches)
            .await
            .map_err(store_status)?;
        for p in out
            .iter_mut()
            .filter(|p| p.status == pb::PreorderStatus::Locked as i32)
        {
            if let Some(b) = production
                .iter()
                .find(|b| b.batch_id.as_str() == p.batch_id)
            {
                if b.in_production {
                    p.production = Some(convert::batch_production(b));
                }
                p.ship_date = convert::ship_date(b);
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl PreorderService for PreorderSvc {
    #[tracing::instrument(skip_all, fields(
        key = %req.get_ref().idempotency_key,
        campaign = %req.get_ref().campaign_id,
        quantity = req.get_ref().quantity,
    ))]
    async fn place_preorder(
        &self,
        req: Request<pb::PlacePreorderRequest>,
    ) -> Result<Response<pb::Preorder>, Status> {
        let cmd = convert::place_preorder(req.into_inner())?;
        let now = self.0.clock.now();
        let p = self
            .0
            .store
            .place_preorder(&cmd, now)
            .await
            .map_err(store_status)?;
        tracing::debug!(preorder = %p.id, batch = %p.batch_id, "pre-order placed");
        Ok(Response::new(convert::preorder(&p)))
    }

    #[tracing::instrument(skip_all, fields(preorder = %req.get_ref().preorder_id))]
    async fn get_preorder(
        &self,
        req: Request<pb::GetPreorderRequest>,
    ) -> Result<Response<pb::Preorder>, Status> {
        let id = convert::preorder_id(&req.get_ref().preorder_id)?;
        let p = self.0.store.get_preorder(&id).await.map_err(store_status)?;
        let mut out = self.with_production(vec![convert::preorder(&p)]).await?;
        Ok(Response::new(out.remove(0)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_preorders(
        &self,
        req: Request<pb::ListPreordersRequest>,
    ) -> Result<Response<pb::ListPreordersResponse>, Status> {
        let r = req.into_inner();
        let filter = convert::preorder_filter(&r.consumer_id, &r.campaign_id)?;
        let (consumer, campaign) = match &filter {
            PreorderFilter::Consumer(c) => (c.as_str(), ""),
            PreorderFilter::Campaign(k) => ("", k.as_str()),
            PreorderFilter::ConsumerInCampaign(c, k) => (c.as_str(), k.as_str()),
        };
        let query = c2m_domain::PageQuery::new("ListPreorders", &[consumer, campaign]);
        let page = c2m_domain::PageRequest::parse(r.page_size, &r.page_token, query)
            .map_err(|e| domain_status(&e))?;
        let p = self
            .0
            .store
            .list_preorders(&filter, page)
            .await
            .map_err(store_status)?;
        let preorders = self
            .with_production(p.items.iter().map(convert::preorder).collect())
            .await?;
        Ok(Response::new(pb::ListPreordersResponse {
            preorders,
            next_page_token: p.next_token(query),
        }))
    }

    #[tracing::instrument(skip_all, fields(
        key = %req.get_ref().idempotency_key,
        preorder = %req.get_ref().preorder_id,
    ))]
    async fn cancel_preorder(
        &self,
        req: Request<pb::CancelPreorderRequest>,
    ) -> Result<Response<pb::Preorder>, Status> {
        let cmd = convert::cancel_preorder(req.into_inner())?;
        let now = self.0.clock.now();
        let p = self
            .0
            .store
            .cancel_preorder(&cmd, now)
            .await
            .map_err(store_status)?;
        tracing::debug!(preorder = %p.id, "pre-order cancelled");
        Ok(Response::new(convert::preorder(&p)))
    }

    #[tracing::instrument(skip_all, fields(
        key = %req.get_ref().idempotency_key,
        preorder = %req.get_ref().preorder_id,
    ))]
    async fn pay_balance(
        &self,
        req: Request<pb::PayBalanceRequest>,
    ) -> Result<Response<pb::Preorder>, Status> {
        let cmd = convert::pay_balance(req.into_inner())?;
        let now = self.0.clock.now();
        let p = self
            .0
            .store
            .pay_balance(&cmd, now)
            .await
            .map_err(store_status)?;
        tracing::info!(preorder = %p.id, amount = %cmd.amount, "balance paid");
        Ok(Response::new(convert::preorder(&p)))
    }
}
