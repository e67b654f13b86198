//! Models served elsewhere, while everything that decides and records stays
//! here: `completion:URL[#MODEL]` ([`completion`]: warden renders the
//! prompt, the server completes it) and `openai:URL#MODEL` ([`openai`]: the
//! server renders and parses, tools sent as `tools`). What they share: one
//! HTTP client with warden's TLS roots and the key from `OPENAI_API_KEY`,
//! retries of connections that fail (never of a generation once begun),
//! errors that say what to do, and bounded server-sent events.

pub mod completion;
pub mod openai;

pub use completion::{CompletionBackend, PREFIX};
pub use openai::OpenAiBackend;

use anyhow::Context as _;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The key in `file` (`--api-key-file`), trimmed.
pub fn read_key(file: &std::path::Path) -> anyhow::Result<String> {
    let key = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the API key file {}", file.display()))?;
    let key = key.trim().to_string();
    if key.is_empty() || key.contains(char::is_whitespace) {
        anyhow::bail!("{} holds no key (one line, no spaces)", file.display());
    }
    Ok(key)
}

/// Refuses `url` (of model `spec`) unless it is an http(s) URL with a
/// host; `example` shows one that is.
fn check_url(spec: &str, url: &str, example: &str) -> anyhow::Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{spec}: {url:?} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        anyhow::bail!("{spec}: use an http:// or https:// URL, e.g. {example}");
    }
    Ok(())
}

/// Tries of a request that cannot connect.
const TRIES: u32 = 4;
/// Longest server-sent event, and longest error body read.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest pause between two pieces of a generation.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The HTTP client and the key it sends.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    key: Option<String>,
}

impl Http {
    /// A client for one backend, sending `key` (else `OPENAI_API_KEY`'s).
    fn new(key: Option<String>) -> anyhow::Result<Http> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP client's runtime")?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .tls_backend_preconfigured((*crate::sandbox::tls_config()).clone())
            .build()
            .context("cannot build the HTTP client")?;
        let key = key
            .or_else(|| std::env::var("OPENAI_API_KEY").ok())
            .filter(|k| !k.is_empty());
        Ok(Http { rt, client, key })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// `GET url` as JSON, retried while the server cannot be reached.
    fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        self.rt.block_on(async {
            let resp = send(|| self.request(reqwest::Method::GET, url), url).await?;
            let resp = checked(resp, url).await?;
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("reading {url}"))?;
            serde_json::from_slice(&bytes).with_context(|| format!("{url} did not answer JSON"))
        })
    }

    /// POSTs `body` to `url` (retrying connections) and hands each
    /// server-sent event's `data` to `on_event` until it says the stream is
    /// done or it ends; `Ok(true)` when `cancel` stopped it first (the
    /// connection is closed, which stops the server).
    fn stream(
        &self,
        url: &str,
        body: &Value,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(&str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        self.rt.block_on(async {
            let resp = send(|| self.request(reqwest::Method::POST, url).json(body), url).await?;
            let mut resp = checked(resp, url).await?;
            let mut buf: Vec<u8> = Vec::new();
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(true);
                }
                let Some(chunk) = resp
                    .chunk()
                    .await
                    .with_context(|| format!("the stream from {url} broke off"))?
                else {
                    return Ok(false);
                };
                buf.extend_from_slice(&chunk);
                while let Some((len, with_sep)) = find_event_end(&buf) {
                    let event: Vec<u8> = buf.drain(..with_sep).collect();
                    let data = event_data(&event[..len])
                        .with_context(|| format!("{url} sent an event warden cannot read"))?;
                    if data.is_empty() {
                        continue;
                    }
                    let done = on_event(&data)
                        .with_context(|| format!("{url} sent an event warden cannot read"))?;
                    if done {
                        return Ok(false);
                    }
                }
                if buf.len() > MAX_EVENT_BYTES {
                    anyhow::bail!("{url} sent an event over {MAX_EVENT_BYTES} bytes");
                }
            }
        })
    }
}

/// The `data:` lines of one server-sent event, joined.
fn event_data(raw: &[u8]) -> anyhow::Result<String> {
    let text = std::str::from_utf8(raw).context("not UTF-8")?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Sends what `make` builds, retrying (with backoff) only while the server
/// cannot be connected to: nothing was generated then.
async fn send(
    make: impl Fn() -> reqwest::RequestBuilder,
    url: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=TRIES {
        match make().send().await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_connect() && attempt < TRIES => {
                tracing::debug!(%url, attempt, "cannot connect, retrying: {e}");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) if e.is_connect() => {
                anyhow::bail!(
                    "cannot reach {url} (tried {TRIES} times): {}; is the server running?",
                    chain(&e)
                )
            }
            Err(e) => anyhow::bail!("the request to {url} failed: {}", chain(&e)),
        }
    }
    unreachable!("the last try returns")
}

/// The response when its status is a success, else an error that says
/// what to do.
async fn checked(resp: reqwest::Response, url: &str) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let mut body = resp.text().await.unwrap_or_default();
    crate::sandbox::truncate_output(&mut body, 2000);
    let body = body.trim();
    let lower = body.to_ascii_lowercase();
    match status.as_u16() {
        401 | 403 => anyhow::bail!("{url} refused the request ({status}): give the server's key with --api-key-file or OPENAI_API_KEY; it said: {body}"),
        404 => anyhow::bail!("{url} answered 404: no such endpoint, or no such model (name it after #: completion:URL#MODEL); it said: {body}"),
        _ if lower.contains("context") => anyhow::bail!("the prompt does not fit the server's context ({status}); give it a larger context or end the session; it said: {body}"),
        _ => anyhow::bail!("{url} answered {status}: {body}"),
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Where the first event in `buf` ends: (its length, with its separator).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line_of_either_kind() {
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2"), Some((7, 9)));
        assert_eq!(find_event_end(b"data: 1\r\n\r\n"), Some((7, 11)));
        assert_eq!(find_event_end(b"data: 1\n"), None);
        assert_eq!(event_data(b"event: x\ndata: a\ndata:b").unwrap(), "a\nb");
    }

    #[test]
    fn only_http_urls_with_a_host_are_models() {
        for bad in ["ftp://h/x", "/v1", "not a url"] {
            let e = check_url("completion:x", bad, "completion:http://h").unwrap_err();
            assert!(format!("{e:#}").contains("completion:x"), "{bad}: {e:#}");
        }
        check_url("completion:x", "https://h:8080/v1", "").unwrap();
    }

    #[test]
    fn an_endless_event_is_refused_at_its_bound() {
        use std::io::{Read as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: ");
            // 2.5 MiB with no blank line: one event that never ends.
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..40 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let http = Http::new(None).unwrap();
        let url = format!("http://{addr}/completion");
        let never = AtomicBool::new(false);
        let err = http
            .stream(&url, &serde_json::json!({}), &never, &mut |_| Ok(false))
            .unwrap_err();
        assert!(format!("{err:#}").contains("over 1048576 bytes"), "{err:#}");
    }
}
