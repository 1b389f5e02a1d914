//! The scenario format: parsing, the validation rules with their places,
//! round trips, and the sample kettle scenario end to end.

mod common;

use c2m_planner::{greedy_plan, verify_plan, PlanStatus, Scenario, ScenarioError};

const KETTLE: &str = include_str!("../../../examples/scenarios/kettle-c2m.toml");

const SMALL: &str = r#"
name = "phone-case-spring"
currency = "CNY"
material_deadline_days = 21

[[products]]
sku = "case-a"
demand = 1200
bom = { tpu = 0.045, ink = 0.002 }

[[materials]]
id = "tpu"
unit = "kg"
on_hand = 20.0
holding_cost = 150.0

[[materials]]
id = "ink"
unit = "l"
on_hand = 0.0

[[factories]]
id = "dongguan-1"
capacity_hours = 400.0

[[factories.lines]]
sku = "case-a"
unit_cost = 300.0
setup_cost = 50000.0
min_run = 200
hours_per_unit = 0.05
setup_hours = 4.0

[[suppliers]]
id = "tpu-co"
lead_days = 7

[[suppliers.offers]]
material = "tpu"
moq = 25.0
pack_size = 25.0
max_qty = 10000.0
order_cost = 5000.0
breaks = [
  { min_qty = 0.0,   unit_price = 2800.0 },
  { min_qty = 100.0, unit_price = 2600.0 },
  { min_qty = 500.0, unit_price = 2350.0 },
]

[[suppliers]]
id = "ink-co"
lead_days = 3

[[suppliers.offers]]
material = "ink"
breaks = [ { min_qty = 0.0, unit_price = 9000.0 } ]
"#;

fn errors(text: &str) -> Vec<(String, String)> {
    let err = match Scenario::from_toml_str(text) {
        Err(e) => e,
        Ok(s) => s.validate().expect_err("scenario should be rejected"),
    };
    err.field_errors()
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

fn paths(text: &str) -> Vec<String> {
    errors(text).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn the_contract_example_is_valid_and_plans() {
    let v = Scenario::from_toml_str(SMALL).unwrap().validate().unwrap();
    for p in common::solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.runs[0].quantity, 1200);
    }
}

#[test]
fn unknown_field_names_the_field_and_its_place() {
    let text = SMALL.replace(
        "order_cost = 5000.0",
        "order_cost = 5000.0\ncolour = \"red\"",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "suppliers[0].offers[0].colour");
    assert!(e[0].1.contains("unknown field `colour`"), "{}", e[0].1);
}

/// A product without `bom` is refused, not planned as needing no material: the contract
/// marks what may be left out, and a file that lost its `[products.bom]` table was
/// planned cheap and wrong (a QA pass).
#[test]
fn a_product_without_its_bom_is_refused() {
    let text = SMALL.replace("bom = { tpu = 0.045, ink = 0.002 }\n", "");
    assert_ne!(text, SMALL);
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "products[0]");
    assert!(e[0].1.contains("missing field `bom`"), "{}", e[0].1);
    // A product of nothing bought says so.
    let none = SMALL.replace("bom = { tpu = 0.045, ink = 0.002 }", "bom = {}");
    Scenario::from_toml_str(&none).unwrap().validate().unwrap();
}

/// A `max_qty` that is no number is the one error: the pack size beside it is fine (it
/// was refused as "too small for the quantities offered" first).
#[test]
fn an_infinite_max_qty_is_its_own_error_only() {
    let text = SMALL.replace("max_qty = 10000.0", "max_qty = inf");
    assert_eq!(
        paths(&text),
        vec!["suppliers[0].offers[0].max_qty".to_string()]
    );
}

#[test]
fn unknown_top_level_field() {
    let text = format!("horizon = 3\n{SMALL}");
    assert_eq!(paths(&text), vec!["horizon".to_string()]);
}

#[test]
fn wrong_type_names_the_place() {
    let text = SMALL.replace("demand = 1200", "demand = 12.5");
    let e = errors(&text);
    assert_eq!(e[0].0, "products[0].demand");
}

#[test]
fn negative_quantities() {
    let text = SMALL
        .replace("on_hand = 20.0", "on_hand = -1.0")
        .replace("moq = 25.0", "moq = -25.0")
        .replace("demand = 1200", "demand = -3");
    let mut p = paths(&text);
    p.sort();
    assert_eq!(
        p,
        vec![
            "materials[0].on_hand",
            "products[0].demand",
            "suppliers[0].offers[0].moq"
        ]
    );
}

#[test]
fn bom_naming_an_unknown_material() {
    let text = SMALL.replace("ink = 0.002", "inc = 0.002");
    let e = errors(&text);
    assert_eq!(e[0].0, "products[0].bom.inc");
    assert!(e[0].1.contains("unknown material `inc`"));
}

#[test]
fn line_naming_an_unknown_product() {
    let text = SMALL.replace("sku = \"case-a\"\nunit_cost", "sku = \"case-b\"\nunit_cost");
    assert_eq!(paths(&text), vec!["factories[0].lines[0].sku".to_string()]);
}

#[test]
fn unsorted_and_duplicate_breaks() {
    let text = SMALL.replace("min_qty = 100.0", "min_qty = 600.0");
    let e = errors(&text);
    assert_eq!(e[0].0, "suppliers[0].offers[0].breaks[2].min_qty");
    assert!(e[0].1.contains("sorted"), "{}", e[0].1);

    let text = SMALL.replace("min_qty = 500.0", "min_qty = 100.0");
    let e = errors(&text);
    assert_eq!(e[0].0, "suppliers[0].offers[0].breaks[2].min_qty");
    assert!(e[0].1.contains("duplicate"), "{}", e[0].1);
}

/// Finite is not enough: numbers past `MAX_NUMBER` are refused naming their place (an
/// outside client's material with 10^300 on hand at 10^300 a unit to hold made every
/// planning cycle fail), and a scenario with numbers at the bound still plans.
#[test]
fn numbers_past_the_bound_are_refused_and_numbers_at_it_plan() {
    let huge = SMALL
        .replace("on_hand = 20.0", "on_hand = 1e300")
        .replace("holding_cost = 150.0", "holding_cost = 1e300");
    let e = errors(&huge);
    let places: Vec<_> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        places,
        ["materials[0].on_hand", "materials[0].holding_cost"]
    );
    assert!(e[0].1.contains("at most 1e15"), "{}", e[0].1);
    let just_over = SMALL.replace("setup_cost = 50000.0", "setup_cost = 1.0000001e15");
    assert_eq!(paths(&just_over), ["factories[0].lines[0].setup_cost"]);

    // An unused material at the bound, as in the client's catalogue: plans.
    let at_bound = format!(
        "{SMALL}\n[[materials]]\nid = \"spare\"\nunit = \"kg\"\non_hand = {:?}\nholding_cost = {:?}\n",
        c2m_planner::validate::MAX_NUMBER,
        c2m_planner::validate::MAX_NUMBER
    );
    let v = Scenario::from_toml_str(&at_bound)
        .unwrap()
        .validate()
        .unwrap();
    for p in common::solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal, "{}", p.solver);
        verify_plan(&v, &p).unwrap();
    }
}

#[test]
fn duplicate_ids() {
    let dup_material = SMALL.replace("id = \"ink\"", "id = \"tpu\"");
    assert!(paths(&dup_material).contains(&"materials[1].id".to_string()));
    let dup_supplier = SMALL.replace("id = \"ink-co\"", "id = \"tpu-co\"");
    assert!(paths(&dup_supplier).contains(&"suppliers[1].id".to_string()));
}

#[test]
fn all_errors_are_reported_at_once_and_display_their_places() {
    let text = SMALL
        .replace("capacity_hours = 400.0", "capacity_hours = -4.0")
        .replace("currency = \"CNY\"", "currency = \"yuan\"");
    let err = Scenario::from_toml_str(&text)
        .unwrap()
        .validate()
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("factories[0].capacity_hours: must not be negative"));
    assert!(shown.contains("currency: must be an ISO 4217 code"));
    assert!(matches!(err, ScenarioError::Invalid(ref e) if e.len() == 2));
}

#[test]
fn toml_syntax_error_says_where() {
    let err = Scenario::from_toml_str("name = \"x\"\ncurrency = ").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn json_is_the_same_structure_and_round_trips() {
    let s = Scenario::from_toml_str(KETTLE).unwrap();
    let json = s.to_json_string().unwrap();
    let back = Scenario::from_json_str(&json).unwrap();
    assert_eq!(s, back);
    let toml = s.to_toml_string().unwrap();
    assert_eq!(Scenario::from_toml_str(&toml).unwrap(), s);
    let bad = json.replacen("\"lead_days\"", "\"lead_time\"", 1);
    let err = Scenario::from_json_str(&bad).unwrap_err();
    assert!(
        err.to_string().starts_with("suppliers[0].lead_time"),
        "{err}"
    );
    // Text that is not JSON names the object it broke off in, never a `?` (an outside
    // client's import of `{` was refused naming field `?`).
    let place = |text: &str| match Scenario::from_json_str(text).unwrap_err() {
        ScenarioError::Parse { path, .. } => path,
        other => panic!("{other}"),
    };
    assert_eq!(place("{"), "(top level)");
    assert_eq!(place("{\"name\": \"x\", "), "(top level)");
    let cut = &json[..json.find("\"lead_days\"").unwrap()];
    assert_eq!(place(cut), "suppliers[0]");
}

// The kettle sample: every solver and formulation agree on one optimum, and
// the optimum beats the rule-based plan.
#[test]
fn kettle_scenario() {
    let v = Scenario::from_toml_str(KETTLE).unwrap().validate().unwrap();
    let plans = common::solve_all(&v);
    let best = plans[0].total_cost;
    for p in &plans {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert!(
            (p.total_cost - best).abs() <= 1,
            "{} vs {best}",
            p.total_cost
        );
    }
    // dongguan-pack (21 days) is past the 14-day deadline.
    assert!(plans[0]
        .purchases
        .iter()
        .all(|p| p.supplier != "dongguan-pack"));
    let greedy = greedy_plan(&v).expect("greedy finds a plan");
    verify_plan(&v, &greedy).expect("greedy plan is valid");
    assert!(greedy.total_cost >= best);
}

/// The JSON output keeps the contract's field names.
#[test]
fn plan_json_has_the_contract_fields() {
    let v = Scenario::from_toml_str(SMALL).unwrap().validate().unwrap();
    let p = common::solve_with(&v, &common::all_options()[0]);
    let json: serde_json::Value =
        serde_json::from_str(&c2m_planner::report::render_json(&p)).unwrap();
    for field in [
        "status",
        "total_cost",
        "cost_breakdown",
        "gap",
        "solve_seconds",
        "runs",
        "purchases",
        "leftover",
        "shortfalls",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
    assert_eq!(json["status"], "optimal");
    assert!(json["total_cost"].is_i64());
    for part in ["production", "setup", "purchase", "ordering", "holding"] {
        assert!(json["cost_breakdown"][part].is_i64(), "{part}");
    }
    assert_eq!(json["runs"][0]["factory"], "dongguan-1");
    assert_eq!(json["runs"][0]["sku"], "case-a");
    assert_eq!(json["runs"][0]["quantity"], 1200);
    let purchase = &json["purchases"][0];
    for field in ["supplier", "material", "quantity", "unit_price", "packs"] {
        assert!(purchase.get(field).is_some(), "purchase lacks {field}");
    }
    let leftover = json["leftover"].as_object().unwrap();
    assert!(leftover.contains_key("tpu") && leftover.contains_key("ink"));
    assert_eq!(json["shortfalls"], serde_json::json!([]));
}
