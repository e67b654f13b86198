//! Setting a session up, the same for every command that runs one (`run`,
//! `chat`, `replay`, `demo`) and for `eval`: the policy with warden's own
//! files and the audit key kept out of every mount, the tools, and a log
//! checked against the mounts — created only once the session can start, so
//! a run that fails to set up leaves no empty log behind.

use super::SessionOptions;
use crate::audit::{self, AuditKey, AuditLog};
use crate::paths::WardenPaths;
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// Everything a session needs, ready.
pub struct SessionSetup {
    /// The tools, loaded under the policy.
    pub host: ToolHost,
    /// The session's log, checked, not yet created.
    pub log: PendingLog,
    /// The options the setup fixes (policy file and workspace recorded).
    pub opts: SessionOptions,
}

impl SessionSetup {
    /// Loads `policy` for `workspace` and its tools; the log goes to `log`,
    /// else `<state dir>/sessions/<session id>.jsonl`, keyed with
    /// `key_file` (else `WARDEN_AUDIT_KEY_FILE`).
    pub fn prepare(
        policy: &Path,
        workspace: &Path,
        log: Option<&Path>,
        key_file: Option<&Path>,
    ) -> anyhow::Result<SessionSetup> {
        let mut own = WardenPaths::from_env();
        if let Some(k) = key_file {
            own.audit_key = Some(k.to_path_buf());
        }
        let key = own
            .audit_key
            .as_deref()
            .map(AuditKey::from_file)
            .transpose()?;
        let state = own.state_dir.clone();
        let policy_obj = Policy::load_with(policy, workspace, own)?;
        let session_id = audit::new_session_id();
        let log_path = match log {
            Some(p) => p.to_path_buf(),
            None => state
                .context("no state directory: set WARDEN_STATE_DIR or HOME, or pass --log")?
                .join("sessions")
                .join(format!("{session_id}.jsonl")),
        };
        let log = PendingLog::checked(
            &policy_obj,
            log_path,
            session_id,
            key,
            "choose another --log",
        )?;
        let host = ToolHost::load(&policy_obj).map_err(|e| anyhow::anyhow!("{e}"))?;
        let opts = SessionOptions {
            policy_file: Some((
                policy.display().to_string(),
                audit::sha256_file(policy).unwrap_or_default(),
            )),
            workspace: Some(workspace.display().to_string()),
            ..SessionOptions::default()
        };
        Ok(SessionSetup { host, log, opts })
    }
}

/// A session log checked against the policy's mounts but not yet created.
pub struct PendingLog {
    path: PathBuf,
    session_id: String,
    key: Option<AuditKey>,
}

impl PendingLog {
    /// The log at `path` for session `session_id`, refused when it lies
    /// inside a mount of `policy` (`hint` says what to change).
    pub fn checked(
        policy: &Policy,
        path: PathBuf,
        session_id: String,
        key: Option<AuditKey>,
        hint: &str,
    ) -> anyhow::Result<PendingLog> {
        policy.refuse_log_in_mounts(&path, hint)?;
        Ok(PendingLog {
            path,
            session_id,
            key,
        })
    }

    /// Where the log will be.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the log (never over an existing file).
    pub fn create(self) -> anyhow::Result<AuditLog> {
        AuditLog::create(&self.path, &self.session_id, self.key)
    }
}
