//! The `c2m` binary: parses the command line and hands over to `c2m_server::cli`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    c2m_server::cli::init_tracing();
    c2m_server::cli::run(c2m_server::cli::Cli::parse()).await
}
