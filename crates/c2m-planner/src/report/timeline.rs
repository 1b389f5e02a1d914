//! The version 2 plan for people: a timeline with periods across.
//!
//! A planner reads a time-phased plan week by week, so every grid here has
//! one column per period: production per factory (with its hours used
//! against its calendar, closed weeks marked), dues against what is made
//! and what is late, purchase orders by the period they are placed with
//! the period they arrive, stock per material at the end of each period.
//! Then the totals and the version 2 explanations: which capacity binds
//! when, which orders arrive just in time, what consolidating orders
//! across periods saved, why lateness was cheaper than the alternative,
//! and the shadow prices per period.

use std::fmt::Write;

use super::{major, money, qty, unit_price, Table};
use crate::plan::{OnTime, Plan, PlanStatus};
use crate::scenario::{Line, Scenario};
use crate::validate::ValidatedScenario;

/// Marks a period in which a factory has no hours at all.
const CLOSED: &str = "closed";
/// An empty cell of a grid.
const NONE: &str = "-";

/// The line of `sku` at `factory`, if there is one.
pub(crate) fn line_of<'a>(s: &'a Scenario, factory: &str, sku: &str) -> Option<&'a Line> {
    s.factories
        .iter()
        .find(|f| f.id == factory)
        .and_then(|f| f.lines.iter().find(|l| l.sku == sku))
}

/// Hours a run uses: its units and its setup.
pub(crate) fn run_hours(s: &Scenario, factory: &str, sku: &str, quantity: i64) -> f64 {
    line_of(s, factory, sku).map_or(0.0, |l| l.hours_per_unit * quantity as f64 + l.setup_hours)
}

/// Ranges of consecutive periods, for people: `0-2, 5`.
pub(crate) fn ranges(periods: &[usize]) -> String {
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

/// A grid's header: the row labels, then one column per period, then extras.
fn grid(labels: &[&str], periods: usize, extra: &[&str]) -> Table {
    let mut head: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    head.extend((0..periods).map(|t| t.to_string()));
    head.extend(extra.iter().map(|s| s.to_string()));
    let mut numeric = vec![false; labels.len()];
    numeric.extend(std::iter::repeat_n(true, periods + extra.len()));
    Table {
        head,
        rows: Vec::new(),
        numeric,
    }
}

fn unit_of<'a>(s: &'a Scenario, material: &str) -> &'a str {
    s.materials
        .iter()
        .find(|m| m.id == material)
        .map_or("", |m| m.unit.as_str())
}

/// The timeline report of a version 2 plan.
pub(super) fn render(v: &ValidatedScenario, plan: &Plan) -> String {
    let s = v.scenario();
    let n = v.periods();
    let cur = &plan.currency;
    let days = s.horizon.map_or(1, |h| h.period_days);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for `{}`: {n} periods of {days} day{} (period 0 starts now)",
        s.name,
        if days == 1 { "" } else { "s" }
    );
    super::write_status(&mut out, plan);
    out.push('\n');
    super::write_costs(&mut out, plan);

    write_shortfalls(&mut out, plan);
    write_production(&mut out, v, plan);
    write_dues(&mut out, v, plan);
    write_purchases(&mut out, s, plan);
    write_stock(&mut out, s, plan, n);

    if !plan.cost_per_unit.0.is_empty() && plan.status != PlanStatus::Infeasible {
        let _ = writeln!(
            out,
            "Cost per unit (full cost per unit due, its lateness included):"
        );
        let mut t = Table::new(&["sku", "cost per unit"], &[false, true]);
        for (sku, c) in plan.cost_per_unit.iter() {
            t.row(vec![sku.to_string(), money(c.round() as i64, cur)]);
        }
        t.render(&mut out);
        out.push('\n');
    }
    write_explanations(&mut out, s, plan);
    out
}

fn write_shortfalls(out: &mut String, plan: &Plan) {
    if plan.shortfalls.is_empty() {
        return;
    }
    let _ = writeln!(out, "Shortfalls:");
    let mut t = Table::new(&["sku", "short by", "from period"], &[false, true, true]);
    for sf in &plan.shortfalls {
        t.row(vec![
            sf.sku.clone(),
            sf.short_by.to_string(),
            sf.period.map_or(NONE.to_string(), |p| p.to_string()),
        ]);
    }
    t.render(out);
    if let Some(d) = &plan.diagnosis {
        for r in &d.reasons {
            let _ = writeln!(out, "  - {r}");
        }
    }
    out.push('\n');
}

/// Units per factory, sku and period, with the hours used against the
/// calendar beneath each factory.
fn write_production(out: &mut String, v: &ValidatedScenario, plan: &Plan) {
    let s = v.scenario();
    let n = v.periods();
    let _ = writeln!(
        out,
        "Production (units made per period; hours used of the hours available):"
    );
    let mut t = grid(&["factory", "sku"], n, &["total"]);
    for (f, fac) in s.factories.iter().enumerate() {
        let runs: Vec<_> = plan.runs.iter().filter(|r| r.factory == fac.id).collect();
        let mut skus: Vec<&str> = Vec::new();
        for l in &fac.lines {
            if runs.iter().any(|r| r.sku == l.sku) {
                skus.push(&l.sku);
            }
        }
        let mut first = true;
        let mut hours = vec![0.0; n];
        for sku in &skus {
            let mut cells = vec![NONE.to_string(); n];
            let mut total = 0;
            for r in runs.iter().filter(|r| r.sku == *sku) {
                let Some(p) = r.period.filter(|&p| p < n) else {
                    continue;
                };
                cells[p] = r.quantity.to_string();
                total += r.quantity;
                hours[p] += run_hours(s, &fac.id, sku, r.quantity);
            }
            let mut row = vec![
                if first { fac.id.clone() } else { String::new() },
                sku.to_string(),
            ];
            first = false;
            row.extend(cells);
            row.push(total.to_string());
            t.row(row);
        }
        let mut row = vec![
            if first { fac.id.clone() } else { String::new() },
            if skus.is_empty() {
                "(no runs) hours".to_string()
            } else {
                "hours".to_string()
            },
        ];
        for (p, used) in hours.iter().enumerate() {
            let cap = v.hours(f)[p];
            row.push(if cap <= 0.0 {
                CLOSED.to_string()
            } else {
                format!("{}/{}", qty_short(*used), qty_short(cap))
            });
        }
        row.push(qty_short(hours.iter().sum()));
        t.row(row);
    }
    t.render(out);
    out.push('\n');
}

/// Hours with at most one decimal.
fn qty_short(h: f64) -> String {
    let s = format!("{h:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

/// Per product: units due, made, and late (the backlog) per period, and
/// the period it is complete.
fn write_dues(out: &mut String, v: &ValidatedScenario, plan: &Plan) {
    let s = v.scenario();
    let n = v.periods();
    let _ = writeln!(
        out,
        "Dues (units due by the end of each period, made in it, and late at its end):"
    );
    let mut t = grid(&["sku", ""], n, &["total", "complete in"]);
    for (p, prod) in s.products.iter().enumerate() {
        let due = v.due(p);
        let mut made = vec![0i64; n];
        for r in plan.runs.iter().filter(|r| r.sku == prod.sku) {
            if let Some(t) = r.period.filter(|&t| t < n) {
                made[t] += r.quantity;
            }
        }
        let late: Vec<i64> = (0..n)
            .map(|t| {
                plan.late
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|l| l.sku == prod.sku && l.period == t)
                    .map_or(0, |l| l.units)
            })
            .collect();
        let cells = |xs: &[i64]| -> Vec<String> {
            xs.iter()
                .map(|&x| {
                    if x == 0 {
                        NONE.to_string()
                    } else {
                        x.to_string()
                    }
                })
                .collect()
        };
        let completion = plan
            .completion
            .as_ref()
            .and_then(|c| c.get(&prod.sku))
            .flatten()
            .map_or(NONE.to_string(), |t| t.to_string());
        let mut row = vec![prod.sku.clone(), "due".to_string()];
        row.extend(cells(due));
        row.push(due.iter().sum::<i64>().to_string());
        row.push(completion);
        t.row(row);
        let mut row = vec![String::new(), "made".to_string()];
        row.extend(cells(&made));
        row.push(made.iter().sum::<i64>().to_string());
        row.push(String::new());
        t.row(row);
        if late.iter().any(|&x| x > 0) {
            let mut row = vec![
                String::new(),
                if prod.late_cost.is_some() {
                    "late".to_string()
                } else {
                    "late (may not be)".to_string()
                },
            ];
            row.extend(cells(&late));
            row.push(late.iter().sum::<i64>().to_string());
            row.push(String::new());
            t.row(row);
        }
    }
    t.render(out);
    let late_total: i64 = plan
        .late
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|l| l.units)
        .sum();
    if late_total == 0 {
        let _ = writeln!(out, "  Nothing is late.");
    } else {
        let unpriced = s.products.iter().any(|p| {
            p.late_cost.is_none()
                && plan
                    .late
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|l| l.sku == p.sku)
        });
        let _ = writeln!(
            out,
            "  Late: {late_total} unit-periods (a unit two periods late counts twice), \
             costing {}{}.",
            money(plan.cost_breakdown.lateness, &plan.currency),
            if unpriced {
                "; units of products that may not be late have no price: they make the plan \
                 infeasible"
            } else {
                ""
            }
        );
    }
    out.push('\n');
}

/// Purchase orders in the order they are placed, with their arrival.
fn write_purchases(out: &mut String, s: &Scenario, plan: &Plan) {
    let cur = &plan.currency;
    let _ = writeln!(out, "Purchase orders (by the period they are placed):");
    if plan.purchases.is_empty() {
        let _ = writeln!(out, "  (none)\n");
        return;
    }
    let mut orders: Vec<_> = plan.purchases.iter().collect();
    orders.sort_by_key(|p| (p.period, p.arrives));
    let mut t = Table::new(
        &[
            "order",
            "arrives",
            "supplier",
            "material",
            "quantity",
            "unit",
            "packs",
            "unit price",
            "amount",
        ],
        &[true, true, false, false, true, false, true, true, true],
    );
    for p in orders {
        t.row(vec![
            p.period.map_or(NONE.to_string(), |t| t.to_string()),
            p.arrives.map_or(NONE.to_string(), |t| t.to_string()),
            p.supplier.clone(),
            p.material.clone(),
            qty(p.quantity),
            unit_of(s, &p.material).to_string(),
            p.packs.map_or(NONE.to_string(), |n| n.to_string()),
            unit_price(p.unit_price, cur),
            money((p.quantity * p.unit_price).round() as i64, cur),
        ]);
    }
    t.render(out);
    out.push('\n');
}

/// Stock per material at the end of each period.
fn write_stock(out: &mut String, s: &Scenario, plan: &Plan, n: usize) {
    let Some(stock) = &plan.stock else { return };
    let _ = writeln!(
        out,
        "Stock at the end of each period (on hand at the start: `start`):"
    );
    let mut t = grid(&["material", "unit", "start"], n, &[]);
    t.numeric[2] = true;
    for m in &s.materials {
        let Some(row) = stock.get(&m.id) else {
            continue;
        };
        let mut cells = vec![m.id.clone(), m.unit.clone(), qty(m.on_hand)];
        cells.extend(row.iter().map(|&q| qty(q)));
        t.row(cells);
    }
    t.render(out);
    out.push('\n');
}

fn write_explanations(out: &mut String, s: &Scenario, plan: &Plan) {
    let Some(time) = &plan.time else { return };
    let cur = &plan.currency;
    let mut lines: Vec<String> = Vec::new();

    // Capacity: per factory, the periods it uses in full.
    let mut factories: Vec<&str> = Vec::new();
    for c in &time.capacity {
        if !factories.contains(&c.factory.as_str()) {
            factories.push(&c.factory);
        }
    }
    if factories.is_empty() {
        lines.push("capacity: no factory uses all its hours in any period".to_string());
    }
    for f in factories {
        let caps: Vec<_> = time.capacity.iter().filter(|c| c.factory == f).collect();
        let periods: Vec<usize> = caps.iter().map(|c| c.period).collect();
        let mut hours: Vec<String> = caps
            .iter()
            .map(|c| format!("{} h", qty_short(c.capacity_hours)))
            .collect();
        hours.dedup();
        lines.push(format!(
            "capacity binds: `{f}` uses all its hours in period{} {} ({})",
            if periods.len() == 1 { "" } else { "s" },
            ranges(&periods),
            hours.join(", ")
        ));
    }
    if let Some(c) = &time.consolidation {
        let plan_cost = money(c.plan_material_cost.round() as i64, cur);
        lines.push(match (c.separate_material_cost, c.saving) {
            (Some(sep), Some(saving)) if saving > 0.5 => format!(
                "consolidation: material costs {plan_cost} (purchase, ordering, holding); \
                 buying each period's need separately from the cheapest offer in time would \
                 cost {}: ordering across periods saves {}",
                money(sep.round() as i64, cur),
                money(saving.round() as i64, cur)
            ),
            (Some(sep), _) => format!(
                "consolidation: material costs {plan_cost}; buying each period's need \
                 separately would cost {} (no saving from ordering across periods)",
                money(sep.round() as i64, cur)
            ),
            _ => format!(
                "consolidation: material costs {plan_cost}; buying each period's need \
                 separately cannot cover this plan's production"
            ),
        });
    }
    for l in &time.lateness {
        let alternative = match l.on_time {
            OnTime::Impossible => "no plan makes it on time".to_string(),
            OnTime::CostsMore { extra, proven } => format!(
                "making it on time would cost {}{} more in total",
                if proven { "" } else { "at least " },
                money(extra.round() as i64, cur)
            ),
            OnTime::Unknown => "the on-time alternative was not priced (time limit)".to_string(),
        };
        lines.push(format!(
            "lateness: `{}` is late {} unit-periods, costing {}; {alternative}",
            l.sku,
            l.unit_periods,
            money(l.cost.round() as i64, cur)
        ));
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "Why this plan:");
        for l in lines {
            let _ = writeln!(out, "  - {l}");
        }
        out.push('\n');
    }
    if !time.just_in_time.is_empty() {
        let _ = writeln!(
            out,
            "Just in time (orders that arrive in the period their material would otherwise \
             run out):"
        );
        let mut t = Table::new(
            &[
                "material",
                "supplier",
                "order",
                "arrives",
                "quantity",
                "needed on arrival",
                "unit",
            ],
            &[false, false, true, true, true, true, false],
        );
        for j in &time.just_in_time {
            t.row(vec![
                j.material.clone(),
                j.supplier.clone(),
                j.ordered.to_string(),
                j.arrives.to_string(),
                qty(j.quantity),
                qty(j.needed_on_arrival),
                unit_of(s, &j.material).to_string(),
            ]);
        }
        t.render(out);
        out.push('\n');
    }

    if let Some(sp) = &time.shadow_prices {
        let n = plan.horizon.map_or(0, |h| h.periods.max(0) as usize);
        let rows: Vec<(String, &[f64])> = sp
            .materials
            .iter()
            .map(|(id, r)| (format!("`{id}` arriving"), r))
            .chain(
                sp.factory_hours
                    .iter()
                    .map(|(id, r)| (format!("hour at `{id}`"), r)),
            )
            .filter(|(_, r)| r.iter().any(|x| x.abs() >= 0.005))
            .collect();
        if !rows.is_empty() {
            let _ = writeln!(
                out,
                "Shadow prices per period (saving from one more unit in that period, runs \
                 and tiers fixed; {cur}; `{NONE}` is none, and a resource with none in any \
                 period is not listed, as 0.0 in the JSON):"
            );
            let mut t = grid(&["resource"], n, &[]);
            for (label, r) in rows {
                let mut cells = vec![label];
                cells.extend(r.iter().map(|x| {
                    if x.abs() < 0.005 {
                        NONE.to_string()
                    } else {
                        major(*x, cur)
                    }
                }));
                t.row(cells);
            }
            t.render(out);
            out.push('\n');
        }
    }
    if let Some(missing) = &time.shadow_prices_missing {
        let _ = writeln!(out, "Shadow prices: {missing}.\n");
    }
}
