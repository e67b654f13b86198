//! One linear layer over dense or quantized weights.
//!
//! Every projection of the model goes through [`Linear`], so later layers
//! (LoRA adapters applied unfused, per-stage timing) hook in at one place,
//! whatever the storage of the base weight.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};
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

/// `y = x Wᵀ (+ b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_features: usize,
}

impl Linear {
    /// A layer over a dense `(out, in)` weight.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let (out_features, _) = weight.dims2()?;
        Ok(Linear {
            weight: Weight::Dense(weight),
            bias,
            out_features,
        })
    }

    /// A layer over a quantized `(out, in)` weight.
    pub fn quantized(weight: QTensor) -> Result<Linear> {
        Linear::quantized_shared(Arc::new(weight))
    }

    /// A layer over a quantized weight shared with another user (a tied
    /// embedding).
    pub fn quantized_shared(weight: Arc<QTensor>) -> Result<Linear> {
        let (out_features, _) = weight.shape().dims2()?;
        Ok(Linear {
            weight: Weight::Quantized(Arc::new(QMatMul::from_arc(weight)?)),
            bias: None,
            out_features,
        })
    }

    /// The base weight.
    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
        match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?),
            None => Ok(y),
        }
    }
}
