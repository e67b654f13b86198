//! One tool call as every front door makes it — a session's loop, `eval`,
//! and the MCP server: is it well formed, is the tool enabled, is there
//! budget, do the arguments fit its schema; then the sandbox; then the
//! `tool_call` record. The decision and the record are the same wherever
//! the call came from.

use crate::audit::record::{Record, ToolCall};
use crate::chat::ParsedCall;
use crate::sandbox::{CallBudget, CallError, CallOutput, ErrorKind, LoadedTool, ToolHost};
use crate::telemetry::genai;
use serde::Serialize;
use serde_json::Value;
use std::time::Instant;

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

impl CallReport {
    /// The error as one line, `KIND: message` (none when the call
    /// succeeded).
    pub fn error_line(&self) -> Option<&str> {
        (self.outcome != "ok").then(|| self.result.strip_prefix("error: ").unwrap_or(&self.result))
    }

    fn fail(&mut self, kind: &str, message: &str) {
        self.outcome = kind.to_string();
        self.result = format!("error: {kind}: {message}");
    }

    /// Takes in what the sandbox made of the call.
    pub fn record_result(&mut self, result: Result<CallOutput, CallError>, elapsed_us: u64) {
        self.elapsed_us = elapsed_us;
        match result {
            Ok(out) => {
                self.outcome = "ok".into();
                self.output_bytes = out.output.len();
                self.truncated = out.truncated;
                self.result = out.output;
            }
            Err(e) => self.fail(e.kind.as_str(), &e.message),
        }
    }

    /// The `tool_call` record of this call, made at `step` of `turn`.
    pub fn record(&self, turn: u64, step: u32) -> Record {
        Record::ToolCall(ToolCall {
            turn,
            step,
            call_id: self.call_id.clone(),
            tool: self.tool.clone(),
            arguments: self.arguments.clone(),
            schema_valid: self.schema_valid,
            decision: self.decision.into(),
            rule: self.rule.clone(),
            outcome: self.outcome.clone(),
            error: (self.outcome != "ok").then(|| self.result.clone()),
            output_bytes: self.output_bytes,
            // Of the result as the model got it (before redaction).
            output_sha256: crate::audit::sha256_hex(self.result.as_bytes()),
            truncated: self.truncated,
            elapsed_us: self.elapsed_us,
        })
    }
}

/// The calls of one session: their numbering and their budget.
pub struct Caller<'h> {
    host: &'h ToolHost,
    budget: CallBudget,
    calls: u64,
}

/// What [`Caller::admit`] decided.
pub enum Admitted<'h> {
    /// The call may run: the tool and its arguments as JSON text.
    Run(&'h LoadedTool, String),
    /// It may not; the report says why.
    Refused,
}

impl<'h> Caller<'h> {
    /// A fresh budget over `host`'s tools.
    pub fn new(host: &'h ToolHost) -> Caller<'h> {
        Caller {
            host,
            budget: host.budget(),
            calls: 0,
        }
    }

    /// Calls numbered so far.
    pub fn count(&self) -> u64 {
        self.calls
    }

    /// A fresh budget (an eval case), the numbering going on.
    pub fn renew_budget(&mut self) {
        self.budget = self.host.budget();
    }

    /// Numbers the call and decides whether it may run; `out_of_calls` is
    /// set when the session's budget is spent. The report holds the
    /// decision (and, when refused, the error the model gets back).
    pub fn admit(
        &mut self,
        pc: &ParsedCall,
        out_of_calls: &mut bool,
    ) -> (CallReport, Admitted<'h>) {
        self.calls += 1;
        let mut r = CallReport {
            call_id: format!("call_{}", self.calls),
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
        // A call that names no enabled tool still spends the budget.
        let budget = &mut self.budget;
        let mut attempt =
            |r: &mut CallReport, out_of_calls: &mut bool| match budget.charge_attempt() {
                Ok(()) => true,
                Err(e) => {
                    *out_of_calls = true;
                    r.rule = budget_rule(&e);
                    r.fail(e.kind.as_str(), &e.message);
                    false
                }
            };
        let call = match &pc.call {
            Err(m) => {
                r.tool = m.name.clone();
                r.arguments = Value::String(pc.raw.clone());
                r.schema_valid = Some(false);
                if attempt(&mut r, out_of_calls) {
                    r.rule = "malformed: the call could not be read".into();
                    r.fail("malformed", &m.message);
                }
                return (r, Admitted::Refused);
            }
            Ok(call) => call,
        };
        r.tool = Some(call.name.clone());
        let args = Value::Object(call.arguments.clone());
        r.arguments = args.clone();
        let Some(tool) = self.host.tool(&call.name) else {
            if attempt(&mut r, out_of_calls) {
                let e = self.host.unknown_tool(&call.name);
                r.rule = "policy: no such tool is enabled".into();
                r.fail(e.kind.as_str(), &e.message);
            }
            return (r, Admitted::Refused);
        };
        if let Err(e) = self.budget.charge(tool) {
            *out_of_calls |= e.message.contains("max_tool_calls");
            r.rule = budget_rule(&e);
            r.fail(e.kind.as_str(), &e.message);
            return (r, Admitted::Refused);
        }
        if let Err(e) = tool.check_schema(&args) {
            r.schema_valid = Some(false);
            r.rule = "schema: the arguments do not fit the tool's parameters".into();
            r.fail(e.kind.as_str(), &e.message);
            return (r, Admitted::Refused);
        }
        r.schema_valid = Some(true);
        r.decision = "allowed";
        r.rule = format!("policy: {} is enabled", call.name);
        (r, Admitted::Run(tool, args.to_string()))
    }

    /// Decides and, when allowed, makes the call (blocking, in a fresh
    /// sandbox), under an `execute_tool` span.
    pub fn run(&mut self, pc: &ParsedCall, out_of_calls: &mut bool) -> CallReport {
        let span = self.span(pc);
        let _in = span.enter();
        let t0 = Instant::now();
        let (mut r, admitted) = self.admit(pc, out_of_calls);
        if let Admitted::Run(tool, text) = admitted {
            let t = Instant::now();
            let result = tool.call(self.host.runtime(), &text);
            r.record_result(result, t.elapsed().as_micros() as u64);
        }
        self.traced(&span, &r, t0);
        r
    }

    /// The `execute_tool` span of the call [`Caller::admit`] will number
    /// next (for callers that admit and run the call themselves).
    pub fn span(&self, pc: &ParsedCall) -> tracing::Span {
        let name = match &pc.call {
            Ok(c) => c.name.as_str(),
            Err(m) => m.name.as_deref().unwrap_or("malformed"),
        };
        genai::execute_tool(name, &format!("call_{}", self.calls + 1))
    }

    /// Puts what `r` decided and did on `span` (arguments and result only
    /// when content capture is on, redacted as in the log).
    pub fn traced(&self, span: &tracing::Span, r: &CallReport, started: Instant) {
        genai::tool_done(
            span,
            r.tool.as_deref().unwrap_or(""),
            r.decision,
            &r.rule,
            &r.outcome,
            r.output_bytes,
            started.elapsed().as_secs_f64(),
            || {
                let redactor = super::redactor(self.host);
                (
                    redactor.json(&r.arguments).to_string(),
                    redactor.text(&r.result),
                )
            },
        );
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
