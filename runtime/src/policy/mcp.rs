//! `[mcp.NAME]`: an MCP server whose tools join the session's tools as
//! `NAME__tool`, each governed like a plugin: enabled by name (`tools`),
//! `max_calls`, a timeout and an output cap per call, audited.
//!
//! A stdio server (`command = […]`) is a native process, outside the
//! sandbox: the policy must say so with `native = true`. Its environment is
//! only the variables named in `env`. An HTTP server (`url = "…"`) must have
//! its host in `hosts`, and its addresses pass the same checks as a tool's
//! `wasi:http` requests.

use super::table::{limits, valid_tool_name, Locator, RawLimits};
use super::{hosts, HostPattern, OutputOverflow, PluginSource, ToolPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// What joins a server's name and its tool's name in the name the model
/// sees.
pub const SEPARATOR: &str = "__";

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const MAX_CONNECT_TIMEOUT_MS: u64 = 120_000;

/// An MCP server a policy connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    /// The table key (`[mcp.NAME]`).
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
    /// The server's tools offered to the model (their names on the
    /// server), sorted.
    pub tools: Vec<String>,
    /// How long starting, `initialize` and `tools/list` may take together.
    pub connect_timeout: Duration,
}

impl McpServer {
    /// One line for people: how it is reached and what that means.
    pub fn describe(&self) -> String {
        match &self.transport {
            McpTransport::Stdio { program, args, .. } => {
                let mut cmd = program.display().to_string();
                for a in args {
                    cmd.push(' ');
                    cmd.push_str(a);
                }
                format!(
                    "native process `{cmd}` over stdio, outside the sandbox with the user's rights"
                )
            }
            McpTransport::Http { url, .. } => format!("streamable HTTP at {url}"),
        }
    }
}

/// How an MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// A native process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program (found on `PATH` at loading when not a path).
        program: PathBuf,
        /// Its arguments, `{workspace}` replaced.
        args: Vec<String>,
        /// Its working directory (default: the workspace).
        cwd: PathBuf,
        /// Its whole environment: the variables `env` names, with their
        /// values as of loading the policy.
        env: Vec<(String, String)>,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// The endpoint.
        url: String,
        /// Hosts it may be reached at (the URL's must be one).
        hosts: Vec<HostPattern>,
        /// May resolve to loopback, private and other internal addresses.
        allow_private_network: bool,
        /// A bearer token (from the variable `bearer_token_env` names).
        bearer_token: Option<BearerToken>,
    },
}

/// A secret sent to an MCP server; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(pub String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    command: Option<Spanned<Vec<String>>>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    native: bool,
    #[serde(default = "enabled_default")]
    enabled: bool,
    tools: Option<Vec<Spanned<String>>>,
    cwd: Option<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    allow_private_network: bool,
    bearer_token_env: Option<Spanned<String>>,
    max_calls: Option<u32>,
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_output_bytes: Option<u64>,
    on_output_overflow: Option<OutputOverflow>,
}

fn enabled_default() -> bool {
    true
}

/// Where paths and `{workspace}` in a `[mcp.NAME]` table resolve.
pub(super) struct Anchors<'a> {
    pub base_dir: &'a Path,
    pub workspace: &'a Path,
}

/// Resolves every enabled `[mcp.NAME]`, adding its tools to `tools` as
/// `NAME__tool`.
pub(super) fn resolve(
    raw: &BTreeMap<String, Spanned<RawMcp>>,
    loc: &Locator<'_>,
    at: &Anchors<'_>,
    defaults: &RawLimits,
    tools: &mut BTreeMap<String, ToolPolicy>,
) -> anyhow::Result<BTreeMap<String, McpServer>> {
    let mut servers = BTreeMap::new();
    for (name, spanned) in raw {
        let span = spanned.span();
        let m = spanned.get_ref();
        if !m.enabled {
            continue;
        }
        let fail = |msg: String| loc.at(span.clone(), format!("[mcp.{name}]: {msg}"));
        if !valid_tool_name(name) || name.contains(SEPARATOR) {
            return Err(fail(format!(
                "server name {name:?} is not usable: use letters, digits, '_' and '-', without \"{SEPARATOR}\""
            )));
        }
        let Some(listed) = &m.tools else {
            return Err(fail("list the server's tools the model may call, e.g. `tools = [\"search\"]`: none is offered unless named".into()));
        };
        let overrides = RawLimits {
            timeout_ms: m.timeout_ms,
            max_output_bytes: m.max_output_bytes,
            on_output_overflow: m.on_output_overflow,
            ..RawLimits::default()
        };
        let mut lim = limits(&overrides, defaults).map_err(fail)?;
        // Instructions and memory are the server's own: nothing counts them.
        lim.fuel = None;
        lim.max_write_bytes = None;
        let connect_ms = m.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
        if connect_ms == 0 || connect_ms > MAX_CONNECT_TIMEOUT_MS {
            return Err(fail(format!(
                "connect_timeout_ms must be between 1 and {MAX_CONNECT_TIMEOUT_MS}, got {connect_ms}"
            )));
        }
        let transport = match (&m.command, &m.url) {
            (Some(cmd), None) => stdio(m, cmd, loc, at, name)?,
            (None, Some(url)) => http(m, url, loc, name)?,
            _ => return Err(fail("give exactly one of `command = [\"program\", \"arg\", …]` (a stdio server) and `url = \"http(s)://…\"` (streamable HTTP)".into())),
        };
        let (hosts, allow_private_network) = match &transport {
            McpTransport::Http {
                hosts,
                allow_private_network,
                ..
            } => (hosts.clone(), *allow_private_network),
            McpTransport::Stdio { .. } => (Vec::new(), false),
        };
        let env = match &transport {
            McpTransport::Stdio { env, .. } => env.clone(),
            McpTransport::Http { .. } => Vec::new(),
        };
        let mut offered = Vec::new();
        for t in listed {
            let tool = t.get_ref();
            let full = format!("{name}{SEPARATOR}{tool}");
            if !valid_tool_name(tool) || !valid_tool_name(&full) {
                return Err(loc.at(t.span(), format!(
                    "[mcp.{name}] tools: {full:?} is not usable by a model: use letters, digits, '_' and '-' (at most 64 with the server's name)"
                )));
            }
            if tools.contains_key(&full) {
                return Err(loc.at(
                    t.span(),
                    format!("[mcp.{name}] tools: {full} is also a [tools] table; rename one"),
                ));
            }
            tools.insert(
                full.clone(),
                ToolPolicy {
                    name: full,
                    plugin: PluginSource::Mcp {
                        server: name.clone(),
                        tool: tool.clone(),
                    },
                    sha256: None,
                    mounts: Vec::new(),
                    hosts: hosts.clone(),
                    env: env.clone(),
                    max_calls: m.max_calls,
                    limits: lim.clone(),
                    allow_git_dir: false,
                    follow_hard_links: false,
                    allow_private_network,
                },
            );
            offered.push(tool.clone());
        }
        offered.sort();
        offered.dedup();
        servers.insert(
            name.clone(),
            McpServer {
                name: name.clone(),
                transport,
                tools: offered,
                connect_timeout: Duration::from_millis(connect_ms),
            },
        );
    }
    Ok(servers)
}

fn stdio(
    m: &RawMcp,
    cmd: &Spanned<Vec<String>>,
    loc: &Locator<'_>,
    at: &Anchors<'_>,
    name: &str,
) -> anyhow::Result<McpTransport> {
    let fail = |msg: String| loc.at(cmd.span(), format!("[mcp.{name}] command: {msg}"));
    if !m.native {
        return Err(fail("a stdio MCP server is a native process that runs outside the sandbox, with the user's rights; if that is meant, say so with `native = true`".into()));
    }
    if !m.hosts.is_empty() || m.allow_private_network || m.bearer_token_env.is_some() {
        return Err(fail("hosts, allow_private_network and bearer_token_env are for `url` servers: a native process reaches what the user can".into()));
    }
    let Some((first, rest)) = cmd.get_ref().split_first() else {
        return Err(fail("is empty; name the program and its arguments".into()));
    };
    let workspace = at.workspace.to_string_lossy();
    let program = find_program(first, at.base_dir).map_err(fail)?;
    let args = rest
        .iter()
        .map(|a| a.replace("{workspace}", &workspace))
        .collect();
    let cwd = match &m.cwd {
        None => at.workspace.to_path_buf(),
        Some(c) => {
            let p = PathBuf::from(c.get_ref().replace("{workspace}", &workspace));
            let p = if p.is_absolute() {
                p
            } else {
                at.base_dir.join(p)
            };
            if !p.is_dir() {
                return Err(loc.at(
                    c.span(),
                    format!("[mcp.{name}] cwd: {} is not a directory", p.display()),
                ));
            }
            p
        }
    };
    let mut env = Vec::new();
    for var in &m.env {
        let k = var.get_ref();
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(loc.at(
                var.span(),
                format!("[mcp.{name}] env: {k:?} is not a variable name"),
            ));
        }
        if let Ok(v) = std::env::var(k) {
            env.push((k.clone(), v));
        }
    }
    Ok(McpTransport::Stdio {
        program,
        args,
        cwd,
        env,
    })
}

/// `program` as a path: relative to the policy's directory when it has a
/// slash, else the first match on `PATH`.
fn find_program(program: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = base_dir.join(program);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} is not a file", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program:?} is not on PATH; give its path"))
}

fn http(
    m: &RawMcp,
    url: &Spanned<String>,
    loc: &Locator<'_>,
    name: &str,
) -> anyhow::Result<McpTransport> {
    let fail = |msg: String| loc.at(url.span(), format!("[mcp.{name}] url: {msg}"));
    if m.native || m.cwd.is_some() || !m.env.is_empty() {
        return Err(fail(
            "native, cwd and env are for `command` servers; an HTTP server is reached, not started"
                .into(),
        ));
    }
    let uri: http::Uri = url
        .get_ref()
        .parse()
        .map_err(|e| fail(format!("{:?} is not a URL: {e}", url.get_ref())))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(fail("use an http:// or https:// URL".into()));
    }
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut patterns = Vec::new();
    for h in &m.hosts {
        patterns.push(
            HostPattern::parse(h.get_ref())
                .map_err(|msg| loc.at(h.span(), format!("[mcp.{name}] hosts: {msg}")))?,
        );
    }
    if !hosts::allowed(&patterns, &host) {
        return Err(fail(format!(
            "its host {host:?} is not in this server's `hosts` (and IP addresses never are); add the name to `hosts`"
        )));
    }
    let bearer_token = match &m.bearer_token_env {
        None => None,
        Some(var) => Some(BearerToken(std::env::var(var.get_ref()).map_err(|_| {
            loc.at(
                var.span(),
                format!(
                    "[mcp.{name}] bearer_token_env: the variable {} is not set; set it to the server's token",
                    var.get_ref()
                ),
            )
        })?)),
    };
    Ok(McpTransport::Http {
        url: url.get_ref().clone(),
        hosts: patterns,
        allow_private_network: m.allow_private_network,
        bearer_token,
    })
}
