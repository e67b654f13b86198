//! `max_write_bytes`: how much one call may write to its mounts.
//!
//! Every byte that reaches a file counts, whichever way it goes: a
//! positioned `write`, an output stream from `write-via-stream` or
//! `append-via-stream`, or growing a file with `set-size`. A write that
//! would pass the quota is not made, and the call ends (a trap the guest
//! cannot catch), reported as `denied` naming the key.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// One call's write allowance; clones share it.
#[derive(Clone)]
pub(crate) struct WriteQuota(Arc<Inner>);

struct Inner {
    max: Option<u64>,
    used: AtomicU64,
    hit: AtomicBool,
}

impl WriteQuota {
    /// An allowance of `max` bytes (unlimited when `None`).
    pub fn new(max: Option<u64>) -> WriteQuota {
        WriteQuota(Arc::new(Inner {
            max,
            used: AtomicU64::new(0),
            hit: AtomicBool::new(false),
        }))
    }

    /// Counts `n` bytes about to be written, or refuses them.
    pub fn charge(&self, n: u64) -> Result<(), QuotaExceeded> {
        let Some(max) = self.0.max else {
            return Ok(());
        };
        let used = self.0.used.load(Ordering::Relaxed);
        if used.saturating_add(n) > max {
            self.0.hit.store(true, Ordering::Relaxed);
            return Err(QuotaExceeded { max });
        }
        self.0.used.store(used + n, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a write was refused in this call.
    pub fn hit(&self) -> bool {
        self.0.hit.load(Ordering::Relaxed)
    }

    /// `stream`, with every write counted against this allowance.
    pub fn wrap(&self, stream: DynOutputStream) -> DynOutputStream {
        match self.0.max {
            None => stream,
            Some(_) => Box::new(Counted {
                inner: stream,
                quota: self.clone(),
            }),
        }
    }
}

/// A write refused by the quota; the call traps with this error.
#[derive(Debug, thiserror::Error)]
#[error("the call tried to write more than its max_write_bytes ({max} bytes)")]
pub(crate) struct QuotaExceeded {
    /// The allowance.
    pub max: u64,
}

/// An output stream whose writes are counted.
struct Counted {
    inner: DynOutputStream,
    quota: WriteQuota,
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Counted {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.quota
            .charge(bytes.len() as u64)
            .map_err(|e| StreamError::Trap(e.into()))?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Counted {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit() {
        let q = WriteQuota::new(Some(10));
        q.charge(6).unwrap();
        q.charge(4).unwrap();
        assert!(!q.hit());
        assert_eq!(q.charge(1).unwrap_err().max, 10);
        assert!(q.hit());
        let free = WriteQuota::new(None);
        free.charge(u64::MAX).unwrap();
    }
}
