//! Grouped-query self-attention, with Qwen3's per-head q/k RMS norms where
//! the family has them.

use crate::model::arch::kv_cache::KvCache;
use crate::model::arch::linear::{forward_shared, Linear};
use crate::model::arch::rope::Rope;
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::attention::cpu_flash::causal::causal_decode_f32_interleaved;
use candle_nn::attention::{flash_attn, AttnMask};
use std::sync::Arc;

/// One attention layer and its cache.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    /// Per-head RMS norm weights of queries and keys (Qwen3 only).
    pub(crate) qk_norm: Option<(Tensor, Tensor)>,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) eps: f64,
    pub(crate) rope: Arc<Rope>,
    pub(crate) cache: KvCache,
}

impl Attention {
    /// Attends `x` `(B, L, hidden)` at positions `offset..offset+L` to the
    /// cache plus itself, causally, and appends its keys and values.
    pub fn forward(&mut self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let [q, k, v] = forward_shared([&self.q_proj, &self.k_proj, &self.v_proj], x)?;
        let q = q.reshape((b, l, self.num_heads, self.head_dim))?;
        let k = k.reshape((b, l, self.num_kv_heads, self.head_dim))?;
        let v = v.reshape((b, l, self.num_kv_heads, self.head_dim))?;
        // Per-head RMSNorm over head_dim (Qwen3), then RoPE in (B, H, L, D).
        let (q, k) = match &self.qk_norm {
            Some((qn, kn)) => (
                candle_nn::ops::rms_norm(&q.contiguous()?, qn, self.eps as f32)?,
                candle_nn::ops::rms_norm(&k.contiguous()?, kn, self.eps as f32)?,
            ),
            None => (q, k),
        };
        let q = self.rope.apply(&q.transpose(1, 2)?, offset)?;
        let k = self.rope.apply(&k.transpose(1, 2)?, offset)?;
        // Cache and attention in (B, S, H, D).
        let q = q.transpose(1, 2)?.contiguous()?;
        let k = k.transpose(1, 2)?.contiguous()?;
        let (k, v) = self.cache.append(&k, &v)?;
        let ctx = if let (1, Some(kv)) = (l, self.cache.interleaved()) {
            // One new token, f32 on the CPU: candle's fused decode kernel.
            let q = q.flatten_all()?.to_vec1::<f32>()?;
            let scale = 1.0 / (self.head_dim as f32).sqrt();
            let len = k.dim(1)?;
            causal_decode_f32_interleaved(
                &q,
                kv,
                self.num_heads,
                self.num_kv_heads,
                self.head_dim,
                len,
                scale,
            )?
            .unsqueeze(0)?
        } else if x.device().is_cpu() {
            self.cpu_attention(&q, &k, &v, offset)?
        } else {
            self.matmul_attention(&q, &k, &v, offset)?
        };
        // ctx: (B, H, L, D) -> (B, L, H*D)
        let ctx = ctx
            .transpose(1, 2)?
            .reshape((b, l, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&ctx)
    }

    /// candle's fused CPU flash-attention kernel (f32 inside).
    fn cpu_attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, offset: usize) -> Result<Tensor> {
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let dtype = q.dtype();
        let up = |t: &Tensor| t.to_dtype(DType::F32);
        let ctx = flash_attn::<f32>(
            &up(q)?,
            &up(k)?,
            &up(v)?,
            scale,
            AttnMask::causal_with_offset(offset),
            None,
            None,
        )?;
        ctx.to_dtype(dtype)
    }

    /// Plain attention for GPUs: scores, additive causal mask, softmax.
    fn matmul_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        offset: usize,
    ) -> Result<Tensor> {
        let (b, l, _, d) = q.dims4()?;
        let s = k.dim(1)?;
        let groups = self.num_heads / self.num_kv_heads;
        let q = q.transpose(1, 2)?.contiguous()?; // (B, H, L, D)
        let repeat = |t: &Tensor| -> Result<Tensor> {
            // (B, S, KVH, D) -> (B, H, S, D), each kv head serving `groups` q heads
            let t = t.transpose(1, 2)?;
            let t = t
                .unsqueeze(2)?
                .expand((b, self.num_kv_heads, groups, s, d))?;
            t.reshape((b, self.num_heads, s, d))
        };
        let (k, v) = (repeat(k)?.contiguous()?, repeat(v)?.contiguous()?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let scores = if l > 1 {
            let mask: Vec<f32> = (0..l)
                .flat_map(|i| {
                    (0..s).map(move |j| {
                        if j > offset + i {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            let mask = Tensor::from_vec(mask, (l, s), q.device())?.to_dtype(scores.dtype())?;
            scores.broadcast_add(&mask)?
        } else {
            scores
        };
        candle_nn::ops::softmax(&scores.to_dtype(DType::F32)?, D::Minus1)?
            .to_dtype(v.dtype())?
            .matmul(&v)
    }
}
