//! The Qwen3 decoder: its configuration and layers, each loading itself from [`super::weights::Weights`].

pub(crate) mod attention;
pub(crate) mod block;
pub mod config;
pub mod embedding;
pub(crate) mod kv_cache;
pub mod linear;
pub(crate) mod qwen3;
pub(crate) mod rope;
