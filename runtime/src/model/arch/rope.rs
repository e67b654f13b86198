//! Rotary position embeddings in the rotate-half form (Hugging Face's; a
//! Llama GGUF's interleaved q/k rows are put back in this order at load).

use candle_core::{DType, Device, Result, Tensor};

/// Most positions a table covers: the tables are computed at load, so a
/// model file's `max_position_embeddings` (untrusted) sizes them only up to
/// here (64 MiB at head_dim 128); a position past it is an error.
pub const MAX_TABLE_POSITIONS: usize = 1 << 17;

/// Precomputed cos/sin tables for every position up to the context length
/// (at most [`MAX_TABLE_POSITIONS`]).
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for `head_dim`, `max_positions` and base `theta`, in `dtype`;
    /// each frequency divided by its entry of `divisors` when given (Llama
    /// 3's scaling, llama.cpp's `rope_freqs`).
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        theta: f64,
        divisors: Option<&[f32]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Rope> {
        let max_positions = max_positions.min(MAX_TABLE_POSITIONS);
        if let Some(d) = divisors {
            if d.len() != head_dim / 2 || d.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                candle_core::bail!(
                    "RoPE frequency divisors: {} given, {} positive numbers needed",
                    d.len(),
                    head_dim / 2
                );
            }
        }
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                let by = divisors.map_or(1.0, |d| f64::from(d[i]));
                (f / by) as f32
            })
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Rope {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// The cos and sin tables, `(max_positions, head_dim / 2)` each.
    pub(crate) fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// Rotates `x` shaped `(B, H, L, D)` for positions `offset..offset+L`.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, len, _) = x.dims4()?;
        let max = self.cos.dim(0)?;
        if offset + len > max {
            candle_core::bail!(
                "position {} is past the model's context length {max} (warden computes RoPE tables for at most {MAX_TABLE_POSITIONS} positions)",
                offset + len
            );
        }
        let cos = self.cos.narrow(0, offset, len)?;
        let sin = self.sin.narrow(0, offset, len)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}
