//! `warden synth`: randomly initialised Qwen3 checkpoints in the real
//! formats (a Hugging Face snapshot directory and/or a llama.cpp-style GGUF),
//! with the real Qwen3 tokenizer, for tests and benchmarks without
//! downloads. Speed does not depend on weight values.

use crate::model::arch::config::{hf_config, tensor_shapes, Family, Llama3Scaling, Qwen3Config};
use crate::model::checkpoint::tokenizer_files::{TOKENIZER_CONFIG_JSON, TOKENIZER_JSON};
use crate::model::weights::ggml_type::gguf_type_name;
use anyhow::{bail, Context as _};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Vocabulary rows of released Qwen3 checkpoints (the tokenizer has 151669
/// tokens; the matrices are padded).
pub const QWEN3_VOCAB: usize = 151_936;

/// RMS of synthetic matrices: uniform on ±0.04·√3, a 0.04 standard
/// deviation.
pub const WEIGHT_RMS: f64 = 0.04;

/// Which shape to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthShape {
    /// Two layers of width 64 over the real vocabulary; for tests.
    Tiny,
    /// Two layers of width 256: the smallest shape whose rows fit the
    /// 256-wide blocks of K-quants (Q4_K, Q5_K, Q6_K); for tests.
    Small,
    /// Four layers of width 256 over the real vocabulary: the tool caller
    /// `warden finetune` trains from scratch on two CPU cores. Width 256 is
    /// the smallest whose rows fit K-quant blocks, so every quantization of
    /// the fused-model experiment applies to it.
    #[value(name = "tiny-agent")]
    TinyAgent,
    /// Tiny's size as a Llama (no q/k norms, head width from the width);
    /// for tests.
    #[value(name = "tiny-llama")]
    TinyLlama,
    /// TinyLlama with Llama 3's RoPE scaling; for tests.
    #[value(name = "tiny-llama3")]
    TinyLlama3,
    /// Tiny's size as a Qwen2 (biases on q/k/v); for tests.
    #[value(name = "tiny-qwen2")]
    TinyQwen2,
    /// The shape of Qwen/Qwen3-0.6B.
    #[value(name = "qwen3-0.6b")]
    Qwen3_0_6b,
    /// The shape of Qwen/Qwen3-1.7B.
    #[value(name = "qwen3-1.7b")]
    Qwen3_1_7b,
}

impl SynthShape {
    /// The config of this shape.
    pub fn config(self) -> Qwen3Config {
        let base = Qwen3Config {
            vocab_size: QWEN3_VOCAB,
            hidden_size: 1024,
            intermediate_size: 3072,
            num_hidden_layers: 28,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 128,
            max_position_embeddings: 40_960,
            rope_theta: 1_000_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            attention_bias: false,
            family: Family::Qwen3,
            llama3_scaling: None,
            rope_freqs: None,
        };
        match self {
            // head_dim 32 != 64 / 4 on purpose: Qwen3 sets it explicitly.
            SynthShape::Tiny => Qwen3Config {
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 32,
                max_position_embeddings: 4096,
                ..base
            },
            SynthShape::Small => Qwen3Config {
                hidden_size: 256,
                intermediate_size: 512,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 64,
                max_position_embeddings: 4096,
                ..base
            },
            SynthShape::TinyAgent => Qwen3Config {
                hidden_size: 256,
                intermediate_size: 768,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 64,
                max_position_embeddings: 8192,
                ..base
            },
            SynthShape::TinyLlama | SynthShape::TinyLlama3 | SynthShape::TinyQwen2 => Qwen3Config {
                family: if self == SynthShape::TinyQwen2 {
                    Family::Qwen2
                } else {
                    Family::Llama
                },
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 16,
                max_position_embeddings: 4096,
                rope_theta: 100_000.0,
                rms_norm_eps: 1e-5,
                llama3_scaling: (self == SynthShape::TinyLlama3).then_some(Llama3Scaling {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 256,
                }),
                ..base
            },
            SynthShape::Qwen3_0_6b => base,
            SynthShape::Qwen3_1_7b => Qwen3Config {
                hidden_size: 2048,
                intermediate_size: 6144,
                ..base
            },
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Shape of the model.
    pub shape: SynthShape,
    /// Output directory (created).
    pub out: PathBuf,
    /// Dtype of the safetensors weights.
    pub dtype: DType,
    /// Also write `model-<type>.gguf` with 2-D weights in this type.
    pub gguf: Option<GgmlDType>,
    /// Skip the Hugging Face files (GGUF only).
    pub gguf_only: bool,
    /// Seed of the weights.
    pub seed: u64,
    /// Override the shape's tie_word_embeddings.
    pub tie_word_embeddings: Option<bool>,
}

/// Files written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthReport {
    /// The config used.
    pub config: Qwen3Config,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// Parameters in the model.
    pub parameters: usize,
}

/// Writes the checkpoint.
pub fn synth(opts: &SynthOptions) -> anyhow::Result<SynthReport> {
    let mut cfg = opts.shape.config();
    if let Some(t) = opts.tie_word_embeddings {
        cfg.tie_word_embeddings = t;
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut parameters = 0;
    for (name, shape) in tensor_shapes(&cfg) {
        let n: usize = shape.iter().product();
        parameters += n;
        let data: Vec<f32> = if name.ends_with(".bias") {
            (0..n).map(|_| rng.random_range(-0.1f32..0.1)).collect()
        } else if shape.len() == 1 {
            // Norm weights near 1, so that they matter but do not blow up.
            (0..n)
                .map(|_| 1.0 + rng.random_range(-0.1f32..0.1))
                .collect()
        } else {
            let a = 0.02f32 * 3f32.sqrt() * 2.0;
            (0..n).map(|_| rng.random_range(-a..a)).collect()
        };
        tensors.push((name, Tensor::from_vec(data, shape, &Device::Cpu)?));
    }
    let mut files = Vec::new();
    if !opts.gguf_only {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.to_dtype(opts.dtype)?)))
            .collect::<candle_core::Result<_>>()?;
        let st = opts.out.join("model.safetensors");
        crate::outputs::write_with(&st, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))?;
        files.push(st);
        files.push(write(
            &opts.out,
            "config.json",
            &serde_json::to_vec_pretty(&hf_config(&cfg, opts.dtype))?,
        )?);
        files.push(write(
            &opts.out,
            "generation_config.json",
            &serde_json::to_vec_pretty(&json!({
                "bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
                "do_sample": true, "temperature": 0.6, "top_k": 20, "top_p": 0.95
            }))?,
        )?);
        files.push(write(&opts.out, "tokenizer.json", TOKENIZER_JSON)?);
        files.push(write(
            &opts.out,
            "tokenizer_config.json",
            TOKENIZER_CONFIG_JSON,
        )?);
    }
    if let Some(qtype) = opts.gguf {
        let name = format!("model-{}.gguf", gguf_type_name(qtype));
        let path = opts.out.join(name);
        if tensors
            .iter()
            .any(|(_, t)| t.rank() == 2 && t.dims()[1] % qtype.block_size() != 0)
        {
            bail!(
                "cannot write a {qtype:?} GGUF of the {:?} shape: rows of {} are not a multiple of its block size {}; use a larger shape or q8_0/q4_0",
                opts.shape, cfg.hidden_size, qtype.block_size()
            );
        }
        crate::model::checkpoint::gguf_write::write_gguf(
            &path,
            &cfg,
            &tensors,
            qtype,
            &crate::model::checkpoint::tokenizer_files::TokenizerFiles::builtin(),
        )?;
        files.push(path);
    }
    Ok(SynthReport {
        config: cfg,
        files,
        parameters,
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    crate::outputs::write(&p, bytes)?;
    Ok(p)
}
