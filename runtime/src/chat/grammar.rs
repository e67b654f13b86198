//! Grammars for constrained decoding, in llguidance's Lark dialect: tool
//! calls in the model's own call format around a JSON object that fits
//! the tool's JSON Schema (`tool_choice` required, a named function, or
//! every call under `auto` when constrained), and JSON output that fits a
//! schema (`response_format`). The JSON Schema part is compiled by the
//! grammar engine (`%json`), never translated here.

use super::parse::CallFormat;
use super::ChatTemplate;
use serde_json::{json, Value};
use std::fmt;
use std::str::FromStr;

/// Which calls the model must make (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the default with tools).
    #[default]
    Auto,
    /// No call: tools are not shown to the model.
    None,
    /// At least one call, of any tool.
    Required,
    /// A call of this function.
    Named(String),
}

impl FromStr for ToolChoice {
    type Err = std::convert::Infallible;

    /// `auto`, `none`, `required`, or a tool's name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            name => ToolChoice::Named(name.to_string()),
        })
    }
}

impl fmt::Display for ToolChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolChoice::Auto => f.write_str("auto"),
            ToolChoice::None => f.write_str("none"),
            ToolChoice::Required => f.write_str("required"),
            ToolChoice::Named(n) => f.write_str(n),
        }
    }
}

/// Where the model stands with reasoning when it starts to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thinking {
    /// The template has no reasoning block, or it is already closed.
    No,
    /// The model may open a `<think>` block first.
    May,
    /// The prompt ends inside an open `<think>` block.
    Inside,
}

impl Thinking {
    /// Reads it from the template's source and the rendered prompt.
    pub fn of(template_source: &str, prompt: &str) -> Thinking {
        let tail = prompt.trim_end();
        if tail.ends_with("<think>") {
            Thinking::Inside
        } else if template_source.contains("<think>") && !tail.ends_with("</think>") {
            Thinking::May
        } else {
            Thinking::No
        }
    }

    /// The grammar's prefix: the reasoning block the model may (or must
    /// finish to) write before the constrained part.
    fn prefix(self) -> &'static str {
        match self {
            Thinking::No => "",
            Thinking::May => "think? ",
            Thinking::Inside => "think_body WS ",
        }
    }
}

/// The rules every grammar here shares: the reasoning block (free text up
/// to `</think>`) and whitespace.
const COMMON: &str = r#"
think: "<think>" think_body WS
think_body[suffix="</think>"]: /(.|\n)*/
WS: /[ \t\r\n]*/
"#;

/// JSON as the models write it (`json.dumps` style: `", "` and `": "`), so
/// that constrained output reads as the model's own and whitespace cannot
/// run on without end.
fn json_style(mut schema: Value) -> Value {
    bound_integers(&mut schema);
    if let Value::Object(o) = &mut schema {
        o.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// JavaScript's safe integer range: integers without bounds get these, so
/// that a weak model cannot write digits until `max_tokens` (and no client
/// gets an integer its JSON parser rounds).
const SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// `schema` with every unbounded `integer` bounded to the safe range.
fn bound_integers(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            let is_int = match o.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            if is_int {
                if !o.contains_key("maximum") && !o.contains_key("exclusiveMaximum") {
                    o.insert("maximum".into(), json!(SAFE_INTEGER));
                }
                if !o.contains_key("minimum") && !o.contains_key("exclusiveMinimum") {
                    o.insert("minimum".into(), json!(-SAFE_INTEGER));
                }
            }
            for v in o.values_mut() {
                bound_integers(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// The JSON Schema of one call object, `{"name": NAME, "arguments": {…}}`.
fn call_schema(tool: &Value) -> Option<Value> {
    let f = tool.get("function").unwrap_or(tool);
    let name = f.get("name")?.as_str()?;
    let params = match f.get("parameters") {
        Some(p) if p.is_object() => p.clone(),
        _ => json!({"type": "object"}),
    };
    Some(json!({
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": params},
        "required": ["name", "arguments"],
        "additionalProperties": false,
    }))
}

/// Why a grammar cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    /// The template writes calls in a format constraints do not cover.
    #[error("constrained decoding covers the JSON call format (<tool_call>{{\"name\": …, \"arguments\": …}}</tool_call>, Qwen3 and Hermes templates); this template writes Qwen3-Coder XML calls: use tool_choice auto")]
    Format,
    /// `tool_choice` names a tool that is not offered.
    #[error("tool_choice names {0:?}, which is not among the tools")]
    UnknownTool(String),
    /// Calls were required but no tool is offered.
    #[error("tool_choice {0} needs at least one tool")]
    NoTools(String),
}

/// The grammar for `choice` over `tools` (OpenAI's shape, `{"type":
/// "function", "function": {name, parameters}}`), or none when nothing is
/// constrained (`none`). Under `auto` the model may answer in text, and a
/// call, once begun, must fit; under `required` and a named tool it must
/// call (`parallel`: one or more calls, else exactly one).
pub fn tool_grammar(
    tools: &[Value],
    choice: &ToolChoice,
    format: CallFormat,
    parallel: bool,
    thinking: Thinking,
) -> Result<Option<String>, GrammarError> {
    if *choice == ToolChoice::None || (tools.is_empty() && *choice == ToolChoice::Auto) {
        return Ok(None);
    }
    if format != CallFormat::Hermes {
        return Err(GrammarError::Format);
    }
    let name_of = |t: &Value| {
        t.pointer("/function/name")
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let offered: Vec<&Value> = match choice {
        ToolChoice::Named(n) => {
            let t: Vec<&Value> = tools
                .iter()
                .filter(|t| name_of(t).as_deref() == Some(n))
                .collect();
            if t.is_empty() {
                return Err(GrammarError::UnknownTool(n.clone()));
            }
            t
        }
        _ => tools.iter().collect(),
    };
    let schemas: Vec<Value> = offered.iter().filter_map(|t| call_schema(t)).collect();
    if schemas.is_empty() {
        return Err(GrammarError::NoTools(choice.to_string()));
    }
    let body = json_style(json!({"anyOf": schemas}));
    let calls = if parallel {
        r#"call ("\n" call)*"#
    } else {
        "call"
    };
    let start = match choice {
        ToolChoice::Auto => format!(
            "start: {}answer\nanswer: TEXT | lead call_rest (\"\\n\" call)*\nlead[lazy]: LEAD \"<tool_call>\"\nLEAD: /(.|\\n)*/\nTEXT: /(.|\\n)*/ & ~/(.|\\n)*<tool_call>(.|\\n)*/\n",
            thinking.prefix()
        ),
        _ => format!("start: {}{calls}\n", thinking.prefix()),
    };
    Ok(Some(format!(
        "{start}call: \"<tool_call>\" call_rest\ncall_rest: \"\\n\" call_json \"\\n</tool_call>\"\ncall_json: %json {body}\n{COMMON}"
    )))
}

/// The grammar for JSON output: any object (`json_object`), or one that
/// fits `schema` (`json_schema`).
pub fn json_grammar(schema: Option<&Value>, thinking: Thinking) -> String {
    let schema = schema.cloned().unwrap_or_else(|| json!({"type": "object"}));
    format!(
        "start: {}out\nout: %json {}\n{COMMON}",
        thinking.prefix(),
        json_style(schema)
    )
}

impl ChatTemplate {
    /// [`tool_grammar`] for a prompt this template rendered, in its call
    /// format, reasoning as the prompt leaves it.
    pub fn tool_grammar(
        &self,
        prompt: &str,
        tools: &[Value],
        choice: &ToolChoice,
        parallel: bool,
    ) -> Result<Option<String>, GrammarError> {
        let thinking = Thinking::of(self.source(), prompt);
        tool_grammar(tools, choice, self.call_format(), parallel, thinking)
    }

    /// [`json_grammar`] for a prompt this template rendered.
    pub fn json_grammar(&self, prompt: &str, schema: Option<&Value>) -> String {
        json_grammar(schema, Thinking::of(self.source(), prompt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}),
            json!({"type": "function", "function": {"name": "list_dir", "parameters": {"type": "object", "properties": {}}}}),
        ]
    }

    #[test]
    fn choices_parse_from_flags() {
        assert_eq!("auto".parse::<ToolChoice>().unwrap(), ToolChoice::Auto);
        assert_eq!("none".parse::<ToolChoice>().unwrap(), ToolChoice::None);
        assert_eq!(
            "read_file".parse::<ToolChoice>().unwrap(),
            ToolChoice::Named("read_file".into())
        );
    }

    #[test]
    fn refusals_say_why() {
        let g = tool_grammar(
            &tools(),
            &ToolChoice::Named("nope".into()),
            CallFormat::Hermes,
            true,
            Thinking::No,
        );
        assert!(matches!(g, Err(GrammarError::UnknownTool(_))));
        let g = tool_grammar(
            &tools(),
            &ToolChoice::Required,
            CallFormat::Xml,
            true,
            Thinking::No,
        );
        assert!(g.unwrap_err().to_string().contains("XML"));
        assert!(tool_grammar(
            &tools(),
            &ToolChoice::None,
            CallFormat::Hermes,
            true,
            Thinking::No
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn unbounded_integers_get_the_safe_range_and_bounds_stay() {
        let mut s = json!({"type": "object", "properties": {
            "a": {"type": "integer"},
            "b": {"type": ["integer", "null"], "maximum": 5},
            "c": {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0}},
            "d": {"type": "string"}}});
        bound_integers(&mut s);
        let p = &s["properties"];
        assert_eq!(p["a"]["maximum"], json!(SAFE_INTEGER));
        assert_eq!(p["a"]["minimum"], json!(-SAFE_INTEGER));
        assert_eq!(p["b"]["maximum"], json!(5));
        assert_eq!(p["b"]["minimum"], json!(-SAFE_INTEGER));
        assert!(p["c"]["items"].get("minimum").is_none());
        assert_eq!(p["c"]["items"]["maximum"], json!(SAFE_INTEGER));
        assert!(p["d"].get("maximum").is_none());
    }

    #[test]
    fn thinking_is_read_from_the_prompt() {
        let src = "{% if x %}<think>{% endif %}";
        assert_eq!(Thinking::of(src, "<|im_start|>assistant\n"), Thinking::May);
        assert_eq!(
            Thinking::of(src, "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
            Thinking::No
        );
        assert_eq!(Thinking::of(src, "assistant\n<think>\n"), Thinking::Inside);
        assert_eq!(Thinking::of("plain", "assistant\n"), Thinking::No);
    }
}
