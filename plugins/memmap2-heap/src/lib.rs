//! `memmap2`'s read-only mapping API, backed by reading the file into
//! memory. WebAssembly components under WASI cannot map files; gitoxide
//! (run-command's `git`) maps git's index, loose objects and packs through
//! `memmap2`. Substituted for the real crate by `[patch.crates-io]` in the
//! plugin workspace; the memory a "mapping" takes counts against the tool's
//! `memory_mib` like any other.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Deref;

/// A read-only "mapping": the file's bytes, copied.
pub struct Mmap {
    data: Box<[u8]>,
}

impl Mmap {
    /// Reads all of `file`.
    ///
    /// # Safety
    /// None needed (the signature matches `memmap2`'s, whose mappings may
    /// change under the program; a copy cannot).
    pub unsafe fn map(file: &File) -> io::Result<Mmap> {
        MmapOptions::new().map(file)
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl Deref for Mmap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl AsRef<[u8]> for Mmap {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl std::fmt::Debug for Mmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmap").field("len", &self.data.len()).finish()
    }
}

/// Which part of a file to "map".
#[derive(Clone, Debug, Default)]
pub struct MmapOptions {
    offset: u64,
    len: Option<usize>,
}

impl MmapOptions {
    /// The whole file.
    pub fn new() -> MmapOptions {
        MmapOptions::default()
    }

    /// Start at `offset`.
    pub fn offset(&mut self, offset: u64) -> &mut Self {
        self.offset = offset;
        self
    }

    /// Take `len` bytes.
    pub fn len(&mut self, len: usize) -> &mut Self {
        self.len = Some(len);
        self
    }

    /// Reads the chosen part of `file`.
    ///
    /// # Safety
    /// None needed; see [`Mmap::map`].
    pub unsafe fn map(&self, file: &File) -> io::Result<Mmap> {
        let mut f = file;
        // A mapping leaves the file position alone; so must the copy.
        let was = f.stream_position()?;
        let copied = self.copy(f);
        f.seek(SeekFrom::Start(was))?;
        copied
    }

    fn copy(&self, mut f: &File) -> io::Result<Mmap> {
        f.seek(SeekFrom::Start(self.offset))?;
        let mut data = Vec::new();
        match self.len {
            Some(n) => {
                data.resize(n, 0);
                f.read_exact(&mut data)?;
            }
            None => {
                f.read_to_end(&mut data)?;
            }
        }
        Ok(Mmap { data: data.into_boxed_slice() })
    }

    /// Same as [`MmapOptions::map`] (a copy is always private).
    ///
    /// # Safety
    /// None needed; see [`Mmap::map`].
    pub unsafe fn map_copy_read_only(&self, file: &File) -> io::Result<Mmap> {
        self.map(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_files_and_ranges() {
        let path = std::env::temp_dir().join(format!("memmap2-heap-{}", std::process::id()));
        std::fs::write(&path, b"hello, world").unwrap();
        let f = File::open(&path).unwrap();
        let all = unsafe { Mmap::map(&f) }.unwrap();
        assert_eq!(&*all, b"hello, world");
        let part = unsafe { MmapOptions::new().offset(7).len(5).map_copy_read_only(&f) }.unwrap();
        assert_eq!(&*part, b"world");
        assert!(unsafe { MmapOptions::new().offset(7).len(50).map(&f) }.is_err());
        // The file position is where it was (callers go on reading the file).
        let mut g = &f;
        g.seek(SeekFrom::Start(3)).unwrap();
        let _ = unsafe { Mmap::map(&f) }.unwrap();
        let mut rest = String::new();
        g.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "lo, world");
        std::fs::remove_file(path).unwrap();
    }
}
