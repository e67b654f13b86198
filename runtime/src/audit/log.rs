//! Writing a session log: JSON Lines, one record per line, each chained to
//! the one before by `prev` (the sha256 of the previous line's bytes, or of
//! the session id for the first), ending with its own `digest` (the sha256
//! of the line up to that field), optionally keyed with an `hmac` over the
//! line before it, and each written with one `write` and an `fsync` so that
//! a crash loses at most the record being written.

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// An HMAC-SHA256 key for the keyed chain.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl AuditKey {
    /// Shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Reads a key file (its bytes, trailing whitespace dropped).
    pub fn from_file(path: &Path) -> anyhow::Result<AuditKey> {
        let mut bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the audit key {}", path.display()))?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        if bytes.len() < Self::MIN_LEN {
            anyhow::bail!(
                "the audit key {} has {} bytes; use at least {} random bytes (e.g. `head -c 32 /dev/urandom > {}`)",
                path.display(),
                bytes.len(),
                Self::MIN_LEN,
                path.display()
            );
        }
        Ok(AuditKey(bytes))
    }

    /// The MAC of `data`, lowercase hex.
    pub fn mac(&self, data: &[u8]) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(data);
        hex::encode(m.finalize().into_bytes())
    }
}

/// The suffix a keyed line ends with: `,"hmac":"<64 hex>"}`.
pub(crate) const HMAC_SUFFIX_LEN: usize = ",\"hmac\":\"\"}".len() + 64;

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The sha256 of a file's contents, lowercase hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// A log being written.
pub struct AuditLog {
    file: std::fs::File,
    path: PathBuf,
    session_id: String,
    seq: u64,
    prev: String,
    key: Option<AuditKey>,
    redactor: super::Redactor,
}

impl AuditLog {
    /// Creates the log at `path` (which must not exist; parent directories
    /// are made, private) for session `session_id`.
    pub fn create(
        path: &Path,
        session_id: &str,
        key: Option<AuditKey>,
    ) -> anyhow::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot create the session log {} (a log is never overwritten: choose a new --log path)",
                    path.display()
                )
            })?;
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
            session_id: session_id.to_string(),
            seq: 0,
            prev: sha256_hex(session_id.as_bytes()),
            key,
            redactor: super::Redactor::default(),
        })
    }

    /// Redacts what `redactor` names in every record written from now on.
    pub fn set_redactor(&mut self, redactor: super::Redactor) {
        self.redactor = redactor;
    }

    /// Writes `record`, redacted, chained, fsynced: the one way producers
    /// (sessions, every path of `eval`) write to a log.
    pub fn write(&mut self, record: super::record::Record) -> anyhow::Result<()> {
        let record = record.redacted(&self.redactor);
        let fields = record.fields()?;
        self.append(record.kind(), fields)
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Appends a record of type `kind` with `fields` (after `seq`, `type`,
    /// `session_id`, `ts` and `prev`), as given: no schema, no redaction.
    /// Producers write through [`AuditLog::write`]; this is the chain
    /// itself, for tools that test it.
    pub fn append(&mut self, kind: &str, fields: Map<String, Value>) -> anyhow::Result<()> {
        let mut rec = Map::new();
        rec.insert("seq".into(), self.seq.into());
        rec.insert("type".into(), kind.into());
        rec.insert("session_id".into(), self.session_id.clone().into());
        rec.insert("ts".into(), now_rfc3339().into());
        rec.insert("prev".into(), self.prev.clone().into());
        for (k, v) in fields {
            rec.entry(k).or_insert(v);
        }
        // The record's own digest, then (keyed) the HMAC over everything
        // before it: each a last field, so a reader strips and checks them
        // without re-serialising anything.
        let mut line = serde_json::to_string(&Value::Object(rec))?;
        let digest = sha256_hex(line.as_bytes());
        line.pop();
        line.push_str(&format!(",\"digest\":\"{digest}\"}}"));
        if let Some(key) = &self.key {
            let mac = key.mac(line.as_bytes());
            line.pop(); // the closing brace
            line.push_str(&format!(",\"hmac\":\"{mac}\"}}"));
        }
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot write to the session log {}", self.path.display()))?;
        self.prev = sha256_hex(line.as_bytes());
        self.seq += 1;
        Ok(())
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// A new session id: the UTC time and 32 random bits.
pub fn new_session_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!(
        "{}-{:08x}",
        now.format(&fmt).unwrap_or_default(),
        rand::random::<u32>()
    )
}
