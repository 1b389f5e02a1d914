//! Cross-checks on tiny random scenarios.
//!
//! The brute force enumerates the decisions directly from the model's text,
//! not from the MILP: every run size, and for every material every
//! combination of purchase quantities, priced by the all-units rule. Data
//! are integers (BOM, stock, breaks, MOQs, packs, caps), so given the runs
//! an optimal purchase plan with integer quantities exists (one covering row
//! with integer bounds), and enumerating integer quantities is exact.

mod common;

use std::collections::BTreeMap;

use c2m_planner::generate::Rng;
use c2m_planner::{
    Factory, Line, Material, Offer, PlanStatus, PriceBreak, Product, Scenario, Supplier,
    ValidatedScenario,
};

fn tiny(seed: u64) -> Scenario {
    let mut r = Rng::new(seed);
    let n_mat = r.int(1, 2) as usize;
    let n_prod = r.int(1, 2) as usize;
    let n_fac = r.int(1, 2) as usize;
    let mut materials = Vec::new();
    for m in 0..n_mat {
        materials.push(Material {
            id: format!("m{m}"),
            unit: "kg".into(),
            on_hand: r.int(0, 4) as f64,
            holding_cost: r.int(0, 3) as f64,
            receipts: Vec::new(),
        });
    }
    let mut products = Vec::new();
    for p in 0..n_prod {
        let mut bom = BTreeMap::new();
        let k = r.int(1, n_mat as i64) as usize;
        for m in r.pick(n_mat, k) {
            bom.insert(format!("m{m}"), r.int(1, 2) as f64);
        }
        products.push(Product::with_demand(format!("p{p}"), r.int(1, 6), bom));
    }
    let mut factories = Vec::new();
    for f in 0..n_fac {
        let mut lines = Vec::new();
        for p in 0..n_prod {
            if !r.chance(0.75) {
                continue;
            }
            lines.push(Line {
                sku: format!("p{p}"),
                // Sometimes below the holding cost of the BOM, where making
                // extra units to use up stock can pay: the model allows it.
                unit_cost: r.int(6, 20) as f64,
                setup_cost: r.int(0, 30) as f64,
                min_run: if r.chance(0.3) { r.int(1, 8) } else { 0 },
                hours_per_unit: r.int(0, 2) as f64,
                setup_hours: r.int(0, 2) as f64,
            });
        }
        factories.push(Factory {
            id: format!("f{f}"),
            capacity_hours: r.int(4, 14) as f64,
            calendar: None,
            lines,
        });
    }
    let mut suppliers = Vec::new();
    for s in 0..2 {
        let lead_days = if r.chance(0.2) { 30 } else { 3 };
        let mut offers = Vec::new();
        for m in 0..n_mat {
            if !r.chance(0.8) {
                continue;
            }
            let n_breaks = r.int(1, 3);
            let mut breaks = vec![PriceBreak {
                min_qty: 0.0,
                unit_price: r.int(5, 15) as f64,
            }];
            for _ in 1..n_breaks {
                let last = *breaks.last().unwrap();
                breaks.push(PriceBreak {
                    min_qty: last.min_qty + r.int(2, 8) as f64,
                    unit_price: (last.unit_price - r.int(1, 3) as f64).max(0.0),
                });
            }
            offers.push(Offer {
                material: format!("m{m}"),
                moq: if r.chance(0.3) {
                    r.int(1, 8) as f64
                } else {
                    0.0
                },
                pack_size: if r.chance(0.3) {
                    Some(r.int(2, 5) as f64)
                } else {
                    None
                },
                max_qty: if r.chance(0.25) {
                    Some(r.int(3, 15) as f64)
                } else {
                    None
                },
                order_cost: r.int(0, 10) as f64,
                breaks,
            });
        }
        suppliers.push(Supplier {
            id: format!("s{s}"),
            lead_days,
            offers,
        });
    }
    Scenario {
        name: format!("tiny-{seed}"),
        currency: "CNY".into(),
        material_deadline_days: Some(10),
        horizon: None,
        products,
        materials,
        factories,
        suppliers,
    }
}

/// Cost of buying `q` from an offer under the contract's rules, or `None`
/// if `q` cannot be bought.
fn offer_cost(o: &Offer, q: i64) -> Option<f64> {
    if q == 0 {
        return Some(0.0);
    }
    let q = q as f64;
    if q < o.moq || o.max_qty.is_some_and(|c| q > c) {
        return None;
    }
    if let Some(p) = o.pack_size.filter(|&p| p > 0.0) {
        if (q / p).fract() != 0.0 {
            return None;
        }
    }
    let tier = o.breaks.iter().rposition(|b| b.min_qty <= q)?;
    Some(o.breaks[tier].unit_price * q + o.order_cost)
}

const MAX_Q: i64 = 60;

/// For one material: the cheapest purchase + holding cost for each
/// consumption 0..=max_used, `None` where no purchase covers it.
fn material_costs(s: &Scenario, m: usize, max_used: i64) -> Vec<Option<f64>> {
    let mat = &s.materials[m];
    let offers: Vec<&Offer> = s
        .suppliers
        .iter()
        .filter(|sup| s.material_deadline_days.is_none_or(|d| sup.lead_days <= d))
        .flat_map(|sup| sup.offers.iter())
        .filter(|o| o.material == mat.id)
        .collect();
    // All reachable (bought quantity, cheapest cost) combinations.
    let mut best_by_total: BTreeMap<i64, f64> = BTreeMap::new();
    best_by_total.insert(0, 0.0);
    for o in offers {
        let mut next = BTreeMap::new();
        for (&tot, &c) in &best_by_total {
            for q in 0..=MAX_Q {
                if let Some(oc) = offer_cost(o, q) {
                    let e: &mut f64 = next.entry(tot + q).or_insert(f64::INFINITY);
                    *e = e.min(c + oc);
                }
            }
        }
        best_by_total = next;
    }
    let on_hand = mat.on_hand as i64;
    (0..=max_used)
        .map(|used| {
            best_by_total
                .iter()
                .filter(|(&tot, _)| on_hand + tot >= used)
                .map(|(&tot, &c)| c + mat.holding_cost * (on_hand + tot - used) as f64)
                .min_by(f64::total_cmp)
        })
        .collect()
}

/// The optimum by enumeration, or `None` if no plan meets demand.
fn brute_force(v: &ValidatedScenario) -> Option<f64> {
    let s = v.scenario();
    let lines = v.lines();
    let ranges: Vec<i64> = lines
        .iter()
        .map(|l| {
            // Two units beyond any bound the formulations use.
            s.products[l.product].demand.max(v.line(*l).min_run) + 2
        })
        .collect();
    let max_used: Vec<i64> = (0..s.materials.len())
        .map(|m| {
            lines
                .iter()
                .zip(&ranges)
                .map(|(l, &u)| {
                    let a = s.products[l.product]
                        .bom
                        .get(&s.materials[m].id)
                        .copied()
                        .unwrap_or(0.0);
                    a as i64 * u
                })
                .sum()
        })
        .collect();
    let mat_cost: Vec<Vec<Option<f64>>> = (0..s.materials.len())
        .map(|m| material_costs(s, m, max_used[m]))
        .collect();

    let mut best: Option<f64> = None;
    let mut x = vec![0i64; lines.len()];
    loop {
        if let Some(c) = evaluate(v, &x, &mat_cost) {
            if best.is_none_or(|b| c < b) {
                best = Some(c);
            }
        }
        // Next x (odometer).
        let mut i = 0;
        loop {
            if i == x.len() {
                return best;
            }
            x[i] += 1;
            if x[i] <= ranges[i] {
                break;
            }
            x[i] = 0;
            i += 1;
        }
    }
}

fn evaluate(v: &ValidatedScenario, x: &[i64], mat_cost: &[Vec<Option<f64>>]) -> Option<f64> {
    let s = v.scenario();
    let mut cost = 0.0;
    let mut made = vec![0; s.products.len()];
    let mut hours = vec![0.0; s.factories.len()];
    let mut used = vec![0i64; s.materials.len()];
    for (l, &q) in v.lines().iter().zip(x) {
        if q == 0 {
            continue;
        }
        let line = v.line(*l);
        if q < line.min_run {
            return None;
        }
        made[l.product] += q;
        hours[l.factory] += line.hours_per_unit * q as f64 + line.setup_hours;
        cost += line.unit_cost * q as f64 + line.setup_cost;
        for (mid, a) in &s.products[l.product].bom {
            let m = v.material_index(mid).unwrap();
            used[m] += *a as i64 * q;
        }
    }
    for (p, prod) in s.products.iter().enumerate() {
        if made[p] < prod.demand {
            return None;
        }
    }
    for (f, fac) in s.factories.iter().enumerate() {
        if hours[f] > fac.capacity_hours {
            return None;
        }
    }
    for m in 0..s.materials.len() {
        cost += mat_cost[m][used[m] as usize]?;
    }
    Some(cost)
}

#[test]
fn planner_matches_brute_force_on_tiny_random_scenarios() {
    let mut feasible = 0;
    let mut infeasible = 0;
    for seed in 0..60u64 {
        let v = tiny(seed).validate().expect("tiny scenario is valid");
        let expected = brute_force(&v);
        for opts in common::all_options() {
            let p = common::solve_with(&v, &opts);
            match expected {
                Some(best) => {
                    assert_eq!(
                        p.status,
                        PlanStatus::Optimal,
                        "seed {seed} {opts:?}: {}",
                        c2m_planner::report::render_json(&p)
                    );
                    let got = p.exact_costs.total();
                    assert!(
                        (got - best).abs() < 1e-6,
                        "seed {seed} {:?}/{:?}: planner {got}, brute force {best}\n{}",
                        opts.solver,
                        opts.formulation,
                        c2m_planner::report::render_json(&p)
                    );
                }
                None => assert_eq!(
                    p.status,
                    PlanStatus::Infeasible,
                    "seed {seed} {opts:?}: brute force finds no plan"
                ),
            }
        }
        if expected.is_some() {
            feasible += 1;
        } else {
            infeasible += 1;
        }
    }
    // The generator must exercise both outcomes.
    assert!(feasible >= 20, "only {feasible} feasible");
    assert!(infeasible >= 3, "only {infeasible} infeasible");
}

/// microlp and HiGHS find the same optimum on small random scenarios.
#[cfg(all(feature = "microlp", feature = "highs"))]
#[test]
fn microlp_and_highs_agree() {
    use c2m_planner::generate::{random_scenario, Size};
    use c2m_planner::{Formulation, SolveOptions, SolverKind};
    use std::time::Duration;
    let size = Size {
        products: 3,
        factories: 2,
        materials: 5,
        max_breaks: 3,
    };
    for seed in 0..12u64 {
        let v = random_scenario(seed, size).validate().unwrap();
        let run = |solver| {
            common::solve_with(
                &v,
                &SolveOptions {
                    solver,
                    time_limit: Duration::from_secs(60),
                    mip_gap: 0.0,
                    formulation: Formulation::Tight,
                    warm_start: true,
                    shadow_prices: false,
                },
            )
        };
        let h = run(SolverKind::Highs);
        let m = run(SolverKind::Microlp);
        assert_eq!(h.status, m.status, "seed {seed}");
        let (a, b) = (h.exact_costs.total(), m.exact_costs.total());
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "seed {seed}: highs {a}, microlp {b}"
        );
    }
}
