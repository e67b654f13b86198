//! The wall-clock limit, alone in its own test binary so that no other test
//! competes for the CPU while it is timed.

mod common;

use common::*;
use std::time::{Duration, Instant};
use warden::sandbox::ErrorKind;

#[test]
fn infinite_loop_stops_within_timeout_plus_100ms() {
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\ntimeout_ms = 300\n",
        test_tool()
    ));
    let host = f.host();
    let start = Instant::now();
    let msg = expect_err(call(&host, "t", r#"{"action":"spin"}"#), ErrorKind::Timeout);
    let took = start.elapsed();
    assert!(msg.contains("300 ms"), "{msg}");
    assert!(
        took >= Duration::from_millis(300),
        "stopped early: {took:?}"
    );
    assert!(took <= Duration::from_millis(400), "stopped late: {took:?}");
    // The host and the next call are unharmed.
    assert_eq!(
        expect_ok(call(&host, "t", r#"{"action":"echo","text":"still here"}"#)),
        "still here"
    );
}

/// The epoch cannot interrupt the host while it waits on the network, so
/// HTTP requests carry timeouts that end at the call's deadline.
#[test]
fn a_silent_http_server_cannot_hold_a_call_past_its_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and then say nothing, holding the connection open.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let f = Fixture::new(
        "[tools.http_get]\nplugin = \"http-get\"\nhosts = [\"localhost\"]\ntimeout_ms = 500\n",
    );
    let host = f.host();
    let start = Instant::now();
    let args = format!(r#"{{"url":"http://localhost:{port}/slow"}}"#);
    let msg = expect_err(call(&host, "http_get", &args), ErrorKind::Timeout);
    let took = start.elapsed();
    assert!(msg.contains("500 ms"), "{msg}");
    assert!(took <= Duration::from_millis(700), "stopped late: {took:?}");
}

/// A guest that waits in the host (wasi:io/poll on a clock) is not running
/// wasm, so the epoch cannot stop it; the call's timeout does.
#[test]
fn a_guest_sleeping_in_the_host_stops_within_timeout_plus_100ms() {
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\ntimeout_ms = 500\n",
        test_tool()
    ));
    let host = f.host();
    let start = Instant::now();
    let msg = expect_err(
        call(&host, "t", r#"{"action":"sleep","ms":20000}"#),
        ErrorKind::Timeout,
    );
    let took = start.elapsed();
    assert!(msg.contains("500 ms"), "{msg}");
    assert!(took <= Duration::from_millis(600), "stopped late: {took:?}");
    assert_eq!(
        expect_ok(call(&host, "t", r#"{"action":"sleep","ms":10}"#)),
        "slept 10 ms"
    );
}

/// `describe` runs at load, under its own deadline, with the same bound.
#[test]
fn a_describe_that_sleeps_is_stopped_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[tools.slow]\nplugin = {:?}\n",
            warden_artifacts::TEST_SLOW_DESCRIBE
        ),
    )
    .unwrap();
    let policy = warden::policy::Policy::load(&path, dir.path()).unwrap();
    // Compile it first (into the cache), so that what is timed below is
    // loading the compiled form and the describe call.
    let bytes = std::fs::read(warden_artifacts::TEST_SLOW_DESCRIBE).unwrap();
    warden::sandbox::Runtime::new(false)
        .unwrap()
        .compile(&bytes)
        .unwrap();
    let start = Instant::now();
    let err = match warden::sandbox::ToolHost::load(&policy) {
        Ok(_) => panic!("a tool that never describes itself loaded"),
        Err(e) => e,
    };
    let took = start.elapsed();
    assert_eq!(err.kind, ErrorKind::Policy);
    assert!(err.message.contains("did not return within 5 s"), "{err}");
    let limit = warden::sandbox::DESCRIBE_TIMEOUT + Duration::from_millis(100);
    assert!(took <= limit, "held the load for {took:?}");
}

/// A server that drips a byte at a time never trips a between-bytes
/// timeout; the call's deadline bounds the whole transfer.
#[test]
fn a_dripping_http_server_cannot_hold_a_call_past_its_timeout() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n",
                );
                // Slower than the epoch's slack: between bytes the guest
                // waits in the host, where only the call's timeout reaches.
                for _ in 0..10 {
                    if s.write_all(b"x").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(800));
                }
            });
        }
    });
    let f = Fixture::new(
        "[tools.http_get]\nplugin = \"http-get\"\nhosts = [\"localhost\"]\ntimeout_ms = 1000\n",
    );
    let host = f.host();
    let start = Instant::now();
    let args = format!(r#"{{"url":"http://localhost:{port}/drip"}}"#);
    let msg = expect_err(call(&host, "http_get", &args), ErrorKind::Timeout);
    let took = start.elapsed();
    assert!(msg.contains("1000 ms"), "{msg}");
    assert!(
        took <= Duration::from_millis(1100),
        "stopped late: {took:?}"
    );
}
