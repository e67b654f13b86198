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
    };
    let report = synth_data(&opts).unwrap();
    assert_eq!(report.conversations, 120);
    assert!(
        report.direct > 10 && report.direct < 60,
        "{}",
        report.direct
    );
    let held: Vec<String> = report.held_out_names.values().flatten().cloned().collect();
    // The suite's own names are held out.
    for n in ["UserSerializer", "PublishedManager", "post_detail"] {
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
            if call[0]["function"]["name"] == "search_code" {
                searches += 1;
                let answer = m[3]["content"].as_str().unwrap();
                if result.starts_with("no matches") {
                    // An invented name: the answer says it is not there.
                    invented += 1;
                    assert!(answer.contains("in the workspace"), "{answer}");
                } else {
                    let first = result.lines().next().unwrap();
                    let file = first.split(':').next().unwrap();
                    assert!(
                        repo().join("examples/workspace").join(file).is_file(),
                        "{first}"
                    );
                    assert!(answer.contains(file), "{answer}");
                }
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
    // The same seed writes the same file.
    let again = dir.path().join("again.jsonl");
    synth_data(&SynthDataOptions {
        out: again.clone(),
        ..opts
    })
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}
