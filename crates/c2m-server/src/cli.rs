//! The `c2m` command line.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::{Application, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "c2m",
    version,
    about = "Consumer-to-manufacturer reverse ordering service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (SQLite in ./data unless --database-url says otherwise).
    Serve(Settings),
}

/// Logs go to standard error; `RUST_LOG` tunes them (default `info`).
pub fn init_tracing() {
    init_tracing_with_default("info");
}

/// As [`init_tracing`], with another level when `RUST_LOG` is not set (examples use `warn`).
pub fn init_tracing_with_default(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            let app = Application::build(settings).await?;
            // The one line on standard output: scripts and tests read the bound address
            // from it (useful with --listen 127.0.0.1:0).
            #[allow(clippy::print_stdout)]
            {
                println!("c2m listening on {}", app.local_addr());
            }
            app.run_until(shutdown_signal()).await
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
