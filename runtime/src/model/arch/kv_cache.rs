//! Per-layer key/value cache that can roll back to a prefix.

use candle_core::{DType, Device, Result, Tensor};

/// Keys and values of the positions seen so far, stored `(B, S, H, D)` in a
/// buffer that grows by doubling, so appending is a copy of the new rows
/// only and the valid prefix is always contiguous.
///
/// For f32 on the CPU it also keeps them interleaved per position and head,
/// `(S, H, 2·D)` with K then V, the layout of candle's fused single-token
/// decode kernel.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    interleaved: Vec<f32>,
}

impl KvCache {
    /// Forgets everything after the first `len` positions (no recomputation:
    /// what stays is still valid).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The interleaved f32 copy of the valid positions, if kept.
    pub fn interleaved(&self) -> Option<&[f32]> {
        let stride = self.k.as_ref().map(|k| k.dims()[2] * k.dims()[3] * 2)?;
        (self.interleaved.len() >= self.len * stride)
            .then(|| &self.interleaved[..self.len * stride])
    }

    /// Appends `k`, `v` shaped `(B, L, H, D)`; returns all cached keys and
    /// values, `(B, len, H, D)`.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, l, h, d) = k.dims4()?;
        let need = self.len + l;
        let cap = self.k.as_ref().map_or(0, |t| t.dim(1).unwrap_or(0));
        if need > cap {
            let new_cap = need.max(cap * 2).max(64);
            let grow = |old: &Option<Tensor>, dtype: DType, dev: &Device| -> Result<Tensor> {
                let buf = Tensor::zeros((b, new_cap, h, d), dtype, dev)?;
                if let Some(old) = old {
                    if self.len > 0 {
                        buf.slice_set(&old.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                    }
                }
                Ok(buf)
            };
            self.k = Some(grow(&self.k, k.dtype(), k.device())?);
            self.v = Some(grow(&self.v, v.dtype(), v.device())?);
        }
        let (kb, vb) = (self.k.as_ref().unwrap(), self.v.as_ref().unwrap());
        kb.slice_set(&k.contiguous()?, 1, self.len)?;
        vb.slice_set(&v.contiguous()?, 1, self.len)?;
        if b == 1 && k.dtype() == DType::F32 && k.device().is_cpu() {
            let (kd, vd) = (
                k.flatten_all()?.to_vec1::<f32>()?,
                v.flatten_all()?.to_vec1::<f32>()?,
            );
            self.interleaved.truncate(self.len * h * 2 * d);
            for pos in 0..l {
                for head in 0..h {
                    let at = (pos * h + head) * d;
                    self.interleaved.extend_from_slice(&kd[at..at + d]);
                    self.interleaved.extend_from_slice(&vd[at..at + d]);
                }
            }
        }
        self.len = need;
        Ok((kb.narrow(1, 0, self.len)?, vb.narrow(1, 0, self.len)?))
    }
}
