//! The `warden` command line.

mod new_tool;
mod tools;

use clap::{Parser, Subcommand};

/// warden: a runtime for local tool-using agents.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, call, inspect and scaffold tool plugins.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Tools(cmd) => tools::run(cmd),
    }
}
