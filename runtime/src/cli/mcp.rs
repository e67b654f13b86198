//! `warden mcp`: flags into [`McpOptions`], then the server until the
//! client goes away (stdio) or Ctrl-C/SIGTERM (HTTP).

use crate::mcp::{self, McpOptions, Transport};
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `warden mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The policy whose enabled tools are served.
    #[arg(long)]
    policy: PathBuf,
    /// The workspace the policy's mounts are relative to.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// JSON-RPC over stdin/stdout (the default).
    #[arg(long, conflicts_with = "http")]
    stdio: bool,
    /// Streamable HTTP at http://ADDR/mcp instead (port 0: any free port;
    /// the address is printed).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The session log (stdio), or the directory of per-session logs
    /// (HTTP); default <state dir>/mcp/.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Key file for the keyed (HMAC) chain (default: $WARDEN_AUDIT_KEY_FILE).
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// A file holding the bearer token HTTP clients must send; required for
    /// an address other than loopback.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A browser origin allowed to call (besides loopback's), e.g.
    /// https://app.example.com:443; repeat for more.
    #[arg(long)]
    allow_origin: Vec<String>,
    /// An idle HTTP session ends after this many seconds.
    #[arg(long, default_value_t = 300)]
    session_timeout: u64,
}

/// Runs `warden mcp`.
pub fn mcp(a: McpArgs) -> anyhow::Result<()> {
    let token = match &a.token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_string();
            anyhow::ensure!(!t.is_empty(), "the token file {} is empty", f.display());
            Some(t)
        }
        None => None,
    };
    let opts = McpOptions {
        policy: a.policy,
        workspace: a.workspace,
        transport: match a.http {
            Some(addr) => Transport::Http(addr),
            None => Transport::Stdio,
        },
        log: a.log,
        audit_key: a.audit_key,
        token,
        allowed_origins: a.allow_origin,
        session_timeout: Duration::from_secs(a.session_timeout.max(1)),
    };
    opts.check()?;
    let shared = opts.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        match opts.transport {
            // stdout is the protocol's: say nothing there.
            Transport::Stdio => {
                let log = mcp::serve_stdio(shared).await?;
                eprintln!("warden mcp: session log {}", log.display());
                Ok(())
            }
            Transport::Http(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                outln!(
                    "warden mcp: {} tool(s) on http://{local}/mcp",
                    shared.host.tools().count()
                );
                super::terminal::flush_out();
                mcp::serve_http(shared, &opts, listener, super::serve::shutdown_signal()).await
            }
        }
    })
}
