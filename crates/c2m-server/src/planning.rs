//! Planning cycles, and the catalogue <-> scenario conversions they need.
//!
//! A cycle takes every batch in the store's planning queue, builds one scenario from the
//! catalogue (demand = the batches' units per sku, so shared materials reach better price
//! breaks), solves it with the planner on a blocking thread with a time limit, splits the
//! plan into one work order per factory (runs with the batches they make, materials to
//! expect and from whom, a due date) and stores it all in one store call. Cycles in one
//! process run one at a time; across replicas the store refuses a plan whose batches were
//! taken meanwhile.
//!
//! The store knows nothing of the planner: it keeps its own catalogue rows, and this module
//! converts them to and from [`c2m_planner::Scenario`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use c2m_domain::{BatchId, Clock, DomainError, IdempotencyKey, Refusal};
use c2m_planner as planner;
use c2m_store::catalogue::{
    CatalogueFactory, CatalogueMaterial, CatalogueProduct, CatalogueSupplier, FactoryLine,
    OfferPriceBreak, SupplierOffer,
};
use c2m_store::planning::{MaterialDelivery, NewWorkOrder, RunBatch, WorkOrderRun};
use c2m_store::{Catalogue, CatalogueCheck, NewPlan, PlanStatus, QueuedBatch, Store, StoreError};

/// Why a cycle made no plan.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalogue does not make a valid scenario (it is checked on every change, so
    /// this means the queue names a sku the catalogue lost, or similar).
    #[error(transparent)]
    Scenario(#[from] planner::ScenarioError),
    #[error(transparent)]
    Planner(#[from] planner::PlanError),
    #[error("the solver task failed: {0}")]
    Join(String),
}

// ---------------------------------------------------------------------------------------
// Catalogue <-> scenario

/// The catalogue as a scenario: every product with zero demand, or, with `demand`, only
/// the demanded products (and only the factory lines that make them).
pub fn scenario_of(
    c: &Catalogue,
    demand: Option<&BTreeMap<String, i64>>,
) -> Result<planner::Scenario, DomainError> {
    let currency = c.currency.clone().ok_or(Refusal::CatalogueEmpty)?;
    let wanted = |sku: &str| demand.is_none_or(|d| d.contains_key(sku));
    if let Some(d) = demand {
        if let Some(missing) = d.keys().find(|s| !c.products.iter().any(|p| &p.sku == *s)) {
            return Err(Refusal::WaitingSkuNotInCatalogue {
                sku: missing.clone(),
            }
            .into());
        }
    }
    Ok(planner::Scenario {
        name: if c.name.is_empty() {
            "catalogue".into()
        } else {
            c.name.clone()
        },
        currency,
        material_deadline_days: c.material_deadline_days,
        horizon: None,
        products: c
            .products
            .iter()
            .filter(|p| wanted(&p.sku))
            .map(|p| {
                planner::Product::with_demand(
                    p.sku.clone(),
                    demand.and_then(|d| d.get(&p.sku).copied()).unwrap_or(0),
                    p.bom.clone(),
                )
            })
            .collect(),
        materials: c
            .materials
            .iter()
            .map(|m| planner::Material {
                id: m.id.clone(),
                unit: m.unit.clone(),
                on_hand: m.on_hand,
                holding_cost: m.holding_cost,
                receipts: Vec::new(),
            })
            .collect(),
        factories: c
            .factories
            .iter()
            .map(|f| planner::Factory {
                id: f.id.clone(),
                capacity_hours: f.capacity_hours,
                calendar: None,
                lines: f
                    .lines
                    .iter()
                    .filter(|l| wanted(&l.sku))
                    .map(|l| line_of(l, &l.sku))
                    .collect(),
            })
            .collect(),
        suppliers: c
            .suppliers
            .iter()
            .map(|s| planner::Supplier {
                id: s.id.clone(),
                lead_days: s.lead_days,
                offers: s
                    .offers
                    .iter()
                    .map(|o| planner::Offer {
                        material: o.material.clone(),
                        moq: o.moq,
                        pack_size: o.pack_size,
                        max_qty: o.max_qty,
                        order_cost: o.order_cost,
                        breaks: o
                            .breaks
                            .iter()
                            .map(|b| planner::PriceBreak {
                                min_qty: b.min_qty,
                                unit_price: b.unit_price,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// A catalogue line as a scenario line making `sku` (its own sku, or a cycle's variant).
fn line_of(l: &FactoryLine, sku: &str) -> planner::Line {
    planner::Line {
        sku: sku.to_owned(),
        unit_cost: l.unit_cost,
        setup_cost: l.setup_cost,
        min_run: l.min_run,
        hours_per_unit: l.hours_per_unit,
        setup_hours: l.setup_hours,
    }
}

/// A scenario as catalogue entries (its demand is dropped).
pub fn catalogue_of(s: &planner::Scenario) -> Catalogue {
    Catalogue {
        version: 0,
        name: s.name.clone(),
        currency: Some(s.currency.clone()),
        material_deadline_days: s.material_deadline_days,
        products: s
            .products
            .iter()
            .map(|p| CatalogueProduct {
                sku: p.sku.clone(),
                bom: p.bom.clone(),
            })
            .collect(),
        materials: s
            .materials
            .iter()
            .map(|m| CatalogueMaterial {
                id: m.id.clone(),
                unit: m.unit.clone(),
                on_hand: m.on_hand,
                holding_cost: m.holding_cost,
            })
            .collect(),
        factories: s
            .factories
            .iter()
            .map(|f| CatalogueFactory {
                id: f.id.clone(),
                capacity_hours: f.capacity_hours,
                lines: f
                    .lines
                    .iter()
                    .map(|l| FactoryLine {
                        sku: l.sku.clone(),
                        unit_cost: l.unit_cost,
                        setup_cost: l.setup_cost,
                        min_run: l.min_run,
                        hours_per_unit: l.hours_per_unit,
                        setup_hours: l.setup_hours,
                    })
                    .collect(),
            })
            .collect(),
        suppliers: s
            .suppliers
            .iter()
            .map(|x| CatalogueSupplier {
                id: x.id.clone(),
                lead_days: x.lead_days,
                offers: x
                    .offers
                    .iter()
                    .map(|o| SupplierOffer {
                        material: o.material.clone(),
                        moq: o.moq,
                        pack_size: o.pack_size,
                        max_qty: o.max_qty,
                        order_cost: o.order_cost,
                        breaks: o
                            .breaks
                            .iter()
                            .map(|b| OfferPriceBreak {
                                min_qty: b.min_qty,
                                unit_price: b.unit_price,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The scenario rules as a domain error: INVALID_ARGUMENT naming the first place
/// (`suppliers[2].offers[0].breaks[1].min_qty`), with every broken rule in the reason.
pub fn scenario_error(e: &planner::ScenarioError) -> DomainError {
    let errors = e.field_errors();
    let field = errors
        .first()
        .map(|f| f.path.clone())
        .unwrap_or_else(|| "scenario".into());
    let reason = match errors.as_slice() {
        [one] => one.message.clone(),
        _ => errors
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    };
    DomainError::invalid(field, reason)
}

/// The check every catalogue change must pass: the catalogue, as a scenario with zero
/// demand, follows the scenario rules.
pub fn catalogue_check() -> CatalogueCheck {
    Arc::new(|c: &Catalogue| {
        let s = scenario_of(c, None)?;
        s.validate().map(|_| ()).map_err(|e| scenario_error(&e))
    })
}

// ---------------------------------------------------------------------------------------
// Cycles

/// Runs planning cycles; shared by `RunPlanning` and the scheduler.
pub struct PlanningCycles {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    time_limit: Duration,
    /// Woken when a plan (with work orders) is stored.
    deliveries: crate::services::factory::Deliveries,
    /// One cycle at a time in this process.
    running: Mutex<()>,
}

/// What a cycle did.
#[derive(Debug, Clone, PartialEq)]
pub enum CycleOutcome {
    /// Nothing waits.
    Idle,
    Planned {
        plan_id: String,
        status: PlanStatus,
    },
}

impl PlanningCycles {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        time_limit: Duration,
        deliveries: crate::services::factory::Deliveries,
    ) -> Self {
        PlanningCycles {
            store,
            clock,
            time_limit,
            deliveries,
            running: Mutex::new(()),
        }
    }

    /// Runs a cycle over every waiting batch. With a key, a cycle already run with it is
    /// not run again: its plan is returned.
    #[tracing::instrument(skip(self))]
    pub async fn run(&self, key: Option<IdempotencyKey>) -> Result<CycleOutcome, CycleError> {
        let _one = self.running.lock().await;
        if let Some(k) = &key {
            if let Some(plan_id) = self.store.replayed_plan(k).await? {
                let p = self.store.get_plan(&plan_id).await?;
                return Ok(CycleOutcome::Planned {
                    plan_id,
                    status: p.summary.status,
                });
            }
        }
        let queue = self.store.planning_queue().await?;
        if queue.is_empty() {
            return Ok(CycleOutcome::Idle);
        }
        let catalogue = self.store.catalogue().await?;
        let now = self.clock.now();
        let (mut scenario, products) = cycle_scenario(&catalogue, &queue)?;
        scenario.name = format!("cycle-{}", now.format("%Y%m%dT%H%M%SZ"));
        let validated = scenario.clone().validate()?;
        let opts = planner::SolveOptions {
            time_limit: self.time_limit,
            shadow_prices: false,
            ..planner::SolveOptions::default()
        };
        let solving = validated.clone();
        let plan = tokio::task::spawn_blocking(move || planner::plan(&solving, &opts))
            .await
            .map_err(|e| CycleError::Join(e.to_string()))??;
        tracing::info!(
            status = %plan.status,
            total = plan.total_cost,
            batches = queue.len(),
            solver = %plan.solver,
            "cycle planned"
        );
        let new = new_plan(
            key, &catalogue, &scenario, &validated, &plan, &queue, &products, now,
        )?;
        let plan_id = self.store.store_plan(&new, now).await?;
        if !new.work_orders.is_empty() {
            self.deliveries.notify();
        }
        Ok(CycleOutcome::Planned {
            plan_id,
            status: new.status,
        })
    }
}

/// Which queued batches each product of a cycle's scenario makes, and the catalogue sku
/// it stands for.
#[derive(Debug, Default)]
pub struct CycleProducts {
    /// Scenario product -> (catalogue sku, indices into the queue).
    by_product: BTreeMap<String, (String, Vec<usize>)>,
}

/// The scenario for one cycle: demand is each queued batch's units still to plan, and a
/// factory that rejected a batch has no line for it.
///
/// Exclusions are per batch but a scenario's lines are per product, so batches of one sku
/// are grouped by the factories they exclude. The common case, one group per sku, keeps the
/// sku as the product (its excluded factories lose that line). When batches of one sku
/// exclude different factories, each further group becomes its own product, `SKU~2`,
/// `SKU~3`, ... with the same bill of materials and the lines of the factories it may
/// use; the work orders name the real sku again. (Those variants pay their own setups: a
/// rare case, priced conservatively.)
pub fn cycle_scenario(
    c: &Catalogue,
    queue: &[QueuedBatch],
) -> Result<(planner::Scenario, CycleProducts), CycleError> {
    let mut groups: BTreeMap<(&str, &[String]), Vec<usize>> = BTreeMap::new();
    for (i, q) in queue.iter().enumerate() {
        groups
            .entry((q.sku.as_str(), q.excluded_factories.as_slice()))
            .or_default()
            .push(i);
    }
    let mut demand: BTreeMap<String, i64> = BTreeMap::new();
    for q in queue {
        *demand.entry(q.sku.clone()).or_default() += q.units_to_plan;
    }
    let mut scenario = scenario_of(c, Some(&demand)).map_err(StoreError::Domain)?;
    let mut products = CycleProducts::default();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for ((sku, excluded), members) in &groups {
        let n = seen.entry(sku).or_default();
        *n += 1;
        let name = if *n == 1 {
            (*sku).to_owned()
        } else {
            format!("{sku}~{n}")
        };
        let units: i64 = members.iter().map(|&i| queue[i].units_to_plan).sum();
        if *n == 1 {
            if let Some(p) = scenario.products.iter_mut().find(|p| p.sku == *sku) {
                p.demand = units;
            }
        } else if let Some(base) = scenario.products.iter().find(|p| p.sku == *sku).cloned() {
            scenario
                .products
                .push(planner::Product::with_demand(name.clone(), units, base.bom));
        }
        for f in &mut scenario.factories {
            let banned = excluded.contains(&f.id);
            if *n == 1 {
                if banned {
                    f.lines.retain(|l| l.sku != *sku);
                }
            } else if !banned {
                if let Some(line) = c
                    .factories
                    .iter()
                    .find(|cf| cf.id == f.id)
                    .and_then(|cf| cf.lines.iter().find(|l| l.sku == *sku))
                {
                    f.lines.push(line_of(line, &name));
                }
            }
        }
        products
            .by_product
            .insert(name, ((*sku).to_owned(), members.clone()));
    }
    Ok((scenario, products))
}

fn status_of(s: planner::PlanStatus) -> PlanStatus {
    match s {
        planner::PlanStatus::Optimal => PlanStatus::Optimal,
        planner::PlanStatus::Feasible => PlanStatus::Feasible,
        planner::PlanStatus::Infeasible => PlanStatus::Infeasible,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, CycleError> {
    serde_json::to_string(v)
        .map_err(|e| CycleError::Store(StoreError::Corrupt(format!("serializing: {e}"))))
}

/// The store's record of a cycle: the plan, its scenario, the work orders and the stock it
/// takes.
#[allow(clippy::too_many_arguments)]
fn new_plan(
    key: Option<IdempotencyKey>,
    catalogue: &Catalogue,
    scenario: &planner::Scenario,
    v: &planner::ValidatedScenario,
    plan: &planner::Plan,
    queue: &[QueuedBatch],
    products: &CycleProducts,
    now: DateTime<Utc>,
) -> Result<NewPlan, CycleError> {
    let status = status_of(plan.status);
    let feasible = status != PlanStatus::Infeasible;
    let (work_orders, reservations) = if feasible {
        work_orders(v, plan, queue, products, now)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(NewPlan {
        idempotency_key: key,
        status,
        currency: scenario.currency.clone(),
        total_cost: plan.total_cost,
        cost_breakdown: to_json(&plan.cost_breakdown)?,
        gap: plan.gap.is_finite().then_some(plan.gap),
        solver: plan.solver.clone(),
        solve_seconds: plan.solve_seconds,
        diagnosis: plan.diagnosis.as_ref().map(to_json).transpose()?,
        scenario: scenario.to_toml_string()?,
        plan: planner::report::render_json(plan),
        catalogue_version: catalogue.version,
        batches: queue.iter().map(|q| q.batch.id.clone()).collect(),
        work_orders,
        reservations,
    })
}

/// Splits a feasible plan into one work order per factory that runs anything.
///
/// - Batches go to runs in queue order, sku by sku, filling each run before the next; a
///   batch that does not fit a run's remainder is split over two runs (two factories).
/// - Materials: each factory needs its runs' BOM quantities; stock on hand is handed out
///   first (that is what the plan reserves), then the purchases, in the plan's order.
/// - Due date: the slowest supplier the factory waits for, plus its hours at one
///   eight-hour shift a day.
fn work_orders(
    v: &planner::ValidatedScenario,
    plan: &planner::Plan,
    queue: &[QueuedBatch],
    products: &CycleProducts,
    now: DateTime<Utc>,
) -> (Vec<NewWorkOrder>, Vec<(String, f64)>) {
    let s = v.scenario();
    // Units of each batch still to place, per scenario product, in queue order.
    let mut open: BTreeMap<&str, Vec<(BatchId, i64)>> = BTreeMap::new();
    for (product, (_, members)) in &products.by_product {
        open.insert(
            product.as_str(),
            members
                .iter()
                .map(|&i| (queue[i].batch.id.clone(), queue[i].units_to_plan))
                .collect(),
        );
    }
    let mut orders: Vec<NewWorkOrder> = Vec::new();
    let mut hours: BTreeMap<String, f64> = BTreeMap::new();
    let mut need: BTreeMap<(String, String), f64> = BTreeMap::new(); // (factory, material)
    for run in plan.runs.iter().filter(|r| r.quantity > 0) {
        let mut batches = Vec::new();
        let mut room = run.quantity;
        if let Some(list) = open.get_mut(run.sku.as_str()) {
            for (id, left) in list.iter_mut() {
                if room == 0 {
                    break;
                }
                let take = (*left).min(room);
                if take > 0 {
                    batches.push(RunBatch {
                        batch_id: id.clone(),
                        units: take,
                    });
                    *left -= take;
                    room -= take;
                }
            }
        }
        if let (Some(f), Some(p)) = (v.factory_index(&run.factory), v.product_index(&run.sku)) {
            if let Some(line) = s.factories[f].lines.iter().find(|l| l.sku == run.sku) {
                *hours.entry(run.factory.clone()).or_default() +=
                    line.setup_hours + line.hours_per_unit * run.quantity as f64;
            }
            for (m, per_unit) in v.bom(p) {
                *need
                    .entry((run.factory.clone(), s.materials[*m].id.clone()))
                    .or_default() += per_unit * run.quantity as f64;
            }
        }
        let w = match orders.iter_mut().find(|w| w.factory_id == run.factory) {
            Some(w) => w,
            None => {
                orders.push(NewWorkOrder {
                    factory_id: run.factory.clone(),
                    runs: Vec::new(),
                    materials: Vec::new(),
                    due_at: now,
                });
                orders.last_mut().expect("just pushed")
            }
        };
        let sku = products
            .by_product
            .get(&run.sku)
            .map_or_else(|| run.sku.clone(), |(sku, _)| sku.clone());
        // Two variants of one sku at one factory are one run for the factory.
        if let Some(r) = w.runs.iter_mut().find(|r| r.sku == sku) {
            r.quantity += run.quantity;
            r.batches.extend(batches);
            continue;
        }
        w.runs.push(WorkOrderRun {
            sku,
            quantity: run.quantity,
            batches,
        });
    }

    // Sources per material: stock first, then purchases.
    let mut sources: BTreeMap<String, Vec<(Option<String>, f64)>> = BTreeMap::new();
    for m in &s.materials {
        sources
            .entry(m.id.clone())
            .or_default()
            .push((None, m.on_hand));
    }
    for p in &plan.purchases {
        sources
            .entry(p.material.clone())
            .or_default()
            .push((Some(p.supplier.clone()), p.quantity));
    }
    let mut reserved: BTreeMap<String, f64> = BTreeMap::new();
    let lead = |supplier: &str| {
        s.suppliers
            .iter()
            .find(|x| x.id == supplier)
            .map_or(0, |x| x.lead_days)
    };
    for w in &mut orders {
        let mut wait_days = 0i64;
        for ((factory, material), qty) in need.iter().filter(|((f, _), _)| *f == w.factory_id) {
            let _ = factory;
            let mut left = *qty;
            for (from, have) in sources.get_mut(material).into_iter().flatten() {
                if left <= 1e-9 {
                    break;
                }
                let take = have.min(left);
                if take <= 1e-9 {
                    continue;
                }
                *have -= take;
                left -= take;
                match from {
                    None => *reserved.entry(material.clone()).or_default() += take,
                    Some(sup) => wait_days = wait_days.max(lead(sup)),
                }
                match w
                    .materials
                    .iter_mut()
                    .find(|d| &d.material == material && d.supplier == *from)
                {
                    Some(d) => d.quantity += take,
                    None => w.materials.push(MaterialDelivery {
                        material: material.clone(),
                        supplier: from.clone(),
                        quantity: take,
                    }),
                }
            }
        }
        let work_days = (hours.get(&w.factory_id).copied().unwrap_or(0.0) / 8.0).ceil() as i64;
        w.due_at = now + chrono::Duration::days(wait_days + work_days.max(1));
    }
    (orders, reserved.into_iter().collect())
}

/// The scheduled cycles: every `every` (if not zero), and whenever at least `when_waiting`
/// batches wait (if not zero; checked each second). A scheduled cycle is skipped when the
/// queue and the catalogue are exactly as at the last cycle that left batches queued
/// (an infeasible cycle is not repeated until something changes).
pub async fn run_schedule(
    cycles: Arc<PlanningCycles>,
    every: Duration,
    when_waiting: usize,
    stop: impl std::future::Future<Output = ()>,
) {
    if every.is_zero() && when_waiting == 0 {
        stop.await;
        return;
    }
    let tick = if when_waiting > 0 {
        Duration::from_secs(1)
    } else {
        every
    };
    let mut last_full = tokio::time::Instant::now();
    let mut last_tried: Option<(Vec<BatchId>, i64)> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let queue = match cycles.store.planning_queue().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "planning schedule: cannot read the queue");
                continue;
            }
        };
        let due = !every.is_zero() && last_full.elapsed() >= every;
        let enough = when_waiting > 0 && queue.len() >= when_waiting;
        if queue.is_empty() || !(due || enough) {
            continue;
        }
        last_full = tokio::time::Instant::now();
        let version = match cycles.store.catalogue().await {
            Ok(c) => c.version,
            Err(_) => continue,
        };
        let state = (queue.iter().map(|q| q.batch.id.clone()).collect(), version);
        if last_tried.as_ref() == Some(&state) {
            continue;
        }
        match cycles.run(None).await {
            Ok(CycleOutcome::Planned {
                status: PlanStatus::Infeasible,
                plan_id,
            }) => {
                tracing::warn!(plan = %plan_id, "scheduled cycle infeasible; batches stay queued");
                last_tried = Some(state);
            }
            Ok(outcome) => {
                tracing::info!(?outcome, "scheduled cycle");
                last_tried = None;
            }
            Err(e) => tracing::warn!(error = %e, "scheduled cycle failed"),
        }
    }
}
