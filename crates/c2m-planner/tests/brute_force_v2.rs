//! Cross-checks of the time-phased model on tiny random scenarios, and the
//! bridge between the versions.
//!
//! The brute force enumerates the decisions from the model page's text, not
//! from the MILP: every run size of every line in every period, and, for
//! the one material, the cheapest way to buy what those runs consume by
//! dynamic programming over the periods (state: the stock carried; choice:
//! each order arriving in the period, every allowed quantity, priced by the
//! all-units rule). The data are integers, so given the runs and the tier
//! of each order the purchase problem is a flow over time whose matrix is
//! an interval matrix: an optimal plan with integer quantities exists, and
//! enumerating integer quantities is exact. Unit costs are at least the
//! holding cost of a unit's materials over the whole horizon, so making
//! more than `total due - 1 + min_run` never pays (the model's bound, argued
//! in `phased::model::bounds`) and the enumeration stops there.

mod common;

use std::collections::{BTreeMap, HashMap};

use c2m_planner::generate::{random_scenario, Rng, Size};
use c2m_planner::{
    Due, Factory, Horizon, Line, Material, Offer, PlanStatus, PriceBreak, Product, Receipt,
    Scenario, Supplier, ValidatedScenario,
};

fn tiny(seed: u64) -> Scenario {
    let mut r = Rng::new(seed);
    let periods = r.int(2, 3) as usize;
    let n_prod = r.int(1, 2) as usize;
    let holding = r.int(0, 2) as f64;
    let material = Material {
        id: "m".into(),
        unit: "kg".into(),
        on_hand: r.int(0, 3) as f64,
        holding_cost: holding,
        receipts: if r.chance(0.4) {
            vec![Receipt {
                period: r.int(0, periods as i64 - 1),
                quantity: r.int(1, 3) as f64,
            }]
        } else {
            Vec::new()
        },
    };
    let mut products = Vec::new();
    let mut lines = Vec::new();
    for p in 0..n_prod {
        let a = r.int(1, 2);
        let mut due = Vec::new();
        let n_due = r.int(1, 2) as usize;
        for t in r.pick(periods, n_due) {
            due.push(Due {
                period: t as i64,
                quantity: r.int(1, 3),
            });
        }
        let mut product = Product {
            sku: format!("p{p}"),
            demand: 0,
            bom: BTreeMap::from([("m".to_string(), a as f64)]),
            due,
            late_cost: r.chance(0.5).then(|| r.int(1, 6) as f64),
        };
        product.demand = product.total_due();
        products.push(product);
        lines.push(Line {
            sku: format!("p{p}"),
            unit_cost: (r.int(6, 20) as f64).max((a as f64 * holding * periods as f64) + 1.0),
            setup_cost: r.int(0, 30) as f64,
            min_run: if r.chance(0.3) { r.int(1, 3) } else { 0 },
            hours_per_unit: r.int(0, 2) as f64,
            setup_hours: r.int(0, 1) as f64,
        });
    }
    let calendar: Vec<f64> = (0..periods)
        .map(|_| {
            if r.chance(0.15) {
                0.0
            } else {
                r.int(3, 10) as f64
            }
        })
        .collect();
    let mut suppliers = Vec::new();
    for s in 0..r.int(1, 2) {
        let n_breaks = r.int(1, 2);
        let mut breaks = vec![PriceBreak {
            min_qty: 0.0,
            unit_price: r.int(5, 15) as f64,
        }];
        if n_breaks == 2 {
            breaks.push(PriceBreak {
                min_qty: r.int(2, 6) as f64,
                unit_price: (breaks[0].unit_price - r.int(1, 4) as f64).max(0.0),
            });
        }
        suppliers.push(Supplier {
            id: format!("s{s}"),
            lead_days: [0, 5, 7, 9][r.int(0, 3) as usize],
            offers: vec![Offer {
                material: "m".into(),
                moq: if r.chance(0.3) {
                    r.int(1, 4) as f64
                } else {
                    0.0
                },
                pack_size: r.chance(0.3).then(|| r.int(2, 3) as f64),
                max_qty: r.chance(0.25).then(|| r.int(3, 8) as f64),
                order_cost: r.int(0, 10) as f64,
                breaks,
            }],
        });
    }
    Scenario {
        name: format!("tiny-weeks-{seed}"),
        currency: "CNY".into(),
        material_deadline_days: None,
        horizon: Some(Horizon {
            periods: periods as i64,
            period_days: 7,
        }),
        products,
        materials: vec![material],
        factories: vec![Factory {
            id: "f".into(),
            capacity_hours: 0.0,
            calendar: Some(calendar),
            lines,
        }],
        suppliers,
    }
}

/// Cost of one order of `q` from an offer under the contract's rules, or
/// `None` if `q` cannot be ordered.
fn order_cost(o: &Offer, q: i64) -> Option<f64> {
    if q == 0 {
        return Some(0.0);
    }
    let qf = q as f64;
    if qf < o.moq || o.max_qty.is_some_and(|c| qf > c) {
        return None;
    }
    if let Some(p) = o.pack_size.filter(|&p| p > 0.0) {
        if (qf / p).fract() != 0.0 {
            return None;
        }
    }
    let k = o.breaks.iter().rposition(|b| b.min_qty <= qf)?;
    Some(o.breaks[k].unit_price * qf + o.order_cost)
}

/// The cheapest purchase, ordering and holding cost of the material for a
/// consumption per period, by dynamic programming over the periods.
fn material_cost(s: &Scenario, used: &[i64]) -> Option<f64> {
    let t_n = used.len();
    let mat = &s.materials[0];
    let days = s.horizon.unwrap().period_days;
    let total: i64 = used.iter().sum();
    let most = total + 10;
    // Offers as (offer, lead in periods).
    let offers: Vec<(&Offer, usize)> = s
        .suppliers
        .iter()
        .map(|x| (&x.offers[0], ((x.lead_days + days - 1) / days) as usize))
        .collect();
    let mut receipts = vec![0i64; t_n];
    for r in &mat.receipts {
        receipts[r.period as usize] += r.quantity as i64;
    }
    let mut states: HashMap<i64, f64> = HashMap::from([(mat.on_hand as i64, 0.0)]);
    for a in 0..t_n {
        // Every combination of orders arriving at the start of period a.
        let mut arrivals: Vec<(i64, f64)> = vec![(0, 0.0)];
        for &(o, lead) in &offers {
            if a < lead {
                continue;
            }
            let mut next = Vec::new();
            for &(q0, c0) in &arrivals {
                for q in 0..=most {
                    if let Some(c) = order_cost(o, q) {
                        next.push((q0 + q, c0 + c));
                    }
                }
            }
            arrivals = next;
        }
        let mut out: HashMap<i64, f64> = HashMap::new();
        for (&stock, &cost) in &states {
            for &(q, c) in &arrivals {
                let left = stock + receipts[a] + q - used[a];
                if left < 0 || left > most + 10 {
                    continue;
                }
                let total = cost + c + mat.holding_cost * left as f64;
                let e = out.entry(left).or_insert(f64::INFINITY);
                if total < *e {
                    *e = total;
                }
            }
        }
        states = out;
    }
    states.values().copied().reduce(f64::min)
}

/// The optimum by enumeration, or `None` when no plan meets every rule.
fn brute_force(v: &ValidatedScenario) -> Option<f64> {
    let s = v.scenario();
    let t_n = v.periods();
    let n_lines = v.lines().len();
    let cells = t_n * n_lines;
    let most: Vec<i64> = v
        .lines()
        .iter()
        .map(|l| v.total_due(l.product) + v.line(*l).min_run.max(1))
        .collect();
    let mut best: Option<f64> = None;
    let mut memo: HashMap<Vec<i64>, Option<f64>> = HashMap::new();
    let mut x = vec![0i64; cells];
    'next: loop {
        // Check and price this production plan.
        let mut cost = 0.0;
        let mut ok = true;
        let mut hours = vec![0.0; t_n];
        let mut used = vec![0i64; t_n];
        let mut made = vec![vec![0i64; t_n]; s.products.len()];
        for t in 0..t_n {
            for (i, l) in v.lines().iter().enumerate() {
                let q = x[t * n_lines + i];
                if q == 0 {
                    continue;
                }
                let line = v.line(*l);
                if q < line.min_run {
                    ok = false;
                }
                hours[t] += line.hours_per_unit * q as f64 + line.setup_hours;
                cost += line.unit_cost * q as f64 + line.setup_cost;
                made[l.product][t] += q;
                used[t] += q * s.products[l.product].bom["m"] as i64;
            }
            if hours[t] > v.hours(0)[t] + 1e-9 {
                ok = false;
            }
        }
        if ok {
            for (p, prod) in s.products.iter().enumerate() {
                let (mut cd, mut cm) = (0, 0);
                for (t, (&due, &made)) in v.due(p).iter().zip(&made[p]).enumerate() {
                    cd += due;
                    cm += made;
                    let late = (cd - cm).max(0);
                    match prod.late_cost {
                        None if late > 0 => ok = false,
                        Some(_) if late > 0 && t == t_n - 1 => ok = false,
                        Some(c) => cost += c * late as f64,
                        None => {}
                    }
                }
            }
        }
        if ok {
            let m = memo
                .entry(used.clone())
                .or_insert_with(|| material_cost(s, &used));
            if let Some(mc) = *m {
                let total = cost + mc;
                if best.is_none_or(|b| total < b) {
                    best = Some(total);
                }
            }
        }
        // Next combination.
        for c in 0..cells {
            if x[c] < most[c % n_lines] {
                x[c] += 1;
                continue 'next;
            }
            x[c] = 0;
        }
        break;
    }
    best
}

#[test]
fn tiny_time_phased_scenarios_match_brute_force() {
    let mut solved = 0;
    let mut infeasible = 0;
    for seed in 1..=40 {
        let v = tiny(seed).validate().unwrap();
        let expected = brute_force(&v);
        for p in common::solve_all(&v) {
            match expected {
                None => assert_eq!(p.status, PlanStatus::Infeasible, "seed {seed}"),
                Some(best) => {
                    assert_eq!(p.status, PlanStatus::Optimal, "seed {seed}");
                    let got = p.exact_costs.total();
                    assert!(
                        (got - best).abs() <= 1e-6 * best.max(1.0),
                        "seed {seed}: model {got}, brute force {best}\n{}",
                        c2m_planner::report::render_json(&p)
                    );
                }
            }
        }
        if expected.is_some() {
            solved += 1;
        } else {
            infeasible += 1;
        }
    }
    // The generator must produce both kinds, or half of the check is vacuous.
    assert!(solved >= 20, "only {solved} feasible");
    assert!(infeasible >= 1, "no infeasible case");
}

/// A version 1 scenario written as version 2 with one period: the demand
/// due in period 0, every lead time 0 (offers past the material deadline
/// removed, as version 1 cannot use them), no late cost.
fn as_one_period(s: &Scenario) -> Scenario {
    let mut w = s.clone();
    let deadline = w.material_deadline_days.take();
    w.horizon = Some(Horizon {
        periods: 1,
        period_days: 7,
    });
    for p in &mut w.products {
        p.due = if p.demand > 0 {
            vec![Due {
                period: 0,
                quantity: p.demand,
            }]
        } else {
            Vec::new()
        };
    }
    for sup in &mut w.suppliers {
        if deadline.is_some_and(|d| sup.lead_days > d) {
            sup.offers.clear();
        }
        sup.lead_days = 0;
    }
    w
}

#[test]
fn a_v1_scenario_and_its_one_period_v2_form_have_the_same_optimum() {
    let kettle =
        Scenario::from_toml_str(include_str!("../../../examples/scenarios/kettle-c2m.toml"))
            .unwrap();
    let mut cases = vec![kettle];
    cases.extend((1..=4).map(|seed| random_scenario(seed, Size::SMALL)));
    for s in cases {
        let v1 = s.clone().validate().unwrap();
        let v2 = as_one_period(&s).validate().unwrap();
        assert!(v2.is_timed());
        let a = common::solve_all(&v1);
        let b = common::solve_all(&v2);
        for (p1, p2) in a.iter().zip(&b) {
            assert_eq!(p1.status, p2.status, "{}", s.name);
            if p1.status == PlanStatus::Infeasible {
                continue;
            }
            assert_eq!(p1.status, PlanStatus::Optimal, "{}", s.name);
            let (x, y) = (p1.exact_costs.total(), p2.exact_costs.total());
            assert!(
                (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                "{}: v1 {x}, v2 {y}",
                s.name
            );
            assert_eq!(p2.cost_breakdown.lateness, 0);
        }
    }
}
