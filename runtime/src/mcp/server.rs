//! One MCP session: the policy's tools listed from their `describe`, and
//! each `tools/call` decided and run exactly as a session's call is
//! ([`Caller`]: schema, policy, budgets, a fresh sandbox), audited in the
//! session's own log — `session_start` at `initialize` with the client's
//! `clientInfo` and protocol version, a `tool_call` record per call,
//! `session_end` when the client goes away.

use crate::audit::record::{Record, SessionEnd, SessionStart};
use crate::audit::{self, AuditKey, AuditLog};
use crate::chat::{Call, ParsedCall};
use crate::sandbox::ToolHost;
use crate::session::call::{Admitted, CallReport, Caller};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeRequestParams, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool, ToolsCapability,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a long call reports progress (when the client asked with a
/// progress token).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What every MCP session of one server shares: the tools and where logs go.
pub struct Shared {
    /// The tools, loaded under the policy.
    pub host: ToolHost,
    /// The policy file and its sha256, for `session_start`.
    pub policy: (String, String),
    /// The workspace, for `session_start`.
    pub workspace: String,
    /// Where each session's log goes: this file (stdio, `--log`) or a new
    /// file per session in this directory.
    pub logs: LogPlace,
    /// The key for keyed logs.
    pub key: Option<AuditKey>,
}

/// Where session logs go.
#[derive(Debug, Clone)]
pub enum LogPlace {
    /// This one file (one session: stdio).
    File(PathBuf),
    /// A file per session in this directory.
    Dir(PathBuf),
}

/// One MCP session's state: its log, its call budget and numbering.
struct State {
    log: Option<AuditLog>,
    caller: Caller<'static>,
    ended: bool,
}

/// An MCP session over the shared tools.
#[derive(Clone)]
pub struct McpSession {
    shared: &'static Shared,
    state: Arc<Mutex<State>>,
    /// Where this session's log is.
    pub log_path: PathBuf,
}

impl McpSession {
    /// A new session over `shared` (its log is created at `initialize`).
    pub fn new(shared: &'static Shared) -> McpSession {
        let log_path = match &shared.logs {
            LogPlace::File(p) => p.clone(),
            LogPlace::Dir(d) => d.join(format!("{}.jsonl", audit::new_session_id())),
        };
        McpSession {
            shared,
            state: Arc::new(Mutex::new(State {
                log: None,
                caller: Caller::new(&shared.host),
                ended: false,
            })),
            log_path,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the log: `session_start` with the client's identity.
    fn start_log(&self, client: &InitializeRequestParams) -> anyhow::Result<()> {
        let mut st = self.lock();
        if st.log.is_some() {
            return Ok(());
        }
        let id = self
            .log_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|_| matches!(self.shared.logs, LogPlace::Dir(_)))
            .unwrap_or_else(audit::new_session_id);
        let mut log = AuditLog::create(&self.log_path, &id, self.shared.key.clone())?;
        log.set_redactor(crate::session::redactor(&self.shared.host));
        let policy = self.shared.host.policy();
        log.write(Record::SessionStart(SessionStart {
            warden_version: env!("CARGO_PKG_VERSION").into(),
            model: json!({"kind": "mcp"}),
            adapter: Value::Null,
            policy: Some(json!({"path": self.shared.policy.0, "sha256": self.shared.policy.1})),
            workspace: Some(self.shared.workspace.clone()),
            tools: Some(crate::session::tools_record(&self.shared.host)),
            bfcl: None,
            call_format: json!("mcp"),
            template_sha256: None,
            thinking: None,
            max_tokens: 0,
            max_steps: None,
            max_tool_calls: Some(policy.session.max_tool_calls),
            tool_choice: None,
            constrained: None,
            client: Some(json!({
                "name": client.client_info.name,
                "version": client.client_info.version,
                "protocol_version": client.protocol_version.to_string(),
            })),
        }))?;
        st.log = Some(log);
        Ok(())
    }

    /// Ends the log (once): `session_end` with `reason`.
    pub fn end(&self, reason: &str) {
        self.lock().end(reason);
    }

    fn tools(&self) -> Vec<Tool> {
        self.shared
            .host
            .tools()
            .map(|t| {
                let schema = match &t.spec.parameters {
                    Value::Object(o) => o.clone(),
                    _ => serde_json::Map::from_iter([("type".to_string(), json!("object"))]),
                };
                Tool::new(
                    t.spec.name.clone(),
                    t.spec.description.clone(),
                    Arc::new(schema),
                )
            })
            .collect()
    }

    /// Decides, runs (unless refused or cancelled) and logs one call.
    async fn call(
        &self,
        name: &str,
        arguments: serde_json::Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> anyhow::Result<CallReport> {
        let pc = ParsedCall {
            raw: String::new(),
            call: Ok(Call {
                name: name.to_string(),
                arguments,
                arguments_text: None,
            }),
        };
        let mut out_of_calls = false;
        let span = self.lock().caller.span(&pc);
        let t0 = Instant::now();
        let (mut report, admitted) = self.lock().caller.admit(&pc, &mut out_of_calls);
        if let Admitted::Run(tool, text) = admitted {
            let rt = self.shared.host.runtime();
            let start = Instant::now();
            let token = context.meta.get_progress_token();
            let run = tool.call_async(rt, &text);
            tokio::pin!(run);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            let result = loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    // notifications/cancelled: the call's future, and with it
                    // its sandbox, is dropped.
                    _ = context.ct.cancelled() => break None,
                    _ = tick.tick(), if token.is_some() => {
                        let secs = start.elapsed().as_secs_f64();
                        let _ = context.peer.notify_progress(ProgressNotificationParam::new(
                            token.clone().expect("checked"),
                            secs,
                        ).with_message(format!("{name} running for {secs:.0} s"))).await;
                    }
                }
            };
            let elapsed = start.elapsed().as_micros() as u64;
            match result {
                Some(r) => report.record_result(r, elapsed),
                None => report.record_result(
                    Err(crate::sandbox::CallError::new(
                        crate::sandbox::ErrorKind::Failed,
                        "cancelled by the client (notifications/cancelled)",
                    )),
                    elapsed,
                ),
            }
        }
        let mut st = self.lock();
        st.caller.traced(&span, &report, t0);
        drop(span);
        let step = st.caller.count() as u32;
        if let Some(log) = st.log.as_mut() {
            log.write(report.record(1, step))?;
        }
        Ok(report)
    }
}

impl State {
    /// Writes `session_end` with `reason`, once.
    fn end(&mut self, reason: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        let calls = self.caller.count();
        if let Some(log) = self.log.as_mut() {
            let r = log.write(Record::SessionEnd(SessionEnd {
                reason: reason.into(),
                turns: 0,
                generations: 0,
                tool_calls: calls,
            }));
            if let Err(e) = r {
                tracing::warn!("cannot end the MCP session's log: {e:#}");
            }
        }
    }
}

impl Drop for State {
    /// An HTTP session the client deleted or left idle ends here.
    fn drop(&mut self) {
        self.end("disconnected");
    }
}

impl ServerHandler for McpSession {
    fn get_info(&self) -> ServerConfig {
        let mut caps = ServerCapabilities::default();
        // The policy is fixed at start: the list never changes.
        let mut tools = ToolsCapability::default();
        tools.list_changed = Some(false);
        caps.tools = Some(tools);
        let mut info = InitializeResult::new(caps);
        info.server_info = Implementation::new("warden", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Tools of a warden policy: each call runs in a fresh WebAssembly sandbox under the policy and is audited.".into(),
        );
        info
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let result = self.negotiate_initialize(&request)?;
        self.start_log(&request).map_err(|e| {
            McpError::internal_error(format!("cannot start the audit log: {e:#}"), None)
        })?;
        Ok(result)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.clone().unwrap_or_default();
        let r = self
            .call(&request.name, args, &context)
            .await
            .map_err(|e| McpError::internal_error(format!("{e:#}"), None))?;
        let result = match r.error_line() {
            None => CallToolResult::success(vec![ContentBlock::text(r.result.clone())]),
            Some(line) => CallToolResult::error(vec![ContentBlock::text(line.to_string())]),
        };
        Ok(result.into())
    }
}

/// Where a session's log goes when none is named: `<state>/mcp/`.
pub fn default_log_dir(state: Option<&Path>) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    Ok(state
        .context("no state directory: set WARDEN_STATE_DIR or HOME, or pass --log")?
        .join("mcp"))
}
