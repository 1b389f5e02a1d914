//! One quantity varied over a range, and how cost per unit responds.
//!
//! Version 2 scenarios (with a horizon) sweep the same quantities, plus a
//! supplier's lead time ([`Quantity::LeadTime`]), and each point also
//! reports its lateness: what the plan pays for late units and how many
//! there are. A demand in version 2 is the total due of the sku: the
//! sweep keeps the shape of its due schedule and scales it to the total
//! ([`set_total_due`]).

use serde::Serialize;

use crate::report::{major, unit_price};
use crate::{Due, Horizon, PlanStatus, Product, Scenario, Shortfall, SolveOptions};

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

/// One solved point.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// The swept value: units, or the price change as a fraction.
    pub x: f64,
    pub status: PlanStatus,
    /// `None` where the point is infeasible.
    pub total_cost: Option<i64>,
    /// Full cost per demanded unit of the reported sku (minor units); NaN
    /// (`null` in JSON) where the point is infeasible.
    pub cost_per_unit: f64,
    /// What the best partial plan cannot make, where the point is infeasible.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shortfalls: Vec<Shortfall>,
    /// Version 2: the lateness part of the total (minor units); absent for a
    /// version 1 scenario and where the point is infeasible.
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

/// The values a sweep visits.
pub fn values(spec: &SweepSpec) -> Vec<f64> {
    let n = spec.points.max(1);
    (0..n)
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
        .collect()
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
            let days = x.round().max(0.0) as i64;
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
    let planned = super::par_map(
        &distinct,
        super::threads(),
        |&x| {
            let s = scenario_at(base, &spec.quantity, x)?;
            let plan = super::plan_scenario(&s, opts).map_err(|e| format!("at {x}: {e}"))?;
            let feasible = plan.status != PlanStatus::Infeasible;
            let timed = feasible && plan.horizon.is_some();
            Ok(SweepPoint {
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
                status: plan.status,
                // An infeasible point's partial plan has no cost to show.
                total_cost: feasible.then_some(plan.total_cost),
                cost_per_unit: if feasible {
                    plan.cost_per_unit.get(&spec.sku).unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                },
                shortfalls: plan.shortfalls,
            })
        },
        &mut |done| progress(done, total),
    )?;
    let points = xs
        .iter()
        .zip(&keys)
        .map(|(&x, k)| {
            let i = distinct
                .iter()
                .position(|d| d == k)
                .expect("every key is planned");
            SweepPoint {
                x,
                ..planned[i].clone()
            }
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

/// CSV of the points: x, status, total cost, cost per unit, and for an
/// infeasible point (no costs) its shortfalls as `sku:units; ...`.
///
/// A version 2 sweep adds `lateness` (minor units) and `late_units` after
/// the cost per unit (empty where the point is infeasible).
pub fn render_csv(s: &Sweep) -> String {
    let timed = s.is_timed();
    let mut out = format!(
        "x,status,total_cost,{},{}shortfalls\n",
        super::compare::csv_field(&format!("cost_per_unit:{}", s.sku)),
        if timed { "lateness,late_units," } else { "" }
    );
    for p in &s.points {
        let late = if !timed {
            String::new()
        } else {
            format!(
                "{},{},",
                p.lateness.map_or(String::new(), |v| v.to_string()),
                p.late_units.map_or(String::new(), |v| v.to_string())
            )
        };
        match p.total_cost {
            Some(t) => out.push_str(&format!(
                "{},{},{t},{:.4},{late}\n",
                p.x, p.status, p.cost_per_unit
            )),
            None => out.push_str(&format!(
                "{},{},,,{late}{}\n",
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

/// An aligned table of the points, with the break marks listed after it.
pub fn render_text(s: &Sweep) -> String {
    let timed = s.is_timed();
    let cur = s.currency.as_str();
    let x_head = match s.swept {
        Swept::LeadTime => "days",
        _ => "x",
    };
    let mut out = format!(
        "{:>12}  {:<10}  {:>16}  {:>14}",
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
                    "{x:>12}  {:<10}  {:>16}  {:>14}",
                    p.status.to_string(),
                    major(t as f64, cur),
                    major(p.cost_per_unit, cur)
                ));
                if timed {
                    out.push_str(&format!(
                        "  {:>12}  {:>6}",
                        major(p.lateness.unwrap_or(0) as f64, cur),
                        p.late_units.unwrap_or(0)
                    ));
                }
                out.push('\n');
            }
            None => {
                let short: Vec<String> = p
                    .shortfalls
                    .iter()
                    .map(|f| format!("{} short by {}", f.sku, f.short_by))
                    .collect();
                let late = if timed {
                    format!("  {:>12}  {:>6}", "-", "-")
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "{x:>12}  {:<10}  {:>16}  {:>14}{late}  {}\n",
                    "INFEASIBLE",
                    "-",
                    "-",
                    short.join(", ")
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
    let infeasible = s
        .points
        .iter()
        .filter(|p| p.status == PlanStatus::Infeasible)
        .count();
    if infeasible > 0 {
        out.push_str(&format!(
            "INFEASIBLE at {infeasible} of {} points: demand cannot be met, so no costs; \
             short: what the best partial plan found within the time limit cannot make\n",
            s.points.len()
        ));
    }
    out
}
