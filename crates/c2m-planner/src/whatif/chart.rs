//! The sweep drawn as a standalone SVG document (text; the caller writes it).
//!
//! Structure, which tests rely on: one `<polyline class="curve">`, one
//! `<circle class="point">` per point, and for each price break in range one
//! `<line class="break">` with a `<text class="break-label">`. A point
//! where demand cannot be met has no cost: it is drawn as one
//! `<path class="infeasible">` cross on the x axis instead of a circle, and
//! the curve stops there (one `<polyline class="curve">` per run of
//! feasible points).
//!
//! A lead-time sweep draws the total cost rather than one sku's cost per
//! unit (a slower supplier moves every product). A version 2 sweep adds
//! lateness as a second series on its own axis at the right: one
//! `<polyline class="lateness">` per run of feasible points and one `<rect
//! class="lateness-point">` per feasible point, with a legend naming both.
//!
//! A point whose plan is not proven optimal (status `feasible`: the best
//! found within the time limit) is a hollow circle, still `class="point"`,
//! with `data-proven="false"` and its gap in its title, and one `<text
//! class="unproven-note">` says what hollow means.
//!
//! A demand sweep's point at 0 units has a plan but no cost per unit (there
//! is no unit to put it on): it is not drawn, and the curve starts after it.
//!
//! A point with no plan (status `no_plan`: the planner found none) has no
//! cost either, and nothing is known of it: one grey `<text class="no-plan">`
//! question mark standing on the x axis, with the reason in its title, and a legend
//! line saying what it means; the curve stops there too.

use std::fmt::Write;

use super::sweep::{PointStatus, Sweep, SweepPoint, Swept};
use crate::report::svg_escape as esc;
use crate::report::{to_major, unit_price};

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
/// The right margin; a second axis needs room for its labels.
const RIGHT: f64 = 30.0;
const RIGHT_AXIS: f64 = 80.0;
const COST: &str = "#1f5fa8";
const LATENESS: &str = "#d9822b";
const TOP: f64 = 50.0;
/// About how long one character of a break label is at its font size (10).
const LABEL_CHAR: f64 = 5.6;
/// Labels whose lines are closer than this (px) would overlap side by side: a label's
/// text is about 10 px across, and its halo 1.5 px more on each side (at 11, the labels of
/// lines 10 px apart touched, QA 16).
const LABEL_GAP: f64 = 14.0;
const BOTTOM: f64 = 60.0;

/// "Nice" tick values covering `[lo, hi]`, about `n` of them, each with its label: as
/// many decimals as the step needs and no more (`86,500`, `0.25`), never the float noise
/// of a sum (`86684.03500000002`). With `whole`, the step is at least 1: an axis of days
/// or units has no tick at 6.25 days.
fn ticks(lo: f64, hi: f64, n: usize, whole: bool) -> Vec<(f64, String)> {
    let span = (hi - lo).abs().max(1e-9);
    let raw = span / n as f64;
    let raw = if whole { raw.max(1.0) } else { raw };
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let mut out = Vec::new();
    for k in first.. {
        // Multiples of the step, not a running sum: no drift.
        let t = k as f64 * step;
        if t > hi + step * 1e-9 {
            break;
        }
        let t = if t.abs() < step * 1e-9 { 0.0 } else { t };
        out.push((t, format!("{t:.decimals$}")));
    }
    out
}

/// The primary series at a point, in major units: total cost for a
/// lead-time sweep, the sku's cost per unit otherwise; `None` where the
/// point is infeasible.
fn primary(s: &Sweep, p: &SweepPoint) -> Option<f64> {
    match s.swept {
        Swept::LeadTime => p.total_cost.map(|t| to_major(t as f64, &s.currency)),
        _ => p
            .cost_per_unit
            .is_finite()
            .then_some(to_major(p.cost_per_unit, &s.currency)),
    }
}

/// Lower and upper bound of `values` with a little room, starting at 0
/// when `from_zero`.
fn span(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if from_zero {
        lo = 0.0;
        if hi <= 0.0 {
            // All zero (no lateness anywhere): an axis of whole units, not of hundredths.
            return (0.0, 1.0);
        }
    }
    // A flat series still gets an axis a reader can read: room of 2 % of its level.
    let pad = ((hi - lo) * 0.08)
        .max(hi.abs().max(lo.abs()) * 0.02)
        .max(0.01);
    ((lo - if from_zero { 0.0 } else { pad }).max(0.0), hi + pad)
}

/// The chart: cost per unit (major units) against the swept value, with
/// the price breaks as dashed vertical lines; see the module docs for a
/// lead-time sweep and a version 2 sweep's lateness.
pub fn render_svg(s: &Sweep) -> String {
    let timed = s.is_timed();
    let right = if timed { RIGHT_AXIS } else { RIGHT };
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter_map(|p| primary(s, p).map(|y| (p.x, y)))
        .collect();
    let late_pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| primary(s, p).is_some())
        .filter_map(|p| p.lateness.map(|l| (p.x, to_major(l as f64, &s.currency))))
        .collect();
    let infeasible: Vec<f64> = s
        .points
        .iter()
        .filter(|p| p.status == PointStatus::Infeasible)
        .map(|p| p.x)
        .collect();
    let no_plan: Vec<&SweepPoint> = s
        .points
        .iter()
        .filter(|p| p.status == PointStatus::NoPlan)
        .collect();
    let is_price = s.swept == Swept::Price;
    let (mut x0, mut x1) = s
        .points
        .iter()
        .map(|p| (p.x, 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    // Demand and lead time are swept in whole units and days.
    let whole = !is_price;
    if x1 - x0 < 1e-9 {
        // One value: it stands in the middle of an axis one step to each side (a day or
        // a unit; five points of price), not at the left edge of an axis of fractions.
        // Days and units are never negative: a lone 0 starts its axis.
        (x0, x1) = if whole {
            let lo = (x0 - 1.0).max(0.0);
            (lo, lo + 2.0)
        } else {
            (x0 - 0.05, x1 + 0.05)
        };
    }
    let (y0, y1) = span(pts.iter().map(|p| p.1), false);
    let (l0, l1) = span(late_pts.iter().map(|p| p.1), true);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - right);
    let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let pl = |y: f64| H - BOTTOM - (y - l0) / (l1 - l0) * (H - TOP - BOTTOM);
    let y_label = match s.swept {
        Swept::LeadTime => format!("total cost ({})", s.currency),
        _ => format!("cost per unit ({})", s.currency),
    };
    let title = match s.swept {
        Swept::LeadTime => format!("total cost and lateness against {}", s.label),
        _ if timed => format!(
            "cost per unit of {} and lateness against {}",
            s.sku, s.label
        ),
        _ => format!("cost per unit of {} against {}", s.sku, s.label),
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(&title)
    );
    // Axes and grid.
    let _ = writeln!(
        out,
        r##"<g class="axes" stroke="#333"><line x1="{LEFT}" y1="{}" x2="{}" y2="{}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/></g>"##,
        H - BOTTOM,
        W - right,
        H - BOTTOM,
        H - BOTTOM
    );
    for (t, text) in ticks(x0, x1, 8, whole) {
        let label = if is_price {
            format!("{:+.0}%", t * 100.0)
        } else {
            text
        };
        let _ = writeln!(
            out,
            r##"<g class="xtick"><line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text></g>"##,
            px(t),
            TOP,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            esc(&label)
        );
    }
    for (t, text) in ticks(y0, y1, 6, false) {
        let _ = writeln!(
            out,
            r##"<g class="ytick"><line x1="{LEFT}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text></g>"##,
            py(t),
            W - right,
            LEFT - 6.0,
            py(t) + 4.0,
            text
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (LEFT + W - right) / 2.0,
        H - 16.0,
        esc(&s.label)
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">{1}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        esc(&y_label)
    );
    if timed {
        let xr = W - right;
        let _ = writeln!(
            out,
            r#"<line class="axes" x1="{xr}" y1="{TOP}" x2="{xr}" y2="{}" stroke="{LATENESS}"/>"#,
            H - BOTTOM
        );
        for (t, text) in ticks(l0, l1, 6, false) {
            let _ = writeln!(
                out,
                r#"<g class="ltick"><line x1="{xr}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="{LATENESS}"/><text x="{2}" y="{3:.1}" fill="{LATENESS}">{4}</text></g>"#,
                pl(t),
                xr + 4.0,
                xr + 7.0,
                pl(t) + 4.0,
                text
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{0}" y="{1}" text-anchor="middle" fill="{LATENESS}" transform="rotate(90 {0} {1})">lateness ({2})</text>"#,
            W - 14.0,
            (TOP + H - BOTTOM) / 2.0,
            esc(&s.currency)
        );
    }
    // Price breaks. Each label runs up its line from the axis; a label whose line is too
    // close to an earlier one to stand beside it starts above that one instead (and on
    // the line's other side when the column is full), so close breaks stay readable. The
    // lines go under the curve, the labels over it (after the points), each with a white
    // halo, so the curve cannot cut a label's letters (it did when they went first).
    let mut placed: Vec<(f64, f64)> = Vec::new(); // (label x, top of its text)
    let mut labels = String::new();
    for b in &s.breaks {
        let x = px(b.volume as f64);
        let _ = writeln!(
            out,
            r##"<line class="break" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#c33" stroke-dasharray="4 3"/>"##,
            H - BOTTOM
        );
        let text = format!(
            "{}/{} &#8805; {} @ {}",
            esc(&b.supplier),
            esc(&b.material),
            b.min_qty,
            unit_price(b.unit_price, &s.currency)
        );
        let len = format!(
            "{}/{} = {} @ {}",
            b.supplier,
            b.material,
            b.min_qty,
            unit_price(b.unit_price, &s.currency)
        )
        .chars()
        .count() as f64
            * LABEL_CHAR;
        let column = |lx: f64| -> f64 {
            placed
                .iter()
                .filter(|(px, _)| (px - lx).abs() < LABEL_GAP)
                .fold(H - BOTTOM - 4.0, |y, (_, top)| y.min(top - 8.0))
        };
        let (mut lx, mut y) = (x - 3.0, column(x - 3.0));
        if y - len < TOP {
            lx = x + 11.0;
            y = column(lx);
        }
        placed.push((lx, y - len));
        let _ = writeln!(
            labels,
            r##"<text class="break-label" x="{lx:.1}" y="{y:.1}" fill="#c33" font-size="10" stroke="white" stroke-width="3" paint-order="stroke" transform="rotate(-90 {lx:.1} {y:.1})">{text}</text>"##,
        );
    }
    // The curves, broken where points are infeasible, and their points.
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    let mut late_runs: Vec<Vec<String>> = vec![Vec::new()];
    for p in &s.points {
        if let Some(y) = primary(s, p) {
            let c = format!("{:.1},{:.1}", px(p.x), py(y));
            runs.last_mut().expect("never empty").push(c);
            if let Some(l) = p.lateness {
                let c = format!("{:.1},{:.1}", px(p.x), pl(to_major(l as f64, &s.currency)));
                late_runs.last_mut().expect("never empty").push(c);
            }
        } else {
            if !runs.last().expect("never empty").is_empty() {
                runs.push(Vec::new());
            }
            if !late_runs.last().expect("never empty").is_empty() {
                late_runs.push(Vec::new());
            }
        }
    }
    for coords in late_runs.iter().filter(|r| !r.is_empty()) {
        let _ = writeln!(
            out,
            r#"<polyline class="lateness" fill="none" stroke="{LATENESS}" stroke-width="2" stroke-dasharray="6 3" points="{}"/>"#,
            coords.join(" ")
        );
    }
    for &(x, l) in &late_pts {
        let _ = writeln!(
            out,
            r#"<rect class="lateness-point" x="{:.1}" y="{:.1}" width="6" height="6" fill="{LATENESS}"><title>{x}: lateness {l:.2}</title></rect>"#,
            px(x) - 3.0,
            pl(l) - 3.0
        );
    }
    for coords in runs.iter().filter(|r| !r.is_empty()) {
        let _ = writeln!(
            out,
            r#"<polyline class="curve" fill="none" stroke="{COST}" stroke-width="2" points="{}"/>"#,
            coords.join(" ")
        );
    }
    for p in &s.points {
        let Some(y) = primary(s, p) else { continue };
        let x = p.x;
        let from = p
            .plan_from
            .map_or(String::new(), |d| format!(", plan of {d} days"));
        if p.status == PointStatus::Feasible {
            let gap = p
                .gap
                .map_or("unknown".to_string(), |g| format!("{:.2}%", g * 100.0));
            let _ = writeln!(
                out,
                r#"<circle class="point" data-proven="false" cx="{:.1}" cy="{:.1}" r="3.5" fill="white" stroke="{COST}" stroke-width="1.5"><title>{x}: {y:.2} (not proven optimal, gap {gap}{from})</title></circle>"#,
                px(x),
                py(y)
            );
        } else {
            let _ = writeln!(
                out,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="3" fill="{COST}"><title>{x}: {y:.2}{from}</title></circle>"#,
                px(x),
                py(y)
            );
        }
    }
    out.push_str(&labels);
    if s.points.iter().any(|p| p.status == PointStatus::Feasible) {
        let _ = writeln!(
            out,
            r#"<text class="unproven-note" x="{LEFT}" y="{}" fill="{COST}">&#9675; not proven optimal within the time limit (the cost may be lower)</text>"#,
            TOP - 8.0
        );
    }
    let yb = H - BOTTOM;
    for &x in &infeasible {
        let cx = px(x);
        let _ = writeln!(
            out,
            r##"<path class="infeasible" d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="#c33" stroke-width="1.5"><title>{x}: infeasible</title></path>"##,
            cx - 4.0,
            yb - 4.0,
            cx + 4.0,
            yb + 4.0,
            cx - 4.0,
            yb + 4.0,
            cx + 4.0,
            yb - 4.0
        );
    }
    for p in &no_plan {
        let _ = writeln!(
            out,
            r##"<text class="no-plan" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#777" font-size="14" font-weight="bold">?<title>{}: no plan ({})</title></text>"##,
            px(p.x),
            yb - 3.0,
            p.x,
            esc(p.reason.as_deref().unwrap_or_default())
        );
    }
    if timed {
        let (lx, ly) = (LEFT + 12.0, TOP + 14.0);
        let _ = writeln!(
            out,
            r##"<g class="legend"><rect x="{:.1}" y="{:.1}" width="190" height="42" fill="white" fill-opacity="0.85" stroke="#ccc"/>"##,
            lx - 6.0,
            ly - 12.0
        );
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{COST}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(&y_label.replace(&format!(" ({})", s.currency), ""))
        );
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{LATENESS}" stroke-width="2" stroke-dasharray="6 3"/><text x="{2:.1}" y="{3:.1}">lateness (right axis)</text></g>"#,
            ly + 18.0,
            lx + 24.0,
            lx + 30.0,
            ly + 22.0
        );
    }
    // One legend line at the top right: what crosses and question marks mean.
    let mut marks = Vec::new();
    if !infeasible.is_empty() {
        let what = if timed {
            "the dues cannot be met"
        } else {
            "demand cannot be met"
        };
        marks.push(format!(
            r##"<tspan fill="#c33">&#215; infeasible: {what}</tspan>"##
        ));
    }
    if !no_plan.is_empty() {
        marks.push(
            r##"<tspan class="no-plan-legend" fill="#777">? no plan found: cost unknown</tspan>"##
                .to_string(),
        );
    }
    if !marks.is_empty() {
        let _ = writeln!(
            out,
            r##"<text class="legend" x="{}" y="{}" text-anchor="end">{}</text>"##,
            W - right,
            TOP - 8.0,
            marks.join("    ")
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_have_the_step_s_decimals_and_no_float_noise() {
        let (lo, hi) = span([86_684.03; 8].into_iter(), false);
        let t = ticks(lo, hi, 6, false);
        assert!(t.len() >= 3, "{t:?}");
        assert!(
            t.iter().all(|(_, s)| !s.contains('.')),
            "whole numbers: {t:?}"
        );
        assert!(t.iter().any(|(v, _)| *v < 86_684.03) && t.iter().any(|(v, _)| *v > 86_684.03));
        let t = ticks(0.0, 1.0, 5, false);
        let labels: Vec<&str> = t.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = ticks(0.1, 0.7, 6, false);
        assert!(t.iter().all(|(_, s)| s.len() <= 3), "{t:?}");
        assert_eq!(span([0.0, 0.0].into_iter(), true), (0.0, 1.0));
    }
}
