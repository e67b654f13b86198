//! Every sandbox limit fires: wall clock, fuel, memory, output, call counts,
//! and a crash in one call does not harm the next.

mod common;

use common::*;
use std::time::{Duration, Instant};
use warden::sandbox::ErrorKind;

fn tool_policy(extra: &str) -> Fixture {
    Fixture::new(&format!("[tools.t]\nplugin = {}\n{extra}\n", test_tool()))
}

#[test]
fn fuel_budget_stops_a_loop() {
    let f = tool_policy("fuel = 5_000_000\ntimeout_ms = 60000");
    let host = f.host();
    let start = Instant::now();
    let msg = expect_err(call(&host, "t", r#"{"action":"spin"}"#), ErrorKind::Timeout);
    assert!(msg.contains("fuel budget of 5000000"), "{msg}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "fuel did not stop it"
    );
    // A call that fits the budget succeeds.
    expect_ok(call(&host, "t", r#"{"action":"echo","text":"x"}"#));
}

#[test]
fn memory_bomb_stops_at_the_limit() {
    let f = tool_policy("memory_mib = 32");
    let host = f.host();
    let start = Instant::now();
    let msg = expect_err(
        call(&host, "t", r#"{"action":"alloc","mib":1024}"#),
        ErrorKind::Memory,
    );
    assert!(msg.contains("32 MiB"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Under the limit, allocation works: the limit is the limit, not a ban.
    assert_eq!(
        expect_ok(call(&host, "t", r#"{"action":"alloc","mib":16}"#)),
        "allocated 16 MiB"
    );
    // Raising the limit lets the same call through.
    let f = tool_policy("memory_mib = 64");
    let out = expect_ok(call(&f.host(), "t", r#"{"action":"alloc","mib":40}"#));
    assert_eq!(out, "allocated 40 MiB");
}

#[test]
fn huge_output_is_cut_with_a_marker() {
    let f = tool_policy("memory_mib = 512\nmax_output_bytes = 65536\ntimeout_ms = 30000");
    let host = f.host();
    let out = call(&host, "t", r#"{"action":"output","bytes":104857600}"#).unwrap();
    assert!(out.truncated);
    assert!(out.output.starts_with(&"x".repeat(65536)));
    assert!(!out.output.contains(&"x".repeat(65537)));
    assert!(
        out.output
            .contains("[warden: output truncated: showing the first 65536 of 104857600 bytes"),
        "{}",
        &out.output[65536..]
    );
    // Exactly at the cap: untouched.
    let out = call(&host, "t", r#"{"action":"output","bytes":65536}"#).unwrap();
    assert!(!out.truncated);
    assert_eq!(out.output.len(), 65536);
}

#[test]
fn output_overflow_can_be_an_error() {
    let f = tool_policy("max_output_bytes = 100\non_output_overflow = \"error\"");
    let host = f.host();
    let msg = expect_err(
        call(&host, "t", r#"{"action":"output","bytes":101}"#),
        ErrorKind::OutputLimit,
    );
    assert!(msg.contains("100"), "{msg}");
    expect_ok(call(&host, "t", r#"{"action":"output","bytes":100}"#));
}

#[test]
fn panic_is_a_trap_and_the_next_call_succeeds() {
    let f = tool_policy("");
    let host = f.host();
    let msg = expect_err(call(&host, "t", r#"{"action":"panic"}"#), ErrorKind::Trap);
    assert!(msg.contains("crashed"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    // The panic message, from the plugin's stderr, ends the error.
    assert!(
        msg.contains("its stderr ended:") && msg.contains("test-tool was asked to panic"),
        "{msg}"
    );
    for _ in 0..3 {
        assert_eq!(
            expect_ok(call(&host, "t", r#"{"action":"echo","text":"ok"}"#)),
            "ok"
        );
    }
}

#[test]
fn per_tool_and_session_call_limits() {
    let f = Fixture::new(&format!(
        "[session]\nmax_tool_calls = 3\n[tools.a]\nplugin = {0}\nmax_calls = 1\n[tools.b]\nplugin = {0}\n",
        test_tool()
    ));
    let host = f.host();
    let mut budget = host.budget();
    let echo = r#"{"action":"echo","text":"x"}"#;
    host.call(&mut budget, "a", echo).unwrap();
    let e = host.call(&mut budget, "a", echo).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("at most 1 times"), "{e}");
    host.call(&mut budget, "b", echo).unwrap();
    host.call(&mut budget, "b", echo).unwrap();
    assert_eq!(budget.used(), 3);
    let e = host.call(&mut budget, "b", echo).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("max_tool_calls"), "{e}");
    // A new session starts with a full budget.
    host.call(&mut host.budget(), "b", echo).unwrap();
}

#[test]
fn unknown_and_disabled_tools_do_not_exist() {
    let f = Fixture::new(&format!(
        "[tools.a]\nplugin = {0}\n[tools.off]\nplugin = {0}\nenabled = false\n",
        test_tool()
    ));
    let host = f.host();
    let msg = expect_err(call(&host, "off", "{}"), ErrorKind::UnknownTool);
    assert!(msg.contains("available: a"), "{msg}");
    expect_err(call(&host, "nope", "{}"), ErrorKind::UnknownTool);
}

#[test]
fn arguments_are_checked_against_the_schema_before_running() {
    let f = Fixture::new("[tools.read_file]\nplugin = \"read-file\"\nfiles = [{ path = \"{workspace}\", mount = \"/workspace\", mode = \"ro\" }]\n");
    let host = f.host();
    let msg = expect_err(
        call(&host, "read_file", r#"{"path": 3}"#),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("at /path") && msg.contains("string"), "{msg}");
    let msg = expect_err(call(&host, "read_file", "{}"), ErrorKind::InvalidArguments);
    assert!(msg.contains("\"path\" is a required property"), "{msg}");
    let msg = expect_err(
        call(&host, "read_file", r#"{"path":"a","colour":1}"#),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("colour"), "{msg}");
    let msg = expect_err(
        call(&host, "read_file", "{not json"),
        ErrorKind::InvalidArguments,
    );
    assert!(msg.contains("not valid JSON"), "{msg}");
}
