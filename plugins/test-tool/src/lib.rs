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
}

struct TestTool;

impl Tool for TestTool {
    type Args = Args;
    const NAME: &'static str = "test_tool";
    const DESCRIPTION: &'static str =
        "Sandbox test tool: echo, spin, alloc, output, panic, env, tcp, read, write.";

    fn parameters() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"enum": ["echo", "spin", "alloc", "output", "panic", "env", "tcp", "read", "write"]},
                "text": {"type": "string"},
                "mib": {"type": "integer", "minimum": 0},
                "bytes": {"type": "integer", "minimum": 0},
                "ip": {"type": "array", "items": {"type": "integer"}},
                "port": {"type": "integer"},
                "path": {"type": "string"},
                "content": {"type": "string"}
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

export_tool!(TestTool);
