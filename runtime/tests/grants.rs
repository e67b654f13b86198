//! The sandbox grants only what the policy says: mounts (with their mode),
//! environment variables, and HTTP hosts. Escapes by `..`, absolute path
//! and symlink are denied, both by the built-in tools' own checks and by
//! the host underneath them (the test plugin does no checks of its own).

mod common;

use common::*;
use std::net::TcpListener;
use std::time::Duration;
use warden::sandbox::ErrorKind;

const SECRET: &str = "top secret outside the mount";

/// A fixture with `ws/` mounted at /workspace (mode `mode`) for the test
/// plugin and the built-in file tools, plus `outside/secret.txt` and a
/// symlink `ws/link` pointing at it.
fn files_fixture(mode: &str) -> Fixture {
    let mount = format!(
        "files = [{{ path = \"{{workspace}}\", mount = \"/workspace\", mode = \"{mode}\" }}]"
    );
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\n{mount}\n\
         [tools.read_file]\nplugin = \"read-file\"\n{mount}\n\
         [tools.write_file]\nplugin = \"write-file\"\n{mount}\n",
        test_tool()
    ));
    std::fs::create_dir(f.root().join("outside")).unwrap();
    std::fs::write(f.root().join("outside/secret.txt"), SECRET).unwrap();
    std::fs::write(f.ws().join("inside.txt"), "hello\n").unwrap();
    std::os::unix::fs::symlink(f.root().join("outside/secret.txt"), f.ws().join("link")).unwrap();
    std::os::unix::fs::symlink("../outside", f.ws().join("dirlink")).unwrap();
    f
}

fn read_raw(path: &str) -> String {
    serde_json::json!({"action": "read", "path": path}).to_string()
}

#[test]
fn reads_inside_the_mount_work() {
    let f = files_fixture("ro");
    let host = f.host();
    assert_eq!(
        expect_ok(call(&host, "t", &read_raw("/workspace/inside.txt"))),
        "hello\n"
    );
    assert_eq!(
        expect_ok(call(&host, "read_file", r#"{"path":"inside.txt"}"#)),
        "     1\thello\n"
    );
}

#[test]
fn dotdot_escape_is_denied() {
    let f = files_fixture("ro");
    let host = f.host();
    // The host sandbox itself, with no help from the plugin.
    let msg = expect_err(
        call(&host, "t", &read_raw("/workspace/../outside/secret.txt")),
        ErrorKind::Denied,
    );
    assert!(!msg.contains(SECRET));
    // The built-in tool.
    expect_err(
        call(&host, "read_file", r#"{"path":"../outside/secret.txt"}"#),
        ErrorKind::Denied,
    );
    expect_err(
        call(
            &host,
            "read_file",
            r#"{"path":"a/../../outside/secret.txt"}"#,
        ),
        ErrorKind::Denied,
    );
}

#[test]
fn absolute_path_outside_the_mounts_is_denied() {
    let f = files_fixture("ro");
    let host = f.host();
    let secret = f.root().join("outside/secret.txt");
    let msg = expect_err(
        call(
            &host,
            "read_file",
            &serde_json::json!({"path": secret}).to_string(),
        ),
        ErrorKind::Denied,
    );
    assert!(msg.contains("outside the directories"), "{msg}");
    expect_err(
        call(&host, "read_file", r#"{"path":"/etc/passwd"}"#),
        ErrorKind::Denied,
    );
    // The raw plugin cannot reach host paths either: there is no such file
    // in its world.
    let r = call(&host, "t", &read_raw(secret.to_str().unwrap()));
    assert!(r.is_err(), "read a host path: {:?}", r.unwrap().output);
    assert!(call(&host, "t", &read_raw("/etc/passwd")).is_err());
}

#[test]
fn symlink_leading_outside_is_denied() {
    let f = files_fixture("ro");
    let host = f.host();
    let msg = expect_err(
        call(&host, "t", &read_raw("/workspace/link")),
        ErrorKind::Denied,
    );
    assert!(!msg.contains(SECRET));
    expect_err(
        call(&host, "t", &read_raw("/workspace/dirlink/secret.txt")),
        ErrorKind::Denied,
    );
    expect_err(
        call(&host, "read_file", r#"{"path":"link"}"#),
        ErrorKind::Denied,
    );
}

#[test]
fn read_only_mounts_refuse_writes_and_read_write_mounts_accept_them() {
    let f = files_fixture("ro");
    let host = f.host();
    let raw = r#"{"action":"write","path":"/workspace/new.txt","content":"x"}"#;
    expect_err(call(&host, "t", raw), ErrorKind::Denied);
    let msg = expect_err(
        call(
            &host,
            "write_file",
            r#"{"path":"new.txt","content":"x","mode":"create"}"#,
        ),
        ErrorKind::Denied,
    );
    assert!(msg.contains("new.txt"), "{msg}");
    assert!(!f.ws().join("new.txt").exists());

    let f = files_fixture("rw");
    let host = f.host();
    expect_ok(call(&host, "t", raw));
    assert_eq!(
        std::fs::read_to_string(f.ws().join("new.txt")).unwrap(),
        "x"
    );
    // Writing through a symlink that leaves the mount is still denied.
    expect_err(
        call(
            &host,
            "write_file",
            r#"{"path":"link","content":"pwned","mode":"overwrite"}"#,
        ),
        ErrorKind::Denied,
    );
    assert_eq!(
        std::fs::read_to_string(f.root().join("outside/secret.txt")).unwrap(),
        SECRET
    );
}

#[test]
fn no_mounts_means_no_files() {
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\n[tools.read_file]\nplugin = \"read-file\"\n",
        test_tool()
    ));
    std::fs::write(f.ws().join("a.txt"), "a").unwrap();
    let host = f.host();
    assert!(call(&host, "t", &read_raw("/workspace/a.txt")).is_err());
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"a.txt"}"#),
        ErrorKind::Denied,
    );
    assert!(msg.contains("mounts none"), "{msg}");
}

#[test]
fn environment_is_invisible_unless_passed() {
    // PATH and HOME are set in any test environment; set_var would race
    // with the other test threads.
    let path = std::env::var("PATH").expect("PATH is set");
    let f = Fixture::new(&format!("[tools.none]\nplugin = {0}\n[tools.some]\nplugin = {0}\nenv = [\"PATH\", \"WARDEN_SURELY_UNSET_VAR\"]\n", test_tool()));
    let host = f.host();
    let env = r#"{"action":"env"}"#;
    assert_eq!(expect_ok(call(&host, "none", env)), "");
    assert_eq!(
        expect_ok(call(&host, "some", env)),
        format!("PATH={path}\n")
    );
}

#[test]
fn tcp_connect_to_loopback_is_denied() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Even a tool that may reach `localhost` over HTTP gets no raw sockets.
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\nhosts = [\"localhost\"]\n",
        test_tool()
    ));
    let host = f.host();
    let args = serde_json::json!({"action": "tcp", "ip": [127, 0, 0, 1], "port": port}).to_string();
    let msg = expect_err(call(&host, "t", &args), ErrorKind::Denied);
    assert!(msg.contains("access-denied"), "{msg}");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        listener.accept().is_err(),
        "a connection reached the listener"
    );
}

/// `/ok`, `/redirect-away` (to a host the policy does not list) and
/// `/redirect-home` (to `/ok` on localhost).
fn routes(path: &str, port: u16) -> String {
    match path {
        "/ok" => http_response(
            "200 OK",
            "Content-Type: text/plain\r\n",
            "hello from loopback",
        ),
        "/redirect-away" => http_response(
            "302 Found",
            "Location: http://not-allowed.example/ok\r\n",
            "",
        ),
        "/redirect-home" => http_response(
            "302 Found",
            &format!("Location: http://localhost:{port}/ok\r\n"),
            "",
        ),
        _ => http_response("404 Not Found", "", ""),
    }
}

#[test]
fn http_only_to_allowed_hosts() {
    let server = TestServer::start(routes);
    let port = server.port;
    let f = Fixture::new(
        "[tools.http_get]\nplugin = \"http-get\"\nhosts = [\"localhost\"]\ntimeout_ms = 10000\n",
    );
    let host = f.host();
    let get = |url: String| {
        call(
            &host,
            "http_get",
            &serde_json::json!({"url": url}).to_string(),
        )
    };

    let out = expect_ok(get(format!("http://localhost:{port}/ok")));
    assert!(out.starts_with("HTTP 200\n"), "{out}");
    assert!(out.contains("content-type: text/plain"), "{out}");
    assert!(out.ends_with("hello from loopback"), "{out}");
    assert_eq!(server.ok_hits(), 1);

    // Redirects to the same allowed host are followed.
    let out = expect_ok(get(format!("http://localhost:{port}/redirect-home")));
    assert!(out.ends_with("hello from loopback"), "{out}");
    assert_eq!(server.ok_hits(), 2);

    // A host not in the list, an IP literal (even of the same server), and
    // a redirect to a host not in the list: denied, and nothing reaches /ok.
    let msg = expect_err(
        get(format!("http://127.0.0.1:{port}/ok")),
        ErrorKind::Denied,
    );
    assert!(msg.contains("127.0.0.1"), "{msg}");
    expect_err(get(format!("http://[::1]:{port}/ok")), ErrorKind::Denied);
    expect_err(
        get(format!("http://not-allowed.example:{port}/ok")),
        ErrorKind::Denied,
    );
    let msg = expect_err(
        get(format!("http://localhost:{port}/redirect-away")),
        ErrorKind::Denied,
    );
    assert!(msg.contains("not-allowed.example"), "{msg}");
    assert_eq!(server.ok_hits(), 2);
}

#[test]
fn http_without_hosts_is_denied() {
    let server = TestServer::start(routes);
    let f = Fixture::new("[tools.http_get]\nplugin = \"http-get\"\n");
    let host = f.host();
    let args =
        serde_json::json!({"url": format!("http://localhost:{}/ok", server.port)}).to_string();
    expect_err(call(&host, "http_get", &args), ErrorKind::Denied);
    assert_eq!(server.ok_hits(), 0);
}
