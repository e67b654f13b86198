//! Qwen3 inference on candle: loading checkpoints as users have them
//! (Hugging Face snapshot directories, hub-cache names, GGUF files), the
//! model itself, sampling and generation, and synthetic checkpoints.

pub mod adapter;
mod attention;
mod block;
pub mod config;
pub mod embedding;
pub mod fuse;
mod generate;
pub mod ggml_type;
mod gguf_tokenizer;
pub mod gguf_write;
pub mod kernels;
mod kv_cache;
pub mod linear;
mod load;
pub mod lookup;
pub mod mlx_quant;
pub mod quantize;
mod qwen3;
pub(crate) mod rope;
pub(crate) mod safetensors;
mod sampler;
pub mod survival;
pub mod synth;
pub mod tokenize;
pub mod tokenizer_files;
pub mod weights;

pub use config::Qwen3Config;
pub use generate::{
    generate, generate_ids, generate_ids_drafted, generate_ids_with, FinishReason, Generation,
    Timings, PREFILL_CHUNK,
};
pub use load::{
    default_dtype, parse_device, resolve_model_path, tokenizer_for, Checkpoint, LoadedModel,
    ModelFormat,
};
pub use qwen3::Qwen3;
pub use sampler::{Sampler, SamplingParams, Speculative};

/// Token ids of Qwen3's special tokens.
pub mod special {
    /// `<|endoftext|>`.
    pub const ENDOFTEXT: u32 = 151_643;
    /// `<|im_start|>`.
    pub const IM_START: u32 = 151_644;
    /// `<|im_end|>`.
    pub const IM_END: u32 = 151_645;
}
