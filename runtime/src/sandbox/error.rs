//! How a tool call can fail, as the CLI, sessions and audit logs report it.

use serde::Serialize;

/// The kind of a failed call; stable strings (`invalid-arguments`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Arguments were not JSON, did not fit the schema, or the tool refused them.
    InvalidArguments,
    /// The policy or sandbox refused what the call asked for.
    Denied,
    /// The tool ran and reported a failure.
    Failed,
    /// Wall-clock timeout or fuel exhausted.
    Timeout,
    /// The instance hit its memory limit.
    Memory,
    /// Output over `max_output_bytes` with `on_output_overflow = "error"`.
    OutputLimit,
    /// The tool crashed (panic, trap).
    Trap,
    /// No tool of that name is enabled by the policy.
    UnknownTool,
    /// The policy or a plugin could not be loaded.
    Policy,
}

impl ErrorKind {
    /// The kebab-case name used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArguments => "invalid-arguments",
            ErrorKind::Denied => "denied",
            ErrorKind::Failed => "failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::OutputLimit => "output-limit",
            ErrorKind::Trap => "trap",
            ErrorKind::UnknownTool => "unknown-tool",
            ErrorKind::Policy => "policy",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed tool call: its kind and a message for people and models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Details, including what to do about it where there is something.
    pub message: String,
}

impl CallError {
    /// Builds an error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallError {
            kind,
            message: message.into(),
        }
    }
}
