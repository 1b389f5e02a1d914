//! The `what_if` example run as a process, exactly as `docs/what-if.md` runs it: on the
//! shipped sample scenarios (`kettle-c2m.toml` is the shared contract's sample). Its
//! `--json` and `--csv` output is checked against plans solved directly with
//! `c2m_planner`, and the threshold advice against a value worked out on paper.
//!
//! The example is built by the test itself (`common::example_binary`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use c2m_planner::whatif::{default_options, plan_scenario, scan_options};
use c2m_planner::{PlanStatus, Scenario};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn example() -> PathBuf {
    crate::common::example_binary("what_if")
}

/// Runs the example in the repository root (the paths of `docs/what-if.md` are relative to it).
fn what_if(args: &[&str]) -> Output {
    Command::new(example())
        .current_dir(ROOT)
        .args(args)
        .output()
        .expect("the example runs")
}

fn stdout_ok(args: &[&str]) -> String {
    let out = what_if(args);
    assert!(
        out.status.success(),
        "what_if {args:?} exited {:?}:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn scenario(path: &str) -> Scenario {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    Scenario::from_toml_str(&text).unwrap()
}

const KETTLE: &str = "examples/scenarios/kettle-c2m.toml";

/// The advice of `docs/what-if.md` on the kettle, before any further flag.
const KETTLE_ADVICE: [&str; 10] = [
    "advise",
    KETTLE,
    "--sku",
    "kettle-17-white",
    "--price",
    "49",
    "--deposit",
    "10",
    "--margin",
    "0.15",
];

/// [`KETTLE_ADVICE`] with `more` flags.
fn kettle_advice(more: &[&'static str]) -> Vec<&'static str> {
    [&KETTLE_ADVICE[..], more].concat()
}
const OVERLAY: &str = "examples/scenarios/kettle-what-if.toml";
const INFEASIBLE: &str = "examples/scenarios/infeasible-capacity.toml";

/// The kettle's variants from `kettle-what-if.toml`, edited by hand.
fn variants_by_hand(base: &Scenario) -> Vec<(&'static str, Scenario)> {
    let edit = |f: &dyn Fn(&mut Scenario)| {
        let mut s = base.clone();
        f(&mut s);
        s
    };
    vec![
        ("base", base.clone()),
        (
            "cheap-steel",
            edit(&|s| s.suppliers[0].offers[0].breaks[1].unit_price = 1900.0),
        ),
        (
            "no-wenzhou",
            edit(&|s| {
                s.suppliers.retain(|x| x.id != "wenzhou-pack");
                s.material_deadline_days = Some(21);
            }),
        ),
        ("white-up-20", edit(&|s| s.products[0].demand = 1440)),
        (
            "cixi-short",
            edit(&|s| {
                s.factories[0].capacity_hours = 120.0;
                s.factories[1].lines.retain(|l| l.sku != "kettle-12-travel");
            }),
        ),
        (
            "steel-holding",
            edit(&|s| s.materials[0].holding_cost = 360.0),
        ),
    ]
}

fn check_compare_json(base_path: &str) {
    let json: Value =
        serde_json::from_str(&stdout_ok(&["compare", base_path, OVERLAY, "--json"])).unwrap();
    let cols = json["columns"].as_array().unwrap();
    let by_hand = variants_by_hand(&scenario(base_path));
    assert_eq!(cols.len(), by_hand.len());
    for (col, (name, s)) in cols.iter().zip(&by_hand) {
        assert_eq!(col["name"], *name);
        let p = plan_scenario(s, &default_options()).unwrap();
        assert_eq!(col["status"], p.status.to_string(), "{name}");
        if p.status == PlanStatus::Infeasible {
            assert!(col["total_cost"].is_null(), "{name}: {col}");
            assert!(col["cost_breakdown"].is_null(), "{name}: {col}");
            let short: Vec<(String, i64)> = p
                .shortfalls
                .iter()
                .map(|f| (f.sku.clone(), f.short_by))
                .collect();
            let got: Vec<(String, i64)> = col["shortfalls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["sku"].as_str().unwrap().to_string(),
                        f["short_by"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, short, "{name}");
            continue;
        }
        assert_eq!(col["total_cost"], p.total_cost, "{name}");
        let b = &col["cost_breakdown"];
        assert_eq!(b["production"], p.cost_breakdown.production, "{name}");
        assert_eq!(b["setup"], p.cost_breakdown.setup, "{name}");
        assert_eq!(b["purchase"], p.cost_breakdown.purchase, "{name}");
        assert_eq!(b["ordering"], p.cost_breakdown.ordering, "{name}");
        assert_eq!(b["holding"], p.cost_breakdown.holding, "{name}");
        for (sku, v) in p.cost_per_unit.iter() {
            let got = col["cost_per_unit"][sku].as_f64().unwrap();
            assert!((got - v).abs() < 1e-6, "{name} {sku}: {got} vs {v}");
        }
    }
    // On paper: without wenzhou-pack no small box can be bought, so all 400
    // travel kettles fall short.
    assert_eq!(cols[2]["status"], "infeasible");
    assert_eq!(
        cols[2]["shortfalls"],
        serde_json::json!([{ "sku": "kettle-12-travel", "short_by": 400 }])
    );
}

#[test]
fn compare_json_on_the_samples() {
    check_compare_json(KETTLE);
}

#[test]
fn compare_table_and_csv() {
    let table = stdout_ok(&["compare", KETTLE, OVERLAY]);
    let status = table.lines().find(|l| l.starts_with("status")).unwrap();
    let cells: Vec<&str> = status.split_whitespace().skip(1).collect();
    assert_eq!(cells[2], "INFEASIBLE", "{table}");
    assert!(table.contains("short kettle-12-travel"), "{table}");

    let csv = stdout_ok(&["compare", KETTLE, OVERLAY, "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let base = plan_scenario(&scenario(KETTLE), &default_options()).unwrap();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(row[at("scenario")], "base");
    assert_eq!(row[at("total_cost")], base.total_cost.to_string());
    let row: Vec<&str> = lines[3].split(',').collect();
    assert_eq!(row[at("scenario")], "no-wenzhou");
    assert_eq!(row[at("status")], "infeasible");
    assert_eq!(row[at("total_cost")], "");
    assert_eq!(row[at("shortfalls")], "kettle-12-travel:400");
}

/// A compare whose points have no plan within a time limit too short for any exits 3
/// and says so without naming `--scan-limit`, which only an advice has.
#[test]
fn compare_without_plans_exits_3_naming_no_scan_limit() {
    let out = what_if(&["compare", KETTLE, OVERLAY, "--time-limit", "1e-9"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(c2m_planner::whatif::cli::EXIT_NO_PLAN)),
        "{stderr}"
    );
    assert!(stderr.contains("some points have no plan"), "{stderr}");
    assert!(!stderr.contains("--scan-limit"), "{stderr}");
}

/// The sweep of `docs/what-if.md`: 50 points, 100 to 5000 white kettles, with a chart.
#[test]
fn kettle_sweep_writes_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("sweep.svg");
    let svg_arg = svg.to_str().unwrap();
    let started = std::time::Instant::now();
    let csv = stdout_ok(&[
        "sweep",
        KETTLE,
        "--demand",
        "kettle-17-white",
        "--from",
        "100",
        "--to",
        "5000",
        "--points",
        "50",
        "--svg",
        svg_arg,
        "--csv",
    ]);
    eprintln!(
        "what_if sweep of 50 points: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Columns by name: the CSV says which is which in its header.
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (status, total, shortfalls) = (col("status"), col("total_cost"), col("shortfalls"));
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 50);
    // A few points against plans solved directly with the same options.
    let base = scenario(KETTLE);
    for i in [0, 9, 20, 26] {
        let x: i64 = rows[i][0].parse().unwrap();
        assert_eq!(x, 100 + 100 * i as i64);
        let mut s = base.clone();
        s.products[0].demand = x;
        let p = plan_scenario(&s, &scan_options()).unwrap();
        assert_eq!(rows[i][status], p.status.to_string(), "at {x}");
        assert_eq!(rows[i][total], p.total_cost.to_string(), "at {x}");
    }
    // White demand above 2701 cannot be met (see tests/whatif.rs in the planner
    // for the hours worked out on paper): 27 points have costs, 23 do not.
    let infeasible = rows.iter().filter(|r| r[status] == "infeasible").count();
    assert_eq!(infeasible, 23);
    assert!(rows
        .iter()
        .filter(|r| r[status] == "infeasible")
        .all(|r| r[total].is_empty() && !r[shortfalls].is_empty()));

    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the chart is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let count = |tag: &str, class: &str| {
        doc.descendants()
            .filter(|n| n.tag_name().name() == tag && n.attribute("class") == Some(class))
            .count()
    };
    assert_eq!(count("circle", "point"), 27);
    assert_eq!(count("path", "infeasible"), 23);
    assert_eq!(count("line", "break"), 7);
    assert!(count("polyline", "curve") >= 1);
}

/// One product, one material: cost per unit at V mugs is 100 + 10 000 / V +
/// clay, clay 50/kg below 200 kg and 40 from 200 kg on (all units). With
/// price 3.00 and margin 49% the cost may be at most 1.53 (153 minor units).
/// Up to 160 mugs it is 150 + 10 000 / V, at least 212.5; from 161 to 199
/// (buying 200 kg at 40 is cheaper) 100 + 18 000 / V, more than 190; from 200
/// on 140 + 10 000 / V, which is at most 153 once V is at least 769.2: the
/// minimum viable batch is 770.
const MUG: &str = include_str!("../../crates/c2m-planner/tests/data/mug.toml");

#[test]
fn advice_on_paper_and_on_the_kettle() {
    let dir = tempfile::tempdir().unwrap();
    let mug = dir.path().join("mug.toml");
    std::fs::write(&mug, MUG).unwrap();
    let out = stdout_ok(&[
        "advise",
        mug.to_str().unwrap(),
        "--sku",
        "mug",
        "--price",
        "3",
        "--deposit",
        "0.3",
        "--margin",
        "0.49",
        "--max",
        "1000",
        "--json",
    ]);
    let a: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["minimum_viable"]["volume"], 770);
    assert_eq!(a["below_minimum"]["volume"], 769);
    assert_eq!(a["ladder"][0]["mark"]["volume"], 200);

    // The advice of `docs/what-if.md` on the kettle: whatever volume it names, a plan
    // solved directly must leave the margin there and not one unit below.
    let out = stdout_ok(&kettle_advice(&["--json"]));
    let a: Value = serde_json::from_str(&out).unwrap();
    let target = 4_900.0 * 0.85;
    assert!((a["target_cost"].as_f64().unwrap() - target).abs() < 1e-6);
    let v = a["minimum_viable"]["volume"]
        .as_i64()
        .expect("a viable volume for the example of docs/what-if.md");
    let cost_at = |volume: i64| {
        let mut s = scenario(KETTLE);
        s.products[0].demand = volume;
        let p = plan_scenario(&s, &scan_options()).unwrap();
        p.cost_per_unit.get("kettle-17-white").unwrap()
    };
    assert!(cost_at(v) <= target, "at {v}");
    assert!(cost_at(v - 1) > target, "at {}", v - 1);
    let text = stdout_ok(&KETTLE_ADVICE);
    assert!(
        text.contains(&format!("minimum viable batch: {v} units")),
        "{text}"
    );
}

#[test]
fn advice_ends_at_its_scan_limit_and_says_what_it_did_not_reach() {
    // Every unit from 1 to 5,000 on the kettle is thousands of plans; a scan limit of a
    // fiftieth of a second reaches a few of them at most, lists the rest as not reached,
    // and exits 3 (complete but for those volumes), as GetAdvice does at its deadline.
    let args = kettle_advice(&["--step", "1", "--scan-limit", "0.02"]);
    let started = std::time::Instant::now();
    let out = what_if(&args);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the scan did not stop at its limit"
    );
    assert_eq!(
        out.status.code(),
        Some(i32::from(c2m_planner::whatif::cli::EXIT_NO_PLAN)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not reached by --scan-limit"), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("NOT REACHED before the scan's end"), "{text}");
    let json_args = kettle_advice(&["--step", "1", "--scan-limit", "0.02", "--json"]);
    let a: Value = serde_json::from_slice(&what_if(&json_args).stdout).unwrap();
    let last = a["not_reached"]
        .as_array()
        .and_then(|r| r.last())
        .expect("volumes not reached");
    assert_eq!(last["last"], 5000, "{a}");

    let refused = what_if(&kettle_advice(&["--scan-limit", "0"]));
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--scan-limit"));
}

#[test]
fn scenario_tools_on_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    for file in [KETTLE, INFEASIBLE, WEEKS] {
        let original = scenario(file);
        let out = stdout_ok(&["scenario", "validate", file]);
        assert!(out.starts_with(&format!("{file}: valid (")), "{out}");
        let summary = stdout_ok(&["scenario", "summary", file]);
        assert!(
            summary.starts_with(&format!("scenario {} ", original.name)),
            "{summary}"
        );
        for p in &original.products {
            assert!(summary.contains(&p.sku), "{summary}");
        }
        let json = dir.path().join("s.json");
        let toml = dir.path().join("s.toml");
        stdout_ok(&["scenario", "convert", file, json.to_str().unwrap()]);
        stdout_ok(&[
            "scenario",
            "convert",
            json.to_str().unwrap(),
            toml.to_str().unwrap(),
        ]);
        let from_json = Scenario::from_json_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let from_toml = Scenario::from_toml_str(&std::fs::read_to_string(&toml).unwrap()).unwrap();
        assert_eq!(from_json, original, "{file}");
        assert_eq!(from_toml, original, "{file}");
    }
}

#[test]
fn errors_go_to_stderr_with_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("bad.toml");
    std::fs::write(
        &overlay,
        "[[variants]]\nname = \"typo\"\nchanges = [ { set = \"factories.cixi-1.capacity_hrs\", value = 1.0 } ]\n",
    )
    .unwrap();
    let out = what_if(&["compare", KETTLE, overlay.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains(r#"variant "typo", change 1"#), "{err}");
    assert!(err.contains("no field `capacity_hrs`"), "{err}");
}

const WEEKS: &str = "examples/scenarios/kettle-weeks.toml";

/// The lead-time sweep of `docs/what-if.md` on the eight-week kettle cycle, cut to three
/// points and a short time limit for a debug build. Whatever plan the solver finds, some
/// lateness is forced, worked out from the file: `yuyao-plastics` is the only seller of
/// `abs-white` (0.11 kg a white kettle, 0.08 a travel kettle; 25 kg on hand).
/// - 18 days are 3 weeks: nothing ordered arrives before week 3, so of the 300 whites
///   due by week 2 at most floor(25 / 0.11) = 227 are made in time: at least 73 late.
/// - 35 days are 5 weeks: nothing arrives before week 5; the 200 travel kettles due in
///   week 3 may not be late and take 16 kg, leaving 9 kg for 81 whites: at least 219 late
///   at the end of weeks 2 and 3 and 669 at the end of week 4, 1,107 in all.
#[test]
fn lead_time_sweep_on_kettle_weeks() {
    let csv = stdout_ok(&[
        "sweep",
        WEEKS,
        "--lead-time",
        "yuyao-plastics",
        "--from",
        "0",
        "--to",
        "35",
        "--points",
        "3",
        "--time-limit",
        "4",
        "--csv",
    ]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "x,status,gap,total_cost,cost_per_unit:kettle-17-white,lateness,late_units,\
             plan_from,shortfalls"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let days: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(days, ["0", "18", "35"]);
    for (row, at_least) in rows.iter().zip([0, 73, 1107]) {
        assert_ne!(row[1], "infeasible", "{row:?}");
        let late: i64 = row[6].parse().unwrap();
        let lateness: i64 = row[5].parse().unwrap();
        assert!(late >= at_least, "{row:?}: late {late} < {at_least}");
        // 800 (8.00 CNY) a unit a week late, for both kettles that may be late.
        assert_eq!(lateness, late * 800, "{row:?}");
    }
}

/// The `plan` example refuses an option given twice, naming it, and writes nothing: the
/// last one given was taken without a word, so `--svg a.svg --svg b.svg` wrote b.svg
/// alone and a planner looked for a.svg.
#[test]
fn plan_example_refuses_an_option_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.svg");
    let b = dir.path().join("b.svg");
    let plan = crate::common::example_binary("plan");
    let out = Command::new(plan)
        .current_dir(ROOT)
        .args([
            KETTLE,
            "--svg",
            a.to_str().unwrap(),
            "--svg",
            b.to_str().unwrap(),
        ])
        .output()
        .expect("the example runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--svg is given twice"), "{err}");
    assert!(!a.exists() && !b.exists());
}

/// An output that is the input under another spelling is refused as the same spelling
/// is (`what_if` sweep and convert, and the `plan` example's `--svg`, which had no check at
/// all): `./k.toml` and `k.toml`, a path through its directory, a hard link. The paths were
/// compared as text, so `sweep k.toml ... --svg ./k.toml` wrote the chart over the
/// scenario. A new file beside the scenario is still written.
#[test]
fn an_output_over_its_input_by_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kettle = std::fs::read_to_string(Path::new(ROOT).join(KETTLE)).unwrap();
    std::fs::write(dir.path().join("k.toml"), &kettle).unwrap();
    std::fs::hard_link(dir.path().join("k.toml"), dir.path().join("link.toml")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let run = |args: &[&str]| {
        Command::new(example())
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("the example runs")
    };
    let sweep = |svg: &str| {
        run(&[
            "sweep",
            "k.toml",
            "--demand",
            "kettle-17-white",
            "--from",
            "100",
            "--to",
            "200",
            "--points",
            "2",
            "--svg",
            svg,
        ])
    };
    for svg in ["./k.toml", "sub/../k.toml", "link.toml"] {
        let out = sweep(svg);
        assert_eq!(out.status.code(), Some(1), "--svg {svg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("would write the chart over the scenario"),
            "{svg}: {err}"
        );
    }
    for output in ["./k.toml", "link.toml"] {
        let out = run(&["scenario", "convert", "k.toml", output]);
        assert_eq!(out.status.code(), Some(1), "convert to {output}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("would be written over its own input"),
            "{output}: {err}"
        );
    }
    // The plan example's schedule likewise.
    let plan = crate::common::example_binary("plan");
    for svg in ["k.toml", "./link.toml"] {
        let out = Command::new(&plan)
            .current_dir(dir.path())
            .args(["k.toml", "--svg", svg])
            .output()
            .expect("the example runs");
        assert_eq!(out.status.code(), Some(1), "plan --svg {svg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("would write the schedule over the scenario"),
            "{svg}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("k.toml")).unwrap(),
        kettle
    );
    let out = sweep("sub/chart.svg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("sub/chart.svg").exists());
}

/// `plan` and `what_if` write their report once: into a full disk (`/dev/full`, as
/// `> file` on a full file system) that is an error, exit 1 naming standard output,
/// where both ignored every write error and exited 0 with nothing written; a reader that
/// goes away (`| head`) is still no error, and `plan` still exits 2 for an infeasible
/// scenario when its reader has gone.
#[test]
fn a_report_that_cannot_be_written_is_an_error_and_a_closed_pipe_is_not() {
    let cases: [(&str, Vec<&str>, i32); 3] = [
        ("plan", vec![KETTLE], 0),
        ("plan", vec![INFEASIBLE], 2),
        ("what_if", vec!["scenario", "summary", KETTLE], 0),
    ];
    for (example, args, code) in cases {
        let run = |stdout: std::process::Stdio| {
            Command::new(crate::common::example_binary(example))
                .current_dir(ROOT)
                .args(&args)
                .stdout(stdout)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the example starts")
                .wait_with_output()
                .expect("the example runs")
        };
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = run(full.into());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{example} {args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output"),
            "{example} {args:?}: {err}"
        );
        let out = run(crate::common::closed_pipe());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{example} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{example} {args:?}: {err}");
    }
}
