//! The independent check of a version 2 plan, by names and numbers only:
//! it never looks at the schedule, the solver or the MILP. Stock is walked
//! period by period from `on_hand`, receipts and the arrivals the contract
//! gives each order (`period + ceil(lead_days / period_days)`), lateness is
//! recomputed from cumulative due against cumulative production, and every
//! cost part is recomputed.

use std::collections::HashMap;

use crate::plan::{round_money, ExactCosts, Plan, PlanStatus};
use crate::validate::ValidatedScenario;
use crate::verify::{check_order, tol, Rule, Violation};

use super::{backlog, completion, shortfall};

/// Checks a version 2 plan against the scenario; see `crate::verify_plan`.
pub(crate) fn verify(v: &ValidatedScenario, plan: &Plan) -> Result<(), Vec<Violation>> {
    let s = v.scenario();
    let n = v.periods();
    let mut out = Vec::new();
    let mut bad = |rule: Rule, message: String| out.push(Violation { rule, message });

    let mut costs = ExactCosts::default();
    let mut made = vec![vec![0i64; n]; s.products.len()];
    let mut used = vec![vec![0.0; n]; s.materials.len()];
    let mut hours = vec![vec![0.0; n]; s.factories.len()];
    let mut seen_runs = HashMap::new();
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
        let t = match run.period {
            Some(t) if t < n => t,
            Some(t) => {
                bad(
                    Rule::Period,
                    format!("runs[{ri}]: period {t} is outside the horizon of {n} periods"),
                );
                continue;
            }
            None => {
                bad(Rule::Period, format!("runs[{ri}]: a run without a period"));
                continue;
            }
        };
        if seen_runs.insert((l.factory, l.product, t), ri).is_some() {
            bad(
                Rule::UnknownLine,
                format!(
                    "runs[{ri}]: second run of `{}` at `{}` in period {t}",
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
                    "runs[{ri}]: {} of `{}` at `{}` in period {t} is below the minimum run {}",
                    run.quantity, run.sku, run.factory, line.min_run
                ),
            );
        }
        made[l.product][t] += run.quantity;
        hours[l.factory][t] += line.hours_per_unit * run.quantity as f64 + line.setup_hours;
        for &(m, a) in v.bom(l.product) {
            used[m][t] += a * run.quantity as f64;
        }
        costs.production += line.unit_cost * run.quantity as f64;
        costs.setup += line.setup_cost;
    }

    for (fi, f) in s.factories.iter().enumerate() {
        for (t, (&used, &cap)) in hours[fi].iter().zip(v.hours(fi)).enumerate() {
            if used > cap + tol(cap) {
                bad(
                    Rule::Capacity,
                    format!(
                        "factory `{}` uses {used:.4} hours of {cap} in period {t}",
                        f.id
                    ),
                );
            }
        }
    }

    let mut arriving: Vec<Vec<f64>> = (0..s.materials.len())
        .map(|m| v.receipts(m).to_vec())
        .collect();
    let mut seen_orders = HashMap::new();
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
        let at = format!("purchases[{pi}] ({}/{})", p.supplier, p.material);
        let Some(t) = p.period else {
            bad(Rule::Period, format!("{at}: an order without a period"));
            continue;
        };
        let lead = o.lead_periods;
        if t + lead >= n {
            bad(
                Rule::Period,
                format!(
                    "{at}: ordered in period {t}, arrives in period {} (lead {lead}), after \
                     the horizon of {n} periods",
                    t + lead
                ),
            );
            continue;
        }
        if p.arrives != Some(t + lead) {
            bad(
                Rule::Period,
                format!(
                    "{at}: ordered in period {t} with a lead of {lead} periods arrives in \
                     period {}, reported {:?}",
                    t + lead,
                    p.arrives
                ),
            );
        }
        if seen_orders
            .insert((o.supplier, o.material, t), pi)
            .is_some()
        {
            bad(
                Rule::UnknownOffer,
                format!("{at}: second order from the same offer in period {t}"),
            );
        }
        let offer = v.offer(*o);
        if !check_order(offer, p, &at, &mut bad) {
            continue;
        }
        arriving[o.material][t + lead] += p.quantity;
        costs.purchase += p.unit_price * p.quantity;
        costs.ordering += offer.order_cost;
    }

    for (m, mat) in s.materials.iter().enumerate() {
        let mut stock = mat.on_hand;
        let reported = plan.stock.as_ref().and_then(|st| st.get(&mat.id));
        for t in 0..n {
            let have = stock + arriving[m][t];
            stock = have - used[m][t];
            if stock < -tol(have) {
                bad(
                    Rule::Material,
                    format!(
                        "`{}`: period {t} uses {:.6} but has {have:.6}",
                        mat.id, used[m][t]
                    ),
                );
            }
            costs.holding += mat.holding_cost * stock.max(0.0);
            match reported.and_then(|r| r.get(t)) {
                Some(r) if (r - stock.max(0.0)).abs() <= tol(have) => {}
                other => bad(
                    Rule::Stock,
                    format!(
                        "`{}`: stock at the end of period {t} is {:.6}, reported {other:?}",
                        mat.id,
                        stock.max(0.0)
                    ),
                ),
            }
        }
        if reported.is_some_and(|r| r.len() != n) {
            bad(
                Rule::Stock,
                format!("`{}`: stock reported for other than {n} periods", mat.id),
            );
        }
        match plan.leftover.get(&mat.id) {
            Some(r) if (r - stock.max(0.0)).abs() <= tol(stock.abs()) => {}
            other => bad(
                Rule::Leftover,
                format!(
                    "`{}`: leftover {:.6}, reported {other:?}",
                    mat.id,
                    stock.max(0.0)
                ),
            ),
        }
    }

    let infeasible = plan.status == PlanStatus::Infeasible;
    let short: HashMap<&str, (i64, Option<usize>)> = plan
        .shortfalls
        .iter()
        .map(|sf| (sf.sku.as_str(), (sf.short_by, sf.period)))
        .collect();
    let mut late_expected = Vec::new();
    for (p, prod) in s.products.iter().enumerate() {
        let due = v.due(p);
        let b = backlog(due, &made[p]);
        for (t, &units) in b.iter().enumerate() {
            if units > 0 {
                late_expected.push((prod.sku.as_str(), t, units));
            }
        }
        if let Some(cost) = prod.late_cost {
            costs.lateness += cost * b.iter().sum::<i64>() as f64;
        }
        let expected = shortfall(due, &made[p], prod.late_cost.is_some());
        let reported = short.get(prod.sku.as_str()).copied();
        match (expected, reported) {
            (None, None) => {}
            (Some((by, t)), Some((r_by, r_t))) if by == r_by && Some(t) == r_t => {}
            (Some((by, t)), _) if !infeasible => {
                let why = if prod.late_cost.is_some() {
                    format!(
                        "{by} of its {} units are not made by the end of the horizon",
                        due.iter().sum::<i64>()
                    )
                } else {
                    format!("{by} units are late from period {t}, and it may not be late")
                };
                bad(
                    Rule::Late,
                    format!("`{}`: {why} (due per period {due:?})", prod.sku),
                );
            }
            (expected, reported) => bad(
                Rule::Status,
                format!(
                    "`{}`: short {expected:?} (units, first period), reported {reported:?}",
                    prod.sku
                ),
            ),
        }
        let done = completion(due, &made[p]);
        let reported = plan.completion.as_ref().and_then(|c| c.get(&prod.sku));
        if reported != Some(done) {
            bad(
                Rule::Late,
                format!(
                    "`{}`: completes in period {done:?}, reported {reported:?}",
                    prod.sku
                ),
            );
        }
    }
    let mut late_reported: Vec<(&str, usize, i64)> = plan
        .late
        .iter()
        .flatten()
        .map(|l| (l.sku.as_str(), l.period, l.units))
        .collect();
    late_reported.sort();
    late_expected.sort();
    if late_reported != late_expected {
        bad(
            Rule::Late,
            format!("late units are {late_expected:?}, reported {late_reported:?}"),
        );
    }

    if infeasible && plan.shortfalls.is_empty() {
        bad(
            Rule::Status,
            "infeasible plan without shortfalls".to_string(),
        );
    }
    if !infeasible && !plan.shortfalls.is_empty() {
        bad(
            Rule::Status,
            format!("{} plan with shortfalls", plan.status),
        );
    }
    if plan.status == PlanStatus::Optimal && plan.gap != 0.0 {
        bad(Rule::Status, format!("optimal plan with gap {}", plan.gap));
    }

    let b = &plan.cost_breakdown;
    let parts = [
        ("production", costs.production, b.production),
        ("setup", costs.setup, b.setup),
        ("purchase", costs.purchase, b.purchase),
        ("ordering", costs.ordering, b.ordering),
        ("holding", costs.holding, b.holding),
        ("lateness", costs.lateness, b.lateness),
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
