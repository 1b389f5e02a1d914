//! Hand-made time-phased scenarios, one per rule of the model page's
//! "Version 2" section, each with its optimum worked out on paper in the
//! comment above it. The expected numbers come from those hand
//! calculations, not from the program. Every scenario is solved with every
//! solver compiled in, both formulations, with and without warm start, and
//! every plan is checked by `verify_plan` (`common::solve_all`).

mod common;

use c2m_planner::{OnTime, Plan, PlanStatus};
use common::{scenario, solve_all};

/// One product `p` (one unit of `m` per unit, unit cost 100), one factory
/// `f`; the caller gives the horizon, the product's due/late lines, the
/// material's extra lines, the factory's hours and line extras, and the
/// suppliers. Periods are weeks (7 days).
fn weeks(
    periods: usize,
    product: &str,
    material: &str,
    hours: &str,
    line: &str,
    suppliers: &str,
) -> String {
    format!(
        r#"
name = "paper-weeks"
currency = "CNY"

[horizon]
periods = {periods}
period_days = 7

[[products]]
sku = "p"
bom = {{ m = 1.0 }}
{product}

[[materials]]
id = "m"
unit = "kg"
{material}

[[factories]]
id = "f"
capacity_hours = {hours}

[[factories.lines]]
sku = "p"
unit_cost = 100.0
{line}

{suppliers}
"#
    )
}

/// `(supplier, quantity, unit price, ordered, arrives)` of every purchase.
fn orders(p: &Plan) -> Vec<(String, f64, f64, usize, usize)> {
    p.purchases
        .iter()
        .map(|x| {
            (
                x.supplier.clone(),
                x.quantity,
                x.unit_price,
                x.period.unwrap(),
                x.arrives.unwrap(),
            )
        })
        .collect()
}

/// `(factory, quantity, period)` of every run.
fn runs(p: &Plan) -> Vec<(String, i64, usize)> {
    p.runs
        .iter()
        .map(|r| (r.factory.clone(), r.quantity, r.period.unwrap()))
        .collect()
}

const PLAIN_OFFER: &str = r#"
[[suppliers]]
id = "s"
lead_days = LEAD
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
"#;

// 10 units due by the end of period 2; the factory is closed in periods 0
// and 1, so the run is in period 2. Lead 7 days = 1 week: an order placed in
// period 1 arrives at the start of period 2, just in time. Ordering in
// period 0 would arrive in period 1 and hold 10 units for one period (10 *
// 1 = 10 more). Cost: production 10 * 100 = 1000, purchase 10 * 10 = 100,
// holding 0: total 1100. With a lead of 8 days (ceil(8/7) = 2 weeks) the
// order must be placed in period 0, arriving in period 2: the same 1100.
#[test]
fn a_lead_time_forces_an_order_one_period_early() {
    for (lead, ordered) in [(7, 1), (8, 0)] {
        let v = scenario(&weeks(
            3,
            "due = [ { period = 2, quantity = 10 } ]",
            "on_hand = 0.0\nholding_cost = 1.0",
            "[ 0.0, 0.0, 100.0 ]",
            "hours_per_unit = 1.0",
            &PLAIN_OFFER.replace("LEAD", &lead.to_string()),
        ));
        for p in solve_all(&v) {
            assert_eq!(p.status, PlanStatus::Optimal);
            assert_eq!(p.total_cost, 1100, "lead {lead}");
            assert_eq!(runs(&p), vec![("f".into(), 10, 2)]);
            assert_eq!(orders(&p), vec![("s".into(), 10.0, 10.0, ordered, 2)]);
            assert_eq!(p.cost_breakdown.holding, 0);
            let time = p.time.as_ref().unwrap();
            assert_eq!(time.just_in_time.len(), 1, "{time:?}");
            assert_eq!(time.just_in_time[0].arrives, 2);
        }
    }
}

/// A second factory `g` with 100 hours a week, making `p` at 130 a unit in an hour (put in
/// front of the suppliers of a [`weeks`] scenario).
const FACTORY_G: &str = r#"
[[factories]]
id = "g"
capacity_hours = 100.0
[[factories.lines]]
sku = "p"
unit_cost = 130.0
hours_per_unit = 1.0

[[suppliers]]"#;

/// 60 due at the end of period 1 and 60 at the end of period 2, one hour a
/// unit and 60 hours a week: one batch per week, in periods 1 and 2 (no
/// stock and a 1-week lead time make period 0 impossible). Offer: 10 a unit,
/// 8 from 100 units, lead 7 days.
fn consolidation(holding: f64) -> String {
    weeks(
        3,
        "due = [ { period = 1, quantity = 60 }, { period = 2, quantity = 60 } ]",
        &format!("on_hand = 0.0\nholding_cost = {holding}"),
        "60.0",
        "hours_per_unit = 1.0",
        r#"
[[suppliers]]
id = "s"
lead_days = 7
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 }, { min_qty = 100.0, unit_price = 8.0 } ]
"#,
    )
}

// Holding 1 a unit a week. Production 120 * 100 = 12000 in every plan.
//   A: 60 ordered in period 0 and 60 in period 1, at 10: 1200.
//   B: 120 in period 0 at 8 = 960, 60 held at the end of period 1: +60 = 1020.
//   C: 100 in period 0 at 8 = 800, 40 held: +40, and 20 in period 1 at 10:
//      +200 = 1040.
// B is cheapest: one order for both batches. Total 12000 + 1020 = 13020.
#[test]
fn consolidating_two_periods_in_one_order_reaches_the_break() {
    let v = scenario(&consolidation(1.0));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 13020);
        assert_eq!(orders(&p), vec![("s".into(), 120.0, 8.0, 0, 1)]);
        assert_eq!(p.cost_breakdown.holding, 60);
        assert_eq!(
            p.stock.as_ref().unwrap().get("m"),
            Some(&[0.0, 60.0, 0.0][..])
        );
        // Buying each period's need on its own is plan A: 1200 against 1020.
        let c = p.time.as_ref().unwrap().consolidation.clone().unwrap();
        assert_eq!(c.separate_material_cost, Some(1200.0));
        assert_eq!(c.saving, Some(180.0));
    }
}

// Holding 6 a unit a week: A = 1200, B = 960 + 60 * 6 = 1320,
// C = 800 + 40 * 6 + 200 = 1240. Holding over the gap costs more than the
// discount: A, one order per batch. Total 12000 + 1200 = 13200.
#[test]
fn consolidating_is_not_worth_it_when_holding_costs_more_than_the_discount() {
    let v = scenario(&consolidation(6.0));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 13200);
        assert_eq!(
            orders(&p),
            vec![
                ("s".into(), 60.0, 10.0, 0, 1),
                ("s".into(), 60.0, 10.0, 1, 2)
            ]
        );
        assert_eq!(p.cost_breakdown.holding, 0);
    }
}

// 100 due by the end of period 1, never late. `f` (unit cost 100) is closed
// in period 1; `g` (unit cost 130) is open. No stock; the material (10 a
// unit, lead 7 days) arrives in period 1 at the earliest, so nothing can be
// made in period 0. The only plan: `g` makes 100 in period 1.
// Production 13000 + purchase 1000 = 14000. (Were `f` open in period 1, it
// would cost 11000.)
#[test]
fn a_closed_week_moves_the_run_to_another_factory() {
    let text = weeks(
        3,
        "due = [ { period = 1, quantity = 100 } ]",
        "on_hand = 0.0",
        "[ 100.0, 0.0, 100.0 ]",
        "hours_per_unit = 1.0",
        &PLAIN_OFFER.replace("LEAD", "7"),
    )
    .replace("\n[[suppliers]]", FACTORY_G);
    let v = scenario(&text);
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 14000);
        assert_eq!(runs(&p), vec![("g".into(), 100, 1)]);
    }
}

// 30 due by the end of period 1. Stock: 5 on hand, 20 arriving at the start
// of period 1 (already ordered), holding 1 a unit a week; the offer (10 a
// unit) has no lead time. Setup 50 a run.
//   One run of 30 in period 1: 5 + 20 from stock and receipts, buy 5 in
//   period 1: production 3000 + setup 50 + purchase 50 + holding of the 5
//   on hand at the end of period 0 (5) = 3105.
//   Two runs (5 in period 0 from stock, 25 in period 1): one more setup
//   (+50) against 5 less holding: 3150.
//   One run of 30 in period 0: buy 25 in period 0 (250), the 20 received in
//   period 1 stay in stock (20): 3320.
// The receipts are used before buying: buy only 5, in period 1.
#[test]
fn receipts_are_used_before_buying() {
    let v = scenario(&weeks(
        2,
        "due = [ { period = 1, quantity = 30 } ]",
        "on_hand = 5.0\nholding_cost = 1.0\nreceipts = [ { period = 1, quantity = 20.0 } ]",
        "100.0",
        "hours_per_unit = 0.0\nsetup_cost = 50.0",
        &PLAIN_OFFER.replace("LEAD", "0"),
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 3105);
        assert_eq!(orders(&p), vec![("s".into(), 5.0, 10.0, 1, 1)]);
        assert_eq!(runs(&p), vec![("f".into(), 30, 1)]);
        assert_eq!(p.leftover.get("m"), Some(0.0));
    }
}

// 50 due by the end of period 0 and 50 by the end of period 1; 100 on hand,
// holding 1 a unit a week; no hour limit; setup 200, paid in each period the
// line runs.
//   One run of 100 in period 0: setup 200, nothing left: 10000 + 200 = 10200.
//   Two runs of 50: setups 400, 50 held at the end of period 0: 10450.
// One longer run is better. Its units for period 1 ship early, at no cost.
#[test]
fn a_setup_per_period_makes_one_longer_run_better_than_two() {
    let v = scenario(&weeks(
        2,
        "due = [ { period = 0, quantity = 50 }, { period = 1, quantity = 50 } ]",
        "on_hand = 100.0\nholding_cost = 1.0",
        "1000.0",
        "hours_per_unit = 0.0\nsetup_cost = 200.0",
        "",
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 10200);
        assert_eq!(runs(&p), vec![("f".into(), 100, 0)]);
        assert_eq!(p.cost_breakdown.setup, 200);
        // Full cost per unit due: (10000 + 200) / 100 = 102 (the stock was
        // on hand, nothing bought or held).
        assert_eq!(p.cost_per_unit.get("p"), Some(102.0));
        assert_eq!(p.completion.as_ref().unwrap().get("p"), Some(Some(0)));
    }
}

/// 50 due by the end of period 0 and 50 by the end of period 1, one hour a
/// unit, 50 hours in period 0 and 100 in period 1, setup 200 a run, 100 on
/// hand (holding 0), late cost `late` a unit a week.
fn late_or_setup(late: f64) -> String {
    weeks(
        2,
        &format!(
            "due = [ {{ period = 0, quantity = 50 }}, {{ period = 1, quantity = 50 }} ]\n\
             late_cost = {late}"
        ),
        "on_hand = 100.0",
        "[ 50.0, 100.0 ]",
        "hours_per_unit = 1.0\nsetup_cost = 200.0",
        "",
    )
}

// late_cost 3. Production 10000 in every plan.
//   Two runs, 50 in period 0 and 50 in period 1: setups 400.
//   One run of 100 in period 1 (period 0 has 50 hours only): setup 200, and
//   the 50 due in period 0 are one week late: 50 * 3 = 150; 350 in all.
// Lateness is cheaper than the second setup: total 10350, 50 units late in
// period 0, complete in period 1. Making it on time costs 400 - 350 = 50 more.
#[test]
fn lateness_is_cheaper_than_a_second_setup() {
    let v = scenario(&late_or_setup(3.0));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 10350);
        assert_eq!(p.cost_breakdown.lateness, 150);
        assert_eq!(runs(&p), vec![("f".into(), 100, 1)]);
        let late = p.late.as_ref().unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].period, late[0].units), (0, 50));
        assert_eq!(p.completion.as_ref().unwrap().get("p"), Some(Some(1)));
        let why = &p.time.as_ref().unwrap().lateness;
        assert_eq!(why.len(), 1);
        assert_eq!(why[0].unit_periods, 50);
        match why[0].on_time {
            OnTime::CostsMore {
                extra,
                proven: true,
            } => assert!((extra - 50.0).abs() < 1e-6),
            ref other => panic!("{other:?}"),
        }
    }
}

// late_cost 5: one late run costs 200 + 250 = 450 > 400 for two runs on
// time. Total 10400, nothing late.
#[test]
fn a_second_setup_is_cheaper_than_costly_lateness() {
    let v = scenario(&late_or_setup(5.0));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 10400);
        assert_eq!(p.cost_breakdown.lateness, 0);
        assert_eq!(runs(&p), vec![("f".into(), 50, 0), ("f".into(), 50, 1)]);
        assert!(p.late.as_ref().unwrap().is_empty());
    }
}

// Two products share 10 kg of `m` on hand, 10 of each due in period 0; `a`
// may never be late, `b` may (5 a unit a period). More `m` arrives from period
// 2 (lead 14 days), and period 2 has 5 hours (1 a unit). Whatever the plan, 15
// units can be made: 10 from what is on hand, 5 in period 2. The best partial
// plan keeps the never-late promise: `a` gets the 10 on hand, `b` makes 5 in
// period 2 and is short by 5 at the end. (It once gave the stock to `b`, which
// may be late, and named `a` short though `a` alone can be made in full.) The
// diagnosis names `b`'s causes: the hours of period 2, and `m`, whose stock
// before its first arrival covers 10 of the 20 both need by then.
#[test]
fn a_partial_plan_keeps_the_never_late_promise_with_a_shared_material() {
    let v = scenario(&format!(
        r#"
name = "shared"
currency = "CNY"

[horizon]
periods = 3
period_days = 7

[[products]]
sku = "a"
bom = {{ m = 1.0 }}
due = [ {{ period = 0, quantity = 10 }} ]

[[products]]
sku = "b"
bom = {{ m = 1.0 }}
due = [ {{ period = 0, quantity = 10 }} ]
late_cost = 5.0

[[materials]]
id = "m"
unit = "kg"
on_hand = 10.0

[[factories]]
id = "f"
capacity_hours = [100.0, 100.0, 5.0]

[[factories.lines]]
sku = "a"
unit_cost = 100.0
hours_per_unit = 1.0

[[factories.lines]]
sku = "b"
unit_cost = 100.0
hours_per_unit = 1.0
{}"#,
        PLAIN_OFFER.replace("LEAD", "14")
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Infeasible);
        let short: Vec<_> = (p.shortfalls.iter())
            .map(|s| (s.sku.as_str(), s.short_by, s.period))
            .collect();
        assert_eq!(short, vec![("b", 5, Some(0))], "{}", p.solver);
        let made = |sku: &str| -> Vec<(i64, usize)> {
            (p.runs.iter())
                .filter(|r| r.sku == sku)
                .map(|r| (r.quantity, r.period.unwrap()))
                .collect()
        };
        assert_eq!(made("a"), vec![(10, 0)]);
        assert_eq!(made("b"), vec![(5, 2)]);
        let d = p.diagnosis.as_ref().unwrap();
        assert_eq!(d.reasons.len(), 1, "{:?}", d.reasons);
        assert_eq!(
            d.reasons[0],
            "`b` is short by 5 at the end of the horizon (behind from period 0): `f` uses \
             all its hours in period 2; material `m`: no offer arrives before period 2, and \
             the 10 on hand and received by period 1 cover 10 of the 20 needed by then \
             (with `a`)"
        );
    }
}

// `p` (never late) has 10 due in period 0 and 4 kg of `m` on hand; `m` first
// arrives in period 1. `q` (no material, may be late) has 100 due in period 1,
// which has 20 hours, so the partial plan fills period 0's 100 hours with `q` and
// `p`. `p` is short by 6 from period 0 because of `m` alone: more hours in period
// 0 would not make one more `p`, so the diagnosis does not name them (it said
// "`f` uses all its hours in periods 0", a QA pass found).
#[test]
fn hours_filled_by_others_are_no_reason_when_a_material_explains_the_shortfall() {
    let v = scenario(
        r#"
name = "t3"
currency = "CNY"

[horizon]
periods = 3
period_days = 7

[[products]]
sku = "p"
due = [ { period = 0, quantity = 10 }, { period = 2, quantity = 5 } ]
bom = { m = 1.0 }

[[products]]
sku = "q"
due = [ { period = 1, quantity = 100 } ]
late_cost = 3.0
bom = { }

[[materials]]
id = "m"
unit = "kg"
on_hand = 4.0

[[factories]]
id = "f"
capacity_hours = [ 100.0, 20.0, 20.0 ]

[[factories.lines]]
sku = "p"
unit_cost = 1.0
hours_per_unit = 1.0

[[factories.lines]]
sku = "q"
unit_cost = 1.0
hours_per_unit = 1.0

[[suppliers]]
id = "s"
lead_days = 3

[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 } ]
"#,
    );
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Infeasible);
        let short: Vec<_> = (p.shortfalls.iter())
            .map(|s| (s.sku.as_str(), s.short_by, s.period))
            .collect();
        assert_eq!(short, vec![("p", 6, Some(0))], "{}", p.solver);
        let d = p.diagnosis.as_ref().unwrap();
        assert_eq!(
            d.reasons,
            vec![
                "`p` is short by 6 from period 0: material `m`: no offer arrives before period \
                 1 (s/m: 3 days, first arrival in period 1), and the 4 on hand and received by \
                 period 0 cover 4 units of the 10 due by then"
            ]
        );
    }
}

// 10 due by the end of period 1, never late; no stock; the only offer has a
// lead of 14 days = 2 weeks, so the material arrives in period 2 at the
// earliest. No plan makes the 10 by period 1: infeasible. The best partial
// plan makes them in period 2, as early as it can: short by 10 from period 1.
#[test]
fn infeasible_when_a_material_cannot_arrive_in_time() {
    let v = scenario(&weeks(
        3,
        "due = [ { period = 1, quantity = 10 } ]",
        "on_hand = 0.0",
        "100.0",
        "hours_per_unit = 1.0",
        &PLAIN_OFFER.replace("LEAD", "14"),
    ));
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Infeasible);
        assert_eq!(p.shortfalls.len(), 1);
        let s = &p.shortfalls[0];
        assert_eq!((s.sku.as_str(), s.short_by, s.period), ("p", 10, Some(1)));
        assert_eq!(runs(&p), vec![("f".into(), 10, 2)]);
        let d = p.diagnosis.as_ref().unwrap();
        assert!(
            d.reasons[0].contains("material `m`")
                && d.reasons[0].contains("no offer arrives before period 2"),
            "{:?}",
            d.reasons
        );
        assert_eq!(
            d.late_offers,
            vec!["s/m: 14 days, first arrival in period 2"]
        );
    }
}

// Two products on one factory of 100 hours a week, one hour a unit, setup
// 100 a run, unit cost 10; 80 of each due by the end of period 2, never late.
// `a` is made of `ma`, 80 on hand, holding 1 a unit a week; `b` of `mb`, none
// on hand, whose only offer (price 1) takes 14 days: it arrives in period 2.
//   The lot-for-lot rules take the dues in order and make each in its due
//   period where it fits: `a` takes 80 of period 2's hours, `b` finds 20
//   left and no `mb` before period 2, so the rules find no plan.
//   A plan exists: `a` in period 0 (its stock used at once: no holding),
//   `b` in period 2 with 80 `mb` ordered in period 0: production 1600,
//   setups 200, purchase 80 = 1880. Making `a` in period 1 instead holds 80
//   `ma` through period 0 (+80); splitting it adds a setup.
// The planner's start comes from the rules' repaired order of dues (`b`
// first), or from phase one; the solver proves the plan optimal.
#[test]
fn a_plan_the_lot_for_lot_rules_miss() {
    let v = scenario(include_str!("data/rules-miss.toml"));
    assert!(
        c2m_planner::greedy_plan(&v).is_none(),
        "the scenario must be one the lot-for-lot rules cannot plan"
    );
    for p in solve_all(&v) {
        assert_eq!(p.status, PlanStatus::Optimal);
        assert_eq!(p.total_cost, 1880);
        let mut r = runs(&p);
        r.sort_by_key(|x| x.2);
        assert_eq!(r, vec![("f".into(), 80, 0), ("f".into(), 80, 2)]);
        assert_eq!(orders(&p), vec![("s".into(), 80.0, 1.0, 0, 2)]);
    }
}

// Shadow prices per period, worked by hand. 10 units of p due by the end of period 0.
// Factory f makes a unit in an hour at 100 but has 6 hours in period 0 (100 in period
// 1); factory g makes one at 130 with hours to spare. The material costs 10 with no
// lead time and nothing on hand. The plan: 6 at f and 4 at g in period 0, 10 bought:
// 600 + 520 + 100 = 1220.
//   One more hour at f in period 0 moves a unit from g to f: saves 130 - 100 = 30.
//   An hour at f in period 1 is worth nothing (nothing is made there).
//   One more unit of m arriving at the start of period 0 saves buying one: 10.
// HiGHS reads them from the LP's duals, microlp from the one LP re-solved with each
// binding row moved; both must say the same.
#[test]
fn shadow_prices_per_period_are_worth_what_they_save() {
    let text = weeks(
        2,
        "due = [ { period = 0, quantity = 10 } ]",
        "on_hand = 0.0",
        "[ 6.0, 100.0 ]",
        "hours_per_unit = 1.0",
        &PLAIN_OFFER.replace("LEAD", "0"),
    )
    .replace("\n[[suppliers]]", FACTORY_G);
    let v = scenario(&text);
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 1220);
        let time = p.time.as_ref().unwrap();
        let sp = time.shadow_prices.as_ref().expect("shadow prices");
        let f = sp.factory_hours.get("f").unwrap();
        assert!((f[0] - 30.0).abs() < 1e-6, "{sp:?}");
        assert_eq!(f[1], 0.0, "{sp:?}");
        assert_eq!(sp.factory_hours.get("g"), Some(&[0.0, 0.0][..]), "{sp:?}");
        let m = sp.materials.get("m").unwrap();
        assert!((m[0] - 10.0).abs() < 1e-6, "{sp:?}");
    }
}
