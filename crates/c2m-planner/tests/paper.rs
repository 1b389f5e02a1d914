//! Hand-made scenarios, one per rule of `planning-model.md`, each with its
//! optimum worked out on paper in the comment above it. The expected numbers
//! come from those hand calculations, not from the program. Every scenario
//! is solved with every solver compiled in and both formulations, with and
//! without warm start, and every plan is checked by `verify_plan`.

mod common;

use c2m_planner::{Binding, PlanStatus};
use common::{scenario, solve_all};

/// One product `p` (demand `demand`, one unit of material `m` per unit), one
/// factory with unlimited hours making it at 100 per unit, material `m` with
/// `on_hand` and `holding`; the caller adds suppliers.
///
/// The unit cost matters: the model allows over-production, so with a unit
/// cost below the holding cost of its materials it would pay to make extra
/// units just to use up leftover stock. At 100 per unit that never pays here.
fn one_material(demand: i64, on_hand: f64, holding: f64, suppliers: &str) -> String {
    format!(
        r#"
name = "paper"
currency = "CNY"

[[products]]
sku = "p"
demand = {demand}
bom = {{ m = 1.0 }}

[[materials]]
id = "m"
unit = "kg"
on_hand = {on_hand}
holding_cost = {holding}

[[factories]]
id = "f"
capacity_hours = 1000000.0

[[factories.lines]]
sku = "p"
unit_cost = 100.0
hours_per_unit = 0.0

{suppliers}
"#
    )
}

fn purchases(p: &c2m_planner::Plan) -> Vec<(String, f64, f64)> {
    p.purchases
        .iter()
        .map(|x| (x.supplier.clone(), x.quantity, x.unit_price))
        .collect()
}

// Need 90 of m; production is 90 * 100 = 9000 whatever is bought.
// Tier 0 (price 10): 90 * 10 = 900. Tier 1 from 100 (price 8): 100 * 8 = 800
// plus 10 left over * holding 1 = 10, so 810 < 900. (Making 100 to use the
// leftover costs 1000 more production: no.)
// Optimum: buy 100 at 8; total 9000 + 800 + 10 = 9810.
#[test]
fn price_break_worth_buying_up_to() {
    let v = scenario(&one_material(
        90,
        0.0,
        1.0,
        r#"
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 }, { min_qty = 100.0, unit_price = 8.0 } ]
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 9810);
        assert_eq!(p.cost_breakdown.production, 9000);
        assert_eq!(p.cost_breakdown.purchase, 800);
        assert_eq!(p.cost_breakdown.holding, 10);
        assert_eq!(purchases(&p), vec![("s".into(), 100.0, 8.0)]);
        assert_eq!(p.leftover.get("m"), Some(10.0));
        assert!(p
            .binding
            .iter()
            .any(|b| matches!(b, Binding::RoundUp { .. })));
    }
}

// Same, but holding 15 per unit left: 800 + 10 * 15 = 950 > 900, and making
// 100 instead of 90 costs 1000 more. Optimum: buy exactly 90 at 10;
// total 9000 + 900 = 9900.
#[test]
fn price_break_not_worth_it_because_of_holding() {
    let v = scenario(&one_material(
        90,
        0.0,
        15.0,
        r#"
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 }, { min_qty = 100.0, unit_price = 8.0 } ]
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 9900);
        assert_eq!(purchases(&p), vec![("s".into(), 90.0, 10.0)]);
        assert_eq!(p.leftover.get("m"), Some(0.0));
    }
}

// Need 90, packs of 25: 4 packs = 100 (3 packs = 75 is short).
// 100 * 10 = 1000 plus 10 left * holding 2 = 20, plus production 9000;
// total 10020.
#[test]
fn pack_size_forces_a_round_up() {
    let v = scenario(&one_material(
        90,
        0.0,
        2.0,
        r#"
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
pack_size = 25.0
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 10020);
        assert_eq!(p.purchases.len(), 1);
        assert_eq!(p.purchases[0].quantity, 100.0);
        assert_eq!(p.purchases[0].packs, Some(4));
        assert_eq!(p.cost_breakdown.holding, 20);
    }
}

// Need 30, the only offer has MOQ 50 at 10 and an order cost of 7:
// 50 * 10 + 7 + 20 left * holding 1 = 527, plus production 30 * 100 = 3000;
// total 3527.
#[test]
fn moq_forces_buying_more() {
    let v = scenario(&one_material(
        30,
        0.0,
        1.0,
        r#"
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
moq = 50.0
order_cost = 7.0
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 3527);
        assert_eq!(purchases(&p), vec![("s".into(), 50.0, 10.0)]);
        assert_eq!(p.cost_breakdown.ordering, 7);
    }
}

// With a second supplier at 13 and no MOQ: 30 * 13 = 390 < 527, so the MOQ
// makes the dearer supplier win; total 3000 + 390 = 3390.
#[test]
fn moq_makes_the_dearer_supplier_win() {
    let v = scenario(&one_material(
        30,
        0.0,
        1.0,
        r#"
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
moq = 50.0
order_cost = 7.0
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]

[[suppliers]]
id = "t"
lead_days = 1
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 13.0 } ]
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 3390);
        assert_eq!(purchases(&p), vec![("t".into(), 30.0, 13.0)]);
    }
}

fn factories(demand: i64, factories: &str) -> String {
    format!(
        r#"
name = "paper"
currency = "USD"

[[products]]
sku = "p"
demand = {demand}
bom = {{}}

{factories}
"#
    )
}

// Demand 40, the only line has min_run 100 at unit cost 5: it must make
// 100; total 500 (no materials).
#[test]
fn min_run_forces_over_production() {
    let v = scenario(&factories(
        40,
        r#"
[[factories]]
id = "a"
capacity_hours = 1000.0
[[factories.lines]]
sku = "p"
unit_cost = 5.0
min_run = 100
hours_per_unit = 1.0
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 500);
        assert_eq!(p.runs.len(), 1);
        assert_eq!(p.runs[0].quantity, 100);
        assert!(p
            .binding
            .iter()
            .any(|b| matches!(b, Binding::MinRun { .. })));
    }
}

// Demand 100. Factory b: unit 8, setup 300, only 50 hours at 1 h/unit.
// Factory a: unit 10, setup 300, plenty of hours.
// Split: 50 * 8 + 50 * 10 + 2 * 300 = 1500. a alone: 100 * 10 + 300 = 1300.
// b alone cannot (50 units). Optimum: a makes all 100; total 1300.
#[test]
fn setup_cost_makes_one_factory_better_than_two() {
    let v = scenario(&factories(
        100,
        r#"
[[factories]]
id = "a"
capacity_hours = 1000.0
[[factories.lines]]
sku = "p"
unit_cost = 10.0
setup_cost = 300.0
hours_per_unit = 1.0

[[factories]]
id = "b"
capacity_hours = 50.0
[[factories.lines]]
sku = "p"
unit_cost = 8.0
setup_cost = 300.0
hours_per_unit = 1.0
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 1300);
        assert_eq!(p.cost_breakdown.setup, 300);
        assert_eq!(p.runs.len(), 1);
        assert_eq!((p.runs[0].factory.as_str(), p.runs[0].quantity), ("a", 100));
    }
}

// Demand 100. a: unit 8, 60 hours (2 setup hours + 1 h/unit leaves 58
// units). b: unit 10, plenty of hours. a makes 58, b makes 42:
// 58 * 8 + 42 * 10 = 464 + 420 = 884.
#[test]
fn capacity_forces_a_split() {
    let v = scenario(&factories(
        100,
        r#"
[[factories]]
id = "a"
capacity_hours = 60.0
[[factories.lines]]
sku = "p"
unit_cost = 8.0
hours_per_unit = 1.0
setup_hours = 2.0

[[factories]]
id = "b"
capacity_hours = 1000.0
[[factories.lines]]
sku = "p"
unit_cost = 10.0
hours_per_unit = 1.0
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 884);
        let mut runs: Vec<_> = p
            .runs
            .iter()
            .map(|r| (r.factory.clone(), r.quantity))
            .collect();
        runs.sort();
        assert_eq!(runs, vec![("a".into(), 58), ("b".into(), 42)]);
        assert!(p
            .binding
            .iter()
            .any(|b| matches!(b, Binding::Capacity { factory, .. } if factory == "a")));
        // One more hour at a moves one unit from b to a: saves 10 - 8 = 2.
        let sp = p.shadow_prices.as_ref().expect("shadow prices");
        assert!((sp.factory_hours.get("a").unwrap() - 2.0).abs() < 1e-6);
        assert_eq!(sp.factory_hours.get("b"), Some(0.0));
    }
}

// Deadline 10 days: the slow supplier (20 days, price 9) is out; the fast
// one (5 days, price 12) sells 10 units: 120, plus production 1000;
// total 1120.
#[test]
fn offer_excluded_by_the_material_deadline() {
    let mut text = one_material(
        10,
        0.0,
        0.0,
        r#"
[[suppliers]]
id = "slow"
lead_days = 20
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 9.0 } ]

[[suppliers]]
id = "fast"
lead_days = 5
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 12.0 } ]
"#,
    );
    text = text.replace(
        "currency = \"CNY\"",
        "currency = \"CNY\"\nmaterial_deadline_days = 10",
    );
    let v = scenario(&text);
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 1120);
        assert_eq!(purchases(&p), vec![("fast".into(), 10.0, 12.0)]);
    }
}

// 30 on hand, need 50, price 10, holding 1: buy only 20 (200), nothing left.
// (Ignoring the stock would cost 500 + 30 of holding.) Total 5000 + 200 = 5200.
#[test]
fn on_hand_stock_is_used_first() {
    let v = scenario(&one_material(
        50,
        30.0,
        1.0,
        r#"
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 5200);
        assert_eq!(purchases(&p), vec![("s".into(), 20.0, 10.0)]);
        assert_eq!(p.leftover.get("m"), Some(0.0));
        // One more unit on hand saves buying one: 10.
        let sp = p.shadow_prices.as_ref().expect("shadow prices");
        assert!((sp.materials.get("m").unwrap() - 10.0).abs() < 1e-6);
    }
}

// Demand 100, the only factory has 60 hours at 1 h/unit: 60 made, 40 short.
// The best partial plan costs 60 * 5 = 300.
#[test]
fn infeasible_capacity_reports_the_shortfall() {
    let v = scenario(&factories(
        100,
        r#"
[[factories]]
id = "a"
capacity_hours = 60.0
[[factories.lines]]
sku = "p"
unit_cost = 5.0
hours_per_unit = 1.0
"#,
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Infeasible);
        assert_eq!(p.shortfalls.len(), 1);
        assert_eq!(
            (p.shortfalls[0].sku.as_str(), p.shortfalls[0].short_by),
            ("p", 40)
        );
        assert_eq!(p.total_cost, 300);
        let d = p.diagnosis.as_ref().expect("a diagnosis");
        assert_eq!(d.capacity_bound, vec!["a".to_string()]);
        assert!(d.reasons[0].contains("short by 40"), "{:?}", d.reasons);
    }
}

// Need 10 of m, 2 on hand, the only usable supplier sells at most 6, and a
// second one is too slow for the deadline: 8 can be made, 2 short.
// Partial plan: buy 6 at 10 = 60, nothing left, make 8 at 100 = 800;
// total 860.
#[test]
fn infeasible_materials_reports_caps_and_excluded_offers() {
    let mut text = one_material(
        10,
        2.0,
        1.0,
        r#"
[[suppliers]]
id = "capped"
lead_days = 1
[[suppliers.offers]]
material = "m"
max_qty = 6.0
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]

[[suppliers]]
id = "slow"
lead_days = 30
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 1.0 } ]
"#,
    );
    text = text.replace(
        "currency = \"CNY\"",
        "currency = \"CNY\"\nmaterial_deadline_days = 7",
    );
    let v = scenario(&text);
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Infeasible);
        assert_eq!(p.shortfalls[0].short_by, 2);
        assert_eq!(p.total_cost, 860);
        let d = p.diagnosis.as_ref().expect("a diagnosis");
        assert_eq!(d.supplier_caps, vec!["capped/m".to_string()]);
        assert_eq!(d.excluded_offers, vec!["slow/m".to_string()]);
    }
}

// A product no factory can make: all 5 short, nothing bought, cost 0.
#[test]
fn infeasible_missing_line() {
    let v = scenario(
        r#"
name = "x"
currency = "EUR"
[[products]]
sku = "orphan"
demand = 5
bom = {}
"#,
    );
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Infeasible);
        assert_eq!(p.shortfalls[0].short_by, 5);
        assert_eq!(p.total_cost, 0);
        assert_eq!(
            p.diagnosis.as_ref().unwrap().missing_lines,
            vec!["orphan".to_string()]
        );
    }
}
