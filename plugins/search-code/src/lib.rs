//! `search-code`: regex search over the workspace, `file:line: text` per match.
//!
//! Walks with the `ignore` crate, so `.gitignore`, `.ignore` and hidden files
//! are skipped as ripgrep would; binary files are skipped too.

use regex::Regex;
use serde::Deserialize;
use serde_json::json;
use warden_tool_support::{
    display_under, export_tool, glob_matcher, io_error, resolve, Tool, ToolError, ToolResult,
};

/// Default and largest number of matches returned.
const DEFAULT_RESULTS: usize = 100;
const MAX_RESULTS: usize = 1000;
/// Files larger than this are not searched.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Matched lines are cut to this many characters.
const MAX_LINE_CHARS: usize = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
    max_results: Option<usize>,
}

struct SearchCode;

impl Tool for SearchCode {
    type Args = Args;
    const NAME: &'static str = "search_code";
    const DESCRIPTION: &'static str = "Search the workspace's text files for a regular expression (Rust regex syntax) and return matching lines as `file:line: text`. Respects .gitignore. Narrow with path (a directory or file) and glob (e.g. \"*.py\").";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "minLength": 1, "description": "Regular expression to search for"},
                "path": {"type": "string", "description": "Directory or file to search, relative to the workspace root (default: the root)"},
                "glob": {"type": "string", "description": "Only search files whose path matches this glob, e.g. \"*.py\" or \"blog/**\""},
                "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "description": "Most matches to return (default 100)"}
            },
            "required": ["pattern"],
            "additionalProperties": false
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        let re = Regex::new(&args.pattern).map_err(|e| {
            ToolError::InvalidArguments(format!("pattern is not a valid regex: {e}"))
        })?;
        let max = args.max_results.unwrap_or(DEFAULT_RESULTS);
        if max == 0 || max > MAX_RESULTS {
            return Err(ToolError::InvalidArguments(format!(
                "max_results must be between 1 and {MAX_RESULTS}"
            )));
        }
        let glob = glob_matcher(args.glob.as_deref())?;
        let base = resolve(args.path.as_deref().unwrap_or("."))?;
        std::fs::metadata(&base.abs).map_err(|e| io_error(e, &base.display))?;
        let walker = ignore::WalkBuilder::new(&base.abs)
            .require_git(false)
            .sort_by_file_path(|a, b| a.cmp(b))
            .build();
        let mut out = String::new();
        let mut found = 0usize;
        let mut truncated = false;
        'files: for item in walker {
            let Ok(item) = item else { continue };
            if !item.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let abs = item.path().to_string_lossy().into_owned();
            let display = display_under(&base, &abs);
            if let Some(g) = &glob {
                let name = item.file_name().to_string_lossy();
                if !g.is_match(&display) && !g.is_match(name.as_ref()) {
                    continue;
                }
            }
            if item
                .metadata()
                .map(|m| m.len() > MAX_FILE_BYTES)
                .unwrap_or(true)
            {
                continue;
            }
            let Ok(bytes) = std::fs::read(item.path()) else {
                continue;
            };
            if bytes[..bytes.len().min(8192)].contains(&0) {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            for (i, line) in text.lines().enumerate() {
                if !re.is_match(line) {
                    continue;
                }
                if found == max {
                    truncated = true;
                    break 'files;
                }
                found += 1;
                let shown: String = line.chars().take(MAX_LINE_CHARS).collect();
                let cut = if shown.len() < line.len() { " …" } else { "" };
                out.push_str(&format!("{display}:{}: {}{cut}\n", i + 1, shown.trim_end()));
            }
        }
        if found == 0 {
            return Ok(format!(
                "no matches for /{}/ under {}\n",
                args.pattern, base.display
            ));
        }
        if truncated {
            out.push_str(&format!(
                "[stopped at {max} matches; narrow the pattern, path or glob, or raise max_results]\n"
            ));
        }
        Ok(out)
    }
}

export_tool!(SearchCode);
