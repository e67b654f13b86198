//! warden: a runtime for local tool-using agents.
//!
//! A session renders the conversation with the model's own template
//! ([`chat`]), generates ([`model`], or a recording: [`session::replay`]),
//! parses the calls, checks each against its schema and the [`policy`], runs
//! it in a fresh WebAssembly sandbox ([`sandbox`]) and feeds the result
//! back ([`session`]), writing every turn and call to a hash-chained log
//! ([`audit`]). [`eval`] scores tool calling over suites and BFCL files;
//! [`train`] makes training data and fine-tunes. `docs/architecture.md`
//! draws the flow.
//!
//! Module map:
//! - [`model`] — Qwen3 on candle: checkpoints, weights, the decoder, decoding,
//!   conversions, adapters, kernels.
//! - [`chat`] — templates, messages, parsing what the model wrote.
//! - [`session`] — the loop, its backends, replays, set-up.
//! - [`audit`] — the log's records, writer, verification and reports.
//! - [`policy`] — TOML to grants and limits.
//! - [`sandbox`] — wasmtime, the filesystem and network gates, budgets.
//! - [`eval`] — suites, BFCL, metrics, gates, HTML.
//! - [`train`] — synthetic data, fine-tuning.
//! - [`serve`] — the OpenAI-compatible HTTP server.
//! - [`guard`] — bounds on untrusted work in warden's own process.
//! - [`paths`] — where warden keeps its own files; paths as the kernel
//!   resolves them.
//! - [`outputs`] — files written for the user, never through a symlink.
//! - [`progress`] — progress bars on stderr.
//! - [`cli`] — the `warden` command: parses, calls, prints.

pub mod audit;
pub mod chat;
pub mod cli;
pub mod eval;
pub mod guard;
pub mod mcp;
pub mod model;
pub mod outputs;
pub mod paths;
pub mod policy;
pub mod progress;
pub mod sandbox;
pub mod serve;
pub mod session;
pub mod telemetry;
pub mod train;
