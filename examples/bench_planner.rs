//! Planner benchmark: generated scenarios of three sizes, solved with each
//! compiled-in solver, with the tight formulation and warm start and with
//! the plain big-M formulation, next to the greedy (rule-based) plan.
//! The `weeks-*` sizes are time-phased (planning model version 2): about
//! 15 products / 5 factories / 30 materials / 8 weekly periods
//! (`weeks-medium`) and 60 / 12 / 150 / 12 (`weeks-large`); their greedy
//! plan is lot-for-lot MRP (each period's net need bought from the cheapest
//! offer that arrives in time), so `saving` is the saving over MRP.
//!
//! ```text
//! cargo run --release --features highs --example bench_planner -- \
//!     [--seeds N] [--time-limit SECS] [--gap G]
//!     [--sizes small,medium,large,weeks-small,weeks-medium,weeks-large]
//!     [--solvers highs,microlp] [--models tight,big-m] [--write-scenarios DIR]
//! ```
//!
//! The time limit defaults to 10 s for the version 1 sizes and 30 s for the
//! `weeks-*` sizes.
//!
//! `--write-scenarios DIR` also writes each generated scenario as TOML, so
//! that other tools can be pointed at the same files.
//!
//! For each run it prints the time to proven optimality within the gap
//! target (default 1e-4), or the gap reached when the time limit (default
//! 10 s) stops it, and the saving of the plan over the greedy plan. Every
//! plan is checked with `verify_plan`.

// Printing the plan is what this program is for.
const USAGE: &str = "usage: bench_planner [--seeds N] [--time-limit SECS] [--gap G] \
    [--sizes small,medium,large,weeks-small,weeks-medium,weeks-large] \
    [--solvers highs,microlp] [--models tight,big-m] [--write-scenarios DIR]\n\
    Generated scenarios solved with each solver and model, next to the greedy plan; \
    the time limit defaults to 10 s (30 s for weeks-*).";

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::time::{Duration, Instant};

use c2m_planner::generate::{random_scenario, random_timed_scenario, Size, TimedSize};
use c2m_planner::{
    greedy_plan, plan, verify_plan, Formulation, PlanStatus, SolveOptions, SolverKind,
};

/// A benchmark size: version 1 or time-phased.
#[derive(Clone, Copy)]
enum Shape {
    Cycle(Size),
    Weeks(TimedSize),
}

impl Shape {
    fn scenario(self, seed: u64) -> c2m_planner::Scenario {
        match self {
            Shape::Cycle(s) => random_scenario(seed, s),
            Shape::Weeks(s) => random_timed_scenario(seed, s),
        }
    }
    fn default_limit(self) -> Duration {
        match self {
            Shape::Cycle(_) => Duration::from_secs(10),
            Shape::Weeks(_) => Duration::from_secs(30),
        }
    }
}

fn shape(name: &str) -> Result<(&'static str, Shape), String> {
    Ok(match name {
        "small" => ("small", Shape::Cycle(Size::SMALL)),
        "medium" => ("medium", Shape::Cycle(Size::MEDIUM)),
        "large" => ("large", Shape::Cycle(Size::LARGE)),
        "weeks-small" => ("w-small", Shape::Weeks(TimedSize::SMALL)),
        "weeks-medium" => ("w-medium", Shape::Weeks(TimedSize::MEDIUM)),
        "weeks-large" => ("w-large", Shape::Weeks(TimedSize::LARGE)),
        other => return Err(format!("unknown size `{other}`")),
    })
}

struct Config {
    seeds: u64,
    time_limit: Option<Duration>,
    gap: f64,
    sizes: Vec<(&'static str, Shape)>,
    solvers: Vec<SolverKind>,
    models: Vec<Formulation>,
    write_to: Option<String>,
}

fn parse() -> Result<Config, String> {
    let mut c = Config {
        seeds: 3,
        time_limit: None,
        gap: 1e-4,
        sizes: ["small", "medium", "large", "weeks-medium", "weeks-large"]
            .iter()
            .map(|n| shape(n))
            .collect::<Result<_, _>>()?,
        solvers: SolverKind::available().to_vec(),
        models: vec![Formulation::Tight, Formulation::BigM],
        write_to: None,
    };
    // `--flag=value` as well as `--flag value` (`--seeds=-1` was an unknown argument).
    let mut it = std::env::args()
        .skip(1)
        .flat_map(|a| match a.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => vec![flag.to_owned(), v.to_owned()],
            _ => vec![a],
        });
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seeds" => {
                c.seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?;
                if c.seeds == 0 {
                    return Err("--seeds: must be at least 1 (0 solves nothing)".into());
                }
            }
            // As the `plan` example checks them: NaN or a negative time limit panicked in
            // `Duration::from_secs_f64`, and a NaN gap was printed as the target.
            "--time-limit" => {
                let given = value()?;
                let s: f64 = given.parse().map_err(|e| format!("--time-limit: {e}"))?;
                if !(s > 0.0 && s <= 86_400.0) {
                    return Err(format!(
                        "--time-limit: {given} is not a number of seconds in (0, 86400]"
                    ));
                }
                c.time_limit = Some(Duration::from_secs_f64(s));
            }
            "--gap" => {
                c.gap = value()?.parse().map_err(|e| format!("--gap: {e}"))?;
                if !(0.0..1.0).contains(&c.gap) {
                    return Err("--gap must be in [0, 1)".into());
                }
            }
            "--sizes" => {
                let v = value()?;
                c.sizes = v.split(',').map(shape).collect::<Result<_, _>>()?;
            }
            "--solvers" => {
                let v = value()?;
                c.solvers = v
                    .split(',')
                    .map(|s| s.parse::<SolverKind>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?;
                if let Some(s) = c.solvers.iter().find(|s| !s.is_available()) {
                    return Err(format!("solver `{s}` is not compiled in"));
                }
            }
            "--models" => {
                let v = value()?;
                c.models = v
                    .split(',')
                    .map(|s| match s {
                        "tight" => Ok(Formulation::Tight),
                        "big-m" | "bigm" => Ok(Formulation::BigM),
                        other => Err(format!("unknown model `{other}`")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            // Checked here, before hours of solving: a directory that is not there was
            // reported per scenario on standard error, and the run still exited 0.
            "--write-scenarios" => {
                let dir = value()?;
                if !std::path::Path::new(&dir).is_dir() {
                    return Err(format!("--write-scenarios {dir}: not a directory"));
                }
                c.write_to = Some(dir);
            }
            // As `plan --help`: the usage on standard output, exit 0 (it was an error, exit 1).
            "-h" | "--help" => {
                outln!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(c)
}

fn main() {
    let c = match parse() {
        Ok(c) => c,
        // A usage error, as clap's in the other benchmarks: exit status 2.
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match c.time_limit {
        Some(l) => outln!(
            "time limit {:.0} s, gap target {:e}; 'optimal' means proven within the gap target",
            l.as_secs_f64(),
            c.gap
        ),
        None => outln!(
            "time limit 10 s (30 s for w-*), gap target {:e}; 'optimal' means proven within \
             the gap target; w-* greedy is lot-for-lot MRP",
            c.gap
        ),
    }
    outln!(
        "{:<8} {:>4} {:<8} {:<7} {:>9} {:>10} {:>10} {:>15} {:>15} {:>9}",
        "size",
        "seed",
        "solver",
        "model",
        "result",
        "seconds",
        "gap",
        "total",
        "greedy",
        "saving"
    );
    for (name, size) in &c.sizes {
        let time_limit = c.time_limit.unwrap_or(size.default_limit());
        for seed in 1..=c.seeds {
            let v = match size.scenario(seed).validate() {
                Ok(v) => v,
                Err(e) => {
                    outln!("{name} {seed}: generated scenario invalid: {e}");
                    continue;
                }
            };
            if let Some(dir) = &c.write_to {
                let path = format!("{dir}/{}.toml", v.scenario().name);
                let text = v.scenario().to_toml_string().expect("scenario writes");
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!("error: cannot write {path}: {e}");
                    std::process::exit(1);
                }
            }
            let greedy = greedy_plan(&v);
            for &solver in &c.solvers {
                for &formulation in &c.models {
                    let opts = SolveOptions {
                        solver,
                        time_limit,
                        mip_gap: c.gap,
                        formulation,
                        // The baseline is the plain model as one would first
                        // write it: no warm start either.
                        warm_start: formulation == Formulation::Tight,
                        shadow_prices: false,
                    };
                    let started = Instant::now();
                    let result = plan(&v, &opts);
                    let secs = started.elapsed().as_secs_f64();
                    let model = match formulation {
                        Formulation::Tight => "tight",
                        Formulation::BigM => "big-M",
                    };
                    let greedy_cost = greedy
                        .as_ref()
                        .map_or("none".to_string(), |g| g.total_cost.to_string());
                    match result {
                        Ok(p) => {
                            let ok = verify_plan(&v, &p).is_ok();
                            let within = p.status == PlanStatus::Optimal || p.gap <= c.gap;
                            let outcome = match (ok, p.status) {
                                (false, _) => "INVALID",
                                (true, PlanStatus::Infeasible) => "infeas.",
                                (true, _) if within && p.solver != "greedy" => "optimal",
                                (true, _) if p.solver == "greedy" => "no-sol",
                                (true, _) => "timeout",
                            };
                            let saving = greedy
                                .as_ref()
                                .filter(|_| p.status != PlanStatus::Infeasible)
                                .map_or("-".to_string(), |g| {
                                    format!(
                                        "{:.2}%",
                                        100.0 * (g.total_cost - p.total_cost) as f64
                                            / g.total_cost as f64
                                    )
                                });
                            let gap = if p.gap.is_finite() {
                                format!("{:.2e}", p.gap)
                            } else {
                                "-".to_string()
                            };
                            outln!(
                                "{:<8} {:>4} {:<8} {:<7} {:>9} {:>10.3} {:>10} {:>15} {:>15} {:>9}",
                                name,
                                seed,
                                solver.name(),
                                model,
                                outcome,
                                secs,
                                gap,
                                p.total_cost,
                                greedy_cost,
                                saving
                            );
                        }
                        Err(e) => outln!(
                            "{:<8} {:>4} {:<8} {:<7} {:>9} {:>10.3} {:>10} {:>15} {:>15} {:>9}  ({e})",
                            name,
                            seed,
                            solver.name(),
                            model,
                            "no plan",
                            secs,
                            "-",
                            "-",
                            greedy_cost,
                            "-"
                        ),
                    }
                }
            }
        }
    }
}
