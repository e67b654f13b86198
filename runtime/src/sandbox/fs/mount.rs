//! A tool's mounts, opened once per host without following any symlink.
//!
//! The host directory of a mount is opened one component at a time with
//! `O_NOFOLLOW | O_DIRECTORY`, so a symlink anywhere on the way is refused
//! rather than followed, and the handle is what every call gets (a
//! duplicate of it). A directory renamed or replaced by a symlink after
//! loading cannot redirect a mount: the handle still names the directory
//! that was opened.

use crate::policy::{Mode, Mount};
use rustix::fs::{Mode as FileMode, OFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Component, Path};

/// Identity of a directory: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of an open file.
    pub fn of(f: impl rustix::fd::AsFd) -> io::Result<FileId> {
        Ok(FileId::from_stat(&rustix::fs::fstat(f)?))
    }

    /// The identity in a `stat` result (field types differ by platform).
    #[allow(clippy::unnecessary_cast)]
    pub fn from_stat(st: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }
}

/// One mount, opened.
pub(crate) struct OpenMount {
    /// The guest path (normalised by the policy).
    pub guest: String,
    /// Read-only or read-write.
    pub mode: Mode,
    /// The directory, opened once.
    pub dir: File,
    /// Its identity, where walks up from a descriptor stop.
    pub id: FileId,
    /// Whether the mount itself lies in a `.git` directory.
    pub in_git: bool,
}

impl OpenMount {
    /// Opens `m.host` without following symlinks in any component.
    pub fn open(m: &Mount) -> io::Result<OpenMount> {
        let dir = open_no_follow(&m.host)?;
        Ok(OpenMount {
            guest: m.guest.clone(),
            mode: m.mode,
            id: FileId::of(&dir)?,
            in_git: m.host.components().any(|c| is_git_name(c.as_os_str())),
            dir,
        })
    }
}

/// Opens the absolute directory `path`, one component at a time, refusing
/// symlinks (`openat2`'s `RESOLVE_NO_SYMLINKS`, done portably).
pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open("/", flags, FileMode::empty())?;
    for part in path.components() {
        match part {
            Component::RootDir => {}
            Component::Normal(name) => {
                fd = rustix::fs::openat(&fd, name, flags | OFlags::NOFOLLOW, FileMode::empty())
                    .map_err(|e| {
                        if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                            io::Error::other(format!(
                                "{}: {} is not a directory (or is a symlink, which mounts never follow)",
                                path.display(),
                                name.to_string_lossy()
                            ))
                        } else {
                            io::Error::from(e)
                        }
                    })?;
            }
            _ => {
                return Err(io::Error::other(format!(
                    "{} is not an absolute, normalised path",
                    path.display()
                )))
            }
        }
    }
    Ok(File::from(fd))
}

/// Whether a file name means `.git` to git: compared without case (git on
/// case-insensitive filesystems) and without the code points HFS+ ignores
/// (git's `core.protectHFS`).
pub(crate) fn is_git_name(name: &OsStr) -> bool {
    let Some(s) = name.to_str() else {
        return false;
    };
    let cleaned: String = s
        .chars()
        .filter(|c| {
            !matches!(
                c,
                '\u{200C}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
            )
        })
        .collect();
    cleaned.eq_ignore_ascii_case(".git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_names() {
        for yes in [".git", ".GIT", ".Git", ".g\u{200C}it"] {
            assert!(is_git_name(OsStr::new(yes)), "{yes}");
        }
        for no in ["git", ".gitignore", ".git2", "x.git"] {
            assert!(!is_git_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn symlinks_on_the_way_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(real.join("a/b")).unwrap();
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).unwrap();
        assert!(open_no_follow(&real.join("a/b")).is_ok());
        let err = open_no_follow(&real.join("link/b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("symlink"), "{err}");
        assert!(open_no_follow(&real.join("link")).is_err());
    }
}
