//! `warden synth`, `warden generate`, `warden bench`.

use super::sampling::{SamplingArgs, SpeculativeArgs, GREEDY};
use super::terminal::{escape, Lines};
use crate::model::adapter::write::{random_adapter, write_adapter, RandomAdapter};
use crate::model::adapter::AdapterFormat;
use crate::model::convert::synth::{self, SynthOptions, SynthShape};
use crate::model::decode::{
    self,
    bench::{Bandwidth, BaseFigures, BenchOptions, Speculated},
};
use crate::model::kernels;
use crate::model::{generate, parse_device, LoadedModel, Speculative};
use candle_core::DType;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// `warden synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Model shape.
    #[arg(long, value_enum)]
    shape: SynthShape,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Dtype of model.safetensors: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Also write a GGUF with this tensor type (q8_0, q4_0, q4_k, q5_k, q6_k, f16, f32, …).
    #[arg(long)]
    gguf: Option<String>,
    /// Write only the GGUF.
    #[arg(long, requires = "gguf")]
    gguf_only: bool,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Give the model a separate LM head instead of tying it to the embedding.
    #[arg(long)]
    untied: bool,
    /// Also write a random LoRA adapter for it, in this format, to OUT/adapter-peft or OUT/adapter-mlx.
    #[arg(long, value_enum)]
    adapter: Option<AdapterKind>,
    /// The adapter's rank.
    #[arg(long, default_value_t = 8, requires = "adapter")]
    rank: usize,
    /// PEFT's lora_alpha (the scale is alpha / rank; default 2·rank).
    #[arg(long, requires = "adapter")]
    alpha: Option<f64>,
    /// Modules to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; default all).
    #[arg(long, value_delimiter = ',', requires = "adapter")]
    targets: Vec<String>,
    /// Size of each delta relative to the weights it changes (RMS of ΔW / RMS of W).
    #[arg(long, default_value_t = 0.05, requires = "adapter")]
    delta_scale: f64,
}

/// Adapter file formats `warden synth` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AdapterKind {
    /// Hugging Face PEFT.
    Peft,
    /// MLX-LM.
    Mlx,
}

/// Which model to load, where, in which dtype.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Snapshot directory, .gguf file, or hub-cache name (Qwen/Qwen3-0.6B);
    /// for run and chat also replay:FILE, completion:URL[#MODEL] (a
    /// llama-server, vLLM or warden serve engine; warden renders the prompt)
    /// or openai:URL#MODEL (its chat API renders and parses; key in
    /// OPENAI_API_KEY).
    #[arg(long)]
    pub(super) model: String,
    /// cpu, cuda[:N] or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 or bf16 (default: f32 on CPU, bf16 on GPU).
    #[arg(long)]
    dtype: Option<String>,
    /// LoRA adapter directory (PEFT or MLX-LM), applied unfused; repeat to stack several.
    #[arg(long)]
    pub(super) adapter: Vec<PathBuf>,
    /// CPU threads for the forward pass (default: all cores).
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// The chat template instead of the model's own: a Jinja file, or a
    /// built-in (chatml-tools: Hermes-style tools for ChatML models).
    #[arg(long, value_name = "FILE|NAME")]
    pub(super) chat_template: Option<String>,
    /// The key a completion: or openai: model's server wants (else
    /// OPENAI_API_KEY's), sent as a bearer token.
    #[arg(long, value_name = "FILE")]
    pub(super) api_key_file: Option<PathBuf>,
}

impl ModelArgs {
    pub(super) fn load(&self, progress: bool) -> anyhow::Result<LoadedModel> {
        if let Some(n) = self.threads {
            if n == 0 {
                anyhow::bail!("--threads must be at least 1");
            }
            // candle's thread pools (and warden's kernels, which run on
            // candle's) size themselves from these when first used, which
            // is after this point.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        let device = parse_device(&self.device)?;
        let mut loaded = LoadedModel::load(
            &self.model,
            &device,
            dtype(self.dtype.as_deref())?,
            progress,
        )?;
        loaded.apply_adapters(&self.adapter)?;
        if let Some(t) = &self.chat_template {
            loaded.chat_template = Some(t.clone());
        }
        Ok(loaded)
    }
}

/// `warden generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as one user turn in the model's chat template (or
    /// --chat-template's; ChatML where it has none).
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Extra stop strings.
    #[arg(long)]
    stop: Vec<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON object: text, token ids, finish reason, timings.
    #[arg(long)]
    json: bool,
}

/// `warden bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt length (random token ids).
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens decoded per repeat.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Repeats; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[command(flatten)]
    speculative: SpeculativeArgs,
    /// Also run every prompt with candle's quantized kernels instead of
    /// warden's, interleaved, and report both.
    #[arg(long)]
    compare_kernels: bool,
    /// Measure the memory read bandwidth and report the decode speed it
    /// allows (weight bytes read per token ÷ bandwidth).
    #[arg(long)]
    bandwidth: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn dtype(s: Option<&str>) -> anyhow::Result<Option<DType>> {
    Ok(match s {
        None => None,
        Some("f32") => Some(DType::F32),
        Some("f16") => Some(DType::F16),
        Some("bf16") => Some(DType::BF16),
        Some(o) => anyhow::bail!("unknown dtype {o:?}; use f32, f16 or bf16"),
    })
}

/// Runs `warden synth`.
pub fn synth(a: SynthArgs) -> anyhow::Result<()> {
    let opts = SynthOptions {
        shape: a.shape,
        out: a.out,
        dtype: dtype(Some(&a.dtype))?.unwrap_or(DType::F32),
        gguf: a
            .gguf
            .as_deref()
            .map(crate::model::weights::ggml_type::parse_gguf_type)
            .transpose()?,
        gguf_only: a.gguf_only,
        seed: a.seed,
        tie_word_embeddings: a.untied.then_some(false),
    };
    let start = Instant::now();
    let mut report = synth::synth(&opts)?;
    if let Some(kind) = a.adapter {
        let spec = RandomAdapter {
            rank: a.rank,
            scale: a.alpha.unwrap_or(2.0 * a.rank as f64) / a.rank.max(1) as f64,
            targets: a.targets,
            delta_scale: a.delta_scale,
            weight_rms: synth::WEIGHT_RMS,
            seed: opts.seed.wrapping_add(1),
        };
        let modules = random_adapter(&report.config, &spec)?;
        let (format, dir) = match kind {
            AdapterKind::Peft => (AdapterFormat::Peft, opts.out.join("adapter-peft")),
            AdapterKind::Mlx => (AdapterFormat::MlxLm, opts.out.join("adapter-mlx")),
        };
        report.files.extend(write_adapter(
            &dir,
            format,
            &modules,
            a.alpha,
            &opts.out.display().to_string(),
            report.config.num_hidden_layers,
        )?);
    }
    outln!(
        "wrote a {:?} Qwen3 ({} parameters) in {:.1}s:",
        opts.shape,
        report.parameters,
        start.elapsed().as_secs_f64()
    );
    for f in &report.files {
        outln!("  {}", f.display());
    }
    Ok(())
}

/// Runs `warden generate`.
pub fn generate_cmd(a: GenerateArgs) -> anyhow::Result<()> {
    let params = a.sampling.params(GREEDY)?;
    let mut loaded = a.model.load(!a.json)?;
    if let Some(d) = &a.sampling.speculative.draft_model {
        loaded.attach_draft(d, !a.json)?;
    }
    if !a.json {
        eprintln!(
            "loaded {} ({:?}) in {:.2}s",
            loaded.path.display(),
            loaded.format,
            loaded.load_time.as_secs_f64()
        );
    }
    let prompt = if a.chat {
        // One user turn in the run's template (the model's own, or
        // --chat-template); ChatML where the model has none.
        match crate::chat::ChatTemplate::for_run(&loaded.path, loaded.chat_template.as_deref()) {
            Ok(t) => t.render(&crate::chat::RenderRequest {
                messages: &[crate::chat::Message::new("user", a.prompt.clone())],
                tools: &[],
                add_generation_prompt: true,
                enable_thinking: None,
            })?,
            Err(e) => {
                eprintln!("note: {e:#}; wrapping the prompt as ChatML");
                format!(
                    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
                    a.prompt
                )
            }
        }
    } else {
        a.prompt.clone()
    };
    let json = a.json;
    let g = generate(
        &mut loaded,
        &prompt,
        a.max_tokens,
        &params,
        &a.stop,
        |piece| {
            if !json {
                out!("{}", escape(piece, Lines::Keep));
                super::terminal::flush_out();
            }
            true
        },
    )?;
    if json {
        outln!("{}", serde_json::to_string(&g)?);
    } else {
        outln!();
        let t = &g.timings;
        eprintln!(
            "{} prompt tokens ({} reused), prefill {:.1} ms ({:.1} tok/s), first token {:.1} ms, {} decoded at {:.1} tok/s, finish: {:?}",
            g.prompt_tokens.len(),
            t.reused_tokens,
            t.prefill_ms,
            t.prefill_tok_s,
            t.ttft_ms,
            t.decode_tokens,
            t.decode_tok_s,
            g.finish_reason
        );
    }
    Ok(())
}

/// Runs `warden bench`.
pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let speculative = a.speculative.mode()?;
    let mut loaded = a.model.load(!a.json)?;
    if let Some(d) = &a.speculative.draft_model {
        loaded.attach_draft(d, !a.json)?;
    }
    let chosen = kernels::choice();
    let r = decode::bench::bench(
        &mut loaded,
        &BenchOptions {
            prompt_tokens: a.prompt_tokens,
            gen_tokens: a.gen_tokens,
            repeat: a.repeat,
            speculative,
            compare_kernels: a.compare_kernels,
            bandwidth: a.bandwidth,
            progress: !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
    )?;
    let (p, d, rss) = (r.prefill_tok_s, r.decode_tok_s, r.peak_rss_mib);
    let threads = a
        .model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if a.json {
        let mut out = serde_json::json!({
            "model": loaded.path, "format": loaded.format, "load_s": loaded.load_time.as_secs_f64(),
            "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens, "repeat": a.repeat, "threads": threads,
            "pool_threads": candle_core::utils::barrier_pool().n_workers() + 1,
            "prefill_tok_s": p, "decode_tok_s": d, "peak_rss_mib": rss,
        });
        if let Some(BaseFigures {
            prefill_tok_s: bp,
            decode_tok_s: bd,
            adapter_cost_pct: cost,
        }) = r.base
        {
            out["adapters"] = serde_json::json!(loaded.adapters);
            out["base_prefill_tok_s"] = bp.into();
            out["base_decode_tok_s"] = bd.into();
            out["adapter_decode_cost_pct"] = cost.into();
        }
        if let Some((cp, cd)) = r.candle {
            out["kernels"] = format!("{chosen:?}").to_lowercase().into();
            out["candle_prefill_tok_s"] = cp.into();
            out["candle_decode_tok_s"] = cd.into();
        }
        if let Some(Bandwidth {
            weight_bytes_per_token: bytes,
            read_bytes_s: bw,
            limit_tok_s: limit,
        }) = r.bandwidth
        {
            out["weight_bytes_per_token"] = bytes.into();
            out["read_gb_s"] = (bw / 1e9).into();
            out["bandwidth_limit_tok_s"] = limit.into();
        }
        if let Some(Speculated {
            decode_tok_s: ld,
            drafted_tokens: dr,
            accepted_tokens: ac,
        }) = r.speculated
        {
            let mode = mode_name(speculative);
            out["speculative"] = mode.into();
            out[format!("{mode}_decode_tok_s")] = ld.into();
            out[format!("{mode}_speedup")] = (ld / d).into();
            out["drafted_tokens"] = dr.into();
            out["accepted_tokens"] = ac.into();
        }
        outln!("{out}");
    } else {
        outln!("model:    {} ({:?})", loaded.path.display(), loaded.format);
        outln!("load:     {:.2} s", loaded.load_time.as_secs_f64());
        outln!(
            "prefill:  {p:.1} tok/s ({} tokens, median of {})",
            a.prompt_tokens,
            a.repeat
        );
        outln!(
            "decode:   {d:.1} tok/s ({} tokens, median of {})",
            a.gen_tokens,
            a.repeat
        );
        if let Some(BaseFigures {
            prefill_tok_s: bp,
            decode_tok_s: bd,
            adapter_cost_pct: cost,
        }) = r.base
        {
            for ad in &loaded.adapters {
                outln!(
                    "adapter:  {} ({:?}, rank {}, {} modules), unfused",
                    ad.path.display(),
                    ad.format,
                    ad.rank,
                    ad.modules
                );
            }
            outln!(
                "without:  prefill {bp:.1} tok/s, decode {bd:.1} tok/s (same prompts, interleaved)"
            );
            outln!("adapter cost: {cost:.1} % of decode time");
        }
        if let Some(Speculated {
            decode_tok_s: ld,
            drafted_tokens: dr,
            accepted_tokens: ac,
        }) = r.speculated
        {
            outln!(
                "{:<9} decode {ld:.1} tok/s, {:.2}x plain (same prompts, interleaved); {ac} of {dr} drafted tokens accepted",
                format!("{}:", mode_name(speculative)),
                ld / d
            );
        }
        if let Some((cp, cd)) = r.candle {
            outln!(
                "candle:   prefill {cp:.1} tok/s, decode {cd:.1} tok/s with candle's kernels (same prompts, interleaved); warden's: {:.2}x prefill, {:.2}x decode",
                p / cp,
                d / cd
            );
        }
        if let Some(Bandwidth {
            weight_bytes_per_token: bytes,
            read_bytes_s: bw,
            limit_tok_s: limit,
        }) = r.bandwidth
        {
            outln!(
                "memory:   {:.0} MB of weights per token, {:.1} GB/s read: at most {limit:.1} tok/s; decode reaches {:.0} %",
                bytes as f64 / 1e6,
                bw / 1e9,
                100.0 * d / limit
            );
        }
        outln!("peak RSS: {rss:.0} MiB, threads: {threads}");
    }
    Ok(())
}

/// `lookup` or `draft`, as the flag says it.
fn mode_name(s: Speculative) -> &'static str {
    match s {
        Speculative::Off => "off",
        Speculative::Lookup => "lookup",
        Speculative::Draft => "draft",
    }
}
