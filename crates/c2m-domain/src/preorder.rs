//! Batches and pre-orders as the store keeps them and clients see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// Units of the pre-orders in the batch that are not cancelled.
    pub units: i64,
    pub threshold: i64,
    pub created_at: DateTime<Utc>,
    pub locked_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
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
    /// The batch failed at the deadline; the deposit is owed back in full.
    RefundDue,
}

impl PreorderStatus {
    /// Derived rather than stored, so it cannot drift from the batch it belongs to.
    pub fn derive(cancelled: bool, batch: BatchStatus) -> Self {
        match (cancelled, batch) {
            (true, _) => PreorderStatus::Cancelled,
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
}
