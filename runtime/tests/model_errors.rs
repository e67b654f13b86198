//! Bad model input gets a clear error naming the file and the problem,
//! never a panic.

use candle_core::{DType, Device};
use std::path::Path;
use warden::model::synth::{synth, SynthOptions, SynthShape};
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
}

#[test]
fn other_architectures_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    edit_config(dir.path(), |v| {
        v["model_type"] = "llama".into();
        v["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    });
    let msg = load_err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("\"llama\" is not supported"),
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
    let cases: [(&str, Edit, &[&str]); 4] = [
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
