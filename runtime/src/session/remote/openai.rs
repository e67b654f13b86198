//! `openai:URL#MODEL`: a chat-completions endpoint (vLLM, llama-server,
//! SGLang, `warden serve`, any OpenAI-compatible engine) as a session's
//! model. The conversation goes as `messages` and the policy's tools as
//! `tools`; the server renders them with its template and parses the
//! model's calls. The session runs those calls here as always (schema,
//! policy, sandbox, log). Each `generation` record holds the server's
//! answer as it came (`response`), marked `parsed_by: "server"`, with
//! `output` that answer written in Hermes call blocks for warden's parser.

use super::Http;
use crate::chat::{CallFormat, ChatTemplate, Message, ToolChoice};
use crate::model::{SamplingParams, Timings};
use crate::session::backend::{Backend, ChatTurn, Generated};
use anyhow::Context as _;
use serde_json::{json, Map, Value};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The prefix of such a model spec.
pub const PREFIX: &str = "openai:";

/// Most calls taken from one answer.
const MAX_CALLS: usize = 64;

/// A remote chat-completions endpoint as a session's model.
pub struct OpenAiBackend {
    endpoint: String,
    model: String,
    params: SamplingParams,
    http: Http,
    /// Hermes-style: the format the server's calls are written in for the
    /// parser. It renders nothing that is sent.
    template: ChatTemplate,
}

impl OpenAiBackend {
    /// `spec` is `openai:URL#MODEL`, URL the API's base (`…/v1`) or its
    /// `…/chat/completions`.
    /// The key is `api_key`, else `OPENAI_API_KEY`'s.
    pub fn open(
        spec: &str,
        params: SamplingParams,
        api_key: Option<String>,
    ) -> anyhow::Result<OpenAiBackend> {
        let rest = spec
            .strip_prefix(PREFIX)
            .with_context(|| format!("{spec:?} is not an {PREFIX}URL#MODEL model"))?;
        let Some((url, model)) = rest.split_once('#').filter(|(_, m)| !m.is_empty()) else {
            anyhow::bail!("{spec}: name the server's model after #, e.g. openai:http://127.0.0.1:8000/v1#Qwen/Qwen3-8B");
        };
        super::check_url(spec, url, "openai:http://127.0.0.1:8000/v1#Qwen/Qwen3-8B")?;
        let url = url.trim_end_matches('/');
        let endpoint = if url.ends_with("/chat/completions") {
            url.to_string()
        } else {
            format!("{url}/chat/completions")
        };
        let template = ChatTemplate::from_spec("chatml-tools", std::path::Path::new(""))?;
        debug_assert_eq!(template.call_format(), CallFormat::Hermes);
        Ok(OpenAiBackend {
            endpoint,
            model: model.to_string(),
            params,
            http: Http::new(api_key)?,
            template,
        })
    }

    fn body(&self, turn: &ChatTurn<'_>) -> Value {
        let p = &self.params;
        let mut b = json!({
            "model": self.model,
            "messages": wire_messages(turn.messages),
            "max_tokens": turn.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k,
            "min_p": p.min_p,
            "repetition_penalty": p.repetition_penalty,
            "presence_penalty": p.presence_penalty,
            "seed": p.seed,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !turn.tools.is_empty() {
            b["tools"] = json!(turn.tools);
            b["tool_choice"] = match &turn.tool_choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
            };
        }
        if let Some(t) = turn.enable_thinking {
            b["chat_template_kwargs"] = json!({"enable_thinking": t});
        }
        b
    }
}

/// The conversation as the chat API takes it: arguments as JSON text, each
/// call given the id of the `tool` message that answers it.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let mut v = json!({"role": m.role, "content": m.content});
        if m.role == "assistant" && !m.tool_calls.is_empty() {
            let answers: Vec<&Message> = messages[i + 1..]
                .iter()
                .take_while(|n| n.role == "tool")
                .collect();
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let id =
                        c.id.clone()
                            .or_else(|| answers.get(k).and_then(|a| a.tool_call_id.clone()))
                            .unwrap_or_else(|| format!("call_{i}_{k}"));
                    let arguments = match &c.function.arguments {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({"id": id, "type": "function",
                           "function": {"name": c.function.name, "arguments": arguments}})
                })
                .collect();
            v["tool_calls"] = json!(calls);
            if m.content.is_empty() {
                v["content"] = Value::Null;
            }
        }
        if let Some(r) = m.reasoning_content.as_ref().filter(|r| !r.is_empty()) {
            v["reasoning_content"] = json!(r);
        }
        if let Some(id) = &m.tool_call_id {
            v["tool_call_id"] = json!(id);
        }
        if let Some(n) = &m.name {
            v["name"] = json!(n);
        }
        out.push(v);
    }
    out
}

/// An answer arriving as `chat.completion.chunk`s.
#[derive(Default)]
struct Answer {
    content: String,
    reasoning: String,
    /// By index: id, name, arguments text.
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Value,
    timings: Value,
    first: Option<Instant>,
    done: bool,
}

impl Answer {
    fn event(&mut self, data: &str, on_text: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).context("not JSON")?;
        if let Some(e) = v.get("error") {
            anyhow::bail!("the server failed: {e}");
        }
        if !v["usage"].is_null() {
            self.usage = v["usage"].clone();
        }
        if !v["timings"].is_null() {
            self.timings = v["timings"].clone();
        }
        let Some(choice) = v["choices"].get(0) else {
            return Ok(());
        };
        let d = &choice["delta"];
        if let Some(r) = d["reasoning_content"].as_str().or(d["reasoning"].as_str()) {
            self.first.get_or_insert_with(Instant::now);
            self.reasoning.push_str(r);
        }
        if let Some(c) = d["content"].as_str().filter(|c| !c.is_empty()) {
            self.first.get_or_insert_with(Instant::now);
            self.content.push_str(c);
            on_text(c);
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            self.first.get_or_insert_with(Instant::now);
            let i = tc["index"].as_u64().unwrap_or(self.calls.len() as u64) as usize;
            if i >= MAX_CALLS {
                anyhow::bail!("more than {MAX_CALLS} calls in one answer");
            }
            if self.calls.len() <= i {
                self.calls.resize(i + 1, Default::default());
            }
            let c = &mut self.calls[i];
            if let Some(id) = tc["id"].as_str() {
                c.0 = id.to_string();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                c.1.push_str(n);
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                c.2.push_str(a);
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_string());
        }
        Ok(())
    }

    /// The answer written as a Hermes-template model writes it — reasoning
    /// in `<think>`, then the text, then a `<tool_call>` block per call with
    /// the server's arguments text — so warden's parser reads the server's
    /// calls exactly; an argument text that is not a JSON object stays as
    /// it came, and the parser reports it malformed.
    fn text(&self) -> String {
        let mut t = String::new();
        if !self.reasoning.trim().is_empty() {
            t.push_str(&format!("<think>\n{}\n</think>\n\n", self.reasoning.trim()));
        }
        t.push_str(&self.content);
        for (_, name, args) in &self.calls {
            if !t.is_empty() {
                t.push('\n');
            }
            let args = if args.trim().is_empty() {
                "{}"
            } else {
                args.trim()
            };
            t.push_str(&format!(
                "<tool_call>\n{{\"name\": {}, \"arguments\": {args}}}\n</tool_call>",
                Value::String(name.clone())
            ));
        }
        t
    }

    /// The answer as one `message`, for the log's `response`.
    fn response(&self) -> Value {
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|(id, name, args)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
            })
            .collect();
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(self.content));
        if !self.reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(self.reasoning));
        }
        if !calls.is_empty() {
            message.insert("tool_calls".into(), json!(calls));
        }
        json!({"message": message, "finish_reason": self.finish, "usage": self.usage})
    }

    fn generated(self, start: Instant, cancelled: bool) -> Generated {
        let u = &self.usage;
        let t = &self.timings;
        let n = |v: &Value| v.as_u64().unwrap_or(0) as usize;
        let prompt = n(&u["prompt_tokens"]);
        let cached = n(&u["prompt_tokens_details"]["cached_tokens"]).max(n(&t["cache_n"]));
        let out_tokens = n(&u["completion_tokens"]);
        let timings = Timings {
            prefill_tokens: prompt.saturating_sub(cached),
            reused_tokens: cached,
            prefill_ms: t["prompt_ms"].as_f64().unwrap_or(0.0),
            prefill_tok_s: t["prompt_per_second"].as_f64().unwrap_or(0.0),
            ttft_ms: self.first.map_or(0.0, |i| (i - start).as_secs_f64() * 1e3),
            decode_tokens: out_tokens.saturating_sub(1),
            decode_ms: t["predicted_ms"].as_f64().unwrap_or(0.0),
            decode_tok_s: t["predicted_per_second"].as_f64().unwrap_or(0.0),
            ..Timings::default()
        };
        let finish_reason = if cancelled {
            "cancelled".to_string()
        } else {
            match self.finish.as_deref() {
                Some("length") => "length",
                _ => "stop",
            }
            .to_string()
        };
        Generated {
            text: self.text(),
            finish_reason,
            timings,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            server_response: Some(self.response()),
        }
    }
}

impl Backend for OpenAiBackend {
    fn describe(&self) -> Value {
        json!({
            "kind": "openai",
            "url": self.endpoint,
            "model": self.model,
            "parsing": "server",
            "sampling": self.params,
        })
    }

    fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn renders_prompts(&self) -> bool {
        false
    }

    fn generate(
        &mut self,
        _prompt: &str,
        _max_tokens: usize,
        _grammar: Option<&str>,
        _cancel: &AtomicBool,
        _on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated> {
        anyhow::bail!("an {PREFIX} model takes conversations, not prompts: the server renders them with its own template (use completion:URL for raw prompts)")
    }

    fn chat(
        &mut self,
        turn: &ChatTurn<'_>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Option<anyhow::Result<Generated>> {
        if turn.constrained {
            return Some(Err(anyhow::anyhow!("--constrained needs warden's own engine; an {PREFIX} model's server is asked for tool_choice instead (--tool-choice required or a tool's name)")));
        }
        let start = Instant::now();
        let body = self.body(turn);
        let mut answer = Answer::default();
        let r = self
            .http
            .stream(&self.endpoint, &body, cancel, &mut |data| {
                answer.event(data, on_text)?;
                Ok(answer.done)
            });
        Some(r.map(|cancelled| answer.generated(start, cancelled)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_a_message_and_hermes_text() {
        let mut a = Answer::default();
        for e in [
            r#"{"choices": [{"delta": {"role": "assistant", "content": ""}}]}"#,
            r#"{"choices": [{"delta": {"reasoning_content": "look"}}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "read_file", "arguments": "{\"path\""}}]}}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": \"a\"}"}}]}}]}"#,
            r#"{"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}"#,
            r#"{"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8}}}"#,
            "[DONE]",
        ] {
            a.event(e, &mut |_| {}).unwrap();
        }
        assert!(a.done);
        let g = a.generated(Instant::now(), false);
        assert_eq!(
            g.text,
            "<think>\nlook\n</think>\n\n\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}\n</tool_call>"
        );
        let parsed = crate::chat::parse(&g.text, CallFormat::Hermes, &());
        let call = parsed.calls[0].call.as_ref().unwrap();
        assert_eq!(
            (call.name.as_str(), call.arguments["path"].as_str()),
            ("read_file", Some("a"))
        );
        assert_eq!((g.timings.prefill_tokens, g.timings.reused_tokens), (4, 8));
        let r = g.server_response.unwrap();
        assert_eq!(r["message"]["tool_calls"][0]["id"], "c1");
        assert_eq!(r["finish_reason"], "tool_calls");
    }

    #[test]
    fn an_answer_holds_at_most_64_calls() {
        let mut a = Answer::default();
        let e = r#"{"choices": [{"delta": {"tool_calls": [{"index": 64, "function": {"name": "x"}}]}}]}"#;
        assert!(a.event(e, &mut |_| {}).is_err());
        let e = r#"{"choices": [{"delta": {"tool_calls": [{"index": 63, "function": {"name": "x"}}]}}]}"#;
        a.event(e, &mut |_| {}).unwrap();
        assert_eq!(a.calls.len(), 64);
    }

    #[test]
    fn calls_get_the_ids_of_their_answers() {
        let mut a = Message::new("assistant", "");
        a.tool_calls.push(crate::chat::ToolCall {
            kind: "function".into(),
            id: None,
            function: crate::chat::FunctionCall {
                name: "list_dir".into(),
                arguments: Value::String("{\"path\": \".\"}".into()),
            },
        });
        let mut t = Message::new("tool", "a\nb");
        t.tool_call_id = Some("call_1".into());
        let w = wire_messages(&[Message::new("user", "hi"), a, t]);
        assert_eq!(w[1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            w[1]["tool_calls"][0]["function"]["arguments"],
            "{\"path\": \".\"}"
        );
        assert_eq!(w[1]["content"], Value::Null);
        assert_eq!(w[2]["tool_call_id"], "call_1");
    }
}
