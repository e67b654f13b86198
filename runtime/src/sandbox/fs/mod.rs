//! The filesystem a tool sees: wasmtime-wasi's `wasi:filesystem`, behind a
//! gate that enforces what WASI's own capability model does not.
//!
//! wasmtime-wasi keeps every path inside a mount and honours `ro`; the gate
//! adds, for every plugin alike:
//! - mounts are directory handles opened once per host without following
//!   symlinks ([`mount`]), handed to each call as duplicates — never a path
//!   opened again;
//! - nothing under a `.git` directory is written, created, renamed or
//!   deleted unless the tool has `allow_git_dir` (git runs commands named in
//!   `.git/config` and `.git/hooks`); where a write lands is found by asking
//!   the filesystem ([`locate`]), not by reading the guest's path;
//! - a symlink whose target leaves the mount is not created;
//! - FIFOs, sockets and devices are not opened (a read could wait forever),
//!   nor files with more than one hard link unless `follow_hard_links`;
//! - writes count against `max_write_bytes` ([`quota`]).
//!
//! A refusal reaches the guest as `not-permitted`; the rule behind it is
//! written to the call's [`Notes`] so the error the model sees names it.

mod locate;
mod mount;
mod quota;

pub(crate) use mount::{is_git_name, OpenMount};
pub(crate) use quota::{QuotaExceeded, WriteQuota};

use super::notes::Notes;
use crate::policy::{Mode, ToolPolicy};
use cap_primitives::fs::{FollowSymlinks, MetadataExt as _};
use locate::locate;
use mount::FileId;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, HostDirectoryEntryStream, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};
use wasmtime_wasi::{FsPerms, OpenMode};

/// Symlinks followed while checking where a write lands.
const MAX_SYMLINK_HOPS: u32 = 8;

/// What the gate enforces for one tool; shared by all its calls.
pub(crate) struct FsRules {
    mounts: Vec<OpenMount>,
    roots: Vec<FileId>,
    allow_git_dir: bool,
    follow_hard_links: bool,
}

impl FsRules {
    /// Opens the tool's mounts (once, without following symlinks).
    pub fn open(policy: &ToolPolicy) -> anyhow::Result<FsRules> {
        let mut mounts = Vec::new();
        for m in &policy.mounts {
            mounts.push(OpenMount::open(m).map_err(|e| {
                anyhow::anyhow!("cannot open mount {} ({}): {e}", m.guest, m.host.display())
            })?);
        }
        Ok(FsRules {
            roots: mounts.iter().map(|m| m.id).collect(),
            mounts,
            allow_git_dir: policy.allow_git_dir,
            follow_hard_links: policy.follow_hard_links,
        })
    }

    /// No mounts at all (what `describe` gets).
    pub fn none() -> FsRules {
        FsRules {
            mounts: Vec::new(),
            roots: Vec::new(),
            allow_git_dir: false,
            follow_hard_links: false,
        }
    }
}

/// One call's filesystem: the tool's rules, its write allowance, and where
/// refusals are explained.
pub(crate) struct FsCall {
    pub rules: Arc<FsRules>,
    pub quota: WriteQuota,
    pub notes: Notes,
}

/// The view the gate's host functions get: wasmtime-wasi's, plus the call.
pub(crate) struct FsView<'a> {
    pub inner: WasiFilesystemCtxView<'a>,
    pub call: &'a FsCall,
}

/// Marker for the linker: `wasi:filesystem` served through [`FsView`].
pub(crate) struct Gate;

impl HasData for Gate {
    type Data<'a> = FsView<'a>;
}

/// Links `wasi:filesystem/types` and `/preopens` through the gate,
/// replacing wasmtime-wasi's own (the linker must allow shadowing).
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> FsView<'_>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, Gate>(linker, get)?;
    preopens::add_to_linker::<T, Gate>(linker, get)?;
    Ok(())
}

impl FsCall {
    /// Refuses writes that would land under a `.git` directory: by the
    /// names in `path`, by where the parent directory really lies, and by
    /// where a final symlink leads when the operation follows it.
    fn check_write(&self, dir: &File, path: &str, follow: bool) -> Result<(), String> {
        if self.rules.allow_git_dir {
            return Ok(());
        }
        self.check_git(dir, path, follow, 0)
    }

    fn check_git(&self, dir: &File, path: &str, follow: bool, hops: u32) -> Result<(), String> {
        let p = Path::new(path);
        let git = || {
            format!(
                "{path} is in a .git directory: warden refuses to write, create, rename or delete anything there, because git runs commands named in .git/config and .git/hooks; set allow_git_dir = true for this tool in the policy to allow it"
            )
        };
        if p.components().any(|c| is_git_name(c.as_os_str())) {
            return Err(git());
        }
        let (parent, name) = match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => (parent, Some(name)),
            _ => (p, None),
        };
        let Some(pd) = self.open_dir(dir, parent, path)? else {
            return Ok(()); // nothing there: the operation itself fails
        };
        let at = locate(&pd, &self.rules.roots)
            .map_err(|e| format!("cannot tell where {path} lies ({e}); refused"))?;
        if self.rules.mounts[at.root].in_git || at.names.iter().any(|n| is_git_name(n)) {
            return Err(git());
        }
        let Some(name) = name.filter(|_| follow) else {
            return Ok(());
        };
        let is_link = cap_primitives::fs::stat(&pd, Path::new(name), FollowSymlinks::No)
            .is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return Ok(());
        }
        if hops >= MAX_SYMLINK_HOPS {
            return Err(format!("{path}: too many levels of symlinks; refused"));
        }
        let target = cap_primitives::fs::read_link_contents(&pd, Path::new(name))
            .map_err(|e| format!("cannot read the symlink {path} ({e}); refused"))?;
        let target = target
            .to_str()
            .ok_or_else(|| format!("the symlink {path} names a path that is not UTF-8; refused"))?;
        self.check_git(&pd, target, true, hops + 1)
    }

    /// Refuses a symlink at `link` whose `target` leads out of the mount
    /// (absolute, or more `..` than the link lies deep).
    fn check_symlink(&self, dir: &File, link: &str, target: &str) -> Result<(), String> {
        let leaves = || {
            format!("a symlink {link} -> {target} would lead out of the mount; warden creates no symlink that leaves it")
        };
        if target.starts_with('/') {
            return Err(leaves());
        }
        let parent = Path::new(link).parent().unwrap_or(Path::new(""));
        let Some(pd) = self.open_dir(dir, parent, link)? else {
            return Ok(());
        };
        let at = locate(&pd, &self.rules.roots)
            .map_err(|e| format!("cannot tell where {link} lies ({e}); refused"))?;
        let mut depth = at.names.len() as i64;
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(leaves());
                    }
                }
                _ => depth += 1,
            }
        }
        Ok(())
    }

    /// Refuses to open special files, and files with several hard links
    /// unless the policy allows them. `Ok` when there is nothing there yet.
    fn check_open(&self, dir: &File, path: &str, follow: bool) -> Result<(), String> {
        let follow = if follow {
            FollowSymlinks::Yes
        } else {
            FollowSymlinks::No
        };
        match cap_primitives::fs::stat(dir, Path::new(path), follow) {
            Ok(m) => self.check_kind(path, Kind::of_mode(m.mode()), m.nlink()),
            Err(_) => Ok(()),
        }
    }

    fn check_kind(&self, path: &str, kind: Kind, nlink: u64) -> Result<(), String> {
        match kind {
            Kind::Special(what) => Err(format!(
                "{path} is a {what}; tools may open only regular files and directories"
            )),
            Kind::File if nlink > 1 && !self.rules.follow_hard_links => Err(format!(
                "{path} has {nlink} hard links, and another of them may lie outside the mount; set follow_hard_links = true for this tool in the policy to open such files"
            )),
            _ => Ok(()),
        }
    }

    /// `path` below `dir` opened as a directory (following symlinks inside
    /// the sandbox, as the operation will); `None` if it does not exist.
    fn open_dir(&self, dir: &File, path: &Path, what: &str) -> Result<Option<File>, String> {
        let opened = if path.as_os_str().is_empty() {
            dir.try_clone()
        } else {
            cap_primitives::fs::open_dir(dir, path)
        };
        match opened {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot tell where {what} lies ({e}); refused")),
        }
    }
}

/// What kind of file a check looked at.
#[derive(Debug, Clone, Copy)]
enum Kind {
    File,
    Special(&'static str),
    Other,
}

impl Kind {
    /// The kind named by the file-type bits of `st_mode`.
    #[allow(clippy::unnecessary_cast)]
    fn of_mode(mode: u32) -> Kind {
        use rustix::fs::FileType;
        match FileType::from_raw_mode(mode as _) {
            FileType::Fifo => Kind::Special("FIFO"),
            FileType::Socket => Kind::Special("socket"),
            FileType::CharacterDevice | FileType::BlockDevice => Kind::Special("device"),
            FileType::RegularFile => Kind::File,
            _ => Kind::Other,
        }
    }
}

impl FsView<'_> {
    /// The directory handle behind `fd` and whether its mount is `rw`;
    /// `None` for a file or a bad handle (the operation reports those).
    fn dir(&self, fd: &Resource<Descriptor>) -> Option<(Arc<File>, bool)> {
        match self.inner.table.get(fd) {
            Ok(Descriptor::Dir(d)) => Some((d.dir.clone(), d.perms == FsPerms::ReadWrite)),
            _ => None,
        }
    }

    /// Runs `check` against the directory behind `fd` when its mount is
    /// `rw` (wasmtime-wasi refuses writes to `ro` mounts by itself).
    fn check_rw(
        &self,
        fd: &Resource<Descriptor>,
        check: impl FnOnce(&FsCall, &File) -> Result<(), String>,
    ) -> FsResult<()> {
        match self.dir(fd) {
            Some((dir, true)) => check(self.call, &dir).map_err(|note| self.refuse(note)),
            _ => Ok(()),
        }
    }

    fn refuse(&self, note: String) -> FsError {
        self.call.notes.push(note);
        ErrorCode::NotPermitted.into()
    }

    fn charge(&self, n: u64) -> FsResult<()> {
        self.call.quota.charge(n).map_err(FsError::trap)
    }
}

fn follows(flags: PathFlags) -> bool {
    flags.contains(PathFlags::SYMLINK_FOLLOW)
}

impl preopens::Host for FsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let mut out = Vec::new();
        for m in &self.call.rules.mounts {
            let (perms, mode) = match m.mode {
                Mode::ReadOnly => (FsPerms::ReadOnly, OpenMode::READ),
                Mode::ReadWrite => (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE),
            };
            let dir = Dir::new(m.dir.try_clone()?, perms, mode, true);
            out.push((
                self.inner.table.push(Descriptor::Dir(dir))?,
                m.guest.clone(),
            ));
        }
        Ok(out)
    }
}

impl types::Host for FsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDirectoryEntryStream for FsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}

impl HostDescriptor for FsView<'_> {
    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorType> {
        self.inner.get_type(fd).await
    }

    async fn set_size(&mut self, fd: Resource<Descriptor>, size: types::Filesize) -> FsResult<()> {
        if let Ok(Descriptor::File(f)) = self.inner.table.get(&fd) {
            if f.perms == FsPerms::ReadWrite {
                let len = f.file.metadata().map(|m| m.len()).unwrap_or(0);
                self.charge(size.saturating_sub(len))?;
            }
        }
        self.inner.set_size(fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.inner.read(fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        self.charge(buf.len() as u64)?;
        self.inner.write(fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.check_rw(&fd, |c, d| c.check_write(d, &path, false))?;
        self.inner.create_directory_at(fd, path).await
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<types::DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        self.inner.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await
    }

    async fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.check_rw(&fd, |c, d| {
            c.check_write(d, &old_path, follows(old_path_flags))
        })?;
        self.check_rw(&new_descriptor, |c, d| c.check_write(d, &new_path, false))?;
        self.inner
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await
    }

    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let follow = follows(path_flags);
        if let Some((dir, rw)) = self.dir(&fd) {
            let writes = oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE)
                || flags.intersects(DescriptorFlags::WRITE | DescriptorFlags::MUTATE_DIRECTORY);
            if rw && writes {
                self.call
                    .check_write(&dir, &path, follow)
                    .map_err(|n| self.refuse(n))?;
            }
            self.call
                .check_open(&dir, &path, follow)
                .map_err(|n| self.refuse(n))?;
        }
        let opened = self
            .inner
            .open_at(fd, path_flags, path.clone(), oflags, flags)
            .await?;
        // Again on what was opened: the check before looked at a path.
        let verdict = match self.inner.table.get(&opened) {
            Ok(Descriptor::File(f)) => match f.file.metadata() {
                Ok(m) => {
                    use std::os::unix::fs::MetadataExt as _;
                    self.call
                        .check_kind(&path, Kind::of_mode(m.mode()), m.nlink())
                }
                Err(e) => Err(format!("cannot inspect {path} ({e}); refused")),
            },
            _ => Ok(()),
        };
        if let Err(note) = verdict {
            self.inner.table.delete(opened)?;
            return Err(self.refuse(note));
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        self.inner.readlink_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.check_rw(&fd, |c, d| c.check_write(d, &path, false))?;
        self.inner.remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.check_rw(&fd, |c, d| c.check_write(d, &old_path, false))?;
        self.check_rw(&new_fd, |c, d| c.check_write(d, &new_path, false))?;
        self.inner.rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        self.check_rw(&fd, |c, d| {
            c.check_write(d, &dest_path, false)?;
            c.check_symlink(d, &dest_path, &src_path)
        })?;
        self.inner.symlink_at(fd, src_path, dest_path).await
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.check_rw(&fd, |c, d| c.check_write(d, &path, false))?;
        self.inner.unlink_file_at(fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.inner.write_via_stream(fd, offset)?;
        self.counted(stream)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.inner.append_via_stream(fd)?;
        self.counted(stream)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        self.inner.metadata_hash_at(fd, path_flags, path).await
    }
}

impl FsView<'_> {
    /// Replaces a file output stream in the table by one whose writes count
    /// against the quota.
    fn counted(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let raw = self.inner.table.delete(stream)?;
        Ok(self.inner.table.push(self.call.quota.wrap(raw))?)
    }
}
