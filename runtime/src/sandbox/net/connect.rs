//! Sending one HTTP request to addresses already checked: TCP to exactly
//! those, TLS for `https` (webpki roots, the host name as the server name),
//! HTTP/1.1 through hyper. wasmtime-wasi-http's default sender resolves the
//! name again by itself, which would let a second lookup answer differently
//! from the one that was checked.

use http::{Request, Response};
use http_body_util::BodyExt as _;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// What finishes the connection's I/O after the response head has arrived.
pub type Driver = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Sends `req` to the first of `addrs` that accepts, by `deadline`.
pub async fn send(
    mut req: Request<WasiBody>,
    host: &str,
    addrs: &[SocketAddr],
    tls: bool,
    deadline: Instant,
) -> Result<(Response<WasiBody>, Driver), HttpError> {
    let mut tcp = None;
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        }
    }
    let tcp = match (tcp, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(HttpError::Connect(e)),
        (None, None) => return Err(HttpError::DestinationNotFound),
    };
    let stream: Box<dyn Stream> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(HttpError::InvalidDnsNameError)?;
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        let s = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = tokio::time::timeout_at(
        deadline,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;

    // Origin form on the wire: scheme and authority are in the Host header.
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let mut send = pin!(sender.send_request(req));
    let mut conn = Some(conn);
    // Drive the connection while waiting for the response head.
    let res = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(HttpError::from)),
        Poll::Pending => {
            let Some(c) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(c).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx).map_err(HttpError::from),
                Err(e) => Poll::Ready(Err(HttpError::from(e))),
            }
        }
    })
    .await?;
    let driver: Driver = Box::new(async move {
        match conn {
            Some(c) => c.await.map_err(HttpError::from),
            None => Ok(()),
        }
    });
    Ok((
        res.map(|body| body.map_err(HttpError::from).boxed_unsync()),
        driver,
    ))
}

/// One TLS client configuration per process (building it parses the roots).
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}
