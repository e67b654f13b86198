//! Agent sessions on the replay backend: the loop, the parser and the log
//! hold whatever the model writes, and every call is recorded as made.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use warden::audit::{self, AuditLog};
use warden::chat::ChatTemplate;
use warden::session::{EndReason, ReplayBackend, Session, SessionOptions, TurnReport};

const TOOLS: &str = "[tools.search_code]\nplugin = \"search-code\"\nfiles = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]\n\
[tools.read_file]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]\n";

fn call(name: &str, args: Value) -> String {
    format!(
        "<tool_call>\n{}\n</tool_call>",
        json!({"name": name, "arguments": args})
    )
}

/// A workspace with one Python file, the policy `extra + TOOLS`.
fn fixture(extra: &str) -> Fixture {
    let f = Fixture::with(&format!("{extra}\n{TOOLS}"), |root| {
        std::fs::write(root.join("ws/app.py"), "def view(request):\n    return 1\n").unwrap();
        std::fs::write(root.join("secret.txt"), "TOPSECRET").unwrap();
    });
    f
}

/// Runs one turn of `user` on `outputs`; returns the report and the log.
fn run_turn(
    f: &Fixture,
    outputs: &[String],
    template: Option<ChatTemplate>,
) -> (TurnReport, PathBuf) {
    let file = f.root().join(format!("outputs-{}.jsonl", rand_suffix()));
    let lines: String = outputs
        .iter()
        .map(|o| json!({"output": o}).to_string() + "\n")
        .collect();
    std::fs::write(&file, lines).unwrap();
    let host = f.host();
    let backend = ReplayBackend::open(&file, template).unwrap();
    let log_path = f.root().join(format!("log-{}.jsonl", rand_suffix()));
    let log = AuditLog::create(&log_path, "test-session", None).unwrap();
    let opts = SessionOptions {
        max_tokens: 256,
        ..SessionOptions::default()
    };
    let mut s = Session::start(
        &host,
        Box::new(backend),
        log,
        opts,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let r = s.turn("Find the view", &mut |_| {}).unwrap();
    s.end("test").unwrap();
    (r, log_path)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn records(log: &Path, kind: &str) -> Vec<Value> {
    audit::read_records(log)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.value)
        .collect()
}

fn verified(log: &Path) {
    let v = audit::verify(log, None).unwrap();
    assert!(v.problem.is_none(), "{:?}", v.problem);
}

#[test]
fn the_tool_is_found_and_the_model_answers() {
    let f = fixture("");
    let (r, log) = run_turn(
        &f,
        &[
            format!(
                "<think>\nsearch\n</think>\n\n{}",
                call("search_code", json!({"pattern": "def \\w+\\(request"}))
            ),
            "<think>\ndone\n</think>\n\nIt is `view` in app.py, line 1.".into(),
        ],
        None,
    );
    assert_eq!(r.end_reason, EndReason::Answered);
    assert_eq!(r.steps, 2);
    assert_eq!(r.answer, "It is `view` in app.py, line 1.");
    assert_eq!(r.calls.len(), 1);
    assert_eq!(r.calls[0].outcome, "ok");
    assert_eq!(r.calls[0].result, "app.py:1: def view(request):\n");
    verified(&log);
    let kinds: Vec<String> = audit::read_records(&log)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "session_start",
            "generation",
            "tool_call",
            "generation",
            "turn",
            "session_end"
        ]
    );
    let c = &records(&log, "tool_call")[0];
    assert_eq!(c["tool"], "search_code");
    assert_eq!(c["decision"], "allowed");
    assert_eq!(c["schema_valid"], true);
    assert_eq!(c["outcome"], "ok");
    assert_eq!(c["output_bytes"], 29);
    assert_eq!(
        c["output_sha256"],
        audit::sha256_hex(b"app.py:1: def view(request):\n")
    );
    let t = &records(&log, "turn")[0];
    for k in ["tool_ms", "model_ms", "overhead_ms", "total_ms"] {
        assert!(t[k].is_number(), "{k}");
    }
}

#[test]
fn denied_unknown_malformed_and_schema_violations_are_fed_back() {
    let f = fixture("");
    let (r, log) = run_turn(
        &f,
        &[
            call("read_file", json!({"path": "../secret.txt"})),
            call("write_file", json!({"path": "x", "content": "y", "mode": "create"})),
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"app.py\"}\n</tool_call>".into(),
            call("read_file", json!({"path": 3})),
            call("read_file", json!({"path": "app.py"})),
            "Done.".into(),
        ],
        None,
    );
    assert_eq!(r.end_reason, EndReason::Answered);
    let outcomes: Vec<&str> = r.calls.iter().map(|c| c.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "denied",
            "unknown-tool",
            "malformed",
            "invalid-arguments",
            "ok"
        ]
    );
    let decisions: Vec<&str> = r.calls.iter().map(|c| c.decision).collect();
    assert_eq!(
        decisions,
        ["allowed", "denied", "denied", "denied", "allowed"]
    );
    for c in &r.calls[..4] {
        assert!(
            c.result.starts_with(&format!("error: {}: ", c.outcome)),
            "{}",
            c.result
        );
    }
    assert!(!r.calls[0].result.contains("TOPSECRET"));
    let logged = records(&log, "tool_call");
    assert_eq!(logged[2]["schema_valid"], false);
    assert!(logged[2]["arguments"]
        .as_str()
        .unwrap()
        .contains("\"path\": \"app.py\""));
    assert_eq!(logged[3]["schema_valid"], false);
    assert_eq!(logged[3]["arguments"], json!({"path": 3}));
    let gens = records(&log, "generation");
    assert!(gens[2]["calls"][0]["malformed"].is_string());
    verified(&log);
}

#[test]
fn a_call_inside_think_is_reasoning_not_a_call() {
    let f = fixture("");
    let (r, log) = run_turn(
        &f,
        &[format!(
            "<think>\nMaybe {}\n</think>\n\nNo need to search.",
            call("read_file", json!({"path": "app.py"}))
        )],
        None,
    );
    assert_eq!(r.end_reason, EndReason::Answered);
    assert!(r.calls.is_empty());
    assert_eq!(r.answer, "No need to search.");
    assert!(records(&log, "tool_call").is_empty());
}

#[test]
fn the_call_budget_and_max_steps_end_a_turn() {
    let f = fixture("[session]\nmax_tool_calls = 2\n");
    let c = call("read_file", json!({"path": "app.py"}));
    let (r, log) = run_turn(&f, &[c.clone(), format!("{c}\n{c}"), "never".into()], None);
    assert_eq!(r.end_reason, EndReason::MaxToolCalls);
    assert_eq!(r.calls.len(), 3);
    assert_eq!(r.calls[2].outcome, "denied");
    assert!(
        r.calls[2].result.contains("max_tool_calls"),
        "{}",
        r.calls[2].result
    );
    assert_eq!(records(&log, "turn")[0]["end_reason"], "max_tool_calls");

    let f = fixture("[session]\nmax_steps = 2\n");
    let (r, log) = run_turn(&f, &[c.clone(), c.clone(), c], None);
    assert_eq!(r.end_reason, EndReason::MaxSteps);
    assert_eq!(r.steps, 2);
    assert_eq!(records(&log, "generation").len(), 2);
    verified(&log);
}

/// A template in Qwen3-Coder's call format (it speaks of `<function=`).
const XML_TEMPLATE: &str = "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{%- for c in m.tool_calls or [] %}\n<tool_call>\n<function={{ c.function.name }}>\n{%- for k, v in c.function.arguments|items %}\n<parameter={{ k }}>\n{{ v }}\n</parameter>{%- endfor %}\n</function>\n</tool_call>{%- endfor %}<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}";

#[test]
fn the_xml_call_format_is_parsed_with_schema_types() {
    let f = fixture("");
    let t = ChatTemplate::new(XML_TEMPLATE.into(), None, None).unwrap();
    let (r, log) = run_turn(
        &f,
        &[
            "Reading.\n<tool_call>\n<function=read_file>\n<parameter=path>\napp.py\n</parameter>\n<parameter=start_line>\n2\n</parameter>\n</function>\n</tool_call>".into(),
            "Line 2 returns 1.".into(),
        ],
        Some(t),
    );
    assert_eq!(r.calls[0].outcome, "ok", "{}", r.calls[0].result);
    assert_eq!(
        r.calls[0].arguments,
        json!({"path": "app.py", "start_line": 2})
    );
    assert_eq!(r.calls[0].result, "     2\t    return 1\n");
    assert_eq!(records(&log, "session_start")[0]["call_format"], "xml");
}

#[test]
fn secrets_stay_out_of_the_log() {
    let path = std::env::var("PATH").unwrap();
    let f = fixture(&format!(
        "[tools.t]\nplugin = {}\nenv = [\"PATH\"]\n",
        test_tool()
    ));
    let (r, log) = run_turn(
        &f,
        &[
            call(
                "t",
                json!({"action": "echo", "text": "hi", "api_key": "sk-123"}),
            ),
            format!("The PATH is {path}."),
        ],
        None,
    );
    assert_eq!(
        r.calls[0].outcome, "invalid-arguments",
        "{}",
        r.calls[0].result
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&path), "the env value reached the log");
    assert!(
        !text.contains("sk-123"),
        "a secret argument reached the log"
    );
    assert!(text.contains("[redacted]"));
    verified(&log);
}
