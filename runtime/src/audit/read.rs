//! Reading a session log's records (for summaries, transcripts and
//! reports; `verify` reads bytes itself).

use anyhow::Context as _;
use serde_json::Value;
use std::path::Path;

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
