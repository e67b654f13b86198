//! `warden audit show`: a session as a readable transcript.

use super::read::{read_typed, TypedRecord};
use super::record::Record;
use serde_json::{json, Value};
use std::path::Path;

/// The transcript of the log at `path` (one turn when `turn` is given), as
/// text, or as JSON (`{"session": …, "turns": [{"turn", "records"}], "end"}`).
pub fn show(path: &Path, turn: Option<u64>, as_json: bool) -> anyhow::Result<String> {
    let records = read_typed(path)?;
    let start = records.iter().find_map(|r| match &r.record {
        Record::SessionStart(s) => Some((r, s)),
        _ => None,
    });
    let end = records.iter().find_map(|r| match &r.record {
        Record::SessionEnd(e) => Some((r, e)),
        _ => None,
    });
    let mut turns: Vec<u64> = records.iter().filter_map(|r| turn_of(&r.record)).collect();
    turns.dedup();
    if let Some(t) = turn {
        if !turns.contains(&t) {
            anyhow::bail!(
                "{} has no turn {t} (it has {})",
                path.display(),
                if turns.is_empty() {
                    "none".to_string()
                } else {
                    format!("1..{}", turns.len())
                }
            );
        }
        turns = vec![t];
    }
    let of_turn = |t: u64| -> Vec<&TypedRecord> {
        records
            .iter()
            .filter(|r| turn_of(&r.record) == Some(t))
            .collect()
    };
    if as_json {
        // The records exactly as written, chain fields included.
        let v = json!({
            "session": start.map(|(r, _)| &r.value),
            "turns": turns.iter().map(|t| json!({
                "turn": t,
                "records": of_turn(*t).iter().map(|r| &r.value).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "end": end.map(|(r, _)| &r.value),
        });
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let mut out = String::new();
    if let Some((r, s)) = start {
        let tools: Vec<&str> = s
            .tools
            .iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        out.push_str(&format!(
            "session {}  ({})\n  model:  {} {}\n  policy: {}\n  tools:  {}\n",
            r.value["session_id"].as_str().unwrap_or("?"),
            r.value["ts"].as_str().unwrap_or(""),
            s.model["kind"].as_str().unwrap_or(""),
            s.model["path"].as_str().unwrap_or(""),
            s.policy
                .as_ref()
                .and_then(|p| p["path"].as_str())
                .unwrap_or(""),
            if tools.is_empty() {
                "none".into()
            } else {
                tools.join(", ")
            },
        ));
    }
    for t in turns {
        let recs = of_turn(t);
        let summary = recs.iter().find_map(|r| match &r.record {
            Record::Turn(s) => Some(s),
            _ => None,
        });
        out.push_str(&format!("\n── turn {t} ──\n"));
        if let Some(s) = summary {
            out.push_str(&format!("user: {}\n", s.user));
        }
        for r in &recs {
            match &r.record {
                Record::Generation(g) => {
                    let tm = &g.timings;
                    out.push_str(&format!(
                        "[step {}] model wrote {} chars ({} prompt tokens prefilled, {} reused; {:.0} ms)\n",
                        g.step,
                        g.output.chars().count(),
                        tm.prefill_tokens,
                        tm.reused_tokens,
                        tm.total_ms,
                    ));
                }
                Record::ToolCall(c) => {
                    let args = match &c.arguments {
                        Value::String(s) => s.clone(),
                        a => a.to_string(),
                    };
                    out.push_str(&format!(
                        "  → {} {} {}  [{} · {}] {} bytes, {:.1} ms\n",
                        c.call_id,
                        c.tool.as_deref().unwrap_or("(unreadable)"),
                        one_line(&args, 120),
                        c.decision,
                        c.outcome,
                        c.output_bytes,
                        c.elapsed_us as f64 / 1e3,
                    ));
                    if let Some(e) = &c.error {
                        out.push_str(&format!("      {}\n", one_line(e, 160)));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = summary {
            out.push_str(&format!("answer: {}\n", s.answer));
            out.push_str(&format!(
                "({}, {} step(s), {:.0} ms: model {:.0}, tools {:.1}, overhead {:.1})\n",
                s.end_reason
                    .as_ref()
                    .and_then(|e| e.as_str())
                    .unwrap_or("?"),
                s.steps.unwrap_or(0),
                s.total_ms,
                s.model_ms.unwrap_or(0.0),
                s.tool_ms.unwrap_or(0.0),
                s.overhead_ms.unwrap_or(0.0),
            ));
        } else {
            out.push_str("(the turn did not finish)\n");
        }
    }
    match end {
        Some((_, e)) => out.push_str(&format!("\nsession ended: {}\n", e.reason)),
        None => out.push_str("\nsession did not end (no session_end record)\n"),
    }
    Ok(out)
}

/// The turn a record belongs to (none for the session's start and end).
fn turn_of(r: &Record) -> Option<u64> {
    match r {
        Record::Generation(g) => Some(g.turn),
        Record::ToolCall(c) => Some(c.turn),
        Record::Turn(t) => Some(t.turn),
        Record::SessionStart(_) | Record::SessionEnd(_) => None,
    }
}

/// `s` on one line, cut at `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}
