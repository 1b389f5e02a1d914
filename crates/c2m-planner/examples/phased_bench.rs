//! Measures the time-phased planner as `docs/planning-time.md` reports it:
//! generated scenarios of the middle or large size, `plan` with the
//! benchmark's `tight` options (warm start, no shadow prices), gap target
//! 1e-4, every plan checked by `verify_plan`; one line per seed with the
//! plan, the bound and the gap.
//!
//! ```text
//! cargo run --release -p c2m-planner --features highs --example phased_bench -- \
//!     medium 1-6 20 [highs|microlp]
//! ```

// A measuring program: its output is the point.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use c2m_planner::{plan, verify_plan, Formulation, SolveOptions, SolverKind};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (size, from, to, limit) = common::size_seeds_limit(&args);
    let solver = match args.get(3).map(String::as_str) {
        Some("microlp") => SolverKind::Microlp,
        _ => SolverKind::Highs,
    };
    let opts = SolveOptions {
        solver,
        time_limit: Duration::from_secs_f64(limit),
        mip_gap: 1e-4,
        formulation: Formulation::Tight,
        warm_start: true,
        shadow_prices: false,
    };
    let (mut sum_plan, mut sum_bound) = (0.0, 0.0);
    for (seed, v) in common::scenarios(size, from, to) {
        let started = Instant::now();
        match plan(&v, &opts) {
            Ok(p) => {
                let secs = started.elapsed().as_secs_f64();
                let ok = if verify_plan(&v, &p).is_ok() {
                    "ok"
                } else {
                    "INVALID"
                };
                let bound = p.best_bound.unwrap_or(f64::NAN);
                let total = p.exact_costs.total();
                sum_plan += total;
                sum_bound += bound;
                println!(
                    "seed {seed}: {:?} {} plan {:.0} bound {:.0} gap {:.3} % {:.1} s {ok}",
                    p.status,
                    p.solver,
                    total,
                    bound,
                    100.0 * (total - bound) / total,
                    secs
                );
            }
            Err(e) => println!("seed {seed}: no plan: {e}"),
        }
    }
    println!(
        "sum: plan {sum_plan:.0} bound {sum_bound:.0} gap {:.3} %",
        100.0 * (sum_plan - sum_bound) / sum_plan
    );
}
