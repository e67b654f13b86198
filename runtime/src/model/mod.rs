//! Qwen3 inference on candle, by concern: [`arch`] (the decoder and its
//! layers), [`weights`] (where tensors come from: safetensors, GGUF, MLX,
//! memory), [`checkpoint`] (finding and loading a model and its tokenizer,
//! writing GGUF), [`decode`] (generation, sampling, speculative decoding),
//! [`convert`] (quantize, fuse, survival, synth), [`adapter`] (LoRA) and
//! [`kernels`] (warden's quantized CPU kernels).

pub mod adapter;
pub mod arch;
pub mod checkpoint;
pub mod convert;
pub mod decode;
/// warden's quantized CPU kernels (the `warden-kernels` crate, a crate of
/// its own so that debug builds still optimise them).
pub use warden_kernels as kernels;
pub mod weights;

pub use arch::config::Qwen3Config;
pub use arch::qwen3::Qwen3;
pub use checkpoint::load::{
    default_dtype, parse_device, resolve_model_path, tokenizer_for, Checkpoint, LoadedModel,
    ModelFormat,
};
pub use decode::generate::{
    generate, generate_ids, generate_ids_drafted, generate_ids_with, generate_with, FinishReason,
    Generation, Timings, PREFILL_CHUNK,
};
pub use decode::sampler::{Sampler, SamplingParams, Speculative};

/// Token ids of Qwen3's special tokens.
pub mod special {
    /// `<|endoftext|>`.
    pub const ENDOFTEXT: u32 = 151_643;
    /// `<|im_start|>`.
    pub const IM_START: u32 = 151_644;
    /// `<|im_end|>`.
    pub const IM_END: u32 = 151_645;
}
