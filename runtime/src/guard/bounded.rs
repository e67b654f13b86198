//! Untrusted work on a thread of its own, given up on at a memory budget, a
//! deadline or Ctrl-C.

use super::alloc::{self, Signal, Stop};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What a bounded run may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes the thread may hold at once.
    pub memory: usize,
    /// Wall-clock time before it is given up on.
    pub time: Duration,
}

/// Why a bounded run gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// It tried to hold more than [`Limits::memory`] bytes.
    #[error("it tried to hold more than {} MiB at once", .0 >> 20)]
    Memory(usize),
    /// It ran past [`Limits::time`].
    #[error("it ran longer than {} s", .0.as_secs_f64())]
    Time(Duration),
    /// Ctrl-C was pressed while it ran.
    #[error("it was interrupted (Ctrl-C)")]
    Interrupted,
    /// It panicked (the message).
    #[error("it failed inside: {0}")]
    Panicked(String),
}

/// Runs `f` on a fresh thread under `limits` and waits for it. A thread
/// that exceeds them is left asleep (see [`super::alloc`]) holding at most
/// its budget, and the caller gets the reason at once. Ctrl-C counts when
/// warden's handler is installed ([`super::interrupt`]); otherwise it ends
/// the process as usual.
pub fn run<T: Send + 'static>(
    limits: Limits,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Exceeded> {
    let signal = Arc::new(Signal::default());
    let (tx, rx) = mpsc::sync_channel(1);
    let theirs = signal.clone();
    let spawned = std::thread::Builder::new()
        .name("warden-bounded".into())
        // Deep but legal recursion (a template's macros) must not overflow
        // before its own recursion limit; the stack is only reserved.
        .stack_size(64 << 20)
        .spawn(move || {
            let out = {
                let _tracking = alloc::track(limits.memory, theirs);
                super::contain::quietly(f)
            };
            let _ = tx.send(out);
        });
    if let Err(e) = spawned {
        return Err(Exceeded::Panicked(format!("cannot start a thread: {e}")));
    }
    let start = Instant::now();
    let interrupt = super::interrupt::installed();
    loop {
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(message)) => return Err(Exceeded::Panicked(message)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Exceeded::Panicked(
                    "the thread ended without a result".into(),
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if signal.stopped() == Stop::Memory {
            return Err(Exceeded::Memory(limits.memory));
        }
        if start.elapsed() >= limits.time {
            signal.cancel();
            return Err(Exceeded::Time(limits.time));
        }
        if interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            signal.cancel();
            return Err(Exceeded::Interrupted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        memory: 64 << 20,
        time: Duration::from_secs(30),
    };

    #[test]
    fn a_result_within_the_limits_comes_back() {
        let v = run(LIMITS, || vec![7u8; 1 << 20].len()).unwrap();
        assert_eq!(v, 1 << 20);
    }

    #[test]
    fn doubling_a_string_stops_at_the_budget() {
        let r = run(LIMITS, || {
            let mut s = String::from("x");
            for _ in 0..40 {
                s = format!("{s}{s}");
            }
            s.len()
        });
        assert_eq!(r, Err(Exceeded::Memory(64 << 20)));
    }

    #[test]
    fn memory_freed_along_the_way_does_not_count() {
        let r = run(LIMITS, || {
            for _ in 0..100 {
                drop(std::hint::black_box(vec![1u8; 32 << 20]));
            }
        });
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn a_run_past_its_deadline_is_given_up_and_stops() {
        let limits = Limits {
            time: Duration::from_millis(200),
            ..LIMITS
        };
        let t = Instant::now();
        let r = run(limits, || loop {
            std::hint::black_box(vec![0u8; 16]);
        });
        assert_eq!(r, Err(Exceeded::Time(limits.time)));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_panic_is_an_error() {
        let r: Result<(), _> = run(LIMITS, || panic!("boom"));
        assert_eq!(r, Err(Exceeded::Panicked("boom".into())));
    }
}
