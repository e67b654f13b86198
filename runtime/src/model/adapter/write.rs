//! Writing adapters in PEFT's and MLX-LM's own layouts (for `warden synth
//! --adapter` and for training), and random adapters of a chosen size.

use super::{module_shape, AdapterFormat, LoraWeights, MODULES};
use crate::model::arch::config::Qwen3Config;
use anyhow::{bail, Context as _};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Writes `modules` as an adapter in `format` into `dir`. All modules must
/// share one rank and scale (as both formats' configs say one of each);
/// `alpha` is PEFT's `lora_alpha` (`scale · r` when `None`); `base_layers`
/// is the base's layer count (MLX-LM counts adapted layers from the end).
pub fn write_adapter(
    dir: &Path,
    format: AdapterFormat,
    modules: &[LoraWeights],
    alpha: Option<f64>,
    base: &str,
    base_layers: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    let Some(first) = modules.first() else {
        bail!("an adapter needs at least one module");
    };
    let (r, scale) = (first.rank(), first.scale);
    if modules.iter().any(|m| m.rank() != r || m.scale != scale) {
        bail!("every module of a written adapter must share one rank and scale");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut short: Vec<&str> = Vec::new();
    for m in modules {
        let s = m.module.rsplit('.').next().unwrap_or(m.module);
        if !short.contains(&s) {
            short.push(s);
        }
    }
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let (config, file) = match format {
        AdapterFormat::Peft => {
            for m in modules {
                let p = format!("base_model.model.{}", m.name());
                tensors.insert(format!("{p}.lora_A.weight"), m.a.clone());
                tensors.insert(format!("{p}.lora_B.weight"), m.b.clone());
            }
            let config = json!({
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": base,
                "r": r,
                "lora_alpha": alpha.unwrap_or(scale * r as f64),
                "lora_dropout": 0.0,
                "target_modules": short,
                "bias": "none",
                "use_rslora": false,
                "use_dora": false,
                "fan_in_fan_out": false,
                "modules_to_save": null,
                "layers_to_transform": null,
                "rank_pattern": {},
                "alpha_pattern": {},
                "inference_mode": true,
            });
            (config, "adapter_model.safetensors")
        }
        AdapterFormat::MlxLm => {
            for m in modules {
                let p = m.name();
                tensors.insert(format!("{p}.lora_a"), m.a.t()?.contiguous()?);
                tensors.insert(format!("{p}.lora_b"), m.b.t()?.contiguous()?);
            }
            // MLX-LM adapts the last `num_layers` blocks.
            let first_layer = modules.iter().map(|m| m.layer).min().unwrap_or(0);
            let keys: Vec<&str> = MODULES
                .iter()
                .copied()
                .filter(|k| modules.iter().any(|m| m.module == *k))
                .collect();
            let config = json!({
                "model": base,
                "fine_tune_type": "lora",
                "num_layers": base_layers.saturating_sub(first_layer),
                "lora_parameters": {"rank": r, "scale": scale, "dropout": 0.0, "keys": keys},
            });
            (config, "adapters.safetensors")
        }
    };
    let weights = dir.join(file);
    crate::outputs::write_with(&weights, |tmp| {
        Ok(candle_core::safetensors::save(&tensors, tmp)?)
    })?;
    let cfg_path = dir.join("adapter_config.json");
    crate::outputs::write(&cfg_path, &serde_json::to_vec_pretty(&config)?)?;
    Ok(vec![cfg_path, weights])
}

/// What random adapter to make.
#[derive(Debug, Clone)]
pub struct RandomAdapter {
    /// Rank of every module.
    pub rank: usize,
    /// Scale `s` (PEFT writes `lora_alpha = s·r`).
    pub scale: f64,
    /// Short module names (`q_proj`, …); empty for all seven.
    pub targets: Vec<String>,
    /// RMS of each `ΔW` relative to `weight_rms`.
    pub delta_scale: f64,
    /// RMS of the base weights the delta is measured against.
    pub weight_rms: f64,
    /// Seed.
    pub seed: u64,
}

/// Random `A`, `B` for every layer and targeted module of `cfg`, with `B`
/// sized so that `‖s·B·A‖_rms = delta_scale · weight_rms`.
pub fn random_adapter(cfg: &Qwen3Config, spec: &RandomAdapter) -> anyhow::Result<Vec<LoraWeights>> {
    let modules = super::resolve_targets(&spec.targets)?;
    if spec.rank == 0 {
        bail!("--rank must be positive");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    for layer in 0..cfg.num_hidden_layers {
        for &module in &modules {
            let (o, i) = module_shape(cfg, module).expect("known module");
            let mut draw =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1f32..1.0)).collect() };
            let a = Tensor::from_vec(draw(spec.rank * i), (spec.rank, i), &Device::Cpu)?;
            let b = Tensor::from_vec(draw(o * spec.rank), (o, spec.rank), &Device::Cpu)?;
            let delta = (b.matmul(&a)? * spec.scale)?;
            let rms = f64::from(delta.sqr()?.mean_all()?.to_scalar::<f32>()?).sqrt();
            let b = (b * (spec.delta_scale * spec.weight_rms / rms.max(1e-30)))?;
            out.push(LoraWeights {
                layer,
                module,
                a,
                b,
                scale: spec.scale,
            });
        }
    }
    Ok(out)
}
