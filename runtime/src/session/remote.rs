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
//! asked for. Connection failures are retried with backoff, a generation
//! once begun never is.

use super::backend::{Backend, Generated};
use crate::chat::ChatTemplate;
use crate::model::{SamplingParams, Timings};
use anyhow::Context as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The prefix of such a model spec.
pub const PREFIX: &str = "completion:";

/// Tries of a request that cannot connect.
const TRIES: u32 = 4;
/// Longest server-sent event, and longest error body read.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest pause between two pieces of a generation.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

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

/// The HTTP client and the key it sends.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    key: Option<String>,
}

impl CompletionBackend {
    /// Connects to `spec` (`completion:URL[#MODEL]`); the template is
    /// `chat_template` (a file or a built-in's name) or the server's.
    pub fn open(
        spec: &str,
        chat_template: Option<&str>,
        params: SamplingParams,
    ) -> anyhow::Result<CompletionBackend> {
        let rest = spec
            .strip_prefix(PREFIX)
            .with_context(|| format!("{spec:?} is not a {PREFIX}URL model"))?;
        let (url, model) = match rest.split_once('#') {
            Some((u, m)) if !m.is_empty() => (u, Some(m.to_string())),
            Some((u, _)) => (u, None),
            None => (rest, None),
        };
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{spec}: {url:?} is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            anyhow::bail!(
                "{spec}: use an http:// or https:// URL, e.g. completion:http://127.0.0.1:8080"
            );
        }
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
        let key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP client's runtime")?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .tls_backend_preconfigured((*crate::sandbox::tls_config()).clone())
            .build()
            .context("cannot build the HTTP client")?;
        let http = Http { rt, client, key };
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

impl Http {
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// `GET url` as JSON, retried while the server cannot be reached.
    fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        self.rt.block_on(async {
            let resp = send(|| self.request(reqwest::Method::GET, url), url).await?;
            let resp = checked(resp, url).await?;
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("reading {url}"))?;
            serde_json::from_slice(&bytes).with_context(|| format!("{url} did not answer JSON"))
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

/// Sends what `make` builds, retrying (with backoff) only while the server
/// cannot be connected to: nothing was generated then.
async fn send(
    make: impl Fn() -> reqwest::RequestBuilder,
    url: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=TRIES {
        match make().send().await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_connect() && attempt < TRIES => {
                tracing::debug!(%url, attempt, "cannot connect, retrying: {e}");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) if e.is_connect() => {
                anyhow::bail!(
                    "cannot reach {url} (tried {TRIES} times): {}; is the server running?",
                    chain(&e)
                )
            }
            Err(e) => anyhow::bail!("the request to {url} failed: {}", chain(&e)),
        }
    }
    unreachable!("the last try returns")
}

/// The response when its status is a success, else an error that says
/// what to do.
async fn checked(resp: reqwest::Response, url: &str) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let mut body = resp.text().await.unwrap_or_default();
    crate::sandbox::truncate_output(&mut body, 2000);
    let body = body.trim();
    let lower = body.to_ascii_lowercase();
    match status.as_u16() {
        401 | 403 => anyhow::bail!("{url} refused the request ({status}): set OPENAI_API_KEY to the server's key; it said: {body}"),
        404 => anyhow::bail!("{url} answered 404: no such endpoint, or no such model (name it after #: completion:URL#MODEL); it said: {body}"),
        _ if lower.contains("context") => anyhow::bail!("the prompt does not fit the server's context ({status}); give it a larger context or end the session; it said: {body}"),
        _ => anyhow::bail!("{url} answered {status}: {body}"),
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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
        let url = self.endpoint.clone();
        let api = self.api;
        let http = &self.http;
        http.rt.block_on(async move {
            let resp = send(
                || http.request(reqwest::Method::POST, &url).json(&body),
                &url,
            )
            .await?;
            let mut resp = checked(resp, &url).await?;
            let mut out = Stream {
                api,
                text: String::new(),
                finish: None,
                timings: Value::Null,
                usage: Value::Null,
                first: None,
                done: false,
            };
            let mut buf: Vec<u8> = Vec::new();
            while !out.done {
                if cancel.load(Ordering::Relaxed) {
                    // Dropping the response closes the connection: the
                    // server stops generating.
                    out.finish = Some("cancelled".into());
                    break;
                }
                let Some(chunk) = resp
                    .chunk()
                    .await
                    .with_context(|| format!("the stream from {url} broke off"))?
                else {
                    break;
                };
                buf.extend_from_slice(&chunk);
                while let Some(end) = find_event_end(&buf) {
                    let event: Vec<u8> = buf.drain(..end.1).collect();
                    out.event(&event[..end.0], on_text)
                        .with_context(|| format!("{url} sent an event warden cannot read"))?;
                }
                if buf.len() > MAX_EVENT_BYTES {
                    anyhow::bail!("{url} sent an event over {MAX_EVENT_BYTES} bytes");
                }
            }
            Ok(out.generated(start))
        })
    }
}

/// Where the first event in `buf` ends: (its length, with its separator).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
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
    fn event(&mut self, raw: &[u8], on_text: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        let text = std::str::from_utf8(raw).context("not UTF-8")?;
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect::<Vec<_>>()
            .join("\n");
        if data.is_empty() {
            return Ok(());
        }
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line_of_either_kind() {
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2"), Some((7, 9)));
        assert_eq!(find_event_end(b"data: 1\r\n\r\n"), Some((7, 11)));
        assert_eq!(find_event_end(b"data: 1\n"), None);
    }

    #[test]
    fn both_apis_read_into_text_finish_and_timings() {
        let mut seen = String::new();
        let start = Instant::now();
        let mut s = Stream {
            api: Api::LlamaServer,
            text: String::new(),
            finish: None,
            timings: Value::Null,
            usage: Value::Null,
            first: None,
            done: false,
        };
        for e in [
            r#"data: {"content": "Hel", "stop": false}"#,
            r#"data: {"content": "lo", "stop": false}"#,
            r#"data: {"content": "", "stop": true, "stopped_limit": true, "timings": {"prompt_n": 7, "cache_n": 3, "predicted_n": 2, "predicted_per_second": 50.0}}"#,
        ] {
            s.event(e.as_bytes(), &mut |p| seen.push_str(p)).unwrap();
        }
        assert!(s.done);
        let g = s.generated(start);
        assert_eq!((g.text.as_str(), seen.as_str()), ("Hello", "Hello"));
        assert_eq!(g.finish_reason, "length");
        assert_eq!((g.timings.prefill_tokens, g.timings.reused_tokens), (7, 3));
        assert_eq!(g.timings.decode_tok_s, 50.0);

        let mut s = Stream {
            api: Api::OpenAi,
            ..s_empty()
        };
        for e in [
            r#"data: {"choices": [{"text": "Hi", "finish_reason": null}]}"#,
            r#"data: {"choices": [{"text": "", "finish_reason": "stop"}]}"#,
            r#"data: {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}}"#,
            "data: [DONE]",
        ] {
            s.event(e.as_bytes(), &mut |_| {}).unwrap();
        }
        assert!(s.done);
        let g = s.generated(start);
        assert_eq!((g.text.as_str(), g.finish_reason.as_str()), ("Hi", "stop"));
        assert_eq!((g.timings.prefill_tokens, g.timings.reused_tokens), (6, 4));
        // A server's error event is an error.
        let mut s = s_empty();
        assert!(s
            .event(br#"data: {"error": {"message": "boom"}}"#, &mut |_| {})
            .is_err());
    }

    fn s_empty() -> Stream {
        Stream {
            api: Api::LlamaServer,
            text: String::new(),
            finish: None,
            timings: Value::Null,
            usage: Value::Null,
            first: None,
            done: false,
        }
    }
}
