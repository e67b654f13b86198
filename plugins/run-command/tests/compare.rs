//! The comparison table (`runtime/tests/run_command/cases.txt`) run natively
//! against bash and the GNU tools and ripgrep, for quick iteration; the
//! runtime's `run_command` test runs the same table through the component.

use std::path::{Path, PathBuf};
use std::process::Command;

fn table_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/tests/run_command")
}

fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
}

#[test]
fn commands_match_the_real_tools() {
    table("cases.txt", "setup.sh", 80);
}

#[test]
fn git_matches_git() {
    table("git-cases.txt", "setup-git.sh", 20);
}

fn table(cases: &str, setup: &str, at_least: usize) {
    for tool in ["bash", "grep", "find", "sed", "rg", "sort", "git"] {
        if !have(tool) {
            panic!("{tool} is not installed; .ci/run installs it (apt-get install ripgrep)");
        }
    }
    let dir = std::env::temp_dir().join(format!("rc-compare-{}-{setup}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let st = Command::new("bash").arg(table_dir().join(setup)).arg(&dir).status().unwrap();
    assert!(st.success());
    let cases = std::fs::read_to_string(table_dir().join(cases)).unwrap();
    let only = std::env::var("CASE").ok();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in cases.lines() {
        let Some((flags, cmd)) = line.split_once(" :: ") else { continue };
        if line.starts_with('#') {
            continue;
        }
        if only.as_deref().is_some_and(|o| !cmd.contains(o)) {
            continue;
        }
        n += 1;
        let real = Command::new("bash")
            .arg("-c")
            .arg(cmd)
            .current_dir(&dir)
            .env("LC_ALL", "C.UTF-8")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GREP_OPTIONS")
            .env_remove("RIPGREP_CONFIG_PATH")
            .output()
            .unwrap();
        let ours = run_command::run(cmd, dir.to_str().unwrap(), vec![dir.to_str().unwrap().to_string()], Default::default());
        let norm = |b: &[u8]| -> String {
            let s = String::from_utf8_lossy(b).into_owned();
            if flags.contains("sort") {
                let mut l: Vec<&str> = s.lines().collect();
                l.sort();
                l.join("\n")
            } else {
                s
            }
        };
        let (ro, re, rs) = (norm(&real.stdout), String::from_utf8_lossy(&real.stderr).into_owned(), real.status.code().unwrap_or(-1));
        let (oo, oe, os) = (norm(&ours.stdout), String::from_utf8_lossy(&ours.stderr).into_owned(), ours.status);
        let stderr_ok = flags.contains("out") || re == oe;
        if ro != oo || rs != os || !stderr_ok {
            failures.push(format!(
                "=== {cmd}\n--- real (status {rs})\n{ro}\n{re}--- run_command (status {os})\n{oo}\n{oe}"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(n >= at_least || only.is_some(), "only {n} cases");
    assert!(failures.is_empty(), "{} of {n} differ:\n{}", failures.len(), failures.join("\n"));
}
