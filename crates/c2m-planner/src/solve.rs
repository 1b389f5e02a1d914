//! Solver back ends: HiGHS (production) and microlp (pure Rust, default build).
//!
//! good_lp builds the model for both. For HiGHS the built problem is turned
//! into the underlying `highs::Model` before solving, because good_lp's
//! solution type hides what the plan must report: the true MIP gap, the best
//! bound (`mip_dual_bound`) and the row duals; the time limit, gap target and
//! warm start are set on that model too.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use good_lp::{Constraint, Expression, ProblemVariables, Variable};

use crate::model::{Formulation, Model};

/// What a back end needs of a built model (version 1 or 2): the variables,
/// objective and rows, and the facts that change how it is solved.
pub(crate) struct Problem {
    pub vars: ProblemVariables,
    /// Every variable in creation order: `all[i].index() == i`.
    pub all: Vec<Variable>,
    pub objective: Expression,
    pub constraints: Vec<Constraint>,
    pub has_integers: bool,
    /// Some integer columns are written as two (see `model::build_split`):
    /// HiGHS must not presolve them back together.
    #[cfg_attr(not(feature = "highs"), allow(dead_code))]
    pub split: bool,
    /// Infeasible before any solver looks (a due no line can make).
    pub trivially_infeasible: bool,
    /// HiGHS's integrality tolerance (see the HiGHS back end).
    #[cfg_attr(not(feature = "highs"), allow(dead_code))]
    pub feasibility_tolerance: f64,
    /// Whether HiGHS may run its root reduced-cost heuristic. Off for the time-phased
    /// models: its sub-MIP does not look at the clock, and ran minutes past a 30-second
    /// limit on the large benchmark (docs/planning-time.md). On for version 1, where it
    /// has not been seen to overrun and where, off, HiGHS called a big-M plan optimal that
    /// was not (the formulation tests' seed 7).
    #[cfg_attr(not(feature = "highs"), allow(dead_code))]
    pub root_reduced_cost: bool,
}

/// HiGHS's integrality tolerance for the models: a binary at 1e-6 (the
/// default) times a bound of 1e4..1e6 lets units through unpaid and under
/// the MOQ, and plans are checked exactly.
pub(crate) const TIGHT_TOLERANCE: f64 = 1e-9;

impl From<Model> for Problem {
    fn from(m: Model) -> Self {
        Problem {
            vars: m.vars,
            all: m.all,
            objective: m.objective,
            constraints: m.constraints,
            has_integers: m.has_integers,
            split: !m.splits.is_empty(),
            trivially_infeasible: m.trivially_infeasible,
            feasibility_tolerance: TIGHT_TOLERANCE,
            root_reduced_cost: true,
        }
    }
}

/// A solver compiled into this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SolverKind {
    /// HiGHS through its C API (cargo feature `highs`).
    Highs,
    /// The pure-Rust microlp (cargo feature `microlp`); slow on large MILPs.
    Microlp,
}

impl SolverKind {
    /// The solvers compiled in, best first.
    pub fn available() -> &'static [SolverKind] {
        &[
            #[cfg(feature = "highs")]
            SolverKind::Highs,
            #[cfg(feature = "microlp")]
            SolverKind::Microlp,
        ]
    }

    /// HiGHS when compiled in, else microlp.
    pub fn default_available() -> Option<SolverKind> {
        SolverKind::available().first().copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            SolverKind::Highs => "highs",
            SolverKind::Microlp => "microlp",
        }
    }

    pub fn is_available(self) -> bool {
        SolverKind::available().contains(&self)
    }
}

impl fmt::Display for SolverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A solver name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown solver `{0}` (expected `highs` or `microlp`)")]
pub struct UnknownSolver(pub String);

impl FromStr for SolverKind {
    type Err = UnknownSolver;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "highs" => Ok(SolverKind::Highs),
            "microlp" => Ok(SolverKind::Microlp),
            other => Err(UnknownSolver(other.to_string())),
        }
    }
}

/// How to solve.
#[derive(Debug, Clone, PartialEq)]
pub struct SolveOptions {
    pub solver: SolverKind,
    /// Wall-clock limit for the MILP; the best plan found by then is returned
    /// with its gap.
    pub time_limit: Duration,
    /// Relative gap at which the solver may stop. 0 asks for proven optimality.
    pub mip_gap: f64,
    pub formulation: Formulation,
    /// Start the solver from the greedy plan.
    pub warm_start: bool,
    /// Compute shadow prices (one extra LP; with microlp one LP per material
    /// and factory, per period for a time-phased scenario) and, for a
    /// time-phased scenario, what making each late product on time would
    /// cost (one more solve per late product).
    pub shadow_prices: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            solver: SolverKind::default_available().unwrap_or(SolverKind::Microlp),
            time_limit: Duration::from_secs(60),
            mip_gap: 0.0,
            formulation: Formulation::Tight,
            warm_start: true,
            shadow_prices: true,
        }
    }
}

/// What a solver run produced.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Solved(RawSolution),
    Infeasible,
    /// The time limit passed before any solution was found.
    NoSolution,
}

#[derive(Debug, Clone)]
pub(crate) struct RawSolution {
    /// Values of `Model::all`, by index.
    pub values: Vec<f64>,
    /// The solver proved optimality (within its gap target).
    pub finished: bool,
    /// Best bound on the solver's objective (without the model constant).
    pub best_bound: Option<f64>,
    /// Row duals, when the solver gives them (HiGHS, LP only).
    pub row_duals: Option<Vec<f64>>,
}

/// Why a solve failed for a reason other than the scenario itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolverError {
    #[error("solver `{0}` is not compiled into this build")]
    NotAvailable(SolverKind),
    #[error("{solver} failed: {message}")]
    Failed { solver: SolverKind, message: String },
}

/// A solve's time limit given what is left until `deadline`, at most `cap`; `None` when
/// less than a millisecond is left (a solve given no time would only fail).
pub(crate) fn limit_until(deadline: Instant, cap: Duration) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (left >= Duration::from_millis(1)).then(|| left.min(cap))
}

/// The LPs behind an explanation (shadow prices), each held to what is left of the
/// explanations' time ([`crate::plan::explanation_budget`]) and at most 30 s. An LP that
/// does not finish is an explanation missing, never a zero.
pub(crate) struct ExplainLps {
    pub solver: SolverKind,
    pub until: Instant,
    pub budget: Duration,
}

impl ExplainLps {
    pub fn new(solver: SolverKind, budget: Duration) -> ExplainLps {
        ExplainLps {
            solver,
            until: Instant::now() + budget,
            budget,
        }
    }

    fn out_of_time(&self) -> crate::plan::ExplanationMissing {
        crate::plan::ExplanationMissing::OutOfTime {
            budget_seconds: self.budget.as_secs_f64(),
        }
    }

    /// Solves `model` to optimality within the time left.
    pub fn solve(
        &self,
        model: impl Into<Problem>,
    ) -> Result<RawSolution, crate::plan::ExplanationMissing> {
        use crate::plan::ExplanationMissing::SolverFailed;
        let limit = limit_until(self.until, Duration::from_secs(30)).ok_or(self.out_of_time())?;
        match solve_model(model, self.solver, limit, 0.0, None) {
            Ok(Outcome::Solved(raw)) if raw.finished => Ok(raw),
            Ok(Outcome::Solved(_) | Outcome::NoSolution) if Instant::now() >= self.until => {
                Err(self.out_of_time())
            }
            Ok(Outcome::Solved(_) | Outcome::NoSolution) => Err(SolverFailed {
                message: format!("an LP did not finish within {:.1} s", limit.as_secs_f64()),
            }),
            Ok(Outcome::Infeasible) => Err(SolverFailed {
                message: "the LP with the plan's decisions fixed is infeasible".into(),
            }),
            Err(e) => Err(SolverFailed {
                message: e.to_string(),
            }),
        }
    }
}

impl ExplainLps {
    /// Finite differences of an LP's value: for each probe column (by index in
    /// `Problem::all`, each in `[0, step]`), how much the optimum falls per unit when
    /// that column is fixed at `step` rather than 0, the others at 0. The LP is solved
    /// once; each probe is re-solved from the base's basis (a few dual simplex pivots,
    /// not a solve from scratch: a long horizon has hundreds of binding rows). For a
    /// solver without this (HiGHS gives duals instead), `SolverFailed`.
    pub fn differences(
        &self,
        model: Problem,
        probes: &[usize],
        step: f64,
    ) -> Result<Vec<f64>, crate::plan::ExplanationMissing> {
        match self.solver {
            #[cfg(feature = "microlp")]
            SolverKind::Microlp => microlp_differences::differences(self, model, probes, step),
            other => {
                let _ = (model, probes, step);
                Err(crate::plan::ExplanationMissing::SolverFailed {
                    message: format!("{} gives no finite differences here", other.name()),
                })
            }
        }
    }
}

/// Solves a built model.
pub(crate) fn solve_model(
    model: impl Into<Problem>,
    solver: SolverKind,
    time_limit: Duration,
    mip_gap: f64,
    start: Option<Vec<f64>>,
) -> Result<Outcome, SolverError> {
    let started = Instant::now();
    let model: Problem = model.into();
    if model.trivially_infeasible {
        return Ok(Outcome::Infeasible);
    }
    if model.all.is_empty() {
        // Nothing to decide (no lines, no offers): the empty plan.
        return Ok(Outcome::Solved(RawSolution {
            values: Vec::new(),
            finished: true,
            best_bound: Some(0.0),
            row_duals: Some(vec![0.0; model.constraints.len()]),
        }));
    }
    let result = match solver {
        #[cfg(feature = "highs")]
        SolverKind::Highs => highs_backend::solve(model, time_limit, mip_gap, start),
        #[cfg(feature = "microlp")]
        SolverKind::Microlp => microlp_backend::solve(model, time_limit, mip_gap, start),
        #[allow(unreachable_patterns)]
        other => {
            let _ = (model, time_limit, mip_gap, start);
            Err(SolverError::NotAvailable(other))
        }
    };
    tracing::debug!(
        solver = solver.name(),
        seconds = started.elapsed().as_secs_f64(),
        "solve finished"
    );
    result
}

#[cfg(feature = "microlp")]
mod microlp_backend {
    use super::*;
    use good_lp::{
        ResolutionError, Solution, SolutionStatus, SolverModel, WithInitialSolution, WithMipGap,
        WithTimeLimit,
    };

    /// The model handed to microlp with its rows, minimised within `time_limit`.
    pub(super) fn problem(
        vars: ProblemVariables,
        objective: Expression,
        constraints: Vec<Constraint>,
        time_limit: Duration,
    ) -> good_lp::solvers::microlp::MicroLpProblem {
        let mut problem = vars
            .minimise(objective)
            .using(good_lp::microlp)
            .with_time_limit(time_limit.as_secs_f64());
        for c in constraints {
            problem.add_constraint(c);
        }
        problem
    }

    pub(super) fn solve(
        model: Problem,
        time_limit: Duration,
        mip_gap: f64,
        start: Option<Vec<f64>>,
    ) -> Result<Outcome, SolverError> {
        let fail = |message: String| SolverError::Failed {
            solver: SolverKind::Microlp,
            message,
        };
        let Problem {
            vars,
            all,
            objective,
            constraints,
            has_integers,
            ..
        } = model;
        let mut problem = problem(vars, objective, constraints, time_limit);
        if mip_gap > 0.0 {
            problem = problem
                .with_mip_gap(mip_gap as f32)
                .map_err(|e| fail(e.to_string()))?;
        }
        if let Some(start) = start {
            problem = problem.with_initial_solution(all.iter().copied().zip(start));
        }
        // microlp checks its own numerics with assertions, which can fire on valid but
        // numerically extreme models (1e300 prices, denormal pack sizes). A solver that
        // gives up must be a `SolverError` the caller can report, not a panic that takes
        // down a planning cycle or a what-if sweep.
        let solved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| problem.solve()))
            .map_err(|payload| {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".into());
                fail(format!("microlp stopped on an internal check: {why}"))
            })?;
        match solved {
            Ok(sol) => {
                let values = all.iter().map(|&v| sol.value(v)).collect();
                let finished = matches!(
                    sol.status(),
                    SolutionStatus::Optimal | SolutionStatus::GapLimit
                );
                let inner = sol.into_inner();
                let best_bound = if has_integers {
                    inner.stats().best_bound
                } else {
                    Some(inner.objective())
                };
                Ok(Outcome::Solved(RawSolution {
                    values,
                    finished,
                    best_bound,
                    row_duals: None,
                }))
            }
            Err(ResolutionError::Infeasible) => Ok(Outcome::Infeasible),
            Err(ResolutionError::Other(m)) if m.contains("Time limit") => Ok(Outcome::NoSolution),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

#[cfg(feature = "microlp")]
mod microlp_differences {
    use super::*;
    use crate::plan::ExplanationMissing;
    use good_lp::{ResolutionError, SolverModel};

    /// `f` with microlp's internal assertions as a failure, not a panic (as `solve`).
    fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ExplanationMissing> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
            ExplanationMissing::SolverFailed {
                message: "microlp stopped on an internal check".into(),
            }
        })
    }

    /// One edit of a solved LP (a column fixed), re-solved from its basis; an edit cut
    /// off by the time limit is the explanations' time running out.
    fn edited(
        lps: &ExplainLps,
        outcome: Result<microlp::SolveOutcome, microlp::Error>,
    ) -> Result<microlp::Solution, ExplanationMissing> {
        let failed = |message: String| ExplanationMissing::SolverFailed { message };
        match outcome {
            Ok(o) => match o.into_solution() {
                Ok(sol) if sol.status() == microlp::SolutionStatus::Optimal => Ok(sol),
                Ok(_) | Err(_) if Instant::now() >= lps.until => Err(lps.out_of_time()),
                Ok(_) | Err(_) => Err(failed("an LP probe did not finish".into())),
            },
            Err(microlp::Error::Infeasible) => Err(failed(
                "the LP with the plan's decisions fixed is infeasible".into(),
            )),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    pub(in crate::solve) fn differences(
        lps: &ExplainLps,
        model: Problem,
        probes: &[usize],
        step: f64,
    ) -> Result<Vec<f64>, ExplanationMissing> {
        let limit =
            limit_until(lps.until, Duration::from_secs(30)).ok_or_else(|| lps.out_of_time())?;
        let Problem {
            vars,
            objective,
            constraints,
            ..
        } = model;
        let problem = super::microlp_backend::problem(vars, objective, constraints, limit);
        let base = match guarded(|| problem.solve())? {
            Ok(sol) => sol.into_inner(),
            Err(ResolutionError::Other(m)) if m.contains("Time limit") => {
                return Err(lps.out_of_time())
            }
            Err(ResolutionError::Infeasible) => {
                return Err(ExplanationMissing::SolverFailed {
                    message: "the LP with the plan's decisions fixed is infeasible".into(),
                })
            }
            Err(e) => {
                return Err(ExplanationMissing::SolverFailed {
                    message: e.to_string(),
                })
            }
        };
        if base.status() != microlp::SolutionStatus::Optimal {
            return Err(lps.out_of_time());
        }
        // good_lp adds its variables to microlp one for one, in order.
        let columns: Vec<microlp::Variable> = base.iter().map(|(c, _)| c).collect();
        let mut base = base;
        for &j in probes {
            base = edited(lps, guarded(|| base.fix_var(columns[j], 0.0))?)?;
        }
        let value = base.objective();
        let mut out = Vec::with_capacity(probes.len());
        for &j in probes {
            if Instant::now() >= lps.until {
                return Err(lps.out_of_time());
            }
            let moved = edited(lps, guarded(|| base.fix_var(columns[j], step))?)?;
            out.push((value - moved.objective()) / step);
            base = edited(lps, guarded(|| moved.fix_var(columns[j], 0.0))?)?;
        }
        Ok(out)
    }
}

#[cfg(feature = "highs")]
mod highs_backend {
    use super::*;
    use good_lp::SolverModel;
    use highs::{HighsModelStatus, HighsSolutionStatus};

    pub(super) fn solve(
        model: Problem,
        time_limit: Duration,
        mip_gap: f64,
        start: Option<Vec<f64>>,
    ) -> Result<Outcome, SolverError> {
        let fail = |message: String| SolverError::Failed {
            solver: SolverKind::Highs,
            message,
        };
        let Problem {
            vars,
            objective,
            constraints,
            has_integers,
            split,
            feasibility_tolerance,
            root_reduced_cost,
            ..
        } = model;
        let mut problem = good_lp::solvers::highs::highs(vars.minimise(objective));
        for c in constraints {
            problem.add_constraint(c);
        }
        let mut m = problem.try_into_inner().map_err(|e| fail(e.to_string()))?;
        let mut set = |name: &str, value: f64| {
            m.try_set_option(name, value)
                .map_err(|e| fail(format!("cannot set option {name}: {e:?}")))
        };
        set("time_limit", time_limit.as_secs_f64().max(0.001))?;
        if has_integers {
            set("mip_rel_gap", mip_gap.max(0.0))?;
            // See `TIGHT_TOLERANCE`.
            set("mip_feasibility_tolerance", feasibility_tolerance)?;
            // See `Problem::root_reduced_cost`.
            m.try_set_option("mip_heuristic_run_root_reduced_cost", root_reduced_cost)
                .map_err(|e| {
                    fail(format!(
                        "cannot set option mip_heuristic_run_root_reduced_cost: {e:?}"
                    ))
                })?;
        }
        if split {
            // Presolve would merge each split integer back into one column
            // of large range (see `model::build_split`). The tight
            // model needs little presolving: with the split and presolve
            // off the medium benchmark solves several times faster.
            m.try_set_option("presolve", "off")
                .map_err(|e| fail(format!("cannot set option presolve: {e:?}")))?;
        }
        if let Some(start) = start {
            // An infeasible start is only a warning to HiGHS; it then starts cold.
            m.try_set_solution(Some(&start), None, None, None)
                .map_err(|e| fail(format!("cannot set the start solution: {e:?}")))?;
        }
        let solved = m
            .try_solve()
            .map_err(|e| fail(format!("solve failed: {e:?}")))?;
        let status = solved.status();
        tracing::debug!(?status, "HiGHS stopped");
        let finished = match status {
            HighsModelStatus::Optimal => true,
            HighsModelStatus::Infeasible => return Ok(Outcome::Infeasible),
            HighsModelStatus::UnboundedOrInfeasible => return Ok(Outcome::Infeasible),
            HighsModelStatus::ReachedTimeLimit
            | HighsModelStatus::ReachedIterationLimit
            | HighsModelStatus::ReachedSolutionLimit
            | HighsModelStatus::ReachedInterrupt
            | HighsModelStatus::ObjectiveBound
            | HighsModelStatus::ObjectiveTarget => false,
            other => return Err(fail(format!("model status {other:?}"))),
        };
        if solved.primal_solution_status() != HighsSolutionStatus::Feasible {
            return Ok(Outcome::NoSolution);
        }
        let solution = solved.get_solution();
        let best_bound = if has_integers {
            solved
                .double_info_value(c"mip_dual_bound")
                .ok()
                .filter(|b| b.is_finite())
        } else {
            Some(solved.objective_value())
        };
        Ok(Outcome::Solved(RawSolution {
            values: solution.columns().to_vec(),
            finished,
            best_bound,
            row_duals: (!has_integers).then(|| solution.dual_rows().to_vec()),
        }))
    }
}
