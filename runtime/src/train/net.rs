//! Qwen3 written for training: the same architecture as `model::qwen3`
//! (pre-norm blocks, per-head q/k RMSNorm, rotate-half RoPE, grouped-query
//! attention, SwiGLU, tied or separate head), built only from candle ops
//! that have a backward pass, over one whole sequence at a time.
//!
//! Inference keeps its fused kernels (candle's RMSNorm and RoPE ops, flash
//! attention, quantized matmuls); none of those has a gradient, so training
//! cannot share them. `tests` checks that both give the same logits.
//!
//! Parameters are plain tensors (frozen) or [`Var`]s (trained): the whole
//! model with `--full`, else LoRA `A`/`B` pairs on the chosen projections.

use crate::model::adapter::{module_shape, LoraWeights, MODULES};
use crate::model::config::Qwen3Config;
use anyhow::{bail, Context as _};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A trained LoRA pair on one projection.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Decoder block.
    pub layer: usize,
    /// One of `MODULES`.
    pub module: &'static str,
    /// `(r, in)`.
    pub a: Var,
    /// `(out, r)`.
    pub b: Var,
    /// `s` in `y = W·x + s·B(A·x)`.
    pub scale: f64,
}

/// Qwen3 with trainable parameters.
pub struct TrainNet {
    cfg: Qwen3Config,
    /// Every base tensor by Hugging Face name (the `Var`'s tensor when trained).
    weights: HashMap<String, Tensor>,
    /// Whole-model training: every base tensor, by name.
    full: Vec<(String, Var)>,
    /// LoRA training: `model.layers.N.<module>` → pair.
    lora: HashMap<String, LoraPair>,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// What to train.
#[derive(Debug, Clone)]
pub enum Trainable {
    /// Every weight of the model.
    Full,
    /// LoRA pairs of rank `rank` and scale `alpha / rank` on `targets`
    /// (entries of `MODULES`) of every layer; `A` drawn as PEFT does
    /// (Kaiming-uniform, bound `1/√in`), `B` zero, from `seed`.
    Lora {
        /// Rank.
        rank: usize,
        /// `lora_alpha`.
        alpha: f64,
        /// Projections adapted.
        targets: Vec<&'static str>,
        /// Seed of `A`.
        seed: u64,
    },
}

impl TrainNet {
    /// Builds the net from dense f32 `tensors` (by Hugging Face name) on
    /// `device`, with `what` trainable, for sequences up to `max_len`.
    pub fn new(
        cfg: &Qwen3Config,
        tensors: Vec<(String, Tensor)>,
        what: &Trainable,
        max_len: usize,
        device: &Device,
    ) -> anyhow::Result<TrainNet> {
        if cfg.attention_bias {
            bail!("attention_bias = true is not supported for training");
        }
        let mut weights = HashMap::new();
        let mut full = Vec::new();
        for (name, t) in tensors {
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            let t = if matches!(what, Trainable::Full) {
                let v = Var::from_tensor(&t)?;
                full.push((name.clone(), v.clone()));
                v.as_tensor().clone()
            } else {
                t
            };
            weights.insert(name, t);
        }
        let mut lora = HashMap::new();
        if let Trainable::Lora {
            rank,
            alpha,
            targets,
            seed,
        } = what
        {
            if *rank == 0 {
                bail!("--lora-rank must be at least 1");
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
            for layer in 0..cfg.num_hidden_layers {
                for &module in MODULES.iter().filter(|m| targets.contains(m)) {
                    let (out, inp) = module_shape(cfg, module).expect("known module");
                    let bound = 1.0 / (inp as f32).sqrt();
                    let a: Vec<f32> = (0..rank * inp)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect();
                    let a = Var::from_tensor(&Tensor::from_vec(a, (*rank, inp), device)?)?;
                    let b = Var::zeros((out, *rank), DType::F32, device)?;
                    let name = format!("model.layers.{layer}.{module}");
                    lora.insert(
                        name,
                        LoraPair {
                            layer,
                            module,
                            a,
                            b,
                            scale: alpha / *rank as f64,
                        },
                    );
                }
            }
        }
        let (cos, sin) = rope_tables(cfg, max_len, device)?;
        let net = TrainNet {
            cfg: cfg.clone(),
            weights,
            full,
            lora,
            cos,
            sin,
            device: device.clone(),
        };
        for (name, shape) in crate::model::synth::tensor_shapes(cfg) {
            let t = net
                .weights
                .get(&name)
                .with_context(|| format!("the base has no {name}"))?;
            if t.dims() != shape.as_slice() {
                bail!("{name} is {:?}, expected {shape:?}", t.dims());
            }
        }
        Ok(net)
    }

    /// The model's shape.
    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    /// Every trained parameter with a stable name (sorted), for the
    /// optimizer and checkpoints.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self.full.clone();
        for (name, p) in &self.lora {
            v.push((format!("{name}.lora_A"), p.a.clone()));
            v.push((format!("{name}.lora_B"), p.b.clone()));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// How many numbers are trained.
    pub fn trainable_count(&self) -> usize {
        self.trainable().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The LoRA pairs as adapter weights on the CPU, in layer and module order.
    pub fn lora_weights(&self) -> anyhow::Result<Vec<LoraWeights>> {
        let mut v: Vec<&LoraPair> = self.lora.values().collect();
        v.sort_by_key(|p| (p.layer, MODULES.iter().position(|m| *m == p.module)));
        v.into_iter()
            .map(|p| {
                Ok(LoraWeights {
                    layer: p.layer,
                    module: p.module,
                    a: p.a.as_tensor().to_device(&Device::Cpu)?,
                    b: p.b.as_tensor().to_device(&Device::Cpu)?,
                    scale: p.scale,
                })
            })
            .collect()
    }

    /// Every base tensor (trained or not), f32 on the CPU, in checkpoint order.
    pub fn dense_tensors(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        crate::model::synth::tensor_shapes(&self.cfg)
            .into_iter()
            .map(|(name, _)| Ok((name.clone(), self.weights[&name].to_device(&Device::Cpu)?)))
            .collect()
    }

    fn w(&self, name: &str) -> &Tensor {
        &self.weights[name]
    }

    /// `x · Wᵀ (+ s·(x·Aᵀ)·Bᵀ)` for projection `name` (`model.layers.N.<module>`).
    fn linear(&self, name: &str, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.w(&format!("{name}.weight")).t()?)?;
        match self.lora.get(name) {
            None => Ok(y),
            Some(p) => {
                let d = x.matmul(&p.a.as_tensor().t()?)?.matmul(&p.b.as_tensor().t()?)?;
                y + (d * p.scale)?
            }
        }
    }

    /// Logits `(positions.len(), vocab)` at `positions` of the sequence `ids`
    /// (each predicts the token after it).
    pub fn forward(&self, ids: &[u32], positions: &[u32]) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (l, hd) = (ids.len(), cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let eps = cfg.rms_norm_eps;
        if l > self.cos.dim(0)? {
            candle_core::bail!("a sequence of {l} tokens is longer than the RoPE tables");
        }
        let ids_t = Tensor::new(ids, &self.device)?;
        let mut x = self.w("model.embed_tokens.weight").index_select(&ids_t, 0)?;
        let cos = self.cos.narrow(0, 0, l)?;
        let sin = self.sin.narrow(0, 0, l)?;
        let mask = causal_mask(l, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let h = rms_norm(&x, self.w(&format!("{p}.input_layernorm.weight")), eps)?;
            let heads = |t: Tensor, n: usize, norm: &str| -> candle_core::Result<Tensor> {
                // (L, n·D) -> (1, n, L, D), per-head RMSNorm, RoPE
                let t = t.reshape((l, n, hd))?;
                let t = rms_norm(&t, self.w(&format!("{p}.self_attn.{norm}.weight")), eps)?;
                let t = t.transpose(0, 1)?.unsqueeze(0)?.contiguous()?;
                candle_nn::rotary_emb::rope_slow(&t, &cos, &sin)
            };
            let q = heads(self.linear(&format!("{p}.self_attn.q_proj"), &h)?, nh, "q_norm")?;
            let k = heads(self.linear(&format!("{p}.self_attn.k_proj"), &h)?, nkv, "k_norm")?;
            let v = self
                .linear(&format!("{p}.self_attn.v_proj"), &h)?
                .reshape((l, nkv, hd))?
                .transpose(0, 1)?
                .unsqueeze(0)?;
            let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let ctx = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
            let ctx = ctx.squeeze(0)?.transpose(0, 1)?.reshape((l, nh * hd))?;
            x = (x + self.linear(&format!("{p}.self_attn.o_proj"), &ctx)?)?;
            let h = rms_norm(&x, self.w(&format!("{p}.post_attention_layernorm.weight")), eps)?;
            let gate = self.linear(&format!("{p}.mlp.gate_proj"), &h)?;
            let up = self.linear(&format!("{p}.mlp.up_proj"), &h)?;
            let act = (candle_nn::Activation::Silu.forward(&gate)? * up)?;
            x = (x + self.linear(&format!("{p}.mlp.down_proj"), &act)?)?;
        }
        let pos = Tensor::new(positions, &self.device)?;
        let x = x.index_select(&pos, 0)?;
        let x = rms_norm(&x, self.w("model.norm.weight"), eps)?;
        let head = if cfg.tie_word_embeddings {
            self.w("model.embed_tokens.weight")
        } else {
            self.w("lm_head.weight")
        };
        x.matmul(&head.t()?)
    }

    /// Summed cross-entropy (natural log) of the target tokens of `ids`:
    /// every token at index ≥ `prompt_len` predicted from the one before.
    pub fn loss_sum(&self, ids: &[u32], prompt_len: usize) -> candle_core::Result<Tensor> {
        if prompt_len == 0 || prompt_len >= ids.len() {
            candle_core::bail!("an example needs a prompt and at least one target token");
        }
        let positions: Vec<u32> = (prompt_len as u32 - 1..ids.len() as u32 - 1).collect();
        let targets = Tensor::new(&ids[prompt_len..], &self.device)?;
        let logits = self.forward(ids, &positions)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        logp.gather(&targets.unsqueeze(1)?, 1)?.sum_all()?.neg()
    }
}

/// `x / rms(x) · w` over the last dimension, from differentiable ops.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// `(1, kv, L, D)` → `(1, kv·n, L, D)`, each key/value head serving `n` query heads.
fn repeat_kv(t: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    if n == 1 {
        return Ok(t.clone());
    }
    let (b, kv, l, d) = t.dims4()?;
    Tensor::cat(&vec![t; n], 2)?.reshape((b, kv * n, l, d))
}

/// `(L, L)` additive mask: 0 on and below the diagonal, a large negative above.
fn causal_mask(l: usize, device: &Device) -> candle_core::Result<Tensor> {
    let m: Vec<f32> = (0..l)
        .flat_map(|i| (0..l).map(move |j| if j > i { -1e9 } else { 0.0 }))
        .collect();
    Tensor::from_vec(m, (l, l), device)
}

/// RoPE cos/sin tables `(max_len, D/2)` as `model::rope` computes them.
fn rope_tables(cfg: &Qwen3Config, max_len: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let hd = cfg.head_dim;
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| (1.0 / cfg.rope_theta.powf(2.0 * i as f64 / hd as f64)) as f32)
        .collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
    let pos = Tensor::arange(0u32, max_len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_len, 1))?;
    let f = pos.matmul(&inv)?;
    Ok((f.cos()?, f.sin()?))
}

#[cfg(test)]
mod tests;
