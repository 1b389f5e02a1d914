//! The `c2m` binary: parses the command line and hands over to `c2m_server::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    c2m_server::cli::init_tracing();
    let cli = c2m_server::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprint!(
                "{}",
                failure(&anyhow::Error::new(e).context("cannot start the runtime"))
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(c2m_server::cli::run(cli));
    // Not the runtime's drop, which waits for every blocking task: a planning solve still
    // running when a stop's grace ran out held the process until the solver returned (24 s
    // past a 5 s grace, in a QA pass), its plan thrown away all the same. What was
    // acknowledged is stored; the solve's batches stay queued for the next cycle.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", failure(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// How a failed command reads: `Error: ...` and its causes, as `main` returning an
/// `anyhow::Result` printed it, without the stack backtrace that printing added whenever
/// `RUST_BACKTRACE` was set (a bad flag or an unreachable database is not a crash).
fn failure(e: &anyhow::Error) -> String {
    let mut out = format!("Error: {e}\n");
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str("\nCaused by:\n");
        for (i, cause) in causes.iter().enumerate() {
            if causes.len() == 1 {
                out.push_str(&format!("    {cause}\n"));
            } else {
                out.push_str(&format!("    {i}: {cause}\n"));
            }
        }
    }
    out
}
