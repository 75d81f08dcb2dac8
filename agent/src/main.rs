use std::process::ExitCode;

use clap::Parser;
use mcp_warden::cli::{Cli, dispatch};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}
