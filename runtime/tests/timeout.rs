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
