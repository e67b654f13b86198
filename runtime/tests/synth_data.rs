//! `warden synth-data`: training conversations with real tool results that
//! never leak what is held out.

use serde_json::Value;
use std::path::Path;
use warden::train::synth_data::{synth_data, SynthDataOptions};

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '/' || c == '.'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches('.').to_string())
        .collect()
}

#[test]
fn conversations_carry_real_results_and_never_leak_held_out_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("train.jsonl");
    let opts = SynthDataOptions {
        suite: repo().join("examples/evals/code-search.toml"),
        out: out.clone(),
        n: 120,
        seed: 3,
        holdout: 0.3,
        direct_fraction: 0.25,
        tree: Some(dir.path().join("tree")),
        hold_out_suites: vec![repo().join("examples/evals/seed-tools.toml")],
        copy_drills: 40,
    };
    let tree = dir.path().join("tree");
    let report = synth_data(&opts).unwrap();
    assert_eq!(report.conversations, 120);
    assert_eq!(report.copy_drills, 40);
    assert!(
        report.generated_packages > 10,
        "{}",
        report.generated_packages
    );
    // The suite's workspace is copied whole into the training workspace.
    assert!(tree.join("blog/serializers.py").is_file());
    assert!(
        report.direct > 10 && report.direct < 60,
        "{}",
        report.direct
    );
    let held: Vec<String> = report.held_out_names.values().flatten().cloned().collect();
    // The suite's own names are held out, and those of the other suite.
    for n in [
        "UserSerializer",
        "PublishedManager",
        "post_detail",
        "PostAdmin",
        "get_queryset",
    ] {
        assert!(held.contains(&n.to_string()), "{n} not held out");
    }
    let suite = std::fs::read_to_string(repo().join("examples/evals/code-search.toml")).unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Held-out phrasings as patterns: placeholders match any name.
    let held_phrasings: Vec<regex::Regex> = report
        .held_out_phrasings
        .iter()
        .map(|p| {
            let re = regex::Regex::new(r"\{\w+\}").unwrap();
            let parts: Vec<String> = re.split(p).map(regex::escape).collect();
            regex::Regex::new(&format!("^{}$", parts.join(r"[\w./]+"))).unwrap()
        })
        .collect();
    assert!(!held_phrasings.is_empty());
    let (mut calls, mut searches, mut invented) = (0, 0, 0);
    for c in &lines {
        let m = c["messages"].as_array().unwrap();
        let question = m[0]["content"].as_str().unwrap();
        assert!(
            !suite.contains(&format!("prompt = {}", Value::from(question))),
            "{question}"
        );
        let mut asked = words(question);
        if let Some(call) = m[1]["tool_calls"].as_array() {
            calls += 1;
            asked.extend(words(&call[0]["function"]["arguments"].to_string()));
            // The tool message is what the sandboxed tool really returned.
            assert_eq!(m[2]["role"], "tool");
            let result = m[2]["content"].as_str().unwrap();
            let answer = m[3]["content"].as_str().unwrap();
            let tool = call[0]["function"]["name"].as_str().unwrap();
            if result.starts_with("no matches") || result.starts_with("error:") {
                // A name that is nowhere: the answer says so.
                invented += 1;
                assert!(answer.contains("in the workspace"), "{answer}");
                if tool != "search_code" {
                    let path = call[0]["function"]["arguments"]["path"].as_str().unwrap();
                    assert!(!tree.join(path).exists(), "{path}");
                }
            } else if tool == "search_code" {
                searches += 1;
                let first = result.lines().next().unwrap();
                let file = first.split(':').next().unwrap();
                assert!(tree.join(file).is_file(), "{first}");
                assert!(answer.contains(file), "{answer}");
            } else if tool == "read_file" {
                let path = call[0]["function"]["arguments"]["path"].as_str().unwrap();
                let text = std::fs::read_to_string(tree.join(path)).unwrap();
                // The answer gives the file's real length.
                let lines = text.lines().count();
                assert!(
                    answer.contains(&format!(" {lines} lines")),
                    "{answer} ({lines})"
                );
            }
        }
        if m.len() == 2 {
            // No topic held out is asked about.
            for t in &report.held_out_topics {
                let key = t.trim_start_matches("a ").trim_start_matches("an ");
                assert!(!question.contains(key), "held-out topic {t} in {question}");
            }
        }
        for h in &held {
            assert!(
                !asked.iter().any(|w| w == h || w.split('/').any(|p| p == h)),
                "{h} leaked into {question}"
            );
        }
        for p in &held_phrasings {
            assert!(
                !p.is_match(question),
                "held-out phrasing {p} trained: {question}"
            );
        }
    }
    assert!(
        calls > 60 && searches > 20 && invented > 5,
        "{calls} {searches} {invented}"
    );
    // The copy drills come after the conversations: no tools, and the
    // answer repeats the names the question gives (the loop above checked
    // that none is held out).
    assert_eq!(lines.len(), 160);
    let mut counts = std::collections::BTreeSet::new();
    for c in &lines[120..] {
        assert!(c.get("tools").is_none_or(Value::is_null), "{c}");
        let m = c["messages"].as_array().unwrap();
        assert_eq!(m.len(), 2, "{c}");
        let (q, a) = (
            m[0]["content"].as_str().unwrap(),
            m[1]["content"].as_str().unwrap(),
        );
        let names = a
            .strip_prefix("You said: ")
            .or_else(|| a.strip_prefix('`')?.strip_suffix('`'))
            .or_else(|| a.strip_prefix('"')?.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{a}"));
        assert!(q.contains(&format!(" {names}")), "{q} / {a}");
        counts.insert(names.len());
    }
    assert!(counts.len() > 10, "drills of few lengths: {counts:?}");
    assert!(!report.held_out_topics.is_empty());
    // The same seed writes the same file.
    let again = dir.path().join("again.jsonl");
    synth_data(&SynthDataOptions {
        out: again.clone(),
        tree: None,
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    // Without drills: the same conversations, nothing after them.
    let plain = dir.path().join("plain.jsonl");
    synth_data(&SynthDataOptions {
        out: plain.clone(),
        tree: None,
        copy_drills: 0,
        ..opts
    })
    .unwrap();
    let plain = std::fs::read_to_string(&plain).unwrap();
    let all = std::fs::read_to_string(&out).unwrap();
    assert_eq!(plain.lines().count(), 120);
    assert!(all.starts_with(&plain));
}

/// The parts of a text's identifiers, lower-cased: `PornManager` and
/// `porn_shit.py` give `porn`, `manager`, `shit`, `py`.
fn word_parts(text: &str) -> std::collections::BTreeSet<String> {
    let mut parts = std::collections::BTreeSet::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        let boundary = !c.is_ascii_alphabetic() || (prev_lower && c.is_ascii_uppercase());
        if boundary && !cur.is_empty() {
            parts.insert(std::mem::take(&mut cur));
        }
        if c.is_ascii_alphabetic() {
            cur.push(c.to_ascii_lowercase());
        }
        prev_lower = c.is_ascii_lowercase();
    }
    if !cur.is_empty() {
        parts.insert(cur);
    }
    parts
}

#[test]
fn invented_names_never_use_the_excluded_words() {
    #[derive(serde::Deserialize)]
    struct Invented {
        exclude: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Templates {
        invented: Invented,
    }
    let t: Templates = toml::from_str(warden::train::synth_data::TEMPLATES).unwrap();
    assert!(t.invented.exclude.len() > 20);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("drills.jsonl");
    // Thousands of drills, most names invented from ~8,000 vocabulary words:
    // without the exclusion dozens of excluded words would be drawn.
    synth_data(&SynthDataOptions {
        suite: repo().join("examples/evals/code-search.toml"),
        out: out.clone(),
        n: 0,
        seed: 5,
        holdout: 0.3,
        direct_fraction: 0.25,
        tree: Some(dir.path().join("tree")),
        hold_out_suites: vec![],
        copy_drills: 4000,
    })
    .unwrap();
    let mut text = std::fs::read_to_string(&out).unwrap();
    // The training workspace's generated packages are invented names too.
    for e in walk(&dir.path().join("tree")) {
        text.push('\n');
        text.push_str(&e);
    }
    let parts = word_parts(&text);
    assert!(parts.len() > 1_000, "{}", parts.len());
    let found: Vec<&String> = t
        .invented
        .exclude
        .iter()
        .filter(|w| parts.contains(*w))
        .collect();
    assert!(found.is_empty(), "excluded words used: {found:?}");
}

/// Every path under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn run_command_conversations_for_a_shell_policy_carry_its_real_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shell.jsonl");
    let tree = dir.path().join("tree");
    let report = synth_data(&SynthDataOptions {
        suite: repo().join("examples/evals/seed-tools.toml"),
        out: out.clone(),
        n: 150,
        seed: 5,
        holdout: 0.2,
        direct_fraction: 0.1,
        tree: Some(tree.clone()),
        hold_out_suites: vec![],
        copy_drills: 0,
    })
    .unwrap();
    assert_eq!(report.conversations, 150);
    let (mut commands, mut missing) = (std::collections::BTreeMap::new(), 0);
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let c: Value = serde_json::from_str(line).unwrap();
        // Only the policy's tools are offered: run_command and read_file.
        let offered: Vec<&str> = c["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(offered, ["read_file", "run_command"]);
        let m = c["messages"].as_array().unwrap();
        let Some(call) = m[1]["tool_calls"].as_array() else {
            continue;
        };
        let f = &call[0]["function"];
        if f["name"] != "run_command" {
            continue;
        }
        let command = f["arguments"]["command"].as_str().unwrap();
        let program = command.split_whitespace().next().unwrap().to_string();
        *commands.entry(program).or_insert(0) += 1;
        let result = m[2]["content"].as_str().unwrap();
        let answer = m[3]["content"].as_str().unwrap();
        if result.contains("[exit status: ") {
            missing += 1;
            assert!(
                answer.contains("in the workspace")
                    || answer.contains("Python files")
                    || answer.contains("JavaScript files"),
                "{answer}"
            );
        } else if command.starts_with("grep -rn 'class ") || command.starts_with("grep -rn 'def ") {
            // `./path:line:text`, and the answer names that file.
            let file = result.split(':').next().unwrap();
            assert!(tree.join(file).is_file(), "{result}");
            assert!(answer.contains(file), "{answer}");
        } else if let Some(path) = command.strip_prefix("wc -l ") {
            let lines = std::fs::read_to_string(tree.join(path))
                .unwrap()
                .lines()
                .count();
            assert!(
                answer.contains(&format!("{lines} lines")),
                "{answer} ({lines})"
            );
        }
    }
    for p in ["grep", "wc", "find", "ls"] {
        assert!(commands.contains_key(p), "no {p} command in {commands:?}");
    }
    assert!(missing > 3, "{missing}");
    // A --tree that already holds files is refused, not written into.
    let err = synth_data(&SynthDataOptions {
        suite: repo().join("examples/evals/seed-tools.toml"),
        out: dir.path().join("again.jsonl"),
        n: 1,
        seed: 5,
        holdout: 0.2,
        direct_fraction: 0.1,
        tree: Some(tree.clone()),
        hold_out_suites: vec![],
        copy_drills: 0,
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("is not empty"), "{err:#}");
}

#[test]
fn a_tree_inside_the_workspace_or_around_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A suite over a copy of the example workspace.
    let ws = dir.path().join("ws");
    let st = std::process::Command::new("cp")
        .args([
            "-r",
            repo().join("examples/workspace").to_str().unwrap(),
            ws.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let src = std::fs::read_to_string(repo().join("examples/evals/seed-tools.toml")).unwrap();
    let mut suite: toml::Table = toml::from_str(&src).unwrap();
    suite.insert("workspace".into(), ws.display().to_string().into());
    suite.insert(
        "policy".into(),
        repo()
            .join("policies/coding-agent.toml")
            .display()
            .to_string()
            .into(),
    );
    let suite_file = dir.path().join("s.toml");
    std::fs::write(&suite_file, toml::to_string(&suite).unwrap()).unwrap();
    let files_before = walkdir_count(&ws);
    // Inside the workspace, directly or through a `..` step.
    for tree in [ws.join("train-tree"), ws.join("blog/../x/y")] {
        let err = synth_data(&SynthDataOptions {
            suite: suite_file.clone(),
            out: dir.path().join("d.jsonl"),
            n: 1,
            seed: 5,
            holdout: 0.2,
            direct_fraction: 0.1,
            tree: Some(tree.clone()),
            hold_out_suites: vec![],
            copy_drills: 0,
        })
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("lies inside") && err.contains("outside it"),
            "{err}"
        );
    }
    assert_eq!(
        walkdir_count(&ws),
        files_before,
        "the workspace was written to"
    );
}

fn walkdir_count(p: &std::path::Path) -> usize {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            1 + if e.file_type().unwrap().is_dir() {
                walkdir_count(&e.path())
            } else {
                0
            }
        })
        .sum()
}
