//! warden: a runtime for local tool-using agents.
//!
//! Data flows from `policy` (what a session may do) to `sandbox` (tools as
//! WebAssembly components, one fresh instance per call). `paths` says where
//! warden keeps its own files, which no tool may reach. The `cli` module is
//! the `warden` command. `guard` bounds the untrusted work that runs in
//! warden's own process (chat templates, tokenizers, model readers).

pub mod audit;
pub mod chat;
pub mod cli;
pub mod eval;
pub mod guard;
pub mod model;
pub mod outputs;
pub mod paths;
pub mod policy;
pub mod sandbox;
pub mod session;
pub mod train;
