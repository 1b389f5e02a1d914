//! The ledger: the money side of the pooling operations, written once for both backends.
//!
//! - Types: the domain's ([`c2m_domain::ledger`]: accounts, balanced transactions, hold
//!   states) and the crate root's requests and outcomes ([`crate::PayBalance`],
//!   [`crate::LedgerAudit`], ...); [`Placement`] is a placement's write.
//! - Logic: the movements of a placement, a cancel, a lock, a failure ([`hold_deposit`],
//!   [`release_deposit`], [`lock_batch_money`], [`release_failed_batch`]), and the ledger's
//!   own writes, [`pay_balance`] and [`close_balance_window`].
//! - SQL: `sql.rs` (the statements both backends share, the reads, the rows);
//!   `multirow.rs` ([`LedgerSql`]: the several-row writes in both dialects).
//! - Conformance cases: `crate::conformance::ledger`.
//!
//! **The lock.** The ledger's writes run inside the pooling writes that cause them, or, for
//! a payment and a window's closing, take the campaign's lock themselves
//! ([`Tx::lock_campaign`]) before reading what they change: a campaign's money moves one
//! write at a time, like its pool.
//!
//! Like [`crate::pooling`], these functions make no decisions of their own: the domain says
//! what a movement is ([`c2m_domain::ledger`]), what the price at lock is
//! ([`c2m_domain::pricing`]) and whether a balance payment is acceptable; this module reads
//! what those rules need and writes the ledger transaction together with the state it
//! explains, in the caller's transaction (so under the campaign's lock). Each movement is
//! also shown to the [`PaymentProvider`].
//!
//! Exactly-once is enforced by the database, not by these functions alone: each pre-order
//! has at most one ledger transaction of each kind and capture/release are exclusive
//! (unique index and trigger in `0002_ledger.sql`); a hold's state only moves from `held`
//! (trigger); a batch settles once (unique index) and becomes ready once
//! (`ready_at IS NULL` guard).

use chrono::{DateTime, Utc};

use c2m_domain::ledger::{self, Account, HoldState, LedgerTxn, TxnKind};
use c2m_domain::{
    BatchId, BatchStatus, Campaign, CampaignId, Money, Preorder, PreorderId, PreorderStatus,
};

use c2m_domain::events::{EventData, PreorderRef};
use c2m_domain::Batch;

use crate::dialect::{micros, Backend, Tx};
use crate::engine::Call;
use crate::events::preorder_ref;
use crate::idempotency::Keyed;
use crate::payment::PaymentProvider;
use crate::pooling::lock_preorder;
use crate::Result;
use crate::{BalanceWindowOutcome, PayBalance, StoreError};

mod multirow;
mod sql;

pub(crate) use multirow::LedgerSql;
pub(crate) use sql::{
    batches_past_balance_window, batches_ready_for_planning, campaign_money, ledger_audit,
    list_ledger,
};

pub(crate) const OP_PAY_BALANCE: &str = "pay_balance";

/// What a ledger transaction is about, besides its campaign.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    Preorder(&'a PreorderId),
    Batch(&'a BatchId),
}

impl<'a> Subject<'a> {
    /// The transaction's `preorder_id` and `batch_id` columns.
    fn columns(self) -> (Option<&'a str>, Option<&'a str>) {
        match self {
            Subject::Preorder(p) => (Some(p.as_str()), None),
            Subject::Batch(b) => (None, Some(b.as_str())),
        }
    }
}

/// The writes of one placement, for [`Tx::insert_placements`].
pub(crate) struct Placement<'a> {
    pub preorder: &'a Preorder,
    /// The hold of the pre-order's deposit, at the pre-order's `created_at`.
    pub hold: &'a LedgerTxn,
    /// The open batch's units after this pre-order.
    pub batch_units: i64,
    /// The idempotency record, when the response is known before the write.
    pub key: Option<KeyRecord<'a>>,
}

/// The pre-order that opens a run of placements and the units its batch ends with, after
/// checking that the run is in one batch (as [`Tx::insert_placements`] requires);
/// `None` for an empty run.
pub(crate) fn one_batch<'a>(placements: &[Placement<'a>]) -> Result<Option<(&'a Preorder, i64)>> {
    let (Some(first), Some(last)) = (placements.first(), placements.last()) else {
        return Ok(None);
    };
    let batch = &first.preorder.batch_id;
    if let Some(stray) = placements.iter().find(|p| p.preorder.batch_id != *batch) {
        return Err(StoreError::Corrupt(format!(
            "placements in batches {batch} and {} were written as one run",
            stray.preorder.batch_id
        )));
    }
    Ok(Some((first.preorder, last.batch_units)))
}

/// An idempotency key and the response to record for it.
#[derive(Clone, Copy)]
pub(crate) struct KeyRecord<'a> {
    pub key: &'a Keyed<'a>,
    /// The response, as JSON.
    pub response: &'a str,
}

/// Writes `txns` in order and shows each to the provider (all before any is written).
async fn post<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    campaign: &CampaignId,
    txns: &[(Subject<'_>, LedgerTxn)],
    at: DateTime<Utc>,
) -> Result<()> {
    for (_, txn) in txns {
        show(provider, txn)?;
    }
    tx.insert_ledger_txns(campaign, txns, at).await
}

/// Writes one movement of a pre-order's money and shows it to the provider.
async fn post_movement<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    movement: Movement,
    preorder: &Preorder,
    amount: Money,
    at: DateTime<Utc>,
) -> Result<()> {
    let txn = movement.of(preorder, amount)?;
    let txns = [(Subject::Preorder(&preorder.id), txn)];
    post(tx, provider, &preorder.campaign_id, &txns, at).await
}

/// The movements of one pre-order's money, each between the two accounts it always moves
/// between (a settlement is the batch's, and a refund's source depends on the batch, so
/// those two are built where they happen).
#[derive(Clone, Copy)]
enum Movement {
    /// Consumer → holds: the deposit, at placement.
    Hold,
    /// Holds → consumer: the deposit, at a cancel or a failed batch.
    Release,
    /// Holds → escrow: the deposit, at lock.
    Capture,
    /// Consumer → escrow: the balance, when paid.
    Balance,
    /// Escrow → merchant: the deposit of a balance not paid in its window.
    Forfeit,
}

impl Movement {
    /// The ledger transaction that moves `amount` of `preorder`'s money.
    fn of(self, preorder: &Preorder, amount: Money) -> Result<LedgerTxn> {
        let consumer = Account::Consumer(preorder.consumer_id.clone());
        let holds = || Account::Holds(preorder.campaign_id.clone());
        let escrow = || Account::Escrow(preorder.campaign_id.clone());
        let (kind, from, to) = match self {
            Movement::Hold => (TxnKind::Hold, consumer, holds()),
            Movement::Release => (TxnKind::Release, holds(), consumer),
            Movement::Capture => (TxnKind::Capture, holds(), escrow()),
            Movement::Balance => (TxnKind::Balance, consumer, escrow()),
            Movement::Forfeit => (
                TxnKind::Forfeit,
                escrow(),
                Account::Merchant(preorder.campaign_id.clone()),
            ),
        };
        Ok(LedgerTxn::transfer(kind, from, to, amount)?)
    }
}

/// Shows a movement to the payment provider, which may refuse it.
pub(crate) fn show(provider: &dyn PaymentProvider, txn: &LedgerTxn) -> Result<()> {
    Ok(provider.movement(txn)?)
}

/// The hold of a pre-order's deposit (consumer → holds), shown to the provider; the
/// caller writes it with the pre-order ([`Tx::insert_placements`]).
pub(crate) fn hold_deposit(
    provider: &dyn PaymentProvider,
    preorder: &Preorder,
) -> Result<LedgerTxn> {
    let txn = Movement::Hold.of(preorder, preorder.deposit_total)?;
    show(provider, &txn)?;
    Ok(txn)
}

/// Releases a held deposit in full: holds → consumer.
pub(crate) async fn release_deposit<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    preorder: &mut Preorder,
    now: DateTime<Utc>,
) -> Result<()> {
    preorder.money.hold = preorder.money.hold.release()?;
    tx.resolve_holds(&[(preorder.id.clone(), HoldState::Released)])
        .await?;
    let deposit = preorder.deposit_total;
    post_movement(tx, provider, Movement::Release, preorder, deposit, now).await
}

/// The money side of a batch locking at `units`: fixes the price from the ladder, captures
/// every live deposit (holds → escrow), sets each balance, and, when nothing is left to
/// pay (the price is the deposit), settles the batch and makes it ready at once.
pub(crate) async fn lock_batch_money<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    locked: &Batch,
    units: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let batch = &locked.id;
    let terms = &campaign.terms;
    let price = terms.price_for(units);
    let nothing_due = price == terms.deposit;
    let due_by = match (nothing_due, terms.balance_window()) {
        (false, Some(window)) => Some(micros(now + window)),
        // A balance with no window cannot happen (validation gives one); treat the balance
        // as due until paid rather than forfeiting at once.
        (false, None) => None,
        (true, _) => None,
    };
    tx.set_batch_price(batch, price, due_by).await?;
    let live = live_preorders(tx, batch).await?;
    let mut captures = Vec::with_capacity(live.len());
    let mut dues = Vec::with_capacity(live.len());
    for p in &live {
        p.money.hold.capture()?;
        let txn = Movement::Capture.of(p, p.deposit_total)?;
        captures.push((Subject::Preorder(&p.id), txn));
        let due = ledger::balance_due(p.quantity, price, p.deposit_total)?;
        dues.push((p.id.clone(), due, (due.minor == 0).then_some(now)));
    }
    tx.capture_holds(&dues).await?;
    post(tx, provider, &campaign.id, &captures, now).await?;
    let owed: Vec<PreorderRef> = live
        .iter()
        .zip(&dues)
        .map(|(p, (_, due, _))| preorder_ref(p, Some(*due)))
        .collect();
    tx.emit(
        &campaign.id,
        Some(batch),
        now,
        EventData::BatchLocked {
            batch_seq: locked.seq,
            units,
            final_unit_price: price,
            preorders: owed.clone(),
            balance_due_by: due_by,
            ships_by: Some(terms.due_at(now)),
        },
    );
    if let Some(due_by) = due_by {
        for p in owed
            .into_iter()
            .filter(|p| p.amount.is_some_and(|a| a.minor > 0))
        {
            tx.emit(
                &campaign.id,
                Some(batch),
                now,
                EventData::BalanceDue {
                    preorder: p,
                    due_by,
                },
            );
        }
    }
    if nothing_due {
        settle(tx, provider, campaign, batch, now).await?;
    }
    Ok(())
}

/// Pays the paid units of a batch out of escrow to the merchant and marks the batch ready
/// for production planning.
async fn settle<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    batch: &BatchId,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut total = Money::zero(campaign.terms.unit_price.currency);
    for p in tx.batch_preorders(batch).await? {
        if p.cancelled_at.is_some() || p.money.forfeited_at.is_some() {
            continue;
        }
        if p.money.balance_paid_at.is_none() {
            return Err(StoreError::Corrupt(format!(
                "pre-order {} is unpaid at settlement of batch {batch}",
                p.id
            )));
        }
        let price = p
            .money
            .final_unit_price
            .ok_or_else(|| StoreError::Corrupt(format!("batch {batch} settles without a price")))?;
        total = total
            .checked_add(price.times(p.quantity, "quantity")?)
            .ok_or_else(|| StoreError::Corrupt("settlement overflows".into()))?;
    }
    if total.minor > 0 {
        let txn = LedgerTxn::transfer(
            TxnKind::Settle,
            Account::Escrow(campaign.id.clone()),
            Account::Merchant(campaign.id.clone()),
            total,
        )?;
        post(
            tx,
            provider,
            &campaign.id,
            &[(Subject::Batch(batch), txn)],
            now,
        )
        .await?;
    }
    tx.set_ready(batch, now).await
}

/// A consumer naming a pre-order that is not theirs gets `NotFound`, as for cancel.
pub(crate) async fn pay_balance<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<PayBalance>,
) -> Result<Preorder> {
    let (req, now, provider) = (&c.req, c.now, c.provider());
    let key = Keyed::new(OP_PAY_BALANCE, &req.idempotency_key, req);
    let consumer = req.consumer_id.as_ref();
    let lock = async |tx: &mut Tx<'_, D>| lock_preorder(tx, &req.preorder_id, consumer).await;
    key.run_locked(tx, now, lock, async |tx, (mut preorder, _)| {
        let due = ledger::check_balance_payment(&preorder, req.amount, now)?;
        if due.minor > 0 {
            post_movement(tx, provider, Movement::Balance, &preorder, due, now).await?;
        }
        tx.set_balance_paid(&preorder.id, now).await?;
        preorder.money.balance_paid_at = Some(now);
        tx.emit(
            &preorder.campaign_id,
            Some(&preorder.batch_id),
            now,
            EventData::BalancePaid {
                preorder: preorder_ref(&preorder, Some(due)),
            },
        );
        Ok(preorder)
    })
    .await
}

/// Closes a locked batch's balance window if it has passed at `now`: every unpaid balance
/// forfeits its deposit (escrow → merchant) and its units leave the batch; the paid units
/// are settled and the batch becomes ready for planning. Safe to repeat: a batch already
/// ready is left alone.
pub(crate) async fn close_balance_window<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<BatchId>,
) -> Result<BalanceWindowOutcome> {
    let (batch_id, now, provider) = (&c.req, c.now, c.provider());
    let first = tx
        .batch(batch_id)
        .await?
        .ok_or_else(|| StoreError::not_found("batch", batch_id.as_str()))?;
    let campaign = tx
        .lock_campaign(&first.campaign_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id} has no campaign")))?;
    let batch = tx
        .batch(batch_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id} vanished")))?;
    close_window_if_passed(tx, provider, &campaign, &batch, now).await
}

/// The body of [`close_balance_window`], for a caller that holds the campaign's lock and
/// has read the batch under it: the sweeper, and a cancel, which must find the deposits
/// the window forfeited forfeited whether or not the sweeper has come by yet.
pub(crate) async fn close_window_if_passed<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    batch: &c2m_domain::Batch,
    now: DateTime<Utc>,
) -> Result<BalanceWindowOutcome> {
    let batch_id = &batch.id;
    let nothing = BalanceWindowOutcome {
        batch: None,
        forfeited: 0,
    };
    let due = match (batch.status, batch.ready_at, batch.balance_due_by) {
        (BatchStatus::Locked, None, Some(by)) => by,
        _ => return Ok(nothing),
    };
    if due > now {
        return Ok(nothing);
    }
    let mut forfeited = 0;
    for p in tx.batch_preorders(batch_id).await? {
        if p.status != PreorderStatus::Locked || p.money.balance_paid_at.is_some() {
            continue;
        }
        post_movement(tx, provider, Movement::Forfeit, &p, p.deposit_total, now).await?;
        tx.set_forfeited(&p, now).await?;
        tx.emit(
            &campaign.id,
            Some(batch_id),
            now,
            EventData::DepositForfeited {
                preorder: preorder_ref(&p, Some(p.deposit_total)),
            },
        );
        forfeited += 1;
    }
    settle(tx, provider, campaign, batch_id, now).await?;
    let batch = tx
        .batch(batch_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id} vanished")))?;
    Ok(BalanceWindowOutcome {
        batch: Some(batch),
        forfeited,
    })
}

/// The batch's pre-orders that were not cancelled, in placement order: the ones whose
/// deposits a lock captures or a failure releases.
async fn live_preorders<D: Backend>(tx: &mut Tx<'_, D>, batch: &BatchId) -> Result<Vec<Preorder>> {
    let mut preorders = tx.batch_preorders(batch).await?;
    preorders.retain(|p| p.cancelled_at.is_none());
    Ok(preorders)
}

/// Releases every hold of a batch that just failed; returns the pre-orders refunded, each
/// with its refund.
pub(crate) async fn release_failed_batch<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    batch: &BatchId,
    now: DateTime<Utc>,
) -> Result<Vec<PreorderRef>> {
    let live = live_preorders(tx, batch).await?;
    let mut holds = Vec::with_capacity(live.len());
    let mut releases = Vec::with_capacity(live.len());
    for p in &live {
        holds.push((p.id.clone(), p.money.hold.release()?));
        let txn = Movement::Release.of(p, p.deposit_total)?;
        releases.push((Subject::Preorder(&p.id), txn));
    }
    tx.resolve_holds(&holds).await?;
    if let Some(first) = live.first() {
        post(tx, provider, &first.campaign_id, &releases, now).await?;
    }
    Ok(live
        .iter()
        .map(|p| preorder_ref(p, Some(p.deposit_total)))
        .collect())
}

/// What refunding one locked batch of a cancelled campaign did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refunded {
    /// Pre-orders given their money back.
    pub preorders: i64,
    /// Minor units given back (captured deposits and paid balances).
    pub amount: i64,
    /// Each pre-order refunded, with its refund (for the event).
    pub refs: Vec<PreorderRef>,
}

/// Refunds a locked batch whose campaign was cancelled (the caller holds the campaign's
/// lock and has checked that no live work order makes the batch): every pre-order still in
/// it (not cancelled, not forfeited) gets back its captured deposit and its paid balance in
/// one `refund` movement, from escrow, or from the merchant when the batch had settled
/// (its paid units were paid out at readiness); the pre-orders are marked cancelled and
/// refunded, and the batch refunded, which takes it out of the planning queue and of the
/// balance-window sweep. A forfeited deposit stays forfeited: that consumer did not pay in
/// time. Exactly once per pre-order: the ledger's unique index per pre-order and kind.
pub(crate) async fn refund_locked_batch<D: Backend>(
    tx: &mut Tx<'_, D>,
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    batch: &c2m_domain::Batch,
    now: DateTime<Utc>,
) -> Result<Refunded> {
    let settled = batch.ready_at.is_some();
    let from = if settled {
        Account::Merchant(campaign.id.clone())
    } else {
        Account::Escrow(campaign.id.clone())
    };
    let preorders: Vec<Preorder> = tx
        .batch_preorders(&batch.id)
        .await?
        .into_iter()
        .filter(|p| p.cancelled_at.is_none() && p.money.forfeited_at.is_none())
        .collect();
    let mut refunds = Vec::with_capacity(preorders.len());
    let mut done = Refunded::default();
    for p in &preorders {
        if p.money.hold != HoldState::Captured {
            return Err(StoreError::Corrupt(format!(
                "pre-order {} of locked batch {} has its deposit {}",
                p.id,
                batch.id,
                p.money.hold.as_str()
            )));
        }
        let amount = p
            .deposit_captured()
            .checked_add(p.balance_paid())
            .ok_or_else(|| StoreError::Corrupt("a refund overflows".into()))?;
        let txn = LedgerTxn::transfer(
            TxnKind::Refund,
            from.clone(),
            Account::Consumer(p.consumer_id.clone()),
            amount,
        )?;
        refunds.push((Subject::Preorder(&p.id), txn));
        done.preorders += 1;
        done.amount += amount.minor;
        done.refs.push(preorder_ref(p, Some(amount)));
    }
    if !refunds.is_empty() {
        post(tx, provider, &campaign.id, &refunds, now).await?;
    }
    tx.set_batch_refunded(&batch.id, now).await?;
    Ok(done)
}
