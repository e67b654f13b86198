//! The shared wasmtime engine: configuration, epoch ticker, linker and a
//! disk cache of compiled components.

use super::state::CallState;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; wall-clock deadlines are counted in these.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine, linker and compile cache, built once per host and shared by all
/// tools and calls.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    /// Whether the engine meters fuel (only when some tool has a budget:
    /// metering costs on every call).
    pub(crate) fuel: bool,
    cache_dir: Option<PathBuf>,
}

impl Runtime {
    /// Builds the engine (pooling allocator, copy-on-write memory images,
    /// epoch interruption, fuel if `fuel`) and links WASI 0.2 and `wasi:http`.
    pub fn new(fuel: bool) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(128)
            .total_core_instances(512)
            .total_memories(256)
            .total_tables(256)
            .max_memory_size(4 << 30);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(true)
            .consume_fuel(fuel)
            .wasm_component_model(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasmtime engine")?;
        spawn_epoch_ticker(&engine).context("cannot start the epoch thread")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        Ok(Runtime {
            engine,
            linker,
            fuel,
            cache_dir: cache_dir(),
        })
    }

    /// Compiles `bytes` to a component, or loads the compiled form from the
    /// cache (`$WARDEN_CACHE_DIR`, else `$XDG_CACHE_HOME/warden` or
    /// `~/.cache/warden`; `WARDEN_CACHE_DIR=` disables it).
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        check_is_component(bytes)?;
        let Some(dir) = &self.cache_dir else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let key = format!(
            "{}-{:016x}.cwasm",
            hex::encode(Sha256::digest(bytes)),
            h.finish()
        );
        let path = dir.join(key);
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash, into warden's own
            // cache directory; a corrupt file fails to deserialize and is
            // compiled again below.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}")
                }
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        if std::fs::create_dir_all(dir).is_ok() {
            let tmp = dir.join(format!(
                ".tmp-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            if std::fs::write(&tmp, &compiled).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        // SAFETY: `compiled` was produced by this engine just now.
        Ok(unsafe { Component::deserialize(&self.engine, &compiled) }?)
    }
}

/// Refuses core modules and non-wasm files with a message saying what to do.
fn check_is_component(bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        anyhow::bail!("not a WebAssembly file (no \\0asm header)");
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        anyhow::bail!(
            "this is a core WebAssembly module, not a component; build the plugin for the wasm32-wasip2 target (cargo build --target wasm32-wasip2) so it is a component"
        );
    }
    Ok(())
}

fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("WARDEN_CACHE_DIR") {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("warden").join("components")),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("warden-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => break,
            }
        })
        .map(drop)
}
