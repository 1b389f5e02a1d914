//! A version 2 plan drawn as a schedule: a standalone SVG document (text;
//! the caller writes it).
//!
//! Periods run across. Beneath the title come one row per factory with its
//! runs as bars (sku and quantity, one colour per sku; hours used of the
//! period's hours under each period; closed periods hatched), a row of the
//! units due per period (late units in their product's colour, outlined in
//! red), the purchase orders (a dot where an order is placed, a line for its
//! lead time, a triangle where it arrives, labelled with quantity, material
//! and supplier; one colour per material) and, last, a small stock curve per material in the same
//! colour. A legend closes it.
//!
//! Structure, which tests rely on: one `<g class="factory">` per factory
//! (attribute `data-factory`), inside it one `<rect class="run">` per run
//! (`data-sku`, `data-period`, `data-quantity`) and one `<rect
//! class="closed">` per period without hours; one `<path class="arrival">`
//! per purchase (`data-supplier`, `data-material`, `data-period`,
//! `data-arrives`); one `<polyline class="stock">` per material
//! (`data-material`); `<text class="title">` and `<g class="legend">`.

use std::fmt::Write;

use super::money;
use super::timeline::run_hours;
use crate::plan::{Plan, PlanStatus};
use crate::validate::ValidatedScenario;

/// Escapes text for SVG (XML) content and attribute values.
pub(crate) fn svg_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
use svg_escape as esc;

/// One colour per sku (the run bars), in scenario order.
const SKU_COLOURS: &[&str] = &[
    "#3867a8", "#d9822b", "#3a8f4b", "#8a5cb8", "#b8504b", "#2b9aa8", "#9a8a2e", "#c4569b",
];
/// One colour per material (arrivals and stock curves), in scenario order: hues the
/// first skus do not have, so steel's stock is not read as the first kettle's runs (they
/// were the same blue, orange and green, a QA pass found).
const MATERIAL_COLOURS: &[&str] = &[
    "#6a3d9a", "#a6611a", "#1b9e77", "#e7298a", "#7f7f7f", "#bcbd22", "#17becf", "#8c510a",
    "#fb9a99", "#35978f",
];
const LATE: &str = "#c62828";
const INK: &str = "#222";
const MUTED: &str = "#666";
const GRID: &str = "#d8d8d8";

const LEFT: f64 = 170.0;
const RIGHT: f64 = 24.0;
const FONT: f64 = 12.0;
const BAR_H: f64 = 32.0;
const BAR_GAP: f64 = 4.0;
const LANE_H: f64 = 16.0;
const STOCK_H: f64 = 30.0;
const STOCK_GAP: f64 = 10.0;

/// Width of text in pixels, roughly (sans-serif averages a little over
/// half its size per character).
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.58
}

/// `s` cut to fit `width` pixels at `size`, with an ellipsis when cut.
fn fit(s: &str, width: f64, size: f64) -> String {
    if text_width(s, size) <= width {
        return s.to_string();
    }
    let keep = ((width / (size * 0.58)).floor() as usize).saturating_sub(1);
    let mut out: String = s.chars().take(keep).collect();
    out.push('…');
    out
}

fn colour(palette: &[&'static str], i: usize) -> &'static str {
    palette[i % palette.len()]
}

/// A quantity without trailing zeros.
fn amount(v: f64) -> String {
    super::qty(v)
}

/// `1 run`, `4 runs`.
fn count(k: usize, noun: &str) -> String {
    format!("{k} {noun}{}", if k == 1 { "" } else { "s" })
}

/// What a period is called: weeks and days by their name.
fn period_name(days: i64) -> &'static str {
    match days {
        1 => "day",
        7 => "week",
        _ => "period",
    }
}

/// The schedule of a version 2 plan as a standalone SVG document. A plan
/// without a horizon (version 1) is drawn as one period.
pub fn schedule_svg(v: &ValidatedScenario, plan: &Plan) -> String {
    let s = v.scenario();
    let n = v.periods().max(1);
    let days = s.horizon.map_or(0, |h| h.period_days);
    let name = period_name(days);
    let pw = ((1100.0 - LEFT - RIGHT) / n as f64).clamp(96.0, 150.0);
    // The grid's width; labels and the legend may need more (see the end).
    let grid_w = LEFT + pw * n as f64 + RIGHT;
    let x_of = |t: usize| LEFT + pw * t as f64;
    let period_of = |p: Option<usize>| p.unwrap_or(0).min(n - 1);
    let mut body = String::new();
    // Row backgrounds, drawn beneath the period lines and everything else.
    let mut bg = String::new();
    let mut y = 78.0;

    // Period header.
    for t in 0..n {
        let _ = writeln!(
            body,
            r#"<text class="period" x="{:.1}" y="{y:.1}" text-anchor="middle" font-weight="bold">{name} {t}</text>"#,
            x_of(t) + pw / 2.0
        );
    }
    y += 10.0;
    let grid_top = y;

    // Factory rows.
    let sku_index = |sku: &str| s.products.iter().position(|p| p.sku == sku).unwrap_or(0);
    for (f, fac) in s.factories.iter().enumerate() {
        let runs: Vec<_> = plan.runs.iter().filter(|r| r.factory == fac.id).collect();
        let mut stacks = vec![0usize; n];
        for r in &runs {
            stacks[period_of(r.period)] += 1;
        }
        let depth = stacks.iter().copied().max().unwrap_or(0).max(1) as f64;
        let row_h = depth * (BAR_H + BAR_GAP) + 22.0;
        let _ = writeln!(
            body,
            r#"<g class="factory" data-factory="{}">"#,
            esc(&fac.id)
        );
        let _ = writeln!(
            bg,
            r##"<rect x="0" y="{y:.1}" width="100%" height="{row_h:.1}" fill="{}"/>"##,
            if f % 2 == 0 { "#f3f3f3" } else { "#ffffff" }
        );
        let _ = writeln!(
            body,
            r#"<text x="12" y="{:.1}" font-weight="bold" fill="{INK}">{}</text>"#,
            y + 20.0,
            esc(&fit(&fac.id, LEFT - 20.0, FONT))
        );
        let _ = writeln!(
            body,
            r#"<text x="12" y="{:.1}" font-size="10" fill="{MUTED}">{}</text>"#,
            y + 35.0,
            if fac.calendar.is_some() {
                format!("calendar, up to {} h", amount(fac.capacity_hours))
            } else {
                format!("{} h per {name}", amount(fac.capacity_hours))
            }
        );
        let hours = v.hours(f);
        for t in 0..n {
            let cap = hours.get(t).copied().unwrap_or(0.0);
            if cap <= 0.0 {
                let _ = writeln!(
                    body,
                    r#"<rect class="closed" x="{:.1}" y="{:.1}" width="{pw:.1}" height="{row_h:.1}" fill="url(#hatch)"><title>{} closed in {name} {t}</title></rect>"#,
                    x_of(t),
                    y,
                    esc(&fac.id)
                );
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="{MUTED}" font-style="italic">closed</text>"#,
                    x_of(t) + pw / 2.0,
                    y + row_h / 2.0 + 4.0
                );
            }
        }
        let mut placed = vec![0usize; n];
        let mut used = vec![0.0; n];
        for r in &runs {
            let t = period_of(r.period);
            let k = placed[t];
            placed[t] += 1;
            let hours_of_run = run_hours(s, &fac.id, &r.sku, r.quantity);
            used[t] += hours_of_run;
            let bx = x_of(t) + 4.0;
            let by = y + 4.0 + k as f64 * (BAR_H + BAR_GAP);
            let bw = pw - 8.0;
            let c = colour(SKU_COLOURS, sku_index(&r.sku));
            let _ = writeln!(
                body,
                r#"<rect class="run" data-sku="{sku}" data-period="{t}" data-quantity="{q}" x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{BAR_H}" rx="3" fill="{c}"><title>{sku}: {q} units at {fac} in {name} {t} ({h} h)</title></rect>"#,
                sku = esc(&r.sku),
                q = r.quantity,
                fac = esc(&fac.id),
                h = amount(hours_of_run),
            );
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="white">{}</text>"#,
                bx + 5.0,
                by + 13.0,
                esc(&fit(&r.sku, bw - 10.0, 10.0))
            );
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold" fill="white">{}</text>"#,
                bx + 5.0,
                by + 27.0,
                r.quantity
            );
        }
        // Hours used of the hours available, under each open period.
        for (t, &used) in used.iter().enumerate() {
            let cap = hours.get(t).copied().unwrap_or(0.0);
            if cap <= 0.0 {
                continue;
            }
            let frac = (used / cap).clamp(0.0, 1.0);
            let bx = x_of(t) + 4.0;
            let bw = pw - 8.0;
            let by = y + row_h - 14.0;
            // Full as the label reads it (hours to a tenth): 34.99 of 35 prints 35/35,
            // and must not be drawn as room left.
            let shown = (used * 10.0).round() / 10.0;
            let full = shown >= cap - 1e-6 * cap.max(1.0);
            let _ = writeln!(
                body,
                r##"<rect x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="4" fill="#e4e4e4"/><rect class="hours" x="{bx:.1}" y="{by:.1}" width="{:.1}" height="4" fill="{}"/>"##,
                bw * frac,
                if full { LATE } else { "#888" }
            );
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end" fill="{}">{}/{} h</text>"#,
                bx + bw,
                by + 13.0,
                if full { LATE } else { MUTED },
                amount(shown),
                amount(cap)
            );
        }
        body.push_str("</g>\n");
        y += row_h;
    }

    // Dues and late units.
    let late = plan.late.as_deref().unwrap_or_default();
    let mut due_rows: Vec<Vec<(usize, String, bool)>> = vec![Vec::new(); n];
    for p in 0..s.products.len() {
        for (t, &d) in v.due(p).iter().enumerate().take(n) {
            if d > 0 {
                due_rows[t].push((p, format!("{d} due"), false));
            }
        }
    }
    for l in late {
        if l.period < n {
            due_rows[l.period].push((sku_index(&l.sku), format!("{} late", l.units), true));
        }
    }
    let depth = due_rows.iter().map(Vec::len).max().unwrap_or(0);
    if depth > 0 {
        y += 4.0;
        let row_h = (depth as f64 * LANE_H + 12.0).max(44.0);
        let _ = writeln!(
            body,
            r#"<g class="dues"><text x="12" y="{:.1}" font-weight="bold" fill="{INK}">due by the end</text><text x="12" y="{:.1}" font-size="10" fill="{MUTED}">of the {name}; late in red</text>"#,
            y + 16.0,
            y + 30.0
        );
        // Right-aligned at the period's end: units are due by then.
        for (t, items) in due_rows.iter().enumerate() {
            for (k, (p, label, is_late)) in items.iter().enumerate() {
                let cx = x_of(t + 1) - 10.0;
                let cy = y + 12.0 + k as f64 * LANE_H;
                // The product's colour either way, so that late units say whose they
                // are; late ones outlined in red (and their label red).
                let c = colour(SKU_COLOURS, *p);
                let _ = writeln!(
                    body,
                    r#"<rect class="{}" x="{:.1}" y="{:.1}" width="8" height="8" fill="{c}"{} transform="rotate(45 {cx:.1} {cy:.1})"><title>{}: {label} at the end of {name} {t}</title></rect>"#,
                    if *is_late { "late" } else { "due" },
                    cx - 4.0,
                    cy - 4.0,
                    if *is_late {
                        format!(r#" stroke="{LATE}" stroke-width="2""#)
                    } else {
                        String::new()
                    },
                    esc(&s.products[*p].sku)
                );
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{}"{}>{label}</text>"#,
                    cx - 9.0,
                    cy + 4.0,
                    if *is_late { LATE } else { INK },
                    if *is_late {
                        r#" font-weight="bold""#
                    } else {
                        ""
                    }
                );
            }
        }
        body.push_str("</g>\n");
        y += row_h;
    }

    // Purchases: each on the first lane where its marks and label fit.
    let mat_index = |id: &str| s.materials.iter().position(|m| m.id == id).unwrap_or(0);
    let unit_of = |id: &str| {
        s.materials
            .iter()
            .find(|m| m.id == id)
            .map_or("", |m| m.unit.as_str())
    };
    let mut orders: Vec<_> = plan.purchases.iter().collect();
    orders.sort_by_key(|p| (p.period, p.arrives, mat_index(&p.material)));
    let mut lanes: Vec<f64> = Vec::new(); // right end of the last label on each lane
    let mut marks = String::new();
    for p in &orders {
        let ordered = period_of(p.period);
        let arrives = p.arrives.unwrap_or(ordered).min(n - 1);
        let xo = x_of(ordered) + 8.0;
        let xa = x_of(arrives) + 8.0 + if arrives > ordered { 0.0 } else { 6.0 };
        let label = format!(
            "{} {} {} · {}",
            amount(p.quantity),
            unit_of(&p.material),
            p.material,
            p.supplier
        );
        let end = xa + 8.0 + text_width(&label, 10.0);
        let lane = match lanes.iter().position(|&right| right + 6.0 <= xo - 4.0) {
            Some(l) => l,
            None => {
                lanes.push(0.0);
                lanes.len() - 1
            }
        };
        lanes[lane] = end;
        let cy = y + 14.0 + lane as f64 * LANE_H;
        let c = colour(MATERIAL_COLOURS, mat_index(&p.material));
        let _ = writeln!(
            marks,
            r#"<circle cx="{xo:.1}" cy="{cy:.1}" r="3" fill="white" stroke="{c}" stroke-width="1.5"/>"#
        );
        if xa - xo > 7.0 {
            let _ = writeln!(
                marks,
                r#"<line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="{c}" stroke-width="1.5"/>"#,
                xo + 3.0,
                xa - 5.0
            );
        }
        let _ = writeln!(
            marks,
            r#"<path class="arrival" data-supplier="{sup}" data-material="{mat}" data-period="{ordered}" data-arrives="{arrives}" d="M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="{c}"><title>{q} {unit} of {mat} from {sup}: ordered in {name} {ordered}, arrives at the start of {name} {arrives}, {price} per {unit}</title></path>"#,
            xa - 5.0,
            cy - 5.0,
            xa + 5.0,
            cy,
            xa - 5.0,
            cy + 5.0,
            sup = esc(&p.supplier),
            mat = esc(&p.material),
            q = amount(p.quantity),
            unit = esc(unit_of(&p.material)),
            price = money(p.unit_price.round() as i64, &plan.currency),
        );
        let _ = writeln!(
            marks,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{INK}">{}</text>"#,
            xa + 8.0,
            cy + 3.5,
            esc(&label)
        );
    }
    if !orders.is_empty() {
        let row_h = (lanes.len() as f64 * LANE_H + 14.0).max(44.0);
        let _ = writeln!(
            body,
            r#"<g class="purchases"><text x="12" y="{:.1}" font-weight="bold" fill="{INK}">purchase orders</text><text x="12" y="{:.1}" font-size="10" fill="{MUTED}">ordered, lead time, arrives</text>"#,
            y + 18.0,
            y + 32.0
        );
        let _ = writeln!(
            bg,
            r##"<rect x="0" y="{y:.1}" width="100%" height="{row_h:.1}" fill="#f3f3f3"/>"##
        );
        body.push_str(&marks);
        body.push_str("</g>\n");
        y += row_h;
    }

    // Stock: one small curve per material, on-hand at the left edge, then
    // the stock at the end of each period.
    if let Some(stock) = &plan.stock {
        y += 14.0;
        let _ = writeln!(
            body,
            r#"<text x="12" y="{y:.1}" font-weight="bold" fill="{INK}">stock at the end of each {name}</text>"#
        );
        y += 10.0;
        for (m, mat) in s.materials.iter().enumerate() {
            let Some(row) = stock.get(&mat.id) else {
                continue;
            };
            let c = colour(MATERIAL_COLOURS, m);
            let mut values = vec![mat.on_hand];
            values.extend(row.iter().copied());
            let max = values.iter().copied().fold(0.0, f64::max);
            let base = y + STOCK_H;
            let py = |q: f64| {
                if max > 0.0 {
                    base - q.max(0.0) / max * (STOCK_H - 4.0)
                } else {
                    base
                }
            };
            let pts: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, &q)| format!("{:.1},{:.1}", x_of(i), py(q)))
                .collect();
            let _ = writeln!(
                body,
                r#"<text x="12" y="{:.1}" font-size="11" fill="{INK}">{}</text><text x="12" y="{:.1}" font-size="9" fill="{MUTED}">{}, max {}</text>"#,
                y + 12.0,
                esc(&fit(&mat.id, LEFT - 20.0, 11.0)),
                y + 24.0,
                esc(&mat.unit),
                amount(max)
            );
            let _ = writeln!(
                body,
                r#"<line x1="{LEFT}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}" stroke="{GRID}"/>"#,
                x_of(n)
            );
            let _ = writeln!(
                body,
                r#"<polygon points="{LEFT:.1},{base:.1} {} {:.1},{base:.1}" fill="{c}" fill-opacity="0.18"/>"#,
                pts.join(" "),
                x_of(n)
            );
            let _ = writeln!(
                body,
                r#"<polyline class="stock" data-material="{}" points="{}" fill="none" stroke="{c}" stroke-width="1.8"><title>{}: {}</title></polyline>"#,
                esc(&mat.id),
                pts.join(" "),
                esc(&mat.id),
                values
                    .iter()
                    .map(|q| amount(*q))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            y += STOCK_H + STOCK_GAP;
        }
    }
    let grid_bottom = y;

    // Period lines over the whole height.
    let mut lines = String::new();
    for t in 0..=n {
        let _ = writeln!(
            lines,
            r#"<line x1="{0:.1}" y1="{grid_top:.1}" x2="{0:.1}" y2="{grid_bottom:.1}" stroke="{GRID}"/>"#,
            x_of(t)
        );
    }

    let any_closed = (0..s.factories.len()).any(|f| v.hours(f).iter().any(|&h| h <= 0.0));

    // Legend.
    y += 8.0;
    let mut legend = String::new();
    let _ = writeln!(legend, r#"<g class="legend" font-size="11">"#);
    let mut lx = 12.0;
    let item = |legend: &mut String, mark: String, label: &str, lx: &mut f64, y: f64| {
        let _ = writeln!(
            legend,
            r#"{mark}<text x="{:.1}" y="{:.1}" fill="{INK}">{}</text>"#,
            *lx + 16.0,
            y + 4.0,
            esc(label)
        );
        *lx += 16.0 + text_width(label, 11.0) + 18.0;
    };
    let shown =
        |sku: &str| plan.runs.iter().any(|r| r.sku == sku) || late.iter().any(|l| l.sku == sku);
    for (p, prod) in s.products.iter().enumerate() {
        if !shown(&prod.sku) && v.due(p).iter().all(|&d| d == 0) {
            continue;
        }
        let c = colour(SKU_COLOURS, p);
        let mark = format!(
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="10" rx="2" fill="{c}"/>"#,
            y - 5.0
        );
        item(
            &mut legend,
            mark,
            &format!("run of {}", prod.sku),
            &mut lx,
            y,
        );
    }
    let mark = format!(
        r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="10" fill="url(#hatch)" stroke="{GRID}"/>"#,
        y - 5.0
    );
    if any_closed {
        item(&mut legend, mark, "closed", &mut lx, y);
    }
    let mark = format!(
        r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="white" stroke="{LATE}" stroke-width="2" transform="rotate(45 {:.1} {y:.1})"/>"#,
        lx + 2.0,
        y - 4.0,
        lx + 6.0
    );
    if !late.is_empty() {
        item(&mut legend, mark, "late units", &mut lx, y);
    }
    let y2 = y + 20.0;
    let mut lx2 = 12.0;
    let mark = format!(
        r#"<circle cx="{:.1}" cy="{y2:.1}" r="3" fill="white" stroke="{INK}" stroke-width="1.5"/>"#,
        lx2 + 6.0
    );
    item(&mut legend, mark, "order placed", &mut lx2, y2);
    let mark = format!(
        r#"<path d="M{:.1},{:.1} L{:.1},{y2:.1} L{:.1},{:.1} Z" fill="{INK}"/>"#,
        lx2 + 1.0,
        y2 - 5.0,
        lx2 + 11.0,
        lx2 + 1.0,
        y2 + 5.0
    );
    item(
        &mut legend,
        mark,
        "arrives (start of the period; colour: material)",
        &mut lx2,
        y2,
    );
    let mark = format!(
        r##"<rect x="{lx2:.1}" y="{:.1}" width="12" height="4" fill="#888"/>"##,
        y2 - 2.0
    );
    item(
        &mut legend,
        mark,
        "hours used (red: all of them)",
        &mut lx2,
        y2,
    );
    legend.push_str("</g>\n");
    let h = y2 + 22.0;

    let status = match plan.status {
        PlanStatus::Optimal => "optimal".to_string(),
        PlanStatus::Feasible if plan.gap.is_finite() => {
            format!("feasible, gap {:.2}%", plan.gap * 100.0)
        }
        PlanStatus::Feasible => "feasible".to_string(),
        PlanStatus::Infeasible => "INFEASIBLE: best partial plan".to_string(),
    };
    let late_units: i64 = late.iter().map(|l| l.units).sum();
    let short_units: i64 = plan.shortfalls.iter().map(|sf| sf.short_by).sum();
    let late_text = if late_units == 0 && short_units > 0 {
        // A shortfall is worse than late: do not call it "nothing late".
        format!("{short_units} units not made")
    } else if late_units == 0 {
        "nothing late".to_string()
    } else if plan.cost_breakdown.lateness > 0 {
        format!(
            "{late_units} unit-{name}s late ({})",
            money(plan.cost_breakdown.lateness, &plan.currency)
        )
    } else {
        // An infeasible plan's late units are its shortfall, not a cost it chose.
        format!("{late_units} unit-{name}s late")
    };
    let title = format!(
        "Schedule for {}: {n} {name}{}{}",
        s.name,
        if n == 1 { "" } else { "s" },
        if name == "period" && days > 0 {
            format!(" of {days} days")
        } else {
            String::new()
        }
    );
    let subtitle = format!(
        "total {} ({status}) · {late_text} · {} · {}",
        money(plan.total_cost, &plan.currency),
        count(plan.runs.len(), "run"),
        count(plan.purchases.len(), "purchase order")
    );

    // Wide enough for the grid, the purchase labels, the legend and the title.
    let w = [
        grid_w,
        lanes.iter().copied().fold(0.0, f64::max) + RIGHT,
        lx + RIGHT,
        lx2 + RIGHT,
        12.0 + text_width(&title, 18.0) + RIGHT,
        12.0 + text_width(&subtitle, FONT) + RIGHT,
    ]
    .into_iter()
    .fold(0.0, f64::max)
    .ceil();
    // The products short, wrapped to that width beneath the legend: on one line after
    // the subtitle they set the picture's width (1,749 px for three products, the
    // schedule in its left half).
    let items: Vec<String> = (plan.shortfalls.iter())
        .map(|sf| match sf.period {
            Some(t) => format!("{} short by {} from {name} {t}", sf.sku, sf.short_by),
            None => format!("{} short by {}", sf.sku, sf.short_by),
        })
        .collect();
    let mut short_lines: Vec<String> = Vec::new();
    for item in items {
        match short_lines.last_mut() {
            Some(line) if 12.0 + text_width(&format!("{line} · {item}"), FONT) + RIGHT <= w => {
                let _ = write!(line, " · {item}");
            }
            _ => short_lines.push(if short_lines.is_empty() {
                format!("Short: {item}")
            } else {
                item
            }),
        }
    }
    let mut shortfalls = String::new();
    let mut h = h;
    for line in &short_lines {
        let _ = writeln!(
            shortfalls,
            r#"<text class="shortfalls" x="12" y="{:.1}" fill="{LATE}">{}</text>"#,
            h - 4.0,
            esc(&fit(line, w - 12.0 - RIGHT, FONT))
        );
        h += 18.0;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="{FONT}">"#
    );
    let _ = writeln!(
        out,
        r#"<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="{GRID}" fill-opacity="0.45"/><line x1="0" y1="0" x2="0" y2="8" stroke="{MUTED}" stroke-width="1.5" stroke-opacity="0.5"/></pattern></defs>"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{w:.0}" height="{h:.0}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text class="title" x="12" y="28" font-size="18" font-weight="bold" fill="{INK}">{}</text>"#,
        esc(&title)
    );
    let _ = writeln!(
        out,
        r#"<text class="subtitle" x="12" y="50" fill="{MUTED}">{}</text>"#,
        esc(&subtitle)
    );
    out.push_str(&bg);
    out.push_str(&lines);
    out.push_str(&body);
    out.push_str(&legend);
    out.push_str(&shortfalls);
    out.push_str("</svg>\n");
    out
}
