//! What-if analysis for planners: variants of a scenario compared side by
//! side, sweeps of one quantity, and threshold advice for a campaign.
//!
//! Layout:
//! - [`overlay`]: the overlay file (named variants of small changes) and
//!   applying it to a scenario, with errors naming the variant and the field;
//! - [`compare`]: plans of the base and each variant, rendered as a table,
//!   JSON or CSV;
//! - [`sweep`]: one quantity varied over a range, and the price-break
//!   volumes to mark on a chart;
//! - [`chart`]: the sweep drawn as SVG text;
//! - [`advice`]: the minimum viable batch and the price-ladder step-downs;
//! - [`tools`]: validate, summarise and convert scenarios;
//! - [`cli`]: the `what_if` example's command line, over an [`cli::Env`] that
//!   does the I/O, so tests run exactly what the binary runs.
//!
//! Like the rest of the crate, nothing here touches files or the terminal.

pub mod advice;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod overlay;
pub mod sweep;
pub mod tools;

use crate::{plan, Plan, PlanError, Scenario, SolveOptions};

/// Validates and plans one scenario; errors carry the scenario's name.
pub fn plan_scenario(s: &Scenario, opts: &SolveOptions) -> Result<Plan, String> {
    let name = s.name.clone();
    let v = s
        .clone()
        .validate()
        .map_err(|e| format!("{name}: invalid scenario:\n{e}"))?;
    plan(&v, opts).map_err(|e: PlanError| format!("{name}: no plan: {e}"))
}

/// The options the what-if tools solve with: the defaults without shadow
/// prices, which they never show and which cost one LP per resource.
pub fn default_options() -> SolveOptions {
    SolveOptions {
        shadow_prices: false,
        ..SolveOptions::default()
    }
}
