//! warden as an MCP client: `[mcp.NAME]` in a policy, against a server
//! written with the official `mcp` Python SDK (`runtime/tests/mcp/server.py`)
//! over stdio and streamable HTTP. Only the tools the policy names are
//! offered; each call is checked, bounded, cancelled at its timeout and
//! audited like a plugin's; an HTTP server passes the address checks and
//! gets its token; a stdio server gets only the environment named and dies
//! with the host.

use super::common::{self, expect_err, expect_ok, Fixture};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::policy::Policy;
use warden::sandbox::{ErrorKind, Lookup, Resolve, ToolHost};

fn server_py() -> String {
    super::repo()
        .join("runtime/tests/mcp/server.py")
        .display()
        .to_string()
}

fn journal(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (at most 10 s) until the journal holds `line`.
fn wait_for(dir: &Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !journal(dir).iter().any(|l| l == line) {
        assert!(
            Instant::now() < deadline,
            "{line:?} never reached the journal: {:?}",
            journal(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python interpreter itself (not a shim that would add variables of
/// its own to the server's environment).
fn python() -> String {
    let o = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed for the MCP tests");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stdio_policy(extra: &str) -> String {
    format!(
        "[session]\nmax_tool_calls = 30\n\n[mcp.py]\ncommand = [{python:?}, {server:?}, \"stdio\", \"{{workspace}}/../journal\"]\nnative = true\ntools = [\"add\", \"echo\", \"slow\", \"big\", \"fail\", \"env\"]\nenv = [\"PATH\"]\ntimeout_ms = 1500\nmax_output_bytes = 1000\n{extra}",
        python = python(),
        server = server_py()
    )
}

#[test]
fn a_stdio_servers_named_tools_are_called_like_plugins() {
    super::need_mcp_sdk();
    let f = Fixture::new(&stdio_policy("max_calls = 3\n"));
    let host = f.host();
    let names: Vec<&str> = host.tools().map(|t| t.spec.name.as_str()).collect();
    assert_eq!(
        names,
        ["py__add", "py__big", "py__echo", "py__env", "py__fail", "py__slow"],
        "only the tools the policy names, `hidden` not among them"
    );
    let add = host.tool("py__add").unwrap();
    assert_eq!(add.spec.description, "Adds two integers.");
    assert_eq!(add.spec.parameters["properties"]["a"]["type"], "integer");

    assert_eq!(
        expect_ok(common::call(&host, "py__add", r#"{"a": 2, "b": 3}"#)),
        "5"
    );
    // Checked against the schema here: the server never sees it.
    expect_err(
        common::call(&host, "py__add", r#"{"a": "two", "b": 3}"#),
        ErrorKind::InvalidArguments,
    );
    assert_eq!(
        journal(f.root())
            .iter()
            .filter(|l| *l == "call add")
            .count(),
        1
    );
    // The output cap.
    let big = common::call(&host, "py__big", r#"{"n": 50000}"#).unwrap();
    assert!(
        big.truncated && big.output.len() < 1200,
        "{}",
        big.output.len()
    );
    // A failure on the server is the call's failure, with its message.
    let msg = expect_err(
        common::call(&host, "py__fail", r#"{"why": "the disk is on fire"}"#),
        ErrorKind::Failed,
    );
    assert!(msg.contains("the disk is on fire"), "{msg}");
    // Only the variables the policy names (Python may add LC_CTYPE).
    let env: Vec<String> =
        serde_json::from_str(&expect_ok(common::call(&host, "py__env", "{}"))).unwrap();
    assert!(env.iter().any(|k| k == "PATH"), "{env:?}");
    assert!(
        env.iter().all(|k| k == "PATH" || k.starts_with("LC_")),
        "only PATH was passed: {env:?}"
    );
    // Past timeout_ms the call ends as a timeout and the server is told.
    let t = Instant::now();
    let msg = expect_err(
        common::call(&host, "py__slow", r#"{"seconds": 30}"#),
        ErrorKind::Timeout,
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(msg.contains("1500 ms"), "{msg}");
    wait_for(f.root(), "cancelled slow");
    // max_calls per tool, in one budget.
    let mut budget = host.budget();
    for _ in 0..3 {
        expect_ok(host.call(&mut budget, "py__echo", r#"{"text": "hi"}"#));
    }
    let msg = expect_err(
        host.call(&mut budget, "py__echo", r#"{"text": "hi"}"#),
        ErrorKind::Denied,
    );
    assert!(msg.contains("max_calls"), "{msg}");
    // The server dies with the host.
    let pid = server_pid(f.root());
    drop(host);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        assert!(
            Instant::now() < deadline,
            "the server {pid} outlived its host"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn server_pid(dir: &Path) -> u32 {
    journal(dir)
        .iter()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
        .expect("the server writes its pid")
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn a_policy_says_what_a_server_may_be() {
    let ws = tempfile::tempdir().unwrap();
    let parse = |text: &str| {
        Policy::parse(text, Path::new("/tmp/p.toml"), ws.path())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let server = server_py();
    for (text, want) in [
        // A native process must be declared as one.
        (format!("[mcp.a]\ncommand = [\"python3\", {server:?}]\ntools = [\"add\"]\n"), "native = true"),
        // Deny by default: no tools named, none offered.
        (format!("[mcp.a]\ncommand = [\"python3\", {server:?}]\nnative = true\n"), "tools = ["),
        ("[mcp.a]\nurl = \"http://mcp.example.com/mcp\"\ntools = [\"add\"]\n".into(), "not in this server's `hosts`"),
        ("[mcp.a]\nurl = \"http://127.0.0.1:9/mcp\"\nhosts = [\"127.0.0.1\"]\ntools = [\"add\"]\n".into(), "IP"),
        ("[mcp.a]\nurl = \"ftp://x/mcp\"\ntools = [\"add\"]\n".into(), "http://"),
        ("[mcp.a]\nurl = \"http://x/mcp\"\ncommand = [\"x\"]\ntools = [\"add\"]\n".into(), "exactly one"),
        ("[mcp.a]\ncommand = [\"no-such-program-here\"]\nnative = true\ntools = [\"add\"]\n".into(), "not on PATH"),
        ("[mcp.a]\nurl = \"http://x/mcp\"\nhosts = [\"x\"]\ntools = [\"add\"]\nbearer_token_env = \"WARDEN_NO_SUCH_VARIABLE\"\n".into(), "not set"),
        ("[mcp.a__b]\nurl = \"http://x/mcp\"\nhosts = [\"x\"]\ntools = [\"add\"]\n".into(), "server name"),
        ("[mcp.a]\nurl = \"http://x/mcp\"\nhosts = [\"x\"]\ntools = [\"a b\"]\n".into(), "not usable"),
        ("[tools.a__add]\nplugin = \"read-file\"\n[mcp.a]\nurl = \"http://x/mcp\"\nhosts = [\"x\"]\ntools = [\"add\"]\n".into(), "also a [tools] table"),
    ] {
        let err = parse(&text);
        assert!(
            err.starts_with("/tmp/p.toml:") && err.contains(want),
            "{text}: {err}"
        );
    }
    // A disabled server is not started.
    let p = Policy::parse(
        "[mcp.a]\nenabled = false\ncommand = [\"no-such-program-here\"]\n",
        Path::new("/tmp/p.toml"),
        ws.path(),
    )
    .unwrap();
    assert!(p.tools.is_empty() && p.mcp.is_empty());
}

#[test]
fn a_tool_the_server_does_not_offer_is_an_error_at_loading() {
    super::need_mcp_sdk();
    let f = Fixture::new(&format!(
        "[mcp.py]\ncommand = [\"python3\", {:?}, \"stdio\", \"{{workspace}}/../journal\"]\nnative = true\ntools = [\"add\", \"nope\"]\n",
        server_py()
    ));
    let Err(e) = ToolHost::load(&f.policy) else {
        panic!("a tool the server lacks must be refused")
    };
    assert!(
        e.message.contains("\"nope\"") && e.message.contains("[mcp.py]"),
        "{e}"
    );
}

#[test]
fn what_a_server_says_of_its_tools_is_bounded_and_a_mute_one_times_out() {
    super::need_mcp_sdk();
    let table = |mode: &str, tools: &str| {
        format!(
            "[mcp.py]\ncommand = [{:?}, {:?}, \"{mode}\", \"{{workspace}}/../journal\"]\nnative = true\ntools = [{tools}]\nconnect_timeout_ms = 3000\n",
            python(),
            server_py()
        )
    };
    // A 10 KB description reaches the prompt cut to 4 KiB (and a marker).
    let f = Fixture::new(&table("stdio", "\"verbose\""));
    let host = f.host();
    let d = &host.tool("py__verbose").unwrap().spec.description;
    assert!(
        d.len() < 4096 + 200 && d.starts_with("A tool that says too much."),
        "{}",
        d.len()
    );
    // A 150 KB schema is refused, naming the tool.
    let f = Fixture::new(&table("stdio", "\"bloated\""));
    let Err(e) = ToolHost::load(&f.policy) else {
        panic!("a 150 KB schema must be refused")
    };
    assert!(
        e.message.contains("bloated") && e.message.contains("65536"),
        "{e}"
    );
    // A server that never answers initialize: refused at connect_timeout_ms,
    // and not left running.
    let f = Fixture::new(&table("mute", "\"add\""));
    let t = Instant::now();
    let Err(e) = ToolHost::load(&f.policy) else {
        panic!("a mute server must not load")
    };
    assert!(e.message.contains("connect_timeout_ms"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let pid = server_pid(f.root());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        assert!(
            Instant::now() < deadline,
            "the mute server {pid} was left running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python server over streamable HTTP on a free loopback port, with
/// `token` required; its port.
fn start_http(dir: &Path, token: &str) -> (super::Killed, u16) {
    super::need_mcp_sdk();
    let (child, line) = super::spawn_and_read_a_line(
        Command::new("python3")
            .arg(server_py())
            .arg("http")
            .arg(dir.join("journal"))
            .arg(token),
    );
    let port = line
        .strip_prefix("port ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, port)
}

fn http_policy(dir: &Path, host: &str, port: u16, extra: &str) -> Policy {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "[mcp.web]\nurl = \"http://{host}:{port}/mcp\"\nhosts = [\"{host}\"]\ntools = [\"add\", \"slow\", \"huge\"]\ntimeout_ms = 3000\n{extra}"
        ),
    )
    .unwrap();
    Policy::load(&path, dir).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Resolves every name to loopback, as a hostile DNS answer might.
struct ToLoopback;

impl Resolve for ToLoopback {
    fn resolve(&self, _host: &str, port: u16) -> Lookup {
        Box::pin(async move { Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]) })
    }
}

#[test]
fn an_http_server_passes_the_address_checks_and_gets_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_http(dir.path(), "tok-4711");
    // The variable the token comes from, unique to this test.
    std::env::set_var("WARDEN_TEST_MCP_TOKEN", "tok-4711");

    // Without the token the server says 401 and loading fails saying so.
    let p = http_policy(dir.path(), "localhost", port, "");
    let Err(e) = ToolHost::load(&p) else {
        panic!("a server that wants a token must not load without it")
    };
    assert!(e.message.contains("[mcp.web]"), "{e}");
    assert!(journal(dir.path()).iter().any(|l| l == "unauthorized"));

    let p = http_policy(
        dir.path(),
        "localhost",
        port,
        "bearer_token_env = \"WARDEN_TEST_MCP_TOKEN\"\n",
    );
    let host = ToolHost::load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        host.tools()
            .map(|t| t.spec.name.as_str())
            .collect::<Vec<_>>(),
        ["web__add", "web__huge", "web__slow"]
    );
    // A 5 MB answer is over the 4 MiB a message may be: the call fails, and
    // the connection serves on.
    let msg = expect_err(common::call(&host, "web__huge", "{}"), ErrorKind::Failed);
    assert!(msg.contains("MCP server web"), "{msg}");
    assert_eq!(
        expect_ok(common::call(&host, "web__add", r#"{"a": 1, "b": 2}"#)),
        "3"
    );
    assert_eq!(
        expect_ok(common::call(&host, "web__add", r#"{"a": 40, "b": 2}"#)),
        "42"
    );
    let t = Instant::now();
    expect_err(
        common::call(&host, "web__slow", r#"{"seconds": 30}"#),
        ErrorKind::Timeout,
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    wait_for(dir.path(), "cancelled slow");

    // A listed name that resolves to an internal address is refused
    // unless the server's table allows private networks.
    let token = "bearer_token_env = \"WARDEN_TEST_MCP_TOKEN\"\n";
    let p = http_policy(dir.path(), "mcp.example.com", port, token);
    let Err(e) = ToolHost::load_with_resolver(&p, Arc::new(ToLoopback)) else {
        panic!("a name resolving to loopback must be refused")
    };
    assert!(
        e.message.contains("loopback") && e.message.contains("allow_private_network"),
        "{e}"
    );
    let p = http_policy(
        dir.path(),
        "mcp.example.com",
        port,
        &format!("{token}allow_private_network = true\n"),
    );
    let host =
        ToolHost::load_with_resolver(&p, Arc::new(ToLoopback)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        expect_ok(common::call(&host, "web__add", r#"{"a": 1, "b": 1}"#)),
        "2"
    );
}

#[test]
fn a_session_audits_an_mcp_servers_calls() {
    super::need_mcp_sdk();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, stdio_policy("max_calls = 1\n")).unwrap();
    let call = |name: &str, args: &str| {
        serde_json::json!({
            "output": format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n</tool_call>")
        })
        .to_string()
    };
    let outputs = dir.path().join("o.jsonl");
    std::fs::write(
        &outputs,
        [
            call("py__add", r#"{"a": 20, "b": 22}"#),
            call("py__add", r#"{"a": 1, "b": 1}"#),
            call("py__hidden", "{}"),
            serde_json::json!({"output": "It is 42."}).to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let log = dir.path().join("session.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("run")
        .arg("--model")
        .arg(format!("replay:{}", outputs.display()))
        .arg("--policy")
        .arg(&policy)
        .arg("--workspace")
        .arg(&ws)
        .arg("--log")
        .arg(&log)
        .arg("What is 20 + 22?")
        .env("WARDEN_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    common::assert_verifies(&log);
    common::assert_log_matches_schema(&log);
    let recs = common::records(&log);
    let calls: Vec<(&str, &str)> = recs
        .iter()
        .filter(|r| r["type"] == "tool_call")
        .map(|r| (r["tool"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            ("py__add", "ok"),
            ("py__add", "denied"),
            ("py__hidden", "unknown-tool")
        ]
    );
    let first = recs.iter().find(|r| r["type"] == "tool_call").unwrap();
    assert_eq!(first["output_sha256"], warden::audit::sha256_hex(b"42"));
    // The server saw one call: the denied one and the unknown one never
    // left warden.
    assert_eq!(
        journal(dir.path())
            .iter()
            .filter(|l| l.starts_with("call "))
            .count(),
        1,
        "{:?}",
        journal(dir.path())
    );
}
