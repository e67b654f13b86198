//! `warden mcp` against the official `mcp` Python SDK client (test tooling,
//! `runtime/tests/mcp/client.py`) over stdio and streamable HTTP:
//! initialize, list, calls that succeed, are denied, do not fit the schema,
//! name no tool, time out, report progress, are cancelled, run out of
//! budget; a malformed message and a foreign Origin over HTTP; and every
//! session's log verifies.

#[path = "mcp/client_side.rs"]
mod client_side;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    common::repo()
}

/// A workspace with one file and a policy: read_file on it, the test
/// plugin as `t` (1 s) and `slow` (5 s), eight calls a session.
fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("notes.txt"), "hello from the workspace\n").unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[session]\nmax_tool_calls = 8\n\n[tools.read_file]\nplugin = \"read-file\"\nfiles = [{{ path = \"{{workspace}}\", mount = \"/workspace\", mode = \"ro\" }}]\n\n[tools.t]\nplugin = {tool}\ntimeout_ms = 1000\n\n[tools.slow]\nplugin = {tool}\ntimeout_ms = 5000\n",
            tool = common::test_tool()
        ),
    )
    .unwrap();
    (policy, ws)
}

/// Fails, saying what to install, unless python3 has the `mcp` SDK.
fn need_mcp_sdk() {
    let check = Command::new("python3")
        .args(["-c", "import mcp"])
        .output()
        .expect("python3 is needed for the MCP tests");
    assert!(
        check.status.success(),
        "the mcp Python package is needed (pip install mcp): {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

fn python(args: &[&str]) {
    need_mcp_sdk();
    let o = Command::new("python3")
        .arg(repo().join("runtime/tests/mcp/client.py"))
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    eprintln!("{out}");
}

/// The log verifies, names the client, and holds every call as decided.
fn check_log(log: &Path) {
    common::assert_verifies(log);
    common::assert_log_matches_schema(log);
    let recs = common::records(log);
    assert_eq!(recs[0]["type"], "session_start");
    assert_eq!(recs[0]["client"]["name"], "mcp", "{}", recs[0]);
    assert!(recs[0]["client"]["protocol_version"].is_string());
    let calls: Vec<&serde_json::Value> = recs.iter().filter(|r| r["type"] == "tool_call").collect();
    let outcomes: Vec<&str> = calls
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "denied",
            "invalid-arguments",
            "unknown-tool",
            "timeout",
            "ok",
            "failed",
            "ok",
            "denied"
        ],
        "{calls:?}"
    );
    // The cancelled call ended well before its 3.5 s sleep.
    let cancelled = calls[6];
    assert!(
        cancelled["error"].as_str().unwrap().contains("cancelled"),
        "{cancelled}"
    );
    assert!(
        cancelled["elapsed_us"].as_u64().unwrap() < 2_500_000,
        "{cancelled}"
    );
    let end = recs.last().unwrap();
    assert_eq!(end["type"], "session_end", "{end}");
}

/// `warden mcp --http` on a free loopback port with `extra` flags, and
/// its `host:port`.
fn start_http(policy: &Path, ws: &Path, logs: &Path, extra: &[&str]) -> (Killed, String) {
    let (child, line) = spawn_and_read_a_line(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["mcp", "--http", "127.0.0.1:0", "--policy"])
            .arg(policy)
            .arg("--workspace")
            .arg(ws)
            .arg("--log")
            .arg(logs)
            .args(extra),
    );
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.strip_suffix("/mcp"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

/// Starts `cmd`, killed when dropped, and reads the first line it prints.
fn spawn_and_read_a_line(cmd: &mut Command) -> (Killed, String) {
    let (child, line) = common::spawn_and_read_a_line(cmd);
    (Killed(child), line)
}

/// A raw `POST /mcp` with `headers` (each ending in CRLF); the whole
/// response, status line first.
fn post(addr: &str, headers: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A child process killed when dropped (a failed test leaves no server).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_python_sdk_over_stdio_and_http_and_every_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, ws) = fixture(dir.path());
    // stdio: the client starts the server, as Claude Desktop does.
    let log = dir.path().join("stdio.jsonl");
    python(&[
        "stdio",
        env!("CARGO_BIN_EXE_warden"),
        policy.to_str().unwrap(),
        ws.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    check_log(&log);

    // Streamable HTTP: a session (and a log) per client.
    let logs = dir.path().join("http-logs");
    let (mut child, addr) = start_http(&policy, &ws, &logs, &[]);
    let url = format!("http://{addr}/mcp");
    python(&["http", &url]);
    let st = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    child.0.wait().unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    // Every session's log verifies; the exercise's (the one with the most
    // calls: a later session makes one) holds them as decided. Found by
    // its calls, not by time: the server's shutdown ends open logs at once.
    common::assert_verifies(&logs);
    let calls = |f: &PathBuf| {
        common::records(f)
            .iter()
            .filter(|r| r["type"] == "tool_call")
            .count()
    };
    let exercise = files.iter().max_by_key(|f| calls(f)).unwrap();
    check_log(exercise);
}

#[test]
fn a_public_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, ws) = fixture(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["mcp", "--http", "0.0.0.0:0", "--policy"])
        .arg(&policy)
        .arg("--workspace")
        .arg(&ws)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--token-file"));

    // With a token, a request without it (or with another) gets 401.
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (_child, addr) = start_http(
        &policy,
        &ws,
        &dir.path().join("logs"),
        &["--token-file", token.to_str().unwrap()],
    );
    let status = |auth: &str| {
        let out = post(&addr, auth, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        out.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    assert_eq!(status(""), "401");
    assert_eq!(status("Authorization: Bearer wrong\r\n"), "401");
    assert_ne!(status("Authorization: Bearer s3cret-token\r\n"), "401");
}

#[test]
fn an_idle_http_session_ends_and_its_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, ws) = fixture(dir.path());
    let logs = dir.path().join("logs");
    let (mut child, addr) = start_http(&policy, &ws, &logs, &["--session-timeout", "1"]);
    let out = post(
        &addr,
        "",
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // Idle past --session-timeout, with the server still up: the session
    // is gone and its log ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ended = std::fs::read_dir(&logs)
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|e| {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
                text.lines()
                    .last()
                    .is_some_and(|l| l.contains("\"type\":\"session_end\""))
            });
        if ended {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session's log did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(child.0.try_wait().unwrap().is_none(), "the server stopped");
}
