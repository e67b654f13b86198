//! Framework overhead of a session, and prefill per generation, on a real
//! engine: the recorded demo session's outputs forced through a Qwen3 (a
//! synthetic 0.6B-shape GGUF by default) under `policies/default.toml` on
//! `examples/workspace`. Overhead is everything in a turn that is neither
//! the model nor a tool: rendering, parsing, policy, logging.
//!
//! ```sh
//! warden synth --shape qwen3-0.6b --out /tmp/q06 --gguf q8_0 --gguf-only
//! WARDEN_BENCH_GGUF=/tmp/q06/model-q8_0.gguf cargo bench -p warden --bench session
//! ```
//! Without `WARDEN_BENCH_GGUF` it synthesizes the `small` shape.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use warden::model::convert::synth::{synth, SynthOptions, SynthShape};
use warden::session::{ForcedBackend, Session, SessionOptions};

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let model: PathBuf = match std::env::var_os("WARDEN_BENCH_GGUF") {
        Some(p) => PathBuf::from(p),
        None => {
            let out = tmp.path().join("model");
            synth(&SynthOptions {
                shape: SynthShape::Small,
                out: out.clone(),
                dtype: candle_core::DType::F32,
                gguf: Some(warden::model::weights::ggml_type::parse_gguf_type("q8_0").unwrap()),
                gguf_only: true,
                seed: 0,
                tie_word_embeddings: None,
            })
            .unwrap();
            out.join("model-q8_0.gguf")
        }
    };
    let outputs: Vec<String> =
        std::fs::read_to_string(repo.join("examples/sessions/demo-outputs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["output"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
    let users: Vec<String> = std::fs::read_to_string(repo.join("examples/sessions/demo-users.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let loaded = warden::model::LoadedModel::load(
        model.to_str().unwrap(),
        &candle_core::Device::Cpu,
        None,
        false,
    )
    .unwrap();
    println!(
        "model: {} (loaded in {:.2} s)",
        model.display(),
        loaded.load_time.as_secs_f64()
    );
    let backend = ForcedBackend::new(loaded, outputs).unwrap();
    let policy = warden::policy::Policy::load(
        &repo.join("policies/default.toml"),
        &repo.join("examples/workspace"),
    )
    .unwrap();
    let host = warden::sandbox::ToolHost::load(&policy).unwrap();
    let log =
        warden::audit::AuditLog::create(&tmp.path().join("bench.jsonl"), "bench", None).unwrap();
    let opts = SessionOptions {
        max_tokens: 1024,
        ..SessionOptions::default()
    };
    let mut s = Session::start(
        &host,
        Box::new(backend),
        log,
        opts,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let (mut overhead, mut total) = (0.0, 0.0);
    println!("turn  steps  total_ms  model_ms  tool_ms  overhead_ms  overhead%  prefill (reused+new) per generation");
    for (i, u) in users.iter().enumerate() {
        let r = s.turn(u, &mut |_| {}).unwrap();
        let t = r.timings;
        overhead += t.overhead_ms;
        total += t.total_ms;
        let prefill: Vec<String> = r.prefill.iter().map(|(a, b)| format!("{a}+{b}")).collect();
        println!(
            "{:>4}  {:>5}  {:>8.1}  {:>8.1}  {:>7.2}  {:>11.2}  {:>8.3}%  {}",
            i + 1,
            r.steps,
            t.total_ms,
            t.model_ms,
            t.tool_ms,
            t.overhead_ms,
            t.overhead_ms / t.total_ms * 100.0,
            prefill.join(" ")
        );
    }
    s.end("bench").unwrap();
    println!(
        "framework overhead: {:.3} % of {:.1} s of turns",
        overhead / total * 100.0,
        total / 1e3
    );
}
