//! The ledger service: a campaign's money summary and its ledger, for merchants and
//! administrators (read only; money moves only as a consequence of pooling calls).

use tonic::{Request, Response, Status};

use c2m_proto::v1 as pb;
use c2m_proto::v1::ledger_service_server::LedgerService;

use super::Ctx;
use crate::convert;
use crate::status::{domain_status, store_status};

pub struct LedgerSvc(pub Ctx);

#[tonic::async_trait]
impl LedgerService for LedgerSvc {
    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id))]
    async fn get_campaign_money(
        &self,
        req: Request<pb::GetCampaignMoneyRequest>,
    ) -> Result<Response<pb::CampaignMoney>, Status> {
        let id = convert::campaign_id(&req.get_ref().campaign_id)?;
        let m = self
            .0
            .store
            .campaign_money(&id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(convert::campaign_money(&m)))
    }

    #[tracing::instrument(skip_all, fields(campaign = %req.get_ref().campaign_id))]
    async fn list_ledger_entries(
        &self,
        req: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        let r = req.into_inner();
        let id = convert::campaign_id(&r.campaign_id)?;
        let query = c2m_domain::PageQuery::new("ListLedgerEntries", &[id.as_str()]);
        let page = c2m_domain::PageRequest::parse(r.page_size, &r.page_token, query)
            .map_err(|e| domain_status(&e))?;
        let p = self
            .0
            .store
            .list_ledger(&id, page)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListLedgerEntriesResponse {
            entries: p.items.iter().map(convert::ledger_entry).collect(),
            next_page_token: p.next_token(query),
        }))
    }
}
