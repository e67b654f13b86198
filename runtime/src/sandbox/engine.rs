//! The shared wasmtime engine: configuration, epoch ticker, linker, the
//! async executor calls run on, and the compiled-component cache.

use super::cache::ComponentCache;
use super::fs;
use super::net::{Resolve, SystemResolver};
use super::state::CallState;
use crate::paths::WardenPaths;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; wall-clock deadlines are counted in these.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine, linker, executor and compile cache, built once per host and
/// shared by all tools and calls.
///
/// Calls run as async wasmtime calls under a timeout: a guest that waits in
/// the host (a sleep, a poll, a slow server) is dropped at its deadline like
/// one that spins (which the epoch interrupts).
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    /// Whether the engine meters fuel (only when some tool has a budget:
    /// metering costs on every call).
    pub(crate) fuel: bool,
    pub(crate) resolver: Arc<dyn Resolve>,
    cache: Option<ComponentCache>,
    executor: tokio::runtime::Runtime,
}

impl Runtime {
    /// A runtime with the cache where the environment says
    /// ([`WardenPaths::from_env`]) and the system resolver.
    pub fn new(fuel: bool) -> anyhow::Result<Runtime> {
        Self::with_options(
            fuel,
            WardenPaths::from_env().cache_dir,
            Arc::new(SystemResolver),
        )
    }

    /// Builds the engine (pooling allocator, copy-on-write memory images,
    /// epoch interruption, fuel if `fuel`), links WASI 0.2 with the
    /// filesystem gate and `wasi:http`; caches compiled components in
    /// `cache_dir` (none if `None`); resolves host names with `resolver`.
    pub fn with_options(
        fuel: bool,
        cache_dir: Option<PathBuf>,
        resolver: Arc<dyn Resolve>,
    ) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(128)
            .total_core_instances(512)
            .total_memories(256)
            .total_tables(256)
            .total_stacks(128)
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
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        linker.allow_shadowing(true);
        fs::add_to_linker(&mut linker, CallState::fs)?;
        linker.allow_shadowing(false);
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the executor for tool calls")?;
        Ok(Runtime {
            engine,
            linker,
            fuel,
            resolver,
            cache: cache_dir.as_deref().and_then(ComponentCache::open),
            executor,
        })
    }

    /// Runs `fut` (a call) to completion on this runtime's executor. Must
    /// not be called from inside an async runtime; use the `_async` methods
    /// there.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.executor.block_on(fut)
    }

    /// Where the compiled form of `bytes` is cached, if caching is on.
    pub fn cache_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        self.cache.as_ref().map(|c| c.path(&self.cache_key(bytes)))
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!(
            "{}-{:016x}.cwasm",
            hex::encode(Sha256::digest(bytes)),
            h.finish()
        )
    }

    /// Compiles `bytes` to a component, or loads the compiled form from the
    /// cache.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        check_is_component(bytes)?;
        let Some(cache) = &self.cache else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let key = self.cache_key(bytes);
        if let Some(compiled) = cache.get(&key) {
            // SAFETY: the bytes come from warden's private cache directory,
            // from a regular file owned by this user and writable by no one
            // else, read through the handle that was checked; they were
            // written by `precompile_component` of an engine with the same
            // compatibility hash (part of the key). A corrupt entry fails to
            // deserialize and is compiled again below.
            match unsafe { Component::deserialize(&self.engine, &compiled) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(key, "ignoring unusable cache entry: {e:#}"),
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        cache.put(&key, &compiled);
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
