//! Helpers shared by the planner's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use c2m_planner::{
    plan, verify_plan, Formulation, Plan, Scenario, SolveOptions, SolverKind, ValidatedScenario,
};

pub fn scenario(toml: &str) -> ValidatedScenario {
    Scenario::from_toml_str(toml)
        .expect("test scenario parses")
        .validate()
        .expect("test scenario is valid")
}

/// Every solver and formulation combination compiled in.
pub fn all_options() -> Vec<SolveOptions> {
    let mut out = Vec::new();
    for &solver in SolverKind::available() {
        for formulation in [Formulation::Tight, Formulation::BigM] {
            for warm_start in [true, false] {
                out.push(SolveOptions {
                    solver,
                    time_limit: Duration::from_secs(30),
                    mip_gap: 0.0,
                    formulation,
                    warm_start,
                    shadow_prices: true,
                });
            }
        }
    }
    out
}

/// Plans with the given options and checks the plan independently.
pub fn solve_with(v: &ValidatedScenario, opts: &SolveOptions) -> Plan {
    let p = plan(v, opts).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
    if let Err(violations) = verify_plan(v, &p) {
        panic!(
            "{:?}/{:?}: plan breaks the model:\n{}\n{}",
            opts.solver,
            opts.formulation,
            violations
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            c2m_planner::report::render_json(&p)
        );
    }
    p
}

/// Plans with every solver/formulation, checks each plan, and returns them.
pub fn solve_all(v: &ValidatedScenario) -> Vec<Plan> {
    all_options().iter().map(|o| solve_with(v, o)).collect()
}
