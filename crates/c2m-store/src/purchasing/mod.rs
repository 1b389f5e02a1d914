//! Purchasing: the purchase orders a plan places, their receipts and cancellations, and
//! what they mean for stock.
//!
//! A plan's purchases are stored as purchase orders in the transaction that stores the plan
//! (`crate::planning::store_plan`), one row per supplier, material and order period of the
//! plan (`UNIQUE (plan_id, supplier_id, material_id, order_period)`), so a plan's purchase
//! orders exist exactly once whatever is retried or killed.
//!
//! # Stock
//!
//! `catalogue_materials.on_hand` is free stock: received and not given to a live work
//! order. A purchase order's `allocated` is the part of it that work orders were given;
//! the rest is free once it arrives. So:
//!
//! - receiving `q` grows stock on hand by the free part of what arrives (allocated units
//!   arrive first): `max(0, received' - allocated) - max(0, received - allocated)`;
//! - a cycle sees an open order's free quantity still to arrive,
//!   [`PurchaseOrder::free_to_arrive`], as a receipt in the period it is expected, and may
//!   give it to its own work orders ([`NewPlan::allocations`](crate::NewPlan), checked again
//!   under the planning lock when the plan is stored);
//! - a factory's rejection gives its work order's share back: stock it was given returns to
//!   stock on hand, and its allocation on each purchase order is released (the part already
//!   received becomes free stock, the rest a free receipt for the next cycle);
//! - cancelling an order (only while nothing was received) stops it counting as a receipt.
//!
//! A receipt is refused (`MATERIAL_NOT_IN_CATALOGUE`) when the order's material left the
//! catalogue since the order was placed: the stock it frees would be counted under no
//! material and lost. A material counted in pieces (`c2m_domain::material`) is received
//! in whole numbers, except for the exact rest of an order whose planned quantity was a
//! decimal.
//!
//! # Layout and lock
//!
//! Types, the trait and the shared logic here, the SQL in `sql.rs` (one text for both
//! backends). Every write takes the planning lock (`crate::planning`) first, as plans and
//! rejections do, so stock on hand, allocations and receipts change one at a time; the
//! conformance case is `purchase_orders_are_received_once_and_return_on_rejection`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::{material, BatchId, DomainError, IdempotencyKey, Page, PageRequest, Refusal};

use crate::dialect::{Backend, Tx};
use crate::engine::{Call, Engine};
use crate::idempotency::Keyed;
use crate::Result;
use crate::StoreError;

mod sql;

pub(crate) const OP_RECEIVE: &str = "receive_purchase_order";
pub(crate) const OP_CANCEL: &str = "cancel_purchase_order";

/// Quantities closer than this are equal (material quantities are decimals).
const EPS: f64 = 1e-9;

/// Where a purchase order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseOrderState {
    Open,
    PartlyReceived,
    Received,
    Cancelled,
}

impl PurchaseOrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseOrderState::Open => "open",
            PurchaseOrderState::PartlyReceived => "partly_received",
            PurchaseOrderState::Received => "received",
            PurchaseOrderState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(PurchaseOrderState::Open),
            "partly_received" => Some(PurchaseOrderState::PartlyReceived),
            "received" => Some(PurchaseOrderState::Received),
            "cancelled" => Some(PurchaseOrderState::Cancelled),
            _ => None,
        }
    }

    /// Whether material is still to arrive on it.
    pub fn is_outstanding(self) -> bool {
        matches!(
            self,
            PurchaseOrderState::Open | PurchaseOrderState::PartlyReceived
        )
    }
}

/// A purchase of a plan, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPurchaseOrder {
    /// Minted by the cycle, so its work orders can name it.
    pub id: String,
    pub supplier_id: String,
    pub material_id: String,
    pub quantity: f64,
    /// The price of the tier the quantity reaches, in minor units.
    pub unit_price: f64,
    /// The index of that tier among the offer's price breaks (0 = the first break).
    pub tier: i64,
    pub packs: Option<i64>,
    /// The planning period it is ordered in.
    pub order_period: i64,
    pub ordered_at: DateTime<Utc>,
    /// When the supplier's lead time brings it.
    pub expected_at: DateTime<Utc>,
    /// The batches whose work orders use it.
    pub batches: Vec<BatchId>,
    /// The part of it the plan's work orders use.
    pub allocated: f64,
}

/// A stored purchase order: the purchase as the plan placed it, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseOrder {
    /// The purchase (flattened: a recorded answer reads as it did before it was nested).
    #[serde(flatten)]
    pub order: NewPurchaseOrder,
    pub plan_id: String,
    pub currency: String,
    pub received: f64,
    pub state: PurchaseOrderState,
    pub created_at: DateTime<Utc>,
    pub state_at: DateTime<Utc>,
}

impl PurchaseOrder {
    /// What is still to arrive.
    pub fn outstanding(&self) -> f64 {
        if self.state.is_outstanding() {
            (self.order.quantity - self.received).max(0.0)
        } else {
            0.0
        }
    }

    /// Whether the order is planned rather than due to be placed: open, with its order
    /// date still ahead of `now` (a plan buys in the period that balances price breaks
    /// against holding, which may be weeks after the cycle). Nothing is stored for it: the
    /// order becomes due when the clock reaches `ordered_at`, on every replica alike. A
    /// planned order counts as a receipt for later cycles as an open one does, and may be
    /// received (the supplier delivered early) or cancelled.
    pub fn is_planned(&self, now: DateTime<Utc>) -> bool {
        self.state == PurchaseOrderState::Open && self.order.ordered_at > now
    }

    /// The part still to arrive that no work order was given: a receipt for the next cycle.
    pub fn free_to_arrive(&self) -> f64 {
        if self.state.is_outstanding() {
            (self.order.quantity - self.received.max(self.order.allocated)).max(0.0)
        } else {
            0.0
        }
    }
}

/// Which purchase orders to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurchaseOrderFilter {
    pub supplier_id: Option<String>,
    pub state: Option<PurchaseOrderState>,
    /// Only orders whose order date has come, or is still ahead, at a moment (see
    /// [`PurchaseOrder::is_planned`]).
    pub order_date: Option<OrderDate>,
}

/// Where an order's date stands against a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderDate {
    /// `ordered_at` at or before the moment: due to be placed (or placed).
    Reached(DateTime<Utc>),
    /// `ordered_at` after it: planned.
    Ahead(DateTime<Utc>),
}

/// Receiving material on a purchase order.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivePurchaseOrder {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub purchase_order_id: String,
    pub quantity: f64,
}

/// Cancelling an open purchase order.
#[derive(Debug, Clone, Serialize)]
pub struct CancelPurchaseOrder {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub purchase_order_id: String,
}

pub(crate) fn not_found(id: &str) -> StoreError {
    StoreError::not_found("purchase order", id)
}

/// Stock that becomes free when `received` grows from `before` to `after` on an order with
/// `allocated` given to work orders (allocated units arrive first).
fn freed(allocated: f64, before: f64, after: f64) -> f64 {
    (after - allocated).max(0.0) - (before - allocated).max(0.0)
}

/// Gives a quantity of an earlier order's free quantity still to arrive to a new plan's
/// work orders, and adds their batches to the order's; `STOCK_CHANGED` when it is no longer
/// free (received, cancelled or given away since the scenario was built).
pub(crate) async fn allocate<D: Backend>(
    tx: &mut Tx<'_, D>,
    a: &crate::planning::Allocation,
) -> Result<()> {
    let po = order(tx, &a.purchase_order).await?;
    if po.free_to_arrive() + EPS < a.quantity {
        return Err(DomainError::from(Refusal::StockChanged {
            material: po.order.material_id,
        })
        .into());
    }
    let mut batches = po.order.batches;
    for b in &a.batches {
        if !batches.contains(b) {
            batches.push(b.clone());
        }
    }
    tx.set_allocated(&a.purchase_order, po.order.allocated + a.quantity, &batches)
        .await
}

/// Releases `qty` of an order's allocation (a rejected work order's share): what of it was
/// received already becomes free stock. Returns whether stock on hand changed.
pub(crate) async fn release<D: Backend>(tx: &mut Tx<'_, D>, id: &str, qty: f64) -> Result<bool> {
    let Some(po) = tx.purchase_order(id).await? else {
        return Ok(false);
    };
    let allocated = (po.order.allocated - qty).max(0.0);
    tx.set_allocated(id, allocated, &po.order.batches).await?;
    // Received units beyond the allocation are free; lowering the allocation frees more.
    let back = (po.received - allocated).max(0.0) - (po.received - po.order.allocated).max(0.0);
    if back > EPS {
        tx.return_stock(&po.order.material_id, back).await?;
        return Ok(true);
    }
    Ok(false)
}

/// A change to one purchase order: the one write [`PurchasingStore::change_purchase_order`]
/// makes (both kinds are idempotent by key and take the planning lock, so they share one
/// opening, [`change_order`]). Nothing is written when a change is refused.
#[derive(Debug, Clone)]
pub enum PurchaseOrderChange {
    /// Receives material: stock on hand grows by the part no work order was given. More
    /// than is still to arrive is `OVER_RECEIVED`; a cancelled order is
    /// `PURCHASE_ORDER_CANCELLED`; an order whose material left the catalogue is
    /// `MATERIAL_NOT_IN_CATALOGUE`; a decimal quantity of a material counted in pieces is
    /// `NotWholePieces` (unless it is exactly the rest of the order).
    Receive(ReceivePurchaseOrder),
    /// Cancels an open order (nothing received yet): `PURCHASE_ORDER_NOT_OPEN` otherwise,
    /// `PURCHASE_ORDER_CANCELLED` when it already is (under another key).
    Cancel(CancelPurchaseOrder),
}

/// Changes a purchase order (see [`PurchaseOrderChange`]) and answers it as the change
/// left it. Idempotent by key; see the module docs.
async fn change_order<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<PurchaseOrderChange>,
) -> Result<PurchaseOrder> {
    let (change, now) = (&c.req, c.now);
    let (key, id) = match change {
        PurchaseOrderChange::Receive(r) => (
            Keyed::new(OP_RECEIVE, &r.idempotency_key, r),
            &r.purchase_order_id,
        ),
        PurchaseOrderChange::Cancel(r) => (
            Keyed::new(OP_CANCEL, &r.idempotency_key, r),
            &r.purchase_order_id,
        ),
    };
    // Under the planning lock (a change to an order and a plan that allocates it take
    // turns) the key is looked up again: the same change sent to another replica may have
    // committed while this one waited, and its answer is this one's (not a refusal that
    // nothing is left to receive, or that the order is no longer open).
    let lock = async |tx: &mut Tx<'_, D>| tx.lock_planning().await;
    key.run_locked(tx, now, lock, async |tx, ()| {
        match change {
            PurchaseOrderChange::Receive(req) => receive(tx, req, now).await?,
            PurchaseOrderChange::Cancel(_) => cancel(tx, id, now).await?,
        }
        order(tx, id).await
    })
    .await
}

/// Receives material on a purchase order (under [`change_order`]'s lock).
async fn receive<D: Backend>(
    tx: &mut Tx<'_, D>,
    req: &ReceivePurchaseOrder,
    now: DateTime<Utc>,
) -> Result<()> {
    let id = req.purchase_order_id.as_str();
    if !(req.quantity.is_finite() && req.quantity > 0.0) {
        return Err(DomainError::invalid(
            "quantity",
            format!("must be a positive number, got {}", req.quantity),
        )
        .into());
    }
    let po = order(tx, id).await?;
    match po.state {
        PurchaseOrderState::Cancelled => return Err(cancelled(po)),
        PurchaseOrderState::Received => return Err(over_received(po, "0".into(), req.quantity)),
        _ => {}
    }
    // The material must still be in the catalogue: the free part of the receipt
    // becomes its stock on hand, which a removed material has nowhere to keep (the
    // update would touch no row and the stock would be lost without a word).
    let Some(unit) = tx.material_unit(&po.order.material_id).await? else {
        return Err(DomainError::from(Refusal::MaterialNotInCatalogue {
            purchase_order: po.order.id,
            material: po.order.material_id,
        })
        .into());
    };
    let outstanding = po.outstanding();
    // A material counted in pieces arrives whole. The one exception is the exact rest
    // of the order: a plan may have ordered a decimal quantity (an offer without a pack
    // size), and the order must still be receivable in full.
    // Pieces are counted as the whole number sent, so `received` and the stock stay whole.
    let quantity = if (req.quantity - outstanding).abs() > EPS {
        material::receipt_quantity("quantity", &po.order.material_id, &unit, req.quantity)?
    } else {
        req.quantity
    };
    if quantity > outstanding + EPS {
        return Err(over_received(po, outstanding.to_string(), req.quantity));
    }
    let received = (po.received + quantity).min(po.order.quantity);
    let state = if received + EPS >= po.order.quantity {
        PurchaseOrderState::Received
    } else {
        PurchaseOrderState::PartlyReceived
    };
    tx.record_receipt(id, quantity, received, state, now)
        .await?;
    let free = freed(po.order.allocated, po.received, received);
    if free > EPS {
        tx.return_stock(&po.order.material_id, free).await?;
        tx.bump_catalogue_version(now).await?;
    }
    Ok(())
}

/// Cancels an open purchase order (under [`change_order`]'s lock).
async fn cancel<D: Backend>(tx: &mut Tx<'_, D>, id: &str, now: DateTime<Utc>) -> Result<()> {
    let po = order(tx, id).await?;
    match po.state {
        PurchaseOrderState::Open => {}
        PurchaseOrderState::Cancelled => return Err(cancelled(po)),
        other => {
            return Err(DomainError::from(Refusal::PurchaseOrderNotOpen {
                purchase_order: po.order.id,
                state: other.as_str().to_owned(),
            })
            .into())
        }
    }
    tx.set_purchase_order_state(id, PurchaseOrderState::Cancelled, now)
        .await?;
    Ok(())
}

/// The order, `NotFound` when there is none: what `get_purchase_order` answers, and, as a
/// change left it, the answer recorded for the change's key.
async fn order<D: Backend>(tx: &mut Tx<'_, D>, id: &str) -> Result<PurchaseOrder> {
    tx.purchase_order(id).await?.ok_or_else(|| not_found(id))
}

/// The refusal of a change to an order that was cancelled (under another key).
fn cancelled(po: PurchaseOrder) -> StoreError {
    DomainError::from(Refusal::PurchaseOrderCancelled {
        purchase_order: po.order.id,
    })
    .into()
}

/// The refusal of a receipt of more than is still to arrive.
fn over_received(po: PurchaseOrder, outstanding: String, receiving: f64) -> StoreError {
    DomainError::from(Refusal::OverReceived {
        purchase_order: po.order.id,
        outstanding,
        receiving: receiving.to_string(),
    })
    .into()
}

/// Purchase orders: listing, receiving, cancelling (see the [module docs](self)).
#[async_trait]
pub trait PurchasingStore: Send + Sync + 'static {
    /// Purchase orders, oldest first, filtered by supplier and state.
    async fn list_purchase_orders(
        &self,
        filter: &PurchaseOrderFilter,
        page: PageRequest,
    ) -> Result<Page<PurchaseOrder>>;

    async fn get_purchase_order(&self, id: &str) -> Result<PurchaseOrder>;

    /// Every order with material still to arrive (open or partly received), oldest first.
    async fn outstanding_purchase_orders(&self) -> Result<Vec<PurchaseOrder>>;

    /// Receives material on an order or cancels it (see [`PurchaseOrderChange`]) and
    /// answers the order as the change left it. Idempotent by key; nothing is written
    /// when refused.
    async fn change_purchase_order(
        &self,
        change: &PurchaseOrderChange,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOrder>;
}

#[async_trait]
impl<E: Engine> PurchasingStore for E {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_purchase_orders(
        &self,
        filter: &PurchaseOrderFilter,
        page: PageRequest,
    ) -> Result<Page<PurchaseOrder>> {
        self.read(&(filter.clone(), page), |tx, (filter, page)| {
            Box::pin(tx.purchase_orders(filter, *page))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_purchase_order(&self, id: &str) -> Result<PurchaseOrder> {
        self.read(id, |tx, id| Box::pin(order(tx, id))).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn outstanding_purchase_orders(&self) -> Result<Vec<PurchaseOrder>> {
        self.read(&(), |tx, _| Box::pin(tx.outstanding_purchase_orders()))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn change_purchase_order(
        &self,
        change: &PurchaseOrderChange,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOrder> {
        self.alone(change.clone(), now, |tx, c| Box::pin(change_order(tx, c)))
            .await
    }
}
