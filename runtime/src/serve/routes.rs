//! The HTTP routes: reading bodies within the limit, the API key, and
//! turning engine events into OpenAI responses and server-sent events.

use super::api::ChatRequest;
use super::engine::{self, Event, Outcome, Sampling};
use super::error::ApiError;
use super::state::{now, read_json, State};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State as Shared};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

type S = Arc<State>;

/// Most tokens per generation in agent mode when the request names none
/// (and at most half the context).
const AGENT_MAX_TOKENS: usize = 2048;

/// Every route, the API key check and the request counter.
pub fn router(state: S) -> Router {
    let open = Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health));
    let keyed = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/completion", post(super::completion::native))
        .route("/v1/completions", post(super::completion::openai))
        .route("/completions", post(super::completion::openai))
        .route("/props", get(super::completion::props))
        .route("/apply-template", post(apply_template))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), api_key));
    open.merge(keyed)
        .route_layer(middleware::from_fn_with_state(state.clone(), count))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(req.uri().path())
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::method(req.uri().path())
}

/// Refuses a request without the server's key (`Authorization: Bearer`).
async fn api_key(Shared(s): Shared<S>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared as digests: the time taken says nothing of the key.
        if crate::audit::sha256_hex(sent.as_bytes()) != crate::audit::sha256_hex(key.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Counts every answered request by route and status.
async fn count(Shared(s): Shared<S>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    s.metrics.request(&endpoint, resp.status().as_u16());
    resp
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn models(Shared(s): Shared<S>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.engine.model_name,
            "object": "model",
            "created": now(),
            "owned_by": "warden",
            "meta": {"n_ctx": s.engine.ctx},
        }],
    }))
}

async fn metrics(Shared(s): Shared<S>) -> Response {
    s.metrics.slots_busy.set(s.engine.pool.busy() as i64);
    s.metrics.admitted.set(s.engine.pool.admitted() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// `POST /tokenize`: `{"content": TEXT}` → `{"tokens": [ids]}` (as
/// llama-server; `"with_pieces": true` gives `{"id", "piece"}` objects).
async fn tokenize(Shared(s): Shared<S>, body: Body) -> Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Req {
        content: String,
        #[serde(default)]
        with_pieces: bool,
    }
    let r: Req = read_json(&s, body).await?;
    let s2 = s.clone();
    let ids = tokio::task::spawn_blocking(move || {
        crate::model::checkpoint::tokenize::encode(&s2.engine.tokenizer, &r.content)
    })
    .await
    .map_err(|e| ApiError::internal(&e.into()))?
    .map_err(|e| ApiError::internal(&e))?;
    let tokens: Vec<Value> = if r.with_pieces {
        ids.iter()
            .map(|&id| {
                let piece = s.engine.tokenizer.decode(&[id], false).unwrap_or_default();
                json!({"id": id, "piece": piece})
            })
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({"tokens": tokens})))
}

/// `POST /apply-template`: a chat request's messages and tools → `{"prompt":
/// TEXT}`, exactly what `/v1/chat/completions` would give the model.
async fn apply_template(Shared(s): Shared<S>, body: Body) -> Result<Json<Value>, ApiError> {
    let r: ChatRequest = read_json(&s, body).await?;
    let checked = r.check()?;
    let s2 = s.clone();
    let p = tokio::task::spawn_blocking(move || s2.engine.prepare(checked, sampling(&r), true))
        .await
        .map_err(|e| ApiError::internal(&e.into()))??;
    Ok(Json(json!({"prompt": p.prompt})))
}

fn sampling(r: &ChatRequest) -> Sampling {
    Sampling {
        temperature: r.temperature,
        top_p: r.top_p,
        top_k: r.top_k,
        min_p: r.min_p,
        presence_penalty: r.presence_penalty,
        repetition_penalty: r.repetition_penalty,
        seed: r.seed,
    }
}

/// Sets the flag when dropped: a response dropped before its end is a
/// client that went away, and its generation stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `POST /v1/chat/completions`.
async fn chat(Shared(s): Shared<S>, body: Body) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r: ChatRequest = read_json(&s, body).await?;
    let checked = r.check()?;
    let admission = s.engine.pool.admit()?;
    let meta = Meta {
        id: format!("chatcmpl-{}", engine::random_id()),
        created: now(),
        model: r
            .model
            .clone()
            .unwrap_or_else(|| s.engine.model_name.clone()),
    };
    if s.agent.is_some() {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let params = s.engine.params(&sampling(&r));
        let max_tokens = checked
            .max_tokens
            .map_or(AGENT_MAX_TOKENS.min(s.engine.ctx / 2), |n| n as usize);
        let (s2, flag, user) = (s.clone(), cancel.clone(), r.user.clone());
        let handle = tokio::runtime::Handle::current();
        // A thread of its own, outside the async runtime: the sandbox runs
        // each call on an executor of its own, which cannot start inside
        // one. Admission bounds how many there are.
        let spawned = std::thread::Builder::new()
            .name("warden-agent".into())
            .spawn(move || {
                let agent = s2.agent.as_ref().expect("checked above");
                let last = super::agent::run(
                    agent,
                    &s2.engine,
                    &handle,
                    checked,
                    params,
                    max_tokens,
                    user.as_deref(),
                    flag,
                    &tx,
                );
                // Admission ends before the client reads the end, so that
                // its next request is not refused as busy.
                drop(admission);
                let _ = tx.send(last);
            });
        if let Err(e) = spawned {
            return Err(ApiError::internal(&anyhow::anyhow!(
                "cannot start a thread for the request: {e}"
            )));
        }
        return respond(s, &r, rx, CancelOnDrop(cancel), meta, started).await;
    }
    let s2 = s.clone();
    let sampling = sampling(&r);
    let parallel = r.parallel_tool_calls.unwrap_or(true);
    let mut prepared =
        tokio::task::spawn_blocking(move || s2.engine.prepare(checked, sampling, parallel))
            .await
            .map_err(|e| ApiError::internal(&e.into()))??;
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(replay) = &s.engine.replay {
        let mut replay = replay.clone();
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || {
            let last = engine::run_replay(&mut replay, &s2.engine, &prepared, &tx);
            drop(admission);
            let _ = tx.send(last);
        });
        return respond(s, &r, rx, CancelOnDrop(cancel), meta, started).await;
    }
    let mut slot = s.engine.pool.take(&prepared.prompt_ids).await;
    let format = s.engine.template.call_format();
    let flag = cancel.clone();
    let model_name = s.engine.model_name.clone();
    tokio::task::spawn_blocking(move || {
        let last = engine::run(&mut slot, &mut prepared, &flag, &tx, format, &model_name);
        // The slot is free before the client reads the end (see `run`).
        drop(slot);
        drop(admission);
        let _ = tx.send(last);
    });
    respond(s, &r, rx, CancelOnDrop(cancel), meta, started).await
}

/// The answer to `r` from the events on `rx`: a stream of chunks or one
/// `chat.completion`, as the request asked.
async fn respond(
    s: S,
    r: &ChatRequest,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    guard: CancelOnDrop,
    meta: Meta,
    started: Instant,
) -> Result<Response, ApiError> {
    if r.stream {
        let include_usage = r.stream_options.as_ref().is_some_and(|o| o.include_usage);
        Ok(stream(s, rx, guard, meta, include_usage, started).into_response())
    } else {
        whole(s, rx, guard, meta, started).await
    }
}

/// A response's id, time and model name.
struct Meta {
    id: String,
    created: u64,
    model: String,
}

fn record(s: &State, o: &Outcome, started: Instant) {
    s.metrics.prompt_tokens.inc_by(o.prompt_tokens as u64);
    s.metrics.cached_tokens.inc_by(o.cached_tokens as u64);
    s.metrics
        .completion_tokens
        .inc_by(o.completion_tokens as u64);
    s.metrics.ttft.observe(o.ttft_ms / 1e3);
    s.metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    s.metrics.tool_calls.observe(o.tool_calls.len() as f64);
}

/// Waits for the end and answers with one `chat.completion`.
async fn whole(
    s: S,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    _guard: CancelOnDrop,
    meta: Meta,
    started: Instant,
) -> Result<Response, ApiError> {
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Delta { .. } => {}
            Event::Failed(e) => return Err(ApiError::internal(&anyhow::anyhow!(e))),
            Event::Done(o) => {
                record(&s, &o, started);
                let mut message = json!({"role": "assistant", "content": o.content});
                if let Some(r) = &o.reasoning {
                    message["reasoning_content"] = json!(r);
                }
                if !o.tool_calls.is_empty() {
                    message["tool_calls"] = json!(o.tool_calls);
                    if o.content.is_empty() {
                        message["content"] = Value::Null;
                    }
                }
                let mut body = json!({
                    "id": meta.id,
                    "object": "chat.completion",
                    "created": meta.created,
                    "model": meta.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": o.finish_reason}],
                    "usage": o.usage(),
                    "timings": o.timings,
                });
                if let Some(w) = &o.warden {
                    body["warden"] = w.clone();
                }
                return Ok(Json(body).into_response());
            }
        }
    }
    Err(ApiError::internal(&anyhow::anyhow!(
        "the generation ended without a result"
    )))
}

fn chunk(meta: &Meta, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

fn data(v: &Value) -> Result<SseEvent, std::convert::Infallible> {
    Ok(SseEvent::default().data(v.to_string()))
}

/// Streams `chat.completion.chunk`s, then `[DONE]`.
fn stream(
    s: S,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    guard: CancelOnDrop,
    meta: Meta,
    include_usage: bool,
    started: Instant,
) -> impl IntoResponse {
    enum Phase {
        First,
        Body,
        End,
    }
    let init = (rx, guard, meta, Phase::First, Vec::<SseEvent>::new());
    let events =
        futures_util::stream::unfold(init, move |(mut rx, guard, meta, phase, mut queued)| {
            let s = s.clone();
            async move {
                if let Some(e) = queued.pop() {
                    return Some((Ok(e), (rx, guard, meta, phase, queued)));
                }
                match phase {
                    Phase::End => None,
                    Phase::First => {
                        let first = chunk(&meta, json!({"role": "assistant", "content": ""}), None);
                        Some((data(&first), (rx, guard, meta, Phase::Body, queued)))
                    }
                    Phase::Body => match rx.recv().await {
                        Some(Event::Delta { content, reasoning }) => {
                            let mut delta = json!({});
                            if !reasoning.is_empty() {
                                delta["reasoning_content"] = json!(reasoning);
                            }
                            if !content.is_empty() {
                                delta["content"] = json!(content);
                            }
                            Some((
                                data(&chunk(&meta, delta, None)),
                                (rx, guard, meta, Phase::Body, queued),
                            ))
                        }
                        Some(Event::Done(o)) => {
                            record(&s, &o, started);
                            // Sent in order: calls, the finish, usage, [DONE]
                            // (popped from the end).
                            queued.push(SseEvent::default().data("[DONE]"));
                            if include_usage {
                                let mut u = chunk(&meta, json!({}), None);
                                u["choices"] = json!([]);
                                u["usage"] = o.usage();
                                queued.push(data(&u).unwrap_or_default());
                            }
                            let mut end = chunk(&meta, json!({}), Some(o.finish_reason));
                            end["timings"] = o.timings.clone();
                            if let Some(w) = &o.warden {
                                end["warden"] = w.clone();
                            }
                            queued.push(data(&end).unwrap_or_default());
                            if !o.tool_calls.is_empty() {
                                let calls: Vec<Value> = o
                                    .tool_calls
                                    .iter()
                                    .enumerate()
                                    .map(|(i, c)| {
                                        let mut c = c.clone();
                                        c["index"] = json!(i);
                                        c
                                    })
                                    .collect();
                                queued.push(
                                    data(&chunk(&meta, json!({"tool_calls": calls}), None))
                                        .unwrap_or_default(),
                                );
                            }
                            let e = queued.pop().unwrap_or_default();
                            Some((Ok(e), (rx, guard, meta, Phase::End, queued)))
                        }
                        Some(Event::Failed(e)) => {
                            let err = ApiError::internal(&anyhow::anyhow!(e)).body();
                            Some((data(&err), (rx, guard, meta, Phase::End, queued)))
                        }
                        None => None,
                    },
                }
            }
        });
    Sse::new(events).keep_alive(KeepAlive::default())
}
