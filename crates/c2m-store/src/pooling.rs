//! The pooling operations, written once over a backend's transaction.
//!
//! Each backend implements [`PoolingTx`] (plain reads and writes, no decisions) for its
//! transaction type and runs these functions inside a transaction that already serialises
//! writers on the campaign: the SQLite store runs them on its one writer connection in a
//! `BEGIN IMMEDIATE` transaction (under group commit, in a savepoint of one); the
//! PostgreSQL store takes the campaign's row lock in [`PoolingTx::lock_campaign`] (under
//! group commit the campaign's writer has taken it once for the whole transaction, and each
//! operation runs in a savepoint of it). The decisions (validate the terms, admit the
//! order, may it be cancelled) are the domain's; this module reads what they need and
//! writes what they say, so the two backends cannot disagree about a rule.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::{
    pooling, Batch, BatchId, BatchStatus, Campaign, CampaignId, ConsumerId, DomainError,
    Fingerprint, PoolState, Preorder, PreorderId, PreorderStatus,
};

use crate::idempotency::{record, replay, response_json, IdempotencyTx};
use crate::ledger::{self, KeyRecord, LedgerTx, Placement};
use crate::payment::PaymentProvider;
use crate::rows::micros;
use crate::{CancelPreorder, CreateCampaign, DeadlineOutcome, PlacePreorder, StoreError};

/// Operation names under which idempotency keys are recorded (and fingerprinted).
pub(crate) const OP_CREATE_CAMPAIGN: &str = "create_campaign";
pub(crate) const OP_PLACE_PREORDER: &str = "place_preorder";
pub(crate) const OP_CANCEL_PREORDER: &str = "cancel_preorder";

/// The reads and writes the pooling operations need, inside one transaction.
#[async_trait]
pub(crate) trait PoolingTx: IdempotencyTx {
    async fn insert_campaign(&mut self, campaign: &Campaign) -> Result<(), StoreError>;

    /// Reads the campaign and holds it against other writers until the transaction ends.
    async fn lock_campaign(&mut self, id: &CampaignId) -> Result<Option<Campaign>, StoreError>;

    async fn open_batch(&mut self, campaign: &CampaignId) -> Result<Option<Batch>, StoreError>;

    /// The campaign's open batch, if any, and the counts the pooling rule needs (units in
    /// open and locked batches; the consumer's units that are not cancelled and not in a
    /// failed batch), read in one statement.
    async fn pool_state(
        &mut self,
        campaign: &CampaignId,
        consumer: &ConsumerId,
    ) -> Result<(Option<Batch>, PoolState), StoreError>;

    /// The sequence number the campaign's next batch gets.
    async fn next_batch_seq(&mut self, campaign: &CampaignId) -> Result<i64, StoreError>;

    /// Inserts an open batch and its 'open' transition.
    async fn insert_batch(&mut self, batch: &Batch) -> Result<(), StoreError>;

    async fn insert_preorder(&mut self, preorder: &Preorder) -> Result<(), StoreError>;

    async fn set_batch_units(&mut self, batch: &BatchId, units: i64) -> Result<(), StoreError>;

    /// Moves an open batch to `status` (locked or failed) at `at` and records the
    /// transition. Fails (as corrupt data) if the batch was not open.
    async fn end_batch(
        &mut self,
        batch: &BatchId,
        status: BatchStatus,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The pre-order with its status derived from its batch.
    async fn preorder(&mut self, id: &PreorderId) -> Result<Option<Preorder>, StoreError>;

    async fn set_cancelled(&mut self, id: &PreorderId, at: DateTime<Utc>)
        -> Result<(), StoreError>;
}

fn campaign_not_found(id: &CampaignId) -> StoreError {
    DomainError::NotFound {
        entity: "campaign",
        id: id.as_str().to_owned(),
    }
    .into()
}

fn preorder_not_found(id: &PreorderId) -> StoreError {
    DomainError::NotFound {
        entity: "preorder",
        id: id.as_str().to_owned(),
    }
    .into()
}

pub(crate) async fn create_campaign(
    tx: &mut (impl PoolingTx + crate::catalogue::CatalogueTx + ?Sized),
    req: &CreateCampaign,
    now: DateTime<Utc>,
) -> Result<Campaign, StoreError> {
    let now = micros(now);
    let fingerprint = Fingerprint::of(OP_CREATE_CAMPAIGN, &req.spec);
    if let Some(done) = replay(tx, OP_CREATE_CAMPAIGN, &req.idempotency_key, &fingerprint).await? {
        return Ok(done);
    }
    let mut terms = req.spec.validate(now)?;
    crate::catalogue::require_product(tx, &terms.sku).await?;
    terms.opens_at = micros(terms.opens_at);
    terms.deadline = micros(terms.deadline);
    let campaign = Campaign {
        id: CampaignId::generate(),
        terms,
        created_at: now,
    };
    tx.insert_campaign(&campaign).await?;
    record(
        tx,
        OP_CREATE_CAMPAIGN,
        &req.idempotency_key,
        &fingerprint,
        &campaign,
        now,
    )
    .await?;
    Ok(campaign)
}

pub(crate) async fn place_preorder(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    req: &PlacePreorder,
    now: DateTime<Utc>,
) -> Result<Preorder, StoreError> {
    let now = micros(now);
    let fingerprint = Fingerprint::of(OP_PLACE_PREORDER, req);
    // The campaign's lock first, then the key: a send of the same key that committed while
    // this one waited for the lock (on another replica) is replayed, rather than taken for
    // a second order that may no longer fit.
    let campaign = tx
        .lock_campaign(&req.campaign_id)
        .await?
        .ok_or_else(|| campaign_not_found(&req.campaign_id))?;
    if let Some(done) = replay(tx, OP_PLACE_PREORDER, &req.idempotency_key, &fingerprint).await? {
        return Ok(done);
    }
    let (open, state) = tx.pool_state(&campaign.id, &req.consumer_id).await?;
    let admission = pooling::admit(&campaign.terms, campaign.status(now), state, req.quantity)?;
    let deposit_total = campaign.terms.deposit.times(req.quantity, "quantity")?;

    let batch = match open {
        Some(b) => b,
        None => {
            let b = Batch {
                id: BatchId::generate(),
                campaign_id: campaign.id.clone(),
                seq: tx.next_batch_seq(&campaign.id).await?,
                status: BatchStatus::Open,
                units: 0,
                threshold: campaign.terms.batch_threshold,
                created_at: now,
                locked_at: None,
                failed_at: None,
                final_unit_price: None,
                balance_due_by: None,
                forfeited_units: 0,
                ready_at: None,
            };
            tx.insert_batch(&b).await?;
            b
        }
    };
    let preorder = Preorder {
        id: PreorderId::generate(),
        campaign_id: campaign.id.clone(),
        consumer_id: req.consumer_id.clone(),
        batch_id: batch.id.clone(),
        batch_seq: batch.seq,
        quantity: req.quantity,
        unit_price: campaign.terms.unit_price,
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
    let hold = ledger::hold_deposit(provider, &preorder)?;
    if !admission.locks {
        // The common case, written at once: the answer is the pre-order as placed.
        let key = KeyRecord {
            operation: OP_PLACE_PREORDER,
            key: &req.idempotency_key,
            fingerprint: &fingerprint,
            response: response_json(OP_PLACE_PREORDER, &preorder)?,
        };
        tx.insert_placement(&Placement {
            preorder: &preorder,
            hold: &hold,
            batch_units: admission.batch_units_after,
            key: Some(key),
        })
        .await?;
        return Ok(preorder);
    }
    tx.insert_placement(&Placement {
        preorder: &preorder,
        hold: &hold,
        batch_units: admission.batch_units_after,
        key: None,
    })
    .await?;
    tx.end_batch(&batch.id, BatchStatus::Locked, now).await?;
    ledger::lock_batch_money(
        tx,
        provider,
        &campaign,
        &batch.id,
        admission.batch_units_after,
        now,
    )
    .await?;
    // Answer with the money as it stands after the lock (captured, balance due).
    let preorder = tx
        .preorder(&preorder.id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("pre-order {} vanished", preorder.id)))?;
    record(
        tx,
        OP_PLACE_PREORDER,
        &req.idempotency_key,
        &fingerprint,
        &preorder,
        now,
    )
    .await?;
    Ok(preorder)
}

/// A consumer naming a pre-order that is not theirs gets `NotFound`, exactly as for an id
/// that does not exist, so ids cannot be probed for other consumers' orders.
pub(crate) async fn cancel_preorder(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    req: &CancelPreorder,
    now: DateTime<Utc>,
) -> Result<Preorder, StoreError> {
    let now = micros(now);
    let fingerprint = Fingerprint::of(OP_CANCEL_PREORDER, req);
    if let Some(done) = replay(tx, OP_CANCEL_PREORDER, &req.idempotency_key, &fingerprint).await? {
        return Ok(done);
    }
    let first = tx
        .preorder(&req.preorder_id)
        .await?
        .ok_or_else(|| preorder_not_found(&req.preorder_id))?;
    if req
        .consumer_id
        .as_ref()
        .is_some_and(|c| *c != first.consumer_id)
    {
        return Err(preorder_not_found(&req.preorder_id));
    }
    let campaign = tx
        .lock_campaign(&first.campaign_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("pre-order {} has no campaign", first.id)))?;
    // The key again under the lock: a send of it may have committed meanwhile (on another
    // replica), and must be replayed rather than refused as a second cancel.
    if let Some(done) = replay(tx, OP_CANCEL_PREORDER, &req.idempotency_key, &fingerprint).await? {
        return Ok(done);
    }
    // Read again under the campaign lock: the batch may have locked or failed meanwhile.
    let mut preorder = tx
        .preorder(&req.preorder_id)
        .await?
        .ok_or_else(|| preorder_not_found(&req.preorder_id))?;
    if preorder.cancelled_at.is_some() {
        return Err(DomainError::precondition("the pre-order is already cancelled").into());
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
    record(
        tx,
        OP_CANCEL_PREORDER,
        &req.idempotency_key,
        &fingerprint,
        &preorder,
        now,
    )
    .await?;
    Ok(preorder)
}

pub(crate) async fn fail_open_batch_at_deadline(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    campaign_id: &CampaignId,
    now: DateTime<Utc>,
) -> Result<DeadlineOutcome, StoreError> {
    let now = micros(now);
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
    tx.end_batch(&batch.id, BatchStatus::Failed, now).await?;
    batch.status = BatchStatus::Failed;
    batch.failed_at = Some(now);
    // Every hold in the batch is released in the same transaction as the failure, so a
    // sweeper that crashes part-way leaves a batch either open and held or failed and
    // released.
    let refunds_due = ledger::release_failed_batch(tx, provider, &batch.id, now).await?;
    Ok(DeadlineOutcome {
        campaign_id: campaign.id,
        failed_batch: Some(batch),
        refunds_due,
    })
}
