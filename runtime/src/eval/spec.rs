//! Variants: `NAME=SPEC`, SPEC being a model with options
//! (`MODEL[+adapter=DIR]…[+quant=FORMAT][+think=on|off][+tool-choice=CHOICE][+constrained]`)
//! or `replay:FILE` (JSON Lines of `{"id": CASE_ID, "outputs": ["…", …]}`).

use crate::chat::ToolChoice;
use crate::model::convert::quantize::QuantFormat;
use anyhow::{bail, Context as _};
use std::path::PathBuf;

/// Where a variant's generations come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A model run by warden.
    Model {
        /// Directory, `.gguf` or hub-cache name.
        model: String,
        /// Adapters applied unfused, in order.
        adapters: Vec<PathBuf>,
        /// Quantized in memory to this format first (the adapters then run
        /// unfused on top of the quantized base).
        quant: Option<QuantFormat>,
    },
    /// Recorded outputs, per case.
    Replay(PathBuf),
}

/// One variant.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its name in tables.
    pub name: String,
    /// The spec as written.
    pub spec: String,
    /// What runs.
    pub source: Source,
    /// `+think=on|off` (default: the template's).
    pub think: Option<bool>,
    /// `+tool-choice=auto|required|none|NAME` (default: `--tool-choice`).
    pub tool_choice: Option<ToolChoice>,
    /// `+constrained`: every generation under the tools' grammar.
    pub constrained: bool,
}

const KEYS: [&str; 4] = ["adapter", "quant", "think", "tool-choice"];

/// The flag `+constrained` (no value), at the end or before another option.
const CONSTRAINED: &str = "+constrained";

impl Variant {
    /// Parses `NAME=SPEC`.
    pub fn parse(s: &str) -> anyhow::Result<Variant> {
        let (name, spec) = s
            .split_once('=')
            .filter(|(n, sp)| !n.is_empty() && !sp.is_empty())
            .with_context(|| format!("--variant {s:?}: write NAME=SPEC, e.g. base=/models/qwen3 or fused=replay:outputs.jsonl"))?;
        if let Some(file) = spec.strip_prefix("replay:") {
            return Ok(Variant {
                name: name.into(),
                spec: spec.into(),
                source: Source::Replay(PathBuf::from(file)),
                think: None,
                tool_choice: None,
                constrained: false,
            });
        }
        let mut constrained = false;
        let mut rest = spec.to_string();
        while let Some(i) = rest.find(CONSTRAINED).filter(|&i| {
            let after = &rest[i + CONSTRAINED.len()..];
            after.is_empty() || after.starts_with('+')
        }) {
            constrained = true;
            rest.replace_range(i..i + CONSTRAINED.len(), "");
        }
        let spec_all = spec;
        let spec = rest.as_str();
        // Options start at the first `+adapter=`, `+quant=` or `+think=`, so
        // that a `+` elsewhere in a path stays part of it.
        let mut cuts: Vec<(usize, &str)> = KEYS
            .iter()
            .flat_map(|k| {
                let pat = format!("+{k}=");
                spec.match_indices(&pat)
                    .map(|(i, _)| (i, *k))
                    .collect::<Vec<_>>()
            })
            .collect();
        cuts.sort_unstable();
        let model = &spec[..cuts.first().map_or(spec.len(), |c| c.0)];
        if model.is_empty() {
            bail!("--variant {s:?}: the spec names no model");
        }
        let (mut adapters, mut quant, mut think, mut tool_choice) = (Vec::new(), None, None, None);
        for (n, (at, key)) in cuts.iter().enumerate() {
            let end = cuts.get(n + 1).map_or(spec.len(), |c| c.0);
            let value = &spec[at + key.len() + 2..end];
            match *key {
                "adapter" => adapters.push(PathBuf::from(value)),
                "quant" => {
                    quant =
                        Some(QuantFormat::parse(value, None).or_else(|_| parse_mlx_group(value))?)
                }
                "tool-choice" => {
                    if value.is_empty() {
                        bail!("--variant {s:?}: +tool-choice= needs auto, required, none or a tool's name");
                    }
                    tool_choice = Some(value.parse().expect("infallible"));
                }
                _ => {
                    think = Some(match value {
                        "on" => true,
                        "off" => false,
                        other => bail!("--variant {s:?}: +think={other}: use on or off"),
                    })
                }
            }
        }
        Ok(Variant {
            name: name.into(),
            spec: spec_all.into(),
            source: Source::Model {
                model: model.into(),
                adapters,
                quant,
            },
            think,
            tool_choice,
            constrained,
        })
    }
}

/// Loads a `Source::Model`'s parts: the model (quantized in memory first
/// when `quant` says), its adapters unfused, the chat template chosen over
/// its own and a draft model — as `eval` and `serve` run a spec.
pub fn load_model(
    model: &str,
    adapters: &[PathBuf],
    quant: Option<QuantFormat>,
    device: &candle_core::Device,
    chat_template: Option<&str>,
    draft_model: Option<&str>,
    progress: bool,
) -> anyhow::Result<crate::model::LoadedModel> {
    let mut loaded = match quant {
        Some(q) => crate::model::convert::quantize::load_quantized(model, device, None, q)?,
        None => crate::model::LoadedModel::load(model, device, None, progress)?,
    };
    loaded.apply_adapters(adapters)?;
    if let Some(t) = chat_template {
        loaded.chat_template = Some(t.to_string());
    }
    if let Some(d) = draft_model {
        loaded.attach_draft(d, progress)?;
    }
    Ok(loaded)
}

/// `mlx-4-g32` (a group size in the name).
fn parse_mlx_group(s: &str) -> anyhow::Result<QuantFormat> {
    let (base, group) = s
        .rsplit_once("-g")
        .with_context(|| format!("unknown format {s:?}; use q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0 or mlx-8/6/5/4 (mlx-4-g32 for another group size)"))?;
    QuantFormat::parse(
        base,
        Some(
            group
                .parse()
                .with_context(|| format!("bad group size in {s:?}"))?,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_choice_and_constrained_are_options() {
        let v = Variant::parse("c=/m+adapter=/a+constrained+think=off").unwrap();
        assert!(v.constrained);
        assert_eq!(v.think, Some(false));
        assert!(
            matches!(&v.source, Source::Model { model, adapters, .. } if model == "/m" && adapters.len() == 1)
        );
        let v = Variant::parse("r=/m+tool-choice=required+constrained").unwrap();
        assert!(v.constrained);
        assert_eq!(v.tool_choice, Some(ToolChoice::Required));
        let v = Variant::parse("n=/m+tool-choice=read_file").unwrap();
        assert_eq!(v.tool_choice, Some(ToolChoice::Named("read_file".into())));
        assert!(!v.constrained);
        // A path that merely contains the word stays a path.
        let v = Variant::parse("p=/m/+constrainedness").unwrap();
        assert!(!v.constrained);
        assert!(Variant::parse("e=/m+tool-choice=").is_err());
    }

    #[test]
    fn specs_parse_with_options_in_any_order() {
        let v = Variant::parse("fused=/m/a+b+quant=q4_k+adapter=/ad/1+think=off+adapter=/ad/2")
            .unwrap();
        match v.source {
            Source::Model {
                model,
                adapters,
                quant,
            } => {
                assert_eq!(model, "/m/a+b");
                assert_eq!(adapters, [PathBuf::from("/ad/1"), PathBuf::from("/ad/2")]);
                assert_eq!(quant.unwrap().name(), "q4_k");
            }
            _ => panic!(),
        }
        assert_eq!(v.think, Some(false));
        let v = Variant::parse("m=/x+quant=mlx-4-g32").unwrap();
        assert!(
            matches!(v.source, Source::Model { quant: Some(q), .. } if q.name() == "mlx-4-g32")
        );
        assert!(matches!(
            Variant::parse("r=replay:a.jsonl").unwrap().source,
            Source::Replay(_)
        ));
        for bad in [
            "noequals",
            "=x",
            "m=/x+think=maybe",
            "m=/x+quant=q9",
            "m=+quant=q8_0",
        ] {
            assert!(Variant::parse(bad).is_err(), "{bad}");
        }
    }
}
