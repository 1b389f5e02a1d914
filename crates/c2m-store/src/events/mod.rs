//! Storefront events: the transactional outbox (what consumers and merchants hear about,
//! [`c2m_domain::events`]) and its store-wide sequence.
//!
//! - Types: the domain's ([`StoredEvent`], [`NewEvent`], [`EventData`]); [`EventStore`] is this
//!   feature's trait.
//! - Logic: a write appends its events to its transaction ([`Tx::emit`]), next to the
//!   change that causes them (`pooling`, `ledger`, `planning`, `factory`); the writer
//!   numbers and inserts every event of the transaction just before it commits
//!   ([`flush`]), in one several-row statement ([`EventsSql`]), so a group of placements
//!   committed together writes all its events at once. A write rolled back to its
//!   savepoint (a refusal in a group) drops its own events with it, so a refused request
//!   leaves no event.
//! - Conformance cases: `crate::conformance::events`.
//!
//! # The sequence, in commit order
//!
//! A subscriber reads `seq > cursor` and moves its cursor to the last number it saw; that
//! is only exactly-once if no event can become visible later with a number at or below a
//! number already seen. A plain sequence (`BIGSERIAL`) does not give that on PostgreSQL:
//! numbers are taken at insert and become visible at commit, so a transaction that took 7
//! and commits after the one that took 8 is skipped by a reader that saw 8 first.
//!
//! c2m numbers events with one counter row (`event_counter`), raised by
//! `UPDATE ... SET last_seq = last_seq + n RETURNING last_seq` as the transaction's last
//! statement before its commit. The update holds the row's lock until the commit (or
//! rollback), so two transactions that append events take their numbers one after the
//! other, and the second can only raise the counter once the first has committed (a
//! READ COMMITTED update waits for the row, then reads the committed value). PostgreSQL
//! releases a transaction's locks only after its commit is visible to new snapshots, so
//! every snapshot sees a prefix of the sequence: if it sees number N, it sees every number
//! below N. Numbers also have no gaps: a rolled-back transaction's raise is rolled back
//! with it. SQLite has one writer, which is the same lock.
//!
//! The price is that transactions appending events (across campaigns) commit one at a
//! time from the counter's raise to their commit. That stretch is one statement and the
//! commit, and a campaign's writes already share one transaction (group commit), so the
//! lock is taken once per group, not once per order. The counter is campaign-independent
//! on purpose: a per-campaign sequence would not give a store-wide cursor.
//!
//! **Waking subscribers.** After each committed write the store ticks a watch channel
//! ([`EventStore::event_commits`]); on PostgreSQL the insert also sends `NOTIFY
//! c2m_events` (delivered at commit), and a listener in each replica that has subscribers
//! ticks the same channel, so another replica's events are read promptly rather than at
//! the next poll. A write that appends no event but must still reach other replicas'
//! readers at once (a factory's stream claim) sends the same notification
//! ([`wake_readers`]).

use async_trait::async_trait;
use sqlx::{Postgres, Sqlite};
use tokio::sync::watch;

use c2m_domain::events::{EventData, NewEvent, PreorderRef, StoredEvent};
use c2m_domain::{BatchId, CampaignId, EventId, Money, Preorder};

use crate::dialect::{micros, Backend, Columns, Dialect, Tx};
use crate::engine::Engine;
use crate::Result;
use crate::StoreError;

/// Most events one read returns.
pub const EVENTS_PAGE: u32 = 500;

/// The PostgreSQL channel a commit with events notifies.
pub const EVENTS_CHANNEL: &str = "c2m_events";

/// The one statement of this feature whose text differs: the several-row insert, with
/// the rows as one JSON array (`json_each` on SQLite, `jsonb_array_elements` on
/// PostgreSQL, which also notifies [`EVENTS_CHANNEL`]).
pub(crate) trait EventsSql: Dialect {
    /// Inserts the rows of the JSON array `$1` (each `[id, campaign, batch, kind,
    /// occurred_at in microseconds, data]`), numbered from `$2` in array order.
    const INSERT_EVENTS: &'static str;
    /// Wakes the readers of every other process at this transaction's commit, for a write
    /// that appends no event but that their streams must hear of promptly (a factory's
    /// stream claim, `crate::factory`); `None` where no other process reads the store
    /// (SQLite: this process's readers wake after every commit anyway).
    const WAKE_READERS: Option<&'static str>;
}

impl EventsSql for Sqlite {
    const INSERT_EVENTS: &'static str =
        "INSERT INTO events (seq, id, campaign_id, batch_id, kind, occurred_at, data) \
         SELECT $2 + key, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
         value ->> 5 FROM json_each($1) ORDER BY key";
    const WAKE_READERS: Option<&'static str> = None;
}

impl EventsSql for Postgres {
    const INSERT_EVENTS: &'static str =
        "WITH ins AS (INSERT INTO events (seq, id, campaign_id, batch_id, kind, occurred_at, data) \
         SELECT $2 + e.ord - 1, e.v ->> 0, e.v ->> 1, e.v ->> 2, e.v ->> 3, \
         TIMESTAMPTZ 'epoch' + CAST(e.v ->> 4 AS BIGINT) * INTERVAL '1 microsecond', e.v ->> 5 \
         FROM jsonb_array_elements($1) WITH ORDINALITY AS e(v, ord) ORDER BY e.ord \
         RETURNING seq) \
         SELECT pg_notify('c2m_events', CAST(MAX(seq) AS TEXT)) AS notified FROM ins";
    // The listener ticks at any notification on the channel; the payload is for people
    // watching with `LISTEN` by hand.
    const WAKE_READERS: Option<&'static str> =
        Some("SELECT pg_notify('c2m_events', 'wake') AS notified");
}

/// Raises the counter by `$1`; the new last number. See the module docs.
const RAISE_COUNTER: &str =
    "UPDATE event_counter SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq";

const AFTER: &str = concat!(
    "SELECT seq, id, campaign_id, batch_id, occurred_at, data FROM events ",
    "WHERE seq > $1 ORDER BY seq LIMIT $2"
);

const AFTER_IN_CAMPAIGN: &str = concat!(
    "SELECT seq, id, campaign_id, batch_id, occurred_at, data FROM events ",
    "WHERE campaign_id = $3 AND seq > $1 ORDER BY seq LIMIT $2"
);

impl<D: Backend> Tx<'_, D> {
    /// Appends an event to this transaction: it is written, numbered, just before the
    /// commit, or not at all.
    pub(crate) fn emit(
        &mut self,
        campaign: &CampaignId,
        batch: Option<&BatchId>,
        at: chrono::DateTime<chrono::Utc>,
        data: EventData,
    ) {
        let mark = self.events.len();
        self.emit_at(mark, campaign, batch, at, data);
    }

    /// Where the next event would go: a mark for [`Tx::emit_at`].
    pub(crate) fn event_mark(&self) -> usize {
        self.events.len()
    }

    /// Appends an event at `mark` (from [`Tx::event_mark`]), before the events emitted
    /// since: for a cause known in full only after its effects (a lever's
    /// `campaign.changed`, which lists the refunds it gave, comes before the lock, failure
    /// and refunds it caused).
    pub(crate) fn emit_at(
        &mut self,
        mark: usize,
        campaign: &CampaignId,
        batch: Option<&BatchId>,
        at: chrono::DateTime<chrono::Utc>,
        data: EventData,
    ) {
        let event = NewEvent {
            campaign_id: campaign.clone(),
            batch_id: batch.cloned(),
            occurred_at: micros(at),
            data,
        };
        self.events.insert(mark.min(self.events.len()), event);
    }
}

/// The pre-order as an event names it, with the amount the event is about.
pub(crate) fn preorder_ref(p: &Preorder, amount: Option<Money>) -> PreorderRef {
    PreorderRef {
        preorder_id: p.id.clone(),
        consumer_id: p.consumer_id.clone(),
        quantity: p.quantity,
        amount,
    }
}

/// Whether writes store their events: always, except in a benchmark that measures what
/// the outbox costs ([`set_outbox_for_benchmark`]).
static OUTBOX: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// **Benchmarks only** (`examples/bench_pooling.rs`): turns the outbox off (or on again)
/// for every store in this process, so a benchmark can place the same orders with and
/// without it in one run. Off, writes still build their events in memory but store none
/// (no counter raise, no insert, no `NOTIFY`): subscribers and webhooks hear nothing, so
/// a server must never run this way.
#[doc(hidden)]
pub fn set_outbox_for_benchmark(on: bool) {
    OUTBOX.store(on, std::sync::atomic::Ordering::SeqCst);
}

/// Numbers and writes the transaction's events (its last statements before the commit);
/// nothing when it has none. See the module docs for why the numbers are in commit order.
pub(crate) async fn flush<D: Backend>(tx: &mut Tx<'_, D>) -> Result<()> {
    if !OUTBOX.load(std::sync::atomic::Ordering::Relaxed) {
        tx.events.clear();
    }
    if tx.events.is_empty() {
        return Ok(());
    }
    let events = std::mem::take(&mut tx.events);
    let n = events.len() as i64;
    let last = D::query(RAISE_COUNTER, (n,))
        .fetch_one(tx)
        .await?
        .int("last_seq")?;
    let first = last - n + 1;
    let mut rows = Vec::with_capacity(events.len());
    for e in &events {
        let data = serde_json::to_string(&e.data)
            .map_err(|err| StoreError::Corrupt(format!("an event does not serialise: {err}")))?;
        rows.push(serde_json::json!([
            EventId::generate().as_str(),
            e.campaign_id.as_str(),
            e.batch_id.as_ref().map(|b| b.as_str()),
            e.data.kind(),
            e.occurred_at.timestamp_micros(),
            data,
        ]));
    }
    let rows = serde_json::Value::Array(rows).to_string();
    D::sql(D::INSERT_EVENTS)
        .bind(crate::dialect::Value::Json(&rows))
        .bind(first)
        .fetch_all(tx)
        .await?;
    Ok(())
}

/// Wakes every other process's readers when this transaction commits
/// ([`EventsSql::WAKE_READERS`]): they read again, and find what changed. Readers in this
/// process need nothing: the store ticks their watch after every commit.
pub(crate) async fn wake_readers<D: Backend>(tx: &mut Tx<'_, D>) -> Result<()> {
    match D::WAKE_READERS {
        Some(sql) => D::query(sql, ()).fetch_all(tx).await.map(drop),
        None => Ok(()),
    }
}

/// An event as stored, its body kept as written: a kind or field of a newer release
/// passes through this one whole ([`StoredEvent`]).
fn event<D: Dialect>(r: &D::Row) -> Result<StoredEvent> {
    let seq = r.int("seq")?;
    StoredEvent::from_stored(
        seq,
        EventId::from_trusted(r.text("id")?),
        CampaignId::from_trusted(r.text("campaign_id")?),
        r.text_opt("batch_id")?.map(BatchId::from_trusted),
        r.ts("occurred_at")?,
        &r.text("data")?,
    )
    .map_err(|e| StoreError::Corrupt(format!("stored event {seq}: {e}")))
}

/// Events numbered above `after`, in sequence order, at most `limit` (capped at
/// [`EVENTS_PAGE`]), of one campaign or of all.
pub(crate) async fn list_events<D: Backend>(
    pool: &sqlx::Pool<D>,
    after: i64,
    campaign: Option<&CampaignId>,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let limit = i64::from(limit.clamp(1, EVENTS_PAGE));
    let mut conn = pool.acquire().await?;
    let q = match campaign {
        Some(c) => D::query(AFTER_IN_CAMPAIGN, (after, limit, c.as_str())),
        None => D::query(AFTER, (after, limit)),
    };
    q.all(&mut conn, event::<D>).await
}

/// The number of the last event committed (0 before the first).
pub(crate) async fn last_event_seq<D: Backend>(pool: &sqlx::Pool<D>) -> Result<i64> {
    let mut conn = pool.acquire().await?;
    let sql = "SELECT last_seq FROM event_counter WHERE id = 1";
    D::query(sql, ())
        .fetch_one(&mut conn)
        .await?
        .int("last_seq")
}

/// The outbox's events, for the event stream and the webhooks (see the
/// [module docs](self)).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Events numbered above `after`, in sequence order, at most `limit` (capped at
    /// [`EVENTS_PAGE`]); only `campaign`'s when given. Every event returned is committed,
    /// and no event numbered at or below the last one returned can appear later.
    async fn list_events(
        &self,
        after: i64,
        campaign: Option<&CampaignId>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// The number of the last event committed (0 before the first).
    async fn last_event_seq(&self) -> Result<i64>;

    /// A watch that changes after writes commit (in this process, and on PostgreSQL in
    /// any replica): a reader waiting for new events waits for a change, then reads.
    /// Changes may be spurious; a reader also polls, in case one is missed.
    fn event_commits(&self) -> watch::Receiver<u64>;
}

#[async_trait]
impl<E: Engine> EventStore for E {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_events(
        &self,
        after: i64,
        campaign: Option<&CampaignId>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        list_events(self.readers(), after, campaign, limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn last_event_seq(&self) -> Result<i64> {
        last_event_seq(self.readers()).await
    }

    fn event_commits(&self) -> watch::Receiver<u64> {
        // Subscribed before the listener is asked for, so that a listener about to stop
        // for want of subscribers sees this one.
        let commits = self.base().commits.subscribe();
        self.listen();
        commits
    }
}
