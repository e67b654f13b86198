//! The `warden:tool` component: arguments, working directory, variables.

use serde::Deserialize;
use serde_json::json;
use warden_tool_support::{export_tool, mounts, resolve, Tool, ToolError, ToolResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    command: String,
    cwd: Option<String>,
}

struct RunCommand;

impl Tool for RunCommand {
    type Args = Args;
    const NAME: &'static str = "run_command";
    const DESCRIPTION: &'static str = "Run a shell command line in the workspace and return its output. Supports quotes, pipes, &&, ||, ;, globs and redirections, with built-in grep, rg, find, xargs, ls, cat, head, tail, wc, sort, uniq, cut, tr, sed, awk '{print $N}', echo, printf, pwd, cd, basename, dirname, test, true, false, seq, and read-only git (ls-files, grep, log, show, diff). Nothing else can run (no python, no package managers, no network).";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "minLength": 1, "description": "The command line, e.g. grep -rn 'def ' --include='*.py' ."},
                "cwd": {"type": "string", "description": "Working directory, relative to the workspace root (default: the root)"}
            },
            "required": ["command"],
            "additionalProperties": false
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        let mounts = mounts();
        let cwd = resolve(args.cwd.as_deref().unwrap_or("."))?;
        if !std::fs::metadata(&cwd.abs).is_ok_and(|m| m.is_dir()) {
            return Err(ToolError::InvalidArguments(format!(
                "cwd {:?} is not a directory in the workspace",
                cwd.display
            )));
        }
        let vars = std::env::vars().collect();
        let outcome = crate::run(&args.command, &cwd.abs, mounts, vars);
        let text = crate::render(&outcome);
        if outcome.refused.is_empty() {
            Ok(text)
        } else {
            Err(ToolError::Denied(text))
        }
    }
}

export_tool!(RunCommand);
