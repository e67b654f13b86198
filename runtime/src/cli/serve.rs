//! `warden serve`: flags into [`ServeOptions`], then the server until
//! Ctrl-C.

use super::sampling::SpeculativeArgs;
use crate::serve::{self, ServeOptions};
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `warden serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model: a snapshot directory, .gguf file or hub-cache name, with
    /// eval's options (`MODEL[+adapter=DIR]…[+quant=FORMAT]`).
    #[arg(long)]
    model: String,
    /// LoRA adapter directory (PEFT or MLX-LM), applied unfused; repeat to stack several.
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// The chat template instead of the model's own: a Jinja file, or a
    /// built-in (chatml-tools).
    #[arg(long, value_name = "FILE|NAME")]
    chat_template: Option<String>,
    /// Where to listen (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A file holding the API key clients must send as `Authorization:
    /// Bearer KEY`; required for an address other than loopback.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Sequences generated at once, each with its own KV cache (the
    /// weights are shared).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Requests that may wait for a slot; more are refused with 503.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Most tokens of prompt and completion together, per request.
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 8 << 20)]
    max_body: usize,
    /// The model name `/v1/models` lists (default: the model file's name).
    #[arg(long)]
    model_name: Option<String>,
    /// CPU threads for the forward pass (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    speculative: SpeculativeArgs,
    /// Agent mode: the policy whose tools run here, in the sandbox, beside
    /// the client's (their calls are audited, one log per conversation).
    #[arg(long, requires = "workspace")]
    policy: Option<PathBuf>,
    /// The workspace the policy's mounts are relative to (agent mode).
    #[arg(long, requires = "policy")]
    workspace: Option<PathBuf>,
    /// Where agent mode's conversation logs go (default: <state dir>/serve).
    #[arg(long, requires = "policy")]
    log_dir: Option<PathBuf>,
    /// Key file for keyed (HMAC) logs (default: $WARDEN_AUDIT_KEY_FILE).
    #[arg(long, requires = "policy")]
    audit_key: Option<PathBuf>,
}

/// Runs `warden serve`.
pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if let Some(n) = a.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    let api_key = match &a.api_key_file {
        Some(f) => {
            let key = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the API key file {}", f.display()))?
                .trim()
                .to_string();
            anyhow::ensure!(
                !key.is_empty(),
                "the API key file {} is empty; put the key clients must send in it",
                f.display()
            );
            Some(key)
        }
        None => None,
    };
    let opts = ServeOptions {
        model: a.model,
        adapters: a.adapter,
        chat_template: a.chat_template,
        addr: a.addr,
        api_key,
        parallel: a.parallel,
        queue: a.queue,
        ctx: a.ctx,
        max_body: a.max_body,
        speculative: a.speculative.mode()?,
        draft_model: a.speculative.draft_model.clone(),
        model_name: a.model_name,
        agent: match (a.policy, a.workspace) {
            (Some(policy), Some(workspace)) => Some(serve::AgentOptions {
                policy,
                workspace,
                log_dir: a.log_dir,
                audit_key: a.audit_key,
            }),
            _ => None,
        },
    };
    opts.check()?;
    let engine = opts.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The tools load outside the async runtime (the sandbox has an executor
    // of its own).
    let agent = opts.agent.as_ref().map(|a| a.load()).transpose()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .with_context(|| format!("cannot listen on {}", opts.addr))?;
        let addr = listener.local_addr()?;
        let tools = match &agent {
            Some(a) => format!("; agent mode, tools {}", a.tool_names().join(", ")),
            None => String::new(),
        };
        outln!(
            "warden serve: {} on http://{addr}/v1 ({} slot(s), context {}{tools})",
            engine.model_name,
            opts.parallel,
            opts.ctx
        );
        super::terminal::flush_out();
        serve::serve(engine, agent, &opts, listener, shutdown_signal()).await
    })
}

/// Ctrl-C, or SIGTERM where there is one (a service manager's stop).
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
