//! The base and its variants planned and set side by side.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::report::money;
use crate::{CostBreakdown, Plan, Scenario, SolveOptions};

/// Reads one part of a cost breakdown.
type PartOf = fn(&CostBreakdown) -> i64;

/// One planned scenario in a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// `base` or the variant's name.
    pub name: String,
    pub status: String,
    pub gap: f64,
    pub total_cost: i64,
    pub cost_breakdown: CostBreakdown,
    /// Per sku (scenario order), minor units per demanded unit.
    pub cost_per_unit: BTreeMap<String, f64>,
    /// What differs from the base plan, one line each (empty for the base).
    pub changes: Vec<String>,
    #[serde(skip)]
    pub plan: Plan,
}

/// A comparison: the base first, then the variants in file order.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub currency: String,
    /// Every sku of any column, base order first.
    pub skus: Vec<String>,
    pub columns: Vec<Column>,
}

/// Plans the base and each variant (already applied) and compares them.
pub fn compare(
    base: &Scenario,
    variants: &[(String, Scenario)],
    opts: &SolveOptions,
) -> Result<Comparison, String> {
    let mut all = vec![("base".to_string(), base.clone())];
    all.extend(variants.iter().cloned());
    let mut columns: Vec<Column> = Vec::new();
    let mut skus: Vec<String> = Vec::new();
    for (name, scenario) in &all {
        for p in &scenario.products {
            if !skus.contains(&p.sku) {
                skus.push(p.sku.clone());
            }
        }
        let plan = super::plan_scenario(scenario, opts).map_err(|e| format!("{name}: {e}"))?;
        let changes = match columns.first() {
            Some(b) => plan_changes(&b.plan, &plan),
            None => Vec::new(),
        };
        columns.push(Column {
            name: name.clone(),
            status: plan.status.to_string(),
            gap: plan.gap,
            total_cost: plan.total_cost,
            cost_breakdown: plan.cost_breakdown,
            cost_per_unit: plan
                .cost_per_unit
                .iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            changes,
            plan,
        });
    }
    Ok(Comparison {
        currency: base.currency.clone(),
        skus,
        columns,
    })
}

fn qty(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Runs and purchases that differ between two plans, for people.
pub fn plan_changes(base: &Plan, other: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let runs = |p: &Plan| -> BTreeMap<(String, String), i64> {
        p.runs
            .iter()
            .map(|r| ((r.factory.clone(), r.sku.clone()), r.quantity))
            .collect()
    };
    let (a, b) = (runs(base), runs(other));
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
    for k in keys {
        let (x, y) = (a.get(&k).copied(), b.get(&k).copied());
        if x != y {
            let show = |q: Option<i64>| q.map_or("-".to_string(), |q| q.to_string());
            out.push(format!("run {}/{}: {} -> {}", k.0, k.1, show(x), show(y)));
        }
    }
    let buys = |p: &Plan| -> BTreeMap<(String, String), (f64, f64)> {
        p.purchases
            .iter()
            .map(|r| {
                (
                    (r.supplier.clone(), r.material.clone()),
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
            let show = |q: Option<(f64, f64)>| {
                q.map_or("-".to_string(), |(q, p)| format!("{} @ {}", qty(q), qty(p)))
            };
            out.push(format!("buy {}/{}: {} -> {}", k.0, k.1, show(x), show(y)));
        }
    }
    out
}

fn minor2(v: f64) -> String {
    format!("{:.2}", v / 100.0)
}

/// The aligned table for people.
pub fn render_text(c: &Comparison) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let cur = &c.currency;
    rows.push((
        "status".into(),
        c.columns
            .iter()
            .map(|k| {
                if k.status == "feasible" && k.gap.is_finite() {
                    format!("feasible (gap {:.2}%)", k.gap * 100.0)
                } else {
                    k.status.clone()
                }
            })
            .collect(),
    ));
    rows.push((
        format!("total ({cur})"),
        c.columns
            .iter()
            .map(|k| money(k.total_cost, "").trim_end().to_string())
            .collect(),
    ));
    let parts: [(&str, PartOf); 5] = [
        ("  production", |b| b.production),
        ("  setup", |b| b.setup),
        ("  purchase", |b| b.purchase),
        ("  ordering", |b| b.ordering),
        ("  holding", |b| b.holding),
    ];
    for (label, f) in parts {
        rows.push((
            label.to_string(),
            c.columns
                .iter()
                .map(|k| money(f(&k.cost_breakdown), "").trim_end().to_string())
                .collect(),
        ));
    }
    let base_total = c.columns.first().map_or(0, |b| b.total_cost);
    rows.push((
        "vs base".into(),
        c.columns
            .iter()
            .map(|k| {
                let d = k.total_cost - base_total;
                let pct = if base_total != 0 {
                    d as f64 * 100.0 / base_total as f64
                } else {
                    0.0
                };
                format!(
                    "{}{} ({pct:+.1}%)",
                    if d >= 0 { "+" } else { "" },
                    money(d, "").trim_end()
                )
            })
            .collect(),
    ));
    for sku in &c.skus {
        rows.push((
            format!("per unit {sku}"),
            c.columns
                .iter()
                .map(|k| k.cost_per_unit.get(sku).map_or("-".into(), |v| minor2(*v)))
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
    out.push_str("\nchanges in runs and purchases, against base:\n");
    for k in c.columns.iter().skip(1) {
        let _ = writeln!(out, "  {}:", k.name);
        if k.changes.is_empty() {
            out.push_str("    (same runs and purchases)\n");
        }
        for ch in &k.changes {
            let _ = writeln!(out, "    {ch}");
        }
    }
    let _ = writeln!(
        out,
        "\nmoney in {cur} (major units); per unit: full cost per demanded unit of the sku"
    );
    out
}

/// One JSON object for tools: currency, skus and one entry per column.
pub fn render_json(c: &Comparison) -> String {
    serde_json::to_string_pretty(c).expect("a comparison always serializes")
}

/// CSV for spreadsheets: one row per scenario, money in minor units.
pub fn render_csv(c: &Comparison) -> String {
    let mut out =
        String::from("scenario,status,gap,total_cost,production,setup,purchase,ordering,holding");
    for sku in &c.skus {
        let _ = write!(out, ",{}", csv_field(&format!("cost_per_unit:{sku}")));
    }
    out.push_str(",changes\n");
    for k in &c.columns {
        let b = &k.cost_breakdown;
        let gap = if k.gap.is_finite() {
            format!("{}", k.gap)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "{},{},{gap},{},{},{},{},{},{}",
            csv_field(&k.name),
            k.status,
            k.total_cost,
            b.production,
            b.setup,
            b.purchase,
            b.ordering,
            b.holding
        );
        for sku in &c.skus {
            match k.cost_per_unit.get(sku) {
                Some(v) => {
                    let _ = write!(out, ",{v:.4}");
                }
                None => out.push(','),
            }
        }
        let _ = writeln!(out, ",{}", csv_field(&k.changes.join("; ")));
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
