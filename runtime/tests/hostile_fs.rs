//! Attacks on the filesystem, by a hostile plugin (the test plugin, which
//! does no checks of its own), a hostile model (the built-in tools with
//! arguments it chose) and a hostile workspace (files it ships). Each test
//! fails if the mechanism that stops it is removed.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};
use warden::policy::Policy;
use warden::sandbox::ErrorKind;

const SECRET: &str = "top secret outside the mount";
const GIT_CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n";

fn raw(v: serde_json::Value) -> String {
    v.to_string()
}

/// `ws/` is a git work tree (`.git/config`, `.git/hooks/`), with `outside/`
/// beside it; test plugin `t` and `write_file` have it `rw` at /workspace,
/// `read_file` `ro`. `extra` is added to every tool table.
fn git_fixture(extra: &str) -> Fixture {
    let rw = "files = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"rw\" }]";
    let ro = "files = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]";
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\n{rw}\n{extra}\n\
         [tools.write_file]\nplugin = \"write-file\"\n{rw}\n{extra}\n\
         [tools.read_file]\nplugin = \"read-file\"\n{ro}\n",
        test_tool()
    ));
    let ws = f.ws();
    std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
    std::fs::write(ws.join(".git/config"), GIT_CONFIG).unwrap();
    std::fs::write(ws.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(ws.join("app.py"), "print('hi')\n").unwrap();
    std::fs::create_dir(f.root().join("outside")).unwrap();
    std::fs::write(f.root().join("outside/secret.txt"), SECRET).unwrap();
    f
}

#[test]
fn nothing_under_dot_git_is_written_created_renamed_or_deleted() {
    let f = git_fixture("");
    let ws = f.ws();
    // What the workspace ships: an innocent-looking name for the git dir.
    std::os::unix::fs::symlink(".git", ws.join("innocent")).unwrap();
    let host = f.host();

    // A model's write_file of .git/config: the fsmonitor attack.
    let msg = expect_err(
        call(
            &host,
            "write_file",
            &raw(
                serde_json::json!({"path": ".git/config", "mode": "overwrite",
                "content": "[core]\n\tfsmonitor = \"touch /tmp/pwned\"\n"}),
            ),
        ),
        ErrorKind::Denied,
    );
    assert!(
        msg.contains(".git") && msg.contains("allow_git_dir"),
        "the rule is named: {msg}"
    );
    for path in [
        ".git/hooks/pre-commit",
        ".GIT/hooks/post-checkout",
        "innocent/hooks/pre-push",
        "sub/.git/config",
    ] {
        let msg = expect_err(
            call(
                &host,
                "write_file",
                &raw(
                    serde_json::json!({"path": path, "content": "#!/bin/sh\nid\n", "mode": "create"}),
                ),
            ),
            ErrorKind::Denied,
        );
        assert!(msg.contains("allow_git_dir"), "{path}: {msg}");
    }
    // The raw plugin, every way of changing the tree.
    for (what, args) in [
        (
            "write",
            serde_json::json!({"action": "write", "path": "/workspace/.git/config", "content": "x"}),
        ),
        (
            "write via a symlink",
            serde_json::json!({"action": "write", "path": "/workspace/innocent/config", "content": "x"}),
        ),
        (
            "append",
            serde_json::json!({"action": "append", "path": "/workspace/.git/config", "content": "x"}),
        ),
        (
            "create a hook",
            serde_json::json!({"action": "write", "path": "/workspace/.git/hooks/post-merge", "content": "x"}),
        ),
        (
            "rename into",
            serde_json::json!({"action": "rename", "from": "/workspace/app.py", "to": "/workspace/.git/hooks/pre-commit"}),
        ),
        (
            "rename out of",
            serde_json::json!({"action": "rename", "from": "/workspace/.git/HEAD", "to": "/workspace/HEAD"}),
        ),
        (
            "delete",
            serde_json::json!({"action": "remove", "path": "/workspace/.git/HEAD"}),
        ),
        (
            "new .git",
            serde_json::json!({"action": "mkdir", "path": "/workspace/sub/.git/hooks"}),
        ),
        (
            "hard link into",
            serde_json::json!({"action": "hard_link", "from": "/workspace/app.py", "to": "/workspace/.git/hooks/pre-commit"}),
        ),
        (
            "symlink into",
            serde_json::json!({"action": "symlink", "target": "../../app.py", "link": "/workspace/.git/hooks/pre-commit"}),
        ),
        (
            "truncate",
            serde_json::json!({"action": "truncate", "path": "/workspace/.git/config", "bytes": 0}),
        ),
    ] {
        let msg = expect_err(call(&host, "t", &raw(args)), ErrorKind::Denied);
        assert!(msg.contains("allow_git_dir"), "{what}: {msg}");
    }
    assert_eq!(
        std::fs::read_to_string(ws.join(".git/config")).unwrap(),
        GIT_CONFIG
    );
    assert!(ws.join(".git/HEAD").exists() && ws.join("app.py").exists());
    assert_eq!(std::fs::read_dir(ws.join(".git/hooks")).unwrap().count(), 0);
    assert!(!ws.join("sub/.git").exists() && !ws.join("HEAD").exists());
    // Reading is not writing.
    let out = expect_ok(call(&host, "read_file", r#"{"path":".git/config"}"#));
    assert!(out.contains("repositoryformatversion"), "{out}");
    // Everything else in the work tree is writable.
    expect_ok(call(
        &host,
        "write_file",
        r#"{"path":"app.py","content":"print('bye')\n","mode":"overwrite"}"#,
    ));
}

#[test]
fn allow_git_dir_lets_a_tool_write_there() {
    let f = git_fixture("allow_git_dir = true");
    let host = f.host();
    expect_ok(call(
        &host,
        "write_file",
        r#"{"path":".git/description","content":"mine\n","mode":"create"}"#,
    ));
    assert_eq!(
        std::fs::read_to_string(f.ws().join(".git/description")).unwrap(),
        "mine\n"
    );
}

fn load_err(f: &Fixture, toml: &str) -> String {
    let path = f.root().join("second.toml");
    std::fs::write(&path, toml).unwrap();
    format!("{:#}", Policy::load(&path, &f.ws()).unwrap_err())
}

#[test]
fn a_mount_that_is_or_passes_through_a_symlink_is_refused_at_load() {
    let f = Fixture::new("");
    std::fs::create_dir(f.root().join("outside")).unwrap();
    std::fs::create_dir_all(f.ws().join("real/deeper")).unwrap();
    // A hostile workspace ships `docs -> ../..` and `up -> ../outside`.
    std::os::unix::fs::symlink("../..", f.ws().join("docs")).unwrap();
    std::os::unix::fs::symlink("../outside", f.ws().join("up")).unwrap();
    std::os::unix::fs::symlink("real", f.ws().join("alias")).unwrap();
    for mount in [
        "{workspace}/docs",
        "{workspace}/up",
        "{workspace}/alias/deeper",
        "{workspace}/real/../up",
    ] {
        let msg = load_err(
            &f,
            &format!("[tools.t]\nplugin = \"read-file\"\nfiles = [{{ path = \"{mount}\", mount = \"/d\", mode = \"ro\" }}]\n"),
        );
        assert!(msg.contains("second.toml:3:"), "{mount}: {msg}");
        assert!(
            msg.contains("symlink") || msg.contains("\"..\""),
            "{mount}: {msg}"
        );
    }
    // An absolute path through a symlink too.
    let abs = f.ws().join("alias/deeper");
    let msg = load_err(
        &f,
        &format!("[tools.t]\nplugin = \"read-file\"\nfiles = [{{ path = {abs:?}, mount = \"/d\", mode = \"ro\" }}]\n"),
    );
    assert!(msg.contains("symlink"), "{msg}");
    // The real directory is fine.
    let path = f.root().join("ok.toml");
    std::fs::write(&path, "[tools.t]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}/real/deeper\", mount = \"/d\", mode = \"ro\" }]\n").unwrap();
    Policy::load(&path, &f.ws()).unwrap();
}

#[test]
fn a_mount_root_swapped_for_a_symlink_after_loading_is_not_followed() {
    // Tool `w` may change the workspace; tool `docs` reads ws/docs, and
    // tool `two` writes both the workspace and ws/sub.
    let f = Fixture::with(
        &format!(
            "[tools.w]\nplugin = {0}\nfiles = [{{ path = \"{{workspace}}\", mount = \"/workspace\", mode = \"rw\" }}]\n\
             [tools.docs]\nplugin = {0}\nfiles = [{{ path = \"{{workspace}}/docs\", mount = \"/docs\", mode = \"ro\" }}]\n\
             [tools.two]\nplugin = {0}\nfiles = [{{ path = \"{{workspace}}\", mount = \"/w\", mode = \"rw\" }}, {{ path = \"{{workspace}}/sub\", mount = \"/sub\", mode = \"rw\" }}]\n",
            test_tool()
        ),
        |root| {
            std::fs::create_dir(root.join("ws/docs")).unwrap();
            std::fs::write(root.join("ws/docs/readme.txt"), "the real docs").unwrap();
            std::fs::create_dir(root.join("ws/sub")).unwrap();
            std::fs::create_dir(root.join("outside")).unwrap();
            std::fs::write(root.join("outside/secret.txt"), SECRET).unwrap();
        },
    );
    let ws = f.ws();
    let host = f.host();

    // The plugin moves docs/ away; a symlink takes its place (made here,
    // as a plugin may not: see the symlink test).
    expect_ok(call(
        &host,
        "w",
        &raw(
            serde_json::json!({"action": "rename", "from": "/workspace/docs", "to": "/workspace/moved"}),
        ),
    ));
    std::os::unix::fs::symlink("../outside", ws.join("docs")).unwrap();
    let read = |p: &str| {
        call(
            &host,
            "docs",
            &raw(serde_json::json!({"action": "read", "path": p})),
        )
    };
    let r = read("/docs/secret.txt");
    assert!(
        r.is_err(),
        "read through the swapped mount: {:?}",
        r.unwrap().output
    );
    assert_eq!(expect_ok(read("/docs/readme.txt")), "the real docs");

    // Both directions with two rw mounts.
    expect_ok(call(
        &host,
        "two",
        &raw(serde_json::json!({"action": "rename", "from": "/w/sub", "to": "/w/sub-moved"})),
    ));
    std::os::unix::fs::symlink("../outside", ws.join("sub")).unwrap();
    expect_ok(call(
        &host,
        "two",
        &raw(serde_json::json!({"action": "write", "path": "/sub/planted.txt", "content": "x"})),
    ));
    assert!(
        !f.root().join("outside/planted.txt").exists(),
        "wrote outside the mounts"
    );
    assert!(ws.join("sub-moved/planted.txt").exists());
}

#[test]
fn symlinks_that_leave_the_mount_are_not_created() {
    let f = git_fixture("");
    std::fs::create_dir(f.ws().join("dir")).unwrap();
    let host = f.host();
    let link = |target: &str, link: &str| {
        call(
            &host,
            "t",
            &raw(serde_json::json!({"action": "symlink", "target": target, "link": link})),
        )
    };
    for (target, at) in [
        ("/etc/hostname", "/workspace/l1"),
        ("../outside/secret.txt", "/workspace/l2"),
        ("../../outside", "/workspace/dir/l3"),
        ("dir/../../outside", "/workspace/l4"),
    ] {
        let msg = expect_err(link(target, at), ErrorKind::Denied);
        assert!(msg.contains("out of the mount"), "{target}: {msg}");
        assert!(std::fs::symlink_metadata(f.ws().join(&at["/workspace/".len()..])).is_err());
    }
    // Links that stay inside are fine.
    expect_ok(link("app.py", "/workspace/l5"));
    expect_ok(link("../app.py", "/workspace/dir/l6"));
    assert_eq!(
        std::fs::read_link(f.ws().join("dir/l6")).unwrap(),
        Path::new("../app.py")
    );
}

#[test]
fn guest_mount_points_are_normalised_before_the_duplicate_check() {
    let f = Fixture::new("");
    std::fs::create_dir(f.ws().join("other")).unwrap();
    let msg = load_err(
        &f,
        "[tools.t]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}\", mount = \"/w\", mode = \"ro\" }, { path = \"{workspace}/other\", mount = \"//w/./\", mode = \"rw\" }]\n",
    );
    assert!(msg.contains("/w is mounted twice"), "{msg}");
    for root in ["/", "//", "/./", "/.."] {
        let msg = load_err(
            &f,
            &format!("[tools.t]\nplugin = \"read-file\"\nfiles = [{{ path = \"{{workspace}}\", mount = \"{root}\", mode = \"ro\" }}]\n"),
        );
        assert!(msg.contains("absolute guest path"), "{root}: {msg}");
    }
}

#[test]
fn files_with_several_hard_links_need_follow_hard_links() {
    let rw = "files = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"rw\" }]";
    let toml = |extra: &str| {
        format!(
            "[tools.t]\nplugin = {}\n{rw}\n{extra}\n[tools.read_file]\nplugin = \"read-file\"\n{rw}\n{extra}\n",
            test_tool()
        )
    };
    let f = Fixture::new(&toml(""));
    std::fs::create_dir(f.root().join("outside")).unwrap();
    let secret = f.root().join("outside/secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    // What a workspace can ship: a hard link to a file outside it.
    std::fs::hard_link(&secret, f.ws().join("notes.txt")).unwrap();
    let host = f.host();
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"notes.txt"}"#),
        ErrorKind::Denied,
    );
    assert!(
        msg.contains("hard links") && msg.contains("follow_hard_links"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET));
    let read = raw(serde_json::json!({"action": "read", "path": "/workspace/notes.txt"}));
    let write = raw(
        serde_json::json!({"action": "write", "path": "/workspace/notes.txt", "content": "pwned"}),
    );
    expect_err(call(&host, "t", &read), ErrorKind::Denied);
    expect_err(call(&host, "t", &write), ErrorKind::Denied);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), SECRET);

    let f2 = Fixture::new(&toml("follow_hard_links = true"));
    std::fs::write(f2.root().join("data.txt"), "shared").unwrap();
    std::fs::hard_link(f2.root().join("data.txt"), f2.ws().join("data.txt")).unwrap();
    let out = expect_ok(call(&f2.host(), "read_file", r#"{"path":"data.txt"}"#));
    assert_eq!(out, "     1\tshared\n");
}

#[test]
fn fifos_are_refused_instead_of_waited_on() {
    let f = git_fixture("timeout_ms = 3000");
    let fifo = f.ws().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Should the open block anyway, a writer ends it after 10 s so the
    // test fails instead of hanging.
    let unblock = fifo.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let _ = std::fs::OpenOptions::new().write(true).open(unblock);
    });
    let host = f.host();
    let start = Instant::now();
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"pipe"}"#),
        ErrorKind::Denied,
    );
    assert!(msg.contains("FIFO"), "{msg}");
    expect_err(
        call(
            &host,
            "t",
            &raw(serde_json::json!({"action": "read", "path": "/workspace/pipe"})),
        ),
        ErrorKind::Denied,
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn writes_count_against_max_write_bytes() {
    let f = git_fixture("max_write_bytes = 1000");
    std::fs::write(f.ws().join("big.bin"), "").unwrap();
    let host = f.host();
    let write = |bytes: u64| {
        call(
            &host,
            "t",
            &raw(
                serde_json::json!({"action": "write_bytes", "path": "/workspace/out.bin", "bytes": bytes}),
            ),
        )
    };
    expect_ok(write(1000));
    let msg = expect_err(write(5000), ErrorKind::Denied);
    assert!(msg.contains("max_write_bytes (1000 bytes)"), "{msg}");
    assert!(std::fs::metadata(f.ws().join("out.bin")).unwrap().len() <= 1000);
    // Growing a file by set-size counts too (a sparse 1 GiB file is cheap
    // to ask for and fills a disk when copied).
    let msg = expect_err(
        call(
            &host,
            "t",
            &raw(
                serde_json::json!({"action": "truncate", "path": "/workspace/big.bin", "bytes": 1u64 << 30}),
            ),
        ),
        ErrorKind::Denied,
    );
    assert!(msg.contains("max_write_bytes"), "{msg}");
    assert_eq!(std::fs::metadata(f.ws().join("big.bin")).unwrap().len(), 0);
    // The allowance is per call.
    expect_ok(write(900));
    // write_file too.
    let content = "x".repeat(2000);
    expect_err(
        call(
            &host,
            "write_file",
            &raw(serde_json::json!({"path": "w.txt", "content": content, "mode": "create"})),
        ),
        ErrorKind::Denied,
    );
}
