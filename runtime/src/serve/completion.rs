//! Raw-prompt completion, for clients that render prompts themselves (a
//! warden session whose model is `completion:URL`, or any other): the
//! llama-server routes `POST /completion` and `GET /props`, and OpenAI's
//! `POST /v1/completions`. The prompt is generated on a slot as a chat is,
//! with the slot's cached prefix reused.

use super::engine::Sampling;
use super::error::ApiError;
use super::state::{now, read_json, State};
use axum::body::Body;
use axum::extract::State as Shared;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `POST /completion` as llama-server takes it (the keys warden honours).
#[derive(Deserialize)]
struct NativeRequest {
    prompt: Value,
    #[serde(default)]
    n_predict: Option<i64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    repeat_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    /// Always on here: a slot keeps its cache.
    #[serde(default)]
    #[allow(dead_code)]
    cache_prompt: Option<bool>,
}

/// `POST /v1/completions` as OpenAI defines it (one prompt, one choice).
#[derive(Deserialize)]
struct OpenAiRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: Value,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    repetition_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    n: Option<u32>,
}

/// What a finished completion reports.
struct Done {
    text: String,
    finish: &'static str,
    prompt_tokens: usize,
    cached: usize,
    completion_tokens: usize,
    timings: Value,
}

enum Ev {
    Piece(String),
    Done(Done),
    Failed(String),
}

/// One completion, whoever asked.
struct Job {
    prompt: String,
    max_tokens: Option<u64>,
    /// What the request calls it (`n_predict`, `max_tokens`).
    max_tokens_param: &'static str,
    sampling: Sampling,
    stop: Vec<String>,
}

/// `GET /props`: what llama-server says of itself that a client rendering
/// its own prompts needs — the chat template and its special tokens.
pub async fn props(Shared(s): Shared<Arc<State>>) -> Json<Value> {
    let t = &s.engine.template;
    Json(json!({
        "chat_template": t.source(),
        "bos_token": t.bos(),
        "eos_token": t.eos(),
        "model_path": s.engine.model_name,
        "total_slots": s.engine.pool.parallel(),
        "default_generation_settings": {"n_ctx": s.engine.ctx},
    }))
}

/// `POST /completion` (llama-server's).
pub async fn native(Shared(s): Shared<Arc<State>>, body: Body) -> Result<Response, ApiError> {
    let r: NativeRequest = read_json(&s, body).await?;
    let job = Job {
        prompt: one_prompt(&r.prompt)?,
        // llama-server's -1: as many as fit.
        max_tokens: r.n_predict.and_then(|n| u64::try_from(n).ok()),
        max_tokens_param: "n_predict",
        sampling: Sampling {
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            min_p: r.min_p,
            presence_penalty: r.presence_penalty,
            repetition_penalty: r.repeat_penalty,
            seed: r.seed,
        },
        stop: super::api::parse_stop(r.stop.as_ref())?,
    };
    let (rx, guard) = start(&s, job).await?;
    let model = s.engine.model_name.clone();
    let shape = move |d: &Done| {
        json!({
            "content": d.text,
            "stop": true,
            "stop_type": if d.finish == "length" { "limit" } else { "eos" },
            "stopped_limit": d.finish == "length",
            "tokens_predicted": d.completion_tokens,
            "tokens_evaluated": d.prompt_tokens,
            "tokens_cached": d.cached,
            "timings": d.timings,
            "model": model,
        })
    };
    if r.stream {
        let piece = |p: String| json!({"content": p, "stop": false});
        // The text came in pieces; the last event carries none of it.
        let end = move |d: Done| {
            let mut last = shape(&d);
            last["content"] = json!("");
            vec![last]
        };
        return Ok(sse(rx, guard, piece, end, false).into_response());
    }
    let d = whole(rx, guard).await?;
    Ok(Json(shape(&d)).into_response())
}

/// `POST /v1/completions` (OpenAI's).
pub async fn openai(Shared(s): Shared<Arc<State>>, body: Body) -> Result<Response, ApiError> {
    let r: OpenAiRequest = read_json(&s, body).await?;
    if r.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("only n = 1 is served", "n"));
    }
    let job = Job {
        prompt: one_prompt(&r.prompt)?,
        max_tokens: match r.max_tokens {
            Some(n) if n < 1 => {
                return Err(ApiError::invalid(
                    "max_tokens must be at least 1",
                    "max_tokens",
                ))
            }
            n => n.map(|n| n as u64),
        },
        max_tokens_param: "max_tokens",
        sampling: Sampling {
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            min_p: r.min_p,
            presence_penalty: r.presence_penalty,
            repetition_penalty: r.repetition_penalty,
            seed: r.seed,
        },
        stop: super::api::parse_stop(r.stop.as_ref())?,
    };
    let id = format!("cmpl-{}", super::engine::random_id());
    let model = r.model.unwrap_or_else(|| s.engine.model_name.clone());
    let created = now();
    let (rx, guard) = start(&s, job).await?;
    let object = move |text: &str, finish: Option<&str>| {
        json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}],
        })
    };
    let usage = |d: &Done| {
        json!({
            "prompt_tokens": d.prompt_tokens,
            "completion_tokens": d.completion_tokens,
            "total_tokens": d.prompt_tokens + d.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": d.cached},
        })
    };
    if r.stream {
        let include_usage = r
            .stream_options
            .as_ref()
            .and_then(|o| o["include_usage"].as_bool())
            .unwrap_or(false);
        let o2 = object.clone();
        let piece = move |p: String| o2(&p, None);
        let end = move |d: Done| {
            let mut last = object("", Some(d.finish));
            last["timings"] = d.timings.clone();
            let mut out = vec![last];
            if include_usage {
                let mut u = object("", None);
                u["choices"] = json!([]);
                u["usage"] = usage(&d);
                out.push(u);
            }
            out
        };
        return Ok(sse(rx, guard, piece, end, true).into_response());
    }
    let d = whole(rx, guard).await?;
    let mut body = object(&d.text, Some(d.finish));
    body["usage"] = usage(&d);
    body["timings"] = d.timings;
    Ok(Json(body).into_response())
}

/// A prompt given as one string (a list of one string is taken too).
fn one_prompt(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            Ok(a[0].as_str().unwrap_or_default().to_string())
        }
        _ => Err(ApiError::invalid(
            "prompt must be one string (token ids and several prompts are not served)",
            "prompt",
        )),
    }
}

/// Sets the flag when the response is dropped (the client went away).
struct Cancel(Arc<AtomicBool>);

impl Drop for Cancel {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Admits `job`, takes a slot and generates on a blocking thread.
async fn start(
    s: &Arc<State>,
    job: Job,
) -> Result<(tokio::sync::mpsc::UnboundedReceiver<Ev>, Cancel), ApiError> {
    if s.engine.replay.is_some() || s.agent.is_some() {
        return Err(ApiError::invalid(
            "raw completion is served for a model, not a replay: model or agent mode",
            "prompt",
        ));
    }
    let admission = s.engine.pool.admit()?;
    let s2 = s.clone();
    let prompt = job.prompt.clone();
    let ids = tokio::task::spawn_blocking(move || {
        crate::model::checkpoint::tokenize::encode(&s2.engine.tokenizer, &prompt)
    })
    .await
    .map_err(|e| ApiError::internal(&e.into()))?
    .map_err(|e| ApiError::internal(&e))?;
    let max_tokens = s
        .engine
        .room(ids.len(), job.max_tokens, job.max_tokens_param)?;
    let params = s.engine.params(&job.sampling);
    let mut slot = s.engine.pool.take(&ids).await;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let r = crate::model::generate_with(
            slot.model(),
            &job.prompt,
            max_tokens,
            &params,
            &job.stop,
            None,
            |piece| {
                if tx.send(Ev::Piece(piece.to_string())).is_err() {
                    flag.store(true, Ordering::Relaxed);
                }
                !flag.load(Ordering::Relaxed)
            },
        );
        let last = match r {
            Ok(g) => {
                let t = &g.timings;
                Ev::Done(Done {
                    finish: if g.finish_reason == crate::model::FinishReason::Length {
                        "length"
                    } else {
                        "stop"
                    },
                    prompt_tokens: g.prompt_tokens.len(),
                    cached: t.reused_tokens,
                    completion_tokens: g.tokens.len(),
                    timings: super::engine::llama_timings(&g),
                    text: g.text,
                })
            }
            Err(e) => Ev::Failed(format!("{e:#}")),
        };
        // The slot is free before the client reads the end.
        drop(slot);
        drop(admission);
        let _ = tx.send(last);
    });
    Ok((rx, Cancel(cancel)))
}

async fn whole(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Ev>,
    _guard: Cancel,
) -> Result<Done, ApiError> {
    while let Some(ev) = rx.recv().await {
        match ev {
            Ev::Piece(_) => {}
            Ev::Done(d) => return Ok(d),
            Ev::Failed(e) => return Err(ApiError::internal(&anyhow::anyhow!(e))),
        }
    }
    Err(ApiError::internal(&anyhow::anyhow!(
        "the generation ended without a result"
    )))
}

/// Server-sent events: one per piece, then the end's, then `[DONE]` when
/// `done_marker` (OpenAI's convention; llama-server ends with `stop: true`).
fn sse(
    rx: tokio::sync::mpsc::UnboundedReceiver<Ev>,
    guard: Cancel,
    piece: impl Fn(String) -> Value + Send + Sync + 'static,
    end: impl Fn(Done) -> Vec<Value> + Send + Sync + 'static,
    done_marker: bool,
) -> impl IntoResponse {
    let init = (rx, guard, Vec::<SseEvent>::new(), false);
    let piece = Arc::new(piece);
    let end = Arc::new(end);
    let events = futures_util::stream::unfold(init, move |(mut rx, guard, mut queued, over)| {
        let (piece, end) = (piece.clone(), end.clone());
        async move {
            if let Some(e) = queued.pop() {
                return Some((
                    Ok::<_, std::convert::Infallible>(e),
                    (rx, guard, queued, over),
                ));
            }
            if over {
                return None;
            }
            let ev = match rx.recv().await? {
                Ev::Piece(p) => SseEvent::default().data(piece(p).to_string()),
                Ev::Done(d) => {
                    if done_marker {
                        queued.push(SseEvent::default().data("[DONE]"));
                    }
                    for v in end(d).into_iter().rev() {
                        queued.push(SseEvent::default().data(v.to_string()));
                    }
                    let first = queued.pop().unwrap_or_default();
                    return Some((Ok(first), (rx, guard, queued, true)));
                }
                Ev::Failed(e) => {
                    let err = ApiError::internal(&anyhow::anyhow!(e)).body();
                    return Some((
                        Ok(SseEvent::default().data(err.to_string())),
                        (rx, guard, queued, true),
                    ));
                }
            };
            Some((Ok(ev), (rx, guard, queued, false)))
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
