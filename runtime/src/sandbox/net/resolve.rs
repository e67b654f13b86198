//! Turning host names into addresses, in the host: the addresses found are
//! checked and then connected to, so a name cannot pass the check as one
//! address and be connected to as another.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

/// The addresses a lookup found.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Resolves host names for tools' HTTP requests. The default,
/// [`SystemResolver`], asks the operating system; an embedder (or a test
/// that needs names to resolve to chosen addresses) may supply another.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, with `port`.
    fn resolve(&self, host: &str, port: u16) -> Lookup;
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Lookup {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}
