//! Solver behaviour: time limits and gaps, solver choice, and the model's
//! own corner cases.

mod common;

use std::time::Duration;

use c2m_planner::generate::{random_scenario, Size};
use c2m_planner::{plan, Formulation, PlanStatus, SolveOptions, SolverKind};
use common::{scenario, solve_all};

#[test]
fn solver_names_parse() {
    assert_eq!("highs".parse::<SolverKind>().unwrap(), SolverKind::Highs);
    assert_eq!(
        "MicroLP".parse::<SolverKind>().unwrap(),
        SolverKind::Microlp
    );
    assert!("cbc".parse::<SolverKind>().is_err());
    assert!(!SolverKind::available().is_empty());
    assert_eq!(
        SolveOptions::default().solver,
        SolverKind::available()[0],
        "the default is the best solver compiled in"
    );
    #[cfg(feature = "highs")]
    assert_eq!(SolverKind::available()[0], SolverKind::Highs);
}

// The model lets production exceed demand (constraint 1 is `>=`), so when a
// unit costs less to make than the holding cost of the material it uses
// up, making extra units pays. Here: need 90, a break at 100 (price 8 vs
// 10), holding 15, unit cost 0. Buy 100 at 8 = 800 and make 100: nothing
// is left, total 800 (buying 90 at 10 would be 900).
#[test]
fn over_production_to_use_up_stock_when_it_pays() {
    let v = scenario(
        r#"
name = "quirk"
currency = "CNY"
[[products]]
sku = "p"
demand = 90
bom = { m = 1.0 }
[[materials]]
id = "m"
unit = "kg"
on_hand = 0.0
holding_cost = 15.0
[[factories]]
id = "f"
capacity_hours = 1000.0
[[factories.lines]]
sku = "p"
unit_cost = 0.0
hours_per_unit = 1.0
[[suppliers]]
id = "s"
lead_days = 1
[[suppliers.offers]]
material = "m"
breaks = [ { min_qty = 0.0, unit_price = 10.0 }, { min_qty = 100.0, unit_price = 8.0 } ]
"#,
    );
    for p in solve_all(&v) {
        assert_eq!(p.total_cost, 800);
        assert_eq!(p.runs[0].quantity, 100);
    }
}

#[test]
fn a_time_limit_gives_a_checked_plan_with_its_gap() {
    let v = random_scenario(7, Size::LARGE).validate().unwrap();
    let opts = SolveOptions {
        solver: SolverKind::available()[0],
        time_limit: Duration::from_millis(500),
        mip_gap: 0.0,
        formulation: Formulation::Tight,
        warm_start: true,
        shadow_prices: false,
    };
    let p = common::solve_with(&v, &opts);
    match p.status {
        PlanStatus::Optimal => assert_eq!(p.gap, 0.0),
        PlanStatus::Feasible => assert!(p.gap > 0.0, "{}", p.gap),
        PlanStatus::Infeasible => assert!(!p.shortfalls.is_empty()),
    }
}

/// HiGHS gives duals, microlp finite differences: the shadow prices agree.
#[cfg(all(feature = "microlp", feature = "highs"))]
#[test]
fn shadow_prices_agree_between_solvers() {
    let text = include_str!("../../../examples/scenarios/kettle-c2m.toml");
    let v = c2m_planner::Scenario::from_toml_str(text)
        .unwrap()
        .validate()
        .unwrap();
    let get = |solver| {
        let p = plan(
            &v,
            &SolveOptions {
                solver,
                ..SolveOptions::default()
            },
        )
        .unwrap();
        p.shadow_prices.unwrap()
    };
    let h = get(SolverKind::Highs);
    let m = get(SolverKind::Microlp);
    for ((name, a), (_, b)) in h.materials.iter().zip(m.materials.iter()) {
        assert!(
            (a - b).abs() < 0.05 * a.abs().max(1.0),
            "{name}: {a} vs {b}"
        );
    }
    for ((name, a), (_, b)) in h.factory_hours.iter().zip(m.factory_hours.iter()) {
        assert!(
            (a - b).abs() < 0.05 * a.abs().max(1.0),
            "{name}: {a} vs {b}"
        );
    }
}

#[test]
fn an_unavailable_solver_is_an_error_not_a_panic() {
    let v = random_scenario(1, Size::SMALL).validate().unwrap();
    for kind in [SolverKind::Highs, SolverKind::Microlp] {
        if !kind.is_available() {
            let e = plan(
                &v,
                &SolveOptions {
                    solver: kind,
                    ..SolveOptions::default()
                },
            )
            .unwrap_err();
            assert!(e.to_string().contains("not compiled"), "{e}");
        }
    }
}

/// A version 1 plan's shadow prices are held to the explanations' time too (a quarter
/// of the time limit): with none left they are missing and say why, not zeros.
#[test]
fn shadow_prices_without_time_left_are_missing_not_zero() {
    let text = include_str!("../../../examples/scenarios/kettle-c2m.toml");
    let v = c2m_planner::Scenario::from_toml_str(text)
        .unwrap()
        .validate()
        .unwrap();
    for &solver in SolverKind::available() {
        let mut opts = SolveOptions {
            solver,
            time_limit: Duration::from_secs(30),
            ..SolveOptions::default()
        };
        let p = plan(&v, &opts).unwrap();
        assert!(p.shadow_prices.is_some(), "{solver:?}");
        assert_eq!(p.shadow_prices_missing, None, "{solver:?}");
        opts.time_limit = Duration::from_micros(200);
        let p = plan(&v, &opts).unwrap();
        assert_eq!(p.shadow_prices, None, "{solver:?}");
        assert_eq!(
            p.shadow_prices_missing,
            Some(c2m_planner::ExplanationMissing::OutOfTime {
                budget_seconds: 50e-6
            }),
            "{solver:?}"
        );
        let text = c2m_planner::report::render_text(&v, &p);
        assert!(text.contains("Shadow prices: not computed"), "{text}");
    }
}
