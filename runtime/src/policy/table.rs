//! What the tables of a policy share: the `[limits]` keys and how they
//! merge, the names a model may call, and error positions in the file.

use super::{Limits, OutputOverflow};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 600_000;
const DEFAULT_MEMORY_MIB: u64 = 64;
const MAX_MEMORY_MIB: u64 = 4_096;
pub(super) const DEFAULT_MAX_OUTPUT: u64 = 65_536;
const DEFAULT_MAX_HTTP_REQUESTS: u32 = 16;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) timeout_ms: Option<u64>,
    pub(super) fuel: Option<u64>,
    pub(super) memory_mib: Option<u64>,
    pub(super) max_output_bytes: Option<u64>,
    pub(super) on_output_overflow: Option<OutputOverflow>,
    pub(super) max_write_bytes: Option<u64>,
    pub(super) max_http_requests: Option<u32>,
}

/// Builds error messages that point into the policy file.
pub(super) struct Locator<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Locator<'_> {
    pub(super) fn at(&self, span: Range<usize>, msg: impl std::fmt::Display) -> anyhow::Error {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        anyhow::anyhow!("{}:{line}:{col}: {msg}", self.path.display())
    }
}

/// Merges `over` on top of `under` on top of the built-in defaults.
pub(super) fn limits(over: &RawLimits, under: &RawLimits) -> Result<Limits, String> {
    let timeout_ms = over
        .timeout_ms
        .or(under.timeout_ms)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, got {timeout_ms}"
        ));
    }
    let memory_mib = over
        .memory_mib
        .or(under.memory_mib)
        .unwrap_or(DEFAULT_MEMORY_MIB);
    if memory_mib == 0 || memory_mib > MAX_MEMORY_MIB {
        return Err(format!(
            "memory_mib must be between 1 and {MAX_MEMORY_MIB}, got {memory_mib}"
        ));
    }
    let max_output = over
        .max_output_bytes
        .or(under.max_output_bytes)
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    if max_output == 0 {
        return Err("max_output_bytes must be at least 1".into());
    }
    let fuel = over.fuel.or(under.fuel);
    if fuel == Some(0) {
        return Err("fuel must be at least 1 (leave it out for no instruction budget)".into());
    }
    let max_http_requests = over
        .max_http_requests
        .or(under.max_http_requests)
        .unwrap_or(DEFAULT_MAX_HTTP_REQUESTS);
    Ok(Limits {
        timeout: Duration::from_millis(timeout_ms),
        fuel,
        max_write_bytes: over.max_write_bytes.or(under.max_write_bytes),
        max_http_requests,
        memory_bytes: (memory_mib as usize) << 20,
        max_output_bytes: max_output as usize,
        on_output_overflow: over
            .on_output_overflow
            .or(under.on_output_overflow)
            .unwrap_or_default(),
    })
}

/// Whether `name` is usable as a tool's name by a model.
pub(super) fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
