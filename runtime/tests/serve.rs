//! `warden serve` against the official `openai` Python client (test
//! tooling, `runtime/tests/serve/client.py`): a live server on loopback
//! with the shipped tiny agent (a real tool-caller), plain and streamed
//! completions, tools and their round trip, errors in OpenAI's shape, the
//! API key, concurrency, the queue's bound and cancellation on disconnect.

mod common;

use serde_json::Value;
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
    let (child, line) = common::spawn_and_read_a_line(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--model", model])
            .args(["--addr", "127.0.0.1:0", "--api-key-file"])
            .arg(&key)
            .args(extra)
            .stderr(Stdio::inherit()),
    );
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
        common::assert_verifies(&p);
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
    common::assert_verifies(&logs);
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

/// The `generation` and `tool_call` records of a log: what the model wrote
/// and what its calls did.
fn what_happened(log: &Path) -> (Vec<String>, Vec<(String, Value, String)>, Vec<Value>) {
    let (mut outputs, mut calls, mut timings) = (Vec::new(), Vec::new(), Vec::new());
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        match r["type"].as_str() {
            Some("generation") => {
                outputs.push(r["output"].as_str().unwrap().to_string());
                timings.push(r["timings"].clone());
            }
            Some("tool_call") => calls.push((
                r["tool"].as_str().unwrap_or("").to_string(),
                r["arguments"].clone(),
                r["outcome"].as_str().unwrap().to_string(),
            )),
            _ => {}
        }
    }
    (outputs, calls, timings)
}

#[test]
fn remote_models_run_a_session_and_an_eval_as_the_local_one() {
    let server = start(&[]);
    // The endpoints such a model uses, as the OpenAI SDK and llama-server's
    // clients call them.
    scenario(&server, "completions");
    let model = repo().join("examples/models/tiny-agent/tiny-agent.gguf");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    // `key`: "file" sends it with --api-key-file, else in OPENAI_API_KEY.
    let run = |spec: &str, log: &Path, key: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
        c.args(["run", "--model", spec, "--policy"])
            .arg(repo().join("policies/default.toml"))
            .arg("--workspace")
            .arg(repo().join("examples/workspace"))
            .arg("--log")
            .arg(log)
            .args(["--max-tokens", "96", "Find all Django view functions"])
            .env("WARDEN_STATE_DIR", dir.path())
            .env_remove("OPENAI_API_KEY");
        match key {
            Some("file") => {
                c.arg("--api-key-file").arg(&key_file);
            }
            Some(k) => {
                c.env("OPENAI_API_KEY", k);
            }
            None => {}
        }
        c.output().unwrap()
    };
    let local = dir.path().join("local.jsonl");
    let o = run(model.to_str().unwrap(), &local, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // llama-server's /completion (the template from /props), and OpenAI's
    // /v1/completions: the same generations, calls and outcomes.
    let (want_out, want_calls, _) = what_happened(&local);
    assert!(!want_calls.is_empty(), "the tiny agent calls a tool here");
    // The server prints its OpenAI base URL, `http://ADDR/v1`.
    let root = server.base.trim_end_matches("/v1").to_string();
    for spec in [
        format!("completion:{root}"),
        format!("completion:{root}/v1/completions#tiny"),
        format!("completion:{}", server.base),
    ] {
        let log = dir.path().join("remote.jsonl");
        let _ = std::fs::remove_file(&log);
        // The key from a file for one of them.
        let key = if spec.ends_with("#tiny") { "file" } else { KEY };
        let o = run(&spec, &log, Some(key));
        assert!(
            o.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (out, calls, timings) = what_happened(&log);
        assert_eq!(out, want_out, "{spec}");
        assert_eq!(calls, want_calls, "{spec}");
        common::assert_verifies(&log);
        common::assert_log_matches_schema(&log);
        let start: Value = serde_json::from_str(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(start["model"]["kind"], "completion", "{start}");
        // The server's timings in the log: the second generation reuses the
        // first's prompt from the slot's cache.
        assert!(
            timings[0]["prefill_tokens"].as_u64().unwrap() > 0,
            "{timings:?}"
        );
        if !spec.ends_with(&root) {
            continue;
        }
        assert!(
            timings[1]["reused_tokens"].as_u64().unwrap() > 0,
            "{timings:?}"
        );
    }
    // openai: the server renders and parses; the session runs the calls it
    // returns here. The same calls and answer as on the local model, each
    // generation marked parsed by the server with its answer beside it.
    let log = dir.path().join("openai.jsonl");
    let o = run(&format!("openai:{}#tiny", server.base), &log, Some(KEY));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (out, calls, _) = what_happened(&log);
    assert_eq!(calls, want_calls);
    assert_eq!(out.len(), want_out.len());
    assert!(
        out.last().unwrap().ends_with(
            want_out
                .last()
                .unwrap()
                .rsplit("</think>")
                .next()
                .unwrap()
                .trim_start()
        ),
        "{out:?} vs {want_out:?}"
    );
    common::assert_log_matches_schema(&log);
    let recs = common::records(&log);
    assert_eq!(recs[0]["model"]["kind"], "openai");
    assert!(
        recs[0].get("template_sha256").is_none_or(Value::is_null),
        "{}",
        recs[0]
    );
    for g in recs.iter().filter(|r| r["type"] == "generation") {
        assert_eq!(g["parsed_by"], "server", "{g}");
        assert!(g["response"]["message"].is_object(), "{g}");
    }
    // Without the key: 401, said so.
    let o = run(
        &format!("completion:{root}"),
        &dir.path().join("x.jsonl"),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("401") && err.contains("OPENAI_API_KEY"),
        "{err}"
    );
    // Nothing listening: retried, then said so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = run(
        &format!("completion:http://127.0.0.1:{port}"),
        &dir.path().join("y.jsonl"),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot reach") && err.contains("is the server running"),
        "{err}"
    );

    // eval: a local and a remote variant side by side score alike.
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["eval", "--suite"])
        .arg(repo().join("examples/evals/code-search.toml"))
        .arg("--variant")
        .arg(format!("local={}", model.display()))
        .arg("--variant")
        .arg(format!("remote=completion:{root}"))
        .args(["--limit", "4", "--max-tokens", "96", "--json"])
        .arg(dir.path().join("eval.json"))
        .arg("--log-dir")
        .arg(dir.path().join("eval"))
        .env("OPENAI_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval.json")).unwrap()).unwrap();
    let variants = report["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2, "{report}");
    for k in ["tool_accuracy", "argument_accuracy", "no_call_accuracy"] {
        assert_eq!(
            variants[0]["metrics"][k], variants[1]["metrics"][k],
            "{k}: {report}"
        );
    }
}
