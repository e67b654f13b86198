//! `warden bench`'s measurement: prefill and decode speed on random prompts,
//! every variant (without and with adapters, speculative, candle's kernels)
//! run on the same prompts interleaved, so noise hits them alike; medians.

use crate::model::checkpoint::load::LoadedModel;
use crate::model::decode::generate::{generate_ids_with, Timings};
use crate::model::decode::sampler::{SamplingParams, Speculative};
use crate::model::kernels;
use crate::model::special;
use anyhow::Context as _;
use rand::{Rng, SeedableRng};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Prompt length (random token ids).
    pub prompt_tokens: usize,
    /// Tokens decoded per repeat.
    pub gen_tokens: usize,
    /// Repeats; medians are reported.
    pub repeat: usize,
    /// Also decode speculatively (off: not measured).
    pub speculative: Speculative,
    /// Also run with candle's quantized kernels.
    pub compare_kernels: bool,
    /// Measure the memory read bandwidth and the decode speed it allows.
    pub bandwidth: bool,
    /// Show a progress bar on standard error.
    pub progress: bool,
}

/// The model without its adapters, measured beside it.
#[derive(Debug, Clone, Copy)]
pub struct BaseFigures {
    /// Prefill without adapters (tokens/s).
    pub prefill_tok_s: f64,
    /// Decode without adapters (tokens/s).
    pub decode_tok_s: f64,
    /// The adapters' share of decode time (%).
    pub adapter_cost_pct: f64,
}

/// The bandwidth limit of decode.
#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    /// Weight bytes read per decoded token.
    pub weight_bytes_per_token: usize,
    /// Measured read bandwidth (bytes/s).
    pub read_bytes_s: f64,
    /// The decode speed that bandwidth allows (tokens/s).
    pub limit_tok_s: f64,
}

/// Speculative decoding, measured beside plain decoding.
#[derive(Debug, Clone, Copy)]
pub struct Speculated {
    /// Decode speed (tokens/s).
    pub decode_tok_s: f64,
    /// Tokens drafted, in all runs.
    pub drafted_tokens: usize,
    /// Of those, tokens kept.
    pub accepted_tokens: usize,
}

/// The medians.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Prefill (tokens/s), with adapters when there are any.
    pub prefill_tok_s: f64,
    /// Decode (tokens/s), with adapters when there are any.
    pub decode_tok_s: f64,
    /// Without adapters, when there are any.
    pub base: Option<BaseFigures>,
    /// Prefill and decode with candle's kernels (`compare_kernels`).
    pub candle: Option<(f64, f64)>,
    /// The bandwidth limit (`bandwidth`).
    pub bandwidth: Option<Bandwidth>,
    /// Speculative decoding (`speculative` not off).
    pub speculated: Option<Speculated>,
    /// Peak resident memory of the process (MiB).
    pub peak_rss_mib: f64,
}

/// Measures `loaded` as `o` says; the kernel choice and adapters are left
/// as they were.
pub fn bench(loaded: &mut LoadedModel, o: &BenchOptions) -> anyhow::Result<BenchResult> {
    let vocab = special::ENDOFTEXT.min(loaded.model.config().vocab_size as u32);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    // With adapters, every repeat runs the same prompt without and with
    // them, interleaved, so that the cost is measured side by side.
    let chosen = kernels::choice();
    let mut variants: Vec<(bool, Speculative, kernels::Choice)> = if loaded.adapters.is_empty() {
        vec![(true, Speculative::Off, chosen)]
    } else {
        vec![
            (false, Speculative::Off, chosen),
            (true, Speculative::Off, chosen),
        ]
    };
    // With speculation or candle's kernels, the plain run stays the
    // headline and the others come after it.
    let plain = variants.len() - 1;
    if !o.speculative.is_off() {
        variants.push((true, o.speculative, chosen));
    }
    let candle_at = variants.len();
    if o.compare_kernels {
        variants.push((true, Speculative::Off, kernels::Choice::Candle));
    }
    // One untimed run per variant first: candle repacks a weight for its
    // tiles on first use, and caches and pages warm up, as in any session
    // after its first turn.
    let warm: Vec<u32> = (0..o.prompt_tokens.max(1) as u32)
        .map(|i| i % vocab)
        .collect();
    // A bench runs for minutes: show its progress on a terminal.
    let runs = variants.len() * (1 + o.repeat.max(1));
    let pb = crate::progress::bar(
        o.progress,
        runs as u64,
        "bench [{bar:30}] {pos}/{len} runs · {msg}",
    );
    pb.set_message("warming up");
    let result = (|| {
        for &variant in &variants {
            run_variant(loaded, variant, &warm, 2).context("benchmark warm-up failed")?;
            pb.inc(1);
        }
        pb.set_message("timing");
        let mut prefill = vec![Vec::new(); variants.len()];
        let mut decode = vec![Vec::new(); variants.len()];
        let (mut drafted, mut accepted) = (0usize, 0usize);
        for _ in 0..o.repeat.max(1) {
            let prompt: Vec<u32> = (0..o.prompt_tokens.max(1))
                .map(|_| rng.random_range(0..vocab))
                .collect();
            for (v, &variant) in variants.iter().enumerate() {
                let t = run_variant(loaded, variant, &prompt, o.gen_tokens.max(2))
                    .context("benchmark run failed")?;
                prefill[v].push(t.prefill_tok_s);
                decode[v].push(t.decode_tok_s);
                drafted += t.drafted_tokens;
                accepted += t.accepted_tokens;
                pb.inc(1);
            }
        }
        Ok::<_, anyhow::Error>((prefill, decode, drafted, accepted))
    })();
    pb.finish_and_clear();
    kernels::set_choice(chosen);
    loaded.model.set_adapters_active(true);
    let (mut prefill, mut decode, drafted, accepted) = result?;
    let candle = o.compare_kernels.then(|| {
        (
            median(&mut prefill[candle_at]),
            median(&mut decode[candle_at]),
        )
    });
    // Weight bytes per token over a read bandwidth measured on a buffer at
    // least as large as the weights, so caches help it no more than decode.
    let bandwidth = o.bandwidth.then(|| {
        let bytes = loaded.model.weight_bytes_per_token();
        let bw = kernels::bandwidth::read_bandwidth(bytes.max(1 << 30), 3);
        Bandwidth {
            weight_bytes_per_token: bytes,
            read_bytes_s: bw,
            limit_tok_s: bw / bytes.max(1) as f64,
        }
    });
    let speculated = (!o.speculative.is_off()).then(|| Speculated {
        decode_tok_s: median(&mut decode[plain + 1]),
        drafted_tokens: drafted,
        accepted_tokens: accepted,
    });
    let (p, d) = (median(&mut prefill[plain]), median(&mut decode[plain]));
    // Base-only figures and the adapters' share of decode time.
    let base = (plain > 0).then(|| {
        let (bp, bd) = (median(&mut prefill[0]), median(&mut decode[0]));
        BaseFigures {
            prefill_tok_s: bp,
            decode_tok_s: bd,
            adapter_cost_pct: 100.0 * (1.0 - d / bd),
        }
    });
    Ok(BenchResult {
        prefill_tok_s: p,
        decode_tok_s: d,
        base,
        candle,
        bandwidth,
        speculated,
        peak_rss_mib: peak_rss_mib(),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run_variant(
    loaded: &mut LoadedModel,
    (adapters, speculative, choice): (bool, Speculative, kernels::Choice),
    prompt: &[u32],
    gen: usize,
) -> anyhow::Result<Timings> {
    kernels::set_choice(choice);
    loaded.model.set_adapters_active(adapters);
    loaded.model.clear_cache();
    let params = SamplingParams {
        speculative,
        ..SamplingParams::default()
    };
    // Greedy on random weights may hit an end token early; never stop.
    let (_, _, t) = generate_ids_with(
        &mut loaded.model,
        loaded.draft.as_mut().map(|(m, _)| m),
        prompt,
        gen,
        &params,
        |_| true,
    )?;
    Ok(t)
}

/// The process's peak resident memory (MiB; 0 where /proc is not there).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(String::from)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
