//! warden's Qwen3 against references nobody here wrote: candle-transformers'
//! `qwen3` (dense safetensors) and `quantized_qwen3` (GGUF), on synthetic
//! checkpoints in the real formats with the real tokenizer.

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, D};
use candle_transformers::models::{quantized_qwen3 as ref_quant, qwen3 as ref_qwen3};
use std::path::Path;
use warden::model::convert::synth::{synth, SynthOptions, SynthShape};
use warden::model::kernels;
use warden::model::{special, LoadedModel};

const PROMPT: &str =
    "<|im_start|>user\nWhere is the Post model defined?<|im_end|>\n<|im_start|>assistant\n";

fn make(dir: &Path, tied: bool, gguf: Option<&str>) {
    synth(&SynthOptions {
        shape: SynthShape::Tiny,
        out: dir.to_path_buf(),
        dtype: DType::F32,
        gguf: gguf.map(|g| warden::model::weights::ggml_type::parse_gguf_type(g).unwrap()),
        gguf_only: false,
        seed: 42,
        tie_word_embeddings: Some(tied),
    })
    .unwrap();
}

fn prompt_ids(m: &LoadedModel) -> Vec<u32> {
    m.tokenizer
        .as_ref()
        .unwrap()
        .encode(PROMPT, false)
        .unwrap()
        .get_ids()
        .to_vec()
}

/// `ids` as a batch of one, as candle-transformers' models take them.
fn batch(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let b = b.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn reference_dense(dir: &Path) -> ref_qwen3::ModelForCausalLM {
    let cfg: ref_qwen3::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    ref_qwen3::ModelForCausalLM::new(&cfg, vb).unwrap()
}

fn check_dense_against_reference(tied: bool) {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), tied, None);
    let mut ours =
        LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let ids = prompt_ids(&ours);
    assert!(ids.len() > 10);

    // Whole prompt at once.
    let mut reference = reference_dense(dir.path());
    let input = batch(&ids);
    let want = reference.forward(&input, 0).unwrap();
    let got = ours.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&got, &want);
    eprintln!("dense (tied: {tied}) full prompt: max abs diff {d:e}");
    assert!(d <= 1e-4, "full prompt: max abs diff {d}");

    // Step by step, through both caches.
    reference.clear_kv_cache();
    ours.model.clear_cache();
    for (pos, &t) in ids.iter().enumerate() {
        let input = batch(&[t]);
        let want = reference.forward(&input, pos).unwrap();
        let got = ours.model.step(t).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-4, "step {pos}: max abs diff {d}");
    }
}

#[test]
fn dense_logits_match_candle_transformers_untied() {
    check_dense_against_reference(false);
}

#[test]
fn dense_logits_match_candle_transformers_tied() {
    check_dense_against_reference(true);
}

/// candle-transformers' `quantized_qwen3` builds its RoPE tables in the
/// dtype named by the non-standard `general.dtype` key, F16 when it is
/// absent (as in files from llama.cpp's converter), which alone moves the
/// logits by ~1e-2. The reference gets a copy of the file with
/// `general.dtype = 0` (F32), so both sides compute in f32 and any
/// difference is ours.
fn f32_rope_copy(gguf: &Path) -> std::path::PathBuf {
    let mut f = std::fs::File::open(gguf).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), ct.tensor(&mut f, n, &Device::Cpu).unwrap()))
        .collect();
    let mut md: Vec<(String, gguf_file::Value)> = ct
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    md.push(("general.dtype".into(), gguf_file::Value::U32(0)));
    let out = gguf.with_extension("f32rope.gguf");
    let mut w = std::fs::File::create(&out).unwrap();
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &md_refs, &t_refs).unwrap();
    out
}

/// candle-transformers' `quantized_qwen3` on (an f32-RoPE copy of) `gguf`.
fn reference_quantized(gguf: &Path) -> ref_quant::ModelWeights {
    let copy = f32_rope_copy(gguf);
    let mut f = std::fs::File::open(&copy).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    ref_quant::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap()
}

/// Both sides multiply the same quantized weights with the same candle
/// kernels (which quantize activations to Q8 per block); what differs is
/// attention, norms and RoPE in f32, so the logits agree to float rounding
/// accumulated over two layers. 1e-3 is two orders of magnitude below the
/// logit spread (≈0.1–1) and far above f32 noise.
#[test]
fn gguf_logits_match_candle_transformers_quantized_qwen3() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), true, Some("q8_0"));
    let gguf = dir.path().join("model-q8_0.gguf");
    let mut ours = LoadedModel::load(gguf.to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let ids = prompt_ids(&ours);
    let mut reference = reference_quantized(&gguf);
    let input = batch(&ids);
    let want = reference.forward(&input, 0).unwrap();
    let want_full = want.clone();
    let got = ours.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&got, &want);
    eprintln!("q8_0 full prompt: max abs diff {d:e}");
    assert!(d <= 1e-3, "full prompt: max abs diff {d}");
    let top = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .argmax(D::Minus1)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap()
    };
    assert_eq!(top(&got), top(&want));
    for (i, &t) in [11u32, 2000, 77].iter().enumerate() {
        let input = batch(&[t]);
        let want = reference.forward(&input, ids.len() + i).unwrap();
        let got = ours.model.step(t).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-3, "step {i}: max abs diff {d}");
    }
    // warden's own kernels for every product, prefill included (by default
    // they decode and candle's prefill where it has AVX-512 tiles).
    kernels::set_choice(kernels::Choice::Warden);
    ours.model.clear_cache();
    let got = ours.model.forward(&ids, false).unwrap();
    kernels::set_choice(kernels::Choice::Auto);
    let d = max_abs_diff(&got, &want_full);
    eprintln!("q8_0 full prompt, warden's kernels: max abs diff {d:e}");
    assert!(d <= 1e-3, "warden's kernels, full prompt: max abs diff {d}");
    assert_eq!(top(&got), top(&want_full));
}

/// The quantized model stays close to the dense one it came from.
#[test]
fn gguf_q8_0_tracks_the_dense_model() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), true, Some("q8_0"));
    let mut dense =
        LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let mut quant = LoadedModel::load(
        dir.path().join("model-q8_0.gguf").to_str().unwrap(),
        &Device::Cpu,
        None,
        false,
    )
    .unwrap();
    let ids = prompt_ids(&dense);
    let a = dense.model.forward(&ids, false).unwrap();
    let b = quant.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(d < 0.05, "q8_0 drifted from f32 by {d}");
}

#[test]
fn prefix_reuse_equals_a_fresh_prefill() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), true, None);
    let mut m = LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let tok = m.tokenizer.clone().unwrap();
    let turn1 = tok.encode(PROMPT, false).unwrap().get_ids().to_vec();
    let turn2 = tok
        .encode(format!("{PROMPT}It is in blog/models.py.<|im_end|>\n<|im_start|>user\nAnd the views?<|im_end|>\n"), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(&turn2[..turn1.len()], &turn1[..]);

    // Fresh, in one chunk.
    m.model.clear_cache();
    let (fresh, reused) = m.model.prefill(&turn2, 4096).unwrap();
    assert_eq!(reused, 0);

    // Turn 1, some decoding that turn 2 does not share, then turn 2.
    m.model.clear_cache();
    m.model.prefill(&turn1, 4096).unwrap();
    m.model.step(special::IM_END).unwrap();
    m.model.step(198).unwrap();
    let (again, reused) = m.model.prefill(&turn2, 5).unwrap();
    assert_eq!(
        reused,
        turn1.len(),
        "the shared prefix is reused, the rest rolled back"
    );
    assert_eq!(m.model.cached_tokens(), &turn2[..]);
    let d = max_abs_diff(&fresh, &again);
    assert!(d <= 1e-5, "prefix reuse changed the logits by {d}");

    // The same prompt again reuses all but the last token.
    let (same, reused) = m.model.prefill(&turn2, 7).unwrap();
    assert_eq!(reused, turn2.len() - 1);
    assert!(max_abs_diff(&fresh, &same) <= 1e-5);
}

#[test]
fn tokenizer_round_trips_and_maps_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), true, None);
    let m = LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let tok = m.tokenizer.unwrap();
    for text in [
        "def post_list(request):\n    return 42  # ünïcödé ✓ 你好",
        "  leading spaces\tand\ttabs\r\n",
        "",
    ] {
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(warden::model::checkpoint::tokenizer_files::TOKENIZER_JSON).unwrap();
    let added = cfg["added_tokens"].as_array().unwrap();
    assert_eq!(added.len(), 26);
    for t in added {
        let content = t["content"].as_str().unwrap();
        let ids = tok.encode(content, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, [t["id"].as_u64().unwrap() as u32], "{content}");
    }
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(special::IM_START));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(special::IM_END));
    assert_eq!(tok.token_to_id("<tool_call>"), Some(151_657));
}

/// A lone `.gguf` (no tokenizer.json beside it) gets its tokenizer from the
/// file's `tokenizer.ggml.*` metadata, and it tokenizes exactly like the
/// real `tokenizer.json`.
#[test]
fn lone_gguf_tokenizer_from_metadata_matches_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), true, Some("q8_0"));
    let lone = tempfile::tempdir().unwrap();
    let gguf = lone.path().join("model.gguf");
    std::fs::copy(dir.path().join("model-q8_0.gguf"), &gguf).unwrap();
    let from_meta = LoadedModel::load(gguf.to_str().unwrap(), &Device::Cpu, None, false)
        .unwrap()
        .tokenizer
        .unwrap();
    let real = tokenizers::Tokenizer::from_bytes(
        warden::model::checkpoint::tokenizer_files::TOKENIZER_JSON,
    )
    .unwrap();
    for text in [
        PROMPT,
        "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"blog/models.py\"}}\n</tool_call>",
        "def post_list(request):\n    return 42  # ünïcödé ✓ 你好  \r\n\n",
        "<think>\nhmm</think> It's 3.14159, isn't it?",
    ] {
        let a = real.encode(text, false).unwrap().get_ids().to_vec();
        let b = from_meta.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(a, b, "{text:?}");
        assert_eq!(from_meta.decode(&b, false).unwrap(), text);
    }
}

/// Every GGUF tensor type users meet loads and gives the same logits as
/// candle-transformers' `quantized_qwen3` on the same file.
#[test]
fn every_gguf_type_matches_the_reference() {
    for (shape, types) in [
        (SynthShape::Tiny, &["q4_0", "q8_0", "f16", "f32"][..]),
        (SynthShape::Small, &["q4_k", "q5_k", "q6_k"][..]),
    ] {
        for ty in types {
            let dir = tempfile::tempdir().unwrap();
            synth(&SynthOptions {
                shape,
                out: dir.path().to_path_buf(),
                dtype: DType::F32,
                gguf: Some(warden::model::weights::ggml_type::parse_gguf_type(ty).unwrap()),
                gguf_only: true,
                seed: 9,
                tie_word_embeddings: Some(false),
            })
            .unwrap();
            let gguf = dir.path().join(format!("model-{ty}.gguf"));
            let mut ours =
                LoadedModel::load(gguf.to_str().unwrap(), &Device::Cpu, None, false).unwrap();
            let ids = prompt_ids(&ours);
            let mut reference = reference_quantized(&gguf);
            let input = batch(&ids);
            let d = max_abs_diff(
                &ours.model.forward(&ids, false).unwrap(),
                &reference.forward(&input, 0).unwrap(),
            );
            eprintln!("{ty}: max abs diff {d:e}");
            assert!(d <= 1e-3, "{ty}: max abs diff {d}");
        }
    }
}

/// A synthetic checkpoint of `shape` (tied, f32), with a GGUF of `gguf`.
fn make_shape(dir: &Path, shape: SynthShape, gguf: Option<&str>) {
    synth(&SynthOptions {
        shape,
        out: dir.to_path_buf(),
        dtype: DType::F32,
        gguf: gguf.map(|g| warden::model::weights::ggml_type::parse_gguf_type(g).unwrap()),
        gguf_only: false,
        seed: 7,
        tie_word_embeddings: None,
    })
    .unwrap();
}

fn safetensors_vb(dir: &Path) -> candle_nn::VarBuilder<'static> {
    unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    }
}

/// The Llama family (no q/k norms, head width from the width) with Llama
/// 3's RoPE scaling, against candle-transformers' `llama`: the last
/// position's logits after the whole prompt, then token by token.
#[test]
fn llama_logits_match_candle_transformers_llama() {
    use candle_transformers::models::llama as ref_llama;
    let dir = tempfile::tempdir().unwrap();
    make_shape(dir.path(), SynthShape::TinyLlama3, None);
    let mut ours =
        LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let ids = prompt_ids(&ours);
    let cfg: ref_llama::LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert!(cfg.rope_scaling.is_some(), "the shape scales RoPE");
    let cfg = cfg.into_config(false);
    let reference = ref_llama::Llama::load(safetensors_vb(dir.path()), &cfg).unwrap();
    let mut cache = ref_llama::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    let want = reference.forward(&batch(&ids), 0, &mut cache).unwrap();
    let got = ours.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&got, &want);
    eprintln!("llama full prompt: max abs diff {d:e}");
    assert!(d <= 1e-4, "full prompt: max abs diff {d}");
    for (i, &t) in [11u32, 2000, 77].iter().enumerate() {
        let want = reference
            .forward(&batch(&[t]), ids.len() + i, &mut cache)
            .unwrap();
        let got = ours.model.step(t).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-4, "step {i}: max abs diff {d}");
    }
}

/// Qwen2 (biases on q/k/v, none on o) against candle-transformers' `qwen2`.
#[test]
fn qwen2_logits_match_candle_transformers_qwen2() {
    use candle_transformers::models::qwen2 as ref_qwen2;
    let dir = tempfile::tempdir().unwrap();
    make_shape(dir.path(), SynthShape::TinyQwen2, None);
    let mut ours =
        LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let ids = prompt_ids(&ours);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    // candle's config wants a number where Qwen's says null.
    v["sliding_window"] = 4096.into();
    let cfg: ref_qwen2::Config = serde_json::from_value(v).unwrap();
    let mut reference = ref_qwen2::ModelForCausalLM::new(&cfg, safetensors_vb(dir.path())).unwrap();
    let want = reference.forward(&batch(&ids), 0).unwrap();
    let got = ours.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&got, &want);
    eprintln!("qwen2 full prompt: max abs diff {d:e}");
    assert!(d <= 1e-4, "full prompt: max abs diff {d}");
    for (i, &t) in [11u32, 2000, 77].iter().enumerate() {
        let want = reference.forward(&batch(&[t]), ids.len() + i).unwrap();
        let got = ours.model.step(t).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-4, "step {i}: max abs diff {d}");
    }
}

/// A Llama GGUF as warden writes it (query and key rows in llama.cpp's
/// interleaved order) against candle-transformers' `quantized_llama`,
/// which rotates the file's rows in interleaved pairs as llama.cpp does:
/// agreement means the rows were written and read back in the right order.
#[test]
fn llama_gguf_logits_match_candle_transformers_quantized_llama() {
    use candle_transformers::models::quantized_llama as ref_qllama;
    let dir = tempfile::tempdir().unwrap();
    make_shape(dir.path(), SynthShape::TinyLlama, Some("q8_0"));
    let gguf = dir.path().join("model-q8_0.gguf");
    let mut ours = LoadedModel::load(gguf.to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    let ids = prompt_ids(&ours);
    let mut f = std::fs::File::open(&gguf).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    assert_eq!(
        ct.metadata["general.architecture"].to_string().unwrap(),
        "llama"
    );
    let mut reference = ref_qllama::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
    let want = reference.forward(&batch(&ids), 0).unwrap();
    let got = ours.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&got, &want);
    eprintln!("llama q8_0 full prompt: max abs diff {d:e}");
    assert!(d <= 1e-3, "full prompt: max abs diff {d}");
    for (i, &t) in [11u32, 2000, 77].iter().enumerate() {
        let want = reference.forward(&batch(&[t]), ids.len() + i).unwrap();
        let got = ours.model.step(t).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-3, "step {i}: max abs diff {d}");
    }
    // Read back, the GGUF is the dense model it was written from (rows in
    // Hugging Face's order again): q8_0 moves the logits only a little.
    let mut dense =
        LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, None, false).unwrap();
    ours.model.clear_cache();
    let a = dense.model.forward(&ids, false).unwrap();
    let b = ours.model.forward(&ids, false).unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(
        d < 0.05,
        "the llama q8_0 GGUF drifted from its f32 source by {d}"
    );
}
