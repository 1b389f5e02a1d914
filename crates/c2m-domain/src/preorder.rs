//! Batches and pre-orders as the store keeps them and clients see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::{HoldState, MoneyState};
use crate::{BatchId, CampaignId, ConsumerId, DomainError, Money, PreorderId};

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
    /// When the locked batch was refunded in full because its campaign was cancelled (at
    /// the cancel, or later when the factory making it rejected the work): it is not made.
    /// Its status stays locked: it did lock, and its money is in the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<DateTime<Utc>>,
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

    /// The deposit's hold released in full, never captured (a batch that failed, a
    /// pre-order cancelled while its batch was open, a campaign cancelled before its batch
    /// locked). A captured deposit given back is [`Preorder::refunded`].
    pub fn deposit_released(&self) -> Money {
        self.deposit_if(self.money.hold == HoldState::Released)
    }

    /// What a cancelled campaign gave back once it refunded the pre-order (`refunded_at`):
    /// the captured deposit and the paid balance; zero otherwise. A refunded pre-order read
    /// 0 released and left the consumer's "you were refunded 200.00" to be worked out (QA
    /// 14).
    pub fn refunded(&self) -> Money {
        let currency = self.deposit_total.currency;
        if self.money.refunded_at.is_none() {
            return Money::zero(currency);
        }
        // Both are bounded by the pre-order's price, validated far below i64.
        (self.deposit_captured())
            .checked_add(self.balance_paid())
            .unwrap_or_else(|| Money::new(i64::MAX, currency))
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

/// Where a pre-order's demand came from, when the storefront says: the sales channel, the
/// consumer's region, and the consumer who shared the campaign. Each is optional; an empty
/// source is what every pre-order had before sources existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreorderSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<ConsumerId>,
}

/// The longest channel or region accepted.
pub const MAX_SOURCE_CHARS: usize = 64;

impl PreorderSource {
    pub fn is_empty(&self) -> bool {
        self.channel.is_none() && self.region.is_none() && self.referrer.is_none()
    }

    /// Parses what a request gives (absent or blank means not given): a channel and a region
    /// of at most [`MAX_SOURCE_CHARS`] characters without control characters, a referrer
    /// that is a consumer id and not `consumer` itself. Errors name the field.
    pub fn parse(
        channel: Option<&str>,
        region: Option<&str>,
        referrer: Option<&str>,
        consumer: &ConsumerId,
    ) -> Result<PreorderSource, DomainError> {
        fn label(field: &str, v: Option<&str>) -> Result<Option<String>, DomainError> {
            v.filter(|v| !v.trim().is_empty())
                .map(|v| crate::ids::text(field, v, MAX_SOURCE_CHARS))
                .transpose()
        }
        let referrer = match referrer.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some(r) => Some(ConsumerId::parse(r).map_err(|e| match e {
                DomainError::InvalidArgument { reason, .. } => {
                    DomainError::invalid("referrer", reason)
                }
                other => other,
            })?),
        };
        let source = PreorderSource {
            channel: label("channel", channel)?,
            region: label("region", region)?,
            referrer,
        };
        source.check(consumer)?;
        Ok(source)
    }

    /// The rule a stored source keeps: a consumer does not refer themselves.
    pub fn check(&self, consumer: &ConsumerId) -> Result<(), DomainError> {
        if self.referrer.as_ref() == Some(consumer) {
            return Err(DomainError::invalid(
                "referrer",
                "must not be the consumer who places the pre-order",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn a_source_names_the_bad_field() {
        let me = ConsumerId::parse("con_1").expect("id");
        let field = |e: DomainError| match e {
            DomainError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        };
        let ok = PreorderSource::parse(Some(" app "), Some("SH"), Some("con_2"), &me).expect("ok");
        assert_eq!(ok.channel.as_deref(), Some("app"));
        assert_eq!(ok.referrer.as_ref().map(|r| r.as_str()), Some("con_2"));
        let blank = PreorderSource::parse(Some(""), None, Some("  "), &me).expect("blank");
        assert!(blank.is_empty());
        let own = PreorderSource::parse(None, None, Some("con_1"), &me).expect_err("self");
        assert_eq!(field(own), "referrer");
        let long = "x".repeat(MAX_SOURCE_CHARS + 1);
        let e = PreorderSource::parse(Some(&long), None, None, &me).expect_err("long");
        assert_eq!(field(e), "channel");
        let e = PreorderSource::parse(None, Some("a\nb"), None, &me).expect_err("control");
        assert_eq!(field(e), "region");
        let e = PreorderSource::parse(None, None, Some("a b"), &me).expect_err("bad id");
        assert_eq!(field(e), "referrer");
    }
}
