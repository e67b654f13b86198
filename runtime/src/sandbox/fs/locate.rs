//! Where an open directory really lies below its mount.
//!
//! A guest names directories through descriptors and paths that may pass
//! through symlinks, so the path it used says little about where a write
//! lands. The host asks the filesystem instead: from the directory, walk
//! `..` up to the mount root, naming each step by its inode in the parent.
//! What is found is the truth at the time of the check, whatever path led
//! there. Used only for writes and symlink creation, so reads pay nothing.

use super::mount::FileId;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;

/// Deepest directory tree a walk follows before giving up.
const MAX_DEPTH: usize = 4096;

/// A directory's place: which root it lies under, and the names from that
/// root down to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    /// Index into the roots given to [`locate`].
    pub root: usize,
    /// Names from the root to the directory (empty for the root itself).
    pub names: Vec<OsString>,
}

/// Finds `dir` below the nearest of `roots`; an error if it lies under none.
pub(crate) fn locate(dir: &File, roots: &[FileId]) -> io::Result<Located> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut cur = rustix::io::dup(dir)?;
    let mut names = Vec::new();
    for _ in 0..MAX_DEPTH {
        let id = FileId::of(&cur)?;
        if let Some(root) = roots.iter().position(|r| *r == id) {
            names.reverse();
            return Ok(Located { root, names });
        }
        let parent = rustix::fs::openat(&cur, "..", flags, Mode::empty())?;
        if FileId::of(&parent)? == id {
            break; // the filesystem root: under no mount
        }
        names.push(name_in(&parent, id)?);
        cur = parent;
    }
    Err(io::Error::other(
        "the directory lies under no mount of this tool",
    ))
}

/// The name under which `parent` holds the directory `id`.
fn name_in(parent: &rustix::fd::OwnedFd, id: FileId) -> io::Result<OsString> {
    let is = |name: &std::ffi::CStr| {
        rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileId::from_stat(&st) == id)
    };
    // The entry's inode usually matches; a mount point's does not, so fall
    // back to asking each entry.
    for exact in [true, false] {
        let mut entries = rustix::fs::Dir::read_from(parent)?;
        while let Some(entry) = entries.read() {
            let entry = entry?;
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") || (exact && entry.ino() != id.ino) {
                continue;
            }
            if is(name) {
                return Ok(std::ffi::OsStr::from_bytes(name.to_bytes()).to_os_string());
            }
        }
    }
    Err(io::Error::other(
        "a directory vanished from its parent while its place was checked",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_root_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/.git/hooks")).unwrap();
        std::os::unix::fs::symlink("a/.git", root.join("innocent")).unwrap();
        let roots = [FileId::of(File::open(&root).unwrap()).unwrap()];
        let via_link = File::open(root.join("innocent/hooks")).unwrap();
        let got = locate(&via_link, &roots).unwrap();
        assert_eq!(got.root, 0);
        assert_eq!(got.names, ["a", ".git", "hooks"]);
        assert!(locate(&File::open(&root).unwrap(), &roots)
            .unwrap()
            .names
            .is_empty());
        assert!(locate(&File::open(dir.path()).unwrap(), &roots).is_err());
    }
}
