//! The plugin's own bounds, each with a test that fails when it is removed:
//! the pipe cap, the stdout cap, the redirection cap, and the nesting
//! limits of xargs/find -exec and command substitution.

use std::path::PathBuf;

fn scratch(name: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("rc-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let s = dir.to_str().unwrap().to_string();
    (dir, s)
}

fn run(cmd: &str, dir: &str) -> run_command::Outcome {
    run_command::run(cmd, dir, vec![dir.to_string()], Default::default())
}

#[test]
fn a_pipe_holds_at_most_its_cap_and_says_so() {
    let (dir, d) = scratch("pipe");
    let out = run("yes | wc -c", &d);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), run_command::PIPE_CAP.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("filled its pipe") && err.contains("`yes`"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn standard_output_stops_at_its_cap() {
    let (dir, d) = scratch("stdout");
    let out = run("yes", &d);
    assert!(out.cut);
    assert_eq!(out.stdout.len(), run_command::STDOUT_CAP);
    assert!(run_command::render(&out).contains("[run_command: output cut at 4 MiB"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_redirection_writes_at_most_its_cap() {
    let (dir, d) = scratch("redir");
    let out = run("yes | head -c 20000000 > big.txt", &d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was cut there"), "{err}");
    assert_eq!(std::fs::metadata(dir.join("big.txt")).unwrap().len(), 16 << 20);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn commands_running_commands_nest_only_so_deep() {
    let (dir, d) = scratch("nest");
    let out = run("echo x | xargs xargs xargs xargs xargs xargs xargs echo", &d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nested too deeply"), "{err}");
    assert_ne!(out.status, 0);
    let out = run("echo $(echo $(echo $(echo $(echo $(echo deep)))))", &d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nested too deeply"), "{err}");
    // Within the limit, both work.
    assert_eq!(run("echo x | xargs xargs echo", &d).stdout, b"x\n");
    assert_eq!(run("echo $(echo $(echo ok))", &d).stdout, b"ok\n");
    let _ = std::fs::remove_dir_all(dir);
}
