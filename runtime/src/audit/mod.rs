//! Logs that can be audited: one JSON Lines file per session, written as
//! the session runs ([`AuditLog`]), checked ([`verify`]), summed
//! ([`summarize`]), shown as a transcript ([`show`]) and drawn ([`report`]).
//! [`record`] is the schema: one type per record, written through
//! [`AuditLog::write`], which redacts them.

mod log;
mod read;
pub mod record;
mod redact;
mod report;
mod show;
mod summary;
mod verify;

pub use log::{new_session_id, now_rfc3339, sha256_file, sha256_hex, AuditKey, AuditLog};
pub use read::{read_records, read_typed, session_logs, Record, TypedRecord};
pub use redact::{Redactor, REDACTED};
pub use report::{esc, report};
pub use show::show;
pub use summary::{summarize, Stage, Summary};
pub use verify::{verify, Problem, ProblemKind, Verified};
