//! `warden demo`, `run`, `replay`, `prompt` and `audit`, run as a user
//! runs them; and sessions on a real (synthetic, tiny) Qwen3.

mod common;

use common::{repo, warden};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn demo_replays_the_recorded_session_and_its_log_verifies() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("demo.jsonl");
    let o = warden(&["demo", "--log", log.to_str().unwrap()], state.path());
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let text = out(&o);
    for want in [
        "Find all Django view functions",
        "post_feed",
        "class UserSerializer",
        "malformed",
        "unknown-tool",
        "Dependency injection",
        "── summary",
        "framework overhead",
        "accepts it",
        "matches the recording",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let o = warden(&["audit", "verify", log.to_str().unwrap()], state.path());
    assert!(o.status.success(), "{}", out(&o));
    let o = warden(
        &["audit", "summary", "--json", log.to_str().unwrap()],
        state.path(),
    );
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["turns"], 5);
    assert_eq!(s["format_errors"], 1);
    assert_eq!(s["calls"]["write_file"]["unknown-tool"], 1);
    let o = warden(
        &["audit", "show", log.to_str().unwrap(), "--turn", "2"],
        state.path(),
    );
    assert!(out(&o).contains("call_3 search_code"), "{}", out(&o));
    let html = state.path().join("r.html");
    let o = warden(
        &[
            "audit",
            "report",
            log.to_str().unwrap(),
            "--out",
            html.to_str().unwrap(),
        ],
        state.path(),
    );
    assert!(o.status.success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && !page.contains("<script") && !page.contains("http://"));
}

#[test]
fn replay_lists_what_differs_under_another_policy() {
    let state = tempfile::tempdir().unwrap();
    let rec = "examples/sessions/demo.jsonl";
    let o = warden(
        &[
            "replay",
            rec,
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
        ],
        state.path(),
    );
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    // Under the locked policy every call is refused: the replay differs.
    let o = warden(
        &[
            "replay",
            rec,
            "--policy",
            "policies/locked.toml",
            "--workspace",
            "examples/workspace",
            "--json",
        ],
        state.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!v["differences"].as_array().unwrap().is_empty());
    // The replay wrote its own log, in the state directory.
    assert!(v["log"]
        .as_str()
        .unwrap()
        .starts_with(state.path().to_str().unwrap()));
}

#[test]
fn tampered_logs_fail_verify_with_the_reason() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("x.jsonl");
    std::fs::copy(repo().join("examples/sessions/demo.jsonl"), &log).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("Find all Django", "Find all Flask!", 1)).unwrap();
    let o = warden(&["audit", "verify", log.to_str().unwrap()], state.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("edited at line"), "{}", out(&o));
}

#[test]
fn a_log_inside_a_mount_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let outputs = state.path().join("o.jsonl");
    std::fs::write(&outputs, "{\"output\": \"hi\"}\n").unwrap();
    let model = format!("replay:{}", outputs.display());
    let o = warden(
        &[
            "run",
            "--model",
            &model,
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--log",
            "examples/workspace/session.jsonl",
            "hello",
        ],
        state.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("out of reach of the tools"), "{}", err(&o));
    assert!(!repo().join("examples/workspace/session.jsonl").exists());
}

#[test]
fn run_json_reports_answer_calls_and_log() {
    let state = tempfile::tempdir().unwrap();
    let outputs = state.path().join("o.jsonl");
    let call =
        "<tool_call>\n{\"name\": \"list_dir\", \"arguments\": {\"path\": \"blog\"}}\n</tool_call>";
    std::fs::write(
        &outputs,
        format!(
            "{}\n{}\n",
            json!({"output": call}),
            json!({"output": "blog holds the app."})
        ),
    )
    .unwrap();
    let model = format!("replay:{}", outputs.display());
    let o = warden(
        &[
            "run",
            "--model",
            &model,
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--json",
            "What is in blog?",
        ],
        state.path(),
    );
    assert!(o.status.success(), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["answer"], "blog holds the app.");
    assert_eq!(v["calls"][0]["tool"], "list_dir");
    assert_eq!(v["calls"][0]["outcome"], "ok");
    assert_eq!(v["end_reason"], "answered");
    let log = PathBuf::from(v["log"].as_str().unwrap());
    assert!(log.starts_with(state.path().join("sessions")));
    assert!(
        warden(&["audit", "verify", log.to_str().unwrap()], state.path())
            .status
            .success()
    );
}

/// The records of the log a successful `run --json` wrote, after checking
/// that `warden audit verify` accepts it.
fn verified_records(o: &Output, dir: &Path) -> Vec<warden::audit::Record> {
    assert!(o.status.success(), "{}", err(o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let log = v["log"].as_str().unwrap();
    assert!(warden(&["audit", "verify", log], dir).status.success());
    // Every session log validates against the shipped schema.
    common::assert_log_matches_schema(Path::new(log));
    warden::audit::read_records(Path::new(log)).unwrap()
}

/// A tiny synthetic Qwen3 in the real formats.
fn tiny(dir: &Path) -> PathBuf {
    use warden::model::convert::synth::{synth, SynthOptions, SynthShape};
    synth(&SynthOptions {
        shape: SynthShape::Tiny,
        out: dir.to_path_buf(),
        dtype: candle_core::DType::F32,
        gguf: Some(warden::model::weights::ggml_type::parse_gguf_type("q8_0").unwrap()),
        gguf_only: false,
        seed: 3,
        tie_word_embeddings: None,
    })
    .unwrap();
    dir.to_path_buf()
}

/// A tiny model, the reference conversation with one call, and its
/// rendering by transformers.
fn prompt_fixture() -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    let conv = repo().join("runtime/tests/chat_refs/conversations/one_call_with_result.json");
    let want = std::fs::read_to_string(
        repo().join("runtime/tests/chat_refs/refs/one_call_with_result.txt"),
    )
    .unwrap();
    (dir, model, conv, want)
}

#[test]
fn prompt_prints_the_templates_text_and_ids() {
    let (dir, model, conv, want) = prompt_fixture();
    for m in [model.clone(), model.join("model-q8_0.gguf")] {
        let o = warden(
            &[
                "prompt",
                "--model",
                m.to_str().unwrap(),
                "--conversation",
                conv.to_str().unwrap(),
                "--json",
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{}", err(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["text"], want.as_str());
        assert_eq!(v["format"], "hermes");
        let ids = v["ids"].as_array().unwrap();
        assert_eq!(ids[0], 151644, "<|im_start|>");
    }
}

#[test]
fn prompt_offers_the_policys_tools_when_the_conversation_has_none() {
    let (dir, model, _, _) = prompt_fixture();
    // With a policy and no tools in the file, the policy's tools.
    let bare = dir.path().join("bare.json");
    std::fs::write(
        &bare,
        r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
    )
    .unwrap();
    let o = warden(
        &[
            "prompt",
            "--model",
            model.to_str().unwrap(),
            "--conversation",
            bare.to_str().unwrap(),
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
        ],
        dir.path(),
    );
    assert!(out(&o).contains("\"name\": \"search_code\""), "{}", out(&o));
}

#[test]
fn prompt_check_names_the_lines_whose_training_text_differs() {
    let (dir, model, conv, want) = prompt_fixture();
    // --check: one line as trained, one whose text drifted.
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&conv).unwrap()).unwrap();
    let mut trained = c.clone();
    trained["add_generation_prompt"] = json!(true);
    trained["text"] = json!(want);
    let mut drifted = trained.clone();
    drifted["text"] = json!(want.replacen(
        "\"arguments\": {\"pattern\"",
        "\"arguments\":{\"pattern\"",
        1
    ));
    let training = dir.path().join("train.jsonl");
    std::fs::write(&training, format!("{trained}\n{drifted}\nnot json\n")).unwrap();
    let o = warden(
        &[
            "prompt",
            "--model",
            model.to_str().unwrap(),
            "--check",
            training.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let text = out(&o);
    assert!(text.contains("train.jsonl:2: the training text differs from warden's rendering at line 22, column 37"), "{text}");
    assert!(text.contains("train.jsonl:3: not JSON"), "{text}");
    assert!(
        text.contains("1 conversation(s) render as trained, 2 do not"),
        "{text}"
    );
}

#[test]
fn prompt_reads_a_lone_ggufs_own_template() {
    let (dir, model, conv, _) = prompt_fixture();
    // A model without a template says so.
    let bad = dir.path().join("nt");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(model.join("model-q8_0.gguf"), bad.join("m.gguf")).unwrap();
    let o = warden(
        &[
            "prompt",
            "--model",
            bad.join("m.gguf").to_str().unwrap(),
            "--conversation",
            conv.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        o.status.success(),
        "the GGUF carries its template: {}",
        err(&o)
    );
}

#[test]
fn a_session_on_a_real_model_holds_whatever_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    for m in [model.clone(), model.join("model-q8_0.gguf")] {
        let o = warden(
            &[
                "run",
                "--model",
                m.to_str().unwrap(),
                "--policy",
                "policies/default.toml",
                "--workspace",
                "examples/workspace",
                "--max-tokens",
                "24",
                "--json",
                "Find all Django view functions",
            ],
            dir.path(),
        );
        let recs = verified_records(&o, dir.path());
        let gens: Vec<_> = recs.iter().filter(|r| r.kind == "generation").collect();
        assert!(!gens.is_empty());
        assert!(gens[0].value["timings"]["prefill_tokens"].as_u64().unwrap() > 100);
        let start = &recs[0].value;
        assert_eq!(start["model"]["kind"], "candle");
        assert_eq!(
            start["model"]["files"][0]["sha256"].as_str().unwrap().len(),
            64
        );
    }
}

#[test]
fn a_session_with_speculative_decoding_logs_its_drafts_and_draft_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    let run = |extra: &[&str]| -> Vec<warden::audit::Record> {
        let args = [
            &[
                "run",
                "--model",
                model.to_str().unwrap(),
                "--policy",
                "policies/default.toml",
                "--workspace",
                "examples/workspace",
                "--max-tokens",
                "48",
                "--temperature",
                "0",
                "--json",
            ][..],
            extra,
            &["Find all Django view functions"][..],
        ]
        .concat();
        verified_records(&warden(&args, dir.path()), dir.path())
    };
    let outputs = |recs: &[warden::audit::Record]| -> Vec<Value> {
        recs.iter()
            .filter(|r| r.kind == "generation")
            .map(|r| r.value["output"].clone())
            .collect()
    };
    let plain = run(&[]);
    assert!(plain[0].value["model"]["sampling"]
        .get("speculative")
        .is_none());
    let gguf = model.join("model-q8_0.gguf");
    for extra in [
        vec!["--speculative", "lookup"],
        vec!["--draft-model", gguf.to_str().unwrap()],
    ] {
        let recs = run(&extra);
        // The same greedy answer, whatever drafted it.
        assert_eq!(outputs(&recs), outputs(&plain), "{extra:?}");
        let start = &recs[0].value["model"];
        let drafted: u64 = recs
            .iter()
            .filter(|r| r.kind == "generation")
            .map(|r| r.value["timings"]["drafted_tokens"].as_u64().unwrap_or(0))
            .sum();
        if extra[0] == "--draft-model" {
            assert_eq!(start["sampling"]["speculative"], "draft");
            assert_eq!(start["draft_model"]["path"], gguf.to_str().unwrap());
            assert_eq!(
                start["draft_model"]["files"][0]["sha256"]
                    .as_str()
                    .unwrap()
                    .len(),
                64
            );
            assert!(drafted > 0);
        } else {
            assert_eq!(start["sampling"]["speculative"], "lookup");
            assert!(start.get("draft_model").is_none());
        }
    }
}

#[test]
fn inside_a_turn_each_generation_prefills_only_the_new_tokens() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use warden::session::{ForcedBackend, Session, SessionOptions};
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    let loaded = warden::model::LoadedModel::load(
        model.to_str().unwrap(),
        &candle_core::Device::Cpu,
        None,
        false,
    )
    .unwrap();
    let outputs = vec![
        "<think>\nSearch for views.\n</think>\n\n<tool_call>\n{\"name\": \"search_code\", \"arguments\": {\"pattern\": \"def \\\\w+\\\\(request\"}}\n</tool_call>".to_string(),
        "<think>\nRead the file.\n</think>\n\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"blog/views.py\", \"start_line\": 1, \"end_line\": 5}}\n</tool_call>".to_string(),
        "<think>\nDone.\n</think>\n\nThree views.".to_string(),
        "<think>\nAgain.\n</think>\n\nStill three.".to_string(),
    ];
    let backend = ForcedBackend::new(loaded, outputs).unwrap();
    let policy = warden::policy::Policy::load(
        &repo().join("policies/default.toml"),
        &repo().join("examples/workspace"),
    )
    .unwrap();
    let host = warden::sandbox::ToolHost::load(&policy).unwrap();
    let log = warden::audit::AuditLog::create(&dir.path().join("l.jsonl"), "s", None).unwrap();
    let opts = SessionOptions {
        max_tokens: 64,
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
    let r = s
        .turn("Find all Django view functions", &mut |_| {})
        .unwrap();
    assert_eq!(r.steps, 3);
    let (reused0, new0) = r.prefill[0];
    assert_eq!(reused0, 0);
    assert!(new0 > 300, "the first prompt has the tools: {new0}");
    for (i, (reused, new)) in r.prefill.iter().enumerate().skip(1) {
        // Everything up to the previous output is reused; what is prefilled
        // is the tool result (and the template's few tokens around it).
        let result_tokens = r.calls[i - 1].result.len() / 2 + 40;
        assert!(*reused > new0, "step {i}: reused only {reused}");
        assert!(
            *new < result_tokens,
            "step {i}: prefilled {new} tokens for a result of {} bytes",
            r.calls[i - 1].result.len()
        );
    }
    // The next user turn reuses what the template leaves unchanged: it
    // drops the last turn's reasoning, so everything up to the first
    // assistant message (the first prompt but its last few tokens).
    let r2 = s.turn("And again?", &mut |_| {}).unwrap();
    assert!(
        r2.prefill[0].0 + 5 >= new0,
        "turn 2 reused {} of {new0}",
        r2.prefill[0].0
    );
    s.end("test").unwrap();
}

#[test]
fn kill_9_leaves_a_log_that_verifies_up_to_its_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ws")).unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "[tools.t]\nplugin = {:?}\ntimeout_ms = 60000\n",
            warden_artifacts::TEST_TOOL
        ),
    )
    .unwrap();
    let outputs = dir.path().join("o.jsonl");
    let call = "<tool_call>\n{\"name\": \"t\", \"arguments\": {\"action\": \"sleep\", \"ms\": 30000}}\n</tool_call>";
    std::fs::write(&outputs, format!("{}\n", json!({"output": call}))).unwrap();
    let log = dir.path().join("killed.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "run",
            "--model",
            &format!("replay:{}", outputs.display()),
            "--policy",
        ])
        .arg(&policy)
        .args(["--workspace"])
        .arg(dir.path().join("ws"))
        .args(["--log"])
        .arg(&log)
        .arg("sleep please")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 2 {
        assert!(
            start.elapsed().as_secs() < 60,
            "the session never logged its generation"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let v = warden::audit::verify(&log, None).unwrap();
    let p = v.problem.expect("a killed session has not ended");
    assert_eq!(p.kind, warden::audit::ProblemKind::NotEnded);
    assert_eq!(v.records, 2);
    let o = warden(&["audit", "verify", log.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("not ended"), "{}", out(&o));
}

#[test]
fn a_log_or_state_dir_reaching_a_mount_through_a_missing_directory_and_dotdot_is_refused() {
    let x = tempfile::tempdir().unwrap();
    let ws = x.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("a.txt"), "a").unwrap();
    let outputs = x.path().join("o.jsonl");
    std::fs::write(&outputs, "{\"output\": \"hi\"}\n").unwrap();
    let model = format!("replay:{}", outputs.display());
    let run = |log: &str, state: &Path| {
        warden(
            &[
                "run",
                "--model",
                &model,
                "--policy",
                "policies/readwrite.toml",
                "--workspace",
                ws.to_str().unwrap(),
                "--log",
                log,
                "hello",
            ],
            state,
        )
    };
    // `nope` does not exist; once created, `nope/..` is `x`, so the log
    // would land in the rw mount.
    let sneaky = x.path().join("nope/../ws/log.jsonl");
    let state = tempfile::tempdir().unwrap();
    let o = run(sneaky.to_str().unwrap(), state.path());
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("out of reach of the tools"), "{}", err(&o));
    assert!(!ws.join("log.jsonl").exists());
    // The same for the state directory.
    let fine_log = state.path().join("fine.jsonl");
    let sneaky_state = x.path().join("nope2/../ws/state");
    let o = run(fine_log.to_str().unwrap(), &sneaky_state);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("warden's state directory"), "{}", err(&o));
    assert!(!ws.join("state").exists());
}

#[test]
fn malformed_and_unknown_calls_spend_the_budget_and_end_the_turn() {
    let state = tempfile::tempdir().unwrap();
    let outputs = state.path().join("o.jsonl");
    // Thousands of bad calls in one generation (policies/default.toml
    // allows 32 calls a session).
    let mut text = String::new();
    for i in 0..5000 {
        if i % 2 == 0 {
            text.push_str("<tool_call>not json</tool_call>");
        } else {
            text.push_str("<tool_call>{\"name\": \"no_such_tool\", \"arguments\": {}}</tool_call>");
        }
    }
    std::fs::write(
        &outputs,
        format!(
            "{}\n{}\n",
            json!({"output": text}),
            json!({"output": "done"})
        ),
    )
    .unwrap();
    let model = format!("replay:{}", outputs.display());
    let o = warden(
        &[
            "run",
            "--model",
            &model,
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--json",
            "go",
        ],
        state.path(),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(v["end_reason"], "max_tool_calls", "{}", err(&o));
    let records = verified_records(&o, state.path());
    let calls: Vec<_> = records.iter().filter(|r| r.kind == "tool_call").collect();
    // 32 attempts, then the one refused for the budget; the rest not logged.
    assert_eq!(calls.len(), 33);
    assert_eq!(calls[0].value["outcome"], "malformed");
    assert_eq!(calls[1].value["outcome"], "unknown-tool");
    assert_eq!(calls[32].value["decision"], "denied");
    assert!(calls[32].value["rule"]
        .as_str()
        .unwrap()
        .contains("max_tool_calls"));
}

#[test]
fn a_template_that_runs_for_ever_or_fills_memory_is_refused_by_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    let cfg_path = model.join("tokenizer_config.json");
    let set_template = |t: &str| {
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["chat_template"] = json!(t);
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    };
    let conv = dir.path().join("c.json");
    std::fs::write(
        &conv,
        r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
    )
    .unwrap();
    // Runs for ever without fuel; exhausts memory without a bound.
    for (t, says) in [
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
            "ran out of fuel",
        ),
        (
            "{% set ns = namespace(x='x') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
            "MiB at once",
        ),
    ] {
        set_template(t);
        let o = warden(
            &["prompt", "--model", model.to_str().unwrap(), "--conversation", conv.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        assert!(err(&o).contains(says), "{}", err(&o));
        assert!(err(&o).contains(&cfg_path.display().to_string()), "{}", err(&o));
    }
}

#[test]
fn a_slow_template_stops_run_at_ctrl_c_with_exit_130() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    let cfg_path = model.join("tokenizer_config.json");
    let set_template = |t: &str| {
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["chat_template"] = json!(t);
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    };
    // Slow but within fuel: each step replaces a mebibyte. `run` installs
    // its Ctrl-C handler, so the render must watch for it.
    set_template("{% set s = 'x' * 1000000 %}{% for a in range(100000) %}{% for b in range(100000) %}{% set y = s.replace('x', 'yy') %}{% endfor %}{% endfor %}");
    let log = dir.path().join("run.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--log",
            log.to_str().unwrap(),
            "hello",
        ])
        .current_dir(repo())
        .env("WARDEN_STATE_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the session has started (its handler is installed before
    // it writes session_start), then press Ctrl-C.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("session_start"))
        && start.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sent = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("run did not stop at Ctrl-C during a render");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let o = child.wait_with_output().unwrap();
    // An interrupted turn: exit 130, as a shell reports SIGINT, and a log
    // that ends properly.
    assert_eq!(status.code(), Some(130), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("interrupted (Ctrl-C)"), "{}", out(&o));
    assert!(
        warden(&["audit", "verify", log.to_str().unwrap()], dir.path())
            .status
            .success()
    );
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("demo.jsonl");
    let commands: [&[&str]; 3] = [
        &[
            "tools",
            "list",
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
        ],
        &["demo", "--log", log.to_str().unwrap()],
        &["audit", "show", "examples/sessions/demo.jsonl"],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .current_dir(repo())
            .env("WARDEN_STATE_DIR", state.path())
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first line (as `| head -0`).
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let e = err(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
        assert!(
            !e.contains("panicked") && !e.contains("Broken pipe"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn a_run_that_cannot_start_leaves_no_log() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A model directory without a tokenizer, and a model that does not exist.
    let model = tiny(&dir.path().join("m"));
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let missing = dir.path().join("nope");
    for m in [model.to_str().unwrap(), missing.to_str().unwrap()] {
        let o = warden(
            &[
                "run",
                "--model",
                m,
                "--policy",
                "policies/default.toml",
                "--workspace",
                "examples/workspace",
                "hello",
            ],
            state.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        let sessions = state.path().join("sessions");
        let logs = std::fs::read_dir(&sessions).map(|d| d.count()).unwrap_or(0);
        assert_eq!(logs, 0, "{m}: a log was left in {}", sessions.display());
    }
}

#[test]
fn replays_are_summarised_as_replays_and_report_labels_fit() {
    let state = tempfile::tempdir().unwrap();
    let o = warden(
        &[
            "demo",
            "--log",
            state.path().join("d.jsonl").to_str().unwrap(),
        ],
        state.path(),
    );
    let text = out(&o);
    assert!(
        text.contains("replayed: the model's outputs were recorded"),
        "{text}"
    );
    assert!(
        text.contains("framework overhead: ") && text.contains(" ms per turn"),
        "{text}"
    );
    assert!(
        !text.contains("% of turn time") && !text.contains("tok/s"),
        "{text}"
    );
    // Two logs in one report: the label column fits the longest label.
    let a = state.path().join("a-session-with-a-long-name.jsonl");
    std::fs::copy(repo().join("examples/sessions/demo.jsonl"), &a).unwrap();
    let page = state.path().join("r.html");
    let o = warden(
        &[
            "audit",
            "report",
            "examples/sessions/demo.jsonl",
            a.to_str().unwrap(),
            "--out",
            page.to_str().unwrap(),
        ],
        state.path(),
    );
    assert!(o.status.success(), "{}", err(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("replayed (recorded model outputs"), "{html}");
    let label = "a-session-with-a-long-name #1";
    assert!(html.contains(label), "{html}");
    let first_rect = html.split("<rect x=\"").nth(1).unwrap();
    let x: f64 = first_rect.split('"').next().unwrap().parse().unwrap();
    assert!(x >= label.chars().count() as f64 * 7.0, "bars start at {x}");
}

#[test]
fn chat_answers_a_mistyped_command_instead_of_sending_it() {
    let state = tempfile::tempdir().unwrap();
    let outputs = state.path().join("o.jsonl");
    std::fs::write(&outputs, "{\"output\": \"hello there\"}\n").unwrap();
    let log = state.path().join("chat.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "chat",
            "--model",
            &format!("replay:{}", outputs.display()),
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--log",
            log.to_str().unwrap(),
        ])
        .current_dir(repo())
        .env("WARDEN_STATE_DIR", state.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/rest\nhi\n/quit\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("unknown command /rest"), "{text}");
    assert!(text.contains("hello there"), "{text}");
    // Only "hi" reached the model.
    let turns: Vec<_> = warden::audit::read_records(&log)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "turn")
        .collect();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].value["user"], "hi");
}

#[test]
fn audit_reads_the_logs_of_a_directory() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    for n in ["a.jsonl", "b.jsonl"] {
        std::fs::copy(repo().join("examples/sessions/demo.jsonl"), dir.join(n)).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a log").unwrap();
    // A replay's outputs file is JSON Lines but not a session log: skipped.
    std::fs::copy(
        repo().join("examples/sessions/demo-outputs.jsonl"),
        dir.join("outputs.jsonl"),
    )
    .unwrap();
    let d = format!("{}/", dir.display());
    let text = ok_out(&warden(&["audit", "summary", &d], state.path()));
    assert!(text.starts_with("2 session(s)"), "{text}");
    let text = ok_out(&warden(&["audit", "verify", &d], state.path()));
    assert!(
        text.contains("a.jsonl: ok") && text.contains("b.jsonl: ok"),
        "{text}"
    );
}

fn ok_out(o: &Output) -> String {
    assert!(o.status.success(), "{}", err(o));
    out(o)
}

#[test]
fn replay_runs_in_a_scratch_copy_unless_in_place() {
    let state = tempfile::tempdir().unwrap();
    // A recording whose model writes a file, made under a writing policy in
    // a workspace of its own.
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("keep.txt"), "original\n").unwrap();
    let outputs = state.path().join("o.jsonl");
    let write = "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"keep.txt\", \"content\": \"replayed\", \"mode\": \"overwrite\"}}\n</tool_call>";
    std::fs::write(
        &outputs,
        format!(
            "{}\n{}\n",
            json!({"output": write}),
            json!({"output": "done"})
        ),
    )
    .unwrap();
    let rec = state.path().join("rec.jsonl");
    let run = |args: &[&str]| warden(args, state.path());
    let model = format!("replay:{}", outputs.display());
    let wsp = ws.path().to_str().unwrap();
    let o = run(&[
        "run",
        "--model",
        &model,
        "--policy",
        "policies/readwrite.toml",
        "--workspace",
        wsp,
        "--log",
        rec.to_str().unwrap(),
        "write it",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    std::fs::write(ws.path().join("keep.txt"), "original\n").unwrap();
    // By default the replay writes into a copy, and says where.
    let o = run(&[
        "replay",
        rec.to_str().unwrap(),
        "--policy",
        "policies/readwrite.toml",
        "--workspace",
        wsp,
        "--json",
    ]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["scratch"], true);
    let copy = PathBuf::from(v["workspace"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(copy.join("keep.txt")).unwrap(),
        "replayed"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("keep.txt")).unwrap(),
        "original\n"
    );
    let o = run(&[
        "replay",
        rec.to_str().unwrap(),
        "--policy",
        "policies/readwrite.toml",
        "--workspace",
        wsp,
    ]);
    assert!(
        out(&o).contains("replaying in a scratch copy of"),
        "{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("keep.txt")).unwrap(),
        "original\n"
    );
    // --in-place runs against the workspace itself.
    let o = run(&[
        "replay",
        rec.to_str().unwrap(),
        "--policy",
        "policies/readwrite.toml",
        "--workspace",
        wsp,
        "--in-place",
    ]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("keep.txt")).unwrap(),
        "replayed"
    );
}

/// `chat` on a real terminal (tmux): the up arrow brings the last line
/// back, as in a shell.
#[test]
fn chat_on_a_terminal_has_line_editing_and_history() {
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is not installed: .ci/run installs it (apt-get install tmux)"
    );
    let state = tempfile::tempdir().unwrap();
    let outputs = state.path().join("o.jsonl");
    std::fs::write(&outputs, "{\"output\": \"one\"}\n{\"output\": \"two\"}\n").unwrap();
    let log = state.path().join("chat.jsonl");
    let socket = state.path().join("tmux.sock");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let cmd = format!(
        "cd {} && WARDEN_STATE_DIR={} {} chat --model replay:{} --policy policies/default.toml --workspace examples/workspace --log {}",
        repo().display(),
        state.path().display(),
        env!("CARGO_BIN_EXE_warden"),
        outputs.display(),
        log.display()
    );
    let o = tmux(&["new-session", "-d", "-x", "160", "-y", "40", &cmd]);
    assert!(o.status.success(), "{}", err(&o));
    let turns = || {
        warden::audit::read_records(&log)
            .map(|r| {
                r.into_iter()
                    .filter(|r| r.kind == "turn")
                    .map(|r| r.value["user"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let wait_for = |n: usize| {
        let start = std::time::Instant::now();
        while turns().len() < n {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "{:?}\n{}",
                turns(),
                out(&tmux(&["capture-pane", "-p"]))
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // Wait for the prompt, type a line, then recall it with the up arrow.
    let start = std::time::Instant::now();
    // (capture-pane drops the prompt's trailing space)
    while !out(&tmux(&["capture-pane", "-p"]))
        .lines()
        .any(|l| l.trim_end() == ">")
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no prompt"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tmux(&["send-keys", "hello there", "Enter"]);
    wait_for(1);
    tmux(&["send-keys", "Up", "Enter"]);
    wait_for(2);
    tmux(&["send-keys", "/quit", "Enter"]);
    let _ = tmux(&["kill-server"]);
    assert_eq!(turns(), ["hello there", "hello there"]);
}

#[test]
fn demo_outside_the_repository_says_where_it_reads_from() {
    let elsewhere = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "demo",
            "--log",
            elsewhere.path().join("d.jsonl").to_str().unwrap(),
        ])
        .current_dir(elsewhere.path())
        .env("WARDEN_STATE_DIR", elsewhere.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let where_from = repo().join("examples").canonicalize().unwrap();
    assert!(
        err(&o).contains(&format!(
            "no examples/ under the current directory; reading the demo's files from {}",
            where_from.display()
        )),
        "{}",
        err(&o)
    );
}

#[test]
fn audit_summary_reads_records_as_the_schema_types() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("odd.jsonl");
    let text = std::fs::read_to_string(repo().join("examples/sessions/demo.jsonl")).unwrap();
    // A generation whose timings are not the schema's.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"type\":\"generation\""))
        .unwrap();
    let mut v: Value = serde_json::from_str(&lines[at]).unwrap();
    v["timings"] = json!("fast");
    lines[at] = v.to_string();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let o = warden(&["audit", "summary", log.to_str().unwrap()], state.path());
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(e.contains(&format!("odd.jsonl:{}", at + 1)), "{e}");
    assert!(e.contains("does not fit the log's schema"), "{e}");
}

#[test]
fn tool_choice_holds_a_random_model_to_a_valid_call_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir.path().join("m"));
    let log = dir.path().join("s.jsonl");
    let o = warden(
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--log",
            log.to_str().unwrap(),
            "--think",
            "off",
            "--max-tokens",
            "100",
            "--tool-choice",
            "list_dir",
            "--json",
            "Look around.",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(
        warden(&["audit", "verify", log.to_str().unwrap()], dir.path())
            .status
            .success()
    );
    let records: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let start = &records[0];
    assert_eq!(start["tool_choice"], "list_dir", "{start}");
    let first = records
        .iter()
        .find(|r| r["type"] == "generation")
        .expect("a generation");
    let calls = first["calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "{first}");
    assert_eq!(calls[0]["name"], "list_dir", "{first}");
    eprintln!("{}", first["output"]);
    assert!(
        calls[0].get("malformed").is_none_or(Value::is_null),
        "{first}"
    );
    // The call ran (or was refused by policy) as any call is.
    assert!(
        records.iter().any(|r| r["type"] == "tool_call"),
        "{records:?}"
    );
    // A name that is not a tool is refused before anything runs.
    let o = warden(
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--log",
            dir.path().join("t.jsonl").to_str().unwrap(),
            "--tool-choice",
            "launch_rockets",
            "hi",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("launch_rockets"), "{}", err(&o));
}
