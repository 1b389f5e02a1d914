//! Rendering a plan for people (aligned tables) and for tools (JSON).
//! Returns strings: printing is the caller's business.
//!
//! A version 2 plan is shown as a timeline with periods across
//! ([`timeline`]) and can be drawn as a schedule ([`schedule_svg`]).

use std::fmt::Write;

mod schedule;
mod timeline;

pub use schedule::schedule_svg;
pub(crate) use schedule::svg_escape;

use crate::plan::{Binding, Plan, PlanStatus};
use crate::validate::ValidatedScenario;

/// The plan as one JSON object (the contract of `scenario-format.md`, plus
/// the added fields).
pub fn render_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan always serializes")
}

/// How many digits of a major unit the currency's minor unit is (ISO 4217's exponent): 2
/// for most (fen, cents), 0 for the yen and the won, 3 for the dinars that count in
/// thousandths. Scenario money is in minor units, so every amount shown to people goes
/// through this. (The same table as `c2m_domain::Currency::minor_digits`: the planner
/// depends on no other c2m crate; a code it does not know counts as 2.)
pub fn minor_digits(currency: &str) -> usize {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// `minor` in the currency's major units, as a number: 2150 fen is 21.5, 2150 yen 2150.
pub fn to_major(minor: f64, currency: &str) -> f64 {
    minor / 10f64.powi(minor_digits(currency) as i32)
}

/// `minor` in major units with the currency's digits and no grouping (table cells):
/// `21.50` for 2150 fen, `2150` for 2150 yen.
pub fn major(minor: f64, currency: &str) -> String {
    let digits = minor_digits(currency);
    format!("{:.digits$}", to_major(minor, currency))
}

/// Money in minor units shown as major units with the currency's digits, grouped in
/// thousands: `12,345.67 CNY`, `1,234,567 JPY`.
pub fn money(minor: i64, currency: &str) -> String {
    format!("{} {currency}", amount(minor, currency))
}

/// [`money`] without the currency's code (table cells under a heading that names it).
pub fn amount(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let places = minor_digits(currency);
    let scale = 10u64.pow(places as u32);
    let (major, fraction) = (abs / scale, abs % scale);
    let grouped = in_thousands(&major.to_string());
    if places == 0 {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction:0places$}")
    }
}

/// A count grouped in thousands, as amounts are: `1,990,119,676,620,397`.
pub fn grouped(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", in_thousands(&n.unsigned_abs().to_string()))
}

/// Decimal digits with a comma before each group of three from the right.
fn in_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A unit price (minor units, possibly fractional) in major units like every other amount,
/// with the currency's digits and up to two more when the price has them: 2150 fen is
/// `21.50`, 2.5 fen `0.025`, 2.5 yen `2.5`.
pub(crate) fn unit_price(minor: f64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let most = digits + 2;
    let value = to_major(minor, currency);
    let s = format!("{value:.most$}");
    let trimmed = s.trim_end_matches('0');
    let decimals = trimmed.split('.').nth(1).map_or(0, str::len);
    if decimals <= digits {
        format!("{value:.digits$}")
    } else {
        trimmed.to_string()
    }
}

/// A quantity without trailing zeros.
fn qty(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A simple table: columns right-aligned when numeric.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    numeric: Vec<bool>,
}

impl Table {
    fn new(head: &[&str], numeric: &[bool]) -> Self {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            numeric: numeric.to_vec(),
        }
    }
    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    fn render(&self, out: &mut String) {
        let n = self.head.len();
        let width: Vec<usize> = (0..n)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([self.head[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String], out: &mut String| {
            let mut s = String::from("  ");
            for c in 0..n {
                if c > 0 {
                    s.push_str("  ");
                }
                if self.numeric[c] {
                    let _ = write!(s, "{:>w$}", cells[c], w = width[c]);
                } else {
                    let _ = write!(s, "{:<w$}", cells[c], w = width[c]);
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&self.head, out);
        let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, out);
        for r in &self.rows {
            line(r, out);
        }
    }
}

/// Status, solver, bound and time, one line each.
fn write_status(out: &mut String, plan: &Plan) {
    let status = match plan.status {
        PlanStatus::Optimal => "optimal (proven)".to_string(),
        PlanStatus::Feasible if plan.gap.is_finite() => {
            format!("feasible, gap {:.4}%", plan.gap * 100.0)
        }
        PlanStatus::Feasible => "feasible, gap unknown".to_string(),
        PlanStatus::Infeasible if plan.horizon.is_some() => {
            "INFEASIBLE: the dues cannot be met".to_string()
        }
        PlanStatus::Infeasible => "INFEASIBLE: demand cannot be met".to_string(),
    };
    let _ = writeln!(out, "Status:  {status}");
    let _ = writeln!(out, "Solver:  {}", plan.solver);
    if let Some(b) = plan.best_bound {
        let _ = writeln!(out, "Bound:   {}", money(b.round() as i64, &plan.currency));
    }
    let _ = writeln!(out, "Time:    {:.3} s", plan.solve_seconds);
}

/// The total and its parts; lateness only for a version 2 plan (it is
/// always 0 in version 1, whose report keeps its five parts).
fn write_costs(out: &mut String, plan: &Plan) {
    let cur = &plan.currency;
    let _ = writeln!(out, "Total cost: {}", money(plan.total_cost, cur));
    let mut t = Table::new(&["part", "cost"], &[false, true]);
    let b = &plan.cost_breakdown;
    let mut parts = vec![
        ("production", b.production),
        ("setup", b.setup),
        ("purchase", b.purchase),
        ("ordering", b.ordering),
        ("holding", b.holding),
    ];
    if plan.horizon.is_some() {
        parts.push(("lateness", b.lateness));
    }
    for (name, c) in parts {
        t.row(vec![name.to_string(), money(c, cur)]);
    }
    t.render(out);
    out.push('\n');
}

/// The plan for people: status, total and its parts, runs per factory,
/// purchase orders per supplier, leftovers, explanations, time taken.
///
/// A version 2 plan (one with a horizon) is shown as a timeline instead:
/// see [`timeline`].
pub fn render_text(v: &ValidatedScenario, plan: &Plan) -> String {
    if v.is_timed() && plan.horizon.is_some() {
        return timeline::render(v, plan);
    }
    let s = v.scenario();
    let cur = &plan.currency;
    let mut out = String::new();
    let _ = writeln!(out, "Plan for `{}`", s.name);
    write_status(&mut out, plan);
    out.push('\n');
    write_costs(&mut out, plan);

    if !plan.shortfalls.is_empty() {
        let _ = writeln!(out, "Shortfalls:");
        let mut t = Table::new(&["sku", "short by"], &[false, true]);
        for sf in &plan.shortfalls {
            t.row(vec![sf.sku.clone(), sf.short_by.to_string()]);
        }
        t.render(&mut out);
        if let Some(d) = &plan.diagnosis {
            for r in &d.reasons {
                let _ = writeln!(out, "  - {r}");
            }
        }
        out.push('\n');
    }

    let _ = writeln!(out, "Runs:");
    if plan.runs.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let mut t = Table::new(
            &["factory", "sku", "quantity", "hours"],
            &[false, false, true, true],
        );
        for r in &plan.runs {
            let hours = v
                .lines()
                .iter()
                .find(|l| {
                    s.factories[l.factory].id == r.factory && s.products[l.product].sku == r.sku
                })
                .map(|l| {
                    let line = v.line(*l);
                    line.hours_per_unit * r.quantity as f64 + line.setup_hours
                })
                .unwrap_or(0.0);
            t.row(vec![
                r.factory.clone(),
                r.sku.clone(),
                r.quantity.to_string(),
                format!("{hours:.2}"),
            ]);
        }
        t.render(&mut out);
    }
    out.push('\n');

    let _ = writeln!(out, "Purchase orders:");
    if plan.purchases.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let mut t = Table::new(
            &[
                "supplier",
                "material",
                "quantity",
                "unit",
                "packs",
                "unit price",
                "amount",
            ],
            &[false, false, true, false, true, true, true],
        );
        for p in &plan.purchases {
            let unit = s
                .materials
                .iter()
                .find(|m| m.id == p.material)
                .map_or("", |m| m.unit.as_str());
            t.row(vec![
                p.supplier.clone(),
                p.material.clone(),
                qty(p.quantity),
                unit.to_string(),
                p.packs.map_or("-".to_string(), |n| n.to_string()),
                unit_price(p.unit_price, cur),
                money((p.quantity * p.unit_price).round() as i64, cur),
            ]);
        }
        t.render(&mut out);
    }
    out.push('\n');

    let _ = writeln!(out, "Leftover stock:");
    let mut t = Table::new(&["material", "leftover", "unit"], &[false, true, false]);
    for (id, left) in plan.leftover.iter() {
        let unit = s
            .materials
            .iter()
            .find(|m| m.id == id)
            .map_or("", |m| m.unit.as_str());
        t.row(vec![id.to_string(), qty(left), unit.to_string()]);
    }
    t.render(&mut out);
    out.push('\n');

    if !plan.cost_per_unit.0.is_empty() {
        let _ = writeln!(out, "Cost per unit (full cost per demanded unit):");
        let mut t = Table::new(&["sku", "cost per unit"], &[false, true]);
        for (sku, c) in plan.cost_per_unit.iter() {
            // A partial plan that makes none of a sku has no cost for it: 0.00 read as
            // free units.
            let made = plan.runs.iter().any(|r| r.sku == sku && r.quantity > 0);
            let shown = if made || c > 0.0 {
                money(c.round() as i64, cur)
            } else {
                "-".to_string()
            };
            t.row(vec![sku.to_string(), shown]);
        }
        t.render(&mut out);
        out.push('\n');
    }

    if !plan.binding.is_empty() {
        let _ = writeln!(out, "Binding constraints:");
        for b in &plan.binding {
            let line = match b {
                Binding::Capacity {
                    factory,
                    used_hours,
                    capacity_hours,
                } => {
                    format!("capacity: `{factory}` uses {used_hours:.2} of {capacity_hours} hours")
                }
                Binding::SupplierCap {
                    supplier,
                    material,
                    max_qty,
                } => format!(
                    "supplier cap: `{supplier}` sells at most {} of `{material}`",
                    qty(*max_qty)
                ),
                Binding::Stock { material, on_hand } => format!(
                    "stock: all `{material}` is used ({} on hand, the rest bought)",
                    qty(*on_hand)
                ),
                Binding::MinRun {
                    factory,
                    sku,
                    min_run,
                } => {
                    format!("minimum run: `{sku}` at `{factory}` makes {min_run}, more than needed")
                }
                Binding::RoundUp {
                    supplier,
                    material,
                    reason,
                } => format!(
                    "round-up: `{material}` from `{supplier}` bought beyond need ({reason})"
                ),
            };
            let _ = writeln!(out, "  - {line}");
        }
        out.push('\n');
    }

    if let Some(sp) = &plan.shadow_prices {
        let _ = writeln!(
            out,
            "Shadow prices (saving from one more unit, runs and tiers fixed):"
        );
        let mut t = Table::new(&["resource", "per unit"], &[false, true]);
        for (id, p) in sp.materials.iter() {
            t.row(vec![
                format!("material `{id}`"),
                money(p.round() as i64, cur),
            ]);
        }
        for (id, p) in sp.factory_hours.iter() {
            t.row(vec![
                format!("hour at `{id}`"),
                money(p.round() as i64, cur),
            ]);
        }
        t.render(&mut out);
    }
    if let Some(missing) = &plan.shadow_prices_missing {
        let _ = writeln!(out, "Shadow prices: {missing}.");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_prices_are_major_units_like_the_amounts_beside_them() {
        assert_eq!(unit_price(2150.0, "CNY"), "21.50");
        assert_eq!(unit_price(100.0, "CNY"), "1.00");
        assert_eq!(unit_price(2.5, "CNY"), "0.025");
        assert_eq!(unit_price(1234.5678, "CNY"), "12.3457");
        assert_eq!(unit_price(2150.0, "JPY"), "2150");
        assert_eq!(unit_price(2.5, "JPY"), "2.5");
        assert_eq!(unit_price(1500.0, "KWD"), "1.500");
        assert_eq!(money(215_000, "CNY"), "2,150.00 CNY");
    }

    #[test]
    fn counts_are_grouped_in_thousands_as_amounts_are() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
        assert_eq!(grouped(i64::MIN), "-9,223,372,036,854,775,808");
        assert_eq!(money(-123_456_789, "JPY"), "-123,456,789 JPY");
    }
}
