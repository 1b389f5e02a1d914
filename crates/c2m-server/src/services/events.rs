//! `EventService`: the storefront events, streamed after a cursor and then live.
//!
//! Like the factory feed, a subscription is a loop over the store, not a fan-out of
//! in-memory messages: it reads the events after its cursor (a page at a time), sends
//! them, and when it has caught up waits for a sign that more may exist: a commit in this
//! process or, on PostgreSQL, a `NOTIFY` from any replica (both through
//! [`c2m_store::EventStore::event_commits`]), or the poll interval, in case a wake-up was
//! missed. The store numbers events in commit order (`c2m_store::events`), so reading
//! `seq > cursor` never skips one: each event is sent once per subscription, in order, and
//! a subscriber that reconnects from its last number misses nothing.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use c2m_domain::events::Event;
use c2m_domain::{CampaignId, DomainError};
use c2m_proto::v1 as pb;
use c2m_proto::v1::event_service_server::EventService;
use c2m_store::events::EVENTS_PAGE;
use c2m_store::StoreError;

use super::Ctx;
use crate::convert::timestamp;
use crate::status::{domain_status, edge_status, store_status, Edge};

pub struct EventSvc {
    pub ctx: Ctx,
    /// A heartbeat is sent when nothing else was sent for this long.
    pub heartbeat: Duration,
    /// How often a caught-up subscription reads the store without a wake-up.
    pub poll: Duration,
    /// Becomes true when the server shuts down: streams end so the server can drain.
    pub stop: watch::Receiver<bool>,
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::EventStreamMessage, Status>> + Send>>;

/// An event as the stream sends it: its JSON is the webhooks' body.
pub fn store_event(e: &Event) -> Result<pb::StoreEvent, StoreError> {
    let json = serde_json::to_string(e)
        .map_err(|err| StoreError::Corrupt(format!("an event does not serialise: {err}")))?;
    Ok(pb::StoreEvent {
        seq: e.seq,
        id: e.id.as_str().to_owned(),
        kind: e.data.kind().to_owned(),
        campaign_id: e.campaign_id.as_str().to_owned(),
        batch_id: e
            .batch_id
            .as_ref()
            .map(|b| b.as_str().to_owned())
            .unwrap_or_default(),
        occurred_at: Some(timestamp(e.occurred_at)),
        json,
    })
}

fn heartbeat(
    last_seq: i64,
    cursor: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::EventStreamMessage {
    pb::EventStreamMessage {
        message: Some(pb::event_stream_message::Message::Heartbeat(
            pb::EventHeartbeat {
                at: Some(timestamp(now)),
                last_seq,
                cursor,
            },
        )),
    }
}

/// The cursor a subscription starts from: `after` if given (refused when negative or
/// beyond `last`), else `last` (live only).
pub fn start_cursor(after: Option<i64>, last: i64) -> Result<i64, DomainError> {
    match after {
        Some(n) if n < 0 => Err(DomainError::invalid(
            "after_seq",
            format!("must not be negative, got {n}"),
        )),
        Some(n) if n > last => Err(DomainError::EventCursorAhead { seq: n, last }),
        Some(n) => Ok(n),
        None => Ok(last),
    }
}

#[tonic::async_trait]
impl EventService for EventSvc {
    type SubscribeStream = EventStream;

    #[tracing::instrument(skip_all, fields(after = ?req.get_ref().after_seq, campaign = %req.get_ref().campaign_id))]
    async fn subscribe(
        &self,
        req: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let watch = req.extensions().get::<crate::auth::TokenWatch>().cloned();
        let r = req.into_inner();
        let store = self.ctx.store.clone();
        let campaign = match r.campaign_id.trim() {
            "" => None,
            id => {
                let id = CampaignId::parse(id).map_err(|e| domain_status(&e))?;
                store.get_campaign(&id).await.map_err(store_status)?;
                Some(id)
            }
        };
        // Waits are registered before the first read, so a commit between the read and the
        // wait still wakes the loop.
        let mut wake = store.event_commits();
        let last = store.last_event_seq().await.map_err(store_status)?;
        let after = start_cursor(r.after_seq, last).map_err(|e| domain_status(&e))?;
        tracing::info!(after, last, "event subscription");

        let (tx, rx) = mpsc::channel::<Result<pb::EventStreamMessage, Status>>(64);
        let mut stop = self.stop.clone();
        let clock = self.ctx.clock.clone();
        let (beat, poll) = (self.heartbeat, self.poll);
        tokio::spawn(async move {
            let mut cursor = after;
            if tx
                .send(Ok(heartbeat(last, cursor, clock.now())))
                .await
                .is_err()
            {
                return;
            }
            let mut last_sent = tokio::time::Instant::now();
            loop {
                wake.mark_unchanged();
                let page = match store
                    .list_events(cursor, campaign.as_ref(), EVENTS_PAGE)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                };
                let full = page.len() as u32 == EVENTS_PAGE;
                for e in &page {
                    let event = match store_event(e) {
                        Ok(ev) => ev,
                        Err(err) => {
                            let _ = tx.send(Err(store_status(err))).await;
                            return;
                        }
                    };
                    let msg = pb::EventStreamMessage {
                        message: Some(pb::event_stream_message::Message::Event(event)),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    cursor = e.seq;
                    last_sent = tokio::time::Instant::now();
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                        let _ = tx.send(Err(edge_status(Edge::ShuttingDown))).await;
                        return;
                    }
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = tokio::time::sleep_until(last_sent + beat) => {
                        let last = match store.last_event_seq().await {
                            Ok(n) => n,
                            Err(e) => {
                                let _ = tx.send(Err(store_status(e))).await;
                                return;
                            }
                        };
                        if tx.send(Ok(heartbeat(last, cursor, clock.now()))).await.is_err() {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                }
            }
        });
        Ok(Response::new(crate::auth::until_revoked(watch, rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_starts_where_asked_or_live_and_never_ahead() {
        assert_eq!(start_cursor(None, 7), Ok(7));
        assert_eq!(start_cursor(Some(0), 7), Ok(0));
        assert_eq!(start_cursor(Some(7), 7), Ok(7));
        assert_eq!(
            start_cursor(Some(8), 7),
            Err(DomainError::EventCursorAhead { seq: 8, last: 7 })
        );
        assert!(matches!(
            start_cursor(Some(-1), 7),
            Err(DomainError::InvalidArgument { field, .. }) if field == "after_seq"
        ));
    }
}
