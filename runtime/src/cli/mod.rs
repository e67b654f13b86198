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
mod mcp;
mod model;
mod new_tool;
mod prompt;
mod sampling;
mod serve;
mod session;
mod terminal;
mod tools;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// warden: a runtime for local tool-using agents.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Export traces and metrics (OpenTelemetry GenAI conventions) to this
    /// OTLP/HTTP collector (else OTEL_EXPORTER_OTLP_ENDPOINT; none without).
    #[arg(long, global = true, value_name = "URL")]
    otlp: Option<String>,
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
    /// An OpenAI-compatible HTTP server (/v1/chat/completions with tools, streaming).
    Serve(serve::ServeArgs),
    /// The policy's tools as an MCP server (stdio or streamable HTTP), each call sandboxed and audited.
    Mcp(mcp::McpArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Flushes the last spans and metrics when the command is done.
    let _telemetry =
        match crate::telemetry::install(crate::telemetry::endpoint(cli.otlp.as_deref()).as_deref())
        {
            Ok(t) => t,
            Err(e) => {
                terminal::print_error(&format!("{e:#}"));
                return ExitCode::FAILURE;
            }
        };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            terminal::print_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs one command: its exit code, or the error `main` prints (exit 1).
/// Commands with exit codes of their own (eval's 2 for a usage error, a
/// gate's 1, replay's 1 on a difference, run's 130) return them here.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Demo(a) => session::demo(a),
        Command::Run(a) => session::run(a),
        Command::Chat(a) => done(session::chat(a)),
        Command::Replay(a) => session::replay(a),
        Command::Prompt(a) => prompt::prompt(a),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Tools(cmd) => Ok(tools::run(cmd)),
        Command::Synth(a) => done(model::synth(a)),
        Command::Generate(a) => done(model::generate_cmd(a)),
        Command::Bench(a) => done(model::bench(a)),
        Command::Eval(a) => Ok(eval::eval(a)),
        Command::SynthData(a) => done(train::synth_data_cmd(a)),
        Command::Finetune(a) => done(train::finetune_cmd(a)),
        Command::Fuse(a) => done(convert::fuse(a)),
        Command::Quantize(a) => done(convert::quantize(a)),
        Command::Serve(a) => done(serve::serve(a)),
        Command::Mcp(a) => done(mcp::mcp(a)),
    }
}
