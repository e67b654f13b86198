//! `filetime`'s `FileTime` for reading times, over `std::fs::Metadata`.
//! The real crate panics on every wasm32 target (`unimplemented!()`), even
//! where WASI reports file times; gitoxide (run-command's `git`) reads the
//! index's modification time through it. Substituted for the real crate by
//! `[patch.crates-io]` in the plugin workspace. Setting times is refused:
//! run-command writes no times.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileTime {
    seconds: i64,
    nanos: u32,
}

impl FileTime {
    /// The epoch.
    pub const fn zero() -> FileTime {
        FileTime { seconds: 0, nanos: 0 }
    }

    /// Now.
    pub fn now() -> FileTime {
        FileTime::from_system_time(SystemTime::now())
    }

    /// From seconds and nanoseconds since the epoch.
    pub const fn from_unix_time(seconds: i64, nanos: u32) -> FileTime {
        FileTime { seconds, nanos }
    }

    /// From a `SystemTime`.
    pub fn from_system_time(t: SystemTime) -> FileTime {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => FileTime { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let (mut s, mut n) = (-(d.as_secs() as i64), d.subsec_nanos());
                if n > 0 {
                    s -= 1;
                    n = 1_000_000_000 - n;
                }
                FileTime { seconds: s, nanos: n }
            }
        }
    }

    /// The modification time in `meta` (the epoch when the system has none).
    pub fn from_last_modification_time(meta: &fs::Metadata) -> FileTime {
        meta.modified().map(FileTime::from_system_time).unwrap_or_default()
    }

    /// The access time in `meta` (the epoch when the system has none).
    pub fn from_last_access_time(meta: &fs::Metadata) -> FileTime {
        meta.accessed().map(FileTime::from_system_time).unwrap_or_default()
    }

    /// The creation time in `meta`, when the system has one.
    pub fn from_creation_time(meta: &fs::Metadata) -> Option<FileTime> {
        meta.created().ok().map(FileTime::from_system_time)
    }

    /// Seconds since the epoch.
    pub const fn unix_seconds(&self) -> i64 {
        self.seconds
    }

    /// Seconds (the Unix epoch here).
    pub const fn seconds(&self) -> i64 {
        self.seconds
    }

    /// Nanoseconds within the second.
    pub const fn nanoseconds(&self) -> u32 {
        self.nanos
    }
}

impl From<SystemTime> for FileTime {
    fn from(t: SystemTime) -> FileTime {
        FileTime::from_system_time(t)
    }
}

impl std::fmt::Display for FileTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}s", self.seconds, self.nanos)
    }
}

fn refused() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "setting file times is not supported here")
}

/// Refused: nothing in the plugins sets file times.
pub fn set_file_times(_p: impl AsRef<Path>, _atime: FileTime, _mtime: FileTime) -> io::Result<()> {
    Err(refused())
}

/// Refused: nothing in the plugins sets file times.
pub fn set_file_mtime(_p: impl AsRef<Path>, _mtime: FileTime) -> io::Result<()> {
    Err(refused())
}

/// Refused: nothing in the plugins sets file times.
pub fn set_file_atime(_p: impl AsRef<Path>, _atime: FileTime) -> io::Result<()> {
    Err(refused())
}

/// Refused: nothing in the plugins sets file times.
pub fn set_file_handle_times(_f: &fs::File, _atime: Option<FileTime>, _mtime: Option<FileTime>) -> io::Result<()> {
    Err(refused())
}

/// Refused: nothing in the plugins sets file times.
pub fn set_symlink_file_times(_p: impl AsRef<Path>, _atime: FileTime, _mtime: FileTime) -> io::Result<()> {
    Err(refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modification_times() {
        let path = std::env::temp_dir().join(format!("filetime-std-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let t = FileTime::from_last_modification_time(&meta);
        let want = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(t.unix_seconds(), want.as_secs() as i64);
        assert_eq!(t.nanoseconds(), want.subsec_nanos());
        assert!(FileTime::now() >= t);
        std::fs::remove_file(path).unwrap();
    }
}
