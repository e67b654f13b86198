//! One linear layer over dense or quantized weights.
//!
//! Every projection of the model goes through [`Linear`], so later layers
//! (LoRA adapters applied unfused, per-stage timing) hook in at one place,
//! whatever the storage of the base weight.

use crate::model::kernels;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use std::sync::Arc;

/// The base weight of a linear layer, shaped `(out, in)`.
#[derive(Debug, Clone)]
pub enum Weight {
    /// A dense tensor (f32, f16 or bf16).
    Dense(Tensor),
    /// A quantized GGUF tensor (Q4_0, Q4_K, Q8_0, …), multiplied without
    /// dequantizing.
    Quantized(Arc<QMatMul>),
}

/// A LoRA delta applied unfused: `x·Aᵀ` then `·(s·B)ᵀ`, kept as `Aᵀ (in, r)`
/// and `s·Bᵀ (r, out)` so that both products read contiguous memory.
#[derive(Debug, Clone)]
struct Lora {
    a_t: Tensor,
    sb_t: Tensor,
}

/// `y = x Wᵀ (+ b) (+ Σ s·(x Aᵀ) Bᵀ)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    /// The quantized weight repacked for warden's x86 kernels, where they
    /// run and the type has a packed layout.
    packed: Option<Arc<kernels::pack::Packed>>,
    bias: Option<Tensor>,
    out_features: usize,
    lora: Vec<Lora>,
    lora_active: bool,
}

impl Linear {
    /// Loads the projection `hf` of shape `(out, in)` from `weights`, as it
    /// is stored there (dense, quantized, or quantized and shared).
    pub fn load(
        weights: &mut crate::model::weights::Weights,
        hf: &str,
        out: usize,
        inp: usize,
        dtype: DType,
    ) -> anyhow::Result<Linear> {
        use crate::model::weights::Stored;
        Ok(match weights.matrix(hf, out, inp, dtype)? {
            Stored::Dense(t) => Linear::dense(t, None)?,
            Stored::Quantized(q) => Linear::quantized(q)?,
            Stored::Shared(q) => Linear::quantized_shared(q)?,
        })
    }

    /// A layer over a dense `(out, in)` weight.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let (out_features, _) = weight.dims2()?;
        Ok(Linear {
            weight: Weight::Dense(weight),
            packed: None,
            bias,
            out_features,
            lora: vec![],
            lora_active: true,
        })
    }

    /// A layer over a quantized `(out, in)` weight.
    pub fn quantized(weight: QTensor) -> Result<Linear> {
        Linear::quantized_shared(Arc::new(weight))
    }

    /// A layer over a quantized weight shared with another user (a tied
    /// embedding).
    pub fn quantized_shared(weight: Arc<QTensor>) -> Result<Linear> {
        let (out_features, inp) = weight.shape().dims2()?;
        let packed = match kernels::Kind::of(weight.dtype()) {
            Some(kind) if weight.device().is_cpu() && kernels::packs(kind, out_features, inp) => {
                kernels::pack::Packed::new(kind, out_features, inp, &weight.data()?).map(Arc::new)
            }
            _ => None,
        };
        Ok(Linear {
            packed,
            weight: Weight::Quantized(Arc::new(QMatMul::from_arc(weight)?)),
            bias: None,
            out_features,
            lora: vec![],
            lora_active: true,
        })
    }

    /// Adds a LoRA delta `s·B·A` (`a` `(r, in)`, `b` `(out, r)`), applied
    /// unfused on every forward pass; the base weight is untouched. The
    /// matrices are kept in `dtype` on `device` (f32 on the CPU).
    pub fn add_lora(
        &mut self,
        a: &Tensor,
        b: &Tensor,
        scale: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<()> {
        let (r, _) = a.dims2()?;
        let (out, r_b) = b.dims2()?;
        if out != self.out_features || r_b != r {
            candle_core::bail!(
                "LoRA B of shape ({out}, {r_b}) does not fit a layer with {} outputs and rank {r}",
                self.out_features
            );
        }
        let prep = |t: Tensor| t.t()?.contiguous()?.to_dtype(dtype)?.to_device(device);
        self.lora.push(Lora {
            a_t: prep(a.clone())?,
            sb_t: prep((b * scale)?)?,
        });
        Ok(())
    }

    /// Gives the layer a bias `(out,)`, added after the product.
    pub fn set_bias(&mut self, bias: Tensor) {
        self.bias = Some(bias);
    }

    /// `y + b + Σ s·(x Aᵀ) Bᵀ`: the bias and the active adapters on the
    /// product `y = x Wᵀ`.
    fn finish(&self, x: &Tensor, y: Tensor) -> Result<Tensor> {
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
            None => y,
        };
        self.with_lora(x, y)
    }

    /// Turns the unfused adapters off (`false`) or on again, for measuring
    /// their cost side by side.
    pub fn set_lora_active(&mut self, on: bool) {
        self.lora_active = on;
    }

    /// How many adapters this layer carries.
    pub fn lora_count(&self) -> usize {
        self.lora.len()
    }

    /// `y + Σ s·(x Aᵀ) Bᵀ` for the active adapters.
    fn with_lora(&self, x: &Tensor, y: Tensor) -> Result<Tensor> {
        if self.lora.is_empty() || !self.lora_active {
            return Ok(y);
        }
        let inp = *x.dims().last().unwrap_or(&0);
        let rows = x.elem_count() / inp.max(1);
        let mut y = y;
        for l in &self.lora {
            let x2 = x.reshape((rows, inp))?.to_dtype(l.a_t.dtype())?;
            let d = x2.matmul(&l.a_t)?.matmul(&l.sb_t)?;
            let d = d.reshape(y.shape())?.to_dtype(y.dtype())?;
            y = (y + d)?;
        }
        Ok(y)
    }

    /// The base weight.
    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// Bytes of the base weight as stored (quantized or dense).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Weight::Quantized(q) => match q.as_ref() {
                QMatMul::QTensor(t) => t.storage_size_in_bytes(),
                QMatMul::Tensor(w) | QMatMul::TensorF16(w) => {
                    w.elem_count() * w.dtype().size_in_bytes()
                }
            },
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

/// `[x W₁ᵀ, x W₂ᵀ, …]` for layers that read the same input (q/k/v, gate/up).
///
/// When every layer is a quantized CPU weight of one type, candle
/// runs them as one fused kernel: the input is quantized once and the
/// threads are started once instead of once per layer (where the CPU has
/// the kernel; otherwise, and for dense weights, one call per layer).
pub fn forward_shared<const N: usize>(layers: [&Linear; N], x: &Tensor) -> Result<[Tensor; N]> {
    let out: Vec<Tensor> = match fused(&layers, x)? {
        Some(out) => out
            .into_iter()
            .zip(&layers)
            .map(|(y, l)| l.finish(x, y))
            .collect::<Result<_>>()?,
        None => layers.iter().map(|l| l.forward(x)).collect::<Result<_>>()?,
    };
    out.try_into().map_err(|v: Vec<Tensor>| {
        candle_core::Error::Msg(format!("{} outputs for {N} layers", v.len()))
    })
}

/// The fused kernel's outputs, or `None` where it does not apply.
fn fused(layers: &[&Linear], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
    if let Some(out) = own_kernels(layers, x)? {
        return Ok(Some(out));
    }
    let quantized: Option<Vec<&QTensor>> = layers
        .iter()
        .map(|l| match &l.weight {
            Weight::Quantized(q) => match q.as_ref() {
                QMatMul::QTensor(t) => Some(t.as_ref()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    match quantized {
        Some(ts) if x.dtype() == candle_core::DType::F32 && x.is_contiguous() => {
            QTensor::gemv_fused_shared_lhs(&ts, x)
        }
        _ => Ok(None),
    }
}

/// `x·Wᵀ` (no bias) for quantized CPU weights through warden's own kernels
/// ([`kernels`]), or `None` where they do not apply (dense or GPU weights,
/// a type they lack, `WARDEN_KERNELS=candle`).
fn own_kernels(layers: &[&Linear], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
    if !kernels::enabled() || x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(None);
    }
    let mut ts = Vec::with_capacity(layers.len());
    for l in layers {
        match &l.weight {
            Weight::Quantized(q) => match q.as_ref() {
                QMatMul::QTensor(t) if t.device().is_cpu() => ts.push(t.as_ref()),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    let mut datas = Vec::with_capacity(ts.len());
    let mut mats = Vec::with_capacity(ts.len());
    for (t, l) in ts.iter().zip(layers) {
        let (Some(kind), Ok((n, k))) = (kernels::Kind::of(t.dtype()), t.shape().dims2()) else {
            return Ok(None);
        };
        datas.push((kind, n, k, t.data()?, l.packed.as_deref()));
    }
    for (kind, n, k, data, packed) in &datas {
        mats.push(kernels::QMat {
            kind: *kind,
            n: *n,
            k: *k,
            data: data.as_ref(),
            packed: *packed,
        });
    }
    let k = mats[0].k;
    let (storage, layout) = x.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*storage, layout.contiguous_offsets())
    else {
        return Ok(None);
    };
    let xs = &cpu.as_slice::<f32>()?[a..b];
    let m = xs.len() / k.max(1);
    if mats.iter().any(|w| !kernels::chosen(w.kind, m, w.n, w.k)) {
        return Ok(None);
    }
    let Some(outs) = kernels::matmul_many(&mats, xs, m) else {
        return Ok(None);
    };
    let lead = &x.dims()[..x.rank().saturating_sub(1)];
    outs.into_iter()
        .zip(&mats)
        .map(|(o, w)| {
            let mut shape = lead.to_vec();
            shape.push(w.n);
            Tensor::from_vec(o, shape, &Device::Cpu)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(mut y) = own_kernels(&[self], x)? {
            return self.finish(x, y.remove(0));
        }
        let y = match &self.weight {
            Weight::Dense(w) => {
                let w = w.to_dtype(x.dtype())?;
                match x.dims() {
                    [b, l, d] => x.reshape((b * l, *d))?.matmul(&w.t()?)?.reshape((
                        *b,
                        *l,
                        self.out_features,
                    ))?,
                    _ => x.matmul(&w.t()?)?,
                }
            }
            Weight::Quantized(q) => q.forward(x)?,
        };
        self.finish(x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::Device;

    #[test]
    fn shared_input_forward_equals_one_call_per_layer() {
        let dev = Device::Cpu;
        for kind in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let layers: Vec<Linear> = [512, 256, 256]
                .iter()
                .map(|&out| {
                    let w = Tensor::randn(0f32, 1.0, (out, 256), &dev).unwrap();
                    Linear::quantized(QTensor::quantize(&w, kind).unwrap()).unwrap()
                })
                .collect();
            let refs = [&layers[0], &layers[1], &layers[2]];
            for rows in [1, 5] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, 256), &dev).unwrap();
                let fused = forward_shared(refs, &x).unwrap();
                for (l, y) in layers.iter().zip(&fused) {
                    let want = l.forward(&x).unwrap();
                    assert_eq!(y.dims(), want.dims());
                    let diff = (y - want).unwrap().abs().unwrap().max_all().unwrap();
                    let diff = diff.to_scalar::<f32>().unwrap();
                    assert!(diff <= 1e-4, "{kind:?}, {rows} rows: {diff}");
                }
            }
        }
    }
}
