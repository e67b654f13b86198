//! `warden audit show`: a session as a readable transcript.

use super::read::{read_records, Record};
use serde_json::{json, Value};
use std::path::Path;

/// The transcript of the log at `path` (one turn when `turn` is given), as
/// text, or as JSON (`{"session": …, "turns": [{"turn", "records"}], "end"}`).
pub fn show(path: &Path, turn: Option<u64>, as_json: bool) -> anyhow::Result<String> {
    let records = read_records(path)?;
    let start = records.iter().find(|r| r.kind == "session_start");
    let end = records.iter().find(|r| r.kind == "session_end");
    let mut turns: Vec<u64> = records
        .iter()
        .filter_map(|r| r.value["turn"].as_u64())
        .collect();
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
    let of_turn = |t: u64| -> Vec<&Record> {
        records
            .iter()
            .filter(|r| r.value["turn"].as_u64() == Some(t))
            .collect()
    };
    if as_json {
        let v = json!({
            "session": start.map(|r| &r.value),
            "turns": turns.iter().map(|t| json!({
                "turn": t,
                "records": of_turn(*t).iter().map(|r| &r.value).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "end": end.map(|r| &r.value),
        });
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let mut out = String::new();
    if let Some(s) = start {
        let v = &s.value;
        let tools: Vec<&str> = v["tools"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "session {}  ({})\n  model:  {} {}\n  policy: {}\n  tools:  {}\n",
            v["session_id"].as_str().unwrap_or("?"),
            v["ts"].as_str().unwrap_or(""),
            v["model"]["kind"].as_str().unwrap_or(""),
            v["model"]["path"].as_str().unwrap_or(""),
            v["policy"]["path"].as_str().unwrap_or(""),
            if tools.is_empty() {
                "none".into()
            } else {
                tools.join(", ")
            },
        ));
    }
    for t in turns {
        let recs = of_turn(t);
        let summary = recs.iter().find(|r| r.kind == "turn");
        out.push_str(&format!("\n── turn {t} ──\n"));
        if let Some(s) = summary {
            out.push_str(&format!(
                "user: {}\n",
                s.value["user"].as_str().unwrap_or("")
            ));
        }
        for r in &recs {
            let v = &r.value;
            match r.kind.as_str() {
                "generation" => {
                    let tm = &v["timings"];
                    out.push_str(&format!(
                        "[step {}] model wrote {} chars ({} prompt tokens prefilled, {} reused; {:.0} ms)\n",
                        v["step"],
                        v["output"].as_str().map_or(0, |s| s.chars().count()),
                        tm["prefill_tokens"],
                        tm["reused_tokens"],
                        tm["total_ms"].as_f64().unwrap_or(0.0),
                    ));
                }
                "tool_call" => {
                    let args = match &v["arguments"] {
                        Value::String(s) => s.clone(),
                        a => a.to_string(),
                    };
                    out.push_str(&format!(
                        "  → {} {} {}  [{} · {}] {} bytes, {:.1} ms\n",
                        v["call_id"].as_str().unwrap_or("?"),
                        v["tool"].as_str().unwrap_or("(unreadable)"),
                        one_line(&args, 120),
                        v["decision"].as_str().unwrap_or("?"),
                        v["outcome"].as_str().unwrap_or("?"),
                        v["output_bytes"],
                        v["elapsed_us"].as_f64().unwrap_or(0.0) / 1e3,
                    ));
                    if let Some(e) = v["error"].as_str() {
                        out.push_str(&format!("      {}\n", one_line(e, 160)));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = summary {
            let v = &s.value;
            out.push_str(&format!("answer: {}\n", v["answer"].as_str().unwrap_or("")));
            out.push_str(&format!(
                "({}, {} step(s), {:.0} ms: model {:.0}, tools {:.1}, overhead {:.1})\n",
                v["end_reason"].as_str().unwrap_or("?"),
                v["steps"],
                v["total_ms"].as_f64().unwrap_or(0.0),
                v["model_ms"].as_f64().unwrap_or(0.0),
                v["tool_ms"].as_f64().unwrap_or(0.0),
                v["overhead_ms"].as_f64().unwrap_or(0.0),
            ));
        } else {
            out.push_str("(the turn did not finish)\n");
        }
    }
    match end {
        Some(e) => out.push_str(&format!(
            "\nsession ended: {}\n",
            e.value["reason"].as_str().unwrap_or("?")
        )),
        None => out.push_str("\nsession did not end (no session_end record)\n"),
    }
    Ok(out)
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
