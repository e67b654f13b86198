//! `warden eval`: BFCL scoring on BFCL's own files (perfect outputs score
//! 100 %, each perturbation fails for its reason), suites scored on replay
//! variants with known answers, gates, outputs, and a short run of a real
//! (tiny, synthetic) model.

mod common;

use common::{repo, warden};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use warden::chat::{self, CallFormat};
use warden::eval::bfcl::{self, BfclCase, Category, Reason};
use warden::eval::Observed;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const FILES: [&str; 6] = [
    "BFCL_v4_simple_python.json",
    "BFCL_v4_multiple.json",
    "BFCL_v4_parallel.json",
    "BFCL_v4_parallel_multiple.json",
    "BFCL_v4_live_simple.json",
    "BFCL_v4_irrelevance.json",
];

fn cases(file: &str) -> Vec<BfclCase> {
    bfcl::load(&repo().join("runtime/tests/bfcl").join(file), None).unwrap()
}

/// The calls in a model output, as the scorer sees them.
fn observe(text: &str) -> Vec<Observed> {
    chat::parse(text, CallFormat::Hermes, &())
        .calls
        .into_iter()
        .map(|c| match c.call {
            Ok(call) => Observed {
                tool: Some(call.name),
                arguments: call.arguments,
                parsed: true,
                schema_valid: true,
                raw: String::new(),
            },
            Err(m) => Observed {
                tool: m.name,
                arguments: Map::new(),
                parsed: false,
                schema_valid: false,
                raw: c.raw,
            },
        })
        .collect()
}

/// Whether BFCL's answer gives a required parameter no acceptable value
/// at all (an empty list): no output can pass such a case, in BFCL either.
fn unsatisfiable(c: &BfclCase) -> bool {
    c.ground_truth
        .iter()
        .flatten()
        .filter_map(|gt| gt.as_object()?.iter().next())
        .any(|(f, params)| {
            let func = c.functions.iter().find(|x| x["name"] == f.as_str());
            params.as_object().into_iter().flatten().any(|(k, vals)| {
                vals.as_array().is_some_and(Vec::is_empty)
                    && func.is_some_and(|x| {
                        x["parameters"]["required"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|q| q == k))
                    })
            })
        })
}

#[test]
fn outputs_built_from_the_ground_truth_score_100_percent_on_every_bfcl_case() {
    let (mut total, mut broken) = (0, vec![]);
    for file in FILES {
        let cs = cases(file);
        assert!(!cs.is_empty(), "{file}");
        for c in &cs {
            let s = bfcl::score(c, &observe(&bfcl::perfect_output(c)));
            total += 1;
            if unsatisfiable(c) {
                assert!(!s.passed, "{}", c.id);
                broken.push(c.id.clone());
                continue;
            }
            assert!(s.passed, "{}: {:?} {}", c.id, s.reason, s.detail);
        }
    }
    assert_eq!(total, 400 + 200 + 200 + 200 + 258 + 240);
    // BFCL's data has a few answers no output can meet.
    assert!(broken.len() <= 3, "{broken:?}");
}

/// The answer's calls as JSON objects `{name, arguments}`.
fn perfect_calls(c: &BfclCase) -> Vec<Value> {
    observe(&bfcl::perfect_output(c))
        .into_iter()
        .map(|o| json!({"name": o.tool, "arguments": o.arguments}))
        .collect()
}

fn render(calls: &[Value]) -> String {
    calls
        .iter()
        .map(|c| format!("<tool_call>\n{c}\n</tool_call>"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn reason(c: &BfclCase, calls: &[Value]) -> Option<Reason> {
    bfcl::score(c, &observe(&render(calls))).reason
}

/// The schema of parameter `p` of function `f`.
fn param<'a>(c: &'a BfclCase, f: &str, p: &str) -> &'a Value {
    let func = c.functions.iter().find(|x| x["name"] == f).unwrap();
    &func["parameters"]["properties"][p]
}

#[test]
fn each_perturbation_fails_for_its_reason() {
    let mut checked = [0usize; 7];
    for file in &FILES[..5] {
        for c in cases(file).into_iter().filter(|c| !unsatisfiable(c)) {
            let good = perfect_calls(&c);
            let name = good[0]["name"].as_str().unwrap().to_string();
            let args = good[0]["arguments"].as_object().unwrap().clone();
            let with = |f: &dyn Fn(&mut Map<String, Value>)| {
                let mut calls = good.clone();
                let mut a = args.clone();
                f(&mut a);
                calls[0]["arguments"] = Value::Object(a);
                calls
            };
            // Wrong name.
            let mut calls = good.clone();
            calls[0]["name"] = json!(format!("{name}_other"));
            assert_eq!(reason(&c, &calls), Some(Reason::WrongName), "{}", c.id);
            checked[0] += 1;
            // Missing required.
            let func = c
                .functions
                .iter()
                .find(|x| x["name"] == name.as_str())
                .unwrap();
            if let Some(req) = func["parameters"]["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|r| args.contains_key(*r))
            {
                let calls = with(&|a| {
                    a.remove(req);
                });
                assert_eq!(
                    reason(&c, &calls),
                    Some(Reason::MissingRequired),
                    "{}",
                    c.id
                );
                checked[1] += 1;
            }
            // A parameter outside the schema and the answer.
            let calls = with(&|a| {
                a.insert("warden_extra".into(), json!(1));
            });
            assert_eq!(
                reason(&c, &calls),
                Some(Reason::UnexpectedParameter),
                "{}",
                c.id
            );
            checked[2] += 1;
            // Wrong type, and a value outside the list: on the first
            // integer, string or boolean parameter the output sets.
            for (k, v) in &args {
                let ty = param(&c, &name, k)["type"].as_str().unwrap_or("any");
                let (wrong_type, wrong_value) = match ty {
                    "integer" => (
                        json!(v.to_string()),
                        json!(v.as_i64().unwrap_or(0) + 987_654_321),
                    ),
                    "string" => (json!(12345), json!("warden: not an answer")),
                    "boolean" => (json!("yes"), json!(!v.as_bool().unwrap_or(false))),
                    _ => continue,
                };
                let calls = with(&|a| {
                    a.insert(k.clone(), wrong_type.clone());
                });
                assert_eq!(reason(&c, &calls), Some(Reason::WrongType), "{} {k}", c.id);
                checked[3] += 1;
                let acceptable = c.ground_truth.as_ref().unwrap()[0][&name][k]
                    .as_array()
                    .unwrap()
                    .clone();
                if !(acceptable.contains(&wrong_value) || ty == "boolean" && acceptable.len() > 1) {
                    let calls = with(&|a| {
                        a.insert(k.clone(), wrong_value.clone());
                    });
                    assert_eq!(reason(&c, &calls), Some(Reason::WrongValue), "{} {k}", c.id);
                    checked[4] += 1;
                }
                break;
            }
            // One call too many, one too few.
            let mut more = good.clone();
            more.push(good[0].clone());
            assert_eq!(reason(&c, &more), Some(Reason::WrongCount), "{}", c.id);
            let fewer = &good[..good.len() - 1];
            assert_eq!(reason(&c, fewer), Some(Reason::WrongCount), "{}", c.id);
            checked[5] += 1;
            // Calls matched in any order in parallel categories only.
            if good.len() > 1 {
                let mut rev = good.clone();
                rev.reverse();
                let want = matches!(c.category, Category::Parallel | Category::ParallelMultiple);
                assert_eq!(
                    bfcl::score(&c, &observe(&render(&rev))).passed,
                    want || rev == good,
                    "{}",
                    c.id
                );
                checked[6] += 1;
            }
        }
    }
    // Every perturbation was exercised on many cases.
    assert!(checked.iter().all(|&n| n > 100), "{checked:?}");
}

#[test]
fn irrelevance_passes_only_without_a_call_and_a_malformed_call_never_passes() {
    let cs = cases("BFCL_v4_irrelevance.json");
    let c = &cs[0];
    assert!(bfcl::score(c, &[]).passed);
    let f = c.functions[0]["name"].as_str().unwrap();
    let call = render(&[json!({"name": f, "arguments": {}})]);
    assert_eq!(
        bfcl::score(c, &observe(&call)).reason,
        Some(Reason::IrrelevantCall)
    );
    let simple = &cases("BFCL_v4_simple_python.json")[0];
    let broken = "<tool_call>\n{\"name\": \"calculate_triangle_area\", \"arguments\": {\"base\": 10,\n</tool_call>";
    assert_eq!(
        bfcl::score(simple, &observe(broken)).reason,
        Some(Reason::Malformed)
    );
}

#[test]
fn strings_are_compared_after_bfcl_normalisation_ints_pass_for_floats_bools_never_for_ints() {
    assert_eq!(
        bfcl::normalise("New York, NY"),
        bfcl::normalise("new-york ny")
    );
    assert_eq!(bfcl::normalise("it's"), "it\"s");
    let c: BfclCase = BfclCase {
        id: "simple_x".into(),
        category: Category::Simple,
        messages: vec![],
        functions: vec![
            json!({"name": "f", "parameters": {"type": "dict", "properties": {
            "city": {"type": "string"}, "x": {"type": "float"}, "n": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["city"]}}),
        ],
        ground_truth: Some(vec![
            json!({"f": {"city": ["San Francisco, CA"], "x": [2.0, ""], "n": [3, ""], "tags": [["a b", "c"], ""]}}),
        ]),
    };
    let score = |args: Value| {
        bfcl::score(
            &c,
            &observe(&render(&[json!({"name": "f", "arguments": args})])),
        )
    };
    assert!(score(json!({"city": "san francisco ca"})).passed);
    assert!(
        score(json!({"city": "SanFrancisco,CA", "x": 2})).passed,
        "an int is a float"
    );
    assert_eq!(
        score(json!({"city": "San Francisco, CA", "n": 3.0})).reason,
        Some(Reason::WrongType)
    );
    assert_eq!(
        score(json!({"city": "San Francisco, CA", "n": true})).reason,
        Some(Reason::WrongType)
    );
    assert!(score(json!({"city": "San Francisco, CA", "tags": ["A-B", "c"]})).passed);
    assert_eq!(
        score(json!({"city": "San Francisco, CA", "tags": ["c", "a b"]})).reason,
        Some(Reason::WrongValue),
        "list order matters"
    );
    assert_eq!(
        score(json!({"x": 2.0})).reason,
        Some(Reason::MissingRequired)
    );
}

fn eval(args: &[&str], state: &Path) -> Output {
    warden(
        &[
            &["eval", "--log-dir", state.join("logs").to_str().unwrap()][..],
            args,
        ]
        .concat(),
        state,
    )
}

#[test]
fn replay_variants_with_known_answers_give_the_exact_figures_and_the_gate_fails_the_direct_one() {
    let dir = tempfile::tempdir().unwrap();
    let json_out = dir.path().join("out.json");
    let html_out = dir.path().join("out.html");
    let o = eval(
        &[
            "--suite",
            "examples/evals/code-search.toml",
            "--variant",
            "perfect=replay:examples/evals/code-search.perfect.jsonl",
            "--variant",
            "direct=replay:examples/evals/code-search.direct.jsonl",
            "--json",
            json_out.to_str().unwrap(),
            "--html",
            html_out.to_str().unwrap(),
            "--gate",
            "tool_accuracy>=0.9,no_call_accuracy>=0.9",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = stdout(&o);
    assert!(
        text.contains("gate failed: variant direct has 0.000, needs tool_accuracy>=0.9"),
        "{text}"
    );
    assert!(!text.contains("variant perfect"), "{text}");
    let v: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let m = |i: usize, k: &str| v["variants"][i]["metrics"][k].clone();
    assert_eq!(v["variants"][0]["name"], "perfect");
    for k in [
        "accuracy",
        "tool_accuracy",
        "argument_accuracy",
        "no_call_accuracy",
        "format_validity",
    ] {
        assert_eq!(m(0, k), 1.0, "perfect {k}");
    }
    // 44 cases: 32 due a call, 12 a direct answer.
    assert_eq!(m(1, "cases"), 44);
    assert_eq!(m(1, "tool_accuracy"), 0.0);
    assert_eq!(m(1, "no_call_accuracy"), 1.0);
    assert_eq!(m(1, "accuracy"), 12.0 / 44.0);
    assert_eq!(m(1, "failures"), json!({"direct_answer": 32}));
    let case = &v["variants"][1]["cases"][0];
    assert_eq!(
        (
            case["id"].clone(),
            case["passed"].clone(),
            case["failure"].clone()
        ),
        (json!("django-views"), json!(false), json!("direct_answer"))
    );
    // Each variant's run is an audited session log.
    for i in 0..2 {
        let log = v["variants"][i]["log"].as_str().unwrap();
        assert!(warden(&["audit", "verify", log], dir.path())
            .status
            .success());
    }
    let html = std::fs::read_to_string(&html_out).unwrap();
    assert!(html.contains("<svg") && html.contains("direct_answer") && !html.contains("<script"));
    // The gate's verdict and the per-tool figures, as the terminal shows them.
    assert!(
        html.contains("Gate: <code>tool_accuracy&gt;=0.9,no_call_accuracy&gt;=0.9</code>"),
        "{html}"
    );
    assert!(
        html.contains("class=\"gate-failed\"") && html.contains("<td>direct</td><td>0.000</td>"),
        "{html}"
    );
    assert!(
        html.contains("<h2>Per tool</h2>")
            && html.contains("<td>search_code</td><td>tool_accuracy</td>"),
        "{html}"
    );
    // A gate both pass.
    let o = eval(
        &[
            "--suite",
            "examples/evals/code-search.toml",
            "--variant",
            "perfect=replay:examples/evals/code-search.perfect.jsonl",
            "--gate",
            "accuracy>=1,format_validity>=1",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("gate passed"));
}

/// Writes a suite over the example workspace with `cases`, and a replay.
fn suite(dir: &Path, cases: &str, replay: &[Value]) -> (PathBuf, PathBuf) {
    let s = dir.join("s.toml");
    let ws = repo().join("examples/workspace");
    let policy = repo().join("policies/default.toml");
    std::fs::write(
        &s,
        format!("workspace = {ws:?}\npolicy = {policy:?}\n\n{cases}"),
    )
    .unwrap();
    let r = dir.join("r.jsonl");
    std::fs::write(
        &r,
        replay.iter().map(|v| format!("{v}\n")).collect::<String>(),
    )
    .unwrap();
    (s, r)
}

fn call(name: &str, args: Value) -> String {
    format!(
        "<tool_call>\n{}\n</tool_call>",
        json!({"name": name, "arguments": args})
    )
}

#[test]
fn wrong_arguments_malformed_calls_and_other_failures_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cases = r#"
[[case]]
id = "args"
prompt = "Find PublishedManager"
expect = { tool = "search_code", args = { pattern = { regex = "PublishedManager" }, glob = { one_of = ["*.py", "**/*.py"] } } }

[[case]]
id = "malformed"
prompt = "Find Post"
expect = { tool = "search_code" }

[[case]]
id = "wrong-tool"
prompt = "Read the settings"
expect = { tool = "read_file", args = { path = { regex = "settings" } } }

[[case]]
id = "unexpected"
prompt = "What is REST?"
expect = { no_call = true }

[[case]]
id = "two"
turns = ["Find CommentSerializer", "Now read that file"]
expect = { calls = [{ tool = "search_code" }, { tool = "read_file", args = { path = { exact = "blog/serializers.py" } } }], ordered = true }

[[case]]
id = "missing"
prompt = "Find then read"
expect = { calls = [{ tool = "search_code" }, { tool = "read_file" }] }

[[case]]
id = "no-replay"
prompt = "This case has no recorded outputs"
expect = { no_call = true }
"#;
    let replay = [
        json!({"id": "args", "outputs": [call("search_code", json!({"pattern": "PublishedManager", "glob": "*.txt"})), "done"]}),
        json!({"id": "malformed", "outputs": ["<tool_call>\n{\"name\": \"search_code\", \"arguments\": {\"pattern\": \n</tool_call>", "sorry"]}),
        json!({"id": "wrong-tool", "outputs": [call("list_dir", json!({"path": "mysite"})), "done"]}),
        json!({"id": "unexpected", "outputs": [call("search_code", json!({"pattern": "REST"})), "REST is a style."]}),
        json!({"id": "two", "outputs": [call("search_code", json!({"pattern": "class CommentSerializer"})), "found it", call("read_file", json!({"path": "blog/serializers.py"})), "here"]}),
        json!({"id": "missing", "outputs": [call("search_code", json!({"pattern": "x"})), "done"]}),
    ];
    let (s, r) = suite(dir.path(), cases, &replay);
    let out = dir.path().join("o.json");
    let o = eval(
        &[
            "--suite",
            s.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
            "--json",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let got: Vec<(String, Value)> = v["variants"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["failure"].clone()))
        .collect();
    let want = [
        ("args", json!("bad_arguments")),
        ("malformed", json!("malformed")),
        ("wrong-tool", json!("wrong_tool")),
        ("unexpected", json!("unexpected_call")),
        ("two", Value::Null),
        ("missing", json!("missing_call")),
        ("no-replay", json!("error")),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b)));
    let m = &v["variants"][0]["metrics"];
    // Due a call: args, malformed, wrong-tool, two, missing.
    assert_eq!(m["tool_accuracy"], 2.0 / 5.0, "args and two chose right");
    assert_eq!(m["argument_accuracy"], 1.0 / 5.0);
    assert_eq!(m["no_call_accuracy"], 0.0);
    // 7 calls made, one malformed.
    assert_eq!(m["format_validity"], 6.0 / 7.0);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[
            "--suite",
            "examples/evals/code-search.toml",
            "--variant",
            "x=replay:examples/evals/code-search.perfect.jsonl",
            "--gate",
            "speed>=1",
        ][..],
        &[
            "--suite",
            "examples/evals/code-search.toml",
            "--variant",
            "nonsense",
        ][..],
        &[
            "--suite",
            "examples/evals/missing.toml",
            "--variant",
            "x=replay:y",
        ][..],
        &["--variant", "x=replay:y"][..],
    ] {
        let o = eval(args, dir.path());
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn bfcl_files_run_through_eval_with_replayed_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let q = repo().join("runtime/tests/bfcl/BFCL_v4_parallel_multiple.json");
    let cs = bfcl::load(&q, None).unwrap();
    let replay: String = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Every fifth answers directly.
            let out = if i % 5 == 0 {
                "I would rather not.".to_string()
            } else {
                bfcl::perfect_output(c)
            };
            format!("{}\n", json!({"id": c.id, "outputs": [out]}))
        })
        .collect();
    let r = dir.path().join("r.jsonl");
    std::fs::write(&r, replay).unwrap();
    let out = dir.path().join("o.json");
    let o = eval(
        &[
            "--bfcl",
            q.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
            "--json",
            out.to_str().unwrap(),
            "--gate",
            "accuracy>=0.9",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let m = &v["variants"][0]["metrics"];
    assert_eq!(m["cases"], 200);
    assert_eq!(m["accuracy"], 0.8);
    assert_eq!(m["failures"], json!({"direct_answer": 40}));
    assert!(warden(
        &["audit", "verify", v["variants"][0]["log"].as_str().unwrap()],
        dir.path()
    )
    .status
    .success());
}

/// A tiny random Qwen3 at `m` (seed 5), with a GGUF of `gguf`'s type too.
fn tiny_model(m: &Path, gguf: Option<&str>) -> PathBuf {
    use warden::model::convert::synth::{synth, SynthOptions, SynthShape};
    synth(&SynthOptions {
        shape: SynthShape::Tiny,
        out: m.to_path_buf(),
        dtype: candle_core::DType::F32,
        gguf: gguf.map(|t| warden::model::weights::ggml_type::parse_gguf_type(t).unwrap()),
        gguf_only: false,
        seed: 5,
        tie_word_embeddings: None,
    })
    .unwrap();
    m.to_path_buf()
}

#[test]
fn a_short_eval_of_a_real_tiny_model_runs_end_to_end_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(&dir.path().join("m"), Some("q8_0"));
    let out = dir.path().join("o.json");
    let base = format!("base={}", m.display());
    let quant = format!("q4={}+quant=q4_0+think=off", m.display());
    let o = eval(
        &[
            "--suite",
            "examples/evals/code-search.toml",
            "--limit",
            "2",
            "--max-tokens",
            "8",
            "--variant",
            &base,
            "--variant",
            &quant,
            "--json",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for i in 0..2 {
        let m = &v["variants"][i]["metrics"];
        assert_eq!(m["cases"], 2);
        assert!(m["ttft_p50_ms"].as_f64().unwrap() > 0.0, "{m}");
        let log = v["variants"][i]["log"].as_str().unwrap();
        assert!(warden(&["audit", "verify", log], dir.path())
            .status
            .success());
        let recs = warden::audit::read_records(Path::new(log)).unwrap();
        assert!(recs.iter().filter(|r| r.kind == "turn").count() >= 2);
        // The second case starts with the system-and-tools prefix the
        // first left in the KV cache.
        let first_of_case2 = recs
            .iter()
            .find(|r| r.kind == "generation" && r.value["turn"] == 2 && r.value["step"] == 1)
            .unwrap();
        let reused = first_of_case2.value["timings"]["reused_tokens"]
            .as_u64()
            .unwrap();
        assert!(reused > 300, "reused {reused}");
    }
}

#[test]
fn a_log_dir_inside_a_tools_mount_is_refused() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let policy = repo().join("policies/default.toml");
    let s = dir.path().join("s.toml");
    std::fs::write(
        &s,
        format!("workspace = {ws:?}\npolicy = {policy:?}\n\n[[case]]\nid = \"a\"\nprompt = \"hi\"\nexpect = {{ no_call = true }}\n"),
    )
    .unwrap();
    let r = dir.path().join("r.jsonl");
    std::fs::write(&r, "{\"id\": \"a\", \"outputs\": [\"hello\"]}\n").unwrap();
    let logs = ws.join("logs");
    let o = warden(
        &[
            "eval",
            "--suite",
            s.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
            "--log-dir",
            logs.to_str().unwrap(),
        ],
        state.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("lies inside the mount") && e.contains("--log-dir"),
        "{e}"
    );
    assert!(
        !logs.exists() || std::fs::read_dir(&logs).unwrap().next().is_none(),
        "a log was written"
    );
    // Through a missing directory and `..`: the same place, the same refusal.
    let sneaky = dir.path().join("nope/../ws/logs2");
    let o = warden(
        &[
            "eval",
            "--suite",
            s.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
            "--log-dir",
            sneaky.to_str().unwrap(),
        ],
        state.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("lies inside the mount"), "{e}");
    assert!(
        !ws.join("logs2").exists(),
        "a log dir was made in the mount"
    );
}

#[test]
fn escape_codes_in_a_suites_tool_names_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let evil = "x\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let cases = format!(
        "[[case]]\nid = \"a\"\nprompt = \"hi\"\nexpect = {{ tool = {} }}\n",
        json!(evil)
    );
    let replay = [json!({"id": "a", "outputs": [call(evil, json!({})), "done"]})];
    let (s, r) = suite(dir.path(), &cases, &replay);
    let o = eval(
        &[
            "--suite",
            s.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
        ],
        dir.path(),
    );
    let (out, errs) = (stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(out.contains("tool_accuracy[x\\x1b]0;pwned\\x07"), "{out}");
    assert!(
        !out.contains('\u{1b}') && !errs.contains('\u{1b}'),
        "{out}{errs}"
    );
    assert!(!out.contains('\u{7}'));
}

#[test]
fn a_suites_policy_is_announced_and_policy_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    // A suite that names a read-write policy (its workspace outside the
    // state directory).
    let outside = tempfile::tempdir().unwrap();
    let ws = outside.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("a.txt"), "a").unwrap();
    let s = dir.path().join("s.toml");
    std::fs::write(
        &s,
        format!(
            "workspace = {ws:?}\npolicy = {:?}\n\n[[case]]\nid = \"w\"\nprompt = \"write\"\nexpect = {{ tool = \"write_file\" }}\n",
            repo().join("policies/readwrite.toml")
        ),
    )
    .unwrap();
    let r = dir.path().join("r.jsonl");
    let write = call(
        "write_file",
        json!({"path": "a.txt", "content": "overwritten", "mode": "overwrite"}),
    );
    std::fs::write(
        &r,
        format!("{}\n", json!({"id": "w", "outputs": [write, "done"]})),
    )
    .unwrap();
    let variant = format!("r=replay:{}", r.display());
    let o = eval(
        &["--suite", s.to_str().unwrap(), "--variant", &variant],
        dir.path(),
    );
    let errs = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        errs.contains("policies/readwrite.toml (named by the suite; --policy overrides it)"),
        "{errs}"
    );
    assert!(
        errs.contains("read-write: ") && errs.contains("for write_file"),
        "{errs}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).unwrap(),
        "overwritten"
    );
    // Under --policy the suite's grants do not apply: write_file is not
    // enabled, and the file stays as it is.
    std::fs::write(ws.join("a.txt"), "a").unwrap();
    let o = eval(
        &[
            "--suite",
            s.to_str().unwrap(),
            "--variant",
            &variant,
            "--policy",
            "policies/default.toml",
        ],
        dir.path(),
    );
    let errs = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        errs.contains("policies/default.toml (from --policy)"),
        "{errs}"
    );
    assert!(errs.contains("no read-write mounts"), "{errs}");
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "a");
}

#[test]
fn no_call_accuracy_counts_refraining_and_answer_accuracy_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = String::new();
    for i in 0..4 {
        cases.push_str(&format!(
            "[[case]]\nid = \"q{i}\"\nprompt = \"What is {i}?\"\nexpect = {{ no_call = true, answer = \"number {i}\" }}\n\n"
        ));
    }
    // Never calls a tool; one answer misses its regex.
    let replay: Vec<Value> = (0..4)
        .map(|i| {
            let text = if i == 3 {
                "no idea".to_string()
            } else {
                format!("It is number {i}.")
            };
            json!({"id": format!("q{i}"), "outputs": [text]})
        })
        .collect();
    let (s, r) = suite(dir.path(), &cases, &replay);
    let out = dir.path().join("o.json");
    let o = eval(
        &[
            "--suite",
            s.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
            "--json",
            out.to_str().unwrap(),
            "--gate",
            "no_call_accuracy>=1,answer_accuracy>=0.75",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let m = &v["variants"][0]["metrics"];
    assert_eq!(m["no_call_accuracy"], 1.0);
    assert_eq!(m["answer_accuracy"], 0.75);
    assert_eq!(m["failures"], json!({"wrong_answer": 1}));
    assert!(stdout(&o).contains("answer_accuracy"));
}

/// A BFCL function with a `password` argument: the eval's log redacts it as
/// a session's log does, and validates against the shipped schema.
#[test]
fn bfcl_logs_are_redacted_and_validate_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("BFCL_v4_simple_python.json");
    let question = json!({
        "id": "simple_python_0",
        "question": [[{"role": "user", "content": "Log in as ann with the password from the vault."}]],
        "function": [{"name": "login", "description": "Logs in.", "parameters": {"type": "dict",
            "properties": {"user": {"type": "string"}, "password": {"type": "string"}},
            "required": ["user", "password"]}}]
    });
    std::fs::write(&q, format!("{question}\n")).unwrap();
    let answers = dir.path().join("answers.json");
    std::fs::write(
        &answers,
        format!("{}\n", json!({"id": "simple_python_0", "ground_truth": [{"login": {"user": ["ann"], "password": ["hunter2-secret"]}}]})),
    )
    .unwrap();
    let out = call(
        "login",
        json!({"user": "ann", "password": "hunter2-secret"}),
    );
    let r = dir.path().join("r.jsonl");
    std::fs::write(
        &r,
        format!("{}\n", json!({"id": "simple_python_0", "outputs": [out]})),
    )
    .unwrap();
    let json_out = dir.path().join("o.json");
    let o = eval(
        &[
            "--bfcl",
            q.to_str().unwrap(),
            "--answers",
            answers.to_str().unwrap(),
            "--variant",
            &format!("r=replay:{}", r.display()),
            "--json",
            json_out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    assert_eq!(v["variants"][0]["metrics"]["accuracy"], 1.0);
    let log = PathBuf::from(v["variants"][0]["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        warden(&["audit", "verify", log.to_str().unwrap()], dir.path())
            .status
            .success()
    );
    common::assert_log_matches_schema(&log);
}

/// The second example workspace (an Express shop API no training data comes
/// from) and its suite hold together: every expected call of the perfect
/// recording runs against real files there and scores 1.0.
#[test]
fn the_shop_suite_scores_its_perfect_recording_fully() {
    let dir = tempfile::tempdir().unwrap();
    let json_out = dir.path().join("out.json");
    let o = eval(
        &[
            "--suite",
            "examples/evals/shop-search.toml",
            "--variant",
            "perfect=replay:examples/evals/shop-search.perfect.jsonl",
            "--json",
            json_out.to_str().unwrap(),
            "--gate",
            "accuracy>=1.0",
        ],
        dir.path(),
    );
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let m = &v["variants"][0]["metrics"];
    assert_eq!(m["cases"], 18, "{m}");
    assert_eq!(m["accuracy"], 1.0, "{m}");
    assert_eq!(m["no_call_accuracy"], 1.0, "{m}");
    // The calls ran on the shop's files: the log holds their results.
    let log = v["variants"][0]["log"].as_str().unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("\"outcome\":\"ok\""), "{text}");
    assert!(!text.contains("\"outcome\":\"not_found\""), "{text}");
}

#[test]
fn a_constrained_variant_is_measured_beside_the_free_one_and_logged_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(&dir.path().join("m"), None);
    let out = dir.path().join("o.json");
    let free = format!("free={}+think=off", m.display());
    let held = format!("held={}+think=off+tool-choice=required", m.display());
    let o = eval(
        &[
            "--suite",
            "examples/evals/code-search.toml",
            "--limit",
            "2",
            "--max-tokens",
            "200",
            "--variant",
            &free,
            "--variant",
            &held,
            "--json",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let tools = ["search_code", "read_file", "list_dir"];
    for (i, name) in ["free", "held"].iter().enumerate() {
        let run = &v["variants"][i];
        assert_eq!(run["name"], *name);
        let recs = warden::audit::read_records(Path::new(run["log"].as_str().unwrap())).unwrap();
        let start = &recs[0].value;
        let firsts: Vec<&Value> = recs
            .iter()
            .filter(|r| r.kind == "generation" && r.value["step"] == 1)
            .map(|r| &r.value)
            .collect();
        assert_eq!(firsts.len(), 2);
        if *name == "held" {
            assert_eq!(start["tool_choice"], "required", "{start}");
            // Random weights, held to a call: each case's first generation
            // calls an offered tool, well formed unless max_tokens cut it
            // (a random model may write a long string).
            for g in firsts {
                let out = g["output"].as_str().unwrap();
                assert!(
                    tools.iter().any(|t| out.starts_with(&format!(
                        "<tool_call>\n{{\"name\": \"{t}\", \"arguments\": {{"
                    ))),
                    "{g}"
                );
                let c = &g["calls"][0];
                let whole = c.get("malformed").is_none_or(Value::is_null);
                assert!(whole || g["finish_reason"] == "length", "{g}");
            }
        } else {
            assert!(start.get("tool_choice").is_none(), "{start}");
        }
    }
}
