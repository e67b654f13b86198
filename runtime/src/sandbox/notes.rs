//! Why the host refused something during a call.
//!
//! A WASI error code is all a guest learns when the host refuses an
//! operation (`not-permitted`, `http-request-denied`); the rule behind it
//! would be lost. The host writes the rule here, and a call that then fails
//! carries it in its message, so the model (and the person reading the log)
//! learns which key of the policy would allow it.

use std::sync::{Arc, Mutex};

/// Most notes kept per call; a guest retrying in a loop cannot grow them.
const MAX_NOTES: usize = 4;

/// The host's refusals in one call; clones share them.
#[derive(Clone, Default)]
pub(crate) struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    /// Records a refusal (once per distinct message, at most a few).
    pub fn push(&self, note: String) {
        tracing::info!("sandbox refused: {note}");
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < MAX_NOTES && !v.contains(&note) {
            v.push(note);
        }
    }

    /// The refusals so far, joined for a message; `None` if there were none.
    pub fn joined(&self) -> Option<String> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (!v.is_empty()).then(|| v.join("; "))
    }
}
