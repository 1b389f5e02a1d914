//! Factory delivery: each factory's work orders in sequence, its acknowledgement cursor,
//! and the progress it reports back.
//!
//! Delivery is "store first, deliver after": a work order and its number in the
//! factory's sequence are written with the plan (`crate::planning::store_plan`), so
//! the stream a factory reads (`Tx::work_orders_after`) is just the table in
//! sequence order, resumable from any number. Every read and write here is scoped by the
//! factory id: a work order of another factory is "not found", whatever id is sent.
//!
//! A rejection is the one report with consequences beyond the work order: in the same
//! transaction, the factory is excluded for each of the work order's batches, the stock
//! on hand the work order was given goes back to the catalogue, and the batches' units
//! in this work order become unplanned again, so they wait in the planning queue
//! (`crate::planning::QUEUED_BATCHES` counts units in live work orders) and the next
//! cycle plans them elsewhere.
//!
//! # Layout and locks
//!
//! The types and [`FactoryStore`] (implemented once, at the end of this module) are here,
//! the SQL in `sql.rs` (one text for both backends); the conformance cases are
//! `factories_get_their_own_work_orders_and_rejections_requeue_units` and
//! `a_factory_stream_claim_replaces_the_older_on_every_replica`
//! (`crate::conformance`). A report holds its work order's row (`FOR UPDATE` on
//! PostgreSQL; SQLite's one writer), so two reports on one work order take turns and each
//! moves it from the state the other left. A rejection also changes the queue and the
//! stock, so it takes the planning lock first ([`crate::planning`]), always before the work
//! order's row, the order every writer of both takes them in. Acknowledgements need no
//! lock: the cursor only moves up (a `CASE` in one upsert).
//!
//! # One stream per factory, across replicas
//!
//! A factory has one stream at a time, whichever replica serves it: each
//! `FactoryService.Subscribe` claims the factory's stream ([`FactoryStore::claim_factory_stream`]),
//! raising its generation in `factory_streams` by one upsert (PostgreSQL holds the row's
//! lock to the commit, so concurrent claims take turns and each gets its own number;
//! SQLite's one writer does already), and keeps the number it got. A stream reads each
//! page with [`FactoryStore::factory_stream_page`], which reads the stored generation and
//! the work orders in one snapshot: once another claim has committed, the next page is
//! [`StreamPage::Replaced`] and the stream ends without sending it. Because the two reads
//! share a snapshot, a page can only hold work orders stored after the newer claim if it
//! also sees that claim, so the replaced stream never sends a work order stored after the
//! claim committed; what it can still send is the rest of a page it read before (at most
//! [`FEED_PAGE`] work orders, all stored before the claim). The claim's transaction also
//! wakes every other replica's readers at its commit (`crate::events::wake_readers`, the
//! `NOTIFY` the events use), so a replaced stream elsewhere reads again, and ends, at
//! once rather than at its next poll. The rule lives in the store, not in a process's
//! memory, because a factory reconnecting through another replica must end its old
//! stream there too.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::events::EventData;
use c2m_domain::production::{self, Progress, Tally, WorkOrderState};
use c2m_domain::{BatchId, CampaignId, DomainError, IdempotencyKey};

use crate::dialect::{Backend, Tx};
use crate::engine::{Call, Engine};
use crate::idempotency::Keyed;
use crate::planning::WorkOrder;
use crate::Result;
use crate::StoreError;

mod sql;

pub(crate) const OP_REPORT_PROGRESS: &str = "report_progress";

/// Most work orders one read of a factory's feed returns.
pub const FEED_PAGE: u32 = 100;

/// A subscription's claim on a factory's one stream
/// ([`FactoryStore::claim_factory_stream`]): the factory and the generation the claim
/// raised it to. Its pages are read with it, so a page is always asked for the factory
/// the claim is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClaim {
    pub factory: String,
    pub generation: i64,
}

/// One entry of a factory's feed: the numbers of its sequence go to its work orders and to
/// the notices of those withdrawn before it accepted them (a cancelled campaign's, see
/// `crate::levers`), so a factory that resumes from a number learns both, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEntry {
    /// A work order, at its own number, in the state it is in now.
    WorkOrder(WorkOrder),
    /// A work order withdrawn, at its notice's number ([`WorkOrder::withdrawn`]).
    Withdrawn(WorkOrder),
}

impl FeedEntry {
    /// The entry's number in the factory's sequence.
    pub fn seq(&self) -> i64 {
        match self {
            FeedEntry::WorkOrder(wo) => wo.seq,
            FeedEntry::Withdrawn(wo) => wo.withdrawn.as_ref().map_or(wo.seq, |w| w.seq),
        }
    }
}

/// What a factory's stream reads next ([`FactoryStore::factory_stream_page`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPage {
    /// The stream still holds the factory's newest claim: its feed after the cursor, in
    /// sequence order (empty when it has caught up).
    Current(Vec<FeedEntry>),
    /// A newer claim (a later `Subscribe`, in any process on this store) replaced the
    /// stream's: it must end without sending anything more.
    Replaced,
}

/// Where a factory's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactoryPosition {
    /// The highest sequence number stored for the factory (0 before its first).
    pub last_seq: i64,
    /// The highest sequence number it acknowledged (0 before its first ack).
    pub acked_seq: i64,
}

/// A report from a factory about one of its work orders.
#[derive(Debug, Clone, Serialize)]
pub struct ReportProgress {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub factory_id: String,
    pub work_order_id: String,
    pub progress: Progress,
}

/// A work order's progress, as answered to a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrderStatus {
    pub work_order_id: String,
    pub factory_id: String,
    pub seq: i64,
    pub state: WorkOrderState,
    pub tally: Tally,
    pub state_at: Option<DateTime<Utc>>,
    /// Batches whose units in this work order went back to the planning queue (a
    /// rejection); empty otherwise.
    pub requeued_batches: Vec<BatchId>,
}

/// How far a batch's production has come, across the work orders that make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductionStage {
    /// Locked (and paid) units wait for a planning cycle, or for a replan after a
    /// factory rejected them.
    AwaitingPlan,
    /// Every unit is in a work order; not all factories have accepted yet.
    Planned,
    Accepted,
    InProduction,
    QualityCheck,
    /// Every unit has shipped.
    Shipped,
}

/// A batch's production as consumers see it on their pre-orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProduction {
    pub batch_id: BatchId,
    /// False for a locked batch that is not ready for production yet (its balance window
    /// is open): only its promise (`due_at`) is known, the rest means nothing.
    pub in_production: bool,
    pub stage: ProductionStage,
    /// Units of the batch in live work orders that have shipped.
    pub units_shipped: i64,
    /// Units of the batch still waiting for a plan.
    pub units_awaiting_plan: i64,
    /// The date the batch is promised to ship by (its lock plus the campaign's promise).
    pub due_at: Option<DateTime<Utc>>,
    /// When every unit is planned: the end of the last run that makes some of them (when
    /// the plan completes the batch). `None` while units wait for a plan.
    pub planned_ship_at: Option<DateTime<Utc>>,
    /// Why the plan ships it after its due date, when it does.
    pub late_reason: Option<String>,
    /// When every unit has shipped: the moment the last work order making it reported it
    /// shipped in full. From then on that is the date consumers are told, not the plan's.
    pub shipped_at: Option<DateTime<Utc>>,
}

impl BatchProduction {
    /// The date its consumers are told: when it shipped, once every unit has; the plan's
    /// when every unit is planned; else the promise. `None` for a batch without a promise
    /// (not locked).
    pub fn expected_ship_at(&self) -> Option<DateTime<Utc>> {
        self.shipped_at.or(self.planned_ship_at).or(self.due_at)
    }

    /// Whole days the expected date is after the promised one ([`c2m_domain::days_late`]:
    /// by date, so a run ending later on the promised day is on time); 0 when on time.
    pub fn days_late(&self) -> i64 {
        match (self.expected_ship_at(), self.due_at) {
            (Some(at), Some(due)) => c2m_domain::days_late(at, due),
            _ => 0,
        }
    }

    /// Why it is late, when it is: the plan's reason, or a general one. A batch that
    /// shipped later than its plan said is late for that, not for the plan's reason.
    pub fn why_late(&self) -> Option<String> {
        if self.days_late() == 0 {
            return None;
        }
        let planned_day = self.planned_ship_at.map(|at| at.date_naive());
        match self.shipped_at {
            Some(at) if planned_day.is_none_or(|day| at.date_naive() > day) => Some(format!(
                "shipped on {}, after the {} the plan gave",
                at.date_naive(),
                planned_day.map_or_else(|| "date".to_owned(), |d| d.to_string())
            )),
            _ => {
                Some(self.late_reason.clone().unwrap_or_else(|| {
                    "the plan completes the batch after its promised date".into()
                }))
            }
        }
    }
}

/// One live work order's part in a batch, for [`batch_production`].
#[derive(Debug, Clone)]
pub(crate) struct BatchShare {
    pub state: WorkOrderState,
    pub units: i64,
    pub shipped_fraction: f64,
    /// The end of the last scheduled run making some of the batch (`None` if none is
    /// scheduled), and the late reason given with the last late run.
    pub ends_at: Option<DateTime<Utc>>,
    pub late_reason: Option<String>,
    /// When the work order reported it shipped in full (its state's moment, shipped).
    pub shipped_at: Option<DateTime<Utc>>,
}

/// Acknowledges the factory's work orders up to `seq`. Acknowledging twice, or an older
/// number after a newer one, changes nothing; a number beyond the last work order is
/// `OutOfRange`.
pub(crate) async fn ack<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<(String, i64)>,
) -> Result<FactoryPosition> {
    let (factory, seq, now) = (&c.req.0, c.req.1, c.now);
    // 0 acknowledges nothing: it is what a heartbeat reports for a factory that has not
    // acknowledged yet, so a client echoing it back gets the position, not a refusal.
    if seq < 0 {
        return Err(DomainError::invalid("seq", format!("must not be negative, got {seq}")).into());
    }
    let pos = known_position(tx, factory).await?;
    if seq > pos.last_seq {
        return Err(ahead("acknowledged", factory, seq, pos.last_seq));
    }
    if seq > pos.acked_seq {
        tx.raise_factory_ack(factory, seq, now).await?;
    }
    Ok(FactoryPosition {
        last_seq: pos.last_seq,
        acked_seq: pos.acked_seq.max(seq),
    })
}

/// The factory's position; `NotFound` for a factory the store has never heard of.
pub(crate) async fn known_position<D: Backend>(
    tx: &mut Tx<'_, D>,
    factory: &str,
) -> Result<FactoryPosition> {
    require_known(tx, factory).await?;
    tx.factory_position(factory).await
}

/// `InvalidArgument` for a blank factory id, `NotFound` for a factory the store has
/// never heard of.
async fn require_known<D: Backend>(tx: &mut Tx<'_, D>, factory: &str) -> Result<()> {
    if factory.trim().is_empty() {
        return Err(DomainError::invalid("factory_id", "must not be empty").into());
    }
    if !tx.factory_known(factory).await? {
        return Err(StoreError::not_found("factory", factory));
    }
    Ok(())
}

/// The error for a cursor or acknowledgement beyond the factory's last work order (the
/// server checks a subscription's cursor with it too).
pub fn ahead(what: &'static str, factory: &str, seq: i64, last: i64) -> StoreError {
    DomainError::Ahead {
        what,
        factory: factory.to_owned(),
        seq,
        last,
    }
    .into()
}

/// Applies a factory's report to its work order; see the module docs for rejections.
/// Idempotent by key; a report that repeats the current state records nothing.
pub(crate) async fn report<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<ReportProgress>,
) -> Result<WorkOrderStatus> {
    let (req, now) = (&c.req, c.now);
    // Each factory's keys are its own (a factory numbers its reports as it likes).
    let key = Keyed::scoped(
        OP_REPORT_PROGRESS,
        &req.factory_id,
        "factory_id",
        &req.idempotency_key,
        req,
    );
    let rejection = matches!(req.progress, Progress::Rejected { .. });
    // The work order's lock, then the key again: the same report sent to another replica
    // may have committed while this one waited, and its answer is this one's (not a
    // refusal from the state it left, such as a shipment of a work order shipped in full).
    let lock = async |tx: &mut Tx<'_, D>| {
        req.progress.validate()?;
        known_position(tx, &req.factory_id).await?;
        if rejection {
            // A rejection changes the queue and the stock: serialise with stored plans.
            tx.lock_planning().await?;
        }
        tx.factory_work_order(&req.factory_id, &req.work_order_id)
            .await
    };
    key.run_locked(tx, now, lock, async |tx, locked| {
        let Some((wo, mut tally, state_at)) = locked else {
            return Err(StoreError::not_found("work order", &req.work_order_id));
        };
        if tally.ordered.is_empty() {
            for run in &wo.order.runs {
                *tally.ordered.entry(run.sku.clone()).or_default() += run.quantity;
            }
        }
        let t = production::apply(&wo.id, wo.state, &tally, &req.progress)?;
        let mut status = WorkOrderStatus {
            work_order_id: wo.id.clone(),
            factory_id: wo.order.factory_id.clone(),
            seq: wo.seq,
            state: t.state,
            tally: t.tally.clone(),
            state_at,
            requeued_batches: Vec::new(),
        };
        if t.changed {
            let batches = work_order_batches(&wo);
            let before = batch_production(tx, &batches).await?;
            tx.set_work_order_state(&wo, &req.progress, &t, now).await?;
            status.state_at = Some(now);
            if let Progress::Rejected { reason } = &req.progress {
                for b in &batches {
                    tx.exclude_factory(b, &wo.order.factory_id, reason, now)
                        .await?;
                    tx.release_plan_batch(&wo.plan_id, b).await?;
                }
                return_materials(tx, &wo, now).await?;
                let mut requeued = Vec::with_capacity(batches.len());
                for b in &batches {
                    if !refund_if_cancelled(tx, c.provider(), b, now).await? {
                        requeued.push(b.clone());
                    }
                }
                status.requeued_batches = requeued;
            }
            // A batch the rejection refunded has no production to tell of: its
            // `batch.refunded` says what happened to it.
            let told: Vec<BatchId> = match &req.progress {
                Progress::Rejected { .. } => status.requeued_batches.clone(),
                _ => batches,
            };
            production_events(tx, &told, &before, now).await?;
        }
        Ok(status)
    })
    .await
}

/// Gives a work order that will make nothing (rejected or withdrawn) back its materials:
/// stock to stock on hand, its share of each purchase order released (see
/// `crate::purchasing`). The caller holds the planning lock.
async fn return_materials<D: Backend>(
    tx: &mut Tx<'_, D>,
    wo: &WorkOrder,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut returned = false;
    for m in wo.order.materials.iter().filter(|m| m.quantity > 0.0) {
        match (&m.supplier, &m.purchase_order) {
            (None, _) => {
                tx.return_stock(&m.material, m.quantity).await?;
                returned = true;
            }
            (Some(_), Some(po)) => {
                returned |= crate::purchasing::release(tx, po, m.quantity).await?;
            }
            (Some(_), None) => {}
        }
    }
    if returned {
        tx.bump_catalogue_version(now).await?;
    }
    Ok(())
}

/// The work orders a cancel of `campaign` may withdraw, locked, in id order: those still
/// `issued` (the factory has neither accepted nor started them) that make units of the
/// campaign's batches. Taken before the campaign's lock, after the planning lock (the order
/// every writer of both takes them in), so an acceptance racing the cancel either commits
/// first, and the cancel sees it accepted, or waits and is refused as withdrawn.
pub(crate) async fn lock_withdrawable<D: Backend>(
    tx: &mut Tx<'_, D>,
    campaign: &CampaignId,
) -> Result<Vec<WorkOrder>> {
    let mut out = Vec::new();
    for id in tx.issued_work_orders_of(campaign).await? {
        if let Some(wo) = tx.lock_work_order(&id).await? {
            if wo.state == WorkOrderState::Issued {
                out.push(wo);
            }
        }
    }
    Ok(out)
}

/// Withdraws, for the cancel of `campaign`, each of `candidates` (from
/// [`lock_withdrawable`]) whose withdrawal leaves no batch of it made in part: a work order
/// that makes a batch of another campaign stays (that campaign's consumers are waiting for
/// it), and so does one that makes a batch another live work order also makes (an accepted
/// one, or one that stays by this rule), since the batch stays in production and its
/// withdrawn units would be planned again for a campaign the merchant cancelled. What is
/// left is withdrawn: its state, a notice numbered in its factory's sequence, its
/// materials back, its batches no longer in its plan; the cancel then refunds the batches
/// nothing makes any more. Answers the ids of those it withdrew, in id order.
pub(crate) async fn withdraw_for_cancel<D: Backend>(
    tx: &mut Tx<'_, D>,
    campaign: &CampaignId,
    candidates: Vec<WorkOrder>,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut ours = std::collections::BTreeSet::new();
    for b in tx.refundable_batches(campaign).await? {
        ours.insert(b.id);
    }
    let mut chosen: Vec<WorkOrder> = candidates
        .into_iter()
        .filter(|wo| work_order_batches(wo).iter().all(|b| ours.contains(b)))
        .collect();
    // The live work orders making each batch, read once.
    let batches: std::collections::BTreeSet<BatchId> =
        chosen.iter().flat_map(work_order_batches).collect();
    let mut makers = std::collections::BTreeMap::new();
    for b in batches {
        let live = tx.live_work_orders_making(&b).await?;
        makers.insert(b, live);
    }
    // Until nothing changes: a batch made by a live work order not chosen keeps every
    // chosen work order making it.
    loop {
        let kept = |wo: &WorkOrder| {
            work_order_batches(wo).iter().any(|b| {
                makers[b]
                    .iter()
                    .any(|id| !chosen.iter().any(|c| c.id == *id))
            })
        };
        let keep: Vec<String> = chosen
            .iter()
            .filter(|wo| kept(wo))
            .map(|wo| wo.id.clone())
            .collect();
        if keep.is_empty() {
            break;
        }
        chosen.retain(|wo| !keep.contains(&wo.id));
    }
    let reason = format!("campaign {campaign} was cancelled");
    for wo in &chosen {
        let seq = tx.next_work_order_seq(&wo.order.factory_id).await?;
        tx.withdraw_work_order(wo, seq, &reason, now).await?;
        for b in work_order_batches(wo) {
            tx.release_plan_batch(&wo.plan_id, &b).await?;
        }
        return_materials(tx, wo, now).await?;
    }
    Ok(chosen.into_iter().map(|wo| wo.id).collect())
}

/// Refunds a locked batch of a cancelled campaign that a rejection has just left with no
/// live work order; whether it did. The cancel refunds every locked batch nothing makes
/// and leaves a batch in a work order alone (production may have begun); once the factory
/// rejects that work, nothing makes the batch, and planning it again for a campaign the
/// merchant cancelled would spend materials on goods nobody is waiting for while its
/// consumers' money stays held. So the rejection refunds it, as the cancel would have had
/// the rejection come first (the same movements, `batch.refunded` instead of a line in the
/// cancel's `campaign.changed`). A batch still made in part by another factory's work order
/// stays: it is in production, and its rejected units are planned again.
///
/// The caller holds the planning lock and the work order's row; the campaign's lock comes
/// after them, then the batches' (the order every writer takes them in). A cancel holds
/// the campaign's lock while it looks, so a cancel and a rejection take turns: the later
/// sees the earlier's commit, and the batch is neither left by both nor refunded twice.
async fn refund_if_cancelled<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn crate::payment::PaymentProvider,
    batch: &BatchId,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(b) = tx.batch(batch).await? else {
        return Ok(false);
    };
    let Some(campaign) = tx.lock_campaign(&b.campaign_id).await? else {
        return Err(StoreError::Corrupt(format!(
            "batch {} has no campaign {}",
            b.id, b.campaign_id
        )));
    };
    if campaign.cancelled_at.is_none() {
        return Ok(false);
    }
    // Locked and not refunded yet (the cancel refunded every other one), and made by no
    // other factory's work order.
    let refundable = tx.refundable_batches(&campaign.id).await?;
    let Some(b) = refundable.into_iter().find(|x| x.id == *batch) else {
        return Ok(false);
    };
    if tx.in_production(batch).await? {
        return Ok(false);
    }
    let done = crate::ledger::refund_locked_batch(tx, provider, &campaign, &b, now).await?;
    tx.emit(
        &campaign.id,
        Some(&b.id),
        now,
        EventData::BatchRefunded {
            batch_seq: b.seq,
            preorders: done.refs,
        },
    );
    Ok(true)
}

/// Claims the factory's one stream (see the module docs): raises its generation and
/// answers the claim with the new number; `NotFound` for a factory the store has never
/// heard of.
pub(crate) async fn claim<D: Backend>(tx: &mut Tx<'_, D>, c: &Call<String>) -> Result<StreamClaim> {
    let (factory, now) = (&c.req, c.now);
    require_known(tx, factory).await?;
    let generation = tx.raise_stream_generation(factory, now).await?;
    crate::events::wake_readers(tx).await?;
    Ok(StreamClaim {
        factory: factory.clone(),
        generation,
    })
}

/// The page of the stream holding `claim`: the claim and the work orders read in one
/// snapshot (the caller's), so a page never holds a work order stored after a newer
/// claim.
pub(crate) async fn stream_page<D: Backend>(
    tx: &mut Tx<'_, D>,
    claim: &StreamClaim,
    after: i64,
    limit: u32,
) -> Result<StreamPage> {
    let factory = &claim.factory;
    if tx.stream_generation(factory).await? != Some(claim.generation) {
        return Ok(StreamPage::Replaced);
    }
    let page = tx.feed_after(factory, after, limit).await?;
    Ok(StreamPage::Current(page))
}

/// The batches a work order makes units of, each once.
pub(crate) fn work_order_batches(wo: &WorkOrder) -> Vec<BatchId> {
    let mut batches: Vec<BatchId> = wo
        .order
        .runs
        .iter()
        .flat_map(|r| r.batches.iter().map(|b| b.batch_id.clone()))
        .collect();
    batches.sort();
    batches.dedup();
    batches
}

/// Appends `production.stage_changed` for each of `batches` whose stage or shipped units
/// differ from `before` (read in the same transaction before the change), and
/// `ship_date.changed` for each whose expected ship date differs from before.
pub(crate) async fn production_events<D: Backend>(
    tx: &mut Tx<'_, D>,
    batches: &[BatchId],
    before: &[BatchProduction],
    now: DateTime<Utc>,
) -> Result<()> {
    for after in batch_production(tx, batches).await? {
        let was = before.iter().find(|b| b.batch_id == after.batch_id);
        let stage_moved =
            !was.is_some_and(|b| b.stage == after.stage && b.units_shipped == after.units_shipped);
        let previous = was.and_then(BatchProduction::expected_ship_at);
        let date_moved = previous.is_some() && previous != after.expected_ship_at();
        if !stage_moved && !date_moved {
            continue;
        }
        let Some(batch) = tx.batch(&after.batch_id).await? else {
            continue;
        };
        let preorders: Vec<_> = tx
            .batch_preorders(&batch.id)
            .await?
            .iter()
            .filter(|p| {
                p.cancelled_at.is_none()
                    && p.money.forfeited_at.is_none()
                    && p.money.balance_paid_at.is_some()
            })
            .map(|p| crate::events::preorder_ref(p, None))
            .collect();
        if stage_moved {
            let stage = serde_json::to_value(after.stage)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            tx.emit(
                &batch.campaign_id,
                Some(&batch.id),
                now,
                EventData::ProductionStageChanged {
                    batch_seq: batch.seq,
                    stage,
                    units_shipped: after.units_shipped,
                    paid_units: batch.paid_units(),
                    preorders: preorders.clone(),
                },
            );
        }
        if !date_moved {
            continue;
        }
        if let (Some(expected), Some(promised)) = (after.expected_ship_at(), after.due_at) {
            tx.emit(
                &batch.campaign_id,
                Some(&batch.id),
                now,
                EventData::ShipDateChanged {
                    batch_seq: batch.seq,
                    previous,
                    expected,
                    promised,
                    days_late: after.days_late(),
                    planned: after.planned_ship_at.is_some(),
                    shipped: after.shipped_at.is_some(),
                    late_reason: after.why_late(),
                    preorders,
                },
            );
        }
    }
    Ok(())
}

/// How far each batch's production has come, and its ship date (batches that are not
/// locked are left out; a locked batch not yet ready has only its due date).
pub(crate) async fn batch_production<D: Backend>(
    tx: &mut Tx<'_, D>,
    batches: &[BatchId],
) -> Result<Vec<BatchProduction>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for b in batches {
        if !seen.insert(b.clone()) {
            continue;
        }
        let shares = tx.batch_shares(b).await?;
        let waiting = tx.unplanned_units(b).await?;
        let due_at = tx.batch_due_at(b).await?;
        // A locked batch not yet ready (its balance window is open) has no production yet,
        // only its promise.
        let in_production = !(shares.is_empty() && waiting.is_none());
        if !in_production && due_at.is_none() {
            continue;
        }
        let shipped: f64 = shares
            .iter()
            .map(|s| s.units as f64 * s.shipped_fraction)
            .sum();
        let stage = if waiting.is_some() || shares.is_empty() {
            ProductionStage::AwaitingPlan
        } else {
            let slowest = shares
                .iter()
                .map(|s| s.state)
                .min_by_key(|s| s.rank())
                .unwrap_or(WorkOrderState::Issued);
            match slowest {
                WorkOrderState::Issued | WorkOrderState::Rejected | WorkOrderState::Withdrawn => {
                    ProductionStage::Planned
                }
                WorkOrderState::Accepted => ProductionStage::Accepted,
                WorkOrderState::InProduction => ProductionStage::InProduction,
                WorkOrderState::QcPassed | WorkOrderState::QcFailed => {
                    ProductionStage::QualityCheck
                }
                WorkOrderState::Shipped => ProductionStage::Shipped,
            }
        };
        let planned_ship_at = if waiting.is_some() || shares.is_empty() {
            None
        } else {
            shares
                .iter()
                .map(|s| s.ends_at)
                .collect::<Option<Vec<_>>>()
                .and_then(|ends| ends.into_iter().max())
        };
        // The reason given with the last run, whose end is the expected date it names.
        let late_reason = planned_ship_at
            .filter(|at| due_at.is_some_and(|due| *at > due))
            .and_then(|_| {
                shares
                    .iter()
                    .filter(|s| s.late_reason.is_some())
                    .max_by_key(|s| s.ends_at)
                    .and_then(|s| s.late_reason.clone())
            });
        let shipped_at = if stage == ProductionStage::Shipped {
            shares
                .iter()
                .map(|s| s.shipped_at)
                .collect::<Option<Vec<_>>>()
                .and_then(|at| at.into_iter().max())
        } else {
            None
        };
        out.push(BatchProduction {
            batch_id: b.clone(),
            in_production,
            stage,
            units_shipped: shipped.floor() as i64,
            units_awaiting_plan: waiting.unwrap_or(0),
            due_at,
            planned_ship_at,
            late_reason,
            shipped_at,
        });
    }
    Ok(out)
}

/// The share of a work order's units of `sku` that shipped, from its tally.
pub(crate) fn shipped_fraction(tally: &Tally, sku: &str) -> f64 {
    let ordered = tally.ordered.get(sku).copied().unwrap_or(0);
    if ordered <= 0 {
        return 0.0;
    }
    let shipped = tally.shipped.get(sku).copied().unwrap_or(0);
    (shipped as f64 / ordered as f64).min(1.0)
}

/// The JSON stored in `work_order_events.body`.
pub(crate) fn event_body(p: &Progress) -> Result<String> {
    crate::planning::json(p)
}

/// Parses a stored tally (`{}` for work orders that never reported).
pub(crate) fn parse_tally(s: &str) -> Result<Tally> {
    crate::planning::from_json("work order tally", s)
}

/// Factory delivery: work orders by factory sequence, acknowledgements, progress (see the
/// [module docs](self)). Every method is scoped by the factory id it is given.
#[async_trait]
pub trait FactoryStore: Send + Sync + 'static {
    /// Where the factory's delivery stands; `NotFound` for a factory neither in the
    /// catalogue nor with work orders.
    async fn factory_position(&self, factory: &str) -> Result<FactoryPosition>;

    /// The factory's work orders among its feed's next `limit` entries (capped at
    /// [`FEED_PAGE`]) numbered above `after`, in sequence order; withdrawal notices are
    /// left out (a withdrawn work order is in its own place, as
    /// [`c2m_domain::WorkOrderState::Withdrawn`]).
    async fn factory_work_orders(
        &self,
        factory: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WorkOrder>>;

    /// Claims the factory's one stream for a new subscription and answers the claim
    /// (its generation): from the commit on, every older claim, in any process on this store, is
    /// replaced (its pages are [`StreamPage::Replaced`]) and the other processes' readers
    /// are woken to find out. `NotFound` for an unknown factory. See the
    /// [module docs](self).
    async fn claim_factory_stream(&self, factory: &str, now: DateTime<Utc>) -> Result<StreamClaim>;

    /// The next page of the stream holding `claim`: as
    /// [`FactoryStore::factory_work_orders`] while the claim is the factory's newest,
    /// [`StreamPage::Replaced`] once a newer one has committed (read in one snapshot with
    /// the page, so no work order stored after the newer claim is ever in a page of an
    /// older one).
    async fn factory_stream_page(
        &self,
        claim: &StreamClaim,
        after: i64,
        limit: u32,
    ) -> Result<StreamPage>;

    /// Acknowledges the factory's work orders up to `seq`: harmless to repeat or to send
    /// out of order; `OutOfRange` beyond the factory's last work order.
    async fn ack_work_orders(
        &self,
        factory: &str,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<FactoryPosition>;

    /// Applies a progress report to one of the factory's work orders (another factory's
    /// is `NotFound`). A rejection sends the work order's batch units back to the planning
    /// queue with the factory excluded for them, in the same transaction. Idempotent by key.
    async fn report_progress(
        &self,
        req: &ReportProgress,
        now: DateTime<Utc>,
    ) -> Result<WorkOrderStatus>;

    /// How far each batch's production has come; batches not yet locked and ready for
    /// production are left out.
    async fn batch_production(&self, batches: &[BatchId]) -> Result<Vec<BatchProduction>>;
}

#[async_trait]
impl<E: Engine> FactoryStore for E {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn factory_position(&self, factory: &str) -> Result<FactoryPosition> {
        self.read(factory, |tx, factory| Box::pin(known_position(tx, factory)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn factory_work_orders(
        &self,
        factory: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WorkOrder>> {
        let args = (factory, after, limit.clamp(1, FEED_PAGE));
        let feed = self
            .read(&args, |tx, (factory, after, limit)| {
                Box::pin(tx.feed_after(factory, *after, *limit))
            })
            .await?;
        Ok(feed
            .into_iter()
            .filter_map(|e| match e {
                FeedEntry::WorkOrder(wo) => Some(wo),
                FeedEntry::Withdrawn(_) => None,
            })
            .collect())
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn claim_factory_stream(&self, factory: &str, now: DateTime<Utc>) -> Result<StreamClaim> {
        self.alone(factory.to_owned(), now, |tx, c| Box::pin(claim(tx, c)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn factory_stream_page(
        &self,
        claim: &StreamClaim,
        after: i64,
        limit: u32,
    ) -> Result<StreamPage> {
        let args = (claim, after, limit.clamp(1, FEED_PAGE));
        self.read(&args, |tx, (claim, after, limit)| {
            Box::pin(stream_page(tx, claim, *after, *limit))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ack_work_orders(
        &self,
        factory: &str,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<FactoryPosition> {
        self.alone((factory.to_owned(), seq), now, |tx, c| Box::pin(ack(tx, c)))
            .await
    }

    #[tracing::instrument(skip(self, req), fields(work_order = %req.work_order_id), err(level = "debug"))]
    async fn report_progress(
        &self,
        req: &ReportProgress,
        now: DateTime<Utc>,
    ) -> Result<WorkOrderStatus> {
        self.alone(req.clone(), now, |tx, c| Box::pin(report(tx, c)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batch_production(&self, batches: &[BatchId]) -> Result<Vec<BatchProduction>> {
        self.read(batches, |tx, batches| {
            Box::pin(batch_production(tx, batches))
        })
        .await
    }
}
