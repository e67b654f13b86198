//! The `wasi:http` gate. Every outgoing request, redirects included (a
//! plugin follows a redirect by making another request), must:
//! - name a host the tool's policy lists — by name, never an address in any
//!   spelling;
//! - resolve, in the host, only to public addresses, unless the tool has
//!   `allow_private_network` (the listed name `localhost` means loopback,
//!   and only that);
//! - be one of at most `max_http_requests` in the call.
//!
//! The request then goes to exactly the addresses that were checked
//! ([`connect`]), and the call's deadline bounds it.

mod addr;
pub(crate) mod connect;
mod resolve;

pub use addr::internal;
pub use resolve::{Lookup, Resolve, SystemResolver};

use super::notes::Notes;
use crate::policy::{hosts, HostPattern};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Largest write to an outgoing body the host buffers, and the most chunks
/// it buffers: host memory a guest can fill per request body.
pub const BODY_CHUNK: usize = 64 * 1024;

/// What one call may reach.
pub struct NetGrant {
    /// Hosts it may name.
    pub hosts: Arc<[HostPattern]>,
    /// Whether internal addresses are allowed.
    pub allow_private_network: bool,
    /// Most requests in the call.
    pub max_requests: u32,
}

/// Per-call hooks: the grant, the resolver, the deadline and the count.
pub struct PolicyHooks {
    pub(crate) grant: NetGrant,
    pub(crate) resolver: Arc<dyn Resolve>,
    /// When the call's wall-clock limit runs out; every wait in a request
    /// ends by then.
    pub(crate) deadline: Instant,
    pub(crate) sent: u32,
    pub(crate) notes: Notes,
}

type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, connect::Driver), HttpError>> + Send>;

impl PolicyHooks {
    fn deny(&self, note: String) -> SendFuture {
        self.notes.push(note);
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl WasiHttpHooks for PolicyHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        self.sent += 1;
        if self.sent > self.grant.max_requests {
            let max = self.grant.max_requests;
            return self.deny(format!(
                "the call made more than {max} HTTP requests (max_http_requests); ask for less, or raise max_http_requests for this tool in the policy"
            ));
        }
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let host = host.trim_end_matches('.').to_string();
        if !hosts::allowed(&self.grant.hosts, &host) {
            return self.deny(format!(
                "host {host:?} is not in the tool's hosts list (and IP addresses never are)"
            ));
        }
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let allow_private = self.grant.allow_private_network;
        let resolver = self.resolver.clone();
        let notes = self.notes.clone();
        let deadline = self.deadline;
        Box::new(async move {
            let addrs =
                match checked_addresses(&host, port, allow_private, &*resolver, deadline).await {
                    Ok(a) => a,
                    Err(Refused::Timeout) => return Err(HttpError::DnsTimeout),
                    Err(Refused::Lookup(e)) => {
                        return Err(HttpError::DnsError {
                            rcode: Some(e),
                            info_code: None,
                        })
                    }
                    Err(Refused::NotFound) => return Err(HttpError::DestinationNotFound),
                    Err(Refused::Internal(note)) => {
                        notes.push(note);
                        return Err(HttpError::HttpRequestDenied);
                    }
                };
            connect::send(request, &host, &addrs, tls, deadline).await
        })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }
}

/// Why [`checked_addresses`] gave no addresses.
#[derive(Debug)]
pub enum Refused {
    /// The lookup did not end by the deadline.
    Timeout,
    /// The lookup failed.
    Lookup(String),
    /// The name has no addresses.
    NotFound,
    /// An address is internal and the grant does not allow that; the text
    /// says which and what to change.
    Internal(String),
}

/// The addresses of `host` (already allowed by name), each checked: none
/// may be internal unless `allow_private`; `localhost` is loopback and
/// only that. The same check for a tool's requests and an MCP server's.
pub async fn checked_addresses(
    host: &str,
    port: u16,
    allow_private: bool,
    resolver: &dyn Resolve,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Refused> {
    let addrs = if host == "localhost" {
        vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
    } else {
        match tokio::time::timeout_at(deadline, resolver.resolve(host, port)).await {
            Err(_) => return Err(Refused::Timeout),
            Ok(Err(e)) => return Err(Refused::Lookup(e.to_string())),
            Ok(Ok(a)) if a.is_empty() => return Err(Refused::NotFound),
            Ok(Ok(a)) => a,
        }
    };
    for a in &addrs {
        let loopback_by_name = host == "localhost" && a.ip().is_loopback();
        if let Some(what) = internal(a.ip()) {
            if !allow_private && !loopback_by_name {
                return Err(Refused::Internal(format!(
                    "host {host} resolves to {}, a {what} address; set allow_private_network = true for it in the policy to reach it",
                    a.ip()
                )));
            }
        }
    }
    Ok(addrs)
}
