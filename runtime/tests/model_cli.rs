//! `warden synth`, `warden generate` and `warden bench` end to end, plus the
//! ways users point at models (hub-cache names, sharded snapshots).

use std::path::Path;
use std::process::{Command, Output};

fn warden(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running warden")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn synth_tiny(dir: &Path, extra: &[&str]) {
    let out = ok(&warden(
        &[
            &["synth", "--shape", "tiny", "--out", dir.to_str().unwrap()][..],
            extra,
        ]
        .concat(),
        &[],
    ));
    assert!(
        out.contains("model.safetensors") || out.contains(".gguf"),
        "{out}"
    );
}

#[test]
fn synth_then_generate_json_from_safetensors_and_gguf() {
    let dir = tempfile::tempdir().unwrap();
    synth_tiny(dir.path(), &["--gguf", "q8_0", "--seed", "3"]);
    let mut results = vec![];
    for model in [dir.path().to_path_buf(), dir.path().join("model-q8_0.gguf")] {
        let out = ok(&warden(
            &[
                "generate",
                "--model",
                model.to_str().unwrap(),
                "--prompt",
                "Hello",
                "--chat",
                "--max-tokens",
                "6",
                "--json",
            ],
            &[],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let tokens = v["tokens"].as_array().unwrap();
        assert!(!tokens.is_empty() && tokens.len() <= 6);
        assert!(v["finish_reason"] == "length" || v["finish_reason"] == "stop");
        // The chat wrapper: <|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n
        assert_eq!(v["prompt_tokens"][0], 151644);
        let t = &v["timings"];
        for k in [
            "tokenize_ms",
            "prefill_ms",
            "ttft_ms",
            "prefill_tok_s",
            "decode_tok_s",
        ] {
            assert!(t[k].as_f64().unwrap() >= 0.0, "{k}");
        }
        assert!(t["prefill_tokens"].as_u64().unwrap() > 5);
        results.push(v["tokens"][0].clone());
    }
    // Greedy first token agrees between f32 and its q8_0 quantization.
    assert_eq!(results[0], results[1]);
}

#[test]
fn generate_streams_text_and_is_reproducible_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    synth_tiny(dir.path(), &[]);
    let m = dir.path().to_str().unwrap();
    let run = |seed: &str| {
        ok(&warden(
            &[
                "generate",
                "--model",
                m,
                "--prompt",
                "def main():",
                "--max-tokens",
                "8",
                "--temperature",
                "0.8",
                "--top-k",
                "40",
                "--top-p",
                "0.9",
                "--seed",
                seed,
            ],
            &[],
        ))
    };
    assert_eq!(run("5"), run("5"));
    let o = warden(
        &[
            "generate",
            "--model",
            m,
            "--prompt",
            "x",
            "--max-tokens",
            "3",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("prompt tokens") && err.contains("tok/s"),
        "{err}"
    );
}

#[test]
fn bench_reports_speeds_and_memory_without_a_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    synth_tiny(dir.path(), &["--gguf", "q4_0", "--gguf-only"]);
    assert!(!dir.path().join("tokenizer.json").exists());
    let gguf = dir.path().join("model-q4_0.gguf");
    // `warden bench --json` on it, one thread, 16 prompt tokens, then `extra`.
    let bench = |extra: &[&str]| -> String {
        let args = [
            &[
                "bench",
                "--model",
                gguf.to_str().unwrap(),
                "--prompt-tokens",
                "16",
                "--threads",
                "1",
                "--json",
            ][..],
            extra,
        ]
        .concat();
        ok(&warden(&args, &[]))
    };
    let out = bench(&["--gen-tokens", "4", "--repeat", "2"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["prefill_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mib"].as_f64().unwrap() > 1.0);
    assert_eq!(v["threads"], 1);
    // The thread pool every CPU op and kernel runs on has exactly that many.
    assert_eq!(v["pool_threads"], 1);
    // No threads at all is refused, with what to pass.
    let o = warden(
        &["bench", "--model", gguf.to_str().unwrap(), "--threads", "0"],
        &[],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--threads must be at least 1"), "{err}");
    assert!(v.get("lookup_decode_tok_s").is_none());
    // --speculative lookup: plain and lookup decoding side by side.
    let out = bench(&[
        "--gen-tokens",
        "24",
        "--repeat",
        "1",
        "--speculative",
        "lookup",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["lookup_decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["lookup_speedup"].as_f64().unwrap() > 0.0);
    assert!(v["accepted_tokens"].as_u64().unwrap() <= v["drafted_tokens"].as_u64().unwrap());
    // --compare-kernels: candle's kernels interleaved; --bandwidth: weight
    // bytes per token (every matrix in the file but the embedding table,
    // which is read one row at a time unless it is also the output layer)
    // over a measured read bandwidth.
    let out = bench(&[
        "--gen-tokens",
        "4",
        "--repeat",
        "1",
        "--compare-kernels",
        "--bandwidth",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kernels"], "auto");
    assert!(v["candle_prefill_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["candle_decode_tok_s"].as_f64().unwrap() > 0.0);
    let bytes = v["weight_bytes_per_token"].as_u64().unwrap();
    let mut f = std::fs::File::open(&gguf).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let size = |name: &str| {
        let t = &ct.tensor_infos[name];
        t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size()
    };
    let tied = !ct.tensor_infos.contains_key("output.weight");
    let want: usize = ct
        .tensor_infos
        .keys()
        .filter(|n| !n.contains("norm") && (tied || n.as_str() != "token_embd.weight"))
        .map(|n| size(n))
        .sum();
    assert_eq!(bytes as usize, want);
    let (bw, limit) = (
        v["read_gb_s"].as_f64().unwrap(),
        v["bandwidth_limit_tok_s"].as_f64().unwrap(),
    );
    assert!(bw > 0.0);
    assert!((limit - bw * 1e9 / bytes as f64).abs() <= 1e-6 * limit);
}

#[test]
fn hub_cache_names_resolve_without_downloading() {
    let hub = tempfile::tempdir().unwrap();
    let snap = hub.path().join("models--Qwen--Qwen3-Tiny/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(hub.path().join("models--Qwen--Qwen3-Tiny/refs")).unwrap();
    std::fs::write(
        hub.path().join("models--Qwen--Qwen3-Tiny/refs/main"),
        "abc123",
    )
    .unwrap();
    synth_tiny(&snap, &[]);
    let out = ok(&warden(
        &[
            "generate",
            "--model",
            "Qwen/Qwen3-Tiny",
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
            "--json",
        ],
        &[("HF_HUB_CACHE", hub.path())],
    ));
    assert!(out.contains("\"tokens\""));
    let o = warden(
        &["generate", "--model", "Qwen/Qwen3-0.6B", "--prompt", "Hi"],
        &[("HF_HUB_CACHE", hub.path())],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: Qwen/Qwen3-0.6B is not in the local Hugging Face cache")
            && err.contains("models--Qwen--Qwen3-0.6B"),
        "{err}"
    );
}

/// A snapshot sharded like the hub's larger models loads like a single file.
#[test]
fn sharded_safetensors_load() {
    let dir = tempfile::tempdir().unwrap();
    synth_tiny(dir.path(), &[]);
    let one = tokens_for(dir.path());
    // Split model.safetensors into two shards with an index.
    let st = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (part, file) in [
        (a, "model-00001-of-00002.safetensors"),
        (b, "model-00002-of-00002.safetensors"),
    ] {
        let shard: std::collections::HashMap<String, candle_core::Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&shard, dir.path().join(file)).unwrap();
        for n in part {
            map.insert((*n).clone(), file.into());
        }
    }
    std::fs::remove_file(&st).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"weight_map": map}).to_string(),
    )
    .unwrap();
    assert_eq!(tokens_for(dir.path()), one);
    // A missing shard is named.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let o = warden(
        &[
            "generate",
            "--model",
            dir.path().to_str().unwrap(),
            "--prompt",
            "Hi",
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("model-00002-of-00002.safetensors, which is missing"));
}

/// bf16 weights load and stay close to f32 (same seed).
#[test]
fn bf16_checkpoint_runs() {
    let dir = tempfile::tempdir().unwrap();
    synth_tiny(dir.path(), &["--dtype", "bf16"]);
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(cfg.contains("bfloat16"));
    let out = ok(&warden(
        &[
            "generate",
            "--model",
            dir.path().to_str().unwrap(),
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
            "--dtype",
            "bf16",
            "--json",
        ],
        &[],
    ));
    assert!(out.contains("\"tokens\""));
}

fn tokens_for(dir: &Path) -> serde_json::Value {
    let out = ok(&warden(
        &[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "Hello there",
            "--max-tokens",
            "4",
            "--json",
        ],
        &[],
    ));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["tokens"].clone()
}

/// `generate --chat` renders the one user turn with the run's template:
/// `--chat-template`'s when given.
#[test]
fn generate_chat_renders_with_the_chosen_template() {
    let dir = tempfile::tempdir().unwrap();
    synth_tiny(dir.path(), &[]);
    let template = dir.path().join("t.jinja");
    std::fs::write(&template, "<<{{ messages[0]['content'] }}>>").unwrap();
    let ids = |extra: &[&str], prompt: &str| {
        let m = dir.path().to_str().unwrap();
        let args = [
            &[
                "generate",
                "--model",
                m,
                "--prompt",
                prompt,
                "--max-tokens",
                "1",
                "--json",
            ][..],
            extra,
        ]
        .concat();
        let v: serde_json::Value = serde_json::from_str(&ok(&warden(&args, &[]))).unwrap();
        v["prompt_tokens"].clone()
    };
    let t = template.to_str().unwrap();
    assert_eq!(
        ids(&["--chat", "--chat-template", t], "Hello"),
        ids(&[], "<<Hello>>")
    );
}
