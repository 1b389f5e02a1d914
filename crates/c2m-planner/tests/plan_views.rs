//! What people see of a version 2 plan: the timeline report
//! (`report::render_text`) and the schedule drawn as SVG
//! (`report::schedule_svg`). The hand-made scenario's plan is worked out
//! in its comment; the expected rows come from that, not from the program.

mod common;

use std::time::Duration;

use c2m_planner::report::{render_text, schedule_svg};
use c2m_planner::{Plan, SolveOptions, ValidatedScenario};

const WEEKS: &str = include_str!("../../../examples/scenarios/kettle-weeks.toml");
const KETTLE: &str = include_str!("../../../examples/scenarios/kettle-c2m.toml");

/// Worked out by hand in the file's comment: all 20 units of `p` in week 3
/// from one `slow` order placed in week 1 and arriving in week 3, 10 late at
/// the end of weeks 1 and 2 (no plan makes `p` on time), box stock 5, 5, 25,
/// 5: 24.40 CNY.
const TINY: &str = include_str!("data/tiny-weeks.toml");

fn solve(toml: &str, secs: u64) -> (ValidatedScenario, Plan) {
    let v = common::scenario(toml);
    let opts = SolveOptions {
        time_limit: Duration::from_secs(secs),
        ..SolveOptions::default()
    };
    let plan = common::solve_with(&v, &opts);
    (v, plan)
}

/// The report's lines with runs of spaces collapsed, so a test can name a
/// row without depending on column widths.
fn rows(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn has_row(rows: &[String], row: &str) -> bool {
    rows.iter().any(|r| r == row)
}

/// Scenario money is in the currency's minor units: the same hand-made plan in yen (no
/// minor unit) reads 2,440 JPY, not 24.40, and a unit price of 10 reads 10.
#[test]
fn amounts_read_in_the_currency_s_own_digits() {
    let yen = TINY.replace("currency = \"CNY\"", "currency = \"JPY\"");
    assert_ne!(yen, TINY, "the scenario names its currency");
    let (v, plan) = solve(&yen, 30);
    let text = render_text(&v, &plan);
    let r = rows(&text);
    for row in [
        "Total cost: 2,440 JPY",
        "lateness 200 JPY",
        "holding 40 JPY",
        "1 3 slow m 20 kg - 10 200 JPY",
    ] {
        assert!(has_row(&r, row), "no row `{row}` in:\n{text}");
    }
}

#[test]
fn the_timeline_shows_the_hand_made_plan_period_by_period() {
    let (v, plan) = solve(TINY, 30);
    let text = render_text(&v, &plan);
    let r = rows(&text);
    let expect = [
        "Plan for `tiny-weeks`: 4 periods of 7 days (period 0 starts now)",
        "Status: optimal (proven)",
        "Total cost: 24.40 CNY",
        "lateness 2.00 CNY",
        "holding 0.40 CNY",
        // Production: periods across, hours beneath, closed weeks named.
        "factory sku 0 1 2 3 total",
        "f p - - - 20 20",
        "hours closed 0/10 closed 20/20 20",
        // Dues against what is made and what is late.
        "sku 0 1 2 3 total complete in",
        "p due - 10 - 10 20 3",
        "made - - - 20 20",
        "late - 10 10 - 20",
        // Purchase orders by order period, with the arrival period and
        // the unit price in major units like the amount.
        "order arrives supplier material quantity unit packs unit price amount",
        "1 3 slow m 20 kg - 0.10 2.00 CNY",
        // Stock per material per period.
        "material unit start 0 1 2 3",
        "m kg 0 0 0 0 0",
        "box pcs 5 5 5 25 5",
    ];
    for row in expect {
        assert!(has_row(&r, row), "no row `{row}` in:\n{text}");
    }
    assert!(
        text.contains("Late: 20 unit-periods"),
        "late units in:\n{text}"
    );
    // The explanations: the binding week, the just-in-time order, the
    // lateness against the alternative.
    assert!(
        text.contains("capacity binds: `f` uses all its hours in period 3 (20 h)"),
        "{text}"
    );
    assert!(
        has_row(&r, "m slow 1 3 20 20 kg"),
        "just in time in:\n{text}"
    );
    assert!(
        text.contains(
            "lateness: `p` is late 20 unit-periods, costing 2.00 CNY; no plan makes it on time"
        ),
        "{text}"
    );
    assert!(
        text.contains("consolidation: material costs 2.40 CNY"),
        "{text}"
    );
}

#[test]
fn the_timeline_of_kettle_weeks_has_every_grid() {
    let (v, plan) = solve(WEEKS, 5);
    let text = render_text(&v, &plan);
    let r = rows(&text);
    assert!(has_row(&r, "factory sku 0 1 2 3 4 5 6 7 total"), "{text}");
    // Cixi is closed in week 4, whatever the plan.
    let cixi_hours = r
        .iter()
        .find(|l| l.starts_with("hours ") && l.split(' ').nth(5) == Some("closed"))
        .unwrap_or_else(|| panic!("no closed week 4 in:\n{text}"));
    assert_eq!(cixi_hours.split(' ').count(), 10, "{cixi_hours}");
    for m in ["steel-304", "element-1800w", "box-small"] {
        let row = r
            .iter()
            .find(|l| l.starts_with(&format!("{m} ")))
            .unwrap_or_else(|| panic!("no stock row for {m}"));
        // id, unit, start, then 8 periods.
        assert_eq!(row.split(' ').count(), 11, "{row}");
    }
    // Every purchase is listed with its order and arrival period.
    for p in &plan.purchases {
        let row = format!(
            "{} {} {} {}",
            p.period.unwrap(),
            p.arrives.unwrap(),
            p.supplier,
            p.material
        );
        assert!(
            r.iter().any(|l| l.starts_with(&row)),
            "no `{row}` in:\n{text}"
        );
    }
    assert!(text.contains("lateness"), "{text}");
    assert!(text.contains("Why this plan:"), "{text}");
}

#[test]
fn version_1_reports_keep_their_five_parts() {
    let (v, plan) = solve(KETTLE, 30);
    let text = render_text(&v, &plan);
    assert!(!text.contains("lateness"), "{text}");
    assert!(
        text.contains("Runs:") && text.contains("Leftover stock:"),
        "{text}"
    );
}

/// Elements with a class, in document order.
fn by_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .collect()
}

/// Checks the schedule's structure against the plan: a row per factory, a
/// bar per run (inside its factory's row), a closed mark per factory period
/// without hours, an arrival per purchase, a stock curve per material.
fn check_svg(v: &ValidatedScenario, plan: &Plan, svg: &str) {
    let doc = roxmltree::Document::parse(svg).expect("the schedule is well-formed XML");
    let s = v.scenario();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let factories = by_class(&doc, "factory");
    let ids: Vec<&str> = factories
        .iter()
        .map(|g| g.attribute("data-factory").unwrap())
        .collect();
    let expected: Vec<&str> = s.factories.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, expected, "one row per factory");
    for (f, g) in factories.iter().enumerate() {
        let mut bars: Vec<(String, usize, i64)> = g
            .descendants()
            .filter(|n| n.attribute("class") == Some("run"))
            .map(|n| {
                (
                    n.attribute("data-sku").unwrap().to_string(),
                    n.attribute("data-period").unwrap().parse().unwrap(),
                    n.attribute("data-quantity").unwrap().parse().unwrap(),
                )
            })
            .collect();
        let mut runs: Vec<(String, usize, i64)> = plan
            .runs
            .iter()
            .filter(|r| r.factory == s.factories[f].id)
            .map(|r| (r.sku.clone(), r.period.unwrap_or(0), r.quantity))
            .collect();
        bars.sort();
        runs.sort();
        assert_eq!(bars, runs, "the bars of {}", s.factories[f].id);
        let closed = g
            .descendants()
            .filter(|n| n.attribute("class") == Some("closed"))
            .count();
        let expected = v.hours(f).iter().filter(|&&h| h <= 0.0).count();
        assert_eq!(closed, expected, "closed periods of {}", s.factories[f].id);
    }
    assert_eq!(by_class(&doc, "run").len(), plan.runs.len());
    let mut arrivals: Vec<(String, String, usize, usize)> = by_class(&doc, "arrival")
        .iter()
        .map(|n| {
            (
                n.attribute("data-supplier").unwrap().to_string(),
                n.attribute("data-material").unwrap().to_string(),
                n.attribute("data-period").unwrap().parse().unwrap(),
                n.attribute("data-arrives").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut purchases: Vec<(String, String, usize, usize)> = plan
        .purchases
        .iter()
        .map(|p| {
            (
                p.supplier.clone(),
                p.material.clone(),
                p.period.unwrap_or(0),
                p.arrives.unwrap_or(0),
            )
        })
        .collect();
    arrivals.sort();
    purchases.sort();
    assert_eq!(arrivals, purchases, "one arrival mark per purchase");
    let curves: Vec<&str> = by_class(&doc, "stock")
        .iter()
        .map(|n| n.attribute("data-material").unwrap())
        .collect();
    let materials: Vec<&str> = s.materials.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(curves, materials, "one stock curve per material");
    for c in by_class(&doc, "stock") {
        // The on-hand stock, then one point per period.
        let points = c.attribute("points").unwrap().split(' ').count();
        assert_eq!(points, v.periods() + 1);
    }
    let title = by_class(&doc, "title");
    assert_eq!(title.len(), 1);
    assert!(title[0].text().unwrap().contains(&s.name));
    assert_eq!(by_class(&doc, "legend").len(), 1);
}

#[test]
fn the_schedule_of_the_hand_made_plan() {
    let (v, plan) = solve(TINY, 30);
    let svg = schedule_svg(&v, &plan);
    check_svg(&v, &plan, &svg);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    // One run of 20 in week 3, weeks 0 and 2 closed, one order placed in
    // week 1 arriving in week 3, late units in weeks 1 and 2.
    let run = &by_class(&doc, "run")[0];
    assert_eq!(run.attribute("data-period"), Some("3"));
    assert_eq!(run.attribute("data-quantity"), Some("20"));
    assert_eq!(by_class(&doc, "closed").len(), 2);
    assert_eq!(by_class(&doc, "late").len(), 2);
    assert_eq!(by_class(&doc, "due").len(), 2);
    let subtitle = by_class(&doc, "subtitle")[0].text().unwrap().to_string();
    assert!(subtitle.contains("20 unit-weeks late"), "{subtitle}");
}

#[test]
fn the_schedule_of_kettle_weeks() {
    let (v, plan) = solve(WEEKS, 5);
    let svg = schedule_svg(&v, &plan);
    check_svg(&v, &plan, &svg);
    assert!(svg.contains(">week 7<"), "periods are named weeks");
}

#[test]
fn a_version_1_plan_is_one_period() {
    let (v, plan) = solve(KETTLE, 30);
    let svg = schedule_svg(&v, &plan);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(
        by_class(&doc, "factory").len(),
        v.scenario().factories.len()
    );
    assert_eq!(by_class(&doc, "run").len(), plan.runs.len());
    assert_eq!(by_class(&doc, "arrival").len(), plan.purchases.len());
    assert!(
        by_class(&doc, "stock").is_empty(),
        "no stock per period in v1"
    );
}
