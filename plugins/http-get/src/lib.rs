//! `http-get`: fetch a URL over `wasi:http`, following redirects.
//!
//! The host decides which hosts are reachable (the policy's `hosts` list);
//! every request, redirects included, goes through that check, so a
//! redirect to a host the policy does not list fails as `denied`.

use serde::Deserialize;
use serde_json::json;
use url::Url;
use warden_tool_support::{export_tool, Tool, ToolError, ToolResult};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, IncomingResponse, Method, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

/// Largest body returned; longer bodies are cut with a marker.
const MAX_BODY: usize = 256 * 1024;
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Response headers worth showing a model.
const SHOWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "location",
    "last-modified",
    "etag",
    "cache-control",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
}

struct HttpGet;

impl Tool for HttpGet {
    type Args = Args;
    const NAME: &'static str = "http_get";
    const DESCRIPTION: &'static str = "Fetch a web page or API response with HTTP GET and return the status, a few headers and the body (text, cut at 256 KiB). Only hosts allowed by the session's policy can be reached.";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "Absolute http:// or https:// URL"}
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        let mut url = Url::parse(&args.url).map_err(|e| {
            ToolError::InvalidArguments(format!("url {:?} is not valid: {e}", args.url))
        })?;
        for _ in 0..=MAX_REDIRECTS {
            let resp = send(&url)?;
            let status = resp.status();
            let headers = resp.headers().entries();
            if (300..400).contains(&status) {
                if let Some((_, loc)) = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                {
                    let loc = String::from_utf8_lossy(loc).into_owned();
                    url = url.join(&loc).map_err(|e| {
                        ToolError::Failed(format!("redirect to an invalid location {loc:?}: {e}"))
                    })?;
                    continue;
                }
            }
            let (body, total) = read_body(resp)?;
            let mut out = format!("HTTP {status}\n");
            for name in SHOWN_HEADERS {
                if let Some((k, v)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                    out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v)));
                }
            }
            out.push('\n');
            out.push_str(&String::from_utf8_lossy(&body));
            if total > body.len() {
                out.push_str(&format!(
                    "\n[body cut at {} of {total}+ bytes]\n",
                    body.len()
                ));
            }
            return Ok(out);
        }
        Err(ToolError::Failed(format!(
            "more than {MAX_REDIRECTS} redirects; last was to {url}"
        )))
    }
}

fn send(url: &Url) -> ToolResult<IncomingResponse> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(ToolError::InvalidArguments(format!(
                "scheme {other:?} is not supported; use http or https"
            )))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| ToolError::InvalidArguments(format!("url {url} has no host")))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let req = OutgoingRequest::new(Fields::new());
    let bad = |what: &str| ToolError::InvalidArguments(format!("url {url}: invalid {what}"));
    req.set_method(&Method::Get).map_err(|_| bad("method"))?;
    req.set_scheme(Some(&scheme)).map_err(|_| bad("scheme"))?;
    req.set_authority(Some(&authority))
        .map_err(|_| bad("host"))?;
    req.set_path_with_query(Some(&path))
        .map_err(|_| bad("path"))?;
    let fut = outgoing_handler::handle(req, None).map_err(|e| http_error(e, host))?;
    fut.subscribe().block();
    match fut.get() {
        Some(Ok(Ok(resp))) => Ok(resp),
        Some(Ok(Err(e))) => Err(http_error(e, host)),
        _ => Err(ToolError::Failed(format!(
            "request to {host} produced no response"
        ))),
    }
}

fn read_body(resp: IncomingResponse) -> ToolResult<(Vec<u8>, usize)> {
    let body = resp
        .consume()
        .map_err(|_| ToolError::Failed("response body unavailable".into()))?;
    let stream = body
        .stream()
        .map_err(|_| ToolError::Failed("response body unavailable".into()))?;
    let mut buf = Vec::new();
    let mut total = 0usize;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                total += chunk.len();
                let room = MAX_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if total > MAX_BODY {
                    break;
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(ToolError::Failed(format!(
                    "reading the body failed: {}",
                    e.to_debug_string()
                )))
            }
        }
    }
    Ok((buf, total))
}

fn http_error(e: ErrorCode, host: &str) -> ToolError {
    match e {
        ErrorCode::HttpRequestDenied => ToolError::Denied(format!(
            "request to host {host:?} was denied by the policy: only hosts in the tool's `hosts` list are reachable, and never IP addresses"
        )),
        ErrorCode::DnsError(_) => ToolError::Failed(format!("could not resolve host {host:?}")),
        ErrorCode::ConnectionRefused => ToolError::Failed(format!("{host}: connection refused")),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
            ToolError::Failed(format!("{host}: timed out"))
        }
        other => ToolError::Failed(format!("request to {host} failed: {other:?}")),
    }
}

export_tool!(HttpGet);
