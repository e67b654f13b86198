//! Bad model input gets a clear error naming the file and the problem,
//! never a panic.

use candle_core::{DType, Device};
use std::path::Path;
use warden::model::convert::synth::{synth, SynthOptions, SynthShape};
use warden::model::LoadedModel;

fn tiny(dir: &Path) {
    synth(&SynthOptions {
        shape: SynthShape::Tiny,
        out: dir.to_path_buf(),
        dtype: DType::F32,
        gguf: Some(candle_core::quantized::GgmlDType::Q8_0),
        gguf_only: false,
        seed: 1,
        tie_word_embeddings: None,
    })
    .unwrap();
}

fn load_err(spec: &Path) -> String {
    match LoadedModel::load(spec.to_str().unwrap(), &Device::Cpu, None, false) {
        Ok(_) => panic!("{} loaded", spec.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

#[test]
fn missing_paths_and_hub_names_say_where_they_looked() {
    let msg = load_err(Path::new("/nonexistent/model-dir"));
    assert!(
        msg.contains("/nonexistent/model-dir does not exist"),
        "{msg}"
    );
    let msg = load_err(Path::new("NoSuchOrg/NoSuchModel"));
    assert!(
        msg.contains("models--NoSuchOrg--NoSuchModel") && msg.contains("never downloads"),
        "{msg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("config.json"), "{msg}");
    // A mistyped local path (its first component exists here) is a path,
    // not a hub name; so are ./x and x.gguf.
    for spec in ["tests/nope", "./nope/model", "models/x.gguf"] {
        let msg = load_err(Path::new(spec));
        assert!(msg.contains(&format!("{spec} does not exist")), "{msg}");
        assert!(!msg.contains("Hugging Face cache"), "{msg}");
    }
}

#[test]
fn other_architectures_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    // (Llama and Qwen2 run since issue 30; Gemma 2 does not.)
    edit_config(dir.path(), |v| {
        v["model_type"] = "gemma2".into();
        v["architectures"] = serde_json::json!(["Gemma2ForCausalLM"]);
    });
    let msg = load_err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("\"gemma2\" is not supported"),
        "{msg}"
    );

    // A GGUF of another architecture.
    let gguf = dir.path().join("model-q8_0.gguf");
    let mut bytes = std::fs::read(&gguf).unwrap();
    let pos = bytes.windows(5).position(|w| w == b"qwen3").unwrap();
    bytes[pos..pos + 5].copy_from_slice(b"gemma");
    std::fs::write(&gguf, bytes).unwrap();
    let msg = load_err(&gguf);
    assert!(
        msg.contains("\"gemma\"") && msg.contains("model-q8_0.gguf"),
        "{msg}"
    );
}

#[test]
fn truncated_and_corrupt_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("model.safetensors is truncated"), "{msg}");
    std::fs::write(&st, b"\x10\0\0\0\0\0\0\0{not json at all").unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains("model.safetensors") && msg.contains("corrupt"),
        "{msg}"
    );
    std::fs::write(&st, b"abc").unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("not a safetensors file"), "{msg}");
}

#[test]
fn truncated_and_corrupt_gguf() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let gguf = dir.path().join("model-q8_0.gguf");
    let bytes = std::fs::read(&gguf).unwrap();
    std::fs::write(&gguf, &bytes[..bytes.len() - 1000]).unwrap();
    let msg = load_err(&gguf);
    assert!(msg.contains("model-q8_0.gguf is truncated"), "{msg}");
    std::fs::write(&gguf, b"GGUF\x03\0\0\0garbage").unwrap();
    let msg = load_err(&gguf);
    assert!(msg.contains("not a readable GGUF file"), "{msg}");
    std::fs::write(&gguf, b"not gguf").unwrap();
    let msg = load_err(&gguf);
    assert!(msg.contains("not a readable GGUF file"), "{msg}");
}

/// Rewrites the JSON header of `dir`'s model.safetensors, keeping its data.
fn edit_safetensors_header(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    f(&mut header);
    let mut text = header.to_string().into_bytes();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(p, out).unwrap();
}

#[test]
fn safetensors_entries_are_checked_before_use() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &[&str]); 5] = [
        (
            "a shape whose element count wraps",
            |h| h["model.norm.weight"]["shape"] = serde_json::json!([4611686018427387904u64, 4]),
            &["model.safetensors is corrupt: tensor model.norm.weight has a shape", "too large"],
        ),
        (
            "an entry without byte offsets",
            |h| h["model.norm.weight"]["data_offsets"] = "0-256".into(),
            &["model.safetensors has a corrupt safetensors header: bad entry for model.norm.weight"],
        ),
        (
            "a shape that does not fit the stored bytes",
            |h| h["model.norm.weight"]["shape"] = serde_json::json!([65]),
            &["model.safetensors is corrupt: tensor model.norm.weight of shape [65]"],
        ),
        (
            "a dtype warden does not read",
            |h| h["model.norm.weight"]["dtype"] = "I32".into(),
            &["tensor model.norm.weight is stored as I32", "GGUF"],
        ),
        (
            "a tensor the model needs is absent",
            |h| {
                h.as_object_mut()
                    .unwrap()
                    .remove("model.layers.1.mlp.up_proj.weight");
            },
            &[
                "model.safetensors",
                "tensor model.layers.1.mlp.up_proj.weight is missing",
            ],
        ),
    ];
    for (what, edit, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path());
        edit_safetensors_header(dir.path(), edit);
        let msg = load_err(dir.path());
        for w in want {
            assert!(msg.contains(w), "{what}: {msg}");
        }
    }
}

#[test]
fn wrong_tensor_shape_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    edit_config(dir.path(), |v| v["intermediate_size"] = 96.into());
    let msg = load_err(dir.path());
    assert!(
        msg.contains("mlp.gate_proj.weight") && msg.contains("shape"),
        "{msg}"
    );
}

#[test]
fn tokenizer_that_does_not_fit_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    edit_config(dir.path(), |v| v["vocab_size"] = 1000.into());
    let msg = load_err(dir.path());
    assert!(
        msg.contains("tokenizer.json has 151669 tokens") && msg.contains("1000 rows"),
        "{msg}"
    );
}

#[test]
fn out_of_vocabulary_ids_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let mut m = LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let e = m
        .model
        .forward(&[5, 999_999], false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("999999") && e.contains("outside the vocabulary"),
        "{e}"
    );
    assert!(m.model.prefill(&[], 8).is_err());
    // The model is still usable.
    m.model.forward(&[5, 6], false).unwrap();
}

#[test]
fn k_quants_need_rows_of_256() {
    let dir = tempfile::tempdir().unwrap();
    let e = synth(&SynthOptions {
        shape: SynthShape::Tiny,
        out: dir.path().to_path_buf(),
        dtype: DType::F32,
        gguf: Some(candle_core::quantized::GgmlDType::Q4K),
        gguf_only: true,
        seed: 1,
        tie_word_embeddings: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("block size 256"), "{e}");
}

mod hostile_files {
    //! Model files crafted to crash a reader: every one is an error naming
    //! the file, never a panic or an abort.

    use super::{load_err, tiny};
    use candle_core::quantized::{gguf_file, QTensor};
    use candle_core::Device;
    use std::path::Path;
    use warden::model::LoadedModel;

    /// `src` rewritten to `dst` with its metadata edited, tensors as they are.
    fn rewrite_gguf(
        src: &Path,
        dst: &Path,
        edit: impl FnOnce(&mut Vec<(String, gguf_file::Value)>),
    ) {
        let mut f = std::fs::File::open(src).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let mut md: Vec<(String, gguf_file::Value)> = ct.metadata.clone().into_iter().collect();
        md.sort_by(|a, b| a.0.cmp(&b.0));
        edit(&mut md);
        let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
        names.sort();
        let tensors: Vec<(String, QTensor)> = names
            .iter()
            .map(|n| ((*n).clone(), ct.tensor(&mut f, n, &Device::Cpu).unwrap()))
            .collect();
        let md_refs: Vec<(&str, &gguf_file::Value)> =
            md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut out = std::fs::File::create(dst).unwrap();
        gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
    }

    fn set(md: &mut Vec<(String, gguf_file::Value)>, key: &str, v: gguf_file::Value) {
        md.retain(|(k, _)| k != key);
        md.push((key.into(), v));
    }

    #[test]
    fn hostile_gguf_metadata_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path());
        let src = dir.path().join("model-q8_0.gguf");
        let cases: Vec<(&str, gguf_file::Value, &str)> = vec![
            (
                "general.alignment",
                gguf_file::Value::U32(0),
                "not a readable GGUF file",
            ),
            (
                "general.alignment",
                gguf_file::Value::U32(24),
                "not a power of two",
            ),
            (
                "qwen3.attention.key_length",
                gguf_file::Value::U64(1 << 62),
                "head_dim = 4611686018427387904 is past warden's bound",
            ),
            (
                "qwen3.feed_forward_length",
                gguf_file::Value::U64(1 << 62),
                "intermediate_size = 4611686018427387904 is past warden's bound",
            ),
            (
                "qwen3.block_count",
                gguf_file::Value::U64(1 << 40),
                "num_hidden_layers = 1099511627776 is past warden's bound",
            ),
            (
                "qwen3.block_count",
                gguf_file::Value::U32(3),
                "the config says 3 layers but the checkpoint has 2",
            ),
            (
                "qwen3.attention.layer_norm_rms_epsilon",
                gguf_file::Value::F32(f32::NAN),
                "rms_norm_eps = NaN must be a positive number",
            ),
            (
                "qwen3.rope.dimension_count",
                gguf_file::Value::U32(8),
                "partial rotary embeddings are not supported",
            ),
            (
                "qwen3.rope.scaling.type",
                gguf_file::Value::String("yarn".into()),
                "qwen3.rope.scaling.type = \"yarn\" is not supported",
            ),
        ];
        for (i, (key, value, want)) in cases.into_iter().enumerate() {
            let dst = dir.path().join(format!("bad{i}.gguf"));
            rewrite_gguf(&src, &dst, |md| set(md, key, value.clone()));
            let msg = load_err(&dst);
            assert!(msg.contains(want), "{key} = {value:?}: {msg}");
            assert!(msg.contains(&format!("bad{i}.gguf")), "{key}: {msg}");
        }
    }

    #[test]
    fn a_huge_context_length_loads_with_a_bounded_rope_table() {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path());
        let src = dir.path().join("model-q8_0.gguf");
        let dst = dir.path().join("long.gguf");
        rewrite_gguf(&src, &dst, |md| {
            set(
                md,
                "qwen3.context_length",
                gguf_file::Value::U64(4_000_000_000),
            )
        });
        // Without a bound, the tables alone would be 2 × 4e9 × head_dim/2
        // floats: an abort.
        let m = LoadedModel::load(dst.to_str().unwrap(), &Device::Cpu, None, false).unwrap();
        assert_eq!(m.model.config().max_position_embeddings, 4_000_000_000);
        // The same through config.json.
        super::edit_config(dir.path(), |c| {
            c["max_position_embeddings"] = 3_000_000_000u64.into()
        });
        LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    }

    /// A GGUF v3 file written byte by byte: `kvs` of (key, type id, value
    /// bytes) and `tensors` of (name, dims in GGUF order, ggml type).
    fn raw_gguf(kvs: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
        let s = |t: &str| {
            let mut b = (t.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(t.as_bytes());
            b
        };
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        for (k, ty, v) in kvs {
            out.extend(s(k));
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(v);
        }
        for (name, dims, ty) in tensors {
            out.extend(s(name));
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend_from_slice(&[0u8; 4096]);
        out
    }

    #[test]
    fn tensor_dimensions_whose_product_wraps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let u32v = |x: u32| x.to_le_bytes().to_vec();
        let f32v = |x: f32| x.to_le_bytes().to_vec();
        let arch = {
            let mut b = 5u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"qwen3");
            b
        };
        let kvs = vec![
            ("general.architecture", 8, arch),
            ("qwen3.embedding_length", 4, u32v(64)),
            ("qwen3.feed_forward_length", 4, u32v(128)),
            ("qwen3.block_count", 4, u32v(1)),
            ("qwen3.attention.head_count", 4, u32v(2)),
            ("qwen3.attention.head_count_kv", 4, u32v(1)),
            ("qwen3.attention.key_length", 4, u32v(32)),
            ("qwen3.context_length", 4, u32v(256)),
            ("qwen3.rope.freq_base", 6, f32v(10000.0)),
            ("qwen3.attention.layer_norm_rms_epsilon", 6, f32v(1e-6)),
        ];
        // 2^62 × 4 f32 elements: 2^64, which wraps to 0 bytes.
        let dims: &[u64] = &[4, 1 << 62];
        let p = dir.path().join("wrap.gguf");
        std::fs::write(&p, raw_gguf(&kvs, &[("token_embd.weight", dims, 0)])).unwrap();
        let msg = load_err(&p);
        assert!(msg.contains("wrap.gguf"), "{msg}");
        assert!(
            msg.contains("overflows") || msg.contains("ends past"),
            "{msg}"
        );
    }

    #[test]
    fn a_backtracking_pre_tokenizer_regex_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path());
        let p = dir.path().join("tokenizer.json");
        let mut tok: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        tok["pre_tokenizer"] = serde_json::json!({
            "type": "Split",
            "pattern": {"Regex": "(x|xx)+y$"},
            "behavior": "Isolated",
            "invert": false
        });
        std::fs::write(&p, tok.to_string()).unwrap();
        let mut m =
            LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
        let text = "x".repeat(36);
        let params = warden::model::SamplingParams::default();
        let e = match warden::model::generate(&mut m, &text, 4, &params, &[], |_| true) {
            Ok(_) => panic!("tokenized a backtracking regex"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains("tokenizer failed on this text"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
