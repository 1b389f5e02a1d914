//! Planning: the queue of locked batches waiting for a plan, and the plans themselves with
//! the work orders they give each factory.
//!
//! The planner itself runs in the server (off the async runtime); the store keeps what it
//! decided. [`store_plan`] writes a cycle's result in one transaction: it checks, under the
//! planning lock, that every batch is still waiting, takes the batches (a partial unique
//! index lets one plan hold a batch at a time), reserves the stock on hand the plan uses,
//! and gives each factory's work order the next number of that factory's sequence. An
//! infeasible plan is stored the same way but holds no batch, reserves nothing and has no
//! work orders: its batches stay in the queue, with the plan as their last attempt.
//!
//! # The queue
//!
//! Which batches wait is decided in exactly one place, [`QUEUED_BATCHES`]: locked batches
//! that are ready for production (their balance window closed, or nothing was left to
//! pay) and whose paid units are not all in live work orders. Counting units rather than
//! "held by a plan" is what lets a factory's rejection send back just its part of a
//! batch split over two factories ([`crate::factory`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::{Batch, BatchId, DomainError, Fingerprint, IdempotencyKey, Page, PageRequest};

use crate::idempotency::{record, replay, IdempotencyTx};
use crate::rows::micros;
use crate::StoreError;

pub(crate) const OP_RUN_PLANNING: &str = "run_planning";

/// The units of batch `b` not yet in a live (not rejected) work order: paid units minus
/// the units live work orders make for it. Used by [`QUEUED_BATCHES`] and shown as
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
/// selects the batches a planning cycle takes: locked, ready for production, with units
/// no live work order makes.
pub(crate) const QUEUED_BATCHES: &str = concat!(
    "b.status = 'locked' AND b.ready_at IS NOT NULL AND ",
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
    /// The last plan that took the batch and let it go again (infeasible, or rejected).
    pub last_plan: Option<PlanSummary>,
}

/// Units of one batch made by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBatch {
    pub batch_id: BatchId,
    pub units: i64,
}

/// One production run of a work order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrderRun {
    pub sku: String,
    pub quantity: i64,
    /// The batches whose units the run makes (their units add up to at most `quantity`;
    /// a minimum run may make more than the batches need).
    pub batches: Vec<RunBatch>,
}

/// Material a factory should expect for its runs, and from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaterialDelivery {
    pub material: String,
    /// The supplier shipping it; `None` for stock already on hand.
    pub supplier: Option<String>,
    pub quantity: f64,
}

/// A factory's part of a plan, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewWorkOrder {
    pub factory_id: String,
    pub runs: Vec<WorkOrderRun>,
    pub materials: Vec<MaterialDelivery>,
    pub due_at: DateTime<Utc>,
}

/// A stored work order: its id (for recognising a redelivery) and its number in the
/// factory's sequence (for resuming delivery).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrder {
    pub id: String,
    pub plan_id: String,
    pub factory_id: String,
    pub seq: i64,
    pub runs: Vec<WorkOrderRun>,
    pub materials: Vec<MaterialDelivery>,
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Where it stands at the factory (issued until the factory reports).
    pub state: c2m_domain::WorkOrderState,
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
    /// The planner's cost breakdown, as JSON.
    pub cost_breakdown: String,
    /// Relative MIP gap; `None` when unknown (no bound).
    pub gap: Option<f64>,
    pub solver: String,
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
    pub work_orders: Vec<NewWorkOrder>,
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
    pub cost_breakdown: String,
    pub solve_seconds: f64,
    pub diagnosis: Option<String>,
    pub scenario: String,
    pub plan: String,
    pub catalogue_version: i64,
    pub batches: Vec<BatchId>,
    pub work_orders: Vec<WorkOrder>,
    pub reservations: Vec<(String, f64)>,
}

/// The response recorded for a `RunPlanning` key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanRef {
    plan_id: String,
}

/// The planning tables inside a backend's transaction.
#[async_trait]
pub(crate) trait PlanningTx: IdempotencyTx {
    /// Serialises plan writers (one cycle's result is stored at a time, across replicas).
    async fn lock_planning(&mut self) -> Result<(), StoreError>;

    /// The batches selected by [`QUEUED_BATCHES`], oldest lock first.
    async fn queued_batches(&mut self) -> Result<Vec<QueuedBatch>, StoreError>;

    /// Takes `reserve` of the material's stock on hand; false if there is not that much.
    async fn take_stock(&mut self, material: &str, reserve: f64) -> Result<bool, StoreError>;

    /// Bumps the catalogue version (stock changed).
    async fn bump_catalogue_version(&mut self, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The next number in the factory's work order sequence.
    async fn next_work_order_seq(&mut self, factory: &str) -> Result<i64, StoreError>;

    async fn insert_plan(
        &mut self,
        id: &str,
        plan: &NewPlan,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    async fn insert_plan_batch(
        &mut self,
        plan: &str,
        batch: &BatchId,
        active: bool,
    ) -> Result<(), StoreError>;

    async fn insert_reservation(
        &mut self,
        plan: &str,
        material: &str,
        quantity: f64,
    ) -> Result<(), StoreError>;

    async fn insert_work_order(&mut self, wo: &WorkOrder) -> Result<(), StoreError>;

    async fn plan(&mut self, id: &str) -> Result<Option<StoredPlan>, StoreError>;

    async fn plans(&mut self, page: PageRequest) -> Result<Page<PlanSummary>, StoreError>;
}

/// Stores a cycle's plan; returns its id. See the module docs.
pub(crate) async fn store_plan(
    tx: &mut (impl PlanningTx + ?Sized),
    new: &NewPlan,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let now = micros(now);
    let fingerprint = Fingerprint::of(OP_RUN_PLANNING, &());
    if let Some(key) = &new.idempotency_key {
        if let Some(done) = replay::<PlanRef>(tx, OP_RUN_PLANNING, key, &fingerprint).await? {
            return Ok(done.plan_id);
        }
    }
    if new.batches.is_empty() {
        return Err(DomainError::from(c2m_domain::Refusal::NothingToPlan).into());
    }
    tx.lock_planning().await?;
    let queued: std::collections::HashMap<BatchId, i64> = tx
        .queued_batches()
        .await?
        .into_iter()
        .map(|q| (q.batch.id, q.units_to_plan))
        .collect();
    if let Some(gone) = new.batches.iter().find(|b| !queued.contains_key(b)) {
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
    let id = format!("pln_{}", uuid::Uuid::new_v4().simple());
    let holds = new.status != PlanStatus::Infeasible;
    tx.insert_plan(&id, new, now).await?;
    for b in &new.batches {
        tx.insert_plan_batch(&id, b, holds).await?;
    }
    if holds {
        let mut reserved = false;
        for (material, qty) in new.reservations.iter().filter(|(_, q)| *q > 0.0) {
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
                id: format!("wo_{}", uuid::Uuid::new_v4().simple()),
                plan_id: id.clone(),
                factory_id: w.factory_id.clone(),
                seq,
                runs: w.runs.clone(),
                materials: w.materials.clone(),
                due_at: micros(w.due_at),
                created_at: now,
                state: c2m_domain::WorkOrderState::Issued,
            };
            tx.insert_work_order(&wo).await?;
        }
    }
    if let Some(key) = &new.idempotency_key {
        record(
            tx,
            OP_RUN_PLANNING,
            key,
            &fingerprint,
            &PlanRef {
                plan_id: id.clone(),
            },
            now,
        )
        .await?;
    }
    Ok(id)
}

/// The plan a `RunPlanning` key already produced, if any.
pub(crate) async fn replayed_plan(
    tx: &mut (impl PlanningTx + ?Sized),
    key: &IdempotencyKey,
) -> Result<Option<String>, StoreError> {
    let fingerprint = Fingerprint::of(OP_RUN_PLANNING, &());
    Ok(replay::<PlanRef>(tx, OP_RUN_PLANNING, key, &fingerprint)
        .await?
        .map(|r| r.plan_id))
}

/// The JSON stored in `work_orders.body`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkOrderBody {
    pub runs: Vec<WorkOrderRun>,
    pub materials: Vec<MaterialDelivery>,
}

pub(crate) fn plan_not_found(id: &str) -> StoreError {
    DomainError::NotFound {
        entity: "plan",
        id: id.to_owned(),
    }
    .into()
}

pub(crate) fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("serializing: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("stored {what}: {e}")))
}
