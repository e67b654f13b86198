//! Host memory a guest can fill outside its linear memory: `wasi:http`
//! header fields built from guest memory, held as host resources. Alone in
//! its own test binary so that the process's resident memory measures this
//! call only.

mod common;

use common::*;
use warden::sandbox::ErrorKind;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * rustix::param::page_size() as u64
}

#[test]
fn a_flood_of_host_resources_ends_as_memory_with_the_host_bounded() {
    let f = Fixture::new(&format!(
        "[tools.t]\nplugin = {}\nmemory_mib = 64\ntimeout_ms = 5000\n",
        test_tool()
    ));
    let host = f.host();
    expect_ok(call(&host, "t", r#"{"action":"echo","text":"warm"}"#));
    let before = rss();
    let msg = expect_err(
        call(&host, "t", r#"{"action":"fields_flood"}"#),
        ErrorKind::Memory,
    );
    let grew = rss().saturating_sub(before);
    eprintln!("host grew by {} KiB: {msg}", grew >> 10);
    assert!(
        msg.contains("64 MiB") && msg.contains("host resources"),
        "{msg}"
    );
    assert!(
        grew < 64 << 20,
        "the host grew by {} MiB during the flood",
        grew >> 20
    );
    // The next call is unharmed.
    expect_ok(call(&host, "t", r#"{"action":"echo","text":"ok"}"#));
}
