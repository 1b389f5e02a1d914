//! `WebhookService` (admin): register, list, enable, disable and delete webhook endpoints,
//! replay them from a sequence number, and read their delivery log. The worker that delivers is
//! [`crate::webhooks`]; the state is the store's (`c2m_store::webhooks`).

use tonic::{Request, Response, Status};

use c2m_domain::webhook::{check_kinds, check_url};
use c2m_domain::{DomainError, WebhookEndpointId};
use c2m_proto::v1 as pb;
use c2m_proto::v1::webhook_service_server::WebhookService;
use c2m_store::webhooks::{Delivery, Endpoint, NewEndpoint};

use super::Ctx;
use crate::convert::timestamp;
use crate::status::{domain_status, store_status};
use crate::webhooks::hex_id;

pub struct WebhookSvc(pub Ctx);

fn endpoint(e: &Endpoint) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: e.id.clone(),
        url: e.url.clone(),
        event_types: e.kinds.clone(),
        cursor: e.cursor,
        created_at: Some(timestamp(e.created_at)),
        enabled: e.disabled_at.is_none(),
        disabled_reason: e.disabled_reason.clone().unwrap_or_default(),
        failures: e.failures,
        failing_since: e.failing_since.map(timestamp),
        // A disabled endpoint is not attempted until it is enabled again.
        next_attempt_at: e
            .next_attempt_at
            .filter(|_| e.disabled_at.is_none())
            .map(timestamp),
        deleted_at: e.deleted_at.map(timestamp),
    }
}

fn delivery(d: &Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        seq: d.seq,
        event_seq: d.event_seq,
        event_id: d.event_id.clone(),
        attempt: d.attempt,
        status_code: d.status_code.unwrap_or(0) as i32,
        error: d.error.clone().unwrap_or_default(),
        latency_ms: d.latency_ms,
        delivered: d.delivered,
        at: Some(timestamp(d.at)),
    }
}

fn endpoint_id(id: &str) -> Result<String, Status> {
    crate::convert::reference("endpoint_id", id)
}

#[tonic::async_trait]
impl WebhookService for WebhookSvc {
    #[tracing::instrument(skip_all, fields(url = %req.get_ref().url))]
    async fn register_endpoint(
        &self,
        req: Request<pb::RegisterEndpointRequest>,
    ) -> Result<Response<pb::RegisteredEndpoint>, Status> {
        let r = req.into_inner();
        let url = r.url.trim().to_owned();
        check_url(&url).map_err(|e| domain_status(&e))?;
        // The URL must also be one the client can send to.
        url.parse::<http::Uri>()
            .map_err(|e| domain_status(&DomainError::invalid("url", e.to_string())))?;
        let mut kinds: Vec<String> = r.event_types.iter().map(|k| k.trim().to_owned()).collect();
        kinds.sort();
        kinds.dedup();
        check_kinds(&kinds).map_err(|e| domain_status(&e))?;
        let new = NewEndpoint {
            idempotency_key: crate::convert::idempotency_key(&r.idempotency_key)?,
            id: WebhookEndpointId::generate().into_string(),
            url,
            kinds,
            secret: format!("whsec_{}", hex_id(24)),
        };
        let done = self
            .0
            .store
            .create_endpoint(&new, self.0.clock.now())
            .await
            .map_err(store_status)?;
        let e = &done.endpoint;
        tracing::info!(endpoint = %e.id, url = %e.url, "webhook endpoint registered");
        Ok(Response::new(pb::RegisteredEndpoint {
            endpoint: Some(endpoint(e)),
            secret: done.secret,
        }))
    }

    async fn list_endpoints(
        &self,
        _: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        let all = self.0.store.list_endpoints().await.map_err(store_status)?;
        Ok(Response::new(pb::ListEndpointsResponse {
            endpoints: all.iter().map(endpoint).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(endpoint = %req.get_ref().endpoint_id, enabled = req.get_ref().enabled))]
    async fn set_endpoint_enabled(
        &self,
        req: Request<pb::SetEndpointEnabledRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        let r = req.into_inner();
        let id = endpoint_id(&r.endpoint_id)?;
        let key = crate::convert::idempotency_key(&r.idempotency_key)?;
        let e = self
            .0
            .store
            .set_endpoint_enabled(&id, r.enabled, &key, self.0.clock.now())
            .await
            .map_err(store_status)?;
        Ok(Response::new(endpoint(&e)))
    }

    #[tracing::instrument(skip_all, fields(endpoint = %req.get_ref().endpoint_id, after = req.get_ref().after_seq))]
    async fn replay_endpoint(
        &self,
        req: Request<pb::ReplayEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        let r = req.into_inner();
        let id = endpoint_id(&r.endpoint_id)?;
        let key = crate::convert::idempotency_key(&r.idempotency_key)?;
        let e = self
            .0
            .store
            .replay_endpoint(&id, r.after_seq, &key, self.0.clock.now())
            .await
            .map_err(store_status)?;
        Ok(Response::new(endpoint(&e)))
    }

    #[tracing::instrument(skip_all, fields(endpoint = %req.get_ref().endpoint_id))]
    async fn delete_endpoint(
        &self,
        req: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        let r = req.into_inner();
        let id = endpoint_id(&r.endpoint_id)?;
        let key = crate::convert::idempotency_key(&r.idempotency_key)?;
        let e = self
            .0
            .store
            .delete_endpoint(&id, &key, self.0.clock.now())
            .await
            .map_err(store_status)?;
        tracing::info!(endpoint = %e.id, url = %e.url, "webhook endpoint deleted");
        Ok(Response::new(endpoint(&e)))
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let r = req.into_inner();
        let id = endpoint_id(&r.endpoint_id)?;
        if r.after < 0 {
            return Err(domain_status(&DomainError::invalid(
                "after",
                format!("must not be negative, got {}", r.after),
            )));
        }
        if r.limit > 1000 {
            return Err(domain_status(&DomainError::invalid(
                "limit",
                format!("must be at most 1000, got {}", r.limit),
            )));
        }
        let limit = if r.limit == 0 { 100 } else { r.limit };
        let log = self
            .0
            .store
            .list_deliveries(&id, r.after, limit)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: log.iter().map(delivery).collect(),
        }))
    }
}
