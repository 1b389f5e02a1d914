//! The batch planner: a validated scenario in, a plan out.
//!
//! It solves the MILP of `docs/planning-model.md` over materials,
//! all-units price breaks, packs, MOQs and factory capacity, and reads and
//! writes the scenario format of `docs/scenario-format.md`. Both
//! documents are contracts with tools outside the project.
//!
//! Layout:
//! - [`scenario`]: the file format (serde types, TOML/JSON, errors with places);
//! - [`validate`]: the rules; [`ValidatedScenario`] exists only after them;
//! - `model`: the formulation (tight and plain big-M) built with good_lp;
//! - `solve`: the back ends, HiGHS (feature `highs`) and microlp (feature
//!   `microlp`, the pure-Rust default);
//! - [`greedy_plan`]: the rule-based plan, used as warm start and baseline;
//! - [`verify_plan`]: an independent check of any plan against the model;
//! - `explain`: cost per unit, binding constraints, shadow prices, diagnosis;
//! - [`report`]: text and JSON rendering; a time-phased plan as a timeline
//!   (periods across) and drawn as a schedule (SVG);
//! - [`generate`]: seeded random scenarios for the benchmark and tests.
//!
//! Invariants: this crate does no I/O and knows nothing of async or the
//! server; [`plan`] is CPU-bound and bounded by its time limit, so async
//! callers run it with `spawn_blocking`. Money is computed in `f64` from the
//! decisions and rounded once, when the plan is reported.

mod explain;
pub mod generate;
mod greedy;
mod model;
mod phased;
mod plan;
mod planner;
pub mod report;
pub mod scenario;
mod solve;
pub mod validate;
mod verify;
pub mod whatif;

pub use greedy::greedy_plan;
pub use model::Formulation;
#[cfg(feature = "highs")]
pub use phased::decompose::{
    decomposition_bound, partial_integrality_bound, Decomposition, DecompositionBound,
    DecompositionError, KeepIntegers,
};
pub use plan::{
    explanation_budget, round_money, Binding, Completions, Consolidation, CostBreakdown, Diagnosis,
    ExactCosts, ExplanationMissing, FactoryPeriods, JustInTime, LateUnits, LatenessChoice,
    NamedSeries, NamedValues, OnTime, PeriodCapacity, PeriodShadowPrices, Plan, PlanStatus,
    Purchase, Run, ShadowPrices, Shortfall, TimeExplanation,
};
pub use planner::{plan, PlanError};
pub use scenario::{
    Due, Factory, FieldError, Horizon, Line, Material, Offer, PriceBreak, Product, Receipt,
    Scenario, ScenarioError, Supplier,
};
pub use solve::{SolveOptions, SolverError, SolverKind, UnknownSolver};
pub use validate::ValidatedScenario;
pub use verify::{verify_plan, Rule, Violation};
