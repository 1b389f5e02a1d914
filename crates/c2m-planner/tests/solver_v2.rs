//! Time-phased plans end to end: the kettle sample, the solvers against
//! each other, the lot-for-lot baseline, and `verify_plan` catching plans
//! that break a version 2 rule.

mod common;

use std::time::Duration;

use c2m_planner::generate::{random_timed_scenario, TimedSize};
use c2m_planner::{
    greedy_plan, plan, verify_plan, ExplanationMissing, Formulation, Plan, PlanStatus, Rule,
    Scenario, SolveOptions, SolverKind, ValidatedScenario,
};

const WEEKS: &str = include_str!("../../../examples/scenarios/kettle-weeks.toml");

fn weeks() -> ValidatedScenario {
    Scenario::from_toml_str(WEEKS).unwrap().validate().unwrap()
}

fn options(solver: SolverKind, seconds: u64) -> SolveOptions {
    SolveOptions {
        solver,
        time_limit: Duration::from_secs(seconds),
        mip_gap: 1e-4,
        formulation: Formulation::Tight,
        warm_start: true,
        shadow_prices: false,
    }
}

fn rules(v: &ValidatedScenario, p: &Plan) -> Vec<Rule> {
    match verify_plan(v, p) {
        Ok(()) => Vec::new(),
        Err(violations) => violations.iter().map(|x| x.rule).collect(),
    }
}

#[test]
fn the_kettle_weeks_sample_plans_below_lot_for_lot() {
    let v = weeks();
    let mrp = greedy_plan(&v).expect("lot-for-lot finds a plan");
    assert_eq!(verify_plan(&v, &mrp), Ok(()));
    let solver = SolverKind::default_available().unwrap();
    let p = plan(&v, &options(solver, 20)).unwrap();
    assert_eq!(verify_plan(&v, &p), Ok(()));
    assert_ne!(p.status, PlanStatus::Infeasible);
    assert!(
        p.total_cost <= mrp.total_cost,
        "plan {} against lot-for-lot {}",
        p.total_cost,
        mrp.total_cost
    );
    // The contract's version 2 fields are all there.
    assert_eq!(p.horizon.unwrap().periods, 8);
    assert!(p.runs.iter().all(|r| r.period.is_some()));
    assert!(p
        .purchases
        .iter()
        .all(|x| x.arrives.unwrap() >= x.period.unwrap()));
    assert_eq!(p.stock.as_ref().unwrap().0.len(), 8);
    assert!(p.stock.as_ref().unwrap().iter().all(|(_, s)| s.len() == 8));
    // Cixi is closed in week 4: no run there.
    assert!(!p
        .runs
        .iter()
        .any(|r| r.factory == "cixi-1" && r.period == Some(4)));
    // The travel kettle may not be late; it is complete by week 7.
    let travel = p.completion.as_ref().unwrap().get("kettle-12-travel");
    assert!(matches!(travel, Some(Some(t)) if t <= 7));
    assert!(!p
        .late
        .as_ref()
        .unwrap()
        .iter()
        .any(|l| l.sku == "kettle-12-travel"));
}

/// Microlp and HiGHS prove the same optimum on small generated scenarios.
#[cfg(feature = "highs")]
#[test]
fn microlp_and_highs_agree_on_small_time_phased_scenarios() {
    let size = TimedSize {
        products: 2,
        factories: 2,
        materials: 3,
        periods: 3,
        max_breaks: 2,
    };
    let mut compared = 0;
    for seed in 1..=6 {
        let v = random_timed_scenario(seed, size).validate().unwrap();
        let exact = |solver| {
            let mut o = options(solver, 120);
            o.mip_gap = 0.0;
            common::solve_with(&v, &o)
        };
        let (h, m) = (exact(SolverKind::Highs), exact(SolverKind::Microlp));
        assert_eq!(h.status, m.status, "seed {seed}");
        if h.status == PlanStatus::Infeasible {
            continue;
        }
        assert_eq!(h.status, PlanStatus::Optimal, "seed {seed}");
        let (a, b) = (h.exact_costs.total(), m.exact_costs.total());
        assert!(
            (a - b).abs() <= 1e-6 * a.max(1.0),
            "seed {seed}: {a} vs {b}"
        );
        compared += 1;
    }
    assert!(compared >= 3, "only {compared} feasible seeds");
}

/// The saving over lot-for-lot is never negative: the MILP starts from a
/// plan at most as costly, and returns its best.
#[test]
fn never_worse_than_lot_for_lot() {
    let solver = SolverKind::default_available().unwrap();
    for seed in 1..=3 {
        let v = random_timed_scenario(seed, TimedSize::SMALL)
            .validate()
            .unwrap();
        let Some(mrp) = greedy_plan(&v) else { continue };
        let p = common::solve_with(&v, &options(solver, 5));
        assert!(p.total_cost <= mrp.total_cost, "seed {seed}");
    }
}

#[test]
fn verify_catches_plans_that_break_time_rules() {
    let v = weeks();
    let good = greedy_plan(&v).unwrap();
    assert_eq!(verify_plan(&v, &good), Ok(()));

    // An order placed one period later arrives after its material is used.
    let mut late_order = good.clone();
    let i = late_order
        .purchases
        .iter()
        .position(|x| x.arrives.unwrap() + 1 < 8)
        .unwrap();
    let x = &mut late_order.purchases[i];
    x.period = Some(x.period.unwrap() + 1);
    x.arrives = Some(x.arrives.unwrap() + 1);
    let r = rules(&v, &late_order);
    assert!(r.contains(&Rule::Material), "{r:?}");

    // An arrival that is not the order period plus the lead time.
    let mut wrong_arrival = good.clone();
    wrong_arrival.purchases[0].arrives = Some(wrong_arrival.purchases[0].period.unwrap());
    assert!(rules(&v, &wrong_arrival).contains(&Rule::Period));

    // An order too late to arrive within the horizon.
    let mut past = good.clone();
    past.purchases[0].period = Some(7);
    past.purchases[0].arrives = Some(9);
    assert!(rules(&v, &past).contains(&Rule::Period));

    // A run moved into the week cixi is closed.
    let mut closed = good.clone();
    let j = closed
        .runs
        .iter()
        .position(|r| r.factory == "cixi-1")
        .unwrap();
    closed.runs[j].period = Some(4);
    assert!(rules(&v, &closed).contains(&Rule::Capacity));

    // A travel kettle run moved after its due period (it may not be late).
    let mut late_run = good.clone();
    let k = late_run
        .runs
        .iter()
        .position(|r| r.sku == "kettle-12-travel")
        .unwrap();
    late_run.runs[k].period = Some(7);
    let r = rules(&v, &late_run);
    assert!(r.contains(&Rule::Late), "{r:?}");

    // Misreported stock and late units.
    let mut stock = good.clone();
    stock.stock.as_mut().unwrap().0[0].1[3] += 5.0;
    assert!(rules(&v, &stock).contains(&Rule::Stock));
    let mut late = good.clone();
    late.late = Some(vec![c2m_planner::LateUnits {
        sku: "kettle-17-white".into(),
        period: 2,
        units: 10,
    }]);
    assert!(rules(&v, &late).contains(&Rule::Late));

    // Lateness left out of the cost.
    let mut cost = good.clone();
    cost.cost_breakdown.lateness += 100;
    assert!(rules(&v, &cost).contains(&Rule::Cost));
}

// kettle-weeks with the travel kettle's first 200 due in period 0, never late.
// Period 0 has only what is on hand (steel's receipt and every order arrive
// in period 1 or later): elements 0 and small boxes 0 cover none of the 200;
// steel 180 / 0.29 = 620 units, white ABS 25 / 0.08 = 312, bases 500 cover
// all 200. Elements first arrive in period 2 (10 days), boxes in period 1
// (4 days), so the backlog of 200 stands in periods 0 and 1: short by 200 from
// period 0. Only elements and small boxes are causes.
#[test]
fn the_diagnosis_names_only_the_materials_that_cannot_cover_the_shortfall() {
    let v = Scenario::from_toml_str(include_str!("data/kettle-weeks-travel-early.toml"))
        .unwrap()
        .validate()
        .unwrap();
    let solver = SolverKind::default_available().unwrap();
    let p = plan(&v, &options(solver, 20)).unwrap();
    assert_eq!(p.status, PlanStatus::Infeasible);
    let short: Vec<_> = p
        .shortfalls
        .iter()
        .map(|s| (s.sku.as_str(), s.short_by, s.period))
        .collect();
    assert_eq!(short, vec![("kettle-12-travel", 200, Some(0))]);
    let d = p.diagnosis.as_ref().unwrap();
    let travel: Vec<&String> = d
        .reasons
        .iter()
        .filter(|r| r.starts_with("`kettle-12-travel`"))
        .collect();
    assert_eq!(travel.len(), 1, "{:?}", d.reasons);
    let named: Vec<&str> = [
        "steel-304",
        "element-1200w",
        "abs-white",
        "base-360",
        "box-small",
    ]
    .into_iter()
    .filter(|m| travel[0].contains(&format!("material `{m}`")))
    .collect();
    assert_eq!(named, vec!["element-1200w", "box-small"], "{}", travel[0]);
    assert!(
        travel[0].contains("cover 0 units of the 200 due by then"),
        "{}",
        travel[0]
    );
    let mut late = d.late_offers.clone();
    late.sort();
    assert_eq!(
        late,
        vec![
            "shunde-elec/element-1200w: 10 days, first arrival in period 2",
            "wenzhou-pack/box-small: 4 days, first arrival in period 1",
        ]
    );
    assert!(d.missing_offers.is_empty());
    assert!(d.supplier_caps.is_empty());
}

/// Shadow prices take solves of their own after the plan's (with microlp one LP and a
/// re-solve per binding row: hundreds on a long horizon), and they are held to the explanations'
/// time, a quarter of the time limit, so that the limit bounds the whole call. With the
/// time they need they are there; with none left they are missing and say why, rather
/// than shown with zeros. Before, `plan --time-limit 5` on kettle-weeks stretched to 104
/// weeks took 15-21 s, the prices alone 10-16 s past the limit.
#[test]
fn shadow_prices_are_held_to_the_explanations_time() {
    let v = weeks();
    for &solver in SolverKind::available() {
        let mut o = options(solver, 30);
        o.shadow_prices = true;
        let p = plan(&v, &o).unwrap();
        let t = p.time.as_ref().expect("a version 2 plan explains itself");
        assert!(t.shadow_prices.is_some(), "{solver:?}: {t:?}");
        assert_eq!(t.shadow_prices_missing, None, "{solver:?}");

        // A limit that leaves the explanations no time to solve anything: the plan is
        // what the start search found, its prices are missing, and what each late
        // product would cost on time is unknown.
        o.time_limit = Duration::from_micros(200);
        let p = plan(&v, &o).unwrap();
        let t = p.time.as_ref().expect("a version 2 plan explains itself");
        assert_eq!(t.shadow_prices, None, "{solver:?}");
        assert_eq!(
            t.shadow_prices_missing,
            Some(ExplanationMissing::OutOfTime {
                budget_seconds: 50e-6
            }),
            "{solver:?}"
        );
        assert!(
            t.lateness
                .iter()
                .all(|l| l.on_time == c2m_planner::OnTime::Unknown),
            "{solver:?}: {:?}",
            t.lateness
        );
        assert!(rules(&v, &p).is_empty(), "{solver:?}: {:?}", rules(&v, &p));
        // The report says so in words.
        let text = c2m_planner::report::render_text(&v, &p);
        assert!(
            text.contains("Shadow prices: not computed within the explanations' 0.00005 s"),
            "{text}"
        );
    }
}
