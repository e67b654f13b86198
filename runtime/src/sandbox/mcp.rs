//! Tools of MCP servers (`[mcp.NAME]` in a policy): one connection per
//! server for the host's life, its enabled tools offered as `NAME__tool`.
//!
//! What warden governs here is what crosses the connection: which tools are
//! offered (those the policy names), how often each is called, how long a
//! call may take (past its `timeout_ms` it is cancelled with
//! `notifications/cancelled`), and how much of its answer the model gets.
//! What the server does is its own: a stdio server is a native process with
//! the user's rights (the policy says `native = true`), an HTTP one is
//! reached only at an address that passes the checks a tool's requests pass.

use super::error::{CallError, ErrorKind};
use super::net::{self, Refused, Resolve};
use crate::policy::{hosts, HostPattern, McpServer, McpTransport};
use anyhow::Context as _;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ContentBlock, Implementation,
    PaginatedRequestParams, Tool,
};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt as _};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// Most pages of `tools/list` read from one server.
const MAX_LIST_PAGES: usize = 64;
/// Longest description of a server's tool that reaches the prompt.
const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Largest argument schema of a server's tool, as JSON.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Largest message taken from an HTTP server.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// How much of a stdio server's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 2048;

/// The runtime every MCP connection runs on. A connection's transport tasks
/// must run whatever executor awaits a call (the sandbox's, a server's), so
/// they get one of their own, for the life of the process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("warden-mcp")
            .enable_all()
            .build()
            .expect("cannot start the MCP client runtime")
    })
}

/// Runs `fut` on the MCP runtime and waits for it, from synchronous code.
fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

/// A live connection to one MCP server.
pub struct Connection {
    name: String,
    service: RunningService<RoleClient, ClientConfig>,
    /// The end of a stdio server's stderr, or the last address refusal of
    /// an HTTP server's: what an error message should add.
    said: Arc<Mutex<String>>,
    /// A stdio server's process group.
    group: Arc<Mutex<Option<u32>>>,
}

impl Connection {
    /// Starts or reaches `server`, initializes and lists its tools (those
    /// the policy names, each checked), all within its `connect_timeout`.
    pub fn open(
        server: &McpServer,
        resolver: Arc<dyn Resolve>,
    ) -> anyhow::Result<(Arc<Connection>, Vec<Tool>)> {
        let s = server.clone();
        let timeout = server.connect_timeout;
        let said = Arc::new(Mutex::new(String::new()));
        let group = Arc::new(Mutex::new(None));
        let (tail, g) = (said.clone(), group.clone());
        let opened = block_on(async move {
            tokio::time::timeout(timeout, connect(&s, resolver, tail, g))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "it did not answer initialize and tools/list within {} ms (connect_timeout_ms)",
                        timeout.as_millis()
                    ))
                })
        })
        .unwrap_or_else(|| Err(anyhow::anyhow!("the MCP client runtime stopped")));
        let (service, tools) = match opened {
            Ok(o) => o,
            Err(e) => {
                terminate(&group);
                anyhow::bail!("MCP server {}: {e:#}{}", server.name, also(&said))
            }
        };
        Ok((
            Arc::new(Connection {
                name: server.name.clone(),
                service,
                said,
                group,
            }),
            tools,
        ))
    }

    /// Calls `tool` with `arguments`, cancelling it past `timeout`. The
    /// text of its content (a server-side error too, as `Err`), uncut.
    pub async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> Result<String, CallError> {
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let peer = self.service.peer().clone();
        // Dropping the request (at the deadline, or when the caller goes
        // away) sends `notifications/cancelled` for it.
        let result = match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => {
                return Err(CallError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{tool} of MCP server {} did not answer within {} ms; it was cancelled",
                        self.name,
                        timeout.as_millis()
                    ),
                ))
            }
            Ok(Err(e)) => {
                return Err(CallError::new(
                    ErrorKind::Failed,
                    format!("MCP server {}: {e}{}", self.name, also(&self.said)),
                ));
            }
            Ok(Ok(r)) => r,
        };
        let text = content_text(&result.content, result.structured_content.as_ref());
        if result.is_error == Some(true) {
            let mut t = text;
            super::output::truncate(&mut t, MAX_DESCRIPTION_BYTES);
            return Err(CallError::new(
                ErrorKind::Failed,
                format!("{tool} of MCP server {} failed: {t}", self.name),
            ));
        }
        Ok(text)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Ends the service task, which drops the transport: a stdio server
        // is killed (its whole process group), an HTTP session closed. That
        // happens on the MCP runtime, after this returns; the SIGTERM now
        // reaches the server even when warden exits first.
        terminate(&self.group);
        self.service.cancellation_token().cancel();
    }
}

/// Sends SIGTERM to a stdio server's process group, once, while it is
/// still this process's child leading its group (never to a group whose id
/// was reused).
fn terminate(group: &Mutex<Option<u32>>) {
    let Some(pid) = group.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return;
    };
    // After the command's closing parenthesis: state, parent, group.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ours = fields.get(1) == Some(&std::process::id().to_string().as_str())
        && fields.get(2) == Some(&pid.to_string().as_str());
    if let (true, Some(p)) = (ours, rustix::process::Pid::from_raw(pid as i32)) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::TERM);
    }
}

async fn connect(
    server: &McpServer,
    resolver: Arc<dyn Resolve>,
    said: Arc<Mutex<String>>,
    group: Arc<Mutex<Option<u32>>>,
) -> anyhow::Result<(RunningService<RoleClient, ClientConfig>, Vec<Tool>)> {
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("warden", env!("CARGO_PKG_VERSION")),
    );
    let service = match &server.transport {
        McpTransport::Stdio {
            program,
            args,
            cwd,
            env,
        } => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .current_dir(cwd)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)));
            let mut cmd = process_wrap::tokio::CommandWrap::from(cmd);
            cmd.wrap(process_wrap::tokio::ProcessGroup::leader())
                .wrap(process_wrap::tokio::KillOnDrop);
            let (proc, err) = rmcp::transport::TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start {}", program.display()))?;
            // The leader of its own group: its pid is the group's id.
            *group.lock().unwrap_or_else(|e| e.into_inner()) = proc.id();
            if let Some(err) = err {
                tokio::spawn(keep_tail(err, server.name.clone(), said));
            }
            info.serve(proc).await?
        }
        McpTransport::Http {
            url,
            hosts,
            allow_private_network,
            bearer_token,
        } => {
            let client = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(CheckedResolver {
                    hosts: hosts.clone().into(),
                    allow_private: *allow_private_network,
                    resolver,
                    refusal: said,
                }))
                .tls_backend_preconfigured((*net::connect::tls_config()).clone())
                .build()
                .context("cannot build the HTTP client")?;
            let mut config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                )
                .max_json_response_size(MAX_MESSAGE_BYTES)
                .max_sse_event_size(MAX_MESSAGE_BYTES)
                .max_error_response_size(64 * 1024);
            if let Some(t) = bearer_token {
                config = config.auth_header(t.0.clone());
            }
            let transport =
                rmcp::transport::StreamableHttpClientTransport::with_client(client, config);
            info.serve(transport).await?
        }
    };
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_LIST_PAGES {
        let page = service
            .peer()
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .context("tools/list failed")?;
        tools.extend(
            page.tools
                .into_iter()
                .filter(|t| server.tools.iter().any(|n| *n == t.name)),
        );
        cursor = page.next_cursor;
        if cursor.is_none() {
            return Ok((service, tools));
        }
    }
    anyhow::bail!("tools/list went on past {MAX_LIST_PAGES} pages")
}

/// A server's tool as the model will see it: description and argument
/// schema, bounded and checked.
pub fn described(server: &str, tool: &Tool) -> anyhow::Result<(String, serde_json::Value)> {
    let mut description = tool
        .description
        .as_deref()
        .or(tool.title.as_deref())
        .unwrap_or_default()
        .to_string();
    super::output::truncate(&mut description, MAX_DESCRIPTION_BYTES);
    let schema = serde_json::Value::Object((*tool.input_schema).clone());
    let size = schema.to_string().len();
    if size > MAX_SCHEMA_BYTES {
        anyhow::bail!(
            "MCP server {server}: the input schema of {} is {size} bytes, more than {MAX_SCHEMA_BYTES}",
            tool.name
        );
    }
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        anyhow::bail!(
            "MCP server {server}: the input schema of {} is not of type \"object\"",
            tool.name
        );
    }
    Ok((description, schema))
}

/// The text of a result: its text blocks in order, other blocks named, the
/// structured content when there is no text.
fn content_text(content: &[ContentBlock], structured: Option<&serde_json::Value>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for block in content {
        parts.push(match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image, {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio, {}]", a.mime_type),
            ContentBlock::Resource(_) => "[embedded resource]".to_string(),
            ContentBlock::ResourceLink(r) => format!("[resource link {}]", r.uri),
            _ => "[content of a kind warden does not show]".to_string(),
        });
    }
    if parts.is_empty() {
        if let Some(s) = structured {
            return s.to_string();
        }
    }
    parts.join("\n")
}

/// Reads a stdio server's stderr to its end, keeping the last bytes for
/// error messages and logging each piece at debug level.
async fn keep_tail(mut err: tokio::process::ChildStderr, server: String, tail: Arc<Mutex<String>>) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = err.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        tracing::debug!(server = %server, stderr = %text.trim_end(), "MCP server stderr");
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_empty() {
            t.push_str("its stderr ends: ");
        }
        t.push_str(&text);
        if t.len() > STDERR_TAIL_BYTES {
            let mut cut = t.len() - STDERR_TAIL_BYTES;
            while !t.is_char_boundary(cut) {
                cut += 1;
            }
            t.drain(..cut);
        }
    }
}

/// What the server's stderr or the address check said, for an error
/// message: `; …` or nothing.
fn also(said: &Mutex<String>) -> String {
    let t = said.lock().unwrap_or_else(|e| e.into_inner());
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        t
    } else {
        format!("; {t}")
    }
}

/// reqwest's resolver for an HTTP MCP server: the name must be in the
/// server's `hosts`, and its addresses pass [`net::checked_addresses`].
struct CheckedResolver {
    hosts: Arc<[HostPattern]>,
    allow_private: bool,
    resolver: Arc<dyn Resolve>,
    /// The last refusal, for the error message (reqwest's error keeps
    /// only its own words).
    refusal: Arc<Mutex<String>>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let allowed = hosts::allowed(&self.hosts, &host);
        let (allow_private, resolver) = (self.allow_private, self.resolver.clone());
        let refusal = self.refusal.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            // reqwest puts the URL's port on the addresses it gets.
            let why = if !allowed {
                format!(
                    "host {host:?} is not in this MCP server's hosts (and IP addresses never are)"
                )
            } else {
                match net::checked_addresses(&host, 0, allow_private, &*resolver, deadline).await {
                    Ok(a) => return Ok(Box::new(a.into_iter()) as reqwest::dns::Addrs),
                    Err(Refused::Internal(note)) => {
                        note.replace("for it in the policy", "in this [mcp] table of the policy")
                    }
                    Err(Refused::Timeout) => format!("looking up {host} timed out"),
                    Err(Refused::Lookup(e)) => format!("cannot look up {host}: {e}"),
                    Err(Refused::NotFound) => format!("{host} has no addresses"),
                }
            };
            *refusal.lock().unwrap_or_else(|e| e.into_inner()) = why.clone();
            Err(why.into())
        })
    }
}
