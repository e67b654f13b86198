//! MLX-LM's LoRA: `adapter_config.json` (`fine_tune_type`, `num_layers`,
//! `lora_parameters: {rank, scale, dropout, keys?}`) + `adapters.safetensors`
//! with `model.layers.N.<module>.lora_a (in, r)` and `lora_b (r, out)`,
//! applied as `y = W·x + scale·((x·lora_a)·lora_b)`: `scale` is used as
//! it is, not divided by the rank.

use super::{locate, pair, LoraWeights, MODULES};
use crate::model::arch::config::Qwen3Config;
use crate::model::weights::safetensors::SafetensorsFiles;
use anyhow::{bail, Context as _};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Reads an MLX-LM adapter; returns the configured rank and scale and the
/// adapted projections.
pub(super) fn read(
    config: &Value,
    shown: &str,
    files: &SafetensorsFiles,
    file: &Path,
    cfg: &Qwen3Config,
) -> anyhow::Result<(usize, f64, Vec<LoraWeights>)> {
    let kind = config
        .get("fine_tune_type")
        .and_then(Value::as_str)
        .unwrap_or("lora");
    match kind {
        "lora" => {}
        "dora" => bail!("{shown}: fine_tune_type \"dora\" is not supported; DoRA rescales each weight column by a learned magnitude, which warden does not apply: train with --fine-tune-type lora"),
        "full" => bail!("{shown}: fine_tune_type \"full\" saves whole weights, not an adapter; fuse them into the model with mlx_lm.fuse and load that directory with --model"),
        other => bail!("{shown}: fine_tune_type {other:?} is not supported; warden applies LoRA adapters"),
    }
    if config.get("use_dora").and_then(Value::as_bool) == Some(true) {
        bail!("{shown}: use_dora is true; warden does not apply DoRA");
    }
    let params = config
        .get("lora_parameters")
        .with_context(|| format!("{shown} has no lora_parameters; is this an MLX-LM adapter?"))?;
    let rank = params
        .get("rank")
        .and_then(Value::as_u64)
        .map(|r| r as usize);
    let scale = params
        .get("scale")
        .and_then(Value::as_f64)
        .with_context(|| format!("{shown}: lora_parameters has no scale"))?;
    let n_layers = cfg.num_hidden_layers as i64;
    // Older MLX-LM wrote `lora_layers`; MLX-LM's default is 16.
    let num_layers = config
        .get("num_layers")
        .or_else(|| config.get("lora_layers"))
        .and_then(Value::as_i64)
        .unwrap_or(16);
    if num_layers > n_layers {
        bail!("{shown}: num_layers is {num_layers}, but the base model has {n_layers} layers: the adapter was made for another base model");
    }
    let first = if num_layers < 0 {
        0
    } else {
        (n_layers - num_layers) as usize
    };
    let keys: Option<BTreeSet<&'static str>> = match params.get("keys") {
        None | Some(Value::Null) => None,
        Some(Value::Array(v)) => Some(
            v.iter()
                .map(|k| {
                    let k = k.as_str().with_context(|| format!("{shown}: lora_parameters.keys must list module names"))?;
                    MODULES.iter().copied().find(|m| *m == k).with_context(|| {
                        format!("{shown}: lora_parameters.keys names {k:?}, which is not a projection warden adapts ({})", MODULES.join(", "))
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        Some(other) => bail!("{shown}: lora_parameters.keys must be a list, not {other}"),
    };

    // The tensors in the file, by module name.
    let mut in_file: BTreeSet<(usize, &'static str)> = BTreeSet::new();
    for name in files.names() {
        let module = name
            .strip_suffix(".lora_a")
            .or_else(|| name.strip_suffix(".lora_b"));
        let Some(module) = module else {
            if name.ends_with(".m") {
                bail!(
                    "{}: tensor {name} is a DoRA magnitude; warden does not apply DoRA",
                    file.display()
                );
            }
            bail!(
                "{}: tensor {name} is not a LoRA matrix (lora_a / lora_b)",
                file.display()
            );
        };
        in_file.insert(locate(module, cfg, file, name)?);
    }
    // Without `keys`, MLX-LM's default set is whatever it adapted; the file
    // says which.
    let present: BTreeSet<&'static str> = in_file.iter().map(|(_, m)| *m).collect();
    let targeted = |l: usize, m: &str| {
        l >= first
            && match &keys {
                Some(k) => k.contains(m),
                None => present.contains(m),
            }
    };
    let mut out = Vec::new();
    for layer in 0..cfg.num_hidden_layers {
        for module in MODULES {
            if !targeted(layer, module) {
                continue;
            }
            let base = format!("model.layers.{layer}.{module}");
            let (a, b) = pair(
                files,
                file,
                cfg,
                module,
                &format!("{base}.lora_a"),
                &format!("{base}.lora_b"),
                true,
                rank,
            )?;
            in_file.remove(&(layer, module));
            out.push(LoraWeights {
                layer,
                module,
                a,
                b,
                scale,
            });
        }
    }
    for (l, m) in in_file {
        tracing::warn!("{}: tensors for model.layers.{l}.{m} are outside the adapter's num_layers/keys; ignoring them as MLX-LM does", file.display());
    }
    let rank = rank
        .or_else(|| out.first().map(LoraWeights::rank))
        .unwrap_or(0);
    Ok((rank, scale, out))
}
