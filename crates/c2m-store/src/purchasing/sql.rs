//! The SQL of purchase orders, written once for both backends.

use chrono::{DateTime, Utc};

use c2m_domain::{BatchId, Page, PageRequest};

use super::{NewPurchaseOrder, OrderDate, PurchaseOrder, PurchaseOrderFilter, PurchaseOrderState};
use crate::dialect::{columns, page_limit, Backend, Columns, Tx};
use crate::planning::{from_json, json};
use crate::pooling::paged;
use crate::Result;
use crate::StoreError;

/// The columns [`purchase_order`] reads, for `FROM purchase_orders`.
macro_rules! purchase_order_select {
    () => {
        "SELECT seq, id, plan_id, supplier_id, material_id, quantity, unit_price, tier, packs, \
         currency, order_period, ordered_at, expected_at, batches, allocated, received, state, \
         created_at, state_at FROM purchase_orders "
    };
}

const INSERT: &str = "INSERT INTO purchase_orders (id, plan_id, supplier_id, material_id, \
     quantity, unit_price, tier, packs, currency, order_period, ordered_at, expected_at, \
     batches, allocated, received, state, created_at, state_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 'open', $15, $15)";

impl<D: Backend> Tx<'_, D> {
    pub(crate) async fn insert_purchase_order(
        &mut self,
        plan: &str,
        po: &NewPurchaseOrder,
        currency: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let batches: Vec<&str> = po.batches.iter().map(|b| b.as_str()).collect();
        let params = (
            &po.id,
            plan,
            &po.supplier_id,
            &po.material_id,
            po.quantity,
            po.unit_price,
            po.tier,
            po.packs,
            currency,
            po.order_period,
            crate::dialect::micros(po.ordered_at),
            crate::dialect::micros(po.expected_at),
            json(&batches)?,
            po.allocated,
            now,
        );
        D::query(INSERT, params).run(self).await
    }

    pub(crate) async fn purchase_order(&mut self, id: &str) -> Result<Option<PurchaseOrder>> {
        let sql = concat!(purchase_order_select!(), "WHERE id = $1");
        D::query(sql, (id,)).optional(self, purchase_order).await
    }

    pub(crate) async fn plan_purchase_orders(&mut self, plan: &str) -> Result<Vec<PurchaseOrder>> {
        let sql = concat!(purchase_order_select!(), "WHERE plan_id = $1 ORDER BY seq");
        D::query(sql, (plan,)).all(self, purchase_order).await
    }

    pub(crate) async fn outstanding_purchase_orders(&mut self) -> Result<Vec<PurchaseOrder>> {
        let sql = concat!(
            purchase_order_select!(),
            "WHERE state IN ('open', 'partly_received') ORDER BY expected_at, seq"
        );
        D::query(sql, ()).all(self, purchase_order).await
    }

    pub(crate) async fn purchase_orders(
        &mut self,
        filter: &PurchaseOrderFilter,
        req: PageRequest,
    ) -> Result<Page<PurchaseOrder>> {
        let sql = concat!(
            purchase_order_select!(),
            "WHERE seq > $1 AND ($2 = '' OR supplier_id = $2) AND ($3 = '' OR state = $3) \
             AND ($5 = 0 OR ($5 = 1 AND ordered_at <= $6) OR ($5 = 2 AND ordered_at > $6)) \
             ORDER BY seq LIMIT $4"
        );
        // $5 says which side of $6 the order date must be on (0: either).
        let (side, at) = match filter.order_date {
            None => (0i64, DateTime::<Utc>::UNIX_EPOCH),
            Some(OrderDate::Reached(at)) => (1, at),
            Some(OrderDate::Ahead(at)) => (2, at),
        };
        let params = (
            req.after.unwrap_or(0),
            filter.supplier_id.clone().unwrap_or_default(),
            filter.state.map_or("", |s| s.as_str()),
            page_limit(req.size),
            side,
            at,
        );
        let rows = D::query(sql, params).fetch_all(self).await?;
        paged(&rows, req, purchase_order)
    }

    /// The unit of a material in the catalogue, `None` when it is not (any more) there;
    /// locked to the transaction on PostgreSQL, so a delete of the material waits for a
    /// receipt counting stock under it rather than racing it.
    pub(crate) async fn material_unit(&mut self, material: &str) -> Result<Option<String>> {
        let sql = D::locking(
            "SELECT unit FROM catalogue_materials WHERE id = $1",
            "SELECT unit FROM catalogue_materials WHERE id = $1 FOR UPDATE",
        );
        D::query(sql, (material,))
            .optional(self, |r| r.text("unit"))
            .await
    }

    /// Sets what the order's work orders use, and the batches they make.
    pub(crate) async fn set_allocated(
        &mut self,
        id: &str,
        allocated: f64,
        batches: &[BatchId],
    ) -> Result<()> {
        let batches: Vec<&str> = batches.iter().map(BatchId::as_str).collect();
        let sql = "UPDATE purchase_orders SET allocated = $2, batches = $3 WHERE id = $1";
        D::query(sql, (id, allocated.max(0.0), json(&batches)?))
            .run(self)
            .await
    }

    /// Appends the receipt and sets the order's received total and state.
    pub(crate) async fn record_receipt(
        &mut self,
        id: &str,
        quantity: f64,
        received: f64,
        state: PurchaseOrderState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO purchase_order_receipts (purchase_order_id, quantity, received_at) \
             VALUES ($1, $2, $3)";
        D::query(sql, (id, quantity, now)).execute(self).await?;
        let sql = "UPDATE purchase_orders SET received = $2, state = $3, state_at = $4 \
             WHERE id = $1";
        D::query(sql, (id, received, state.as_str(), now))
            .run(self)
            .await
    }

    pub(crate) async fn set_purchase_order_state(
        &mut self,
        id: &str,
        state: PurchaseOrderState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE purchase_orders SET state = $2, state_at = $3 WHERE id = $1";
        D::query(sql, (id, state.as_str(), now)).run(self).await
    }
}

/// Columns: those of `purchase_order_select!`.
fn purchase_order(r: &impl Columns) -> Result<PurchaseOrder> {
    let state = r.text("state")?;
    let batches: Vec<String> = from_json("purchase order batches", &r.text("batches")?)?;
    let order = columns!(r => NewPurchaseOrder {
        id: text, supplier_id: text, material_id: text, quantity: real, unit_price: real,
        tier: int, packs: int_opt, order_period: int, ordered_at: ts, expected_at: ts,
        allocated: real;
        batches: batches.into_iter().map(BatchId::from_trusted).collect(),
    });
    Ok(columns!(r => PurchaseOrder {
        plan_id: text, currency: text, received: real, created_at: ts, state_at: ts;
        order,
        state: PurchaseOrderState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("purchase order state {state:?}")))?,
    }))
}
