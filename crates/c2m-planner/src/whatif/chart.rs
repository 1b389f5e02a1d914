//! The sweep drawn as a standalone SVG document (text; the caller writes it).
//!
//! Structure, which tests rely on: one `<polyline class="curve">`, one
//! `<circle class="point">` per point, and for each price break in range one
//! `<line class="break">` with a `<text class="break-label">`. A point
//! where demand cannot be met has no cost: it is drawn as one
//! `<path class="infeasible">` cross on the x axis instead of a circle, and
//! the curve stops there (one `<polyline class="curve">` per run of
//! feasible points).

use std::fmt::Write;

use super::sweep::Sweep;
use crate::report::svg_escape as esc;

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// "Nice" tick values covering `[lo, hi]`, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-9);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// The chart: cost per unit (major units) against the swept value, with
/// the price breaks as dashed vertical lines.
pub fn render_svg(s: &Sweep) -> String {
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| p.cost_per_unit.is_finite())
        .map(|p| (p.x, p.cost_per_unit / 100.0))
        .collect();
    let infeasible: Vec<f64> = s
        .points
        .iter()
        .filter(|p| !p.cost_per_unit.is_finite())
        .map(|p| p.x)
        .collect();
    let is_price = s.label.starts_with("price");
    let (mut x0, mut x1) = s
        .points
        .iter()
        .map(|p| (p.x, 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(0.01);
    y0 = (y0 - pad).max(0.0);
    y1 += pad;
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">cost per unit of {} against {}</text>"#,
        W / 2.0,
        esc(&s.sku),
        esc(&s.label)
    );
    // Axes and grid.
    let _ = writeln!(
        out,
        r##"<g class="axes" stroke="#333"><line x1="{LEFT}" y1="{}" x2="{}" y2="{}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/></g>"##,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );
    for t in ticks(x0, x1, 8) {
        let label = if is_price {
            format!("{:+.0}%", t * 100.0)
        } else {
            format!("{t}")
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
    for t in ticks(y0, y1, 6) {
        let _ = writeln!(
            out,
            r##"<g class="ytick"><line x1="{LEFT}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text></g>"##,
            py(t),
            W - RIGHT,
            LEFT - 6.0,
            py(t) + 4.0,
            t
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0,
        esc(&s.label)
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">cost per unit ({1})</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        esc(&s.currency)
    );
    // Price breaks.
    for b in &s.breaks {
        let x = px(b.volume as f64);
        let _ = writeln!(
            out,
            r##"<line class="break" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#c33" stroke-dasharray="4 3"/>"##,
            H - BOTTOM
        );
        let _ = writeln!(
            out,
            r##"<text class="break-label" x="{:.1}" y="{:.1}" fill="#c33" font-size="10" transform="rotate(-90 {:.1} {:.1})">{}/{} &#8805; {} @ {:.2}</text>"##,
            x - 3.0,
            H - BOTTOM - 4.0,
            x - 3.0,
            H - BOTTOM - 4.0,
            esc(&b.supplier),
            esc(&b.material),
            b.min_qty,
            b.unit_price / 100.0
        );
    }
    // The curve, broken where points are infeasible, and its points.
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    for p in &s.points {
        if p.cost_per_unit.is_finite() {
            let c = format!("{:.1},{:.1}", px(p.x), py(p.cost_per_unit / 100.0));
            runs.last_mut().expect("never empty").push(c);
        } else if !runs.last().expect("never empty").is_empty() {
            runs.push(Vec::new());
        }
    }
    for coords in runs.iter().filter(|r| !r.is_empty()) {
        let _ = writeln!(
            out,
            r##"<polyline class="curve" fill="none" stroke="#1f5fa8" stroke-width="2" points="{}"/>"##,
            coords.join(" ")
        );
    }
    for &(x, y) in &pts {
        let _ = writeln!(
            out,
            r##"<circle class="point" cx="{:.1}" cy="{:.1}" r="3" fill="#1f5fa8"><title>{x}: {y:.2}</title></circle>"##,
            px(x),
            py(y)
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
    if !infeasible.is_empty() {
        let _ = writeln!(
            out,
            r##"<text class="legend" x="{}" y="{}" text-anchor="end" fill="#c33">&#215; infeasible: demand cannot be met</text>"##,
            W - RIGHT,
            TOP - 8.0
        );
    }
    out.push_str("</svg>\n");
    out
}
