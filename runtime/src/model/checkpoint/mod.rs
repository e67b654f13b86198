//! Finding and loading a model as users have it (Hugging Face directories, the hub cache, GGUF files, MLX), its tokenizer, and writing GGUF files.

pub(crate) mod gguf_tokenizer;
pub mod gguf_write;
pub(crate) mod load;
pub mod tokenize;
pub mod tokenizer_files;
