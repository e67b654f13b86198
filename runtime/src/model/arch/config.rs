//! The decoder's hyper-parameters, from a Hugging Face `config.json` or GGUF
//! metadata: one shape for the three families warden runs — Qwen3 (per-head
//! q/k RMS norms), Llama (Llama 2/3.x, SmolLM; optional Llama-3 RoPE
//! scaling) and Qwen2/2.5 (biases on q/k/v).

use anyhow::{bail, Context as _};
use candle_core::quantized::gguf_file;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;

/// Which decoder family a checkpoint is; they differ only in the details
/// [`Qwen3Config`] records (q/k norms, biases, RoPE scaling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Qwen3: RMS norms on each query and key head.
    #[default]
    Qwen3,
    /// Llama 2/3.x and its kin (SmolLM2): no q/k norms.
    Llama,
    /// Qwen2 and Qwen2.5: biases on the q/k/v projections.
    Qwen2,
}

impl Family {
    /// The name used by `config.json`'s `model_type` and GGUF's
    /// `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Qwen3 => "qwen3",
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
        }
    }

    /// The family named `name` (`model_type`, `general.architecture`).
    pub fn from_name(name: &str) -> Option<Family> {
        match name {
            "qwen3" => Some(Family::Qwen3),
            "llama" => Some(Family::Llama),
            "qwen2" => Some(Family::Qwen2),
            _ => None,
        }
    }

    /// Whether each query and key head is RMS-normalized before RoPE.
    pub fn qk_norm(self) -> bool {
        self == Family::Qwen3
    }
}

/// Llama 3.x's RoPE scaling (`rope_scaling` with `rope_type` "llama3"):
/// low frequencies divided by `factor`, high ones kept, a smooth blend
/// between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    /// How much the context was stretched.
    pub factor: f64,
    /// Wavelengths longer than `original/low_freq_factor` are scaled.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original/high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was pretrained with.
    pub original_max_position_embeddings: usize,
}

impl Llama3Scaling {
    /// The divisor of each of `head_dim / 2` RoPE frequencies (llama.cpp's
    /// `rope_freqs`).
    pub fn divisors(&self, head_dim: usize, theta: f64) -> Vec<f32> {
        let old = self.original_max_position_embeddings as f64;
        let (low_wl, high_wl) = (old / self.low_freq_factor, old / self.high_freq_factor);
        (0..head_dim / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wl {
                    1.0
                } else if wavelen > low_wl {
                    self.factor as f32
                } else {
                    let s = (old / wavelen - self.low_freq_factor)
                        / (self.high_freq_factor - self.low_freq_factor);
                    (1.0 / ((1.0 - s) / self.factor + s)) as f32
                }
            })
            .collect()
    }
}

/// The shape of a dense decoder-only causal LM (Qwen3, Llama or Qwen2; the
/// name is Qwen3's, which came first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    /// The family (from `model_type` or `general.architecture`).
    #[serde(default)]
    pub family: Family,
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
    /// Whether q/k/v/o projections have biases (false for released Qwen3
    /// and Llama; Qwen2 has them on q/k/v only, whatever this says).
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama 3.x RoPE scaling, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llama3_scaling: Option<Llama3Scaling>,
    /// RoPE frequency divisors as a GGUF stores them (`rope_freqs.weight`,
    /// Llama 3), read at open.
    #[serde(skip)]
    pub rope_freqs: Option<Vec<f32>>,
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
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    hidden_size: usize,
    #[serde(default)]
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
}

/// What `config.json` leaves to each family's defaults.
#[derive(Serialize)]
struct Defaults {
    head_dim: usize,
    num_key_value_heads: usize,
    rope_theta: f64,
}

impl Qwen3Config {
    /// Reads `config.json`, refusing models that are not a dense Qwen3,
    /// Llama or Qwen2.
    pub fn from_file(path: &Path) -> anyhow::Result<Qwen3Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&text)
            .with_context(|| format!("{} is not a usable model config", path.display()))
    }

    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> anyhow::Result<Qwen3Config> {
        let id: Identity = serde_json::from_str(text)?;
        let arch = id
            .model_type
            .clone()
            .or_else(|| id.architectures.first().cloned())
            .unwrap_or_default();
        let by_class = |c: &str| id.architectures.iter().any(|a| a == c);
        let family = match id.model_type.as_deref().and_then(Family::from_name) {
            Some(f) => f,
            None if by_class("Qwen3ForCausalLM") => Family::Qwen3,
            None if by_class("LlamaForCausalLM") => Family::Llama,
            None if by_class("Qwen2ForCausalLM") => Family::Qwen2,
            None => bail!("architecture {arch:?} is not supported: warden runs dense Qwen3, Llama and Qwen2 models (model_type \"qwen3\", \"llama\" or \"qwen2\")"),
        };
        if let Some(act) = id.hidden_act.as_deref() {
            if act != "silu" {
                bail!("hidden_act {act:?} is not supported (these families use \"silu\")");
            }
        }
        if id.use_sliding_window {
            bail!("use_sliding_window = true is not supported");
        }
        if id.mlp_bias {
            bail!("mlp_bias = true is not supported");
        }
        let llama3_scaling = match id.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            None => None,
            Some(v) => Some(llama3_scaling(v)?),
        };
        // Llama configs may leave head_dim, the kv heads and theta out.
        let heads = id.num_attention_heads.max(1);
        let defaults = serde_json::to_value(Defaults {
            head_dim: id.head_dim.unwrap_or(id.hidden_size / heads),
            num_key_value_heads: id.num_key_value_heads.unwrap_or(heads),
            rope_theta: 10_000.0,
        })?;
        let mut v: serde_json::Value = serde_json::from_str(text)?;
        if let (Some(obj), serde_json::Value::Object(d)) = (v.as_object_mut(), defaults) {
            for (k, x) in d {
                if obj.get(&k).is_none_or(|o| o.is_null()) {
                    obj.insert(k, x);
                }
            }
            obj.remove("family");
        }
        let mut cfg: Qwen3Config = serde_json::from_value(v)?;
        cfg.family = family;
        cfg.llama3_scaling = llama3_scaling;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The divisor of each RoPE frequency, when the model scales them.
    pub fn rope_divisors(&self) -> Option<Vec<f32>> {
        match (&self.rope_freqs, &self.llama3_scaling) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(s)) => Some(s.divisors(self.head_dim, self.rope_theta)),
            (None, None) => None,
        }
    }

    /// Whether the q/k/v projections have biases.
    pub fn qkv_bias(&self) -> bool {
        self.family == Family::Qwen2 || self.attention_bias
    }

    /// Whether the output projection has a bias.
    pub fn o_bias(&self) -> bool {
        self.family != Family::Qwen2 && self.attention_bias
    }

    /// Reads the `{arch}.*` metadata of a GGUF file (`general.architecture`
    /// `qwen3`, `llama` or `qwen2`).
    pub fn from_gguf(ct: &gguf_file::Content) -> anyhow::Result<Qwen3Config> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        let Some(family) = Family::from_name(&arch) else {
            bail!("general.architecture is {arch:?}: warden runs dense Qwen3, Llama and Qwen2 models (\"qwen3\", \"llama\", \"qwen2\")");
        };
        let key = |k: &str| format!("{arch}.{k}");
        let u_opt = |k: &str| -> anyhow::Result<Option<usize>> {
            let k = key(k);
            let Some(v) = ct.metadata.get(&k) else {
                return Ok(None);
            };
            let x = v.to_u32().map(u64::from).or_else(|_| v.to_u64())?;
            Ok(Some(usize::try_from(x).with_context(|| {
                format!("{k} = {x} does not fit this machine")
            })?))
        };
        let u = |k: &str| -> anyhow::Result<usize> {
            u_opt(k)?.with_context(|| format!("GGUF metadata has no {}", key(k)))
        };
        let f_opt = |k: &str| -> anyhow::Result<Option<f64>> {
            match ct.metadata.get(&key(k)) {
                None => Ok(None),
                Some(v) => Ok(Some(v.to_f32().map(f64::from).or_else(|_| v.to_f64())?)),
            }
        };
        let f = |k: &str| -> anyhow::Result<f64> {
            f_opt(k)?.with_context(|| format!("GGUF metadata has no {}", key(k)))
        };
        if let Some(v) = ct.metadata.get(&key("rope.scaling.type")) {
            let t = v.to_string().cloned().unwrap_or_default();
            if t != "none" {
                bail!("{} = {t:?} is not supported (warden reads Llama 3's rope_freqs tensor, or no scaling)", key("rope.scaling.type"));
            }
        }
        let vocab_size = match ct.metadata.get("tokenizer.ggml.tokens") {
            Some(v) => v.to_vec()?.len(),
            None => ct
                .tensor_infos
                .get("token_embd.weight")
                .and_then(|t| t.shape.dims().first().copied())
                .context("GGUF has neither tokenizer.ggml.tokens nor token_embd.weight")?,
        };
        let hidden_size = u("embedding_length")?;
        let num_attention_heads = u("attention.head_count")?;
        let cfg = Qwen3Config {
            family,
            vocab_size,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_hidden_layers: u("block_count")?,
            num_attention_heads,
            num_key_value_heads: u_opt("attention.head_count_kv")?.unwrap_or(num_attention_heads),
            head_dim: match u_opt("attention.key_length")? {
                Some(d) => d,
                None => hidden_size / num_attention_heads.max(1),
            },
            max_position_embeddings: u("context_length")?,
            rope_theta: f_opt("rope.freq_base")?.unwrap_or(10_000.0),
            rms_norm_eps: f("attention.layer_norm_rms_epsilon")?,
            tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
            attention_bias: family != Family::Qwen2
                && ct.tensor_infos.contains_key("blk.0.attn_output.bias"),
            // Llama 3 GGUFs carry the scaling as the rope_freqs tensor,
            // read by the checkpoint.
            llama3_scaling: None,
            rope_freqs: None,
        };
        cfg.validate()?;
        if let Some(rot) = u_opt("rope.dimension_count")? {
            if rot != cfg.head_dim {
                bail!(
                    "{} = {rot} rotates part of each head of {}: partial rotary embeddings are not supported",
                    key("rope.dimension_count"),
                    cfg.head_dim
                );
            }
        }
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

/// `rope_scaling` of a Llama `config.json`: type `llama3` (or none).
fn llama3_scaling(v: &serde_json::Value) -> anyhow::Result<Llama3Scaling> {
    let kind = v["rope_type"]
        .as_str()
        .or_else(|| v["type"].as_str())
        .unwrap_or("");
    if kind != "llama3" {
        bail!("rope_scaling of type {kind:?} is not supported (warden runs \"llama3\" scaling, or none)");
    }
    let s: Llama3Scaling = serde_json::from_value(v.clone())
        .context("rope_scaling of type \"llama3\" needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")?;
    let ok = |x: f64| x.is_finite() && x > 0.0;
    if !(ok(s.factor) && ok(s.low_freq_factor) && ok(s.high_freq_factor))
        || s.high_freq_factor <= s.low_freq_factor
        || s.original_max_position_embeddings == 0
    {
        bail!("rope_scaling: factors must be positive with high_freq_factor > low_freq_factor, and original_max_position_embeddings positive");
    }
    Ok(s)
}

/// The tensors of a checkpoint with their shapes, by HF name.
pub fn tensor_shapes(cfg: &Qwen3Config) -> Vec<(String, Vec<usize>)> {
    let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let mut v = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut names = vec![
            ("input_layernorm", vec![h]),
            ("post_attention_layernorm", vec![h]),
            ("self_attn.q_proj", vec![cfg.num_attention_heads * hd, h]),
            ("self_attn.k_proj", vec![cfg.num_key_value_heads * hd, h]),
            ("self_attn.v_proj", vec![cfg.num_key_value_heads * hd, h]),
            ("self_attn.o_proj", vec![h, cfg.num_attention_heads * hd]),
        ];
        if cfg.family.qk_norm() {
            names.push(("self_attn.q_norm", vec![hd]));
            names.push(("self_attn.k_norm", vec![hd]));
        }
        names.extend([
            ("mlp.gate_proj", vec![i, h]),
            ("mlp.up_proj", vec![i, h]),
            ("mlp.down_proj", vec![h, i]),
        ]);
        for (n, s) in names {
            v.push((format!("{p}.{n}.weight"), s));
        }
        let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        if cfg.qkv_bias() {
            for (n, len) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                v.push((format!("{p}.self_attn.{n}.bias"), vec![len]));
            }
        }
        if cfg.o_bias() {
            v.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
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
    let class = match cfg.family {
        Family::Qwen3 => "Qwen3ForCausalLM",
        Family::Llama => "LlamaForCausalLM",
        Family::Qwen2 => "Qwen2ForCausalLM",
    };
    let mut v = json!({
        "architectures": [class],
        "model_type": cfg.family.name(),
        "attention_bias": cfg.attention_bias,
        "attention_dropout": 0.0,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_scaling": cfg.llama3_scaling.map(|s| json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        })),
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": match dtype { DType::BF16 => "bfloat16", DType::F16 => "float16", _ => "float32" },
        "transformers_version": "4.51.0",
        "use_cache": true,
        "vocab_size": cfg.vocab_size,
    });
    if cfg.family != Family::Llama {
        // Qwen's own token ids and sliding-window fields.
        for (k, x) in [
            ("bos_token_id", json!(151643)),
            ("eos_token_id", json!(151645)),
            ("max_window_layers", json!(cfg.num_hidden_layers)),
            ("sliding_window", json!(null)),
            ("use_sliding_window", json!(false)),
        ] {
            v[k] = x;
        }
    } else {
        v["mlp_bias"] = json!(false);
    }
    v
}
