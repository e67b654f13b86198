//! OpenTelemetry export against a collector stand-in written with the
//! official `opentelemetry-proto` classes (`runtime/tests/otel/collector.py`):
//! span names, GenAI attributes and parentage of a real session's turn,
//! generations and calls, the metrics, both OTLP/HTTP encodings, and
//! arguments only when content capture is asked for, redacted.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn repo() -> PathBuf {
    common::repo()
}

struct Collector {
    child: Child,
    url: String,
    out: PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collector(dir: &Path) -> Collector {
    let check = Command::new("python3")
        .args(["-c", "import opentelemetry.proto"])
        .output()
        .expect("python3 is needed for the OpenTelemetry tests");
    assert!(
        check.status.success(),
        "the opentelemetry-proto Python package is needed (pip install opentelemetry-proto): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = dir.join("otlp.jsonl");
    let (child, line) = common::spawn_and_read_a_line(
        Command::new("python3")
            .arg(repo().join("runtime/tests/otel/collector.py"))
            .arg(&out),
    );
    let port = line.trim().strip_prefix("port ").unwrap().to_string();
    Collector {
        child,
        url: format!("http://127.0.0.1:{port}"),
        out,
    }
}

/// A span as the collector got it: name, ids, attributes by key.
#[derive(Debug)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attrs: serde_json::Map<String, Value>,
    status: Value,
}

/// An attribute's value as plain JSON (`intValue` is a string in JSON; a
/// number written as a string stays a string, so the test sees it).
fn plain(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => Value::from(s.parse::<i64>().unwrap()),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = v.get("arrayValue") {
        return Value::Array(
            a["values"]
                .as_array()
                .map(|vs| vs.iter().map(plain).collect())
                .unwrap_or_default(),
        );
    }
    Value::Null
}

fn received(c: &Collector) -> (Vec<Span>, Vec<String>, Vec<String>) {
    let (mut spans, mut metrics, mut types) = (Vec::new(), Vec::new(), Vec::new());
    let text = std::fs::read_to_string(&c.out).unwrap_or_default();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        types.push(r["content_type"].as_str().unwrap_or("").to_string());
        let body = &r["body"];
        if r["signal"] == "traces" {
            for rs in body["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for s in ss["spans"].as_array().unwrap() {
                        let mut attrs = serde_json::Map::new();
                        for a in s["attributes"].as_array().into_iter().flatten() {
                            attrs.insert(a["key"].as_str().unwrap().into(), plain(&a["value"]));
                        }
                        spans.push(Span {
                            name: s["name"].as_str().unwrap().into(),
                            trace: s["traceId"].as_str().unwrap().into(),
                            id: s["spanId"].as_str().unwrap().into(),
                            parent: s["parentSpanId"].as_str().unwrap_or("").into(),
                            attrs,
                            status: s["status"].clone(),
                        });
                    }
                }
            }
        } else {
            for rm in body["resourceMetrics"].as_array().unwrap() {
                for sm in rm["scopeMetrics"].as_array().unwrap() {
                    for m in sm["metrics"].as_array().unwrap() {
                        metrics.push(m["name"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    }
    (spans, metrics, types)
}

fn warden(args: &[&str], envs: &[(&str, &str)], state: &Path) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.args(args)
        .current_dir(repo())
        .env("WARDEN_STATE_DIR", state)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn a_sessions_turn_generations_and_calls_reach_the_collector_as_genai_spans() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path());
    let o = warden(
        &[
            "run",
            "--otlp",
            &c.url,
            "--model",
            "examples/models/tiny-agent/tiny-agent.gguf",
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--max-tokens",
            "96",
            "Find all Django view functions",
        ],
        &[],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (spans, metrics, types) = received(&c);
    assert!(types.iter().all(|t| t.contains("protobuf")), "{types:?}");
    let turn: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "invoke_agent warden")
        .collect();
    assert_eq!(turn.len(), 1, "{spans:#?}");
    let turn = turn[0];
    assert_eq!(turn.attrs["gen_ai.operation.name"], "invoke_agent");
    assert!(turn.attrs["gen_ai.conversation.id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let chats: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "chat tiny-agent.gguf")
        .collect();
    assert!(chats.len() >= 2, "a call and an answer: {spans:#?}");
    for ch in &chats {
        assert_eq!(
            (ch.parent.as_str(), ch.trace.as_str()),
            (turn.id.as_str(), turn.trace.as_str())
        );
        assert_eq!(ch.attrs["gen_ai.operation.name"], "chat");
        assert_eq!(ch.attrs["gen_ai.request.model"], "tiny-agent.gguf");
        assert!(
            ch.attrs["gen_ai.usage.input_tokens"].as_i64().unwrap() > 0,
            "{ch:?}"
        );
        assert!(
            ch.attrs["gen_ai.usage.output_tokens"].as_i64().unwrap() > 0,
            "{ch:?}"
        );
        assert!(
            ch.attrs["gen_ai.response.finish_reasons"].is_array(),
            "{ch:?}"
        );
    }
    // The second generation reads the first's prompt from the cache.
    assert!(
        chats[1].attrs["gen_ai.usage.cache_read.input_tokens"]
            .as_i64()
            .unwrap()
            > 0
    );
    let tool: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "execute_tool search_code")
        .collect();
    assert!(!tool.is_empty(), "{spans:#?}");
    let t = tool[0];
    assert_eq!(t.parent, turn.id);
    assert_eq!(t.attrs["gen_ai.tool.name"], "search_code");
    assert_eq!(t.attrs["gen_ai.tool.call.id"], "call_1");
    assert_eq!(t.attrs["warden.policy.decision"], "allowed");
    assert!(!t.attrs.contains_key("error.type"), "{t:?}");
    // No content unless asked for.
    assert!(!t.attrs.contains_key("gen_ai.tool.call.arguments"), "{t:?}");
    for m in [
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "warden.tool.call.duration",
    ] {
        assert!(
            metrics.iter().any(|n| n == m),
            "{m} missing from {metrics:?}"
        );
    }
}

#[test]
fn refusals_are_errors_and_content_comes_only_when_asked_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[tools.read_file]\nplugin = \"read-file\"\nenv = [\"WARDEN_OTEL_SECRET\"]\nfiles = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]\n",
    )
    .unwrap();
    let outputs = dir.path().join("o.jsonl");
    let call = |name: &str, args: &str| {
        serde_json::json!({"output": format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n</tool_call>")})
            .to_string()
    };
    std::fs::write(
        &outputs,
        [
            call("read_file", r#"{"path": "hunter2-secret-value.txt"}"#),
            call("write_file", r#"{"path": "x", "content": "y"}"#),
            serde_json::json!({"output": "done"}).to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let o = warden(
        &[
            "run",
            "--model",
            &format!("replay:{}", outputs.display()),
            "--policy",
            policy.to_str().unwrap(),
            "--workspace",
            "examples/workspace",
            "Read it",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &c.url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
            ("WARDEN_OTEL_SECRET", "hunter2-secret-value"),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (spans, _, types) = received(&c);
    assert!(types.iter().all(|t| t.contains("json")), "{types:?}");
    let read = spans
        .iter()
        .find(|s| s.name == "execute_tool read_file")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    let args = read.attrs["gen_ai.tool.call.arguments"].as_str().unwrap();
    assert!(args.contains("path") && !args.contains("hunter2"), "{args}");
    assert!(read.attrs.contains_key("gen_ai.tool.call.result"));
    let refused = spans
        .iter()
        .find(|s| s.name == "execute_tool write_file")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(refused.attrs["error.type"], "unknown-tool");
    assert_eq!(refused.attrs["warden.policy.decision"], "denied");
    assert!(
        refused.status["code"] == 2 || refused.status["code"] == "STATUS_CODE_ERROR",
        "{:?}",
        refused.status
    );
}

#[test]
fn an_unknown_otlp_protocol_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let o = warden(
        &["demo", "--otlp", "http://127.0.0.1:9"],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "{err}");
}
