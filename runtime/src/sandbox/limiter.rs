//! A memory limit across all linear memories of one instance.

use wasmtime::ResourceLimiter;

/// Sums every memory's size and refuses growth past `limit` bytes.
/// wasmtime's `StoreLimits` limits each memory on its own; a component can
/// have several, and the policy's `memory_mib` is for all of them.
pub struct TotalMemoryLimiter {
    limit: usize,
    used: usize,
    /// Set once a growth was refused, so a later trap reads as `memory`.
    pub hit: bool,
}

/// Most table elements one table may hold (tables are host memory too).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl TotalMemoryLimiter {
    /// A limiter allowing `limit` bytes in total.
    pub fn new(limit: usize) -> Self {
        TotalMemoryLimiter {
            limit,
            used: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for TotalMemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.used.saturating_add(grow) > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
