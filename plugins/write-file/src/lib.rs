//! `write-file`: create, overwrite or append to a file under a read-write mount.

use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use warden_tool_support::{export_tool, io_error, resolve, Tool, ToolError, ToolResult};

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Create,
    Overwrite,
    Append,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    content: String,
    mode: Mode,
}

struct WriteFile;

impl Tool for WriteFile {
    type Args = Args;
    const NAME: &'static str = "write_file";
    const DESCRIPTION: &'static str = "Write text to a file in the workspace. mode \"create\" makes a new file (and its parent directories) and fails if it exists; \"overwrite\" replaces an existing file; \"append\" adds to the end of one.";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace root"},
                "content": {"type": "string", "description": "Text to write"},
                "mode": {"type": "string", "enum": ["create", "overwrite", "append"]}
            },
            "required": ["path", "content", "mode"],
            "additionalProperties": false
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        let path = resolve(&args.path)?;
        if path.display == "." || args.path.ends_with('/') {
            return Err(ToolError::InvalidArguments(format!(
                "'{}' names a directory; give a file path",
                args.path
            )));
        }
        let mut opts = std::fs::OpenOptions::new();
        match args.mode {
            Mode::Create => {
                if let Some(parent) = std::path::Path::new(&path.abs).parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io_error(e, &path.display))?;
                }
                opts.write(true).create_new(true)
            }
            Mode::Overwrite => opts.write(true).truncate(true),
            Mode::Append => opts.append(true),
        };
        let mut file = opts.open(&path.abs).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ToolError::Failed(format!(
                "{} already exists; use mode \"overwrite\" or \"append\"",
                path.display
            )),
            std::io::ErrorKind::NotFound => ToolError::Failed(format!(
                "{} does not exist; use mode \"create\"",
                path.display
            )),
            _ => io_error(e, &path.display),
        })?;
        file.write_all(args.content.as_bytes())
            .map_err(|e| io_error(e, &path.display))?;
        let verb = match args.mode {
            Mode::Create => "created",
            Mode::Overwrite => "overwrote",
            Mode::Append => "appended to",
        };
        Ok(format!(
            "{verb} {} ({} bytes written)",
            path.display,
            args.content.len()
        ))
    }
}

export_tool!(WriteFile);
