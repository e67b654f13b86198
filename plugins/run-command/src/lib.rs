//! `run-command`: a shell command line, run by utilities built into this
//! component — never by anything native.
//!
//! Coding agents are trained on `run_command {"command": "grep -rn … ."}`;
//! this tool serves that name and grammar. The command line is parsed as
//! `sh` would (quotes, `$VAR` for the variables the policy passes, globs,
//! `|`, `&&`, `||`, `;`, redirections) and each stage runs a built-in
//! implementation of the GNU or ripgrep tool it names (`cmd/`). Files are
//! reached only through the mounts the host grants; text is handled as
//! `LC_ALL=C.UTF-8` would (byte order for sorting, UTF-8 aware matching).
//!
//! The result is the standard output, then the standard error, then a line
//! `[exit status: N]` when the status is not 0.

pub mod cmd;
pub mod ctx;
pub mod io;
pub mod opts;
pub mod pattern;
pub mod shell;

use std::collections::BTreeMap;

/// Most bytes of standard output one call keeps (the host cuts further to
/// the policy's `max_output_bytes`).
pub const STDOUT_CAP: usize = 4 << 20;
/// Most bytes of standard error one call keeps.
pub const STDERR_CAP: usize = 64 << 10;
/// Most bytes one pipe between two stages holds.
pub const PIPE_CAP: usize = 32 << 20;

/// What one command line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status of the last pipeline (2 for a syntax error).
    pub status: i32,
    /// Whether standard output was cut at [`STDOUT_CAP`].
    pub cut: bool,
    /// Accesses the sandbox refused, as messages.
    pub refused: Vec<String>,
}

/// Runs `command` with working directory `cwd` (absolute, inside a mount).
pub fn run(command: &str, cwd: &str, mounts: Vec<String>, vars: BTreeMap<String, String>) -> Outcome {
    let mut sh = shell::exec::Shell {
        ctx: ctx::Ctx {
            cwd: cwd.to_string(),
            mounts,
            vars,
            refused: Vec::new(),
            pipe_cap: PIPE_CAP,
            depth: 0,
        },
        stdout: io::Sink::new(STDOUT_CAP),
        stderr: io::Sink::new(STDERR_CAP),
        status: 0,
    };
    match shell::parse::parse(command) {
        Ok(script) => sh.run(&script),
        Err(msg) => {
            sh.stderr.say(format!("sh: {msg}"));
            sh.status = 2;
        }
    }
    Outcome {
        cut: sh.stdout.was_cut(),
        stdout: sh.stdout.take(),
        stderr: sh.stderr.take(),
        status: sh.status,
        refused: sh.ctx.refused,
    }
}

/// The text the model sees: stdout, stderr, and the status when not 0.
pub fn render(o: &Outcome) -> String {
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    if o.cut {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[run_command: output cut at {} MiB; narrow the command or pipe it through head]\n",
            STDOUT_CAP >> 20
        ));
    }
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    if o.status != 0 {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[exit status: {}]\n", o.status));
    }
    text
}

#[cfg(target_arch = "wasm32")]
mod tool;
