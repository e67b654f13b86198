//! Where warden keeps its own files: the compiled-component cache, the state
//! directory (session logs) and the audit key. No tool may reach them: a
//! compiled component is native code warden runs, and a log must stay out of
//! reach of the tools it records. Policy loading refuses any mount that
//! contains one of them or lies inside one.

use std::path::{Path, PathBuf};

/// warden's own files, as configured by the environment (or a caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WardenPaths {
    /// Compiled components: `$WARDEN_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/warden/components`, else `~/.cache/warden/components`.
    /// `None` when caching is disabled (`WARDEN_CACHE_DIR=`).
    pub cache_dir: Option<PathBuf>,
    /// Session logs and other state: `$WARDEN_STATE_DIR`, else
    /// `$XDG_STATE_HOME/warden`, else `~/.local/state/warden`.
    pub state_dir: Option<PathBuf>,
    /// The audit key file, when one is configured (`WARDEN_AUDIT_KEY_FILE`).
    pub audit_key: Option<PathBuf>,
}

impl WardenPaths {
    /// The locations the environment gives.
    pub fn from_env() -> WardenPaths {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        let cache_dir = match std::env::var_os("WARDEN_CACHE_DIR") {
            Some(d) if d.is_empty() => None,
            Some(d) => Some(PathBuf::from(d)),
            None => var("XDG_CACHE_HOME")
                .or_else(|| home.as_ref().map(|h| h.join(".cache")))
                .map(|d| d.join("warden").join("components")),
        };
        let state_dir = var("WARDEN_STATE_DIR").or_else(|| {
            var("XDG_STATE_HOME")
                .map(|d| d.join("warden"))
                .or_else(|| home.as_ref().map(|h| h.join(".local/state/warden")))
        });
        WardenPaths {
            cache_dir,
            state_dir,
            audit_key: var("WARDEN_AUDIT_KEY_FILE"),
        }
    }

    /// Each configured location with what it is, for messages and
    /// `warden tools list`.
    pub fn entries(&self) -> Vec<(&'static str, &Path)> {
        let mut out = Vec::new();
        if let Some(p) = &self.cache_dir {
            out.push(("compiled-component cache", p.as_path()));
        }
        if let Some(p) = &self.state_dir {
            out.push(("state directory (session logs)", p.as_path()));
        }
        if let Some(p) = &self.audit_key {
            out.push(("audit key file", p.as_path()));
        }
        out
    }
}

/// `path` made absolute and resolved the way the kernel will resolve it
/// once the missing directories are created: each existing component is
/// resolved (symlinks followed), and past the first missing one the
/// remaining components are taken as the plain directories
/// `create_dir_all` makes, so a `..` there goes back up one of them (and,
/// once back in the existing part, resolution continues there). A lexical
/// reading of `missing/../mounted/log` would miss that it names a file in
/// `mounted`. Used to compare locations that may not exist yet (a log, a
/// cache directory not yet created) with canonical mount paths.
pub fn real_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // `out` is canonical up to its last `missing` components.
    let mut out = PathBuf::from("/");
    let mut missing = 0usize;
    for comp in abs.components() {
        match comp {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                // The parent of a canonical path is canonical; the parent of
                // a directory still to be created is the one it is made in.
                out.pop();
                missing = missing.saturating_sub(1);
            }
            Component::Normal(name) => {
                out.push(name);
                if missing > 0 {
                    missing += 1;
                } else {
                    match out.canonicalize() {
                        Ok(real) => out = real,
                        // A dangling symlink is not a directory to be made.
                        Err(_) if std::fs::symlink_metadata(&out).is_ok() => {
                            return dangling(&out);
                        }
                        Err(_) => missing = 1,
                    }
                }
            }
        }
    }
    out
}

/// Where a dangling symlink points, as far as it can be resolved (a file
/// created through it lands there).
fn dangling(link: &Path) -> PathBuf {
    match std::fs::read_link(link) {
        Ok(target) if target.is_absolute() => real_path_depth(&target),
        Ok(target) => real_path_depth(&link.parent().unwrap_or(Path::new("/")).join(target)),
        Err(_) => link.to_path_buf(),
    }
}

/// [`real_path`] with a bound on dangling-link chains.
fn real_path_depth(path: &Path) -> PathBuf {
    thread_local!(static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    let depth = DEPTH.with(|d| d.get());
    if depth > 40 {
        return path.to_path_buf();
    }
    DEPTH.with(|d| d.set(depth + 1));
    let out = real_path(path);
    DEPTH.with(|d| d.set(depth));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_path_resolves_the_existing_part() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let got = real_path(&dir.path().join("link/not/yet"));
        assert_eq!(got, dir.path().canonicalize().unwrap().join("real/not/yet"));
    }

    #[test]
    fn parent_steps_after_a_missing_directory_resolve_as_the_kernel_will() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("ws")).unwrap();
        std::os::unix::fs::symlink(base.join("ws"), base.join("link")).unwrap();
        // `nope` is missing: once made, `nope/..` is `base`.
        assert_eq!(
            real_path(&base.join("nope/../ws/log.jsonl")),
            base.join("ws/log.jsonl")
        );
        // Back in the existing part, symlinks are followed again.
        assert_eq!(real_path(&base.join("a/b/../../link/l")), base.join("ws/l"));
        // Below the missing part, `..` stays below it.
        assert_eq!(real_path(&base.join("a/b/../c")), base.join("a/c"));
        // A dangling link leads where a file made through it lands.
        std::os::unix::fs::symlink(base.join("ws/new.jsonl"), base.join("dangling")).unwrap();
        assert_eq!(real_path(&base.join("dangling")), base.join("ws/new.jsonl"));
    }
}
