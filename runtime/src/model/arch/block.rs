//! A Qwen3 decoder block: pre-norm attention and SwiGLU MLP, each residual.

use crate::model::arch::attention::Attention;
use crate::model::arch::linear::{forward_shared, Linear};
use candle_core::{Module, Result, Tensor};

/// The SwiGLU feed-forward network.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(crate) gate_proj: Linear,
    pub(crate) up_proj: Linear,
    pub(crate) down_proj: Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [gate, up] = forward_shared([&self.gate_proj, &self.up_proj], x)?;
        self.down_proj
            .forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

/// One decoder block.
#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) input_norm: Tensor,
    pub(crate) attention: Attention,
    pub(crate) post_attention_norm: Tensor,
    pub(crate) mlp: Mlp,
    pub(crate) eps: f32,
}

impl Block {
    /// Runs the block on `x` at positions `offset..`.
    pub fn forward(&mut self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let h = candle_nn::ops::rms_norm(x, &self.input_norm, self.eps)?;
        let x = (x + self.attention.forward(&h, offset)?)?;
        let h = candle_nn::ops::rms_norm(&x, &self.post_attention_norm, self.eps)?;
        x + self.mlp.forward(&h)?
    }
}
