//! The tool host: every tool runs as a WebAssembly component in a fresh
//! wasmtime instance per call, granted only what its policy says.
//!
//! Built once per host: the engine (pooling allocator, copy-on-write memory
//! images, epoch ticker), the linker, each tool's compiled component,
//! `InstancePre`, JSON Schema validator and mount handles. Per call: a
//! `Store` with a new WASI context (the policy's environment), the
//! filesystem gate over duplicates of the mount handles, a memory limiter
//! that also counts host resources, an epoch deadline and a timeout around
//! the whole call, optional fuel, and the `wasi:http` gate.

mod budget;
mod cache;
mod engine;
mod error;
mod fs;
mod inspect;
mod limiter;
mod mcp;
mod net;
mod notes;
mod output;
mod state;
mod stderr;
mod tool;

pub use budget::CallBudget;
pub use engine::{Runtime, EPOCH_TICK};
pub use error::{CallError, ErrorKind};
pub use inspect::{inspect, Inspection};
pub use limiter::{max_resources, HOST_BYTES_PER_RESOURCE};
pub(crate) use net::connect::tls_config;
pub use net::{Lookup, Resolve, SystemResolver};
pub(crate) use output::truncate as truncate_output;
pub use tool::{CallOutput, LoadedTool, ToolSpec, DESCRIBE_TIMEOUT};

use crate::policy::{PluginSource, Policy};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The plugins compiled into warden: (policy name, component bytes).
pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = warden_artifacts::BUILTIN;

/// Loaded tools of one policy, ready to call.
pub struct ToolHost {
    runtime: Runtime,
    tools: BTreeMap<String, LoadedTool>,
    policy: Policy,
}

impl ToolHost {
    /// Loads every tool the policy enables.
    pub fn load(policy: &Policy) -> Result<ToolHost, CallError> {
        Self::load_selected(policy, |_| true, Arc::new(SystemResolver))
    }

    /// Loads every tool the policy enables, resolving host names for HTTP
    /// requests with `resolver` instead of the system's.
    pub fn load_with_resolver(
        policy: &Policy,
        resolver: Arc<dyn Resolve>,
    ) -> Result<ToolHost, CallError> {
        Self::load_selected(policy, |_| true, resolver)
    }

    /// Loads only the tool called `name` (what `warden tools call` needs);
    /// `unknown-tool` if the policy does not enable it.
    pub fn load_one(policy: &Policy, name: &str) -> Result<ToolHost, CallError> {
        if !policy.tools.contains_key(name) {
            return Err(unknown_tool(policy, name));
        }
        Self::load_selected(policy, |n| n == name, Arc::new(SystemResolver))
    }

    fn load_selected(
        policy: &Policy,
        keep: impl Fn(&str) -> bool,
        resolver: Arc<dyn Resolve>,
    ) -> Result<ToolHost, CallError> {
        let fuel = policy.tools.values().any(|t| t.limits.fuel.is_some());
        let runtime =
            Runtime::with_options(fuel, policy.own_files.cache_dir.clone(), resolver.clone())
                .map_err(|e| CallError::new(ErrorKind::Policy, format!("{e:#}")))?;
        let mut tools = BTreeMap::new();
        let mut servers: BTreeMap<&str, (Arc<mcp::Connection>, Vec<rmcp::model::Tool>)> =
            BTreeMap::new();
        for (name, tp) in policy.tools.iter().filter(|(n, _)| keep(n)) {
            if let PluginSource::Mcp { server, tool } = &tp.plugin {
                if !servers.contains_key(server.as_str()) {
                    let s = policy.mcp.get(server).ok_or_else(|| {
                        CallError::new(ErrorKind::Policy, format!("{}: tool {name} names MCP server {server}, which the policy does not define", policy.path.display()))
                    })?;
                    let opened = mcp::Connection::open(s, resolver.clone()).map_err(|e| {
                        CallError::new(
                            ErrorKind::Policy,
                            format!("{}: [mcp.{server}]: {e:#}", policy.path.display()),
                        )
                    })?;
                    servers.insert(server, opened);
                }
                let (connection, listed) = &servers[server.as_str()];
                let Some(found) = listed.iter().find(|t| t.name == *tool) else {
                    return Err(CallError::new(
                        ErrorKind::Policy,
                        format!(
                            "{}: [mcp.{server}] names the tool {tool:?}, which the server does not offer; check its name (`tools/list` of the server)",
                            policy.path.display()
                        ),
                    ));
                };
                let loaded =
                    LoadedTool::mcp(tp.clone(), connection.clone(), found).map_err(|e| {
                        CallError::new(
                            ErrorKind::Policy,
                            format!("{}: tool {name}: {e:#}", policy.path.display()),
                        )
                    })?;
                tools.insert(name.clone(), loaded);
                continue;
            }
            let tool = LoadedTool::load(&runtime, tp.clone()).map_err(|e| {
                CallError::new(
                    ErrorKind::Policy,
                    format!(
                        "{}: tool {name} (plugin {}): {e:#}",
                        policy.path.display(),
                        tp.plugin
                    ),
                )
            })?;
            tools.insert(name.clone(), tool);
        }
        Ok(ToolHost {
            runtime,
            tools,
            policy: policy.clone(),
        })
    }

    /// The loaded tools, by name.
    pub fn tools(&self) -> impl Iterator<Item = &LoadedTool> {
        self.tools.values()
    }

    /// The tool called `name`, if the policy enables it.
    pub fn tool(&self, name: &str) -> Option<&LoadedTool> {
        self.tools.get(name)
    }

    /// The policy the host was loaded from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// `unknown-tool` for `name`, listing the tools there are.
    pub fn unknown_tool(&self, name: &str) -> CallError {
        unknown_tool(&self.policy, name)
    }

    /// The runtime the tools run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A fresh budget for one session under this host's policy.
    pub fn budget(&self) -> CallBudget {
        CallBudget::new(&self.policy)
    }

    /// Makes one call of tool `name` with JSON `arguments`, counted against
    /// `budget`.
    pub fn call(
        &self,
        budget: &mut CallBudget,
        name: &str,
        arguments: &str,
    ) -> Result<CallOutput, CallError> {
        self.runtime
            .block_on(self.call_async(budget, name, arguments))
    }

    /// [`ToolHost::call`] as a future, for callers already in an async
    /// runtime (tokio).
    pub async fn call_async(
        &self,
        budget: &mut CallBudget,
        name: &str,
        arguments: &str,
    ) -> Result<CallOutput, CallError> {
        let tool = self
            .tools
            .get(name)
            .ok_or_else(|| unknown_tool(&self.policy, name))?;
        budget.charge(tool)?;
        tool.call_async(&self.runtime, arguments).await
    }
}

fn unknown_tool(policy: &Policy, name: &str) -> CallError {
    let known: Vec<&str> = policy.tools.keys().map(String::as_str).collect();
    CallError::new(
        ErrorKind::UnknownTool,
        format!(
            "no tool named {name:?} in policy {}; available: {}",
            policy.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    )
}
