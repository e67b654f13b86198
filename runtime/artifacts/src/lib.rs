//! The WebAssembly components of warden's plugins, compiled by this crate's
//! build script from `plugins/` for `wasm32-wasip2`.
//!
//! Both `policy` (which names built-in plugins) and `sandbox` (which runs
//! them) take the table from here, so neither needs the other for it.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The component bytes of the built-in plugin called `name`, with the name
/// as a `'static` string.
pub fn builtin(name: &str) -> Option<(&'static str, &'static [u8])> {
    BUILTIN.iter().find(|(n, _)| *n == name).copied()
}

/// The names of the built-in plugins, comma-separated, for messages.
pub fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
