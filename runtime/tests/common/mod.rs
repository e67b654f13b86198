//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use warden::policy::Policy;
use warden::sandbox::{CallError, CallOutput, ErrorKind, ToolHost};

/// Path of the misbehaving test plugin, as a TOML string literal.
pub fn test_tool() -> String {
    format!("{:?}", warden_artifacts::TEST_TOOL)
}

/// A temporary workspace plus a policy written beside it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub policy: Policy,
}

impl Fixture {
    /// Writes `toml` as `policy.toml` in a fresh directory whose `ws/`
    /// subdirectory is the workspace.
    pub fn new(toml: &str) -> Fixture {
        Self::with(toml, |_| {})
    }

    /// Like [`Fixture::new`], with `setup` run on the fresh directory
    /// before the policy is loaded (to create what its mounts name).
    pub fn with(toml: &str, setup: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        setup(dir.path());
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, toml).unwrap();
        let policy = Policy::load(&path, &dir.path().join("ws"))
            .unwrap_or_else(|e| panic!("loading the policy: {e:#}"));
        Fixture { dir, policy }
    }

    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self) -> ToolHost {
        ToolHost::load(&self.policy).unwrap_or_else(|e| panic!("loading tools: {e}"))
    }
}

/// One call with a fresh budget.
pub fn call(host: &ToolHost, name: &str, args: &str) -> Result<CallOutput, CallError> {
    host.call(&mut host.budget(), name, args)
}

/// Asserts a call failed with `kind`; returns the message.
pub fn expect_err(r: Result<CallOutput, CallError>, kind: ErrorKind) -> String {
    match r {
        Ok(out) => panic!("expected {kind}, got output {:?}", out.output),
        Err(e) => {
            assert_eq!(e.kind, kind, "wrong kind: {e}");
            e.message
        }
    }
}

/// The output of a call that must succeed.
pub fn expect_ok(r: Result<CallOutput, CallError>) -> String {
    r.unwrap_or_else(|e| panic!("expected success, got {e}"))
        .output
}

/// A loopback HTTP/1.1 server for the network tests: every request is
/// answered with `respond(path, port)` (a whole response, with
/// `Connection: close`), and requests are counted.
pub struct TestServer {
    pub port: u16,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    all: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TestServer {
    /// Serves on 127.0.0.1 until the test process ends.
    pub fn start(respond: fn(&str, u16) -> String) -> TestServer {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ok = std::sync::Arc::new(AtomicUsize::new(0));
        let all = std::sync::Arc::new(AtomicUsize::new(0));
        let (ok2, all2) = (ok.clone(), all.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                all2.fetch_add(1, Ordering::SeqCst);
                let req = String::from_utf8_lossy(&buf);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                if path == "/ok" {
                    ok2.fetch_add(1, Ordering::SeqCst);
                }
                let _ = s.write_all(respond(path, port).as_bytes());
            }
        });
        TestServer { port, ok, all }
    }

    /// Requests for `/ok` so far.
    pub fn ok_hits(&self) -> usize {
        self.ok.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests of any path so far.
    pub fn all_hits(&self) -> usize {
        self.all.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An HTTP/1.1 response with `status` (e.g. "200 OK"), extra header lines
/// and `body`, closing the connection.
pub fn http_response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The repository root (tests run `warden` from there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs the `warden` binary from the repository root with its state in
/// `state` and no audit key from the environment.
pub fn warden(args: &[&str], state: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(repo())
        .env("WARDEN_STATE_DIR", state)
        .env_remove("WARDEN_AUDIT_KEY_FILE")
        .output()
        .expect("running warden")
}

/// Its standard output, after asserting it succeeded.
pub fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts every line of the log at `path` validates against the shipped
/// `docs/audit-log.schema.json`.
pub fn assert_log_matches_schema(path: &Path) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/audit-log.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (i, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{}:{}: {errors:?}\n{line}",
            path.display(),
            i + 1
        );
    }
}

/// The real pretrained model of the tests (SmolLM2-135M-Instruct, Q4_1
/// GGUF), as `runtime/tests/models/fetch.sh` leaves it in the test-model
/// cache (`$WARDEN_TEST_MODELS`, else `~/.cache/warden/test-models`).
/// Missing: `None`, saying why, so a test can skip — unless
/// `WARDEN_REQUIRE_TEST_MODELS` is set (CI sets it), where it panics.
#[allow(dead_code)]
pub fn real_model() -> Option<PathBuf> {
    const NAME: &str = warden::session::demo::SMOLLM2_BASE;
    let cache = warden::session::demo::test_model_cache();
    match cache.map(|c| c.join(NAME)) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            let why = format!(
                "the real test model {NAME} is not in the test-model cache; run runtime/tests/models/fetch.sh"
            );
            if std::env::var_os("WARDEN_REQUIRE_TEST_MODELS").is_some() {
                panic!("{why} (WARDEN_REQUIRE_TEST_MODELS is set)");
            }
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Starts `cmd` with its stdout piped and reads the first line it prints
/// (a server saying where it listens).
pub fn spawn_and_read_a_line(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// `warden audit verify PATH` (a log or a directory of them) succeeds.
pub fn assert_verifies(path: &Path) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A log's records.
pub fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
