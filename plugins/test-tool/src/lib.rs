//! `test-tool`: a deliberately misbehaving tool for warden's sandbox tests and
//! benchmarks. Each `action` exercises one limit; none of it is shipped as a
//! built-in.

use serde::Deserialize;
use serde_json::json;
use warden_tool_support::{export_tool, Tool, ToolError, ToolResult};

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Args {
    /// Return `text` unchanged: the trivial call of the benchmarks.
    Echo { text: String },
    /// Loop forever (wall-clock timeout, fuel).
    Spin,
    /// Allocate and touch `mib` MiB (memory limit).
    Alloc { mib: usize },
    /// Return `bytes` bytes of output (output cap).
    Output { bytes: usize },
    /// Panic (trap isolation).
    Panic,
    /// Return the environment as KEY=VALUE lines (env pass-through).
    Env,
    /// Open a TCP connection to `ip`:`port` (socket denial).
    Tcp { ip: [u8; 4], port: u16 },
    /// Read `path` with std::fs and no checks of its own (host sandbox).
    Read { path: String },
    /// Write `content` to `path` with std::fs, no checks of its own.
    Write { path: String, content: String },
    /// Append `content` to `path` (creating it).
    Append { path: String, content: String },
    /// Write `bytes` bytes of `x` to `path` (write quota).
    WriteBytes { path: String, bytes: usize },
    /// Sleep for `ms` milliseconds: a wait in the host (wasi:io/poll), which
    /// epoch interruption cannot stop.
    Sleep { ms: u64 },
    /// Rename `from` to `to`.
    Rename { from: String, to: String },
    /// Create a symlink at `link` pointing to `target`.
    Symlink { target: String, link: String },
    /// Create a hard link `to` of the file `from`.
    HardLink { from: String, to: String },
    /// Delete the file `path`.
    Remove { path: String },
    /// Create the directory `path` and its parents.
    Mkdir { path: String },
    /// Set the length of the existing file `path` to `bytes`.
    Truncate { path: String, bytes: u64 },
    /// Send `times` plain GET requests to `url` over wasi:http, following no
    /// redirects; report each status or the first error.
    Http { url: String, times: Option<u32> },
    /// Create `wasi:http` header fields of ~60 KiB each and keep them all,
    /// until the host refuses (host-side memory).
    FieldsFlood,
}

struct TestTool;

impl Tool for TestTool {
    type Args = Args;
    const NAME: &'static str = "test_tool";
    const DESCRIPTION: &'static str =
        "Sandbox test tool: each action tries one thing a hostile plugin would.";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"enum": [
                    "echo", "spin", "alloc", "output", "panic", "env", "tcp", "read", "write",
                    "append", "write_bytes", "sleep", "rename", "symlink", "hard_link", "remove",
                    "mkdir", "truncate", "http", "fields_flood"
                ]},
                "text": {"type": "string"},
                "mib": {"type": "integer", "minimum": 0},
                "bytes": {"type": "integer", "minimum": 0},
                "ip": {"type": "array", "items": {"type": "integer"}},
                "port": {"type": "integer"},
                "path": {"type": "string"},
                "content": {"type": "string"},
                "ms": {"type": "integer", "minimum": 0},
                "from": {"type": "string"},
                "to": {"type": "string"},
                "target": {"type": "string"},
                "link": {"type": "string"},
                "url": {"type": "string"},
                "times": {"type": "integer", "minimum": 1}
            },
            "required": ["action"]
        })
    }

    fn run(args: Args) -> ToolResult<String> {
        match args {
            Args::Echo { text } => Ok(text),
            Args::Spin => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Args::Alloc { mib } => {
                let mut chunks = Vec::new();
                for _ in 0..mib {
                    chunks.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
                Ok(format!("allocated {} MiB", chunks.len()))
            }
            Args::Output { bytes } => Ok("x".repeat(bytes)),
            Args::Panic => panic!("test-tool was asked to panic"),
            Args::Env => Ok(std::env::vars()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect()),
            Args::Tcp { ip, port } => tcp(ip, port),
            Args::Read { path } => std::fs::read_to_string(&path).map_err(|e| io(e, &path)),
            Args::Write { path, content } => std::fs::write(&path, content)
                .map(|_| format!("wrote {path}"))
                .map_err(|e| io(e, &path)),
            Args::Append { path, content } => {
                use std::io::Write as _;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(content.as_bytes()))
                    .map(|_| format!("appended to {path}"))
                    .map_err(|e| io(e, &path))
            }
            Args::WriteBytes { path, bytes } => std::fs::write(&path, vec![b'x'; bytes])
                .map(|_| format!("wrote {bytes} bytes to {path}"))
                .map_err(|e| io(e, &path)),
            Args::Sleep { ms } => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(format!("slept {ms} ms"))
            }
            Args::Rename { from, to } => std::fs::rename(&from, &to)
                .map(|_| format!("renamed {from} to {to}"))
                .map_err(|e| io(e, &from)),
            Args::Symlink { target, link } => symlink(&target, &link),
            Args::HardLink { from, to } => std::fs::hard_link(&from, &to)
                .map(|_| format!("hard-linked {to} to {from}"))
                .map_err(|e| io(e, &to)),
            Args::Remove { path } => std::fs::remove_file(&path)
                .map(|_| format!("removed {path}"))
                .map_err(|e| io(e, &path)),
            Args::Mkdir { path } => std::fs::create_dir_all(&path)
                .map(|_| format!("created {path}"))
                .map_err(|e| io(e, &path)),
            Args::Truncate { path, bytes } => std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(bytes))
                .map(|_| format!("set {path} to {bytes} bytes"))
                .map_err(|e| io(e, &path)),
            Args::Http { url, times } => http(&url, times.unwrap_or(1)),
            Args::FieldsFlood => fields_flood(),
        }
    }
}

fn io(e: std::io::Error, path: &str) -> ToolError {
    warden_tool_support::io_error(e, path)
}

fn tcp(ip: [u8; 4], port: u16) -> ToolResult<String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let network = wasi::sockets::instance_network::instance_network();
    let socket = wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| ToolError::Denied(format!("create socket: {e:?}")))?;
    let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port,
        address: (ip[0], ip[1], ip[2], ip[3]),
    });
    socket
        .start_connect(&network, addr)
        .map_err(|e| ToolError::Denied(format!("connect: {e:?}")))?;
    socket.subscribe().block();
    match socket.finish_connect() {
        Ok(_) => Ok("connected".into()),
        Err(e) => Err(ToolError::Denied(format!("connect: {e:?}"))),
    }
}

/// `symlink_at` on the preopen that holds `link` (std's symlink is
/// unstable on WASI).
fn symlink(target: &str, link: &str) -> ToolResult<String> {
    for (dir, root) in wasi::filesystem::preopens::get_directories() {
        let root = root.trim_end_matches('/');
        if let Some(rel) = link.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
            return dir
                .symlink_at(target, rel)
                .map(|_| format!("linked {link} -> {target}"))
                .map_err(|e| ToolError::Denied(format!("symlink {link}: {e:?}")));
        }
    }
    Err(ToolError::Denied(format!("{link} is under no mount")))
}

/// Sends `times` GET requests to `url`, one after another.
fn http(url: &str, times: u32) -> ToolResult<String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(ToolError::InvalidArguments(format!(
            "{url}: http:// or https:// only"
        )));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut statuses = Vec::new();
    for i in 0..times {
        let req = OutgoingRequest::new(Fields::new());
        req.set_method(&Method::Get).ok();
        req.set_scheme(Some(&scheme)).ok();
        req.set_authority(Some(authority))
            .map_err(|_| ToolError::InvalidArguments(format!("bad authority {authority}")))?;
        req.set_path_with_query(Some(path)).ok();
        let fail = |e: String| {
            ToolError::Denied(format!(
                "request {} of {times} failed after {statuses:?}: {e}",
                i + 1
            ))
        };
        let fut = outgoing_handler::handle(req, None).map_err(|e| fail(format!("{e:?}")))?;
        fut.subscribe().block();
        match fut.get() {
            Some(Ok(Ok(resp))) => {
                statuses.push(resp.status());
                if let Ok(body) = resp.consume() {
                    if let Ok(stream) = body.stream() {
                        while stream.blocking_read(65536).is_ok() {}
                    }
                }
            }
            Some(Ok(Err(e))) => return Err(fail(format!("{e:?}"))),
            _ => return Err(fail("no response".into())),
        }
    }
    Ok(format!("{statuses:?}"))
}

/// Keeps creating ~60 KiB header-field resources until the host says no.
fn fields_flood() -> ToolResult<String> {
    use wasi::http::types::Fields;
    let value = vec![b'a'; 60 * 1024];
    let mut kept = Vec::new();
    loop {
        let f = Fields::new();
        if let Err(e) = f.append("x-flood", &value) {
            return Err(ToolError::Failed(format!(
                "append refused after {} fields: {e:?}",
                kept.len()
            )));
        }
        kept.push(f);
    }
}

export_tool!(TestTool);
