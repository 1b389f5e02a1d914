//! Campaigns and pooling: campaigns, their batches and pre-orders, and the operations that
//! pool pre-orders into batches, written once for both backends.
//!
//! - Types: the requests and outcomes are the crate root's ([`crate::PlacePreorder`], ...),
//!   the domain's values ([`c2m_domain::Campaign`], ...); [`PoolSnapshot`] is what a run of
//!   placements reads.
//! - Logic: [`create_campaign`], [`place_preorders`] (a lone placement is a run of one),
//!   [`cancel_preorder`], [`fail_open_batch_at_deadline`]. The decisions (validate the
//!   terms, admit the order, may it be cancelled) are the domain's
//!   ([`c2m_domain::pooling`]); these functions read what the rules need and write what
//!   they say, so the two backends cannot disagree about a rule.
//! - SQL: `sql.rs` (the statements of [`Tx`] both backends share, the reads, the rows);
//!   [`PoolSql`] (the pool snapshot, in both dialects).
//! - Conformance cases: `crate::conformance` (campaigns, placements, cancels, deadlines,
//!   the concurrency cases).
//!
//! **The lock.** Every write on a campaign holds the campaign's lock from its first
//! statement to its commit, and reads the pool (units per batch and per consumer, the open
//! batch, the idempotency keys) only under it, so the pooling rule is applied to the pool
//! as the previous writer left it: [`Tx::lock_campaign`], a row lock (`FOR UPDATE` on the
//! campaign) on PostgreSQL, SQLite's one write lock on SQLite. A group of writes on one
//! campaign takes it once ([`Tx::hold_campaign`]). A rule that would span campaigns (a
//! consumer's limit across campaigns, say) needs a lock of its own, for example a row per
//! consumer locked `FOR UPDATE` after the campaign's, always in that order so that two
//! writers cannot wait for each other.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use c2m_domain::ledger::LedgerTxn;
use c2m_domain::{
    pooling, Batch, BatchId, BatchStatus, Campaign, CampaignId, ConsumerId, DomainError, PoolState,
    Preorder, PreorderId, PreorderStatus, Refusal,
};

use c2m_domain::events::EventData;

use crate::dialect::{micros, Backend, Dialect, Tx};
use crate::engine::{campaign_not_found, Call};
use crate::events::preorder_ref;
use crate::idempotency::{Keyed, StoredResponse};
use crate::ledger::{self, KeyRecord, Placement};
use crate::payment::PaymentProvider;
use crate::Result;
use crate::{CancelPreorder, CreateCampaign, DeadlineOutcome, PlacePreorder, StoreError};

/// Operation names under which idempotency keys are recorded (and fingerprinted).
pub(crate) const OP_CREATE_CAMPAIGN: &str = "create_campaign";
pub(crate) const OP_PLACE_PREORDER: &str = "place_preorder";
pub(crate) const OP_CANCEL_PREORDER: &str = "cancel_preorder";

mod sql;

pub(crate) use sql::{
    batch, batch_columns, batch_select, batch_transitions, campaign, campaign_columns,
    campaign_exists, campaign_of, campaign_progress, campaign_progress_on, campaign_select,
    campaigns_past_deadline, currency, due, get_preorder, list_batches, list_campaigns,
    list_preorders, paged, preorder, preorder_select,
};

/// The one statement of the pooling SQL whose text differs: the pool snapshot binds its
/// consumers as one list value (a JSON array on SQLite, a `text[]` on PostgreSQL) and
/// gathers their units into one JSON object, with each dialect's own functions.
pub(crate) trait PoolSql: Dialect {
    /// The open batch of campaign `$1` (its columns, all null when there is none), the
    /// units of its open and locked batches (`campaign_units`), and the units each
    /// consumer of the list `$2` holds in it as a JSON object (`consumer_units`; not
    /// cancelled, not forfeited, not in a failed batch).
    const POOL_SNAPSHOT: &'static str;
}

impl PoolSql for Sqlite {
    const POOL_SNAPSHOT: &'static str =
        "SELECT b.id, b.campaign_id, b.seq, b.status, b.units, b.threshold, b.created_at, \
         b.locked_at, b.failed_at, b.final_unit_price, b.balance_due_by, b.forfeited_units, \
         b.ready_at, b.refunded_at, \
         (SELECT COALESCE(SUM(units - forfeited_units), 0) FROM batches \
          WHERE campaign_id = $1 AND status IN ('open', 'locked')) AS campaign_units, \
         (SELECT json_group_object(s.consumer_id, s.units) FROM ( \
             SELECT p.consumer_id, SUM(p.quantity) AS units FROM preorders p \
             JOIN batches pb ON pb.id = p.batch_id \
             WHERE p.campaign_id = $1 \
             AND p.consumer_id IN (SELECT value FROM json_each($2)) \
             AND p.cancelled_at IS NULL AND p.forfeited_at IS NULL \
             AND pb.status <> 'failed' \
             GROUP BY p.consumer_id) AS s) AS consumer_units \
         FROM (SELECT 1) AS one \
         LEFT JOIN batches b ON b.campaign_id = $1 AND b.status = 'open'";
}

impl PoolSql for Postgres {
    const POOL_SNAPSHOT: &'static str =
        "SELECT b.id, b.campaign_id, b.seq, b.status, b.units, b.threshold, b.created_at, \
         b.locked_at, b.failed_at, b.final_unit_price, b.balance_due_by, b.forfeited_units, \
         b.ready_at, b.refunded_at, \
         (SELECT COALESCE(SUM(units - forfeited_units), 0)::BIGINT FROM batches \
          WHERE campaign_id = $1 AND status IN ('open', 'locked')) AS campaign_units, \
         (SELECT COALESCE(json_object_agg(s.consumer_id, s.units), '{}')::text FROM ( \
             SELECT p.consumer_id, SUM(p.quantity)::BIGINT AS units FROM preorders p \
             JOIN batches pb ON pb.id = p.batch_id \
             WHERE p.campaign_id = $1 AND p.consumer_id = ANY($2::text[]) \
             AND p.cancelled_at IS NULL AND p.forfeited_at IS NULL \
             AND pb.status <> 'failed' \
             GROUP BY p.consumer_id) AS s) AS consumer_units \
         FROM (SELECT 1) AS one \
         LEFT JOIN batches b ON b.campaign_id = $1 AND b.status = 'open'";
}

/// The pool of a campaign as [`Tx::pool_snapshot`] reads it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolSnapshot {
    pub open: Option<Batch>,
    pub campaign_units: i64,
    /// Units per consumer id; a consumer asked about and not here holds none.
    pub consumer_units: HashMap<String, i64>,
}

impl PoolSnapshot {
    fn consumer_units(&self, consumer: &ConsumerId) -> i64 {
        self.consumer_units
            .get(consumer.as_str())
            .copied()
            .unwrap_or(0)
    }
}

pub(crate) fn preorder_not_found(id: &PreorderId) -> StoreError {
    StoreError::not_found("preorder", id.as_str())
}

pub(crate) async fn create_campaign<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<CreateCampaign>,
) -> Result<Campaign> {
    let (req, now) = (&c.req, c.now);
    let key = Keyed::new(OP_CREATE_CAMPAIGN, &req.idempotency_key, &req.spec);
    key.run(tx, now, async |tx| {
        let mut terms = req.spec.validate(now)?;
        let currency = terms.unit_price.currency.as_str();
        crate::catalogue::require_product(tx, &terms.sku, currency).await?;
        terms.opens_at = micros(terms.opens_at);
        terms.deadline = micros(terms.deadline);
        let campaign = Campaign {
            id: CampaignId::generate(),
            terms,
            created_at: now,
            closed_at: None,
            cancelled_at: None,
        };
        tx.insert_campaign(&campaign).await?;
        Ok(campaign)
    })
    .await
}

/// One placement of a run ([`place_preorders`]): the request, when it arrived, and the
/// provider its deposit is held with.
#[derive(Clone, Copy)]
pub(crate) struct Placing<'a> {
    pub req: &'a PlacePreorder,
    pub now: DateTime<Utc>,
    pub provider: &'a dyn PaymentProvider,
}

impl Placing<'_> {
    /// A placement as a run of placements takes it.
    pub(crate) fn of(c: &Call<PlacePreorder>) -> Placing<'_> {
        Placing {
            req: &c.req,
            now: c.now,
            provider: c.provider(),
        }
    }
}

/// Places one pre-order: a run of one.
pub(crate) async fn place_preorder<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<PlacePreorder>,
) -> Result<Preorder> {
    place_preorders(tx, &c.req.campaign_id, &[Placing::of(c)])
        .await?
        .pop()
        .unwrap_or_else(|| Err(StoreError::Corrupt("a run of one gave no result".into())))
}

/// Places a run of pre-orders on one campaign, in order, in the caller's transaction, and
/// answers each exactly as if each had run alone in that order: every request sees the
/// orders admitted before it (units, batches, idempotency keys), and a refused one writes
/// nothing and changes no other answer.
///
/// Why a run and not one at a time: a campaign's placements are serialised by its lock, so
/// whatever one costs in round trips to the database is paid by every order queued behind
/// it. Here the run reads what the pooling rule needs once (the campaign, its open batch
/// and units, each consumer's units, every key), admits the orders one after another in
/// memory with the same rule ([`pooling::admit`]), and writes the admitted ones together
/// ([`Tx::insert_placements`]); the cost per order is CPU, not round trips. An order
/// that locks its batch is the exception: the orders before it are written, then the lock
/// moves the batch's money as it always has, and the run goes on with no open batch.
///
/// The outer error means the transaction cannot be trusted (a database error, a refusal
/// part-way through locking a batch): the caller rolls it back, and a writer then runs each
/// request alone, so each still gets its own answer. The inner results are the answers.
pub(crate) async fn place_preorders<D: Backend>(
    tx: &mut Tx<'_, D>,
    campaign_id: &CampaignId,
    run: &[Placing<'_>],
) -> Result<Vec<Result<Preorder>>> {
    if let Some(stray) = run.iter().find(|p| p.req.campaign_id != *campaign_id) {
        return Err(StoreError::Corrupt(format!(
            "a placement on campaign {} was run with campaign {campaign_id}",
            stray.req.campaign_id
        )));
    }
    // The campaign's lock first, then the keys: a send of the same key that committed while
    // this one waited for the lock (on another replica) is replayed, rather than taken for
    // a second order that may no longer fit.
    let Some(campaign) = tx.lock_campaign(campaign_id).await? else {
        return Ok(run
            .iter()
            .map(|_| Err(campaign_not_found(campaign_id)))
            .collect());
    };
    let keys: Vec<&str> = run.iter().map(|p| p.req.idempotency_key.as_str()).collect();
    let recorded = tx.idempotency_get_many(OP_PLACE_PREORDER, &keys).await?;
    let mut consumers: Vec<&ConsumerId> = run.iter().map(|p| &p.req.consumer_id).collect();
    consumers.sort_unstable();
    consumers.dedup();
    let pool = tx.pool_snapshot(&campaign.id, &consumers).await?;
    let mut state = RunState {
        campaign: &campaign,
        pool,
        new_batch: false,
        recorded,
        staged: Vec::new(),
    };
    let mut answers = Vec::with_capacity(run.len());
    for placing in run {
        answers.push(state.place(tx, placing).await?);
    }
    state.flush(tx).await?;
    Ok(answers)
}

/// What a run knows between its orders: the pool as the orders so far left it, and the
/// admitted orders not yet written.
struct RunState<'a> {
    campaign: &'a Campaign,
    pool: PoolSnapshot,
    /// `pool.open` was opened by this run and is not written yet.
    new_batch: bool,
    /// Every key of the run that is recorded, or recorded by an order of the run.
    recorded: HashMap<String, StoredResponse>,
    staged: Vec<Staged<'a>>,
}

/// An admitted order that does not lock its batch, waiting to be written.
struct Staged<'a> {
    key: Keyed<'a>,
    /// Where the demand came from (written beside the pre-order when given).
    source: &'a c2m_domain::PreorderSource,
    preorder: Preorder,
    hold: LedgerTxn,
    /// The open batch's units once this order is in it.
    units_after: i64,
    response: String,
}

impl<'a> RunState<'a> {
    /// Answers one request. `Err` only when the run must be given up.
    async fn place<D: Backend>(
        &mut self,
        tx: &mut Tx<'_, D>,
        placing: &Placing<'a>,
    ) -> Result<Result<Preorder>> {
        let Placing { req, now, provider } = *placing;
        let key = Keyed::new(OP_PLACE_PREORDER, &req.idempotency_key, req);
        match key.replay_stored(self.recorded.get(key.key.as_str())) {
            Ok(Some(done)) => return Ok(Ok(done)),
            Ok(None) => {}
            Err(refused) => return Ok(Err(refused)),
        }
        if let Err(refused) = req.source.check(&req.consumer_id) {
            return Ok(Err(refused.into()));
        }
        let terms = &self.campaign.terms;
        let state = PoolState {
            open_batch_units: self.pool.open.as_ref().map_or(0, |b| b.units),
            campaign_units: self.pool.campaign_units,
            consumer_units: self.pool.consumer_units(&req.consumer_id),
        };
        let admitted = pooling::admit(terms, self.campaign.status(now), state, req.quantity)
            .map_err(|e| match e {
                // Say how it stopped selling: closed, cancelled or past its deadline.
                DomainError::Refused(Refusal::CampaignClosed { .. }) => {
                    DomainError::Refused(self.campaign.closed_refusal(now))
                }
                other => other,
            })
            .map_err(StoreError::from)
            .and_then(|admission| {
                let deposit = terms.deposit.times(req.quantity, "quantity")?;
                Ok((admission, deposit))
            });
        let (admission, deposit_total) = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => return Ok(Err(refused)),
        };
        let (batch, new_batch) = match &self.pool.open {
            Some(open) => (open.clone(), false),
            None => {
                // The sweeper (or a close) may have failed the open batch while this order,
                // sent before the deadline, waited for the campaign's lock: the campaign's
                // selling ended then, so the order is refused rather than opening a batch
                // after the failed one.
                if tx.newest_batch_failed(&self.campaign.id).await? {
                    let closed = self.campaign.closed_refusal(now);
                    return Ok(Err(DomainError::Refused(closed).into()));
                }
                (self.next_batch(tx, now).await?, true)
            }
        };
        let preorder = Preorder {
            id: PreorderId::generate(),
            campaign_id: self.campaign.id.clone(),
            consumer_id: req.consumer_id.clone(),
            batch_id: batch.id.clone(),
            batch_seq: batch.seq,
            quantity: req.quantity,
            unit_price: terms.unit_price,
            deposit_total,
            status: if admission.locks {
                PreorderStatus::Locked
            } else {
                PreorderStatus::Pooled
            },
            created_at: now,
            cancelled_at: None,
            money: Default::default(),
        };
        let hold = match ledger::hold_deposit(provider, &preorder) {
            Ok(hold) => hold,
            // Nothing is written, not even a batch this order would have opened.
            Err(refused) => return Ok(Err(refused)),
        };
        if new_batch {
            self.pool.open = Some(batch.clone());
            self.new_batch = true;
        }
        let units_after = admission.batch_units_after;
        if !admission.locks {
            // The common case: the answer is the pre-order as placed, written with the run.
            let response = key.response_json(&preorder)?;
            self.recorded
                .insert(key.key.as_str().to_owned(), key.stored(response.clone()));
            self.admitted(req, units_after);
            self.staged.push(Staged {
                key,
                source: &req.source,
                preorder: preorder.clone(),
                hold,
                units_after,
                response,
            });
            return Ok(Ok(preorder));
        }
        // The batch locks with this order: what came before it is written first, then the
        // order, the lock and its money.
        self.flush(tx).await?;
        tx.insert_placements(&[Placement {
            preorder: &preorder,
            hold: &hold,
            batch_units: units_after,
            key: None,
        }])
        .await?;
        placed_event(tx, &preorder, units_after, self.campaign);
        tx.insert_source(&preorder, &req.source).await?;
        tx.end_batch(&batch.id, BatchStatus::Locked, now).await?;
        ledger::lock_batch_money(tx, provider, self.campaign, &batch, units_after, now).await?;
        self.admitted(req, units_after);
        self.pool.open = None;
        // Answer with the money as it stands after the lock (captured, balance due).
        let preorder = tx
            .preorder(&preorder.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("pre-order {} vanished", preorder.id)))?;
        let response = key.response_json(&preorder)?;
        tx.idempotency_put(&key, &response, now).await?;
        self.recorded
            .insert(key.key.as_str().to_owned(), key.stored(response));
        Ok(Ok(preorder))
    }

    /// Counts an admitted order in the pool.
    fn admitted(&mut self, req: &PlacePreorder, units_after: i64) {
        if let Some(open) = self.pool.open.as_mut() {
            open.units = units_after;
        }
        self.pool.campaign_units += req.quantity;
        *self
            .pool
            .consumer_units
            .entry(req.consumer_id.as_str().to_owned())
            .or_default() += req.quantity;
    }

    /// The batch the next admitted order opens, in memory: it is written with that order.
    async fn next_batch<D: Backend>(
        &self,
        tx: &mut Tx<'_, D>,
        now: DateTime<Utc>,
    ) -> Result<Batch> {
        Ok(Batch {
            id: BatchId::generate(),
            campaign_id: self.campaign.id.clone(),
            seq: tx.next_batch_seq(&self.campaign.id).await?,
            status: BatchStatus::Open,
            units: 0,
            threshold: self.campaign.terms.batch_threshold,
            created_at: now,
            locked_at: None,
            failed_at: None,
            final_unit_price: None,
            balance_due_by: None,
            forfeited_units: 0,
            ready_at: None,
            refunded_at: None,
        })
    }

    /// Writes the batch this run opened, if not yet written, and the staged orders.
    async fn flush<D: Backend>(&mut self, tx: &mut Tx<'_, D>) -> Result<()> {
        if self.new_batch {
            if let Some(open) = &self.pool.open {
                let mut empty = open.clone();
                empty.units = 0;
                tx.insert_batch(&empty).await?;
            }
            self.new_batch = false;
        }
        if self.staged.is_empty() {
            return Ok(());
        }
        let placements: Vec<Placement<'_>> = self
            .staged
            .iter()
            .map(|s| Placement {
                preorder: &s.preorder,
                hold: &s.hold,
                batch_units: s.units_after,
                key: Some(KeyRecord {
                    key: &s.key,
                    response: &s.response,
                }),
            })
            .collect();
        tx.insert_placements(&placements).await?;
        for s in &self.staged {
            placed_event(tx, &s.preorder, s.units_after, self.campaign);
            tx.insert_source(&s.preorder, s.source).await?;
        }
        self.staged.clear();
        Ok(())
    }
}

/// `preorder.placed`: the order is in its batch, which holds `units` of the campaign's
/// threshold.
fn placed_event<D: Backend>(
    tx: &mut Tx<'_, D>,
    preorder: &Preorder,
    units: i64,
    campaign: &Campaign,
) {
    tx.emit(
        &preorder.campaign_id,
        Some(&preorder.batch_id),
        preorder.created_at,
        EventData::PreorderPlaced {
            preorder: preorder_ref(preorder, Some(preorder.deposit_total)),
            batch_seq: preorder.batch_seq,
            batch_units: units,
            threshold: campaign.terms.batch_threshold,
        },
    );
}

/// The pre-order a request names and its campaign, whose lock it takes: the lock of a
/// cancel or a payment ([`Keyed::run_locked`]). The pre-order is read again once the lock
/// is held (a batch may have locked or failed, a window closed, meanwhile). A consumer
/// naming a pre-order that is not theirs gets `NotFound`, exactly as for an id that does
/// not exist, so ids cannot be probed for other consumers' orders.
pub(crate) async fn lock_preorder<D: Backend>(
    tx: &mut Tx<'_, D>,
    id: &PreorderId,
    consumer: Option<&ConsumerId>,
) -> Result<(Preorder, Campaign)> {
    let first = named(tx.preorder(id).await?, id)?;
    if consumer.is_some_and(|c| *c != first.consumer_id) {
        return Err(preorder_not_found(id));
    }
    let campaign = tx.lock_campaign(&first.campaign_id).await?;
    let campaign = campaign
        .ok_or_else(|| StoreError::Corrupt(format!("pre-order {} has no campaign", first.id)))?;
    let preorder = named(tx.preorder(id).await?, id)?;
    Ok((preorder, campaign))
}

/// The pre-order read, or `NotFound` for the id asked for.
fn named(preorder: Option<Preorder>, id: &PreorderId) -> Result<Preorder> {
    preorder.ok_or_else(|| preorder_not_found(id))
}

pub(crate) async fn cancel_preorder<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<CancelPreorder>,
) -> Result<Preorder> {
    let (req, now, provider) = (&c.req, c.now, c.provider());
    let key = Keyed::new(OP_CANCEL_PREORDER, &req.idempotency_key, req);
    let consumer = req.consumer_id.as_ref();
    let lock = async |tx: &mut Tx<'_, D>| lock_preorder(tx, &req.preorder_id, consumer).await;
    key.run_locked(tx, now, lock, async |tx, (mut preorder, campaign)| {
        if preorder.cancelled_at.is_some() {
            return Err(DomainError::from(c2m_domain::Refusal::AlreadyCancelled).into());
        }
        let batch = tx.open_batch(&campaign.id).await?;
        let batch_open = preorder.status == PreorderStatus::Pooled;
        pooling::may_cancel(batch_open, campaign.terms.deadline, now)?;
        let batch = batch.filter(|b| b.id == preorder.batch_id).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "pre-order {} is pooled but its batch is not the campaign's open batch",
                preorder.id
            ))
        })?;
        let units = batch.units - preorder.quantity;
        if units < 0 {
            return Err(StoreError::Corrupt(format!(
                "batch {} would hold {units} units",
                batch.id
            )));
        }
        tx.set_cancelled(&preorder.id, now).await?;
        tx.set_batch_units(&batch.id, units).await?;
        ledger::release_deposit(tx, provider, &mut preorder, now).await?;
        preorder.cancelled_at = Some(now);
        preorder.status = PreorderStatus::Cancelled;
        tx.emit(
            &campaign.id,
            Some(&batch.id),
            now,
            EventData::PreorderCancelled {
                preorder: preorder_ref(&preorder, Some(preorder.deposit_total)),
                batch_units: units,
                threshold: batch.threshold,
            },
        );
        Ok(preorder)
    })
    .await
}

pub(crate) async fn fail_open_batch_at_deadline<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<CampaignId>,
) -> Result<DeadlineOutcome> {
    let (campaign_id, now, provider) = (&c.req, c.now, c.provider());
    let campaign = tx
        .lock_campaign(campaign_id)
        .await?
        .ok_or_else(|| campaign_not_found(campaign_id))?;
    let nothing = DeadlineOutcome {
        campaign_id: campaign.id.clone(),
        failed_batch: None,
        refunds_due: 0,
    };
    if campaign.terms.deadline > now {
        return Ok(nothing);
    }
    let Some(mut batch) = tx.open_batch(&campaign.id).await? else {
        return Ok(nothing);
    };
    let refunds_due = fail_batch(tx, provider, &mut batch, now).await?;
    Ok(DeadlineOutcome {
        campaign_id: campaign.id,
        failed_batch: Some(batch),
        refunds_due,
    })
}

/// Fails an open batch and releases every hold in it, telling subscribers
/// (`batch.failed`); the number of deposits released. The deadline and a merchant's close
/// or cancel fail a batch this one way. The holds are released in the same transaction as
/// the failure, so a sweeper that crashes part-way leaves a batch either open and held or
/// failed and released.
pub(crate) async fn fail_batch<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    batch: &mut Batch,
    now: DateTime<Utc>,
) -> Result<i64> {
    tx.end_batch(&batch.id, BatchStatus::Failed, now).await?;
    batch.status = BatchStatus::Failed;
    batch.failed_at = Some(now);
    let refunds = ledger::release_failed_batch(tx, provider, &batch.id, now).await?;
    let released = refunds.len() as i64;
    tx.emit(
        &batch.campaign_id,
        Some(&batch.id),
        now,
        EventData::BatchFailed {
            batch_seq: batch.seq,
            units: batch.units,
            threshold: batch.threshold,
            preorders: refunds,
        },
    );
    Ok(released)
}
