//! The decoder written for training: the same architecture as
//! `model::arch::qwen3` (pre-norm blocks, per-head q/k RMSNorm for Qwen3,
//! q/k/v biases for Qwen2, rotate-half RoPE with Llama 3's scaling,
//! grouped-query attention, SwiGLU, tied or separate head), built only from candle ops
//! that have a backward pass, over one whole sequence at a time.
//!
//! Inference keeps its fused kernels (candle's RMSNorm and RoPE ops, flash
//! attention, quantized matmuls); none of those has a gradient, so training
//! cannot share them. `tests` checks that both give the same logits.
//!
//! Parameters are plain tensors (frozen) or [`Var`]s (trained): the whole
//! model with `--full`, else LoRA `A`/`B` pairs on the chosen projections.

use crate::model::adapter::{module_shape, LoraWeights, MODULES};
use crate::model::arch::config::Qwen3Config;
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
    /// When set, the loss's softmax runs over these tokens only.
    output_vocab: Option<OutputVocab>,
}

/// The tokens a restricted softmax runs over (see [`TrainNet::restrict_output`]).
struct OutputVocab {
    /// Token ids, ascending, as a `(S,)` tensor for `index_select`.
    ids: Tensor,
    /// Full-vocabulary id → index in `ids` (`u32::MAX` outside it).
    index: Vec<u32>,
    /// Trained matrices held compact (only the rows of `ids`), by name, with
    /// the whole matrix they were taken from.
    originals: HashMap<String, Tensor>,
}

impl OutputVocab {
    /// `ids` as rows of the compact matrices.
    fn rows(&self, ids: &[u32]) -> candle_core::Result<Vec<u32>> {
        ids.iter()
            .map(|&t| match self.index.get(t as usize) {
                Some(&i) if i != u32::MAX => Ok(i),
                _ => candle_core::bail!("token {t} is outside the restricted output vocabulary"),
            })
            .collect()
    }
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
        let rope = crate::model::arch::rope::Rope::new(
            cfg.head_dim,
            max_len,
            cfg.rope_theta,
            cfg.rope_divisors().as_deref(),
            DType::F32,
            device,
        )?;
        let (cos, sin) = (rope.tables().0.clone(), rope.tables().1.clone());
        let net = TrainNet {
            cfg: cfg.clone(),
            weights,
            full,
            lora,
            cos,
            sin,
            device: device.clone(),
            output_vocab: None,
        };
        for (name, shape) in crate::model::arch::config::tensor_shapes(cfg) {
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

    /// Makes the loss's softmax run over `tokens` only (sampled-softmax
    /// training): the LM head is applied to those rows of the output matrix,
    /// so a step costs `tokens.len() / vocab` of the full head. Every token
    /// of the examples (inputs and targets) must then be in `tokens`.
    ///
    /// When the embedding (and a separate head) is trained, only its rows
    /// for `tokens` are: they become a compact `(tokens, hidden)` parameter
    /// (so the optimizer and the gradients no longer touch all 151,936 rows
    /// every step), and [`Self::dense_tensors`] writes them back into the
    /// whole matrix, every other row as it was. Logits at inference are over
    /// the whole vocabulary as ever.
    pub fn restrict_output(&mut self, tokens: &[u32]) -> anyhow::Result<()> {
        let v = self.cfg.vocab_size;
        let mut ids: Vec<u32> = tokens.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= v) {
            bail!("token {bad} is outside the vocabulary ({v})");
        }
        if ids.is_empty() {
            bail!("a restricted output vocabulary needs at least one token");
        }
        if self.output_vocab.is_some() {
            bail!("the output vocabulary is already restricted");
        }
        let mut index = vec![u32::MAX; v];
        for (i, &t) in ids.iter().enumerate() {
            index[t as usize] = i as u32;
        }
        let n = ids.len();
        let rows = Tensor::from_vec(ids, n, &self.device)?;
        let mut originals = HashMap::new();
        for name in ["model.embed_tokens.weight", "lm_head.weight"] {
            let Some(pos) = self.full.iter().position(|(k, _)| k == name) else {
                continue;
            };
            let whole = self.weights[name].detach();
            let compact = Var::from_tensor(&whole.index_select(&rows, 0)?)?;
            self.weights
                .insert(name.to_string(), compact.as_tensor().clone());
            self.full[pos].1 = compact;
            originals.insert(name.to_string(), whole);
        }
        self.output_vocab = Some(OutputVocab {
            ids: rows,
            index,
            originals,
        });
        Ok(())
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
        crate::model::arch::config::tensor_shapes(&self.cfg)
            .into_iter()
            .map(|(name, _)| Ok((name.clone(), self.dense(&name)?.to_device(&Device::Cpu)?)))
            .collect()
    }

    /// Base tensor `name` whole: a compact matrix's trained rows put back
    /// into the matrix it was taken from (those rows exactly the trained
    /// values, every other row as it was).
    fn dense(&self, name: &str) -> candle_core::Result<Tensor> {
        let t = &self.weights[name];
        let Some((o, whole)) = self
            .output_vocab
            .as_ref()
            .and_then(|o| Some((o, o.originals.get(name)?)))
        else {
            return Ok(t.clone());
        };
        // Zero the trained rows (× 0; every other row × 1, unchanged), then
        // add the trained values into them.
        let mut keep = vec![1f32; whole.dim(0)?];
        for &i in &o.ids.to_vec1::<u32>()? {
            keep[i as usize] = 0.0;
        }
        let keep = Tensor::from_vec(keep, (whole.dim(0)?, 1), whole.device())?;
        whole
            .broadcast_mul(&keep)?
            .index_add(&o.ids, &t.detach(), 0)
    }

    /// The output matrix: the embedding when tied, else `lm_head`.
    fn head_name(&self) -> &'static str {
        if self.cfg.tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        }
    }

    fn w(&self, name: &str) -> &Tensor {
        &self.weights[name]
    }

    /// `x · Wᵀ (+ b) (+ s·(x·Aᵀ)·Bᵀ)` for projection `name`
    /// (`model.layers.N.<module>`; Qwen2's q/k/v have biases).
    fn linear(&self, name: &str, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.w(&format!("{name}.weight")).t()?)?;
        let y = match self.weights.get(&format!("{name}.bias")) {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match self.lora.get(name) {
            None => Ok(y),
            Some(p) => {
                let d = x
                    .matmul(&p.a.as_tensor().t()?)?
                    .matmul(&p.b.as_tensor().t()?)?;
                y + (d * p.scale)?
            }
        }
    }

    /// Logits `(positions.len(), vocab)` at `positions` of the sequence `ids`
    /// (each predicts the token after it).
    pub fn forward(&self, ids: &[u32], positions: &[u32]) -> candle_core::Result<Tensor> {
        let x = self.embed(ids)?;
        let (x, _) = self.body(&x, 0, None)?;
        let x = x.index_select(&Tensor::new(positions, &self.device)?, 0)?;
        let x = rms_norm(&x, self.w("model.norm.weight"), self.cfg.rms_norm_eps)?;
        x.matmul(&self.dense(self.head_name())?.t()?)
    }

    /// Summed cross-entropy (natural log) of the target tokens of every
    /// example `(ids, prompt_len)`: each token at index ≥ `prompt_len`
    /// predicted from the one before.
    ///
    /// The examples' longest common prefix (the system prompt and the tools,
    /// in a session's conversations) runs through the blocks once; each
    /// example's rest attends to its keys and values, so gradients from all
    /// examples meet there. All target positions share one pass through the
    /// LM head, so the `(vocab, hidden)` matrices get one gradient per step.
    pub fn loss_sum(&self, batch: &[(&[u32], usize)]) -> candle_core::Result<Tensor> {
        let plan = Plan::of(batch)?;
        let prefix = if plan.shared > 0 {
            Some(
                self.body(&self.embed(&batch[0].0[..plan.shared])?, 0, None)?
                    .1,
            )
        } else {
            None
        };
        let x = self.embed(&plan.rests)?;
        let (x, _) = self.body_batch(&x, batch.len(), plan.shared, prefix.as_deref())?;
        self.loss_of(&x, &plan)
    }

    /// The summed loss of the hidden states `x` of a plan's rests.
    fn loss_of(&self, x: &Tensor, plan: &Plan) -> candle_core::Result<Tensor> {
        let x = x.index_select(&Tensor::new(plan.rows.as_slice(), &self.device)?, 0)?;
        let (logits, targets) = match &self.output_vocab {
            None => (self.head(&x)?, plan.targets.clone()),
            Some(o) => (self.head_rows(&x, Some(&o.ids))?, o.rows(&plan.targets)?),
        };
        super::loss::cross_entropy_rows(&logits, &targets)?.sum_all()
    }

    /// `loss_sum(batch) / divisor` and its gradients for every trained
    /// parameter, as `loss_sum(…).backward()` gives them, holding one
    /// block's intermediates at a time instead of all of them: the forward
    /// pass keeps only each block's input, and the backward pass runs each
    /// block again, last to first, to carry the gradient through it
    /// (activation checkpointing). Memory falls from every block's
    /// activations to one block's plus each block's input; the price is a
    /// second forward pass.
    pub fn loss_and_grads(
        &self,
        batch: &[(&[u32], usize)],
        divisor: f64,
    ) -> candle_core::Result<(f64, candle_core::backprop::GradStore)> {
        let n = self.cfg.num_hidden_layers;
        let plan = Plan::of(batch)?;
        let b = batch.len();
        // Forward, keeping each block's input (detached: no graph is held).
        let (mut xp, mut xb) = (Vec::with_capacity(n + 1), Vec::with_capacity(n + 1));
        let prefix_at = if plan.shared > 0 {
            let x = self.embed(&batch[0].0[..plan.shared])?.detach();
            let at = self.positions(&x, 1, 0)?;
            xp.push(x);
            Some(at)
        } else {
            None
        };
        xb.push(self.embed(&plan.rests)?.detach());
        let at = self.positions(&xb[0], b, plan.shared)?;
        for i in 0..n {
            let kv = match &prefix_at {
                Some(pat) => {
                    let (y, kv) = self.layer(i, &xp[i], pat, None)?;
                    xp.push(y.detach());
                    Some((kv.0.detach(), kv.1.detach()))
                }
                None => None,
            };
            let (y, _) = self.layer(i, &xb[i], &at, kv.as_ref())?;
            xb.push(y.detach());
        }
        // The head and the loss, from the last hidden states as a leaf.
        let last = Var::from_tensor(&xb[n])?;
        let loss = (self.loss_of(last.as_tensor(), &plan)? / divisor)?;
        let value = loss.to_scalar::<f32>()? as f64;
        let mut grads = loss.backward()?;
        let mut gb = grads
            .remove(last.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no gradient reached the last block".into()))?;
        let mut gp: Option<Tensor> = None;
        let trained = self.trainable();
        // Backward, block by block: each block again, with a graph, and the
        // gradient of Σ output·(gradient of output) carried to its input.
        for i in (0..n).rev() {
            let ib = Var::from_tensor(&xb[i])?;
            let mut surrogate;
            let ip = match &prefix_at {
                Some(pat) => {
                    let ip = Var::from_tensor(&xp[i])?;
                    let (yp, kv) = self.layer(i, ip.as_tensor(), pat, None)?;
                    let (yb, _) = self.layer(i, ib.as_tensor(), &at, Some(&kv))?;
                    surrogate = (yb * &gb)?.sum_all()?;
                    if let Some(g) = &gp {
                        surrogate = (surrogate + (yp * g)?.sum_all()?)?;
                    }
                    Some(ip)
                }
                None => {
                    let (yb, _) = self.layer(i, ib.as_tensor(), &at, None)?;
                    surrogate = (yb * &gb)?.sum_all()?;
                    None
                }
            };
            let mut g = surrogate.backward()?;
            add_into(&mut grads, &mut g, &trained)?;
            gb = g
                .remove(ib.as_tensor())
                .ok_or_else(|| candle_core::Error::Msg(format!("no gradient reached block {i}")))?;
            gp = match &ip {
                Some(ip) => g.remove(ip.as_tensor()),
                None => None,
            };
        }
        // The embeddings, when they are trained.
        if self
            .full
            .iter()
            .any(|(n, _)| n == "model.embed_tokens.weight")
        {
            let mut surrogate = (self.embed(&plan.rests)? * &gb)?.sum_all()?;
            if let (Some(g), true) = (&gp, plan.shared > 0) {
                let e = self.embed(&batch[0].0[..plan.shared])?;
                surrogate = (surrogate + (e * g)?.sum_all()?)?;
            }
            let mut g = surrogate.backward()?;
            add_into(&mut grads, &mut g, &trained)?;
        }
        Ok((value, grads))
    }

    fn embed(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            candle_core::bail!(
                "token {bad} is outside the vocabulary ({})",
                self.cfg.vocab_size
            );
        }
        let name = "model.embed_tokens.weight";
        let ids = match &self.output_vocab {
            Some(o) if o.originals.contains_key(name) => Tensor::new(o.rows(ids)?, &self.device)?,
            _ => Tensor::new(ids, &self.device)?,
        };
        self.w(name).index_select(&ids, 0)
    }

    /// The final norm and the LM head on hidden states `(n, hidden)`.
    fn head(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.head_rows(x, None)
    }

    /// [`Self::head`] over the output rows `rows` only (all when `None`).
    fn head_rows(&self, x: &Tensor, rows: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let x = rms_norm(x, self.w("model.norm.weight"), self.cfg.rms_norm_eps)?;
        let head = self.w(self.head_name());
        let compact = self
            .output_vocab
            .as_ref()
            .is_some_and(|o| o.originals.contains_key(self.head_name()));
        match rows {
            Some(_) if compact => x.matmul(&head.t()?),
            Some(r) => x.matmul(&head.index_select(r, 0)?.t()?),
            None => x.matmul(&head.t()?),
        }
    }

    /// The decoder blocks over embeddings `(L, hidden)` at positions
    /// `offset..offset+L`, after `prefix` (each layer's keys and values of
    /// positions `0..offset`, as `(1, kv_heads, offset, D)`). Returns the
    /// hidden states and each layer's keys and values of these positions.
    #[allow(clippy::type_complexity)]
    fn body(
        &self,
        x: &Tensor,
        offset: usize,
        prefix: Option<&[(Tensor, Tensor)]>,
    ) -> candle_core::Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        self.body_batch(x, 1, offset, prefix)
    }

    /// [`Self::body`] over `b` sequences of one length `L` at once: `x` is
    /// `(b·L, hidden)`, sequence after sequence, each after the same
    /// `prefix`; keys and values come back as `(b, kv_heads, L, D)`.
    #[allow(clippy::type_complexity)]
    fn body_batch(
        &self,
        x: &Tensor,
        b: usize,
        offset: usize,
        prefix: Option<&[(Tensor, Tensor)]>,
    ) -> candle_core::Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let at = self.positions(x, b, offset)?;
        let mut x = x.clone();
        let mut kvs = Vec::with_capacity(self.cfg.num_hidden_layers);
        for i in 0..self.cfg.num_hidden_layers {
            let (y, kv) = self.layer(i, &x, &at, prefix.map(|p| &p[i]))?;
            x = y;
            kvs.push(kv);
        }
        Ok((x, kvs))
    }

    /// Where `x` (`b` sequences after `offset` positions) sits: its length,
    /// RoPE tables and causal mask, shared by every layer.
    fn positions(&self, x: &Tensor, b: usize, offset: usize) -> candle_core::Result<Positions> {
        if b == 0 || x.dim(0)? % b != 0 {
            candle_core::bail!("{} rows are not {b} sequences of one length", x.dim(0)?);
        }
        let l = x.dim(0)? / b;
        if offset + l > self.cos.dim(0)? {
            candle_core::bail!(
                "a sequence of {} tokens is longer than the RoPE tables",
                offset + l
            );
        }
        Ok(Positions {
            b,
            l,
            cos: self.cos.narrow(0, offset, l)?,
            sin: self.sin.narrow(0, offset, l)?,
            mask: causal_mask(l, offset, &self.device)?,
        })
    }

    /// Block `i` over `x` at `at`, after `prefix` (this layer's keys and
    /// values of the positions before, `(1, kv_heads, offset, D)`): the
    /// block's output and its keys and values of these positions.
    fn layer(
        &self,
        i: usize,
        x: &Tensor,
        at: &Positions,
        prefix: Option<&(Tensor, Tensor)>,
    ) -> candle_core::Result<(Tensor, (Tensor, Tensor))> {
        let cfg = &self.cfg;
        let (b, l, hd) = (at.b, at.l, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let eps = cfg.rms_norm_eps;
        let scale = 1.0 / (hd as f64).sqrt();
        let p = format!("model.layers.{i}");
        let h = rms_norm(x, self.w(&format!("{p}.input_layernorm.weight")), eps)?;
        let heads = |t: Tensor, n: usize, norm: &str| -> candle_core::Result<Tensor> {
            // (b·L, n·D) -> (b, n, L, D), per-head RMSNorm, RoPE
            let t = t.reshape((b, l, n, hd))?;
            let t = if cfg.family.qk_norm() {
                rms_norm(&t, self.w(&format!("{p}.self_attn.{norm}.weight")), eps)?
            } else {
                t
            };
            let t = t.transpose(1, 2)?.contiguous()?;
            candle_nn::rotary_emb::rope_slow(&t, &at.cos, &at.sin)
        };
        let q = heads(
            self.linear(&format!("{p}.self_attn.q_proj"), &h)?,
            nh,
            "q_norm",
        )?;
        let k = heads(
            self.linear(&format!("{p}.self_attn.k_proj"), &h)?,
            nkv,
            "k_norm",
        )?;
        let v = self
            .linear(&format!("{p}.self_attn.v_proj"), &h)?
            .reshape((b, l, nkv, hd))?
            .transpose(1, 2)?;
        let kv = (k.clone(), v.clone());
        let (k, v) = match prefix {
            Some((pk, pv)) => {
                let (_, n, o, d) = pk.dims4()?;
                let (pk, pv) = (
                    pk.broadcast_as((b, n, o, d))?,
                    pv.broadcast_as((b, n, o, d))?,
                );
                (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?)
            }
            None => (k, v),
        };
        let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&at.mask)?;
        let ctx = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
        let ctx = ctx.transpose(1, 2)?.reshape((b * l, nh * hd))?;
        let x = (x + self.linear(&format!("{p}.self_attn.o_proj"), &ctx)?)?;
        let h = rms_norm(
            &x,
            self.w(&format!("{p}.post_attention_layernorm.weight")),
            eps,
        )?;
        let gate = self.linear(&format!("{p}.mlp.gate_proj"), &h)?;
        let up = self.linear(&format!("{p}.mlp.up_proj"), &h)?;
        let act = (candle_nn::Activation::Silu.forward(&gate)? * up)?;
        let x = (&x + self.linear(&format!("{p}.mlp.down_proj"), &act)?)?;
        Ok((x, kv))
    }
}

/// How a batch of examples runs: their longest common prefix once, then
/// the rests side by side, padded at their ends to the longest.
struct Plan {
    /// Every example's target tokens, in order.
    targets: Vec<u32>,
    /// Length of the shared prefix.
    shared: usize,
    /// The rests, each padded to the longest.
    rests: Vec<u32>,
    /// The rows of the rests whose hidden states predict a target.
    rows: Vec<u32>,
}

impl Plan {
    fn of(batch: &[(&[u32], usize)]) -> candle_core::Result<Plan> {
        let mut targets = Vec::new();
        for (ids, prompt_len) in batch {
            if *prompt_len == 0 || *prompt_len >= ids.len() {
                candle_core::bail!("an example needs a prompt and at least one target token");
            }
            targets.extend_from_slice(&ids[*prompt_len..]);
        }
        // The shared prefix stops before the first position whose hidden
        // state predicts a target.
        let first = batch[0].0;
        let mut shared = batch.iter().map(|(_, p)| p - 1).min().unwrap_or(0);
        for (ids, _) in &batch[1..] {
            shared = shared.min(ids.iter().zip(first).take_while(|(a, b)| a == b).count());
        }
        // The rests run as one batch, each padded at its end to the longest
        // (a causal mask keeps padding out of every real position), so a
        // step's ops do not multiply with its examples.
        let longest = batch
            .iter()
            .map(|(ids, _)| ids.len() - shared)
            .max()
            .unwrap_or(0);
        let mut rests = Vec::with_capacity(batch.len() * longest);
        let mut rows = Vec::with_capacity(targets.len());
        for (j, (ids, prompt_len)) in batch.iter().enumerate() {
            rests.extend_from_slice(&ids[shared..]);
            rests.resize((j + 1) * longest, ids[0]);
            let from = j * longest + prompt_len - 1 - shared;
            rows.extend((from..from + ids.len() - prompt_len).map(|r| r as u32));
        }
        Ok(Plan {
            targets,
            shared,
            rests,
            rows,
        })
    }
}

/// Adds the gradients `from` holds for the trained parameters into `into`.
fn add_into(
    into: &mut candle_core::backprop::GradStore,
    from: &mut candle_core::backprop::GradStore,
    trained: &[(String, Var)],
) -> candle_core::Result<()> {
    for (_, v) in trained {
        if let Some(g) = from.remove(v.as_tensor()) {
            let sum = match into.get(v.as_tensor()) {
                Some(a) => (a + g)?,
                None => g,
            };
            into.insert(v.as_tensor(), sum);
        }
    }
    Ok(())
}

/// A batch's length, RoPE tables and causal mask (see
/// [`TrainNet::positions`]).
struct Positions {
    b: usize,
    l: usize,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
}

/// `x / rms(x) · w` over the last dimension, from differentiable ops.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// `(b, kv, L, D)` → `(b, kv·n, L, D)`, each key/value head serving `n` query heads.
fn repeat_kv(t: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    if n == 1 {
        return Ok(t.clone());
    }
    let (b, kv, l, d) = t.dims4()?;
    Tensor::cat(&vec![t; n], 2)?.reshape((b, kv * n, l, d))
}

/// `(L, offset + L)` additive mask for positions `offset..offset+L`: 0 where
/// a key is at or before the query, a large negative after it.
fn causal_mask(l: usize, offset: usize, device: &Device) -> candle_core::Result<Tensor> {
    let s = offset + l;
    let m: Vec<f32> = (0..l)
        .flat_map(|i| (0..s).map(move |j| if j > offset + i { -1e9 } else { 0.0 }))
        .collect();
    Tensor::from_vec(m, (l, s), device)
}

#[cfg(test)]
mod tests;
