//! The generation loop: prefill with prefix reuse, decode, stop, stream,
//! and time every stage.

use super::load::LoadedModel;
use super::qwen3::Qwen3;
use super::sampler::{Sampler, SamplingParams};
use super::special;
use anyhow::Context as _;
use std::time::Instant;

/// Prompt tokens run per forward pass during prefill.
pub const PREFILL_CHUNK: usize = 512;

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-turn or end-of-text token.
    Stop,
    /// One of the stop strings appeared.
    StopString,
    /// `max_tokens` reached.
    Length,
    /// The caller asked to stop (Ctrl-C).
    Cancelled,
}

/// Where the time of one generation went.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Timings {
    /// Tokenizing the prompt.
    pub tokenize_ms: f64,
    /// Prompt tokens run now (not reused from the cache).
    pub prefill_tokens: usize,
    /// Prompt tokens whose cache entries were reused.
    pub reused_tokens: usize,
    /// Prefill time.
    pub prefill_ms: f64,
    /// Prefill speed.
    pub prefill_tok_s: f64,
    /// From the start of the call to the first sampled token.
    pub ttft_ms: f64,
    /// Tokens decoded after the first.
    pub decode_tokens: usize,
    /// Decode time.
    pub decode_ms: f64,
    /// Decode speed.
    pub decode_tok_s: f64,
}

/// The result of one generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    /// Generated text (stop string and end token excluded).
    pub text: String,
    /// Prompt token ids.
    pub prompt_tokens: Vec<u32>,
    /// Generated token ids (end token included if one was produced).
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Timings.
    pub timings: Timings,
}

/// Generates from token ids; `on_token` sees each new id. Stops at
/// `<|im_end|>`/`<|endoftext|>` or after `max_tokens`.
pub fn generate_ids(
    model: &mut Qwen3,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    mut on_token: impl FnMut(u32) -> bool,
) -> anyhow::Result<(Vec<u32>, FinishReason, Timings)> {
    let start = Instant::now();
    let mut t = Timings::default();
    let (logits, reused) = model.prefill(prompt, PREFILL_CHUNK)?;
    t.reused_tokens = reused;
    t.prefill_tokens = prompt.len() - reused;
    t.prefill_ms = ms(start.elapsed());
    t.prefill_tok_s = t.prefill_tokens as f64 / start.elapsed().as_secs_f64();
    let mut sampler = Sampler::new(params.clone());
    let mut out = Vec::new();
    let mut logits = Qwen3::to_vec(&logits)?;
    let mut finish = FinishReason::Length;
    let mut decode_start = None;
    while out.len() < max_tokens {
        let next = sampler.sample(&mut logits, prompt, &out);
        out.push(next);
        if decode_start.is_none() {
            t.ttft_ms = ms(start.elapsed());
            decode_start = Some(Instant::now());
        }
        if next == special::IM_END || next == special::ENDOFTEXT {
            finish = FinishReason::Stop;
            break;
        }
        if !on_token(next) {
            finish = FinishReason::StopString;
            break;
        }
        if out.len() == max_tokens {
            break;
        }
        logits = Qwen3::to_vec(&model.step(next)?)?;
        t.decode_tokens += 1;
    }
    if let Some(d) = decode_start {
        t.decode_ms = ms(d.elapsed());
        t.decode_tok_s = if t.decode_tokens > 0 {
            t.decode_tokens as f64 / d.elapsed().as_secs_f64()
        } else {
            0.0
        };
    }
    Ok((out, finish, t))
}

/// Generates text for `prompt`, streaming text pieces to `on_text`, which
/// returns `false` to stop (finish reason `cancelled`).
pub fn generate(
    loaded: &mut LoadedModel,
    prompt: &str,
    max_tokens: usize,
    params: &SamplingParams,
    stop: &[String],
    mut on_text: impl FnMut(&str) -> bool,
) -> anyhow::Result<Generation> {
    let tokenizer = loaded.tokenizer.clone().context(
        "this model has no tokenizer.json beside it; put the model's tokenizer.json next to the weights",
    )?;
    let t0 = Instant::now();
    let enc = tokenizer
        .encode(prompt, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
    let prompt_ids = enc.get_ids().to_vec();
    let tokenize_ms = ms(t0.elapsed());
    if prompt_ids.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let mut generated: Vec<u32> = Vec::new();
    let mut text = String::new();
    let mut emitted = 0usize;
    let mut decode_error = None;
    let mut cancelled = false;
    let (tokens, finish, mut timings) =
        generate_ids(&mut loaded.model, &prompt_ids, max_tokens, params, |id| {
            generated.push(id);
            match tokenizer.decode(&generated, true) {
                Ok(s) => text = s,
                Err(e) => {
                    decode_error = Some(e.to_string());
                    return false;
                }
            }
            if let Some(pos) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(pos);
                if text.len() > emitted {
                    on_text(&text[emitted..]);
                }
                emitted = text.len();
                return false;
            }
            // Hold back a trailing partial UTF-8 sequence and anything that may
            // be the start of a stop string.
            let mut safe = text.trim_end_matches('\u{FFFD}').len();
            for s in stop {
                for k in (1..s.len()).rev() {
                    if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                        safe = safe.min(text.len() - k);
                        break;
                    }
                }
            }
            if safe > emitted && text.is_char_boundary(safe) {
                let go_on = on_text(&text[emitted..safe]);
                emitted = safe;
                if !go_on {
                    cancelled = true;
                    return false;
                }
            }
            true
        })?;
    let finish = if cancelled {
        FinishReason::Cancelled
    } else {
        finish
    };
    if let Some(e) = decode_error {
        anyhow::bail!("cannot decode generated tokens: {e}");
    }
    if finish != FinishReason::StopString && finish != FinishReason::Cancelled {
        text = tokenizer
            .decode(&generated, true)
            .map_err(|e| anyhow::anyhow!("cannot decode: {e}"))?;
        if text.len() > emitted {
            on_text(&text[emitted..]);
        }
    }
    timings.tokenize_ms = tokenize_ms;
    timings.ttft_ms += tokenize_ms;
    Ok(Generation {
        text,
        prompt_tokens: prompt_ids,
        tokens,
        finish_reason: finish,
        timings,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
