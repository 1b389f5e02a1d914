//! The SQL of factory delivery, written once for both backends: the [`FactoryTx`]
//! implementation.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::production::{Progress, Tally, WorkOrderState};
use c2m_domain::BatchId;

use super::{event_body, parse_tally, shipped_fraction, BatchShare, FactoryPosition, FactoryTx};
use crate::dialect::{Backend, Columns, Tx};
use crate::planning::{
    json, work_order, work_order_select, work_order_state, WorkOrder, QUEUED_BATCHES,
    UNPLANNED_UNITS,
};
use crate::StoreError;

/// One of the factory's work orders; PostgreSQL's report writers lock its row, so two
/// reports on one work order take turns (SQLite's one writer does already).
const WORK_ORDER: &str = concat!(work_order_select!(), "WHERE factory_id = $1 AND id = $2");
const WORK_ORDER_FOR_UPDATE: &str = concat!(
    work_order_select!(),
    "WHERE factory_id = $1 AND id = $2 FOR UPDATE"
);

/// A batch's units still waiting for a plan, if it waits at all.
static UNPLANNED: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {UNPLANNED_UNITS} AS n FROM batches b WHERE b.id = $1 AND {QUEUED_BATCHES}")
});

#[async_trait]
impl<D: Backend> FactoryTx for Tx<D> {
    async fn factory_known(&mut self, factory: &str) -> Result<bool, StoreError> {
        let found = D::sql(
            "SELECT CAST(1 AS BIGINT) AS known FROM catalogue_factories WHERE id = $1 \
             UNION ALL SELECT CAST(1 AS BIGINT) FROM work_orders WHERE factory_id = $1 LIMIT 1",
        )
        .bind(factory)
        .fetch_optional(self.conn())
        .await?;
        Ok(found.is_some())
    }

    async fn factory_position(&mut self, factory: &str) -> Result<FactoryPosition, StoreError> {
        let last_seq =
            D::sql("SELECT COALESCE(MAX(seq), 0) AS seq FROM work_orders WHERE factory_id = $1")
                .bind(factory)
                .fetch_one(self.conn())
                .await?
                .int("seq")?;
        let acked_seq = D::sql("SELECT acked_seq FROM factory_cursors WHERE factory_id = $1")
            .bind(factory)
            .fetch_optional(self.conn())
            .await?
            .map(|r| r.int("acked_seq"))
            .transpose()?;
        Ok(FactoryPosition {
            last_seq,
            acked_seq: acked_seq.unwrap_or(0),
        })
    }

    async fn raise_factory_ack(
        &mut self,
        factory: &str,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO factory_cursors (factory_id, acked_seq, updated_at) \
             VALUES ($1, $2, $3) ON CONFLICT (factory_id) DO UPDATE SET \
             acked_seq = CASE WHEN excluded.acked_seq > factory_cursors.acked_seq \
             THEN excluded.acked_seq ELSE factory_cursors.acked_seq END, \
             updated_at = excluded.updated_at",
        )
        .bind(factory)
        .bind(seq)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn work_orders_after(
        &mut self,
        factory: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WorkOrder>, StoreError> {
        D::sql(concat!(
            work_order_select!(),
            "WHERE factory_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(factory)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(work_order)
        .collect()
    }

    async fn factory_work_order(
        &mut self,
        factory: &str,
        id: &str,
    ) -> Result<Option<(WorkOrder, Tally, Option<DateTime<Utc>>)>, StoreError> {
        let Some(r) = D::sql(D::locking(WORK_ORDER, WORK_ORDER_FOR_UPDATE))
            .bind(factory)
            .bind(id)
            .fetch_optional(self.conn())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            work_order(&r)?,
            parse_tally(&r.text("tally")?)?,
            r.ts_opt("state_at")?,
        )))
    }

    async fn set_work_order_state(
        &mut self,
        id: &str,
        state: WorkOrderState,
        tally: &Tally,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        D::sql("UPDATE work_orders SET state = $2, tally = $3, state_at = $4 WHERE id = $1")
            .bind(id)
            .bind(state.as_str())
            .bind(json(tally)?)
            .bind(now)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn insert_work_order_event(
        &mut self,
        wo: &WorkOrder,
        progress: &Progress,
        state: WorkOrderState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO work_order_events (work_order_id, factory_id, kind, state, \
             body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&wo.id)
        .bind(&wo.factory_id)
        .bind(progress.kind())
        .bind(state.as_str())
        .bind(event_body(progress)?)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn release_plan_batch(&mut self, plan: &str, batch: &BatchId) -> Result<(), StoreError> {
        D::sql(
            "UPDATE plan_batches SET active = FALSE WHERE plan_id = $1 AND batch_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             WHERE w.plan_id = $1 AND x.batch_id = $2 AND w.state <> 'rejected')",
        )
        .bind(plan)
        .bind(batch.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn exclude_factory(
        &mut self,
        batch: &BatchId,
        factory: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO batch_factory_exclusions (batch_id, factory_id, reason, \
             created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (batch_id, factory_id) DO NOTHING",
        )
        .bind(batch.as_str())
        .bind(factory)
        .bind(reason)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn return_stock(&mut self, material: &str, quantity: f64) -> Result<(), StoreError> {
        // A material removed from the catalogue since keeps no stock to return to.
        D::sql("UPDATE catalogue_materials SET on_hand = on_hand + $2 WHERE id = $1")
            .bind(material)
            .bind(quantity)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn batch_shares(&mut self, batch: &BatchId) -> Result<Vec<BatchShare>, StoreError> {
        D::sql(
            "SELECT w.state, w.tally, x.sku, x.units FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             WHERE x.batch_id = $1 AND w.state <> 'rejected' ORDER BY w.id",
        )
        .bind(batch.as_str())
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(|r| {
            let tally = parse_tally(&r.text("tally")?)?;
            Ok(BatchShare {
                state: work_order_state(&r.text("state")?)?,
                units: r.int("units")?,
                shipped_fraction: shipped_fraction(&tally, &r.text("sku")?),
            })
        })
        .collect()
    }

    async fn unplanned_units(&mut self, batch: &BatchId) -> Result<Option<i64>, StoreError> {
        D::sql(&UNPLANNED)
            .bind(batch.as_str())
            .fetch_optional(self.conn())
            .await?
            .map(|r| r.int("n"))
            .transpose()
    }
}
