//! The disk cache of compiled components.
//!
//! A compiled component is native code that warden maps and runs, so the
//! cache is guarded like a place binaries live:
//! - the directory is `0700` (tightened if an older warden made it wider)
//!   and must belong to the user; otherwise it is not used;
//! - an entry is opened without following symlinks and used only if it is a
//!   regular file owned by the user and writable by no one else; otherwise
//!   it is ignored, with a warning, and compiled again;
//! - the bytes that are checked are the bytes deserialised (read from the
//!   checked handle, never reopened by name);
//! - entries are written `0600` through a temporary file with an
//!   unpredictable name, created exclusively and without following
//!   symlinks, then renamed into place.
//!
//! Keeping tools away from the directory altogether is the policy's job: no
//! mount may contain it or lie inside it.

use rustix::fs::{Mode, OFlags};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Permission bits that let someone other than the owner change a file.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// A usable cache directory.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// Creates or checks `dir`; `None` (with a warning) when it cannot be
    /// made private to this user.
    pub fn open(dir: &Path) -> Option<ComponentCache> {
        match prepare(dir) {
            Ok(()) => Some(ComponentCache {
                dir: dir.to_path_buf(),
            }),
            Err(why) => {
                tracing::warn!(dir = %dir.display(), "not caching compiled components: {why}");
                None
            }
        }
    }

    /// Where the entry called `key` lives.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The bytes of entry `key`, if it exists and passes the checks.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring cache entry ({e}); compiling again");
                return None;
            }
        };
        let mut file = std::fs::File::from(fd);
        let meta = file.metadata().ok()?;
        let problem = if !meta.is_file() {
            Some("not a regular file".to_string())
        } else if meta.uid() != rustix::process::geteuid().as_raw() {
            Some(format!("owned by uid {}, not this user", meta.uid()))
        } else if meta.mode() & WRITABLE_BY_OTHERS != 0 {
            Some(format!(
                "writable by others (mode {:o})",
                meta.mode() & 0o777
            ))
        } else {
            None
        };
        if let Some(why) = problem {
            tracing::warn!(path = %path.display(), "ignoring cache entry: {why}; compiling again");
            return None;
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Stores `bytes` as entry `key` (best effort: a failure only costs a
    /// compile next time).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let written = rustix::fs::open(&tmp, flags, Mode::from_raw_mode(0o600))
            .map_err(std::io::Error::from)
            .and_then(|fd| std::fs::File::from(fd).write_all(bytes))
            .and_then(|()| std::fs::rename(&tmp, self.path(key)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(dir = %self.dir.display(), "could not cache a compiled component: {e}");
        }
    }
}

/// Creates `dir` (`0700`), or checks and tightens an existing one.
fn prepare(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("it is not a directory (a symlink is not accepted)".into());
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(format!("it belongs to uid {}, not this user", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make it private (chmod 700): {e}"))?;
    }
    Ok(())
}
