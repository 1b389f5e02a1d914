//! The SQL of factory delivery, written once for both backends.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use c2m_domain::production::{Progress, Tally, Transition, WorkOrderState};
use c2m_domain::{BatchId, CampaignId};

use super::{event_body, parse_tally, shipped_fraction, BatchShare, FactoryPosition, FeedEntry};
use crate::dialect::{Backend, Columns, Tx};
use crate::planning::{
    from_json, json, work_order, work_order_columns, work_order_select, work_order_state,
    WorkOrder, WorkOrderBody, QUEUED_BATCHES, UNPLANNED_UNITS,
};
use crate::Result;
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

/// The factory tables. Every read and write is scoped by the factory id it is given.
impl<D: Backend> Tx<'_, D> {
    /// Whether the factory exists: in the catalogue, or with work orders from earlier.
    pub(crate) async fn factory_known(&mut self, factory: &str) -> Result<bool> {
        let sql = "SELECT CAST(1 AS BIGINT) AS known FROM catalogue_factories WHERE id = $1 \
             UNION ALL SELECT CAST(1 AS BIGINT) FROM work_orders WHERE factory_id = $1 LIMIT 1";
        Ok(D::query(sql, (factory,))
            .fetch_optional(self)
            .await?
            .is_some())
    }

    pub(crate) async fn factory_position(&mut self, factory: &str) -> Result<FactoryPosition> {
        let last_seq = self.last_factory_seq(factory).await?;
        let sql = "SELECT acked_seq FROM factory_cursors WHERE factory_id = $1";
        let acked = D::query(sql, (factory,));
        let acked = acked.optional(self, |r| r.int("acked_seq")).await?;
        Ok(FactoryPosition {
            last_seq,
            acked_seq: acked.unwrap_or(0),
        })
    }

    /// Moves the factory's acknowledgement cursor up to `seq` (never down).
    pub(crate) async fn raise_factory_ack(
        &mut self,
        factory: &str,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO factory_cursors (factory_id, acked_seq, updated_at) \
             VALUES ($1, $2, $3) ON CONFLICT (factory_id) DO UPDATE SET \
             acked_seq = CASE WHEN excluded.acked_seq > factory_cursors.acked_seq \
             THEN excluded.acked_seq ELSE factory_cursors.acked_seq END, \
             updated_at = excluded.updated_at";
        D::query(sql, (factory, seq, now)).run(self).await
    }

    /// Raises the factory's stream generation (1 at its first claim) and answers the new
    /// number. On PostgreSQL the upsert holds the row's lock to the commit, so concurrent
    /// claims take turns and each answers its own number.
    pub(crate) async fn raise_stream_generation(
        &mut self,
        factory: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let sql = "INSERT INTO factory_streams (factory_id, generation, claimed_at) \
             VALUES ($1, 1, $2) ON CONFLICT (factory_id) DO UPDATE SET \
             generation = factory_streams.generation + 1, claimed_at = excluded.claimed_at \
             RETURNING generation";
        D::query(sql, (factory, now))
            .fetch_one(self)
            .await?
            .int("generation")
    }

    /// The factory's newest stream claim, if it ever had one.
    pub(crate) async fn stream_generation(&mut self, factory: &str) -> Result<Option<i64>> {
        let sql = "SELECT generation FROM factory_streams WHERE factory_id = $1";
        D::query(sql, (factory,))
            .optional(self, |r| r.int("generation"))
            .await
    }

    /// The factory's feed after `after`, in sequence order: its work orders numbered
    /// above it, and the withdrawal notices numbered above it (a withdrawn work order's
    /// row, at its notice's number). A work order comes before a notice of the same number,
    /// which only a plan stored by a replica older than migration 0016 can make
    /// (upgrading.md): a client that skips numbers it has seen then still gets the work
    /// order, and a notice it misses is of a work order that refuses every report.
    pub(crate) async fn feed_after(
        &mut self,
        factory: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FeedEntry>> {
        let sql = concat!(
            "SELECT ",
            work_order_columns!(),
            ", seq AS feed_seq, CAST(0 AS BIGINT) AS notice FROM work_orders \
             WHERE factory_id = $1 AND seq > $2 UNION ALL SELECT ",
            work_order_columns!(),
            ", withdrawn_seq AS feed_seq, CAST(1 AS BIGINT) AS notice FROM work_orders \
             WHERE factory_id = $1 AND withdrawn_seq > $2 ORDER BY feed_seq, notice LIMIT $3"
        );
        D::query(sql, (factory, after, i64::from(limit)))
            .all(self, |r| {
                let wo = work_order(r)?;
                Ok(if r.int("notice")? == 0 {
                    FeedEntry::WorkOrder(wo)
                } else {
                    FeedEntry::Withdrawn(wo)
                })
            })
            .await
    }

    /// The work orders still `issued` that make units of the campaign's batches, by id.
    pub(crate) async fn issued_work_orders_of(
        &mut self,
        campaign: &CampaignId,
    ) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT w.id FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             JOIN batches b ON b.id = x.batch_id \
             WHERE b.campaign_id = $1 AND w.state = 'issued' ORDER BY w.id";
        D::query(sql, (campaign.as_str(),))
            .all(self, |r| r.text("id"))
            .await
    }

    /// A work order by id, its row locked on PostgreSQL (SQLite's one writer has it).
    pub(crate) async fn lock_work_order(&mut self, id: &str) -> Result<Option<WorkOrder>> {
        const PLAIN: &str = concat!(work_order_select!(), "WHERE id = $1");
        const LOCKED: &str = concat!(work_order_select!(), "WHERE id = $1 FOR UPDATE");
        D::query(D::locking(PLAIN, LOCKED), (id,))
            .optional(self, work_order)
            .await
    }

    /// The live (neither rejected nor withdrawn) work orders making units of the batch.
    pub(crate) async fn live_work_orders_making(&mut self, batch: &BatchId) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT w.id FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             WHERE x.batch_id = $1 AND w.state <> 'rejected' ORDER BY w.id";
        D::query(sql, (batch.as_str(),))
            .all(self, |r| r.text("id"))
            .await
    }

    /// Withdraws the work order: stored as 'rejected' with its notice's number and reason
    /// (migration 0016 says why), and recorded in its history as `withdrawn`.
    pub(crate) async fn withdraw_work_order(
        &mut self,
        wo: &WorkOrder,
        seq: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE work_orders SET state = 'rejected', withdrawn_seq = $2, \
             withdrawn_reason = $3, state_at = $4 WHERE id = $1 AND state = 'issued'";
        let n = D::query(sql, (&wo.id, seq, reason, now))
            .execute(self)
            .await?;
        if n != 1 {
            return Err(StoreError::Corrupt(format!(
                "work order {} was not issued when withdrawn",
                wo.id
            )));
        }
        let sql = "INSERT INTO work_order_events (work_order_id, factory_id, kind, state, \
             body, created_at) VALUES ($1, $2, 'withdrawn', 'withdrawn', $3, $4)";
        let body = json(&serde_json::json!({ "reason": reason, "seq": seq }))?;
        D::query(sql, (&wo.id, &wo.order.factory_id, body, now))
            .run(self)
            .await
    }

    /// The factory's work order (locked for update on PostgreSQL), with its tally.
    pub(crate) async fn factory_work_order(
        &mut self,
        factory: &str,
        id: &str,
    ) -> Result<Option<(WorkOrder, Tally, Option<DateTime<Utc>>)>> {
        let sql = D::locking(WORK_ORDER, WORK_ORDER_FOR_UPDATE);
        let Some(r) = D::query(sql, (factory, id)).fetch_optional(self).await? else {
            return Ok(None);
        };
        Ok(Some((
            work_order(&r)?,
            parse_tally(&r.text("tally")?)?,
            r.ts_opt("state_at")?,
        )))
    }

    /// Moves the work order to `state` with its tally, and records the report that did.
    pub(crate) async fn set_work_order_state(
        &mut self,
        wo: &WorkOrder,
        progress: &Progress,
        change: &Transition,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE work_orders SET state = $2, tally = $3, state_at = $4 WHERE id = $1";
        let state = change.state.as_str();
        D::query(sql, (&wo.id, state, json(&change.tally)?, now))
            .execute(self)
            .await?;
        let sql = "INSERT INTO work_order_events (work_order_id, factory_id, kind, state, \
             body, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
        let body = event_body(progress)?;
        let params = (
            &wo.id,
            &wo.order.factory_id,
            progress.kind(),
            state,
            body,
            now,
        );
        D::query(sql, params).run(self).await
    }

    /// Marks the plan as no longer making any of the batch, unless another live work
    /// order of the plan still does.
    pub(crate) async fn release_plan_batch(&mut self, plan: &str, batch: &BatchId) -> Result<()> {
        let sql = "UPDATE plan_batches SET active = FALSE WHERE plan_id = $1 AND batch_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             WHERE w.plan_id = $1 AND x.batch_id = $2 AND w.state <> 'rejected')";
        D::query(sql, (plan, batch.as_str())).run(self).await
    }

    /// Excludes the factory from the batch's future plans (once; a repeat is ignored).
    pub(crate) async fn exclude_factory(
        &mut self,
        batch: &BatchId,
        factory: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO batch_factory_exclusions (batch_id, factory_id, reason, \
             created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (batch_id, factory_id) DO NOTHING";
        D::query(sql, (batch.as_str(), factory, reason, now))
            .run(self)
            .await
    }

    /// Gives stock back to the catalogue (a rejected work order's share of a plan's
    /// reservation). A material removed from the catalogue since keeps no stock to return
    /// to.
    pub(crate) async fn return_stock(&mut self, material: &str, quantity: f64) -> Result<()> {
        let sql = "UPDATE catalogue_materials SET on_hand = on_hand + $2 WHERE id = $1";
        D::query(sql, (material, quantity)).run(self).await
    }

    /// The live (not rejected) work orders' shares of a batch.
    pub(crate) async fn batch_shares(&mut self, batch: &BatchId) -> Result<Vec<BatchShare>> {
        let sql = "SELECT w.state, w.state_at, w.tally, w.body, x.sku, x.units \
             FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             WHERE x.batch_id = $1 AND w.state <> 'rejected' ORDER BY w.id";
        let share = |r: &D::Row| {
            let tally = parse_tally(&r.text("tally")?)?;
            let body: WorkOrderBody = from_json("work order", &r.text("body")?)?;
            let mine = || {
                body.runs.iter().flat_map(|run| {
                    run.batches
                        .iter()
                        .filter(|x| x.batch_id == *batch)
                        .map(move |x| (run, x))
                })
            };
            let state = work_order_state(&r.text("state")?)?;
            Ok(BatchShare {
                state,
                shipped_at: match state {
                    WorkOrderState::Shipped => r.ts_opt("state_at")?,
                    _ => None,
                },
                units: r.int("units")?,
                shipped_fraction: shipped_fraction(&tally, &r.text("sku")?),
                ends_at: mine()
                    .map(|(run, _)| run.schedule.as_ref().map(|s| s.ends_at))
                    .collect::<Option<Vec<_>>>()
                    .and_then(|e| e.into_iter().max()),
                // The reason of the last late run: it names the date the share ends.
                late_reason: mine()
                    .filter_map(|(run, x)| {
                        Some((run.schedule.as_ref()?.ends_at, x.late_reason.as_ref()?))
                    })
                    .max_by_key(|(ends_at, _)| *ends_at)
                    .map(|(_, why)| why.clone()),
            })
        };
        D::query(sql, (batch.as_str(),)).all(self, share).await
    }

    /// The date a locked batch is promised to ship by: its lock plus its campaign's promise.
    pub(crate) async fn batch_due_at(&mut self, batch: &BatchId) -> Result<Option<DateTime<Utc>>> {
        let sql = "SELECT b.locked_at, c.ships_within_days FROM batches b \
             JOIN campaigns c ON c.id = b.campaign_id WHERE b.id = $1";
        let due = |r: &D::Row| {
            Ok(r.ts_opt("locked_at")?
                .map(|at| at + chrono::Duration::days(r.int("ships_within_days").unwrap_or(0))))
        };
        Ok(D::query(sql, (batch.as_str(),))
            .optional(self, due)
            .await?
            .flatten())
    }

    /// The batch's units still waiting for a plan, if it waits at all (see
    /// [`QUEUED_BATCHES`]); `None` for a batch not in the queue.
    pub(crate) async fn unplanned_units(&mut self, batch: &BatchId) -> Result<Option<i64>> {
        let row = D::query(&UNPLANNED, (batch.as_str(),))
            .fetch_optional(self)
            .await?;
        row.map(|r| r.int("n")).transpose()
    }
}
