//! What-if on time-phased (version 2) scenarios: overlays that change the
//! horizon, dues, calendars and late costs; comparisons; the lead-time
//! sweep with its table, CSV, JSON and chart; threshold advice. The
//! expected costs are worked out by hand in the comments (see
//! `data/lead-weeks.toml` for the base), not taken from the program.

use std::collections::BTreeMap;

use c2m_planner::whatif::advice::{advise, AdviceSpec};
use c2m_planner::whatif::cli::{run, Env};
use c2m_planner::whatif::overlay::{apply_all, apply_variant, Overlay};
use c2m_planner::whatif::sweep::{
    self, run_sweep, set_total_due, PointStatus, Quantity, SweepSpec,
};
use c2m_planner::whatif::{chart, compare, default_options};
use c2m_planner::{Due, PlanStatus, Product, Scenario};
use serde_json::Value;

/// Ten units of `p` due by the end of week 1, late at 10 a unit a week;
/// `slow` material (10, 8 days = 2 weeks) or `fast` (40, same week); setup
/// 500, unit cost 100. Slow material a week late costs 10 + 10 = 20 a unit,
/// less than 40: total 1,000 + 500 + 100 + lateness 100 = 1,700.
const LEAD: &str = include_str!("data/lead-weeks.toml");
const LEAD_OVERLAY: &str = include_str!("data/lead-weeks-what-if.toml");

fn lead() -> Scenario {
    Scenario::from_toml_str(LEAD).unwrap()
}

fn variant(changes: &str) -> Result<Scenario, String> {
    let text = format!("[[variants]]\nname = \"v\"\nchanges = [ {changes} ]\n");
    let ov = Overlay::from_toml_str(&text).map_err(|e| e.to_string())?;
    apply_variant(&lead(), &ov.variants[0]).map_err(|e| e.to_string())
}

#[test]
fn overlays_change_calendars_dues_late_costs_and_the_horizon() {
    let s = variant(r#"{ set = "factories.f.capacity_hours[2]", value = 0.0 }"#).unwrap();
    assert_eq!(
        s.factories[0].calendar,
        Some(vec![100.0, 100.0, 0.0, 100.0])
    );

    // A due entry by its period, and a whole due list.
    let s = variant(r#"{ set = "products.p.due.1.quantity", value = 25 }"#).unwrap();
    assert_eq!(
        s.products[0].due,
        vec![Due {
            period: 1,
            quantity: 25
        }]
    );
    let s = variant(
        r#"{ set = "products.p.due", value = [ { period = 0, quantity = 4 }, { period = 3, quantity = 6 } ] }"#,
    )
    .unwrap();
    assert_eq!(s.products[0].total_due(), 10);
    assert_eq!(s.products[0].due.len(), 2);

    // Scaling a list scales every quantity (whole units stay whole).
    let s = variant(r#"{ scale = "products.p.due", by = 1.25 }"#).unwrap();
    assert_eq!(
        s.products[0].due,
        vec![Due {
            period: 1,
            quantity: 13
        }]
    );
    let s = variant(r#"{ scale = "factories.f.capacity_hours", by = 0.5 }"#).unwrap();
    assert_eq!(s.factories[0].calendar, Some(vec![50.0; 4]));

    // late_cost may be set, changed and removed (then nothing may be late).
    let s = variant(r#"{ set = "products.p.late_cost", value = 50.0 }"#).unwrap();
    assert_eq!(s.products[0].late_cost, Some(50.0));
    let s = variant(r#"{ remove = "products.p.late_cost" }"#).unwrap();
    assert_eq!(s.products[0].late_cost, None);

    // Receipts may be added to a material that has none.
    let s =
        variant(r#"{ set = "materials.m.receipts", value = [ { period = 1, quantity = 5.0 } ] }"#)
            .unwrap();
    assert_eq!(s.materials[0].receipts.len(), 1);

    // A longer horizon with one number of hours for every period.
    let s = variant(
        r#"{ set = "horizon.periods", value = 6 }, { set = "factories.f.capacity_hours", value = 80.0 }"#,
    )
    .unwrap();
    assert_eq!(s.horizon.unwrap().periods, 6);
    assert_eq!(s.factories[0].calendar, None);
    assert_eq!(s.factories[0].capacity_hours, 80.0);
}

#[test]
fn bad_v2_overlays_name_the_variant_and_the_place() {
    // The calendar keeps 4 entries when the horizon grows to 6.
    let e = variant(r#"{ set = "horizon.periods", value = 6 }"#).unwrap_err();
    assert!(e.contains(r#"variant "v""#), "{e}");
    assert!(e.contains("factories[0].capacity_hours"), "{e}");
    // A due period outside the horizon.
    let e = variant(r#"{ set = "products.p.due.1.period", value = 9 }"#).unwrap_err();
    assert!(e.contains("products[0].due[0].period"), "{e}");
    // No due entry for period 3.
    let e = variant(r#"{ set = "products.p.due.3.quantity", value = 1 }"#).unwrap_err();
    assert!(e.contains(r#"unknown due entry "3""#), "{e}");
    assert!(e.contains("(known: 1)"), "{e}");
    // A table is not replaced whole; a list is not replaced by a number.
    let e = variant(r#"{ set = "horizon", value = 3 }"#).unwrap_err();
    assert!(e.contains("`horizon` is a table"), "{e}");
    let e = variant(r#"{ set = "products.p.due", value = 10 }"#).unwrap_err();
    assert!(e.contains("`due` is a list"), "{e}");
    // A calendar period past its end.
    let e = variant(r#"{ set = "factories.f.capacity_hours[4]", value = 1.0 }"#).unwrap_err();
    assert!(e.contains("there is no [4]"), "{e}");
    // A scale no whole number holds: it saturated to i64::MAX days a period, planned
    // without a word.
    let e = variant(r#"{ scale = "horizon.period_days", by = 1e300 }"#).unwrap_err();
    assert!(e.contains("scale horizon.period_days by"), "{e}");
    assert!(e.contains("beyond the largest whole number"), "{e}");
    let e = variant(r#"{ scale = "products.p.due", by = 1e300 }"#).unwrap_err();
    assert!(e.contains("beyond the largest whole number"), "{e}");
    // ... nor any float: infinity became null.
    let e = variant(r#"{ scale = "products.p.late_cost", by = 1.7e308 }"#).unwrap_err();
    assert!(e.contains("is not a finite number"), "{e}");
    // A value that is no number: NaN read as "null cannot replace" the number.
    for bad in ["nan", "inf", "[1.0, nan]"] {
        let e = variant(&format!(
            r#"{{ set = "products.p.late_cost", value = {bad} }}"#
        ))
        .unwrap_err();
        assert!(e.contains("`value` must be a finite number"), "{bad}: {e}");
        assert!(!e.contains("null"), "{bad}: {e}");
    }
}

/// By hand, with the base at 1,700 (see `LEAD`):
/// - closed-week-2: slow arrives in week 2, made in week 3: two weeks late,
///   10 + 20 = 30 a unit, still below fast's 40: 1,800, 20 late units;
/// - due-later: due in week 2, slow on time: 1,600, nothing late;
/// - dearer-late: 10 + 50 = 60 a unit late beats nothing; fast's 40 wins:
///   1,900, nothing late;
/// - double-due: 20 units a week late: 2,000 + 500 + 200 + 200 = 2,900;
/// - six-weeks: the same plan: 1,700.
#[test]
fn compare_v2_variants_against_the_paper() {
    let ov = Overlay::from_toml_str(LEAD_OVERLAY).unwrap();
    let variants: Vec<(String, Scenario)> = ov
        .variants
        .iter()
        .map(|v| v.name.clone())
        .zip(apply_all(&lead(), &ov).unwrap())
        .collect();
    let c = compare::compare(&lead(), &variants, &default_options()).unwrap();
    let expect: [(&str, i64, i64, i64); 6] = [
        ("base", 1700, 100, 10),
        ("closed-week-2", 1800, 200, 20),
        ("due-later", 1600, 0, 0),
        ("dearer-late", 1900, 0, 0),
        ("double-due", 2900, 200, 20),
        ("six-weeks", 1700, 100, 10),
    ];
    for (k, (name, total, lateness, late)) in c.columns.iter().zip(expect) {
        assert_eq!(k.name, name);
        assert_eq!(k.status, "optimal", "{name}");
        assert_eq!(k.total_cost, Some(total), "{name}");
        assert_eq!(k.cost_breakdown.unwrap().lateness, lateness, "{name}");
        assert_eq!(k.late_units, Some(late), "{name}");
    }
    let completion = |i: usize| {
        c.columns[i]
            .completion
            .as_ref()
            .and_then(|m| m.get("p"))
            .flatten()
    };
    assert_eq!(completion(0), Some(2));
    assert_eq!(completion(1), Some(3));

    let text = compare::render_text(&c);
    let rows: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        rows.iter()
            .any(|r| r == "lateness 1.00 2.00 0.00 0.00 2.00 1.00"),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r == "late (unit-periods) 10 20 0 0 20 10"),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("complete p period 2 period 3")),
        "{text}"
    );
    // Changes name their periods: the run moves from week 2 to week 3.
    assert!(text.contains("run f/p in 2: 10 -> -"), "{text}");
    assert!(text.contains("run f/p in 3: - -> 10"), "{text}");

    let csv = compare::render_csv(&c);
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(head[8..10], ["holding", "lateness"]);
    assert!(head.contains(&"late_units"));
    let base_row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(base_row[3], "1700");
    assert_eq!(base_row[9], "100");

    let json: Value = serde_json::from_str(&compare::render_json(&c)).unwrap();
    assert_eq!(json["columns"][1]["late_units"], 20);
    assert_eq!(json["columns"][1]["cost_breakdown"]["lateness"], 200);
    assert_eq!(json["columns"][1]["completion"]["p"], 3);
}

/// The slow supplier's lead time from 0 to 28 days in weeks (5 points):
/// 0 and 7 days arrive by week 1, on time: 1,600; 14 days (2 weeks): a
/// week late, 1,700; 21 days (3 weeks): two weeks late at 10 + 20 = 30 a
/// unit, still below fast's 40: 1,800; 28 days (4 weeks) arrives after the
/// horizon, so fast's 40 a unit on time: 1,900, nothing late.
fn lead_time_sweep() -> sweep::Sweep {
    let spec = SweepSpec {
        quantity: Quantity::LeadTime {
            supplier: "slow".into(),
        },
        from: 0.0,
        to: 28.0,
        points: 5,
        sku: "p".into(),
    };
    run_sweep(&lead(), &spec, &default_options(), &mut |_, _| {}).unwrap()
}

/// A sweep of one value (a range under a day) draws its point in the middle of an axis
/// of whole days, not at the left edge of an axis from 14 to 15 labelled in fractions.
#[test]
fn a_one_point_lead_time_chart_has_whole_days_and_its_point_in_the_middle() {
    let spec = SweepSpec {
        quantity: Quantity::LeadTime {
            supplier: "slow".into(),
        },
        from: 14.0,
        to: 14.4,
        points: 3,
        sku: "p".into(),
    };
    let s = run_sweep(&lead(), &spec, &default_options(), &mut |_, _| {}).unwrap();
    assert_eq!(s.points.len(), 1);
    let svg = chart::render_svg(&s);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed");
    let labels: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("xtick"))
        .filter_map(|g| g.descendants().find(|n| n.has_tag_name("text")))
        .filter_map(|t| t.text())
        .collect();
    assert_eq!(labels, ["13", "14", "15"], "{svg}");
    let x_of = |class: &str| -> Vec<f64> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .filter_map(|n| n.attribute("cx").or(n.attribute("x1")))
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let ticks: Vec<f64> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("xtick"))
        .filter_map(|g| g.descendants().find(|n| n.has_tag_name("line")))
        .map(|l| l.attribute("x1").unwrap().parse().unwrap())
        .collect();
    let point = x_of("point");
    assert_eq!(point.len(), 1);
    assert!(
        (point[0] - ticks[1]).abs() < 1.0,
        "{point:?} against {ticks:?}"
    );
}

#[test]
fn lead_time_sweep_moves_cost_and_lateness_as_on_paper() {
    let s = lead_time_sweep();
    // Days, total, lateness, late units.
    type Point = (f64, Option<i64>, Option<i64>, Option<i64>);
    let got: Vec<Point> = s
        .points
        .iter()
        .map(|p| (p.x, p.total_cost, p.lateness, p.late_units))
        .collect();
    assert_eq!(
        got,
        [
            (0.0, Some(1600), Some(0), Some(0)),
            (7.0, Some(1600), Some(0), Some(0)),
            (14.0, Some(1700), Some(100), Some(10)),
            (21.0, Some(1800), Some(200), Some(20)),
            (28.0, Some(1900), Some(0), Some(0)),
        ]
    );
    // All of the cost is p's: per unit due, lateness included.
    assert!((s.points[3].cost_per_unit - 180.0).abs() < 1e-9);
    assert!(s.points.iter().all(|p| p.status == PointStatus::Optimal));
    // Proven: gap 0 everywhere, and every point its own plan.
    assert!(s
        .points
        .iter()
        .all(|p| p.gap == Some(0.0) && p.plan_from.is_none()));
    // A longer lead time never costs less (up to 21 days; at 28 slow cannot
    // deliver and fast costs more than lateness did).
    assert!(s
        .points
        .windows(2)
        .all(|w| w[0].total_cost <= w[1].total_cost));

    let text = sweep::render_text(&s);
    let rows: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(rows[0], "days status total per unit lateness late");
    assert_eq!(rows[4], "21 optimal 18.00 1.80 2.00 20");

    let csv = sweep::render_csv(&s);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("x,status,gap,total_cost,cost_per_unit:p,lateness,late_units,plan_from,shortfalls")
    );
    assert_eq!(lines.nth(2), Some("14,optimal,0,1700,170.0000,100,10,,"));

    let json: Value = serde_json::from_str(&sweep::render_json(&s)).unwrap();
    assert_eq!(json["swept"], "lead_time");
    assert_eq!(json["horizon"]["period_days"], 7);
    assert_eq!(json["points"][3]["lateness"], 200);
    assert_eq!(json["points"][3]["late_units"], 20);
    assert_eq!(json["points"].as_array().unwrap().len(), 5);
}

#[test]
fn lead_time_chart_draws_lateness_as_a_second_series() {
    let s = lead_time_sweep();
    let svg = chart::render_svg(&s);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed");
    let count = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(c))
            .count()
    };
    assert_eq!(count("point"), 5);
    assert_eq!(count("lateness-point"), 5);
    assert_eq!(count("curve"), 1);
    assert_eq!(count("lateness"), 1);
    assert_eq!(count("legend"), 1);
    // The lateness curve peaks at 21 days: its point is the highest (the
    // smallest y) of the five, and at 0, 7 and 28 days it is on the axis.
    let ys: Vec<f64> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lateness-point"))
        .map(|n| n.attribute("y").unwrap().parse().unwrap())
        .collect();
    let top = ys.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(ys[3], top);
    assert_eq!(ys[0], ys[1]);
    assert_eq!(ys[0], ys[4]);
    assert!(ys[0] > ys[2] && ys[2] > ys[3]);
    assert!(svg.contains("total cost and lateness against lead time of slow (days)"));
}

/// Cost per unit at V units due in week 1, slow a week late:
/// 100 + 10 + 10 + 500 / V. At a price of 2.00 and 20% margin the target is 160, met from
/// 500 / 40 = 12.5, so 13 units.
#[test]
fn advice_on_a_v2_scenario_matches_the_paper() {
    let spec = AdviceSpec {
        sku: "p".into(),
        price: 200.0,
        deposit: 0.0,
        margin: 0.2,
        max: 40,
        step: 1,
    };
    let a = advise(&lead(), &spec, &default_options(), &mut |_, _| {}).unwrap();
    let min = a.minimum_viable.expect("a viable volume");
    assert_eq!(min.volume, 13);
    assert!((min.cost_per_unit - (120.0 + 500.0 / 13.0)).abs() < 1e-9);
    assert_eq!(min.runs, ["f: 13 in 2"]);
    let below = a.below_minimum.unwrap();
    assert!((below.cost_per_unit - (120.0 + 500.0 / 12.0)).abs() < 1e-9);
}

#[test]
fn a_v2_demand_keeps_the_shape_of_the_due_schedule() {
    let mut p = Product::with_demand("k", 0, BTreeMap::new());
    p.due = vec![
        Due {
            period: 2,
            quantity: 300,
        },
        Due {
            period: 4,
            quantity: 450,
        },
        Due {
            period: 6,
            quantity: 450,
        },
    ];
    let quantities = |p: &Product| p.due.iter().map(|d| d.quantity).collect::<Vec<_>>();
    let mut q = p.clone();
    set_total_due(&mut q, 1000, 8);
    assert_eq!(quantities(&q), [250, 375, 375]);
    assert_eq!(q.demand, 1000);
    // 1001: 250.25, 375.375, 375.375; the one unit left goes to the
    // largest remainder, the earlier period on a tie.
    let mut r = p.clone();
    set_total_due(&mut r, 1001, 8);
    assert_eq!(quantities(&r), [250, 376, 375]);
    // Nothing due: the total is due in the last period.
    let mut e = Product::with_demand("e", 0, BTreeMap::new());
    set_total_due(&mut e, 7, 8);
    assert_eq!(
        e.due,
        [Due {
            period: 7,
            quantity: 7
        }]
    );
}

/// Files in memory, like `tests/whatif_cli.rs`, and the last progress
/// report's total (plans to solve).
#[derive(Default)]
struct Mem(BTreeMap<String, String>, usize);

impl Env for Mem {
    fn read(&mut self, path: &str) -> Result<String, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| format!("cannot read {path}: no such file"))
    }
    fn write(&mut self, path: &str, contents: &[u8]) -> Result<(), String> {
        self.0
            .insert(path.to_string(), String::from_utf8_lossy(contents).into());
        Ok(())
    }
    fn progress(&mut self, _: usize, total: usize) {
        self.1 = total;
    }
}

fn cli(env: &mut Mem, args: &str) -> Result<String, String> {
    let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    run(&args, env).map(|o| o.stdout)
}

#[test]
fn the_command_line_sweeps_a_lead_time() {
    let mut env = Mem::default();
    env.0.insert("lead.toml".into(), LEAD.into());
    env.0.insert("ov.toml".into(), LEAD_OVERLAY.into());
    // One point per day by default: 0..=28 is 29 points.
    let out = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from 0 --to 28 --json --svg lead.svg",
    )
    .unwrap();
    let json: Value = serde_json::from_str(&out).unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 29);
    // 8..=14 days are two weeks: one week late.
    for p in points {
        let days = p["x"].as_f64().unwrap();
        let weeks = (days / 7.0).ceil();
        let expected = match weeks as i64 {
            0 | 1 => 1600,
            2 => 1700,
            3 => 1800,
            _ => 1900,
        };
        assert_eq!(p["total_cost"], expected, "at {days} days");
    }
    assert!(env.0["lead.svg"].contains(r#"class="lateness""#));
    // Days of the same week make the same model: 0, 1-7, 8-14, 15-21 and
    // 22-28 days are five plans, not 29.
    assert_eq!(env.1, 5);

    let csv = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from 14 --to 21 --points 2 --csv",
    )
    .unwrap();
    assert_eq!(
        csv,
        "x,status,gap,total_cost,cost_per_unit:p,lateness,late_units,plan_from,shortfalls\n\
         14,optimal,0,1700,170.0000,100,10,,\n\
         21,optimal,0,1800,180.0000,200,20,,\n"
    );

    let e = cli(
        &mut env,
        "sweep lead.toml --lead-time slowly --from 0 --to 7",
    )
    .unwrap_err();
    assert!(
        e.contains(r#"unknown supplier "slowly""#) && e.contains("known: slow, fast"),
        "{e}"
    );
    let e = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from -7 --to 7",
    )
    .unwrap_err();
    assert!(
        e.contains("--from: a lead time cannot be negative, got -7"),
        "{e}"
    );
    // Whole days, as in a file: half a day is refused, not rounded up to one.
    let e = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from 0.5 --to 7",
    )
    .unwrap_err();
    assert!(
        e.contains("--from (0.5) must be a whole number of days for a lead-time sweep"),
        "{e}"
    );

    // compare and scenario summary accept the v2 scenario too.
    let out = cli(&mut env, "compare lead.toml ov.toml --csv").unwrap();
    assert!(out.lines().next().unwrap().contains(",lateness,"), "{out}");
    let out = cli(&mut env, "scenario summary lead.toml").unwrap();
    assert!(out.contains("horizon: 4 periods of 7 days"), "{out}");
    assert!(
        out.contains("due       10: 10 by 1; late cost 10 per unit per period"),
        "{out}"
    );
    assert!(
        out.contains("f (h per period: 100, 100, 100, 100)"),
        "{out}"
    );
}

const WEEKS: &str = include_str!("../../../examples/scenarios/kettle-weeks.toml");
const WEEKS_OVERLAY: &str = include_str!("../../../examples/scenarios/kettle-weeks-what-if.toml");

/// The sample overlay of `docs/what-if.md` applies to the eight-week kettle
/// and changes what its notes say (nothing is solved here).
#[test]
fn the_kettle_weeks_overlay_applies() {
    let base = Scenario::from_toml_str(WEEKS).unwrap();
    let ov = Overlay::from_toml_str(WEEKS_OVERLAY).unwrap();
    let all = apply_all(&base, &ov).unwrap();
    let names: Vec<&str> = ov.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cixi-shut-week-3",
            "white-batch-up",
            "cheap-lateness",
            "ten-weeks"
        ]
    );
    let cixi = |s: &Scenario| s.factories[0].calendar.clone().unwrap();
    assert_eq!(cixi(&all[0])[3], 0.0);
    assert_eq!(cixi(&all[0])[4], 0.0);
    assert_eq!(cixi(&base)[3], 60.0);
    let white = |s: &Scenario| s.products[0].clone();
    assert_eq!(
        white(&all[1]).due[1],
        Due {
            period: 4,
            quantity: 600
        }
    );
    assert_eq!(white(&all[1]).total_due(), 1350);
    assert_eq!(white(&all[2]).late_cost, Some(100.0));
    assert_eq!(all[3].horizon.unwrap().periods, 10);
    assert_eq!(cixi(&all[3]).len(), 10);
}

/// The base (`data/lead-weeks.toml`) with slow's lead time at `days`.
fn lead_at(days: f64) -> Scenario {
    let q = Quantity::LeadTime {
        supplier: "slow".into(),
    };
    sweep::scenario_at(&lead(), &q, days).unwrap()
}

fn plan_at(days: f64) -> c2m_planner::Plan {
    c2m_planner::whatif::plan_scenario(&lead_at(days), &default_options()).unwrap()
}

/// At 28 days (4 weeks, past the horizon) slow cannot deliver: fast's 10 at
/// 40 on time, 1,000 + 500 + 400 = 1,900; that plan orders nothing from slow,
/// so it is a plan for 7 days too, but not the best (1,600). Passed off as the
/// plan found for 7 days, it is replaced by the 14-day plan (slow ordered in
/// week 0, arriving in week 2, the units a week late: 1,700) with the order
/// placed in week 1 instead, which arrives in week 2 as before: 1,700, a plan
/// for 7 days (`verify_plan`), and no lower bound known for 7 days, so
/// `feasible`.
#[test]
fn a_longer_lead_times_plan_replaces_a_costlier_one_found_for_a_shorter() {
    let v7 = lead_at(7.0).validate().unwrap();
    let mut found = plan_at(28.0);
    assert_eq!(found.total_cost, 1900);
    assert!(found.purchases.iter().all(|p| p.supplier == "fast"));
    found.status = PlanStatus::Feasible;
    found.gap = f64::INFINITY;
    found.best_bound = None;
    assert_eq!(c2m_planner::verify_plan(&v7, &found), Ok(()));
    let fourteen = plan_at(14.0);
    assert_eq!(fourteen.status, PlanStatus::Optimal);
    assert_eq!(fourteen.total_cost, 1700);
    let mut plans = vec![Ok(found), Ok(fourteen)];
    let from = sweep::monotone_in_lead_time(&lead(), "slow", &[7.0, 14.0], &mut plans).unwrap();
    assert_eq!(from, vec![Some(14.0), None]);
    let plans: Vec<_> = plans.into_iter().map(Result::unwrap).collect();
    assert_eq!(plans[0].total_cost, 1700);
    assert_eq!(plans[0].status, PlanStatus::Feasible);
    assert_eq!(c2m_planner::verify_plan(&v7, &plans[0]), Ok(()));
    let slow: Vec<_> = plans[0]
        .purchases
        .iter()
        .map(|p| (p.supplier.as_str(), p.quantity, p.period, p.arrives))
        .collect();
    assert_eq!(slow, vec![("slow", 10.0, Some(1), Some(2))]);
    assert_eq!(plans[1].status, PlanStatus::Optimal);
    assert_eq!(plans[1].total_cost, 1700);
}

/// A lead time the planner found no plan for (here: as if the time limit
/// passed first) takes the next longer one's plan, its orders to the
/// supplier placed later, when that plan is one for it: at 7 days the
/// 14-day plan (1,700) with slow ordered a week later, `feasible` since
/// nothing bounds it; the sweep point reports it, not "no plan".
#[test]
fn a_lead_time_with_no_plan_takes_a_longer_ones_plan() {
    let fourteen = plan_at(14.0);
    assert_eq!(fourteen.total_cost, 1700);
    let none = c2m_planner::PlanError::NoSolution(std::time::Duration::from_secs(5));
    let mut plans = vec![Err(none.clone()), Ok(fourteen)];
    let from = sweep::monotone_in_lead_time(&lead(), "slow", &[7.0, 14.0], &mut plans).unwrap();
    assert_eq!(from, vec![Some(14.0), None]);
    let seven = plans[0].as_ref().expect("the 14-day plan, shifted");
    assert_eq!(
        (seven.status, seven.total_cost),
        (PlanStatus::Feasible, 1700)
    );
    let v7 = lead_at(7.0).validate().unwrap();
    assert_eq!(c2m_planner::verify_plan(&v7, seven), Ok(()));
    // The longest lead time has no donor: it stays without a plan.
    let mut plans = vec![Ok(plan_at(7.0)), Err(none)];
    let from = sweep::monotone_in_lead_time(&lead(), "slow", &[7.0, 14.0], &mut plans).unwrap();
    assert_eq!(from, vec![None, None]);
    assert!(plans[1].is_err());
}

/// 0 and 7 days both cost 1,600 at best (slow arrives by week 1). The 0-day
/// optimum, 1,600, is a lower bound for every longer lead time: a 7-day plan
/// of 1,600 reported with a weak bound (1,000) is proven optimal by it, and
/// the 14-day plan of 1,700 with a bound of 1,500 gets the gap
/// (1,700 - 1,600) / 1,700.
#[test]
fn a_shorter_lead_times_bound_bounds_the_longer_ones() {
    let zero = plan_at(0.0);
    assert_eq!((zero.status, zero.total_cost), (PlanStatus::Optimal, 1600));
    let mut seven = plan_at(7.0);
    assert_eq!(seven.total_cost, 1600);
    seven.status = PlanStatus::Feasible;
    seven.best_bound = Some(1000.0);
    seven.gap = 0.6 / 1.6;
    let mut fourteen = plan_at(14.0);
    assert_eq!(fourteen.total_cost, 1700);
    fourteen.status = PlanStatus::Feasible;
    fourteen.best_bound = Some(1500.0);
    fourteen.gap = 200.0 / 1700.0;
    let mut plans = vec![Ok(fourteen), Ok(zero), Ok(seven)];
    let from =
        sweep::monotone_in_lead_time(&lead(), "slow", &[14.0, 0.0, 7.0], &mut plans).unwrap();
    assert_eq!(from, vec![None, None, None]);
    let plans: Vec<_> = plans.into_iter().map(Result::unwrap).collect();
    assert_eq!(plans[2].status, PlanStatus::Optimal);
    assert_eq!(plans[2].gap, 0.0);
    assert_eq!(plans[0].status, PlanStatus::Feasible);
    assert!(
        (plans[0].gap - 100.0 / 1700.0).abs() < 1e-12,
        "{}",
        plans[0].gap
    );
    assert_eq!(plans[0].best_bound, Some(1600.0));
}

/// A point not proven optimal is flagged in every output: its gap in the
/// table, CSV and JSON, a note under the table, a hollow circle on the chart.
#[test]
fn points_not_proven_optimal_are_flagged_everywhere() {
    let mut s = lead_time_sweep();
    s.points[2].status = PointStatus::Feasible;
    s.points[2].gap = Some(0.05);
    s.points[2].plan_from = Some(21.0);
    let text = sweep::render_text(&s);
    let rows: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows[3],
        "14 feasible 5.00% 17.00 1.70 1.00 10 plan of 21 days"
    );
    assert_eq!(rows[4], "21 optimal 18.00 1.80 2.00 20");
    assert!(
        text.contains("NOT PROVEN OPTIMAL at 1 of 5 points"),
        "{text}"
    );
    let csv = sweep::render_csv(&s);
    assert_eq!(
        csv.lines().nth(3),
        Some("14,feasible,0.05,1700,170.0000,100,10,21,")
    );
    let json: Value = serde_json::from_str(&sweep::render_json(&s)).unwrap();
    assert_eq!(json["points"][2]["gap"], 0.05);
    assert_eq!(json["points"][2]["plan_from"], 21.0);
    assert_eq!(json["points"][3]["gap"], 0.0);
    assert!(json["points"][3].get("plan_from").is_none());
    let svg = chart::render_svg(&s);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed");
    let points: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("point"))
        .collect();
    assert_eq!(points.len(), 5);
    let hollow: Vec<_> = points
        .iter()
        .filter(|n| n.attribute("data-proven") == Some("false"))
        .collect();
    assert_eq!(hollow.len(), 1);
    assert_eq!(hollow[0].attribute("fill"), Some("white"));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("unproven-note"))
            .count(),
        1
    );
}

/// A lead time as long as the horizon (4 weeks) or longer makes one model: nothing
/// ordered from the supplier arrives within the horizon. A sweep far past it plans that
/// model once, and every point from 28 days on reads as the 28-day one. Before, each
/// whole number of weeks was planned as its own model: a sweep to 100,000 days planned 50
/// identical models.
#[test]
fn lead_times_past_the_horizon_are_planned_once() {
    let spec = SweepSpec {
        quantity: Quantity::LeadTime {
            supplier: "slow".into(),
        },
        from: 0.0,
        to: 7_000.0,
        points: 50,
        sku: "p".into(),
    };
    let mut planned = 0;
    let s = run_sweep(&lead(), &spec, &default_options(), &mut |_, total| {
        planned = total
    })
    .unwrap();
    assert!(planned <= 5, "{planned} models planned");
    assert!(s
        .points
        .iter()
        .filter(|p| p.x >= 28.0)
        .all(|p| p.total_cost == Some(1900)));
}

/// A lead-time sweep's default number of points (one per day, at most 50) for a range
/// wider than a usize: the day count saturated the conversion and one more overflowed,
/// a panic in a debug build and `a sweep takes 2 to 500 points, got 0` (points the user
/// never gave) in a release one. It is 50 points, as for any range over 49 days.
#[test]
fn a_lead_time_sweep_over_a_huge_range_takes_fifty_points() {
    let mut env = Mem::default();
    env.0.insert("lead.toml".into(), LEAD.into());
    let out = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from 0 --to 1e300 --json",
    )
    .unwrap();
    let json: Value = serde_json::from_str(&out).unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 50);
    assert_eq!(points[0]["x"], 0.0);
    // Slow delivers within the horizon only at 0 days; every longer lead time is past
    // the horizon's four weeks: two models.
    assert_eq!(env.1, 2);
    // A range under a day is refused as what it is, days that are not whole (it was
    // swept as its one whole day, 0, after a QA pass found it refused as `got 1` point).
    let e = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from 0.2 --to 0.4 --json --svg under.svg",
    )
    .unwrap_err();
    assert!(
        e.contains("--from (0.2) must be a whole number of days"),
        "{e}"
    );
    assert!(!env.0.contains_key("under.svg"));
}

/// More points than whole values in the range give each whole value once: a demand
/// sweep from 1 to 3 units in 10 points has three rows, 1, 2 and 3, where it had ten
/// (1, 1, 1, 2, 2, 2, 2, 3, 3, 3: the same plans again).
#[test]
fn more_points_than_whole_values_give_each_value_once() {
    let mut env = Mem::default();
    env.0.insert("lead.toml".into(), LEAD.into());
    let out = cli(
        &mut env,
        "sweep lead.toml --demand p --from 1 --to 3 --points 10 --json",
    )
    .unwrap();
    let json: Value = serde_json::from_str(&out).unwrap();
    let xs: Vec<f64> = json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["x"].as_f64().unwrap())
        .collect();
    assert_eq!(xs, [1.0, 2.0, 3.0]);
    let out = cli(
        &mut env,
        "sweep lead.toml --lead-time slow --from 0 --to 2 --points 9 --csv",
    )
    .unwrap();
    assert_eq!(
        out.lines().count(),
        1 + 3,
        "a header and days 0, 1, 2:\n{out}"
    );
}
