//! PEFT's LoRA: `adapter_config.json` + `adapter_model.safetensors` with
//! `base_model.model.<module>.lora_A.weight (r, in)` and `lora_B.weight
//! (out, r)`; scale `lora_alpha / r` (`/ √r` with `use_rslora`), per-module
//! ranks and alphas from `rank_pattern` / `alpha_pattern`.

use super::{locate, pair, LoraWeights, MODULES};
use crate::model::arch::config::Qwen3Config;
use crate::model::weights::safetensors::SafetensorsFiles;
use anyhow::{bail, Context as _};
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Which modules `target_modules` (or `exclude_modules`) names.
enum Targets {
    /// Exact names or dotted suffixes.
    List(Vec<String>),
    /// A regular expression over the whole module name.
    Regex(Regex),
    /// Every linear layer but the output head.
    AllLinear,
}

impl Targets {
    fn parse(v: &Value, key: &str, shown: &str) -> anyhow::Result<Option<Targets>> {
        Ok(match v {
            Value::Null => None,
            Value::String(s) if s == "all-linear" => Some(Targets::AllLinear),
            Value::String(s) => Some(Targets::Regex(full_match(s).with_context(|| {
                format!("{shown}: {key} {s:?} is not a valid regular expression")
            })?)),
            Value::Array(items) => Some(Targets::List(
                items
                    .iter()
                    .map(|i| {
                        i.as_str().map(String::from).with_context(|| {
                            format!("{shown}: {key} must list module names (strings)")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            )),
            other => bail!("{shown}: {key} must be a list of names, a regular expression or \"all-linear\", not {other}"),
        })
    }

    fn matches(&self, module: &str) -> bool {
        match self {
            Targets::List(names) => names.iter().any(|t| suffix_match(module, t)),
            Targets::Regex(re) => re.is_match(module),
            Targets::AllLinear => true,
        }
    }
}

/// `module` is `t` or ends with `.t`.
fn suffix_match(module: &str, t: &str) -> bool {
    module == t
        || module
            .strip_suffix(t)
            .is_some_and(|head| head.ends_with('.'))
}

/// `pattern` anchored at both ends (Python's `re.fullmatch`).
fn full_match(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The value of the first key of a `rank_pattern` / `alpha_pattern` whose
/// pattern matches the end of `module` (PEFT: `(.*\.)?pattern$`).
fn pattern_value(map: &[(Regex, f64)], module: &str) -> Option<f64> {
    map.iter()
        .find(|(re, _)| re.is_match(module))
        .map(|(_, v)| *v)
}

fn patterns(config: &Value, key: &str, shown: &str) -> anyhow::Result<Vec<(Regex, f64)>> {
    let Some(obj) = config.get(key).and_then(Value::as_object) else {
        return Ok(vec![]);
    };
    obj.iter()
        .map(|(pat, v)| {
            let re = Regex::new(&format!("^(?:.*\\.)?(?:{pat})$"))
                .with_context(|| format!("{shown}: {key} key {pat:?} is not a valid pattern"))?;
            let v = v
                .as_f64()
                .with_context(|| format!("{shown}: {key}[{pat:?}] must be a number"))?;
            Ok((re, v))
        })
        .collect()
}

/// Reads a PEFT adapter; returns the configured rank and scale and the
/// adapted projections.
pub(super) fn read(
    config: &Value,
    shown: &str,
    files: &SafetensorsFiles,
    file: &Path,
    cfg: &Qwen3Config,
) -> anyhow::Result<(usize, f64, Vec<LoraWeights>)> {
    let str_of = |k: &str| config.get(k).and_then(Value::as_str);
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(t) = str_of("peft_type").filter(|t| *t != "LORA") {
        bail!("{shown}: peft_type {t:?} is not supported; warden applies LoRA adapters (peft_type \"LORA\")");
    }
    if flag("use_dora") {
        bail!("{shown}: use_dora is true; DoRA rescales each weight column by a learned magnitude, which warden does not apply: train a plain LoRA adapter or merge this one with PEFT");
    }
    if let Some(b) = str_of("bias").filter(|b| *b != "none") {
        bail!("{shown}: bias {b:?} trains biases warden does not apply; use bias \"none\"");
    }
    if flag("lora_bias") {
        bail!("{shown}: lora_bias is true; warden does not apply LoRA biases");
    }
    if let Some(m) = config
        .get("modules_to_save")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    {
        bail!("{shown}: modules_to_save lists {m:?}: those modules are replaced whole, which warden does not do; merge the adapter with PEFT instead");
    }
    if flag("fan_in_fan_out") {
        // PEFT itself resets this for torch.nn.Linear, which every Qwen3
        // projection is; the stored matrices are the usual (r, in), (out, r).
        tracing::warn!("{shown}: fan_in_fan_out is true, which PEFT ignores for nn.Linear layers; ignoring it too");
    }
    let r = config.get("r").and_then(Value::as_u64).unwrap_or(8) as usize;
    let alpha = config
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .unwrap_or(8.0);
    if r == 0 {
        bail!("{shown}: r must be positive");
    }
    let rslora = flag("use_rslora");
    let scale_of = |alpha: f64, r: usize| {
        if rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    };
    // PEFT's default for Qwen3 when target_modules is absent.
    let targets = Targets::parse(
        config.get("target_modules").unwrap_or(&Value::Null),
        "target_modules",
        shown,
    )?
    .unwrap_or_else(|| Targets::List(vec!["q_proj".into(), "v_proj".into()]));
    let exclude = Targets::parse(
        config.get("exclude_modules").unwrap_or(&Value::Null),
        "exclude_modules",
        shown,
    )?;
    let layers: Option<BTreeSet<usize>> = match config.get("layers_to_transform") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            Some([n.as_u64().context("layers_to_transform")? as usize].into())
        }
        Some(Value::Array(v)) => Some(
            v.iter()
                .map(|x| x.as_u64().map(|x| x as usize))
                .collect::<Option<_>>()
                .with_context(|| format!("{shown}: layers_to_transform must list layer numbers"))?,
        ),
        Some(other) => {
            bail!("{shown}: layers_to_transform must be a layer number or a list, not {other}")
        }
    };
    let rank_pattern = patterns(config, "rank_pattern", shown)?;
    let alpha_pattern = patterns(config, "alpha_pattern", shown)?;

    // Every module name of the base that can carry an adapter.
    let candidates: Vec<(usize, &'static str, String)> = (0..cfg.num_hidden_layers)
        .flat_map(|l| {
            MODULES
                .iter()
                .map(move |m| (l, *m, format!("model.layers.{l}.{m}")))
        })
        .collect();
    if let Targets::List(names) = &targets {
        for t in names {
            if !candidates.iter().any(|(_, _, name)| suffix_match(name, t)) {
                if t == "lm_head" || t.ends_with("embed_tokens") {
                    bail!("{shown}: target_modules names {t:?}; warden applies adapters to the attention and MLP projections only ({}), so this adapter cannot be served exactly", MODULES.join(", "));
                }
                bail!("{shown}: target_modules names {t:?}, which is not a module of Qwen3 (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj): the adapter was made for another architecture");
            }
        }
    }

    // The tensors in the file, by module name.
    let mut in_file: BTreeSet<String> = BTreeSet::new();
    for name in files.names() {
        let bare = name.strip_prefix("base_model.model.").unwrap_or(name);
        if bare.contains("lora_magnitude_vector") {
            bail!(
                "{}: tensor {name} is a DoRA magnitude; warden does not apply DoRA",
                file.display()
            );
        }
        if bare.contains("lora_embedding_") {
            bail!("{}: tensor {name} adapts an embedding; warden applies adapters to the attention and MLP projections only", file.display());
        }
        let Some((module, _)) = bare
            .split_once(".lora_A.")
            .or_else(|| bare.split_once(".lora_B."))
        else {
            bail!(
                "{}: tensor {name} is not a LoRA matrix (lora_A / lora_B)",
                file.display()
            );
        };
        locate(module, cfg, file, name)?;
        in_file.insert(module.to_string());
    }

    let mut out = Vec::new();
    for (layer, module, name) in &candidates {
        let targeted = targets.matches(name)
            && !exclude.as_ref().is_some_and(|e| e.matches(name))
            && layers.as_ref().is_none_or(|l| l.contains(layer));
        if !targeted {
            continue;
        }
        let rank = pattern_value(&rank_pattern, name).map_or(r, |x| x as usize);
        let alpha = pattern_value(&alpha_pattern, name).unwrap_or(alpha);
        let key = |ab: &str| {
            let plain = format!("base_model.model.{name}.lora_{ab}.weight");
            let named = format!("base_model.model.{name}.lora_{ab}.default.weight");
            if files.contains(&plain) || !files.contains(&named) {
                plain
            } else {
                named
            }
        };
        let (a, b) = pair(
            files,
            file,
            cfg,
            module,
            &key("A"),
            &key("B"),
            false,
            Some(rank),
        )?;
        in_file.remove(name);
        out.push(LoraWeights {
            layer: *layer,
            module,
            a,
            b,
            scale: scale_of(alpha, rank),
        });
    }
    for left in in_file {
        tracing::warn!("{}: tensors for {left} are not targeted by adapter_config.json; ignoring them as PEFT does", file.display());
    }
    Ok((r, scale_of(alpha, r), out))
}
