//! Conversions: quantizing, fusing adapters, how much of a delta survives quantization, and synthetic checkpoints.

pub mod fuse;
pub mod quantize;
pub mod survival;
pub mod synth;
