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

/// `path` made absolute with symlinks resolved as far as it exists: the
/// longest existing ancestor is canonicalised and the rest appended. Used to
/// compare locations that may not exist yet (a cache directory not yet
/// created) with canonical mount paths.
pub fn real_path(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
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
}
