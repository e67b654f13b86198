//! An agent session: a model calls sandboxed tools under a policy, and
//! every turn and call goes to an audit log.
//!
//! One turn: user message → render with the model's template → generate
//! (the KV cache keeps the prefix) → parse → for each call in order: is the
//! tool there, is there budget, do the arguments fit its schema → the
//! sandboxed call → its result as the template's tool message → generate
//! again, until an answer without calls, `[session] max_steps` generations,
//! the call budget, or Ctrl-C ends the turn with a reason.

mod backend;
pub mod call;
pub mod demo;
pub mod remote;
pub mod replay;
pub mod setup;

pub use backend::{
    qwen3_template, sha256_file, Backend, CandleBackend, ChatTurn, ForcedBackend, Generated,
};
pub use call::{CallReport, Caller};
pub use remote::{CompletionBackend, OpenAiBackend};
pub use replay::ReplayBackend;

use crate::audit::record::{
    Generation, GenerationCall, GenerationTimings, Record, SessionEnd, SessionStart, Turn,
};
use crate::audit::{AuditLog, Redactor};
use crate::chat::{self, CallFormat, Message, ParamTypes, Parsed, RenderRequest, StreamFilter};
use crate::sandbox::ToolHost;
use crate::telemetry::genai;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a session runs, besides its model and policy.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Most tokens per generation.
    pub max_tokens: usize,
    /// `enable_thinking` for the template (`None`: the template's default).
    pub enable_thinking: Option<bool>,
    /// A system prompt.
    pub system: Option<String>,
    /// Recorded in `session_start`: the policy file's path and sha256.
    pub policy_file: Option<(String, String)>,
    /// Recorded in `session_start`: the workspace.
    pub workspace: Option<String>,
    /// `--tool-choice`: `required` or a tool's name holds the first
    /// generation of each turn to a call (by constrained decoding); `none`
    /// shows the model no tools.
    pub tool_choice: chat::ToolChoice,
    /// Every generation under the tools' grammar: text, or calls that fit
    /// their schemas.
    pub constrained: bool,
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The model answered without calling a tool.
    Answered,
    /// `[session] max_steps` generations without an answer.
    MaxSteps,
    /// The session's tool-call budget ran out.
    MaxToolCalls,
    /// A generation hit `max_tokens` in the middle of a call.
    Length,
    /// Ctrl-C.
    Interrupted,
    /// The model called a tool the client runs (`warden serve`'s agent
    /// mode): the calls go back to the client.
    ClientTools,
}

impl EndReason {
    /// The reason in words, for people.
    pub fn describe(self, max_steps: u32) -> String {
        match self {
            EndReason::Answered => "answered".into(),
            EndReason::MaxSteps => format!(
                "stopped after {max_steps} generations without an answer ([session] max_steps)"
            ),
            EndReason::MaxToolCalls => {
                "stopped: the session's tool calls are used up ([session] max_tool_calls)".into()
            }
            EndReason::Length => "stopped: the model hit --max-tokens before finishing".into(),
            EndReason::Interrupted => "interrupted (Ctrl-C)".into(),
            EndReason::ClientTools => "the model called the client's tools".into(),
        }
    }
}

/// Where a turn's time went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TurnTimings {
    /// Generating (tokenizing, prefill, decode).
    pub model_ms: f64,
    /// In tool calls.
    pub tool_ms: f64,
    /// Everything else: rendering, parsing, policy, logging.
    pub overhead_ms: f64,
    /// The whole turn.
    pub total_ms: f64,
}

/// One finished turn.
#[derive(Debug, Clone, Serialize)]
pub struct TurnReport {
    /// The final answer (the last generation's text outside calls).
    pub answer: String,
    /// Generations in the turn.
    pub steps: u32,
    /// Why it ended.
    pub end_reason: EndReason,
    /// The calls made.
    pub calls: Vec<CallReport>,
    /// Timings.
    pub timings: TurnTimings,
    /// Per generation: prompt tokens reused from the cache and prefilled.
    pub prefill: Vec<(usize, usize)>,
    /// Per generation: time to first token and decode speed.
    pub generations: Vec<GenerationStats>,
    /// Calls of the client's tools, for the client to run (agent mode):
    /// OpenAI `function` objects (`name`, `arguments` as a JSON string).
    pub client_calls: Vec<Value>,
}

/// One generation's latency figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GenerationStats {
    /// Time to the first token (tokenizing and prefill included).
    pub ttft_ms: f64,
    /// Tokens decoded after the first.
    pub decode_tokens: usize,
    /// Time decoding them.
    pub decode_ms: f64,
}

/// What a session tells its caller while a turn runs.
pub enum Event<'a> {
    /// Answer text as it streams (reasoning and call blocks hidden).
    Text(&'a str),
    /// A generation ended.
    GenerationEnd,
    /// A call was made.
    Call(&'a CallReport),
}

/// A running session.
pub struct Session<'h> {
    host: &'h ToolHost,
    backend: Box<dyn Backend + 'h>,
    log: AuditLog,
    format: CallFormat,
    tools: Vec<Value>,
    messages: Vec<Message>,
    caller: Caller<'h>,
    opts: SessionOptions,
    cancel: Arc<AtomicBool>,
    turns: u32,
    generations: u64,
    ended: bool,
    /// Tools the client runs (agent mode), offered beside the policy's.
    client_tools: Vec<Value>,
    /// The model's name on spans (`gen_ai.request.model`).
    model_name: String,
}

impl<'h> Session<'h> {
    /// Starts a session (writes `session_start`).
    pub fn start(
        host: &'h ToolHost,
        backend: Box<dyn Backend + 'h>,
        mut log: AuditLog,
        opts: SessionOptions,
        cancel: Arc<AtomicBool>,
    ) -> anyhow::Result<Session<'h>> {
        let redactor = redactor(host);
        let tools: Vec<Value> = host
            .tools()
            .map(|t| chat::tool_json(&t.spec.name, &t.spec.description, &t.spec.parameters))
            .collect();
        let format = backend.template().call_format();
        let model_name = model_name(&backend.describe());
        let policy = host.policy();
        log.set_redactor(redactor);
        log.write(Record::SessionStart(SessionStart {
            warden_version: env!("CARGO_PKG_VERSION").into(),
            model: backend.describe(),
            adapter: backend.adapters(),
            policy: Some(match &opts.policy_file {
                Some((p, h)) => json!({"path": p, "sha256": h}),
                None => json!({"path": policy.path}),
            }),
            workspace: opts.workspace.clone(),
            tools: Some(tools_record(host)),
            bfcl: None,
            call_format: json!(format),
            // A server that renders prompts itself keeps its template.
            template_sha256: backend
                .renders_prompts()
                .then(|| crate::audit::sha256_hex(backend.template().source().as_bytes())),
            thinking: opts.enable_thinking,
            max_tokens: opts.max_tokens,
            max_steps: Some(policy.session.max_steps),
            max_tool_calls: Some(policy.session.max_tool_calls),
            tool_choice: (opts.tool_choice != chat::ToolChoice::Auto)
                .then(|| opts.tool_choice.to_string()),
            constrained: opts.constrained.then_some(true),
            client: None,
        }))?;
        let mut messages = Vec::new();
        if let Some(system) = &opts.system {
            messages.push(Message::new("system", system.clone()));
        }
        Ok(Session {
            host,
            caller: Caller::new(host),
            backend,
            log,
            format,
            tools,
            messages,
            opts,
            cancel,
            turns: 0,
            generations: 0,
            ended: false,
            client_tools: Vec::new(),
            model_name,
        })
    }

    /// The log being written.
    pub fn log_path(&self) -> &std::path::Path {
        self.log.path()
    }

    /// The call format the model's template asks for.
    pub fn call_format(&self) -> CallFormat {
        self.format
    }

    /// Forgets the conversation (the log and the call budget go on).
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
    }

    /// Starts an independent task in the same session and log (an eval
    /// case): forgets the conversation and renews the call budget.
    pub fn new_task(&mut self) {
        self.reset();
        self.caller.renew_budget();
    }

    /// The conversation so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The options, to change between turns (a server's per-request
    /// `max_tokens`, thinking and tool choice).
    pub fn options_mut(&mut self) -> &mut SessionOptions {
        &mut self.opts
    }

    /// Tools the client runs, offered beside the policy's from the next
    /// turn on; a call of one ends the turn (its calls come back in
    /// [`TurnReport::client_calls`]). A policy tool of the same name wins.
    pub fn set_client_tools(&mut self, tools: Vec<Value>) {
        self.client_tools = tools;
    }

    /// Runs one turn for `user`.
    pub fn turn(
        &mut self,
        user: &str,
        on: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<TurnReport> {
        self.messages.push(Message::new("user", user));
        self.run_turn(user, on)
    }

    /// Runs one turn after `messages` (a user message, or results of the
    /// client's tools), which join the conversation first; `user` is what
    /// the log's `turn` record shows as the question.
    pub fn turn_after(
        &mut self,
        messages: Vec<Message>,
        user: &str,
        on: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<TurnReport> {
        self.messages.extend(messages);
        self.run_turn(user, on)
    }

    /// The flag that stops the next turns' generations (a server's
    /// per-request flag, set when its client goes away).
    pub fn set_cancel(&mut self, cancel: Arc<AtomicBool>) {
        self.cancel = cancel;
    }

    /// Replaces the conversation (system message included) with `messages`.
    pub fn replace_messages(&mut self, messages: Vec<Message>) {
        self.messages = messages;
    }

    fn run_turn(
        &mut self,
        user: &str,
        on: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<TurnReport> {
        let t0 = Instant::now();
        self.cancel.store(false, Ordering::SeqCst);
        self.turns += 1;
        let turn_span = genai::invoke_agent(self.log.session_id(), &self.model_name);
        let _in_turn = turn_span.enter();
        let max_steps = self.host.policy().session.max_steps;
        let mut report = TurnReport {
            answer: String::new(),
            steps: 0,
            end_reason: EndReason::MaxSteps,
            calls: Vec::new(),
            timings: TurnTimings::default(),
            prefill: Vec::new(),
            generations: Vec::new(),
            client_calls: Vec::new(),
        };
        let offered: Vec<Value> = self
            .tools
            .iter()
            .cloned()
            .chain(
                self.client_tools
                    .iter()
                    .filter(|t| {
                        let name = t.pointer("/function/name").and_then(Value::as_str);
                        name.is_some_and(|n| self.host.tool(n).is_none())
                    })
                    .cloned(),
            )
            .collect();
        while report.steps < max_steps {
            if self.cancel.load(Ordering::SeqCst) {
                report.end_reason = EndReason::Interrupted;
                break;
            }
            report.steps += 1;
            let shown: &[Value] = if self.opts.tool_choice == chat::ToolChoice::None {
                &[]
            } else {
                &offered
            };
            // The first generation of a turn under `required`/a name must
            // call; later ones (after results) may answer.
            let choice = match &self.opts.tool_choice {
                c @ (chat::ToolChoice::Required | chat::ToolChoice::Named(_))
                    if report.steps == 1 =>
                {
                    Some(c.clone())
                }
                chat::ToolChoice::None => None,
                _ => self.opts.constrained.then_some(chat::ToolChoice::Auto),
            };
            let mut filter = StreamFilter::default();
            let g0 = Instant::now();
            let chat_span = genai::chat(&self.model_name, self.opts.max_tokens, None);
            // A server that takes the conversation renders and parses it.
            let server_turn = ChatTurn {
                messages: &self.messages,
                tools: shown,
                tool_choice: choice.clone().unwrap_or(chat::ToolChoice::Auto),
                constrained: self.opts.constrained,
                max_tokens: self.opts.max_tokens,
                enable_thinking: self.opts.enable_thinking,
            };
            let served = chat_span.in_scope(|| {
                self.backend.chat(&server_turn, &self.cancel, &mut |piece| {
                    on(Event::Text(piece))
                })
            });
            let generated = match served {
                Some(r) => r,
                None => {
                    let rendered = self.backend.template().render(&RenderRequest {
                        messages: &self.messages,
                        tools: shown,
                        add_generation_prompt: true,
                        enable_thinking: self.opts.enable_thinking,
                    });
                    let prompt = match rendered {
                        Ok(p) => p,
                        // Ctrl-C during a (slow) render ends the turn as it
                        // does during generation.
                        Err(_) if self.cancel.load(Ordering::SeqCst) => {
                            report.end_reason = EndReason::Interrupted;
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    let grammar = match choice {
                        Some(c) => self
                            .backend
                            .template()
                            .tool_grammar(&prompt, shown, &c, true)
                            .map_err(|e| anyhow::anyhow!("--tool-choice {c}: {e}"))?,
                        None => None,
                    };
                    chat_span.in_scope(|| {
                        self.backend.generate(
                            &prompt,
                            self.opts.max_tokens,
                            grammar.as_deref(),
                            &self.cancel,
                            &mut |piece| {
                                let shown = filter.push(piece);
                                if !shown.is_empty() {
                                    on(Event::Text(&shown));
                                }
                            },
                        )
                    })
                }
            };
            let g = match generated {
                Ok(g) => g,
                Err(e) => {
                    genai::failed(&chat_span, "generation_failed");
                    return Err(e);
                }
            };
            let t = &g.timings;
            genai::chat_done(
                &chat_span,
                &genai::ChatDone {
                    model: &self.model_name,
                    input_tokens: (t.prefill_tokens + t.reused_tokens) as u64,
                    cached_tokens: t.reused_tokens as u64,
                    output_tokens: (t.decode_tokens + usize::from(!g.text.is_empty())) as u64,
                    finish_reason: &g.finish_reason,
                    ttft_ms: t.ttft_ms,
                    seconds: g0.elapsed().as_secs_f64(),
                },
            );
            drop(chat_span);
            let rest = filter.finish();
            if !rest.is_empty() {
                on(Event::Text(&rest));
            }
            on(Event::GenerationEnd);
            let gen_ms = g0.elapsed().as_secs_f64() * 1e3;
            report.timings.model_ms += gen_ms;
            report
                .prefill
                .push((g.timings.reused_tokens, g.timings.prefill_tokens));
            report.generations.push(GenerationStats {
                ttft_ms: g.timings.ttft_ms,
                decode_tokens: g.timings.decode_tokens,
                decode_ms: g.timings.decode_ms,
            });
            let parsed = chat::parse(&g.text, self.format, &Schemas(self.host));
            self.log_generation(report.steps, &g, gen_ms, &parsed)?;
            self.generations += 1;
            self.messages.push(assistant_message(&parsed));
            if g.finish_reason == "cancelled" {
                report.answer = parsed.content;
                report.end_reason = EndReason::Interrupted;
                break;
            }
            if parsed.calls.is_empty() {
                report.answer = parsed.content;
                report.end_reason = if g.finish_reason == "length" {
                    EndReason::Length
                } else {
                    EndReason::Answered
                };
                break;
            }
            let mut out_of_calls = false;
            let is_client = |pc: &chat::ParsedCall| {
                pc.call.as_ref().is_ok_and(|c| {
                    self.host.tool(&c.name).is_none()
                        && self.client_tools.iter().any(|t| {
                            t.pointer("/function/name").and_then(Value::as_str)
                                == Some(c.name.as_str())
                        })
                })
            };
            let (client, ours): (Vec<&chat::ParsedCall>, Vec<&chat::ParsedCall>) =
                parsed.calls.iter().partition(|pc| is_client(pc));
            for pc in client {
                let call = pc.call.as_ref().expect("a well-formed call");
                report.client_calls.push(json!({
                    "name": call.name,
                    "arguments": call
                        .arguments_text
                        .clone()
                        .unwrap_or_else(|| Value::Object(call.arguments.clone()).to_string()),
                }));
            }
            for pc in ours {
                // Once the budget is spent the rest of the generation's
                // calls are neither run nor logged one by one (the
                // generation record holds the text).
                if out_of_calls {
                    break;
                }
                let c = self.caller.run(pc, &mut out_of_calls);
                self.log.write(c.record(self.turns.into(), report.steps))?;
                report.timings.tool_ms += c.elapsed_us as f64 / 1e3;
                on(Event::Call(&c));
                let mut tool_msg = Message::new("tool", c.result.clone());
                tool_msg.tool_call_id = Some(c.call_id.clone());
                tool_msg.name = c.tool.clone();
                self.messages.push(tool_msg);
                report.calls.push(c);
            }
            if out_of_calls {
                report.end_reason = EndReason::MaxToolCalls;
                break;
            }
            if !report.client_calls.is_empty() {
                report.answer = parsed.content;
                report.end_reason = EndReason::ClientTools;
                break;
            }
        }
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        report.timings.total_ms = total_ms;
        report.timings.overhead_ms =
            (total_ms - report.timings.model_ms - report.timings.tool_ms).max(0.0);
        self.log.write(Record::Turn(Turn {
            turn: self.turns.into(),
            case: None,
            user: user.to_string(),
            answer: report.answer.clone(),
            steps: Some(report.steps),
            end_reason: Some(json!(report.end_reason)),
            calls: Some(report.calls.len()),
            passed: None,
            reason: None,
            model_ms: Some(report.timings.model_ms),
            tool_ms: Some(report.timings.tool_ms),
            overhead_ms: Some(report.timings.overhead_ms),
            total_ms: report.timings.total_ms,
        }))?;
        Ok(report)
    }

    /// Ends the session (writes `session_end`).
    pub fn end(mut self, reason: &str) -> anyhow::Result<std::path::PathBuf> {
        self.write_end(reason)?;
        Ok(self.log.path().to_path_buf())
    }

    /// Ends the session's log where the session is kept (a server's
    /// conversations): `session_end` with `reason`, once.
    pub fn end_in_place(&mut self, reason: &str) -> anyhow::Result<()> {
        self.write_end(reason)
    }

    fn write_end(&mut self, reason: &str) -> anyhow::Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        self.log.write(Record::SessionEnd(SessionEnd {
            reason: reason.into(),
            turns: self.turns.into(),
            generations: self.generations,
            tool_calls: self.caller.count(),
        }))
    }

    fn log_generation(
        &mut self,
        step: u32,
        g: &Generated,
        total_ms: f64,
        parsed: &Parsed,
    ) -> anyhow::Result<()> {
        let rec = generation_record(self.turns.into(), step, g, parsed, total_ms);
        self.log.write(rec)
    }
}

impl Drop for Session<'_> {
    /// A session dropped without [`Session::end`] (an error in the middle)
    /// still ends its log.
    fn drop(&mut self) {
        if let Err(e) = self.write_end("error") {
            tracing::warn!("cannot end the session log: {e:#}");
        }
    }
}

/// What redacts a session's log: the values of the env vars the policy
/// gives its tools.
pub fn redactor(host: &ToolHost) -> Redactor {
    Redactor::new(
        host.tools()
            .flat_map(|t| t.policy.env.iter().map(|(_, v)| v.clone())),
    )
}

/// A model's name for spans, from what its backend says of itself: a
/// file's or directory's name, a server's URL (and model), or the kind.
fn model_name(describe: &Value) -> String {
    if let Some(p) = describe["path"].as_str() {
        let p = std::path::Path::new(p);
        return p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
    }
    if let Some(u) = describe["url"].as_str() {
        return match describe["model"].as_str() {
            Some(m) => m.to_string(),
            None => u.to_string(),
        };
    }
    describe["kind"].as_str().unwrap_or("model").to_string()
}

/// `session_start`'s `tools`: each tool's name, plugin, sha256 and the
/// names of the env vars it gets.
pub fn tools_record(host: &ToolHost) -> Vec<Value> {
    host.tools()
        .map(|t| {
            json!({
                "name": t.spec.name,
                "plugin": t.policy.plugin.to_string(),
                "sha256": t.sha256,
                "env": t.policy.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The `generation` record of `g` (parsed as `parsed`): the one shape
/// sessions and every path of `eval` log a generation in. The log's writer
/// redacts it.
pub fn generation_record(
    turn: u64,
    step: u32,
    g: &Generated,
    parsed: &Parsed,
    total_ms: f64,
) -> Record {
    let t = &g.timings;
    let calls = parsed
        .calls
        .iter()
        .map(|c| match &c.call {
            Ok(call) => GenerationCall {
                name: Some(call.name.clone()),
                arguments: Some(call.arguments.clone()),
                malformed: None,
                raw: None,
            },
            Err(m) => GenerationCall {
                name: m.name.clone(),
                arguments: None,
                malformed: Some(m.message.clone()),
                raw: Some(c.raw.clone()),
            },
        })
        .collect();
    // Speculative decoding: what was drafted and what was kept.
    let drafted = (t.drafted_tokens > 0).then_some(t.drafted_tokens as u64);
    Record::Generation(Generation {
        turn,
        step,
        output: g.text.clone(),
        calls,
        finish_reason: g.finish_reason.clone(),
        timings: GenerationTimings {
            tokenize_ms: t.tokenize_ms,
            prefill_tokens: t.prefill_tokens as u64,
            reused_tokens: t.reused_tokens as u64,
            prefill_ms: t.prefill_ms,
            ttft_ms: t.ttft_ms,
            decode_tokens: t.decode_tokens as u64,
            decode_tok_s: t.decode_tok_s,
            total_ms: if g.total_ms > 0.0 {
                g.total_ms
            } else {
                total_ms
            },
            drafted_tokens: drafted,
            accepted_tokens: drafted.map(|_| t.accepted_tokens as u64),
        },
        parsed_by: g.server_response.as_ref().map(|_| "server".to_string()),
        response: g.server_response.clone(),
    })
}

/// The assistant message for the history: content, reasoning, the
/// well-formed calls (arguments as the model wrote them, so the next prompt
/// repeats its bytes), and malformed blocks verbatim in the content.
fn assistant_message(p: &Parsed) -> Message {
    let mut m = Message::new("assistant", p.content.clone());
    m.reasoning_content = p.reasoning.clone();
    for c in &p.calls {
        match &c.call {
            Ok(call) => m.tool_calls.push(chat::ToolCall {
                kind: "function".into(),
                id: None,
                function: chat::FunctionCall {
                    name: call.name.clone(),
                    arguments: match &call.arguments_text {
                        Some(t) => Value::String(t.clone()),
                        None => Value::Object(call.arguments.clone()),
                    },
                },
            }),
            Err(_) => {
                if !m.content.is_empty() {
                    m.content.push('\n');
                }
                m.content
                    .push_str(&format!("<tool_call>{}</tool_call>", c.raw));
            }
        }
    }
    m
}

/// Parameter types from the loaded tools' schemas (for the XML format).
struct Schemas<'a>(&'a ToolHost);

impl ParamTypes for Schemas<'_> {
    fn param_type(&self, tool: &str, param: &str) -> Option<String> {
        self.0.tool(tool)?.spec.parameters["properties"][param]["type"]
            .as_str()
            .map(String::from)
    }
}
