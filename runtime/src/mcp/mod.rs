//! `warden mcp`: the policy's tools as a Model Context Protocol server
//! (rmcp), over stdio or streamable HTTP. Every call is decided and run as
//! a session's call is — schema, policy, budgets, a fresh WebAssembly
//! sandbox, output and time limits — and audited in a log per MCP session
//! that `warden audit verify` checks.

pub mod server;

use crate::audit::AuditKey;
use crate::paths::WardenPaths;
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use anyhow::{bail, Context as _};
use server::{LogPlace, McpSession, Shared};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the server is reached.
#[derive(Debug, Clone)]
pub enum Transport {
    /// JSON-RPC over stdin/stdout (one session).
    Stdio,
    /// Streamable HTTP at `http://ADDR/mcp` (a session per client).
    Http(SocketAddr),
}

/// What `warden mcp` serves.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The policy file.
    pub policy: PathBuf,
    /// The workspace its mounts are relative to.
    pub workspace: PathBuf,
    /// stdio or HTTP.
    pub transport: Transport,
    /// The log file (stdio) or directory (HTTP); default
    /// `<state dir>/mcp/<session id>.jsonl`.
    pub log: Option<PathBuf>,
    /// The key file for keyed (HMAC) logs (default `$WARDEN_AUDIT_KEY_FILE`).
    pub audit_key: Option<PathBuf>,
    /// The bearer token HTTP clients must send (required off loopback).
    pub token: Option<String>,
    /// Browser origins allowed besides loopback's (`Origin` is checked).
    pub allowed_origins: Vec<String>,
    /// An HTTP session idle this long ends.
    pub session_timeout: Duration,
}

impl McpOptions {
    /// Refuses a non-loopback address without a token.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Transport::Http(addr) = self.transport {
            if !addr.ip().is_loopback() && self.token.is_none() {
                bail!(
                    "--http {addr} is reachable from other machines; give --token-file FILE (the bearer token clients must send) or listen on 127.0.0.1"
                );
            }
        }
        Ok(())
    }

    /// Loads the policy and its tools (outside any async runtime: the
    /// sandbox compiles on an executor of its own).
    pub fn load(&self) -> anyhow::Result<&'static Shared> {
        let own = WardenPaths::from_env();
        let logs = match (&self.transport, &self.log) {
            (Transport::Stdio, Some(p)) => LogPlace::File(p.clone()),
            (Transport::Http(_), Some(d)) => LogPlace::Dir(d.clone()),
            (_, None) => LogPlace::Dir(server::default_log_dir(own.state_dir.as_deref())?),
        };
        if let LogPlace::Dir(d) = &logs {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create the log directory {}", d.display()))?;
        }
        let policy = Policy::load(&self.policy, &self.workspace)?;
        let probe = match &logs {
            LogPlace::File(p) => p.clone(),
            LogPlace::Dir(d) => d.join("session.jsonl"),
        };
        policy.refuse_log_in_mounts(&probe, "choose another --log")?;
        let host = ToolHost::load(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key_file = self.audit_key.clone().or(own.audit_key);
        let key = key_file.as_deref().map(AuditKey::from_file).transpose()?;
        // The server keeps its tools for as long as it runs.
        Ok(Box::leak(Box::new(Shared {
            host,
            policy: (
                self.policy.display().to_string(),
                crate::audit::sha256_file(&self.policy).unwrap_or_default(),
            ),
            workspace: self.workspace.display().to_string(),
            logs,
            key,
        })))
    }
}

/// Serves one session over stdin/stdout until the client goes away;
/// returns the log's path.
pub async fn serve_stdio(shared: &'static Shared) -> anyhow::Result<PathBuf> {
    use rmcp::ServiceExt as _;
    let session = McpSession::new(shared);
    let running = session
        .clone()
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP client did not initialize")?;
    let _ = running.waiting().await;
    session.end("disconnected");
    Ok(session.log_path.clone())
}

/// Serves streamable HTTP at `/mcp` on `listener` until `shutdown`.
pub async fn serve_http(
    shared: &'static Shared,
    opts: &McpOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    };
    let addr = listener.local_addr()?;
    let mut origins = vec![
        "http://localhost:*".to_string(),
        "http://127.0.0.1:*".to_string(),
        "http://[::1]:*".to_string(),
    ];
    origins.extend(opts.allowed_origins.iter().cloned());
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !addr.ip().is_loopback() {
        hosts.push(addr.ip().to_string());
    }
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(opts.session_timeout);
    let service = StreamableHttpService::new(
        move || Ok(McpSession::new(shared)),
        std::sync::Arc::new(sessions),
        config,
    );
    let token = opts.token.clone();
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(json_rpc_parse_errors))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    if let Some(t) = token {
                        let sent = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "));
                        if sent != Some(t.as_str()) {
                            return axum::response::IntoResponse::into_response((
                                http::StatusCode::UNAUTHORIZED,
                                "a bearer token is required: Authorization: Bearer TOKEN",
                            ));
                        }
                    }
                    next.run(req).await
                }
            },
        ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the MCP server stopped")
}

/// Largest JSON-RPC message accepted over HTTP.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// A POST whose body is not JSON gets JSON-RPC's parse error (-32700, HTTP
/// 400), as the specification asks, not a transport-level refusal; one
/// over [`MAX_MESSAGE_BYTES`] gets 413.
async fn json_rpc_parse_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if req.method() != http::Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return (
                http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("a message is at most {MAX_MESSAGE_BYTES} bytes"),
            )
                .into_response()
        }
    };
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32700, "message": format!("Parse error: {e}")},
        });
        return (http::StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}
