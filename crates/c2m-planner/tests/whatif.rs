//! What-if: overlays, comparisons checked against plans solved directly,
//! threshold advice against a value worked out on paper, and the SVG chart.

use c2m_planner::whatif::advice::{advise, AdviceSpec};
use c2m_planner::whatif::overlay::{apply_all, apply_variant, Overlay};
use c2m_planner::whatif::sweep::{self, run_sweep, PointStatus, Quantity, SweepSpec};
use c2m_planner::whatif::{chart, compare, default_options, plan_scenario, scan_options};
use c2m_planner::{PlanStatus, Scenario};

const KETTLE: &str = include_str!("../../../examples/scenarios/kettle-c2m.toml");
const KETTLE_OVERLAY: &str = include_str!("../../../examples/scenarios/kettle-what-if.toml");

fn kettle() -> Scenario {
    Scenario::from_toml_str(KETTLE).unwrap()
}

/// One product, one material, no stock, no holding cost:
/// cost(V) = 100 V + 10 000 (setup) + clay, where clay costs 50 below 200
/// units and 40 from 200 on (all units). Below 200 the planner buys
/// min(50 V, 40 x 200 = 8000): buying up to the break pays from V > 160.
const MUG: &str = include_str!("data/mug.toml");

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
        assert_eq!(col.total_cost, Some(p.total_cost), "{}", col.name);
        assert_eq!(col.cost_breakdown, Some(p.cost_breakdown), "{}", col.name);
        assert_eq!(col.status, p.status.to_string());
        for (sku, v) in p.cost_per_unit.iter() {
            assert!((col.cost_per_unit[sku] - v).abs() < 1e-6);
        }
    }
    let text = compare::render_text(&c);
    assert!(text.contains("cheap-steel") && text.contains("per unit kettle-17-white"));
    // The changes read unit prices in major units like the table above them (the
    // steel's break at 19.80 CNY became 19.00; it read "@ 1980 -> ... @ 1900", in fen).
    let steel = c.columns[1]
        .changes
        .iter()
        .find(|ch| ch.starts_with("buy ningbo-steel/steel-304"))
        .expect("the cheaper steel changes its purchase");
    assert!(
        steel.contains("@ 19.80 -> ") && steel.ends_with("@ 19.00"),
        "{steel}"
    );
    // The table reads money in the currency's digits: two for CNY, none for yen.
    let total = c.columns[0].total_cost.unwrap();
    let grouped = |n: i64| {
        let d = n.to_string();
        d.chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                (i > 0 && (d.len() - i) % 3 == 0)
                    .then_some(',')
                    .into_iter()
                    .chain([ch])
            })
            .collect::<String>()
    };
    let cny = format!("{}.{:02}", grouped(total / 100), total % 100);
    assert!(text.contains(&cny), "no {cny} in:\n{text}");
    let mut yen = c.clone();
    yen.currency = "JPY".into();
    let text = compare::render_text(&yen);
    let jpy = grouped(total);
    assert!(
        text.contains(&format!(" {jpy} ")) || text.contains(&format!(" {jpy}\n")),
        "no {jpy} in:\n{text}"
    );
    let csv = compare::render_csv(&c);
    assert_eq!(csv.lines().count(), 4);
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[3], c.columns[0].total_cost.unwrap().to_string());
    let json: serde_json::Value = serde_json::from_str(&compare::render_json(&c)).unwrap();
    assert_eq!(
        json["columns"][1]["total_cost"],
        c.columns[1].total_cost.unwrap()
    );
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

/// Two products share material `m` (data/shared-material.toml). At 300 units
/// of `a` and 100 of `b` the plan buys 400 kg of `m` at 10 plus the order
/// cost 60 (4060), 600 kg of `ma` at 5 (3000, `a`'s alone) and 100 kg of `mb`
/// at 7 (700, `b`'s alone): 7760 for the plan. `a` consumes 300 of the 400 kg
/// of `m`, so its share is 3/4 x 4060 = 3045, and its material cash is
/// 3045 + 3000 = 6045; `mb` is not among its buys. Its cost per unit is
/// (300 x 100 + 6045) / 300 = 120.15. Deposits of 20 a unit collect 6000,
/// which do not cover 6045.
#[test]
fn advice_sets_deposits_against_the_skus_own_share_of_materials() {
    use c2m_planner::whatif::advice::{cost_at, render_text, Advice};
    let base = Scenario::from_toml_str(include_str!("data/shared-material.toml")).unwrap();
    let c = cost_at(&base, "a", 300, &default_options()).unwrap();
    assert_eq!(c.status, PlanStatus::Optimal);
    assert_eq!(c.plan_material_cash, 7760);
    assert_eq!(c.material_cash, 6045);
    assert!(
        (c.cost_per_unit - 120.15).abs() < 1e-9,
        "{}",
        c.cost_per_unit
    );
    assert_eq!(c.purchases.len(), 2, "{:?}", c.purchases);
    assert!(
        c.purchases
            .iter()
            .any(|p| p.starts_with("s/m: 400 @") && p.ends_with("(75.0% the sku's)")),
        "{:?}",
        c.purchases
    );
    assert!(
        c.purchases
            .iter()
            .any(|p| p.starts_with("t/ma: 600 @") && !p.contains('%')),
        "{:?}",
        c.purchases
    );
    assert!(!c.purchases.iter().any(|p| p.contains("mb")));
    let a = Advice {
        sku: "a".into(),
        currency: "EUR".into(),
        price: 200.0,
        deposit: 20.0,
        margin: 0.3,
        target_cost: 140.0,
        max: 300,
        step: 300,
        evaluated: 1,
        minimum_viable: Some(c),
        below_minimum: None,
        infeasible_from: None,
        ladder: Vec::new(),
        no_plan: Vec::new(),
        ladder_left_out: Vec::new(),
        not_reached: Vec::new(),
    };
    let text = render_text(&a);
    assert!(
        text.contains(
            "deposits collected 60.00 against the sku's material purchases 60.45 \
             (its share, by consumption, of the plan's 77.60) (not covered"
        ),
        "{text}"
    );
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
    // Every point against the cost worked out on paper (see MUG): the step
    // down comes where buying 200 kg at 40 beats buying V kg at 50 (V > 160).
    for p in &s.points {
        let v = p.x;
        let paper = if v >= 200.0 {
            140.0 + 10000.0 / v
        } else if v > 160.0 {
            100.0 + 18000.0 / v
        } else {
            150.0 + 10000.0 / v
        };
        assert_eq!(p.status, PointStatus::Optimal, "at {v}");
        assert!(
            (p.cost_per_unit - paper).abs() < 1e-6,
            "at {v}: {} vs {paper}",
            p.cost_per_unit
        );
        assert_eq!(p.total_cost, Some((paper * v).round() as i64), "at {v}");
    }
    // One break in range, at 200 units: 200 kg of clay at 1 kg per mug.
    assert_eq!(s.breaks.len(), 1);
    assert_eq!(s.breaks[0].volume, 200);
    // Each point is the plan of the scenario with that demand.
    let mut at = base.clone();
    at.products[0].demand = s.points[7].x as i64;
    let p = plan_scenario(&at, &default_options()).unwrap();
    assert_eq!(Some(p.total_cost), s.points[7].total_cost);
    check_svg(&chart::render_svg(&s), 50, 0, 1);
}

/// Parses the chart and counts what it draws: one circle per feasible
/// point, one cross per infeasible point, the curve through the feasible
/// points (one polyline per unbroken run), one dashed line per break.
fn check_svg(svg: &str, points: usize, infeasible: usize, breaks: usize) {
    let doc = roxmltree::Document::parse(svg).expect("the chart is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let class = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(c))
            .count()
    };
    assert_eq!(class("point"), points);
    assert_eq!(class("infeasible"), infeasible);
    assert_eq!(class("break"), breaks);
    assert_eq!(class("break-label"), breaks);
    let curve_points: usize = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("curve"))
        .map(|n| n.attribute("points").unwrap().split(' ').count())
        .sum();
    assert_eq!(curve_points, points);
    // Break labels paint over the curve and the points (later in the document), so the
    // curve never cuts their letters; the dashed lines go under it.
    let order = |c: &str| {
        doc.descendants()
            .enumerate()
            .filter(|(_, n)| n.attribute("class") == Some(c))
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let last_drawn = order("curve")
        .into_iter()
        .chain(order("point"))
        .max()
        .unwrap_or(0);
    assert!(order("break-label").iter().all(|&i| i > last_drawn));
    assert!(order("break")
        .iter()
        .all(|&i| order("curve").iter().all(|&c| i < c)));
    // Every coordinate is a finite number inside the drawing.
    let (w, h): (f64, f64) = (
        doc.root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap(),
        doc.root_element()
            .attribute("height")
            .unwrap()
            .parse()
            .unwrap(),
    );
    for n in doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("point"))
    {
        let cx: f64 = n.attribute("cx").unwrap().parse().unwrap();
        let cy: f64 = n.attribute("cy").unwrap().parse().unwrap();
        assert!(
            (0.0..=w).contains(&cx) && (0.0..=h).contains(&cy),
            "{cx},{cy}"
        );
    }
}

/// The acceptance sweep: 50 points on the kettle scenario, 100 to 5000 units
/// of kettle-17-white, with the options and progress reports of `what_if sweep`.
///
/// On paper: cixi-1 has 160 h, zhongshan-2 90 h. Sage (650 units, cixi-1
/// only) takes 6 + 0.06 x 650 = 45 h. Travel (400) takes 3 + 0.055 x 400 = 25 h
/// at zhongshan-2 or 5 + 0.05 x 400 = 25 h at cixi-1. With travel at
/// zhongshan-2, white gets floor((160 - 45 - 6) / 0.06) = 1816 at cixi-1 and
/// floor((90 - 25 - 3) / 0.07) = 885 at zhongshan-2: 2701 units; with travel at
/// cixi-1, 1400 + 1242 = 2642; splitting travel costs a second setup. So
/// white demand up to 2701 can be met and more cannot.
///
/// Break volumes: V = ceil((min_qty + on_hand - other products' use) / per unit):
/// element-1800w 1000 + 300 - 650 = 650; steel-304 (500 + 180 - 389) / 0.42 =
/// 692.9 -> 693 and (1000 + 180 - 389) / 0.42 = 1883.3 -> 1884; box-large
/// 2000 - 650 = 1350; base-360 2000 + 500 - 1050 = 1450; abs-white
/// (250 + 25 - 32) / 0.11 = 2209.1 -> 2210; element-1800w 3000 + 300 - 650 = 2650;
/// element-1200w (travel only) is not used by white.
#[test]
fn kettle_sweep_of_50_points() {
    let started = std::time::Instant::now();
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
    let mut reports = Vec::new();
    let s = run_sweep(&base, &spec, &scan_options(), &mut |d, t| {
        reports.push((d, t))
    })
    .unwrap();
    assert_eq!(reports, (1..=50).map(|d| (d, 50)).collect::<Vec<_>>());
    assert_eq!(s.points.len(), 50);
    let mut feasible = 0;
    for (i, p) in s.points.iter().enumerate() {
        assert_eq!(p.x, 100.0 + 100.0 * i as f64);
        if p.x <= 2701.0 {
            feasible += 1;
            assert_eq!(p.status, PointStatus::Optimal, "at {}", p.x);
            assert!(p.total_cost.is_some() && p.cost_per_unit.is_finite());
            assert!(p.shortfalls.is_empty());
        } else {
            assert_eq!(p.status, PointStatus::Infeasible, "at {}", p.x);
            assert_eq!(p.total_cost, None);
            assert!(p.cost_per_unit.is_nan());
            // Some product falls short (which one depends on the partial plan:
            // dropping sage frees 45 h for white).
            assert!(p.shortfalls.iter().all(|f| f.short_by > 0));
            assert!(!p.shortfalls.is_empty(), "at {}", p.x);
        }
    }
    assert_eq!(feasible, 27);
    // Points against plans solved directly.
    for i in [0, 5, 12, 26] {
        let mut at = kettle();
        at.products[0].demand = s.points[i].x as i64;
        let p = plan_scenario(&at, &default_options()).unwrap();
        assert_eq!(
            s.points[i].total_cost,
            Some(p.total_cost),
            "at {}",
            s.points[i].x
        );
        let cpu = p.cost_per_unit.get("kettle-17-white").unwrap();
        assert!((s.points[i].cost_per_unit - cpu).abs() < 1e-6);
    }
    let volumes: Vec<i64> = s.breaks.iter().map(|b| b.volume).collect();
    assert_eq!(volumes, [650, 693, 1350, 1450, 1884, 2210, 2650]);
    check_svg(&chart::render_svg(&s), 27, 23, 7);
    eprintln!(
        "kettle sweep of 50 points: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// An infeasible variant shows its status and shortfall, never the partial
/// plan's costs as if they were a plan's, in the table, JSON and CSV.
///
/// On paper: the mug base costs 100 x 100 + 10 000 setup + 100 kg of clay at 50
/// (5 000, less than 200 kg at 40) = 25 000. With 0.5 h at 0.01 h per mug the
/// factory makes at most 50 of the 100 mugs: short by 50.
#[test]
fn compare_shows_an_infeasible_variant_as_infeasible() {
    let base = Scenario::from_toml_str(MUG).unwrap();
    let ov = Overlay::from_toml_str(
        r#"[[variants]]
name = "tiny-factory"
changes = [ { set = "factories.f.capacity_hours", value = 0.5 } ]
[[variants]]
name = "double"
changes = [ { scale = "products.mug.demand", by = 2.0 } ]"#,
    )
    .unwrap();
    let applied = apply_all(&base, &ov).unwrap();
    let names = ov.variants.iter().map(|v| v.name.clone());
    let variants: Vec<_> = names.zip(applied).collect();
    let c = compare::compare(&base, &variants, &default_options()).unwrap();

    let (b, tiny, double) = (&c.columns[0], &c.columns[1], &c.columns[2]);
    assert_eq!(b.total_cost, Some(25_000));
    assert_eq!(b.status, "optimal");
    // 200 mugs: 20 000 + 10 000 + 200 kg at 40 = 38 000.
    assert_eq!(double.total_cost, Some(38_000));
    assert_eq!(tiny.status, "infeasible");
    assert_eq!(tiny.total_cost, None);
    assert_eq!(tiny.cost_breakdown, None);
    assert!(tiny.cost_per_unit.is_empty());
    assert!(tiny.changes.is_empty());
    assert_eq!(tiny.shortfalls.len(), 1);
    assert_eq!(tiny.shortfalls[0].sku, "mug");
    assert_eq!(tiny.shortfalls[0].short_by, 50);

    let text = compare::render_text(&c);
    let row = |label: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no row {label}:\n{text}"));
        line[label.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("status"), ["optimal", "INFEASIBLE", "optimal"]);
    assert_eq!(row("total (EUR)"), ["250.00", "-", "380.00"]);
    assert_eq!(row("  purchase"), ["50.00", "-", "80.00"]);
    assert_eq!(row("short mug"), ["-", "50", "-"]);
    assert_eq!(row("per unit mug"), ["2.50", "-", "1.90"]);
    assert!(
        text.contains("INFEASIBLE: demand cannot be met; short: mug by 50 units"),
        "{text}"
    );

    let json: serde_json::Value = serde_json::from_str(&compare::render_json(&c)).unwrap();
    let t = &json["columns"][1];
    assert_eq!(t["status"], "infeasible");
    assert!(t["total_cost"].is_null() && t["cost_breakdown"].is_null());
    assert_eq!(t["shortfalls"][0]["sku"], "mug");
    assert_eq!(t["shortfalls"][0]["short_by"], 50);
    assert_eq!(json["columns"][0]["total_cost"], 25_000);

    let csv = compare::render_csv(&c);
    let lines: Vec<&str> = csv.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let tiny_row: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(tiny_row[col("status")], "infeasible");
    assert_eq!(tiny_row[col("total_cost")], "");
    assert_eq!(tiny_row[col("purchase")], "");
    assert_eq!(tiny_row[col("shortfalls")], "mug:50");
    let base_row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(base_row[col("total_cost")], "25000");
    assert_eq!(base_row[col("shortfalls")], "");
}

/// The mug factory makes at most 10 000 000 mugs (100 000 hours at 0.01 an hour). A scan
/// whose first grid point is beyond that still finds the minimum viable batch below it
/// (770, as on paper) and the exact volume where demand stops being met. Before, the
/// scan stopped at the infeasible grid point and advised that no volume keeps the margin.
#[test]
fn advice_looks_below_an_infeasible_first_grid_point() {
    let base = Scenario::from_toml_str(MUG).unwrap();
    let spec = AdviceSpec {
        sku: "mug".into(),
        price: 300.0,
        deposit: 30.0,
        margin: 0.49,
        max: 100_000_000,
        step: 20_000_000,
    };
    let a = advise(&base, &spec, &default_options(), &mut |_, _| {}).unwrap();
    assert_eq!(a.infeasible_from, Some(10_000_001));
    assert_eq!(a.minimum_viable.as_ref().map(|c| c.volume), Some(770));
    assert_eq!(a.below_minimum.as_ref().map(|c| c.volume), Some(769));
}

/// The grid is made as the scan goes: the largest `max` (10^9 units, 8 GB as a list)
/// with a step of 1 costs only the volumes planned. Before, the grid was listed first.
#[test]
fn advice_with_a_huge_max_plans_only_what_it_needs() {
    let base = Scenario::from_toml_str(MUG).unwrap();
    let spec = AdviceSpec {
        sku: "mug".into(),
        price: 300.0,
        deposit: 30.0,
        margin: 0.49,
        max: c2m_planner::validate::MAX_UNITS,
        step: 1,
    };
    // At a price where the first volume passes: cost per unit at 1 mug is
    // 100 + 10 000 + 50 = 10 150.
    let spec = AdviceSpec {
        price: 30_000.0,
        ..spec
    };
    let a = advise(&base, &spec, &default_options(), &mut |_, _| {}).unwrap();
    assert_eq!(a.minimum_viable.as_ref().map(|c| c.volume), Some(1));
    assert!(a.evaluated < 100, "{} volumes planned", a.evaluated);
    // One mug is "1 unit" (it read "1 units").
    let text = c2m_planner::whatif::advice::render_text(&a);
    assert!(text.contains("minimum viable batch: 1 unit\n"), "{text}");
}

/// Advice on white kettles at 49.00 (10.00 deposit), a 15% margin, up to 3,000 in
/// steps of 100: near the factories' capacity, where the tests below need to be.
fn kettle_advice() -> AdviceSpec {
    AdviceSpec {
        sku: "kettle-17-white".into(),
        price: 4900.0,
        deposit: 1000.0,
        margin: 0.15,
        max: 3000,
        step: 100,
    }
}

/// Options under which the solver finds nothing: a microsecond is over before
/// microlp has a plan, so each point's plan is the greedy rules' or none. On
/// the kettle, the greedy rules plan 100 units of white but not 2,600 (close
/// to the factories' capacity of about 2,700), so that point has no plan at
/// all. (HiGHS's presolve and heuristics run before its first look at the
/// clock and find a plan even then: microlp is named, in the HiGHS build too.)
fn no_time() -> c2m_planner::SolveOptions {
    c2m_planner::SolveOptions {
        time_limit: std::time::Duration::from_micros(1),
        solver: c2m_planner::SolverKind::Microlp,
        ..scan_options()
    }
}

/// A point the planner finds no plan for is reported as such, with the
/// reason, in every output, and the sweep goes on to the other points
/// (it used to end the whole sweep with the point's error).
#[test]
fn a_point_with_no_plan_is_reported_and_the_sweep_goes_on() {
    let spec = SweepSpec {
        quantity: Quantity::Demand {
            sku: "kettle-17-white".into(),
        },
        from: 100.0,
        to: 2600.0,
        points: 2,
        sku: "kettle-17-white".into(),
    };
    let s = run_sweep(&kettle(), &spec, &no_time(), &mut |_, _| {}).expect("the sweep goes on");
    let (planned, none) = (&s.points[0], &s.points[1]);
    assert_eq!(planned.status, PointStatus::Feasible);
    assert!(planned.total_cost.is_some() && planned.reason.is_none());
    assert_eq!(none.status, PointStatus::NoPlan);
    assert_eq!(
        none.reason.as_deref(),
        Some("no plan found within the time limit of 1µs")
    );
    assert_eq!((none.total_cost, none.gap), (None, None));
    assert!(none.shortfalls.is_empty());

    let text = sweep::render_text(&s);
    let row = text.lines().find(|l| l.contains("2600")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>().join(" "),
        "2600 NO PLAN - - no plan found within the time limit of 1µs"
    );
    assert!(text.contains("NO PLAN at 1 of 2 points"), "{text}");
    let csv = sweep::render_csv(&s);
    assert_eq!(csv.lines().nth(2), Some("2600,no_plan,,,,"));
    let json: serde_json::Value = serde_json::from_str(&sweep::render_json(&s)).unwrap();
    assert_eq!(json["points"][1]["status"], "no_plan");
    assert_eq!(
        json["points"][1]["reason"],
        "no plan found within the time limit of 1µs"
    );
    assert_eq!(json["points"][0]["status"], "feasible");
    assert!(json["points"][0].get("reason").is_none());

    // The chart: a circle for the planned point, a question mark (not an
    // infeasible cross) for the other, and the legend says what it means.
    let svg = chart::render_svg(&s);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let class = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(c))
            .count()
    };
    assert_eq!(
        (class("point"), class("no-plan"), class("infeasible")),
        (1, 1, 0)
    );
    assert_eq!(class("no-plan-legend"), 1);
    let mark = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("no-plan"))
        .unwrap();
    assert!(mark
        .descendants()
        .any(|n| n.text() == Some("2600: no plan (no plan found within the time limit of 1µs)")));
}

/// The advice scan goes on past volumes with no plan: it neither takes them
/// as viable nor as failing, lists them, and leaves out the ladder steps
/// that need one; the minimum viable batch is found among the others.
#[test]
fn advice_goes_on_past_volumes_with_no_plan() {
    let spec = kettle_advice();
    let a = advise(&kettle(), &spec, &no_time(), &mut |_, _| {}).expect("the scan goes on");
    assert!(
        !a.no_plan.is_empty(),
        "some volume near capacity has no plan"
    );
    let minimum = a.minimum_viable.as_ref().expect("a viable volume");
    assert!(minimum.cost_per_unit <= a.target_cost + 1e-9);
    let unplanned: Vec<i64> = a.no_plan.iter().map(|n| n.volume).collect();
    assert!(!unplanned.contains(&minimum.volume));
    for n in &a.no_plan {
        assert_eq!(n.reason, "no plan found within the time limit of 1µs");
    }
    // Every break the scan reaches is a ladder step, or left out because a
    // volume of the step has no plan.
    for step in &a.ladder {
        assert!(!unplanned.contains(&step.mark.volume));
        assert!(!unplanned.contains(&(step.mark.volume - 1)));
    }
    assert!(!a.ladder_left_out.is_empty());
    for v in &a.ladder_left_out {
        assert!(unplanned.contains(v) || unplanned.contains(&(v - 1)), "{v}");
    }
    let text = c2m_planner::whatif::advice::render_text(&a);
    assert!(
        text.contains(&format!(
            "NO PLAN at {} of the volumes planned",
            a.no_plan.len()
        )),
        "{text}"
    );
    assert!(text.contains("price-ladder steps left out"), "{text}");
}

/// A scan given an end plans nothing once the end has passed: every volume
/// is named as not reached (the grid's whole stretch, from 1 to `max`),
/// none is taken as viable, failing or without a plan, and the text says so.
/// With an end far off, nothing is left out.
#[test]
fn an_advice_scan_past_its_end_names_the_volumes_it_did_not_reach() {
    use c2m_planner::whatif::advice::{advise_by, VolumeRange};
    let spec = kettle_advice();
    let ended = std::time::Instant::now();
    let a = advise_by(&kettle(), &spec, &no_time(), Some(ended), &mut |_, _| {})
        .expect("an answer, of nothing judged");
    assert_eq!(
        a.not_reached,
        [VolumeRange {
            first: 1,
            last: 3000
        }]
    );
    assert_eq!(a.evaluated, 0);
    assert!(a.minimum_viable.is_none() && a.no_plan.is_empty());
    assert!(a.ladder.is_empty());
    let text = c2m_planner::whatif::advice::render_text(&a);
    assert!(text.contains("NOT REACHED before the scan's end"), "{text}");
    assert!(text.contains("from 1 to 3000 units"), "{text}");

    let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    let a =
        advise_by(&kettle(), &spec, &no_time(), Some(far), &mut |_, _| {}).expect("the whole scan");
    assert!(a.not_reached.is_empty(), "{:?}", a.not_reached);
    assert!(a.minimum_viable.is_some());
}

/// A scan whose end leaves each volume less than its time limit judges a volume
/// the solver proves cannot be made: with a first grid volume past the
/// factories' capacity (3,809 units of white alone), the scan bisects down to
/// the largest volume they make and advises as a scan without an end does,
/// reaching every volume. An infeasible plan used to count only when the
/// volume had its whole time limit, so a call's short deadline left the whole
/// scan "not reached".
#[test]
fn an_advice_scan_with_less_time_than_its_limit_judges_infeasible_volumes() {
    use c2m_planner::whatif::advice::advise_by;
    use std::time::{Duration, Instant};
    let spec = AdviceSpec {
        max: 99_999,
        step: 4_999,
        ..kettle_advice()
    };
    let opts = c2m_planner::SolveOptions {
        time_limit: Duration::from_secs(3600),
        ..scan_options()
    };
    // The other products' demand is not the scan's: without it each plan takes milliseconds.
    let mut base = kettle();
    for p in &mut base.products {
        p.demand = 0;
    }
    let full = advise_by(&base, &spec, &opts, None, &mut |_, _| {}).expect("the whole scan");
    let end = Instant::now() + Duration::from_secs(600);
    let short = advise_by(&base, &spec, &opts, Some(end), &mut |_, _| {}).expect("in time");
    assert!(short.not_reached.is_empty(), "{:?}", short.not_reached);
    let infeasible_from = short.infeasible_from.expect("the capacity is found");
    assert!((1..4_999).contains(&infeasible_from), "{infeasible_from}");
    assert_eq!(short.infeasible_from, full.infeasible_from);
    let advised =
        |a: &c2m_planner::whatif::advice::Advice| a.minimum_viable.as_ref().map(|v| v.volume);
    assert!(advised(&short).is_some());
    assert_eq!(advised(&short), advised(&full));
}

/// A variant the planner finds no plan for is a column of its own with the
/// reason, in every output, and the other columns are compared as usual (it
/// used to end the comparison).
#[test]
fn a_variant_with_no_plan_is_a_column_and_the_comparison_goes_on() {
    let base = kettle();
    let mut near_capacity = kettle();
    near_capacity.products[0].demand = 2600;
    let c = compare::compare(
        &base,
        &[("near-capacity".to_string(), near_capacity)],
        &no_time(),
    )
    .expect("the comparison goes on");
    let (b, v) = (&c.columns[0], &c.columns[1]);
    assert_eq!(b.status, "feasible");
    assert!(b.total_cost.is_some() && b.reason.is_none());
    assert_eq!(v.status, "no_plan");
    assert!(v.has_no_plan() && !v.is_infeasible());
    assert_eq!(
        v.reason.as_deref(),
        Some("no plan found within the time limit of 1µs")
    );
    assert_eq!((v.total_cost, v.cost_breakdown, v.gap), (None, None, None));
    assert!(v.cost_per_unit.is_empty() && v.changes.is_empty());

    let text = compare::render_text(&c);
    let status: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("status"))
        .unwrap()
        .split_whitespace()
        .collect();
    // The base's greedy plan has no bound: not proven, and said so.
    assert_eq!(
        status,
        ["status", "feasible", "(gap", "?)", "NO", "PLAN"],
        "{text}"
    );
    assert!(
        text.contains("NOT PROVEN OPTIMAL in 1 of 2 columns"),
        "{text}"
    );
    assert!(
        text.contains("  near-capacity:\n    NO PLAN: no plan found within the time limit of 1µs"),
        "{text}"
    );
    assert!(text.contains("NO PLAN: the planner found none"), "{text}");
    let csv = compare::render_csv(&c);
    let row = csv.lines().nth(2).unwrap();
    assert!(row.starts_with("near-capacity,no_plan,,,"), "{row}");
    assert!(row.trim_end_matches(',').ends_with("no_plan"), "{row}");
    let json: serde_json::Value = serde_json::from_str(&compare::render_json(&c)).unwrap();
    assert_eq!(json["columns"][1]["status"], "no_plan");
    assert_eq!(
        json["columns"][1]["reason"],
        "no plan found within the time limit of 1µs"
    );
}
