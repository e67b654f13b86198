//! Byte sinks with a cap: a pipe, the call's stdout or stderr, a file being
//! written. A write past the cap keeps what fits and then fails like a
//! closed pipe, which ends the writing command as `SIGPIPE` would.

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;

/// A capped buffer.
#[derive(Debug, Default)]
pub struct Buf {
    /// What was written, up to the cap.
    pub bytes: Vec<u8>,
    cap: usize,
    /// Whether a write was cut at the cap.
    pub cut: bool,
    discard: bool,
}

/// A shared handle on a [`Buf`]: `2>&1` makes two descriptors one sink.
#[derive(Debug, Clone)]
pub struct Sink(Rc<RefCell<Buf>>);

impl Sink {
    /// A sink that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Sink {
        Sink(Rc::new(RefCell::new(Buf {
            bytes: Vec::new(),
            cap,
            cut: false,
            discard: false,
        })))
    }

    /// `/dev/null`.
    pub fn null() -> Sink {
        let s = Sink::new(usize::MAX);
        s.0.borrow_mut().discard = true;
        s
    }

    /// Takes the bytes out, leaving the sink empty.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().bytes)
    }

    /// Whether a write was cut at the cap.
    pub fn was_cut(&self) -> bool {
        self.0.borrow().cut
    }

    /// Whether two handles are the same sink.
    pub fn same(&self, other: &Sink) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Writes a message line, ignoring a full sink (for diagnostics).
    pub fn say(&self, msg: impl AsRef<str>) {
        let mut this = self.clone();
        let _ = this.write_all(msg.as_ref().as_bytes());
        let _ = this.write_all(b"\n");
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut b = self.0.borrow_mut();
        if b.discard {
            return Ok(data.len());
        }
        let room = b.cap.saturating_sub(b.bytes.len());
        if data.len() > room {
            b.bytes.extend_from_slice(&data[..room]);
            b.cut = true;
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "output cap reached"));
        }
        b.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A command's standard streams.
pub struct Io {
    /// Standard input, read in full (the previous stage's output or a `<` file).
    pub stdin: Rc<Vec<u8>>,
    /// Whether stdin is a pipe (not a regular file); `wc` pads differently.
    pub stdin_pipe: bool,
    /// Standard output.
    pub out: Sink,
    /// Standard error.
    pub err: Sink,
}

/// Splits `data` into lines without their `\n`; a last line without one
/// counts as a line, as the text tools treat it.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

/// Like [`lines`] with a custom terminator (`\0` for `-z`/`-0`).
pub fn records(data: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(&[sep]).unwrap_or(data);
    let empty = data.is_empty();
    body.split(move |&b| b == sep).filter(move |_| !empty)
}
