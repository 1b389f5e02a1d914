//! Version 2 explanations: which capacity binds in which periods, which
//! purchases arrive just in time, what consolidating purchases across
//! periods saved, shadow prices per period, and, for an infeasible
//! scenario, which products cannot be completed and why.

use crate::plan::{
    Consolidation, Diagnosis, ExplanationMissing, FactoryPeriods, JustInTime, NamedSeries,
    PeriodCapacity, PeriodShadowPrices,
};
use crate::solve::{ExplainLps, SolverKind};
use crate::validate::ValidatedScenario;

use super::greedy::lot_for_lot;
use super::model::{build, first_arrival, Options, Row, PROBE_STEP};
use super::{shortfall, Schedule};

const EPS: f64 = 1e-6;

/// Hours each factory uses in each period.
fn hours_used(v: &ValidatedScenario, d: &Schedule) -> Vec<Vec<f64>> {
    let mut used = vec![vec![0.0; v.periods()]; v.scenario().factories.len()];
    for (t, xs) in d.x.iter().enumerate() {
        for (l, &q) in v.lines().iter().zip(xs) {
            if q > 0 {
                let line = v.line(*l);
                used[l.factory][t] += line.hours_per_unit * q as f64 + line.setup_hours;
            }
        }
    }
    used
}

/// Factory periods whose hours the schedule uses in full.
pub(crate) fn binding_capacity(v: &ValidatedScenario, d: &Schedule) -> Vec<PeriodCapacity> {
    let s = v.scenario();
    let used = hours_used(v, d);
    let mut out = Vec::new();
    for (f, fac) in s.factories.iter().enumerate() {
        for (t, (&u, &cap)) in used[f].iter().zip(v.hours(f)).enumerate() {
            if u > 0.0 && u >= cap - EPS * cap.max(1.0) {
                out.push(PeriodCapacity {
                    factory: fac.id.clone(),
                    period: t,
                    used_hours: (u * 1e6).round() / 1e6,
                    capacity_hours: cap,
                });
            }
        }
    }
    out
}

/// Purchases without which their material would run short in the period
/// they arrive: the stock carried in and the receipts do not cover that
/// period's runs.
pub(crate) fn just_in_time(v: &ValidatedScenario, d: &Schedule) -> Vec<JustInTime> {
    let s = v.scenario();
    let used = d.consumption(v);
    let stock = d.stock(v);
    let mut out = Vec::new();
    for (t, orders) in d.buy.iter().enumerate() {
        for (o, b) in v.offers().iter().zip(orders) {
            let Some((_, q)) = *b else { continue };
            let a = t + o.lead_periods;
            let m = o.material;
            let carried = if a == 0 {
                s.materials[m].on_hand
            } else {
                stock[m][a - 1].max(0.0)
            };
            let short = used[m][a] - carried - v.receipts(m)[a];
            if short > EPS * used[m][a].max(1.0) {
                out.push(JustInTime {
                    supplier: s.suppliers[o.supplier].id.clone(),
                    material: s.materials[m].id.clone(),
                    ordered: t,
                    arrives: a,
                    quantity: q,
                    needed_on_arrival: (short * 1e6).round() / 1e6,
                });
            }
        }
    }
    out
}

/// Purchase, ordering and holding cost of the schedule against the same
/// production with each period's net need bought separately.
pub(crate) fn consolidation(v: &ValidatedScenario, d: &Schedule) -> Consolidation {
    let material = |sched: &Schedule| {
        let c = sched.costs(v);
        c.purchase + c.ordering + c.holding
    };
    let plan_material_cost = material(d);
    let separate_material_cost = lot_for_lot(v, d).map(|buy| {
        material(&Schedule {
            x: d.x.clone(),
            buy,
        })
    });
    Consolidation {
        plan_material_cost,
        separate_material_cost,
        saving: separate_material_cost.map(|s| s - plan_material_cost),
    }
}

/// Shadow prices per period from the LP with runs, setups and tiers of `d`
/// fixed and quantities relaxed: the saving from one more unit of material
/// arriving at the start of a period, and from one more hour of a factory in
/// a period. HiGHS gives the duals; for microlp they are finite differences,
/// computed only for the rows that bind (a row with slack is worth nothing), each
/// from the one LP's basis with that row's probe column moved (a long horizon has
/// hundreds of binding rows: re-solving each LP from scratch took minutes).
/// The LPs are held to the explanations' time (`lps`); if it runs out, there
/// are no prices.
pub(crate) fn shadow_prices(
    v: &ValidatedScenario,
    d: &Schedule,
    lps: &ExplainLps,
) -> Result<PeriodShadowPrices, ExplanationMissing> {
    let s = v.scenario();
    let n = v.periods();
    let stock = d.stock(v);
    let used_hours = hours_used(v, d);
    // One more unit is worth something only where stock runs out at or after t; one
    // more hour only where the hours are used up.
    let mut binding = Vec::new();
    for (m, stock) in stock.iter().enumerate() {
        for t in 0..n {
            if stock[t..].iter().any(|&q| q <= EPS * q.abs().max(1.0)) {
                binding.push(Row::Material(m, t));
            }
        }
    }
    for (f, used) in used_hours.iter().enumerate() {
        for (t, (&used, &cap)) in used.iter().zip(v.hours(f)).enumerate() {
            if used >= cap - EPS * cap.max(1.0) {
                binding.push(Row::Capacity(f, t));
            }
        }
    }
    let duals = lps.solver == SolverKind::Highs;
    // The plain formulation, as in version 1: the tight bounds come from
    // the hours and stock, and would block the extra unit being priced.
    let opts = Options {
        formulation: crate::model::Formulation::BigM,
        fixed: Some(d.clone()),
        probes: if duals { Vec::new() } else { binding.clone() },
        ..Options::default()
    };
    let (problem, layout) = build(v, &opts);
    let price: Box<dyn Fn(Row) -> f64> = if duals {
        let raw = lps.solve(problem)?;
        let Some(duals) = raw.row_duals else {
            return Err(ExplanationMissing::SolverFailed {
                message: "HiGHS gave no duals for the LP".into(),
            });
        };
        let layout = &layout;
        Box::new(move |row| {
            let index = match row {
                Row::Material(m, t) => layout.material_rows[m][t],
                Row::Capacity(f, t) => layout.capacity_rows[f][t],
            };
            index.map_or(0.0, |i| -duals[i])
        })
    } else {
        let present: Vec<(Row, usize)> = binding
            .iter()
            .zip(&layout.probes)
            .filter_map(|(&row, probe)| probe.map(|p| (row, p.i)))
            .collect();
        let columns: Vec<usize> = present.iter().map(|&(_, i)| i).collect();
        let values = lps.differences(problem, &columns, PROBE_STEP)?;
        let found: Vec<(Row, f64)> = present.iter().map(|&(r, _)| r).zip(values).collect();
        Box::new(move |row| {
            found
                .iter()
                .find(|(r, _)| *r == row)
                .map_or(0.0, |&(_, value)| value)
        })
    };
    let round = |x: f64| {
        let r = (x * 1e4).round() / 1e4;
        if r == 0.0 {
            0.0
        } else {
            r
        }
    };
    // Per material or factory (its id), the price of its row in each period.
    let series = |ids: Vec<&String>, row: fn(usize, usize) -> Row| {
        let rows = ids.into_iter().enumerate().map(|(i, id)| {
            let prices = (0..n).map(|t| round(price(row(i, t)))).collect();
            (id.clone(), prices)
        });
        NamedSeries(rows.collect())
    };
    Ok(PeriodShadowPrices {
        materials: series(s.materials.iter().map(|m| &m.id).collect(), Row::Material),
        factory_hours: series(s.factories.iter().map(|f| &f.id).collect(), Row::Capacity),
    })
}

/// `period 3` or `periods 0-2, 5`.
fn in_periods(periods: &[usize]) -> String {
    match periods {
        [one] => format!("period {one}"),
        _ => format!("periods {}", ranges(periods)),
    }
}

/// A quantity for people: to a millionth, without float noise.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Ranges of consecutive periods, for people: `0-2, 5`.
fn ranges(periods: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < periods.len() {
        let mut j = i;
        while j + 1 < periods.len() && periods[j + 1] == periods[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            periods[i].to_string()
        } else {
            format!("{}-{}", periods[i], periods[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The most of material `m` that can be on hand by the start of period
/// `until`: stock, receipts, and orders arriving by then at their caps
/// (`max_qty` per order, one order per offer per period). `None` when an
/// offer without a cap arrives by then: any quantity can.
fn obtainable_by(v: &ValidatedScenario, m: usize, until: usize) -> Option<f64> {
    let mut have = v.scenario().materials[m].on_hand + v.receipts(m)[..=until].iter().sum::<f64>();
    for o in v.offers().iter().filter(|o| o.material == m && o.usable) {
        if o.lead_periods > until {
            continue;
        }
        // Orders placed in periods 0 ..= until - L arrive by `until`.
        let orders = (until - o.lead_periods + 1) as f64;
        have += v.offer(*o).max_qty? * orders;
    }
    Some(have)
}

/// Why the products of the best partial schedule `d` fall short: per
/// product, the capacity that binds in which periods, closed periods,
/// minimum runs that fit no period, and the materials of which less can be
/// on hand by the period the product falls short (stock, receipts, orders
/// arriving in time up to their caps) than its units due by then need.
/// A material that would cover them is not named, even when its offers are
/// slow.
pub(crate) fn diagnose(v: &ValidatedScenario, d: &Schedule) -> Diagnosis {
    let s = v.scenario();
    let n = v.periods();
    let mut diag = Diagnosis::default();
    let used = hours_used(v, d);
    let made = d.made(v);
    let first = first_arrival(v);
    for (f, fac) in s.factories.iter().enumerate() {
        let full: Vec<usize> = (0..n)
            .filter(|&t| {
                let cap = v.hours(f)[t];
                used[f][t] > 0.0 && used[f][t] >= cap - EPS * cap.max(1.0)
            })
            .collect();
        if !full.is_empty() {
            diag.capacity_bound.push(fac.id.clone());
            diag.capacity_bound_periods.push(FactoryPeriods {
                factory: fac.id.clone(),
                periods: full,
            });
        }
        let closed: Vec<usize> = (0..n).filter(|&t| v.hours(f)[t] <= 0.0).collect();
        if !closed.is_empty() && v.lines().iter().any(|l| l.factory == f) {
            diag.closed_periods.push(FactoryPeriods {
                factory: fac.id.clone(),
                periods: closed,
            });
        }
    }
    for (p, prod) in s.products.iter().enumerate() {
        let may_be_late = prod.late_cost.is_some();
        let Some((short, from)) = shortfall(v.due(p), &made[p], may_be_late) else {
            continue;
        };
        // The periods that could have made the missing units: up to the
        // first period short, or (for a product that may be late) all.
        let until = if may_be_late { n - 1 } else { from };
        let head = if may_be_late {
            format!(
                "`{}` is short by {short} at the end of the horizon (behind from period {from})",
                prod.sku
            )
        } else {
            format!("`{}` is short by {short} from period {from}", prod.sku)
        };
        let lines: Vec<_> = v.lines().iter().filter(|l| l.product == p).collect();
        if lines.is_empty() {
            diag.missing_lines.push(prod.sku.clone());
            diag.reasons
                .push(format!("{head}: no factory has a line for it"));
            continue;
        }
        let mut hours_why = Vec::new();
        let mut seen_factories = Vec::new();
        for l in &lines {
            if seen_factories.contains(&l.factory) {
                continue;
            }
            seen_factories.push(l.factory);
            let fac = &s.factories[l.factory];
            let line = v.line(**l);
            let min_hours = line.setup_hours + line.hours_per_unit * line.min_run.max(1) as f64;
            let fits: Vec<usize> = (0..=until)
                .filter(|&t| v.hours(l.factory)[t] + EPS >= min_hours)
                .collect();
            if fits.is_empty() {
                hours_why.push(format!(
                    "its minimum run at `{}` needs {min_hours} hours, more than any period \
                     0-{until} has",
                    fac.id
                ));
                continue;
            }
            let full: Vec<usize> = (0..=until)
                .filter(|&t| {
                    let cap = v.hours(l.factory)[t];
                    cap > 0.0 && used[l.factory][t] >= cap - EPS * cap.max(1.0)
                })
                .collect();
            let closed: Vec<usize> = (0..=until)
                .filter(|&t| v.hours(l.factory)[t] <= 0.0)
                .collect();
            if !full.is_empty() {
                hours_why.push(format!(
                    "`{}` uses all its hours in {}",
                    fac.id,
                    in_periods(&full)
                ));
            }
            if !closed.is_empty() {
                hours_why.push(format!("`{}` is closed in {}", fac.id, in_periods(&closed)));
            }
        }
        // The units that must be made by `until`: a material is a cause only
        // when what can be on hand by then does not cover them, the product's
        // own or, shared, those of every product due by then that takes it.
        let due_by: i64 = v.due(p)[..=until].iter().sum();
        let mut material_why = Vec::new();
        // Whether a material alone leaves the product short of every unit it is short
        // of: then the hours the partial plan filled are not why (more of them would
        // not make a unit), and naming them sent people to the wrong lever.
        let mut explained = false;
        for &(m, a) in v.bom(p) {
            let mat = &s.materials[m];
            if a <= 0.0 {
                continue;
            }
            // The products taking `m`, with how much a unit.
            let sharers: Vec<(usize, f64)> = (0..s.products.len())
                .filter_map(|q| {
                    let &(_, aq) = v.bom(q).iter().find(|&&(mq, aq)| mq == m && aq > 0.0)?;
                    Some((q, aq))
                })
                .collect();
            let shared_need = |t: usize| -> f64 {
                (sharers.iter())
                    .map(|&(q, aq)| aq * v.due(q)[..=t].iter().sum::<i64>() as f64)
                    .sum()
            };
            let others = || -> String {
                (sharers.iter())
                    .filter(|&&(q, _)| q != p && v.due(q).iter().any(|&d| d > 0))
                    .map(|&(q, _)| format!("`{}`", s.products[q].sku))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let Some(have) = obtainable_by(v, m, until) else {
                // An offer without a cap arrives in time: any quantity can, but only
                // from its first arrival. When what is on hand before then does not
                // cover what is due before then of every product taking it, the rest
                // waits for that period, and the hours from then on.
                let from = first[m];
                if from == 0 || from > until {
                    continue;
                }
                let before = obtainable_by(v, m, from - 1).unwrap_or(f64::INFINITY);
                let need = shared_need(from - 1);
                if before + 1e-9 >= need {
                    continue;
                }
                let with = others();
                material_why.push(format!(
                    "material `{}`: no offer arrives before period {from}, and the {} on hand \
                     and received by period {} cover {} of the {} needed by then{}",
                    mat.id,
                    round6(before),
                    from - 1,
                    round6(before),
                    round6(need),
                    if with.is_empty() {
                        String::new()
                    } else {
                        format!(" (with {with})")
                    }
                ));
                continue;
            };
            let covers = ((have / a) + 1e-9).floor();
            let own_short = covers < due_by as f64;
            let need = shared_need(until);
            if !own_short && have + 1e-9 >= need {
                continue;
            }
            if own_short && due_by as f64 - covers >= short as f64 {
                explained = true;
            }
            let offers: Vec<String> = v
                .offers()
                .iter()
                .filter(|o| o.material == m && o.lead_periods > until)
                .map(|o| {
                    let sup = &s.suppliers[o.supplier];
                    let when = if o.lead_periods < n {
                        format!("first arrival in period {}", o.lead_periods)
                    } else {
                        "never within the horizon".to_string()
                    };
                    format!("{}/{}: {} days, {when}", sup.id, mat.id, sup.lead_days)
                })
                .collect();
            for o in &offers {
                if !diag.late_offers.contains(o) {
                    diag.late_offers.push(o.clone());
                }
            }
            let capped: Vec<String> = v
                .offers()
                .iter()
                .filter(|o| o.material == m && o.usable && o.lead_periods <= until)
                .map(|o| {
                    let sup = &s.suppliers[o.supplier];
                    format!("{}/{}", sup.id, mat.id)
                })
                .collect();
            for o in &capped {
                if !diag.supplier_caps.contains(o) {
                    diag.supplier_caps.push(o.clone());
                }
            }
            let no_offer = !v.offers().iter().any(|o| o.material == m);
            if no_offer && !diag.missing_offers.contains(&mat.id) {
                diag.missing_offers.push(mat.id.clone());
            }
            let arrival = if no_offer {
                "no offer sells it".to_string()
            } else if !capped.is_empty() {
                format!(
                    "the offers arriving by period {until} ({}) are capped per order",
                    capped.join(", ")
                )
            } else if first[m] >= n {
                format!(
                    "no offer arrives within the horizon ({})",
                    offers.join("; ")
                )
            } else {
                format!(
                    "no offer arrives before period {} ({})",
                    first[m],
                    offers.join("; ")
                )
            };
            let source = if capped.is_empty() {
                "on hand and received"
            } else {
                "on hand, received and ordered up to the caps"
            };
            material_why.push(if own_short {
                // Shared, the partial plan may have given it to the others: the product
                // made fewer than it covers alone (none, in a QA pass's scenario).
                let with = others();
                format!(
                    "material `{}`: {arrival}, and the {} {source} by period {until} cover {} \
                     units of the {due_by} due by then{}",
                    mat.id,
                    round6(have),
                    covers,
                    if with.is_empty() {
                        String::new()
                    } else {
                        format!(", shared with {with}")
                    }
                )
            } else {
                // Enough for this product alone, not for every product due by then
                // that takes it: the partial plan gave it to the others.
                format!(
                    "material `{}` is shared: {arrival}, and the {} {source} by period \
                     {until} cover {} of the {} needed by then with {}",
                    mat.id,
                    round6(have),
                    round6(have),
                    round6(need),
                    others()
                )
            });
        }
        let mut why = if explained { Vec::new() } else { hours_why };
        why.extend(material_why);
        if why.is_empty() {
            why.push("the hours and materials left cannot cover it".to_string());
        }
        diag.reasons.push(format!("{head}: {}", why.join("; ")));
    }
    diag
}

/// Full cost per unit due of each sku, as version 1 reports it: its runs
/// and setups, its lateness, and its share of each material's purchase,
/// ordering and holding (over all periods) in proportion to what it uses.
pub(crate) fn cost_per_unit(v: &ValidatedScenario, d: &Schedule) -> crate::plan::NamedValues {
    let s = v.scenario();
    let used: Vec<f64> = d
        .consumption(v)
        .iter()
        .map(|row| row.iter().sum())
        .collect();
    let mut material_money = vec![0.0; s.materials.len()];
    for orders in &d.buy {
        for (o, b) in v.offers().iter().zip(orders) {
            if let Some((k, q)) = b {
                let offer = v.offer(*o);
                material_money[o.material] += offer.breaks[*k].unit_price * q + offer.order_cost;
            }
        }
    }
    for (m, row) in d.stock(v).iter().enumerate() {
        material_money[m] +=
            s.materials[m].holding_cost * row.iter().map(|q| q.max(0.0)).sum::<f64>();
    }
    let made = d.made(v);
    let mut money = vec![0.0; s.products.len()];
    for xs in &d.x {
        for (l, &q) in v.lines().iter().zip(xs) {
            if q > 0 {
                let line = v.line(*l);
                money[l.product] += line.unit_cost * q as f64 + line.setup_cost;
                for &(m, a) in v.bom(l.product) {
                    if used[m] > 0.0 {
                        money[l.product] += a * q as f64 * material_money[m] / used[m];
                    }
                }
            }
        }
    }
    crate::plan::NamedValues(
        s.products
            .iter()
            .enumerate()
            .map(|(p, prod)| {
                let late: i64 = super::backlog(v.due(p), &made[p]).iter().sum();
                let m = money[p] + prod.late_cost.unwrap_or(0.0) * late as f64;
                let units = if v.total_due(p) > 0 {
                    v.total_due(p)
                } else {
                    made[p].iter().sum()
                };
                (
                    prod.sku.clone(),
                    if units > 0 { m / units as f64 } else { 0.0 },
                )
            })
            .collect(),
    )
}
