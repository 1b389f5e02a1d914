//! Measures the planner's Dantzig-Wolfe bound (`decomposition_bound`) on
//! generated time-phased scenarios: per seed the tight model's root LP, the
//! bound, the restricted master's last value, iterations, columns and time.
//!
//! ```text
//! cargo run --release -p c2m-planner --features highs --example phased_dw -- \
//!     medium 1-6 20 [product] [prove] [partial]
//! ```
//!
//! `product` takes one block per product (its lot sizing against its dues)
//! in place of one per factory and period. With `prove`, each scenario is also planned with HiGHS to a proof (gap 0,
//! the same limit) and the optimum, or the best bound at the limit, printed
//! beside it: the bound must never exceed a proven optimum. With `partial`,
//! the bounds HiGHS proves in the limit with only the production integers
//! kept (orders continuous) and with only the purchasing integers kept.

// A measuring program: its output is the point.
#![allow(clippy::print_stdout)]

mod common;

use std::time::Duration;

use c2m_planner::{
    decomposition_bound, partial_integrality_bound, plan, Decomposition, Formulation, KeepIntegers,
    SolveOptions, SolverKind,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (size, from, to, limit) = common::size_seeds_limit(&args);
    let flag = |f: &str| args.iter().skip(3).any(|a| a == f);
    let prove = flag("prove");
    let by = if flag("product") {
        Decomposition::Product
    } else {
        Decomposition::FactoryPeriod
    };
    let (mut sum_lp, mut sum_bound) = (0.0, 0.0);
    for (seed, v) in common::scenarios(size, from, to) {
        match decomposition_bound(&v, by, Duration::from_secs_f64(limit)) {
            Ok(d) => {
                sum_lp += d.root_lp;
                sum_bound += d.bound;
                println!(
                    "seed {seed}: root LP {:.0} bound {:.0} (+{:.3} %) master {:.0} iterations {} columns {} converged {} {:.1} s",
                    d.root_lp,
                    d.bound,
                    100.0 * (d.bound - d.root_lp) / d.root_lp,
                    d.master,
                    d.iterations,
                    d.columns,
                    d.converged,
                    d.seconds
                );
            }
            Err(e) => println!("seed {seed}: no bound: {e}"),
        }
        if flag("partial") {
            for keep in [KeepIntegers::Production, KeepIntegers::Purchasing] {
                match partial_integrality_bound(&v, keep, Duration::from_secs_f64(limit)) {
                    Ok((b, done)) => println!(
                        "seed {seed}: {keep:?} integers only: bound {b:.0} finished {done}"
                    ),
                    Err(e) => println!("seed {seed}: {keep:?}: {e}"),
                }
            }
        }
        if prove {
            let opts = SolveOptions {
                solver: SolverKind::Highs,
                time_limit: Duration::from_secs_f64(limit),
                mip_gap: 0.0,
                formulation: Formulation::Tight,
                warm_start: true,
                shadow_prices: false,
            };
            match plan(&v, &opts) {
                Ok(p) => println!(
                    "seed {seed}: HiGHS plan {:.0} bound {:.0} gap {:.2e}",
                    p.exact_costs.total(),
                    p.best_bound.unwrap_or(f64::NAN),
                    p.gap
                ),
                Err(e) => println!("seed {seed}: no plan: {e}"),
            }
        }
    }
    println!("sum: root LP {sum_lp:.0} bound {sum_bound:.0}");
}
