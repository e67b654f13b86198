//! The `warden` command line.

/// `println!` for a command's output: a reader that went away (`| head`)
/// ends the process quietly, as Unix tools do, instead of a panic.
macro_rules! outln {
    () => {
        $crate::cli::terminal::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::terminal::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for a command's output (see [`outln`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::terminal::out(format_args!($($arg)*))
    };
}

mod audit;
mod convert;
mod eval;
mod model;
mod new_tool;
mod prompt;
mod session;
mod terminal;
mod tools;
mod train;

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
    /// Replay a recorded agent session on the example workspace (no download).
    Demo(session::DemoArgs),
    /// Run one task: the model calls sandboxed tools until it answers.
    Run(session::RunArgs),
    /// An interactive session (/reset, /tools, /log, /quit).
    Chat(session::ChatArgs),
    /// Re-run a session log's model outputs under a policy; list what differs.
    Replay(session::ReplayArgs),
    /// Print the exact prompt a model will see.
    Prompt(prompt::PromptArgs),
    /// Verify, summarise, show and report session logs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// List, call, inspect and scaffold tool plugins.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Write a randomly initialised Qwen3 checkpoint in the real formats.
    Synth(model::SynthArgs),
    /// Generate text with a Qwen3 model.
    Generate(model::GenerateArgs),
    /// Measure load time, prefill and decode speed, peak memory.
    Bench(model::BenchArgs),
    /// Score tool calling and latency of model variants side by side (suites, BFCL), with a gate.
    Eval(eval::EvalArgs),
    /// Write training conversations for a suite's workspace (real tool results, held-out names).
    SynthData(train::SynthDataArgs),
    /// Train a LoRA adapter or a whole model on conversations (loss on the assistant's tokens).
    Finetune(train::FinetuneArgs),
    /// Merge LoRA adapters into a base in full precision (optionally quantize).
    Fuse(convert::FuseArgs),
    /// Write a model as a quantized GGUF file or MLX directory.
    Quantize(convert::QuantizeArgs),
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
        Command::Demo(a) => exit_code(session::demo(a)),
        Command::Run(a) => exit_code(session::run(a)),
        Command::Chat(a) => fail_on_error(session::chat(a)),
        Command::Replay(a) => exit_code(session::replay(a)),
        Command::Prompt(a) => exit_code(prompt::prompt(a)),
        Command::Audit(cmd) => exit_code(audit::run(cmd)),
        Command::Tools(cmd) => tools::run(cmd),
        Command::Synth(a) => fail_on_error(model::synth(a)),
        Command::Generate(a) => fail_on_error(model::generate_cmd(a)),
        Command::Bench(a) => fail_on_error(model::bench(a)),
        Command::Eval(a) => eval::eval(a),
        Command::SynthData(a) => fail_on_error(train::synth_data_cmd(a)),
        Command::Finetune(a) => fail_on_error(train::finetune_cmd(a)),
        Command::Fuse(a) => fail_on_error(convert::fuse(a)),
        Command::Quantize(a) => fail_on_error(convert::quantize(a)),
    }
}

/// The command's own exit code, or 1 with `error: …` on failure.
fn exit_code(r: anyhow::Result<std::process::ExitCode>) -> std::process::ExitCode {
    match r {
        Ok(code) => code,
        Err(e) => {
            terminal::print_error(&format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
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
