//! `FactoryService`: work orders streamed to each factory, acknowledgements, progress.
//!
//! A subscription is a loop over the store, not a fan-out of in-memory events: it reads
//! the factory's feed after its cursor (a page at a time: its work orders, and the notices
//! of those withdrawn by a cancel, `c2m_store::FeedEntry`), sends them, and when it
//! has caught up waits for a sign that more may exist: a plan stored by this process
//! (the [`Deliveries`] signal), a commit with events (on PostgreSQL a `NOTIFY` from any
//! replica: a stored plan appends `production.stage_changed` events, see
//! `c2m_store::events`), or the poll interval, in case a wake-up was missed. Because the stream only ever reads what is
//! committed, a server crash cannot lose a work order or send one that was not stored;
//! the factory resumes from its last sequence number and gets everything after it.
//!
//! A factory has one stream at a time, across replicas: `Subscribe` claims the factory's
//! stream in the store, and each page is read with that claim, so once a newer
//! subscription (on this replica or another) has committed its claim the older stream
//! ends with `STREAM_REPLACED` instead of sending another page. The claim wakes every
//! replica's streams, so the older one ends at once, not at its next poll. A client that
//! lost track of a half-open connection cannot end up with two consumers of its orders.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use c2m_domain::{Clock, DomainError, Progress};
use c2m_proto::v1 as pb;
use c2m_proto::v1::factory_service_server::FactoryService;
use c2m_store::factory::{ahead, FEED_PAGE};
use c2m_store::{ReportProgress, Store, StreamClaim, StreamPage};

use super::feed::{Feed, Source};
use super::Ctx;
use crate::convert;
use crate::convert::factory::{feed_entry, heartbeat, progress, report_progress};
use crate::status::{domain_status, edge_status, store_status, Edge};

/// Tells subscriptions in this process that new work orders may have been stored.
#[derive(Clone)]
pub struct Deliveries(watch::Sender<u64>);

impl Deliveries {
    pub fn new() -> Self {
        Deliveries(watch::channel(0).0)
    }

    /// Wakes every subscription (called after a plan is stored).
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl Default for Deliveries {
    fn default() -> Self {
        Self::new()
    }
}

pub struct FactorySvc {
    pub ctx: Ctx,
    pub deliveries: Deliveries,
    /// A heartbeat is sent when nothing was sent for this long.
    pub heartbeat: Duration,
    /// How often a caught-up subscription looks for work orders stored elsewhere.
    pub poll: Duration,
    /// Becomes true when the server shuts down: streams end so the server can drain.
    pub stop: watch::Receiver<bool>,
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::FactoryEvent, Status>> + Send>>;

/// The factory a call acts for: a factory token's own (another id is PERMISSION_DENIED),
/// the requested one for an admin. Factory ids are catalogue ids: short, printable.
fn factory_id<T>(req: &Request<T>, requested: &str) -> Result<String, Status> {
    let s = crate::auth::principal(req)
        .factory_scope(requested)
        .map_err(|e| domain_status(&e))?;
    convert::name("factory_id", &s)
}

/// A factory's work orders after a cursor, as a [`Feed`] reads them.
struct WorkOrders {
    store: Arc<dyn Store>,
    /// Ticks when this process stores a plan.
    wake: watch::Receiver<u64>,
    /// Ticks on every commit with events, here or (PostgreSQL) in another replica.
    commits: watch::Receiver<u64>,
    /// This subscription's claim on the factory's one stream (the factory and the
    /// store's generation, `c2m_store::factory`): every page is read with it, and the
    /// first page read after a newer claim (from any replica) ends the stream with
    /// `STREAM_REPLACED`.
    claim: StreamClaim,
    clock: Arc<dyn Clock>,
}

impl Source for WorkOrders {
    type Msg = pb::FactoryEvent;

    async fn page(&mut self, cursor: i64, limit: u32) -> Result<Vec<(i64, Self::Msg)>, Status> {
        let page = self
            .store
            .factory_stream_page(&self.claim, cursor, limit)
            .await
            .map_err(store_status)?;
        let StreamPage::Current(page) = page else {
            return Err(edge_status(Edge::StreamReplaced));
        };
        Ok(page.iter().map(|e| (e.seq(), feed_entry(e))).collect())
    }

    async fn heartbeat(&mut self, _cursor: i64) -> Result<Self::Msg, Status> {
        let pos = self
            .store
            .factory_position(&self.claim.factory)
            .await
            .map_err(store_status)?;
        Ok(heartbeat(pos, self.clock.now()))
    }

    fn mark_unchanged(&mut self) {
        self.wake.mark_unchanged();
        self.commits.mark_unchanged();
    }

    /// A newer claim wakes the stream too: in this process its commit ticks `commits`, in
    /// another the claim's `NOTIFY` does (PostgreSQL); the page read next finds it.
    async fn woken(&mut self) -> Result<(), Status> {
        tokio::select! {
            _ = self.wake.changed() => Ok(()),
            _ = self.commits.changed() => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl FactoryService for FactorySvc {
    type SubscribeStream = EventStream;

    #[tracing::instrument(skip_all, fields(factory = %req.get_ref().factory_id, after = ?req.get_ref().after_seq))]
    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let factory = factory_id(&req, &req.get_ref().factory_id)?;
        let watch = req.extensions().get::<crate::auth::TokenWatch>().cloned();
        let r = req.into_inner();
        let store = self.ctx.store.clone();
        let pos = store
            .factory_position(&factory)
            .await
            .map_err(store_status)?;
        let after = match r.after_seq {
            Some(n) if n < 0 => {
                return Err(domain_status(&DomainError::invalid(
                    "after_seq",
                    format!("must not be negative, got {n}"),
                )))
            }
            Some(n) if n > pos.last_seq => {
                return Err(store_status(ahead("cursor", &factory, n, pos.last_seq)))
            }
            Some(n) => n,
            None => pos.acked_seq,
        };
        // Claimed only once the request is known to be good, so a bad one leaves the
        // factory's stream alone. From the claim's commit on, the older stream ends
        // wherever it is served (see `c2m_store::factory`).
        let claim = store
            .claim_factory_stream(&factory, self.ctx.clock.now())
            .await
            .map_err(store_status)?;
        let generation = claim.generation;
        tracing::info!(%factory, after, last = pos.last_seq, generation, "factory subscribed");

        let (tx, rx) =
            super::feed::queue::<pb::FactoryEvent>(FEED_PAGE as usize, super::feed::QUEUE_BYTES);
        let first = heartbeat(pos, self.ctx.clock.now());
        let feed = Feed {
            tx,
            stop: self.stop.clone(),
            heartbeat: self.heartbeat,
            poll: self.poll,
            page: FEED_PAGE,
        };
        let source = WorkOrders {
            wake: self.deliveries.subscribe(),
            // Commits with events (a stored plan appends `production.stage_changed`) wake
            // the feed too; on PostgreSQL that includes plans stored by another replica
            // (NOTIFY).
            commits: store.event_commits(),
            store,
            claim,
            clock: self.ctx.clock.clone(),
        };
        tokio::spawn(feed.run(source, after, first));
        Ok(Response::new(crate::auth::until_revoked(watch, rx)))
    }

    #[tracing::instrument(skip_all, fields(factory = %req.get_ref().factory_id, seq = req.get_ref().seq))]
    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let factory = factory_id(&req, &req.get_ref().factory_id)?;
        let r = req.into_inner();
        let pos = self
            .ctx
            .store
            .ack_work_orders(&factory, r.seq, self.ctx.clock.now())
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::AckResponse {
            acked_seq: pos.acked_seq,
            last_seq: pos.last_seq,
        }))
    }

    #[tracing::instrument(skip_all, fields(
        key = %req.get_ref().idempotency_key,
        factory = %req.get_ref().factory_id,
        work_order = %req.get_ref().work_order_id,
    ))]
    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::WorkOrderProgress>, Status> {
        let factory = factory_id(&req, &req.get_ref().factory_id)?;
        let r = req.into_inner();
        let cmd = ReportProgress {
            idempotency_key: convert::idempotency_key(&r.idempotency_key)?,
            factory_id: factory,
            work_order_id: convert::reference("work_order_id", &r.work_order_id)?,
            progress: report_progress(r.progress)?,
        };
        let rejected = match &cmd.progress {
            Progress::Rejected { reason } => Some(reason.clone()),
            _ => None,
        };
        let s = self
            .ctx
            .store
            .report_progress(&cmd, self.ctx.clock.now())
            .await
            .map_err(store_status)?;
        if !s.requeued_batches.is_empty() {
            tracing::warn!(
                work_order = %s.work_order_id,
                factory = %s.factory_id,
                batches = s.requeued_batches.len(),
                reason = rejected.as_deref().unwrap_or(""),
                "work order rejected; its batches wait for planning again"
            );
        } else {
            tracing::info!(work_order = %s.work_order_id, state = %s.state, "progress reported");
        }
        Ok(Response::new(progress(&s)))
    }
}
