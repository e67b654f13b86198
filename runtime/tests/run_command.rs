//! `run_command` through the real component: the comparison table against
//! the GNU tools and ripgrep, escapes refused, the timeout and the output
//! cap holding for a whole pipeline, unknown commands answered as a shell
//! answers them.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use warden::sandbox::{ErrorKind, ToolHost};

fn table_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run_command")
}

fn args(command: &str) -> String {
    serde_json::json!({ "command": command }).to_string()
}

/// The policy: the workspace (built by setup.sh) read-only at /workspace,
/// a scratch directory read-write at /scratch.
fn fixture(limits: &str) -> (Fixture, ToolHost) {
    fixture_with("setup.sh", limits)
}

fn fixture_with(setup: &str, limits: &str) -> (Fixture, ToolHost) {
    let f = Fixture::with(
        &format!(
            "[limits]\n{limits}\n[tools.run_command]\nplugin = \"run-command\"\n\
             files = [{{ path = \"{{workspace}}\", mount = \"/workspace\", mode = \"ro\" }},\n\
                      {{ path = \"scratch\", mount = \"/scratch\", mode = \"rw\" }}]\n\
             env = [\"WARDEN_RC_TEST_VAR\"]\n"
        ),
        |root| {
            std::fs::create_dir(root.join("scratch")).unwrap();
            let st = Command::new("bash")
                .arg(table_dir().join(setup))
                .arg(root.join("ws"))
                .status()
                .expect("bash runs setup.sh");
            assert!(st.success());
        },
    );
    let host = f.host();
    (f, host)
}

/// The text run_command returns for (stdout, stderr, status).
fn render(stdout: &str, stderr: &str, status: i32) -> String {
    let mut t = stdout.to_string();
    if !stderr.is_empty() {
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(stderr);
    }
    if status != 0 {
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(&format!("[exit status: {status}]\n"));
    }
    t
}

fn sorted(s: &str) -> String {
    let mut l: Vec<&str> = s.lines().collect();
    l.sort();
    l.join("\n")
}

#[test]
fn command_lines_match_gnu_tools_and_ripgrep() {
    table("cases.txt", "setup.sh", 80);
}

#[test]
fn git_matches_git() {
    table("git-cases.txt", "setup-git.sh", 20);
}

/// Runs every line of `cases` through the component and through bash in a
/// workspace built by `setup`, and compares.
fn table(cases: &str, setup: &str, at_least: usize) {
    for tool in ["bash", "grep", "find", "sed", "sort", "rg", "git"] {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is not installed: .ci/run installs it (apt-get install ripgrep)"
        );
    }
    let (f, host) = fixture_with(
        setup,
        "max_output_bytes = 1048576\ntimeout_ms = 20000\nmemory_mib = 256",
    );
    let ws = f.ws();
    let cases = std::fs::read_to_string(table_dir().join(cases)).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.starts_with('#')) {
        let Some((flags, cmd)) = line.split_once(" :: ") else {
            continue;
        };
        n += 1;
        let real = Command::new("bash")
            .arg("-c")
            .arg(cmd)
            .current_dir(&ws)
            .env("LC_ALL", "C.UTF-8")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        let status = real.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&real.stdout);
        let stderr = String::from_utf8_lossy(&real.stderr);
        let ours = match call(&host, "run_command", &args(cmd)) {
            Ok(o) => o.output,
            Err(e) => format!("<{}: {}>", e.kind, e.message),
        };
        let ok = if flags.contains("out") {
            ours.starts_with(stdout.as_ref())
                && ours.ends_with(&format!("[exit status: {status}]\n"))
        } else {
            let want = render(&stdout, &stderr, status);
            if flags.contains("sort") {
                sorted(&want) == sorted(&ours)
            } else {
                want == ours
            }
        };
        if !ok {
            failures.push(format!(
                "=== {cmd}\n--- real tools\n{}--- run_command\n{ours}",
                render(&stdout, &stderr, status)
            ));
        }
    }
    assert!(n >= at_least, "the table has only {n} command lines");
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_readme_command_prints_what_gnu_grep_prints() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cmd = r#"grep -rn "def .*(request" --include="*.py" ."#;
    let ours = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["tools", "call", "run_command", "--args", &args(cmd)])
        .arg("--policy")
        .arg(repo.join("policies/coding-agent.toml"))
        .arg("--workspace")
        .arg(repo.join("examples/workspace"))
        .env("WARDEN_CACHE_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let real = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(repo.join("examples/workspace"))
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(!real.stdout.is_empty());
    assert_eq!(
        sorted(&String::from_utf8_lossy(&ours.stdout)),
        sorted(&String::from_utf8_lossy(&real.stdout))
    );
}

#[test]
fn escapes_are_refused_as_every_tool_refuses_them() {
    let (f, host) = fixture("");
    std::os::unix::fs::symlink("/etc/passwd", f.ws().join("leak")).unwrap();
    std::os::unix::fs::symlink("/etc", f.ws().join("etc_link")).unwrap();
    for (cmd, says) in [
        ("cd .. && ls", "cd: ..: Permission denied"),
        ("cd /etc", "cd: /etc: Permission denied"),
        ("cat /etc/passwd", "cat: /etc/passwd: Permission denied"),
        ("cat ../../../../etc/passwd", "Permission denied"),
        (
            "grep root /etc/passwd",
            "grep: /etc/passwd: Permission denied",
        ),
        ("ls /", "ls: cannot access '/': Permission denied"),
        ("find / -name passwd", "find: ‘/’: Permission denied"),
        ("echo x > notes_copy.txt", "sh: notes_copy.txt:"),
        ("sed -i 's/a/b/' notes.txt", "sed: couldn't edit notes.txt"),
        ("cat leak", "cat: leak: Permission denied"),
        ("cat etc_link/passwd", "Permission denied"),
        ("grep -R root etc_link", "Permission denied"),
        (
            "sort -o /scratch/../workspace/x notes.txt",
            "Permission denied",
        ),
        (
            "echo $(cat /etc/passwd)",
            "cat: /etc/passwd: Permission denied",
        ),
    ] {
        let msg = expect_err(call(&host, "run_command", &args(cmd)), ErrorKind::Denied);
        assert!(msg.contains(says), "{cmd}: {msg}");
        assert!(!msg.contains("root:x:0"), "{cmd} leaked /etc/passwd: {msg}");
    }
    // Nothing was written to the read-only workspace.
    assert!(!f.ws().join("notes_copy.txt").exists());
    assert_eq!(
        std::fs::read_to_string(f.ws().join("notes.txt"))
            .unwrap()
            .lines()
            .next(),
        Some("banana 3")
    );
    // The read-write mount takes redirections.
    let out = expect_ok(call(
        &host,
        "run_command",
        &args("grep -c def app/views.py > /scratch/n.txt && echo more >> /scratch/n.txt && cat /scratch/n.txt"),
    ));
    assert_eq!(out, "4\nmore\n");
    assert_eq!(
        std::fs::read_to_string(f.root().join("scratch/n.txt")).unwrap(),
        "4\nmore\n"
    );
}

#[test]
fn unknown_commands_get_status_127_and_the_list_of_commands() {
    let (_f, host) = fixture("");
    let out = expect_ok(call(&host, "run_command", &args("python manage.py test")));
    assert!(out.starts_with("sh: python: command not found\n"), "{out}");
    assert!(
        out.contains("run_command: available commands: ")
            && out.contains(" grep ")
            && out.contains(" sed "),
        "{out}"
    );
    assert!(out.ends_with("[exit status: 127]\n"), "{out}");
    let out = expect_ok(call(
        &host,
        "run_command",
        &args("/usr/local/bin/node x.js"),
    ));
    assert!(out.ends_with("[exit status: 126]\n"), "{out}");
    let out = expect_ok(call(&host, "run_command", &args("git push origin main")));
    assert!(
        out.contains("read-only") && out.ends_with("[exit status: 1]\n"),
        "{out}"
    );
    let out = expect_ok(call(&host, "run_command", &args("git log")));
    assert!(
        out.starts_with("fatal: not a git repository") && out.ends_with("[exit status: 128]\n"),
        "{out}"
    );
    let out = expect_ok(call(&host, "run_command", &args("(cd app && ls)")));
    assert!(
        out.contains("subshell") && out.ends_with("[exit status: 2]\n"),
        "{out}"
    );
    let out = expect_ok(call(
        &host,
        "run_command",
        &args("for f in *.py; do wc -l $f; done"),
    ));
    assert!(
        out.contains("xargs or find -exec") && out.ends_with("[exit status: 2]\n"),
        "{out}"
    );
}

#[test]
fn variables_are_only_those_the_policy_passes() {
    std::env::set_var("WARDEN_RC_TEST_VAR", "passed");
    std::env::set_var("WARDEN_RC_SECRET", "hidden");
    let (_f, host) = fixture("");
    let out = expect_ok(call(
        &host,
        "run_command",
        &args("echo \"[$WARDEN_RC_TEST_VAR]\" \"[$WARDEN_RC_SECRET]\" \"[$HOME]\" \"[$PATH]\""),
    ));
    assert_eq!(out, "[passed] [] [] []\n");
}

#[test]
fn the_cwd_argument_moves_within_the_mounts() {
    let (_f, host) = fixture("");
    let out = expect_ok(call(
        &host,
        "run_command",
        r#"{"command":"pwd && ls","cwd":"app/utils"}"#,
    ));
    assert_eq!(out, "/workspace/app/utils\nhelpers.py\n");
    let msg = expect_err(
        call(&host, "run_command", r#"{"command":"ls","cwd":"../.."}"#),
        ErrorKind::Denied,
    );
    assert!(msg.contains("outside"), "{msg}");
}

#[test]
fn a_pipeline_that_runs_on_stops_at_the_timeout() {
    let (_f, host) = fixture("timeout_ms = 300\nmemory_mib = 256");
    let start = std::time::Instant::now();
    let msg = expect_err(
        call(
            &host,
            "run_command",
            &args("yes | grep y | sed s/y/n/ | grep -c n"),
        ),
        ErrorKind::Timeout,
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}: {msg}",
        start.elapsed()
    );
}

#[test]
fn a_hundred_mebibytes_of_output_is_cut_at_the_output_cap() {
    let (_f, host) = fixture("max_output_bytes = 65536\nmemory_mib = 256\ntimeout_ms = 20000");
    let out = call(
        &host,
        "run_command",
        &args("yes 0123456789abcdef | head -c 104857600"),
    )
    .expect("the call ends");
    assert!(out.truncated, "not marked truncated");
    assert!(
        out.output.len() < 65536 + 512,
        "{} bytes came back",
        out.output.len()
    );
    assert!(out
        .output
        .starts_with("0123456789abcdef\n0123456789abcdef\n"));
    assert!(
        out.output.contains("[warden: output truncated"),
        "{}",
        &out.output[out.output.len() - 300..]
    );
}

#[test]
fn the_memory_limit_holds_for_the_whole_pipeline() {
    let (_f, host) = fixture("memory_mib = 24\ntimeout_ms = 20000");
    // Each pipe may hold 32 MiB: more than this call's 24 MiB.
    let msg = expect_err(
        call(&host, "run_command", &args("yes | sort | head -n 1")),
        ErrorKind::Memory,
    );
    assert!(msg.contains("memory"), "{msg}");
}

#[test]
fn git_with_alternates_outside_the_mounts_is_a_refusal() {
    let (f, host) = fixture_with("setup-git.sh", "");
    // An object store outside every mount: absolute, and relative with `..`.
    let elsewhere = f.root().join("elsewhere/objects");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let alternates = f.ws().join(".git/objects/info/alternates");
    std::fs::create_dir_all(alternates.parent().unwrap()).unwrap();
    for line in [
        elsewhere.display().to_string(),
        "../../../elsewhere/objects".to_string(),
    ] {
        std::fs::write(&alternates, format!("{line}\n")).unwrap();
        for cmd in [
            "git log --oneline",
            "git show HEAD:README.md",
            "git ls-files",
        ] {
            let msg = expect_err(call(&host, "run_command", &args(cmd)), ErrorKind::Denied);
            assert!(msg.contains("objects/info/alternates"), "{cmd}: {msg}");
            assert!(msg.contains("Permission denied"), "{cmd}: {msg}");
        }
    }
    // Within the mount it is an ordinary repository again.
    std::fs::write(&alternates, "# none\n").unwrap();
    let out = expect_ok(call(&host, "run_command", &args("git log --oneline")));
    assert!(out.contains("Initial commit"), "{out}");
}

#[test]
fn git_in_a_locally_cloned_repository_says_why_it_cannot_read() {
    let (f, host) = fixture_with("setup-git.sh", "");
    // `git clone /local/path` hard-links the object files: a repository
    // outside the mounts, cloned into the workspace.
    let orig = f.root().join("orig");
    let st = Command::new("cp")
        .arg("-r")
        .arg(f.ws())
        .arg(&orig)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("git")
        .args(["clone", "-q"])
        .arg(&orig)
        .arg(f.ws().join("clone"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(st.success());
    let call_in = |cmd: &str| {
        let a = serde_json::json!({"command": cmd, "cwd": "clone"}).to_string();
        call(&host, "run_command", &a)
    };
    let msg = expect_err(call_in("git log --oneline"), ErrorKind::Denied);
    assert!(msg.contains("hard-links its object files"), "{msg}");
    assert!(msg.contains("follow_hard_links"), "{msg}");
    // The original repository still works.
    let out = expect_ok(call(&host, "run_command", &args("git log --oneline")));
    assert!(out.contains("Initial commit"), "{out}");
}
