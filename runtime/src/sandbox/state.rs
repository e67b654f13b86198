//! What one call's `Store` holds: WASI contexts, resources and limits.

use super::fs::{FsCall, FsView};
use super::limiter::TotalMemoryLimiter;
use super::net::PolicyHooks;
use super::stderr::CapturedStderr;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The host state of one sandboxed call.
pub struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: PolicyHooks,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: TotalMemoryLimiter,
    /// The tail of the plugin's stderr.
    pub(crate) stderr: CapturedStderr,
    pub(crate) fs: FsCall,
}

impl CallState {
    /// The filesystem gate's view of this call.
    pub(crate) fn fs(&mut self) -> FsView<'_> {
        FsView {
            inner: WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            call: &self.fs,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
