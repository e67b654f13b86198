//! `warden audit verify|summary|show|report`.

use super::terminal::{escape, Lines};
use crate::audit::{self, AuditKey};
use clap::Subcommand;
use serde_json::json;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check that logs are the ones warden wrote (exit 1 naming the first bad record).
    Verify {
        /// Session logs.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Key file of the keyed chain (default: $WARDEN_AUDIT_KEY_FILE).
        #[arg(long)]
        audit_key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sessions, turns, latency per stage, overhead, tool calls by outcome.
    Summary {
        /// Session logs.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A session as a readable transcript.
    Show {
        /// Session log.
        log: PathBuf,
        /// Only this turn.
        #[arg(long)]
        turn: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One self-contained HTML page: latency per turn, tool outcomes.
    Report {
        /// Session logs.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(super) fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            logs,
            audit_key,
            json,
        } => {
            let key_file = audit_key.or_else(|| {
                std::env::var_os("WARDEN_AUDIT_KEY_FILE")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            });
            let key = key_file.as_deref().map(AuditKey::from_file).transpose()?;
            let mut all_ok = true;
            let mut results = Vec::new();
            for log in &with_dirs_read(&logs)? {
                let v = audit::verify(log, key.as_ref())?;
                all_ok &= v.problem.is_none();
                if !json {
                    let name = escape(&log.display().to_string(), Lines::One).into_owned();
                    match &v.problem {
                        None => outln!(
                            "{name}: ok ({} records, {})",
                            v.records,
                            if v.hmac_checked {
                                "HMAC checked"
                            } else if v.keyed {
                                "keyed, HMAC not checked: no key given"
                            } else {
                                "plain chain"
                            }
                        ),
                        Some(p) => outln!(
                            "{name}: {} at line {}{}: {}",
                            p.kind.as_str(),
                            p.line,
                            p.seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
                            escape(&p.detail, Lines::One)
                        ),
                    }
                }
                results.push(v);
            }
            if json {
                outln!("{}", json!({"ok": all_ok, "logs": results}));
            }
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Summary { logs, json } => {
            let s = audit::summarize(&with_dirs_read(&logs)?)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                out!("{}", escape(&s.to_text(), Lines::Keep));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show { log, turn, json } => {
            let text = audit::show(&log, turn, json)?;
            if json {
                outln!("{text}");
            } else {
                out!("{}", escape(&text, Lines::Keep));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Report { logs, out } => {
            let html = audit::report(&with_dirs_read(&logs)?)?;
            crate::outputs::write(&out, html.as_bytes())?;
            outln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The logs named: a directory stands for the session logs in it (its
/// `*.jsonl` files that open with a `session_start` record, sorted; a
/// state directory's `sessions/` for example).
fn with_dirs_read(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "jsonl"))
                .filter(|f| opens_a_session(f))
                .collect();
            if logs.is_empty() {
                anyhow::bail!("{} holds no session logs (*.jsonl)", p.display());
            }
            logs.sort();
            out.extend(logs);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Whether the file's first line is a `session_start` record.
fn opens_a_session(path: &Path) -> bool {
    use std::io::BufRead as _;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(f).take(1 << 20);
    if reader.read_line(&mut first).is_err() {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(&first).is_ok_and(|v| v["type"] == "session_start")
}
