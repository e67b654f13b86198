//! `warden serve`: an OpenAI-compatible HTTP server (axum on tokio) over
//! one loaded model — `POST /v1/chat/completions` (plain and streamed, with
//! tools), `GET /v1/models`, `GET /health`, `POST /tokenize`,
//! `POST /apply-template`, `GET /metrics` — with `--parallel` slots that
//! share the weights, a bounded queue, an API key for anything but
//! loopback, and OpenAI-shaped errors for every refusal.

pub mod api;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod pool;
mod routes;

use crate::eval::spec::{Source, Variant};
use crate::model::Speculative;
use anyhow::{bail, Context as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use engine::Engine;
pub use error::ApiError;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The model spec (as `eval --variant` takes after `NAME=`:
    /// `MODEL[+adapter=DIR]…[+quant=FORMAT]`).
    pub model: String,
    /// More adapters, applied unfused after the spec's.
    pub adapters: Vec<PathBuf>,
    /// The chat template instead of the model's own (file or built-in).
    pub chat_template: Option<String>,
    /// Where to listen.
    pub addr: SocketAddr,
    /// The API key clients must send (required off loopback).
    pub api_key: Option<String>,
    /// Sequences generated at once, each with its own KV cache.
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 503.
    pub queue: usize,
    /// Most tokens of prompt and completion together.
    pub ctx: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Speculative decoding for every request.
    pub speculative: Speculative,
    /// A draft model for `Speculative::Draft`.
    pub draft_model: Option<String>,
    /// The name `/v1/models` gives (default: the model file's name).
    pub model_name: Option<String>,
}

impl ServeOptions {
    /// Refuses a non-loopback address without an API key.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.addr.ip().is_loopback() && self.api_key.is_none() {
            bail!(
                "--addr {} is reachable from other machines; give --api-key-file FILE (a file holding the key clients must send) or listen on 127.0.0.1",
                self.addr
            );
        }
        if self.parallel == 0 {
            bail!("--parallel must be at least 1");
        }
        if self.ctx < 16 {
            bail!("--ctx {} is too small to hold a prompt", self.ctx);
        }
        Ok(())
    }

    /// Loads the model and builds the engine.
    pub fn load(&self) -> anyhow::Result<Engine> {
        let v = Variant::parse(&format!("served={}", self.model))?;
        let (model, mut adapters, quant) = match v.source {
            Source::Model {
                model,
                adapters,
                quant,
            } => (model, adapters, quant),
            Source::Replay(_) => bail!("replay: specs are not served yet; give a model"),
        };
        adapters.extend(self.adapters.iter().cloned());
        let loaded = crate::eval::spec::load_model(
            &model,
            &adapters,
            quant,
            &candle_core::Device::Cpu,
            self.chat_template.as_deref(),
            self.draft_model.as_deref(),
            false,
        )?;
        let template =
            crate::chat::ChatTemplate::for_run(&loaded.path, loaded.chat_template.as_deref())?;
        let tokenizer = loaded.tokenizer.clone().with_context(|| {
            format!(
                "{} has no tokenizer; put the model's tokenizer.json beside its weights",
                loaded.path.display()
            )
        })?;
        let model_name = self.model_name.clone().unwrap_or_else(|| {
            loaded
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| model.clone())
        });
        let (vocab_size, end_of_turn) =
            (loaded.model.config().vocab_size, loaded.model.end_of_turn());
        Ok(Engine {
            pool: pool::Pool::new(loaded, self.parallel, self.queue),
            template,
            tokenizer,
            model_name,
            ctx: self.ctx,
            speculative: self.speculative,
            vocabulary: engine::Grammars::new(vocab_size, end_of_turn),
        })
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves; `ready` is
/// told the address once listening.
pub async fn serve(
    engine: Engine,
    opts: &ServeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(routes::State {
        engine,
        metrics: metrics::Metrics::new(),
        api_key: opts.api_key.clone(),
        max_body: opts.max_body,
    });
    let app = routes::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the server stopped")
}
