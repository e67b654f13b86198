//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use warden::policy::Policy;
use warden::sandbox::{CallError, CallOutput, ErrorKind, ToolHost};

/// Path of the misbehaving test plugin, as a TOML string literal.
pub fn test_tool() -> String {
    format!("{:?}", warden_artifacts::TEST_TOOL)
}

/// A temporary workspace plus a policy written beside it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub policy: Policy,
}

impl Fixture {
    /// Writes `toml` as `policy.toml` in a fresh directory whose `ws/`
    /// subdirectory is the workspace.
    pub fn new(toml: &str) -> Fixture {
        Self::with(toml, |_| {})
    }

    /// Like [`Fixture::new`], with `setup` run on the fresh directory
    /// before the policy is loaded (to create what its mounts name).
    pub fn with(toml: &str, setup: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        setup(dir.path());
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, toml).unwrap();
        let policy = Policy::load(&path, &dir.path().join("ws"))
            .unwrap_or_else(|e| panic!("loading the policy: {e:#}"));
        Fixture { dir, policy }
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self) -> ToolHost {
        ToolHost::load(&self.policy).unwrap_or_else(|e| panic!("loading tools: {e}"))
    }
}

/// One call with a fresh budget.
pub fn call(host: &ToolHost, name: &str, args: &str) -> Result<CallOutput, CallError> {
    host.call(&mut host.budget(), name, args)
}

/// Asserts a call failed with `kind`; returns the message.
pub fn expect_err(r: Result<CallOutput, CallError>, kind: ErrorKind) -> String {
    match r {
        Ok(out) => panic!("expected {kind}, got output {:?}", out.output),
        Err(e) => {
            assert_eq!(e.kind, kind, "wrong kind: {e}");
            e.message
        }
    }
}

/// The output of a call that must succeed.
pub fn expect_ok(r: Result<CallOutput, CallError>) -> String {
    r.unwrap_or_else(|e| panic!("expected success, got {e}"))
        .output
}
