//! The tiny agent shipped in `examples/models/tiny-agent` (trained here from
//! random weights by `reproduce.sh` there) passes its eval gates on the
//! held-out cases: the base on `code-search.toml`, base + run_command
//! adapter on `seed-tools.toml`. The gates are the figures docs/training.md
//! reports, less a margin of about one case for float differences between
//! machines; a change that breaks loading, the template, parsing or the
//! sandbox path fails them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn eval(suite: &str, variant: &str, gate: &str, logs: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["eval", "--suite"])
        .arg(repo().join("examples/evals").join(suite))
        .args(["--variant", variant, "--gate", gate, "--max-tokens", "128"])
        .arg("--log-dir")
        .arg(logs)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{suite}: {variant} misses {gate}:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn the_shipped_tiny_agent_passes_its_gates_on_held_out_cases() {
    let dir = repo().join("examples/models/tiny-agent");
    let base = dir.join("tiny-agent.gguf");
    let adapter = dir.join("run-command");
    assert!(
        base.is_file() && adapter.is_dir(),
        "the shipped tiny agent is missing; examples/models/tiny-agent/reproduce.sh makes it"
    );
    let logs = tempfile::tempdir().unwrap();
    let base_s = base.display().to_string();
    let out = eval(
        "code-search.toml",
        &format!("base={base_s}"),
        GATE_BASE,
        logs.path(),
    );
    assert!(out.contains("gate passed"), "{out}");
    eval(
        "seed-tools.toml",
        &format!("adapter={base_s}+adapter={}", adapter.display()),
        GATE_ADAPTER,
        logs.path(),
    );
}

/// What the shipped base reaches on code-search.toml, less about a case.
const GATE_BASE: &str = "format_validity>=0.9,tool_accuracy>=0.5,tool_accuracy[search_code]>=0.85";
/// What base + adapter reaches on seed-tools.toml, less about a case.
const GATE_ADAPTER: &str =
    "format_validity>=0.9,tool_accuracy>=0.75,tool_accuracy[run_command]>=0.9";

#[test]
fn demo_live_runs_the_seeds_tasks_on_the_tiny_agent_without_the_smollm2_base() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("live.jsonl");
    // An empty test-model cache: no SmolLM2 base, so the tiny agent runs.
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(repo())
        .env("WARDEN_TEST_MODELS", empty.path())
        .args(["demo", "--live", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let missing = empty.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        out.contains(&format!(
            "Model: {} is not there (runtime/tests/models/fetch.sh fetches it); using the tiny agent.",
            missing.display()
        )),
        "{out}"
    );
    assert!(out.contains("tiny-agent.gguf + adapter"), "{out}");
    let tasks = std::fs::read_to_string(repo().join("examples/sessions/demo-users.txt")).unwrap();
    for t in tasks.lines().filter(|t| !t.trim().is_empty()) {
        assert!(out.contains(&format!("> {t}")), "{t} not run:\n{out}");
    }
    assert!(out.contains("`warden audit verify` accepts it"), "{out}");
    // The log records real generations: tokens decoded by the model.
    let text = std::fs::read_to_string(&log).unwrap();
    let generations: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "generation")
        .collect();
    assert!(generations.len() >= tasks.lines().count(), "{text}");
}
