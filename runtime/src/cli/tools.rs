//! `warden tools …`.

use super::terminal::{escape, print_error, Lines};
use crate::policy::{Mode, Policy};
use crate::sandbox::{self, CallError, ErrorKind, LoadedTool, ToolHost};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum ToolsCommand {
    /// Every tool the policy enables, with its schema, limits and grants.
    List {
        /// Policy file (TOML).
        #[arg(long)]
        policy: PathBuf,
        /// Workspace directory, substituted for {workspace} in the policy.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make one tool call exactly as a session would.
    Call {
        /// Tool name, as the policy names it.
        name: String,
        /// Arguments, a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Policy file (TOML).
        #[arg(long)]
        policy: PathBuf,
        /// Workspace directory, substituted for {workspace} in the policy.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a component against the warden:tool world and show what it is.
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Scaffold a new tool plugin crate.
    New {
        /// Tool name (a crate name: lowercase letters, digits, '-', '_').
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub(super) fn run(cmd: ToolsCommand) -> ExitCode {
    match cmd {
        ToolsCommand::List {
            policy,
            workspace,
            json,
        } => report(list(&policy, &workspace, json), json),
        ToolsCommand::Call {
            name,
            args,
            policy,
            workspace,
            json,
        } => call(&name, &args, &policy, &workspace, json),
        ToolsCommand::Inspect { file, json } => report(
            sandbox::inspect(&file)
                .map_err(|e| CallError::new(ErrorKind::Failed, format!("{e:#}")))
                .map(|i| {
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&i).unwrap_or_default());
                    } else {
                        let e = |s: &str| escape(s, Lines::One).into_owned();
                        outln!("{} ({} bytes)", e(&file.display().to_string()), i.size);
                        outln!("  fits:        warden:tool/tool@0.1.0");
                        outln!("  name:        {}", e(&i.spec.plugin_name));
                        outln!("  description: {}", e(&i.spec.description));
                        outln!("  parameters:  {}", i.spec.parameters);
                        outln!("  sha256:      {}", i.sha256);
                        outln!(
                            "  imports:     {}",
                            if i.imports.is_empty() {
                                "none".into()
                            } else {
                                i.imports.join("\n               ")
                            }
                        );
                    }
                }),
            json,
        ),
        ToolsCommand::New { name, dir } => report(
            super::new_tool::scaffold(&name, dir)
                .map_err(|e| CallError::new(ErrorKind::Failed, format!("{e:#}"))),
            false,
        ),
    }
}

/// Prints a failure as `error: KIND: message` (or JSON) and picks the exit code.
fn report(result: Result<(), CallError>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                outln!("{}", json!({"ok": false, "error": e}));
            } else {
                print_error(&e.to_string());
            }
            ExitCode::FAILURE
        }
    }
}

fn load_policy(policy: &Path, workspace: &Path) -> Result<Policy, CallError> {
    Policy::load(policy, workspace).map_err(|e| CallError::new(ErrorKind::Policy, format!("{e:#}")))
}

fn list(policy: &Path, workspace: &Path, json: bool) -> Result<(), CallError> {
    let policy = load_policy(policy, workspace)?;
    let host = ToolHost::load(&policy)?;
    if json {
        let tools: Vec<_> = host.tools().map(tool_json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&tools).unwrap_or_default()
        );
        return Ok(());
    }
    let e = |s: &str| escape(s, Lines::One).into_owned();
    if policy.tools.is_empty() {
        outln!("{} enables no tools", e(&policy.path.display().to_string()));
    }
    for t in host.tools() {
        let p = &t.policy;
        let l = &p.limits;
        outln!("{}", t.spec.name);
        outln!("  description: {}", e(&t.spec.description));
        outln!("  parameters:  {}", t.spec.parameters);
        outln!(
            "  plugin:      {} (sha256 {})",
            e(&p.plugin.to_string()),
            &t.sha256[..16]
        );
        if let crate::policy::PluginSource::Mcp { server, .. } = &p.plugin {
            if let Some(s) = policy.mcp.get(server) {
                outln!("  server:      {}", e(&s.describe()));
            }
            outln!(
                "  limits:      timeout {} ms, output {} bytes ({}), calls {}",
                l.timeout.as_millis(),
                l.max_output_bytes,
                match l.on_output_overflow {
                    crate::policy::OutputOverflow::Truncate => "truncate",
                    crate::policy::OutputOverflow::Error => "error",
                },
                p.max_calls.map_or(
                    format!("up to the session's {}", policy.session.max_tool_calls),
                    |m| format!("{m} per session")
                ),
            );
            continue;
        }
        outln!(
            "  limits:      timeout {} ms, memory {} MiB, output {} bytes ({}), fuel {}, calls {}, writes {}{}",
            l.timeout.as_millis(),
            l.memory_bytes >> 20,
            l.max_output_bytes,
            match l.on_output_overflow {
                crate::policy::OutputOverflow::Truncate => "truncate",
                crate::policy::OutputOverflow::Error => "error",
            },
            l.fuel.map_or("unlimited".to_string(), |f| f.to_string()),
            p.max_calls.map_or(
                format!("up to the session's {}", policy.session.max_tool_calls),
                |m| format!("{m} per session")
            ),
            l.max_write_bytes
                .map_or("unlimited".to_string(), |b| format!("{b} bytes per call")),
            // A tool without hosts makes no requests: no limit to show.
            if p.hosts.is_empty() {
                String::new()
            } else {
                format!(", http requests {} per call", l.max_http_requests)
            },
        );
        let files: Vec<String> = p
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{} -> {} ({})",
                    m.guest,
                    e(&m.host.display().to_string()),
                    mode(m.mode)
                )
            })
            .collect();
        outln!(
            "  files:       {}",
            if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            }
        );
        let hosts: Vec<String> = p.hosts.iter().map(|h| h.to_string()).collect();
        outln!(
            "  hosts:       {}",
            if hosts.is_empty() {
                "none".into()
            } else {
                hosts.join(", ")
            }
        );
        let env: Vec<&str> = p.env.iter().map(|(k, _)| k.as_str()).collect();
        outln!(
            "  env:         {}",
            if env.is_empty() {
                "none".into()
            } else {
                env.join(", ")
            }
        );
        let grants: Vec<&str> = [
            (p.allow_git_dir, "allow_git_dir"),
            (p.follow_hard_links, "follow_hard_links"),
            (p.allow_private_network, "allow_private_network"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| *k)
        .collect();
        if !grants.is_empty() {
            outln!("  also:        {}", grants.join(", "));
        }
    }
    outln!("warden's own files (no mount may reach them):");
    let own = policy.own_files.entries();
    if own.is_empty() {
        outln!("  none configured");
    }
    for (what, path) in own {
        outln!("  {what}: {}", e(&path.display().to_string()));
    }
    Ok(())
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::ReadOnly => "ro",
        Mode::ReadWrite => "rw",
    }
}

fn tool_json(t: &LoadedTool) -> serde_json::Value {
    let p = &t.policy;
    json!({
        "name": t.spec.name,
        "description": t.spec.description,
        "parameters": t.spec.parameters,
        "plugin": p.plugin.to_string(),
        "sha256": t.sha256,
        "limits": {
            "timeout_ms": p.limits.timeout.as_millis() as u64,
            "fuel": p.limits.fuel,
            "memory_mib": p.limits.memory_bytes >> 20,
            "max_output_bytes": p.limits.max_output_bytes,
            "on_output_overflow": p.limits.on_output_overflow,
            "max_calls": p.max_calls,
            "max_write_bytes": p.limits.max_write_bytes,
            "max_http_requests": p.limits.max_http_requests,
        },
        "allow_git_dir": p.allow_git_dir,
        "follow_hard_links": p.follow_hard_links,
        "allow_private_network": p.allow_private_network,
        "files": p.mounts.iter().map(|m| json!({"path": m.host, "mount": m.guest, "mode": m.mode})).collect::<Vec<_>>(),
        "hosts": p.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        "env": p.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
    })
}

fn call(name: &str, args: &str, policy: &Path, workspace: &Path, json: bool) -> ExitCode {
    let result = load_policy(policy, workspace).and_then(|policy| {
        let host = ToolHost::load_one(&policy, name)?;
        let mut budget = host.budget();
        host.call(&mut budget, name, args)
    });
    match result {
        Ok(out) => {
            if json {
                outln!(
                    "{}",
                    json!({"ok": true, "output": out.output, "truncated": out.truncated, "elapsed_us": out.elapsed.as_micros() as u64})
                );
            } else {
                let text = escape(&out.output, Lines::Keep);
                out!("{text}");
                if !text.ends_with('\n') {
                    outln!();
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => report(Err(e), json),
    }
}
