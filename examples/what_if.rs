//! What-if for planners: compare variants, sweep a quantity, advise
//! thresholds, and validate, summarise or convert scenarios.
//!
//! ```text
//! cargo run --release --example what_if -- compare BASE OVERLAY [--json|--csv]
//! cargo run --release --example what_if -- sweep BASE --demand SKU --from 100 --to 5000 --points 50 --svg out.svg
//! cargo run --release --example what_if -- advise BASE --sku SKU --price 199 --deposit 20 --margin 0.2
//! cargo run --release --example what_if -- scenario validate|summary FILE | convert IN OUT
//! ```
//!
//! A thin wrapper over `c2m_planner::whatif::cli::run`: this file does the
//! I/O (files, the progress bar on standard error) and nothing else. Exit
//! status: 0 on success; 3 when the output is complete but for points the
//! planner found no plan for (`NO PLAN`, `no_plan`; a stderr line says so);
//! 1 with a message on standard error otherwise.

use std::process::ExitCode;

use c2m_planner::whatif::cli::{run, Env};
use indicatif::{ProgressBar, ProgressStyle};

struct Real {
    bar: Option<ProgressBar>,
}

impl Env for Real {
    fn read(&mut self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
    }

    fn write(&mut self, path: &str, contents: &[u8]) -> Result<(), String> {
        std::fs::write(path, contents).map_err(|e| format!("cannot write {path}: {e}"))
    }

    fn same_file(&mut self, a: &str, b: &str) -> bool {
        files::same_file(a, b)
    }

    fn progress(&mut self, done: usize, total: usize) {
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} plans  {elapsed} (eta {eta})")
                    .expect("a valid template"),
            );
            b
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut env = Real { bar: None };
    let result = run(&args, &mut env);
    if let Some(b) = env.bar.take() {
        b.finish_and_clear();
    }
    match result {
        Ok(out) => {
            out::report(&out.stdout);
            if out.code == c2m_planner::whatif::cli::EXIT_NO_PLAN {
                // Only an advice has a --scan-limit to name.
                let scanned = if args.first().map(String::as_str) == Some("advise") {
                    " or were not reached by --scan-limit"
                } else {
                    ""
                };
                eprintln!(
                    "what_if: some points have no plan (status no_plan){scanned}; the rest is complete"
                );
            }
            ExitCode::from(out.code)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

#[path = "common/out.rs"]
mod out;

#[path = "common/files.rs"]
mod files;
