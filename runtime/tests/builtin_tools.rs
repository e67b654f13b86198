//! What the built-in tools do, on a workspace like a user's.

mod common;

use common::*;
use warden::sandbox::{ErrorKind, ToolHost};

fn workspace_fixture() -> (Fixture, ToolHost) {
    let mount = "files = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"rw\" }]";
    let f = Fixture::new(&format!(
        "[tools.read_file]\nplugin = \"read-file\"\n{mount}\n\
         [tools.list_dir]\nplugin = \"list-dir\"\n{mount}\n\
         [tools.search_code]\nplugin = \"search-code\"\n{mount}\n\
         [tools.write_file]\nplugin = \"write-file\"\n{mount}\n"
    ));
    let ws = f.ws();
    std::fs::create_dir_all(ws.join("app/sub")).unwrap();
    std::fs::write(
        ws.join("app/models.py"),
        "import os\n\nclass Post:\n    title = 'x'\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("app/sub/views.py"),
        "def post_list():\n    return Post\n",
    )
    .unwrap();
    std::fs::write(ws.join("notes.md"), "# Post ideas\n").unwrap();
    std::fs::write(ws.join(".gitignore"), "build/\nsecret.py\n").unwrap();
    std::fs::create_dir(ws.join("build")).unwrap();
    std::fs::write(ws.join("build/gen.py"), "class Post: pass\n").unwrap();
    std::fs::write(ws.join("secret.py"), "class Post: pass\n").unwrap();
    std::fs::write(ws.join("blob.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    let host = f.host();
    (f, host)
}

#[test]
fn read_file_numbers_lines_and_reads_ranges() {
    let (_f, host) = workspace_fixture();
    let out = expect_ok(call(&host, "read_file", r#"{"path":"app/models.py"}"#));
    assert_eq!(
        out,
        "     1\timport os\n     2\t\n     3\tclass Post:\n     4\t    title = 'x'\n"
    );
    let out = expect_ok(call(
        &host,
        "read_file",
        r#"{"path":"/workspace/app/models.py","start_line":3,"end_line":3}"#,
    ));
    assert_eq!(out, "     3\tclass Post:\n");
    let msg = expect_err(
        call(
            &host,
            "read_file",
            r#"{"path":"app/models.py","start_line":9}"#,
        ),
        ErrorKind::InvalidArguments,
    );
    assert!(
        msg.contains("past the end") && msg.contains("4 lines"),
        "{msg}"
    );
    let msg = expect_err(
        call(
            &host,
            "read_file",
            r#"{"path":"app/models.py","start_line":3,"end_line":2}"#,
        ),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("before start_line"), "{msg}");
}

#[test]
fn read_file_refuses_binary_large_missing_and_directories() {
    let (f, host) = workspace_fixture();
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"blob.bin"}"#),
        ErrorKind::Failed,
    );
    assert!(msg.contains("binary"), "{msg}");
    std::fs::write(f.ws().join("big.txt"), "line\n".repeat(300_000)).unwrap();
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"big.txt"}"#),
        ErrorKind::Failed,
    );
    assert!(
        msg.contains("1500000 bytes") && msg.contains("start_line"),
        "{msg}"
    );
    let out = expect_ok(call(
        &host,
        "read_file",
        r#"{"path":"big.txt","start_line":299999}"#,
    ));
    assert_eq!(out, "299999\tline\n300000\tline\n");
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"nope.py"}"#),
        ErrorKind::Failed,
    );
    assert!(msg.contains("nope.py: no such file"), "{msg}");
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"app"}"#),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("list_dir"), "{msg}");
}

#[test]
fn list_dir_sorts_descends_and_filters() {
    let (_f, host) = workspace_fixture();
    let out = expect_ok(call(&host, "list_dir", "{}"));
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit("  ").next().unwrap())
        .collect();
    assert_eq!(
        names,
        [".gitignore", "app/", "blob.bin", "notes.md"],
        "{out}"
    );
    assert!(out.contains("file         13  notes.md"), "{out}");
    let out = expect_ok(call(&host, "list_dir", r#"{"path":"app","depth":3}"#));
    assert!(
        out.contains("app/sub/views.py") && out.contains("dir           -  app/sub/"),
        "{out}"
    );
    let out = expect_ok(call(&host, "list_dir", r#"{"depth":5,"glob":"**/*.py"}"#));
    assert_eq!(out.lines().count(), 2, "{out}");
    let msg = expect_err(
        call(&host, "list_dir", r#"{"path":"notes.md"}"#),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("read_file"), "{msg}");
}

#[test]
fn list_dir_caps_entries_with_a_marker() {
    let (f, host) = workspace_fixture();
    std::fs::create_dir(f.ws().join("many")).unwrap();
    for i in 0..620 {
        std::fs::write(f.ws().join(format!("many/f{i:04}.txt")), "").unwrap();
    }
    let out = expect_ok(call(&host, "list_dir", r#"{"path":"many"}"#));
    assert_eq!(out.lines().count(), 501, "{}", out.lines().last().unwrap());
    assert!(
        out.ends_with("[120 more entries not shown; narrow with path, depth or glob]\n"),
        "{out}"
    );
}

#[test]
fn search_code_finds_matches_and_respects_gitignore() {
    let (_f, host) = workspace_fixture();
    let out = expect_ok(call(&host, "search_code", r#"{"pattern":"\\bPost\\b"}"#));
    assert_eq!(out, "app/models.py:3: class Post:\napp/sub/views.py:2:     return Post\nnotes.md:1: # Post ideas\n");
    let out = expect_ok(call(
        &host,
        "search_code",
        r#"{"pattern":"Post","glob":"*.py","path":"app/sub"}"#,
    ));
    assert_eq!(out, "app/sub/views.py:2:     return Post\n");
    let out = expect_ok(call(
        &host,
        "search_code",
        r#"{"pattern":"Post","max_results":1}"#,
    ));
    assert!(
        out.starts_with("app/models.py:3: class Post:\n[stopped at 1 matches"),
        "{out}"
    );
    let out = expect_ok(call(&host, "search_code", r#"{"pattern":"zzz_nothing"}"#));
    assert!(out.starts_with("no matches"), "{out}");
    let msg = expect_err(
        call(&host, "search_code", r#"{"pattern":"(unclosed"}"#),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("regex"), "{msg}");
}

#[test]
fn write_file_modes() {
    let (f, host) = workspace_fixture();
    let w = |path: &str, content: &str, mode: &str| {
        call(
            &host,
            "write_file",
            &serde_json::json!({"path": path, "content": content, "mode": mode}).to_string(),
        )
    };
    assert_eq!(
        expect_ok(w("out/new.txt", "a", "create")),
        "created out/new.txt (1 bytes written)"
    );
    let msg = expect_err(w("out/new.txt", "b", "create"), ErrorKind::Failed);
    assert!(msg.contains("already exists"), "{msg}");
    expect_ok(w("out/new.txt", "bc", "append"));
    assert_eq!(
        std::fs::read_to_string(f.ws().join("out/new.txt")).unwrap(),
        "abc"
    );
    expect_ok(w("out/new.txt", "z", "overwrite"));
    assert_eq!(
        std::fs::read_to_string(f.ws().join("out/new.txt")).unwrap(),
        "z"
    );
    let msg = expect_err(w("missing.txt", "z", "overwrite"), ErrorKind::Failed);
    assert!(msg.contains("use mode \"create\""), "{msg}");
    expect_err(w("../escape.txt", "z", "create"), ErrorKind::Denied);
    assert!(!f.root().join("escape.txt").exists());
    let msg = expect_err(w("x", "z", "upsert"), ErrorKind::InvalidArguments);
    assert!(msg.contains("/mode"), "{msg}");
}
