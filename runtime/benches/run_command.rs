//! `run_command "grep -rn 'def ' ."` over a 10,000-file tree, beside GNU
//! grep and ripgrep run natively on the same tree, turn about in one run.
//!
//! `cargo bench -p warden --bench run_command` builds the tree (100
//! directories of 100 Python files, 40 lines each), checks that every
//! engine finds the same lines, and prints the median and best of 7 rounds.
//! The run_command times are whole tool calls as a session makes them
//! (fresh instance, schema and policy checks, the walk and the search in
//! WebAssembly through the host's filesystem gate, the output cap).

use std::process::Command;
use std::time::{Duration, Instant};
use warden::policy::Policy;
use warden::sandbox::ToolHost;

const DIRS: usize = 100;
const FILES: usize = 100;

fn build_tree(ws: &std::path::Path) {
    for d in 0..DIRS {
        let dir = ws.join(format!("pkg{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES {
            let mut text = String::from("import os\nfrom typing import Any\n\n");
            for k in 0..6 {
                text.push_str(&format!(
                    "\ndef handler_{d}_{f}_{k}(request, arg: Any) -> Any:\n    \"\"\"Handle one request.\"\"\"\n    value = os.environ.get(\"X\", arg)\n    return value\n\n"
                ));
            }
            std::fs::write(dir.join(format!("mod{f:03}.py")), text).unwrap();
        }
    }
}

fn native(dir: &std::path::Path, cmd: &str) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    (t.elapsed(), out.stdout)
}

fn sorted_lines(b: &[u8]) -> Vec<String> {
    let mut l: Vec<String> = String::from_utf8_lossy(b)
        .lines()
        .map(String::from)
        .collect();
    l.sort();
    l
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    build_tree(&ws);
    std::fs::write(
        root.path().join("policy.toml"),
        "[limits]\ntimeout_ms = 120000\nmemory_mib = 512\nmax_output_bytes = 16777216\n\
         [tools.run_command]\nplugin = \"run-command\"\n\
         files = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]\n",
    )
    .unwrap();
    let policy = Policy::load(&root.path().join("policy.toml"), &ws).unwrap();
    let host = ToolHost::load(&policy).unwrap();
    let call = |cmd: &str| {
        let args = serde_json::json!({ "command": cmd }).to_string();
        let mut budget = host.budget();
        let t = Instant::now();
        let out = host.call(&mut budget, "run_command", &args).unwrap();
        (t.elapsed(), out.output.into_bytes())
    };
    let have_rg = Command::new("sh")
        .arg("-c")
        .arg("command -v rg")
        .output()
        .is_ok_and(|o| o.status.success());
    type Runner<'a> = Box<dyn Fn() -> (Duration, Vec<u8>) + 'a>;
    let mut engines: Vec<(&str, Runner)> = vec![
        (
            "GNU grep -rn 'def ' . (native)",
            Box::new(|| native(&ws, "grep -rn 'def ' .")),
        ),
        (
            "run_command grep -rn 'def ' .",
            Box::new(|| call("grep -rn 'def ' .")),
        ),
        (
            "run_command rg -n 'def ' .",
            Box::new(|| call("rg -n 'def ' .")),
        ),
    ];
    if have_rg {
        engines.insert(
            1,
            (
                "ripgrep rg -n 'def ' . (native)",
                Box::new(|| native(&ws, "rg -n 'def ' .")),
            ),
        );
    }
    // Same lines from every engine.
    let reference = sorted_lines(&(engines[0].1)().1);
    assert_eq!(reference.len(), DIRS * FILES * 6);
    for (name, run) in &engines {
        let got = sorted_lines(&run().1);
        assert!(
            got == reference,
            "{name} found {} lines, GNU grep {}",
            got.len(),
            reference.len()
        );
    }
    let rounds = 7;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); engines.len()];
    for _ in 0..rounds {
        for (k, (_, run)) in engines.iter().enumerate() {
            times[k].push(run().0);
        }
    }
    println!(
        "{} files, {} matching lines, {rounds} rounds turn about:",
        DIRS * FILES,
        reference.len()
    );
    for (k, (name, _)) in engines.iter().enumerate() {
        times[k].sort();
        println!(
            "  {name:<36} median {:>8.1} ms  best {:>8.1} ms",
            times[k][rounds / 2].as_secs_f64() * 1e3,
            times[k][0].as_secs_f64() * 1e3
        );
    }
}
