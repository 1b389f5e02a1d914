//! The SQL of the planning queue and the plans, written once for both backends, and
//! turning its rows into plans and work orders.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use c2m_domain::{BatchId, Page, PageRequest, WorkOrderState};

use super::{
    from_json, json, FactoryRejection, NewPlan, NewWorkOrder, PlanDetail, PlanStatus, PlanSummary,
    QueuedBatch, StoredPlan, Withdrawal, WorkOrder, WorkOrderBody, QUEUED_BATCHES, UNPLANNED_UNITS,
};
use crate::dialect::{columns, page_limit, Backend, Columns, Tx};
use crate::pooling::{batch, batch_columns, paged};
use crate::Result;
use crate::StoreError;

/// The planning lock: the catalogue's row, which PostgreSQL's plan writers (and catalogue
/// writers, and factories rejecting work) lock; SQLite's one writer holds it already.
const PLANNING: &str = "SELECT id FROM catalogue_meta WHERE id = 1";
const PLANNING_FOR_UPDATE: &str = "SELECT id FROM catalogue_meta WHERE id = 1 FOR UPDATE";

/// The columns [`plan_summary`] reads, for `FROM plans p`.
macro_rules! plan_summary_select {
    () => {
        "SELECT p.seq, p.id, p.status, p.currency, p.total_cost, p.gap, p.solver, \
         p.created_at, \
         (SELECT COUNT(*) FROM plan_batches x WHERE x.plan_id = p.id) AS batch_count \
         FROM plans p "
    };
}

/// The columns [`work_order`] reads (and `tally`, `state_at`), for `FROM work_orders`.
macro_rules! work_order_columns {
    () => {
        "id, plan_id, factory_id, seq, body, due_at, created_at, state, tally, state_at, \
         withdrawn_seq, withdrawn_reason"
    };
}

macro_rules! work_order_select {
    () => {
        concat!(
            "SELECT ",
            $crate::planning::work_order_columns!(),
            " FROM work_orders "
        )
    };
}

pub(crate) use {work_order_columns, work_order_select};

/// The batches waiting for a plan ([`QUEUED_BATCHES`]), their sku and units to plan.
static QUEUED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT b.{}, c.sku AS campaign_sku, c.ships_within_days, \
         c.unit_price AS campaign_unit_price, {UNPLANNED_UNITS} AS units_to_plan \
         FROM batches b \
         JOIN campaigns c ON c.id = b.campaign_id WHERE {QUEUED_BATCHES} \
         ORDER BY b.locked_at, b.id",
        batch_columns!().replace(", ", ", b."),
    )
});

/// The planning tables.
impl<D: Backend> Tx<'_, D> {
    /// Serialises plan writers (one cycle's result is stored at a time, across replicas).
    pub(crate) async fn lock_planning(&mut self) -> Result<()> {
        let sql = D::locking(PLANNING, PLANNING_FOR_UPDATE);
        D::query(sql, ()).fetch_one(self).await?;
        Ok(())
    }

    /// Takes the rows' locks of the batches a plan would take (PostgreSQL; SQLite's one
    /// writer has them), one at a time in id order, the order every batch lock is taken
    /// in. A cancel's refund locks the batches it looks at too (`Tx::refundable_batches`),
    /// so the queue read after this sees a refund that committed first, and a refund after
    /// sees the plan's work orders.
    pub(crate) async fn lock_batches(&mut self, batches: &[BatchId]) -> Result<()> {
        if !D::ROW_LOCKS {
            return Ok(());
        }
        let mut ids: Vec<&BatchId> = batches.iter().collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            D::query(
                "SELECT id FROM batches WHERE id = $1 FOR UPDATE",
                (id.as_str(),),
            )
            .fetch_optional(self)
            .await?;
        }
        Ok(())
    }

    /// The batches selected by [`QUEUED_BATCHES`], oldest lock first.
    pub(crate) async fn queued_batches(&mut self) -> Result<Vec<QueuedBatch>> {
        let rows = D::query(&QUEUED, ()).fetch_all(self).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let batch = batch(r)?;
            let id = (batch.id.as_str(),);
            let rejections = D::query(EXCLUSIONS, id)
                .all(self, |x| {
                    Ok(FactoryRejection {
                        factory_id: x.text("factory_id")?,
                        reason: x.text("reason")?,
                        at: x.ts("created_at")?,
                    })
                })
                .await?;
            let excluded_factories = rejections.iter().map(|x| x.factory_id.clone()).collect();
            let last_plan = D::query(LAST_PLAN, id).optional(self, plan_summary).await?;
            let locked_at = batch.locked_at.ok_or_else(|| {
                StoreError::Corrupt(format!("queued batch {} not locked", batch.id))
            })?;
            let due_at = locked_at + chrono::Duration::days(r.int("ships_within_days")?);
            out.push(QueuedBatch {
                due_at,
                unit_price: r.int("campaign_unit_price")?,
                sku: r.text("campaign_sku")?,
                units_to_plan: r.int("units_to_plan")?,
                batch,
                excluded_factories,
                rejections,
                last_plan,
            });
        }
        Ok(out)
    }

    /// Work orders not rejected and not past production (see
    /// [`super::PlanningStore::frozen_work_orders`]).
    pub(crate) async fn frozen_work_orders(&mut self) -> Result<Vec<WorkOrder>> {
        let sql = concat!(
            work_order_select!(),
            "WHERE state IN ('issued', 'accepted', 'in_production') ORDER BY factory_id, seq"
        );
        D::query(sql, ()).all(self, work_order).await
    }

    /// Work orders their factory may still reject (issued or accepted), in sequence order.
    pub(crate) async fn rejectable_work_orders(&mut self) -> Result<Vec<WorkOrder>> {
        let sql = concat!(
            work_order_select!(),
            "WHERE state IN ('issued', 'accepted') ORDER BY factory_id, seq"
        );
        D::query(sql, ()).all(self, work_order).await
    }

    /// Takes `reserve` of the material's stock on hand; false if there is not that much.
    pub(crate) async fn take_stock(&mut self, material: &str, reserve: f64) -> Result<bool> {
        let sql = "SELECT on_hand FROM catalogue_materials WHERE id = $1";
        let on_hand = D::query(sql, (material,));
        match on_hand.optional(self, |r| r.real("on_hand")).await? {
            Some(have) if have + 1e-9 >= reserve => {
                let sql = "UPDATE catalogue_materials SET on_hand = $2 WHERE id = $1";
                D::query(sql, (material, (have - reserve).max(0.0)))
                    .execute(self)
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Bumps the catalogue version (stock changed).
    pub(crate) async fn bump_catalogue_version(&mut self, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE catalogue_meta SET version = version + 1, updated_at = $1 WHERE id = 1";
        D::query(sql, (now,)).run(self).await
    }

    /// The next number in the factory's sequence, whose numbers go to its work orders and
    /// to the notices of withdrawn ones (`crate::factory::withdraw`). The caller holds the
    /// planning lock, as every writer of a number does, so two never take the same.
    pub(crate) async fn next_work_order_seq(&mut self, factory: &str) -> Result<i64> {
        Ok(self.last_factory_seq(factory).await? + 1)
    }

    /// The factory's last number: of a work order, or of a withdrawal notice (0 before its
    /// first). Two maxima, each read from its index.
    pub(crate) async fn last_factory_seq(&mut self, factory: &str) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(s), 0) AS seq FROM (\
             SELECT MAX(seq) AS s FROM work_orders WHERE factory_id = $1 UNION ALL \
             SELECT MAX(withdrawn_seq) FROM work_orders WHERE factory_id = $1) AS t";
        D::query(sql, (factory,)).fetch_one(self).await?.int("seq")
    }

    pub(crate) async fn insert_plan(
        &mut self,
        id: &str,
        p: &NewPlan,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let params = (
            id,
            p.status.as_str(),
            &p.currency,
            p.total_cost,
            &p.detail.cost_breakdown,
            p.gap,
            &p.solver,
            p.detail.solve_seconds,
            &p.detail.diagnosis,
            &p.detail.scenario,
            &p.detail.plan,
            p.detail.catalogue_version,
            now,
        );
        D::query(INSERT_PLAN, params).run(self).await
    }

    pub(crate) async fn insert_plan_batch(
        &mut self,
        plan: &str,
        batch: &BatchId,
        active: bool,
    ) -> Result<()> {
        let sql = "INSERT INTO plan_batches (plan_id, batch_id, active) VALUES ($1, $2, $3)";
        D::query(sql, (plan, batch.as_str(), active))
            .run(self)
            .await
    }

    pub(crate) async fn insert_reservation(
        &mut self,
        plan: &str,
        material: &str,
        quantity: f64,
    ) -> Result<()> {
        let sql =
            "INSERT INTO plan_reservations (plan_id, material_id, quantity) VALUES ($1, $2, $3)";
        D::query(sql, (plan, material, quantity)).run(self).await
    }

    /// The work order and the units of each batch it makes (per sku).
    pub(crate) async fn insert_work_order(&mut self, wo: &WorkOrder) -> Result<()> {
        let body = WorkOrderBody {
            runs: wo.order.runs.clone(),
            materials: wo.order.materials.clone(),
        };
        let params = (
            &wo.id,
            &wo.plan_id,
            &wo.order.factory_id,
            wo.seq,
            json(&body)?,
            wo.order.due_at,
            wo.created_at,
        );
        D::query(INSERT_WORK_ORDER, params).execute(self).await?;
        let mut units: Vec<(BatchId, String, i64)> = Vec::new();
        for run in &wo.order.runs {
            for b in &run.batches {
                match units
                    .iter_mut()
                    .find(|(id, sku, _)| *id == b.batch_id && *sku == run.sku)
                {
                    Some(e) => e.2 += b.units,
                    None => units.push((b.batch_id.clone(), run.sku.clone(), b.units)),
                }
            }
        }
        for (batch, sku, n) in units.into_iter().filter(|u| u.2 > 0) {
            let sql = "INSERT INTO work_order_batches (work_order_id, batch_id, sku, units) \
                 VALUES ($1, $2, $3, $4)";
            D::query(sql, (&wo.id, batch.as_str(), sku, n))
                .execute(self)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn plan(&mut self, id: &str) -> Result<Option<StoredPlan>> {
        let Some(r) = D::query(PLAN, (id,)).fetch_optional(self).await? else {
            return Ok(None);
        };
        let sql = "SELECT batch_id FROM plan_batches WHERE plan_id = $1 ORDER BY batch_id";
        let batch = |x: &D::Row| Ok(BatchId::from_trusted(x.text("batch_id")?));
        let batches = D::query(sql, (id,)).all(self, batch).await?;
        let sql = concat!(
            work_order_select!(),
            "WHERE plan_id = $1 ORDER BY factory_id, seq"
        );
        let work_orders = D::query(sql, (id,)).all(self, work_order).await?;
        let sql = "SELECT material_id, quantity FROM plan_reservations WHERE plan_id = $1 \
             ORDER BY material_id";
        let reservation = |x: &D::Row| Ok((x.text("material_id")?, x.real("quantity")?));
        let reservations = D::query(sql, (id,)).all(self, reservation).await?;
        let purchase_orders = self.plan_purchase_orders(id).await?;
        let detail = columns!(r => PlanDetail {
            cost_breakdown: text, solve_seconds: real, diagnosis: text_opt, scenario: text,
            plan: text, catalogue_version: int;
            batches,
            reservations,
        });
        Ok(Some(StoredPlan {
            summary: plan_summary(&r)?,
            detail,
            work_orders,
            purchase_orders,
        }))
    }

    /// Plans, newest first.
    pub(crate) async fn plans(&mut self, req: PageRequest) -> Result<Page<PlanSummary>> {
        let sql = concat!(
            plan_summary_select!(),
            "WHERE p.seq < $1 ORDER BY p.seq DESC LIMIT $2"
        );
        let params = (req.after.unwrap_or(i64::MAX), page_limit(req.size));
        let rows = D::query(sql, params).fetch_all(self).await?;
        paged(&rows, req, plan_summary)
    }
}

const EXCLUSIONS: &str = "SELECT factory_id, reason, created_at FROM batch_factory_exclusions \
     WHERE batch_id = $1 ORDER BY factory_id";

/// The last plan that took batch `$1` and let it go again (infeasible, or rejected).
const LAST_PLAN: &str = concat!(
    plan_summary_select!(),
    "WHERE p.seq = (SELECT MAX(q.seq) FROM plans q \
     JOIN plan_batches x ON x.plan_id = q.id \
     WHERE x.batch_id = $1 AND (x.active = FALSE OR EXISTS \
     (SELECT 1 FROM work_orders w JOIN work_order_batches y \
     ON y.work_order_id = w.id WHERE w.plan_id = q.id \
     AND y.batch_id = $1 AND w.state = 'rejected')))"
);

const INSERT_PLAN: &str = "INSERT INTO plans (id, status, currency, total_cost, \
     cost_breakdown, gap, solver, solve_seconds, diagnosis, scenario, plan, \
     catalogue_version, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const INSERT_WORK_ORDER: &str = "INSERT INTO work_orders (id, plan_id, factory_id, seq, body, \
     due_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

const PLAN: &str = "SELECT p.seq, p.id, p.status, p.currency, p.total_cost, p.gap, p.solver, \
     p.created_at, p.cost_breakdown, p.solve_seconds, p.diagnosis, p.scenario, \
     p.plan, p.catalogue_version, \
     (SELECT COUNT(*) FROM plan_batches x WHERE x.plan_id = p.id) AS batch_count \
     FROM plans p WHERE p.id = $1";

fn plan_status(s: &str) -> Result<PlanStatus> {
    PlanStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("plan status {s:?}")))
}

pub(crate) fn work_order_state(s: &str) -> Result<WorkOrderState> {
    WorkOrderState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("work order state {s:?}")))
}

/// Columns: those of `work_order_select!`.
pub(crate) fn work_order(w: &impl Columns) -> Result<WorkOrder> {
    let body: WorkOrderBody = from_json("work order", &w.text("body")?)?;
    let order = columns!(w => NewWorkOrder {
        factory_id: text, due_at: ts;
        runs: body.runs,
        materials: body.materials,
    });
    // A withdrawn work order is stored as 'rejected' with its notice's number (migration
    // 0016 says why); it is read as what it is.
    let withdrawn = match w.int_opt("withdrawn_seq")? {
        None => None,
        Some(seq) => Some(Withdrawal {
            seq,
            at: match w.ts_opt("state_at")? {
                Some(at) => at,
                None => {
                    let id = w.text("id")?;
                    return Err(StoreError::Corrupt(format!(
                        "withdrawn work order {id} has no time"
                    )));
                }
            },
            reason: w.text_opt("withdrawn_reason")?.unwrap_or_default(),
        }),
    };
    let state = match withdrawn {
        Some(_) => WorkOrderState::Withdrawn,
        None => work_order_state(&w.text("state")?)?,
    };
    Ok(columns!(w => WorkOrder {
        id: text, plan_id: text, seq: int, created_at: ts;
        order,
        state,
        withdrawn,
    }))
}

/// Columns: those of `plan_summary_select!`.
fn plan_summary(r: &impl Columns) -> Result<PlanSummary> {
    Ok(columns!(r => PlanSummary {
        id: text, currency: text, total_cost: int, gap: real_opt, solver: text, created_at: ts;
        status: plan_status(&r.text("status")?)?,
        batches: r.int("batch_count")?,
    }))
}
