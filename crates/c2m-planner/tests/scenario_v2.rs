//! The version 2 scenario format (a scenario with a `[horizon]`): parsing,
//! the rules with their places, and round trips.

use c2m_planner::{Scenario, ScenarioError};

const WEEKS: &str = include_str!("../../../examples/scenarios/kettle-weeks.toml");

const SMALL: &str = r#"
name = "small-weeks"
currency = "CNY"

[horizon]
periods = 4
period_days = 7

[[products]]
sku = "p"
due = [ { period = 1, quantity = 10 }, { period = 3, quantity = 20 } ]
late_cost = 5.0
bom = { m = 1.0 }

[[materials]]
id = "m"
unit = "kg"
on_hand = 3.0
holding_cost = 1.0
receipts = [ { period = 1, quantity = 4.0 } ]

[[factories]]
id = "f"
capacity_hours = [ 10.0, 10.0, 0.0, 10.0 ]

[[factories.lines]]
sku = "p"
unit_cost = 100.0
hours_per_unit = 0.5

[[suppliers]]
id = "s"
lead_days = 8

[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
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
    let mut p: Vec<String> = errors(text).into_iter().map(|(p, _)| p).collect();
    p.sort();
    p
}

#[test]
fn the_small_sample_reads_and_resolves_periods() {
    let v = Scenario::from_toml_str(SMALL).unwrap().validate().unwrap();
    assert!(v.is_timed());
    assert_eq!(v.periods(), 4);
    assert_eq!(v.due(0), &[0, 10, 0, 20]);
    assert_eq!(v.total_due(0), 30);
    // In memory a v2 product's demand is its total due.
    assert_eq!(v.scenario().products[0].demand, 30);
    assert_eq!(v.receipts(0), &[0.0, 4.0, 0.0, 0.0]);
    assert_eq!(v.hours(0), &[10.0, 10.0, 0.0, 10.0]);
    // 8 days at 7 days a period: ceil(8/7) = 2 periods; orders in 0..=1.
    let o = v.offers()[0];
    assert_eq!(o.lead_periods, 2);
    assert!(o.usable);
    assert_eq!(v.last_order_period(o), Some(1));
}

#[test]
fn the_kettle_weeks_sample_is_valid() {
    let v = Scenario::from_toml_str(WEEKS).unwrap().validate().unwrap();
    assert_eq!(v.periods(), 8);
    let cixi = v.factory_index("cixi-1").unwrap();
    assert_eq!(v.hours(cixi)[4], 0.0);
    let zs = v.factory_index("zhongshan-2").unwrap();
    assert_eq!(v.hours(zs), &[35.0; 8]);
    // dongguan-pack: 21 days = 3 weeks; shunde-elec: 10 days = 2 weeks.
    let lead = |sup: &str| {
        let s = v.supplier_index(sup).unwrap();
        v.offers()
            .iter()
            .find(|o| o.supplier == s)
            .unwrap()
            .lead_periods
    };
    assert_eq!(lead("dongguan-pack"), 3);
    assert_eq!(lead("shunde-elec"), 2);
    assert_eq!(lead("wenzhou-pack"), 1);
}

#[test]
fn round_trips_through_toml_and_json() {
    for text in [SMALL, WEEKS] {
        let s = Scenario::from_toml_str(text).unwrap();
        let toml = s.to_toml_string().unwrap();
        assert!(
            !toml.contains("demand"),
            "v2 writes due, not demand:\n{toml}"
        );
        assert_eq!(Scenario::from_toml_str(&toml).unwrap(), s, "{toml}");
        let json = s.to_json_string().unwrap();
        assert_eq!(Scenario::from_json_str(&json).unwrap(), s);
    }
}

#[test]
fn a_due_period_outside_the_horizon() {
    let text = SMALL.replace(
        "{ period = 3, quantity = 20 }",
        "{ period = 4, quantity = 20 }",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "products[0].due[1].period");
    assert!(e[0].1.contains("outside the horizon"), "{}", e[0].1);
    let text = SMALL.replace(
        "{ period = 1, quantity = 10 }",
        "{ period = -1, quantity = 10 }",
    );
    assert_eq!(paths(&text), vec!["products[0].due[0].period"]);
}

#[test]
fn negative_and_fractional_due_quantities() {
    let text = SMALL.replace(
        "{ period = 1, quantity = 10 }",
        "{ period = 1, quantity = -10 }",
    );
    assert_eq!(paths(&text), vec!["products[0].due[0].quantity"]);
    // A fractional quantity is not a whole number of units: a parse error at its place.
    let text = SMALL.replace(
        "{ period = 1, quantity = 10 }",
        "{ period = 1, quantity = 2.5 }",
    );
    assert_eq!(paths(&text), vec!["products[0].due[0].quantity"]);
}

#[test]
fn the_same_due_period_twice() {
    let text = SMALL.replace(
        "{ period = 3, quantity = 20 }",
        "{ period = 1, quantity = 20 }",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "products[0].due[1].period");
    assert!(
        e[0].1.contains("already due at products[0].due[0]"),
        "{}",
        e[0].1
    );
}

#[test]
fn a_calendar_of_the_wrong_length() {
    let text = SMALL.replace("[ 10.0, 10.0, 0.0, 10.0 ]", "[ 10.0, 10.0, 0.0 ]");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "factories[0].capacity_hours");
    assert!(e[0].1.contains("4 periods, got 3"), "{}", e[0].1);
    let text = SMALL.replace("[ 10.0, 10.0, 0.0, 10.0 ]", "[ 10.0, -1.0, 0.0, 10.0 ]");
    assert_eq!(paths(&text), vec!["factories[0].capacity_hours[1]"]);
    let text = SMALL.replace("[ 10.0, 10.0, 0.0, 10.0 ]", "\"many\"");
    let e = errors(&text);
    assert_eq!(e[0].0, "factories[0].capacity_hours");
    assert!(e[0].1.contains("list of hours per period"), "{}", e[0].1);
}

#[test]
fn a_material_deadline_with_a_horizon() {
    let text = SMALL.replace(
        "currency = \"CNY\"\n",
        "currency = \"CNY\"\nmaterial_deadline_days = 14\n",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "material_deadline_days");
}

#[test]
fn receipts_outside_the_horizon_or_negative() {
    let text = SMALL.replace(
        "{ period = 1, quantity = 4.0 }",
        "{ period = 9, quantity = 4.0 }",
    );
    assert_eq!(paths(&text), vec!["materials[0].receipts[0].period"]);
    let text = SMALL.replace(
        "{ period = 1, quantity = 4.0 }",
        "{ period = 1, quantity = -4.0 }",
    );
    assert_eq!(paths(&text), vec!["materials[0].receipts[0].quantity"]);
}

#[test]
fn a_bad_horizon() {
    let text = SMALL.replace("periods = 4", "periods = 0");
    assert_eq!(paths(&text), vec!["horizon.periods"]);
    let text = SMALL.replace("period_days = 7", "period_days = 0");
    assert_eq!(paths(&text), vec!["horizon.period_days"]);
    let text = SMALL.replace("period_days = 7", "period_days = 7\nweeks = 3");
    assert_eq!(paths(&text), vec!["horizon.weeks"]);
}

/// The horizon's and the calendars' rules of `validate_catalogue_part` (what the server's
/// import checks the scenarios it keeps only the catalogue of by) are the full
/// validation's: a horizon of no period or of more than 520, and a calendar of another
/// length, named at their place; other rules (an unknown sku) are not its business.
#[test]
fn a_catalogue_part_s_horizon_and_calendars_are_checked_as_validate_does() {
    let calendar_paths = |text: &str| -> Vec<String> {
        let s = Scenario::from_toml_str(text).unwrap();
        match s.validate_catalogue_part() {
            Ok(()) => Vec::new(),
            Err(e) => e.field_errors().into_iter().map(|e| e.path).collect(),
        }
    };
    assert!(calendar_paths(SMALL).is_empty());
    let none = SMALL
        .replace("periods = 4", "periods = 0")
        .replace("[ 10.0, 10.0, 0.0, 10.0 ]", "[]");
    assert_eq!(calendar_paths(&none), ["horizon.periods"]);
    assert_eq!(paths(&none), ["horizon.periods"]);
    let huge = SMALL.replace("periods = 4", "periods = 9223372036854775807");
    assert_eq!(calendar_paths(&huge), ["horizon.periods"]);
    let empty = SMALL.replace("[ 10.0, 10.0, 0.0, 10.0 ]", "[]");
    assert_eq!(calendar_paths(&empty), ["factories[0].capacity_hours"]);
    assert_eq!(paths(&empty), ["factories[0].capacity_hours"]);
    let unknown_sku = SMALL.replace("sku = \"p\"\nunit_cost", "sku = \"q\"\nunit_cost");
    assert!(calendar_paths(&unknown_sku).is_empty());
    assert_eq!(paths(&unknown_sku), ["factories[0].lines[0].sku"]);
}

/// What a caller that keeps only a scenario's catalogue checks
/// (`validate_catalogue_part`): the horizon and calendars, ids given twice in one list,
/// and each product's dues and late cost and each material's receipts, named at their
/// place as the full validation names them.
#[test]
fn validate_catalogue_part_names_an_id_given_twice() {
    let part_paths = |text: &str| -> Vec<String> {
        let s = Scenario::from_toml_str(text).unwrap();
        match s.validate_catalogue_part() {
            Ok(()) => Vec::new(),
            Err(e) => e.field_errors().into_iter().map(|e| e.path).collect(),
        }
    };
    assert!(part_paths(SMALL).is_empty());
    let twice = format!("{SMALL}\n[[materials]]\nid = \"m\"\nunit = \"kg\"\non_hand = 1.0\n");
    assert_eq!(part_paths(&twice), paths(&twice));
    assert_eq!(part_paths(&twice).len(), 1, "{:?}", part_paths(&twice));
    assert!(
        part_paths(&twice)[0].starts_with("materials["),
        "{:?}",
        part_paths(&twice)
    );
    let none = SMALL.replace("periods = 4", "periods = 0");
    assert_eq!(part_paths(&none), ["horizon.periods"]);
    // Dues, late costs and receipts, which a catalogue does not keep, are checked as the
    // full validation checks them.
    for text in [
        SMALL.replace(
            "{ period = 3, quantity = 20 }",
            "{ period = 4, quantity = 20 }",
        ),
        SMALL.replace("late_cost = 5.0", "late_cost = nan"),
        SMALL.replace("late_cost = 5.0", "late_cost = -1.0"),
        SMALL.replace(
            "{ period = 1, quantity = 4.0 }",
            "{ period = 9, quantity = 4.0 }",
        ),
        SMALL.replace("quantity = 20", "quantity = 9223372036854775807"),
    ] {
        assert!(!part_paths(&text).is_empty(), "{text}");
        assert_eq!(part_paths(&text), paths(&text), "{text}");
    }
    // Other rules (an unknown sku) are the merged catalogue's business.
    let unknown_sku = SMALL.replace("sku = \"p\"\nunit_cost", "sku = \"q\"\nunit_cost");
    assert!(part_paths(&unknown_sku).is_empty());
}

#[test]
fn demand_with_a_horizon_and_due_without_one() {
    let text = SMALL.replace("late_cost = 5.0", "late_cost = 5.0\ndemand = 30");
    let e = errors(&text);
    assert_eq!(e[0].0, "products[0].demand");
    assert!(e[0].1.contains("instead of `demand`"), "{}", e[0].1);

    // Without the horizon every v2-only field is refused at its place, and
    // `demand` is missing.
    let v1 = SMALL.replace("[horizon]\nperiods = 4\nperiod_days = 7\n", "");
    assert!(matches!(
        Scenario::from_toml_str(&v1),
        Err(ScenarioError::Parse { ref path, .. }) if path == "products[0]"
    ));
    let v1 = v1.replace("late_cost = 5.0", "late_cost = 5.0\ndemand = 30");
    assert_eq!(
        paths(&v1),
        vec![
            "factories[0].capacity_hours",
            "materials[0].receipts",
            "products[0].due",
            "products[0].late_cost",
        ]
    );
}

#[test]
fn a_negative_late_cost() {
    let text = SMALL.replace("late_cost = 5.0", "late_cost = -5.0");
    assert_eq!(paths(&text), vec!["products[0].late_cost"]);
}

#[test]
fn an_offer_that_can_never_arrive_is_not_usable() {
    // 30 days at 7 a period: 5 periods, more than the horizon's 4.
    let text = SMALL.replace("lead_days = 8", "lead_days = 30");
    let v = Scenario::from_toml_str(&text).unwrap().validate().unwrap();
    let o = v.offers()[0];
    assert_eq!(o.lead_periods, 5);
    assert!(!o.usable);
    assert_eq!(v.last_order_period(o), None);
}
