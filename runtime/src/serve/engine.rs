//! The engine behind the routes: a request checked, rendered by the model's
//! template, tokenized against the context, then generated on a slot with
//! its text streamed out as content and reasoning deltas and its tool calls
//! taken apart at the end.

use super::api::{Checked, ResponseFormat, ToolChoice};
use super::error::ApiError;
use super::pool::{Pool, Slot};
use crate::chat::{self, ChatTemplate, RenderRequest, StreamFilter, ToolList};
use crate::model::decode::constraint::{Constraint, Vocabulary};
use crate::model::{self, SamplingParams, Speculative};
use crate::telemetry::genai;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokenizers::Tokenizer;

/// What the routes share: the slots, the template, the tokenizer.
pub struct Engine {
    /// The slots and queue.
    pub pool: Arc<Pool>,
    /// The chat template prompts are rendered with.
    pub template: ChatTemplate,
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// The name `/v1/models` lists and responses carry.
    pub model_name: String,
    /// Most tokens of prompt and completion together.
    pub ctx: usize,
    /// Speculative decoding for every request.
    pub speculative: Speculative,
    /// The grammar engine's view of the vocabulary.
    pub vocabulary: Arc<Grammars>,
    /// A `replay:` model: recorded outputs instead of generations.
    pub replay: Option<crate::session::ReplayBackend>,
}

/// The vocabulary for constrained decoding, built at the first request
/// that needs it (a second or so for a 150k-token vocabulary) and shared.
pub struct Grammars {
    vocab_size: usize,
    end_of_turn: u32,
    built: OnceLock<Result<Vocabulary, String>>,
}

impl Grammars {
    /// For a model with `vocab_size` logits whose turn ends with `end_of_turn`.
    pub fn new(vocab_size: usize, end_of_turn: u32) -> Grammars {
        Grammars {
            vocab_size,
            end_of_turn,
            built: OnceLock::new(),
        }
    }

    /// A constraint for one generation from `grammar`.
    pub(crate) fn constraint(
        &self,
        tokenizer: &Tokenizer,
        grammar: &str,
    ) -> Result<Constraint, ApiError> {
        let v = self.built.get_or_init(|| {
            Vocabulary::new(tokenizer, self.vocab_size, self.end_of_turn)
                .map_err(|e| format!("{e:#}"))
        });
        let v = v
            .as_ref()
            .map_err(|e| ApiError::internal(&anyhow::anyhow!("{e}")))?;
        // A schema the grammar engine cannot compile is the request's fault.
        v.constraint(grammar)
            .map_err(|e| ApiError::invalid(format!("cannot enforce this schema: {e:#}"), "tools"))
    }
}

/// A request ready to run: its prompt, token ids and settings.
pub struct Prepared {
    /// The rendered prompt.
    pub prompt: String,
    /// Its token ids.
    pub prompt_ids: Vec<u32>,
    /// The checked request.
    pub req: Checked,
    /// Sampling.
    pub params: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Whether tools were shown (calls are parsed only then).
    pub tools_shown: bool,
    /// Whether several calls may be returned.
    pub parallel_calls: bool,
    /// The grammar every token must follow (tool_choice required or named,
    /// response_format json), taken by [`run`].
    pub constraint: Option<Constraint>,
}

/// What a running generation reports.
#[derive(Debug)]
pub enum Event {
    /// Text to show now (content) and reasoning passed over.
    Delta {
        /// Visible text.
        content: String,
        /// `<think>` text.
        reasoning: String,
    },
    /// The end, with everything taken apart.
    Done(Box<Outcome>),
    /// The engine failed.
    Failed(String),
}

/// A finished generation in OpenAI's terms.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The message's content.
    pub content: String,
    /// Its reasoning, if any.
    pub reasoning: Option<String>,
    /// Its calls, as OpenAI `tool_calls` objects.
    pub tool_calls: Vec<Value>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens whose cache was reused.
    pub cached_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Whether the client went away first.
    pub cancelled: bool,
    /// Time to the first token, milliseconds.
    pub ttft_ms: f64,
    /// llama-server's `timings` object.
    pub timings: Value,
    /// warden's extension (agent mode): the server-side calls and the log.
    pub warden: Option<Value>,
}

impl Outcome {
    /// The `usage` object.
    pub fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }
}

/// Sampling as the request asks. Where it says nothing, OpenAI's defaults:
/// temperature 1 (not warden's greedy CLI default), no top-k, min-p or
/// penalties, a fresh seed.
#[derive(Debug, Clone, Default)]
pub struct Sampling {
    /// Temperature (default 1).
    pub temperature: Option<f32>,
    /// Nucleus.
    pub top_p: Option<f32>,
    /// Top-k.
    pub top_k: Option<usize>,
    /// Min-p.
    pub min_p: Option<f32>,
    /// Presence penalty.
    pub presence_penalty: Option<f32>,
    /// Repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Seed (default: fresh per request).
    pub seed: Option<u64>,
}

impl Engine {
    /// Sampling as the request asks, OpenAI's defaults elsewhere.
    pub fn params(&self, sampling: &Sampling) -> SamplingParams {
        SamplingParams {
            temperature: sampling.temperature.unwrap_or(1.0),
            top_p: sampling.top_p.unwrap_or(1.0),
            top_k: sampling.top_k.unwrap_or(0),
            min_p: sampling.min_p.unwrap_or(0.0),
            presence_penalty: sampling.presence_penalty.unwrap_or(0.0),
            repetition_penalty: sampling.repetition_penalty.unwrap_or(1.0),
            seed: sampling.seed.unwrap_or_else(rand::random),
            speculative: self.speculative,
        }
    }

    /// How many tokens a prompt of `prompt_len` may be followed by: `asked`
    /// (the request's `param`) when it fits the context, all the room left
    /// when it says nothing; a context-length error otherwise.
    pub fn room(
        &self,
        prompt_len: usize,
        asked: Option<u64>,
        param: &str,
    ) -> Result<usize, ApiError> {
        if prompt_len >= self.ctx {
            return Err(ApiError::context_length(format!(
                "the prompt is {prompt_len} tokens; this server's context (--ctx) is {}",
                self.ctx
            )));
        }
        let room = self.ctx - prompt_len;
        match asked {
            Some(n) if n > room as u64 => Err(ApiError::context_length(format!(
                "the prompt ({prompt_len} tokens) and {param} ({n}) exceed this server's context (--ctx) of {}",
                self.ctx
            ))),
            Some(n) => Ok(n as usize),
            None => Ok(room),
        }
    }

    /// Renders and tokenizes `req` (CPU work: run it off the async
    /// threads) and sizes its generation to the context.
    pub fn prepare(
        &self,
        req: Checked,
        sampling: Sampling,
        parallel_calls: bool,
    ) -> Result<Prepared, ApiError> {
        let tools_shown = req.tool_choice != ToolChoice::None
            && !req.tools.is_empty()
            && req.response_format == ResponseFormat::Text;
        let no_tools: [Value; 0] = [];
        let prompt = self
            .template
            .render(&RenderRequest {
                messages: &req.messages,
                tools: if tools_shown { &req.tools } else { &no_tools },
                add_generation_prompt: true,
                enable_thinking: req.enable_thinking,
            })
            .map_err(|e| {
                ApiError::invalid(
                    format!("the chat template refused these messages: {e:#}"),
                    "messages",
                )
            })?;
        let prompt_ids = model::checkpoint::tokenize::encode(&self.tokenizer, &prompt)
            .map_err(|e| ApiError::internal(&e))?;
        let max_tokens = self.room(prompt_ids.len(), req.max_tokens, "max_tokens")?;
        let grammar = match &req.response_format {
            ResponseFormat::Text if tools_shown => self
                .template
                .tool_grammar(&prompt, &req.tools, &req.tool_choice, parallel_calls)
                .map_err(|e| ApiError::invalid(e.to_string(), "tool_choice"))?
                .filter(|_| req.tool_choice != ToolChoice::Auto),
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(self.template.json_grammar(&prompt, None)),
            ResponseFormat::JsonSchema(s) => Some(self.template.json_grammar(&prompt, Some(s))),
        };
        let constraint = match grammar {
            Some(g) => Some(self.vocabulary.constraint(&self.tokenizer, &g)?),
            None => None,
        };
        let params = self.params(&sampling);
        Ok(Prepared {
            prompt,
            prompt_ids,
            req,
            params,
            max_tokens,
            tools_shown,
            parallel_calls,
            constraint,
        })
    }
}

/// A generation's text on its way to the client: content and reasoning
/// deltas (call blocks held back when tools were shown).
struct Deltas<'a> {
    filter: StreamFilter,
    tx: &'a tokio::sync::mpsc::UnboundedSender<Event>,
}

impl<'a> Deltas<'a> {
    fn new(p: &Prepared, tx: &'a tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        let filter = if p.tools_shown {
            StreamFilter::default()
        } else {
            StreamFilter::reasoning_only()
        };
        Deltas { filter, tx }
    }

    /// Sends what `piece` makes visible; false when the client went away
    /// (the receiver is closed).
    fn push(&mut self, piece: &str) -> bool {
        let content = self.filter.push(piece);
        self.send(content)
    }

    fn send(&mut self, content: String) -> bool {
        let reasoning = self.filter.take_reasoning();
        content.is_empty() && reasoning.is_empty()
            || self.tx.send(Event::Delta { content, reasoning }).is_ok()
    }

    /// Sends what the filter still holds.
    fn finish(&mut self) {
        let content = self.filter.finish();
        self.send(content);
    }
}

/// Generates `p` on `slot` (blocking), sending deltas to `tx`, and returns
/// the last event (the outcome or the failure); stops early when `cancel`
/// is set. The caller gives the slot back before it sends that event, so a
/// client that has read the end finds the slot free.
pub fn run(
    slot: &mut Slot,
    p: &mut Prepared,
    cancel: &AtomicBool,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
    format: chat::CallFormat,
    model_name: &str,
) -> Event {
    let started = std::time::Instant::now();
    let span = genai::chat(model_name, p.max_tokens, Some(p.params.temperature));
    let mut deltas = Deltas::new(p, tx);
    let mut constraint = p.constraint.take();
    let r = span.in_scope(|| {
        model::generate_with(
            slot.model(),
            &p.prompt,
            p.max_tokens,
            &p.params,
            &p.req.stop,
            constraint.as_mut(),
            |piece| {
                if !deltas.push(piece) {
                    cancel.store(true, Ordering::Relaxed);
                }
                !cancel.load(Ordering::Relaxed)
            },
        )
    });
    let g = match r {
        Ok(g) => g,
        Err(e) => {
            genai::failed(&span, "generation_failed");
            return Event::Failed(format!("{e:#}"));
        }
    };
    deltas.finish();
    let o = outcome(&g, p, format);
    genai::chat_done(
        &span,
        &genai::ChatDone {
            model: model_name,
            input_tokens: o.prompt_tokens as u64,
            cached_tokens: o.cached_tokens as u64,
            output_tokens: o.completion_tokens as u64,
            finish_reason: o.finish_reason,
            ttft_ms: o.ttft_ms,
            seconds: started.elapsed().as_secs_f64(),
        },
    );
    Event::Done(Box::new(o))
}

/// Plays the next recorded output for `p` (a `replay:` model), sending it
/// to `tx` and returning the last event, as [`run`] does.
pub fn run_replay(
    replay: &mut crate::session::ReplayBackend,
    engine: &Engine,
    p: &Prepared,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) -> Event {
    use crate::session::Backend as _;
    let never = AtomicBool::new(false);
    let mut deltas = Deltas::new(p, tx);
    let r = replay.generate(&p.prompt, p.max_tokens, None, &never, &mut |piece| {
        deltas.push(piece);
    });
    let g = match r {
        Ok(g) => g,
        Err(e) => return Event::Failed(format!("{e:#}")),
    };
    deltas.finish();
    let tokens =
        model::checkpoint::tokenize::encode(&engine.tokenizer, &g.text).unwrap_or_default();
    let generation = model::Generation {
        text: g.text,
        prompt_tokens: p.prompt_ids.clone(),
        tokens,
        finish_reason: model::FinishReason::Stop,
        timings: g.timings,
    };
    let format = engine.template.call_format();
    Event::Done(Box::new(outcome(&generation, p, format)))
}

/// Takes a finished generation apart.
fn outcome(g: &model::Generation, p: &Prepared, format: chat::CallFormat) -> Outcome {
    let (reasoning, content, mut tool_calls) = if p.tools_shown {
        let parsed = chat::parse(&g.text, format, &ToolList(&p.req.tools));
        let mut content = parsed.content;
        let mut calls = Vec::new();
        for c in parsed.calls {
            match c.call {
                Ok(call) => calls.push(json!({
                    "id": format!("call_{}", random_id()),
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments_text.unwrap_or_else(|| Value::Object(call.arguments).to_string()),
                    },
                })),
                // Not a call: the client sees what the model wrote.
                Err(_) => {
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    content.push_str(&format!("<tool_call>{}</tool_call>", c.raw));
                }
            }
        }
        (parsed.reasoning, content, calls)
    } else {
        let (reasoning, rest) = chat::split_reasoning(&g.text);
        (reasoning, rest.trim().to_string(), Vec::new())
    };
    if !p.parallel_calls {
        tool_calls.truncate(1);
    }
    let cancelled = g.finish_reason == model::FinishReason::Cancelled;
    let finish_reason = if !tool_calls.is_empty() {
        "tool_calls"
    } else if g.finish_reason == model::FinishReason::Length {
        "length"
    } else {
        "stop"
    };
    let t = &g.timings;
    let timings = llama_timings(g);
    Outcome {
        content,
        reasoning: reasoning.filter(|r| !r.trim().is_empty()),
        tool_calls,
        finish_reason,
        prompt_tokens: g.prompt_tokens.len(),
        cached_tokens: t.reused_tokens,
        completion_tokens: g.tokens.len(),
        cancelled,
        ttft_ms: t.ttft_ms,
        timings,
        warden: None,
    }
}

/// A generation's `timings` object as llama-server gives it.
pub fn llama_timings(g: &model::Generation) -> Value {
    let t = &g.timings;
    let per = |ms: f64, n: usize| if n == 0 { 0.0 } else { ms / n as f64 };
    json!({
        "cache_n": t.reused_tokens,
        "prompt_n": t.prefill_tokens,
        "prompt_ms": t.prefill_ms,
        "prompt_per_token_ms": per(t.prefill_ms, t.prefill_tokens),
        "prompt_per_second": t.prefill_tok_s,
        "predicted_n": g.tokens.len(),
        "predicted_ms": t.decode_ms,
        "predicted_per_token_ms": per(t.decode_ms, t.decode_tokens),
        "predicted_per_second": t.decode_tok_s,
        "ttft_ms": t.ttft_ms,
        "drafted_n": t.drafted_tokens,
        "draft_accepted_n": t.accepted_tokens,
    })
}

/// 24 random hex digits, for response and call ids.
pub fn random_id() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}
