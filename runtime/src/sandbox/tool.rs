//! One loaded tool: its compiled component, spec, schema validator and
//! grants, ready to run calls in fresh instances.

use super::engine::{Runtime, EPOCH_TICK};
use super::error::{CallError, ErrorKind};
use super::fs::{FsCall, FsRules, QuotaExceeded, WriteQuota};
use super::limiter::{max_resources, TotalMemoryLimiter, FIELD_SIZE_LIMIT};
use super::mcp::Connection;
use super::net::{NetGrant, PolicyHooks};
use super::notes::Notes;
use super::output;
use super::state::CallState;
use super::stderr::CapturedStderr;
use crate::policy::{HostPattern, OutputOverflow, PluginSource, ToolPolicy};
use anyhow::Context as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;

wasmtime::component::bindgen!({
    world: "tool",
    path: "../wit",
    exports: { default: async },
});

use self::warden::tool::types::Error as GuestError;

/// Deadline for `describe` at load time.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `wasi:random` request served in one piece.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// What a tool says about itself, as the model will see it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSpec {
    /// The name the model calls it by (the policy's table key).
    pub name: String,
    /// The name the plugin suggests for itself.
    pub plugin_name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// A successful call.
#[derive(Debug, Clone, Serialize)]
pub struct CallOutput {
    /// What the tool returned, possibly cut (see `truncated`).
    pub output: String,
    /// Whether the output was cut at `max_output_bytes`.
    pub truncated: bool,
    /// Time from receiving the arguments to having the output.
    pub elapsed: Duration,
}

/// A tool ready to be called.
pub struct LoadedTool {
    /// Its grants and limits.
    pub policy: ToolPolicy,
    /// Its spec.
    pub spec: ToolSpec,
    /// sha256 of the component bytes, lowercase hex.
    pub sha256: String,
    validator: jsonschema::Validator,
    body: Body,
}

/// What runs a call.
enum Body {
    /// A component, instantiated fresh per call with the tool's grants.
    Wasm {
        pre: ToolPre<CallState>,
        hosts: Arc<[HostPattern]>,
        fs: Arc<FsRules>,
    },
    /// A tool of an MCP server, by its name there.
    Mcp {
        connection: Arc<Connection>,
        remote: String,
    },
}

impl LoadedTool {
    /// Compiles (or loads from cache) the plugin, checks the pin, checks the
    /// component against the `tool` world and asks it to describe itself.
    pub fn load(rt: &Runtime, policy: ToolPolicy) -> anyhow::Result<LoadedTool> {
        let bytes: std::borrow::Cow<[u8]> = match &policy.plugin {
            PluginSource::Builtin(name) => warden_artifacts::builtin(name)
                .map(|(_, b)| std::borrow::Cow::Borrowed(b))
                .context("unknown built-in plugin")?,
            PluginSource::File(path) => std::borrow::Cow::Owned(
                std::fs::read(path)
                    .with_context(|| format!("cannot read plugin {}", path.display()))?,
            ),
            PluginSource::Mcp { .. } => {
                anyhow::bail!(
                    "a tool of an MCP server is loaded with its connection (ToolHost does)"
                )
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(want) = &policy.sha256 {
            if *want != sha256 {
                anyhow::bail!(
                    "plugin {} has sha256 {sha256}, but the policy pins {want}; if the plugin was rebuilt on purpose, update `sha256` in the policy",
                    policy.plugin
                );
            }
        }
        Self::from_bytes(rt, policy, &bytes, sha256)
    }

    fn from_bytes(
        rt: &Runtime,
        policy: ToolPolicy,
        bytes: &[u8],
        sha256: String,
    ) -> anyhow::Result<LoadedTool> {
        let component = rt.compile(bytes)?;
        let pre = rt
            .linker
            .instantiate_pre(&component)
            .and_then(ToolPre::new)
            .map_err(|e| anyhow::anyhow!(
                "the component does not fit the warden:tool/tool world: {e:#}. Build it against wit/tool.wit (`warden tools new` scaffolds one); tools may import only WASI 0.2 and wasi:http"
            ))?;
        let hosts: Arc<[HostPattern]> = policy.hosts.clone().into();
        let fs = Arc::new(FsRules::open(&policy)?);
        // describe() gets nothing: no mounts, hosts or environment.
        let mut store = new_store(rt, &policy, None, DESCRIBE_TIMEOUT)?;
        let described = rt.block_on(async {
            tokio::time::timeout(DESCRIBE_TIMEOUT, async {
                let tool = pre.instantiate_async(&mut store).await?;
                tool.call_describe(&mut store).await
            })
            .await
        });
        let spec = match described {
            Ok(r) => r.map_err(|e| anyhow::anyhow!("describe() failed: {e:#}"))?,
            Err(_) => anyhow::bail!(
                "describe() did not return within {} s; a tool must describe itself at once",
                DESCRIBE_TIMEOUT.as_secs()
            ),
        };
        let parameters: serde_json::Value =
            serde_json::from_str(&spec.parameters).map_err(|e| {
                anyhow::anyhow!(
                    "describe() returned parameters that are not JSON ({e}): {}",
                    spec.parameters
                )
            })?;
        if parameters.get("type").and_then(|t| t.as_str()) != Some("object") {
            anyhow::bail!("describe() returned a parameter schema whose \"type\" is not \"object\": tool arguments are a JSON object");
        }
        let validator = jsonschema::validator_for(&parameters).map_err(|e| {
            anyhow::anyhow!("describe() returned parameters that are not a valid JSON Schema: {e}")
        })?;
        Ok(LoadedTool {
            spec: ToolSpec {
                name: policy.name.clone(),
                plugin_name: spec.name,
                description: spec.description,
                parameters,
            },
            policy,
            sha256,
            validator,
            body: Body::Wasm { pre, hosts, fs },
        })
    }

    /// Tool `remote` of the MCP server behind `connection`, as `tools/list`
    /// described it; its sha256 is that of the description (name,
    /// description, input schema), so a changed tool shows in the log.
    pub(super) fn mcp(
        policy: ToolPolicy,
        connection: Arc<Connection>,
        listed: &rmcp::model::Tool,
    ) -> anyhow::Result<LoadedTool> {
        let PluginSource::Mcp { server, tool } = &policy.plugin else {
            anyhow::bail!("{} is not a tool of an MCP server", policy.name);
        };
        let (description, parameters) = super::mcp::described(server, listed)?;
        let validator = jsonschema::validator_for(&parameters).map_err(|e| {
            anyhow::anyhow!(
                "MCP server {server}: the input schema of {tool} is not a valid JSON Schema: {e}"
            )
        })?;
        let sha256 = hex::encode(Sha256::digest(
            serde_json::json!({"name": tool, "description": description, "inputSchema": parameters})
                .to_string(),
        ));
        let remote = tool.clone();
        Ok(LoadedTool {
            spec: ToolSpec {
                name: policy.name.clone(),
                plugin_name: remote.clone(),
                description,
                parameters,
            },
            policy,
            sha256,
            validator,
            body: Body::Mcp { connection, remote },
        })
    }

    /// Runs one call in a fresh instance: validate, instantiate, call, cap.
    /// Blocks on the runtime's executor; from async code use
    /// [`LoadedTool::call_async`].
    pub fn call(&self, rt: &Runtime, arguments: &str) -> Result<CallOutput, CallError> {
        rt.block_on(self.call_async(rt, arguments))
    }

    /// [`LoadedTool::call`] as a future (it needs a tokio runtime).
    pub async fn call_async(&self, rt: &Runtime, arguments: &str) -> Result<CallOutput, CallError> {
        let start = Instant::now();
        let value: serde_json::Value = serde_json::from_str(arguments).map_err(|e| {
            CallError::new(
                ErrorKind::InvalidArguments,
                format!("arguments are not valid JSON: {e}"),
            )
        })?;
        self.check_schema(&value)?;

        let limits = &self.policy.limits;
        let (pre, hosts, fs) = match &self.body {
            Body::Wasm { pre, hosts, fs } => (pre, hosts, fs),
            Body::Mcp { connection, remote } => {
                let serde_json::Value::Object(args) = value else {
                    return Err(CallError::new(
                        ErrorKind::InvalidArguments,
                        "arguments must be a JSON object",
                    ));
                };
                let out = connection.call(remote, args, limits.timeout).await?;
                return self.capped(out, start);
            }
        };
        let mut store = new_store(rt, &self.policy, Some((hosts, fs)), limits.timeout)
            .map_err(|e| CallError::new(ErrorKind::Failed, format!("{e:#}")))?;
        // The timeout ends waits in the host (sleeps, polls, slow servers);
        // the epoch deadline ends wasm that spins. Dropping the future on
        // timeout drops everything the call was waiting on.
        let outcome = tokio::time::timeout(limits.timeout, async {
            let tool = pre.instantiate_async(&mut store).await?;
            tool.call_call(&mut store, arguments).await
        })
        .await;
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Some(text) = store.data().stderr.one_line() {
                tracing::debug!(tool = %self.policy.name, stderr = %text, "plugin stderr");
            }
        }
        let result = match outcome {
            Ok(r) => r.map_err(|e| self.classify(e, &store))?,
            Err(_) => return Err(self.timed_out()),
        };
        // Whatever the tool made of a wait that ended at the deadline, the
        // call ran out of time.
        if start.elapsed() >= limits.timeout {
            return Err(self.timed_out());
        }
        let out = match result {
            Ok(out) => out,
            Err(e) => return Err(self.guest_error(e, &store)),
        };
        self.capped(out, start)
    }

    /// `out` cut at `max_output_bytes`, or refused past it when the policy
    /// says `on_output_overflow = "error"`.
    fn capped(&self, mut out: String, start: Instant) -> Result<CallOutput, CallError> {
        let limits = &self.policy.limits;
        let truncated = output::truncate(&mut out, limits.max_output_bytes);
        if truncated && limits.on_output_overflow == OutputOverflow::Error {
            return Err(CallError::new(
                ErrorKind::OutputLimit,
                format!(
                    "output exceeded max_output_bytes ({}); ask for less",
                    limits.max_output_bytes
                ),
            ));
        }
        Ok(CallOutput {
            output: out,
            truncated,
            elapsed: start.elapsed(),
        })
    }

    /// Checks `value` against the tool's argument schema
    /// (`invalid-arguments` names each failing path).
    pub fn check_schema(&self, value: &serde_json::Value) -> Result<(), CallError> {
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let problems: Vec<String> = self
            .validator
            .iter_errors(value)
            .take(5)
            .map(|e| {
                let at = e.instance_path.to_string();
                format!(
                    "at {}: {e}",
                    if at.is_empty() { "/".to_string() } else { at }
                )
            })
            .collect();
        Err(CallError::new(
            ErrorKind::InvalidArguments,
            format!(
                "arguments do not match the schema of {}: {}",
                self.policy.name,
                problems.join("; ")
            ),
        ))
    }

    fn guest_error(&self, e: GuestError, store: &Store<CallState>) -> CallError {
        let (kind, mut msg) = match e {
            GuestError::InvalidArguments(m) => (ErrorKind::InvalidArguments, m),
            GuestError::Denied(m) => (ErrorKind::Denied, m),
            GuestError::Failed(m) => (ErrorKind::Failed, m),
        };
        output::truncate(&mut msg, self.policy.limits.max_output_bytes);
        push_notes(&mut msg, store);
        CallError::new(kind, msg)
    }

    fn timed_out(&self) -> CallError {
        CallError::new(
            ErrorKind::Timeout,
            format!(
                "{} exceeded its wall-clock limit of {} ms",
                self.policy.name,
                self.policy.limits.timeout.as_millis()
            ),
        )
    }

    fn classify(&self, e: wasmtime::Error, store: &Store<CallState>) -> CallError {
        let limits = &self.policy.limits;
        if store.data().limiter.hit {
            return CallError::new(
                ErrorKind::Memory,
                format!(
                    "{} exceeded its memory limit of {} MiB",
                    self.policy.name,
                    limits.memory_bytes >> 20
                ),
            );
        }
        let table_full = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<ResourceTableError>(),
                Some(ResourceTableError::Full)
            )
        });
        if table_full {
            return CallError::new(
                ErrorKind::Memory,
                format!(
                    "{} exceeded its memory limit of {} MiB: it held {} host resources (handles, HTTP header fields, request bodies), the most that limit allows",
                    self.policy.name,
                    limits.memory_bytes >> 20,
                    max_resources(limits.memory_bytes)
                ),
            );
        }
        if store.data().fs.quota.hit() || e.chain().any(|c| c.is::<QuotaExceeded>()) {
            return CallError::new(
                ErrorKind::Denied,
                format!(
                    "{} tried to write more than its max_write_bytes ({} bytes) in one call; what it wrote before stays. Write less, or raise max_write_bytes in the policy",
                    self.policy.name,
                    limits.max_write_bytes.unwrap_or(0)
                ),
            );
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => self.timed_out(),
            Some(Trap::OutOfFuel) => CallError::new(
                ErrorKind::Timeout,
                format!(
                    "{} used up its fuel budget of {} instructions",
                    self.policy.name,
                    limits.fuel.unwrap_or(0)
                ),
            ),
            other => {
                // One line: the trap or root cause; the wasm backtrace goes
                // to the debug log.
                tracing::debug!(tool = %self.policy.name, "crashed: {e:?}");
                let cause = match other {
                    Some(trap) => trap.to_string(),
                    None => e.root_cause().to_string().replace('\n', " "),
                };
                let mut msg = format!("{} crashed: {cause}", self.policy.name);
                if let Some(text) = store.data().stderr.one_line() {
                    msg.push_str(&format!("; its stderr ended: {text}"));
                }
                output::truncate(&mut msg, limits.max_output_bytes);
                push_notes(&mut msg, store);
                CallError::new(ErrorKind::Trap, msg)
            }
        }
    }
}

/// Appends the rules behind the host's refusals in this call, which the
/// guest saw only as error codes.
fn push_notes(msg: &mut String, store: &Store<CallState>) {
    if let Some(notes) = store.data().fs.notes.joined() {
        msg.push_str(&format!(" [warden: {notes}]"));
    }
}

/// A fresh store for one call with the policy's limits, and its grants
/// (`hosts` and mounts) when given — `describe` gets none.
fn new_store(
    rt: &Runtime,
    policy: &ToolPolicy,
    grant: Option<(&Arc<[HostPattern]>, &Arc<FsRules>)>,
    timeout: Duration,
) -> anyhow::Result<Store<CallState>> {
    let limits = &policy.limits;
    let stderr = CapturedStderr::default();
    let mut wasi = WasiCtx::builder();
    wasi.stderr(stderr.clone())
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES);
    if grant.is_some() {
        wasi.envs(&policy.env);
    }
    let notes = Notes::default();
    let (hosts, fs) = match grant {
        Some((h, f)) => (h.clone(), f.clone()),
        None => (Arc::from([]), Arc::new(FsRules::none())),
    };
    let mut http = WasiHttpCtx::new();
    http.set_field_size_limit(FIELD_SIZE_LIMIT);
    let mut table = ResourceTable::new();
    table.set_max_capacity(max_resources(limits.memory_bytes));
    let state = CallState {
        wasi: wasi.build(),
        http,
        hooks: PolicyHooks {
            grant: NetGrant {
                hosts,
                allow_private_network: policy.allow_private_network,
                max_requests: limits.max_http_requests,
            },
            resolver: rt.resolver.clone(),
            deadline: (Instant::now() + timeout).into(),
            sent: 0,
            notes: notes.clone(),
        },
        table,
        limiter: TotalMemoryLimiter::new(limits.memory_bytes),
        stderr,
        fs: FsCall {
            rules: fs,
            quota: WriteQuota::new(limits.max_write_bytes),
            notes,
        },
    };
    let mut store = Store::new(&rt.engine, state);
    store.limiter(|s| &mut s.limiter);
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    if rt.fuel {
        store.set_fuel(match grant {
            Some(_) => limits.fuel.unwrap_or(u64::MAX),
            None => u64::MAX,
        })?;
    }
    Ok(store)
}
