//! A model served elsewhere, by raw-prompt completion: `--model
//! completion:URL[#MODEL]`. warden renders the prompt with the model's own
//! template (the server's, from its `GET /props`, or `--chat-template`), so
//! the text the model sees is what `warden prompt` shows, and the parser,
//! loop, sandbox and log are the same as with a local model.
//!
//! The endpoint is llama-server's `POST /completion` (a URL ending in
//! `/completion`, or a bare server URL), or OpenAI's `POST /v1/completions`
//! (a URL ending in `/completions` or `/v1`: vLLM, llama-cpp-python,
//! `warden serve`), whose `model` is `#MODEL`. The server's timings become the log's
//! (`prefill_tokens`, `reused_tokens`, `decode_tok_s`, …); its prompt cache is
//! asked for.

use super::Http;
use crate::chat::ChatTemplate;
use crate::model::{SamplingParams, Timings};
use crate::session::backend::{Backend, Generated};
use anyhow::Context as _;
use serde_json::{json, Value};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The prefix of such a model spec.
pub const PREFIX: &str = "completion:";

/// Which completion API the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// llama-server's `/completion`.
    LlamaServer,
    /// OpenAI's `/v1/completions`.
    OpenAi,
}

/// A remote completion endpoint as a session's model.
pub struct CompletionBackend {
    endpoint: String,
    api: Api,
    model: Option<String>,
    template: ChatTemplate,
    template_from: String,
    params: SamplingParams,
    http: Http,
}

impl CompletionBackend {
    /// Connects to `spec` (`completion:URL[#MODEL]`); the template is
    /// `chat_template` (a file or a built-in's name) or the server's; the
    /// key `api_key`, else `OPENAI_API_KEY`'s.
    pub fn open(
        spec: &str,
        chat_template: Option<&str>,
        params: SamplingParams,
        api_key: Option<String>,
    ) -> anyhow::Result<CompletionBackend> {
        let rest = spec
            .strip_prefix(PREFIX)
            .with_context(|| format!("{spec:?} is not a {PREFIX}URL model"))?;
        let (url, model) = match rest.split_once('#') {
            Some((u, m)) if !m.is_empty() => (u, Some(m.to_string())),
            Some((u, _)) => (u, None),
            None => (rest, None),
        };
        super::check_url(spec, url, "completion:http://127.0.0.1:8080")?;
        let trimmed = url.trim_end_matches('/');
        let (endpoint, api, base) = if let Some(b) = trimmed.strip_suffix("/completion") {
            (trimmed.to_string(), Api::LlamaServer, b.to_string())
        } else if trimmed.ends_with("/completions") {
            let b = trimmed
                .trim_end_matches("/completions")
                .trim_end_matches("/v1");
            (trimmed.to_string(), Api::OpenAi, b.to_string())
        } else if let Some(b) = trimmed.strip_suffix("/v1") {
            // An OpenAI base URL, as clients take it.
            (format!("{trimmed}/completions"), Api::OpenAi, b.to_string())
        } else {
            (
                format!("{trimmed}/completion"),
                Api::LlamaServer,
                trimmed.to_string(),
            )
        };
        let http = Http::new(api_key)?;
        let (template, template_from) = match chat_template {
            Some(t) => (
                ChatTemplate::from_spec(t, std::path::Path::new(""))?,
                t.to_string(),
            ),
            None => {
                let props = format!("{base}/props");
                let v = http.get_json(&props).with_context(|| {
                    format!("cannot read the model's chat template from {props} (llama-server and warden serve have it; for vLLM give it with --chat-template FILE)")
                })?;
                let source = v["chat_template"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .with_context(|| {
                        format!("{props} has no chat_template; give one with --chat-template FILE")
                    })?;
                let token = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(String::from);
                let t =
                    ChatTemplate::new(source.to_string(), token("bos_token"), token("eos_token"))
                        .with_context(|| format!("the chat template of {props}"))?
                        .with_origin(format!("the chat template of {props}"));
                (t, props)
            }
        };
        Ok(CompletionBackend {
            endpoint,
            api,
            model,
            template,
            template_from,
            params,
            http,
        })
    }
}

impl CompletionBackend {
    fn body(&self, prompt: &str, max_tokens: usize) -> Value {
        let p = &self.params;
        match self.api {
            Api::LlamaServer => json!({
                "prompt": prompt,
                "n_predict": max_tokens,
                "temperature": p.temperature,
                "top_p": p.top_p,
                "top_k": p.top_k,
                "min_p": p.min_p,
                "repeat_penalty": p.repetition_penalty,
                "presence_penalty": p.presence_penalty,
                "seed": p.seed,
                "stream": true,
                "cache_prompt": true,
            }),
            Api::OpenAi => {
                // top_k, min_p and the penalties as vLLM names them, and
                // the repetition penalty as llama.cpp's servers do (whose
                // default is 1.1, not off).
                let mut b = json!({
                    "prompt": prompt,
                    "max_tokens": max_tokens,
                    "temperature": p.temperature,
                    "top_p": p.top_p,
                    "top_k": p.top_k,
                    "min_p": p.min_p,
                    "repetition_penalty": p.repetition_penalty,
                    "repeat_penalty": p.repetition_penalty,
                    "presence_penalty": p.presence_penalty,
                    "seed": p.seed,
                    "stream": true,
                    "stream_options": {"include_usage": true},
                });
                if let Some(m) = &self.model {
                    b["model"] = json!(m);
                }
                b
            }
        }
    }
}

impl Backend for CompletionBackend {
    fn describe(&self) -> Value {
        json!({
            "kind": "completion",
            "url": self.endpoint,
            "api": match self.api { Api::LlamaServer => "llama-server", Api::OpenAi => "openai-completions" },
            "model": self.model,
            "template": self.template_from,
            "sampling": self.params,
        })
    }

    fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        grammar: Option<&str>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated> {
        if grammar.is_some() {
            anyhow::bail!("constrained decoding (--constrained, --tool-choice required or a tool's name) needs warden's own engine; a {PREFIX} model cannot be held to a grammar");
        }
        let start = Instant::now();
        let body = self.body(prompt, max_tokens);
        let mut out = Stream::new(self.api);
        let cancelled = self
            .http
            .stream(&self.endpoint, &body, cancel, &mut |data| {
                out.event(data, on_text)?;
                Ok(out.done)
            })?;
        if cancelled {
            out.finish = Some("cancelled".into());
        }
        Ok(out.generated(start))
    }
}

/// A generation arriving as server-sent events.
struct Stream {
    api: Api,
    text: String,
    finish: Option<String>,
    timings: Value,
    usage: Value,
    first: Option<Instant>,
    done: bool,
}

impl Stream {
    fn new(api: Api) -> Stream {
        Stream {
            api,
            text: String::new(),
            finish: None,
            timings: Value::Null,
            usage: Value::Null,
            first: None,
            done: false,
        }
    }

    /// Takes one event's data.
    fn event(&mut self, data: &str, on_text: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(&data).context("not JSON")?;
        if let Some(e) = v.get("error") {
            anyhow::bail!("the server failed: {e}");
        }
        let piece = match self.api {
            Api::LlamaServer => {
                if v["stop"].as_bool() == Some(true) {
                    self.done = true;
                    self.timings = v["timings"].clone();
                    self.finish =
                        Some(
                            if v["stopped_limit"].as_bool() == Some(true)
                                || v["stop_type"] == "limit"
                            {
                                "length"
                            } else {
                                "stop"
                            }
                            .into(),
                        );
                }
                v["content"].as_str().unwrap_or("").to_string()
            }
            Api::OpenAi => {
                if !v["usage"].is_null() {
                    self.usage = v["usage"].clone();
                }
                if !v["timings"].is_null() {
                    self.timings = v["timings"].clone();
                }
                let c = &v["choices"][0];
                if let Some(f) = c["finish_reason"].as_str() {
                    self.finish = Some(if f == "length" { "length" } else { "stop" }.into());
                }
                c["text"].as_str().unwrap_or("").to_string()
            }
        };
        if !piece.is_empty() {
            self.first.get_or_insert_with(Instant::now);
            self.text.push_str(&piece);
            on_text(&piece);
        }
        Ok(())
    }

    fn generated(self, start: Instant) -> Generated {
        let t = &self.timings;
        let f = |k: &str| t[k].as_f64().unwrap_or(0.0);
        let n = |k: &str| t[k].as_u64().unwrap_or(0) as usize;
        let mut timings = Timings {
            tokenize_ms: 0.0,
            prefill_tokens: n("prompt_n"),
            reused_tokens: n("cache_n"),
            prefill_ms: f("prompt_ms"),
            prefill_tok_s: f("prompt_per_second"),
            ttft_ms: self.first.map_or(0.0, |i| (i - start).as_secs_f64() * 1e3),
            decode_tokens: n("predicted_n").saturating_sub(1),
            decode_ms: f("predicted_ms"),
            decode_tok_s: f("predicted_per_second"),
            drafted_tokens: 0,
            accepted_tokens: 0,
        };
        // A server without llama-server's timings: what `usage` says.
        if t.is_null() && !self.usage.is_null() {
            let u = &self.usage;
            let prompt = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
            let cached = u["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0) as usize;
            timings.reused_tokens = cached;
            timings.prefill_tokens = prompt.saturating_sub(cached);
            timings.decode_tokens =
                (u["completion_tokens"].as_u64().unwrap_or(0) as usize).saturating_sub(1);
        }
        Generated {
            text: self.text,
            finish_reason: self.finish.unwrap_or_else(|| "stop".into()),
            timings,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            server_response: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_apis_read_into_text_finish_and_timings() {
        let mut seen = String::new();
        let start = Instant::now();
        let mut s = Stream::new(Api::LlamaServer);
        for e in [
            r#"{"content": "Hel", "stop": false}"#,
            r#"{"content": "lo", "stop": false}"#,
            r#"{"content": "", "stop": true, "stopped_limit": true, "timings": {"prompt_n": 7, "cache_n": 3, "predicted_n": 2, "predicted_per_second": 50.0}}"#,
        ] {
            s.event(e, &mut |p| seen.push_str(p)).unwrap();
        }
        assert!(s.done);
        let g = s.generated(start);
        assert_eq!((g.text.as_str(), seen.as_str()), ("Hello", "Hello"));
        assert_eq!(g.finish_reason, "length");
        assert_eq!((g.timings.prefill_tokens, g.timings.reused_tokens), (7, 3));
        assert_eq!(g.timings.decode_tok_s, 50.0);

        let mut s = Stream::new(Api::OpenAi);
        for e in [
            r#"{"choices": [{"text": "Hi", "finish_reason": null}]}"#,
            r#"{"choices": [{"text": "", "finish_reason": "stop"}]}"#,
            r#"{"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}}"#,
            "[DONE]",
        ] {
            s.event(e, &mut |_| {}).unwrap();
        }
        assert!(s.done);
        let g = s.generated(start);
        assert_eq!((g.text.as_str(), g.finish_reason.as_str()), ("Hi", "stop"));
        assert_eq!((g.timings.prefill_tokens, g.timings.reused_tokens), (6, 4));
        // A server's error event is an error.
        let mut s = Stream::new(Api::LlamaServer);
        assert!(s
            .event(r#"{"error": {"message": "boom"}}"#, &mut |_| {})
            .is_err());
    }
}
