//! `warden serve`: an OpenAI-compatible HTTP server (axum on tokio) over
//! one loaded model — `POST /v1/chat/completions` (plain and streamed, with
//! tools), `GET /v1/models`, `GET /health`, `POST /tokenize`,
//! `POST /apply-template`, `GET /metrics` — with `--parallel` slots that
//! share the weights, a bounded queue, an API key for anything but
//! loopback, and OpenAI-shaped errors for every refusal.

pub mod agent;
pub mod api;
mod completion;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod pool;
mod routes;
mod state;

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
    /// Agent mode: the policy whose tools run server-side.
    pub agent: Option<AgentOptions>,
}

/// Agent mode's settings (`--policy`, `--workspace`, `--log-dir`,
/// `--audit-key`).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The policy file.
    pub policy: PathBuf,
    /// The workspace its mounts are relative to.
    pub workspace: PathBuf,
    /// Where conversation logs go (default: `<state dir>/serve`).
    pub log_dir: Option<PathBuf>,
    /// The key for keyed (HMAC) logs (default: `$WARDEN_AUDIT_KEY_FILE`).
    pub audit_key: Option<PathBuf>,
}

impl AgentOptions {
    /// Loads the policy and its tools, and readies the log directory.
    pub fn load(&self) -> anyhow::Result<agent::Agent> {
        let own = crate::paths::WardenPaths::from_env();
        let log_dir = match &self.log_dir {
            Some(d) => d.clone(),
            None => own
                .state_dir
                .clone()
                .context("no state directory: set WARDEN_STATE_DIR or HOME, or pass --log-dir")?
                .join("serve"),
        };
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot create the log directory {}", log_dir.display()))?;
        let key_file = self.audit_key.clone().or(own.audit_key);
        let key = key_file
            .as_deref()
            .map(crate::audit::AuditKey::from_file)
            .transpose()?;
        agent::Agent::load(&self.policy, &self.workspace, log_dir, key)
    }
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
            Source::Replay(file) => return self.load_replay(&file),
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
            vocabulary: Arc::new(engine::Grammars::new(vocab_size, end_of_turn)),
            replay: None,
        })
    }

    /// A `replay:FILE` model: the recording's outputs, one per generation
    /// in order, rendered and tokenized as Qwen3 (or `--chat-template`).
    fn load_replay(&self, file: &std::path::Path) -> anyhow::Result<Engine> {
        let template = match &self.chat_template {
            Some(t) => crate::chat::ChatTemplate::from_spec(t, file)?,
            None => crate::session::qwen3_template()?,
        };
        let replay = crate::session::ReplayBackend::open(file, Some(template.clone()))?;
        let tokenizer = tokenizers::Tokenizer::from_bytes(
            crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON,
        )
        .map_err(|e| anyhow::anyhow!("the bundled Qwen3 tokenizer: {e}"))?;
        let vocab_size = tokenizer.get_vocab_size(true);
        Ok(Engine {
            pool: pool::Pool::empty(self.parallel, self.queue),
            template,
            tokenizer,
            model_name: self.model_name.clone().unwrap_or_else(|| "replay".into()),
            ctx: self.ctx,
            speculative: Speculative::Off,
            vocabulary: Arc::new(engine::Grammars::new(
                vocab_size,
                crate::model::special::IM_END,
            )),
            replay: Some(replay),
        })
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves; `ready` is
/// told the address once listening.
pub async fn serve(
    engine: Engine,
    agent: Option<agent::Agent>,
    opts: &ServeOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(state::State {
        engine,
        metrics: metrics::Metrics::new(),
        api_key: opts.api_key.clone(),
        max_body: opts.max_body,
        agent,
    });
    let app = routes::router(state.clone());
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the server stopped");
    // Every conversation's log ends, however the server stopped.
    if let Some(a) = &state.agent {
        a.close();
    }
    r
}
