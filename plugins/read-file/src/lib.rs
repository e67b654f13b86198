//! `read-file`: a file's text with line numbers, optionally a line range.

use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use warden_tool_support::{export_tool, io_error, resolve, Tool, ToolError, ToolResult};

/// Largest file this tool reads; larger ones must be read by line range.
const MAX_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    start_line: Option<usize>,
    end_line: Option<usize>,
}

struct ReadFile;

impl Tool for ReadFile {
    type Args = Args;
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str = "Read a text file from the workspace and return its lines, each prefixed with its line number. Use start_line/end_line (1-based, inclusive) to read part of a long file.";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace root"},
                "start_line": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)"},
                "end_line": {"type": "integer", "minimum": 1, "description": "Last line to return (inclusive)"}
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        let start = args.start_line.unwrap_or(1);
        if start == 0 || args.end_line == Some(0) {
            return Err(ToolError::InvalidArguments(
                "line numbers start at 1".into(),
            ));
        }
        if let Some(end) = args.end_line {
            if end < start {
                return Err(ToolError::InvalidArguments(format!(
                    "end_line ({end}) is before start_line ({start})"
                )));
            }
        }
        let path = resolve(&args.path)?;
        let meta = std::fs::metadata(&path.abs).map_err(|e| io_error(e, &path.display))?;
        if meta.is_dir() {
            return Err(ToolError::InvalidArguments(format!(
                "{} is a directory; use list_dir to see what it contains",
                path.display
            )));
        }
        let ranged = args.start_line.is_some() || args.end_line.is_some();
        if meta.len() > MAX_BYTES && !ranged {
            return Err(ToolError::Failed(format!(
                "{} is {} bytes, over the {} byte limit of read_file; read it in parts with start_line and end_line",
                path.display,
                meta.len(),
                MAX_BYTES
            )));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&path.abs)
            .and_then(|f| f.take(16 * MAX_BYTES).read_to_end(&mut bytes))
            .map_err(|e| io_error(e, &path.display))?;
        let sniff = &bytes[..bytes.len().min(8192)];
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) if !sniff.contains(&0) => t,
            _ => {
                return Err(ToolError::Failed(format!(
                    "{} is a binary file (not UTF-8 text); read_file only returns text",
                    path.display
                )))
            }
        };
        let end = args.end_line.unwrap_or(usize::MAX);
        let mut out = String::new();
        let mut total = 0;
        for (i, line) in text.lines().enumerate() {
            total = i + 1;
            if total >= start && total <= end {
                out.push_str(&format!("{total:>6}\t{line}\n"));
            }
        }
        if start > total.max(1) {
            return Err(ToolError::InvalidArguments(format!(
                "start_line {start} is past the end of {} ({total} lines)",
                path.display
            )));
        }
        Ok(out)
    }
}

export_tool!(ReadFile);
