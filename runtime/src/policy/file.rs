//! The TOML format of a policy file and its resolution into a [`Policy`].

use super::table::{limits, valid_tool_name, Locator, RawLimits};
use super::{HostPattern, Mount, PluginSource, Policy, SessionLimits, ToolPolicy};
use crate::paths::{real_path, WardenPaths};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Access mode of a mounted directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Mode {
    /// Read-only.
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read-write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// What to do with output longer than `max_output_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputOverflow {
    /// Return the first `max_output_bytes` with a visible marker.
    #[default]
    Truncate,
    /// Fail the call with `output-limit`.
    Error,
}

const DEFAULT_MAX_TOOL_CALLS: u32 = 32;
const DEFAULT_MAX_STEPS: u32 = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    tools: BTreeMap<String, Spanned<RawTool>>,
    #[serde(default)]
    mcp: BTreeMap<String, Spanned<super::mcp::RawMcp>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    max_tool_calls: Option<u32>,
    max_steps: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    plugin: Spanned<String>,
    #[serde(default = "enabled_default")]
    enabled: bool,
    #[serde(default)]
    files: Vec<Spanned<RawMount>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    max_calls: Option<u32>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    allow_git_dir: bool,
    #[serde(default)]
    follow_hard_links: bool,
    #[serde(default)]
    allow_private_network: bool,
    // The [limits] keys, overridable per tool. (Listed again rather than
    // flattened: serde cannot deny unknown fields through a flatten.)
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    memory_mib: Option<u64>,
    max_output_bytes: Option<u64>,
    on_output_overflow: Option<OutputOverflow>,
    max_write_bytes: Option<u64>,
    max_http_requests: Option<u32>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    path: String,
    mount: String,
    mode: Mode,
}

pub(super) fn resolve(
    text: &str,
    path: &Path,
    workspace: &Path,
    own_files: WardenPaths,
) -> anyhow::Result<Policy> {
    let loc = Locator { text, path };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => loc.at(span, e.message().trim_end()),
        None => anyhow::anyhow!("{}: {}", path.display(), e.message().trim_end()),
    })?;
    // The workspace and the policy's own directory are the user's choice:
    // symlinks in their paths are resolved once, here. Below them, no mount
    // path may pass through a symlink.
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = real_path(if base_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &base_dir
    });
    let workspace = workspace.canonicalize().map_err(|e| {
        anyhow::anyhow!(
            "workspace {} is not usable: {e}; pass an existing directory with --workspace",
            workspace.display()
        )
    })?;
    let plugin_files: Vec<PathBuf> = raw
        .tools
        .values()
        .filter(|t| t.get_ref().enabled)
        .filter_map(
            |t| match plugin_source(t.get_ref().plugin.get_ref(), &base_dir) {
                Ok(PluginSource::File(p)) => Some(p),
                _ => None,
            },
        )
        .collect();
    let guarded = Guarded::new(&own_files, path, &plugin_files);

    let (defaults, defaults_span) = match &raw.limits {
        Some(l) => (l.get_ref().clone(), l.span()),
        None => (RawLimits::default(), 0..0),
    };
    limits(&defaults, &RawLimits::default())
        .map_err(|m| loc.at(defaults_span, format!("[limits]: {m}")))?;

    let mut tools = BTreeMap::new();
    for (name, spanned) in &raw.tools {
        let tool_span = spanned.span();
        let t = spanned.get_ref();
        if !t.enabled {
            continue;
        }
        if !valid_tool_name(name) {
            return Err(loc.at(tool_span, format!(
                "tool name {name:?} is not usable by a model: use letters, digits, '_' and '-' (at most 64)"
            )));
        }
        let overrides = RawLimits {
            timeout_ms: t.timeout_ms,
            fuel: t.fuel,
            memory_mib: t.memory_mib,
            max_output_bytes: t.max_output_bytes,
            on_output_overflow: t.on_output_overflow,
            max_write_bytes: t.max_write_bytes,
            max_http_requests: t.max_http_requests,
        };
        let limits = limits(&overrides, &defaults)
            .map_err(|m| loc.at(tool_span.clone(), format!("[tools.{name}]: {m}")))?;

        let plugin = plugin_source(t.plugin.get_ref(), &base_dir)
            .map_err(|m| loc.at(t.plugin.span(), format!("[tools.{name}] plugin: {m}")))?;

        let mut mounts: Vec<Mount> = Vec::new();
        for m in &t.files {
            let mount = resolve_mount(m.get_ref(), &base_dir, &workspace)
                .and_then(|mount| guarded.check(&mount).map(|()| mount))
                .map_err(|msg| loc.at(m.span(), format!("[tools.{name}] files: {msg}")))?;
            if mounts.iter().any(|o| o.guest == mount.guest) {
                return Err(loc.at(
                    m.span(),
                    format!("[tools.{name}] files: {} is mounted twice", mount.guest),
                ));
            }
            mounts.push(mount);
        }

        let mut hosts = Vec::new();
        for h in &t.hosts {
            hosts.push(
                HostPattern::parse(h.get_ref())
                    .map_err(|m| loc.at(h.span(), format!("[tools.{name}] hosts: {m}")))?,
            );
        }

        let mut env = Vec::new();
        for var in &t.env {
            let k = var.get_ref();
            if k.is_empty() || k.contains('=') {
                return Err(loc.at(
                    var.span(),
                    format!("[tools.{name}] env: {k:?} is not a variable name"),
                ));
            }
            if let Ok(v) = std::env::var(k) {
                env.push((k.clone(), v));
            }
        }

        let sha256 = match &t.sha256 {
            Some(s) => {
                let v = s.get_ref().to_ascii_lowercase();
                if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(loc.at(
                        s.span(),
                        format!(
                            "[tools.{name}] sha256: expected 64 hex digits, got {:?}",
                            s.get_ref()
                        ),
                    ));
                }
                Some(v)
            }
            None => None,
        };

        tools.insert(
            name.clone(),
            ToolPolicy {
                name: name.clone(),
                plugin,
                sha256,
                mounts,
                hosts,
                env,
                max_calls: t.max_calls,
                limits,
                allow_git_dir: t.allow_git_dir,
                follow_hard_links: t.follow_hard_links,
                allow_private_network: t.allow_private_network,
            },
        );
    }

    let mcp = super::mcp::resolve(
        &raw.mcp,
        &loc,
        &super::mcp::Anchors {
            base_dir: &base_dir,
            workspace: &workspace,
        },
        &defaults,
        &mut tools,
    )?;

    Ok(Policy {
        path: path.to_path_buf(),
        session: SessionLimits {
            max_tool_calls: raw.session.max_tool_calls.unwrap_or(DEFAULT_MAX_TOOL_CALLS),
            max_steps: match raw.session.max_steps {
                Some(0) => anyhow::bail!(
                    "{}: [session] max_steps must be at least 1 (generations per user message)",
                    path.display()
                ),
                Some(n) => n,
                None => DEFAULT_MAX_STEPS,
            },
        },
        tools,
        mcp,
        own_files,
    })
}

fn plugin_source(plugin: &str, base_dir: &Path) -> Result<PluginSource, String> {
    if let Some((name, _)) = warden_artifacts::builtin(plugin) {
        return Ok(PluginSource::Builtin(name));
    }
    let path = base_dir.join(plugin);
    if path.is_file() {
        return Ok(PluginSource::File(path));
    }
    Err(format!(
        "{plugin:?} is neither a built-in plugin ({}) nor a file at {}",
        warden_artifacts::builtin_names(),
        path.display()
    ))
}

fn resolve_mount(m: &RawMount, base_dir: &Path, workspace: &Path) -> Result<Mount, String> {
    let (anchor, rest) = match m.path.strip_prefix("{workspace}") {
        Some(rest) => (workspace.to_path_buf(), rest),
        None if Path::new(&m.path).is_absolute() => (PathBuf::from("/"), m.path.as_str()),
        None => (base_dir.to_path_buf(), m.path.as_str()),
    };
    let host = no_symlinks_below(&anchor, rest)?;
    Ok(Mount {
        host,
        guest: guest_mount_point(&m.mount)?,
        mode: m.mode,
    })
}

/// `anchor` joined with `rest`, where no component of `rest` may be a
/// symlink, `..` or missing, and the result must be a directory. A mount
/// is opened once per host without following symlinks; refusing them here
/// says so early, with the policy's line and column.
fn no_symlinks_below(anchor: &Path, rest: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let mut host = anchor.to_path_buf();
    for part in Path::new(rest).components() {
        match part {
            Component::Normal(name) => host.push(name),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                return Err(format!(
                    "{rest:?} contains \"..\"; name the directory without it"
                ))
            }
        }
        let meta = std::fs::symlink_metadata(&host)
            .map_err(|e| format!("cannot mount {}: {e}", host.display()))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(format!(
                "{} is a symlink{target}; mounts never follow symlinks: mount the directory it names by its real path",
                host.display()
            ));
        }
    }
    if !std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "{} is not a directory; mounts are directories",
            host.display()
        ));
    }
    Ok(host)
}

/// The guest mount point in one normal form (`//w/./` is `/w`), so that
/// the duplicate check sees through spelling. `/` is refused: a tool's
/// mounts are named directories.
fn guest_mount_point(mount: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "mount {mount:?} must be an absolute guest path such as \"/workspace\" (not \"/\", no \"..\")"
        )
    };
    if !mount.starts_with('/') {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for part in mount.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Files no mount may reach: warden's own (any mode), and for `rw` mounts
/// the policy file and the plugins it names, which a tool could otherwise
/// rewrite to grant itself more on the next run.
struct Guarded {
    own: Vec<(&'static str, PathBuf)>,
    inputs: Vec<(&'static str, PathBuf)>,
}

impl Guarded {
    fn new(own: &WardenPaths, policy_file: &Path, plugins: &[PathBuf]) -> Guarded {
        let mut inputs = vec![("policy file", real_path(policy_file))];
        inputs.extend(plugins.iter().map(|p| ("plugin", real_path(p))));
        Guarded {
            own: own
                .entries()
                .into_iter()
                .map(|(what, p)| (what, real_path(p)))
                .collect(),
            inputs,
        }
    }

    fn check(&self, mount: &Mount) -> Result<(), String> {
        let host = &mount.host;
        for (what, own) in &self.own {
            if own.starts_with(host) {
                return Err(format!(
                    "{} contains warden's {what} {}; no tool may reach warden's own files: mount a narrower directory, or move the {what} (see `warden tools list`)",
                    host.display(),
                    own.display()
                ));
            }
            if host.starts_with(own) {
                return Err(format!(
                    "{} lies inside warden's {what} {}; no tool may reach warden's own files",
                    host.display(),
                    own.display()
                ));
            }
        }
        if mount.mode == Mode::ReadWrite {
            for (what, file) in &self.inputs {
                if file.starts_with(host) {
                    return Err(format!(
                        "read-write mount {} contains the {what} {}: a tool could rewrite what it is granted; keep the {what} outside the mount, or mount it \"ro\"",
                        host.display(),
                        file.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::DEFAULT_MAX_OUTPUT;
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> anyhow::Result<Policy> {
        Policy::parse(text, Path::new("/tmp/p.toml"), Path::new("."))
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let err = parse("[limits]\ntimeout_ms = 10\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/tmp/p.toml:3:1: unknown field `bogus`"),
            "{err}"
        );
        let err = parse("[tools.x]\nplugin = \"read-file\"\nfile = []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/tmp/p.toml:3:1: unknown field `file`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_toml_names_the_position() {
        let err = parse("[session]\nmax_tool_calls = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/tmp/p.toml:2:"), "{err}");
    }

    #[test]
    fn limits_merge_defaults_and_overrides() {
        let p = parse(
            "[limits]\ntimeout_ms = 100\nmemory_mib = 8\n[tools.a]\nplugin = \"read-file\"\ntimeout_ms = 7\n[tools.b]\nplugin = \"read-file\"\nenabled = false\n",
        )
        .unwrap();
        let a = &p.tools["a"];
        assert_eq!(a.limits.timeout, Duration::from_millis(7));
        assert_eq!(a.limits.memory_bytes, 8 << 20);
        assert_eq!(a.limits.max_output_bytes, DEFAULT_MAX_OUTPUT as usize);
        assert!(!p.tools.contains_key("b"), "disabled tools must not exist");
        assert_eq!(p.session.max_tool_calls, DEFAULT_MAX_TOOL_CALLS);
    }

    #[test]
    fn bad_values_are_refused_with_position() {
        for (text, want) in [
            ("[tools.a]\nplugin = \"nope\"\n", "neither a built-in"),
            ("[tools.a]\nplugin = \"read-file\"\nhosts = [\"127.0.0.1\"]\n", "IP"),
            ("[tools.a]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}\", mount = \"rel\", mode = \"ro\" }]\n", "absolute"),
            ("[tools.a]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}\", mount = \"/w\", mode = \"rx\" }]\n", "unknown variant"),
            ("[tools.a]\nplugin = \"read-file\"\nfiles = [{ path = \"/does/not/exist\", mount = \"/w\", mode = \"ro\" }]\n", "cannot mount"),
            ("[tools.a]\nplugin = \"read-file\"\ntimeout_ms = 0\n", "timeout_ms"),
            ("[tools.a]\nplugin = \"read-file\"\nsha256 = \"abc\"\n", "64 hex"),
            ("[tools.\"a b\"]\nplugin = \"read-file\"\n", "not usable"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("/tmp/p.toml:") && err.contains(want), "{text}: {err}");
        }
    }
}
