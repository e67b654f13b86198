//! `list-dir`: entries of a directory tree with type and size, sorted, capped.

use serde::Deserialize;
use serde_json::json;
use warden_tool_support::{
    display_under, export_tool, glob_matcher, io_error, resolve, Tool, ToolError, ToolResult,
};

/// Most entries one call returns.
const MAX_ENTRIES: usize = 500;
/// Deepest recursion allowed.
const MAX_DEPTH: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default)]
    path: Option<String>,
    depth: Option<usize>,
    glob: Option<String>,
}

struct ListDir;

struct Entry {
    display: String,
    is_dir: bool,
    size: u64,
}

impl Tool for ListDir {
    type Args = Args;
    const NAME: &'static str = "list_dir";
    const DESCRIPTION: &'static str = "List the files and directories under a directory of the workspace, with type and size, sorted by path. depth 1 (the default) lists only the directory itself; glob (e.g. \"**/*.py\") keeps matching files.";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Directory, relative to the workspace root (default: the root)"},
                "depth": {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH, "description": "How many levels to descend (default 1)"},
                "glob": {"type": "string", "description": "Only list files whose path (relative to `path`) matches this glob"}
            },
            "additionalProperties": false
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        let depth = args.depth.unwrap_or(1);
        if depth == 0 || depth > MAX_DEPTH {
            return Err(ToolError::InvalidArguments(format!(
                "depth must be between 1 and {MAX_DEPTH}"
            )));
        }
        let glob = glob_matcher(args.glob.as_deref())?;
        let base = resolve(args.path.as_deref().unwrap_or("."))?;
        let meta = std::fs::metadata(&base.abs).map_err(|e| io_error(e, &base.display))?;
        if !meta.is_dir() {
            return Err(ToolError::InvalidArguments(format!(
                "{} is a file, not a directory; use read_file to read it",
                base.display
            )));
        }
        let walker = ignore::WalkBuilder::new(&base.abs)
            .max_depth(Some(depth))
            .hidden(false)
            .require_git(false)
            .filter_entry(|e| e.file_name() != ".git")
            .sort_by_file_path(|a, b| a.cmp(b))
            .build();
        let mut entries = Vec::new();
        let mut more = 0usize;
        for item in walker {
            let item = match item {
                Ok(i) => i,
                Err(e) => return Err(ToolError::Failed(format!("{}: {e}", base.display))),
            };
            if item.depth() == 0 {
                continue;
            }
            let abs = item.path().to_string_lossy().into_owned();
            let is_dir = item.file_type().is_some_and(|t| t.is_dir());
            if let Some(g) = &glob {
                let rel = abs[base.abs.len()..].trim_start_matches('/');
                if is_dir || !g.is_match(rel) {
                    continue;
                }
            }
            if entries.len() >= MAX_ENTRIES {
                more += 1;
                continue;
            }
            let size = if is_dir {
                0
            } else {
                item.metadata().map(|m| m.len()).unwrap_or(0)
            };
            entries.push(Entry {
                display: display_under(&base, &abs),
                is_dir,
                size,
            });
        }
        let mut out = String::new();
        for e in &entries {
            if e.is_dir {
                out.push_str(&format!("dir  {:>10}  {}/\n", "-", e.display));
            } else {
                out.push_str(&format!("file {:>10}  {}\n", e.size, e.display));
            }
        }
        if entries.is_empty() {
            out.push_str(&format!("(no entries under {})\n", base.display));
        }
        if more > 0 {
            out.push_str(&format!(
                "[{more} more entries not shown; narrow with path, depth or glob]\n"
            ));
        }
        Ok(out)
    }
}

export_tool!(ListDir);
