//! warden's own files out of the tools' reach. A compiled component in the
//! cache is native code warden runs: a plugin that could write the cache
//! could run code on the host with the next call of another tool. The same
//! goes for the policy and plugin files (a tool that rewrites them grants
//! itself more next time) and for session logs and the audit key.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden::paths::WardenPaths;
use warden::policy::Policy;
use warden::sandbox::{Runtime, SystemResolver, ToolHost};

/// A home directory with warden's files where it keeps them by default.
struct Home {
    dir: tempfile::TempDir,
    policies: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("project/src")).unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/audit.key"), "k").unwrap();
        Home {
            dir,
            policies: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn own(&self) -> WardenPaths {
        WardenPaths {
            cache_dir: Some(self.path().join(".cache/warden/components")),
            state_dir: Some(self.path().join(".local/state/warden")),
            audit_key: Some(self.path().join("keys/audit.key")),
        }
    }

    /// Loads a policy (written outside the home) mounting `path` as `mode`.
    fn load(&self, path: &str, mode: &str) -> anyhow::Result<Policy> {
        let policy = self.policies.path().join("p.toml");
        std::fs::write(
            &policy,
            format!(
                "[tools.t]\nplugin = \"read-file\"\nfiles = [{{ path = {path:?}, mount = \"/w\", mode = \"{mode}\" }}]\n"
            ),
        )
        .unwrap();
        Policy::load_with(&policy, self.path(), self.own())
    }
}

#[test]
fn no_mount_may_contain_or_lie_inside_wardens_own_files() {
    let home = Home::new();
    // The cache, created as warden creates it.
    Runtime::with_options(false, home.own().cache_dir, Arc::new(SystemResolver)).unwrap();
    std::fs::create_dir_all(home.path().join(".cache/warden/components/sub")).unwrap();
    std::fs::create_dir_all(home.path().join(".local/state/warden/sessions")).unwrap();
    for (path, what) in [
        ("{workspace}", "compiled-component cache"),
        ("{workspace}/.cache", "compiled-component cache"),
        (
            "{workspace}/.cache/warden/components/sub",
            "compiled-component cache",
        ),
        ("{workspace}/.local", "state directory"),
        (
            "{workspace}/.local/state/warden/sessions",
            "state directory",
        ),
        ("{workspace}/keys", "audit key file"),
    ] {
        for mode in ["ro", "rw"] {
            let err = format!("{:#}", home.load(path, mode).unwrap_err());
            assert!(
                err.contains("p.toml:3:") && err.contains(what),
                "{path} {mode}: {err}"
            );
        }
    }
    // A directory beside them is fine.
    home.load("{workspace}/project", "rw").unwrap();
    // The state directory need not exist yet to be protected.
    let mut own = home.own();
    own.state_dir = Some(home.path().join("project/src/not-yet"));
    let policy = home.policies.path().join("p.toml");
    std::fs::write(&policy, "[tools.t]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}/project\", mount = \"/w\", mode = \"ro\" }]\n").unwrap();
    let err = format!(
        "{:#}",
        Policy::load_with(&policy, home.path(), own).unwrap_err()
    );
    assert!(err.contains("state directory"), "{err}");
}

#[test]
fn a_read_write_mount_may_not_contain_the_policy_or_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::copy(warden_artifacts::TEST_TOOL, ws.join("tool.wasm")).unwrap();
    let policy = ws.join("policy.toml");
    let toml = |mode: &str, plugin: &str| {
        format!("[tools.t]\nplugin = {plugin:?}\nfiles = [{{ path = \"{{workspace}}\", mount = \"/w\", mode = \"{mode}\" }}]\n")
    };
    std::fs::write(&policy, toml("rw", "read-file")).unwrap();
    let err = format!("{:#}", Policy::load(&policy, ws).unwrap_err());
    assert!(err.contains("contains the policy file"), "{err}");
    // Elsewhere, a plugin file inside a read-write mount.
    let elsewhere = tempfile::tempdir().unwrap();
    let policy2 = elsewhere.path().join("policy.toml");
    std::fs::write(
        &policy2,
        toml("rw", &ws.join("tool.wasm").display().to_string()),
    )
    .unwrap();
    let err = format!("{:#}", Policy::load(&policy2, ws).unwrap_err());
    assert!(err.contains("contains the plugin"), "{err}");
    // Read-only is fine.
    std::fs::write(&policy, toml("ro", "read-file")).unwrap();
    Policy::load(&policy, ws).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

fn runtime(cache: &Path) -> Runtime {
    Runtime::with_options(false, Some(cache.to_path_buf()), Arc::new(SystemResolver)).unwrap()
}

#[test]
fn the_cache_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("components");
    let rt = runtime(&cache);
    let bytes = std::fs::read(warden_artifacts::TEST_TOOL).unwrap();
    rt.compile(&bytes).unwrap();
    assert_eq!(mode(&cache), 0o700);
    let entry = rt.cache_path(&bytes).unwrap();
    assert_eq!(mode(&entry), 0o600);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // A directory an older warden left open to others is tightened.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    runtime(&cache);
    assert_eq!(mode(&cache), 0o700);
}

/// The built-in `read_file`, loaded on a host whose cache is `cache`.
fn load_read_file(cache: &Path, ws: &Path) -> ToolHost {
    let policy = ws.join("../p.toml");
    std::fs::write(&policy, "[tools.read_file]\nplugin = \"read-file\"\n").unwrap();
    let own = WardenPaths {
        cache_dir: Some(cache.to_path_buf()),
        ..WardenPaths::default()
    };
    ToolHost::load(&Policy::load_with(&policy, ws, own).unwrap()).unwrap()
}

#[test]
fn a_planted_cache_entry_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("components");
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let rt = runtime(&cache);
    let read_file = warden_artifacts::builtin("read-file").unwrap().1;
    let hostile = std::fs::read(warden_artifacts::TEST_TOOL).unwrap();
    rt.compile(&hostile).unwrap();
    let hostile_entry = rt.cache_path(&hostile).unwrap();
    let target: PathBuf = rt.cache_path(read_file).unwrap();
    let describes = |host: &ToolHost| host.tools().next().unwrap().spec.plugin_name.clone();

    // The hostile plugin's compiled code under read_file's name, writable
    // by others (how it would get there if the directory were shared).
    std::fs::copy(&hostile_entry, &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(describes(&load_read_file(&cache, &ws)), "read_file");
    // It was compiled again and the entry replaced, private.
    assert_eq!(mode(&target), 0o600);
    assert_ne!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&hostile_entry).unwrap()
    );

    // A symlink in the entry's place is not followed, and is replaced.
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(&hostile_entry, &target).unwrap();
    assert_eq!(describes(&load_read_file(&cache, &ws)), "read_file");
    assert!(!std::fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(describes(&load_read_file(&cache, &ws)), "read_file");
}
