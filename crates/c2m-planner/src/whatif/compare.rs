//! The base and its variants planned and set side by side.
//!
//! Version 2 scenarios compare the same way; their columns add the
//! lateness part of the total, the late units, and each sku's completion
//! period, and changes in runs and purchases name their periods.
//!
//! A scenario the planner finds no plan for (none within the time limit, or
//! the solver failing on its model: [`super::plan_point`]) is a column with
//! status `no_plan` and the reason, and the other columns are compared as
//! usual; a scenario that is not valid still stops the comparison.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::report::{amount, major, unit_price};
use crate::{
    Completions, CostBreakdown, Plan, PlanError, PlanStatus, Scenario, Shortfall, SolveOptions,
};

/// Reads one part of a cost breakdown.
type PartOf = fn(&CostBreakdown) -> i64;

/// One planned scenario in a comparison.
///
/// An infeasible scenario has no plan, only the planner's best partial
/// plan, whose costs are not the cost of meeting demand: its column has no
/// costs (`null` in JSON, empty in CSV, `-` in the table), no changes, and
/// instead its shortfalls and the planner's reasons.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// `base` or the variant's name.
    pub name: String,
    /// `optimal`, `feasible`, `infeasible`, or `no_plan` where the planner
    /// found none (then every other field is empty and `reason` says why).
    pub status: String,
    /// Why the planner found no plan, where the status is `no_plan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Relative gap of a feasible plan (0 when optimal); `null` when
    /// infeasible or unknown.
    pub gap: Option<f64>,
    pub total_cost: Option<i64>,
    pub cost_breakdown: Option<CostBreakdown>,
    /// Per sku, minor units per demanded unit (empty when infeasible; an sku the
    /// column's scenario asks no unit of is left out).
    pub cost_per_unit: BTreeMap<String, f64>,
    /// Products the best partial plan cannot make enough of, and by how
    /// many units (empty unless infeasible).
    pub shortfalls: Vec<Shortfall>,
    /// Why demand cannot be met, as the planner diagnoses it.
    pub reasons: Vec<String>,
    /// What differs from the base plan, one line each (empty for the base,
    /// and when this column or the base is infeasible).
    pub changes: Vec<String>,
    /// Version 2: late units summed over the periods (a unit two periods
    /// late counts twice); absent in version 1 and when infeasible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_units: Option<i64>,
    /// Version 2: per sku, the first period its production covers its total
    /// due (`null` when nothing is due); absent in version 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<Completions>,
    /// `None` where the planner found no plan.
    #[serde(skip)]
    pub plan: Option<Plan>,
}

/// A comparison: the base first, then the variants in file order.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub currency: String,
    /// Every sku of any column, base order first.
    pub skus: Vec<String>,
    pub columns: Vec<Column>,
}

impl Column {
    pub fn is_infeasible(&self) -> bool {
        self.status == PlanStatus::Infeasible.to_string()
    }

    /// Whether the planner found no plan for this column's scenario.
    pub fn has_no_plan(&self) -> bool {
        self.plan.is_none()
    }
}

impl Comparison {
    /// Whether any column is a version 2 plan (its output adds lateness).
    pub fn is_timed(&self) -> bool {
        self.columns
            .iter()
            .any(|k| k.plan.as_ref().is_some_and(|p| p.horizon.is_some()))
    }
}

/// Plans the base and each variant (already applied) and compares them.
/// The scenarios are planned in parallel ([`super::par_map`]).
pub fn compare(
    base: &Scenario,
    variants: &[(String, Scenario)],
    opts: &SolveOptions,
) -> Result<Comparison, String> {
    let mut all = vec![("base".to_string(), base.clone())];
    all.extend(variants.iter().cloned());
    let mut skus: Vec<String> = Vec::new();
    for (_, scenario) in &all {
        for p in &scenario.products {
            if !skus.contains(&p.sku) {
                skus.push(p.sku.clone());
            }
        }
    }
    let plans = super::par_map(
        &all,
        super::threads(),
        |(name, scenario)| super::plan_point(scenario, opts).map_err(|e| format!("{name}: {e}")),
        &mut |_| {},
    )?;
    let base_plan = plans
        .first()
        .and_then(|p| p.as_ref().ok())
        .filter(|p| p.status != PlanStatus::Infeasible);
    let columns = all
        .iter()
        .zip(&plans)
        .enumerate()
        .map(|(i, ((name, scenario), plan))| match plan {
            Ok(plan) => {
                let mut c = column(name, plan, if i == 0 { None } else { base_plan });
                // An sku the column asks no unit of has no cost per unit (the planner's
                // 0.00 read as a price): `-` in the table, empty in CSV, absent in JSON.
                c.cost_per_unit
                    .retain(|sku, _| super::units_asked(scenario, sku) > 0);
                c
            }
            Err(e) => no_plan_column(name, e),
        })
        .collect();
    Ok(Comparison {
        currency: base.currency.clone(),
        skus,
        columns,
    })
}

/// The column of a scenario the planner found no plan for.
fn no_plan_column(name: &str, e: &PlanError) -> Column {
    Column {
        name: name.to_string(),
        status: "no_plan".to_string(),
        reason: Some(e.to_string()),
        gap: None,
        total_cost: None,
        cost_breakdown: None,
        cost_per_unit: BTreeMap::new(),
        shortfalls: Vec::new(),
        reasons: Vec::new(),
        changes: Vec::new(),
        late_units: None,
        completion: None,
        plan: None,
    }
}

fn column(name: &str, plan: &Plan, base: Option<&Plan>) -> Column {
    let infeasible = plan.status == PlanStatus::Infeasible;
    let feasible = !infeasible;
    Column {
        name: name.to_string(),
        status: plan.status.to_string(),
        reason: None,
        gap: feasible.then_some(plan.gap).filter(|g| g.is_finite()),
        total_cost: feasible.then_some(plan.total_cost),
        cost_breakdown: feasible.then_some(plan.cost_breakdown),
        cost_per_unit: if infeasible {
            BTreeMap::new()
        } else {
            plan.cost_per_unit
                .iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        },
        shortfalls: plan.shortfalls.clone(),
        reasons: plan
            .diagnosis
            .as_ref()
            .map(|d| d.reasons.clone())
            .unwrap_or_default(),
        changes: match base {
            Some(b) if !infeasible => plan_changes(b, plan),
            _ => Vec::new(),
        },
        late_units: plan
            .late
            .as_ref()
            .filter(|_| feasible)
            .map(|l| l.iter().map(|l| l.units).sum()),
        completion: plan.completion.clone(),
        plan: Some(plan.clone()),
    }
}

/// `sku:units; sku:units` for CSV cells.
pub fn shortfall_text(s: &[Shortfall]) -> String {
    s.iter()
        .map(|f| format!("{}:{}", f.sku, f.short_by))
        .collect::<Vec<_>>()
        .join("; ")
}

fn qty(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// ` in 3`: the period of a version 2 run or order, nothing in version 1.
fn in_period(p: Option<usize>) -> String {
    p.map_or(String::new(), |t| format!(" in {t}"))
}

/// Runs and purchases that differ between two plans, for people. Version 2
/// runs and orders are told apart by period (`run cixi-1/kettle in 3`,
/// `buy ningbo-steel/steel-304 in 2`).
pub fn plan_changes(base: &Plan, other: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    type RunKey = (Option<usize>, String, String);
    let runs = |p: &Plan| -> BTreeMap<RunKey, i64> {
        p.runs
            .iter()
            .map(|r| ((r.period, r.factory.clone(), r.sku.clone()), r.quantity))
            .collect()
    };
    let (a, b) = (runs(base), runs(other));
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
    for k in keys {
        let (x, y) = (a.get(&k).copied(), b.get(&k).copied());
        if x != y {
            let show = |q: Option<i64>| q.map_or("-".to_string(), |q| q.to_string());
            out.push(format!(
                "run {}/{}{}: {} -> {}",
                k.1,
                k.2,
                in_period(k.0),
                show(x),
                show(y)
            ));
        }
    }
    type BuyKey = (Option<usize>, String, String);
    let buys = |p: &Plan| -> BTreeMap<BuyKey, (f64, f64)> {
        p.purchases
            .iter()
            .map(|r| {
                (
                    (r.period, r.supplier.clone(), r.material.clone()),
                    (r.quantity, r.unit_price),
                )
            })
            .collect()
    };
    let (a, b) = (buys(base), buys(other));
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
    for k in keys {
        let (x, y) = (a.get(&k).copied(), b.get(&k).copied());
        let same = match (x, y) {
            (Some(x), Some(y)) => (x.0 - y.0).abs() < 1e-6 && (x.1 - y.1).abs() < 1e-6,
            (None, None) => true,
            _ => false,
        };
        if !same {
            // The unit price in major units, like every amount beside it.
            let show = |q: Option<(f64, f64)>| {
                q.map_or("-".to_string(), |(q, p)| {
                    format!("{} @ {}", qty(q), unit_price(p, &other.currency))
                })
            };
            out.push(format!(
                "buy {}/{}{}: {} -> {}",
                k.1,
                k.2,
                in_period(k.0),
                show(x),
                show(y)
            ));
        }
    }
    out
}

/// The aligned table for people. An infeasible column shows `INFEASIBLE`,
/// `-` for every cost, and its shortfalls (`short SKU` rows) instead.
pub fn render_text(c: &Comparison) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let cur = &c.currency;
    let dash = || "-".to_string();
    rows.push((
        "status".into(),
        c.columns
            .iter()
            .map(|k| match k.gap {
                _ if k.is_infeasible() => "INFEASIBLE".to_string(),
                _ if k.has_no_plan() => "NO PLAN".to_string(),
                Some(g) if k.status == "feasible" => format!("feasible (gap {:.2}%)", g * 100.0),
                // No bound known: as a sweep's `feasible ?`, not a bare `feasible` that
                // reads as settled.
                None if k.status == "feasible" => "feasible (gap ?)".to_string(),
                _ => k.status.clone(),
            })
            .collect(),
    ));
    rows.push((
        format!("total ({cur})"),
        c.columns
            .iter()
            .map(|k| k.total_cost.map_or_else(dash, |t| amount(t, cur)))
            .collect(),
    ));
    let timed = c.is_timed();
    let mut parts: Vec<(&str, PartOf)> = vec![
        ("  production", |b| b.production),
        ("  setup", |b| b.setup),
        ("  purchase", |b| b.purchase),
        ("  ordering", |b| b.ordering),
        ("  holding", |b| b.holding),
    ];
    if timed {
        parts.push(("  lateness", |b| b.lateness));
    }
    for (label, f) in parts {
        rows.push((
            label.to_string(),
            c.columns
                .iter()
                .map(|k| {
                    k.cost_breakdown
                        .as_ref()
                        .map_or_else(dash, |b| amount(f(b), cur))
                })
                .collect(),
        ));
    }
    let base_total = c.columns.first().and_then(|b| b.total_cost);
    rows.push((
        "vs base".into(),
        c.columns
            .iter()
            .map(|k| match (k.total_cost, base_total) {
                (Some(t), Some(b)) => {
                    let d = t - b;
                    let pct = if b != 0 {
                        d as f64 * 100.0 / b as f64
                    } else {
                        0.0
                    };
                    format!(
                        "{}{} ({pct:+.1}%)",
                        if d >= 0 { "+" } else { "" },
                        amount(d, cur)
                    )
                }
                _ => dash(),
            })
            .collect(),
    ));
    for sku in &c.skus {
        rows.push((
            format!("per unit {sku}"),
            c.columns
                .iter()
                .map(|k| {
                    k.cost_per_unit
                        .get(sku)
                        .map_or_else(dash, |v| major(*v, cur))
                })
                .collect(),
        ));
    }
    if timed {
        rows.push((
            "late (unit-periods)".into(),
            c.columns
                .iter()
                .map(|k| k.late_units.map_or_else(dash, |u| u.to_string()))
                .collect(),
        ));
        for sku in &c.skus {
            rows.push((
                format!("complete {sku}"),
                c.columns
                    .iter()
                    .map(|k| match k.completion.as_ref().and_then(|m| m.get(sku)) {
                        Some(Some(t)) if !k.is_infeasible() => format!("period {t}"),
                        _ => dash(),
                    })
                    .collect(),
            ));
        }
    }
    let short_skus: Vec<&String> = c
        .skus
        .iter()
        .filter(|sku| {
            c.columns
                .iter()
                .any(|k| k.shortfalls.iter().any(|f| &f.sku == *sku))
        })
        .collect();
    for sku in short_skus {
        rows.push((
            format!("short {sku}"),
            c.columns
                .iter()
                .map(|k| match k.shortfalls.iter().find(|f| &f.sku == sku) {
                    Some(f) => f.short_by.to_string(),
                    None if k.is_infeasible() => "0".to_string(),
                    None => dash(),
                })
                .collect(),
        ));
    }
    let mut header = vec![String::new()];
    header.extend(c.columns.iter().map(|k| k.name.clone()));
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .chain([header[0].len()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..c.columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.1[i].len())
                .chain([header[i + 1].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:w0$}", "");
    for (i, h) in header[1..].iter().enumerate() {
        let _ = write!(out, "  {:>w$}", h, w = widths[i]);
    }
    out.push('\n');
    for (label, cells) in &rows {
        let _ = write!(out, "{label:w0$}");
        for (i, cell) in cells.iter().enumerate() {
            let _ = write!(out, "  {:>w$}", cell, w = widths[i]);
        }
        out.push('\n');
    }
    let base_infeasible = c
        .columns
        .first()
        .is_some_and(|b| b.is_infeasible() || b.has_no_plan());
    if let Some(b) = c.columns.first().filter(|b| b.is_infeasible()) {
        let _ = writeln!(out, "\nbase: INFEASIBLE");
        write_infeasible(&mut out, b);
    }
    if let Some(b) = c.columns.first().filter(|b| b.has_no_plan()) {
        let _ = writeln!(out, "\nbase: NO PLAN");
        write_no_plan(&mut out, b);
    }
    out.push_str("\nchanges in runs and purchases, against base:\n");
    for k in c.columns.iter().skip(1) {
        let _ = writeln!(out, "  {}:", k.name);
        if k.is_infeasible() {
            write_infeasible(&mut out, k);
        } else if k.has_no_plan() {
            write_no_plan(&mut out, k);
        } else if base_infeasible {
            out.push_str("    (the base has no plan to compare with)\n");
        } else if k.changes.is_empty() {
            out.push_str("    (same runs and purchases)\n");
        }
        for ch in &k.changes {
            let _ = writeln!(out, "    {ch}");
        }
    }
    if timed {
        let _ = writeln!(
            out,
            "\nmoney in {cur} (major units); per unit: full cost per unit due of the sku, its \
             lateness included; late: units due and not made by a period's end, summed over \
             the periods; complete: the period production covers the total due"
        );
    } else {
        let _ = writeln!(
            out,
            "\nmoney in {cur} (major units); per unit: full cost per demanded unit of the sku"
        );
    }
    if c.columns.iter().any(Column::is_infeasible) {
        let _ = writeln!(
            out,
            "INFEASIBLE: no plan meets demand, so no costs are shown; short: units of demand \
             the best partial plan cannot make"
        );
    }
    let unproven = c.columns.iter().filter(|k| k.status == "feasible").count();
    if unproven > 0 {
        let _ = writeln!(
            out,
            "NOT PROVEN OPTIMAL in {unproven} of {} columns (feasible): the best plan found \
             within the time limit; the percentage is its gap to the best lower bound known \
             (? when none is), so its cost may be that much too high and a variant may look \
             cheaper or dearer than the base by the solver, not the scenario (a longer \
             --time-limit narrows it)",
            c.columns.len()
        );
    }
    if c.columns.iter().any(Column::has_no_plan) {
        let _ = writeln!(
            out,
            "NO PLAN: the planner found none (the reason is under changes), so nothing is \
             known of that scenario's cost, nor whether demand can be met; a longer \
             --time-limit may find one"
        );
    }
    out
}

fn write_no_plan(out: &mut String, k: &Column) {
    let _ = writeln!(
        out,
        "    NO PLAN: {}",
        k.reason.as_deref().unwrap_or_default()
    );
}

fn write_infeasible(out: &mut String, k: &Column) {
    let short: Vec<String> = k
        .shortfalls
        .iter()
        .map(|f| format!("{} by {} units", f.sku, f.short_by))
        .collect();
    let _ = writeln!(
        out,
        "    INFEASIBLE: demand cannot be met; short: {}",
        short.join(", ")
    );
    for r in &k.reasons {
        let _ = writeln!(out, "    - {r}");
    }
}

/// One JSON object for tools: currency, skus and one entry per column.
pub fn render_json(c: &Comparison) -> String {
    serde_json::to_string_pretty(c).expect("a comparison always serializes")
}

/// CSV for spreadsheets: one row per scenario, money in minor units. An
/// infeasible row has empty cost cells and its shortfalls as `sku:units; ...`;
/// a row with no plan has status `no_plan` and every other cell empty (the
/// JSON carries its `reason`).
///
/// A comparison of version 2 scenarios adds `lateness` after `holding` and
/// `late_units` after the costs per unit.
pub fn render_csv(c: &Comparison) -> String {
    let timed = c.is_timed();
    let mut out =
        String::from("scenario,status,gap,total_cost,production,setup,purchase,ordering,holding");
    if timed {
        out.push_str(",lateness");
    }
    for sku in &c.skus {
        let _ = write!(out, ",{}", csv_field(&format!("cost_per_unit:{sku}")));
    }
    if timed {
        out.push_str(",late_units");
    }
    out.push_str(",shortfalls,changes\n");
    for k in &c.columns {
        let opt = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
        let b = k.cost_breakdown.as_ref();
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            csv_field(&k.name),
            k.status,
            k.gap.map_or(String::new(), |g| g.to_string()),
            opt(k.total_cost),
            opt(b.map(|b| b.production)),
            opt(b.map(|b| b.setup)),
            opt(b.map(|b| b.purchase)),
            opt(b.map(|b| b.ordering)),
            opt(b.map(|b| b.holding)),
        );
        if timed {
            let _ = write!(out, ",{}", opt(b.map(|b| b.lateness)));
        }
        for sku in &c.skus {
            match k.cost_per_unit.get(sku) {
                Some(v) => {
                    let _ = write!(out, ",{v:.4}");
                }
                None => out.push(','),
            }
        }
        if timed {
            let _ = write!(out, ",{}", opt(k.late_units));
        }
        let _ = writeln!(
            out,
            ",{},{}",
            csv_field(&shortfall_text(&k.shortfalls)),
            csv_field(&k.changes.join("; "))
        );
    }
    out
}

/// Quotes a CSV field when it needs it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
