//! A rule-based plan, the way a planner with a spreadsheet would do it.
//!
//! Each product goes to its cheapest line that has the hours (split over
//! lines by unit cost when none has); each material short of stock is bought
//! from the offer and tier that cover the need most cheaply (split over
//! offers when caps force it). It serves twice: as the MILP's warm start,
//! and as the baseline the benchmark compares the optimum against.

use crate::model::ceil_pack;
use crate::plan::{plan_from_decisions, Decisions, Plan, PlanStatus};
use crate::validate::{offers_by_material, ValidatedScenario};

/// The greedy plan, or `None` when the rules cannot find a plan that meets
/// demand (the scenario may still be feasible).
///
/// For a time-phased scenario it is the lot-for-lot MRP plan: each period's
/// net need bought on its own from the cheapest offer that arrives in time.
pub fn greedy_plan(v: &ValidatedScenario) -> Option<Plan> {
    if v.is_timed() {
        return crate::phased::greedy::greedy_plan(v);
    }
    let d = greedy_decisions(v)?;
    let mut plan = plan_from_decisions(v, &d, PlanStatus::Feasible, "greedy");
    plan.gap = f64::INFINITY;
    Some(plan)
}

/// Hours a run of `q` units takes on a line.
fn hours(v: &ValidatedScenario, l: usize, q: i64) -> f64 {
    let line = v.line(v.lines()[l]);
    if q == 0 {
        0.0
    } else {
        line.hours_per_unit * q as f64 + line.setup_hours
    }
}

pub(crate) fn greedy_decisions(v: &ValidatedScenario) -> Option<Decisions> {
    let s = v.scenario();
    let mut d = Decisions::empty(v);
    let mut left: Vec<f64> = s.factories.iter().map(|f| f.capacity_hours).collect();

    for (p, prod) in s.products.iter().enumerate() {
        if prod.demand == 0 {
            continue;
        }
        let mut cands: Vec<usize> = (0..v.lines().len())
            .filter(|&i| v.lines()[i].product == p)
            .collect();
        let whole_cost = |i: usize| {
            let line = v.line(v.lines()[i]);
            line.unit_cost * prod.demand.max(line.min_run) as f64 + line.setup_cost
        };
        cands.sort_by(|&a, &b| whole_cost(a).total_cmp(&whole_cost(b)));
        // Cheapest line that can make the whole demand.
        let whole = cands.iter().copied().find(|&i| {
            let l = v.lines()[i];
            let q = prod.demand.max(v.line(l).min_run);
            hours(v, i, q) <= left[l.factory] + 1e-9
        });
        if let Some(i) = whole {
            let l = v.lines()[i];
            let q = prod.demand.max(v.line(l).min_run);
            left[l.factory] -= hours(v, i, q);
            d.x[i] = q;
            continue;
        }
        // Otherwise split: fill lines by unit cost as far as their hours go.
        cands.sort_by(|&a, &b| {
            v.line(v.lines()[a])
                .unit_cost
                .total_cmp(&v.line(v.lines()[b]).unit_cost)
        });
        let mut remaining = prod.demand;
        for i in cands {
            if remaining == 0 {
                break;
            }
            let l = v.lines()[i];
            let line = v.line(l);
            let room = left[l.factory] - line.setup_hours;
            let fits = if line.hours_per_unit > 0.0 {
                ((room / line.hours_per_unit) + 1e-9).floor().max(0.0) as i64
            } else if room >= -1e-9 {
                remaining
            } else {
                0
            };
            let q = remaining.min(fits).max(0);
            let q = if q < line.min_run {
                if fits >= line.min_run {
                    line.min_run
                } else {
                    0
                }
            } else {
                q
            };
            if q > 0 {
                left[l.factory] -= hours(v, i, q);
                d.x[i] = q;
                remaining = (remaining - q).max(0);
            }
        }
        if remaining > 0 {
            return None;
        }
    }

    // Materials.
    let used = d.consumption(v);
    let by_material = offers_by_material(v);
    for (m, mat) in s.materials.iter().enumerate() {
        let need = used[m] - mat.on_hand;
        if need <= 1e-9 {
            continue;
        }
        let offers: Vec<usize> = by_material
            .get(&m)
            .map(|os| {
                os.iter()
                    .copied()
                    .filter(|&o| v.offers()[o].usable)
                    .collect()
            })
            .unwrap_or_default();
        for (oi, k, q) in buy_need(v, &offers, need, mat.holding_cost)? {
            d.buy[oi] = Some((k, q));
        }
    }
    Some(d)
}

/// How a rule-based buyer covers `need` of one material from `offers`
/// (indices into [`ValidatedScenario::offers`]): the single offer and tier
/// that cover it most cheaply (counting holding cost on what is bought
/// beyond it), or, when caps force it, a split over offers by first price,
/// up to each cap. `None` when the offers cannot cover it.
pub(crate) fn buy_need(
    v: &ValidatedScenario,
    offers: &[usize],
    mut need: f64,
    holding: f64,
) -> Option<Vec<(usize, usize, f64)>> {
    let mut best: Option<(f64, usize, usize, f64)> = None;
    for &oi in offers {
        if let Some((k, q, cost)) = cheapest_buy(v, oi, need, holding) {
            if best.is_none_or(|b| cost < b.0) {
                best = Some((cost, oi, k, q));
            }
        }
    }
    if let Some((_, oi, k, q)) = best {
        return Some(vec![(oi, k, q)]);
    }
    // Caps force a split: cheapest first price, up to each cap.
    let mut out = Vec::new();
    let mut sorted = offers.to_vec();
    let first_price = |o: usize| v.offer(v.offers()[o]).breaks[0].unit_price;
    sorted.sort_by(|&a, &b| first_price(a).total_cmp(&first_price(b)));
    for oi in sorted {
        if need <= 1e-9 {
            break;
        }
        let offer = v.offer(v.offers()[oi]);
        let cap = offer.max_qty.unwrap_or(f64::INFINITY);
        let pack = offer.pack();
        let q = match pack {
            Some(p) => ((need.min(cap) / p) - 1e-9).ceil() * p,
            None => need.min(cap),
        };
        let q = if q > cap + 1e-9 {
            crate::model::floor_pack(cap, pack)
        } else {
            q
        };
        let q = ceil_pack(q.max(offer.moq).max(offer.breaks[0].min_qty), pack);
        if q <= 0.0 || q > cap + 1e-9 {
            continue;
        }
        let k = tier_of(offer, q)?;
        out.push((oi, k, q));
        need -= q;
    }
    (need <= 1e-9).then_some(out)
}

/// The tier whose break `q` reaches (all-units pricing), if any.
pub(crate) fn tier_of(offer: &crate::scenario::Offer, q: f64) -> Option<usize> {
    offer.breaks.iter().rposition(|b| b.min_qty <= q + 1e-9)
}

/// Cheapest way to cover `need` from one offer alone: `(tier, quantity, cost)`,
/// counting holding cost on what is bought beyond the need.
pub(crate) fn cheapest_buy(
    v: &ValidatedScenario,
    oi: usize,
    need: f64,
    holding: f64,
) -> Option<(usize, f64, f64)> {
    let offer = v.offer(v.offers()[oi]);
    let pack = offer.pack();
    let cap = offer.max_qty.unwrap_or(f64::INFINITY);
    let mut best: Option<(usize, f64, f64)> = None;
    for b in &offer.breaks {
        let q = ceil_pack(need.max(b.min_qty).max(offer.moq), pack);
        if q > cap + 1e-9 {
            continue;
        }
        let Some(k) = tier_of(offer, q) else { continue };
        let cost = offer.breaks[k].unit_price * q + offer.order_cost + holding * (q - need);
        if best.is_none_or(|bb| cost < bb.2) {
            best = Some((k, q, cost));
        }
    }
    best
}
