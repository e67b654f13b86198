//! Qwen3 hyper-parameters, from a Hugging Face `config.json` or GGUF metadata.

use anyhow::{bail, Context as _};
use candle_core::quantized::gguf_file;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;

/// The shape of a dense Qwen3 causal LM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    /// Rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one head; Qwen3 sets it explicitly (it need not be
    /// `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// Longest context the RoPE tables cover.
    pub max_position_embeddings: usize,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Whether the LM head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether q/k/v/o projections have biases (false for released Qwen3).
    #[serde(default)]
    pub attention_bias: bool,
}

/// Most rows in a vocabulary.
pub const MAX_VOCAB: usize = 1 << 22;
/// Widest residual stream.
pub const MAX_WIDTH: usize = 1 << 16;
/// Widest MLP.
pub const MAX_MLP: usize = 1 << 19;
/// Most decoder blocks.
pub const MAX_LAYERS: usize = 1024;
/// Most attention heads (query or key/value).
pub const MAX_HEADS: usize = 1024;
/// Widest head.
pub const MAX_HEAD_DIM: usize = 1024;

/// The fields of `config.json` that say which model it is.
#[derive(Deserialize)]
struct Identity {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    use_sliding_window: bool,
}

impl Qwen3Config {
    /// Reads `config.json`, refusing models that are not dense Qwen3.
    pub fn from_file(path: &Path) -> anyhow::Result<Qwen3Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&text)
            .with_context(|| format!("{} is not a usable Qwen3 config", path.display()))
    }

    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> anyhow::Result<Qwen3Config> {
        let id: Identity = serde_json::from_str(text)?;
        let arch = id
            .model_type
            .clone()
            .or_else(|| id.architectures.first().cloned())
            .unwrap_or_default();
        let is_qwen3 = id.model_type.as_deref() == Some("qwen3")
            || id.architectures.iter().any(|a| a == "Qwen3ForCausalLM");
        if !is_qwen3 {
            bail!("architecture {arch:?} is not supported: warden runs dense Qwen3 models (model_type \"qwen3\", Qwen3ForCausalLM)");
        }
        if let Some(act) = id.hidden_act.as_deref() {
            if act != "silu" {
                bail!("hidden_act {act:?} is not supported (Qwen3 uses \"silu\")");
            }
        }
        if id.use_sliding_window {
            bail!("use_sliding_window = true is not supported");
        }
        let cfg: Qwen3Config = serde_json::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads the `qwen3.*` metadata of a GGUF file.
    pub fn from_gguf(ct: &gguf_file::Content) -> anyhow::Result<Qwen3Config> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "qwen3" {
            bail!("general.architecture is {arch:?}: warden runs dense Qwen3 models (\"qwen3\")");
        }
        let u = |k: &str| -> anyhow::Result<usize> {
            let v = ct
                .metadata
                .get(k)
                .with_context(|| format!("GGUF metadata has no {k}"))?;
            let x = v.to_u32().map(u64::from).or_else(|_| v.to_u64())?;
            usize::try_from(x).with_context(|| format!("{k} = {x} does not fit this machine"))
        };
        let f = |k: &str| -> anyhow::Result<f64> {
            let v = ct
                .metadata
                .get(k)
                .with_context(|| format!("GGUF metadata has no {k}"))?;
            Ok(v.to_f32().map(f64::from).or_else(|_| v.to_f64())?)
        };
        let vocab_size = match ct.metadata.get("tokenizer.ggml.tokens") {
            Some(v) => v.to_vec()?.len(),
            None => ct
                .tensor_infos
                .get("token_embd.weight")
                .and_then(|t| t.shape.dims().first().copied())
                .context("GGUF has neither tokenizer.ggml.tokens nor token_embd.weight")?,
        };
        let cfg = Qwen3Config {
            vocab_size,
            hidden_size: u("qwen3.embedding_length")?,
            intermediate_size: u("qwen3.feed_forward_length")?,
            num_hidden_layers: u("qwen3.block_count")?,
            num_attention_heads: u("qwen3.attention.head_count")?,
            num_key_value_heads: u("qwen3.attention.head_count_kv")?,
            head_dim: u("qwen3.attention.key_length")?,
            max_position_embeddings: u("qwen3.context_length")?,
            rope_theta: f("qwen3.rope.freq_base")?,
            rms_norm_eps: f("qwen3.attention.layer_norm_rms_epsilon")?,
            tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
            attention_bias: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (k, v) in nonzero {
            if v == 0 {
                bail!("{k} must be positive");
            }
        }
        // Bounds far above any released model, far below sizes whose
        // products overflow or whose buffers exhaust memory before a single
        // tensor is read: a model file is untrusted.
        let bounded = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_MLP),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("num_key_value_heads", self.num_key_value_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
        ];
        for (k, v, max) in bounded {
            if v > max {
                bail!("{k} = {v} is past warden's bound of {max}: the file is damaged or not a model warden can run");
            }
        }
        for (k, v) in [
            ("rope_theta", self.rope_theta),
            ("rms_norm_eps", self.rms_norm_eps),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{k} = {v} must be a positive number");
            }
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            bail!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if self.head_dim % 2 != 0 {
            bail!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim
            );
        }
        Ok(())
    }
}

/// The tensors of a Qwen3 checkpoint with their shapes, by HF name.
pub fn tensor_shapes(cfg: &Qwen3Config) -> Vec<(String, Vec<usize>)> {
    let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let mut v = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("input_layernorm", vec![h]),
            ("post_attention_layernorm", vec![h]),
            ("self_attn.q_proj", vec![cfg.num_attention_heads * hd, h]),
            ("self_attn.k_proj", vec![cfg.num_key_value_heads * hd, h]),
            ("self_attn.v_proj", vec![cfg.num_key_value_heads * hd, h]),
            ("self_attn.o_proj", vec![h, cfg.num_attention_heads * hd]),
            ("self_attn.q_norm", vec![hd]),
            ("self_attn.k_norm", vec![hd]),
            ("mlp.gate_proj", vec![i, h]),
            ("mlp.up_proj", vec![i, h]),
            ("mlp.down_proj", vec![h, i]),
        ] {
            v.push((format!("{p}.{n}.weight"), s));
        }
    }
    v.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        v.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    v
}

/// The `config.json` of a Qwen3 of shape `cfg` stored in `dtype`.
pub fn hf_config(cfg: &Qwen3Config, dtype: DType) -> serde_json::Value {
    json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "attention_bias": cfg.attention_bias,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "max_window_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_scaling": null,
        "rope_theta": cfg.rope_theta,
        "sliding_window": null,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": match dtype { DType::BF16 => "bfloat16", DType::F16 => "float16", _ => "float32" },
        "transformers_version": "4.51.0",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": cfg.vocab_size,
    })
}
