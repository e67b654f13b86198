//! The decoder-only causal language model (Qwen3, and the Llama and Qwen2
//! families it generalizes to): embedding, decoder blocks, final norm, LM
//! head; and the token ids behind its KV cache, for prefix reuse.

use crate::model::arch::attention::Attention;
use crate::model::arch::block::{Block, Mlp};
use crate::model::arch::config::Qwen3Config;
use crate::model::arch::embedding::Embedding;
use crate::model::arch::kv_cache::KvCache;
use crate::model::arch::linear::Linear;
use crate::model::arch::rope::Rope;
use crate::model::weights::Weights;
use candle_core::{DType, Device, Module, Tensor, D};
use std::sync::Arc;

/// The projections of a block, by their Hugging Face names (what LoRA
/// adapters target).
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// A loaded model (Qwen3, Llama or Qwen2: one decoder, see
/// [`Qwen3Config`]) with its cache.
#[derive(Clone)]
pub struct Qwen3 {
    cfg: Qwen3Config,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    device: Device,
    dtype: DType,
    /// Token ids whose keys and values are in the cache, in order.
    cached: Vec<u32>,
    /// Tokens that end a generation, the end of a turn first.
    stop: Vec<u32>,
}

impl Qwen3 {
    /// Builds the model from `weights`; `on_layer` is told each finished
    /// layer (for progress bars).
    pub fn load(
        cfg: &Qwen3Config,
        weights: &mut Weights,
        dtype: DType,
        device: &Device,
        mut on_layer: impl FnMut(usize),
    ) -> anyhow::Result<Qwen3> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        if !cfg.tie_word_embeddings && !weights.contains("lm_head.weight") {
            anyhow::bail!("the checkpoint has no lm_head.weight but tie_word_embeddings is false");
        }
        // The layer count against the tensors that exist, before anything
        // is sized by it.
        let norm = |i: usize| format!("model.layers.{i}.input_layernorm.weight");
        let n = cfg.num_hidden_layers;
        if !weights.contains(&norm(n - 1)) || weights.contains(&norm(n)) {
            let found = (0..=crate::model::arch::config::MAX_LAYERS)
                .take_while(|i| weights.contains(&norm(*i)))
                .count();
            anyhow::bail!(
                "{}: the config says {n} layers but the checkpoint has {found}: the config does not belong to these weights",
                weights.origin()
            );
        }
        let (embed, tied_head) = super::embedding::Embedding::load(
            weights,
            cfg.vocab_size,
            h,
            dtype,
            cfg.tie_word_embeddings,
        )?;
        let divisors = cfg.rope_divisors();
        let rope = Arc::new(
            Rope::new(
                hd,
                cfg.max_position_embeddings,
                cfg.rope_theta,
                divisors.as_deref(),
                dtype,
                device,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", weights.origin()))?,
        );
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut lin = |n: &str, out: usize, inp: usize| {
                Linear::load(weights, &format!("{p}.{n}.weight"), out, inp, dtype)
            };
            let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
            let mut q_proj = lin("self_attn.q_proj", q, h)?;
            let mut k_proj = lin("self_attn.k_proj", kv, h)?;
            let mut v_proj = lin("self_attn.v_proj", kv, h)?;
            let mut o_proj = lin("self_attn.o_proj", h, q)?;
            let gate_proj = lin("mlp.gate_proj", cfg.intermediate_size, h)?;
            let up_proj = lin("mlp.up_proj", cfg.intermediate_size, h)?;
            let down_proj = lin("mlp.down_proj", h, cfg.intermediate_size)?;
            let mut bias = |n: &str, len: usize| {
                weights.dense(&format!("{p}.self_attn.{n}.bias"), &[len], dtype)
            };
            if cfg.qkv_bias() {
                q_proj.set_bias(bias("q_proj", q)?);
                k_proj.set_bias(bias("k_proj", kv)?);
                v_proj.set_bias(bias("v_proj", kv)?);
            }
            if cfg.o_bias() {
                o_proj.set_bias(bias("o_proj", h)?);
            }
            let mut vec =
                |n: &str, len: usize| weights.dense(&format!("{p}.{n}.weight"), &[len], dtype);
            let qk_norm = if cfg.family.qk_norm() {
                Some((vec("self_attn.q_norm", hd)?, vec("self_attn.k_norm", hd)?))
            } else {
                None
            };
            blocks.push(Block {
                input_norm: vec("input_layernorm", h)?,
                post_attention_norm: vec("post_attention_layernorm", h)?,
                attention: Attention {
                    qk_norm,
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    num_heads: cfg.num_attention_heads,
                    num_kv_heads: cfg.num_key_value_heads,
                    head_dim: hd,
                    eps: cfg.rms_norm_eps,
                    rope: rope.clone(),
                    cache: KvCache::default(),
                },
                mlp: Mlp {
                    gate_proj,
                    up_proj,
                    down_proj,
                },
                eps: cfg.rms_norm_eps as f32,
            });
            on_layer(i);
        }
        let norm = weights.dense("model.norm.weight", &[h], dtype)?;
        let lm_head = match tied_head {
            Some(head) => head,
            None => Linear::load(weights, "lm_head.weight", cfg.vocab_size, h, dtype)?,
        };
        Ok(Qwen3 {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            device: device.clone(),
            dtype,
            cached: vec![],
            stop: vec![
                crate::model::special::IM_END,
                crate::model::special::ENDOFTEXT,
            ],
        })
    }

    /// The projection `module` (one of [`PROJECTIONS`]) of block `layer`.
    pub fn projection(&mut self, layer: usize, module: &str) -> Option<&mut Linear> {
        let b = self.blocks.get_mut(layer)?;
        Some(match module {
            "self_attn.q_proj" => &mut b.attention.q_proj,
            "self_attn.k_proj" => &mut b.attention.k_proj,
            "self_attn.v_proj" => &mut b.attention.v_proj,
            "self_attn.o_proj" => &mut b.attention.o_proj,
            "mlp.gate_proj" => &mut b.mlp.gate_proj,
            "mlp.up_proj" => &mut b.mlp.up_proj,
            "mlp.down_proj" => &mut b.mlp.down_proj,
            _ => return None,
        })
    }

    /// The dtype LoRA factors compute in: f32 on the CPU, the activation
    /// dtype (bf16) on GPUs.
    pub fn lora_dtype(&self) -> DType {
        if self.device.is_cpu() {
            DType::F32
        } else {
            self.dtype
        }
    }

    /// Switches every unfused adapter off or on (to measure its cost side by
    /// side); the cache is cleared, as its keys and values depend on it.
    pub fn set_adapters_active(&mut self, on: bool) {
        for layer in 0..self.blocks.len() {
            for module in PROJECTIONS {
                if let Some(l) = self.projection(layer, module) {
                    l.set_lora_active(on);
                }
            }
        }
        self.clear_cache();
    }

    /// Bytes of weights one decoded token reads: every projection and the
    /// output layer, as stored (the embedding reads one row; norms are
    /// negligible). Divided by the memory's read bandwidth, it bounds decode
    /// speed.
    pub fn weight_bytes_per_token(&self) -> usize {
        let mut n = self.lm_head.weight_bytes();
        for b in &self.blocks {
            let (a, m) = (&b.attention, &b.mlp);
            for l in [
                &a.q_proj,
                &a.k_proj,
                &a.v_proj,
                &a.o_proj,
                &m.gate_proj,
                &m.up_proj,
                &m.down_proj,
            ] {
                n += l.weight_bytes();
            }
        }
        n
    }

    /// Sets the tokens that end a generation (the end of a turn first);
    /// Qwen's `<|im_end|>` and `<|endoftext|>` until a tokenizer says.
    pub fn set_stop_tokens(&mut self, stop: Vec<u32>) {
        if !stop.is_empty() {
            self.stop = stop;
        }
    }

    /// Whether `token` ends a generation.
    pub fn is_stop(&self, token: u32) -> bool {
        self.stop.contains(&token)
    }

    /// The token that ends an assistant's turn (`<|im_end|>`, `<|eot_id|>`).
    pub fn end_of_turn(&self) -> u32 {
        self.stop[0]
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Token ids currently behind the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Keeps only the first `len` cached positions.
    pub fn truncate_cache(&mut self, len: usize) {
        self.cached.truncate(len);
        for b in &mut self.blocks {
            b.attention.cache.truncate(len);
        }
    }

    /// Empties the cache.
    pub fn clear_cache(&mut self) {
        self.truncate_cache(0);
    }

    /// Another handle on the same weights (tensors are shared, not copied)
    /// with an empty cache of its own: one per sequence run at once.
    pub fn share(&self) -> Qwen3 {
        let mut m = self.clone();
        m.clear_cache();
        m
    }

    /// Runs `ids` after the cached tokens and returns logits `(L, vocab)` in
    /// f32 for every new position (`all`) or `(1, vocab)` for the last.
    pub fn forward(&mut self, ids: &[u32], all: bool) -> candle_core::Result<Tensor> {
        let offset = self.cached.len();
        if ids.is_empty() {
            candle_core::bail!("forward needs at least one token");
        }
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary (size {})",
                self.cfg.vocab_size
            );
        }
        let mut x = self.embed.forward(ids, &self.device)?.unsqueeze(0)?;
        for b in &mut self.blocks {
            x = b.forward(&x, offset)?;
        }
        self.cached.extend_from_slice(ids);
        let x = if all {
            x
        } else {
            x.narrow(1, ids.len() - 1, 1)?
        };
        let x =
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.norm, self.cfg.rms_norm_eps as f32)?;
        self.lm_head.forward(&x)?.squeeze(0)?.to_dtype(DType::F32)
    }

    /// Makes the cache hold exactly `prompt`, reusing the longest common
    /// prefix with what is cached and prefilling the rest in chunks of
    /// `chunk` tokens. Returns the last position's logits `(vocab,)` and how
    /// many tokens were reused.
    pub fn prefill(
        &mut self,
        prompt: &[u32],
        chunk: usize,
    ) -> candle_core::Result<(Tensor, usize)> {
        if prompt.is_empty() {
            candle_core::bail!("the prompt is empty");
        }
        let common = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // The last prompt token must be run to get its logits.
        let keep = common.min(prompt.len() - 1);
        self.truncate_cache(keep);
        let mut logits = None;
        for part in prompt[keep..].chunks(chunk.max(1)) {
            logits = Some(self.forward(part, false)?);
        }
        Ok((logits.expect("at least one chunk").squeeze(0)?, keep))
    }

    /// Runs one decoded token; returns its logits `(vocab,)`.
    pub fn step(&mut self, token: u32) -> candle_core::Result<Tensor> {
        self.forward(&[token], false)?.squeeze(0)
    }

    /// Logits over the vocabulary as a Vec (for sampling).
    pub fn to_vec(logits: &Tensor) -> candle_core::Result<Vec<f32>> {
        logits.flatten_all()?.to_vec1::<f32>()
    }

    /// Index of the largest logit.
    pub fn argmax(logits: &Tensor) -> candle_core::Result<u32> {
        logits.flatten_all()?.argmax(D::Minus1)?.to_scalar::<u32>()
    }
}
