//! `plan --json` for version 2 scenarios, checked field by field against the
//! contract (`docs/scenario-format.md`, "Version 2"): the horizon, the
//! period of every run, the order and arrival periods of every purchase,
//! stock per material per period, late units, completion, the period of a
//! shortfall, lateness in the breakdown, leftover as the last period's
//! stock. Every number the contract defines is recomputed here from the
//! scenario and the plan's own runs and purchases (not read back from the
//! planner's other fields), and the rendered JSON is parsed back with
//! serde_json. Version 1 answers keep their shape.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use c2m_planner::{report::render_json, Plan, Scenario, SolveOptions};
use serde_json::{json, Value};

const WEEKS: &str = include_str!("../../../examples/scenarios/kettle-weeks.toml");
const KETTLE: &str = include_str!("../../../examples/scenarios/kettle-c2m.toml");

/// Worked out by hand in the file's comment: all 20 units of `p` in week 3
/// from one `slow` order placed in week 1, 10 late at the end of weeks 1 and
/// 2, total 2,440.
const TINY: &str = include_str!("data/tiny-weeks.toml");

/// `r` may not be late, but its material arrives two weeks after the order
/// at the earliest: the 5 units due in week 0 cannot be made in time.
const INFEASIBLE: &str = r#"
name = "too-soon"
currency = "CNY"

[horizon]
periods = 4
period_days = 7

[[products]]
sku = "r"
due = [ { period = 0, quantity = 5 }, { period = 3, quantity = 5 } ]
bom = { m = 1.0 }

[[materials]]
id = "m"
unit = "kg"
on_hand = 0.0

[[factories]]
id = "f"
capacity_hours = 100.0

[[factories.lines]]
sku = "r"
unit_cost = 100.0
hours_per_unit = 1.0

[[suppliers]]
id = "slow"
lead_days = 8

[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
"#;

fn options(time_limit: u64) -> SolveOptions {
    SolveOptions {
        time_limit: Duration::from_secs(time_limit),
        ..SolveOptions::default()
    }
}

/// The plan, its JSON text parsed as a value, after checking that the text
/// parses back into the same plan.
fn plan_and_json(toml: &str, opts: &SolveOptions) -> (Scenario, Plan, Value) {
    let s = Scenario::from_toml_str(toml).unwrap();
    let v = s.clone().validate().unwrap();
    let plan = common::solve_with(&v, opts);
    let text = render_json(&plan);
    let value: Value = serde_json::from_str(&text).expect("the JSON is JSON");
    let back: Plan = serde_json::from_str(&text).expect("the JSON parses back into a plan");
    assert_same(&serde_json::to_value(&back).unwrap(), &value, "plan");
    (s, plan, value)
}

/// JSON values equal up to the last bit of a float: serde_json parses
/// decimals by its fast path, which may differ from the printed value in
/// the last place (17 significant digits are written, not all are read).
fn assert_same(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                "{at}: {x} != {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths differ");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_same(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}: keys differ"
            );
            for (k, x) in x {
                assert_same(x, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn int(v: &Value, what: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {v}"))
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn period(v: &Value, what: &str, periods: usize) -> usize {
    let p = v
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not a period: {v}")) as usize;
    assert!(p < periods, "{what} = {p} is outside 0..{periods}");
    p
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Checks every version 2 field of `j` against the contract's definitions,
/// recomputed from the scenario and the runs and purchases in `j`.
fn check_contract(s: &Scenario, j: &Value) {
    let h = s.horizon.expect("a v2 scenario");
    let t_n = h.periods as usize;
    let d = h.period_days;
    assert_eq!(
        j["horizon"],
        json!({"periods": h.periods, "period_days": h.period_days})
    );

    // Runs: factory, sku, whole quantity, period in the horizon.
    let mut made: BTreeMap<&str, Vec<i64>> = s
        .products
        .iter()
        .map(|p| (p.sku.as_str(), vec![0; t_n]))
        .collect();
    let mut used: BTreeMap<&str, Vec<f64>> = s
        .materials
        .iter()
        .map(|m| (m.id.as_str(), vec![0.0; t_n]))
        .collect();
    let (mut production, mut setup) = (0.0, 0.0);
    for r in j["runs"].as_array().expect("runs is a list") {
        let fac = r["factory"].as_str().unwrap();
        let sku = r["sku"].as_str().unwrap();
        let q = int(&r["quantity"], "run quantity");
        assert!(q > 0, "a run of {q} units");
        let t = period(&r["period"], "run period", t_n);
        let line = s
            .factories
            .iter()
            .find(|f| f.id == fac)
            .and_then(|f| f.lines.iter().find(|l| l.sku == sku))
            .unwrap_or_else(|| panic!("no line {fac}/{sku}"));
        production += line.unit_cost * q as f64;
        setup += line.setup_cost;
        made.get_mut(sku).unwrap()[t] += q;
        let product = s.products.iter().find(|p| p.sku == sku).unwrap();
        for (m, a) in &product.bom {
            used.get_mut(m.as_str()).unwrap()[t] += a * q as f64;
        }
    }

    // Purchases: ordered in `period`, arriving `ceil(lead_days / D)` later,
    // inside the horizon.
    let mut arriving: BTreeMap<&str, Vec<f64>> = s
        .materials
        .iter()
        .map(|m| {
            let mut a = vec![0.0; t_n];
            for r in &m.receipts {
                a[r.period as usize] += r.quantity;
            }
            (m.id.as_str(), a)
        })
        .collect();
    let (mut purchase, mut ordering) = (0.0, 0.0);
    for p in j["purchases"].as_array().expect("purchases is a list") {
        let sup = s
            .suppliers
            .iter()
            .find(|x| x.id == p["supplier"].as_str().unwrap())
            .expect("a known supplier");
        let mat = p["material"].as_str().unwrap();
        let offer = sup.offers.iter().find(|o| o.material == mat).unwrap();
        let q = num(&p["quantity"], "purchase quantity");
        let price = num(&p["unit_price"], "unit price");
        assert!(p.get("packs").is_some(), "purchase without packs: {p}");
        let ordered = period(&p["period"], "purchase period", t_n);
        let arrives = period(&p["arrives"], "arrival period", t_n);
        let lead = (sup.lead_days + d - 1) / d;
        assert_eq!(arrives, ordered + lead as usize, "{p}");
        arriving.get_mut(mat).unwrap()[arrives] += q;
        purchase += q * price;
        ordering += offer.order_cost;
    }

    // Stock: per material, in file order, T end-of-period quantities.
    let stock = j["stock"].as_object().expect("stock is an object");
    let ids: Vec<&str> = stock.keys().map(|k| k.as_str()).collect();
    let mut expected_ids: Vec<&str> = s.materials.iter().map(|m| m.id.as_str()).collect();
    expected_ids.sort_unstable(); // serde_json's map is sorted
    assert_eq!(ids, expected_ids);
    let mut holding = 0.0;
    for m in &s.materials {
        let row = stock[&m.id].as_array().expect("a list per material");
        assert_eq!(row.len(), t_n, "stock of {}", m.id);
        let mut level = m.on_hand;
        for (t, cell) in row.iter().enumerate() {
            level += arriving[m.id.as_str()][t] - used[m.id.as_str()][t];
            let got = num(cell, "stock");
            assert!(
                close(got, level),
                "stock of {} at the end of {t}: {got}, expected {level}",
                m.id
            );
            assert!(got >= -1e-9, "negative stock of {} in {t}", m.id);
            holding += m.holding_cost * level.max(0.0);
        }
        // leftover is the stock at the end of the last period.
        assert!(close(num(&j["leftover"][&m.id], "leftover"), level));
    }

    // Late units: every product and period with a backlog, and no other.
    let mut late = Vec::new();
    let mut lateness = 0.0;
    let mut completion = serde_json::Map::new();
    for p in &s.products {
        let mut due = vec![0; t_n];
        for x in &p.due {
            due[x.period as usize] += x.quantity;
        }
        let total: i64 = due.iter().sum();
        let (mut cd, mut cm) = (0, 0);
        let mut done = None;
        for t in 0..t_n {
            cd += due[t];
            cm += made[p.sku.as_str()][t];
            if cd > cm {
                late.push(json!({"sku": p.sku, "period": t, "units": cd - cm}));
                lateness += p.late_cost.unwrap_or(0.0) * (cd - cm) as f64;
            }
            if total > 0 && done.is_none() && cm >= total {
                done = Some(t);
            }
        }
        completion.insert(p.sku.clone(), json!(done));
    }
    let mut got_late = j["late"].as_array().expect("late is a list").clone();
    let key = |v: &Value| (v["sku"].to_string(), v["period"].as_u64());
    got_late.sort_by_key(key);
    late.sort_by_key(key);
    assert_eq!(got_late, late, "late units");
    assert_eq!(j["completion"], Value::Object(completion), "completion");

    // The breakdown: six parts, each rounded on its own.
    let b = &j["cost_breakdown"];
    let parts = [
        ("production", production),
        ("setup", setup),
        ("purchase", purchase),
        ("ordering", ordering),
        ("holding", holding),
        ("lateness", lateness),
    ];
    assert_eq!(b.as_object().unwrap().len(), 6, "{b}");
    for (name, exact) in parts {
        assert_eq!(int(&b[name], name), exact.round() as i64, "{name}");
    }
    let total: f64 = parts.iter().map(|(_, v)| v).sum();
    assert_eq!(int(&j["total_cost"], "total_cost"), total.round() as i64);

    for sf in j["shortfalls"].as_array().expect("shortfalls is a list") {
        int(&sf["short_by"], "short_by");
        period(&sf["period"], "shortfall period", t_n);
    }
}

#[test]
fn the_hand_made_plan_is_exactly_the_contract() {
    let (s, _, j) = plan_and_json(TINY, &options(30));
    check_contract(&s, &j);
    assert_eq!(j["status"], "optimal");
    assert_eq!(j["horizon"], json!({"periods": 4, "period_days": 7}));
    assert_eq!(
        j["runs"],
        json!([{"factory": "f", "sku": "p", "quantity": 20, "period": 3}])
    );
    assert_eq!(
        j["purchases"],
        json!([{"supplier": "slow", "material": "m", "quantity": 20.0, "unit_price": 10.0,
                "packs": null, "period": 1, "arrives": 3}])
    );
    assert_eq!(
        j["stock"],
        json!({"m": [0.0, 0.0, 0.0, 0.0], "box": [5.0, 5.0, 25.0, 5.0]})
    );
    assert_eq!(
        j["late"],
        json!([{"sku": "p", "period": 1, "units": 10}, {"sku": "p", "period": 2, "units": 10}])
    );
    assert_eq!(j["completion"], json!({"p": 3, "q": null}));
    assert_eq!(
        j["cost_breakdown"],
        json!({"production": 2000, "setup": 0, "purchase": 200, "ordering": 0,
               "holding": 40, "lateness": 200})
    );
    assert_eq!(j["total_cost"], 2440);
    assert_eq!(j["leftover"], json!({"m": 0.0, "box": 5.0}));
    assert_eq!(j["shortfalls"], json!([]));
}

#[test]
fn kettle_weeks_answers_in_the_contract_format() {
    // A debug build of microlp does not prove this one optimal quickly; the
    // format is the same for the best plan found in a few seconds.
    let (s, plan, j) = plan_and_json(WEEKS, &options(8));
    check_contract(&s, &j);
    assert_ne!(j["status"], "infeasible");
    assert_eq!(j["horizon"], json!({"periods": 8, "period_days": 7}));
    // Every due unit is made, and the travel kettle (no late_cost) on time.
    assert_eq!(j["shortfalls"], json!([]));
    assert!(j["late"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["sku"] != "kettle-12-travel"));
    for (sku, last_due) in [
        ("kettle-17-white", 6),
        ("kettle-17-sage", 5),
        ("kettle-12-travel", 7),
    ] {
        let c = j["completion"][sku].as_u64().expect("completed") as usize;
        assert!(c <= 7, "{sku} completes in {c}");
        if sku == "kettle-12-travel" {
            assert!(c <= last_due);
        }
    }
    // Nothing is made in the week Cixi is closed.
    assert!(plan
        .runs
        .iter()
        .all(|r| !(r.factory == "cixi-1" && r.period == Some(4))));
    // dongguan-pack's 21 days are 3 weeks: ordered in week t, arrives t + 3.
    for p in plan
        .purchases
        .iter()
        .filter(|p| p.supplier == "dongguan-pack")
    {
        assert_eq!(p.arrives, p.period.map(|t| t + 3));
    }
}

#[test]
fn an_infeasible_plan_gives_the_first_period_short() {
    let (s, _, j) = plan_and_json(INFEASIBLE, &options(30));
    check_contract(&s, &j);
    assert_eq!(j["status"], "infeasible");
    assert_eq!(
        j["shortfalls"],
        json!([{"sku": "r", "short_by": 5, "period": 0}])
    );
    // Nothing can arrive before week 2: the 5 units of week 0 are late at
    // least in weeks 0 and 1.
    let late = j["late"].as_array().unwrap();
    assert_eq!(late[0], json!({"sku": "r", "period": 0, "units": 5}));
    assert_eq!(late[1], json!({"sku": "r", "period": 1, "units": 5}));
}

#[test]
fn version_1_answers_keep_their_shape() {
    let (_, _, j) = plan_and_json(KETTLE, &options(30));
    for v2 in ["horizon", "stock", "late", "completion", "time"] {
        assert!(j.get(v2).is_none(), "a v1 plan has `{v2}`");
    }
    for r in j["runs"].as_array().unwrap() {
        assert_eq!(
            r.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["factory", "quantity", "sku"]
        );
    }
    for p in j["purchases"].as_array().unwrap() {
        assert!(p.get("period").is_none() && p.get("arrives").is_none());
    }
    assert_eq!(j["cost_breakdown"]["lateness"], 0);
}
