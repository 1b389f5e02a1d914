//! `PurchasingService`: the purchase orders plans placed; receiving and cancelling them.

use tonic::{Request, Response, Status};

use c2m_domain::{DomainError, PageRequest};
use c2m_proto::v1 as pb;
use c2m_proto::v1::purchasing_service_server::PurchasingService;
use c2m_store::{
    CancelPurchaseOrder, PurchaseOrderChange, PurchaseOrderFilter, ReceivePurchaseOrder,
};

use super::Ctx;
use crate::convert;
use crate::convert::planning::{purchase_order, purchase_order_state_filter};
use crate::status::{domain_status, store_status};

pub struct PurchasingSvc(pub Ctx);

fn required_id(id: &str) -> Result<String, Status> {
    convert::reference("purchase_order_id", id)
}

#[tonic::async_trait]
impl PurchasingService for PurchasingSvc {
    #[tracing::instrument(skip_all)]
    async fn list_purchase_orders(
        &self,
        req: Request<pb::ListPurchaseOrdersRequest>,
    ) -> Result<Response<pb::ListPurchaseOrdersResponse>, Status> {
        let r = req.into_inner();
        let now = self.0.clock.now();
        let (state, order_date) =
            purchase_order_state_filter(r.state, now).map_err(|e| domain_status(&e))?;
        let filter = PurchaseOrderFilter {
            supplier_id: match r.supplier_id.trim() {
                "" => None,
                id => Some(convert::name("supplier_id", id)?),
            },
            state,
            order_date,
        };
        // The state as asked, not the dates it reads as now: a listing of the orders due
        // to be placed goes on as the clock moves.
        let query = c2m_domain::PageQuery::new(
            "ListPurchaseOrders",
            &[
                filter.supplier_id.as_deref().unwrap_or(""),
                &r.state.to_string(),
            ],
        );
        let page =
            PageRequest::parse(r.page_size, &r.page_token, query).map_err(|e| domain_status(&e))?;
        let p = self
            .0
            .store
            .list_purchase_orders(&filter, page)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListPurchaseOrdersResponse {
            purchase_orders: p.items.iter().map(|o| purchase_order(o, now)).collect(),
            next_page_token: p.next_token(query),
        }))
    }

    #[tracing::instrument(skip_all, fields(po = %req.get_ref().purchase_order_id))]
    async fn get_purchase_order(
        &self,
        req: Request<pb::GetPurchaseOrderRequest>,
    ) -> Result<Response<pb::PurchaseOrder>, Status> {
        let id = required_id(&req.get_ref().purchase_order_id)?;
        let p = self
            .0
            .store
            .get_purchase_order(&id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(purchase_order(&p, self.0.clock.now())))
    }

    #[tracing::instrument(skip_all, fields(
        key = %req.get_ref().idempotency_key,
        po = %req.get_ref().purchase_order_id,
        quantity = req.get_ref().quantity,
    ))]
    async fn receive_purchase_order(
        &self,
        req: Request<pb::ReceivePurchaseOrderRequest>,
    ) -> Result<Response<pb::PurchaseOrder>, Status> {
        let r = req.into_inner();
        let idempotency_key = convert::idempotency_key(&r.idempotency_key)?;
        let purchase_order_id = required_id(&r.purchase_order_id)?;
        if !(r.quantity.is_finite() && r.quantity > 0.0) {
            return Err(domain_status(&DomainError::invalid(
                "quantity",
                format!("must be a positive number, got {}", r.quantity),
            )));
        }
        let now = self.0.clock.now();
        let p = self
            .0
            .store
            .change_purchase_order(
                &PurchaseOrderChange::Receive(ReceivePurchaseOrder {
                    idempotency_key,
                    purchase_order_id,
                    quantity: r.quantity,
                }),
                now,
            )
            .await
            .map_err(store_status)?;
        tracing::info!(state = p.state.as_str(), received = p.received, "received");
        Ok(Response::new(purchase_order(&p, self.0.clock.now())))
    }

    #[tracing::instrument(skip_all, fields(
        key = %req.get_ref().idempotency_key,
        po = %req.get_ref().purchase_order_id,
    ))]
    async fn cancel_purchase_order(
        &self,
        req: Request<pb::CancelPurchaseOrderRequest>,
    ) -> Result<Response<pb::PurchaseOrder>, Status> {
        let r = req.into_inner();
        let idempotency_key = convert::idempotency_key(&r.idempotency_key)?;
        let purchase_order_id = required_id(&r.purchase_order_id)?;
        let now = self.0.clock.now();
        let p = self
            .0
            .store
            .change_purchase_order(
                &PurchaseOrderChange::Cancel(CancelPurchaseOrder {
                    idempotency_key,
                    purchase_order_id,
                }),
                now,
            )
            .await
            .map_err(store_status)?;
        Ok(Response::new(purchase_order(&p, self.0.clock.now())))
    }
}
