//! A plugin's standard error, kept for the person debugging it.
//!
//! The last [`STDERR_KEEP`] bytes of what a call writes are kept: they end a
//! `trap` message (a Rust plugin's panic message is printed there) and are
//! logged at debug level (`WARDEN_LOG=debug`). Writes are never refused, so
//! a chatty plugin cannot fail because of its own logging, and never grow
//! past the cap, so a hostile one cannot use stderr to exhaust the host.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How many trailing bytes of a call's stderr are kept.
pub const STDERR_KEEP: usize = 4096;

/// The tail of one call's stderr; clones share it.
#[derive(Clone, Default)]
pub struct CapturedStderr(Arc<Mutex<Tail>>);

#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturedStderr {
    fn push(&self, data: &[u8]) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.bytes.extend_from_slice(data);
        let excess = t.bytes.len().saturating_sub(STDERR_KEEP);
        if excess > 0 {
            t.bytes.drain(..excess);
            t.dropped += excess;
        }
    }

    /// What was written, on one line (lines joined by ` | `), or `None`
    /// when nothing was; a cut start is marked with `…`.
    pub fn one_line(&self) -> Option<String> {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&t.bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return None;
        }
        let cut = if t.dropped > 0 { "… " } else { "" };
        Some(format!("{cut}{}", lines.join(" | ")))
    }
}

impl IsTerminal for CapturedStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStderr {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedStderr {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedStderr {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_on_one_line() {
        let s = CapturedStderr::default();
        assert_eq!(s.one_line(), None);
        s.push(b"\nthread panicked at src/lib.rs:3:5:\nboom\n");
        assert_eq!(
            s.one_line().unwrap(),
            "thread panicked at src/lib.rs:3:5: | boom"
        );
        s.push(&vec![b'x'; 3 * STDERR_KEEP]);
        s.push(b"\nlast words\n");
        let line = s.one_line().unwrap();
        assert!(
            line.starts_with("… x") && line.ends_with("| last words"),
            "{line}"
        );
        assert!(line.len() <= STDERR_KEEP + 8);
    }
}
