//! The money side of the pooling operations, written once over a backend's transaction.
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

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::ledger::{self, Account, HoldState, LedgerTxn, TxnKind};
use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, DomainError, Fingerprint, IdempotencyKey,
    Money, Preorder, PreorderId, PreorderStatus,
};

use crate::dialect::micros;
use crate::idempotency::{record, replay};
use crate::payment::PaymentProvider;
use crate::pooling::PoolingTx;
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

/// The ledger's reads and writes inside one transaction.
#[async_trait]
pub(crate) trait LedgerTx: PoolingTx {
    /// Records the price and balance window of a batch that just locked.
    async fn set_batch_price(
        &mut self,
        batch: &BatchId,
        final_unit_price: Money,
        balance_due_by: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    async fn set_balance_paid(
        &mut self,
        preorder: &PreorderId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Marks the pre-order forfeited and takes its units out of its batch's paid units.
    async fn set_forfeited(
        &mut self,
        preorder: &PreorderId,
        batch: &BatchId,
        quantity: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Marks a locked batch ready for planning; corrupt data if it already was.
    async fn set_ready(&mut self, batch: &BatchId, at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn batch(&mut self, id: &BatchId) -> Result<Option<Batch>, StoreError>;

    /// Every pre-order of the batch (cancelled ones included), in placement order.
    async fn batch_preorders(&mut self, batch: &BatchId) -> Result<Vec<Preorder>, StoreError>;

    // Several rows at once, in a few statements whatever their number. A batch that locks
    // or fails moves the money of every pre-order in it while the campaign's lock is held,
    // and every statement then is paid by every order waiting behind the lock: one
    // statement per pre-order and kind made the lock of a 100-unit batch some 300 round
    // trips on PostgreSQL and 500 statements on SQLite. The one-row forms below are these
    // with one row.

    /// Appends the transactions and their postings, in order (their sequence numbers
    /// follow it).
    async fn insert_ledger_txns(
        &mut self,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Moves each pre-order's hold (each named once) from `held` to its state; corrupt
    /// data if one was not held.
    async fn resolve_holds(&mut self, holds: &[(PreorderId, HoldState)]) -> Result<(), StoreError>;

    /// Captures each pre-order's deposit (`held` to `captured`; each pre-order named once)
    /// and records the balance it owes, and `paid_at` when it owes nothing: what a batch's
    /// lock does to each of its pre-orders, in one pass over their rows rather than one
    /// per change (each pass writes a new version of every row and of its index entries).
    /// Corrupt data if a hold was not held or a balance was already recorded.
    async fn capture_holds(
        &mut self,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<(), StoreError>;

    /// Appends the transaction and its postings.
    async fn insert_ledger_txn(
        &mut self,
        campaign: &CampaignId,
        subject: Subject<'_>,
        txn: &LedgerTxn,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.insert_ledger_txns(campaign, &[(subject, txn.clone())], at)
            .await
    }

    /// Moves the pre-order's hold from `held` to `to`; corrupt data if it was not held.
    async fn resolve_hold(
        &mut self,
        preorder: &PreorderId,
        to: HoldState,
    ) -> Result<(), StoreError> {
        self.resolve_holds(&[(preorder.clone(), to)]).await
    }

    /// Writes pre-orders just placed, in order, all in one open batch: each pre-order,
    /// the hold of its deposit (already shown to the provider) and, when given, its
    /// idempotency record; the batch's units become the last one's `batch_units`. Corrupt
    /// data if the batch is not open. This is the whole write of a run of placements
    /// ([`crate::pooling::place_preorders`]); both backends send it as a few multi-row
    /// statements, since a campaign's placements run one after another under its lock and
    /// every statement per order is paid by every order behind it.
    async fn insert_placements(&mut self, placements: &[Placement<'_>]) -> Result<(), StoreError>;
}

/// The writes of one placement, for [`LedgerTx::insert_placements`].
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
/// checking that the run is in one batch (as [`LedgerTx::insert_placements`] requires);
/// `None` for an empty run.
pub(crate) fn one_batch<'a>(
    placements: &[Placement<'a>],
) -> Result<Option<(&'a Preorder, i64)>, StoreError> {
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
    pub operation: &'static str,
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a Fingerprint,
    /// The response, as JSON.
    pub response: &'a str,
}

/// Writes `txn` and shows it to the provider.
async fn post(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    campaign: &CampaignId,
    subject: Subject<'_>,
    txn: LedgerTxn,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    show(provider, &txn)?;
    tx.insert_ledger_txn(campaign, subject, &txn, at).await
}

/// Writes `txns` in order and shows each to the provider (all before any is written).
async fn post_all(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    campaign: &CampaignId,
    txns: &[(Subject<'_>, LedgerTxn)],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (_, txn) in txns {
        show(provider, txn)?;
    }
    tx.insert_ledger_txns(campaign, txns, at).await
}

/// Shows a movement to the payment provider, which may refuse it.
pub(crate) fn show(provider: &dyn PaymentProvider, txn: &LedgerTxn) -> Result<(), StoreError> {
    match txn.kind() {
        TxnKind::Hold => provider.hold(txn)?,
        TxnKind::Release => provider.release(txn)?,
        TxnKind::Capture => provider.capture(txn)?,
        TxnKind::Balance => provider.charge(txn)?,
        TxnKind::Forfeit | TxnKind::Settle => provider.pay_out(txn)?,
    }
    Ok(())
}

/// The hold of a pre-order's deposit (consumer → holds), shown to the provider; the
/// caller writes it with the pre-order ([`LedgerTx::insert_placement`]).
pub(crate) fn hold_deposit(
    provider: &dyn PaymentProvider,
    preorder: &Preorder,
) -> Result<LedgerTxn, StoreError> {
    let txn = LedgerTxn::transfer(
        TxnKind::Hold,
        Account::Consumer(preorder.consumer_id.clone()),
        Account::Holds(preorder.campaign_id.clone()),
        preorder.deposit_total,
    )?;
    show(provider, &txn)?;
    Ok(txn)
}

/// Releases a held deposit in full: holds → consumer.
pub(crate) async fn release_deposit(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    preorder: &mut Preorder,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    preorder.money.hold = preorder.money.hold.release()?;
    tx.resolve_hold(&preorder.id, HoldState::Released).await?;
    let txn = LedgerTxn::transfer(
        TxnKind::Release,
        Account::Holds(preorder.campaign_id.clone()),
        Account::Consumer(preorder.consumer_id.clone()),
        preorder.deposit_total,
    )?;
    post(
        tx,
        provider,
        &preorder.campaign_id,
        Subject::Preorder(&preorder.id),
        txn,
        now,
    )
    .await
}

/// The money side of a batch locking at `units`: fixes the price from the ladder, captures
/// every live deposit (holds → escrow), sets each balance, and, when nothing is left to
/// pay (the price is the deposit), settles the batch and makes it ready at once.
pub(crate) async fn lock_batch_money(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    batch: &BatchId,
    units: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
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
        let txn = LedgerTxn::transfer(
            TxnKind::Capture,
            Account::Holds(campaign.id.clone()),
            Account::Escrow(campaign.id.clone()),
            p.deposit_total,
        )?;
        captures.push((Subject::Preorder(&p.id), txn));
        let due = ledger::balance_due(p.quantity, price, p.deposit_total)?;
        dues.push((p.id.clone(), due, (due.minor == 0).then_some(now)));
    }
    tx.capture_holds(&dues).await?;
    post_all(tx, provider, &campaign.id, &captures, now).await?;
    if nothing_due {
        settle(tx, provider, campaign, batch, now).await?;
    }
    Ok(())
}

/// Pays the paid units of a batch out of escrow to the merchant and marks the batch ready
/// for production planning.
async fn settle(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    campaign: &Campaign,
    batch: &BatchId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
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
        post(tx, provider, &campaign.id, Subject::Batch(batch), txn, now).await?;
    }
    tx.set_ready(batch, now).await
}

fn preorder_not_found(id: &PreorderId) -> StoreError {
    DomainError::NotFound {
        entity: "preorder",
        id: id.as_str().to_owned(),
    }
    .into()
}

/// A consumer naming a pre-order that is not theirs gets `NotFound`, as for cancel.
pub(crate) async fn pay_balance(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    req: &PayBalance,
    now: DateTime<Utc>,
) -> Result<Preorder, StoreError> {
    let now = micros(now);
    let fingerprint = Fingerprint::of(OP_PAY_BALANCE, req);
    if let Some(done) = replay(tx, OP_PAY_BALANCE, &req.idempotency_key, &fingerprint).await? {
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
    tx.lock_campaign(&first.campaign_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("pre-order {} has no campaign", first.id)))?;
    // The key again under the lock: another send of it may have committed while this one
    // waited (payments are not grouped, so even on one replica), and must be replayed
    // rather than refused as a second payment.
    if let Some(done) = replay(tx, OP_PAY_BALANCE, &req.idempotency_key, &fingerprint).await? {
        return Ok(done);
    }
    // Read again under the campaign lock: the window may have closed meanwhile.
    let mut preorder = tx
        .preorder(&req.preorder_id)
        .await?
        .ok_or_else(|| preorder_not_found(&req.preorder_id))?;
    let due = ledger::check_balance_payment(&preorder, req.amount, now)?;
    if due.minor > 0 {
        let txn = LedgerTxn::transfer(
            TxnKind::Balance,
            Account::Consumer(preorder.consumer_id.clone()),
            Account::Escrow(preorder.campaign_id.clone()),
            due,
        )?;
        post(
            tx,
            provider,
            &preorder.campaign_id,
            Subject::Preorder(&preorder.id),
            txn,
            now,
        )
        .await?;
    }
    tx.set_balance_paid(&preorder.id, now).await?;
    preorder.money.balance_paid_at = Some(now);
    record(
        tx,
        OP_PAY_BALANCE,
        &req.idempotency_key,
        &fingerprint,
        &preorder,
        now,
    )
    .await?;
    Ok(preorder)
}

/// Closes a locked batch's balance window if it has passed at `now`: every unpaid balance
/// forfeits its deposit (escrow → merchant) and its units leave the batch; the paid units
/// are settled and the batch becomes ready for planning. Safe to repeat: a batch already
/// ready is left alone.
pub(crate) async fn close_balance_window(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    batch_id: &BatchId,
    now: DateTime<Utc>,
) -> Result<BalanceWindowOutcome, StoreError> {
    let now = micros(now);
    let first = tx.batch(batch_id).await?.ok_or_else(|| {
        StoreError::Domain(DomainError::NotFound {
            entity: "batch",
            id: batch_id.as_str().to_owned(),
        })
    })?;
    let campaign = tx
        .lock_campaign(&first.campaign_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id} has no campaign")))?;
    let batch = tx
        .batch(batch_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id} vanished")))?;
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
        let txn = LedgerTxn::transfer(
            TxnKind::Forfeit,
            Account::Escrow(campaign.id.clone()),
            Account::Merchant(campaign.id.clone()),
            p.deposit_total,
        )?;
        post(
            tx,
            provider,
            &campaign.id,
            Subject::Preorder(&p.id),
            txn,
            now,
        )
        .await?;
        tx.set_forfeited(&p.id, batch_id, p.quantity, now).await?;
        forfeited += 1;
    }
    settle(tx, provider, &campaign, batch_id, now).await?;
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
async fn live_preorders(
    tx: &mut (impl LedgerTx + ?Sized),
    batch: &BatchId,
) -> Result<Vec<Preorder>, StoreError> {
    let mut preorders = tx.batch_preorders(batch).await?;
    preorders.retain(|p| p.cancelled_at.is_none());
    Ok(preorders)
}

/// Releases every hold of a batch that just failed; returns how many.
pub(crate) async fn release_failed_batch(
    tx: &mut (impl LedgerTx + ?Sized),
    provider: &dyn PaymentProvider,
    batch: &BatchId,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let live = live_preorders(tx, batch).await?;
    let mut holds = Vec::with_capacity(live.len());
    let mut releases = Vec::with_capacity(live.len());
    for p in &live {
        holds.push((p.id.clone(), p.money.hold.release()?));
        let txn = LedgerTxn::transfer(
            TxnKind::Release,
            Account::Holds(p.campaign_id.clone()),
            Account::Consumer(p.consumer_id.clone()),
            p.deposit_total,
        )?;
        releases.push((Subject::Preorder(&p.id), txn));
    }
    tx.resolve_holds(&holds).await?;
    if let Some(first) = live.first() {
        post_all(tx, provider, &first.campaign_id, &releases, now).await?;
    }
    Ok(live.len() as i64)
}
