//! The `wasi:http` gate: every outgoing request, redirects included, must
//! name a host the tool's policy lists.

use crate::policy::{hosts, HostPattern};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Per-call hooks: the allowed hosts and the call's deadline.
pub struct PolicyHooks {
    /// Hosts this tool may reach.
    pub hosts: Arc<[HostPattern]>,
    /// When the call's wall-clock limit runs out. Epoch interruption cannot
    /// stop the host while it waits on the network, so requests get
    /// timeouts that end by then.
    pub deadline: Instant,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for PolicyHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let host = request.uri().host().unwrap_or_default().to_string();
        if !hosts::allowed(&self.hosts, &host) {
            tracing::info!(host, "wasi:http request denied by policy");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let cap = |t: Option<std::time::Duration>| Some(t.map_or(left, |t| t.min(left)));
        let mut opts = options.unwrap_or_default();
        opts.connect_timeout = cap(opts.connect_timeout);
        opts.first_byte_timeout = cap(opts.first_byte_timeout);
        opts.between_bytes_timeout = cap(opts.between_bytes_timeout);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, Some(opts)).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
