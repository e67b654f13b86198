//! `warden audit verify`: is a session log the one warden wrote?
//!
//! The plain chain (`prev`, and each record's own `digest`) catches a log
//! changed by hand or by a tool that does not recompute hashes: an edited
//! byte, a deleted, swapped or inserted line, a truncation. Anyone can
//! recompute sha256, so only the keyed chain (`hmac`, with a key the writer
//! of the log did not have) catches a log rewritten from start to end.

use super::log::{sha256_hex, AuditKey};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What is wrong with a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's bytes changed.
    Edited,
    /// Records are missing.
    Deleted,
    /// Records are out of order.
    Reordered,
    /// A record was added.
    Inserted,
    /// The HMAC does not match (or is missing) under the given key.
    BadHmac,
    /// No `session_end`: the session did not finish (a crash, not an attack).
    NotEnded,
}

impl ProblemKind {
    /// The word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
            ProblemKind::BadHmac => "bad HMAC",
            ProblemKind::NotEnded => "not ended",
        }
    }
}

/// The first problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// The record's `seq`, when it has one.
    pub seq: Option<u64>,
    /// The line (1-based).
    pub line: usize,
    /// What was found.
    pub detail: String,
}

/// The result of checking one log.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The file.
    pub path: PathBuf,
    /// Whole records read.
    pub records: usize,
    /// The session's id, from the first record.
    pub session_id: Option<String>,
    /// Whether the records carry HMACs.
    pub keyed: bool,
    /// Whether the HMACs were checked (a key was given).
    pub hmac_checked: bool,
    /// The first problem, or `None` when the chain is intact and ended.
    pub problem: Option<Problem>,
}

/// Checks the log at `path`; HMACs too when `key` is given.
pub fn verify(path: &Path, key: Option<&AuditKey>) -> anyhow::Result<Verified> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    // Raw bytes throughout: a digest covers the bytes on disk, so a line is
    // never decoded (invalid UTF-8 is not replaced) nor cut inside a
    // character.
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let partial = lines.pop().filter(|l| !l.is_empty()).is_some();
    let mut out = Verified {
        path: path.to_path_buf(),
        records: 0,
        session_id: None,
        keyed: false,
        hmac_checked: key.is_some(),
        problem: None,
    };
    let records: Vec<Option<Value>> = lines
        .iter()
        .map(|l| serde_json::from_slice(l).ok())
        .collect();
    let seqs: Vec<Option<u64>> = records
        .iter()
        .map(|r| r.as_ref().and_then(|r| r["seq"].as_u64()))
        .collect();
    let mut prev: Option<String> = None;
    let mut last_type = None;
    for (i, line) in lines.iter().enumerate() {
        let at = |kind, seq, detail: String| {
            Some(Problem {
                kind,
                seq,
                line: i + 1,
                detail,
            })
        };
        let Some(rec) = &records[i] else {
            out.problem = at(
                ProblemKind::Edited,
                None,
                "the line is not a JSON record".into(),
            );
            return Ok(out);
        };
        let seq = seqs[i];
        let sid = rec["session_id"].as_str().unwrap_or_default();
        let session = out
            .session_id
            .get_or_insert_with(|| sid.to_string())
            .clone();
        let expected = i as u64;
        match seq {
            None => {
                out.problem = at(ProblemKind::Edited, None, "the record has no seq".into());
                return Ok(out);
            }
            Some(s) if s > expected => {
                let later = seqs[i + 1..].contains(&Some(expected));
                out.problem = if later {
                    at(
                        ProblemKind::Reordered,
                        seq,
                        format!("seq {s} stands where seq {expected} belongs"),
                    )
                } else {
                    at(
                        ProblemKind::Deleted,
                        seq,
                        format!("records {expected}..{} are missing", s - 1),
                    )
                };
                return Ok(out);
            }
            Some(s) if s < expected => {
                let seen = seqs[..i].contains(&Some(s));
                out.problem = if seen {
                    at(
                        ProblemKind::Inserted,
                        seq,
                        format!("a second record with seq {s}"),
                    )
                } else {
                    at(
                        ProblemKind::Reordered,
                        seq,
                        format!("seq {s} comes after seq {}", expected - 1),
                    )
                };
                return Ok(out);
            }
            Some(_) => {}
        }
        if sid != session {
            out.problem = at(
                ProblemKind::Inserted,
                seq,
                format!("a record of another session ({sid})"),
            );
            return Ok(out);
        }
        let want_prev = prev
            .clone()
            .unwrap_or_else(|| sha256_hex(session.as_bytes()));
        if rec["prev"].as_str() != Some(want_prev.as_str()) {
            let detail = if i == 0 {
                "the first record's prev is not the hash of the session id".to_string()
            } else {
                format!(
                    "prev does not match line {}: that record or this one was changed",
                    i
                )
            };
            out.problem = at(ProblemKind::Edited, seq, detail);
            return Ok(out);
        }
        let (body, mac) = split_hmac(line);
        out.keyed |= mac.is_some();
        if let Some(key) = key {
            match mac {
                Some(m) if key.mac(&body).as_bytes() == m => {}
                Some(_) => {
                    out.problem = at(
                        ProblemKind::BadHmac,
                        seq,
                        "the HMAC does not match under this key".into(),
                    );
                    return Ok(out);
                }
                None => {
                    out.problem = at(ProblemKind::BadHmac, seq, "the record has no HMAC".into());
                    return Ok(out);
                }
            }
        }
        if !digest_ok(&body) {
            out.problem = at(
                ProblemKind::Edited,
                seq,
                "the record's digest does not match its bytes".into(),
            );
            return Ok(out);
        }
        prev = Some(sha256_hex(line));
        last_type = rec["type"].as_str().map(String::from);
        out.records += 1;
    }
    if last_type.as_deref() != Some("session_end") {
        let last = out.records;
        out.problem = Some(Problem {
            kind: ProblemKind::NotEnded,
            seq: last.checked_sub(1).map(|s| s as u64),
            line: last + usize::from(partial),
            detail: format!(
                "no session_end: the session did not finish (a crash or kill); its {last} whole records are intact{}",
                if partial { ", and the last line is incomplete" } else { "" }
            ),
        });
    }
    Ok(out)
}

/// `(line without its HMAC, the HMAC)`, on raw bytes.
fn split_hmac(line: &[u8]) -> (Vec<u8>, Option<&[u8]>) {
    const TAG: &[u8] = b",\"hmac\":\"";
    if line.len() >= super::log::HMAC_SUFFIX_LEN && line.ends_with(b"\"}") {
        let start = line.len() - super::log::HMAC_SUFFIX_LEN;
        if line[start..].starts_with(TAG) {
            let mac = &line[start + TAG.len()..line.len() - 2];
            let mut body = line[..start].to_vec();
            body.push(b'}');
            return (body, Some(mac));
        }
    }
    (line.to_vec(), None)
}

/// Whether the record's own `digest` (its last field before any HMAC)
/// matches the bytes before it.
fn digest_ok(body: &[u8]) -> bool {
    const TAG: &[u8] = b",\"digest\":\"";
    let len = TAG.len() + 64 + 2;
    if body.len() < len || !body.ends_with(b"\"}") || !body[body.len() - len..].starts_with(TAG) {
        return false;
    }
    let start = body.len() - len;
    let digest = &body[start + TAG.len()..body.len() - 2];
    let mut signed = body[..start].to_vec();
    signed.push(b'}');
    sha256_hex(&signed).as_bytes() == digest
}
