//! `memory_mib`: one limit for everything a call can make the host hold.
//!
//! Linear memories are counted as they grow. Host-side resources (handles
//! in the resource table, `wasi:http` header fields, buffered request
//! bodies) are bounded by construction: at most [`max_resources`] handles,
//! none holding more than [`HOST_BYTES_PER_RESOURCE`]; that worst case is
//! reserved from the limit before the call starts, so linear memory and
//! host resources together stay within `memory_mib`.

use wasmtime::ResourceLimiter;

/// Most host bytes one resource can hold: a header-field set (capped at
/// half of this) or a request body's buffered chunks.
pub const HOST_BYTES_PER_RESOURCE: usize = 128 * 1024;
/// The largest header-field set a guest may build.
pub const FIELD_SIZE_LIMIT: usize = HOST_BYTES_PER_RESOURCE / 2;
/// Fewest handles a call may hold, whatever its memory limit.
const MIN_RESOURCES: usize = 64;

/// How many handles a call with a memory limit of `limit` bytes may hold:
/// enough that their worst case is a quarter of the limit (at least 64).
pub fn max_resources(limit: usize) -> usize {
    (limit / 4 / HOST_BYTES_PER_RESOURCE).max(MIN_RESOURCES)
}

/// The host bytes reserved for a call's resources under `limit`.
pub fn host_reserve(limit: usize) -> usize {
    max_resources(limit) * HOST_BYTES_PER_RESOURCE
}

/// Sums every memory's size, on top of the host reserve, and refuses growth
/// past `limit` bytes. wasmtime's `StoreLimits` limits each memory on its
/// own; a component can have several, and the policy's `memory_mib` is for
/// all of them.
pub struct TotalMemoryLimiter {
    limit: usize,
    used: usize,
    /// Set once a growth was refused, so a later trap reads as `memory`.
    pub hit: bool,
}

/// Most table elements one table may hold (tables are host memory too).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl TotalMemoryLimiter {
    /// A limiter allowing `limit` bytes in total, of which the host
    /// reserve is taken from the start.
    pub fn new(limit: usize) -> Self {
        TotalMemoryLimiter {
            limit,
            used: host_reserve(limit).min(limit / 2),
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
