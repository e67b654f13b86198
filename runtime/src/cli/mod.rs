//! The `warden` command line.

mod model;
mod new_tool;
mod terminal;
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
    /// Write a randomly initialised Qwen3 checkpoint in the real formats.
    Synth(model::SynthArgs),
    /// Generate text with a Qwen3 model.
    Generate(model::GenerateArgs),
    /// Measure load time, prefill and decode speed, peak memory.
    Bench(model::BenchArgs),
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
        Command::Synth(a) => fail_on_error(model::synth(a)),
        Command::Generate(a) => fail_on_error(model::generate_cmd(a)),
        Command::Bench(a) => fail_on_error(model::bench(a)),
    }
}

/// Prints `error: …` with its causes, on one line, and exits 1 on failure.
fn fail_on_error(r: anyhow::Result<()>) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            terminal::print_error(&format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
