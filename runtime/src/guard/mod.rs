//! Bounds on untrusted work that runs inside warden's own process: a chat
//! template from a downloaded model, a tokenizer's regexes, a model file's
//! reader. Tools get a WebAssembly sandbox; these get a thread with a
//! memory budget, a deadline and Ctrl-C ([`bounded`]), and panics turned
//! into errors that name the file ([`contain`]).
//!
//! - [`alloc`]: the global allocator, which counts what a bounded thread
//!   holds and stops the thread at its budget.
//! - [`bounded`]: runs a closure on such a thread and gives up on it at its
//!   memory budget, its deadline or Ctrl-C.
//! - [`contain`]: a panic inside a third-party reader as an error.
//! - [`interrupt`]: the process's Ctrl-C flag.

pub mod alloc;
pub mod bounded;
pub mod contain;
pub mod interrupt;
