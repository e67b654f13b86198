//! The log's records, one type each: the schema every producer writes
//! (sessions, every path of `eval`) through [`super::AuditLog::write`],
//! which redacts them, and the source of `docs/audit-log.schema.json`.
//!
//! Each line of a log is a [`LogLine`]: the chain's header (`seq`,
//! `session_id`, `ts`, `prev`), the record tagged by `type`, then the
//! record's own `digest` and, in a keyed log, its `hmac`.

use super::redact::Redactor;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One line of a session log, as `docs/audit-log.schema.json` describes it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    /// 0, 1, 2… in the order written.
    pub seq: u64,
    /// The session's id (the same on every line).
    pub session_id: String,
    /// When the record was written (RFC 3339, UTC).
    pub ts: String,
    /// sha256 of the previous line (of the session id for the first).
    pub prev: String,
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// sha256 of the line up to this field.
    pub digest: String,
    /// HMAC-SHA256 of the line up to this field (keyed logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
}

/// A record, by its `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// What the session runs: model, policy, tools, limits.
    SessionStart(SessionStart),
    /// One generation of the model and the calls it wrote.
    Generation(Generation),
    /// One tool call: the decision, the rule behind it, the outcome.
    ToolCall(ToolCall),
    /// One user turn (or one eval case).
    Turn(Turn),
    /// The end of the session.
    SessionEnd(SessionEnd),
}

impl Record {
    /// The `type` it is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::SessionStart(_) => "session_start",
            Record::Generation(_) => "generation",
            Record::ToolCall(_) => "tool_call",
            Record::Turn(_) => "turn",
            Record::SessionEnd(_) => "session_end",
        }
    }

    /// The record with its secrets replaced: environment values passed to
    /// tools wherever text holds them, values under secret-looking keys in
    /// call arguments, and those values also where the raw output repeats
    /// them.
    pub fn redacted(mut self, r: &Redactor) -> Record {
        match &mut self {
            Record::SessionStart(_) | Record::SessionEnd(_) => {}
            Record::Generation(g) => {
                let secrets: Vec<String> = g
                    .calls
                    .iter()
                    .filter_map(|c| c.arguments.as_ref())
                    .flat_map(|a| Redactor::secret_values(&Value::Object(a.clone())))
                    .collect();
                g.output = r.text_with(&g.output, &secrets);
                for c in &mut g.calls {
                    if let Some(a) = &c.arguments {
                        c.arguments = match r.json(&Value::Object(a.clone())) {
                            Value::Object(m) => Some(m),
                            _ => None,
                        };
                    }
                    if let Some(raw) = &c.raw {
                        c.raw = Some(r.text_with(raw, &secrets));
                    }
                }
            }
            Record::ToolCall(c) => {
                c.arguments = match &c.arguments {
                    Value::String(raw) => Value::String(r.text(raw)),
                    v => r.json(v),
                };
                if let Some(e) = &c.error {
                    c.error = Some(r.text(e));
                }
            }
            Record::Turn(t) => {
                t.user = r.text(&t.user);
                t.answer = r.text(&t.answer);
            }
        }
        self
    }

    /// The record's fields (without `type`), as the writer appends them.
    pub fn fields(&self) -> anyhow::Result<Map<String, Value>> {
        match serde_json::to_value(self)? {
            Value::Object(mut m) => {
                m.remove("type");
                Ok(m)
            }
            _ => anyhow::bail!("a record serialises to an object"),
        }
    }
}

/// `session_start`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionStart {
    /// warden's version.
    pub warden_version: String,
    /// The model as its backend describes it (kind, path, files with
    /// sha256, …).
    pub model: Value,
    /// The adapters applied, or `null`.
    pub adapter: Value,
    /// The policy file and its sha256 (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// The workspace (sessions).
    #[serde(default)]
    pub workspace: Option<String>,
    /// The enabled tools: name, plugin, sha256, env names (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// The BFCL question file and its sha256 (`eval --bfcl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfcl: Option<Value>,
    /// `hermes` or `xml`.
    pub call_format: Value,
    /// sha256 of the chat template (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_sha256: Option<String>,
    /// `enable_thinking`, when set.
    pub thinking: Option<bool>,
    /// Most tokens per generation.
    pub max_tokens: usize,
    /// Most generations per turn (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Most tool calls per session (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u32>,
    /// `--tool-choice` (`required`, `none` or a tool's name), when not
    /// `auto`: the first generation of each turn was held to a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
    /// Whether every generation was constrained by the tools' grammar
    /// (`+constrained`, `--constrained`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constrained: Option<bool>,
    /// An MCP session's client: its `clientInfo` (`name`, `version`) and
    /// the protocol version negotiated (`warden mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
}

/// `generation`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Generation {
    /// The turn (1-based).
    pub turn: u64,
    /// The generation within the turn (1-based).
    pub step: u32,
    /// The model's raw output (redacted).
    pub output: String,
    /// The calls it wrote, in order.
    pub calls: Vec<GenerationCall>,
    /// `stop`, `length`, `cancelled`, `replay`.
    pub finish_reason: String,
    /// Where the time went.
    pub timings: GenerationTimings,
    /// Who read the calls: absent for warden's parser; `server` for an
    /// `openai:` model, whose server rendered the prompt and parsed the
    /// calls (`output` is then its answer written in the call format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsed_by: Option<String>,
    /// The server's answer as it came (`openai:` models; redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

/// A call as the model wrote it: well-formed (`name`, `arguments`) or not
/// (`malformed`, `raw`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GenerationCall {
    /// The tool named, when one could be read.
    pub name: Option<String>,
    /// The arguments (redacted), for a well-formed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Map<String, Value>>,
    /// What is wrong with a malformed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
    /// A malformed call's text (redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// The timings of one generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenerationTimings {
    /// Tokenizing the prompt.
    pub tokenize_ms: f64,
    /// Prompt tokens run through the model.
    pub prefill_tokens: u64,
    /// Prompt tokens reused from the cache.
    pub reused_tokens: u64,
    /// Prefill time.
    pub prefill_ms: f64,
    /// Time to the first generated token.
    pub ttft_ms: f64,
    /// Tokens generated.
    pub decode_tokens: u64,
    /// Generation speed.
    pub decode_tok_s: f64,
    /// The whole generation.
    pub total_ms: f64,
    /// Tokens drafted by speculative decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drafted_tokens: Option<u64>,
    /// Of those, tokens kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_tokens: Option<u64>,
}

impl GenerationTimings {
    /// Time spent decoding, from the tokens and the speed.
    pub fn decode_ms(&self) -> f64 {
        if self.decode_tok_s > 0.0 {
            self.decode_tokens as f64 / self.decode_tok_s * 1e3
        } else {
            0.0
        }
    }
}

/// `tool_call`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// The turn.
    pub turn: u64,
    /// The generation within the turn.
    pub step: u32,
    /// `call_N`, N counting the session's calls.
    pub call_id: String,
    /// The tool named, when one could be read.
    pub tool: Option<String>,
    /// The arguments (redacted); a malformed call's raw text.
    pub arguments: Value,
    /// Whether the arguments fit the tool's schema (`null`: not checked).
    pub schema_valid: Option<bool>,
    /// `allowed` or `denied`.
    pub decision: String,
    /// The rule behind the decision.
    pub rule: String,
    /// `ok` or the error's kind.
    pub outcome: String,
    /// The error's message, when not `ok` (redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes of output.
    pub output_bytes: usize,
    /// sha256 of the result text.
    pub output_sha256: String,
    /// Whether the output was cut at the cap.
    pub truncated: bool,
    /// Time in the tool.
    pub elapsed_us: u64,
}

/// `turn`: a user turn of a session, or one case of `eval --bfcl`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Turn {
    /// The turn (1-based).
    pub turn: u64,
    /// The BFCL case (`eval --bfcl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// What the user asked (redacted).
    pub user: String,
    /// The final answer (redacted).
    pub answer: String,
    /// Generations in the turn (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Why the turn ended (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<Value>,
    /// Tool calls in the turn (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<usize>,
    /// Whether the case passed (`eval --bfcl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Why it failed, by BFCL's rules (`eval --bfcl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Value>,
    /// Time in the model (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ms: Option<f64>,
    /// Time in tools (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_ms: Option<f64>,
    /// Everything else: rendering, parsing, policy, logging (sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_ms: Option<f64>,
    /// The whole turn.
    pub total_ms: f64,
}

/// `session_end`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionEnd {
    /// Why: `answered`, `user`, `replay`, `eval`, `error`, ….
    pub reason: String,
    /// Turns in the session.
    pub turns: u64,
    /// Generations in the session.
    pub generations: u64,
    /// Tool calls in the session.
    pub tool_calls: u64,
}

/// The JSON Schema of a log line, as shipped in `docs/audit-log.schema.json`.
pub fn log_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(LogLine)).unwrap_or(Value::Null)
}
