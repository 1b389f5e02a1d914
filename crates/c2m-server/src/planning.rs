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

use c2m_domain::ids::PurchaseOrderId;
use c2m_domain::{BatchId, Clock, Currency, DomainError, IdempotencyKey, Refusal};
use c2m_planner as planner;
use c2m_store::catalogue::{
    CatalogueFactory, CatalogueMaterial, CatalogueProduct, CatalogueSupplier, FactoryCalendar,
    FactoryLine, OfferPriceBreak, SupplierOffer,
};
use c2m_store::planning::{
    Allocation, MaterialDelivery, NewWorkOrder, RunBatch, RunSchedule, WorkOrder, WorkOrderRun,
};
use c2m_store::{
    Catalogue, CatalogueCheck, NewPlan, NewPurchaseOrder, PlanDetail, PlanStatus, PurchaseOrder,
    QueuedBatch, Store, StoreError,
};

use crate::config::PlanHorizon;

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
                // A calendar belongs to a horizon: a cycle's scenario sets both.
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

/// A scenario as catalogue entries (its demand is dropped). A version 2 scenario's
/// factory calendars are dated: period 0 starts at `calendars_start`, or, when `None`, at
/// the moment the store applies the change.
///
/// A version 2 scenario's periods must be the server's (`--plan-period-days`):
/// `capacity_hours` are hours per period, so a scenario in days imported into a server
/// planning in weeks would give each week a day's hours.
pub fn catalogue_of(
    s: &planner::Scenario,
    calendars_start: Option<DateTime<Utc>>,
    horizon: PlanHorizon,
) -> Result<Catalogue, DomainError> {
    if let Some(h) = &s.horizon {
        if h.period_days != horizon.period_days {
            return Err(DomainError::invalid(
                "horizon.period_days",
                format!(
                    "the server plans in periods of {} days (--plan-period-days) and \
                     capacity_hours are hours per period; the scenario's periods are {} days",
                    horizon.period_days, h.period_days
                ),
            ));
        }
    }
    // The scenario contract asks only for three capital letters; the service holds the
    // catalogue to the rule campaigns are held to, or a catalogue in a made-up code (`ABC`)
    // was imported and then no campaign could be created on it: not in `ABC` (no ISO 4217
    // currency), not in any other (`CURRENCY_MISMATCH`).
    let currency = Currency::parse(&s.currency)?;
    let period_days = s.horizon.as_ref().map(|h| h.period_days);
    Ok(Catalogue {
        version: 0,
        name: s.name.clone(),
        currency: Some(currency.as_str().to_owned()),
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
                // Hours per period of this server: kept with them, so that a cycle in
                // other periods (another replica's, a restart's) reads the same hours.
                capacity_period_days: Some(horizon.period_days),
                calendar: f.calendar.clone().map(|hours| FactoryCalendar {
                    hours,
                    period_days,
                    starts_at: calendars_start,
                }),
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
    })
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
/// demand, follows the scenario rules, and each factory calendar has one number (hours,
/// not negative) per period of the planning horizon.
/// A factory's calendar stored before calendars had dates (it counts from each cycle's
/// start) has one number per period of `horizon`: once the periods change, which week it
/// closes is not known. A dated calendar fits any horizon.
pub fn check_calendar(f: &CatalogueFactory, horizon: PlanHorizon) -> Result<(), DomainError> {
    match &f.calendar {
        Some(c) if c.period_days.is_none() && c.hours.len() as i64 != horizon.periods => {
            Err(Refusal::CalendarHorizonMismatch {
                factory: f.id.clone(),
                calendar_periods: c.hours.len() as i64,
                periods: horizon.periods,
                period_days: horizon.period_days,
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// Every id the catalogue defines is a name a request can give back as it is
/// ([`c2m_domain::ids::parse_name`]): a product, factory or supplier whose id could not be
/// named in `DeleteCatalogueEntry`, a factory's token or a filter would be stuck there.
fn catalogue_names(c: &Catalogue) -> Result<(), DomainError> {
    let ids = (c
        .products
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("products[{i}].sku"), &p.sku)))
    .chain(
        c.materials
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("materials[{i}].id"), &m.id)),
    )
    .chain(
        c.factories
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("factories[{i}].id"), &f.id)),
    )
    .chain(
        c.suppliers
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("suppliers[{i}].id"), &s.id)),
    );
    for (field, id) in ids {
        if c2m_domain::ids::parse_name(&field, id)? != *id {
            return Err(DomainError::invalid(
                field,
                "must not start or end with a space",
            ));
        }
    }
    Ok(())
}

/// The check every catalogue change passes ([`CatalogueCheck`], given the catalogue before
/// the change and after it): names a request can give back, calendars with one number per
/// period of `horizon` when undated and hours that are numbers, the scenario rules, whole
/// pieces, and calendars that fit one scenario ([`calendars_span_rule`]).
pub fn catalogue_check(horizon: PlanHorizon) -> CatalogueCheck {
    Arc::new(move |before: &Catalogue, c: &Catalogue| {
        catalogue_names(c)?;
        for (i, f) in c.factories.iter().enumerate() {
            let Some(cal) = &f.calendar else { continue };
            if cal.period_days.is_none() && cal.hours.len() as i64 != horizon.periods {
                return Err(DomainError::invalid(
                    format!("factories[{i}].calendar"),
                    format!(
                        "a calendar needs one number per planning period: {} periods of {} \
                         days (--plan-horizon-days, --plan-period-days), got {}",
                        horizon.periods,
                        horizon.period_days,
                        cal.hours.len()
                    ),
                ));
            }
            if let Some(t) = cal.hours.iter().position(|h| !(h.is_finite() && *h >= 0.0)) {
                return Err(DomainError::invalid(
                    format!("factories[{i}].calendar[{t}]"),
                    format!("hours must be a number, not negative, got {}", cal.hours[t]),
                ));
            }
            if let Some(days) = cal.period_days {
                if days < 1 {
                    return Err(DomainError::invalid(
                        format!("factories[{i}].calendar"),
                        "a calendar's periods are at least a day",
                    ));
                }
            }
        }
        let s = scenario_of(c, None)?;
        s.validate().map_err(|e| scenario_error(&e))?;
        whole_pieces(c)?;
        deadline_with_calendars_rule(before, c)?;
        calendars_span_rule(before, c, horizon.period_days)
    })
}

/// A catalogue holds `material_deadline_days` (version 1) or factory calendars (version 2),
/// not both: no scenario has both, so `ExportScenario` would lose one of them on the way
/// back (it wrote version 1 without the calendars: an export edited and imported with
/// `Replace` opened the closed weeks). The change that would make the pair is refused
/// (`DEADLINE_WITH_CALENDARS`): a version 2 file merged into a catalogue imported from a
/// version 1 file with a deadline, or a version 1 file with a deadline merged into one
/// with calendars. A catalogue an older server left with both is not refused for changes
/// that keep it so (its export stays version 1, as documented); a change that keeps both
/// and was not already both is.
fn deadline_with_calendars_rule(before: &Catalogue, after: &Catalogue) -> Result<(), DomainError> {
    fn both(c: &Catalogue) -> Option<(i64, &str)> {
        let calendared = c.factories.iter().find(|f| f.calendar.is_some())?;
        Some((c.material_deadline_days?, calendared.id.as_str()))
    }
    match both(after) {
        Some((days, factory)) if both(before).is_none() => Err(Refusal::DeadlineWithCalendars {
            material_deadline_days: days,
            factory: factory.to_owned(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Every quantity of a material counted in pieces the catalogue holds is whole: its stock
/// on hand and its offers' pack size, minimum order, maximum and price break thresholds
/// (`c2m_domain::material`), as a receipt of it must be (`ReceivePurchaseOrder`). Checked
/// after the planner's rules, which refuse a negative or non-finite number first.
fn whole_pieces(c: &Catalogue) -> Result<(), DomainError> {
    use c2m_domain::material::{check_quantity, counted_in_pieces};
    let mut pieces = std::collections::HashMap::new();
    for (i, m) in c.materials.iter().enumerate() {
        check_quantity(
            &format!("materials[{i}].on_hand"),
            &m.id,
            &m.unit,
            m.on_hand,
        )?;
        if counted_in_pieces(&m.unit) {
            pieces.insert(m.id.as_str(), m.unit.as_str());
        }
    }
    for (i, s) in c.suppliers.iter().enumerate() {
        for (j, o) in s.offers.iter().enumerate() {
            let Some(unit) = pieces.get(o.material.as_str()) else {
                continue;
            };
            let at = |f: &str| format!("suppliers[{i}].offers[{j}].{f}");
            let check = |f: &str, v: f64| check_quantity(&at(f), &o.material, unit, v);
            check("moq", o.moq)?;
            if let Some(p) = o.pack_size {
                check("pack_size", p)?;
            }
            if let Some(m) = o.max_qty {
                check("max_qty", m)?;
            }
            for (k, b) in o.breaks.iter().enumerate() {
                check(&format!("breaks[{k}].min_qty"), b.min_qty)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Cycles

/// Runs planning cycles; shared by `RunPlanning` and the scheduler.
pub struct PlanningCycles {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    time_limit: Duration,
    /// How far ahead and in which periods a cycle plans (`--plan-horizon-days`,
    /// `--plan-period-days`).
    horizon: PlanHorizon,
    /// Woken when a plan (with work orders) is stored.
    deliveries: crate::services::factory::Deliveries,
    /// One cycle at a time in this process.
    running: Mutex<()>,
    /// How many cycles run for calls in tasks of their own ([`PlanningCycles::spawn`]).
    detached: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Counts a detached cycle from its spawn until its task ends (or is dropped).
struct Detached(Arc<tokio::sync::watch::Sender<usize>>);

impl Detached {
    fn new(count: &Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Detached(count.clone())
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// What a cycle did.
#[derive(Debug, Clone, PartialEq)]
pub enum CycleOutcome {
    /// Nothing to plan: nothing waits, or what waits is due after the horizon
    /// (`due_later`) or no factory may make it (`no_factory`).
    Idle {
        due_later: usize,
        no_factory: usize,
    },
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
        horizon: PlanHorizon,
        deliveries: crate::services::factory::Deliveries,
    ) -> Self {
        PlanningCycles {
            store,
            clock,
            time_limit,
            horizon,
            deliveries,
            running: Mutex::new(()),
            detached: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Runs a cycle with `key` in a task of its own (see `RunPlanning`: a call that ends
    /// early must not drop the cycle), counted until it ends so that a stop waits for it
    /// ([`PlanningCycles::settled`]).
    pub fn spawn(
        self: &Arc<Self>,
        key: IdempotencyKey,
    ) -> tokio::task::JoinHandle<Result<CycleOutcome, CycleError>> {
        let (cycles, counted) = (self.clone(), Detached::new(&self.detached));
        tokio::spawn(async move {
            let _counted = counted;
            cycles.run(Some(key)).await
        })
    }

    /// Resolves once no detached cycle runs. A stop waits for this (within its grace):
    /// a cycle whose caller had gone away was otherwise dropped at exit, after its solve
    /// had run, with its plan never stored, so that the retry with its key solved again.
    pub async fn settled(&self) {
        let mut count = self.detached.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Runs a cycle over every waiting batch due within the horizon. With a key, a cycle
    /// already run with it is not run again: its plan is returned.
    #[tracing::instrument(skip(self))]
    pub async fn run(&self, key: Option<IdempotencyKey>) -> Result<CycleOutcome, CycleError> {
        let _one = self.running.lock().await;
        if let Some(done) = self.replayed(key.as_ref()).await? {
            return Ok(done);
        }
        let now = self.clock.now();
        let world = World {
            now,
            horizon: self.horizon,
            purchase_orders: self.store.outstanding_purchase_orders().await?,
            frozen: self.store.frozen_work_orders().await?,
        };
        let catalogue = self.store.catalogue().await?;
        let (queue, later): (Vec<QueuedBatch>, Vec<QueuedBatch>) = self
            .store
            .planning_queue()
            .await?
            .into_iter()
            .partition(|q| world.in_horizon(q.due_at));
        let (queue, stuck): (Vec<QueuedBatch>, Vec<QueuedBatch>) = queue
            .into_iter()
            .partition(|q| makeable(&catalogue, &q.sku, &q.excluded_factories));
        for q in &stuck {
            tracing::warn!(
                batch = %q.batch.id, sku = %q.sku, excluded = ?q.excluded_factories,
                "no factory may make this batch (every factory with a line for its sku \
                 rejected it): left out of planning until the catalogue gains a line for it"
            );
        }
        if queue.is_empty() {
            // A cycle run with this key on another replica may have taken the batches
            // since the key was looked up: its plan is the answer, not "nothing to plan".
            if let Some(done) = self.replayed(key.as_ref()).await? {
                return Ok(done);
            }
            return Ok(CycleOutcome::Idle {
                due_later: later.len(),
                no_factory: stuck.len(),
            });
        }
        let (mut scenario, products) = cycle_scenario(&catalogue, &queue, &world)?;
        scenario.name = format!("cycle-{}", now.format("%Y%m%dT%H%M%SZ"));
        let validated = scenario.clone().validate()?;
        let opts = planner::SolveOptions {
            time_limit: self.time_limit,
            shadow_prices: false,
            ..planner::SolveOptions::default()
        };
        let solving = validated.clone();
        let solve = tokio::task::spawn_blocking(move || planner::plan(&solving, &opts));
        let limit = self.time_limit;
        let plan = watched(solve, overrun_warning(limit), |ran| {
            tracing::warn!(
                ran_s = ran.as_secs(),
                limit_s = limit.as_secs_f64(),
                batches = queue.len(),
                "the planning solve is still running, far past its time limit: the solver \
                 is not answering its clock; this process plans nothing else until it returns"
            )
        })
        .await
        .map_err(|e| CycleError::Join(e.to_string()))??;
        tracing::info!(
            status = %plan.status,
            total = ?(plan.status != planner::PlanStatus::Infeasible).then_some(plan.total_cost),
            batches = queue.len(),
            purchases = plan.purchases.len(),
            solver = %plan.solver,
            "cycle planned"
        );
        let new = new_plan(
            key, &catalogue, &scenario, &validated, &plan, &queue, &products, &world,
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

    /// The plan a cycle already run with `key` stored (on any replica), if any.
    async fn replayed(
        &self,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<CycleOutcome>, CycleError> {
        let Some(k) = key else { return Ok(None) };
        let Some(plan_id) = self.store.replayed_plan(k).await? else {
            return Ok(None);
        };
        let p = self.store.get_plan(&plan_id).await?;
        Ok(Some(CycleOutcome::Planned {
            plan_id,
            status: p.summary.status,
        }))
    }
}

/// When a solve still running counts as overrunning its time limit: twice the limit,
/// and at least [`OVERRUN_GRACE`] past it. A solver may overshoot its limit a little
/// (it looks at the clock between steps, and the start search and the explanations come
/// on top), so the watch allows that before it says anything.
pub fn overrun_warning(limit: Duration) -> Duration {
    (limit * 2).max(limit + OVERRUN_GRACE)
}

/// How far past its time limit a solve may run before [`watched`] warns.
pub const OVERRUN_GRACE: Duration = Duration::from_secs(30);

/// Awaits a solve on its blocking thread, calling `overrunning` with the time it has run
/// when it passes `first` and again each time that doubles, until it returns.
///
/// Why a watch and not a timeout: a blocking thread cannot be stopped from outside, so
/// abandoning the solve would leave it burning a core while the next cycle started
/// another. Solvers end themselves at their time limit; when one does not (HiGHS did
/// not, once, inside a heuristic that never looked at the clock: docs/planning-time.md),
/// the cycle must not go quiet. The warnings say it is stuck, in the log an operator
/// watches, and the cycle goes on waiting for the answer.
pub async fn watched<T>(
    mut solve: tokio::task::JoinHandle<T>,
    first: Duration,
    mut overrunning: impl FnMut(Duration),
) -> Result<T, tokio::task::JoinError> {
    let started = tokio::time::Instant::now();
    let mut next = first;
    loop {
        match tokio::time::timeout_at(started + next, &mut solve).await {
            Ok(answer) => return answer,
            Err(_) => {
                overrunning(started.elapsed());
                next *= 2;
            }
        }
    }
}

/// Whether some factory may make the batch: one with a line for its sku that has not
/// rejected it. A batch no factory may make is left out of the cycle (it stays queued):
/// in the cycle it would make the whole plan infeasible, holding back every other batch
/// until an admin cancelled its campaign.
/// (A sku that left the catalogue is not judged here: the cycle refuses it by name,
/// `WAITING_SKU_NOT_IN_CATALOGUE`.)
fn makeable(c: &Catalogue, sku: &str, excluded: &[String]) -> bool {
    let known = c.products.iter().any(|p| p.sku == sku);
    !known
        || c.factories
            .iter()
            .any(|f| !excluded.contains(&f.id) && f.lines.iter().any(|l| l.sku == sku))
}

/// The world a cycle plans in: when it plans, its horizon, and what is already decided
/// (purchase orders still to arrive, work orders released to factories).
#[derive(Debug, Clone)]
pub struct World {
    pub now: DateTime<Utc>,
    pub horizon: PlanHorizon,
    pub purchase_orders: Vec<PurchaseOrder>,
    pub frozen: Vec<WorkOrder>,
}

impl World {
    fn period_length(&self) -> chrono::Duration {
        chrono::Duration::days(self.horizon.period_days)
    }

    /// Where period `t` starts.
    pub fn period_start(&self, t: i64) -> DateTime<Utc> {
        self.now + self.period_length() * (t as i32)
    }

    /// Whether a batch due at `due` is planned by this cycle: due by the horizon's end.
    /// (Later batches wait for a later cycle, when their due date comes into it.)
    pub fn in_horizon(&self, due: DateTime<Utc>) -> bool {
        due <= self.period_start(self.horizon.periods)
    }

    /// The period a batch due at `due` must be made in: the last period that ends by the
    /// end of its promised day ([`c2m_domain::promised_day_end`]; 0 when even the first
    /// ends after it: it cannot be on time).
    pub fn due_period(&self, due: DateTime<Utc>) -> i64 {
        let whole = (c2m_domain::promised_day_end(due) - self.now)
            .num_seconds()
            .div_euclid(self.period_length().num_seconds());
        (whole - 1).clamp(0, self.horizon.periods - 1)
    }

    /// The period material expected at `at` can first be used in: the first that starts
    /// at or after it (0 when it is overdue). `None` beyond the horizon.
    pub fn arrival_period(&self, at: DateTime<Utc>) -> Option<i64> {
        let secs = (at - self.now).num_seconds().max(0);
        let len = self.period_length().num_seconds();
        let t = (secs + len - 1) / len;
        (t < self.horizon.periods).then_some(t)
    }

    /// Each factory's hours per period: its calendar (or capacity) less the hours of
    /// released runs, spread evenly over their dates.
    ///
    /// A calendar is dates: each period of the cycle gets the hours of the calendar's
    /// periods it overlaps, in proportion to the overlap, so a closed week stays closed on
    /// its dates however the cycle's periods fall (a cycle starting mid-week sees half of
    /// it in each of two periods), and on dates the calendar does not cover the factory
    /// has `capacity_hours` (for a calendar, its largest period's). A calendar stored
    /// before calendars had dates counts from the cycle's start, and one of another length
    /// than the horizon is refused ([`check_calendar`]), not replaced by the capacity:
    /// that would drop the weeks it closes without a word.
    fn calendar(&self, f: &CatalogueFactory) -> Result<Vec<f64>, DomainError> {
        check_calendar(f, self.horizon)?;
        let periods = self.horizon.periods as usize;
        let mut hours = match &f.calendar {
            Some(c) => {
                // Undated: the cycle's own periods, as such a calendar always counted.
                let dates = c.dates().unwrap_or((self.now, self.period_length()));
                hours_over(
                    c,
                    dates,
                    capacity_per(f, dates.1),
                    self.now,
                    self.period_length(),
                    periods,
                )
            }
            None => vec![capacity_per(f, self.period_length()); periods],
        };
        for run in self
            .frozen
            .iter()
            .filter(|w| w.order.factory_id == f.id)
            .flat_map(|w| &w.order.runs)
        {
            let Some(s) = &run.schedule else { continue };
            let span = (s.ends_at - s.starts_at).num_seconds().max(1) as f64;
            for (t, h) in hours.iter_mut().enumerate() {
                let (a, b) = (self.period_start(t as i64), self.period_start(t as i64 + 1));
                let overlap = (s.ends_at.min(b) - s.starts_at.max(a)).num_seconds().max(0) as f64;
                *h = (*h - s.hours * overlap / span).max(0.0);
            }
        }
        Ok(hours)
    }
}

/// Where a calendar's period 0 starts, and its periods' length.
type CalendarDates = (DateTime<Utc>, chrono::Duration);

/// Sets the flat `capacity_hours` of `s`, made from `c` by [`scenario_of`], to hours per
/// period of `period_days` (see [`capacity_per`]): what a one-period plan of this server
/// may use, whichever period the catalogue's hours were imported in.
pub fn hours_per_period(s: &mut planner::Scenario, c: &Catalogue, period_days: i64) {
    let length = chrono::Duration::days(period_days);
    for (f, cf) in s.factories.iter_mut().zip(&c.factories) {
        f.capacity_hours = capacity_per(cf, length);
    }
}

/// A factory's flat capacity as hours per period of `length`: its `capacity_hours` count
/// per period of the server that imported them (`capacity_period_days`), so a cycle or an
/// export in other periods scales them by the days. A factory stored before the store kept
/// that period has its hours per period of whoever reads them, as it always had.
fn capacity_per(f: &CatalogueFactory, length: chrono::Duration) -> f64 {
    match f.capacity_period_days {
        Some(days) if length != chrono::Duration::days(days) => {
            f.capacity_hours * length.num_seconds() as f64 / (days * 86_400) as f64
        }
        _ => f.capacity_hours,
    }
}

/// A calendar's hours over `periods` periods of `length` from `from`: each period gets the
/// hours of the calendar periods it overlaps, in proportion, and `capacity` per period
/// length for the time the calendar does not cover. `dates` are where the calendar's period
/// 0 starts and how long its periods are. Where the periods line up with the calendar's,
/// the hours are the calendar's own, exactly.
fn hours_over(
    c: &FactoryCalendar,
    (first, len): CalendarDates,
    capacity: f64,
    from: DateTime<Utc>,
    length: chrono::Duration,
    periods: usize,
) -> Vec<f64> {
    let start = |j: usize| first + len * (j as i32);
    let end = start(c.hours.len());
    let len = len.num_seconds() as f64;
    (0..periods as i32)
        .map(|t| {
            let (a, b) = (from + length * t, from + length * (t + 1));
            let overlap = |from: DateTime<Utc>, to: DateTime<Utc>| {
                (b.min(to) - a.max(from)).num_seconds().max(0) as f64
            };
            let dated: f64 = (c.hours.iter().enumerate())
                .map(|(j, h)| h * overlap(start(j), start(j + 1)) / len)
                .sum();
            let undated = (b - a).num_seconds() as f64 - overlap(first, end);
            dated + capacity * undated / len
        })
        .collect()
}

/// The catalogue as `ExportScenario` writes it, and where its calendars start.
///
/// Without factory calendars this is [`scenario_of`]: a version 1 scenario. With them, a
/// version 2 scenario, so that an export edited and imported again keeps the weeks each
/// factory closes (a version 1 file has no calendars: the import would drop them). Its
/// periods are the server's (`--plan-period-days`, which an import requires), period 0
/// starts at the earliest calendar's start (returned, to pass back as
/// `calendar_starts_at`), and there are as many periods as reach the last calendar's end;
/// each calendar is given over those periods, its own hours where its periods line up
/// with them (as they do for calendars imported into this server), and the factory's
/// capacity in the periods it does not cover. A calendar stored before calendars had dates
/// is given as a cycle run now reads it. A catalogue with `material_deadline_days` cannot
/// be a version 2 scenario and is exported as version 1, without its calendars: imports no
/// longer make that pair ([`deadline_with_calendars_rule`]), but an older server's may hold
/// it.
///
/// Calendars so far apart that the scenario would have more periods than a scenario may
/// ([`planner::validate::MAX_PERIODS`]) are refused (`CALENDARS_SPAN_TOO_LONG`, naming
/// the factory whose calendar starts first and the one whose calendar ends last): such
/// an export could not be imported back, and dropping a calendar's dates to fit would
/// lose them on the way back without a word.
pub fn export_of(
    c: &Catalogue,
    now: DateTime<Utc>,
    period_days: i64,
) -> Result<(planner::Scenario, Option<DateTime<Utc>>), DomainError> {
    let mut s = scenario_of(c, None)?;
    let length = chrono::Duration::days(period_days);
    // The file's `capacity_hours` are hours per period of this server, as an import of
    // it will read them.
    hours_per_period(&mut s, c, period_days);
    let calendars = dated_calendars(c, Some(now), length);
    let Some(span) = calendars_span(&calendars, length) else {
        return Ok((s, None));
    };
    if c.material_deadline_days.is_some() {
        return Ok((s, None));
    }
    // More periods than a scenario may have would be an export that cannot be imported
    // back: refused, naming the calendars that span it, rather than written.
    if span.periods > planner::validate::MAX_PERIODS {
        return Err(span.refusal(c, period_days).into());
    }
    let start = span.starts_at;
    let step = length.num_seconds();
    let periods = span.periods.max(1) as usize;
    let mut given: Vec<(usize, Vec<f64>)> = calendars
        .iter()
        .map(|cal| {
            let &(i, k, dates) = cal;
            let periods = ((calendar_end(cal) - start).num_seconds() + step - 1) / step;
            let capacity = capacity_per(&c.factories[i], dates.1);
            (
                i,
                hours_over(k, dates, capacity, start, length, periods as usize),
            )
        })
        .collect();
    for (i, hours) in &mut given {
        hours.resize(periods, capacity_per(&c.factories[*i], length));
        s.factories[*i].calendar = Some(std::mem::take(hours));
    }
    s.horizon = Some(planner::Horizon {
        periods: periods as i64,
        period_days,
    });
    Ok((s, Some(start)))
}

/// A factory's calendar with its dates: (the factory's index, the calendar, its dates).
type DatedCalendar<'a> = (usize, &'a FactoryCalendar, CalendarDates);

/// The factories' calendars with their dates. A calendar stored before calendars had
/// dates counts from each cycle's start: it is given from `undated_from` in periods of
/// `length`, as a cycle run then reads it, or left out without `undated_from` (its dates
/// move with the cycles, so no date of it is fixed).
fn dated_calendars(
    c: &Catalogue,
    undated_from: Option<DateTime<Utc>>,
    length: chrono::Duration,
) -> Vec<DatedCalendar<'_>> {
    (c.factories.iter().enumerate())
        .filter_map(|(i, f)| {
            let k = f.calendar.as_ref()?;
            let dates = k.dates().or_else(|| Some((undated_from?, length)))?;
            Some((i, k, dates))
        })
        .collect()
}

/// Where a dated calendar's last period ends.
fn calendar_end(&(_, k, (first, len)): &DatedCalendar<'_>) -> DateTime<Utc> {
    first + len * (k.hours.len() as i32)
}

/// The time the factories' calendars cover together, from the calendar that starts first
/// to the one that ends last.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CalendarsSpan {
    /// The factory (its index) whose calendar starts first, and where.
    first: usize,
    starts_at: DateTime<Utc>,
    /// The factory whose calendar ends last, and where.
    last: usize,
    ends_at: DateTime<Utc>,
    /// Periods of the server's length from `starts_at` to `ends_at`, the last one partly.
    periods: i64,
}

impl CalendarsSpan {
    fn refusal(&self, c: &Catalogue, period_days: i64) -> Refusal {
        Refusal::CalendarsSpanTooLong {
            first_factory: c.factories[self.first].id.clone(),
            starts_at: self.starts_at,
            last_factory: c.factories[self.last].id.clone(),
            ends_at: self.ends_at,
            periods: self.periods,
            max_periods: planner::validate::MAX_PERIODS,
            period_days,
        }
    }
}

/// The span of `calendars` in periods of `length`; `None` without calendars.
fn calendars_span(
    calendars: &[DatedCalendar<'_>],
    length: chrono::Duration,
) -> Option<CalendarsSpan> {
    let first = calendars.iter().min_by_key(|c| c.2 .0)?;
    let last = calendars.iter().max_by_key(|c| calendar_end(c))?;
    let (starts_at, ends_at) = (first.2 .0, calendar_end(last));
    let step = length.num_seconds();
    Some(CalendarsSpan {
        first: first.0,
        starts_at,
        last: last.0,
        ends_at,
        periods: ((ends_at - starts_at).num_seconds() + step - 1) / step,
    })
}

/// The factories' calendars must fit one scenario: from the start of the calendar that
/// starts first to the end of the one that ends last, at most
/// [`planner::validate::MAX_PERIODS`] periods of the server's length, so that
/// `ExportScenario` can write them all on their dates in a scenario an import takes back
/// ([`export_of`] refuses otherwise). A change that would leave them further apart is
/// refused (`CALENDARS_SPAN_TOO_LONG`, naming the calendars that start first and end
/// last), nothing written. Calendars stored before calendars had dates do not count: they
/// count from each cycle's start, so no date of theirs is fixed (the export gives them
/// from its own moment, and may still refuse for one). A catalogue an older server left
/// spanning further (it accepted any dates) takes changes that do not widen the span, so
/// it can be brought back by importing one of the named factories nearer the others.
fn calendars_span_rule(
    before: &Catalogue,
    after: &Catalogue,
    period_days: i64,
) -> Result<(), DomainError> {
    let length = chrono::Duration::days(period_days);
    let Some(span) = calendars_span(&dated_calendars(after, None, length), length) else {
        return Ok(());
    };
    if span.periods <= planner::validate::MAX_PERIODS {
        return Ok(());
    }
    let was = calendars_span(&dated_calendars(before, None, length), length);
    if was.is_some_and(|was| span.periods <= was.periods) {
        return Ok(());
    }
    Err(span.refusal(after, period_days).into())
}

/// Which queued batches each product of a cycle's scenario makes, and the catalogue sku
/// it stands for.
#[derive(Debug, Default)]
pub struct CycleProducts {
    /// Scenario product -> (catalogue sku, indices into the queue).
    by_product: BTreeMap<String, (String, Vec<usize>)>,
    /// Open purchase orders the scenario counts as receipts: (id, material, period,
    /// quantity), in arrival order.
    receipts: Vec<(String, String, i64, f64)>,
}

impl CycleProducts {
    /// A cycle's diagnosis as people read it: a scenario product that stands for some of
    /// a sku's batches (`kettle~2`: those that factories rejected, planned apart so they
    /// avoid them) is named as the sku and whose batches it is, not by its scenario name.
    fn for_people(&self, d: &planner::Diagnosis) -> planner::Diagnosis {
        let mut names: Vec<(&String, String)> = self
            .by_product
            .iter()
            .filter(|(product, (sku, _))| *product != sku)
            .map(|(product, (sku, _))| {
                (
                    product,
                    format!("{sku} (its batches some factory rejected)"),
                )
            })
            .collect();
        // Longest first, so `kettle~2` does not rename part of `kettle~21`.
        names.sort_by_key(|(product, _)| std::cmp::Reverse(product.len()));
        let rename = |s: &String| {
            names.iter().fold(s.clone(), |s, (product, shown)| {
                s.replace(product.as_str(), shown)
            })
        };
        let mut shown = d.clone();
        shown.reasons = d.reasons.iter().map(rename).collect();
        shown.missing_lines = d.missing_lines.iter().map(rename).collect();
        shown
    }
}

/// The scenario for one cycle (planning model version 2): each queued batch's units due in
/// the last period that ends by its due date, late at the cost of the campaign's unit
/// price per unit and period (so lateness is the last resort, but a promise that cannot
/// be kept still gets a plan, shown late); stock on hand as it is, open purchase orders'
/// free quantities as receipts, factories' calendars less the hours of released work; a
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
    world: &World,
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
    scenario.material_deadline_days = None;
    scenario.horizon = Some(world.horizon.scenario_horizon());
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
        let mut due: BTreeMap<i64, i64> = BTreeMap::new();
        for &i in members {
            *due.entry(world.due_period(queue[i].due_at)).or_default() += queue[i].units_to_plan;
        }
        let units: i64 = due.values().sum();
        let late_cost = members
            .iter()
            .map(|&i| queue[i].unit_price as f64)
            .fold(1.0, f64::max);
        let timed = |mut p: planner::Product| {
            p.demand = units;
            p.due = due
                .iter()
                .map(|(&period, &quantity)| planner::Due { period, quantity })
                .collect();
            p.late_cost = Some(late_cost);
            p
        };
        if *n == 1 {
            if let Some(p) = scenario.products.iter_mut().find(|p| p.sku == *sku) {
                *p = timed(p.clone());
            }
        } else if let Some(base) = scenario.products.iter().find(|p| p.sku == *sku).cloned() {
            scenario.products.push(timed(planner::Product::with_demand(
                name.clone(),
                units,
                base.bom,
            )));
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
        let mut members = members.clone();
        members.sort_by_key(|&i| (queue[i].due_at, i));
        products
            .by_product
            .insert(name, ((*sku).to_owned(), members));
    }
    for f in &mut scenario.factories {
        if let Some(cf) = c.factories.iter().find(|cf| cf.id == f.id) {
            let cal = world.calendar(cf).map_err(StoreError::Domain)?;
            f.capacity_hours = cal.iter().copied().fold(0.0, f64::max);
            f.calendar = Some(cal);
        }
    }
    for po in &world.purchase_orders {
        let free = po.free_to_arrive();
        let Some(m) = scenario
            .materials
            .iter_mut()
            .find(|m| m.id == po.order.material_id)
        else {
            continue;
        };
        let Some(period) = world.arrival_period(po.order.expected_at) else {
            continue;
        };
        if free > 1e-9 {
            m.receipts.push(planner::Receipt {
                period,
                quantity: free,
            });
            products.receipts.push((
                po.order.id.clone(),
                po.order.material_id.clone(),
                period,
                free,
            ));
        }
    }
    products.receipts.sort_by_key(|r| r.2);
    whole_piece_orders(&mut scenario);
    Ok((scenario, products))
}

/// A cycle buys a material counted in pieces ([`c2m_domain::material::counted_in_pieces`])
/// in whole pieces: an offer of one without a pack size is planned with packs of one.
/// The contract's model buys any quantity where no pack size is given, which for a
/// material measured in kilograms is right, but a purchase order for 12.5 housings is
/// not one a supplier can fill (receipts of pieces are whole numbers too). A bill of
/// materials may still use a fraction of a piece per unit (a sheet cut four ways): the
/// need may be fractional, the order is not. The stored scenario shows the packs, so
/// `plan` reproduces the cycle's plan from it. The advice prices volumes the same way.
pub(crate) fn whole_piece_orders(scenario: &mut planner::Scenario) {
    let pieces: Vec<String> = scenario
        .materials
        .iter()
        .filter(|m| c2m_domain::material::counted_in_pieces(&m.unit))
        .map(|m| m.id.clone())
        .collect();
    for offer in scenario.suppliers.iter_mut().flat_map(|s| &mut s.offers) {
        if offer.pack_size.is_none() && pieces.contains(&offer.material) {
            offer.pack_size = Some(1.0);
        }
    }
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

/// The store's record of a cycle: the plan, its scenario, the work orders, the purchase
/// orders and the stock it takes.
#[allow(clippy::too_many_arguments)]
fn new_plan(
    key: Option<IdempotencyKey>,
    catalogue: &Catalogue,
    scenario: &planner::Scenario,
    v: &planner::ValidatedScenario,
    plan: &planner::Plan,
    queue: &[QueuedBatch],
    products: &CycleProducts,
    world: &World,
) -> Result<NewPlan, CycleError> {
    let status = status_of(plan.status);
    let split = if status != PlanStatus::Infeasible {
        work_orders(v, plan, queue, products, world)
    } else {
        Split::default()
    };
    Ok(NewPlan {
        idempotency_key: key,
        status,
        currency: scenario.currency.clone(),
        total_cost: plan.total_cost,
        gap: plan.gap.is_finite().then_some(plan.gap),
        solver: plan.solver.clone(),
        detail: PlanDetail {
            cost_breakdown: to_json(&plan.cost_breakdown)?,
            solve_seconds: plan.solve_seconds,
            diagnosis: plan
                .diagnosis
                .as_ref()
                .map(|d| to_json(&products.for_people(d)))
                .transpose()?,
            scenario: scenario.to_toml_string()?,
            plan: planner::report::render_json(plan),
            catalogue_version: catalogue.version,
            batches: queue.iter().map(|q| q.batch.id.clone()).collect(),
            reservations: split.reservations,
        },
        work_orders: split.work_orders,
        purchase_orders: split.purchase_orders,
        allocations: split.allocations,
    })
}

/// A feasible plan split into what the store keeps.
#[derive(Debug, Default)]
struct Split {
    work_orders: Vec<NewWorkOrder>,
    reservations: Vec<(String, f64)>,
    purchase_orders: Vec<NewPurchaseOrder>,
    allocations: Vec<Allocation>,
}

/// Why units made at `ends` ship after their promised day `due`: the date they ship, how
/// many days late, and the cause the plan shows (a promise inside the first period, the
/// factories' hours taken, or materials that cannot arrive in time).
fn late_reason(
    due: DateTime<Utc>,
    ends: DateTime<Utc>,
    world: &World,
    plan: &planner::Plan,
) -> String {
    let days = c2m_domain::days_late(ends, due);
    let late = format!(
        "ships {} ({days} day{} late)",
        ends.format("%Y-%m-%d"),
        if days == 1 { "" } else { "s" }
    );
    let promised = due.format("%Y-%m-%d");
    let first_end = world.period_start(1);
    // A promise inside the first period: the plan's earliest ship date is that period's end.
    let inside_first = c2m_domain::promised_day_end(due) < first_end;
    if inside_first && ends <= first_end {
        return format!(
            "promised by {promised}, before the end of the first {}-day planning period; \
             {late}",
            world.horizon.period_days,
        );
    }
    let due_period = world.due_period(due) as usize;
    let full: Vec<String> = plan
        .time
        .iter()
        .flat_map(|t| &t.capacity)
        .filter(|c| c.period <= due_period)
        .map(|c| format!("{} in period {}", c.factory, c.period))
        .collect();
    let cause = if full.is_empty() {
        "the materials cannot arrive in time (supplier lead times) or the factories that may \
         make it have no hours then"
            .to_owned()
    } else {
        format!(
            "the factories' hours by then are taken ({})",
            full.join(", ")
        )
    };
    if inside_first {
        format!(
            "promised by {promised}, before the end of the first {}-day planning period, and \
             later than that end because {cause}; {late}",
            world.horizon.period_days,
        )
    } else {
        format!("no plan makes it by {promised}: {cause}; {late}")
    }
}

/// Splits a feasible plan into one work order per factory that runs anything, and its
/// purchases into purchase orders.
///
/// - Runs are taken in period order, and batches go to them earliest due date first,
///   filling each run before the next; a batch that does not fit a run's remainder is
///   split over two runs (two periods or two factories). Each run carries its period's
///   dates; units made after their batch's due date carry the reason.
/// - Materials: each factory needs its runs' BOM quantities; stock on hand is handed out
///   first (that is what the plan reserves), then open purchase orders' free quantities in
///   the order they arrive, then this plan's purchases in the order they are placed (a
///   book-keeping split; the plan itself keeps every period's material balance).
/// - Due date: the end of the factory's last run.
fn work_orders(
    v: &planner::ValidatedScenario,
    plan: &planner::Plan,
    queue: &[QueuedBatch],
    products: &CycleProducts,
    world: &World,
) -> Split {
    let s = v.scenario();
    // Units of each batch still to place, per scenario product, earliest due first.
    let mut open: BTreeMap<&str, Vec<(usize, i64)>> = BTreeMap::new();
    for (product, (_, members)) in &products.by_product {
        open.insert(
            product.as_str(),
            members
                .iter()
                .map(|&i| (i, queue[i].units_to_plan))
                .collect(),
        );
    }
    let mut runs: Vec<&planner::Run> = plan.runs.iter().filter(|r| r.quantity > 0).collect();
    runs.sort_by_key(|r| (r.period.unwrap_or(0), r.factory.clone(), r.sku.clone()));
    let mut orders: Vec<NewWorkOrder> = Vec::new();
    let mut need: BTreeMap<(String, String), f64> = BTreeMap::new(); // (factory, material)
    let mut batches_of: BTreeMap<String, Vec<BatchId>> = BTreeMap::new(); // factory -> batches
    for run in runs {
        let period = run.period.unwrap_or(0) as i64;
        let (starts_at, ends_at) = (world.period_start(period), world.period_start(period + 1));
        let mut batches = Vec::new();
        let mut room = run.quantity;
        if let Some(list) = open.get_mut(run.sku.as_str()) {
            for (i, left) in list.iter_mut() {
                if room == 0 {
                    break;
                }
                let take = (*left).min(room);
                if take > 0 {
                    let q = &queue[*i];
                    batches.push(RunBatch {
                        batch_id: q.batch.id.clone(),
                        units: take,
                        late_reason: (c2m_domain::days_late(ends_at, q.due_at) > 0)
                            .then(|| late_reason(q.due_at, ends_at, world, plan)),
                    });
                    *left -= take;
                    room -= take;
                }
            }
        }
        let mut hours = 0.0;
        if let (Some(f), Some(p)) = (v.factory_index(&run.factory), v.product_index(&run.sku)) {
            if let Some(line) = s.factories[f].lines.iter().find(|l| l.sku == run.sku) {
                hours = line.setup_hours + line.hours_per_unit * run.quantity as f64;
            }
            for (m, per_unit) in v.bom(p) {
                *need
                    .entry((run.factory.clone(), s.materials[*m].id.clone()))
                    .or_default() += per_unit * run.quantity as f64;
            }
        }
        batches_of
            .entry(run.factory.clone())
            .or_default()
            .extend(batches.iter().map(|b| b.batch_id.clone()));
        let w = match orders.iter_mut().find(|w| w.factory_id == run.factory) {
            Some(w) => w,
            None => {
                orders.push(NewWorkOrder {
                    factory_id: run.factory.clone(),
                    runs: Vec::new(),
                    materials: Vec::new(),
                    due_at: ends_at,
                });
                orders.last_mut().expect("just pushed")
            }
        };
        w.due_at = w.due_at.max(ends_at);
        let sku = products
            .by_product
            .get(&run.sku)
            .map_or_else(|| run.sku.clone(), |(sku, _)| sku.clone());
        // Two variants of one sku at one factory in one period are one run for the factory.
        if let Some(r) = w
            .runs
            .iter_mut()
            .find(|r| r.sku == sku && r.schedule.as_ref().map(|x| x.period) == Some(period))
        {
            r.quantity += run.quantity;
            r.batches.extend(batches);
            if let Some(x) = r.schedule.as_mut() {
                x.hours += hours;
            }
            continue;
        }
        w.runs.push(WorkOrderRun {
            sku,
            quantity: run.quantity,
            batches,
            schedule: Some(RunSchedule {
                period,
                starts_at,
                ends_at,
                hours,
            }),
        });
    }

    // This plan's purchases as purchase orders.
    let mut purchase_orders: Vec<NewPurchaseOrder> = plan
        .purchases
        .iter()
        .filter(|p| p.quantity > 1e-9)
        .map(|p| {
            let period = p.period.unwrap_or(0) as i64;
            let ordered_at = world.period_start(period);
            let supplier = s.suppliers.iter().find(|x| x.id == p.supplier);
            let tier = supplier
                .and_then(|x| x.offers.iter().find(|o| o.material == p.material))
                .map_or(0, |o| {
                    o.breaks
                        .iter()
                        .rposition(|b| b.min_qty <= p.quantity + 1e-9)
                        .unwrap_or(0) as i64
                });
            let lead = supplier.map_or(0, |x| x.lead_days);
            NewPurchaseOrder {
                id: PurchaseOrderId::generate().into_string(),
                supplier_id: p.supplier.clone(),
                material_id: p.material.clone(),
                quantity: p.quantity,
                unit_price: p.unit_price,
                tier,
                packs: p.packs,
                order_period: period,
                ordered_at,
                expected_at: ordered_at + chrono::Duration::days(lead),
                batches: Vec::new(),
                allocated: 0.0,
            }
        })
        .collect();
    purchase_orders.sort_by_key(|p| p.order_period);

    // Sources per material: stock first, then open orders, then this plan's orders.
    #[derive(Clone, Copy)]
    enum From {
        Stock,
        Open(usize),
        New(usize),
    }
    let mut sources: BTreeMap<String, Vec<(From, f64)>> = BTreeMap::new();
    for m in &s.materials {
        sources
            .entry(m.id.clone())
            .or_default()
            .push((From::Stock, m.on_hand));
    }
    for (i, (_, material, _, qty)) in products.receipts.iter().enumerate() {
        sources
            .entry(material.clone())
            .or_default()
            .push((From::Open(i), *qty));
    }
    for (i, p) in purchase_orders.iter().enumerate() {
        sources
            .entry(p.material_id.clone())
            .or_default()
            .push((From::New(i), p.quantity));
    }
    let mut reserved: BTreeMap<String, f64> = BTreeMap::new();
    let mut allocations: BTreeMap<String, Allocation> = BTreeMap::new();
    for w in &mut orders {
        for ((_, material), qty) in need.iter().filter(|((f, _), _)| *f == w.factory_id) {
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
                let (supplier, po) = match *from {
                    From::Stock => {
                        *reserved.entry(material.clone()).or_default() += take;
                        (None, None)
                    }
                    From::Open(i) => {
                        let id = products.receipts[i].0.clone();
                        let a = allocations.entry(id.clone()).or_insert_with(|| Allocation {
                            purchase_order: id.clone(),
                            quantity: 0.0,
                            batches: Vec::new(),
                        });
                        a.quantity += take;
                        add_batches(&mut a.batches, batches_of.get(&w.factory_id));
                        let supplier = world
                            .purchase_orders
                            .iter()
                            .find(|p| p.order.id == id)
                            .map(|p| p.order.supplier_id.clone());
                        (supplier, Some(id))
                    }
                    From::New(i) => {
                        let p = &mut purchase_orders[i];
                        p.allocated += take;
                        add_batches(&mut p.batches, batches_of.get(&w.factory_id));
                        (Some(p.supplier_id.clone()), Some(p.id.clone()))
                    }
                };
                match w
                    .materials
                    .iter_mut()
                    .find(|d| &d.material == material && d.purchase_order == po)
                {
                    Some(d) => d.quantity += take,
                    None => w.materials.push(MaterialDelivery {
                        material: material.clone(),
                        supplier,
                        quantity: take,
                        purchase_order: po,
                    }),
                }
            }
        }
    }
    for p in &mut purchase_orders {
        p.allocated = p.allocated.min(p.quantity);
    }
    Split {
        work_orders: orders,
        reservations: reserved.into_iter().collect(),
        purchase_orders,
        allocations: allocations.into_values().collect(),
    }
}

/// Adds the batches of a factory's work order (if it has any) to those a purchase order
/// names, each once.
fn add_batches(to: &mut Vec<BatchId>, of: Option<&Vec<BatchId>>) {
    for b in of.into_iter().flatten() {
        if !to.contains(b) {
            to.push(b.clone());
        }
    }
}

/// The scheduled cycles: every `every` (if not zero), and whenever at least `when_waiting`
/// batches wait (if not zero; checked each second). A scheduled cycle is skipped when the
/// queue and the catalogue are exactly as at the last cycle that left batches queued
/// (an infeasible cycle is not repeated until something changes), and when another
/// replica of the store holds the cycle's turn (`PlanningStore::take_cycle_lease`).
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
    // This replica's name for the cycle's turn, and how long a turn is held at most: the
    // solve's limit and then some for the reads and the plan's write; a replica that
    // dies holding it holds it no longer.
    let owner = format!("schedule-{}", crate::webhooks::hex_id(6));
    // (`--plan-time-limit` is at most a day.)
    let lease = chrono::Duration::from_std(cycles.time_limit).unwrap_or(chrono::Duration::days(1))
        + chrono::Duration::seconds(60);
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
        // The replicas' schedules tick on their own: one of them solves the queue, the
        // others skip this tick (they all solved it, and all but one threw the solve away
        // when storing found the batches planned). Real time, as the webhook worker's
        // leases: a test's business clock may stand still or jump.
        let now = Utc::now();
        match cycles
            .store
            .take_cycle_lease(&owner, now, now + lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("scheduled cycle: another replica is running one");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "planning schedule: cannot take the cycle's turn");
                continue;
            }
        }
        let outcome = cycles.run(None).await;
        if let Err(e) = cycles.store.release_cycle_lease(&owner, Utc::now()).await {
            // It runs out by itself at `now + lease`.
            tracing::warn!(error = %e, "planning schedule: cannot give the cycle's turn up");
        }
        match outcome {
            Ok(CycleOutcome::Planned {
                status: PlanStatus::Infeasible,
                plan_id,
            }) => {
                tracing::warn!(plan = %plan_id, "scheduled cycle infeasible; batches stay queued");
                last_tried = Some(state);
            }
            Ok(CycleOutcome::Idle { .. }) => {
                // Batches wait but none is due within the horizon yet: time will bring
                // them in, so the next tick looks again.
                tracing::debug!("scheduled cycle: nothing due within the horizon");
            }
            Ok(outcome) => {
                tracing::info!(?outcome, "scheduled cycle");
                last_tried = None;
            }
            Err(e) => tracing::warn!(error = %e, "scheduled cycle failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A solve that does not return is reported at the first mark and each time its
    /// running time doubles, and its answer still comes through when it does return.
    #[tokio::test]
    async fn a_solve_past_its_limit_is_reported_until_it_returns() {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let solve = tokio::task::spawn_blocking(move || {
            released.recv().unwrap();
            42
        });
        let mut reports = Vec::new();
        let answer = watched(solve, Duration::from_millis(40), |ran| {
            reports.push(ran);
            if reports.len() == 3 {
                release.send(()).unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(answer, 42);
        assert_eq!(reports.len(), 3, "{reports:?}");
        for (ran, mark) in reports.iter().zip([40, 80, 160]) {
            assert!(*ran >= Duration::from_millis(mark), "{reports:?}");
        }
    }

    /// A solve that returns within its mark is not reported.
    #[tokio::test]
    async fn a_solve_within_its_limit_is_not_reported() {
        let solve = tokio::task::spawn_blocking(|| "plan");
        let mut reports = 0;
        let answer = watched(solve, Duration::from_secs(60), |_| reports += 1).await;
        assert_eq!(answer.unwrap(), "plan");
        assert_eq!(reports, 0);
    }

    /// The mark allows a short limit its grace and a long one as much again.
    #[test]
    fn the_overrun_mark_is_twice_the_limit_and_at_least_the_grace_past_it() {
        assert_eq!(
            overrun_warning(Duration::from_secs(10)),
            Duration::from_secs(40)
        );
        assert_eq!(
            overrun_warning(Duration::from_secs(60)),
            Duration::from_secs(120)
        );
    }

    fn world(frozen: Vec<WorkOrder>) -> World {
        World {
            now: Utc.with_ymd_and_hms(2030, 3, 4, 9, 0, 0).single().unwrap(),
            horizon: PlanHorizon {
                periods: 6,
                period_days: 7,
            },
            purchase_orders: vec![],
            frozen,
        }
    }

    fn days(d: f64) -> chrono::Duration {
        chrono::Duration::seconds((d * 86_400.0) as i64)
    }

    #[test]
    fn due_dates_fall_in_the_last_period_that_ends_by_them() {
        // Periods start at 09:00, the cycle's time; a promise is kept through the end of
        // its day.
        let w = world(vec![]);
        let at = |d: f64| w.now + days(d);
        assert_eq!(w.due_period(at(14.0)), 1, "period 1 ends on day 14");
        assert_eq!(
            w.due_period(at(13.9)),
            1,
            "due at 06:36 on day 14, kept through that day: period 1 ends at 09:00 on it"
        );
        assert_eq!(
            w.due_period(at(13.5)),
            0,
            "due at 21:00 on day 13: its day ends before period 1 does"
        );
        assert_eq!(
            w.due_period(at(3.0)),
            0,
            "before the first period ends: period 0"
        );
        assert_eq!(w.due_period(at(-2.0)), 0, "overdue");
        assert_eq!(
            w.due_period(at(100.0)),
            5,
            "beyond the horizon: its last period"
        );
        assert!(w.in_horizon(at(42.0)) && !w.in_horizon(at(42.0) + days(0.0001)));
        assert!(w.in_horizon(at(-1.0)));
        assert_eq!(w.arrival_period(at(-1.0)), Some(0), "overdue: usable now");
        assert_eq!(w.arrival_period(at(0.0)), Some(0));
        assert_eq!(
            w.arrival_period(at(0.5)),
            Some(1),
            "usable from the next period"
        );
        assert_eq!(w.arrival_period(at(7.0)), Some(1));
        assert_eq!(
            w.arrival_period(at(36.0)),
            None,
            "after the last period starts"
        );
    }

    #[test]
    fn released_runs_take_their_hours_out_of_the_calendar() {
        let now = world(vec![]).now;
        let run = |starts: f64, ends: f64, hours: f64| WorkOrderRun {
            sku: "kettle".into(),
            quantity: 10,
            batches: vec![],
            schedule: Some(RunSchedule {
                period: 0,
                starts_at: now + days(starts),
                ends_at: now + days(ends),
                hours,
            }),
        };
        let wo = WorkOrder {
            id: "wo_1".into(),
            plan_id: "pln_1".into(),
            seq: 1,
            order: NewWorkOrder {
                factory_id: "f1".into(),
                // Half of a week's 14 hours falls before this cycle, half in its period 0;
                // a run a week later takes its 20 hours from period 1.
                runs: vec![run(-3.5, 3.5, 14.0), run(7.0, 14.0, 20.0)],
                materials: vec![],
                due_at: now,
            },
            created_at: now,
            state: c2m_domain::WorkOrderState::Accepted,
            withdrawn: None,
        };
        let w = world(vec![wo]);
        let mut f = CatalogueFactory {
            id: "f1".into(),
            capacity_hours: 40.0,
            capacity_period_days: None,
            lines: vec![],
            calendar: None,
        };
        let cal = w.calendar(&f).unwrap();
        assert_eq!(cal.len(), 6);
        assert!((cal[0] - 33.0).abs() < 1e-9, "{cal:?}");
        assert_eq!(cal[1], 20.0);
        assert_eq!(cal[2..], [40.0; 4]);
        // A closed week stays closed; another factory's work takes nothing here. (A
        // calendar stored before calendars had dates counts from the cycle's start.)
        f.calendar = Some(undated(vec![16.0, 0.0, 40.0, 40.0, 40.0, 40.0]));
        assert_eq!(w.calendar(&f).unwrap()[..2], [9.0, 0.0]);
        f.id = "f2".into();
        assert_eq!(w.calendar(&f).unwrap()[..2], [16.0, 0.0]);
        // A calendar written for another horizon is refused, naming the factory: planning
        // with the capacity instead would open the week it closes.
        f.calendar = Some(undated(vec![16.0, 0.0, 40.0, 40.0]));
        let e = w.calendar(&f).unwrap_err();
        assert_eq!(e.reason(), "CALENDAR_HORIZON_MISMATCH", "{e}");
        assert!(
            e.metadata().contains(&("factoryId", "f2".to_owned())),
            "{e:?}"
        );
        assert!(
            e.metadata().contains(&("calendarPeriods", "4".to_owned())),
            "{e:?}"
        );
    }

    /// A flat capacity counts per period of the server that imported it: a cycle in
    /// fortnights gives a factory of 35 hours a week 70 hours a period, not 35 (a replica
    /// with other periods read it so), and so does the stretch past a dated calendar. A
    /// factory stored before the store kept the period reads as it did.
    #[test]
    fn a_capacity_counts_per_the_period_it_was_imported_in() {
        let in_days = |period_days: i64, periods: i64| World {
            horizon: PlanHorizon {
                periods,
                period_days,
            },
            ..world(vec![])
        };
        let mut f = CatalogueFactory {
            id: "f1".into(),
            capacity_hours: 35.0,
            capacity_period_days: Some(7),
            lines: vec![],
            calendar: None,
        };
        assert_eq!(in_days(7, 2).calendar(&f).unwrap(), [35.0, 35.0]);
        assert_eq!(in_days(14, 2).calendar(&f).unwrap(), [70.0, 70.0]);
        assert_eq!(in_days(1, 2).calendar(&f).unwrap(), [5.0, 5.0]);
        // Two weeks of calendar, the second closed, then the capacity.
        f.calendar = Some(FactoryCalendar {
            hours: vec![40.0, 0.0],
            period_days: Some(7),
            starts_at: Some(in_days(14, 1).now),
        });
        assert_eq!(in_days(14, 2).calendar(&f).unwrap(), [40.0, 70.0]);
        f.calendar = None;
        f.capacity_period_days = None;
        assert_eq!(in_days(14, 2).calendar(&f).unwrap(), [35.0, 35.0]);
    }

    fn undated(hours: Vec<f64>) -> FactoryCalendar {
        FactoryCalendar {
            hours,
            period_days: None,
            starts_at: None,
        }
    }

    /// A calendar is dates: as cycles run later, the week it closes stays on its dates
    /// (not four weeks from whenever the cycle runs), a cycle starting mid-week sees the
    /// closure split between two of its periods, and dates the calendar does not cover
    /// get the factory's capacity. It fits any horizon.
    #[test]
    fn a_dated_calendar_keeps_its_closed_week_on_its_dates() {
        let imported = world(vec![]).now;
        let f = CatalogueFactory {
            id: "f1".into(),
            capacity_hours: 40.0,
            capacity_period_days: None,
            lines: vec![],
            // Four weeks from the import, the fourth closed.
            calendar: Some(FactoryCalendar {
                hours: vec![40.0, 30.0, 40.0, 0.0],
                period_days: Some(7),
                starts_at: Some(imported),
            }),
        };
        let at = |offset: f64, periods: i64| World {
            now: imported + days(offset),
            horizon: PlanHorizon {
                periods,
                period_days: 7,
            },
            ..world(vec![])
        };
        let close = |got: Vec<f64>, want: &[f64]| {
            assert_eq!(got.len(), want.len(), "{got:?}");
            assert!(
                got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9),
                "{got:?} != {want:?}"
            );
        };
        close(
            at(0.0, 6).calendar(&f).unwrap(),
            &[40.0, 30.0, 40.0, 0.0, 40.0, 40.0],
        );
        // Two weeks later the closed week is the cycle's period 1.
        close(at(14.0, 4).calendar(&f).unwrap(), &[40.0, 0.0, 40.0, 40.0]);
        // Half a week later, each period straddles two of the calendar's weeks.
        close(
            at(3.5, 5).calendar(&f).unwrap(),
            &[35.0, 35.0, 20.0, 20.0, 40.0],
        );
        // Long after, the calendar says nothing: the capacity.
        close(at(70.0, 2).calendar(&f).unwrap(), &[40.0, 40.0]);
        // A calendar starting next week: this week has the capacity.
        let mut later = f.clone();
        later.calendar.as_mut().unwrap().starts_at = Some(imported + days(7.0));
        close(at(0.0, 3).calendar(&later).unwrap(), &[40.0, 40.0, 30.0]);
    }

    /// An export of a catalogue with calendars is a version 2 scenario that imports back,
    /// at the start the export names, to calendars every cycle reads the same as before,
    /// whenever it runs (the export wrote version 1 and left calendars out, so an export
    /// edited and imported again dropped every closed week). A second export is the same
    /// text. With `material_deadline_days` (version 1 only) the export stays version 1.
    #[test]
    fn an_export_keeps_calendars_on_their_dates() {
        let s = planner::Scenario::from_toml_str(include_str!(
            "../../../examples/scenarios/kettle-weeks.toml"
        ))
        .unwrap();
        let server = PlanHorizon {
            periods: 6,
            period_days: 7,
        };
        let imported = world(vec![]).now;
        let mut c = catalogue_of(&s, Some(imported), server).unwrap();
        assert!(c.factories[0].calendar.is_some() && c.factories[1].calendar.is_none());
        // A second factory whose calendar was imported two weeks later, and is shorter.
        c.factories[1].calendar = Some(FactoryCalendar {
            hours: vec![10.0, 0.0],
            period_days: Some(7),
            starts_at: Some(imported + days(14.0)),
        });
        let exported_at = imported + days(20.0);
        let (out, start) = export_of(&c, exported_at, 7).unwrap();
        assert_eq!(
            start,
            Some(imported),
            "period 0 is the earliest calendar's start"
        );
        let text = out.to_toml_string().unwrap();
        let back = planner::Scenario::from_toml_str(&text).expect("a valid version 2 scenario");
        assert_eq!(
            back.horizon.as_ref().map(|h| (h.periods, h.period_days)),
            Some((8, 7))
        );
        assert_eq!(
            back.factories[0].calendar, s.factories[0].calendar,
            "its own hours where the periods line up"
        );
        let second = &back.factories[1];
        assert_eq!(
            second.calendar.as_deref(),
            Some(&[35.0, 35.0, 10.0, 0.0, 35.0, 35.0, 35.0, 35.0][..]),
            "the capacity outside its dates"
        );
        let again = catalogue_of(&back, start, server).unwrap();
        for offset in [0.0, 3.5, 14.0, 20.0, 45.0] {
            let w = World {
                now: imported + days(offset),
                ..world(vec![])
            };
            for (before, after) in c.factories.iter().zip(&again.factories) {
                let (b, a) = (w.calendar(before).unwrap(), w.calendar(after).unwrap());
                assert!(
                    b.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-9),
                    "{} at day {offset}: {b:?} then {a:?}",
                    before.id
                );
            }
        }
        let (twice, start_twice) = export_of(&again, exported_at + days(3.0), 7).unwrap();
        assert_eq!(
            (twice.to_toml_string().unwrap(), start_twice),
            (text, start)
        );

        // A calendar stored before calendars had dates is given as a cycle now reads it.
        let mut undated = c.clone();
        for f in &mut undated.factories {
            f.calendar = None;
        }
        undated.factories[0].calendar = Some(FactoryCalendar {
            hours: vec![5.0, 0.0, 5.0, 5.0, 5.0, 5.0],
            period_days: None,
            starts_at: None,
        });
        let (out, start) = export_of(&undated, exported_at, 7).unwrap();
        assert_eq!(start, Some(exported_at));
        assert_eq!(out.factories[0].calendar.as_ref().map(Vec::len), Some(6));

        // No calendars, or material_deadline_days: version 1, as before.
        undated.factories[0].calendar = None;
        let (out, start) = export_of(&undated, exported_at, 7).unwrap();
        assert!(out.horizon.is_none() && start.is_none());
        c.material_deadline_days = Some(20);
        let (out, start) = export_of(&c, exported_at, 7).unwrap();
        assert!(out.horizon.is_none() && start.is_none());
        assert!(out.factories.iter().all(|f| f.calendar.is_none()));
    }

    #[test]
    fn a_diagnosis_names_skus_not_the_cycle_s_split_products() {
        let mut products = CycleProducts::default();
        for (product, batches) in [
            ("kettle", vec![0]),
            ("kettle~2", vec![1]),
            ("kettle~21", vec![2]),
        ] {
            products
                .by_product
                .insert(product.into(), ("kettle".into(), batches));
        }
        let d = planner::Diagnosis {
            reasons: vec![
                "`kettle~2` is short by 60: no factory has a line for it".into(),
                "`kettle~21` is short by 5".into(),
                "`kettle` is short by 1".into(),
            ],
            missing_lines: vec!["kettle~2".into()],
            ..Default::default()
        };
        let shown = products.for_people(&d);
        let split = "kettle (its batches some factory rejected)";
        assert_eq!(
            shown.reasons,
            [
                format!("`{split}` is short by 60: no factory has a line for it"),
                format!("`{split}` is short by 5"),
                "`kettle` is short by 1".to_owned(),
            ]
        );
        assert_eq!(shown.missing_lines, [split]);
    }

    #[test]
    fn a_batch_every_factory_rejected_is_left_out_and_the_rest_planned() {
        let line = |sku: &str| FactoryLine {
            sku: sku.into(),
            unit_cost: 1.0,
            setup_cost: 0.0,
            min_run: 0,
            hours_per_unit: 1.0,
            setup_hours: 0.0,
        };
        let factory = |id: &str, skus: &[&str]| CatalogueFactory {
            id: id.into(),
            capacity_hours: 40.0,
            capacity_period_days: None,
            lines: skus.iter().map(|s| line(s)).collect(),
            calendar: None,
        };
        let catalogue = Catalogue {
            products: ["kettle", "pot"]
                .iter()
                .map(|s| c2m_store::catalogue::CatalogueProduct {
                    sku: (*s).into(),
                    bom: Default::default(),
                })
                .collect(),
            factories: vec![
                factory("f1", &["kettle", "pot"]),
                factory("f2", &["kettle"]),
            ],
            ..Catalogue::default()
        };
        let queued = |sku: &'static str, excluded: &[&str]| {
            let excluded: Vec<String> = excluded.iter().map(|s| (*s).to_owned()).collect();
            (sku, excluded)
        };
        let makeable = |(sku, excluded): (&str, Vec<String>)| makeable(&catalogue, sku, &excluded);
        assert!(makeable(queued("kettle", &[])));
        assert!(makeable(queued("kettle", &["f1"])), "f2 may");
        assert!(!makeable(queued("kettle", &["f1", "f2"])));
        assert!(!makeable(queued("pot", &["f1"])), "only f1 makes pots");
        // A sku the catalogue lost is the cycle's to refuse by name, not this rule's.
        assert!(makeable(queued("toaster", &["f1", "f2"])));
    }

    /// A cycle orders a material counted in pieces in whole pieces, even from an offer
    /// without a pack size, while a measured material keeps its decimals: a quarter of a
    /// housing per kettle for 10 kettles is 3 housings bought, not 2.5.
    #[test]
    fn pieces_are_bought_whole_and_measured_materials_as_needed() {
        let text = include_str!("../tests/data/pieces.toml");
        let bought = |whole: bool| {
            let mut s = planner::Scenario::from_toml_str(text).unwrap();
            if whole {
                whole_piece_orders(&mut s);
            }
            let v = s.validate().unwrap();
            let plan = planner::plan(&v, &planner::SolveOptions::default()).unwrap();
            planner::verify_plan(&v, &plan).unwrap();
            let mut q: Vec<(String, f64)> = plan
                .purchases
                .iter()
                .map(|p| (p.material.clone(), p.quantity))
                .collect();
            q.sort_by(|a, b| a.0.cmp(&b.0));
            q
        };
        let close = |got: Vec<(String, f64)>, want: [(&str, f64); 2]| {
            assert_eq!(got.len(), 2, "{got:?}");
            for ((m, q), (wm, wq)) in got.iter().zip(want) {
                assert_eq!(m, wm);
                assert!((q - wq).abs() < 1e-6, "{got:?}");
            }
        };
        close(bought(false), [("housing", 2.5), ("steel", 2.5)]);
        close(bought(true), [("housing", 3.0), ("steel", 2.5)]);
    }

    /// The calendars of a change must fit one scenario (520 periods of the server's
    /// length); an undated calendar has no fixed dates and does not count, and a catalogue
    /// already spanning further takes changes that do not widen it.
    #[test]
    fn calendars_must_fit_one_scenario_unless_undated_or_no_further_apart_than_before() {
        let t0 = Utc.with_ymd_and_hms(2030, 3, 4, 9, 0, 0).single().unwrap();
        let factory = |id: &str, starts_at: Option<DateTime<Utc>>| CatalogueFactory {
            id: id.into(),
            capacity_hours: 100.0,
            capacity_period_days: None,
            lines: vec![],
            calendar: Some(FactoryCalendar {
                hours: vec![100.0; 12],
                period_days: starts_at.map(|_| 7),
                starts_at,
            }),
        };
        let of = |factories: Vec<CatalogueFactory>| Catalogue {
            factories,
            ..Catalogue::default()
        };
        let weeks = chrono::Duration::weeks;
        let rule = |before: &Catalogue, after: &Catalogue| calendars_span_rule(before, after, 7);
        let empty = Catalogue::default();
        // 508 weeks apart and twelve long: 520 periods, the most a scenario has.
        let fits = of(vec![
            factory("a", Some(t0)),
            factory("b", Some(t0 + weeks(508))),
        ]);
        assert!(rule(&empty, &fits).is_ok());
        let apart = of(vec![
            factory("a", Some(t0)),
            factory("b", Some(t0 + weeks(509))),
        ]);
        let e = rule(&empty, &apart).unwrap_err();
        assert_eq!(
            e,
            DomainError::from(Refusal::CalendarsSpanTooLong {
                first_factory: "a".into(),
                starts_at: t0,
                last_factory: "b".into(),
                ends_at: t0 + weeks(521),
                periods: 521,
                max_periods: 520,
                period_days: 7,
            })
        );
        // In days, the same calendars span more periods.
        assert!(calendars_span_rule(&empty, &fits, 1).is_err());
        // An undated calendar counts from each cycle's start: no dates of its own.
        let undated = of(vec![factory("a", Some(t0)), factory("u", None)]);
        assert!(rule(&empty, &undated).is_ok());
        // Already that far apart (an older server): a change no wider is taken, a wider
        // one is not; one that narrows the span, even if not enough, is.
        assert!(rule(&apart, &apart).is_ok());
        let wider = of(vec![
            factory("a", Some(t0)),
            factory("b", Some(t0 + weeks(600))),
        ]);
        assert!(rule(&apart, &wider).is_err());
        assert!(rule(&wider, &apart).is_ok());
    }
}
