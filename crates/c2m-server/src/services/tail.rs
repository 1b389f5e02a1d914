//! The newest events, read once per commit for every caught-up event stream of this
//! process.
//!
//! Each `EventService.Subscribe` stream is a loop over the store ([`super::feed`]), and
//! every commit with events wakes every caught-up stream. Each used to read the store
//! itself, so a hot campaign with a hundred storefronts subscribed cost a hundred reads per
//! group commit, all asking for the same few rows. A caught-up stream now asks the
//! [`Tail`] instead: the first to ask after a commit reads what is new, once, while the
//! others wait for that read (one at a time, under the tail's lock), and every stream
//! then takes its events (of its campaign, if it has one) from memory, already encoded as
//! the stream's messages: a hundred streams cost one read and one encoding per event.
//!
//! Why this never skips an event: the store numbers events in commit order, so the
//! events after a sequence number, read at any moment, are every event committed after it
//! by then. The tail reads after the highest number it holds (`upto`), and re-reads
//! whenever the store's commit watch (`EventStore::event_commits`) has moved since its
//! last read began, or that read is older than the poll interval (a wake-up may be
//! missed, as the streams' own poll assumes). So the tail holds every event in
//! `(base, upto]`, where `base` moves up only as the oldest events are dropped; a stream
//! whose cursor is below `base` (it is behind: a subscription from an old cursor, a
//! client slow to read) reads the store itself, as before, until it catches up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

use c2m_domain::events::StoredEvent;
use c2m_domain::CampaignId;
use c2m_proto::v1 as pb;
use c2m_store::events::EVENTS_PAGE;
use c2m_store::{Store, StoreError};
use tonic::Status;

/// The most events the tail keeps: enough for every stream to catch up through a burst
/// between two of its reads; a stream further behind reads the store.
const TAIL_MAX: usize = 4096;

/// The most bytes of encoded messages the tail keeps, whatever the count: a lock of tens
/// of thousands of pre-orders is megabytes, and 4,096 of those would be gigabytes.
const TAIL_BYTES: usize = 64 << 20;

/// The newest events, shared by this process's event streams (see the module docs).
pub struct Tail {
    store: Arc<dyn Store>,
    /// The longest a read is trusted without a wake-up (the streams' poll interval).
    fresh_for: Duration,
    /// The largest stream message (`--max-message-bytes`): what the parts are cut to.
    max_bytes: usize,
    /// The most events, and bytes of them, kept ([`TAIL_MAX`], [`TAIL_BYTES`]).
    keep: (usize, usize),
    state: Mutex<State>,
}

/// An event the tail holds, with the stream messages it is sent as
/// ([`super::events::store_event_parts`]), or the status that ends a stream reaching it.
pub struct Tailed {
    pub event: StoredEvent,
    pub parts: Result<Vec<pb::StoreEvent>, Status>,
}

impl Tailed {
    /// What the tail counts against [`TAIL_BYTES`]: the encoded parts' size.
    fn bytes(&self) -> usize {
        self.parts.as_ref().map_or(0, |parts| {
            parts.iter().map(prost::Message::encoded_len).sum()
        })
    }
}

struct State {
    /// Every event with `base < seq <= upto`, oldest first; `None` until the first read.
    window: Option<Window>,
    /// Ticks on every commit with events (any replica's, on PostgreSQL).
    wake: watch::Receiver<u64>,
    /// The watch's value when the last read began, and when it began.
    read_version: u64,
    read_at: Instant,
    /// Store reads made (for tests).
    reads: u64,
}

struct Window {
    base: i64,
    upto: i64,
    events: VecDeque<Arc<Tailed>>,
    /// The encoded size of `events`.
    bytes: usize,
}

impl Tail {
    pub fn new(store: Arc<dyn Store>, fresh_for: Duration, max_bytes: usize) -> Self {
        Self::keeping(store, fresh_for, max_bytes, (TAIL_MAX, TAIL_BYTES))
    }

    /// A tail keeping at most `keep.0` events and `keep.1` bytes of them.
    fn keeping(
        store: Arc<dyn Store>,
        fresh_for: Duration,
        max_bytes: usize,
        keep: (usize, usize),
    ) -> Self {
        let wake = store.event_commits();
        Tail {
            store,
            fresh_for,
            max_bytes,
            keep,
            state: Mutex::new(State {
                window: None,
                wake,
                read_version: 0,
                read_at: Instant::now(),
                reads: 0,
            }),
        }
    }

    /// At most `limit` events after `cursor` (of `campaign`, if given), in order, or
    /// `None` when the cursor is older than the tail holds (the caller reads the store).
    pub async fn after(
        &self,
        cursor: i64,
        campaign: Option<&CampaignId>,
        limit: usize,
    ) -> Result<Option<Vec<Arc<Tailed>>>, StoreError> {
        let mut state = self.state.lock().await;
        let version = *state.wake.borrow_and_update();
        let stale = state.window.is_none()
            || version != state.read_version
            || state.read_at.elapsed() >= self.fresh_for;
        if stale {
            state.read_version = version;
            state.read_at = Instant::now();
            self.read(&mut state).await?;
        }
        let Some(window) = &state.window else {
            return Ok(None);
        };
        if cursor < window.base {
            return Ok(None);
        }
        // The events are in seq order: skip to the first after the cursor.
        let from = window.events.partition_point(|t| t.event.seq <= cursor);
        Ok(Some(
            window
                .events
                .range(from..)
                .filter(|t| campaign.is_none_or(|c| t.event.campaign_id == *c))
                .take(limit)
                .cloned()
                .collect(),
        ))
    }

    /// Store reads the tail has made.
    pub async fn reads(&self) -> u64 {
        self.state.lock().await.reads
    }

    /// Reads what the store has after the window (all of it, a page at a time), dropping
    /// the oldest events beyond [`TAIL_MAX`].
    async fn read(&self, state: &mut State) -> Result<(), StoreError> {
        let window = match &mut state.window {
            Some(w) => w,
            None => {
                state.reads += 1;
                let last = self.store.last_event_seq().await?;
                state.window.insert(Window {
                    base: last,
                    upto: last,
                    events: VecDeque::new(),
                    bytes: 0,
                })
            }
        };
        loop {
            state.reads += 1;
            let page = self
                .store
                .list_events(window.upto, None, EVENTS_PAGE)
                .await?;
            let full = page.len() == EVENTS_PAGE as usize;
            for event in page {
                window.upto = event.seq;
                let parts = super::events::store_event_parts(&event, self.max_bytes);
                let tailed = Tailed { event, parts };
                window.bytes += tailed.bytes();
                window.events.push_back(Arc::new(tailed));
            }
            while window.events.len() > self.keep.0 || window.bytes > self.keep.1 {
                let Some(dropped) = window.events.pop_front() else {
                    break;
                };
                window.base = dropped.event.seq;
                window.bytes -= dropped.bytes();
            }
            if !full {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c2m_domain::{CampaignSpec, ConsumerId, IdempotencyKey};
    use c2m_store::{CreateCampaign, PlacePreorder};
    use chrono::Utc;

    fn key() -> IdempotencyKey {
        IdempotencyKey::parse(&format!("key-{}", crate::webhooks::hex_id(8))).unwrap()
    }

    /// A catalogue with the one product the campaigns sell.
    async fn catalogue(store: &dyn Store) {
        let catalogue = c2m_store::Catalogue {
            version: 0,
            name: "tail".into(),
            currency: Some("CNY".into()),
            material_deadline_days: None,
            products: vec![c2m_store::catalogue::CatalogueProduct {
                sku: "kettle".into(),
                bom: Default::default(),
            }],
            materials: vec![],
            factories: vec![],
            suppliers: vec![],
        };
        let req = c2m_store::ChangeCatalogue {
            idempotency_key: key(),
            edit: c2m_store::CatalogueEdit::Replace(catalogue),
        };
        store
            .change_catalogue(&req, Arc::new(|_, _| Ok(())), Utc::now())
            .await
            .unwrap();
    }

    async fn campaign(store: &dyn Store) -> CampaignId {
        let now = Utc::now();
        let spec = CampaignSpec {
            sku: "kettle".into(),
            title: "Kettle".into(),
            currency: "CNY".into(),
            unit_price: 39_900,
            deposit: 5_000,
            batch_threshold: 100,
            batch_cap: None,
            max_per_order: None,
            max_per_consumer: None,
            total_cap: None,
            opens_at: Some(now - chrono::Duration::hours(1)),
            deadline: now + chrono::Duration::days(3),
            price_ladder: vec![],
            balance_window_secs: None,
            ships_within_days: None,
        };
        let req = CreateCampaign {
            idempotency_key: key(),
            spec,
        };
        store.create_campaign(&req, now).await.unwrap().id
    }

    /// One pre-order: one `preorder.placed`.
    async fn order(store: &dyn Store, campaign: &CampaignId) {
        let req = PlacePreorder {
            idempotency_key: key(),
            campaign_id: campaign.clone(),
            consumer_id: ConsumerId::parse("alice").unwrap(),
            quantity: 1,
            source: Default::default(),
        };
        store.place_preorder(&req, Utc::now()).await.unwrap();
    }

    /// A fresh SQLite store (in a directory removed with the guard) whose catalogue sells
    /// the campaigns' product.
    async fn store_selling_kettles() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            c2m_store::sqlite::SqliteStore::open(&dir.path().join("c2m.db"))
                .await
                .unwrap(),
        );
        catalogue(&*store).await;
        (dir, store)
    }

    fn seqs(events: &[Arc<Tailed>]) -> Vec<i64> {
        events.iter().map(|t| t.event.seq).collect()
    }

    /// Ten caught-up streams after a commit cost one store read between them, each gets
    /// the new events (its campaign's, if it asks for one), and a stream whose cursor is
    /// older than the tail is sent to the store.
    #[tokio::test]
    async fn streams_share_one_read_per_commit_and_a_stream_behind_reads_the_store() {
        let (_dir, store) = store_selling_kettles().await;
        let (a, b) = (campaign(&*store).await, campaign(&*store).await);
        order(&*store, &a).await;
        let base = store.last_event_seq().await.unwrap();
        let tail = Tail::new(store.clone(), Duration::from_secs(3600), 4 << 20);
        // The tail starts at the store's last event: a cursor before it is behind.
        assert!(tail.after(base - 1, None, 100).await.unwrap().is_none());
        let empty = tail
            .after(base, None, 100)
            .await
            .unwrap()
            .expect("caught up");
        assert!(empty.is_empty());

        order(&*store, &a).await;
        order(&*store, &b).await;
        let reads = tail.reads().await;
        for _ in 0..10 {
            let got = tail.after(base, None, 100).await.unwrap().unwrap();
            assert_eq!(seqs(&got), [base + 1, base + 2]);
        }
        assert_eq!(tail.reads().await, reads + 1, "one read for ten streams");
        let only_b = tail.after(base, Some(&b), 100).await.unwrap().unwrap();
        assert_eq!(seqs(&only_b), [base + 2]);
        assert_eq!(only_b[0].event.campaign_id, b);
        let first = tail.after(base, None, 1).await.unwrap().unwrap();
        assert_eq!(seqs(&first), [base + 1]);
        let caught_up = tail.after(base + 2, None, 100).await.unwrap().unwrap();
        assert!(caught_up.is_empty());
        assert_eq!(
            tail.reads().await,
            reads + 1,
            "nothing committed, nothing read"
        );
        // What the store says, from the same cursor, and the messages a stream reading it
        // would send.
        let stored = store.list_events(base, None, 100).await.unwrap();
        let tailed = tail.after(base, None, 100).await.unwrap().unwrap();
        for (e, t) in stored.iter().zip(&tailed) {
            assert_eq!(*e, t.event);
            let parts = super::super::events::store_event_parts(e, 4 << 20).unwrap();
            assert_eq!(t.parts.as_ref().unwrap(), &parts);
        }
        assert_eq!(stored.len(), tailed.len());
    }

    /// The tail keeps at most its bytes: with room for one event, only the newest is kept,
    /// and a stream at the one before is sent to the store.
    #[tokio::test]
    async fn the_tail_keeps_at_most_its_bytes() {
        let (_dir, store) = store_selling_kettles().await;
        let a = campaign(&*store).await;
        order(&*store, &a).await;
        let one = store.list_events(0, None, 1).await.unwrap();
        let size = super::super::events::store_event_parts(&one[0], 4 << 20)
            .unwrap()
            .iter()
            .map(prost::Message::encoded_len)
            .sum::<usize>();
        let base = store.last_event_seq().await.unwrap();
        let tail = Tail::keeping(
            store.clone(),
            Duration::from_secs(3600),
            4 << 20,
            (100, size * 3 / 2),
        );
        assert!(tail
            .after(base, None, 10)
            .await
            .unwrap()
            .unwrap()
            .is_empty());
        order(&*store, &a).await;
        order(&*store, &a).await;
        let newest = tail.after(base + 1, None, 10).await.unwrap().unwrap();
        assert_eq!(seqs(&newest), [base + 2]);
        assert!(
            tail.after(base, None, 10).await.unwrap().is_none(),
            "the event before the newest was dropped: read the store"
        );
    }
}
