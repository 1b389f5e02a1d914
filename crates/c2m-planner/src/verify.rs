//! An independent check of a plan against the model, by names and numbers
//! only: it never looks at the solver or the MILP, so a formulation bug
//! cannot hide behind the code that made it. Tests run it on every plan;
//! the server and the what-if tools can run it on plans they are handed.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::plan::{round_money, ExactCosts, Plan, PlanStatus, Purchase};
use crate::scenario::Offer;
use crate::validate::ValidatedScenario;

/// Which rule a plan breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A run names a line that does not exist, or twice.
    UnknownLine,
    Demand,
    MinRun,
    Capacity,
    /// A purchase names an offer that does not exist, or twice.
    UnknownOffer,
    /// The offer's supplier is slower than the material deadline.
    Deadline,
    /// The unit price is not the price of the tier the quantity reaches.
    Tier,
    Pack,
    Moq,
    SupplierCap,
    /// More material used than on hand and bought.
    Material,
    /// The reported leftover does not match stock + bought - used.
    Leftover,
    /// A reported cost does not match the cost recomputed from runs and purchases.
    Cost,
    /// The status, gap or shortfalls contradict the plan.
    Status,
    /// Version 2: a run or order in a period it cannot be in (outside the
    /// horizon, an order too late to arrive, an arrival that is not the
    /// order period plus the lead time), or no period at all.
    Period,
    /// Version 2: units late that may not be, or reported late units or
    /// completion periods that do not match the runs.
    Late,
    /// Version 2: reported stock per period that does not match the flow.
    Stock,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.rule, self.message)
    }
}

/// Tolerance on quantities: solvers work to about 1e-9 relative.
pub(crate) fn tol(scale: f64) -> f64 {
    1e-6 * scale.abs().max(1.0)
}

/// Checks a plan against the scenario. An infeasible plan is checked like
/// any other, except that demand may be short by exactly its `shortfalls`.
///
/// Costs: each part must equal its recomputed exact value rounded (within
/// one minor unit for float order effects), and `total_cost` the exact
/// total rounded, likewise.
pub fn verify_plan(v: &ValidatedScenario, plan: &Plan) -> Result<(), Vec<Violation>> {
    if v.is_timed() {
        return crate::phased::verify::verify(v, plan);
    }
    let s = v.scenario();
    let mut out = Vec::new();
    let mut bad = |rule: Rule, message: String| out.push(Violation { rule, message });

    let mut costs = ExactCosts::default();
    let mut made = vec![0i64; s.products.len()];
    let mut used = vec![0.0; s.materials.len()];
    let mut hours = vec![0.0; s.factories.len()];
    let mut seen_lines = HashMap::new();
    for (ri, run) in plan.runs.iter().enumerate() {
        let found = v.lines().iter().find(|l| {
            s.factories[l.factory].id == run.factory && s.products[l.product].sku == run.sku
        });
        let Some(l) = found else {
            bad(
                Rule::UnknownLine,
                format!(
                    "runs[{ri}]: factory `{}` has no line for `{}`",
                    run.factory, run.sku
                ),
            );
            continue;
        };
        if seen_lines.insert((l.factory, l.product), ri).is_some() {
            bad(
                Rule::UnknownLine,
                format!(
                    "runs[{ri}]: second run of `{}` at `{}`",
                    run.sku, run.factory
                ),
            );
        }
        let line = v.line(*l);
        if run.quantity < 0 {
            bad(Rule::MinRun, format!("runs[{ri}]: negative quantity"));
            continue;
        }
        if run.quantity == 0 {
            continue;
        }
        if run.quantity < line.min_run {
            bad(
                Rule::MinRun,
                format!(
                    "runs[{ri}]: {} of `{}` at `{}` is below the minimum run {}",
                    run.quantity, run.sku, run.factory, line.min_run
                ),
            );
        }
        made[l.product] += run.quantity;
        hours[l.factory] += line.hours_per_unit * run.quantity as f64 + line.setup_hours;
        for &(m, a) in v.bom(l.product) {
            used[m] += a * run.quantity as f64;
        }
        costs.production += line.unit_cost * run.quantity as f64;
        costs.setup += line.setup_cost;
    }

    for (fi, f) in s.factories.iter().enumerate() {
        if hours[fi] > f.capacity_hours + tol(f.capacity_hours) {
            bad(
                Rule::Capacity,
                format!(
                    "factory `{}` uses {:.4} hours of {}",
                    f.id, hours[fi], f.capacity_hours
                ),
            );
        }
    }

    let short: HashMap<&str, i64> = plan
        .shortfalls
        .iter()
        .map(|sf| (sf.sku.as_str(), sf.short_by))
        .collect();
    for (p, prod) in s.products.iter().enumerate() {
        let expected_short = (prod.demand - made[p]).max(0);
        let reported = short.get(prod.sku.as_str()).copied().unwrap_or(0);
        if expected_short != reported {
            let rule = if plan.status == PlanStatus::Infeasible {
                Rule::Status
            } else {
                Rule::Demand
            };
            bad(
                rule,
                format!(
                    "`{}`: demand {}, made {}, reported short by {reported}",
                    prod.sku, prod.demand, made[p]
                ),
            );
        }
    }
    if plan.status == PlanStatus::Infeasible && plan.shortfalls.is_empty() {
        bad(
            Rule::Status,
            "infeasible plan without shortfalls".to_string(),
        );
    }
    if plan.status != PlanStatus::Infeasible && !plan.shortfalls.is_empty() {
        bad(
            Rule::Status,
            format!("{} plan with shortfalls", plan.status),
        );
    }
    if plan.status == PlanStatus::Optimal && plan.gap != 0.0 {
        bad(Rule::Status, format!("optimal plan with gap {}", plan.gap));
    }

    let mut bought = vec![0.0; s.materials.len()];
    let mut seen_offers = HashMap::new();
    for (pi, p) in plan.purchases.iter().enumerate() {
        let found = v.offers().iter().find(|o| {
            s.suppliers[o.supplier].id == p.supplier && s.materials[o.material].id == p.material
        });
        let Some(o) = found else {
            bad(
                Rule::UnknownOffer,
                format!(
                    "purchases[{pi}]: `{}` has no offer for `{}`",
                    p.supplier, p.material
                ),
            );
            continue;
        };
        if seen_offers.insert((o.supplier, o.material), pi).is_some() {
            bad(
                Rule::UnknownOffer,
                format!("purchases[{pi}]: second order from the same offer"),
            );
        }
        let offer = v.offer(*o);
        let at = format!("purchases[{pi}] ({}/{})", p.supplier, p.material);
        if !o.usable {
            bad(
                Rule::Deadline,
                format!(
                    "{at}: lead time {} days exceeds the material deadline",
                    s.suppliers[o.supplier].lead_days
                ),
            );
        }
        let q = p.quantity;
        if !check_order(offer, p, &at, &mut bad) {
            continue;
        }
        bought[o.material] += q;
        costs.purchase += p.unit_price * q;
        costs.ordering += offer.order_cost;
    }

    for (m, mat) in s.materials.iter().enumerate() {
        let have = mat.on_hand + bought[m];
        if used[m] > have + tol(have) {
            bad(
                Rule::Material,
                format!(
                    "`{}`: uses {:.6} but has {:.6} (on hand {} + bought {:.6})",
                    mat.id, used[m], have, mat.on_hand, bought[m]
                ),
            );
        }
        let left = (have - used[m]).max(0.0);
        costs.holding += mat.holding_cost * left;
        match plan.leftover.get(&mat.id) {
            Some(r) if (r - left).abs() <= tol(have) => {}
            other => bad(
                Rule::Leftover,
                format!("`{}`: leftover {left:.6}, reported {other:?}", mat.id),
            ),
        }
    }

    let parts = [
        (
            "production",
            costs.production,
            plan.cost_breakdown.production,
        ),
        ("setup", costs.setup, plan.cost_breakdown.setup),
        ("purchase", costs.purchase, plan.cost_breakdown.purchase),
        ("ordering", costs.ordering, plan.cost_breakdown.ordering),
        ("holding", costs.holding, plan.cost_breakdown.holding),
        ("total", costs.total(), plan.total_cost),
    ];
    for (name, exact, reported) in parts {
        if (round_money(exact) - reported).abs() > 1 {
            bad(
                Rule::Cost,
                format!("{name} cost is {exact:.3}, reported {reported}"),
            );
        }
    }

    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

/// The rules of one order (version 1: the one order of an offer; version 2:
/// each order of each period): quantity, MOQ, supplier cap, packs and the
/// tier's price. False when the quantity is not positive (nothing else is
/// checked then).
pub(crate) fn check_order(
    offer: &Offer,
    p: &Purchase,
    at: &str,
    bad: &mut impl FnMut(Rule, String),
) -> bool {
    let q = p.quantity;
    if q.is_nan() || q <= 0.0 {
        bad(Rule::Moq, format!("{at}: quantity {q} is not positive"));
        return false;
    }
    if q < offer.moq - tol(offer.moq) {
        bad(
            Rule::Moq,
            format!("{at}: {q} is below the MOQ {}", offer.moq),
        );
    }
    if let Some(cap) = offer.max_qty {
        if q > cap + tol(cap) {
            bad(
                Rule::SupplierCap,
                format!("{at}: {q} is above the supplier cap {cap}"),
            );
        }
    }
    match (offer.pack(), p.packs) {
        (Some(size), Some(n)) => {
            if (n as f64 * size - q).abs() > tol(q) {
                bad(Rule::Pack, format!("{at}: {n} packs of {size} is not {q}"));
            }
        }
        (Some(size), None) => {
            let n = q / size;
            if (n - n.round()).abs() > 1e-6 {
                bad(
                    Rule::Pack,
                    format!("{at}: {q} is not whole packs of {size}"),
                );
            } else {
                bad(Rule::Pack, format!("{at}: packs not reported"));
            }
        }
        (None, Some(n)) => bad(
            Rule::Pack,
            format!("{at}: {n} packs reported but the offer has no pack size"),
        ),
        (None, None) => {}
    }
    // The tier the quantity reaches. At a break exactly that is the break's
    // own tier: the contract prices "a quantity exactly at a break ... at
    // that break's tier (the next one up in quantity) when a plan is
    // checked" (constraint 5), whatever the MILP's closure allows.
    match reached_tier(offer, q) {
        None => bad(
            Rule::Tier,
            format!(
                "{at}: {q} is below the first break {}",
                offer.breaks[0].min_qty
            ),
        ),
        Some(k) => {
            if offer.breaks[k].unit_price != p.unit_price {
                bad(
                    Rule::Tier,
                    format!(
                        "{at}: {q} reaches the break at {} priced {}, not {}",
                        offer.breaks[k].min_qty, offer.breaks[k].unit_price, p.unit_price
                    ),
                );
            }
        }
    }
    true
}

/// The price tier a quantity `q` of an offer reaches under the contract's
/// rule (`min_qty_k <= Q < min_qty_{k+1}`; a quantity at a break, to the
/// solver's tolerance, is in that break's tier): `None` below the first break.
pub(crate) fn reached_tier(offer: &Offer, q: f64) -> Option<usize> {
    offer.breaks.iter().rposition(|b| b.min_qty <= q + tol(q))
}
