//! Running variants over a suite (through the real session loop and
//! sandboxed tools) or over BFCL cases (one generation each, scored with
//! BFCL's rules), each variant's run an audited session log.

use super::bfcl::{self, BfclCase};
use super::spec::{Source, Variant};
use super::suite::Suite;
use super::{CaseResult, Failure, Metrics, Observed};
use crate::audit::record::{Record, SessionEnd, SessionStart, Turn};
use crate::audit::{self, AuditLog};
use crate::chat::{self, Message, ParamTypes, RenderRequest};
use crate::model::SamplingParams;
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use crate::session::replay::{ReplayBackend, ReplayCases};
use crate::session::setup::PendingLog;
use crate::session::{
    generation_record, Backend, CallReport, CandleBackend, Session, SessionOptions,
};
use anyhow::Context as _;
use candle_core::Device;
use serde_json::{json, Map};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// How to run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Run only the first N cases.
    pub limit: Option<usize>,
    /// Run every case this many times.
    pub repeat: usize,
    /// Most tokens per generation.
    pub max_tokens: usize,
    /// Where the variants' session logs go.
    pub log_dir: PathBuf,
    /// The device models run on.
    pub device: Device,
    /// Speculative decoding for model variants.
    pub speculative: crate::model::Speculative,
    /// The draft model for `Speculative::Draft`.
    pub draft_model: Option<String>,
    /// Show a progress bar.
    pub progress: bool,
    /// The chat template for every model variant instead of its own (an
    /// adapter's `chat_template.jinja` otherwise wins over the base's).
    pub chat_template: Option<String>,
    /// `--tool-choice` for every variant without its own `+tool-choice=`.
    pub tool_choice: crate::chat::ToolChoice,
    /// The key remote variants' servers want (else `OPENAI_API_KEY`'s).
    pub api_key: Option<String>,
}

/// One variant's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantRun {
    /// Its name.
    pub name: String,
    /// Its spec.
    pub spec: String,
    /// The figures.
    pub metrics: Metrics,
    /// Every case run.
    pub cases: Vec<CaseResult>,
    /// Its session log.
    pub log: PathBuf,
}

/// Queues case `id`'s outputs (replay variants); an error when the replay
/// has none for it.
fn start_case(replay: &Option<ReplayCases>, id: &str) -> anyhow::Result<()> {
    match replay {
        Some(r) => r.start(id),
        None => Ok(()),
    }
}

/// A variant ready to generate: its backend, and for replay variants the
/// outputs to queue per case.
fn prepare(
    v: &Variant,
    opts: &EvalOptions,
) -> anyhow::Result<(Box<dyn Backend>, Option<ReplayCases>)> {
    let r = match &v.source {
        Source::Replay(path) => {
            let backend = ReplayBackend::open(path, None)?;
            let cases = backend.cases().with_context(|| {
                format!(
                    "{} is not a per-case replay: eval reads JSON Lines of {{\"id\": CASE_ID, \"outputs\": [\"…\"]}}",
                    path.display()
                )
            })?;
            (Box::new(backend) as Box<dyn Backend>, Some(cases))
        }
        Source::Model {
            model,
            adapters,
            quant,
        } if model.starts_with(crate::session::remote::PREFIX)
            || model.starts_with(crate::session::remote::openai::PREFIX) =>
        {
            if !adapters.is_empty() || quant.is_some() {
                anyhow::bail!("+adapter and +quant are for a local model; a remote model is what its server runs");
            }
            // Greedy, as every variant.
            let params = SamplingParams {
                temperature: 0.0,
                ..SamplingParams::default()
            };
            let backend: Box<dyn Backend> =
                if model.starts_with(crate::session::remote::openai::PREFIX) {
                    Box::new(crate::session::OpenAiBackend::open(
                        model,
                        params,
                        opts.api_key.clone(),
                    )?)
                } else {
                    Box::new(crate::session::CompletionBackend::open(
                        model,
                        opts.chat_template.as_deref(),
                        params,
                        opts.api_key.clone(),
                    )?)
                };
            (backend, None)
        }
        Source::Model {
            model,
            adapters,
            quant,
        } => {
            let loaded = super::spec::load_model(
                model,
                adapters,
                *quant,
                &opts.device,
                opts.chat_template.as_deref(),
                opts.draft_model.as_deref(),
                opts.progress,
            )?;
            // Greedy: the same model gives the same figures.
            let params = SamplingParams {
                temperature: 0.0,
                speculative: opts.speculative,
                ..SamplingParams::default()
            };
            (
                Box::new(CandleBackend::new(loaded, params)?) as Box<dyn Backend>,
                None,
            )
        }
    };
    Ok(r)
}

/// A file name for `variant`'s log.
fn log_path(dir: &Path, run_id: &str, variant: &str) -> PathBuf {
    let safe: String = variant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{run_id}-{safe}.jsonl"))
}

fn progress(total: usize, on: bool) -> indicatif::ProgressBar {
    crate::progress::bar(
        on,
        total as u64,
        "{msg:>16} [{bar:30}] {pos}/{len} cases, {elapsed}",
    )
}

fn observed(c: &CallReport) -> Observed {
    let parsed = c.outcome != "malformed";
    Observed {
        tool: c.tool.clone(),
        arguments: c.arguments.as_object().cloned().unwrap_or_default(),
        parsed,
        schema_valid: c.schema_valid == Some(true),
        raw: if parsed {
            String::new()
        } else {
            c.arguments.as_str().unwrap_or_default().to_string()
        },
    }
}

/// The functions a BFCL case's ground truth calls, each once.
fn bfcl_tools(case: &BfclCase) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for call in case.ground_truth.iter().flatten() {
        for name in call.as_object().into_iter().flat_map(|o| o.keys()) {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

fn errored(
    id: &str,
    repeat: usize,
    call_due: bool,
    expected_tools: Vec<String>,
    e: &anyhow::Error,
) -> CaseResult {
    CaseResult {
        id: id.into(),
        repeat,
        passed: false,
        failure: Some(Failure::Error),
        detail: format!("{e:#}"),
        calls: vec![],
        answer: String::new(),
        call_due,
        expected_tools,
        tool_ok: false,
        args_ok: false,
        turn_ms: vec![],
        generations: vec![],
        tool_ms: 0.0,
        overhead_ms: 0.0,
    }
}

/// Runs every variant over `suite`.
pub fn run_suite(
    suite: &Suite,
    variants: &[Variant],
    opts: &EvalOptions,
) -> anyhow::Result<Vec<VariantRun>> {
    let policy = Policy::load(&suite.policy, &suite.workspace)?;
    let host = ToolHost::load(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cases = &suite.cases[..opts.limit.unwrap_or(usize::MAX).min(suite.cases.len())];
    let run_id = audit::new_session_id();
    let pb = progress(variants.len() * cases.len() * opts.repeat, opts.progress);
    let mut runs = Vec::new();
    for v in variants {
        pb.set_message(v.name.clone());
        let (backend, replay) = prepare(v, opts).with_context(|| format!("variant {}", v.name))?;
        let path = log_path(&opts.log_dir, &run_id, &v.name);
        let log = PendingLog::checked(
            &policy,
            path.clone(),
            audit::new_session_id(),
            None,
            "choose another --log-dir",
        )?
        .create()?;
        let session_opts = SessionOptions {
            max_tokens: opts.max_tokens,
            enable_thinking: v.think,
            system: suite.system.clone(),
            policy_file: Some((
                suite.policy.display().to_string(),
                audit::sha256_file(&suite.policy).unwrap_or_default(),
            )),
            workspace: Some(suite.workspace.display().to_string()),
            tool_choice: v.tool_choice.clone().unwrap_or(opts.tool_choice.clone()),
            constrained: v.constrained,
        };
        let mut session = Session::start(
            &host,
            backend,
            log,
            session_opts,
            Arc::new(AtomicBool::new(false)),
        )?;
        let mut results = Vec::new();
        for case in cases {
            for repeat in 0..opts.repeat {
                session.new_task();
                let due = case.expect.call_due();
                let r = start_case(&replay, &case.id).and_then(|()| {
                    let mut calls = Vec::new();
                    let (mut turn_ms, mut gens, mut tool_ms, mut overhead_ms) =
                        (vec![], vec![], 0.0, 0.0);
                    let mut answer = String::new();
                    for user in &case.turns {
                        let t = session.turn(user, &mut |_| {})?;
                        calls.extend(t.calls.iter().map(observed));
                        turn_ms.push(t.timings.total_ms);
                        gens.extend(
                            t.generations
                                .iter()
                                .map(|g| (g.ttft_ms, g.decode_tokens, g.decode_ms)),
                        );
                        tool_ms += t.timings.tool_ms;
                        overhead_ms += t.timings.overhead_ms;
                        answer = t.answer;
                    }
                    let s = case.expect.score(&calls, &answer);
                    Ok(CaseResult {
                        id: case.id.clone(),
                        repeat,
                        passed: s.passed,
                        failure: s.failure,
                        detail: String::new(),
                        calls,
                        answer,
                        call_due: due,
                        expected_tools: case.expect.expected_tools(),
                        tool_ok: s.tool_ok,
                        args_ok: s.args_ok,
                        turn_ms,
                        generations: gens,
                        tool_ms,
                        overhead_ms,
                    })
                });
                results.push(r.unwrap_or_else(|e| {
                    errored(&case.id, repeat, due, case.expect.expected_tools(), &e)
                }));
                pb.inc(1);
            }
        }
        let log = session.end("eval")?;
        runs.push(VariantRun {
            name: v.name.clone(),
            spec: v.spec.clone(),
            metrics: Metrics::of(&results),
            cases: results,
            log,
        });
    }
    pb.finish_and_clear();
    Ok(runs)
}

/// BFCL's parameter types, for the XML call format.
struct BfclTypes<'a>(&'a BfclCase);

impl ParamTypes for BfclTypes<'_> {
    fn param_type(&self, tool: &str, param: &str) -> Option<String> {
        let f = self.0.functions.iter().find(|f| f["name"] == tool)?;
        bfcl::json_schema(&f["parameters"]["properties"][param])["type"]
            .as_str()
            .map(String::from)
    }
}

/// Runs every variant over BFCL cases: one generation per case, scored
/// with BFCL's rules, each case a turn of the variant's log.
pub fn run_bfcl(
    questions: &Path,
    cases: &[BfclCase],
    variants: &[Variant],
    opts: &EvalOptions,
) -> anyhow::Result<Vec<VariantRun>> {
    let cases = &cases[..opts.limit.unwrap_or(usize::MAX).min(cases.len())];
    let run_id = audit::new_session_id();
    let pb = progress(variants.len() * cases.len() * opts.repeat, opts.progress);
    let mut runs = Vec::new();
    let cancel = AtomicBool::new(false);
    for v in variants {
        pb.set_message(v.name.clone());
        let (mut backend, replay) =
            prepare(v, opts).with_context(|| format!("variant {}", v.name))?;
        let path = log_path(&opts.log_dir, &run_id, &v.name);
        let mut log = AuditLog::create(&path, &audit::new_session_id(), None)?;
        log.write(Record::SessionStart(SessionStart {
            warden_version: env!("CARGO_PKG_VERSION").into(),
            model: backend.describe(),
            adapter: backend.adapters(),
            policy: None,
            workspace: None,
            tools: None,
            bfcl: Some(json!({"questions": questions, "sha256": audit::sha256_file(questions).unwrap_or_default()})),
            call_format: json!(backend.template().call_format()),
            template_sha256: Some(audit::sha256_hex(backend.template().source().as_bytes())),
            thinking: v.think,
            max_tokens: opts.max_tokens,
            max_steps: None,
            max_tool_calls: None,
            tool_choice: Some(v.tool_choice.clone().unwrap_or(opts.tool_choice.clone()))
                .filter(|c| *c != crate::chat::ToolChoice::Auto)
                .map(|c| c.to_string()),
            constrained: v.constrained.then_some(true),
            client: None,
        }))?;
        let mut results = Vec::new();
        let mut turn = 0u64;
        for case in cases {
            for repeat in 0..opts.repeat {
                turn += 1;
                let due = !matches!(case.category, bfcl::Category::Irrelevance);
                let r = start_case(&replay, &case.id).and_then(|()| {
                    bfcl_case(
                        backend.as_mut(),
                        case,
                        v,
                        opts,
                        &cancel,
                        &mut log,
                        turn,
                        repeat,
                    )
                });
                results.push(
                    r.unwrap_or_else(|e| errored(&case.id, repeat, due, bfcl_tools(case), &e)),
                );
                pb.inc(1);
            }
        }
        log.write(Record::SessionEnd(SessionEnd {
            reason: "eval".into(),
            turns: turn,
            generations: turn,
            tool_calls: 0,
        }))?;
        runs.push(VariantRun {
            name: v.name.clone(),
            spec: v.spec.clone(),
            metrics: Metrics::of(&results),
            cases: results,
            log: path,
        });
    }
    pb.finish_and_clear();
    Ok(runs)
}

#[allow(clippy::too_many_arguments)]
fn bfcl_case(
    backend: &mut dyn Backend,
    case: &BfclCase,
    v: &Variant,
    opts: &EvalOptions,
    cancel: &AtomicBool,
    log: &mut AuditLog,
    turn: u64,
    repeat: usize,
) -> anyhow::Result<CaseResult> {
    let t0 = Instant::now();
    let messages: Vec<Message> = case
        .messages
        .iter()
        .map(|(r, c)| Message::new(r, c.clone()))
        .collect();
    let template = backend.template();
    let format = template.call_format();
    let choice = v.tool_choice.clone().unwrap_or(opts.tool_choice.clone());
    let tools = if choice == crate::chat::ToolChoice::None {
        vec![]
    } else {
        case.tools()
    };
    let prompt = template.render(&RenderRequest {
        messages: &messages,
        tools: &tools,
        add_generation_prompt: true,
        enable_thinking: v.think,
    })?;
    let grammar = match choice {
        crate::chat::ToolChoice::Auto if !v.constrained => None,
        c => template.tool_grammar(&prompt, &tools, &c, true)?,
    };
    let g = backend.generate(
        &prompt,
        opts.max_tokens,
        grammar.as_deref(),
        cancel,
        &mut |_| {},
    )?;
    let parsed = chat::parse(&g.text, format, &BfclTypes(case));
    let calls: Vec<Observed> = parsed
        .calls
        .iter()
        .map(|c| match &c.call {
            Ok(call) => Observed {
                tool: Some(call.name.clone()),
                arguments: call.arguments.clone(),
                parsed: true,
                schema_valid: true,
                raw: String::new(),
            },
            Err(m) => Observed {
                tool: m.name.clone(),
                arguments: Map::new(),
                parsed: false,
                schema_valid: false,
                raw: c.raw.clone(),
            },
        })
        .collect();
    let s = bfcl::score(case, &calls);
    let total_ms = t0.elapsed().as_secs_f64() * 1e3;
    // Through the one writer: redacted as a session's records are (a
    // function's `password` argument never lands in the log in clear).
    log.write(generation_record(turn, 1, &g, &parsed, total_ms))?;
    log.write(Record::Turn(Turn {
        turn,
        case: Some(case.id.clone()),
        user: case
            .messages
            .last()
            .map(|m| m.1.clone())
            .unwrap_or_default(),
        answer: parsed.content.clone(),
        steps: None,
        end_reason: None,
        calls: None,
        passed: Some(s.passed),
        reason: Some(json!(s.reason)),
        model_ms: None,
        tool_ms: None,
        overhead_ms: None,
        total_ms,
    }))?;
    let failure = s.reason.map(|r| match r {
        bfcl::Reason::Malformed => Failure::Malformed,
        bfcl::Reason::IrrelevantCall => Failure::UnexpectedCall,
        bfcl::Reason::NoCall => Failure::DirectAnswer,
        bfcl::Reason::WrongCount if calls.is_empty() => Failure::DirectAnswer,
        bfcl::Reason::WrongCount
            if calls.len() > case.ground_truth.as_ref().map_or(0, Vec::len) =>
        {
            Failure::UnexpectedCall
        }
        bfcl::Reason::WrongCount => Failure::MissingCall,
        bfcl::Reason::WrongName => Failure::WrongTool,
        _ => Failure::BadArguments,
    });
    let due = !matches!(case.category, bfcl::Category::Irrelevance);
    Ok(CaseResult {
        id: case.id.clone(),
        repeat,
        passed: s.passed,
        failure,
        detail: match s.reason {
            Some(r) => format!(
                "{}: {}",
                serde_json::to_value(r)?.as_str().unwrap_or_default(),
                s.detail
            ),
            None => String::new(),
        },
        calls,
        answer: parsed.content,
        call_due: due,
        expected_tools: bfcl_tools(case),
        tool_ok: due && s.tool_ok,
        args_ok: due && s.passed,
        turn_ms: vec![total_ms],
        generations: vec![(
            g.timings.ttft_ms,
            g.timings.decode_tokens,
            g.timings.decode_ms,
        )],
        tool_ms: 0.0,
        overhead_ms: (total_ms - g.total_ms).max(0.0),
    })
}
