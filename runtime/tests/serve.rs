//! `warden serve` against the official `openai` Python client (test
//! tooling, `runtime/tests/serve/client.py`): a live server on loopback
//! with the shipped tiny agent (a real tool-caller), plain and streamed
//! completions, tools and their round trip, errors in OpenAI's shape, the
//! API key, concurrency, the queue's bound and cancellation on disconnect.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const KEY: &str = "test-key-0123456789";

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Stops the server as a service manager does (SIGTERM) and waits: it
    /// ends every conversation's log first.
    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let code = self.child.wait().unwrap();
        assert!(code.success(), "the server exited with {code}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Server {
    start_model(
        &repo().join("examples/models/tiny-agent/tiny-agent.gguf"),
        extra,
    )
}

fn start_model(model: &Path, extra: &[&str]) -> Server {
    start_spec(model.to_str().unwrap(), extra)
}

fn start_spec(model: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--model", model])
        .args(["--addr", "127.0.0.1:0", "--api-key-file"])
        .arg(&key)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Server {
        child,
        base,
        _dir: dir,
    }
}

fn scenario(server: &Server, name: &str) {
    let check = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .expect("python3 is needed for the server's client tests");
    assert!(
        check.status.success(),
        "the openai Python package is needed (pip install openai): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let o = Command::new("python3")
        .arg(repo().join("runtime/tests/serve/client.py"))
        .args([&server.base, KEY, name])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "scenario {name}:\n{out}\n{err}");
    eprintln!("{out}");
}

#[test]
fn openai_client_plain_tools_errors_concurrency_and_disconnect() {
    let s = start(&[
        "--parallel",
        "2",
        "--queue",
        "16",
        "--ctx",
        "8192",
        "--max-body",
        "65536",
    ]);
    for name in ["plain", "tools", "errors", "concurrency", "disconnect"] {
        scenario(&s, name);
    }
}

#[test]
fn tool_choice_and_json_output_are_enforced_even_on_random_weights() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("random");
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["synth", "--shape", "tiny", "--seed", "5", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = start_model(&model, &["--ctx", "4096"]);
    scenario(&s, "constrained");
}

/// Agent mode's flags: the default policy on the example workspace, logs
/// in `logs`.
fn agent_flags(logs: &Path) -> Vec<String> {
    vec![
        "--policy".into(),
        repo().join("policies/default.toml").display().to_string(),
        "--workspace".into(),
        repo().join("examples/workspace").display().to_string(),
        "--log-dir".into(),
        logs.display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The logs in `dir`, each verified by `warden audit verify`, and the
/// summary of each.
fn verified_logs(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let o = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["audit", "verify"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stdout)
        );
        let o = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["audit", "summary", "--json"])
            .arg(&p)
            .output()
            .unwrap();
        out.push(serde_json::from_slice(&o.stdout).unwrap());
    }
    out
}

#[test]
fn agent_mode_runs_the_policys_tools_here_and_logs_each_conversation() {
    let logs = tempfile::tempdir().unwrap();
    let replay = format!(
        "replay:{}",
        repo()
            .join("runtime/tests/serve/agent-replay.jsonl")
            .display()
    );
    let s = start_spec(&replay, &strs(&agent_flags(logs.path())));
    scenario(&s, "agent_replay");
    s.stop();
    // Two conversations, each in its own log, ended, verified; the first
    // holds both server-side calls, the denied one among them.
    let summaries = verified_logs(logs.path());
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    let first = summaries
        .iter()
        .find(|s| s["turns"] == 2)
        .unwrap_or_else(|| panic!("{summaries:?}"));
    assert_eq!(first["calls"]["read_file"]["denied"], 1, "{first}");
    assert_eq!(first["calls"]["search_code"]["ok"], 1, "{first}");

    // A live model: the tiny agent's call of a policy tool runs here.
    let logs = tempfile::tempdir().unwrap();
    let s = start(&strs(&agent_flags(logs.path())));
    scenario(&s, "agent_live");
    s.stop();
    assert_eq!(verified_logs(logs.path()).len(), 1);
}

/// Agent mode under load: 8 conversations at once on 2 slots lose no
/// request and no log record; past 64 conversations the oldest ends.
#[test]
fn agent_mode_keeps_at_most_64_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let replay = dir.path().join("hi.jsonl");
    std::fs::write(&replay, "{\"output\": \"Hi.\"}\n".repeat(65)).unwrap();
    let logs = dir.path().join("logs");
    let mut flags = agent_flags(&logs);
    flags.extend(["--parallel", "2", "--queue", "16"].map(String::from));
    let s = start_spec(&format!("replay:{}", replay.display()), &strs(&flags));
    scenario(&s, "agent_evict");
    s.stop();
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify"])
        .arg(&logs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let mut reasons = Vec::new();
    for e in std::fs::read_dir(&logs).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let types: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["type"].as_str().unwrap().to_string()
            })
            .collect();
        // Every record of the conversation's one turn, in order.
        assert_eq!(
            types,
            ["session_start", "generation", "turn", "session_end"],
            "{text}"
        );
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        reasons.push(last["reason"].as_str().unwrap().to_string());
    }
    reasons.sort();
    assert_eq!(reasons.len(), 65);
    assert_eq!(
        reasons.iter().filter(|r| *r == "evicted").count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(reasons.iter().filter(|r| *r == "shutdown").count(), 64);
}

#[test]
fn a_full_queue_is_refused_with_503() {
    let s = start(&["--parallel", "1", "--queue", "0"]);
    scenario(&s, "busy");
}

#[test]
fn a_public_address_needs_an_api_key() {
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--model"])
        .arg(repo().join("examples/models/tiny-agent/tiny-agent.gguf"))
        .args(["--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--api-key-file"), "{err}");
}
