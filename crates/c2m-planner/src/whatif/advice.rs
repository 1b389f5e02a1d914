//! Threshold advice: the minimum viable batch for a campaign's price and
//! margin, and the volumes at which price breaks let the price ladder step
//! down.
//!
//! Cost per unit at volume V is the plan's full cost per demanded unit of
//! the sku, with its demand set to V and the other products' demand as in
//! the base (the batch is planned in the cycle it will share). Cost per unit
//! is not monotone in V (setups, minimum runs, MOQs and breaks make it
//! jump), so the search is a scan: every `step` units from `step` to `max`,
//! then every unit between the first passing grid point and the one before
//! it (both in blocks of one volume per core, planned in parallel). With
//! `step = 1` the scan is exact over `1..=max`; with a larger step
//! a passing volume that lies between two failing grid points is missed,
//! and the output says so.
//!
//! In a version 2 scenario the volume is the sku's total due, spread over
//! its due periods like its due schedule ([`super::sweep::set_total_due`]),
//! and the cost per unit includes the sku's lateness.
//!
//! The material cash set against the deposits is the sku's own: each
//! purchase's money (units at the tier price plus the order cost) is shared
//! among the products by what their runs consume of that material over the
//! plan (over the whole horizon in version 2), the rule cost per unit uses
//! for purchases, and the sku's share is summed over the materials it uses.
//! Other products' materials are not in it, and a material the sku shares
//! counts only in the sku's proportion.
//!
//! A volume the planner finds no plan for (none within the time limit, or
//! the solver failing on that model: [`super::plan_point`]) is not judged
//! either way: the scan goes on past it, lists it in [`Advice::no_plan`],
//! and leaves out a ladder step that needs it. A grid point with no plan is
//! not a failing grid point: the unit scan below a passing point starts
//! after the last grid point that was planned and failed.
//!
//! A scan may be given an end ([`advise_by`], for a caller that must answer
//! by a deadline): no volume is started after it, a volume started near it
//! is planned within the time left (and counts only if that plan is proven
//! optimal, or the volume proven infeasible), and the advice is what was
//! judged by then, with the volumes the scan did not reach
//! ([`Advice::not_reached`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sweep::{break_volumes, scenario_at, BreakMark, Quantity};
use crate::report::{major, unit_price};
use crate::validate::{MAX_NUMBER, MAX_UNITS};
use crate::{Plan, PlanError, PlanStatus, Scenario, SolveOptions};

/// The campaign and the search.
#[derive(Debug, Clone, PartialEq)]
pub struct AdviceSpec {
    pub sku: String,
    /// Price promised to consumers, minor units per unit.
    pub price: f64,
    /// Deposit per unit paid at pre-order, minor units.
    pub deposit: f64,
    /// Target margin as a fraction of the price (0.2 = 20%).
    pub margin: f64,
    /// Largest volume considered.
    pub max: i64,
    /// Grid step of the scan (1 = every volume).
    pub step: i64,
}

/// The cost of the sku at one volume and what drives it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeCost {
    pub volume: i64,
    pub status: PlanStatus,
    /// Minor units per unit.
    pub cost_per_unit: f64,
    /// Setup cost of the sku's runs per unit.
    pub setup_per_unit: f64,
    /// `factory: quantity` for each run of the sku (`factory: quantity in
    /// period` in version 2).
    pub runs: Vec<String>,
    /// Purchases of the materials the sku's runs use, with the tier price
    /// paid and the sku's share of the material.
    pub purchases: Vec<String>,
    /// The sku's share of the plan's purchase plus ordering cost (cash out
    /// before the balance is paid): each material's purchases and orders
    /// times the sku's share of what the plan's runs consume of it.
    pub material_cash: i64,
    /// Purchase plus ordering cost of the whole plan, every product's.
    pub plan_material_cash: i64,
}

/// One step of the price ladder: a break and the cost just below and at it.
#[derive(Debug, Clone, Serialize)]
pub struct LadderStep {
    pub mark: BreakMark,
    pub below: VolumeCost,
    pub at: VolumeCost,
    /// Lowest price keeping the margin at `volume - 1` and at `volume`.
    pub price_below: f64,
    pub price_at: f64,
}

/// The advice.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub sku: String,
    pub currency: String,
    pub price: f64,
    pub deposit: f64,
    pub margin: f64,
    /// Cost per unit may be at most this.
    pub target_cost: f64,
    pub max: i64,
    pub step: i64,
    /// Volumes solved.
    pub evaluated: usize,
    /// The smallest viable volume found, with its costs; `None` when no
    /// volume up to `max` leaves the margin.
    pub minimum_viable: Option<VolumeCost>,
    /// The volume just below it, when there is one.
    pub below_minimum: Option<VolumeCost>,
    /// The first grid volume at which demand cannot be met (with the other
    /// products' demand as in the base). Demand is a lower bound, so every
    /// larger volume is infeasible too: the scan stops there, and breaks
    /// from there on are left out of the ladder.
    pub infeasible_from: Option<i64>,
    pub ladder: Vec<LadderStep>,
    /// Volumes the planner found no plan for, and why, in volume order:
    /// neither viable nor failing, and a ladder step needing one is left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_plan: Vec<NoPlan>,
    /// Break volumes whose ladder step is left out because it or the volume
    /// below it has no plan (or was not reached).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ladder_left_out: Vec<i64>,
    /// Volumes the scan did not reach before its end ([`advise_by`]), as
    /// ranges in volume order: neither viable nor failing, like
    /// [`Advice::no_plan`]. A range of the grid's stretch stands for the grid
    /// volumes in it, as a full scan would have judged them. Empty without an
    /// end, or when the scan finished before it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_reached: Vec<VolumeRange>,
}

/// Volumes `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VolumeRange {
    pub first: i64,
    pub last: i64,
}

/// Sorted, overlapping or adjacent ranges merged.
fn merged(mut ranges: Vec<VolumeRange>) -> Vec<VolumeRange> {
    ranges.retain(|r| r.first <= r.last);
    ranges.sort_by_key(|r| (r.first, r.last));
    let mut out: Vec<VolumeRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(prev) if r.first <= prev.last.saturating_add(1) => {
                prev.last = prev.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Less time than this left before a scan's end, and no volume is started.
const LEAST_TIME_LEFT: Duration = Duration::from_millis(1);

/// A volume of the scan with no plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoPlan {
    pub volume: i64,
    pub reason: String,
}

/// Plans the base with the sku's demand at `volume`.
pub fn cost_at(
    base: &Scenario,
    sku: &str,
    volume: i64,
    opts: &SolveOptions,
) -> Result<VolumeCost, String> {
    try_cost_at(base, sku, volume, opts)?
        .map_err(|e| format!("at {volume} units: {}: no plan: {e}", base.name))
}

/// [`cost_at`], with a volume the planner found no plan for as the inner
/// error (the scan goes on past it).
fn try_cost_at(
    base: &Scenario,
    sku: &str,
    volume: i64,
    opts: &SolveOptions,
) -> Result<Result<VolumeCost, PlanError>, String> {
    let q = Quantity::Demand {
        sku: sku.to_string(),
    };
    let s = scenario_at(base, &q, volume as f64)?;
    let plan = super::plan_point(&s, opts).map_err(|e| format!("at {volume} units: {e}"))?;
    Ok(plan.map(|plan| volume_cost(&s, sku, volume, &plan)))
}

/// [`try_cost_at`] by the scan's `end`: `None` when the volume is not
/// reached (less than [`LEAST_TIME_LEFT`] left), or when the time left cut
/// its time limit short and it got neither a proven optimal plan nor a
/// proof that the volume cannot be made within it (the end, not the volume,
/// stopped the solver: a plan short of optimal, or no plan, says nothing of
/// the volume). An infeasible volume is judged: the solver proved it (its
/// plan is the best partial plan, whose cost the advice does not use), and
/// the scan's bisection needs it. It used to count as not reached, so a scan
/// whose first grid volume was past the factories' capacity judged nothing
/// whenever the call's deadline left less than the time limit.
fn try_cost_by(
    base: &Scenario,
    sku: &str,
    volume: i64,
    opts: &SolveOptions,
    end: Option<Instant>,
) -> Result<Option<Result<VolumeCost, PlanError>>, String> {
    let Some(end) = end else {
        return try_cost_at(base, sku, volume, opts).map(Some);
    };
    let left = end.saturating_duration_since(Instant::now());
    if left < LEAST_TIME_LEFT {
        return Ok(None);
    }
    if left >= opts.time_limit {
        return try_cost_at(base, sku, volume, opts).map(Some);
    }
    let short = SolveOptions {
        time_limit: left,
        ..opts.clone()
    };
    Ok(match try_cost_at(base, sku, volume, &short)? {
        Ok(c) if matches!(c.status, PlanStatus::Optimal | PlanStatus::Infeasible) => Some(Ok(c)),
        _ => None,
    })
}

fn volume_cost(s: &Scenario, sku: &str, volume: i64, plan: &Plan) -> VolumeCost {
    let mut setup = 0.0;
    let mut runs = Vec::new();
    for r in plan.runs.iter().filter(|r| r.sku == sku) {
        if let Some(line) = s
            .factories
            .iter()
            .find(|f| f.id == r.factory)
            .and_then(|f| f.lines.iter().find(|l| l.sku == sku))
        {
            setup += line.setup_cost;
        }
        match r.period {
            Some(t) => runs.push(format!("{}: {} in {t}", r.factory, r.quantity)),
            None => runs.push(format!("{}: {}", r.factory, r.quantity)),
        }
    }
    // What the plan's runs consume of each material: all products, and the sku.
    let mut used_all: BTreeMap<&str, f64> = BTreeMap::new();
    let mut used_sku: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &plan.runs {
        let Some(prod) = s.products.iter().find(|p| p.sku == r.sku) else {
            continue;
        };
        for (m, &a) in &prod.bom {
            let q = a * r.quantity as f64;
            *used_all.entry(m.as_str()).or_default() += q;
            if r.sku == sku {
                *used_sku.entry(m.as_str()).or_default() += q;
            }
        }
    }
    let share = |m: &str| match (used_sku.get(m), used_all.get(m)) {
        (Some(&mine), Some(&all)) if all > 0.0 => mine / all,
        _ => 0.0,
    };
    let order_cost = |supplier: &str, material: &str| {
        s.suppliers
            .iter()
            .find(|x| x.id == supplier)
            .and_then(|x| x.offers.iter().find(|o| o.material == material))
            .map_or(0.0, |o| o.order_cost)
    };
    let mut cash = 0.0;
    let mut purchases = Vec::new();
    for p in &plan.purchases {
        let share = share(&p.material);
        if share <= 0.0 {
            continue;
        }
        cash += share * (p.unit_price * p.quantity + order_cost(&p.supplier, &p.material));
        purchases.push(format!(
            "{}/{}{}: {} @ {}{}",
            p.supplier,
            p.material,
            p.period.map_or(String::new(), |t| format!(" in {t}")),
            p.quantity,
            unit_price(p.unit_price, &s.currency),
            if share < 1.0 - 1e-9 {
                format!(" ({:.1}% the sku's)", share * 100.0)
            } else {
                String::new()
            }
        ));
    }
    VolumeCost {
        volume,
        status: plan.status,
        cost_per_unit: plan.cost_per_unit.get(sku).unwrap_or(f64::NAN),
        setup_per_unit: if volume > 0 {
            setup / volume as f64
        } else {
            0.0
        },
        runs,
        purchases,
        material_cash: cash.round() as i64,
        plan_material_cash: plan.cost_breakdown.purchase + plan.cost_breakdown.ordering,
    }
}

/// Finds the minimum viable batch and the ladder steps up to `max`.
pub fn advise(
    base: &Scenario,
    spec: &AdviceSpec,
    opts: &SolveOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Advice, String> {
    advise_by(base, spec, opts, None, progress)
}

/// [`advise`], ending the scan by `end` when one is given: no volume is
/// started after it, one started near it is planned within the time left,
/// and the advice is what was judged by then, with the volumes not reached
/// ([`Advice::not_reached`]). It returns shortly after `end` at the latest
/// (a solve keeps its time limit to within the solver's own granularity).
pub fn advise_by(
    base: &Scenario,
    spec: &AdviceSpec,
    opts: &SolveOptions,
    end: Option<Instant>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Advice, String> {
    // Written so that NaN is refused too; an infinite price (`--price 1e308` in major
    // units) would leave an infinite target and a margin of NaN at every volume.
    if !(spec.price > 0.0 && spec.price <= MAX_NUMBER) {
        return Err(format!(
            "the price must be positive and at most {MAX_NUMBER:e} minor units \
             (as any money in a scenario), got {}",
            super::shown(spec.price)
        ));
    }
    if !(0.0..1.0).contains(&spec.margin) {
        return Err("the margin must be in [0, 1)".into());
    }
    // As the service refuses a campaign whose deposit is more than its price.
    if !(0.0..=spec.price).contains(&spec.deposit) {
        return Err(format!(
            "the deposit ({}) must be between 0 and the price ({})",
            spec.deposit, spec.price
        ));
    }
    if spec.max < 1 || spec.step < 1 {
        return Err("--max and --step must be at least 1".into());
    }
    // A step past the largest volume scans that volume alone, and the report read
    // "every 1000 units up to 1".
    if spec.step > spec.max {
        return Err(format!(
            "--step {} is more than --max {}: the scan goes every --step units up to --max",
            spec.step, spec.max
        ));
    }
    if spec.max > MAX_UNITS {
        return Err(format!(
            "--max must be at most {MAX_UNITS} (the largest demand the planner takes), got {}",
            spec.max
        ));
    }
    let target = spec.price * (1.0 - spec.margin);
    // Every volume planned: its cost, or why the planner found no plan. A
    // volume the scan's end left out is not in it.
    let mut cache: BTreeMap<i64, Result<VolumeCost, String>> = BTreeMap::new();
    // Volumes the scan's end left out.
    let mut not_reached: Vec<VolumeRange> = Vec::new();
    let threads = super::threads();
    // Plans the volumes not planned yet, in parallel, into the cache; those
    // not reached by the end stay out of it.
    let eval_many = |vs: &[i64],
                     cache: &mut BTreeMap<i64, Result<VolumeCost, String>>,
                     progress: &mut dyn FnMut(usize)|
     -> Result<(), String> {
        let todo: Vec<i64> = vs
            .iter()
            .copied()
            .filter(|v| !cache.contains_key(v))
            .collect();
        let costs = super::par_map(
            &todo,
            threads,
            |&v| try_cost_by(base, &spec.sku, v, opts, end),
            progress,
        )?;
        cache.extend(
            todo.into_iter()
                .zip(costs)
                .filter_map(|(v, c)| Some((v, c?.map_err(|e| e.to_string())))),
        );
        Ok(())
    };
    let viable =
        |c: &VolumeCost| c.status != PlanStatus::Infeasible && c.cost_per_unit <= target + 1e-9;
    let passes = |c: &Result<VolumeCost, String>| c.as_ref().is_ok_and(viable);
    let infeasible = |c: &Result<VolumeCost, String>| {
        c.as_ref().is_ok_and(|c| c.status == PlanStatus::Infeasible)
    };

    let marks: Vec<BreakMark> = break_volumes(base, &spec.sku)?
        .into_iter()
        .filter(|m| m.volume >= 2 && m.volume <= spec.max)
        .collect();
    // The grid (`step`, `2 step`, ... up to `max`, and `max`), made a block at a time:
    // the scan usually stops long before its end, and `max` may be far larger than any
    // list of volumes that fits in memory.
    let grid_len = spec.max / spec.step + i64::from(spec.max % spec.step != 0);
    let grid_at = |k: i64| (k * spec.step).min(spec.max);
    let mut total = usize::try_from(grid_len).unwrap_or(usize::MAX) + 2 * marks.len();
    let mut done = 0;
    // The units from `from` up to `to` (excluded), in blocks of `threads`, up to the
    // first viable one. When the end leaves one out, the first viable one planned
    // after it (in its block) is the answer, and the units from it up to that one
    // (or up to `to`) were not reached.
    let first_viable = |from: i64,
                        to: i64,
                        cache: &mut BTreeMap<i64, Result<VolumeCost, String>>,
                        not_reached: &mut Vec<VolumeRange>|
     -> Result<Option<i64>, String> {
        let mut lo = from;
        while lo < to {
            let hi = lo.saturating_add(threads as i64).min(to);
            let sub: Vec<i64> = (lo..hi).collect();
            eval_many(&sub, cache, &mut |_| {})?;
            let first_passing = |vs: &[i64]| {
                vs.iter()
                    .copied()
                    .find(|w| cache.get(w).is_some_and(passes))
            };
            let u = (sub.iter())
                .position(|w| !cache.contains_key(w))
                .unwrap_or(sub.len());
            if let Some(w) = first_passing(&sub[..u]) {
                return Ok(Some(w));
            }
            if u < sub.len() {
                let passing = first_passing(&sub[u..]);
                not_reached.push(VolumeRange {
                    first: sub[u],
                    last: passing.unwrap_or(to) - 1,
                });
                return Ok(passing);
            }
            lo = hi;
        }
        Ok(None)
    };
    // The grid, a block of `threads` volumes at a time, up to the first
    // viable volume; then every unit between the failing grid point before
    // it and it, likewise in blocks.
    let mut found = None;
    let mut infeasible_from = None;
    let mut prev = 0;
    // The last grid point reached (planned, or found no plan for).
    let mut reached = 0;
    let mut k = 1;
    'grid: while k <= grid_len {
        let block: Vec<i64> = (k..=grid_len.min(k + threads as i64 - 1))
            .map(grid_at)
            .collect();
        k += block.len() as i64;
        eval_many(&block, &mut cache, &mut |_| {})?;
        for &v in &block {
            done += 1;
            progress(done.min(total), total);
            let Some(c) = cache.get(&v) else {
                // The end came first: from the last grid point reached on,
                // nothing was judged.
                not_reached.push(VolumeRange {
                    first: reached + 1,
                    last: spec.max,
                });
                break 'grid;
            };
            reached = v;
            let (short, pass, planned) = (infeasible(c), passes(c), c.is_ok());
            if short {
                // Demand is a lower bound, so every larger volume is
                // infeasible too: nothing further can be viable. The
                // volumes between the last grid point and this one may
                // be: the largest feasible one is found by bisection
                // (feasibility only falls with volume), and when a
                // volume the bisection planned passes, every unit
                // below it is looked at as for a passing grid point.
                // A volume near the capacity limit may find no plan within the
                // time limit: the bisection stops there, with `bad` still a
                // volume that cannot be made; so does the scan's end, and the
                // volumes between are not reached.
                let (mut ok, mut bad) = (prev, v);
                while bad - ok > 1 {
                    let mid = ok + (bad - ok) / 2;
                    total += 1;
                    done += 1;
                    progress(done.min(total), total);
                    let Some(c) = try_cost_by(base, &spec.sku, mid, opts, end)? else {
                        not_reached.push(VolumeRange {
                            first: ok + 1,
                            last: bad - 1,
                        });
                        break;
                    };
                    let Ok(c) = c else {
                        cache.insert(mid, c.map_err(|e| e.to_string()));
                        break;
                    };
                    let short = c.status == PlanStatus::Infeasible;
                    cache.insert(mid, Ok(c));
                    if short {
                        bad = mid;
                    } else {
                        ok = mid;
                    }
                }
                infeasible_from = Some(bad);
                let passing = cache
                    .range(prev + 1..bad)
                    .find(|(_, c)| passes(c))
                    .map(|(&w, _)| w);
                if let Some(w) = passing {
                    let first = first_viable(prev + 1, w, &mut cache, &mut not_reached)?;
                    found = Some(first.unwrap_or(w));
                }
                break 'grid;
            }
            if pass {
                let first = first_viable(prev + 1, v, &mut cache, &mut not_reached)?;
                found = Some(first.unwrap_or(v));
                break 'grid;
            }
            // A grid point with no plan is not known to fail: the units
            // below a later passing point are scanned from the last one that
            // was planned and failed.
            if planned {
                prev = v;
            }
        }
    }
    let mut needed: Vec<i64> = Vec::new();
    if let Some(v) = found {
        needed.push(v);
        if v > 1 {
            needed.push(v - 1);
        }
    }
    // Breaks at volumes the factories cannot make are left out.
    let marks: Vec<BreakMark> = marks
        .into_iter()
        .filter(|m| infeasible_from.is_none_or(|f| m.volume < f))
        .collect();
    for m in &marks {
        needed.extend([m.volume - 1, m.volume]);
    }
    needed.sort_unstable();
    needed.dedup();
    let before = done;
    eval_many(&needed, &mut cache, &mut |d| {
        progress((before + d).min(total), total)
    })?;
    not_reached.extend(
        (needed.iter())
            .filter(|v| !cache.contains_key(v))
            .map(|&v| VolumeRange { first: v, last: v }),
    );
    let planned = |v: i64| cache.get(&v).and_then(|c| c.as_ref().ok()).cloned();
    let minimum_viable = found.and_then(planned);
    let below_minimum = found.filter(|&v| v > 1).and_then(|v| planned(v - 1));
    // A step whose volume or the one below it has no plan is left out.
    let mut ladder_left_out = Vec::new();
    let ladder = marks
        .into_iter()
        .filter_map(|m| {
            let (Some(below), Some(at)) = (planned(m.volume - 1), planned(m.volume)) else {
                ladder_left_out.push(m.volume);
                return None;
            };
            Some(LadderStep {
                price_below: below.cost_per_unit / (1.0 - spec.margin),
                price_at: at.cost_per_unit / (1.0 - spec.margin),
                mark: m,
                below,
                at,
            })
        })
        .collect();
    let no_plan = cache
        .iter()
        .filter_map(|(&volume, c)| {
            c.as_ref().err().map(|reason| NoPlan {
                volume,
                reason: reason.clone(),
            })
        })
        .collect();
    progress(total, total);
    Ok(Advice {
        sku: spec.sku.clone(),
        currency: base.currency.clone(),
        price: spec.price,
        deposit: spec.deposit,
        margin: spec.margin,
        target_cost: target,
        max: spec.max,
        step: spec.step,
        evaluated: cache.len(),
        minimum_viable,
        below_minimum,
        infeasible_from,
        ladder,
        no_plan,
        ladder_left_out,
        not_reached: merged(not_reached),
    })
}

/// `1 unit`, `15 units`.
fn units(n: i64) -> String {
    if n == 1 {
        "1 unit".into()
    } else {
        format!("{n} units")
    }
}

fn describe(out: &mut String, c: &VolumeCost, cur: &str) {
    let _ = writeln!(
        out,
        "      cost per unit {} (setup {} of it); runs: {}",
        major(c.cost_per_unit, cur),
        major(c.setup_per_unit, cur),
        if c.runs.is_empty() {
            "none".to_string()
        } else {
            c.runs.join(", ")
        }
    );
    if !c.purchases.is_empty() {
        let _ = writeln!(out, "      buys: {}", c.purchases.join("; "));
    }
}

/// The advice and its reasoning, for people.
pub fn render_text(a: &Advice) -> String {
    let mut out = String::new();
    let cur = &a.currency;
    let _ = writeln!(
        out,
        "campaign {}: price {} {cur}, deposit {}, target margin {:.1}%",
        a.sku,
        major(a.price, cur),
        major(a.deposit, cur),
        a.margin * 100.0
    );
    let _ = writeln!(
        out,
        "  cost per unit must be at most {} = price x (1 - margin)",
        major(a.target_cost, cur)
    );
    let _ = writeln!(
        out,
        "  search: every {} units up to {}, then every unit below the first passing point \
         ({} volumes planned){}",
        a.step,
        a.max,
        a.evaluated,
        if a.step > 1 {
            "; cost per unit is not monotone, so a viable volume between two failing grid \
             points would be missed (use --step 1 for an exact scan)"
        } else {
            "; exact"
        }
    );
    match &a.minimum_viable {
        Some(c) => {
            let _ = writeln!(out, "\nminimum viable batch: {}", units(c.volume));
            describe(&mut out, c, cur);
            let _ = writeln!(
                out,
                "      margin {:.1}%; deposits collected {} against the sku's material \
                 purchases {} (its share, by consumption, of the plan's {}){}",
                (a.price - c.cost_per_unit) / a.price * 100.0,
                major(a.deposit * c.volume as f64, cur),
                major(c.material_cash as f64, cur),
                major(c.plan_material_cash as f64, cur),
                if a.deposit * c.volume as f64 >= c.material_cash as f64 {
                    " (covered)"
                } else {
                    " (not covered: the balance or working capital must fund the rest)"
                }
            );
            if let Some(b) = &a.below_minimum {
                let _ = writeln!(
                    out,
                    "    at {} the margin is not met (cost per unit above the most it may \
                     be by {}):",
                    units(b.volume),
                    unit_price(b.cost_per_unit - a.target_cost, cur)
                );
                describe(&mut out, b, cur);
            }
        }
        None => {
            let _ = writeln!(
                out,
                "\nno volume of the scan (every {} units up to {}) leaves a margin of {:.1}% \
                 at this price",
                a.step,
                a.infeasible_from.map_or(a.max, |f| f - 1),
                a.margin * 100.0
            );
        }
    }
    if let Some(f) = a.infeasible_from {
        let _ = writeln!(
            out,
            "\nat {f} units demand cannot be met (with the other products' demand as planned), \
             nor at any larger volume: the scan stops there"
        );
    }
    if !a.no_plan.is_empty() {
        let _ = writeln!(
            out,
            "\nNO PLAN at {} of the volumes planned: the planner found none, so they are \
             neither viable nor failing, and a ladder step needing one is left out (a longer \
             --time-limit may find one):",
            a.no_plan.len()
        );
        for n in &a.no_plan {
            let _ = writeln!(out, "  at {}: {}", units(n.volume), n.reason);
        }
    }
    if !a.not_reached.is_empty() {
        let _ = writeln!(
            out,
            "\nNOT REACHED before the scan's end: neither viable nor failing, and a ladder \
             step needing one is left out:"
        );
        for r in &a.not_reached {
            if r.first == r.last {
                let _ = writeln!(out, "  at {}", units(r.first));
            } else {
                let _ = writeln!(out, "  from {} to {} units", r.first, r.last);
            }
        }
    }
    if !a.ladder_left_out.is_empty() {
        let left: Vec<String> = a.ladder_left_out.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(
            out,
            "\nprice-ladder steps left out (a volume of the step has no plan): at {} units",
            left.join(", ")
        );
    }
    if a.ladder.is_empty() {
        if a.ladder_left_out.is_empty() {
            let _ = writeln!(
                out,
                "\nno supplier price break is reached up to {} units",
                a.max
            );
        }
    } else {
        let _ = writeln!(
            out,
            "\nprice ladder: supplier breaks reached as volume grows (price keeping the margin)"
        );
        for s in &a.ladder {
            let _ = writeln!(
                out,
                "  at {} units {}/{} reaches {} ({} -> {} per unit of material):",
                s.mark.volume,
                s.mark.supplier,
                s.mark.material,
                s.mark.min_qty,
                major(s.mark.previous_price, cur),
                major(s.mark.unit_price, cur)
            );
            let _ = writeln!(
                out,
                "      cost per unit {} -> {}, price {} -> {}",
                major(s.below.cost_per_unit, cur),
                major(s.at.cost_per_unit, cur),
                major(s.price_below, cur),
                major(s.price_at, cur)
            );
        }
        let _ = writeln!(
            out,
            "  (the planner may buy up to a break before its volume when that is cheaper, \
             so a step can show up earlier)"
        );
    }
    let _ = writeln!(out, "\nmoney in {cur} (major units)");
    out
}
