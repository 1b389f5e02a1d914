//! The merchant's levers, and what the forecast, the advice and the insights read: written
//! once for both backends.
//!
//! - Types: the requests ([`ExtendDeadline`], [`LowerThreshold`], [`CloseCampaign`],
//!   [`CancelCampaign`]), each a [`Lever`], their answer ([`LeverOutcome`]), what the fill
//!   forecast reads ([`ForecastInput`]) and a campaign's demand ([`Insights`]).
//! - Logic: [`pull`], the one write of every lever (extend, lower, close, cancel), which
//!   [`LeversStore::pull_lever`] runs in the campaign's lane. Whether a lever may be pulled is the domain's
//!   ([`c2m_domain::levers`]); what it does to the open batch reuses the pooling paths (a
//!   batch that meets its threshold locks through [`Tx::end_batch`] and
//!   [`ledger::lock_batch_money`], as a placement locks it; a batch that cannot fails
//!   through [`pooling::fail_batch`], which releases every hold, as the deadline fails
//!   it); a cancelled campaign's locked batches are refunded through the ledger
//!   ([`ledger::refund_locked_batch`]).
//! - SQL: `sql.rs` (one text for both dialects).
//! - Conformance cases: `crate::conformance::levers`.
//!
//! **The lock.** Every lever takes the campaign's lock ([`Tx::lock_campaign`]) before it
//! reads the campaign, its batches or its idempotency key, like every other write on the
//! campaign, so a lever and a placement are ordered: a placement after a lowered threshold
//! sees the new threshold, one after a close is refused. A lever updates the campaign's row,
//! which a group of writes may hold a copy of ([`Tx::hold_campaign`]); the lever drops that
//! copy, so the writes after it in the group read the row again. Each lever is idempotent
//! by its key (scoped by the lever's name), and a refusal writes nothing. A cancel takes
//! the planning lock and the rows of the work orders it may withdraw first, before the
//! campaign's: the order a rejection takes them in (`crate::factory`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::events::{EventData, PreorderRef};
use c2m_domain::forecast::{ArrivalHistory, OpenBatch};
use c2m_domain::{
    levers, Batch, BatchStatus, Campaign, CampaignId, CampaignProgress, IdempotencyKey,
};

use crate::dialect::{micros, Backend, Tx};
use crate::engine::{campaign_not_found, Call, Engine, Lane};
use crate::factory;
use crate::idempotency::Keyed;
use crate::ledger;
use crate::payment::PaymentProvider;
use crate::pooling;
use crate::Result;
use crate::StoreError;

mod sql;

pub use sql::{Insights, SourceCount, Sources, UnitsAt};

pub(crate) const OP_EXTEND_DEADLINE: &str = "extend_deadline";
pub(crate) const OP_LOWER_THRESHOLD: &str = "lower_threshold";
pub(crate) const OP_CLOSE_CAMPAIGN: &str = "close_campaign";
pub(crate) const OP_CANCEL_CAMPAIGN: &str = "cancel_campaign";

/// Move the campaign's deadline to a later moment.
#[derive(Debug, Clone, Serialize)]
pub struct ExtendDeadline {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub campaign_id: CampaignId,
    pub deadline: DateTime<Utc>,
}

/// Lower the campaign's batch threshold (the open batch's with it).
#[derive(Debug, Clone, Serialize)]
pub struct LowerThreshold {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub campaign_id: CampaignId,
    pub batch_threshold: i64,
}

/// Stop selling now.
#[derive(Debug, Clone, Serialize)]
pub struct CloseCampaign {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub campaign_id: CampaignId,
}

/// Cancel the campaign, withdraw the work orders no factory has accepted yet where that
/// leaves no batch made in part, and refund every pre-order not in production.
#[derive(Debug, Clone, Serialize)]
pub struct CancelCampaign {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub campaign_id: CampaignId,
}

/// What a lever did. A retry with the same key gets this as it was first recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeverOutcome {
    /// The campaign as the lever left it.
    pub campaign: Campaign,
    /// The open batch, if the lever locked it (a lowered threshold it meets; a close).
    pub locked_batch: Option<Batch>,
    /// The open batch, if the lever failed it (a close or a cancel short of the threshold).
    pub failed_batch: Option<Batch>,
    /// Pre-orders whose held deposit was released (the failed batch's).
    pub deposits_released: i64,
    /// Pre-orders of locked batches refunded in full (a cancel).
    pub preorders_refunded: i64,
    /// Minor units refunded (captured deposits and paid balances; a cancel).
    pub refunded_minor: i64,
    /// Locked batches a cancel left alone because a live work order makes them.
    pub batches_in_production: i64,
    /// Work orders a cancel withdrew: still issued (no factory had accepted or started
    /// them) and making nothing the cancel leaves (`crate::factory::withdraw_for_cancel`).
    /// Their batches are refunded with the rest. Absent from answers recorded before it.
    #[serde(default)]
    pub work_orders_withdrawn: i64,
}

impl LeverOutcome {
    fn of(campaign: Campaign) -> Self {
        LeverOutcome {
            campaign,
            locked_batch: None,
            failed_batch: None,
            deposits_released: 0,
            preorders_refunded: 0,
            refunded_minor: 0,
            batches_in_production: 0,
            work_orders_withdrawn: 0,
        }
    }
}

/// What the fill forecast of a campaign reads, in one snapshot: the campaign's progress
/// (as `get_campaign` gives it), its arrivals up to `now`, its open batch, and the earlier
/// campaigns of the same sku that have stopped
/// selling (newest first, at most [`EARLIER_CAMPAIGNS`]), each with its whole history. An
/// earlier campaign the merchant cancelled, or that sold for less than
/// [`MIN_PRIOR_SELLING`], is not among them: the one was voided and the other says nothing
/// about a pace over weeks (a test campaign closed seconds after twenty orders made a prior
/// of millions of orders a day).
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastInput {
    /// The campaign and its batches as `get_campaign` reads them, in the forecast's
    /// snapshot: the progress shown beside the forecast is this one, so the two agree on
    /// the open batch and its units under concurrent orders (read apart, the forecast's
    /// units needed could be another batch's). Its `units_committed` is what the total
    /// cap counts: with the cap, how many more can be ordered.
    pub progress: CampaignProgress,
    pub history: ArrivalHistory,
    pub open_batch: Option<OpenBatch>,
    pub earlier: Vec<ArrivalHistory>,
}

/// How many earlier campaigns of the sku the forecast's prior is built from, at most.
pub const EARLIER_CAMPAIGNS: i64 = 20;

/// How long an earlier campaign must have sold to count in the forecast's prior.
pub const MIN_PRIOR_SELLING: chrono::Duration = chrono::Duration::days(1);

/// The levers and the reads built on a campaign's history, implemented once for every
/// backend.
#[async_trait]
pub trait LeversStore: Send + Sync + 'static {
    /// Pulls a lever (see [`Lever`]). Idempotent by key (scoped by the lever); a refusal
    /// writes nothing.
    async fn pull_lever(&self, lever: &Lever, now: DateTime<Utc>) -> Result<LeverOutcome>;

    /// What the fill forecast reads; `NotFound` for an unknown campaign.
    async fn forecast_input(
        &self,
        campaign: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<ForecastInput>;

    /// Who the demand is: units over time, by channel, region and referrer, the top
    /// referrers, and the consumers who came back from earlier campaigns of the sku.
    /// `bucket_secs` is the width of the time buckets; `NotFound` for an unknown campaign.
    async fn insights(&self, campaign: &CampaignId, bucket_secs: i64, top: i64)
        -> Result<Insights>;
}

/// A merchant's lever: the one write every lever is ([`LeversStore::pull_lever`]).
#[derive(Debug, Clone)]
pub enum Lever {
    /// Moves the deadline later. `CAMPAIGN_ENDED` once the campaign stopped selling,
    /// `DEADLINE_NOT_LATER` for a deadline not after the current one.
    Extend(ExtendDeadline),
    /// Lowers the threshold; the open batch locks at once, at the tier its units reach, if
    /// it meets the new one. `CAMPAIGN_ENDED`, `THRESHOLD_NOT_LOWER`.
    Lower(LowerThreshold),
    /// Stops selling now: the open batch locks if it meets its threshold, otherwise fails
    /// and every deposit in it is released. `CAMPAIGN_ENDED` once the campaign stopped
    /// selling.
    Close(CloseCampaign),
    /// Cancels the campaign: stops selling, fails the open batch (deposits released) and
    /// refunds every pre-order of a locked batch that no live work order makes (captured
    /// deposit and paid balance, once each). `CAMPAIGN_ENDED` if it was cancelled before.
    Cancel(CancelCampaign),
}

impl Lever {
    /// The lever's idempotency key: scoped by the lever's name, fingerprinted from its
    /// request.
    fn key(&self) -> Keyed<'_> {
        match self {
            Lever::Extend(r) => Keyed::new(OP_EXTEND_DEADLINE, &r.idempotency_key, r),
            Lever::Lower(r) => Keyed::new(OP_LOWER_THRESHOLD, &r.idempotency_key, r),
            Lever::Close(r) => Keyed::new(OP_CLOSE_CAMPAIGN, &r.idempotency_key, r),
            Lever::Cancel(r) => Keyed::new(OP_CANCEL_CAMPAIGN, &r.idempotency_key, r),
        }
    }

    /// The campaign the lever acts on.
    fn campaign_id(&self) -> &CampaignId {
        match self {
            Lever::Extend(r) => &r.campaign_id,
            Lever::Lower(r) => &r.campaign_id,
            Lever::Close(r) => &r.campaign_id,
            Lever::Cancel(r) => &r.campaign_id,
        }
    }
}

/// Pulls a lever: the answer recorded for its key (looked up before the campaign's lock,
/// and again under it: a send of the key may have committed while this one waited), or
/// else the lever applied to the locked campaign, told to subscribers
/// ([`campaign_changed`], with the refunds of locked batches it gave back, if any) and
/// recorded as the answer to its key.
pub(crate) async fn pull<D: Backend>(tx: &mut Tx<'_, D>, c: &Call<Lever>) -> Result<LeverOutcome> {
    let (lever, now, provider) = (&c.req, c.now, c.provider());
    let key = lever.key();
    let id = lever.campaign_id();
    let lock_campaign = async |tx: &mut Tx<'_, D>| {
        // A cancel may withdraw work orders no factory accepted yet, which changes the
        // planning queue and the stock: the planning lock, then those work orders' rows,
        // come before the campaign's (the order every writer takes them in).
        let withdrawable = match lever {
            Lever::Cancel(_) => {
                tx.lock_planning().await?;
                factory::lock_withdrawable(tx, id).await?
            }
            _ => Vec::new(),
        };
        let campaign = tx.lock_campaign(id).await?;
        Ok((
            campaign.ok_or_else(|| campaign_not_found(id))?,
            withdrawable,
        ))
    };
    key.run_locked(
        tx,
        now,
        lock_campaign,
        async |tx, (mut campaign, withdrawable)| {
            let mut mark = tx.event_mark();
            let (outcome, change, refunds, withdrawn) = match lever {
                Lever::Extend(req) => {
                    let deadline = micros(req.deadline);
                    let at = judged_at(tx, &campaign, now).await?;
                    levers::may_extend_deadline(&campaign, deadline, at)?;
                    tx.set_deadline(&campaign.id, deadline).await?;
                    campaign.terms.deadline = deadline;
                    let outcome = LeverOutcome::of(campaign);
                    (outcome, "deadline_extended", Vec::new(), Vec::new())
                }
                Lever::Lower(req) => {
                    let threshold = req.batch_threshold;
                    let at = judged_at(tx, &campaign, now).await?;
                    levers::may_lower_threshold(&campaign, threshold, at)?;
                    tx.set_threshold(&campaign.id, threshold).await?;
                    campaign.terms.batch_threshold = threshold;
                    let mut outcome = LeverOutcome::of(campaign);
                    if let Some(open) = tx.open_batch(&outcome.campaign.id).await? {
                        if levers::locks_at(open.units, threshold) {
                            lock(tx, provider, &mut outcome, &open, now).await?;
                        }
                    }
                    (outcome, "threshold_lowered", Vec::new(), Vec::new())
                }
                Lever::Close(_) => {
                    levers::may_close(&campaign, judged_at(tx, &campaign, now).await?)?;
                    tx.set_campaign_ended(&campaign.id, "closed_at", now)
                        .await?;
                    campaign.closed_at = Some(now);
                    let mut outcome = LeverOutcome::of(campaign);
                    if let Some(open) = tx.open_batch(&outcome.campaign.id).await? {
                        if levers::locks_at(open.units, open.threshold) {
                            lock(tx, provider, &mut outcome, &open, now).await?;
                        } else {
                            fail(tx, provider, &mut outcome, open, now).await?;
                        }
                    }
                    (outcome, "closed", Vec::new(), Vec::new())
                }
                Lever::Cancel(_) => {
                    levers::may_cancel(&campaign)?;
                    // A balance window that has passed forfeited its unpaid deposits then,
                    // not when the sweeper comes by: close it first, as the sweeper would
                    // have, so the cancel refunds only what was still the consumers'. Its
                    // events come before the cancel's, in the order things happened.
                    close_passed_windows(tx, provider, &campaign, now).await?;
                    mark = tx.event_mark();
                    tx.set_campaign_ended(&campaign.id, "cancelled_at", now)
                        .await?;
                    campaign.cancelled_at = Some(now);
                    let mut outcome = LeverOutcome::of(campaign);
                    if let Some(open) = tx.open_batch(&outcome.campaign.id).await? {
                        fail(tx, provider, &mut outcome, open, now).await?;
                    }
                    let withdrawn =
                        factory::withdraw_for_cancel(tx, &outcome.campaign.id, withdrawable, now)
                            .await?;
                    outcome.work_orders_withdrawn = withdrawn.len() as i64;
                    let refunds = refund_locked_batches(tx, provider, &mut outcome, now).await?;
                    (outcome, "cancelled", refunds, withdrawn)
                }
            };
            campaign_changed(tx, mark, &outcome, change, (refunds, withdrawn), now);
            Ok(outcome)
        },
    )
    .await
}

/// The moment a lever that needs the campaign selling (extend, lower, close) is judged at:
/// its own, unless the deadline's failure of the open batch committed while the lever, sent
/// before the deadline, waited for the campaign's lock (behind the sweeper on this replica's
/// writer, or its row lock held by another replica's). Selling ended with that failure, so
/// the lever is judged at the deadline and refused `CAMPAIGN_ENDED`, as it would be a
/// moment later; a placement that waited so is refused the same way
/// ([`pooling::place_preorders`]). Judged at its own moment, an extension was taken: the
/// campaign showed a later deadline, open, and refused every order (its newest batch had
/// failed). A batch fails only when selling ends (the deadline, a close, a cancel), and a
/// close or cancel ends the campaign itself, so a failed newest batch of a campaign that
/// was neither closed nor cancelled is the deadline's.
async fn judged_at<D: Backend>(
    tx: &mut Tx<'_, D>,
    campaign: &Campaign,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let deadline = campaign.terms.deadline;
    if campaign.ended(now).is_none() && tx.newest_batch_failed(&campaign.id).await? {
        return Ok(deadline);
    }
    Ok(now)
}

/// Closes the balance window of every locked batch of `campaign` whose window has passed
/// at `now` and that the sweeper has not closed yet ([`ledger::close_window_if_passed`]).
async fn close_passed_windows<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    now: DateTime<Utc>,
) -> Result<()> {
    for batch in tx.refundable_batches(&campaign.id).await? {
        ledger::close_window_if_passed(tx, provider, campaign, &batch, now).await?;
    }
    Ok(())
}

/// Refunds in full every locked batch of a cancelled campaign that no live work order
/// makes (those it counts, and leaves alone); the refunds, for its `campaign.changed`.
async fn refund_locked_batches<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    outcome: &mut LeverOutcome,
    now: DateTime<Utc>,
) -> Result<Vec<PreorderRef>> {
    let mut refunds = Vec::new();
    for batch in tx.refundable_batches(&outcome.campaign.id).await? {
        if tx.in_production(&batch.id).await? {
            outcome.batches_in_production += 1;
            continue;
        }
        let done =
            ledger::refund_locked_batch(tx, provider, &outcome.campaign, &batch, now).await?;
        outcome.preorders_refunded += done.preorders;
        outcome.refunded_minor += done.amount;
        refunds.extend(done.refs);
    }
    Ok(refunds)
}

/// Tells subscribers what the lever changed (`campaign.changed`), in the lever's own
/// transaction; a lock or failure it caused has its own event besides, after this one
/// (at `mark`, taken before the lever acted: the cause, then its effects, so a receiver
/// that reads a lock below the threshold it knows has already read the threshold lowered).
/// `refunds` are the refunds of locked batches the change gave back (a cancel), and
/// `withdrawn` the work orders it withdrew from their factories; the open batch's released
/// deposits are in its `batch.failed`.
fn campaign_changed<D: Backend>(
    tx: &mut Tx<'_, D>,
    mark: usize,
    outcome: &LeverOutcome,
    change: &str,
    (refunds, withdrawn): (Vec<PreorderRef>, Vec<String>),
    now: DateTime<Utc>,
) {
    let c = &outcome.campaign;
    tx.emit_at(
        mark,
        &c.id,
        None,
        now,
        EventData::CampaignChanged {
            change: change.to_owned(),
            deadline: Some(c.terms.deadline),
            threshold: Some(c.terms.batch_threshold),
            refunds,
            withdrawn_work_orders: withdrawn,
        },
    );
}

/// Locks the open batch at its units, as a placement that reaches the threshold does: the
/// transition, then the money (price from the ladder, deposits captured, balances due).
async fn lock<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    outcome: &mut LeverOutcome,
    open: &Batch,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.end_batch(&open.id, BatchStatus::Locked, now).await?;
    ledger::lock_batch_money(tx, provider, &outcome.campaign, open, open.units, now).await?;
    let locked = tx.batch(&open.id).await?;
    outcome.locked_batch =
        Some(locked.ok_or_else(|| StoreError::Corrupt(format!("batch {} vanished", open.id)))?);
    Ok(())
}

/// Fails the open batch and releases every hold in it, as the deadline does.
async fn fail<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    outcome: &mut LeverOutcome,
    mut open: Batch,
    now: DateTime<Utc>,
) -> Result<()> {
    outcome.deposits_released = pooling::fail_batch(tx, provider, &mut open, now).await?;
    outcome.failed_batch = Some(open);
    Ok(())
}

#[async_trait]
impl<E: Engine> LeversStore for E {
    /// Every lever is one write, in its campaign's lane (grouped with the campaign's other
    /// writes, under its lock).
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn pull_lever(&self, lever: &Lever, now: DateTime<Utc>) -> Result<LeverOutcome> {
        let lane = Lane::Campaign(lever.campaign_id());
        self.call(lane, lever.clone(), now, |tx, c| Box::pin(pull(tx, c)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn forecast_input(
        &self,
        campaign: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<ForecastInput> {
        self.read(&(campaign.clone(), now), |tx, (campaign, now)| {
            Box::pin(tx.forecast_input(campaign, *now))
        })
        .await?
        .ok_or_else(|| campaign_not_found(campaign))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn insights(
        &self,
        campaign: &CampaignId,
        bucket_secs: i64,
        top: i64,
    ) -> Result<Insights> {
        self.read(&(campaign.clone(), bucket_secs, top), |tx, (c, b, t)| {
            Box::pin(tx.insights(c, *b, *t))
        })
        .await?
        .ok_or_else(|| campaign_not_found(campaign))
    }
}
