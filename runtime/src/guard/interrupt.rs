//! The process's Ctrl-C flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The flag Ctrl-C sets, installed once per process: a session clears it
/// when a turn starts and stops generating when it is set. Once installed,
/// Ctrl-C no longer ends the process by itself.
pub fn ctrl_c_flag() -> Arc<AtomicBool> {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        if let Err(e) = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst)) {
            tracing::warn!("Ctrl-C will not end a turn cleanly: {e}");
        }
        flag
    })
    .clone()
}

/// The flag, when [`ctrl_c_flag`] has installed it (otherwise Ctrl-C ends
/// the process).
pub fn installed() -> Option<Arc<AtomicBool>> {
    FLAG.get().cloned()
}
