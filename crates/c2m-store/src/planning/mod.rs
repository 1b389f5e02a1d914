//! Planning: the queue of locked batches waiting for a plan, and the plans themselves with
//! the work orders they give each factory.
//!
//! The planner itself runs in the server (off the async runtime); the store keeps what it
//! decided. `store_plan` writes a cycle's result in one transaction: it checks, under the
//! planning lock, that every batch is still waiting, takes the batches (a partial unique
//! index lets one plan hold a batch at a time), reserves the stock on hand the plan uses,
//! and gives each factory's work order the next number of that factory's sequence. An
//! infeasible plan is stored the same way but holds no batch, reserves nothing and has no
//! work orders: its batches stay in the queue, with the plan as their last attempt.
//!
//! # The queue
//!
//! Which batches wait is decided in exactly one place, `QUEUED_BATCHES`: locked batches
//! that are ready for production (their balance window closed, or nothing was left to
//! pay) and whose paid units are not all in live work orders. Counting units rather than
//! "held by a plan" is what lets a factory's rejection send back just its part of a
//! batch split over two factories ([`crate::factory`]).
//!
//! # Layout and lock
//!
//! The types and [`PlanningStore`] (implemented once, at the end of this module) are
//! here, the SQL in `sql.rs` (one text for both backends); the conformance case is
//! `plans_take_batches_once_and_number_work_orders_per_factory` (`crate::conformance`).
//! Plans are stored one at a time under the planning lock, the catalogue's row
//! (`catalogue_meta`, `FOR UPDATE` on PostgreSQL; SQLite's one writer), which a catalogue
//! change and a factory's rejection take too: the queue a plan is checked against, the
//! stock it reserves and each factory's next work order number cannot change under it.
//! The database backs it up: one active plan per batch (partial unique index) and
//! `UNIQUE (factory_id, seq)` on work orders.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::ids::{PlanId, WorkOrderId};
use c2m_domain::{Batch, BatchId, DomainError, IdempotencyKey, Page, PageRequest};

use crate::dialect::{micros, Backend, Tx};
use crate::engine::{Call, Engine, Lane};
use crate::idempotency::Keyed;
use crate::writer::Op;
use crate::Result;
use crate::StoreError;

mod sql;

pub(crate) use sql::{work_order, work_order_columns, work_order_select, work_order_state};

pub(crate) const OP_RUN_PLANNING: &str = "run_planning";

/// The units of batch `b` not yet in a live (not rejected) work order: paid units minus
/// the units live work orders make for it. Used by `QUEUED_BATCHES` and shown as
/// [`QueuedBatch::units_to_plan`].
macro_rules! unplanned_units_sql {
    () => {
        "((b.units - b.forfeited_units) - COALESCE(CAST((SELECT SUM(x.units) \
         FROM work_order_batches x JOIN work_orders w ON w.id = x.work_order_id \
         WHERE x.batch_id = b.id AND w.state <> 'rejected') AS BIGINT), 0))"
    };
}

/// The units expression of [`unplanned_units_sql`], as a constant.
pub(crate) const UNPLANNED_UNITS: &str = unplanned_units_sql!();

/// The one definition of the planning queue: the `WHERE` clause over `batches b` that
/// selects the batches a planning cycle takes: locked, ready for production, not refunded
/// by a cancelled campaign, with units no live work order makes.
pub(crate) const QUEUED_BATCHES: &str = concat!(
    "b.status = 'locked' AND b.ready_at IS NOT NULL AND b.refunded_at IS NULL AND ",
    unplanned_units_sql!(),
    " > 0"
);

/// How good a stored plan is known to be (the planner's status, in the store's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanStatus {
    Optimal,
    Feasible,
    Infeasible,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Optimal => "optimal",
            PlanStatus::Feasible => "feasible",
            PlanStatus::Infeasible => "infeasible",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "optimal" => Some(PlanStatus::Optimal),
            "feasible" => Some(PlanStatus::Feasible),
            "infeasible" => Some(PlanStatus::Infeasible),
            _ => None,
        }
    }
}

/// A factory's rejection of a batch's work: why, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactoryRejection {
    pub factory_id: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A batch waiting for a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedBatch {
    pub batch: Batch,
    /// The campaign's sku: what the batch's units are.
    pub sku: String,
    /// Units to plan: the batch's paid units not yet in a live work order (all of them,
    /// unless a factory rejected its part of a split batch).
    pub units_to_plan: i64,
    /// Factories that rejected the batch and must not be given it again.
    pub excluded_factories: Vec<String>,
    /// Their rejections, with the reason each factory gave (by factory id, as
    /// `excluded_factories`): what a planner reads before letting a factory make it again.
    pub rejections: Vec<FactoryRejection>,
    /// The last plan that took the batch and let it go again (infeasible, or rejected).
    pub last_plan: Option<PlanSummary>,
    /// The date the batch is promised to ship by: its lock plus the campaign's promise.
    pub due_at: DateTime<Utc>,
    /// The campaign's unit price in minor units (what one late unit is weighed against).
    pub unit_price: i64,
}

/// Units of one batch made by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBatch {
    pub batch_id: BatchId,
    pub units: i64,
    /// Why these units ship after the batch's promised date, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_reason: Option<String>,
}

/// When a run happens: its planning period and that period's dates. Its units ship at
/// `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSchedule {
    pub period: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Factory hours the run takes (setup included), spread over its period when a later
    /// cycle takes them out of the factory's calendar.
    pub hours: f64,
}

/// One production run of a work order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderRun {
    pub sku: String,
    pub quantity: i64,
    /// The batches whose units the run makes (their units add up to at most `quantity`;
    /// a minimum run may make more than the batches need).
    pub batches: Vec<RunBatch>,
    /// When it runs (absent in work orders of plans made before planning in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<RunSchedule>,
}

/// Material a factory should expect for its runs, and from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaterialDelivery {
    pub material: String,
    /// The supplier shipping it; `None` for stock already on hand.
    pub supplier: Option<String>,
    pub quantity: f64,
    /// The purchase order it comes on (`None` for stock on hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_order: Option<String>,
}

/// A factory's part of a plan, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewWorkOrder {
    pub factory_id: String,
    pub runs: Vec<WorkOrderRun>,
    pub materials: Vec<MaterialDelivery>,
    pub due_at: DateTime<Utc>,
}

/// A stored work order: the factory's part of the plan as the plan gave it, its id (for
/// recognising a redelivery) and its number in the factory's sequence (for resuming
/// delivery).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrder {
    pub id: String,
    pub plan_id: String,
    pub seq: i64,
    pub order: NewWorkOrder,
    pub created_at: DateTime<Utc>,
    /// Where it stands at the factory (issued until the factory reports).
    pub state: c2m_domain::WorkOrderState,
    /// When it was withdrawn (state `Withdrawn`), the notice its factory's stream sends.
    pub withdrawn: Option<Withdrawal>,
}

/// A work order taken back before its factory accepted it (a cancelled campaign's; see
/// `crate::levers`). The factory learns it from its stream, in sequence with its work
/// orders: the notice takes the next number of the factory's sequence, as a work order does.
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawal {
    /// The notice's number in the factory's sequence (after the work order's own).
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Why, for the factory's planners ("campaign cmp_... was cancelled").
    pub reason: String,
}

/// The result of one planning cycle, to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    /// The key of an on-demand cycle (`RunPlanning`); scheduled cycles have none.
    pub idempotency_key: Option<IdempotencyKey>,
    pub status: PlanStatus,
    pub currency: String,
    /// Minor units, rounded once by the planner.
    pub total_cost: i64,
    /// Relative MIP gap; `None` when unknown (no bound).
    pub gap: Option<f64>,
    pub solver: String,
    pub detail: PlanDetail,
    pub work_orders: Vec<NewWorkOrder>,
    /// The plan's purchases, stored as purchase orders with it.
    pub purchase_orders: Vec<crate::purchasing::NewPurchaseOrder>,
    /// Quantities of earlier open purchase orders (still to arrive, not yet allocated)
    /// that this plan's work orders use.
    pub allocations: Vec<Allocation>,
}

/// A quantity of an earlier purchase order that a new plan's work orders use, and their
/// batches (added to the order's, which name every batch whose work orders use it).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub purchase_order: String,
    pub quantity: f64,
    pub batches: Vec<BatchId>,
}

/// What is stored of a plan besides its summary and its parts (work orders, purchase
/// orders): what the planner said, what the plan was made from, and what it takes. Read back
/// as it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDetail {
    /// The planner's cost breakdown, as JSON.
    pub cost_breakdown: String,
    pub solve_seconds: f64,
    /// Why demand cannot be met (infeasible plans), as JSON.
    pub diagnosis: Option<String>,
    /// The scenario the plan was made from, as TOML.
    pub scenario: String,
    /// The plan as the planner reported it, as JSON.
    pub plan: String,
    /// The catalogue version the scenario was built from.
    pub catalogue_version: i64,
    /// The batches the cycle took (all of them, even when infeasible).
    pub batches: Vec<BatchId>,
    /// Stock on hand the plan uses, per material; taken from the catalogue when stored.
    pub reservations: Vec<(String, f64)>,
}

/// A plan as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub id: String,
    pub status: PlanStatus,
    pub currency: String,
    pub total_cost: i64,
    pub gap: Option<f64>,
    pub solver: String,
    pub batches: i64,
    pub created_at: DateTime<Utc>,
}

/// A plan with everything stored about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPlan {
    pub summary: PlanSummary,
    pub detail: PlanDetail,
    pub work_orders: Vec<WorkOrder>,
    pub purchase_orders: Vec<crate::purchasing::PurchaseOrder>,
}

/// The response recorded for a `RunPlanning` key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanRef {
    plan_id: String,
}

/// Stores a cycle's plan; returns its id. Idempotent by the plan's key, when it has one
/// (an on-demand cycle's). See the module docs.
pub(crate) async fn store_plan<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<NewPlan>,
) -> Result<String> {
    let (new, now) = (&c.req, c.now);
    let Some(key) = new.idempotency_key.as_ref().map(run_planning) else {
        return store_new_plan(tx, new, now).await;
    };
    // The key is looked up again once the planning lock is held: a cycle run with the same
    // key on another replica may have stored its plan while this one waited for the lock,
    // and its plan is the answer (not a refusal that the batches no longer wait).
    let lock = async |tx: &mut Tx<'_, D>| tx.lock_planning().await;
    let store = async |tx: &mut Tx<'_, D>, ()| {
        let plan_id = store_new_plan(tx, new, now).await?;
        Ok(PlanRef { plan_id })
    };
    Ok(key.run_locked(tx, now, lock, store).await?.plan_id)
}

/// [`store_plan`] past its key (none, or not used before): the plan written.
async fn store_new_plan<D: Backend>(
    tx: &mut Tx<'_, D>,
    new: &NewPlan,
    now: DateTime<Utc>,
) -> Result<String> {
    if new.detail.batches.is_empty() {
        return Err(DomainError::from(c2m_domain::Refusal::NothingToPlan {
            due_later: 0,
            no_factory: 0,
        })
        .into());
    }
    tx.lock_planning().await?;
    tx.lock_batches(&new.detail.batches).await?;
    let queued: std::collections::HashMap<BatchId, i64> = tx
        .queued_batches()
        .await?
        .into_iter()
        .map(|q| (q.batch.id, q.units_to_plan))
        .collect();
    if let Some(gone) = new.detail.batches.iter().find(|b| !queued.contains_key(b)) {
        return Err(DomainError::from(c2m_domain::Refusal::BatchNotWaiting {
            batch: gone.to_string(),
        })
        .into());
    }
    // A plan may give a batch fewer units than wait (a rejection meanwhile sent more
    // back: they stay queued for the next cycle), never more.
    let mut given: std::collections::HashMap<&BatchId, i64> = Default::default();
    for r in new.work_orders.iter().flat_map(|w| &w.runs) {
        for b in &r.batches {
            *given.entry(&b.batch_id).or_default() += b.units;
        }
    }
    for (batch, units) in given {
        let waiting = queued.get(batch).copied().unwrap_or(0);
        if units > waiting {
            return Err(DomainError::from(c2m_domain::Refusal::UnitsNotWaiting {
                batch: batch.to_string(),
                waiting,
                planned: units,
            })
            .into());
        }
    }
    let id = PlanId::generate().into_string();
    let holds = new.status != PlanStatus::Infeasible;
    let before = crate::factory::batch_production(tx, &new.detail.batches).await?;
    tx.insert_plan(&id, new, now).await?;
    for b in &new.detail.batches {
        tx.insert_plan_batch(&id, b, holds).await?;
    }
    if holds {
        let mut reserved = false;
        for (material, qty) in new.detail.reservations.iter().filter(|(_, q)| *q > 0.0) {
            if !tx.take_stock(material, *qty).await? {
                return Err(DomainError::from(c2m_domain::Refusal::StockChanged {
                    material: material.clone(),
                })
                .into());
            }
            tx.insert_reservation(&id, material, *qty).await?;
            reserved = true;
        }
        if reserved {
            tx.bump_catalogue_version(now).await?;
        }
        for w in &new.work_orders {
            let seq = tx.next_work_order_seq(&w.factory_id).await?;
            let wo = WorkOrder {
                id: WorkOrderId::generate().into_string(),
                plan_id: id.clone(),
                seq,
                order: NewWorkOrder {
                    due_at: micros(w.due_at),
                    ..w.clone()
                },
                created_at: now,
                state: c2m_domain::WorkOrderState::Issued,
                withdrawn: None,
            };
            tx.insert_work_order(&wo).await?;
        }
        for a in new.allocations.iter().filter(|a| a.quantity > 0.0) {
            crate::purchasing::allocate(tx, a).await?;
        }
        for po in &new.purchase_orders {
            tx.insert_purchase_order(&id, po, &new.currency, now)
                .await?;
        }
    }
    if holds {
        crate::factory::production_events(tx, &new.detail.batches, &before, now).await?;
    }
    Ok(id)
}

/// A `RunPlanning` key: its request has no fields (the cycle plans whatever waits).
fn run_planning(key: &IdempotencyKey) -> Keyed<'_> {
    Keyed::new(OP_RUN_PLANNING, key, &())
}

/// The plan a `RunPlanning` key already produced, if any.
pub(crate) async fn replayed_plan<D: Backend>(
    tx: &mut Tx<'_, D>,
    key: &IdempotencyKey,
) -> Result<Option<String>> {
    let done: Option<PlanRef> = run_planning(key).replay(tx).await?;
    Ok(done.map(|r| r.plan_id))
}

/// The JSON stored in `work_orders.body`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkOrderBody {
    pub runs: Vec<WorkOrderRun>,
    pub materials: Vec<MaterialDelivery>,
}

pub(crate) fn plan_not_found(id: &str) -> StoreError {
    StoreError::not_found("plan", id)
}

pub(crate) fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("serializing: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("stored {what}: {e}")))
}

/// The planning queue and the stored plans (see the [module docs](self)).
#[async_trait]
pub trait PlanningStore: Send + Sync + 'static {
    /// Live work orders a factory has not finished (issued, accepted, in production): a
    /// cycle keeps them as they are and takes their hours out of the calendars.
    async fn frozen_work_orders(&self) -> Result<Vec<WorkOrder>>;

    /// The batches waiting for a planning cycle, oldest lock first. The one selection is
    /// `planning::QUEUED_BATCHES` (today: locked batches that no plan holds).
    async fn planning_queue(&self) -> Result<Vec<QueuedBatch>>;

    /// Stores a cycle's plan, its work orders (numbered per factory) and its stock
    /// reservations, in one transaction; returns the plan's id. `FailedPrecondition` if a
    /// batch is no longer waiting or the stock it reserves is gone (plan again).
    /// Idempotent by the plan's key, when it has one.
    async fn store_plan(&self, plan: &NewPlan, now: DateTime<Utc>) -> Result<String>;

    /// The plan a `RunPlanning` idempotency key already produced.
    async fn replayed_plan(&self, key: &IdempotencyKey) -> Result<Option<String>>;

    async fn get_plan(&self, id: &str) -> Result<StoredPlan>;

    /// Plans, newest first.
    async fn list_plans(&self, page: PageRequest) -> Result<Page<PlanSummary>>;

    /// Takes the turn of the next scheduled planning cycle for `owner` until `until`,
    /// unless another owner holds it at `now`; true when `owner` holds it after the call
    /// (taken, or renewed). The replicas of one store take turns by it, so that one of
    /// them solves the queue rather than each of them (migration 0017).
    async fn take_cycle_lease(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;

    /// Gives `owner`'s turn up at `now` (its cycle ended), so the next scheduled cycle of
    /// any replica may run; nothing when another owner holds it.
    async fn release_cycle_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<()>;
}

#[async_trait]
impl<E: Engine> PlanningStore for E {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn frozen_work_orders(&self) -> Result<Vec<WorkOrder>> {
        self.read(&(), |tx, _| Box::pin(tx.frozen_work_orders()))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn planning_queue(&self) -> Result<Vec<QueuedBatch>> {
        self.read(&(), |tx, _| Box::pin(tx.queued_batches())).await
    }

    #[tracing::instrument(skip(self, plan), err(level = "debug"))]
    async fn store_plan(&self, plan: &NewPlan, now: DateTime<Utc>) -> Result<String> {
        self.alone(plan.clone(), now, |tx, c| Box::pin(store_plan(tx, c)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn replayed_plan(&self, key: &IdempotencyKey) -> Result<Option<String>> {
        self.read(key, |tx, key| Box::pin(replayed_plan(tx, key)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_plan(&self, id: &str) -> Result<StoredPlan> {
        self.read(id, |tx, id| Box::pin(tx.plan(id)))
            .await?
            .ok_or_else(|| plan_not_found(id))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_plans(&self, page: PageRequest) -> Result<Page<PlanSummary>> {
        self.read(&page, |tx, page| Box::pin(tx.plans(*page))).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn take_cycle_lease(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let op = Op::new((owner.to_owned(), now, until), |tx, (owner, now, until)| {
            Box::pin(take_lease(tx, owner, *now, *until))
        });
        self.write(Lane::Alone, op.quiet()).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn release_cycle_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<()> {
        let op = Op::new((owner.to_owned(), now), |tx, (owner, now)| {
            Box::pin(release_lease(tx, owner, *now))
        });
        self.write(Lane::Alone, op.quiet()).await
    }
}

/// The one row's lease, taken when free (none yet, or expired at `now`) or already
/// `owner`'s. On PostgreSQL two replicas inserting at once meet at the row: the second
/// waits for the first's commit and then finds the lease held, so it updates nothing.
async fn take_lease<D: Backend>(
    tx: &mut Tx<'_, D>,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool> {
    let sql = "INSERT INTO planning_lease (id, owner, lease_until) VALUES (1, $1, $3) \
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
         lease_until = excluded.lease_until \
         WHERE planning_lease.owner = excluded.owner OR planning_lease.lease_until <= $2";
    let taken = D::query(sql, (owner, micros(now), micros(until)))
        .execute(tx)
        .await?;
    Ok(taken == 1)
}

async fn release_lease<D: Backend>(
    tx: &mut Tx<'_, D>,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "UPDATE planning_lease SET lease_until = $2 WHERE id = 1 AND owner = $1";
    D::query(sql, (owner, micros(now))).execute(tx).await?;
    Ok(())
}
