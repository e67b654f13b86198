//! `warden audit verify|summary|show|report`.

use super::terminal::{escape, Lines};
use crate::audit::{self, AuditKey};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
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
            for log in &audit::session_logs(&logs)? {
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
            let s = audit::summarize(&audit::session_logs(&logs)?)?;
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
            let html = audit::report(&audit::session_logs(&logs)?)?;
            crate::outputs::write(&out, html.as_bytes())?;
            outln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
