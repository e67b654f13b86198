//! LoRA adapters end to end: unfused equals fused, both file formats agree,
//! quantized bases (GGUF, MLX) carry adapters, `warden fuse` / `warden
//! quantize` write models that load back, and the delta-survival report.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{ok, warden};
use serde_json::Value;
use std::path::{Path, PathBuf};
use warden::model::adapter::write::write_adapter;
use warden::model::adapter::{Adapter, AdapterFormat};
use warden::model::convert::quantize::QuantFormat;
use warden::model::{Checkpoint, LoadedModel};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny base (safetensors + q8_0 GGUF) and an adapter in `format` with
/// deltas of relative size `delta`.
fn synth(dir: &Path, format: &str, delta: &str) -> PathBuf {
    let args = [
        "synth",
        "--shape",
        "tiny",
        "--out",
        s(dir),
        "--gguf",
        "q8_0",
        "--seed",
        "11",
        "--adapter",
        format,
        "--rank",
        "4",
        "--delta-scale",
        delta,
    ];
    ok(&warden(&args, dir));
    dir.join(if format == "peft" {
        "adapter-peft"
    } else {
        "adapter-mlx"
    })
}

/// `warden fuse` of `adapter` into `base`, written to `out`; its output.
fn fuse(base: &Path, adapter: &Path, out: &Path) -> String {
    let args = [
        "fuse",
        "--model",
        s(base),
        "--adapter",
        s(adapter),
        "--out",
        s(out),
    ];
    ok(&warden(&args, out.parent().unwrap()))
}

const PROMPT: &str =
    "<|im_start|>user\nFind the UserSerializer class<|im_end|>\n<|im_start|>assistant\n";

/// Logits at every prompt position.
fn logits(model: &str, adapters: &[&Path]) -> Tensor {
    let mut m = LoadedModel::load(model, &Device::Cpu, Some(DType::F32), false).unwrap();
    let dirs: Vec<PathBuf> = adapters.iter().map(|p| p.to_path_buf()).collect();
    m.apply_adapters(&dirs).unwrap();
    let ids = m
        .tokenizer
        .as_ref()
        .unwrap()
        .encode(PROMPT, false)
        .unwrap()
        .get_ids()
        .to_vec();
    m.model.forward(&ids, true).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn unfused_equals_fused_in_f32_for_peft_and_mlx() {
    for format in ["peft", "mlx"] {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let adapter = synth(&base, format, "0.5");
        let fused = dir.path().join("fused");
        let out = fuse(&base, &adapter, &fused);
        assert!(
            out.contains("merged 1 adapter(s) into 14 matrices"),
            "{out}"
        );
        let plain = logits(s(&base), &[]);
        let unfused = logits(s(&base), &[&adapter]);
        let merged = logits(s(&fused), &[]);
        let d = max_diff(&unfused, &merged);
        assert!(d <= 1e-4, "{format}: unfused vs fused {d}");
        // And the adapter does change the model, so the comparison means something.
        assert!(
            max_diff(&plain, &unfused) > 1e-2,
            "{format}: the adapter changed nothing"
        );
        // The fused directory carries the tokenizer and chat template.
        assert!(fused.join("tokenizer.json").exists());
        let tc: Value =
            serde_json::from_slice(&std::fs::read(fused.join("tokenizer_config.json")).unwrap())
                .unwrap();
        assert!(tc["chat_template"]
            .as_str()
            .unwrap()
            .contains("<tool_call>"));
    }
}

#[test]
fn an_adapter_whose_b_is_zero_leaves_logits_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let adapter = synth(&base, "peft", "0.5");
    let cfg = Checkpoint::open(s(&base), &Device::Cpu).unwrap().config;
    let mut a = Adapter::load(&adapter, &cfg).unwrap();
    for m in &mut a.modules {
        m.b = m.b.zeros_like().unwrap();
    }
    let zero = dir.path().join("zero");
    write_adapter(
        &zero,
        AdapterFormat::Peft,
        &a.modules,
        None,
        "base",
        cfg.num_hidden_layers,
    )
    .unwrap();
    for model in [base.clone(), base.join("model-q8_0.gguf")] {
        let plain = logits(s(&model), &[])
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let with = logits(s(&model), &[&zero])
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            plain
                .iter()
                .zip(&with)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}",
            model.display()
        );
    }
}

#[test]
fn peft_and_mlx_files_holding_the_same_delta_give_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let (b1, b2) = (dir.path().join("p"), dir.path().join("m"));
    let peft = synth(&b1, "peft", "0.3");
    let mlx = synth(&b2, "mlx", "0.3");
    let a = logits(s(&b1), &[&peft]);
    let b = logits(s(&b1), &[&mlx]);
    assert_eq!(max_diff(&a, &b), 0.0);
    // Stacked, the delta counts twice: different from one, same either order.
    let twice = logits(s(&b1), &[&peft, &mlx]);
    let twice_rev = logits(s(&b1), &[&mlx, &peft]);
    assert!(max_diff(&twice, &a) > 1e-3);
    assert!(max_diff(&twice, &twice_rev) < 1e-5);
}

#[test]
fn unfused_over_q8_0_stays_within_the_bases_own_quantization_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let adapter = synth(&base, "peft", "0.5");
    let fused = dir.path().join("fused");
    fuse(&base, &adapter, &fused);
    let gguf = base.join("model-q8_0.gguf");
    // What quantizing the base to q8_0 costs by itself...
    let d_base = max_diff(&logits(s(&gguf), &[]), &logits(s(&base), &[]));
    // ...bounds what the adapter over the q8_0 base is off from fused f32:
    // the LoRA path itself runs in f32, so only the base's rounding differs.
    let d = max_diff(&logits(s(&gguf), &[&adapter]), &logits(s(&fused), &[]));
    assert!(d_base > 0.0);
    assert!(
        d <= 2.0 * d_base + 1e-4,
        "adapter over q8_0: {d}, q8_0 base alone: {d_base}"
    );
}

#[test]
fn mlx_checkpoints_written_by_quantize_load_back_as_the_dequantized_weights() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let adapter = synth(&base, "mlx", "0.5");
    let original = Checkpoint::open(s(&base), &Device::Cpu)
        .unwrap()
        .dense_tensors()
        .unwrap();
    for (to, group) in [
        ("mlx-8", "64"),
        ("mlx-5", "32"),
        ("mlx-4", "64"),
        ("mlx-3", "32"),
    ] {
        let out = dir.path().join(format!("{to}-{group}"));
        let text = ok(&warden(
            &[
                "quantize",
                "--model",
                s(&base),
                "--out",
                s(&out),
                "--to",
                to,
                "--group-size",
                group,
            ],
            dir.path(),
        ));
        assert!(text.contains("model.safetensors"), "{text}");
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            cfg["quantization"]["group_size"].as_u64(),
            Some(group.parse().unwrap())
        );
        let fmt = QuantFormat::parse(to, Some(group.parse().unwrap())).unwrap();
        let mut ck = Checkpoint::open(s(&out), &Device::Cpu).unwrap();
        assert_eq!(ck.format, warden::model::ModelFormat::Mlx);
        for ((name, got), (_, w)) in ck.dense_tensors().unwrap().iter().zip(&original) {
            let want = if w.rank() == 2 {
                fmt.roundtrip(w).unwrap()
            } else {
                w.to_dtype(DType::BF16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
            };
            assert_eq!(max_diff(got, &want), 0.0, "{to}/{group}: {name}");
        }
        // It runs, with the adapter on top, and a session log would say so.
        let l = logits(s(&out), &[&adapter]);
        assert!(l
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|x| x.is_finite()));
    }
}

#[test]
fn ggufs_written_by_quantize_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    synth(&base, "peft", "0.5");
    let reference = logits(s(&base), &[]);
    for to in ["q8_0", "q5_0", "q4_0", "q4_k"] {
        let out = dir.path().join(format!("m-{to}.gguf"));
        let o = warden(
            &[
                "quantize",
                "--model",
                s(&base),
                "--out",
                s(&out),
                "--to",
                to,
                "--json",
            ],
            dir.path(),
        );
        let v: Value = serde_json::from_str(&ok(&o)).unwrap();
        // The tiny shape's 64-wide rows cannot hold 256-wide K-quant blocks:
        // those matrices fall back, and the report says which.
        assert_eq!(
            v["fallbacks"].as_array().unwrap().is_empty(),
            to != "q4_k",
            "{v}"
        );
        let l = logits(s(&out), &[]);
        let d = max_diff(&l, &reference);
        assert!(d < 0.5, "{to}: {d}");
        // Its template and tokenizer travel inside the file.
        let tpl = warden::chat::ChatTemplate::for_model(&out).unwrap();
        assert!(tpl.source().contains("<tool_call>"));
    }
    // A GGUF asked to go into a directory is refused with the fix.
    let o = warden(
        &[
            "quantize",
            "--model",
            s(&base),
            "--out",
            s(dir.path()),
            "--to",
            "q8_0",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("writes one file"));

    // --embedding-type: the token embedding in its own type, the rest in --to.
    let out = dir.path().join("mixed.gguf");
    let args = |emb: &str, to: &str, out: &Path| -> Vec<String> {
        [
            "quantize",
            "--model",
            s(&base),
            "--out",
            s(out),
            "--to",
            to,
            "--embedding-type",
            emb,
        ]
        .map(String::from)
        .to_vec()
    };
    let a = args("q8_0", "q4_0", &out);
    ok(&warden(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    ));
    let mut f = std::fs::File::open(&out).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    use candle_core::quantized::GgmlDType;
    assert_eq!(
        content.tensor_infos["token_embd.weight"].ggml_dtype,
        GgmlDType::Q8_0
    );
    assert_eq!(
        content.tensor_infos["blk.0.attn_q.weight"].ggml_dtype,
        GgmlDType::Q4_0
    );
    let plain = logits(s(&dir.path().join("m-q4_0.gguf")), &[]);
    let mixed = logits(s(&out), &[]);
    // A wider embedding (the tied output layer too) is closer to f32.
    assert!(max_diff(&mixed, &reference) < max_diff(&plain, &reference));
    // MLX has no such option; a type that does not exist is named.
    let a = args("q8_0", "mlx-4", &dir.path().join("mlx"));
    let o = warden(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("GGUF formats only"));
    let a = args("q9_x", "q4_0", &dir.path().join("bad.gguf"));
    let o = warden(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown GGUF type"));
}

#[test]
fn fuse_quantize_reports_the_delta_survival_and_says_when_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let small = synth(&base, "peft", "0.02");
    let fused = dir.path().join("fused");
    // `warden fuse` of the small adapter into `fused`, then `extra`.
    let fuse_small = |extra: &[&str]| {
        let args = [
            &[
                "fuse",
                "--model",
                s(&base),
                "--adapter",
                s(&small),
                "--out",
                s(&fused),
            ][..],
            extra,
        ]
        .concat();
        warden(&args, dir.path())
    };
    let text = ok(&fuse_small(&["--quantize", "q4_0"]));
    assert!(
        text.contains("Most of the adapter's delta is lost in q4_0"),
        "{text}"
    );
    assert!(
        text.contains("serve the adapter unfused") || text.contains("Serve the adapter unfused"),
        "{text}"
    );
    assert!(fused.join("model-q4_0.gguf").exists());
    // q6_k's blocks hold 256 values; the tiny model's rows hold 64 or 128:
    // every matrix is written as q8_0 (llama.cpp's fallback for q6_k), the
    // delta is measured as written, and no "lost" verdict rests on it.
    let text = ok(&fuse_small(&["--quantize", "q6_k"]));
    assert!(!text.contains("is lost"), "{text}");
    assert!(text.contains("(written as q8_0)"), "{text}");
    assert!(text.contains("the delta survives q6_k"), "{text}");
    assert!(
        text.contains("note: most of this file is not q6_k"),
        "{text}"
    );
    let text = ok(&warden(
        &[
            "quantize",
            "--model",
            s(&base),
            "--out",
            s(&dir.path().join("q.gguf")),
            "--to",
            "q4_k",
        ],
        dir.path(),
    ));
    assert!(
        text.contains("note: most of this file is not q4_k"),
        "{text}"
    );
    // --embedding-type: the fused model's token embedding in its own type.
    let mixed = dir.path().join("fused-mixed.gguf");
    let text = ok(&fuse_small(&[
        "--quantize",
        "q4_0",
        "--quantized-out",
        s(&mixed),
        "--embedding-type",
        "q8_0",
    ]));
    assert!(
        text.contains("Most of the adapter's delta is lost in q4_0"),
        "{text}"
    );
    let mut f = std::fs::File::open(&mixed).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    use candle_core::quantized::GgmlDType;
    assert_eq!(
        content.tensor_infos["token_embd.weight"].ggml_dtype,
        GgmlDType::Q8_0
    );
    assert_eq!(
        content.tensor_infos["blk.0.attn_q.weight"].ggml_dtype,
        GgmlDType::Q4_0
    );
    // An MLX format has no per-tensor types.
    let m4 = dir.path().join("m4");
    let o = fuse_small(&[
        "--quantize",
        "mlx-4",
        "--quantized-out",
        s(&m4),
        "--embedding-type",
        "q8_0",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("GGUF formats only"));
    let json = |fmt: &str, adapter: &Path, out: &str| -> Value {
        let o = warden(
            &[
                "fuse",
                "--model",
                s(&base),
                "--adapter",
                s(adapter),
                "--out",
                s(&dir.path().join(out)),
                "--quantize",
                fmt,
                "--json",
            ],
            dir.path(),
        );
        serde_json::from_str(&ok(&o)).unwrap()
    };
    let v8 = json("mlx-8", &small, "f8");
    let v4 = json("mlx-4", &small, "f4");
    let cos = |v: &Value| v["survival"]["total"]["cosine"].as_f64().unwrap();
    assert!(cos(&v8) > cos(&v4), "{} vs {}", cos(&v8), cos(&v4));
    assert_eq!(v8["survival"]["matrices"].as_array().unwrap().len(), 14);
    assert_eq!(v4["survival"]["lost"], true);
    assert!(dir.path().join("f4/mlx-4/config.json").exists());
    // A GGUF base is dequantized first, and the output says so.
    let text = ok(&warden(
        &[
            "fuse",
            "--model",
            s(&base.join("model-q8_0.gguf")),
            "--adapter",
            s(&small),
            "--out",
            s(&dir.path().join("fg")),
        ],
        dir.path(),
    ));
    assert!(
        text.contains("the base is stored GGUF q8_0: dequantized it to f32 before merging"),
        "{text}"
    );
}

#[test]
fn sessions_generate_and_bench_take_adapters_and_the_log_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let adapter = synth(&base, "mlx", "0.5");
    let o = warden(
        &[
            "run",
            "--model",
            s(&base),
            "--adapter",
            s(&adapter),
            "--policy",
            "policies/default.toml",
            "--workspace",
            "examples/workspace",
            "--max-tokens",
            "8",
            "--json",
            "Find all Django view functions",
        ],
        dir.path(),
    );
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    let recs = warden::audit::read_records(Path::new(v["log"].as_str().unwrap())).unwrap();
    let a = &recs[0].value["adapter"][0];
    assert_eq!(a["format"], "mlx_lm");
    assert_eq!(a["rank"], 4);
    assert_eq!(a["scale"], 2.0);
    assert_eq!(a["path"].as_str().unwrap(), s(&adapter));
    assert_eq!(
        a["sha256"].as_str().unwrap(),
        warden::audit::sha256_file(&adapter.join("adapters.safetensors")).unwrap()
    );
    let o = warden(
        &[
            "generate",
            "--model",
            s(&base),
            "--adapter",
            s(&adapter),
            "--prompt",
            "hi",
            "--max-tokens",
            "3",
            "--json",
        ],
        dir.path(),
    );
    ok(&o);
    let o = warden(
        &[
            "bench",
            "--model",
            s(&base.join("model-q8_0.gguf")),
            "--adapter",
            s(&adapter),
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "4",
            "--repeat",
            "1",
            "--json",
        ],
        dir.path(),
    );
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert!(v["base_decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["adapter_decode_cost_pct"].is_number());
    // An adapter for another base is refused before anything runs.
    let other = dir.path().join("other");
    ok(&warden(
        &[
            "synth",
            "--shape",
            "small",
            "--out",
            s(&other),
            "--adapter",
            "peft",
        ],
        dir.path(),
    ));
    let o = warden(
        &[
            "generate",
            "--model",
            s(&base),
            "--adapter",
            s(&other.join("adapter-peft")),
            "--prompt",
            "hi",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("another base model"),
        "{e}"
    );
}

/// An adapter that carries its chat template (`chat_template.jinja`, as
/// `finetune --chat-template` writes it) makes the runs that apply it use
/// that template, and its fused model — directory or GGUF — carries it on.
#[test]
fn an_adapters_chat_template_goes_with_it_into_runs_and_fused_models() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = synth(dir.path(), "peft", "0.1");
    let template = "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}";
    std::fs::write(adapter.join("chat_template.jinja"), template).unwrap();
    let conv = dir.path().join("conv.json");
    std::fs::write(
        &conv,
        r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
    )
    .unwrap();
    let prompt = |model: &Path, adapter: Option<&Path>| {
        let mut args = vec!["prompt", "--model", s(model), "--conversation", s(&conv)];
        if let Some(a) = adapter {
            args.extend(["--adapter", s(a)]);
        }
        ok(&warden(&args, dir.path()))
    };
    assert_eq!(
        prompt(dir.path(), Some(&adapter)),
        "<<user>>hi<<assistant>>"
    );
    assert!(prompt(dir.path(), None).starts_with("<|im_start|>user"));
    // Fused into a directory, and into a GGUF.
    let fused = dir.path().join("fused");
    fuse(dir.path(), &adapter, &fused);
    assert_eq!(
        std::fs::read_to_string(fused.join("chat_template.jinja")).unwrap(),
        template
    );
    assert_eq!(prompt(&fused, None), "<<user>>hi<<assistant>>");
    let gguf = dir.path().join("fused-q8_0.gguf");
    ok(&warden(
        &[
            "fuse",
            "--model",
            s(dir.path()),
            "--adapter",
            s(&adapter),
            "--out",
            s(&fused),
            "--quantize",
            "q8_0",
            "--quantized-out",
            s(&gguf),
        ],
        dir.path(),
    ));
    let lone = dir.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    std::fs::rename(&gguf, lone.join("m.gguf")).unwrap();
    assert_eq!(
        prompt(&lone.join("m.gguf"), None),
        "<<user>>hi<<assistant>>"
    );
}
