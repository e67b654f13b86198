//! What every command sees: the working directory, the mounts, variables,
//! and file access that stays inside the mounts and reports failures the
//! way the GNU tools word them.

use crate::io::Sink;
use std::collections::BTreeMap;
use std::fs;
use std::io;

/// Shell state shared by the commands of one call.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Working directory: an absolute guest path inside a mount.
    pub cwd: String,
    /// The directories the policy mounts, as guest paths.
    pub mounts: Vec<String>,
    /// Variables: those the policy passes, and `NAME=value` assignments.
    pub vars: BTreeMap<String, String>,
    /// Accesses the sandbox refused (outside the mounts, read-only mounts).
    pub refused: Vec<String>,
    /// Most bytes one pipe holds.
    pub pipe_cap: usize,
    /// Nesting of commands run by commands (xargs, find -exec).
    pub depth: usize,
}

/// A file's kind, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// Anything else (FIFO, socket, device).
    Other,
}

impl Kind {
    /// The kind in `meta`.
    pub fn of(meta: &fs::Metadata) -> Kind {
        let t = meta.file_type();
        if t.is_symlink() {
            Kind::Link
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }
}

/// One entry met while walking a tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute guest path.
    pub abs: String,
    /// The path as the command prints it (the operand as typed, joined).
    pub shown: String,
    /// The last component.
    pub name: String,
    /// Depth below the operand (the operand itself is 0).
    pub depth: usize,
    /// Its kind (not following a symlink).
    pub kind: Kind,
    /// Its metadata (not following a symlink), when asked for and readable.
    pub meta: Option<fs::Metadata>,
}

/// What a walk visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on (into a directory too).
    Into,
    /// Do not descend into this directory.
    Prune,
}

/// Joins a shown path and a name the way fts does (no doubled `/`).
pub fn join_shown(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

impl Ctx {
    /// The absolute guest path of `p` (relative to the working directory),
    /// `..` resolved by name; an error when it leaves the mounts.
    pub fn abs(&self, p: &str) -> Result<String, String> {
        let joined = if p.starts_with('/') {
            p.to_string()
        } else {
            format!("{}/{}", self.cwd.trim_end_matches('/'), p)
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in joined.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                x => parts.push(x),
            }
        }
        let abs = format!("/{}", parts.join("/"));
        let inside = self.mounts.iter().any(|m| {
            let m = m.trim_end_matches('/');
            m.is_empty() || abs == m || abs.starts_with(&format!("{m}/"))
        });
        if inside {
            Ok(abs)
        } else {
            Err(self.outside())
        }
    }

    /// The message for a path outside the mounts.
    pub fn outside(&self) -> String {
        format!(
            "Permission denied (outside the directories run_command may access: {})",
            self.mounts.join(", ")
        )
    }

    /// Records a refusal and returns its message.
    pub fn refuse(&mut self, what: String) -> String {
        self.refused.push(what.clone());
        what
    }

    /// Resolves `p` for `cmd`, printing `cmd: p: reason` on failure.
    pub fn resolve(&mut self, cmd: &str, p: &str, err: &Sink) -> Option<String> {
        match self.abs(p) {
            Ok(a) => Some(a),
            Err(m) => {
                let m = self.refuse(format!("{cmd}: {p}: {m}"));
                err.say(m);
                None
            }
        }
    }

    /// Words an I/O error on `shown` as GNU tools do (`No such file or
    /// directory`, `Is a directory`, `Permission denied`), recording
    /// sandbox refusals.
    pub fn io_msg(&mut self, cmd: &str, shown: &str, e: &io::Error) -> String {
        let text = describe(e);
        let msg = format!("{cmd}: {shown}: {text}");
        if is_refusal(e) {
            self.refuse(msg.clone());
        }
        msg
    }

    /// Reads a file operand (`-` is stdin) in full; prints the failure.
    pub fn read(&mut self, cmd: &str, p: &str, stdin: &[u8], err: &Sink) -> Option<Vec<u8>> {
        if p == "-" {
            return Some(stdin.to_vec());
        }
        if p == "/dev/null" {
            return Some(Vec::new());
        }
        let abs = self.resolve(cmd, p, err)?;
        match fs::metadata(&abs) {
            Ok(m) if m.is_dir() => {
                err.say(format!("{cmd}: {p}: Is a directory"));
                return None;
            }
            Ok(m) if !m.is_file() => {
                err.say(format!("{cmd}: {p}: not a regular file; run_command reads only files"));
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                err.say(self.io_msg(cmd, p, &e));
                return None;
            }
        }
        match fs::read(&abs) {
            Ok(b) => Some(b),
            Err(e) => {
                err.say(self.io_msg(cmd, p, &e));
                None
            }
        }
    }

    /// Metadata of `p` (following symlinks unless `nofollow`).
    pub fn stat(&self, p: &str, nofollow: bool) -> io::Result<fs::Metadata> {
        let abs = self.abs(p).map_err(|m| io::Error::new(io::ErrorKind::PermissionDenied, m))?;
        if nofollow {
            fs::symlink_metadata(abs)
        } else {
            fs::metadata(abs)
        }
    }

    /// Names in directory `abs`, sorted by bytes (as `LC_ALL=C.UTF-8`).
    pub fn list(&self, abs: &str) -> io::Result<Vec<String>> {
        Ok(self.entries(abs)?.into_iter().map(|(n, _)| n).collect())
    }

    /// Names and kinds in directory `abs`, sorted by name. The kind comes
    /// with the directory entry: no `stat` per name.
    pub fn entries(&self, abs: &str) -> io::Result<Vec<(String, Kind)>> {
        let mut out: Vec<(String, Kind)> = fs::read_dir(abs)?
            .filter_map(|e| e.ok())
            .map(|e| {
                let kind = match e.file_type() {
                    Ok(t) if t.is_symlink() => Kind::Link,
                    Ok(t) if t.is_dir() => Kind::Dir,
                    Ok(t) if t.is_file() => Kind::File,
                    _ => Kind::Other,
                };
                (e.file_name().to_string_lossy().into_owned(), kind)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Walks the tree at operand `shown` (absolute `abs`) in pre-order, names
    /// sorted, calling `visit` for each entry. Symlinks to directories are
    /// followed only when `follow`. Entries below the operand carry metadata
    /// only when `want_meta` (it costs a `stat` each). Unreadable
    /// directories are reported to `on_error` and skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn walk(
        &mut self,
        abs: &str,
        shown: &str,
        follow: bool,
        want_meta: bool,
        visit: &mut dyn FnMut(&mut Ctx, &Entry) -> io::Result<Step>,
        on_error: &mut dyn FnMut(&mut Ctx, &str, &io::Error),
    ) -> io::Result<()> {
        let meta = if follow { fs::metadata(abs) } else { fs::symlink_metadata(abs) };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                on_error(self, shown, &e);
                return Ok(());
            }
        };
        let name = abs.rsplit('/').next().unwrap_or("").to_string();
        let root = Entry {
            abs: abs.to_string(),
            shown: shown.to_string(),
            name,
            depth: 0,
            kind: Kind::of(&meta),
            meta: Some(meta),
        };
        self.walk_entry(root, follow, want_meta, visit, on_error, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_entry(
        &mut self,
        e: Entry,
        follow: bool,
        want_meta: bool,
        visit: &mut dyn FnMut(&mut Ctx, &Entry) -> io::Result<Step>,
        on_error: &mut dyn FnMut(&mut Ctx, &str, &io::Error),
        links: usize,
    ) -> io::Result<()> {
        let step = visit(self, &e)?;
        let is_dir = e.kind == Kind::Dir
            || (follow && e.kind == Kind::Link && fs::metadata(&e.abs).is_ok_and(|m| m.is_dir()));
        if !is_dir || step == Step::Prune || e.depth > 256 {
            return Ok(());
        }
        let links = links + usize::from(e.kind == Kind::Link);
        if links > 40 {
            return Ok(());
        }
        let names = match self.entries(&e.abs) {
            Ok(n) => n,
            Err(err) => {
                on_error(self, &e.shown, &err);
                return Ok(());
            }
        };
        for (name, kind) in names {
            let abs = format!("{}/{}", e.abs.trim_end_matches('/'), name);
            let meta = if want_meta { fs::symlink_metadata(&abs).ok() } else { None };
            let child = Entry {
                shown: join_shown(&e.shown, &name),
                abs,
                name,
                depth: e.depth + 1,
                kind,
                meta,
            };
            self.walk_entry(child, follow, want_meta, visit, on_error, links)?;
        }
        Ok(())
    }
}

/// Reads a whole file into `buf` (cleared first) without a `stat`: one
/// open, reads until end of file, one close.
pub fn read_into(abs: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    buf.clear();
    let f = fs::File::open(abs)?;
    // `Take` reads to the end without `File`'s size probe (a `stat`).
    f.take(u64::MAX).read_to_end(buf)?;
    Ok(())
}

/// Whether `e` is the sandbox saying no (not a plain missing file).
pub fn is_refusal(e: &io::Error) -> bool {
    // WASI errno values as Rust's std reports them on wasm32-wasip2.
    #[cfg(target_arch = "wasm32")]
    const CODES: &[i32] = &[63, 2, 69, 76];
    #[cfg(not(target_arch = "wasm32"))]
    const CODES: &[i32] = &[1, 13, 30];
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) || e.raw_os_error().is_some_and(|c| CODES.contains(&c))
}

/// The strerror text GNU tools print for `e`.
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => return "No such file or directory".into(),
        io::ErrorKind::IsADirectory => return "Is a directory".into(),
        io::ErrorKind::NotADirectory => return "Not a directory".into(),
        io::ErrorKind::ReadOnlyFilesystem => return "Read-only file system".into(),
        io::ErrorKind::AlreadyExists => return "File exists".into(),
        _ => {}
    }
    if e.kind() == io::ErrorKind::PermissionDenied
        && e.get_ref().is_some_and(|inner| inner.to_string().contains("outside the directories"))
    {
        return e.get_ref().unwrap().to_string();
    }
    #[cfg(target_arch = "wasm32")]
    if e.raw_os_error() == Some(69) {
        return "Read-only file system".into();
    }
    if is_refusal(e) {
        return "Permission denied (the sandbox does not allow this: outside a mount, a symlink that leaves it, .git, or a read-only mount)".into();
    }
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
