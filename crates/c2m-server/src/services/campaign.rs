use tonic::{Request, Response, Status};

use c2m_domain::CampaignStatus;
use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_server::CampaignService;

use super::Ctx;
use crate::convert;
use crate::status::store_status;

pub struct CampaignSvc(pub Ctx);

#[tonic::async_trait]
impl CampaignService for CampaignSvc {
    #[tracing::instrument(skip_all, fields(key = %req.get_ref().idempotency_key))]
    async fn create_campaign(
        &self,
        req: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let now = self.0.clock.now();
        let cmd = convert::create_campaign(req.into_inner())?;
        let c = self
            .0
            .store
            .create_campaign(&cmd, now)
            .await
            .map_err(|e| store_status(convert::campaign_request_field(e)))?;
        tracing::info!(campaign = %c.id, sku = %c.terms.sku, "campaign created");
        // The status is shown as of now, read again: a resend may be answered with the
        // campaign its twin created after this request read the clock (on another
        // replica, say), and a campaign is never shown as it was before it existed.
        let shown_at = self.0.clock.now().max(c.created_at);
        Ok(Response::new(convert::campaign(&c, shown_at)))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id))]
    async fn get_campaign(
        &self,
        req: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::CampaignProgress>, Status> {
        // The forecast has until a fifth of the call's budget before its deadline, as an
        // advice's scan has: past that, the progress is answered without it.
        let forecast_until = crate::forecast::scan_end(
            req.extensions()
                .get::<crate::limits::CallDeadline>()
                .copied(),
            self.0.request_timeout,
        );
        let id = convert::campaign_id(&req.get_ref().campaign_id)?;
        let p = self.0.store.get_campaign(&id).await.map_err(store_status)?;
        let now = self.0.clock.now();
        let mut shown = convert::progress(&p, now);
        if p.open_batch_seq.is_some() && p.campaign.status(now) == CampaignStatus::Open {
            // The forecast reads the progress again in its own snapshot, and that one is
            // shown with it: read apart, a placement in between could leave the
            // progress's units to the threshold and the forecast's units needed apart,
            // even by a batch (QA 13-B). The first read stands when there is no forecast.
            let fit = crate::forecast::fit(&*self.0.store, &id, now);
            match tokio::time::timeout_at(forecast_until.into(), fit).await {
                Ok(fitted) => {
                    if let Some(f) = fitted.map_err(store_status)? {
                        shown = convert::progress(&f.input.progress, now);
                        shown.forecast = Some(convert::levers::fill_forecast(&f.forecast));
                    }
                }
                // The storefront's progress call is not held for an estimate (a threshold
                // of millions of units takes seconds to forecast).
                Err(_) => tracing::warn!(
                    campaign = %id,
                    "the fill forecast was not done within the call's budget: the progress \
                     is answered without it"
                ),
            }
        }
        Ok(Response::new(shown))
    }

    #[tracing::instrument(skip_all)]
    async fn list_campaigns(
        &self,
        req: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let r = req.into_inner();
        let query = c2m_domain::PageQuery::new("ListCampaigns", &[]);
        let page = c2m_domain::PageRequest::parse(r.page_size, &r.page_token, query)
            .map_err(|e| crate::status::domain_status(&e))?;
        let p = self
            .0
            .store
            .list_campaigns(page)
            .await
            .map_err(store_status)?;
        let now = self.0.clock.now();
        Ok(Response::new(pb::ListCampaignsResponse {
            campaigns: p.items.iter().map(|c| convert::campaign(c, now)).collect(),
            next_page_token: p.next_token(query),
        }))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id))]
    async fn list_batches(
        &self,
        req: Request<pb::ListBatchesRequest>,
    ) -> Result<Response<pb::ListBatchesResponse>, Status> {
        let id = convert::campaign_id(&req.get_ref().campaign_id)?;
        // Distinguish "no such campaign" from "no batches yet".
        self.0.store.get_campaign(&id).await.map_err(store_status)?;
        let batches = self.0.store.list_batches(&id).await.map_err(store_status)?;
        Ok(Response::new(pb::ListBatchesResponse {
            batches: batches.iter().map(convert::batch).collect(),
        }))
    }
}
