//! What-if: overlays, comparisons checked against plans solved directly,
//! threshold advice against a value worked out on paper, and the SVG chart.

use c2m_planner::whatif::advice::{advise, AdviceSpec};
use c2m_planner::whatif::overlay::{apply_all, apply_variant, Overlay};
use c2m_planner::whatif::sweep::{run_sweep, Quantity, SweepSpec};
use c2m_planner::whatif::{chart, compare, default_options, plan_scenario};
use c2m_planner::Scenario;

const KETTLE: &str = include_str!("../../../examples/scenarios/kettle-c2m.toml");
const KETTLE_OVERLAY: &str = include_str!("../../../examples/scenarios/kettle-what-if.toml");

fn kettle() -> Scenario {
    Scenario::from_toml_str(KETTLE).unwrap()
}

/// One product, one material, no stock, no holding cost:
/// cost(V) = 100 V + 10 000 (setup) + clay, where clay costs 50 below 200
/// units and 40 from 200 on (all units). Below 200 the planner buys
/// min(50 V, 40 x 200 = 8000): buying up to the break pays from V > 160.
const MUG: &str = r#"
name = "mug"
currency = "EUR"
[[products]]
sku = "mug"
demand = 100
bom = { clay = 1.0 }
[[materials]]
id = "clay"
unit = "kg"
on_hand = 0.0
[[factories]]
id = "f"
capacity_hours = 100000.0
[[factories.lines]]
sku = "mug"
unit_cost = 100.0
setup_cost = 10000.0
hours_per_unit = 0.01
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "clay"
breaks = [ { min_qty = 0.0, unit_price = 50.0 }, { min_qty = 200.0, unit_price = 40.0 } ]
"#;

#[test]
fn overlay_applies_set_scale_remove() {
    let ov = Overlay::from_toml_str(KETTLE_OVERLAY).unwrap();
    let all = apply_all(&kettle(), &ov).unwrap();
    assert_eq!(all.len(), ov.variants.len());
    let cheap = &all[0];
    let ningbo = cheap
        .suppliers
        .iter()
        .find(|s| s.id == "ningbo-steel")
        .unwrap();
    assert_eq!(ningbo.offers[0].breaks[1].unit_price, 1900.0);
    assert!(!all[1].suppliers.iter().any(|s| s.id == "wenzhou-pack"));
    assert_eq!(all[2].products[0].demand, 1440);
    let zs = all[3]
        .factories
        .iter()
        .find(|f| f.id == "zhongshan-2")
        .unwrap();
    assert_eq!(zs.lines.len(), 1);
}

fn err_of(overlay: &str) -> String {
    let ov = match Overlay::from_toml_str(overlay) {
        Ok(o) => o,
        Err(e) => return e.to_string(),
    };
    apply_variant(&kettle(), &ov.variants[0])
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_overlays_name_the_variant_and_the_field() {
    let e = err_of(
        r#"[[variants]]
name = "cheap-steel"
changes = [ { scale = "products.kettle-17-white.demand", by = 1.1 },
            { set = "suppliers.ningbo-stel.offers.steel-304.moq", value = 1.0 } ]"#,
    );
    assert!(e.contains(r#"variant "cheap-steel", change 2"#), "{e}");
    assert!(e.contains(r#"unknown supplier "ningbo-stel""#), "{e}");

    let e = err_of(
        r#"[[variants]]
name = "typo"
changes = [ { set = "factories.cixi-1.capacity_hrs", value = 1.0 } ]"#,
    );
    assert!(e.contains(r#"variant "typo", change 1"#), "{e}");
    assert!(e.contains("no field `capacity_hrs`"), "{e}");

    let e = err_of(
        r#"[[variants]]
name = "negative"
changes = [ { set = "factories.cixi-1.capacity_hours", value = -5.0 } ]"#,
    );
    assert!(e.contains(r#"variant "negative""#), "{e}");
    assert!(e.contains("factories[0].capacity_hours"), "{e}");

    // A field of the overlay itself that does not exist.
    let e = err_of(
        r#"[[variants]]
name = "x"
changes = [ { sett = "factories.cixi-1.capacity_hours", value = 1.0 } ]"#,
    );
    assert!(
        e.contains("variants[0].changes[0]") && e.contains("sett"),
        "{e}"
    );
}

#[test]
fn compare_matches_plans_solved_directly() {
    let base = kettle();
    let ov = Overlay::from_toml_str(
        r#"[[variants]]
name = "cheap-steel"
changes = [ { set = "suppliers.ningbo-steel.offers.steel-304.breaks[1].unit_price", value = 1900.0 } ]
[[variants]]
name = "no-dongguan"
changes = [ { remove = "suppliers.dongguan-pack" } ]"#,
    )
    .unwrap();
    let applied = apply_all(&base, &ov).unwrap();
    let names = ov.variants.iter().map(|v| v.name.clone());
    let variants: Vec<_> = names.zip(applied).collect();
    let opts = default_options();
    let c = compare::compare(&base, &variants, &opts).unwrap();

    // The same variants edited by hand and planned directly.
    let mut cheap = kettle();
    cheap.suppliers[0].offers[0].breaks[1].unit_price = 1900.0;
    let mut no_dg = kettle();
    no_dg.suppliers.retain(|s| s.id != "dongguan-pack");
    for (col, s) in c.columns.iter().zip([base, cheap, no_dg]) {
        let p = plan_scenario(&s, &opts).unwrap();
        assert_eq!(col.total_cost, p.total_cost, "{}", col.name);
        assert_eq!(col.cost_breakdown, p.cost_breakdown, "{}", col.name);
        assert_eq!(col.status, p.status.to_string());
        for (sku, v) in p.cost_per_unit.iter() {
            assert!((col.cost_per_unit[sku] - v).abs() < 1e-6);
        }
    }
    let text = compare::render_text(&c);
    assert!(text.contains("cheap-steel") && text.contains("per unit kettle-17-white"));
    let csv = compare::render_csv(&c);
    assert_eq!(csv.lines().count(), 4);
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[3], c.columns[0].total_cost.to_string());
    let json: serde_json::Value = serde_json::from_str(&compare::render_json(&c)).unwrap();
    assert_eq!(json["columns"][1]["total_cost"], c.columns[1].total_cost);
}

#[test]
fn advice_matches_the_paper() {
    // On paper, price 300, margin 49%: cost per unit must be <= 153.
    //  V <= 160: c = 100 + 10000/V + 50 > 150 + ... > 153 only while
    //            10000/V > 3, i.e. always for V <= 160;
    //  160 < V < 200 (buy 200 at 40): c = 100 + 18000/V <= 153 needs V >= 340: none;
    //  V >= 200: c = 140 + 10000/V <= 153 needs V >= 10000/13 = 769.2, so V = 770.
    // The ladder step at 200: c(199) = 100 + 18000/199 = 190.45, c(200) = 190.
    let base = Scenario::from_toml_str(MUG).unwrap();
    let spec = AdviceSpec {
        sku: "mug".into(),
        price: 300.0,
        deposit: 30.0,
        margin: 0.49,
        max: 1000,
        step: 50,
    };
    let a = advise(&base, &spec, &default_options(), &mut |_, _| {}).unwrap();
    let mv = a.minimum_viable.as_ref().unwrap();
    assert_eq!(mv.volume, 770);
    assert!((mv.cost_per_unit - (140.0 + 10000.0 / 770.0)).abs() < 1e-6);
    assert_eq!(a.below_minimum.as_ref().unwrap().volume, 769);
    assert_eq!(a.ladder.len(), 1);
    let step = &a.ladder[0];
    assert_eq!(step.mark.volume, 200);
    assert!((step.below.cost_per_unit - (100.0 + 18000.0 / 199.0)).abs() < 1e-6);
    assert!((step.at.cost_per_unit - 190.0).abs() < 1e-6);
    let text = c2m_planner::whatif::advice::render_text(&a);
    assert!(text.contains("minimum viable batch: 770 units"), "{text}");
}

#[test]
fn sweep_chart_parses_with_points_and_breaks() {
    let base = Scenario::from_toml_str(MUG).unwrap();
    let spec = SweepSpec {
        quantity: Quantity::Demand { sku: "mug".into() },
        from: 100.0,
        to: 1000.0,
        points: 50,
        sku: "mug".into(),
    };
    let mut calls = 0;
    let s = run_sweep(&base, &spec, &default_options(), &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, 50);
    assert_eq!(s.points.len(), 50);
    // Each point is the plan of the scenario with that demand.
    let mut at = base.clone();
    at.products[0].demand = s.points[7].x as i64;
    let p = plan_scenario(&at, &default_options()).unwrap();
    assert_eq!(p.total_cost, s.points[7].total_cost);
    check_svg(&chart::render_svg(&s), 50, 1);
}

fn check_svg(svg: &str, points: usize, breaks: usize) {
    let doc = roxmltree::Document::parse(svg).expect("the chart is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let class = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(c))
            .count()
    };
    assert_eq!(class("point"), points);
    assert_eq!(class("curve"), 1);
    assert_eq!(class("break"), breaks);
    let poly = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("curve"))
        .unwrap();
    assert_eq!(poly.attribute("points").unwrap().split(' ').count(), points);
}

/// The acceptance sweep: 50 points on the kettle scenario. About 5 minutes in a
/// debug build with microlp, so it runs on request:
/// `cargo test --release -p c2m-planner --test whatif -- --ignored`.
#[test]
#[ignore]
fn kettle_sweep_of_50_points() {
    let base = kettle();
    let spec = SweepSpec {
        quantity: Quantity::Demand {
            sku: "kettle-17-white".into(),
        },
        from: 100.0,
        to: 5000.0,
        points: 50,
        sku: "kettle-17-white".into(),
    };
    let s = run_sweep(&base, &spec, &default_options(), &mut |_, _| {}).unwrap();
    assert_eq!(s.points.len(), 50);
    let n = s.breaks.len();
    assert!(n > 0);
    check_svg(&chart::render_svg(&s), 50, n);
}
