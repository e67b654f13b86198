//! Which modules an adapter's config selects, with which rank and scale,
//! and what is refused.

use super::write::{random_adapter, write_adapter, RandomAdapter};
use super::*;
use crate::model::convert::synth::SynthShape;
use serde_json::{json, Value};

fn cfg() -> Qwen3Config {
    SynthShape::Tiny.config()
}

fn modules(rank: usize, targets: &[&str]) -> Vec<LoraWeights> {
    modules_for(&cfg(), rank, targets)
}

fn modules_for(cfg: &Qwen3Config, rank: usize, targets: &[&str]) -> Vec<LoraWeights> {
    let spec = RandomAdapter {
        rank,
        scale: 2.0,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        delta_scale: 0.1,
        weight_rms: 0.04,
        seed: 5,
    };
    random_adapter(cfg, &spec).unwrap()
}

/// Writes an adapter of every module, then edits its config with `edit`.
fn written(
    format: AdapterFormat,
    ms: &[LoraWeights],
    edit: impl FnOnce(&mut Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_adapter(
        dir.path(),
        format,
        ms,
        None,
        "base",
        cfg().num_hidden_layers,
    )
    .unwrap();
    let p = dir.path().join("adapter_config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    dir
}

fn names(a: &Adapter) -> Vec<String> {
    a.modules.iter().map(LoraWeights::name).collect()
}

#[test]
fn peft_reads_every_targeted_module_with_alpha_over_r() {
    let ms = modules(4, &[]);
    let dir = written(AdapterFormat::Peft, &ms, |v| v["lora_alpha"] = json!(16));
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    assert_eq!(a.format, AdapterFormat::Peft);
    assert_eq!(a.modules.len(), 14);
    assert!(a.modules.iter().all(|m| m.scale == 4.0 && m.rank() == 4));
    for (got, want) in a.modules.iter().zip(&ms) {
        assert_eq!(got.name(), want.name());
        let d = (&got.a - &want.a)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    }
}

#[test]
fn rslora_divides_by_the_root_of_the_rank() {
    let dir = written(AdapterFormat::Peft, &modules(4, &[]), |v| {
        v["lora_alpha"] = json!(8);
        v["use_rslora"] = json!(true);
    });
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    assert!(a.modules.iter().all(|m| m.scale == 4.0), "8 / sqrt(4)");
}

#[test]
fn regex_target_modules_select_exactly_what_they_match() {
    let dir = written(AdapterFormat::Peft, &modules(4, &[]), |v| {
        v["target_modules"] = json!(r"model\.layers\.1\.self_attn\.(q|v)_proj");
    });
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    assert_eq!(
        names(&a),
        [
            "model.layers.1.self_attn.q_proj",
            "model.layers.1.self_attn.v_proj"
        ]
    );
    // A regex is a full match: "q_proj" alone matches no full module name.
    let dir = written(AdapterFormat::Peft, &modules(4, &[]), |v| {
        v["target_modules"] = json!("q_proj")
    });
    assert!(Adapter::load(dir.path(), &cfg()).is_err());
}

#[test]
fn list_targets_match_dotted_suffixes_and_layers_to_transform_restricts() {
    let dir = written(AdapterFormat::Peft, &modules(4, &[]), |v| {
        v["target_modules"] = json!(["down_proj", "self_attn.k_proj"]);
        v["layers_to_transform"] = json!([0]);
    });
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    assert_eq!(
        names(&a),
        [
            "model.layers.0.self_attn.k_proj",
            "model.layers.0.mlp.down_proj"
        ]
    );
}

#[test]
fn rank_and_alpha_patterns_override_per_module() {
    // q_proj at rank 2, the rest at rank 4.
    let mut ms = modules(4, &[]);
    for m in ms.iter_mut().filter(|m| m.module == "self_attn.q_proj") {
        m.a = m.a.narrow(0, 0, 2).unwrap();
        m.b = m.b.narrow(1, 0, 2).unwrap().contiguous().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // write_adapter wants one rank; write the files by hand through PEFT's layout.
    let mut tensors = std::collections::HashMap::new();
    for m in &ms {
        let p = format!("base_model.model.{}", m.name());
        tensors.insert(format!("{p}.lora_A.weight"), m.a.clone());
        tensors.insert(format!("{p}.lora_B.weight"), m.b.clone());
    }
    candle_core::safetensors::save(&tensors, dir.path().join("adapter_model.safetensors")).unwrap();
    let config = json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "all-linear",
        "rank_pattern": {"q_proj": 2}, "alpha_pattern": {"layers.1.mlp.up_proj": 32}});
    std::fs::write(dir.path().join("adapter_config.json"), config.to_string()).unwrap();
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    for m in &a.modules {
        let (rank, scale) = match (m.layer, m.module) {
            (_, "self_attn.q_proj") => (2, 4.0),
            (1, "mlp.up_proj") => (4, 8.0),
            _ => (4, 2.0),
        };
        assert_eq!((m.rank(), m.scale), (rank, scale), "{}", m.name());
    }
}

#[test]
fn mlx_num_layers_counts_from_the_end_and_scale_is_used_as_is() {
    let ms = modules(4, &["q_proj", "down_proj"]);
    let dir = written(AdapterFormat::MlxLm, &ms, |v| {
        v["num_layers"] = json!(1);
        v["lora_parameters"]["scale"] = json!(20.0);
    });
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    assert_eq!(a.format, AdapterFormat::MlxLm);
    assert_eq!(
        names(&a),
        [
            "model.layers.1.self_attn.q_proj",
            "model.layers.1.mlp.down_proj"
        ]
    );
    assert!(a.modules.iter().all(|m| m.scale == 20.0));
    // Stored transposed: lora_a (in, r), lora_b (r, out); read back as A, B.
    let want = ms
        .iter()
        .find(|m| m.name() == "model.layers.1.mlp.down_proj")
        .unwrap();
    let got = &a.modules[1];
    assert_eq!(got.a.dims(), want.a.dims());
    let d = (&got.b - &want.b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    // num_layers -1 is all of them; keys narrow the modules.
    let dir = written(AdapterFormat::MlxLm, &ms, |v| {
        v["num_layers"] = json!(-1);
        v["lora_parameters"]["keys"] = json!(["mlp.down_proj"]);
    });
    let a = Adapter::load(dir.path(), &cfg()).unwrap();
    assert_eq!(
        names(&a),
        [
            "model.layers.0.mlp.down_proj",
            "model.layers.1.mlp.down_proj"
        ]
    );
}

fn err(dir: &tempfile::TempDir) -> String {
    format!("{:#}", Adapter::load(dir.path(), &cfg()).unwrap_err())
}

#[test]
fn dora_and_other_inexact_adapters_are_refused_by_name() {
    let ms = modules(4, &["q_proj"]);
    let d = written(AdapterFormat::Peft, &ms, |v| v["use_dora"] = json!(true));
    assert!(err(&d).contains("use_dora"), "{}", err(&d));
    let d = written(AdapterFormat::MlxLm, &ms, |v| {
        v["fine_tune_type"] = json!("dora")
    });
    assert!(err(&d).contains("fine_tune_type \"dora\""), "{}", err(&d));
    let d = written(AdapterFormat::Peft, &ms, |v| v["bias"] = json!("all"));
    assert!(err(&d).contains("bias \"all\""), "{}", err(&d));
    let d = written(AdapterFormat::Peft, &ms, |v| {
        v["modules_to_save"] = json!(["lm_head"])
    });
    assert!(err(&d).contains("modules_to_save"), "{}", err(&d));
    let d = written(AdapterFormat::Peft, &ms, |v| {
        v["target_modules"] = json!(["q_proj", "lm_head"])
    });
    assert!(err(&d).contains("\"lm_head\""), "{}", err(&d));
    let d = written(AdapterFormat::Peft, &ms, |v| v["peft_type"] = json!("IA3"));
    assert!(err(&d).contains("IA3"), "{}", err(&d));
}

#[test]
fn unknown_targets_and_other_bases_are_clear_errors() {
    let ms = modules(4, &["q_proj"]);
    let d = written(AdapterFormat::Peft, &ms, |v| {
        v["target_modules"] = json!(["c_attn"])
    });
    assert!(
        err(&d).contains("\"c_attn\"") && err(&d).contains("another architecture"),
        "{}",
        err(&d)
    );
    let d = written(AdapterFormat::MlxLm, &ms, |v| {
        v["lora_parameters"]["keys"] = json!(["attn.c_proj"])
    });
    assert!(err(&d).contains("attn.c_proj"), "{}", err(&d));
    // Made for a wider model: the hidden size differs.
    let mut wide = SynthShape::Tiny.config();
    wide.hidden_size = 128;
    let other = modules_for(&wide, 4, &["q_proj"]);
    let d = written(AdapterFormat::Peft, &other, |_| {});
    let e = err(&d);
    assert!(
        e.contains("adapter_model.safetensors")
            && e.contains("lora_A.weight")
            && e.contains("another base"),
        "{e}"
    );
    // Made for a deeper model: a layer the base does not have.
    let mut deep = SynthShape::Tiny.config();
    deep.num_hidden_layers = 4;
    let other = modules_for(&deep, 4, &["q_proj"]);
    let d = written(AdapterFormat::MlxLm, &other, |v| v["num_layers"] = json!(2));
    let e = err(&d);
    assert!(e.contains("layer 2") && e.contains("2 layers"), "{e}");
    // A rank that disagrees with the config.
    let d = written(AdapterFormat::Peft, &ms, |v| v["r"] = json!(8));
    assert!(
        err(&d).contains("rank 4") && err(&d).contains("says 8"),
        "{}",
        err(&d)
    );
    // No adapter files at all.
    let empty = tempfile::tempdir().unwrap();
    assert!(
        err(&empty).contains("adapter_config.json"),
        "{}",
        err(&empty)
    );
}
