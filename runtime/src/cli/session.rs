//! `warden run`, `warden chat`, `warden replay`, `warden demo`.

use super::model::ModelArgs;
use super::sampling::{SamplingArgs, QWEN3};
use super::terminal::{escape, Lines};
use crate::audit;
use crate::guard::interrupt::ctrl_c_flag;
use crate::session::demo::{self, Examples, LiveDemo};
use crate::session::replay::{replay_recording, scratch_copy};
use crate::session::setup::SessionSetup;
use crate::session::{
    Backend, CallReport, CandleBackend, EndReason, Event, ReplayBackend, Session, SessionOptions,
    TurnReport,
};
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

/// `on` or `off`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// The policy a session runs under, and where its log goes.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy file (TOML).
    #[arg(long)]
    policy: PathBuf,
    /// Workspace directory, substituted for {workspace} in the policy.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Session log (default: <state dir>/sessions/<session id>.jsonl).
    #[arg(long)]
    log: Option<PathBuf>,
}

/// What every session command takes.
#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    place: PolicyArgs,
    /// System prompt, or @FILE to read it from a file.
    #[arg(long)]
    system: Option<String>,
    /// Let the model think first (default: the template's default, on for Qwen3).
    #[arg(long, value_enum)]
    think: Option<OnOff>,
    /// Most tokens per generation.
    #[arg(long, default_value_t = 2048)]
    max_tokens: usize,
    /// auto, required, none or a tool's name: required or a name holds the
    /// first generation of each turn to a call that fits its schema
    /// (constrained decoding); none shows the model no tools.
    #[arg(long, value_name = "CHOICE", default_value = "auto")]
    tool_choice: crate::chat::ToolChoice,
    /// Hold every generation to the tools' grammar: text, or calls that fit
    /// their schemas.
    #[arg(long)]
    constrained: bool,
    /// Key file for the keyed (HMAC) chain (default: $WARDEN_AUDIT_KEY_FILE).
    #[arg(long)]
    audit_key: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `warden run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// The task.
    task: String,
}

/// `warden chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    session: SessionArgs,
}

/// `warden replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A session log written by warden.
    recording: PathBuf,
    #[command(flatten)]
    place: PolicyArgs,
    /// Run against the workspace itself. By default the replay runs in a
    /// scratch copy of it, so the recorded writes (under a writing policy)
    /// never change your files by surprise.
    #[arg(long)]
    in_place: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `warden demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo session's log.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Run the seed's tasks on a real model instead of the recording: by
    /// default the tiny agent shipped in examples/models/tiny-agent (base
    /// and run_command adapter) under policies/coding-agent.toml.
    #[arg(long)]
    live: bool,
    /// With --live: the model (directory, .gguf or hub-cache name).
    #[arg(long, requires = "live")]
    model: Option<String>,
    /// With --live: LoRA adapters to apply unfused (default: the shipped
    /// tiny agent's, when the model is the shipped base).
    #[arg(long, requires = "live")]
    adapter: Vec<PathBuf>,
    /// With --live: the policy (default: policies/coding-agent.toml, the
    /// seed's run_command and read_file).
    #[arg(long, requires = "live")]
    policy: Option<PathBuf>,
}

/// Sets a session up from the command line's policy flags.
fn prepare(place: &PolicyArgs, key_file: Option<&Path>) -> anyhow::Result<SessionSetup> {
    SessionSetup::prepare(
        &place.policy,
        &place.workspace,
        place.log.as_deref(),
        key_file,
    )
}

/// The backend `--model` names: `replay:FILE`, `completion:URL[#MODEL]`
/// (a remote engine), or a model to load.
fn backend(args: &SessionArgs) -> anyhow::Result<Box<dyn Backend>> {
    if let Some(file) = args.model.model.strip_prefix("replay:") {
        return Ok(Box::new(ReplayBackend::open(Path::new(file), None)?));
    }
    let params = args.sampling.params(QWEN3)?;
    let m = &args.model.model;
    let completion = m.starts_with(crate::session::remote::PREFIX);
    let openai = m.starts_with(crate::session::remote::openai::PREFIX);
    if completion || openai {
        let key = args
            .model
            .api_key_file
            .as_deref()
            .map(crate::session::remote::read_key)
            .transpose()?;
        if !args.model.adapter.is_empty() || args.sampling.speculative.draft_model.is_some() {
            anyhow::bail!("--adapter and --draft-model are for a local model; a remote model is what its server runs");
        }
        if openai {
            if args.model.chat_template.is_some() {
                anyhow::bail!("--chat-template: an openai: model's server renders with its own template (use completion:URL to render here)");
            }
            return Ok(Box::new(crate::session::OpenAiBackend::open(
                m, params, key,
            )?));
        }
        return Ok(Box::new(crate::session::CompletionBackend::open(
            m,
            args.model.chat_template.as_deref(),
            params,
            key,
        )?));
    }
    let mut loaded = args.model.load(!args.json)?;
    if let Some(d) = &args.sampling.speculative.draft_model {
        loaded.attach_draft(d, !args.json)?;
    }
    Ok(Box::new(CandleBackend::new(loaded, params)?))
}

fn options(args: &SessionArgs, mut opts: SessionOptions) -> anyhow::Result<SessionOptions> {
    opts.max_tokens = args.max_tokens;
    opts.tool_choice = args.tool_choice.clone();
    opts.constrained = args.constrained;
    opts.enable_thinking = args.think.map(|t| matches!(t, OnOff::On));
    opts.system = match args.system.as_deref() {
        Some(s) => Some(match s.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the system prompt {file}"))?,
            None => s.to_string(),
        }),
        None => None,
    };
    Ok(opts)
}

/// Prints a turn as it runs: answer text streamed, one line per call.
struct Printer {
    mid_line: bool,
}

impl Printer {
    fn event(&mut self, e: Event<'_>) {
        let mut out = std::io::stdout().lock();
        match e {
            Event::Text(t) => {
                let _ = write!(out, "{}", escape(t, Lines::Keep));
                self.mid_line = !t.ends_with('\n');
            }
            Event::GenerationEnd => {
                if self.mid_line {
                    let _ = writeln!(out);
                    self.mid_line = false;
                }
            }
            Event::Call(c) => {
                let _ = writeln!(out, "{}", call_line(c));
            }
        }
        let _ = out.flush();
    }
}

/// `  ⚙ tool {args} → decision · outcome · first line of the result`.
fn call_line(c: &CallReport) -> String {
    let args = match &c.arguments {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let first = c.result.lines().next().unwrap_or("");
    let more = c.result.lines().count().saturating_sub(1);
    let tail = if more > 0 {
        format!(" (+{more} lines)")
    } else {
        String::new()
    };
    let line = format!(
        "  ⚙ {} {} → {} · {} · {}{tail}",
        c.tool.as_deref().unwrap_or("(unreadable)"),
        cut(&args, 100),
        c.decision,
        c.outcome,
        cut(first, 120)
    );
    escape(&line, Lines::One).into_owned()
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn turn_json(r: &TurnReport) -> serde_json::Value {
    json!({
        "answer": r.answer,
        "end_reason": r.end_reason,
        "steps": r.steps,
        "calls": r.calls,
        "timings": r.timings,
        "prefill": r.prefill.iter().map(|(reused, new)| json!({"reused_tokens": reused, "prefill_tokens": new})).collect::<Vec<_>>(),
    })
}

/// Runs `warden run`: 0, or 130 when Ctrl-C ended the turn (as a shell
/// reports a command SIGINT stopped).
pub fn run(a: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    let p = prepare(&a.session.place, a.session.audit_key.as_deref())?;
    let backend = backend(&a.session)?;
    let opts = options(&a.session, p.opts)?;
    let mut session = Session::start(&p.host, backend, p.log.create()?, opts, ctrl_c_flag())?;
    let mut printer = Printer { mid_line: false };
    let json = a.session.json;
    let report = session.turn(&a.task, &mut |e| {
        if !json {
            printer.event(e)
        }
    })?;
    let max_steps = p.host.policy().session.max_steps;
    let log = session.end(&format!("{:?}", report.end_reason).to_lowercase())?;
    if json {
        let mut v = turn_json(&report);
        v["log"] = json!(log);
        outln!("{}", serde_json::to_string(&v)?);
    } else {
        outln!(
            "({}; {} step(s), {} call(s), {:.1} s; log: {})",
            report.end_reason.describe(max_steps),
            report.steps,
            report.calls.len(),
            report.timings.total_ms / 1e3,
            escape(&log.display().to_string(), Lines::One)
        );
    }
    Ok(if report.end_reason == EndReason::Interrupted {
        std::process::ExitCode::from(130)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// Runs `warden chat`.
pub fn chat(a: ChatArgs) -> anyhow::Result<()> {
    let p = prepare(&a.session.place, a.session.audit_key.as_deref())?;
    let backend = backend(&a.session)?;
    let opts = options(&a.session, p.opts)?;
    let mut session = Session::start(&p.host, backend, p.log.create()?, opts, ctrl_c_flag())?;
    let tty = std::io::stdin().is_terminal();
    let max_steps = p.host.policy().session.max_steps;
    if tty {
        outln!(
            "warden chat: {} tool(s); /tools, /reset, /log, /quit; Ctrl-C ends a turn",
            p.host.tools().count()
        );
    }
    let mut printer = Printer { mid_line: false };
    let mut input_lines = Input::new(tty)?;
    loop {
        let Some(line) = input_lines.next_line()? else {
            break;
        };
        let input = line.trim_end_matches(['\n', '\r']);
        match input.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                session.reset();
                outln!("(conversation cleared; the log and the call budget go on)");
                continue;
            }
            "/log" => {
                outln!("{}", session.log_path().display());
                continue;
            }
            "/tools" => {
                for t in p.host.tools() {
                    outln!(
                        "{}: {}",
                        t.spec.name,
                        escape(&t.spec.description, Lines::One)
                    );
                }
                continue;
            }
            // A lone `/word` is a mistyped command, never a message.
            c if c.len() > 1
                && c.starts_with('/')
                && c[1..].chars().all(|ch| ch.is_ascii_alphabetic()) =>
            {
                outln!("unknown command {c}; the commands are /tools, /reset, /log and /quit");
                continue;
            }
            _ => {}
        }
        let json = a.session.json;
        let report = session.turn(input, &mut |e| {
            if !json {
                printer.event(e)
            }
        })?;
        if json {
            outln!("{}", serde_json::to_string(&turn_json(&report))?);
        } else if report.end_reason != crate::session::EndReason::Answered {
            outln!("({})", report.end_reason.describe(max_steps));
        }
    }
    let log = session.end("user")?;
    if !a.session.json {
        outln!("log: {}", escape(&log.display().to_string(), Lines::One));
    }
    Ok(())
}

/// Where `chat` reads the user's lines: a line editor on a terminal
/// (arrows, history, Ctrl-A/E…), plain lines from a pipe.
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Plain(std::io::Stdin),
}

impl Input {
    fn new(tty: bool) -> anyhow::Result<Input> {
        Ok(if tty {
            Input::Editor(Box::new(
                rustyline::DefaultEditor::new().context("cannot set up line editing")?,
            ))
        } else {
            Input::Plain(std::io::stdin())
        })
    }

    /// The next line, `None` at the end of input (Ctrl-D). Ctrl-C at the
    /// prompt clears the line, as in a shell.
    fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        use rustyline::error::ReadlineError;
        match self {
            Input::Plain(stdin) => {
                let mut line = String::new();
                Ok((stdin.lock().read_line(&mut line)? > 0).then_some(line))
            }
            Input::Editor(ed) => loop {
                match ed.readline("> ") {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = ed.add_history_entry(line.as_str());
                        }
                        return Ok(Some(line));
                    }
                    Err(ReadlineError::Interrupted) => continue,
                    Err(ReadlineError::Eof) => return Ok(None),
                    Err(e) => return Err(anyhow::anyhow!("cannot read the terminal: {e}")),
                }
            },
        }
    }
}

/// Replays `recording` under `policy`/`workspace`, printing as it goes;
/// returns the differences from the recording and the new log.
fn replay_session(
    recording: &Path,
    place: &PolicyArgs,
    print: bool,
) -> anyhow::Result<(Vec<String>, PathBuf, Vec<TurnReport>)> {
    let mut printer = Printer { mid_line: false };
    let r = replay_recording(
        recording,
        prepare(place, None)?,
        ctrl_c_flag(),
        &mut |i, user| {
            if print {
                outln!("\n── turn {} ── {}", i + 1, escape(user, Lines::One));
            }
        },
        &mut |e| {
            if print {
                printer.event(e)
            }
        },
    )?;
    Ok((r.comparison.differences, r.log, r.turns))
}

/// Runs `warden replay`; exit 1 when something differs. Unless
/// `--in-place`, the replay runs in a scratch copy of the workspace, which
/// is kept (and named) so what the replayed calls wrote can be looked at.
pub fn replay(a: ReplayArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut place = PolicyArgs {
        policy: a.place.policy.clone(),
        workspace: a.place.workspace.clone(),
        log: a.place.log.clone(),
    };
    if !a.in_place {
        let copy = scratch_copy(&a.place.workspace)?;
        if !a.json {
            outln!(
                "replaying in a scratch copy of {}: {} (--in-place runs against the workspace itself)",
                escape(&a.place.workspace.display().to_string(), Lines::One),
                escape(&copy.display().to_string(), Lines::One)
            );
        }
        place.workspace = copy;
    }
    let (diffs, log, turns) = replay_session(&a.recording, &place, false)?;
    if a.json {
        outln!(
            "{}",
            json!({"differences": diffs, "log": log, "turns": turns.len(),
                   "calls": turns.iter().map(|t| t.calls.len()).sum::<usize>(),
                   "workspace": place.workspace, "scratch": !a.in_place})
        );
    } else {
        let calls: usize = turns.iter().map(|t| t.calls.len()).sum();
        if diffs.is_empty() {
            outln!(
                "{} turn(s), {calls} call(s): every decision and output matches the recording",
                turns.len()
            );
        } else {
            for d in &diffs {
                outln!("differs: {}", escape(d, Lines::One));
            }
        }
        outln!("log: {}", escape(&log.display().to_string(), Lines::One));
    }
    Ok(if diffs.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// The `examples/` folder: under the current directory, else where warden
/// was built from.
/// The demo's files, saying so when they are the build's.
fn examples() -> anyhow::Result<Examples> {
    let e = Examples::find()?;
    if e.from_build {
        eprintln!(
            "note: no examples/ under the current directory; reading the demo's files from {}, where warden was built",
            escape(&e.dir.display().to_string(), Lines::One)
        );
    }
    Ok(e)
}

/// Prints the summary of a demo's log and whether `warden audit verify`
/// accepts it.
fn demo_footer(log: &Path, note: &str) -> anyhow::Result<()> {
    outln!("\n── summary{note} ──");
    out!("{}", audit::summarize(&[log])?.to_text());
    let v = audit::verify(log, None)?;
    outln!(
        "log: {} ({} records; `warden audit verify` {})",
        log.display(),
        v.records,
        match &v.problem {
            None => "accepts it".to_string(),
            Some(p) => format!("says: {}", p.kind.as_str()),
        }
    );
    Ok(())
}

/// `warden demo --live`: the seed's tasks, one fresh task each, on a real
/// model with greedy decoding.
fn demo_live(a: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let live = LiveDemo::plan(&examples()?, a.model, a.adapter, a.policy)?;
    if !live.why.is_empty() {
        outln!("Model: {}.", live.why);
    }
    outln!(
        "Running the seed's tasks live on {}{} against {} under {} (greedy).",
        live.model,
        live.adapters
            .iter()
            .map(|d| format!(" + adapter {}", d.display()))
            .collect::<String>(),
        live.workspace.display(),
        live.policy.display()
    );
    let place = PolicyArgs {
        policy: live.policy.clone(),
        workspace: live.workspace.clone(),
        log: a.log,
    };
    let setup = prepare(&place, None)?;
    let max_steps = setup.host.policy().session.max_steps;
    let mut printer = Printer { mid_line: false };
    let log = live.run(
        setup,
        ctrl_c_flag(),
        &mut |task| outln!("\n> {task}"),
        &mut |e| printer.event(e),
        &mut |r| {
            outln!(
                "({}; {} call(s), {:.1} s)",
                r.end_reason.describe(max_steps),
                r.calls.len(),
                r.timings.total_ms / 1e3
            )
        },
    )?;
    demo_footer(&log, " (a real model ran on this CPU)")?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs `warden demo`.
pub fn demo(a: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    if a.live {
        return demo_live(a);
    }
    let examples = examples()?;
    let recording = examples.dir.join(demo::RECORDING);
    let policy = examples.root().join("policies/default.toml");
    let workspace = examples.workspace();
    outln!(
        "Replaying the recorded session {} (a model's outputs, no download) against {} under {}.",
        recording.display(),
        workspace.display(),
        policy.display()
    );
    let place = PolicyArgs {
        policy,
        workspace,
        log: a.log,
    };
    let (diffs, log, _) = replay_session(&recording, &place, true)?;
    demo_footer(&log, " (replayed: no model ran, so model time is zero)")?;
    if diffs.is_empty() {
        outln!("every call's decision and output matches the recording");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        for d in &diffs {
            outln!("differs from the recording: {d}");
        }
        Ok(std::process::ExitCode::FAILURE)
    }
}
