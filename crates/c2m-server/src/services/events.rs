//! `EventService`: the storefront events, streamed after a cursor and then live.
//!
//! Like the factory feed, a subscription is a loop over the store, not a fan-out of
//! in-memory messages: it reads the events after its cursor (a page at a time), sends
//! them, and when it has caught up waits for a sign that more may exist: a commit in this
//! process or, on PostgreSQL, a `NOTIFY` from any replica (both through
//! [`c2m_store::EventStore::event_commits`]), or the poll interval, in case a wake-up was
//! missed. The store numbers events in commit order (`c2m_store::events`), so reading
//! `seq > cursor` never skips one: each event is sent once per subscription, in order, and
//! a subscriber that reconnects from its last number misses nothing. A caught-up stream
//! reads through the process's [`Tail`], so a commit costs one store read however many
//! streams it wakes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use c2m_domain::events::StoredEvent;
use c2m_domain::{CampaignId, Clock, DomainError};
use c2m_proto::v1 as pb;
use c2m_proto::v1::event_service_server::EventService;
use c2m_store::events::EVENTS_PAGE;
use c2m_store::Store;

use super::feed::{Feed, Source};
use super::tail::Tail;
use super::Ctx;
use crate::convert::{self, timestamp};
use crate::status::{domain_status, store_status};

pub struct EventSvc {
    pub ctx: Ctx,
    /// A heartbeat is sent when nothing else was sent for this long.
    pub heartbeat: Duration,
    /// How often a caught-up subscription reads the store without a wake-up.
    pub poll: Duration,
    /// Becomes true when the server shuts down: streams end so the server can drain.
    pub stop: watch::Receiver<bool>,
    /// The largest message the stream may send (`--max-message-bytes`).
    pub max_bytes: usize,
    /// The newest events, read once per commit for all of this process's streams.
    pub tail: Arc<Tail>,
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::EventStreamMessage, Status>> + Send>>;

/// What a stream message holds besides its event (the `oneof` tag and length prefixes),
/// with room to spare.
const ENVELOPE_BYTES: usize = 64;

/// An event as the stream sends it, in messages of at most `max_bytes`: one, whose JSON
/// is the webhooks' body, or, for an event too large for one (a lock of tens of thousands
/// of pre-orders), parts that each list the next slice of its pre-orders. Sent whole, such
/// an event ended the stream with `OUT_OF_RANGE` at the same place on every resume, so the
/// subscriber could never get past it.
pub fn store_event_parts(e: &StoredEvent, max_bytes: usize) -> Result<Vec<pb::StoreEvent>, Status> {
    let budget = max_bytes.saturating_sub(ENVELOPE_BYTES);
    let whole = convert::events::store_event(e).map_err(store_status)?;
    let size = prost::Message::encoded_len(&whole);
    if size <= budget {
        return Ok(vec![whole]);
    }
    let count = e.listed();
    let too_large = || {
        Status::out_of_range(format!(
            "event {} ({}, {size} bytes) does not fit a stream message of \
             --max-message-bytes {max_bytes}, even split by its pre-orders",
            e.seq,
            e.kind()
        ))
    };
    if budget == 0 || count < 2 {
        return Err(too_large());
    }
    // Parts of about the budget's size, more if some pre-orders take more room than
    // others.
    let mut parts = size.div_ceil(budget).max(2);
    while parts <= count {
        let chunk = count.div_ceil(parts);
        let n = count.div_ceil(chunk);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let slice = e
                .with_preorders(i * chunk..((i + 1) * chunk).min(count))
                .ok_or_else(too_large)?;
            let mut part = convert::events::store_event(&slice).map_err(store_status)?;
            if prost::Message::encoded_len(&part) > budget {
                break;
            }
            part.part = i as i32;
            part.parts = n as i32;
            out.push(part);
        }
        if out.len() == n {
            return Ok(out);
        }
        parts *= 2;
    }
    Err(too_large())
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

/// The events after a cursor (of one campaign, or all), as a [`Feed`] reads them.
struct Events {
    store: Arc<dyn Store>,
    campaign: Option<CampaignId>,
    /// Ticks on every commit with events (and, on PostgreSQL, on another replica's).
    wake: watch::Receiver<u64>,
    clock: Arc<dyn Clock>,
    max_bytes: usize,
    tail: Arc<Tail>,
}

impl Source for Events {
    type Msg = pb::EventStreamMessage;

    async fn page(&mut self, cursor: i64, limit: u32) -> Result<Vec<(i64, Self::Msg)>, Status> {
        let campaign = self.campaign.as_ref();
        let tail = self
            .tail
            .after(cursor, campaign, limit as usize)
            .await
            .map_err(store_status)?;
        // Each event with its stream messages: kept in the tail, or, behind it, encoded from
        // the store's rows as a stream read before there was a tail.
        let events: Vec<(i64, Result<Vec<pb::StoreEvent>, Status>)> = match tail {
            Some(tailed) => tailed
                .iter()
                .map(|t| (t.event.seq, t.parts.clone()))
                .collect(),
            None => self
                .store
                .list_events(cursor, campaign, limit)
                .await
                .map_err(store_status)?
                .iter()
                .map(|e| (e.seq, store_event_parts(e, self.max_bytes)))
                .collect(),
        };
        let mut out = Vec::with_capacity(events.len());
        for (seq, parts) in events {
            // An event that cannot be sent ends the stream, but only once the events before
            // it are sent: ended at once, the page's earlier events were withheld, and a
            // subscriber resuming after the last one it had never got them (QA 17).
            let parts = match parts {
                Ok(parts) => parts,
                Err(status) if out.is_empty() => {
                    tracing::warn!(seq, status = %status.message(), "an event ends its streams");
                    return Err(status);
                }
                Err(_) => break,
            };
            // The parts of one event share its seq: the feed's cursor passes it once the
            // last is sent.
            for event in parts {
                let message = Some(pb::event_stream_message::Message::Event(event));
                out.push((seq, pb::EventStreamMessage { message }));
            }
        }
        Ok(out)
    }

    async fn heartbeat(&mut self, cursor: i64) -> Result<Self::Msg, Status> {
        let last = self.store.last_event_seq().await.map_err(store_status)?;
        Ok(heartbeat(last, cursor, self.clock.now()))
    }

    fn mark_unchanged(&mut self) {
        self.wake.mark_unchanged();
    }

    async fn woken(&mut self) -> Result<(), Status> {
        let _ = self.wake.changed().await;
        Ok(())
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
        let wake = store.event_commits();
        let last = store.last_event_seq().await.map_err(store_status)?;
        let after = start_cursor(r.after_seq, last).map_err(|e| domain_status(&e))?;
        tracing::info!(after, last, "event subscription");

        let (tx, rx) = super::feed::queue::<pb::EventStreamMessage>(64, super::feed::QUEUE_BYTES);
        let first = heartbeat(last, after, self.ctx.clock.now());
        let feed = Feed {
            tx,
            stop: self.stop.clone(),
            heartbeat: self.heartbeat,
            poll: self.poll,
            page: EVENTS_PAGE,
        };
        let source = Events {
            store,
            campaign,
            wake,
            clock: self.ctx.clock.clone(),
            max_bytes: self.max_bytes,
            tail: self.tail.clone(),
        };
        tokio::spawn(feed.run(source, after, first));
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
