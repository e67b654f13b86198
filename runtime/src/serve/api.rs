//! The OpenAI chat-completions request as clients send it, checked and
//! turned into warden's conversation types. Requests are untrusted: every
//! list and string that drives work is bounded, and every refusal names the
//! field (`param`) the way OpenAI's errors do.

use super::error::ApiError;
use crate::chat::{FunctionCall, Message, ToolCall};
use serde::Deserialize;
use serde_json::Value;

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 4096;
/// Most tools in one request.
pub const MAX_TOOLS: usize = 256;
/// Most `stop` strings (OpenAI's own limit) and their longest length.
pub const MAX_STOP: (usize, usize) = (4, 256);

/// `POST /v1/chat/completions`'s body. Fields clients send that warden does
/// not act on (`user`, `metadata`, `store`, …) are ignored, as OpenAI's
/// other servers do; fields it cannot honour are refused by name.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The model name the client asked for (any name is served by the one
    /// model; it is echoed back).
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<ApiMessage>,
    /// Tools in the OpenAI shape.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type": "function",
    /// "function": {"name"}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Whether several calls may come in one message (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Stream `chat.completion.chunk`s as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a last chunk with `usage`.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate (older name).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (default 1; 0 is greedy).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k sampling (llama-server and vLLM accept it).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Min-p sampling (llama-server and vLLM accept it).
    #[serde(default)]
    pub min_p: Option<f32>,
    /// OpenAI's presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Repetition penalty (llama-server and vLLM accept it).
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Seed for sampling (the same seed and request give the same answer).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings: one or a list.
    #[serde(default)]
    pub stop: Option<Value>,
    /// Choices to return: only 1.
    #[serde(default)]
    pub n: Option<u64>,
    /// `{"type": "text" | "json_object" | "json_schema", …}`.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// The end user (OpenAI's `user`); in agent mode part of what tells
    /// conversations apart.
    #[serde(default)]
    pub user: Option<String>,
    /// Log-probabilities: not served.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Template variables: `enable_thinking` is honoured.
    #[serde(default)]
    pub chat_template_kwargs: Option<Value>,
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// A message as clients send it: `content` a string, a list of text parts
/// or null; `tool_calls` with arguments as JSON text.
#[derive(Debug, Deserialize)]
pub struct ApiMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: Option<Value>,
    /// An assistant message's reasoning (as llama-server and vLLM return it).
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// An assistant message's calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    /// A tool message's call id.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// A tool message's (or participant's) name.
    #[serde(default)]
    pub name: Option<String>,
}

pub use crate::chat::ToolChoice;

/// A request checked and in warden's terms.
#[derive(Debug)]
pub struct Checked {
    /// The conversation.
    pub messages: Vec<Message>,
    /// The tools shown to the model.
    pub tools: Vec<Value>,
    /// The tool choice.
    pub tool_choice: ToolChoice,
    /// Stop strings.
    pub stop: Vec<String>,
    /// `chat_template_kwargs.enable_thinking`.
    pub enable_thinking: Option<bool>,
    /// The most tokens asked for, if any.
    pub max_tokens: Option<u64>,
    /// The shape of the answer.
    pub response_format: ResponseFormat,
}

/// `response_format`: free text, or JSON (any object, or one that fits a
/// schema) enforced by constrained decoding. With JSON, tools are not shown.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ResponseFormat {
    /// `{"type": "text"}` (the default).
    #[default]
    Text,
    /// `{"type": "json_object"}`.
    JsonObject,
    /// `{"type": "json_schema", "json_schema": {"name", "schema"}}`.
    JsonSchema(Value),
}

fn parse_response_format(v: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    let Some(rf) = v.filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => match rf.pointer("/json_schema/schema") {
            Some(s @ (Value::Object(_) | Value::Bool(true))) => {
                Ok(ResponseFormat::JsonSchema(s.clone()))
            }
            _ => Err(ApiError::invalid(
                "response_format json_schema needs json_schema.schema, a JSON Schema object",
                "response_format",
            )),
        },
        _ => Err(ApiError::invalid(
            "response_format.type must be text, json_object or json_schema",
            "response_format",
        )),
    }
}

impl ChatRequest {
    /// Checks the request and converts it.
    pub fn check(&self) -> Result<Checked, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages must not be empty", "messages"));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(ApiError::invalid(
                format!("at most {MAX_MESSAGES} messages per request"),
                "messages",
            ));
        }
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::invalid(
                format!("n={n}: only one choice per request is served"),
                "n",
            ));
        }
        if self.logprobs == Some(true) {
            return Err(ApiError::invalid(
                "logprobs are not served by warden",
                "logprobs",
            ));
        }
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(ApiError::invalid(
                format!("temperature {t} is outside 0..2"),
                "temperature",
            ));
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(ApiError::invalid(
                format!("top_p {p} is outside (0, 1]"),
                "top_p",
            ));
        }
        if self.max_tokens == Some(0) || self.max_completion_tokens == Some(0) {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1",
                "max_tokens",
            ));
        }
        let messages = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| m.to_message(i))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = check_tools(self.tools.as_deref().unwrap_or_default())?;
        let tool_choice = parse_tool_choice(self.tool_choice.as_ref(), &tools)?;
        let response_format = parse_response_format(self.response_format.as_ref())?;
        if response_format != ResponseFormat::Text
            && matches!(tool_choice, ToolChoice::Required | ToolChoice::Named(_))
        {
            return Err(ApiError::invalid(
                "response_format json_object/json_schema and a required or named tool_choice ask for two different outputs: send one of them",
                "response_format",
            ));
        }
        let enable_thinking = match self
            .chat_template_kwargs
            .as_ref()
            .and_then(|k| k.get("enable_thinking"))
        {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(ApiError::invalid(
                    "chat_template_kwargs.enable_thinking must be true or false",
                    "chat_template_kwargs",
                ))
            }
        };
        Ok(Checked {
            messages,
            tools,
            tool_choice,
            stop: parse_stop(self.stop.as_ref())?,
            enable_thinking,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            response_format,
        })
    }
}

impl ApiMessage {
    fn to_message(&self, i: usize) -> Result<Message, ApiError> {
        let param = |f: &str| format!("messages[{i}].{f}");
        let role = match self.role.as_str() {
            // OpenAI's newer name for the system message.
            "developer" => "system",
            r @ ("system" | "user" | "assistant" | "tool") => r,
            other => {
                return Err(ApiError::invalid(
                    format!("unknown role {other:?}; use system, user, assistant or tool"),
                    param("role"),
                ))
            }
        };
        let content = match &self.content {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                format!(
                                    "content part of type {} is not served: warden's models read text only",
                                    kind.unwrap_or("(none)")
                                ),
                                format!("messages[{i}].content[{j}]"),
                            ))
                        }
                    }
                }
                text
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "content must be a string, a list of text parts or null",
                    param("content"),
                ))
            }
        };
        let mut m = Message::new(role, content);
        m.reasoning_content = self.reasoning_content.clone();
        m.tool_call_id = self.tool_call_id.clone();
        m.name = self.name.clone();
        for (j, c) in self.tool_calls.iter().flatten().enumerate() {
            let p = format!("messages[{i}].tool_calls[{j}]");
            if role != "assistant" {
                return Err(ApiError::invalid(
                    "only assistant messages carry tool_calls",
                    p,
                ));
            }
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid("a tool call needs function.name", &p))?;
            let arguments = match c.pointer("/function/arguments") {
                // As OpenAI sends them: JSON text, kept as written so that the
                // prompt repeats the model's own bytes.
                Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(_)) => Value::String(s.clone()),
                    _ => {
                        return Err(ApiError::invalid(
                            "function.arguments must be the JSON text of an object",
                            format!("{p}.function.arguments"),
                        ))
                    }
                },
                Some(v @ Value::Object(_)) => v.clone(),
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(_) => {
                    return Err(ApiError::invalid(
                        "function.arguments must be the JSON text of an object",
                        format!("{p}.function.arguments"),
                    ))
                }
            };
            m.tool_calls.push(ToolCall {
                kind: "function".into(),
                id: c.get("id").and_then(Value::as_str).map(String::from),
                function: FunctionCall {
                    name: name.into(),
                    arguments,
                },
            });
        }
        Ok(m)
    }
}

/// Each tool must be `{"type": "function", "function": {"name", …}}` with a
/// unique name.
fn check_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            format!("at most {MAX_TOOLS} tools per request"),
            "tools",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, t) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid("tools must be of type function", p));
        }
        let name = t
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid("a tool needs function.name", format!("{p}.function.name"))
            })?;
        if let Some(params) = t.pointer("/function/parameters") {
            if !params.is_object() {
                return Err(ApiError::invalid(
                    "function.parameters must be a JSON Schema object",
                    format!("{p}.function.parameters"),
                ));
            }
        }
        if !names.insert(name) {
            return Err(ApiError::invalid(
                format!("two tools are named {name:?}"),
                format!("{p}.function.name"),
            ));
        }
    }
    Ok(tools.to_vec())
}

fn parse_tool_choice(v: Option<&Value>, tools: &[Value]) -> Result<ToolChoice, ApiError> {
    let choice = match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    format!("tool_choice {other:?}: use auto, none, required or {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"),
                    "tool_choice",
                ))
            }
        },
        Some(o) => match o.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.into()),
            None => {
                return Err(ApiError::invalid(
                    "tool_choice as an object needs function.name",
                    "tool_choice",
                ))
            }
        },
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => Err(ApiError::invalid(
            "tool_choice required needs tools",
            "tool_choice",
        )),
        ToolChoice::Named(n)
            if !tools
                .iter()
                .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(n)) =>
        {
            Err(ApiError::invalid(
                format!("tool_choice names {n:?}, which is not among the tools"),
                "tool_choice",
            ))
        }
        _ => Ok(choice),
    }
}

/// `stop` as OpenAI takes it: a string or a list, bounded by [`MAX_STOP`].
pub(super) fn parse_stop(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| ApiError::invalid("stop must be strings", "stop"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("stop must be a string or a list", "stop")),
    };
    let (most, longest) = MAX_STOP;
    if list.len() > most || list.iter().any(|s| s.is_empty() || s.len() > longest) {
        return Err(ApiError::invalid(
            format!("at most {most} stop strings of 1 to {longest} bytes"),
            "stop",
        ));
    }
    Ok(list)
}
