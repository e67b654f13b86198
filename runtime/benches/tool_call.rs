//! Latency of one tool call as a session makes it: budget, schema check,
//! fresh WASI context and store, instantiation from `InstancePre`, the call,
//! output cap.
//!
//! `cargo bench -p warden --bench tool_call` prints criterion's estimates and
//! then p50/p99 over 2000 timed calls of each case.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};
use warden::policy::Policy;
use warden::sandbox::ToolHost;

fn host(dir: &std::path::Path) -> ToolHost {
    std::fs::write(
        dir.join("ws/ten_kib.py"),
        "x = 1  # padding to make ten KiB of text\n".repeat(250),
    )
    .unwrap();
    let policy = format!(
        "[tools.echo]\nplugin = {:?}\n\
         [tools.read_file]\nplugin = \"read-file\"\nfiles = [{{ path = \"{{workspace}}\", mount = \"/workspace\", mode = \"ro\" }}]\n",
        warden_artifacts::TEST_TOOL
    );
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let policy = Policy::load(&dir.join("policy.toml"), &dir.join("ws")).unwrap();
    ToolHost::load(&policy).unwrap()
}

const CASES: [(&str, &str, &str); 2] = [
    (
        "trivial call (echo)",
        "echo",
        r#"{"action":"echo","text":"hi"}"#,
    ),
    ("read_file 10 KiB", "read_file", r#"{"path":"ten_kib.py"}"#),
];

fn percentiles(host: &ToolHost, name: &str, args: &str) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..2000)
        .map(|_| {
            let mut budget = host.budget();
            let t = Instant::now();
            host.call(&mut budget, name, args).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ws")).unwrap();
    let host = host(dir.path());
    for (label, name, args) in CASES {
        c.bench_function(label, |b| {
            b.iter(|| {
                let mut budget = host.budget();
                host.call(&mut budget, name, args).unwrap()
            })
        });
    }
    for (label, name, args) in CASES {
        let (p50, p99) = percentiles(&host, name, args);
        println!(
            "{label}: p50 {:.1} µs, p99 {:.1} µs",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
