//! The generation loop: prefill with prefix reuse, decode, stop, stream,
//! and time every stage.

use crate::model::arch::qwen3::Qwen3;
use crate::model::checkpoint::load::LoadedModel;
use crate::model::decode::constraint::Constraint;
use crate::model::decode::lookup;
use crate::model::decode::sampler::{Sampler, SamplingParams, Speculative};
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
    /// Tokens proposed by speculative decoding (absent when it is off).
    #[serde(skip_serializing_if = "is_zero")]
    pub drafted_tokens: usize,
    /// Drafted tokens the model agreed with (each saved a forward pass).
    #[serde(skip_serializing_if = "is_zero")]
    pub accepted_tokens: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Proposes up to `most` tokens to follow a context (prompt + generated);
/// none means a plain step.
pub type Drafter<'a> = dyn FnMut(&[u32], usize) -> anyhow::Result<Vec<u32>> + 'a;

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
///
/// With `params.speculative` on, each forward pass also runs the tokens
/// drafted by prompt lookup and keeps those the sampler agrees with
/// ([`Sampler::verify`]): greedy output is the same as without, sampled
/// output has the same distribution. Either way the cache ends holding the
/// prompt and every generated token but the last, as plain decoding leaves
/// it.
pub fn generate_ids(
    model: &mut Qwen3,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    on_token: impl FnMut(u32) -> bool,
) -> anyhow::Result<(Vec<u32>, FinishReason, Timings)> {
    generate_ids_with(model, None, prompt, max_tokens, params, on_token)
}

/// [`generate_ids`] with a draft model for `--speculative draft` (the
/// same vocabulary; see [`LoadedModel::attach_draft`]). It proposes
/// greedily, so each proposal is one token and [`Sampler::verify`] keeps
/// the target's distribution exactly.
pub fn generate_ids_with(
    model: &mut Qwen3,
    draft: Option<&mut Qwen3>,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    on_token: impl FnMut(u32) -> bool,
) -> anyhow::Result<(Vec<u32>, FinishReason, Timings)> {
    ids_with(model, draft, prompt, max_tokens, params, None, on_token)
}

/// [`generate_ids_with`] under a grammar when `constraint` is given:
/// every token is one it allows, and speculation is off (a draft is not
/// worth checking against the grammar token by token).
fn ids_with(
    model: &mut Qwen3,
    mut draft: Option<&mut Qwen3>,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    constraint: Option<&mut Constraint>,
    on_token: impl FnMut(u32) -> bool,
) -> anyhow::Result<(Vec<u32>, FinishReason, Timings)> {
    if constraint.is_some() {
        let plain = SamplingParams {
            speculative: Speculative::Off,
            ..params.clone()
        };
        return run(
            model,
            prompt,
            max_tokens,
            &plain,
            &mut |_, _| Ok(vec![]),
            &mut |_, _, _| {},
            constraint,
            on_token,
        );
    }
    if params.speculative == Speculative::Draft {
        let Some(d) = draft.as_deref_mut() else {
            anyhow::bail!("--speculative draft needs a draft model: add --draft-model PATH");
        };
        // The draft model reads the prompt once, outside the tuner's
        // timings; afterwards it only runs the new tokens.
        d.prefill(prompt, PREFILL_CHUNK)?;
    }
    let tuner = std::cell::RefCell::new(lookup::Tuner::default());
    let mut drafter = |context: &[u32], most: usize| -> anyhow::Result<Vec<u32>> {
        Ok(match params.speculative {
            Speculative::Off => vec![],
            Speculative::Lookup => {
                let mut d = lookup::draft(context, lookup::MAX_DRAFT.min(most));
                d.truncate(tuner.borrow().budget(d.len()));
                d
            }
            Speculative::Draft => {
                let k = tuner.borrow().budget(lookup::MAX_DRAFT.min(most));
                match draft.as_deref_mut() {
                    Some(d) if k > 0 => draft_greedily(d, context, k)?,
                    _ => vec![],
                }
            }
        })
    };
    let mut record = |drafted: usize, accepted: usize, ms: f64| {
        let mut t = tuner.borrow_mut();
        match drafted {
            0 => t.record_step(ms),
            _ => t.record_verify(drafted, accepted, ms),
        }
    };
    run(
        model,
        prompt,
        max_tokens,
        params,
        &mut drafter,
        &mut record,
        None,
        on_token,
    )
}

/// `k` tokens from `draft` after `context`, greedily; its cache keeps the
/// longest prefix it shares with the context, so only new tokens are run.
fn draft_greedily(draft: &mut Qwen3, context: &[u32], k: usize) -> anyhow::Result<Vec<u32>> {
    let (logits, _) = draft.prefill(context, PREFILL_CHUNK)?;
    let mut tok = Qwen3::argmax(&logits)?;
    let mut out = vec![tok];
    while out.len() < k {
        tok = Qwen3::argmax(&draft.step(tok)?)?;
        out.push(tok);
    }
    Ok(out)
}

/// [`generate_ids`] with drafts from `drafter`, which sees the prompt and
/// the tokens generated so far and returns at most `most` tokens to verify
/// (none: a plain step). Whatever it drafts, the tokens kept are the ones
/// plain decoding would give (greedy) or distributed as they would be.
pub fn generate_ids_drafted(
    model: &mut Qwen3,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    drafter: &mut Drafter<'_>,
    on_token: impl FnMut(u32) -> bool,
) -> anyhow::Result<(Vec<u32>, FinishReason, Timings)> {
    run(
        model,
        prompt,
        max_tokens,
        params,
        drafter,
        &mut |_, _, _| {},
        None,
        on_token,
    )
}

/// The loop; `record(drafted, accepted, ms)` hears how long each forward
/// pass after the first token took and what came of its drafts.
fn run(
    model: &mut Qwen3,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    drafter: &mut Drafter<'_>,
    record: &mut dyn FnMut(usize, usize, f64),
    mut constraint: Option<&mut Constraint>,
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
    let mut finish = FinishReason::Length;
    let mut decode_start = None;
    // Rows of logits for the positions after `out`'s last token, and the
    // drafted token each may confirm (none for the last row).
    let mut rows = vec![Qwen3::to_vec(&logits)?];
    let mut drafts: Vec<u32> = Vec::new();
    // The prompt and `out`, for the drafter.
    let mut context: Vec<u32> = prompt.to_vec();
    // How long the last forward pass took (none for the prefill).
    let mut pass_ms: Option<f64> = None;
    'decode: while out.len() < max_tokens {
        let accepted_before = t.accepted_tokens;
        for (i, row) in rows.iter_mut().enumerate() {
            let next = match drafts.get(i) {
                Some(&d) => {
                    let (tok, ok) = sampler.verify(row, prompt, &out, d);
                    t.accepted_tokens += ok as usize;
                    tok
                }
                None => match constraint.as_deref_mut() {
                    Some(c) => {
                        c.mask(row)?;
                        let tok = sampler.sample(row, prompt, &out);
                        if !model.is_stop(tok) {
                            c.commit(tok)?;
                        }
                        tok
                    }
                    None => sampler.sample(row, prompt, &out),
                },
            };
            out.push(next);
            context.push(next);
            if decode_start.is_none() {
                t.ttft_ms = ms(start.elapsed());
                decode_start = Some(Instant::now());
            } else {
                t.decode_tokens += 1;
            }
            if model.is_stop(next) {
                finish = FinishReason::Stop;
                break 'decode;
            }
            if !on_token(next) {
                finish = FinishReason::StopString;
                break 'decode;
            }
            if out.len() == max_tokens {
                break 'decode;
            }
            if drafts.get(i) != Some(&next) {
                break;
            }
        }
        if let Some(ms) = pass_ms {
            record(drafts.len(), t.accepted_tokens - accepted_before, ms);
        }
        // The cache may hold drafts past the last kept token: drop them.
        model.truncate_cache(prompt.len() + out.len() - 1);
        let last = *out.last().expect("a token was generated");
        // A pass is timed with its drafting: a draft model's steps are part
        // of what speculation costs.
        let pass = Instant::now();
        let room = max_tokens - out.len() - 1;
        drafts = drafter(&context, room)?;
        drafts.truncate(room);
        if drafts.is_empty() {
            rows = vec![Qwen3::to_vec(&model.step(last)?)?];
        } else {
            t.drafted_tokens += drafts.len();
            let mut ids = Vec::with_capacity(drafts.len() + 1);
            ids.push(last);
            ids.extend_from_slice(&drafts);
            let all = model.forward(&ids, true)?;
            rows = (0..ids.len())
                .map(|r| Qwen3::to_vec(&all.get(r)?))
                .collect::<candle_core::Result<_>>()?;
        }
        pass_ms = Some(ms(pass.elapsed()));
    }
    model.truncate_cache(prompt.len() + out.len().saturating_sub(1));
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
    on_text: impl FnMut(&str) -> bool,
) -> anyhow::Result<Generation> {
    generate_with(loaded, prompt, max_tokens, params, stop, None, on_text)
}

/// [`generate`] under a grammar when `constraint` is given (see
/// [`crate::model::decode::constraint`]): the text is a sentence of the
/// grammar, or its beginning when `max_tokens` or a stop string ends it.
pub fn generate_with(
    loaded: &mut LoadedModel,
    prompt: &str,
    max_tokens: usize,
    params: &SamplingParams,
    stop: &[String],
    constraint: Option<&mut Constraint>,
    mut on_text: impl FnMut(&str) -> bool,
) -> anyhow::Result<Generation> {
    let tokenizer = loaded.tokenizer.clone().context(
        "this model has no tokenizer.json beside it; put the model's tokenizer.json next to the weights",
    )?;
    let t0 = Instant::now();
    let prompt_ids =
        crate::model::checkpoint::tokenize::encode(&tokenizer, prompt).with_context(|| {
            format!(
                "the prompt, with the tokenizer of {}",
                loaded.path.display()
            )
        })?;
    let tokenize_ms = ms(t0.elapsed());
    if prompt_ids.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let mut generated: Vec<u32> = Vec::new();
    let mut text = String::new();
    let mut emitted = 0usize;
    let mut decode_error = None;
    let mut cancelled = false;
    let (tokens, finish, mut timings) = ids_with(
        &mut loaded.model,
        loaded.draft.as_mut().map(|(m, _)| m),
        &prompt_ids,
        max_tokens,
        params,
        constraint,
        |id| {
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
        },
    )?;
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
