//! Plans one scenario file and prints the plan.
//!
//! ```text
//! cargo run --release --example plan -- SCENARIO [--json] [--svg FILE]
//!     [--solver highs|microlp] [--time-limit SECS] [--gap G]
//!     [--formulation tight|big-m] [--no-warm-start] [--no-shadow-prices]
//! ```
//!
//! `--svg FILE` also writes the plan drawn as a schedule (periods across,
//! a row per factory, purchase arrivals, stock curves) for a time-phased
//! scenario, or as one period for a version 1 scenario.
//!
//! Exit status (the contract of `scenario-format.md`): 0 for an optimal or
//! feasible plan, 2 for an infeasible scenario (the plan is still printed),
//! 1 for a file that cannot be read or is invalid, or when no plan could be
//! made (a message on standard error, nothing on standard output).

use std::process::ExitCode;
use std::time::Duration;

use c2m_planner::{plan, report, Formulation, PlanStatus, Scenario, SolveOptions, SolverKind};

const USAGE: &str = "usage: plan SCENARIO [--json] [--svg FILE] [--solver highs|microlp] \
[--time-limit SECS] [--gap G] [--formulation tight|big-m] [--no-warm-start] [--no-shadow-prices]";

struct Args {
    path: String,
    json: bool,
    svg: Option<String>,
    opts: SolveOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut path = None;
    let mut json = false;
    let mut svg = None;
    let mut opts = SolveOptions::default();
    let mut it = std::env::args().skip(1);
    let mut seen: Vec<String> = Vec::new();
    while let Some(a) = it.next() {
        // Each option once: the last one given was taken without a word, so
        // `--svg a.svg --svg b.svg` wrote only b.svg.
        if a.starts_with('-') {
            if seen.contains(&a) {
                return Err(format!("{a} is given twice: give it once"));
            }
            seen.push(a.clone());
        }
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--json" => json = true,
            "--svg" => svg = Some(value("--svg")?),
            "--solver" => {
                let s: SolverKind = value("--solver")?.parse().map_err(|e| format!("{e}"))?;
                if !s.is_available() {
                    return Err(format!(
                        "solver `{s}` is not compiled in (available: {})",
                        SolverKind::available()
                            .iter()
                            .map(|s| s.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                opts.solver = s;
            }
            "--time-limit" => {
                let given = value("--time-limit")?;
                let secs: f64 = given.parse().map_err(|e| format!("--time-limit: {e}"))?;
                // Named as written: 1e300 printed as an f64 is 301 digits.
                if !(secs > 0.0 && secs <= 86_400.0) {
                    return Err(format!(
                        "--time-limit: {given} is not a number of seconds in (0, 86400]"
                    ));
                }
                opts.time_limit = Duration::from_secs_f64(secs);
            }
            "--gap" => {
                let g: f64 = value("--gap")?.parse().map_err(|e| format!("--gap: {e}"))?;
                if !(0.0..1.0).contains(&g) {
                    return Err("--gap must be in [0, 1)".into());
                }
                opts.mip_gap = g;
            }
            "--formulation" => {
                opts.formulation = match value("--formulation")?.as_str() {
                    "tight" => Formulation::Tight,
                    "big-m" | "bigm" => Formulation::BigM,
                    other => return Err(format!("unknown formulation `{other}`")),
                }
            }
            "--no-warm-start" => opts.warm_start = false,
            "--no-shadow-prices" => opts.shadow_prices = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            file => {
                if path.replace(file.to_string()).is_some() {
                    return Err("only one scenario file, please".into());
                }
            }
        }
    }
    let path = path.ok_or_else(|| USAGE.to_string())?;
    if let Some(svg) = svg.as_deref().filter(|svg| files::same_file(svg, &path)) {
        return Err(format!(
            "--svg {svg} would write the schedule over the scenario {path}: give another file"
        ));
    }
    Ok(Args {
        path,
        json,
        svg,
        opts,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let text = match std::fs::read_to_string(&args.path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.path);
            return ExitCode::from(1);
        }
    };
    let scenario = match Scenario::from_str_with_name(&args.path, &text).and_then(|s| s.validate())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: invalid scenario:\n{e}", args.path);
            return ExitCode::from(1);
        }
    };
    let plan = match plan(&scenario, &args.opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: no plan: {e}", args.path);
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, report::schedule_svg(&scenario, &plan)) {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::from(1);
        }
    }
    let out = if args.json {
        format!("{}\n", report::render_json(&plan))
    } else {
        report::render_text(&scenario, &plan)
    };
    out::report(&out);
    if plan.status == PlanStatus::Infeasible {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[path = "common/out.rs"]
mod out;

#[path = "common/files.rs"]
mod files;
