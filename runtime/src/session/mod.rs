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

pub use backend::{
    qwen3_template, sha256_file, Backend, CandleBackend, ForcedBackend, Generated, ReplayBackend,
};

use crate::audit::{AuditLog, Redactor};
use crate::chat::{self, CallFormat, Message, ParamTypes, Parsed, RenderRequest, StreamFilter};
use crate::sandbox::{CallBudget, CallError, ErrorKind, ToolHost};
use serde::Serialize;
use serde_json::{json, Map, Value};
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
        }
    }
}

/// One tool call as the session made it.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// `call_N`, unique in the session.
    pub call_id: String,
    /// The tool the model named (`null` when it could not be read).
    pub tool: Option<String>,
    /// The arguments (or the raw text of a malformed call).
    pub arguments: Value,
    /// Whether the arguments fit the tool's schema (`null`: not checked).
    pub schema_valid: Option<bool>,
    /// `allowed` or `denied`.
    pub decision: &'static str,
    /// What decided.
    pub rule: String,
    /// `ok`, a sandbox error kind, or `malformed`.
    pub outcome: String,
    /// What the model was given back.
    pub result: String,
    /// Bytes of the tool's output (0 on failure).
    pub output_bytes: usize,
    /// Whether the output was cut at `max_output_bytes`.
    pub truncated: bool,
    /// Time in the sandbox.
    pub elapsed_us: u64,
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
    redactor: Redactor,
    format: CallFormat,
    tools: Vec<Value>,
    messages: Vec<Message>,
    budget: CallBudget,
    opts: SessionOptions,
    cancel: Arc<AtomicBool>,
    turns: u32,
    generations: u64,
    calls: u64,
    ended: bool,
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
        let redactor = Redactor::new(
            host.tools()
                .flat_map(|t| t.policy.env.iter().map(|(_, v)| v.clone())),
        );
        let tools: Vec<Value> = host
            .tools()
            .map(|t| chat::tool_json(&t.spec.name, &t.spec.description, &t.spec.parameters))
            .collect();
        let format = backend.template().call_format();
        let policy = host.policy();
        let mut start = Map::new();
        start.insert("warden_version".into(), env!("CARGO_PKG_VERSION").into());
        start.insert("model".into(), backend.describe());
        start.insert("adapter".into(), backend.adapters());
        start.insert(
            "policy".into(),
            match &opts.policy_file {
                Some((p, h)) => json!({"path": p, "sha256": h}),
                None => json!({"path": policy.path}),
            },
        );
        start.insert("workspace".into(), json!(opts.workspace));
        start.insert(
            "tools".into(),
            host.tools()
                .map(|t| {
                    json!({
                        "name": t.spec.name,
                        "plugin": t.policy.plugin.to_string(),
                        "sha256": t.sha256,
                        "env": t.policy.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
        start.insert("call_format".into(), json!(format));
        start.insert(
            "template_sha256".into(),
            crate::audit::sha256_hex(backend.template().source().as_bytes()).into(),
        );
        start.insert("thinking".into(), json!(opts.enable_thinking));
        start.insert("max_tokens".into(), opts.max_tokens.into());
        start.insert("max_steps".into(), policy.session.max_steps.into());
        start.insert(
            "max_tool_calls".into(),
            policy.session.max_tool_calls.into(),
        );
        log.append("session_start", start)?;
        let mut messages = Vec::new();
        if let Some(system) = &opts.system {
            messages.push(Message::new("system", system.clone()));
        }
        Ok(Session {
            host,
            budget: host.budget(),
            backend,
            log,
            redactor,
            format,
            tools,
            messages,
            opts,
            cancel,
            turns: 0,
            generations: 0,
            calls: 0,
            ended: false,
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
        self.budget = self.host.budget();
    }

    /// Runs one turn for `user`.
    pub fn turn(
        &mut self,
        user: &str,
        on: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<TurnReport> {
        let t0 = Instant::now();
        self.cancel.store(false, Ordering::SeqCst);
        self.turns += 1;
        self.messages.push(Message::new("user", user));
        let max_steps = self.host.policy().session.max_steps;
        let mut report = TurnReport {
            answer: String::new(),
            steps: 0,
            end_reason: EndReason::MaxSteps,
            calls: Vec::new(),
            timings: TurnTimings::default(),
            prefill: Vec::new(),
            generations: Vec::new(),
        };
        while report.steps < max_steps {
            if self.cancel.load(Ordering::SeqCst) {
                report.end_reason = EndReason::Interrupted;
                break;
            }
            report.steps += 1;
            let rendered = self.backend.template().render(&RenderRequest {
                messages: &self.messages,
                tools: &self.tools,
                add_generation_prompt: true,
                enable_thinking: self.opts.enable_thinking,
            });
            let prompt = match rendered {
                Ok(p) => p,
                // Ctrl-C during a (slow) render ends the turn as it does
                // during generation.
                Err(_) if self.cancel.load(Ordering::SeqCst) => {
                    report.end_reason = EndReason::Interrupted;
                    break;
                }
                Err(e) => return Err(e),
            };
            let mut filter = StreamFilter::default();
            let g0 = Instant::now();
            let g = self.backend.generate(
                &prompt,
                self.opts.max_tokens,
                &self.cancel,
                &mut |piece| {
                    let shown = filter.push(piece);
                    if !shown.is_empty() {
                        on(Event::Text(&shown));
                    }
                },
            )?;
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
            for pc in &parsed.calls {
                // Once the budget is spent the rest of the generation's
                // calls are neither run nor logged one by one (the
                // generation record holds the text).
                if out_of_calls {
                    break;
                }
                let c = self.run_call(report.steps, pc, &mut out_of_calls)?;
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
        }
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        report.timings.total_ms = total_ms;
        report.timings.overhead_ms =
            (total_ms - report.timings.model_ms - report.timings.tool_ms).max(0.0);
        let mut rec = Map::new();
        rec.insert("turn".into(), self.turns.into());
        rec.insert("user".into(), self.redactor.text(user).into());
        rec.insert("answer".into(), self.redactor.text(&report.answer).into());
        rec.insert("steps".into(), report.steps.into());
        rec.insert("end_reason".into(), json!(report.end_reason));
        rec.insert("calls".into(), report.calls.len().into());
        rec.insert("model_ms".into(), json!(report.timings.model_ms));
        rec.insert("tool_ms".into(), json!(report.timings.tool_ms));
        rec.insert("overhead_ms".into(), json!(report.timings.overhead_ms));
        rec.insert("total_ms".into(), json!(report.timings.total_ms));
        self.log.append("turn", rec)?;
        Ok(report)
    }

    /// Ends the session (writes `session_end`).
    pub fn end(mut self, reason: &str) -> anyhow::Result<std::path::PathBuf> {
        self.write_end(reason)?;
        Ok(self.log.path().to_path_buf())
    }

    fn write_end(&mut self, reason: &str) -> anyhow::Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        let mut rec = Map::new();
        rec.insert("reason".into(), reason.into());
        rec.insert("turns".into(), self.turns.into());
        rec.insert("generations".into(), self.generations.into());
        rec.insert("tool_calls".into(), self.calls.into());
        self.log.append("session_end", rec)
    }

    fn log_generation(
        &mut self,
        step: u32,
        g: &Generated,
        total_ms: f64,
        parsed: &Parsed,
    ) -> anyhow::Result<()> {
        let t = &g.timings;
        // Values under secret-looking keys, also where they stand in the
        // raw text.
        let secrets: Vec<String> = parsed
            .calls
            .iter()
            .filter_map(|c| c.call.as_ref().ok())
            .flat_map(|c| Redactor::secret_values(&Value::Object(c.arguments.clone())))
            .collect();
        let calls: Vec<Value> = parsed
            .calls
            .iter()
            .map(|c| match &c.call {
                Ok(call) => json!({
                    "name": call.name,
                    "arguments": self.redactor.json(&Value::Object(call.arguments.clone())),
                }),
                Err(m) => json!({
                    "name": m.name,
                    "malformed": m.message,
                    "raw": self.redactor.text_with(&c.raw, &secrets),
                }),
            })
            .collect();
        let mut rec = Map::new();
        rec.insert("turn".into(), self.turns.into());
        rec.insert("step".into(), step.into());
        rec.insert(
            "output".into(),
            self.redactor.text_with(&g.text, &secrets).into(),
        );
        rec.insert("calls".into(), Value::Array(calls));
        rec.insert("finish_reason".into(), g.finish_reason.clone().into());
        let mut timings = json!({
            "tokenize_ms": t.tokenize_ms,
            "prefill_tokens": t.prefill_tokens,
            "reused_tokens": t.reused_tokens,
            "prefill_ms": t.prefill_ms,
            "ttft_ms": t.ttft_ms,
            "decode_tokens": t.decode_tokens,
            "decode_tok_s": t.decode_tok_s,
            "total_ms": if g.total_ms > 0.0 { g.total_ms } else { total_ms },
        });
        // Speculative decoding: what was drafted and what was kept.
        if t.drafted_tokens > 0 {
            timings["drafted_tokens"] = t.drafted_tokens.into();
            timings["accepted_tokens"] = t.accepted_tokens.into();
        }
        rec.insert("timings".into(), timings);
        self.log.append("generation", rec)
    }

    /// Checks and makes one call; sets `out_of_calls` when the session's
    /// budget is spent.
    fn run_call(
        &mut self,
        step: u32,
        pc: &chat::ParsedCall,
        out_of_calls: &mut bool,
    ) -> anyhow::Result<CallReport> {
        self.calls += 1;
        let call_id = format!("call_{}", self.calls);
        let mut r = CallReport {
            call_id,
            tool: None,
            arguments: Value::Null,
            schema_valid: None,
            decision: "denied",
            rule: String::new(),
            outcome: String::new(),
            result: String::new(),
            output_bytes: 0,
            truncated: false,
            elapsed_us: 0,
        };
        let fail = |r: &mut CallReport, kind: &str, message: &str| {
            r.outcome = kind.to_string();
            r.result = format!("error: {kind}: {message}");
        };
        // A call that names no enabled tool still spends the budget.
        let mut attempt =
            |r: &mut CallReport, out_of_calls: &mut bool| match self.budget.charge_attempt() {
                Ok(()) => true,
                Err(e) => {
                    *out_of_calls = true;
                    r.rule = budget_rule(&e);
                    fail(r, e.kind.as_str(), &e.message);
                    false
                }
            };
        match &pc.call {
            Err(m) => {
                r.tool = m.name.clone();
                r.arguments = Value::String(pc.raw.clone());
                r.schema_valid = Some(false);
                if attempt(&mut r, out_of_calls) {
                    r.rule = "malformed: the call could not be read".into();
                    fail(&mut r, "malformed", &m.message);
                }
            }
            Ok(call) => {
                r.tool = Some(call.name.clone());
                let args = Value::Object(call.arguments.clone());
                r.arguments = args.clone();
                match self.host.tool(&call.name) {
                    None => {
                        if attempt(&mut r, out_of_calls) {
                            let e = self.host.unknown_tool(&call.name);
                            r.rule = "policy: no such tool is enabled".into();
                            fail(&mut r, e.kind.as_str(), &e.message);
                        }
                    }
                    Some(tool) => match self.budget.charge(tool) {
                        Err(e) => {
                            *out_of_calls |= e.message.contains("max_tool_calls");
                            r.rule = budget_rule(&e);
                            fail(&mut r, e.kind.as_str(), &e.message);
                        }
                        Ok(()) => match tool.check_schema(&args) {
                            Err(e) => {
                                r.schema_valid = Some(false);
                                r.rule =
                                    "schema: the arguments do not fit the tool's parameters".into();
                                fail(&mut r, e.kind.as_str(), &e.message);
                            }
                            Ok(()) => {
                                r.schema_valid = Some(true);
                                r.decision = "allowed";
                                r.rule = format!("policy: {} is enabled", call.name);
                                let text = serde_json::to_string(&args)?;
                                let t = Instant::now();
                                let result = tool.call(self.host.runtime(), &text);
                                r.elapsed_us = t.elapsed().as_micros() as u64;
                                match result {
                                    Ok(out) => {
                                        r.outcome = "ok".into();
                                        r.output_bytes = out.output.len();
                                        r.truncated = out.truncated;
                                        r.result = out.output;
                                    }
                                    Err(e) => fail(&mut r, e.kind.as_str(), &e.message),
                                }
                            }
                        },
                    },
                }
            }
        }
        self.log_call(step, &r)?;
        Ok(r)
    }

    fn log_call(&mut self, step: u32, r: &CallReport) -> anyhow::Result<()> {
        let arguments = match &r.arguments {
            Value::String(raw) => Value::String(self.redactor.text(raw)),
            v => self.redactor.json(v),
        };
        let mut rec = Map::new();
        rec.insert("turn".into(), self.turns.into());
        rec.insert("step".into(), step.into());
        rec.insert("call_id".into(), r.call_id.clone().into());
        rec.insert("tool".into(), json!(r.tool));
        rec.insert("arguments".into(), arguments);
        rec.insert("schema_valid".into(), json!(r.schema_valid));
        rec.insert("decision".into(), r.decision.into());
        rec.insert("rule".into(), r.rule.clone().into());
        rec.insert("outcome".into(), r.outcome.clone().into());
        if r.outcome != "ok" {
            rec.insert("error".into(), self.redactor.text(&r.result).into());
        }
        rec.insert("output_bytes".into(), r.output_bytes.into());
        rec.insert(
            "output_sha256".into(),
            crate::audit::sha256_hex(r.result.as_bytes()).into(),
        );
        rec.insert("truncated".into(), r.truncated.into());
        rec.insert("elapsed_us".into(), r.elapsed_us.into());
        self.log.append("tool_call", rec)
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

fn budget_rule(e: &CallError) -> String {
    if e.message.contains("max_tool_calls") {
        "policy: [session] max_tool_calls".into()
    } else if e.kind == ErrorKind::Denied {
        "policy: max_calls for this tool".into()
    } else {
        format!("policy: {}", e.kind)
    }
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
