//! Reading a session log's records (for summaries, transcripts and
//! reports; `verify` reads bytes itself).

use anyhow::Context as _;
use serde_json::Value;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// One record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its `type`.
    pub kind: String,
    /// The whole record.
    pub value: Value,
}

/// The records of the log at `path`, in order. A last line cut short (a
/// crash) is skipped; any other line that is not a record is an error.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the session log {}", path.display()))?;
    let ends_clean = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(value) => out.push(Record {
                kind: value["type"].as_str().unwrap_or_default().to_string(),
                value,
            }),
            Err(_) if i + 1 == lines.len() && !ends_clean => break,
            Err(e) => anyhow::bail!(
                "{}:{}: not a session log record ({e}); `warden audit verify` says whether the log was changed",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(out)
}

impl Record {
    /// The record as its type in [`super::record`] (the log's schema);
    /// an error naming what does not fit.
    pub fn typed(&self) -> anyhow::Result<super::record::Record> {
        serde_json::from_value::<super::record::LogLine>(self.value.clone())
            .map(|l| l.record)
            .map_err(|e| match self.kind.as_str() {
                "" => anyhow::anyhow!(
                    "not a session log record (no \"type\"); is this a warden session log?"
                ),
                kind => anyhow::anyhow!(
                    "a {kind} record does not fit the log's schema (docs/audit-log.schema.json): {e}"
                ),
            })
    }
}

/// A record as written (`value`) and as its schema type (`record`).
#[derive(Debug, Clone)]
pub struct TypedRecord {
    /// The whole line, chain fields included.
    pub value: Value,
    /// The record read as its type in [`super::record`].
    pub record: super::record::Record,
}

/// The records of the log at `path` read as the log's schema types; a line
/// that does not fit is an error naming the file and the line.
pub fn read_typed(path: &Path) -> anyhow::Result<Vec<TypedRecord>> {
    read_records(path)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let record = r
                .typed()
                .with_context(|| format!("{}:{}", path.display(), i + 1))?;
            Ok(TypedRecord {
                value: r.value,
                record,
            })
        })
        .collect()
}

/// The logs named: a directory stands for the session logs in it (its
/// `*.jsonl` files that open with a `session_start` record, sorted; a
/// state directory's `sessions/` for example).
pub fn session_logs(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
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
