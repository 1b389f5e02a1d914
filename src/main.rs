//! The `c2m` binary: parses the command line and hands over to `c2m_server::cli`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    c2m_server::cli::init_tracing();
    let cli = c2m_server::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(c2m_server::cli::run(cli));
    // Not the runtime's drop, which waits for every blocking task: a planning solve still
    // running when a stop's grace ran out held the process until the solver returned (24 s
    // past a 5 s grace, in a QA pass), its plan thrown away all the same. What was
    // acknowledged is stored; the solve's batches stay queued for the next cycle.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
