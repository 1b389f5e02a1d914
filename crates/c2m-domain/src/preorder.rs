//! Batches and pre-orders as the store keeps them and clients see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::{HoldState, MoneyState};
use crate::{BatchId, CampaignId, ConsumerId, Money, PreorderId};

/// A batch's life: it is open while it pools, then locks or fails exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Open,
    /// Reached its threshold; its units will be produced.
    Locked,
    /// Missed the campaign deadline; its pre-orders are owed a full refund.
    Failed,
}

impl BatchStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            BatchStatus::Open => "open",
            BatchStatus::Locked => "locked",
            BatchStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(BatchStatus::Open),
            "locked" => Some(BatchStatus::Locked),
            "failed" => Some(BatchStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: BatchId,
    pub campaign_id: CampaignId,
    /// 1 for the campaign's first batch, 2 for the next, ...
    pub seq: i64,
    pub status: BatchStatus,
    /// Units of the pre-orders in the batch that are not cancelled. Frozen when the batch
    /// locks, so it is the units at lock (at least the threshold); units that leave a
    /// locked batch later are counted in `forfeited_units`.
    pub units: i64,
    pub threshold: i64,
    pub created_at: DateTime<Utc>,
    pub locked_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// The unit price every pre-order of the batch pays: the ladder tier reached at lock.
    #[serde(default)]
    pub final_unit_price: Option<Money>,
    /// When the balance window of a locked batch closes; `None` when nothing was left to
    /// pay at lock.
    #[serde(default)]
    pub balance_due_by: Option<DateTime<Utc>>,
    /// Units whose balance was not paid in time and that left the batch.
    #[serde(default)]
    pub forfeited_units: i64,
    /// When the batch became ready for production planning: its balance window closed, or
    /// it locked with nothing left to pay.
    #[serde(default)]
    pub ready_at: Option<DateTime<Utc>>,
}

impl Batch {
    /// Units to produce: those at lock minus those forfeited.
    pub fn paid_units(&self) -> i64 {
        self.units - self.forfeited_units
    }
}

/// A pre-order's status as the consumer sees it: its own cancellation, else its batch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreorderStatus {
    /// In an open batch, waiting for the threshold.
    Pooled,
    /// The batch locked; the units will be made.
    Locked,
    /// Cancelled by the consumer while the batch was open.
    Cancelled,
    /// The batch failed at the deadline; the deposit was released in full.
    RefundDue,
    /// The batch locked but the balance was not paid in time: the deposit went to the
    /// merchant and the units left the batch.
    Forfeited,
}

impl PreorderStatus {
    /// Derived rather than stored, so it cannot drift from the batch it belongs to.
    pub fn derive(cancelled: bool, forfeited: bool, batch: BatchStatus) -> Self {
        match (cancelled, batch) {
            (true, _) => PreorderStatus::Cancelled,
            _ if forfeited => PreorderStatus::Forfeited,
            (false, BatchStatus::Open) => PreorderStatus::Pooled,
            (false, BatchStatus::Locked) => PreorderStatus::Locked,
            (false, BatchStatus::Failed) => PreorderStatus::RefundDue,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preorder {
    pub id: PreorderId,
    pub campaign_id: CampaignId,
    pub consumer_id: ConsumerId,
    pub batch_id: BatchId,
    pub batch_seq: i64,
    pub quantity: i64,
    /// Unit price at the time of placing (the campaign's price).
    pub unit_price: Money,
    /// quantity x deposit per unit.
    pub deposit_total: Money,
    pub status: PreorderStatus,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The money side. Defaulted when reading idempotency records written before the
    /// ledger existed.
    #[serde(default)]
    pub money: PreorderMoney,
}

/// A pre-order's money as stored: the deposit hold and, once the batch locks, the balance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PreorderMoney {
    pub hold: HoldState,
    /// The batch's unit price at lock; `None` before.
    pub final_unit_price: Option<Money>,
    /// `quantity x final_unit_price - deposit_total`, fixed at lock; `None` before.
    pub balance_due: Option<Money>,
    /// When the balance window closes for this pre-order.
    pub balance_due_by: Option<DateTime<Utc>>,
    /// When the balance was paid (also set at lock when the balance is zero).
    pub balance_paid_at: Option<DateTime<Utc>>,
    pub forfeited_at: Option<DateTime<Utc>>,
    /// When a cancelled campaign refunded the captured deposit and the paid balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<DateTime<Utc>>,
}

impl Preorder {
    /// Where the money stands (derived, so it cannot disagree with the stored facts).
    pub fn money_state(&self) -> MoneyState {
        let m = &self.money;
        if m.refunded_at.is_some() {
            return MoneyState::Refunded;
        }
        match m.hold {
            HoldState::Held => MoneyState::DepositHeld,
            HoldState::Released => MoneyState::DepositReleased,
            HoldState::Captured if m.forfeited_at.is_some() => MoneyState::Forfeited,
            HoldState::Captured if m.balance_paid_at.is_some() => MoneyState::Paid,
            HoldState::Captured => MoneyState::BalanceDue,
        }
    }

    fn deposit_if(&self, yes: bool) -> Money {
        if yes {
            self.deposit_total
        } else {
            Money::zero(self.deposit_total.currency)
        }
    }

    /// The deposit currently held (not yet captured or released).
    pub fn deposit_held(&self) -> Money {
        self.deposit_if(self.money.hold == HoldState::Held)
    }

    pub fn deposit_captured(&self) -> Money {
        self.deposit_if(self.money.hold == HoldState::Captured)
    }

    /// The deposit given back in full: what the consumer sees as refunded.
    pub fn deposit_released(&self) -> Money {
        self.deposit_if(self.money.hold == HoldState::Released)
    }

    pub fn deposit_forfeited(&self) -> Money {
        self.deposit_if(self.money.forfeited_at.is_some())
    }

    /// The balance paid (zero until paid).
    pub fn balance_paid(&self) -> Money {
        match (self.money.balance_paid_at, self.money.balance_due) {
            (Some(_), Some(due)) => due,
            _ => Money::zero(self.deposit_total.currency),
        }
    }

    /// The balance still owed: due, not paid, not forfeited.
    pub fn balance_outstanding(&self) -> Money {
        match self.money_state() {
            MoneyState::BalanceDue => self
                .money
                .balance_due
                .unwrap_or(Money::zero(self.deposit_total.currency)),
            _ => Money::zero(self.deposit_total.currency),
        }
    }
}
