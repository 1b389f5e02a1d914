//! What consumers and merchants hear about: the events c2m appends, in the same store
//! transaction as the change that causes them (a transactional outbox), and that the
//! event stream and the webhooks deliver.
//!
//! An event carries what a message to the consumer needs (amounts, dates, the pre-orders
//! and consumers concerned), so a shop never has to read back to write one; it names its
//! campaign, and its batch and pre-orders when it has them. The store gives each event a
//! store-wide sequence number when it is written; the sequence is the cursor of the
//! stream and of every webhook endpoint's delivery, and the id (`evt_…`) lets receivers
//! drop duplicates of an at-least-once delivery.
//!
//! The kind names (`preorder.placed`, ...) and the JSON of [`EventData`] are part of the
//! API (`docs/events.md`): fields may be added, never renamed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::EventId;
use crate::{BatchId, CampaignId, ConsumerId, Money, PreorderId};

/// One pre-order an event concerns, with what its consumer is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreorderRef {
    pub preorder_id: PreorderId,
    pub consumer_id: ConsumerId,
    pub quantity: i64,
    /// The amount the event is about for this pre-order: the deposit held or released,
    /// the balance due or paid, the refund; absent when the event moves no money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// What happened, with its numbers. The variant is the event's kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData {
    /// A pre-order was pooled into the open batch; its deposit is held.
    #[serde(rename = "preorder.placed")]
    PreorderPlaced {
        preorder: PreorderRef,
        batch_seq: i64,
        /// Units in the batch with this order, and the threshold it locks at.
        batch_units: i64,
        threshold: i64,
    },
    /// A pooled pre-order was cancelled; its deposit was released in full.
    #[serde(rename = "preorder.cancelled")]
    PreorderCancelled {
        preorder: PreorderRef,
        batch_units: i64,
        threshold: i64,
    },
    /// A batch reached its threshold and locked at its final tier's price. Each pre-order's
    /// `amount` is the balance it owes (0 when the deposit was the full price).
    #[serde(rename = "batch.locked")]
    BatchLocked {
        batch_seq: i64,
        units: i64,
        final_unit_price: Money,
        preorders: Vec<PreorderRef>,
        /// When unpaid balances forfeit their deposits; absent when nothing is due.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance_due_by: Option<DateTime<Utc>>,
        /// The promise: the batch ships by then (its lock plus the campaign's
        /// `ships_within_days`). A later move of the date is a `ship_date.changed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ships_by: Option<DateTime<Utc>>,
    },
    /// A batch missed the campaign's deadline and failed; each pre-order's deposit was
    /// released in full (`amount` is the refund).
    #[serde(rename = "batch.failed")]
    BatchFailed {
        batch_seq: i64,
        units: i64,
        threshold: i64,
        preorders: Vec<PreorderRef>,
    },
    /// A pre-order's balance is due (one event per pre-order that owes one, written with
    /// its batch's lock).
    #[serde(rename = "balance.due")]
    BalanceDue {
        preorder: PreorderRef,
        due_by: DateTime<Utc>,
    },
    /// A balance was paid.
    #[serde(rename = "balance.paid")]
    BalancePaid { preorder: PreorderRef },
    /// A balance was not paid in time: the deposit went to the merchant and the units left
    /// the batch.
    #[serde(rename = "deposit.forfeited")]
    DepositForfeited { preorder: PreorderRef },
    /// A batch's production moved on: planned, accepted, in production, quality check,
    /// shipped (with the units shipped so far).
    #[serde(rename = "production.stage_changed")]
    ProductionStageChanged {
        batch_seq: i64,
        stage: String,
        units_shipped: i64,
        paid_units: i64,
        preorders: Vec<PreorderRef>,
    },
    /// The date a locked batch's units are expected to ship changed: a plan took every unit
    /// (the end of its last run, `planned`), or a factory rejected its work and the units
    /// wait for a new plan (the promise again, not `planned`). Never written when the date
    /// stays the same.
    #[serde(rename = "ship_date.changed")]
    ShipDateChanged {
        batch_seq: i64,
        /// The date consumers were told before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<DateTime<Utc>>,
        expected: DateTime<Utc>,
        promised: DateTime<Utc>,
        /// Days late against the promised day, by UTC date (0 when on time).
        days_late: i64,
        /// Whether `expected` is a plan's (true) or the promise while units wait for one.
        #[serde(default)]
        planned: bool,
        /// Whether every unit has shipped: `expected` is then when the last one did (the
        /// plan's date gives way to what happened). Absent while not shipped.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shipped: bool,
        /// Why the plan ships after the promise, when it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        late_reason: Option<String>,
        /// The pre-orders in the batch (paid, not cancelled or forfeited).
        preorders: Vec<PreorderRef>,
    },
    /// The merchant changed a campaign's terms or ended it (`change` says which:
    /// `deadline_extended`, `threshold_lowered`, `closed`, `cancelled`).
    #[serde(rename = "campaign.changed")]
    CampaignChanged {
        change: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<i64>,
        /// Pre-orders refunded by the change (deposits and paid balances), with the amount.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refunds: Vec<PreorderRef>,
        /// Work orders the change withdrew from their factories (a cancel: work orders no
        /// factory had accepted yet), by id; their batches' pre-orders are among `refunds`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        withdrawn_work_orders: Vec<String>,
    },
    /// A locked batch of a cancelled campaign was refunded after the cancel: the cancel left
    /// it alone because a work order made it, and that factory has since rejected the work,
    /// so nothing makes it any more. Each pre-order got back its captured deposit and paid
    /// balance (`amount`), as the cancel's own refunds.
    #[serde(rename = "batch.refunded")]
    BatchRefunded {
        batch_seq: i64,
        preorders: Vec<PreorderRef>,
    },
}

impl EventData {
    /// Every kind, as the API names them.
    pub const KINDS: [&'static str; 12] = [
        "preorder.placed",
        "preorder.cancelled",
        "batch.locked",
        "batch.failed",
        "balance.due",
        "balance.paid",
        "deposit.forfeited",
        "production.stage_changed",
        "ship_date.changed",
        "campaign.changed",
        "batch.refunded",
        // A webhook endpoint may ask for every kind.
        "*",
    ];

    /// The kind's name (`preorder.placed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::PreorderPlaced { .. } => "preorder.placed",
            EventData::PreorderCancelled { .. } => "preorder.cancelled",
            EventData::BatchLocked { .. } => "batch.locked",
            EventData::BatchFailed { .. } => "batch.failed",
            EventData::BalanceDue { .. } => "balance.due",
            EventData::BalancePaid { .. } => "balance.paid",
            EventData::DepositForfeited { .. } => "deposit.forfeited",
            EventData::ProductionStageChanged { .. } => "production.stage_changed",
            EventData::ShipDateChanged { .. } => "ship_date.changed",
            EventData::CampaignChanged { .. } => "campaign.changed",
            EventData::BatchRefunded { .. } => "batch.refunded",
        }
    }

    /// Whether `name` is a kind an endpoint may subscribe to (`*` for all).
    pub fn is_kind(name: &str) -> bool {
        Self::KINDS.contains(&name)
    }

    /// The list of pre-orders the event carries (`preorders`, or a change's `refunds`), if
    /// it carries a list rather than one pre-order.
    fn list_mut(&mut self) -> Option<&mut Vec<PreorderRef>> {
        match self {
            EventData::BatchLocked { preorders, .. }
            | EventData::BatchFailed { preorders, .. }
            | EventData::ProductionStageChanged { preorders, .. }
            | EventData::ShipDateChanged { preorders, .. }
            | EventData::BatchRefunded { preorders, .. } => Some(preorders),
            EventData::CampaignChanged { refunds, .. } => Some(refunds),
            _ => None,
        }
    }

    /// The same event listing only the pre-orders in `range` of its list (an event too
    /// large for one stream message is sent as such parts). `None` for an event that
    /// carries one pre-order, not a list.
    pub fn with_preorders(&self, range: std::ops::Range<usize>) -> Option<EventData> {
        let mut part = self.clone();
        let list = part.list_mut()?;
        let slice = list.get(range)?.to_vec();
        *list = slice;
        Some(part)
    }

    /// The pre-orders the event concerns.
    pub fn preorders(&self) -> Vec<&PreorderRef> {
        match self {
            EventData::PreorderPlaced { preorder, .. }
            | EventData::PreorderCancelled { preorder, .. }
            | EventData::BalanceDue { preorder, .. }
            | EventData::BalancePaid { preorder }
            | EventData::DepositForfeited { preorder } => vec![preorder],
            EventData::BatchLocked { preorders, .. }
            | EventData::BatchFailed { preorders, .. }
            | EventData::ProductionStageChanged { preorders, .. }
            | EventData::ShipDateChanged { preorders, .. }
            | EventData::BatchRefunded { preorders, .. } => preorders.iter().collect(),
            EventData::CampaignChanged { refunds, .. } => refunds.iter().collect(),
        }
    }
}

/// An event to append: what happened, to which campaign and batch, and when. The store
/// adds the id and the sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub campaign_id: CampaignId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<BatchId>,
    pub occurred_at: DateTime<Utc>,
    pub data: EventData,
}

/// An event as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Store-wide, increasing in commit order within a campaign; the stream's cursor.
    pub seq: i64,
    /// `evt_…`: receivers drop duplicates by it.
    pub id: EventId,
    pub campaign_id: CampaignId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<BatchId>,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub data: EventData,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;

    fn cny(minor: i64) -> Money {
        Money::new(minor, Currency::parse("CNY").unwrap())
    }

    #[test]
    fn an_event_reads_as_the_api_documents_it() {
        let e = Event {
            seq: 7,
            id: EventId::parse("evt_1").unwrap(),
            campaign_id: CampaignId::parse("cmp_1").unwrap(),
            batch_id: None,
            occurred_at: DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            data: EventData::BalancePaid {
                preorder: PreorderRef {
                    preorder_id: PreorderId::parse("po_1").unwrap(),
                    consumer_id: ConsumerId::parse("alice").unwrap(),
                    quantity: 2,
                    amount: Some(cny(63_800)),
                },
            },
        };
        let json: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "balance.paid");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["preorder"]["consumer_id"], "alice");
        assert_eq!(json["preorder"]["amount"]["minor"], 63_800);
        assert!(json.get("batch_id").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn every_kind_is_listed() {
        let kinds = [
            EventData::BalancePaid {
                preorder: PreorderRef {
                    preorder_id: PreorderId::parse("po_1").unwrap(),
                    consumer_id: ConsumerId::parse("a").unwrap(),
                    quantity: 1,
                    amount: None,
                },
            }
            .kind(),
            "campaign.changed",
        ];
        for k in kinds {
            assert!(EventData::is_kind(k), "{k}");
        }
        assert!(!EventData::is_kind("batch.exploded"));
    }
}
