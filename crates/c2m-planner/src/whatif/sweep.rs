//! One quantity varied over a range, and how cost per unit responds.
//!
//! Version 2 scenarios (with a horizon) sweep the same quantities, plus a
//! supplier's lead time ([`Quantity::LeadTime`]), and each point also
//! reports its lateness: what the plan pays for late units and how many
//! there are. A demand in version 2 is the total due of the sku: the
//! sweep keeps the shape of its due schedule and scales it to the total
//! ([`set_total_due`]).
//!
//! Every point carries its plan's status and gap: a plan the solver did not
//! prove optimal within the time limit is the best it found, and another
//! point's plan can be cheaper than it should be by comparison. A lead-time
//! sweep uses what the model guarantees ([`monotone_in_lead_time`]): a plan
//! for a longer lead time, with the supplier's orders placed later by the
//! difference so they arrive in the same periods, is a plan for a shorter
//! one at the same cost, and a lower bound for a shorter lead time bounds
//! every longer one.
//!
//! A point the planner finds no plan for (none within the time limit, or a
//! solver failing on that one model) does not end the sweep: it is reported
//! with status `no_plan` and the reason, and the other points go on
//! ([`super::plan_point`]). A lead-time sweep gives such a point the plan of
//! a longer lead time when there is one.

use serde::Serialize;

use crate::report::{major, unit_price};
use crate::{
    verify_plan, Due, Horizon, Plan, PlanError, PlanStatus, Product, Scenario, Shortfall,
    SolveOptions,
};

/// What a sweep varies.
#[derive(Debug, Clone, PartialEq)]
pub enum Quantity {
    /// The demand of one sku, in units (rounded to whole units); in version
    /// 2 its total due, spread like its due schedule.
    Demand { sku: String },
    /// Every price break of one offer, scaled by `1 + x` (x = -0.2 is -20%).
    Price { supplier: String, material: String },
    /// The lead time of one supplier, in days (rounded to whole days).
    /// Useful in version 2, where an order arrives `ceil(days / period_days)`
    /// periods after it is placed.
    LeadTime { supplier: String },
}

/// What a sweep varied, for tools reading its JSON and for the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Swept {
    Demand,
    Price,
    LeadTime,
}

/// Most points one sweep plans (each is a solve; a chart of more is no clearer).
pub const MAX_POINTS: usize = 500;

/// A sweep request: `points` values evenly spaced from `from` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub quantity: Quantity,
    pub from: f64,
    pub to: f64,
    pub points: usize,
    /// The sku whose cost per unit is reported (for a demand sweep, that sku).
    pub sku: String,
}

/// What a point's plan is known to be: a [`PlanStatus`], or no plan at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PointStatus {
    #[serde(rename = "optimal")]
    Optimal,
    #[serde(rename = "feasible")]
    Feasible,
    #[serde(rename = "infeasible")]
    Infeasible,
    /// The planner found no plan: none within the time limit (neither the
    /// solver nor the greedy rules), or the solver failed on this model.
    /// Nothing is known of the point's cost, not even whether demand can be
    /// met; [`SweepPoint::reason`] says why.
    #[serde(rename = "no_plan")]
    NoPlan,
}

impl From<PlanStatus> for PointStatus {
    fn from(s: PlanStatus) -> Self {
        match s {
            PlanStatus::Optimal => PointStatus::Optimal,
            PlanStatus::Feasible => PointStatus::Feasible,
            PlanStatus::Infeasible => PointStatus::Infeasible,
        }
    }
}

impl std::fmt::Display for PointStatus {
    /// As in JSON and CSV: `optimal`, `feasible`, `infeasible`, `no_plan`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PointStatus::Optimal => "optimal",
            PointStatus::Feasible => "feasible",
            PointStatus::Infeasible => "infeasible",
            PointStatus::NoPlan => "no_plan",
        })
    }
}

/// One point of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// The swept value: units, or the price change as a fraction.
    pub x: f64,
    pub status: PointStatus,
    /// Why the planner found no plan, where the status is `no_plan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Relative gap between the plan and the best lower bound known for the
    /// point (0 when proven optimal); `None` where the point is infeasible
    /// or has no plan, or no bound is known. A point with a gap above 0 is the best plan
    /// found within the time limit, not proven the cheapest.
    pub gap: Option<f64>,
    /// Lead-time sweeps: the lead time (days, a point of this sweep) whose
    /// plan this point reports, with the supplier's orders placed later so
    /// they arrive in the same periods, because it is cheaper than the plan
    /// found for this point itself (checked by `verify_plan`). `None` for a
    /// point's own plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_from: Option<f64>,
    /// `None` where the point is infeasible or has no plan.
    pub total_cost: Option<i64>,
    /// Full cost per demanded unit of the reported sku (minor units); NaN
    /// (`null` in JSON) where the point is infeasible or has no plan, and at a
    /// demand of 0 units in a demand sweep (no unit to put a cost on).
    pub cost_per_unit: f64,
    /// What the best partial plan cannot make, where the point is infeasible.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shortfalls: Vec<Shortfall>,
    /// Version 2: the lateness part of the total (minor units); absent for a
    /// version 1 scenario and where the point is infeasible or has no plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness: Option<i64>,
    /// Version 2: late units summed over the periods (`sum B_pt`: a unit two
    /// periods late counts twice); absent like `lateness`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_units: Option<i64>,
}

/// A volume at which a supplier's price break is reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakMark {
    pub supplier: String,
    pub material: String,
    pub min_qty: f64,
    pub unit_price: f64,
    /// The price of the tier below.
    pub previous_price: f64,
    /// Units of the sku at which its own need (after stock on hand and the
    /// other products' use) reaches `min_qty`.
    pub volume: i64,
}

/// A finished sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub swept: Swept,
    pub label: String,
    pub sku: String,
    pub currency: String,
    pub points: Vec<SweepPoint>,
    /// Break volumes inside the range (demand sweeps only).
    pub breaks: Vec<BreakMark>,
    /// Version 2: the scenario's horizon (its points report lateness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizon: Option<Horizon>,
}

impl Sweep {
    /// Whether the points report lateness (a version 2 scenario).
    pub fn is_timed(&self) -> bool {
        self.horizon.is_some()
    }
}

/// The values a sweep visits: `points` evenly from `from` to `to`, rounded to whole units
/// (demand) or days (lead time) and then each value once, so a range with fewer whole
/// values than points has fewer points.
pub fn values(spec: &SweepSpec) -> Vec<f64> {
    let n = spec.points.max(1);
    let mut xs: Vec<f64> = (0..n)
        .map(|i| {
            let t = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            let x = spec.from + (spec.to - spec.from) * t;
            match spec.quantity {
                Quantity::Demand { .. } | Quantity::LeadTime { .. } => x.round(),
                Quantity::Price { .. } => x,
            }
        })
        .collect();
    // Whole units and days, each once: more points than whole values in the range
    // (`--from 1 --to 3 --points 10`) repeated rows of the same plan.
    xs.dedup();
    xs
}

/// The base with the swept quantity set to `x`.
pub fn scenario_at(base: &Scenario, q: &Quantity, x: f64) -> Result<Scenario, String> {
    let mut s = base.clone();
    match q {
        Quantity::Demand { sku } => {
            let periods = s.horizon.map(|h| h.periods);
            let p = s
                .products
                .iter_mut()
                .find(|p| &p.sku == sku)
                .ok_or_else(|| format!("unknown product \"{sku}\""))?;
            match periods {
                Some(t) => set_total_due(p, x.round() as i64, t),
                None => p.demand = x.round() as i64,
            }
        }
        Quantity::LeadTime { supplier } => {
            let sup = s
                .suppliers
                .iter_mut()
                .find(|x| &x.id == supplier)
                .ok_or_else(|| format!("unknown supplier \"{supplier}\""))?;
            sup.lead_days = x.round() as i64;
        }
        Quantity::Price { supplier, material } => {
            let sup = s
                .suppliers
                .iter_mut()
                .find(|x| &x.id == supplier)
                .ok_or_else(|| format!("unknown supplier \"{supplier}\""))?;
            let offer = sup
                .offers
                .iter_mut()
                .find(|o| &o.material == material)
                .ok_or_else(|| format!("supplier \"{supplier}\" has no offer of \"{material}\""))?;
            for b in &mut offer.breaks {
                b.unit_price *= 1.0 + x;
            }
        }
    }
    Ok(s)
}

/// The value the model at `x` is planned with: `x` itself, except for a
/// lead time in a version 2 scenario, which counts only through
/// `ceil(days / period_days)`: every day count of a period gives the same
/// model, planned once at the period's whole number of days.
fn same_model_as(base: &Scenario, q: &Quantity, x: f64) -> f64 {
    match (q, base.horizon) {
        (Quantity::LeadTime { .. }, Some(h)) if h.period_days > 0 => {
            // From the horizon's length on, nothing ordered from the supplier arrives
            // within it: every longer lead time is the same model.
            let days = (x.round().max(0.0) as i64).min(h.periods * h.period_days);
            (((days + h.period_days - 1) / h.period_days) * h.period_days) as f64
        }
        _ => x,
    }
}

/// Sets a version 2 product's total due to `total`, keeping the shape of
/// its due schedule: each period's share is scaled and rounded by largest
/// remainder (ties to the earlier period), so the quantities stay whole and
/// add up to `total`. A product with nothing due gets `total` due in the
/// last of `periods` periods.
pub fn set_total_due(p: &mut Product, total: i64, periods: i64) {
    let current = p.total_due();
    if current <= 0 {
        if total > 0 {
            p.due = vec![Due {
                period: (periods - 1).max(0),
                quantity: total,
            }];
        }
    } else {
        let exact: Vec<f64> = p
            .due
            .iter()
            .map(|d| d.quantity.max(0) as f64 * total as f64 / current as f64)
            .collect();
        let mut units: Vec<i64> = exact.iter().map(|e| e.floor() as i64).collect();
        let mut left = total - units.iter().sum::<i64>();
        let mut order: Vec<usize> = (0..units.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        for &i in order.iter().cycle().take(units.len() * 2) {
            if left <= 0 {
                break;
            }
            units[i] += 1;
            left -= 1;
        }
        for (d, q) in p.due.iter_mut().zip(units) {
            d.quantity = q;
        }
    }
    p.demand = p.total_due();
}

/// Runs the sweep, one point per thread at a time on every core;
/// `progress(done, total)` is called (on this thread) as points finish.
pub fn run_sweep(
    base: &Scenario,
    spec: &SweepSpec,
    opts: &SolveOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Sweep, String> {
    if !base.products.iter().any(|p| p.sku == spec.sku) {
        return Err(format!("unknown product \"{}\"", spec.sku));
    }
    if spec.points < 2 || spec.points > MAX_POINTS {
        return Err(format!(
            "a sweep takes 2 to {MAX_POINTS} points, got {}",
            spec.points
        ));
    }
    // NaN included: it is not below anything.
    if spec.from.partial_cmp(&spec.to) != Some(std::cmp::Ordering::Less) {
        return Err(format!(
            "--from ({}) must be below --to ({}): a sweep runs upwards",
            spec.from, spec.to
        ));
    }
    let xs = values(spec);
    // Values that make the same model are planned once: in version 2 a lead
    // time counts in whole periods, so 8 to 14 days are all two weeks.
    let keys: Vec<f64> = xs
        .iter()
        .map(|&x| same_model_as(base, &spec.quantity, x))
        .collect();
    let mut distinct: Vec<f64> = Vec::new();
    for &k in &keys {
        if !distinct.contains(&k) {
            distinct.push(k);
        }
    }
    let total = distinct.len();
    let mut plans = super::par_map(
        &distinct,
        super::threads(),
        |&x| {
            let s = scenario_at(base, &spec.quantity, x)?;
            super::plan_point(&s, opts).map_err(|e| format!("at {}: {e}", super::shown(x)))
        },
        &mut |done| progress(done, total),
    )?;
    let mut plan_from = vec![None; distinct.len()];
    if let Quantity::LeadTime { supplier } = &spec.quantity {
        // Named by the first swept value that makes the donor's model.
        plan_from = monotone_in_lead_time(base, supplier, &distinct, &mut plans)?
            .into_iter()
            .map(|f| {
                f.map(|k| {
                    xs.iter()
                        .zip(&keys)
                        .find(|(_, key)| **key == k)
                        .map_or(k, |(&x, _)| x)
                })
            })
            .collect();
    }
    let planned: Vec<SweepPoint> = plans
        .iter()
        .zip(&distinct)
        .zip(plan_from)
        .map(|((plan, &x), from)| point_of(plan, x, &spec.sku, from))
        .collect();
    let points = xs
        .iter()
        .zip(&keys)
        .map(|(&x, k)| {
            let i = distinct
                .iter()
                .position(|d| d == k)
                .expect("every key is planned");
            let mut point = SweepPoint {
                x,
                ..planned[i].clone()
            };
            // No units of the sku, no cost per unit: the planner's 0 for a sku with
            // nothing to make is not a price, and drew the curve down to 0 at 0 units.
            let units = match spec.quantity {
                Quantity::Demand { .. } => x.round() as i64,
                _ => super::units_asked(base, &spec.sku),
            };
            if units <= 0 {
                point.cost_per_unit = f64::NAN;
            }
            point
        })
        .collect();
    let (swept, label, breaks) = match &spec.quantity {
        Quantity::Demand { sku } => {
            let (lo, hi) = (spec.from.min(spec.to), spec.from.max(spec.to));
            let marks = break_volumes(base, sku)?
                .into_iter()
                .filter(|m| (m.volume as f64) > lo && (m.volume as f64) <= hi)
                .collect();
            let what = if base.horizon.is_some() {
                "total due"
            } else {
                "demand"
            };
            (Swept::Demand, format!("{what} of {sku} (units)"), marks)
        }
        Quantity::Price { supplier, material } => (
            Swept::Price,
            format!("price change of {supplier}/{material} (%)"),
            Vec::new(),
        ),
        Quantity::LeadTime { supplier } => (
            Swept::LeadTime,
            format!("lead time of {supplier} (days)"),
            Vec::new(),
        ),
    };
    Ok(Sweep {
        swept,
        label,
        sku: spec.sku.clone(),
        currency: base.currency.clone(),
        points,
        breaks,
        horizon: base.horizon,
    })
}

/// The point a plan makes, or a point with no plan and the reason.
fn point_of(
    plan: &Result<Plan, PlanError>,
    x: f64,
    sku: &str,
    plan_from: Option<f64>,
) -> SweepPoint {
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            return SweepPoint {
                x,
                status: PointStatus::NoPlan,
                reason: Some(e.to_string()),
                gap: None,
                plan_from: None,
                total_cost: None,
                cost_per_unit: f64::NAN,
                shortfalls: Vec::new(),
                lateness: None,
                late_units: None,
            }
        }
    };
    let feasible = plan.status != PlanStatus::Infeasible;
    let timed = feasible && plan.horizon.is_some();
    SweepPoint {
        lateness: timed.then_some(plan.cost_breakdown.lateness),
        late_units: timed.then(|| {
            plan.late
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|l| l.units)
                .sum()
        }),
        x,
        status: plan.status.into(),
        reason: None,
        gap: match plan.status {
            PlanStatus::Optimal => Some(0.0),
            PlanStatus::Feasible => Some(plan.gap).filter(|g| g.is_finite()),
            PlanStatus::Infeasible => None,
        },
        plan_from,
        // An infeasible point's partial plan has no cost to show.
        total_cost: feasible.then_some(plan.total_cost),
        cost_per_unit: if feasible {
            plan.cost_per_unit.get(sku).unwrap_or(f64::NAN)
        } else {
            f64::NAN
        },
        shortfalls: plan.shortfalls.clone(),
    }
}

/// Relative gaps at or below this, or absolute gaps (minor units) at or below
/// [`OPTIMAL_ABS_GAP`], make a plan proven optimal, as the planner rules.
const OPTIMAL_GAP: f64 = 1e-7;
const OPTIMAL_ABS_GAP: f64 = 1e-2;

/// Periods between an order to `supplier` and its arrival in `s`: 0 in
/// version 1, `ceil(lead_days / period_days)` in version 2.
fn lead_periods(s: &Scenario, supplier: &str) -> usize {
    let days = s
        .suppliers
        .iter()
        .find(|x| x.id == supplier)
        .map_or(0, |x| x.lead_days.max(0));
    match s.horizon {
        Some(h) if h.period_days > 0 => ((days + h.period_days - 1) / h.period_days) as usize,
        _ => 0,
    }
}

/// Makes a lead-time sweep's plans agree with what the model guarantees, and
/// returns, per point, the lead time whose plan it took (if another's).
///
/// The cheapest plan can only cost more as the lead time grows: an order
/// placed in period `t` with a lead of `L'` periods arrives in `t + L'`, and
/// with a shorter lead `L` the same order placed in `t + L' - L` (still no
/// later than `T - 1 - L`) arrives in the same period, at the same price, so
/// every other quantity, the stock and every cost stay as they are. In
/// version 1 (no periods) a longer lead time can only exclude offers. So,
/// from the longest lead time down, each point takes the plan of the next
/// longer one, its orders to the supplier placed later, when `verify_plan`
/// accepts it for this point and it costs less than the point's own plan (or
/// the point's own plan fell short, or it has none); and, from the shortest up, each point's
/// lower bound is at least the best bound of every shorter lead time. Each
/// point's gap is then its plan against its bound: a plan taken from
/// another point is `feasible` unless that bound proves it optimal.
pub fn monotone_in_lead_time(
    base: &Scenario,
    supplier: &str,
    days: &[f64],
    plans: &mut [Result<Plan, PlanError>],
) -> Result<Vec<Option<f64>>, String> {
    let mut order: Vec<usize> = (0..days.len()).collect();
    order.sort_by(|&a, &b| days[a].total_cmp(&days[b]));
    let q = Quantity::LeadTime {
        supplier: supplier.to_string(),
    };
    let mut from: Vec<Option<f64>> = vec![None; days.len()];
    // Down: the longer lead time's plan, shifted, where it is cheaper.
    for w in (1..order.len()).rev() {
        let (longer, i) = (order[w], order[w - 1]);
        let donor = match &plans[longer] {
            Ok(p) if p.status != PlanStatus::Infeasible => p,
            _ => continue,
        };
        let here = scenario_at(base, &q, days[i])?;
        let shift = lead_periods(&scenario_at(base, &q, days[longer])?, supplier)
            - lead_periods(&here, supplier);
        // A point with no plan, or one that fell short, takes any donor.
        let own = plans[i]
            .as_ref()
            .ok()
            .filter(|p| p.status != PlanStatus::Infeasible);
        let cheaper = own.is_none_or(|own| {
            let own_total = own.exact_costs.total();
            donor.exact_costs.total() < own_total - 1e-9 * own_total.abs().max(1.0)
        });
        if !cheaper {
            continue;
        }
        let mut candidate = donor.clone();
        for p in candidate
            .purchases
            .iter_mut()
            .filter(|p| p.supplier == supplier)
        {
            p.period = p.period.map(|t| t + shift);
        }
        // The lower bound of this point's own solve still holds; the
        // upward pass below may raise it.
        candidate.best_bound = own.and_then(|o| o.best_bound);
        candidate.status = PlanStatus::Feasible;
        candidate.gap = f64::INFINITY;
        // Explanations about order periods were the donor's.
        candidate.time = None;
        let v = here
            .validate()
            .map_err(|e| format!("at {}: invalid scenario:\n{e}", days[i]))?;
        if verify_plan(&v, &candidate).is_ok() {
            plans[i] = Ok(candidate);
            from[i] = Some(from[longer].unwrap_or(days[longer]));
        }
    }
    // Up: a lower bound for a shorter lead time bounds every longer one.
    let mut floor = f64::NEG_INFINITY;
    for &i in &order {
        let Ok(plan) = &mut plans[i] else { continue };
        if plan.status == PlanStatus::Infeasible {
            continue;
        }
        let own = match plan.status {
            PlanStatus::Optimal => Some(plan.exact_costs.total()),
            _ => plan.best_bound,
        };
        let bound = own.map_or(floor, |b| b.max(floor));
        if bound.is_finite() && plan.status == PlanStatus::Feasible {
            let total = plan.exact_costs.total();
            let gap = ((total - bound) / total.abs().max(1e-9)).max(0.0);
            if gap <= OPTIMAL_GAP || total - bound <= OPTIMAL_ABS_GAP {
                plan.status = PlanStatus::Optimal;
                plan.gap = 0.0;
                plan.best_bound = Some(bound.min(total));
            } else {
                plan.gap = gap;
                plan.best_bound = Some(bound);
            }
        }
        floor = floor.max(bound);
    }
    Ok(from)
}

/// Volumes of `sku` at which each price break of the materials it uses is
/// reached, if the sku's need were bought from that offer alone: the need
/// for material m at volume V is `a_m * V + (other products' use) -
/// on_hand`, so the break at `min_qty` is reached at
/// `V = ceil((min_qty + on_hand - other use) / a_m)`. The planner may buy up
/// to a break earlier (when the whole order at the lower price costs less),
/// so the cost curve can step down a little before the mark.
pub fn break_volumes(base: &Scenario, sku: &str) -> Result<Vec<BreakMark>, String> {
    let product = base
        .products
        .iter()
        .find(|p| p.sku == sku)
        .ok_or_else(|| format!("unknown product \"{sku}\""))?;
    let mut marks = Vec::new();
    for (mat, &a) in &product.bom {
        if a <= 0.0 {
            continue;
        }
        let on_hand = base
            .materials
            .iter()
            .find(|m| &m.id == mat)
            .map_or(0.0, |m| m.on_hand);
        let other: f64 = base
            .products
            .iter()
            .filter(|p| p.sku != sku)
            .map(|p| p.demand as f64 * p.bom.get(mat).copied().unwrap_or(0.0))
            .sum();
        for sup in &base.suppliers {
            for offer in sup.offers.iter().filter(|o| &o.material == mat) {
                for w in offer.breaks.windows(2) {
                    let (prev, b) = (w[0], w[1]);
                    let v = ((b.min_qty + on_hand - other) / a - 1e-9).ceil().max(1.0);
                    marks.push(BreakMark {
                        supplier: sup.id.clone(),
                        material: mat.clone(),
                        min_qty: b.min_qty,
                        unit_price: b.unit_price,
                        previous_price: prev.unit_price,
                        volume: v as i64,
                    });
                }
            }
        }
    }
    marks.sort_by(|a, b| {
        (a.volume, &a.supplier, &a.material).cmp(&(b.volume, &b.supplier, &b.material))
    });
    Ok(marks)
}

/// CSV of the points: x, status, gap (empty where unknown or infeasible),
/// total cost, cost per unit, and for an infeasible point (no costs) its
/// shortfalls as `sku:units; ...`. A point with no plan has status
/// `no_plan` and every other field empty (the JSON carries its `reason`).
///
/// A version 2 sweep adds `lateness` (minor units) and `late_units` after
/// the cost per unit (empty where the point is infeasible); a lead-time
/// sweep adds `plan_from` before the shortfalls (see [`SweepPoint::plan_from`]).
pub fn render_csv(s: &Sweep) -> String {
    let timed = s.is_timed();
    let lead = s.swept == Swept::LeadTime;
    let mut out = format!(
        "x,status,gap,total_cost,{},{}{}shortfalls\n",
        super::compare::csv_field(&format!("cost_per_unit:{}", s.sku)),
        if timed { "lateness,late_units," } else { "" },
        if lead { "plan_from," } else { "" }
    );
    for p in &s.points {
        let mut late = if !timed {
            String::new()
        } else {
            format!(
                "{},{},",
                p.lateness.map_or(String::new(), |v| v.to_string()),
                p.late_units.map_or(String::new(), |v| v.to_string())
            )
        };
        if lead {
            late.push_str(&format!(
                "{},",
                p.plan_from.map_or(String::new(), |v| v.to_string())
            ));
        }
        let gap = p.gap.map_or(String::new(), |g| g.to_string());
        match p.total_cost {
            Some(t) => out.push_str(&format!(
                "{},{},{gap},{t},{},{late}\n",
                p.x,
                p.status,
                if p.cost_per_unit.is_finite() {
                    format!("{:.4}", p.cost_per_unit)
                } else {
                    String::new()
                }
            )),
            None => out.push_str(&format!(
                "{},{},{gap},,,{late}{}\n",
                p.x,
                p.status,
                super::compare::csv_field(&super::compare::shortfall_text(&p.shortfalls))
            )),
        }
    }
    out
}

/// The sweep as one JSON object for tools: what was swept, the points (with
/// `lateness` and `late_units` in version 2), the break marks.
pub fn render_json(s: &Sweep) -> String {
    serde_json::to_string_pretty(s).expect("a sweep always serializes")
}

/// The status column: `optimal`, `feasible 0.41%` (with its gap), or
/// `feasible ?` when no lower bound is known.
fn status_cell(p: &SweepPoint) -> String {
    match (p.status, p.gap) {
        (PointStatus::Feasible, Some(g)) => format!("feasible {:.2}%", g * 100.0),
        (PointStatus::Feasible, None) => "feasible ?".to_string(),
        (status, _) => status.to_string(),
    }
}

/// An aligned table of the points, with the break marks listed after it.
/// A point not proven optimal shows `feasible` with its gap, and a note
/// after the table says what that means.
pub fn render_text(s: &Sweep) -> String {
    let timed = s.is_timed();
    let cur = s.currency.as_str();
    let x_head = match s.swept {
        Swept::LeadTime => "days",
        _ => "x",
    };
    let mut out = format!(
        "{:>12}  {:<16}  {:>16}  {:>14}",
        x_head, "status", "total", "per unit"
    );
    if timed {
        out.push_str(&format!("  {:>12}  {:>6}", "lateness", "late"));
    }
    out.push('\n');
    for p in &s.points {
        let x = if s.swept == Swept::Price {
            format!("{:+.1}%", p.x * 100.0)
        } else {
            format!("{}", p.x)
        };
        match p.total_cost {
            Some(t) => {
                out.push_str(&format!(
                    "{x:>12}  {:<16}  {:>16}  {:>14}",
                    status_cell(p),
                    major(t as f64, cur),
                    if p.cost_per_unit.is_finite() {
                        major(p.cost_per_unit, cur)
                    } else {
                        "-".to_string()
                    }
                ));
                if timed {
                    out.push_str(&format!(
                        "  {:>12}  {:>6}",
                        major(p.lateness.unwrap_or(0) as f64, cur),
                        p.late_units.unwrap_or(0)
                    ));
                }
                if let Some(d) = p.plan_from {
                    out.push_str(&format!("  plan of {d} days"));
                }
                out.push('\n');
            }
            None => {
                // No costs: an infeasible point says what falls short, one with no
                // plan why there is none.
                let (status, why) = if p.status == PointStatus::NoPlan {
                    ("NO PLAN", p.reason.clone().unwrap_or_default())
                } else {
                    let short: Vec<String> = p
                        .shortfalls
                        .iter()
                        .map(|f| format!("{} short by {}", f.sku, f.short_by))
                        .collect();
                    ("INFEASIBLE", short.join(", "))
                };
                let late = if timed {
                    format!("  {:>12}  {:>6}", "-", "-")
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "{x:>12}  {status:<16}  {:>16}  {:>14}{late}  {why}\n",
                    "-", "-",
                ));
            }
        }
    }
    if !s.breaks.is_empty() {
        out.push_str("\nprice breaks reached in the range:\n");
        for b in &s.breaks {
            out.push_str(&format!(
                "  at {} units: {}/{} reaches {} ({} -> {} per unit of material)\n",
                b.volume,
                b.supplier,
                b.material,
                b.min_qty,
                unit_price(b.previous_price, cur),
                unit_price(b.unit_price, cur)
            ));
        }
    }
    if timed {
        out.push_str(&format!(
            "\nmoney in {} (major units); per unit: full cost per unit due of {}, its \
             lateness included; lateness: what the plan pays for late units; late: late units \
             summed over the periods (a unit two periods late counts twice)\n",
            s.currency, s.sku
        ));
    } else {
        out.push_str(&format!(
            "\nmoney in {} (major units); per unit: full cost per demanded unit of {}\n",
            s.currency, s.sku
        ));
    }
    let unproven = s
        .points
        .iter()
        .filter(|p| p.status == PointStatus::Feasible)
        .count();
    if unproven > 0 {
        out.push_str(&format!(
            "NOT PROVEN OPTIMAL at {unproven} of {} points (feasible): the best plan found \
             within the time limit; the percentage is its gap to the best lower bound known \
             (? when none is), so its cost may be that much too high and a neighbouring point \
             may look cheaper than it is (a longer --time-limit narrows it)\n",
            s.points.len()
        ));
    }
    if s.points.iter().any(|p| p.plan_from.is_some()) {
        out.push_str(
            "plan of N days: the plan found for that longer lead time, with the supplier's \
             orders placed later so they arrive in the same periods, costs less than the one \
             found for this lead time and is a plan for it too (checked); a longer lead time \
             never costs less\n",
        );
    }
    let infeasible = s
        .points
        .iter()
        .filter(|p| p.status == PointStatus::Infeasible)
        .count();
    if infeasible > 0 {
        out.push_str(&format!(
            "INFEASIBLE at {infeasible} of {} points: demand cannot be met, so no costs; \
             short: what the best partial plan found within the time limit cannot make\n",
            s.points.len()
        ));
    }
    let no_plan = s
        .points
        .iter()
        .filter(|p| p.status == PointStatus::NoPlan)
        .count();
    if no_plan > 0 {
        out.push_str(&format!(
            "NO PLAN at {no_plan} of {} points: the planner found none (the reason follows \
             each), so nothing is known of their cost, nor whether demand can be met there; \
             a longer --time-limit may find one\n",
            s.points.len()
        ));
    }
    out
}
