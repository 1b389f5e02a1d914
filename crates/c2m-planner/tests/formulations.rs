//! The tight model (with HiGHS: large integers split in two, presolve off)
//! and the plain big-M model are the same model: on generated scenarios,
//! where run sizes and pack counts run into the hundreds and thousands, every
//! solver and formulation proves the same optimum, and every plan passes
//! `verify_plan`.

mod common;

use std::time::Duration;

use c2m_planner::generate::{random_scenario, Size};
use c2m_planner::{Formulation, PlanStatus, SolveOptions, SolverKind};

fn options() -> Vec<SolveOptions> {
    let mut out = Vec::new();
    for &solver in SolverKind::available() {
        for formulation in [Formulation::Tight, Formulation::BigM] {
            out.push(SolveOptions {
                solver,
                time_limit: Duration::from_secs(120),
                mip_gap: 0.0,
                formulation,
                warm_start: formulation == Formulation::Tight,
                shadow_prices: false,
            });
        }
    }
    out
}

#[test]
fn every_formulation_and_solver_finds_the_same_optimum() {
    for seed in 1..=8 {
        let v = random_scenario(seed, Size::SMALL).validate().unwrap();
        let plans: Vec<_> = options()
            .iter()
            .map(|o| (o.clone(), common::solve_with(&v, o)))
            .collect();
        let (first_opts, first) = &plans[0];
        for (opts, p) in &plans {
            assert_eq!(p.status, first.status, "seed {seed}: {opts:?}");
            if p.status == PlanStatus::Infeasible {
                continue;
            }
            assert_eq!(p.status, PlanStatus::Optimal, "seed {seed}: {opts:?}");
            // Optimal within the solvers' own tolerance (about 1e-6 relative).
            let (a, b) = (p.exact_costs.total(), first.exact_costs.total());
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "seed {seed}: {a} ({opts:?}) vs {b} ({first_opts:?})"
            );
        }
    }
}

/// The medium size with HiGHS, tight and big-M: same optimum.
#[cfg(feature = "highs")]
#[test]
fn medium_scenarios_agree_between_formulations_with_highs() {
    for seed in 1..=2 {
        let v = random_scenario(seed, Size::MEDIUM).validate().unwrap();
        let totals: Vec<f64> = [Formulation::Tight, Formulation::BigM]
            .into_iter()
            .map(|formulation| {
                let p = common::solve_with(
                    &v,
                    &SolveOptions {
                        solver: SolverKind::Highs,
                        time_limit: Duration::from_secs(120),
                        mip_gap: 0.0,
                        formulation,
                        warm_start: false,
                        shadow_prices: false,
                    },
                );
                assert_eq!(p.status, PlanStatus::Optimal, "seed {seed} {formulation:?}");
                p.exact_costs.total()
            })
            .collect();
        assert!(
            (totals[0] - totals[1]).abs() <= 1e-6 * totals[1].abs(),
            "seed {seed}: tight {} vs big-M {}",
            totals[0],
            totals[1]
        );
    }
}
