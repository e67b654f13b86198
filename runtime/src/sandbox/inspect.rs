//! `warden tools inspect`: does a component fit the `tool` world, and what
//! does it say and import?

use super::engine::Runtime;
use super::tool::{LoadedTool, ToolSpec};
use crate::policy::{Limits, OutputOverflow, PluginSource, ToolPolicy};
use anyhow::Context as _;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// What `inspect` found in a component that fits.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The spec it describes.
    pub spec: ToolSpec,
    /// sha256 of the file, for a policy's `sha256` pin.
    pub sha256: String,
    /// The interfaces it imports (WASI and `wasi:http`).
    pub imports: Vec<String>,
    /// Size of the file in bytes.
    pub size: usize,
}

/// Checks `path` against the `tool` world, with no grants, and reports it.
pub fn inspect(path: &Path) -> anyhow::Result<Inspection> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let rt = Runtime::new(false)?;
    let component = rt
        .compile(&bytes)
        .with_context(|| format!("{} is not a usable component", path.display()))?;
    let imports = component
        .component_type()
        .imports(&rt.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let policy = ToolPolicy {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().replace(['.', ' '], "_"))
            .unwrap_or_default(),
        plugin: PluginSource::File(path.to_path_buf()),
        sha256: None,
        mounts: vec![],
        hosts: vec![],
        env: vec![],
        max_calls: None,
        limits: Limits {
            timeout: Duration::from_secs(5),
            fuel: None,
            memory_bytes: 256 << 20,
            max_output_bytes: 1 << 20,
            on_output_overflow: OutputOverflow::Truncate,
            max_write_bytes: Some(0),
            max_http_requests: 0,
        },
        allow_git_dir: false,
        follow_hard_links: false,
        allow_private_network: false,
    };
    let tool = LoadedTool::load(&rt, policy)
        .with_context(|| format!("{} does not fit", path.display()))?;
    Ok(Inspection {
        spec: tool.spec,
        sha256: tool.sha256,
        imports,
        size: bytes.len(),
    })
}
