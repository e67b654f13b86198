//! What the model wrote: reasoning, text, and tool calls.
//!
//! Qwen3 writes an optional `<think>…</think>`, then text and Hermes-style
//! `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>` blocks;
//! Qwen3-Coder writes `<tool_call>\n<function=NAME>\n<parameter=KEY>\nvalue
//! \n</parameter>\n</function>\n</tool_call>`. As vLLM's and llama.cpp's
//! parsers do, this accepts a block left open at the end of the output,
//! arguments given as a JSON string, text before and between calls and
//! several calls in one message; reasoning is taken out first, so a
//! `<tool_call>` inside `<think>` is never a call. Model output is
//! untrusted: a block that does not parse becomes a [`Malformed`] call that
//! the session reports back to the model, never a panic.

use serde_json::{Map, Value};

/// The two ways Qwen models write calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallFormat {
    /// `<tool_call>{"name": …, "arguments": …}</tool_call>` (Qwen3, Hermes).
    Hermes,
    /// `<tool_call><function=…><parameter=…>…` (Qwen3-Coder).
    Xml,
}

const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";
const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// One generation, taken apart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// The reasoning (between `<think>` and `</think>`), if any.
    pub reasoning: Option<String>,
    /// The text outside reasoning and calls, trimmed.
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ParsedCall>,
}

/// One `<tool_call>` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// The block's inner text as the model wrote it.
    pub raw: String,
    /// The call, or why it is not one.
    pub call: Result<Call, Malformed>,
}

/// A well-formed call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Tool name.
    pub name: String,
    /// Arguments (a JSON object).
    pub arguments: Map<String, Value>,
    /// The arguments' JSON text as the model wrote it (Hermes), kept so the
    /// next prompt repeats the model's own bytes.
    pub arguments_text: Option<String>,
}

/// A block that is not a usable call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The tool name, when one could be read.
    pub name: Option<String>,
    /// What is wrong, for the model.
    pub message: String,
}

/// The types of a tool's parameters, for the XML format's values.
pub trait ParamTypes {
    /// The JSON Schema `type` of parameter `param` of tool `tool`.
    fn param_type(&self, tool: &str, param: &str) -> Option<String>;
}

impl ParamTypes for () {
    fn param_type(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// Parameter types from tools in the OpenAI shape
/// (`{"type": "function", "function": {"name", "parameters"}}`).
pub struct ToolList<'a>(pub &'a [Value]);

impl ParamTypes for ToolList<'_> {
    fn param_type(&self, tool: &str, param: &str) -> Option<String> {
        let t = self
            .0
            .iter()
            .find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(tool))?;
        t.pointer("/function/parameters/properties")?
            .get(param)?
            .get("type")?
            .as_str()
            .map(String::from)
    }
}

/// Takes `text` apart as `format` says.
pub fn parse(text: &str, format: CallFormat, types: &dyn ParamTypes) -> Parsed {
    let (reasoning, rest) = split_reasoning(text);
    let rest = rest.as_str();
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut at = 0;
    while let Some(start) = rest[at..].find(CALL_OPEN).map(|i| at + i) {
        content.push_str(&rest[at..start]);
        let inner_start = start + CALL_OPEN.len();
        let (inner, next) = match rest[inner_start..].find(CALL_CLOSE) {
            Some(end) => (
                &rest[inner_start..inner_start + end],
                inner_start + end + CALL_CLOSE.len(),
            ),
            None => (&rest[inner_start..], rest.len()),
        };
        let call = match format {
            CallFormat::Hermes => hermes(inner),
            CallFormat::Xml => xml(inner, types),
        };
        calls.push(ParsedCall {
            raw: inner.to_string(),
            call,
        });
        at = next;
    }
    content.push_str(&rest[at..]);
    Parsed {
        reasoning,
        content: content.trim().to_string(),
        calls,
    }
}

/// Separates reasoning from the rest. Every `<think>` span is reasoning,
/// wherever it starts: a `</think>` with no opening before it closes the
/// span the template opened in the prompt, a span opened after text or
/// after an earlier span counts as well, and a span left open (cut off)
/// runs to the end. A `<tool_call>` inside any of them is never a call.
/// The reasoning (every `<think>` span, joined; also a span the prompt
/// opened) and the rest of `text`.
pub fn split_reasoning(text: &str) -> (Option<String>, String) {
    let mut spans: Vec<&str> = Vec::new();
    let mut content = String::new();
    let mut rest = text;
    // The template may have opened the first span in the prompt.
    if let Some(end) = rest.find(THINK_CLOSE) {
        if !rest[..end].contains(THINK_OPEN) {
            spans.push(&rest[..end]);
            rest = &rest[end + THINK_CLOSE.len()..];
        }
    }
    while let Some(open) = rest.find(THINK_OPEN) {
        content.push_str(&rest[..open]);
        let inner = &rest[open + THINK_OPEN.len()..];
        match inner.find(THINK_CLOSE) {
            Some(end) => {
                spans.push(&inner[..end]);
                rest = &inner[end + THINK_CLOSE.len()..];
            }
            None => {
                spans.push(inner);
                rest = "";
            }
        }
    }
    content.push_str(rest);
    let reasoning = (!spans.is_empty()).then(|| {
        spans
            .iter()
            .map(|s| s.trim_matches('\n'))
            .collect::<Vec<_>>()
            .join("\n\n")
    });
    (reasoning, content)
}

fn hermes(inner: &str) -> Result<Call, Malformed> {
    let body = inner.trim();
    let bad = |name: Option<String>, message: String| Err(Malformed { name, message });
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return bad(
                guess_name(body),
                format!("the call is not valid JSON ({e}); write {{\"name\": \"TOOL\", \"arguments\": {{…}}}} inside <tool_call></tool_call>"),
            )
        }
    };
    let Value::Object(mut obj) = value else {
        return bad(
            None,
            "the call must be a JSON object with \"name\" and \"arguments\"".into(),
        );
    };
    let name = match obj.remove("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n,
        _ => return bad(None, "the call has no \"name\" naming the tool".into()),
    };
    let args = obj.remove("arguments").or_else(|| obj.remove("parameters"));
    let (arguments, text) = match args {
        None | Some(Value::Null) => (Map::new(), None),
        Some(Value::Object(m)) => {
            let text = arguments_text(body);
            (m, text)
        }
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => (m, Some(s)),
            _ => {
                return bad(
                    Some(name),
                    "\"arguments\" is a string that is not a JSON object; give the arguments as an object".into(),
                )
            }
        },
        Some(_) => {
            return bad(
                Some(name),
                "\"arguments\" must be a JSON object of parameter values".into(),
            )
        }
    };
    Ok(Call {
        name,
        arguments,
        arguments_text: text,
    })
}

/// The text of the `"arguments"` value as written in `body` (a JSON object
/// known to parse), found by scanning for its balanced braces.
fn arguments_text(body: &str) -> Option<String> {
    let key = body.find("\"arguments\"")?;
    let after = &body[key + "\"arguments\"".len()..];
    let open = after.find('{')?;
    if !after[..open]
        .trim()
        .trim_start_matches(':')
        .trim()
        .is_empty()
    {
        return None;
    }
    let obj = &after[open..];
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, c) in obj.char_indices() {
        match (in_str, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_str = false,
            (true, false, _) => {}
            (false, _, '"') => in_str = true,
            (false, _, '{') => depth += 1,
            (false, _, '}') => {
                depth -= 1;
                if depth == 0 {
                    let text = &obj[..=i];
                    return serde_json::from_str::<Value>(text)
                        .is_ok()
                        .then(|| text.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// A tool name in a call that does not parse, for the log.
fn guess_name(body: &str) -> Option<String> {
    let after = &body[body.find("\"name\"")? + 6..];
    let start = after.find('"')? + 1;
    let len = after[start..].find('"')?;
    let name = &after[start..start + len];
    (!name.is_empty() && name.len() <= 64).then(|| name.to_string())
}

fn xml(inner: &str, types: &dyn ParamTypes) -> Result<Call, Malformed> {
    let bad = |name: Option<String>, message: &str| {
        Err(Malformed {
            name,
            message: message.to_string(),
        })
    };
    let Some(fstart) = inner.find("<function=") else {
        return bad(
            None,
            "the call has no <function=NAME>; write <tool_call>\\n<function=TOOL>\\n<parameter=KEY>\\nvalue\\n</parameter>\\n</function>\\n</tool_call>",
        );
    };
    let after = &inner[fstart + "<function=".len()..];
    let Some(gt) = after.find('>') else {
        return bad(None, "<function= is not closed with >");
    };
    let name = after[..gt].trim().to_string();
    if name.is_empty() {
        return bad(None, "the call has an empty function name");
    }
    let body = &after[gt + 1..];
    let body = &body[..body.find("</function>").unwrap_or(body.len())];
    let mut arguments = Map::new();
    let mut rest = body;
    while let Some(p) = rest.find("<parameter=") {
        let after = &rest[p + "<parameter=".len()..];
        let Some(gt) = after.find('>') else {
            return bad(Some(name), "<parameter= is not closed with >");
        };
        let key = after[..gt].trim().to_string();
        let value_start = &after[gt + 1..];
        // A value ends at its closing tag, or (tolerated) at the next
        // parameter or the end.
        let end = value_start
            .find("</parameter>")
            .or_else(|| value_start.find("<parameter="))
            .unwrap_or(value_start.len());
        let raw = &value_start[..end];
        let raw = raw.strip_prefix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let value = typed(raw, types.param_type(&name, &key).as_deref());
        arguments.insert(key, value);
        rest = &value_start[end..];
        rest = rest.strip_prefix("</parameter>").unwrap_or(rest);
    }
    Ok(Call {
        name,
        arguments,
        arguments_text: None,
    })
}

/// A parameter value converted by its schema type, as vLLM's Qwen3-Coder
/// parser does; a value that does not convert stays a string (the schema
/// check then says what is wrong).
fn typed(raw: &str, ty: Option<&str>) -> Value {
    let s = raw.to_string();
    match ty {
        Some("string") | None => match ty {
            None => serde_json::from_str::<Value>(raw)
                .ok()
                .filter(|v| !v.is_string())
                .unwrap_or(Value::String(s)),
            _ => Value::String(s),
        },
        Some("integer") => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(s)),
        Some("number") => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| {
                if f.fract() == 0.0 && !raw.contains(['.', 'e', 'E']) {
                    Some(Value::from(f as i64))
                } else {
                    serde_json::Number::from_f64(f).map(Value::Number)
                }
            })
            .unwrap_or(Value::String(s)),
        Some("boolean") => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s),
        },
        Some("null") if raw.trim() == "null" => Value::Null,
        Some(_) => serde_json::from_str(raw.trim()).unwrap_or(Value::String(s)),
    }
}

/// Hides call blocks and reasoning from text streamed to a person, holding
/// back anything that may be the start of a tag split across tokens.
#[derive(Debug, Default)]
pub struct StreamFilter {
    pending: String,
    in_call: bool,
    in_think: bool,
    started: bool,
    /// Reasoning passed over since the last [`StreamFilter::take_reasoning`].
    reasoning: String,
    /// Call blocks are text here (no tools were offered).
    keep_calls: bool,
}

impl StreamFilter {
    /// A filter that hides reasoning only, for output where call blocks are
    /// plain text (no tools were offered).
    pub fn reasoning_only() -> StreamFilter {
        StreamFilter {
            keep_calls: true,
            ..StreamFilter::default()
        }
    }

    /// Feeds `piece`; returns what may be shown now (leading blank lines
    /// dropped).
    pub fn push(&mut self, piece: &str) -> String {
        let mut shown = self.scan(piece);
        if !self.started {
            shown = shown.trim_start_matches(['\n', '\r']).to_string();
            self.started = !shown.is_empty();
        }
        shown
    }

    fn scan(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let mut shown = String::new();
        loop {
            let (open, close) = if self.in_call {
                (None, Some(CALL_CLOSE))
            } else if self.in_think {
                (None, Some(THINK_CLOSE))
            } else if self.keep_calls {
                (Some(&[THINK_OPEN][..]), None)
            } else {
                (Some(&[CALL_OPEN, THINK_OPEN][..]), None)
            };
            if let Some(close) = close {
                match self.pending.find(close) {
                    Some(i) => {
                        if self.in_think {
                            self.reasoning.push_str(&self.pending[..i]);
                        }
                        self.pending.drain(..i + close.len());
                        self.in_call = false;
                        self.in_think = false;
                        continue;
                    }
                    None => {
                        let keep = partial_suffix(&self.pending, &[close]);
                        let cut = self.pending.len() - keep;
                        if self.in_think {
                            self.reasoning.push_str(&self.pending[..cut]);
                        }
                        self.pending.drain(..cut);
                        return shown;
                    }
                }
            }
            let tags: &[&str] = open.unwrap_or_default();
            let first = tags
                .iter()
                .filter_map(|t| self.pending.find(t).map(|i| (i, *t)))
                .min();
            match first {
                Some((i, tag)) => {
                    shown.push_str(&self.pending[..i]);
                    self.pending.drain(..i + tag.len());
                    if tag == CALL_OPEN {
                        self.in_call = true;
                    } else {
                        self.in_think = true;
                    }
                }
                None => {
                    let keep = partial_suffix(&self.pending, tags);
                    let cut = self.pending.len() - keep;
                    shown.push_str(&self.pending[..cut]);
                    self.pending.drain(..cut);
                    return shown;
                }
            }
        }
    }

    /// What is left at the end of the output (never part of a tag).
    pub fn finish(&mut self) -> String {
        if self.in_think {
            self.reasoning.push_str(&self.pending);
        }
        if self.in_call || self.in_think {
            self.pending.clear();
        }
        std::mem::take(&mut self.pending)
    }

    /// The reasoning (`<think>` text) passed over since the last call, for
    /// a client that shows it apart (`delta.reasoning_content`).
    pub fn take_reasoning(&mut self) -> String {
        std::mem::take(&mut self.reasoning)
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of a tag.
fn partial_suffix(s: &str, tags: &[&str]) -> usize {
    tags.iter()
        .flat_map(|t| (1..t.len()).filter(move |k| s.ends_with(&t[..*k])))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(p: &ParsedCall) -> &Call {
        p.call.as_ref().unwrap_or_else(|m| panic!("{m:?}"))
    }

    #[test]
    fn hermes_calls_text_and_reasoning() {
        let out = "<think>\nLook for it. <tool_call>{\"name\":\"x\"}</tool_call>\n</think>\n\nLet me search.\n<tool_call>\n{\"name\": \"search_code\", \"arguments\": {\"pattern\": \"class  Post\"}}\n</tool_call>\nand\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": \"{\\\"path\\\": \\\"a.py\\\"}\"}\n</tool_call>";
        let p = parse(out, CallFormat::Hermes, &());
        assert_eq!(
            p.reasoning.as_deref(),
            Some("Look for it. <tool_call>{\"name\":\"x\"}</tool_call>")
        );
        assert_eq!(p.content, "Let me search.\n\nand");
        assert_eq!(p.calls.len(), 2, "the call in <think> is not a call");
        let a = ok(&p.calls[0]);
        assert_eq!(a.name, "search_code");
        assert_eq!(a.arguments["pattern"], "class  Post");
        assert_eq!(
            a.arguments_text.as_deref(),
            Some("{\"pattern\": \"class  Post\"}")
        );
        let b = ok(&p.calls[1]);
        assert_eq!(b.arguments["path"], "a.py");
        assert_eq!(b.arguments_text.as_deref(), Some("{\"path\": \"a.py\"}"));
    }

    #[test]
    fn unclosed_and_malformed_blocks() {
        let p = parse(
            "<tool_call>\n{\"name\": \"list_dir\", \"arguments\": {}}",
            CallFormat::Hermes,
            &(),
        );
        assert_eq!(ok(&p.calls[0]).name, "list_dir");
        for (bad, name) in [
            (
                "{\"name\": \"read_file\", \"arguments\": {\"path\": }",
                Some("read_file"),
            ),
            ("{\"arguments\": {}}", None),
            ("[1, 2]", None),
            (
                "{\"name\": \"read_file\", \"arguments\": \"not json\"}",
                Some("read_file"),
            ),
            (
                "{\"name\": \"read_file\", \"arguments\": 7}",
                Some("read_file"),
            ),
            ("", None),
        ] {
            let p = parse(
                &format!("<tool_call>{bad}</tool_call>"),
                CallFormat::Hermes,
                &(),
            );
            let m = p.calls[0].call.as_ref().unwrap_err();
            assert_eq!(m.name.as_deref(), name, "{bad}");
            assert!(!m.message.is_empty());
        }
        // Cut off while thinking: nothing runs.
        let p = parse(
            "<think>\nI will call <tool_call>{\"name\": \"x\"}",
            CallFormat::Hermes,
            &(),
        );
        assert!(p.calls.is_empty() && p.content.is_empty());
        // No think block at all, thinking disabled.
        let p = parse("Just an answer.", CallFormat::Hermes, &());
        assert_eq!((p.reasoning, p.content.as_str()), (None, "Just an answer."));
    }

    #[test]
    fn calls_in_any_think_span_are_reasoning() {
        let call = "<tool_call>{\"name\": \"list_dir\", \"arguments\": {}}</tool_call>";
        for text in [
            // A second span after text, closed.
            format!("<think>a</think>ok <think> {call}</think>"),
            // A span opened after text, never closed.
            format!("text <think> {call}"),
            // The template opened the first span; a later one is open.
            format!("a</think>ok <think>{call}"),
            // Three spans, the call in the middle one.
            format!("<think>a</think>x<think>{call}</think>y<think>b</think>"),
        ] {
            let p = parse(&text, CallFormat::Hermes, &());
            assert!(p.calls.is_empty(), "{text}: {:?}", p.calls);
            assert!(p.reasoning.unwrap().contains("list_dir"), "{text}");
            assert!(!p.content.contains("tool_call"), "{text}");
        }
        // A call after the spans still runs, and text between them is kept.
        let p = parse(
            &format!("<think>a</think>one <think>b</think>two {call}"),
            CallFormat::Hermes,
            &(),
        );
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.content, "one two");
        assert_eq!(p.reasoning.as_deref(), Some("a\n\nb"));
    }

    struct Types;
    impl ParamTypes for Types {
        fn param_type(&self, _: &str, p: &str) -> Option<String> {
            Some(
                match p {
                    "n" => "integer",
                    "f" => "number",
                    "b" => "boolean",
                    "o" => "object",
                    _ => "string",
                }
                .into(),
            )
        }
    }

    #[test]
    fn xml_calls_with_typed_values() {
        let out = "Checking.\n<tool_call>\n<function=read_file>\n<parameter=path>\nblog/models.py\n</parameter>\n<parameter=n>\n20\n</parameter>\n<parameter=f>\n0.5\n</parameter>\n<parameter=b>\nTrue\n</parameter>\n<parameter=o>\n{\"k\": [1]}\n</parameter>\n<parameter=s>\n 42 \n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=list_dir>\n<parameter=path>\nblog";
        let p = parse(out, CallFormat::Xml, &Types);
        assert_eq!(p.content, "Checking.");
        let c = ok(&p.calls[0]);
        assert_eq!(c.name, "read_file");
        assert_eq!(
            Value::Object(c.arguments.clone()),
            json!({"path": "blog/models.py", "n": 20, "f": 0.5, "b": true, "o": {"k": [1]}, "s": " 42 "})
        );
        let c = ok(&p.calls[1]);
        assert_eq!(
            (c.name.as_str(), &c.arguments["path"]),
            ("list_dir", &json!("blog"))
        );
        let p = parse(
            "<tool_call>\n<parameter=x>1</parameter>",
            CallFormat::Xml,
            &Types,
        );
        assert!(p.calls[0].call.is_err());
    }

    #[test]
    fn stream_filter_hides_tags_split_across_pieces() {
        let mut f = StreamFilter::default();
        let pieces = [
            "<th",
            "ink>\nhmm\n</th",
            "ink>\n\nHere",
            " it is <to",
            "ol_call>\n{\"name\"",
            ": \"x\"}\n</tool",
            "_call> done <",
            "b>",
        ];
        let mut reasoning = String::new();
        let mut shown = String::new();
        for p in pieces {
            shown += &f.push(p);
            reasoning += &f.take_reasoning();
        }
        shown += &f.finish();
        assert_eq!(shown, "Here it is  done <b>");
        assert_eq!(reasoning, "\nhmm\n");
    }

    #[test]
    fn stream_filter_gives_unfinished_reasoning_at_the_end() {
        let mut f = StreamFilter::default();
        assert_eq!(f.push("<think>a</thi"), "");
        assert_eq!(f.take_reasoning(), "a");
        assert_eq!(f.finish(), "");
        assert_eq!(f.take_reasoning(), "</thi");
    }
}
