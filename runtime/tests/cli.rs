//! The `warden tools` command line, run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("running warden")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const WS: [&str; 4] = [
    "--policy",
    "policies/default.toml",
    "--workspace",
    "examples/workspace",
];

#[test]
fn list_shows_tools_schemas_limits_and_grants() {
    let o = warden(&[&["tools", "list"][..], &WS].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "list_dir",
        "read_file",
        "search_code",
        "timeout 2000 ms",
        "/workspace ->",
        "(ro)",
        "\"required\":[\"pattern\"]",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("write_file"), "default policy is read-only");
    // No tool of the default policy has hosts: no request limit is shown.
    assert!(!out.contains("http requests"), "{out}");
    // Where warden keeps its own files, which no mount may reach.
    assert!(
        out.contains("warden's own files") && out.contains("compiled-component cache: "),
        "{out}"
    );

    let o = warden(&[&["tools", "list", "--json"][..], &WS].concat());
    let tools: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list_dir", "read_file", "search_code"]);
    assert_eq!(tools[1]["limits"]["timeout_ms"], 2000);
    assert_eq!(tools[2]["files"][0]["mode"], "ro");
}

#[test]
fn call_search_code_on_the_example_workspace() {
    let o = warden(
        &[
            &[
                "tools",
                "call",
                "search_code",
                "--args",
                r#"{"pattern":"class \\w+\\(models\\.Model\\)"}"#,
            ][..],
            &WS,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "blog/models.py:18: class Tag(models.Model):\nblog/models.py:26: class Post(models.Model):\nblog/models.py:60: class Comment(models.Model):\n"
    );
    let o = warden(
        &[
            &[
                "tools",
                "call",
                "read_file",
                "--json",
                "--args",
                r#"{"path":"blog/urls.py","end_line":1}"#,
            ][..],
            &WS,
        ]
        .concat(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["output"], "     1\tfrom django.urls import path\n");
    assert_eq!(v["truncated"], false);
    assert!(v["elapsed_us"].as_u64().unwrap() > 0);
}

#[test]
fn failures_exit_1_with_one_error_line() {
    let o = warden(
        &[
            &[
                "tools",
                "call",
                "read_file",
                "--args",
                r#"{"path":"../../etc/passwd"}"#,
            ][..],
            &WS,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("error: denied: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let o = warden(
        &[
            &["tools", "call", "write_file", "--json", "--args", "{}"][..],
            &WS,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "unknown-tool");

    let o = warden(
        &[
            &["tools", "call", "read_file", "--args", "{\"path\":1}"][..],
            &WS,
        ]
        .concat(),
    );
    assert!(
        stderr(&o).starts_with("error: invalid-arguments: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_policy_is_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[limits]\ntimeout_ms = 10\n\n[tools.read_file]\nplugin = \"read-file\"\ntimeout = 5\n",
    )
    .unwrap();
    let o = warden(&["tools", "list", "--policy", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "error: policy: {}:6:1: unknown field `timeout`",
            p.display()
        )),
        "{err}"
    );
    let o = warden(&["tools", "list", "--policy", "/nonexistent/policy.toml"]);
    assert!(
        stderr(&o).contains("cannot read policy file /nonexistent/policy.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn locked_policy_has_no_tools() {
    let o = warden(&[
        "tools",
        "list",
        "--policy",
        "policies/locked.toml",
        "--json",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "[]");
    let o = warden(&[
        "tools",
        "call",
        "read_file",
        "--args",
        "{\"path\":\"README.md\"}",
        "--policy",
        "policies/locked.toml",
    ]);
    assert!(
        stderr(&o).starts_with("error: unknown-tool: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn readwrite_policy_writes_into_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().to_str().unwrap();
    let args = r#"{"path":"hello.txt","content":"hi\n","mode":"create"}"#;
    let o = warden(&[
        "tools",
        "call",
        "write_file",
        "--args",
        args,
        "--policy",
        "policies/readwrite.toml",
        "--workspace",
        ws,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hello.txt")).unwrap(),
        "hi\n"
    );
}

#[test]
fn inspect_prints_spec_hash_and_imports() {
    let o = warden(&["tools", "inspect", warden_artifacts::TEST_TOOL]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("fits:        warden:tool/tool@0.1.0")
            && out.contains("sha256:")
            && out.contains("wasi:filesystem/"),
        "{out}"
    );
    let o = warden(&["tools", "inspect", "Cargo.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a WebAssembly file"),
        "{}",
        stderr(&o)
    );
}

/// `warden tools new` scaffolds a crate that builds for wasm32-wasip2 and
/// passes `inspect` unchanged, and can be called through a policy.
#[test]
fn scaffolded_tool_builds_inspects_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("greet");
    let o = warden(&["tools", "new", "greet", "--dir", krate.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cargo build --release --target wasm32-wasip2"));
    // After the `cd` it prints, the inspect path is relative to the crate;
    // the policy's plugin path is absolute.
    assert!(
        stdout(&o).contains("\n  warden tools inspect target/wasm32-wasip2/release/greet.wasm\n"),
        "{}",
        stdout(&o)
    );
    let abs = krate
        .canonicalize()
        .unwrap()
        .join("target/wasm32-wasip2/release/greet.wasm");
    assert!(
        stdout(&o).contains(&format!("plugin = {:?}", abs.display().to_string())),
        "{}",
        stdout(&o)
    );

    // Share a target directory across runs so the dependencies build once.
    let target = repo().join("target/scaffold-test");
    let build = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&krate)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", stderr(&build));
    let wasm = target.join("wasm32-wasip2/release/greet.wasm");

    let o = warden(&["tools", "inspect", wasm.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["spec"]["plugin_name"], "greet");

    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, format!("[tools.greet]\nplugin = {:?}\n", wasm)).unwrap();
    let p = policy.to_str().unwrap();
    let o = warden(&[
        "tools",
        "call",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
        "--policy",
        p,
    ]);
    assert_eq!(stdout(&o), "Hello, Ada!\n", "{}", stderr(&o));
    let o = warden(&["tools", "call", "greet", "--args", "{}", "--policy", p]);
    assert!(
        stderr(&o).starts_with("error: invalid-arguments: "),
        "{}",
        stderr(&o)
    );

    // Refuses to overwrite, and refuses bad names.
    let o = warden(&["tools", "new", "greet", "--dir", krate.to_str().unwrap()]);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = warden(&["tools", "new", "Bad Name"]);
    assert!(
        stderr(&o).contains("not a usable tool name"),
        "{}",
        stderr(&o)
    );
}

/// Tool output and error messages reach a terminal; control characters in
/// them are escaped, no line of an error can pass for an error of its own,
/// and `--json` stays exact.
#[test]
fn nothing_printed_for_a_person_can_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let nasty = "\x1b]0;pwned\x07\x1b[2Jred\u{202e}txt\n";
    std::fs::write(ws.join("nasty.txt"), nasty).unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        "[tools.read_file]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]\n",
    )
    .unwrap();
    let run = |args: &str, json: bool| {
        let mut a = vec!["tools", "call", "read_file", "--args", args, "--policy"];
        a.push(policy.to_str().unwrap());
        a.extend(["--workspace", ws.to_str().unwrap()]);
        if json {
            a.push("--json");
        }
        warden(&a)
    };
    let o = run(r#"{"path":"nasty.txt"}"#, false);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains('\x1b') && !out.contains('\x07') && !out.contains('\u{202e}'),
        "{out:?}"
    );
    assert!(
        out.contains("\\x1b]0;pwned\\x07") && out.contains("\\u{202e}"),
        "{out:?}"
    );
    let o = run(r#"{"path":"nasty.txt"}"#, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["output"], format!("     1\t{}\n", nasty.trim_end()));

    // A path with a newline and a fake second error line in it.
    let o = run(r#"{"path":"x\nerror: all good\u001b[0m"}"#, false);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    // A message of several lines prints as a list: every line after the
    // first is indented, so none can pass for an error line of its own.
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("error: "), "{err:?}");
    assert!(lines[1..].iter().all(|l| l.starts_with("  ")), "{err:?}");
    assert_eq!(err.matches("\nerror: ").count(), 0, "{err:?}");
    assert!(err.contains("error: all good\\x1b[0m"), "{err:?}");
}

/// Every relative link in the README and `docs/` resolves (to a file, and to
/// a heading where it names one), and every page of `docs/` is linked from
/// the README.
#[test]
fn every_link_in_the_readme_and_docs_resolves() {
    let root = repo();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs.iter().cloned());
    let link = regex::Regex::new(r"\[[^\]]*\]\(([^)\s]+)\)").unwrap();
    let slug = |h: &str| -> String {
        h.trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    };
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for cap in link.captures_iter(&text) {
            let target = &cap[1];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            assert!(
                path.exists(),
                "{}: {target} does not resolve",
                page.display()
            );
            if !anchor.is_empty() {
                let headings: Vec<String> = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(slug)
                    .collect();
                assert!(
                    headings.iter().any(|h| h == anchor),
                    "{}: {target}: no such heading",
                    page.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} links");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for d in &docs {
        let name = format!("docs/{}", d.file_name().unwrap().to_string_lossy());
        assert!(
            readme.contains(&format!("]({name})")),
            "{name} is not linked from the README"
        );
    }
}

/// No module of `runtime/src` imports a module that imports it back, at any
/// level (top-level modules, files within a module): the layout stays a
/// tree of dependencies, as `docs/architecture.md` draws it.
#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = repo().join("runtime/src");
    // Module path of every file.
    let mut files: BTreeMap<Vec<String>, PathBuf> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap().with_extension("");
                let mut m: Vec<String> = rel
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                if m.last().is_some_and(|l| l == "mod") {
                    m.pop();
                }
                if m == ["lib"] || m == ["main"] {
                    m.clear();
                }
                files.insert(m, p);
            }
        }
    }
    let path_re = regex::Regex::new(r"\b((?:crate|super|self)(?:::\w+)+)").unwrap();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, p) in &files {
        // Unit tests may reach anywhere.
        if m.last().is_some_and(|l| l == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for cap in path_re.captures_iter(text) {
            let parts: Vec<&str> = cap[1].split("::").collect();
            let (mut base, mut rest) = (m.clone(), &parts[..]);
            match rest[0] {
                "crate" => {
                    base.clear();
                    rest = &rest[1..];
                }
                "self" => rest = &rest[1..],
                _ => {
                    while rest.first() == Some(&"super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                }
            }
            let target = (0..=rest.len())
                .rev()
                .map(|i| {
                    [
                        base.clone(),
                        rest[..i].iter().map(|s| s.to_string()).collect(),
                    ]
                    .concat()
                })
                .find(|t| files.contains_key(t));
            if let Some(t) = target {
                if !t.starts_with(m) && !m.starts_with(&t) {
                    edges.entry(m.clone()).or_default().insert(t);
                }
            }
        }
    }
    // Between siblings at every depth: the ancestors of both ends just
    // below their common parent.
    let mut sib: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (a, bs) in &edges {
        for b in bs {
            let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            if common < a.len() && common < b.len() {
                sib.entry(a[..=common].to_vec())
                    .or_default()
                    .insert(b[..=common].to_vec());
            }
        }
    }
    // A cycle among siblings is a path from a node back to itself.
    for start in sib.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Vec<String>> = sib[start].iter().cloned().collect();
        while let Some(n) = todo.pop() {
            assert!(
                &n != start,
                "{} imports a module that imports it back",
                start.join("::")
            );
            if seen.insert(n.clone()) {
                todo.extend(sib.get(&n).into_iter().flatten().cloned());
            }
        }
    }
    assert!(files.len() > 100, "{} files", files.len());
}
