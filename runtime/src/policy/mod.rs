//! Policies: which tools a session may use and what each one is granted.
//!
//! A policy is a TOML file (see `policies/` and `docs/sandbox.md`). Everything is
//! denied unless the policy grants it: a tool absent from the file does not
//! exist, a tool sees only the directories it mounts, the hosts it lists and
//! the environment variables it names. Parsing rejects unknown keys and bad
//! values with the file, line and column.

mod file;
pub mod hosts;
mod mcp;
mod table;

pub use file::{Mode, OutputOverflow};
pub use hosts::HostPattern;
pub use mcp::{BearerToken, McpServer, McpTransport, SEPARATOR as MCP_SEPARATOR};

use crate::paths::WardenPaths;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A policy loaded from a file and resolved against a workspace.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it came from.
    pub path: PathBuf,
    /// Session-wide limits.
    pub session: SessionLimits,
    /// Enabled tools by the name the model sees, sorted (an MCP server's
    /// as `NAME__tool`).
    pub tools: BTreeMap<String, ToolPolicy>,
    /// Enabled MCP servers (`[mcp.NAME]`) by name.
    pub mcp: BTreeMap<String, McpServer>,
    /// warden's own files, which no mount of this policy reaches; the tool
    /// host keeps its compiled components in `own_files.cache_dir`.
    pub own_files: WardenPaths,
}

/// Limits that apply to a whole session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most tool calls in one session, all tools together.
    pub max_tool_calls: u32,
    /// Most generations per user message (`[session] max_steps`).
    pub max_steps: u32,
}

/// Where a tool's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// One of the plugins compiled into warden, by name.
    Builtin(&'static str),
    /// A `.wasm` component file.
    File(PathBuf),
    /// Tool `tool` of the MCP server `[mcp.server]`: not a component, and
    /// not sandboxed here (see [`McpTransport`]).
    Mcp {
        /// The server's table key.
        server: String,
        /// The tool's name on the server.
        tool: String,
    },
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Builtin(n) => write!(f, "{n} (built-in)"),
            PluginSource::File(p) => write!(f, "{}", p.display()),
            PluginSource::Mcp { server, tool } => write!(f, "{tool} of MCP server {server}"),
        }
    }
}

/// A directory granted to a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Directory on the host (canonical).
    pub host: PathBuf,
    /// Where the tool sees it (absolute guest path).
    pub guest: String,
    /// Read-only or read-write.
    pub mode: Mode,
}

/// Per-call resource limits, after `[limits]` defaults and per-tool overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit per call.
    pub timeout: Duration,
    /// Instruction budget per call, if any.
    pub fuel: Option<u64>,
    /// Most bytes one call may write to its `rw` mounts, if limited.
    pub max_write_bytes: Option<u64>,
    /// Most outgoing HTTP requests in one call (redirects count).
    pub max_http_requests: u32,
    /// All linear memories of the instance together, in bytes.
    pub memory_bytes: usize,
    /// Longest output returned.
    pub max_output_bytes: usize,
    /// What happens to longer output.
    pub on_output_overflow: OutputOverflow,
}

/// Everything one tool is granted.
#[derive(Debug, Clone)]
pub struct ToolPolicy {
    /// Name the model sees (the table key).
    pub name: String,
    /// Component to run.
    pub plugin: PluginSource,
    /// Expected sha256 of the component bytes, lowercase hex.
    pub sha256: Option<String>,
    /// Directories it may access.
    pub mounts: Vec<Mount>,
    /// Hosts it may reach over `wasi:http`.
    pub hosts: Vec<HostPattern>,
    /// Host environment variables passed through, with their values as of
    /// loading the policy (unset ones are omitted).
    pub env: Vec<(String, String)>,
    /// Most calls of this tool per session.
    pub max_calls: Option<u32>,
    /// Resource limits per call.
    pub limits: Limits,
    /// May write, create, rename or delete under a `.git` directory
    /// (`allow_git_dir`; off by default: git runs commands named there).
    pub allow_git_dir: bool,
    /// May open files that have more than one hard link
    /// (`follow_hard_links`; off by default: a hard link can lead anywhere
    /// on the same filesystem).
    pub follow_hard_links: bool,
    /// May reach loopback, private, link-local and other internal addresses
    /// (`allow_private_network`; off by default). The host `localhost`
    /// always means loopback, and only that.
    pub allow_private_network: bool,
}

impl Policy {
    /// Refuses `log` (a session log) when it lies inside a mount of any
    /// tool: a `rw` mount could rewrite it, a `ro` one could show it to the
    /// model.
    pub fn refuse_log_in_mounts(&self, log: &Path, hint: &str) -> anyhow::Result<()> {
        let real = crate::paths::real_path(log);
        for t in self.tools.values() {
            for m in &t.mounts {
                if real.starts_with(&m.host) {
                    anyhow::bail!(
                        "the log {} lies inside the mount {} of tool {} ({}): a log must be out of reach of the tools it records (a rw mount could rewrite it, a ro one could show it to the model); {hint}",
                        log.display(),
                        m.guest,
                        t.name,
                        m.host.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Loads and resolves the policy at `path`; `{workspace}` in mount paths
    /// becomes `workspace`. warden's own files are where the environment
    /// says ([`WardenPaths::from_env`]).
    pub fn load(path: &Path, workspace: &Path) -> anyhow::Result<Policy> {
        Self::load_with(path, workspace, WardenPaths::from_env())
    }

    /// [`Policy::load`] with warden's own files at `own`.
    pub fn load_with(path: &Path, workspace: &Path, own: WardenPaths) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy file {}", path.display()))?;
        file::resolve(&text, path, workspace, own)
    }

    /// Parses policy text; `path` is used for messages and to resolve
    /// relative paths (against its directory).
    pub fn parse(text: &str, path: &Path, workspace: &Path) -> anyhow::Result<Policy> {
        file::resolve(text, path, workspace, WardenPaths::from_env())
    }
}
