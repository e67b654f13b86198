//! The global allocator: the system's, counting the bytes a bounded thread
//! holds.
//!
//! A thread that [`track`]s gets a budget; every allocation it makes while
//! tracking adds to its count and every free subtracts. An allocation that
//! would take the count past the budget, or any allocation once the thread
//! is told to stop, never returns: the thread records why, stops counting,
//! and sleeps for the rest of the process. Whoever waits on it (see
//! `guard::bounded`) sees the flag and gives up on it. Parking is the only
//! sound way to stop a thread from inside an allocator: it may not unwind,
//! and returning null aborts the process. The thread keeps at most its
//! budget, and it holds no lock of warden's at that point (callers run only
//! self-contained work on such a thread: a template render).
//!
//! Threads that do not track pay one thread-local read per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Why a tracked thread stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stop {
    /// Still running (or finished).
    None = 0,
    /// It tried to hold more than its budget.
    Memory = 1,
    /// Whoever waits on it asked it to stop (deadline or Ctrl-C).
    Cancelled = 2,
}

/// Shared between a tracked thread and whoever waits on it.
#[derive(Debug, Default)]
pub struct Signal(AtomicU8);

impl Signal {
    /// Why the thread stopped, if it did.
    pub fn stopped(&self) -> Stop {
        match self.0.load(Ordering::SeqCst) {
            1 => Stop::Memory,
            2 => Stop::Cancelled,
            _ => Stop::None,
        }
    }

    /// Asks the thread to stop at its next allocation.
    pub fn cancel(&self) {
        let _ =
            self.0
                .compare_exchange(0, Stop::Cancelled as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn stop(&self, why: Stop) {
        let _ = self
            .0
            .compare_exchange(0, why as u8, Ordering::SeqCst, Ordering::SeqCst);
    }
}

thread_local! {
    /// The budget in bytes; 0 when this thread does not track.
    static BUDGET: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed while tracking (frees of memory
    /// allocated before tracking can take it below zero).
    static HELD: Cell<isize> = const { Cell::new(0) };
    /// The signal of the current tracking, as a raw pointer into an `Arc`
    /// that [`track`]'s guard keeps alive.
    static SIGNAL: Cell<*const Signal> = const { Cell::new(std::ptr::null()) };
}

/// Makes the calling thread count its allocations against `budget` bytes
/// until the guard drops. `signal` tells why it stopped, and lets another
/// thread stop it.
pub fn track(budget: usize, signal: Arc<Signal>) -> Tracking {
    let raw = Arc::into_raw(signal);
    SIGNAL.with(|s| s.set(raw));
    HELD.with(|h| h.set(0));
    BUDGET.with(|b| b.set(budget.max(1)));
    Tracking { signal: raw }
}

/// Tracking in force; dropping it stops the counting.
#[must_use]
pub struct Tracking {
    signal: *const Signal,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(0));
        SIGNAL.with(|s| s.set(std::ptr::null()));
        // SAFETY: `signal` came from `Arc::into_raw` in `track`.
        drop(unsafe { Arc::from_raw(self.signal) });
    }
}

/// Counts `grow` more bytes on a tracking thread, or stops the thread.
#[inline]
fn account(grow: isize) {
    let budget = BUDGET.with(|b| b.get());
    if budget == 0 {
        return;
    }
    let held = HELD.with(|h| h.get()) + grow;
    HELD.with(|h| h.set(held));
    let signal = SIGNAL.with(|s| s.get());
    // SAFETY: set by `track` from a live `Arc`, cleared before it is freed.
    let signal = unsafe { &*signal };
    let why = if held > budget as isize && grow > 0 {
        Stop::Memory
    } else {
        signal.stopped()
    };
    if why != Stop::None {
        // Stop counting first: what follows may allocate.
        BUDGET.with(|b| b.set(0));
        signal.stop(why);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// The system allocator, counting for tracking threads.
pub struct Counting;

// SAFETY: every call is passed to `System` unchanged; `account` only reads
// and writes this thread's cells and may park the thread before the call
// (never unwinding, never returning null).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if BUDGET.with(|b| b.get()) != 0 {
            HELD.with(|h| h.set(h.get() - layout.size() as isize));
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
