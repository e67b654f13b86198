//! Helpers shared by warden's built-in tools.
//!
//! A tool implements [`Tool`] and calls [`export_tool!`] once; the macro
//! generates the `warden:tool` bindings (from `wit/tool.wit`) and wires
//! `describe`/`call` to the trait. Arguments are parsed with serde, so a
//! model that sends the wrong shape gets `invalid-arguments` naming the field.
//!
//! Paths follow one rule in every tool: a relative path is relative to the
//! first directory the policy mounts; `..` may not climb above a mount; an
//! absolute path must lie under one of the mounts. The host enforces the same
//! thing again (it is the real boundary); checking here only turns a
//! sandbox error into a message a model can act on.

use serde::de::DeserializeOwned;
use std::io;

/// Why a tool call failed; mirrors the WIT `error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments do not fit; the message says what to change.
    InvalidArguments(String),
    /// The sandbox does not grant what the call asked for.
    Denied(String),
    /// Anything else.
    Failed(String),
}

/// Result of a tool call.
pub type ToolResult<T> = Result<T, ToolError>;

/// A tool: its description, its argument type and what a call does.
pub trait Tool {
    /// Arguments object, parsed from the JSON the model produced.
    type Args: DeserializeOwned;
    /// Suggested tool name (policies may expose it under another name).
    const NAME: &'static str;
    /// What the model reads to decide when to call the tool.
    const DESCRIPTION: &'static str;
    /// JSON Schema of the arguments object.
    fn parameters() -> serde_json::Value;
    /// Runs one call.
    fn run(args: Self::Args) -> ToolResult<String>;
}

/// Parses `arguments` and runs the tool; used by [`export_tool!`].
pub fn call<T: Tool>(arguments: &str) -> ToolResult<String> {
    let args: T::Args = serde_json::from_str(arguments).map_err(|e| {
        ToolError::InvalidArguments(format!(
            "{e}; expected arguments matching {}",
            T::parameters()
        ))
    })?;
    T::run(args)
}

/// Generates the component bindings and exports `$tool` (a [`Tool`]).
///
/// The crate using it must depend on `wit-bindgen` and sit two levels below
/// the repository root (`plugins/NAME`), where `wit/tool.wit` lives.
#[macro_export]
macro_rules! export_tool {
    ($tool:ty) => {
        wit_bindgen::generate!({ world: "tool", path: "../../wit" });

        struct Component;

        impl Guest for Component {
            fn describe() -> warden::tool::types::Spec {
                warden::tool::types::Spec {
                    name: <$tool as $crate::Tool>::NAME.to_string(),
                    description: <$tool as $crate::Tool>::DESCRIPTION.to_string(),
                    parameters: <$tool as $crate::Tool>::parameters().to_string(),
                }
            }

            fn call(arguments: String) -> Result<String, warden::tool::types::Error> {
                use warden::tool::types::Error;
                $crate::call::<$tool>(&arguments).map_err(|e| match e {
                    $crate::ToolError::InvalidArguments(m) => Error::InvalidArguments(m),
                    $crate::ToolError::Denied(m) => Error::Denied(m),
                    $crate::ToolError::Failed(m) => Error::Failed(m),
                })
            }
        }

        export!(Component);
    };
}

/// Compiles the optional `glob` argument of a tool.
pub fn glob_matcher(glob: Option<&str>) -> ToolResult<Option<globset::GlobMatcher>> {
    glob.map(|g| {
        globset::Glob::new(g)
            .map(|g| g.compile_matcher())
            .map_err(|e| ToolError::InvalidArguments(format!("bad glob {g:?}: {e}")))
    })
    .transpose()
}

/// The directories the host mounted for this call, as guest paths.
pub fn mounts() -> Vec<String> {
    wasi::filesystem::preopens::get_directories()
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

/// A path checked against the mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPath {
    /// Absolute, normalised guest path (what `std::fs` is given).
    pub abs: String,
    /// How to show it to the model: relative to the first mount when under
    /// it, absolute otherwise.
    pub display: String,
}

/// Resolves `path` against `mounts` (see the module docs for the rule).
pub fn resolve_in(path: &str, mounts: &[String]) -> ToolResult<GuestPath> {
    let Some(default) = mounts.first() else {
        return Err(ToolError::Denied(
            "this tool has no directories: the policy mounts none".into(),
        ));
    };
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{}", default.trim_end_matches('/'), path)
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(escape(path, mounts));
                }
            }
            p => parts.push(p),
        }
    }
    let abs = format!("/{}", parts.join("/"));
    let root = mounts
        .iter()
        .map(|m| normalise_root(m))
        .find(|m| abs == *m || m == "/" || abs.starts_with(&format!("{m}/")))
        .ok_or_else(|| escape(path, mounts))?;
    let first = normalise_root(default);
    let display = if root == first {
        let rel = abs[first.len()..].trim_start_matches('/');
        if rel.is_empty() {
            ".".to_string()
        } else {
            rel.to_string()
        }
    } else {
        abs.clone()
    };
    Ok(GuestPath { abs, display })
}

/// Resolves `path` against the mounts of this call.
pub fn resolve(path: &str) -> ToolResult<GuestPath> {
    resolve_in(path, &mounts())
}

/// The display form of an absolute guest path found while walking under
/// `base` (keeps walk output consistent with [`resolve`]).
pub fn display_under(base: &GuestPath, abs: &str) -> String {
    let rel = abs[base.abs.len()..].trim_start_matches('/');
    match (base.display.as_str(), rel) {
        (d, "") => d.to_string(),
        (".", r) => r.to_string(),
        (d, r) => format!("{}/{}", d.trim_end_matches('/'), r),
    }
}

fn normalise_root(m: &str) -> String {
    let t = m.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

fn escape(path: &str, mounts: &[String]) -> ToolError {
    ToolError::Denied(format!(
        "'{path}' is outside the directories this tool may access ({}); use a path under one of them",
        mounts.join(", ")
    ))
}

/// Maps an I/O error on `display` to the error a model should see.
pub fn io_error(err: io::Error, display: &str) -> ToolError {
    // WASI errno values as Rust's std reports them on wasm32-wasip2.
    const EPERM: i32 = 63;
    const EACCES: i32 = 2;
    const EROFS: i32 = 69;
    const ENOTCAPABLE: i32 = 76;
    let denied = matches!(
        err.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) || matches!(
        err.raw_os_error(),
        Some(EPERM | EACCES | EROFS | ENOTCAPABLE)
    );
    if denied {
        ToolError::Denied(format!(
            "{display}: the sandbox does not allow this (outside a mount, through a symlink that leaves it, or a write to a read-only mount)"
        ))
    } else if err.kind() == io::ErrorKind::NotFound {
        ToolError::Failed(format!("{display}: no such file or directory"))
    } else {
        ToolError::Failed(format!("{display}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Vec<String> {
        vec!["/workspace".into(), "/data".into()]
    }

    #[test]
    fn relative_paths_resolve_under_first_mount() {
        let p = resolve_in("src/../app.py", &m()).unwrap();
        assert_eq!(p.abs, "/workspace/app.py");
        assert_eq!(p.display, "app.py");
        assert_eq!(resolve_in("", &m()).unwrap().display, ".");
        assert_eq!(resolve_in("/data/x", &m()).unwrap().display, "/data/x");
    }

    #[test]
    fn escapes_are_denied() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "/workspace/../../x",
            "/workspacefoo",
        ] {
            assert!(
                matches!(resolve_in(bad, &m()), Err(ToolError::Denied(_))),
                "{bad}"
            );
        }
        assert!(matches!(resolve_in("a", &[]), Err(ToolError::Denied(_))));
    }
}
