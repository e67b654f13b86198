//! The WebAssembly components of warden's plugins, compiled by this crate's
//! build script from `plugins/` for `wasm32-wasip2`.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
