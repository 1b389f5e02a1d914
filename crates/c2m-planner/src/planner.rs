//! From a validated scenario to a plan: greedy start, MILP, and, when demand
//! cannot be met, the elastic model that finds the best partial plan.

use std::time::{Duration, Instant};

use good_lp::Expression;

use crate::explain;
use crate::greedy::greedy_decisions;
use crate::model::{build_split, BuildOptions, Formulation};
use crate::phased::{self, plan_from_schedule, Schedule};
use crate::plan::{explanation_budget, plan_from_decisions, Decisions, Plan, PlanStatus};
use crate::plan::{LatenessChoice, OnTime, TimeExplanation};
use crate::solve::SolverKind;
use crate::solve::{limit_until, solve_model, ExplainLps, Outcome, SolveOptions, SolverError};
use crate::validate::ValidatedScenario;

/// Relative gaps at or below this are treated as proven optimal: solvers
/// stop at an absolute gap of about 1e-6 even when asked for zero.
const OPTIMAL_GAP: f64 = 1e-7;

/// Absolute gaps (minor units) at or below this are proven optimal too: a
/// hundredth of a cent is below anything the plan reports.
const OPTIMAL_ABS_GAP: f64 = 1e-2;

/// Work per second of the start search (`phased::improve`: evaluations times
/// periods squared) on the machine its effort was sized on (2 cores, release
/// build, idle): how a time budget becomes a work bound. Measured on the
/// benchmark's v2 sizes: 24-33 M on the middle size (which converges within
/// 11 M, a third of a second), 31-34 M on the large (which does not).
const START_WORK_PER_SECOND: f64 = 30e6;

/// Why no plan could be made. An infeasible scenario is *not* an error: it
/// is a plan with status `infeasible` and its shortfalls.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Solver(#[from] SolverError),
    /// The time limit passed before the solver found any plan, and the
    /// greedy rules found none either.
    #[error("no plan found within the time limit of {0:?}")]
    NoSolution(Duration),
}

/// Plans the cycle: the MILP of `planning-model.md` solved as `opts` says.
///
/// This call is CPU-bound and may run for up to the time limit (twice for
/// an infeasible scenario): async callers run it with `spawn_blocking`.
pub fn plan(v: &ValidatedScenario, opts: &SolveOptions) -> Result<Plan, PlanError> {
    let started = Instant::now();
    if !opts.solver.is_available() {
        return Err(SolverError::NotAvailable(opts.solver).into());
    }
    if v.is_timed() {
        return plan_timed(v, opts, started);
    }
    let greedy = greedy_decisions(v);
    let model = build_split(
        v,
        &BuildOptions {
            formulation: opts.formulation,
            ..Default::default()
        },
        split_integers(opts),
    );
    let layout = model.layout();
    let start = match (&greedy, opts.warm_start) {
        (Some(d), true) => Some(layout.start_values(v, d)),
        _ => None,
    };
    tracing::debug!(
        variables = layout.n_vars,
        rows = model.constraints.len(),
        formulation = opts.formulation.name(),
        solver = opts.solver.name(),
        "model built"
    );
    let outcome = solve_model(model, opts.solver, opts.time_limit, opts.mip_gap, start)?;

    let (decisions, mut plan) = match outcome {
        Outcome::Solved(raw) => {
            let d = layout.decisions(v, &raw.values);
            let mut plan = plan_from_decisions(v, &d, PlanStatus::Feasible, opts.solver.name());
            let bound = raw.best_bound.map(|b| b + layout.constant);
            set_gap(&mut plan, bound, raw.finished);
            (d, plan)
        }
        Outcome::NoSolution => match greedy {
            Some(d) => {
                let mut plan = plan_from_decisions(v, &d, PlanStatus::Feasible, "greedy");
                plan.gap = f64::INFINITY;
                (d, plan)
            }
            None => return Err(PlanError::NoSolution(opts.time_limit)),
        },
        Outcome::Infeasible => {
            let d = best_partial_plan(v, opts)?;
            let mut plan = plan_from_decisions(v, &d, PlanStatus::Infeasible, opts.solver.name());
            plan.diagnosis = Some(explain::diagnose(v, &d));
            if plan.shortfalls.is_empty() {
                // The solver called the model infeasible, yet the elastic
                // model met demand: trust the plan, not the claim.
                tracing::warn!("elastic model met demand after an infeasible verdict");
                plan.status = PlanStatus::Feasible;
                plan.gap = f64::INFINITY;
                plan.diagnosis = None;
            }
            (d, plan)
        }
    };

    plan.cost_per_unit = explain::cost_per_unit(v, &decisions);
    plan.binding = explain::binding(v, &decisions);
    if opts.shadow_prices && plan.status != PlanStatus::Infeasible {
        let lps = ExplainLps::new(opts.solver, explanation_budget(opts.time_limit));
        match explain::shadow_prices(v, &decisions, &lps) {
            Ok(sp) => plan.shadow_prices = Some(sp),
            Err(missing) => {
                tracing::warn!(%missing, "no shadow prices");
                plan.shadow_prices_missing = Some(missing);
            }
        }
    }
    plan.solve_seconds = started.elapsed().as_secs_f64();
    Ok(plan)
}

/// Whether to split large integer columns (see `model::build_split`): for
/// HiGHS with the tight model. The big-M model stays the plain baseline,
/// and microlp has no such cost.
fn split_integers(opts: &SolveOptions) -> bool {
    opts.solver == SolverKind::Highs && opts.formulation == Formulation::Tight
}

/// Sets status, gap and best bound from the solver's bound (on the total).
fn set_gap(plan: &mut Plan, bound: Option<f64>, finished: bool) {
    let total = plan.exact_costs.total();
    let gap = match bound {
        Some(b) => ((total - b) / total.abs().max(1e-9)).max(0.0),
        None if finished => 0.0,
        None => f64::INFINITY,
    };
    let abs_gap = bound.map_or(0.0, |b| total - b);
    if finished && (gap <= OPTIMAL_GAP || abs_gap <= OPTIMAL_ABS_GAP) {
        plan.status = PlanStatus::Optimal;
        plan.gap = 0.0;
        plan.best_bound = Some(bound.unwrap_or(total).min(total));
    } else {
        plan.status = PlanStatus::Feasible;
        plan.gap = gap;
        plan.best_bound = bound;
    }
}

/// The elastic model: demand may fall short at a penalty that dominates
/// every real cost, so the solver makes as much as it can, as cheaply as it can.
fn best_partial_plan(v: &ValidatedScenario, opts: &SolveOptions) -> Result<Decisions, PlanError> {
    let model = build_split(
        v,
        &BuildOptions {
            formulation: opts.formulation,
            elastic: true,
            ..Default::default()
        },
        split_integers(opts),
    );
    let layout = model.layout();
    // All zero is always a plan of the elastic model: a safe start.
    let start = Some(layout.start_values(v, &Decisions::empty(v)));
    match solve_model(model, opts.solver, opts.time_limit, opts.mip_gap, start)? {
        Outcome::Solved(raw) => Ok(layout.decisions(v, &raw.values)),
        Outcome::NoSolution => Ok(Decisions::empty(v)),
        Outcome::Infeasible => Err(SolverError::Failed {
            solver: opts.solver,
            message: "the elastic model, which always has a plan, was called infeasible"
                .to_string(),
        }
        .into()),
    }
}

/// Plans a time-phased (version 2) scenario: lot-for-lot start, the MILP,
/// and for an infeasible one the elastic model and its diagnosis.
fn plan_timed(
    v: &ValidatedScenario,
    opts: &SolveOptions,
    started: Instant,
) -> Result<Plan, PlanError> {
    let mut time_limit = opts.time_limit;
    let mut proven_infeasible = false;
    let greedy = match phased::greedy::greedy_schedule(v) {
        Some(d) => Some(d),
        // The rules could not place every due: first the rules again with
        // the dues they could not place put first; then phase one, within a
        // quarter of the time limit, finds a plan that does (the start, with
        // its orders bought again by lot-for-lot) or proves that none
        // exists. Without a warm start the model runs as written.
        None if !opts.warm_start => None,
        None => match phased::greedy::repaired_schedule(v) {
            Some(d) => Some(d),
            None => {
                let searching = Instant::now();
                let found = phase_one(v, opts, opts.time_limit / 4)?;
                time_limit = time_limit.saturating_sub(searching.elapsed());
                tracing::debug!(
                    seconds = searching.elapsed().as_secs_f64(),
                    outcome = match &found {
                        PhaseOne::Feasible(_) => "a plan meets every due",
                        PhaseOne::Infeasible => "no plan meets every due",
                        PhaseOne::Unknown => "not known",
                    },
                    "phase one"
                );
                match found {
                    PhaseOne::Feasible(d) => Some(phased::greedy::rebuy(v, d)),
                    PhaseOne::Infeasible => {
                        proven_infeasible = true;
                        None
                    }
                    PhaseOne::Unknown => None,
                }
            }
        },
    };
    // The warm start: the lot-for-lot plan, or the same runs with orders
    // that cover several periods where that is cheaper.
    let start_plan = greedy.as_ref().map(|d| {
        let better = phased::greedy::consolidated(v, d)
            .map(|buy| Schedule {
                x: d.x.clone(),
                buy,
            })
            .filter(|c| c.costs(v).total() < d.costs(v).total());
        better.unwrap_or_else(|| d.clone())
    });
    let build = phased::model::Options {
        formulation: opts.formulation,
        split_integers: split_integers(opts),
        assign_supply: opts.solver == SolverKind::Highs,
        ..Default::default()
    };
    // Improve the start by local search, within half the time limit (at
    // most 16 s), taken from the solver's time: on the benchmark's sizes
    // the solver seldom improves on the start, so the search's time buys
    // more (the middle size converges long before; on the large the bound
    // at 30 s was where it was with a quarter, the plans 0.07 % cheaper).
    let start_plan = match start_plan {
        Some(d) if opts.warm_start => {
            let searching = Instant::now();
            let budget = (opts.time_limit / 2).min(Duration::from_secs(16));
            // Sized so an idle machine spends about half the budget: one twice as
            // busy still finishes the same work, and so gets the same start.
            let effort = phased::improve::Effort {
                work: (budget.as_secs_f64() * START_WORK_PER_SECOND / 2.0) as u64,
                deadline: searching + budget,
            };
            let b = phased::model::bounds(
                v,
                &phased::model::Options {
                    formulation: Formulation::Tight,
                    ..Default::default()
                },
            );
            let (better, work) = phased::improve::improve(v, &b, &d, effort);
            tracing::debug!(
                seconds = searching.elapsed().as_secs_f64(),
                work,
                effort = effort.work,
                before = d.costs(v).total(),
                after = better.costs(v).total(),
                "start improved"
            );
            time_limit = time_limit.saturating_sub(searching.elapsed());
            Some(better)
        }
        other => other,
    };
    let (problem, layout) = phased::model::build(v, &build);
    let start = match (&start_plan, opts.warm_start) {
        (Some(d), true) => Some(layout.start_values(v, d)),
        _ => None,
    };
    tracing::debug!(
        variables = layout.n_vars,
        rows = problem.constraints.len(),
        formulation = opts.formulation.name(),
        solver = opts.solver.name(),
        periods = v.periods(),
        "time-phased model built"
    );
    let outcome = if proven_infeasible {
        Outcome::Infeasible
    } else {
        solve_model(problem, opts.solver, time_limit, opts.mip_gap, start)?
    };
    let (schedule, mut plan) = match outcome {
        Outcome::Solved(raw) => {
            let d = layout.schedule(v, &raw.values);
            let mut plan = plan_from_schedule(v, &d, PlanStatus::Feasible, opts.solver.name());
            set_gap(&mut plan, raw.best_bound, raw.finished);
            (d, plan)
        }
        Outcome::NoSolution => match start_plan {
            Some(d) => {
                let mut plan = plan_from_schedule(v, &d, PlanStatus::Feasible, "greedy");
                plan.gap = f64::INFINITY;
                (d, plan)
            }
            None => return Err(PlanError::NoSolution(opts.time_limit)),
        },
        Outcome::Infeasible => {
            let d = best_partial_schedule(v, opts)?;
            let mut plan = plan_from_schedule(v, &d, PlanStatus::Infeasible, opts.solver.name());
            plan.diagnosis = Some(phased::explain::diagnose(v, &d));
            if plan.shortfalls.is_empty() {
                tracing::warn!("elastic model met every due after an infeasible verdict");
                plan.status = PlanStatus::Feasible;
                plan.gap = f64::INFINITY;
                plan.diagnosis = None;
            }
            (d, plan)
        }
    };
    plan.cost_per_unit = phased::explain::cost_per_unit(v, &schedule);
    if plan.status != PlanStatus::Infeasible {
        let mut time = TimeExplanation {
            capacity: phased::explain::binding_capacity(v, &schedule),
            just_in_time: phased::explain::just_in_time(v, &schedule),
            lateness: Vec::new(),
            shadow_prices: None,
            shadow_prices_missing: None,
            consolidation: Some(phased::explain::consolidation(v, &schedule)),
        };
        if opts.shadow_prices {
            // One budget for both: the shadow prices' LPs, then what each late product
            // would cost on time.
            let lps = ExplainLps::new(opts.solver, explanation_budget(opts.time_limit));
            match phased::explain::shadow_prices(v, &schedule, &lps) {
                Ok(sp) => time.shadow_prices = Some(sp),
                Err(missing) => {
                    tracing::warn!(%missing, "no shadow prices");
                    time.shadow_prices_missing = Some(missing);
                }
            }
            time.lateness = lateness_choices(v, opts, &plan, &schedule, lps.until)?;
        }
        plan.time = Some(time);
    }
    plan.solve_seconds = started.elapsed().as_secs_f64();
    Ok(plan)
}

/// For each product with late units: what its lateness costs, and what the
/// cheapest plan that makes it on time would cost more (one more solve per
/// late product, within a quarter of the time limit, at most 10 s, and not past
/// `until`, the end of the explanations' time: `Unknown` once it has passed).
/// Lateness was chosen because it is cheaper than every on-time alternative, or
/// because there is none.
fn lateness_choices(
    v: &ValidatedScenario,
    opts: &SolveOptions,
    plan: &Plan,
    d: &Schedule,
    until: Instant,
) -> Result<Vec<LatenessChoice>, PlanError> {
    let s = v.scenario();
    let made = d.made(v);
    let mut out = Vec::new();
    for (p, prod) in s.products.iter().enumerate() {
        let Some(late_cost) = prod.late_cost else {
            continue;
        };
        let unit_periods: i64 = phased::backlog(v.due(p), &made[p]).iter().sum();
        if unit_periods == 0 {
            continue;
        }
        let choice = |on_time| LatenessChoice {
            sku: prod.sku.clone(),
            unit_periods,
            cost: late_cost * unit_periods as f64,
            on_time,
        };
        // A quarter of the plan's own limit, at most 10 s, within the explanations'
        // time: the bound it proves is a valid "at least" whenever it stops.
        let Some(limit) = limit_until(until, (opts.time_limit / 4).min(Duration::from_secs(10)))
        else {
            out.push(choice(OnTime::Unknown));
            continue;
        };
        let (problem, _) = phased::model::build(
            v,
            &phased::model::Options {
                formulation: opts.formulation,
                split_integers: split_integers(opts),
                on_time: Some(p),
                ..Default::default()
            },
        );
        let total = plan.exact_costs.total();
        let on_time = match solve_model(problem, opts.solver, limit, opts.mip_gap, None)? {
            Outcome::Infeasible => OnTime::Impossible,
            Outcome::NoSolution => OnTime::Unknown,
            Outcome::Solved(raw) => match raw.best_bound {
                Some(b) => OnTime::CostsMore {
                    extra: (b - total).max(0.0),
                    proven: raw.finished,
                },
                None => OnTime::Unknown,
            },
        };
        out.push(choice(on_time));
    }
    Ok(out)
}

/// What phase one found: whether any plan meets every due.
#[derive(Debug)]
pub(crate) enum PhaseOne {
    /// A plan that meets every due (costs not considered).
    Feasible(Schedule),
    /// Proven: no plan meets every due.
    Infeasible,
    /// Neither within the time given.
    Unknown,
}

/// Phase one of the two-phase method, for when the lot-for-lot rules
/// cannot place every due: the model itself with its costs dropped. Any plan
/// is optimal for it, so the solver stops at the first one it finds (the
/// start the rules could not give), or proves that none exists. The tight
/// model's valid inequalities stay in, which is what lets the solver find
/// plans here that the elastic model (`best_partial_schedule`), whose
/// shortfalls would void them, does not.
pub(crate) fn phase_one(
    v: &ValidatedScenario,
    opts: &SolveOptions,
    time_limit: Duration,
) -> Result<PhaseOne, PlanError> {
    let (mut problem, layout) = phased::model::build(
        v,
        &phased::model::Options {
            formulation: opts.formulation,
            split_integers: split_integers(opts),
            ..Default::default()
        },
    );
    problem.objective = Expression::default();
    Ok(
        match solve_model(problem, opts.solver, time_limit, 0.0, None)? {
            Outcome::Solved(raw) => PhaseOne::Feasible(layout.schedule(v, &raw.values)),
            Outcome::Infeasible => PhaseOne::Infeasible,
            Outcome::NoSolution => PhaseOne::Unknown,
        },
    )
}

/// What the greedy rules, in the order of dues that leaves out the fewest units, can
/// place (with lot-for-lot orders), or nothing.
fn partial_start(v: &ValidatedScenario) -> Schedule {
    phased::greedy::greedy_partial_schedule(v)
        .map(|(d, _)| d)
        .unwrap_or_else(|| Schedule::empty(v))
}

/// The elastic version 2 model: dues may fall short at a penalty that
/// dominates every real cost, so the solver makes as much as it can, as
/// early as it can, as cheaply as it can.
fn best_partial_schedule(
    v: &ValidatedScenario,
    opts: &SolveOptions,
) -> Result<Schedule, PlanError> {
    let (problem, layout) = phased::model::build(
        v,
        &phased::model::Options {
            formulation: opts.formulation,
            elastic: true,
            split_integers: split_integers(opts),
            ..Default::default()
        },
    );
    let start = Some(layout.start_values(v, &partial_start(v)));
    match solve_model(problem, opts.solver, opts.time_limit, opts.mip_gap, start)? {
        Outcome::Solved(raw) => Ok(layout.schedule(v, &raw.values)),
        Outcome::NoSolution => Ok(Schedule::empty(v)),
        Outcome::Infeasible => Err(SolverError::Failed {
            solver: opts.solver,
            message: "the elastic model, which always has a plan, was called infeasible"
                .to_string(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(text: &str) -> ValidatedScenario {
        Scenario::from_toml_str(text)
            .expect("parses")
            .validate()
            .expect("valid")
    }

    fn options(solver: SolverKind) -> SolveOptions {
        SolveOptions {
            solver,
            time_limit: Duration::from_secs(20),
            ..Default::default()
        }
    }

    /// Where the lot-for-lot rules find no plan, phase one finds one that
    /// meets every due, and it passes the independent check.
    #[test]
    fn phase_one_finds_the_plan_the_rules_miss() {
        let v = scenario(include_str!("../tests/data/rules-miss.toml"));
        assert!(phased::greedy::greedy_schedule(&v).is_none());
        for &solver in SolverKind::available() {
            let opts = options(solver);
            let PhaseOne::Feasible(d) = phase_one(&v, &opts, opts.time_limit).expect("solves")
            else {
                panic!("{solver:?}: phase one found no plan");
            };
            let d = phased::greedy::rebuy(&v, d);
            let plan = plan_from_schedule(&v, &d, PlanStatus::Feasible, "phase one");
            assert!(
                plan.shortfalls.is_empty(),
                "{solver:?}: {:?}",
                plan.shortfalls
            );
            if let Err(violations) = crate::verify_plan(&v, &plan) {
                panic!("{solver:?}: {violations:?}");
            }
        }
    }

    /// Where no plan meets every due, phase one proves it.
    #[test]
    fn phase_one_proves_that_no_plan_exists() {
        // `b` due in period 1 instead, never late: its material's only offer
        // arrives in period 2 at the earliest.
        let text = include_str!("../tests/data/rules-miss.toml");
        let due_b = "period = 2, quantity = 80 } ]\n\n[[materials]]";
        assert!(text.contains(due_b));
        let v = scenario(&text.replace(due_b, "period = 1, quantity = 80 } ]\n\n[[materials]]"));
        assert!(phased::greedy::greedy_schedule(&v).is_none());
        for &solver in SolverKind::available() {
            let opts = options(solver);
            let found = phase_one(&v, &opts, opts.time_limit).expect("solves");
            assert!(
                matches!(found, PhaseOne::Infeasible),
                "{solver:?}: {found:?}"
            );
        }
    }
}
