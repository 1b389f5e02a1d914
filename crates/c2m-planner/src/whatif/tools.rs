//! Scenario tools: validate, summarise, convert.

use std::fmt::Write;

use crate::{Scenario, ScenarioError};

/// Reads and validates; the error lists every broken rule with its place.
pub fn read_valid(file_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let s = Scenario::from_str_with_name(file_name, text)?;
    s.clone().validate()?;
    Ok(s)
}

/// A summary for people: counts, demand, material needs against stock,
/// lines and offers with their breaks.
pub fn summary(s: &Scenario) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} (money in {} minor units)",
        s.name, s.currency
    );
    if let Some(d) = s.material_deadline_days {
        let _ = writeln!(out, "material deadline: {d} days");
    }
    if let Some(h) = s.horizon {
        let _ = writeln!(
            out,
            "horizon: {} periods of {} days (time-phased, version 2)",
            h.periods, h.period_days
        );
    }
    let _ = writeln!(
        out,
        "{} products, {} materials, {} factories ({} lines), {} suppliers ({} offers)",
        s.products.len(),
        s.materials.len(),
        s.factories.len(),
        s.factories.iter().map(|f| f.lines.len()).sum::<usize>(),
        s.suppliers.len(),
        s.suppliers.iter().map(|x| x.offers.len()).sum::<usize>()
    );
    let _ = writeln!(out, "\nproducts:");
    for p in &s.products {
        if s.horizon.is_none() {
            let _ = writeln!(out, "  {:<24} demand {:>8}", p.sku, p.demand);
            continue;
        }
        let due: Vec<String> = p
            .due
            .iter()
            .map(|d| format!("{} by {}", d.quantity, d.period))
            .collect();
        let late = p.late_cost.map_or("never late".to_string(), |c| {
            format!("late cost {c} per unit per period")
        });
        let _ = writeln!(
            out,
            "  {:<24} due {:>8}: {}; {late}",
            p.sku,
            p.demand,
            if due.is_empty() {
                "nothing".to_string()
            } else {
                due.join(", ")
            }
        );
    }
    let _ = writeln!(out, "\nmaterials (need at demand / on hand):");
    for m in &s.materials {
        let need: f64 = s
            .products
            .iter()
            .map(|p| p.demand as f64 * p.bom.get(&m.id).copied().unwrap_or(0.0))
            .sum();
        let receipts: Vec<String> = m
            .receipts
            .iter()
            .map(|r| format!("{} in {}", r.quantity, r.period))
            .collect();
        let _ = writeln!(
            out,
            "  {:<24} {:>12.2} / {:>10.2} {}  holding {}{}",
            m.id,
            need,
            m.on_hand,
            m.unit,
            m.holding_cost,
            if receipts.is_empty() {
                String::new()
            } else {
                format!("  receipts {}", receipts.join(", "))
            }
        );
    }
    let _ = writeln!(out, "\nfactories:");
    for f in &s.factories {
        match &f.calendar {
            Some(c) => {
                let hours: Vec<String> = c.iter().map(|h| h.to_string()).collect();
                let _ = writeln!(out, "  {} (h per period: {})", f.id, hours.join(", "));
            }
            None => {
                let _ = writeln!(out, "  {} ({} h)", f.id, f.capacity_hours);
            }
        }
        for l in &f.lines {
            let _ = writeln!(
                out,
                "    {:<22} unit {} setup {} min run {} h/unit {} setup h {}",
                l.sku, l.unit_cost, l.setup_cost, l.min_run, l.hours_per_unit, l.setup_hours
            );
        }
    }
    let _ = writeln!(out, "\nsuppliers:");
    for x in &s.suppliers {
        let _ = writeln!(out, "  {} (lead {} days)", x.id, x.lead_days);
        for o in &x.offers {
            let breaks: Vec<String> = o
                .breaks
                .iter()
                .map(|b| format!("{}+ @ {}", b.min_qty, b.unit_price))
                .collect();
            let mut extra = String::new();
            if o.moq > 0.0 {
                let _ = write!(extra, " moq {}", o.moq);
            }
            if let Some(p) = o.pack() {
                let _ = write!(extra, " pack {p}");
            }
            if let Some(m) = o.max_qty {
                let _ = write!(extra, " max {m}");
            }
            if o.order_cost > 0.0 {
                let _ = write!(extra, " order cost {}", o.order_cost);
            }
            let _ = writeln!(out, "    {:<20} {}{extra}", o.material, breaks.join(", "));
        }
    }
    out
}

/// Converts between TOML and JSON, chosen by the output file name.
pub fn convert(s: &Scenario, out_name: &str) -> Result<String, ScenarioError> {
    if out_name.to_ascii_lowercase().ends_with(".json") {
        s.to_json_string().map(|t| t + "\n")
    } else {
        s.to_toml_string()
    }
}
