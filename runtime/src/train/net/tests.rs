use super::*;
use crate::model::convert::synth::{synth, SynthOptions, SynthShape};
use crate::model::{Checkpoint, LoadedModel};

const PROMPT: &str = "<|im_start|>user\nWhere is the Post model defined?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n";

fn model(dir: &std::path::Path, tied: bool) -> (Vec<u32>, Vec<(String, Tensor)>, Qwen3Config) {
    model_of(dir, SynthShape::Tiny, tied)
}

fn model_of(
    dir: &std::path::Path,
    shape: SynthShape,
    tied: bool,
) -> (Vec<u32>, Vec<(String, Tensor)>, Qwen3Config) {
    synth(&SynthOptions {
        shape,
        out: dir.to_path_buf(),
        dtype: DType::F32,
        gguf: None,
        gguf_only: false,
        seed: 7,
        tie_word_embeddings: Some(tied),
    })
    .unwrap();
    let mut ck = Checkpoint::open(dir.to_str().unwrap(), &Device::Cpu).unwrap();
    let ids = ck
        .tokenizer
        .as_ref()
        .unwrap()
        .encode(PROMPT, false)
        .unwrap()
        .get_ids()
        .to_vec();
    (ids, ck.dense_tensors().unwrap(), ck.config.clone())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The training net is the inference model: same logits at every position,
/// tied and untied, for each family (Qwen3, Llama with Llama 3 RoPE
/// scaling, Qwen2 with its biases), without and with LoRA (the inference
/// side applying the same pairs unfused).
#[test]
fn logits_match_inference() {
    for (shape, tied) in [
        (SynthShape::Tiny, true),
        (SynthShape::Tiny, false),
        (SynthShape::TinyLlama3, true),
        (SynthShape::TinyQwen2, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (ids, tensors, cfg) = model_of(dir.path(), shape, tied);
        let mut inf = LoadedModel::load(
            dir.path().to_str().unwrap(),
            &Device::Cpu,
            Some(DType::F32),
            false,
        )
        .unwrap();
        let want = inf.model.forward(&ids, true).unwrap();
        let what = Trainable::Lora {
            rank: 4,
            alpha: 8.0,
            targets: MODULES.to_vec(),
            seed: 1,
        };
        let net = TrainNet::new(&cfg, tensors, &what, 64, &Device::Cpu).unwrap();
        let pos: Vec<u32> = (0..ids.len() as u32).collect();
        // B starts at zero: the base's logits.
        let got = net.forward(&ids, &pos).unwrap();
        assert!(
            max_diff(&got, &want) < 1e-4,
            "{shape:?} tied={tied}: {}",
            max_diff(&got, &want)
        );
        // Random B: the same as inference with the pairs attached.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for p in net.lora.values() {
            let n = p.b.elem_count();
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
            p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let got = net.forward(&ids, &pos).unwrap();
        assert!(
            max_diff(&got, &want) > 1e-2,
            "the LoRA pairs must change the logits"
        );
        let adapter = crate::model::adapter::Adapter {
            path: dir.path().to_path_buf(),
            format: crate::model::adapter::AdapterFormat::Peft,
            weights_file: dir.path().to_path_buf(),
            sha256: String::new(),
            rank: 4,
            scale: 2.0,
            modules: net.lora_weights().unwrap(),
        };
        adapter.attach_to(&mut inf.model).unwrap();
        let want = inf.model.forward(&ids, true).unwrap();
        assert!(
            max_diff(&got, &want) < 1e-4,
            "{shape:?} tied={tied} with LoRA: {}",
            max_diff(&got, &want)
        );
    }
}

/// Autograd's gradient equals a central finite difference, for a LoRA `B`
/// entry and, in full training, for an embedding row and a norm weight.
#[test]
fn gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, tensors, cfg) = model(dir.path(), true);
    let prompt_len = ids.len() - 4;
    let check = |net: &TrainNet, var: &Var, index: usize| {
        let loss = net.loss_sum(&[(&ids, prompt_len)]).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .expect("a gradient")
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[index];
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let at = |delta: f32| {
            let mut v = base.clone();
            v[index] += delta;
            var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
                .unwrap();
            let l = net
                .loss_sum(&[(&ids, prompt_len)])
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            l as f64
        };
        let h = 1e-2f32;
        let fd = (at(h) - at(-h)) / (2.0 * h as f64);
        var.set(&Tensor::from_vec(base, var.dims(), &Device::Cpu).unwrap())
            .unwrap();
        let err = (g as f64 - fd).abs();
        assert!(
            err < 2e-2 * fd.abs().max(0.05),
            "autograd {g} vs finite difference {fd}"
        );
    };
    let lora = TrainNet::new(
        &cfg,
        tensors.clone(),
        &Trainable::Lora {
            rank: 4,
            alpha: 8.0,
            targets: vec!["self_attn.v_proj"],
            seed: 1,
        },
        64,
        &Device::Cpu,
    )
    .unwrap();
    let b = &lora.lora["model.layers.1.self_attn.v_proj"].b;
    check(&lora, b, 5);
    let full = TrainNet::new(&cfg, tensors, &Trainable::Full, 64, &Device::Cpu).unwrap();
    let params: HashMap<String, Var> = full.trainable().into_iter().collect();
    // The row of the first target token: used as input and as head.
    let emb = &params["model.embed_tokens.weight"];
    check(&full, emb, ids[prompt_len] as usize * cfg.hidden_size + 3);
    check(&full, &params["model.layers.0.self_attn.q_norm.weight"], 2);
    check(&full, &params["model.norm.weight"], 1);
}

/// A batch whose examples share a prompt prefix gives the same loss and
/// gradients as each example run whole on its own.
#[test]
fn shared_prefix_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, tensors, cfg) = model(dir.path(), true);
    let net = TrainNet::new(&cfg, tensors, &Trainable::Full, 64, &Device::Cpu).unwrap();
    let mut other = ids.clone();
    let n = other.len();
    other[n - 3] = 1234;
    other.push(99);
    let batch: Vec<(&[u32], usize)> = vec![(&ids, n - 4), (&other, n - 5)];
    let shared = net.loss_sum(&batch).unwrap();
    let mut alone = Tensor::new(0f32, &Device::Cpu).unwrap();
    for (ids, p) in &batch {
        let pos: Vec<u32> = (*p as u32 - 1..ids.len() as u32 - 1).collect();
        let logits = net.forward(ids, &pos).unwrap();
        let l = crate::train::loss::cross_entropy_rows(&logits, &ids[*p..])
            .unwrap()
            .sum_all()
            .unwrap();
        alone = (alone + l).unwrap();
    }
    let (a, b) = (
        shared.to_scalar::<f32>().unwrap(),
        alone.to_scalar::<f32>().unwrap(),
    );
    assert!((a - b).abs() < 1e-4 * b.abs(), "{a} vs {b}");
    let (ga, gb) = (shared.backward().unwrap(), alone.backward().unwrap());
    for (name, v) in net.trainable() {
        let d = max_diff(
            ga.get(v.as_tensor()).unwrap(),
            gb.get(v.as_tensor()).unwrap(),
        );
        assert!(d < 1e-4, "{name}: gradients differ by {d}");
    }
}

/// A restricted output vocabulary is the softmax over those tokens alone
/// (tied and untied, whole-model training, so the compact matrices are
/// used); its trained rows are written back into the whole matrices and no
/// other row changes; a token outside it is refused.
#[test]
fn restricted_output_is_the_softmax_over_its_tokens() {
    for tied in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (ids, tensors, cfg) = model(dir.path(), tied);
        let mut net =
            TrainNet::new(&cfg, tensors.clone(), &Trainable::Full, 64, &Device::Cpu).unwrap();
        let mut other = ids.clone();
        other.extend_from_slice(&ids[..5]);
        let p = ids.len() - 4;
        let batch: Vec<(&[u32], usize)> = vec![(&ids, p), (&other, p + 2)];
        // The vocabulary: every token of the data and 40 others.
        let mut vocab: Vec<u32> = other.clone();
        vocab.extend((0..40).map(|i| 1000 + 37 * i));
        let want = {
            let mut s = vocab.clone();
            s.sort_unstable();
            s.dedup();
            let cols = Tensor::new(s.as_slice(), &Device::Cpu).unwrap();
            let mut total = 0f32;
            for (ids, p) in &batch {
                let pos: Vec<u32> = (*p as u32 - 1..ids.len() as u32 - 1).collect();
                let logits = net
                    .forward(ids, &pos)
                    .unwrap()
                    .index_select(&cols, 1)
                    .unwrap();
                let t: Vec<u32> = ids[*p..]
                    .iter()
                    .map(|t| s.iter().position(|x| x == t).unwrap() as u32)
                    .collect();
                total += crate::train::loss::cross_entropy_rows(&logits, &t)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
            }
            total
        };
        let whole = net.loss_sum(&batch).unwrap().to_scalar::<f32>().unwrap();
        let e = net.restrict_output(&[]).unwrap_err().to_string();
        assert!(e.contains("at least one token"), "{e}");
        net.restrict_output(&vocab).unwrap();
        let loss = net.loss_sum(&batch).unwrap();
        let got = loss.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
        assert!(
            whole > got + 1.0,
            "the whole vocabulary's loss {whole} vs {got}"
        );
        // A step of plain gradient descent on the trained parameters.
        let grads = loss.backward().unwrap();
        let compact = net.trainable().into_iter().find(|(n, _)| {
            n == if tied {
                "model.embed_tokens.weight"
            } else {
                "lm_head.weight"
            }
        });
        let (name, var) = compact.unwrap();
        let unique = {
            let mut s = vocab.clone();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        assert_eq!(var.dims(), &[unique, cfg.hidden_size], "{name}");
        for (_, v) in net.trainable() {
            let g = grads.get(v.as_tensor()).unwrap();
            v.set(&(v.as_tensor() - g).unwrap()).unwrap();
        }
        let before: HashMap<String, Tensor> = tensors.into_iter().collect();
        let after: HashMap<String, Tensor> = net.dense_tensors().unwrap().into_iter().collect();
        let mut s = vocab.clone();
        s.sort_unstable();
        s.dedup();
        for n in ["model.embed_tokens.weight", "lm_head.weight"] {
            let (Some(b), Some(a)) = (before.get(n), after.get(n)) else {
                continue;
            };
            assert_eq!(a.dims(), b.dims());
            let diff: Vec<f32> = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (t, d) in diff.iter().enumerate() {
                let inside = s.binary_search(&(t as u32)).is_ok();
                if !inside {
                    assert_eq!(*d, 0.0, "{n}: row {t} outside the vocabulary changed");
                }
            }
            for &t in &other {
                assert!(diff[t as usize] > 0.0, "{n}: row {t} was not written back");
            }
            // Written back exactly: the whole matrix's rows of the
            // vocabulary are the trained compact rows, bit for bit.
            if n == name {
                let rows = Tensor::new(s.as_slice(), &Device::Cpu).unwrap();
                let back: Vec<Vec<f32>> = a.index_select(&rows, 0).unwrap().to_vec2().unwrap();
                let trained: Vec<Vec<f32>> = var.as_tensor().to_vec2().unwrap();
                assert!(
                    back == trained,
                    "{n}: rows written back are not the trained rows"
                );
            }
        }
        let e = net.restrict_output(&vocab).unwrap_err().to_string();
        assert!(e.contains("already restricted"), "{e}");
        let mut outside = ids.clone();
        outside.push(150_000);
        let e = net.loss_sum(&[(&outside, p)]).unwrap_err().to_string();
        assert!(
            e.contains("outside the restricted output vocabulary"),
            "{e}"
        );
    }
}

/// The checkpointed pass (`loss_and_grads`: each block run again in the
/// backward) gives the loss and every trained parameter's gradient that
/// the whole graph does, with a shared prefix and padded rests, for LoRA
/// and full training, for Qwen3 and Llama.
#[test]
fn checkpointed_gradients_equal_the_whole_graphs() {
    for shape in [SynthShape::Tiny, SynthShape::TinyLlama3] {
        let dir = tempfile::tempdir().unwrap();
        let (ids, tensors, cfg) = model_of(dir.path(), shape, false);
        // Two examples sharing a prefix, of different lengths.
        let mut other = ids.clone();
        other.truncate(ids.len() - 3);
        other.extend_from_slice(&ids[2..6]);
        let batch: Vec<(&[u32], usize)> = vec![(&ids, ids.len() - 4), (&other, ids.len() - 3)];
        for what in [
            Trainable::Lora {
                rank: 4,
                alpha: 8.0,
                targets: MODULES.to_vec(),
                seed: 1,
            },
            Trainable::Full,
        ] {
            let net = TrainNet::new(&cfg, tensors.clone(), &what, 64, &Device::Cpu).unwrap();
            // B nonzero, so that LoRA's A gets a gradient too.
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            for p in net.lora.values() {
                let v: Vec<f32> = (0..p.b.elem_count())
                    .map(|_| rng.random_range(-0.1..0.1))
                    .collect();
                p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
                    .unwrap();
            }
            let loss = (net.loss_sum(&batch).unwrap() / 7.0).unwrap();
            let want = loss.backward().unwrap();
            let (value, got) = net.loss_and_grads(&batch, 7.0).unwrap();
            let l = loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (value - l).abs() <= 1e-6 * l.abs(),
                "{shape:?}: loss {value} vs {l}"
            );
            let trained = net.trainable();
            assert!(!trained.is_empty());
            for (name, v) in &trained {
                let (w, g) = (want.get(v.as_tensor()), got.get(v.as_tensor()));
                let (Some(w), Some(g)) = (w, g) else {
                    assert!(
                        w.is_none() && g.is_none(),
                        "{shape:?} {name}: one side has no gradient"
                    );
                    continue;
                };
                let scale = w
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let d = max_diff(w, g);
                assert!(
                    d <= 1e-4 * scale.max(1e-3),
                    "{shape:?} {name}: gradients differ by {d} (scale {scale})"
                );
            }
        }
    }
}
