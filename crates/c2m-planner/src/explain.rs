//! Explanations that come with a plan: cost per unit of each sku, the
//! constraints that bind, shadow prices, and for an infeasible scenario the
//! reasons demand cannot be met.

use crate::model::{build, BuildOptions, Formulation, RowRef, PROBE_STEP};
use crate::plan::{Binding, Decisions, Diagnosis, ExplanationMissing, NamedValues, ShadowPrices};
use crate::solve::{ExplainLps, SolverKind};
use crate::validate::ValidatedScenario;

const EPS: f64 = 1e-6;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= EPS * a.abs().max(b.abs()).max(1.0)
}

/// Full cost per demanded unit: production and setup of the sku's runs plus
/// its share of each material's purchase, ordering and holding, shared by
/// consumption. Holding of stock no run touches stays unallocated.
pub(crate) fn cost_per_unit(v: &ValidatedScenario, d: &Decisions) -> NamedValues {
    let s = v.scenario();
    let used = d.consumption(v);
    let bought = d.bought(v);
    // Money per unit of material consumed.
    let mut material_money = vec![0.0; s.materials.len()];
    for (o, b) in v.offers().iter().zip(&d.buy) {
        if let Some((k, q)) = b {
            let offer = v.offer(*o);
            material_money[o.material] += offer.breaks[*k].unit_price * q + offer.order_cost;
        }
    }
    for (m, mat) in s.materials.iter().enumerate() {
        let left = (mat.on_hand + bought[m] - used[m]).max(0.0);
        material_money[m] += mat.holding_cost * left;
    }
    let per_material: Vec<f64> = (0..s.materials.len())
        .map(|m| {
            if used[m] > 0.0 {
                material_money[m] / used[m]
            } else {
                0.0
            }
        })
        .collect();
    let made = d.made(v);
    let mut money = vec![0.0; s.products.len()];
    for (l, &q) in v.lines().iter().zip(&d.x) {
        if q > 0 {
            let line = v.line(*l);
            money[l.product] += line.unit_cost * q as f64 + line.setup_cost;
            for &(m, a) in v.bom(l.product) {
                money[l.product] += a * q as f64 * per_material[m];
            }
        }
    }
    NamedValues(
        s.products
            .iter()
            .enumerate()
            .map(|(p, prod)| {
                let units = if prod.demand > 0 {
                    prod.demand
                } else {
                    made[p]
                };
                let c = if units > 0 {
                    money[p] / units as f64
                } else {
                    0.0
                };
                // Exact: threshold advice compares it against a target, so rounding here
                // would move the minimum viable batch. Reports round when they print.
                (prod.sku.clone(), c)
            })
            .collect(),
    )
}

/// The constraints that hold with equality in the plan.
pub(crate) fn binding(v: &ValidatedScenario, d: &Decisions) -> Vec<Binding> {
    let s = v.scenario();
    let mut out = Vec::new();
    let mut hours = vec![0.0; s.factories.len()];
    let mut runs = vec![0usize; s.factories.len()];
    for (l, &q) in v.lines().iter().zip(&d.x) {
        if q > 0 {
            let line = v.line(*l);
            hours[l.factory] += line.hours_per_unit * q as f64 + line.setup_hours;
            runs[l.factory] += 1;
        }
    }
    for (f, fac) in s.factories.iter().enumerate() {
        if runs[f] > 0 && hours[f] >= fac.capacity_hours - EPS * fac.capacity_hours.max(1.0) {
            out.push(Binding::Capacity {
                factory: fac.id.clone(),
                used_hours: (hours[f] * 1e6).round() / 1e6,
                capacity_hours: fac.capacity_hours,
            });
        }
    }
    let made = d.made(v);
    for (l, &q) in v.lines().iter().zip(&d.x) {
        let line = v.line(*l);
        if q > 0 && q == line.min_run && made[l.product] > s.products[l.product].demand {
            out.push(Binding::MinRun {
                factory: s.factories[l.factory].id.clone(),
                sku: s.products[l.product].sku.clone(),
                min_run: line.min_run,
            });
        }
    }
    let used = d.consumption(v);
    let bought = d.bought(v);
    for (o, b) in v.offers().iter().zip(&d.buy) {
        let Some((k, q)) = *b else { continue };
        let offer = v.offer(*o);
        let supplier = s.suppliers[o.supplier].id.clone();
        let material = s.materials[o.material].id.clone();
        if let Some(cap) = offer.max_qty {
            if close(q, cap) {
                out.push(Binding::SupplierCap {
                    supplier: supplier.clone(),
                    material: material.clone(),
                    max_qty: cap,
                });
            }
        }
        let mat = &s.materials[o.material];
        let left = mat.on_hand + bought[o.material] - used[o.material];
        if left > EPS * q.max(1.0) {
            let mut why = Vec::new();
            if k > 0 && close(q, offer.breaks[k].min_qty) {
                why.push(format!("price break at {}", offer.breaks[k].min_qty));
            }
            if offer.moq > 0.0 && close(q, offer.moq) {
                why.push(format!("moq {}", offer.moq));
            }
            if let Some(p) = offer.pack() {
                if left < p - EPS && why.is_empty() {
                    why.push(format!("pack size {p}"));
                }
            }
            if !why.is_empty() {
                out.push(Binding::RoundUp {
                    supplier,
                    material,
                    reason: why.join(", "),
                });
            }
        }
    }
    for (m, mat) in s.materials.iter().enumerate() {
        let have = mat.on_hand + bought[m];
        if used[m] > 0.0 && have - used[m] <= EPS * have.max(1.0) {
            out.push(Binding::Stock {
                material: mat.id.clone(),
                on_hand: mat.on_hand,
            });
        }
    }
    out
}

/// Shadow prices of materials (per unit on hand) and factory hours, from the
/// LP with the run and tier decisions of `d` fixed and quantities relaxed to
/// continuous: how much the total would fall with one more unit.
///
/// With HiGHS they are the LP duals; microlp gives no duals, so there they
/// are finite differences over a small step, each row's from the one LP
/// re-solved with that row's probe column moved. The LPs are held to the
/// explanations' time (`lps`); if it runs out, there are no prices.
pub(crate) fn shadow_prices(
    v: &ValidatedScenario,
    d: &Decisions,
    lps: &ExplainLps,
) -> Result<ShadowPrices, ExplanationMissing> {
    let s = v.scenario();
    let rows: Vec<RowRef> = (0..s.materials.len())
        .map(RowRef::Material)
        .chain((0..s.factories.len()).map(RowRef::Capacity))
        .collect();
    let duals = lps.solver == SolverKind::Highs;
    // The plain formulation on purpose: the tight bounds are derived from
    // the factory hours and stock, so with them one more hour or unit could
    // be blocked by a bound instead of showing its value.
    let opts = BuildOptions {
        formulation: Formulation::BigM,
        elastic: false,
        fixed: Some(d.clone()),
        probes: if duals { Vec::new() } else { rows.clone() },
    };
    let model = build(v, &opts);
    let layout = model.layout();
    // Value of one more unit of the resource behind each row, in money.
    let values: Vec<f64> = if duals {
        let raw = lps.solve(model)?;
        let Some(duals) = raw.row_duals else {
            return Err(ExplanationMissing::SolverFailed {
                message: "HiGHS gave no duals for the LP".into(),
            });
        };
        rows.iter()
            .map(|row| {
                let index = match *row {
                    RowRef::Material(m) => layout.material_rows[m],
                    RowRef::Capacity(f) => layout.capacity_rows[f],
                };
                index.map_or(0.0, |i| -duals[i])
            })
            .collect()
    } else {
        let columns: Vec<usize> = layout.probes.iter().flatten().map(|p| p.i).collect();
        let mut found = lps
            .differences(model.into(), &columns, PROBE_STEP)?
            .into_iter();
        layout
            .probes
            .iter()
            .map(|p| p.and_then(|_| found.next()).unwrap_or(0.0))
            .collect()
    };
    let round = |x: f64| {
        let r = (x * 1e4).round() / 1e4;
        if r == 0.0 {
            0.0
        } else {
            r
        }
    };
    let (materials, hours) = values.split_at(s.materials.len());
    // One more unit on hand also adds its holding cost if it is left over;
    // the row's value already carries that where the row binds.
    let materials = s
        .materials
        .iter()
        .zip(materials)
        .map(|(mat, value)| (mat.id.clone(), round(value - mat.holding_cost)))
        .collect();
    let factory_hours = s
        .factories
        .iter()
        .zip(hours)
        .map(|(fac, h)| (fac.id.clone(), round(*h)))
        .collect();
    Ok(ShadowPrices {
        materials: NamedValues(materials),
        factory_hours: NamedValues(factory_hours),
    })
}

/// Why the products in the best partial plan `d` fall short.
pub(crate) fn diagnose(v: &ValidatedScenario, d: &Decisions) -> Diagnosis {
    let s = v.scenario();
    let mut diag = Diagnosis::default();
    let made = d.made(v);
    let binding = binding(v, d);
    for b in &binding {
        match b {
            Binding::Capacity { factory, .. } => diag.capacity_bound.push(factory.clone()),
            Binding::SupplierCap {
                supplier, material, ..
            } => diag.supplier_caps.push(format!("{supplier}/{material}")),
            _ => {}
        }
    }
    for o in v.offers() {
        if !o.usable {
            let sup = &s.suppliers[o.supplier];
            diag.excluded_offers
                .push(format!("{}/{}", sup.id, s.materials[o.material].id));
        }
    }
    let used = d.consumption(v);
    let bought = d.bought(v);
    for (p, prod) in s.products.iter().enumerate() {
        let short = prod.demand - made[p];
        if short <= 0 {
            continue;
        }
        let lines: Vec<_> = v.lines().iter().filter(|l| l.product == p).collect();
        if lines.is_empty() {
            diag.missing_lines.push(prod.sku.clone());
            diag.reasons.push(format!(
                "`{}` is short by {short}: no factory has a line for it",
                prod.sku
            ));
            continue;
        }
        let mut why = Vec::new();
        for l in &lines {
            let fac = &s.factories[l.factory];
            let line = v.line(**l);
            let min_hours = line.setup_hours + line.hours_per_unit * line.min_run as f64;
            if min_hours > fac.capacity_hours {
                why.push(format!(
                    "its minimum run at `{}` needs {min_hours} hours, more than the {} the factory has",
                    fac.id, fac.capacity_hours
                ));
            } else if diag.capacity_bound.contains(&fac.id) {
                why.push(format!(
                    "`{}` uses all its {} hours",
                    fac.id, fac.capacity_hours
                ));
            }
        }
        for &(m, _) in v.bom(p) {
            let mat = &s.materials[m];
            let have = mat.on_hand + bought[m];
            if have - used[m] > EPS * have.max(1.0) {
                continue;
            }
            let offers: Vec<_> = v.offers().iter().filter(|o| o.material == m).collect();
            let usable: Vec<_> = offers.iter().filter(|o| o.usable).collect();
            let excluded: Vec<String> = offers
                .iter()
                .filter(|o| !o.usable)
                .map(|o| {
                    format!(
                        "`{}` ({} days)",
                        s.suppliers[o.supplier].id, s.suppliers[o.supplier].lead_days
                    )
                })
                .collect();
            if usable.is_empty() {
                if !diag.missing_offers.contains(&mat.id) {
                    diag.missing_offers.push(mat.id.clone());
                }
                let mut reason = format!(
                    "material `{}` runs out ({} on hand) and no usable offer sells it",
                    mat.id, mat.on_hand
                );
                if !excluded.is_empty() {
                    reason.push_str(&format!(
                        "; offers from {} are too slow for the {}-day material deadline",
                        excluded.join(", "),
                        s.material_deadline_days.unwrap_or(0)
                    ));
                }
                why.push(reason);
            } else if usable.iter().any(|o| v.offer(***o).max_qty.is_none()) {
                // Someone sells any quantity: the material is not what limits.
                continue;
            } else {
                let capped: Vec<String> = usable
                    .iter()
                    .filter_map(|o| {
                        let cap = v.offer(***o).max_qty?;
                        Some(format!("`{}` (max {cap})", s.suppliers[o.supplier].id))
                    })
                    .collect();
                let mut reason = format!(
                    "material `{}` runs out: every usable offer is capped: {}",
                    mat.id,
                    capped.join(", ")
                );
                if !excluded.is_empty() {
                    reason.push_str(&format!(
                        "; offers from {} are excluded by the {}-day material deadline",
                        excluded.join(", "),
                        s.material_deadline_days.unwrap_or(0)
                    ));
                }
                why.push(reason);
            }
        }
        if why.is_empty() {
            why.push("the remaining hours and materials cannot cover it".to_string());
        }
        diag.reasons.push(format!(
            "`{}` is short by {short}: {}",
            prod.sku,
            why.join("; ")
        ));
    }
    diag
}
