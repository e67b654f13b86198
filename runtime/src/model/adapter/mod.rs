//! LoRA adapters as users have them: PEFT (`adapter_model.safetensors`) and
//! MLX-LM (`adapters.safetensors`), read as they are and applied unfused
//! (`y = W·x + s·B(A·x)`, see `linear.rs`) or merged by `warden fuse`.
//!
//! Both formats come down to the same thing: for some projections of some
//! layers, `A (r, in)`, `B (out, r)` and a scale `s`. Anything warden cannot
//! apply exactly (DoRA, trained biases, LoRA on embeddings or the LM head,
//! whole modules saved beside the adapter) is refused with its name.

mod mlx_lm;
mod peft;
pub mod write;

use crate::model::arch::config::Qwen3Config;
use crate::model::weights::safetensors::SafetensorsFiles;
use anyhow::{bail, Context as _};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// The projections of a Qwen3 block an adapter may cover, by their names
/// inside `model.layers.N`.
pub const MODULES: [&str; 7] = crate::model::arch::qwen3::PROJECTIONS;

/// The `(out, in)` shape of `module` in a model of `cfg`.
pub fn module_shape(cfg: &Qwen3Config, module: &str) -> Option<(usize, usize)> {
    let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    Some(match module {
        "self_attn.q_proj" => (cfg.num_attention_heads * hd, h),
        "self_attn.k_proj" | "self_attn.v_proj" => (cfg.num_key_value_heads * hd, h),
        "self_attn.o_proj" => (h, cfg.num_attention_heads * hd),
        "mlp.gate_proj" | "mlp.up_proj" => (i, h),
        "mlp.down_proj" => (h, i),
        _ => return None,
    })
}

/// Projections named short (`q_proj`) or in full (`self_attn.q_proj`);
/// empty means all seven.
pub fn resolve_targets(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(MODULES.to_vec());
    }
    names
        .iter()
        .map(|t| {
            MODULES
                .iter()
                .copied()
                .find(|m| m.rsplit('.').next() == Some(t.as_str()) || *m == t)
                .with_context(|| format!("unknown target {t:?}; use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj"))
        })
        .collect()
}

/// Which file format an adapter came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterFormat {
    /// Hugging Face PEFT.
    Peft,
    /// Apple's MLX-LM.
    MlxLm,
}

/// One adapted projection.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    /// Decoder block.
    pub layer: usize,
    /// One of [`MODULES`].
    pub module: &'static str,
    /// `(r, in)`, f32 on the CPU.
    pub a: Tensor,
    /// `(out, r)`, f32 on the CPU.
    pub b: Tensor,
    /// `s` in `y = W·x + s·B(A·x)`.
    pub scale: f64,
}

impl LoraWeights {
    /// `model.layers.N.<module>`.
    pub fn name(&self) -> String {
        format!("model.layers.{}.{}", self.layer, self.module)
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `ΔW = s·B·A`, `(out, in)` in f32.
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b.matmul(&self.a)? * self.scale
    }
}

/// A loaded adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The adapter's directory.
    pub path: PathBuf,
    /// Its format.
    pub format: AdapterFormat,
    /// The file the weights came from.
    pub weights_file: PathBuf,
    /// sha256 of that file.
    pub sha256: String,
    /// The configured rank (per-module ranks may differ, see `modules`).
    pub rank: usize,
    /// The configured scale (`lora_alpha / r`, `/ √r` with rsLoRA, or
    /// MLX-LM's `scale`).
    pub scale: f64,
    /// Every adapted projection.
    pub modules: Vec<LoraWeights>,
}

/// What a session log and `--json` outputs say of an adapter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterInfo {
    /// The adapter's directory.
    pub path: PathBuf,
    /// `peft` or `mlx_lm`.
    pub format: AdapterFormat,
    /// Configured rank.
    pub rank: usize,
    /// Configured scale.
    pub scale: f64,
    /// sha256 of the weights file.
    pub sha256: String,
    /// How many projections it adapts.
    pub modules: usize,
}

impl Adapter {
    /// Applies the adapter to `model` unfused: each adapted projection
    /// computes `W·x + s·B(A·x)` from now on, over whatever its base weight
    /// is (dense, GGUF- or MLX-quantized). Adapters stack. The model's cache
    /// is cleared.
    pub fn attach_to(&self, model: &mut crate::model::arch::qwen3::Qwen3) -> anyhow::Result<()> {
        let dtype = model.lora_dtype();
        let device = model.device().clone();
        for m in &self.modules {
            let name = m.name();
            let Some(linear) = model.projection(m.layer, m.module) else {
                anyhow::bail!("{}: the model has no {name}", self.path.display());
            };
            linear
                .add_lora(&m.a, &m.b, m.scale, dtype, &device)
                .map_err(|e| anyhow::anyhow!("{}: {name}: {e}", self.path.display()))?;
        }
        model.clear_cache();
        Ok(())
    }

    /// Reads the adapter in `dir` (PEFT or MLX-LM, told apart by its files)
    /// and checks it fits a base of shape `cfg`.
    pub fn load(dir: &Path, cfg: &Qwen3Config) -> anyhow::Result<Adapter> {
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path).with_context(|| {
            if dir.is_dir() {
                format!("{} has no adapter_config.json; an adapter directory holds adapter_config.json and adapter_model.safetensors (PEFT) or adapters.safetensors (MLX-LM)", dir.display())
            } else {
                format!("adapter {} is not a directory", dir.display())
            }
        })?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
        let peft = dir.join("adapter_model.safetensors");
        let mlx = dir.join("adapters.safetensors");
        let (format, file) = if peft.exists() {
            (AdapterFormat::Peft, peft)
        } else if mlx.exists() {
            (AdapterFormat::MlxLm, mlx)
        } else if dir.join("adapter_model.bin").exists() {
            bail!("{} holds adapter_model.bin (a pickle); warden reads safetensors only: save the adapter with safe_serialization=True", dir.display());
        } else {
            bail!(
                "{} has neither adapter_model.safetensors (PEFT) nor adapters.safetensors (MLX-LM)",
                dir.display()
            );
        };
        let files = SafetensorsFiles::open(vec![file.clone()])?;
        let shown = config_path.display().to_string();
        let (rank, scale, modules) = match format {
            AdapterFormat::Peft => peft::read(&config, &shown, &files, &file, cfg)?,
            AdapterFormat::MlxLm => mlx_lm::read(&config, &shown, &files, &file, cfg)?,
        };
        if modules.is_empty() {
            bail!(
                "{} adapts no projection of the model: its targets match nothing in {}",
                dir.display(),
                file.display()
            );
        }
        Ok(Adapter {
            path: dir.to_path_buf(),
            format,
            sha256: crate::audit::sha256_file(&file)?,
            weights_file: file,
            rank,
            scale,
            modules,
        })
    }

    /// The summary recorded in logs.
    pub fn info(&self) -> AdapterInfo {
        AdapterInfo {
            path: self.path.clone(),
            format: self.format,
            rank: self.rank,
            scale: self.scale,
            sha256: self.sha256.clone(),
            modules: self.modules.len(),
        }
    }
}

/// Splits `model.layers.N.<module>` into `(N, module)`, checking both
/// exist in a base of `cfg`; `what` names the tensor for messages.
fn locate(
    path: &str,
    cfg: &Qwen3Config,
    file: &Path,
    what: &str,
) -> anyhow::Result<(usize, &'static str)> {
    let shown = file.display();
    let unsupported = |m: &str| {
        anyhow::anyhow!("{shown}: tensor {what} adapts {m}; warden applies adapters to the attention and MLP projections only ({}), so this adapter cannot be served exactly", MODULES.join(", "))
    };
    let Some(rest) = path.strip_prefix("model.layers.") else {
        return Err(unsupported(path));
    };
    let (layer, module) = rest.split_once('.').ok_or_else(|| unsupported(path))?;
    let layer: usize = layer.parse().map_err(|_| unsupported(path))?;
    let Some(module) = MODULES.iter().find(|m| **m == module) else {
        return Err(unsupported(path));
    };
    if layer >= cfg.num_hidden_layers {
        bail!("{shown}: tensor {what} is for layer {layer}, but the base model has {} layers: the adapter was made for another base model", cfg.num_hidden_layers);
    }
    Ok((layer, module))
}

/// Loads `A (r, in)` and `B (out, r)` as f32 and checks them against the
/// base's `(out, in)` for `module` and, when given, the configured rank.
#[allow(clippy::too_many_arguments)]
fn pair(
    files: &SafetensorsFiles,
    file: &Path,
    cfg: &Qwen3Config,
    module: &'static str,
    a_name: &str,
    b_name: &str,
    transposed: bool,
    rank: Option<usize>,
) -> anyhow::Result<(Tensor, Tensor)> {
    let shown = file.display();
    let load = |n: &str| -> anyhow::Result<Tensor> {
        if !files.contains(n) {
            bail!("{shown} has no tensor {n}, which its adapter_config.json targets");
        }
        let t = files.load(n, DType::F32, &Device::Cpu)?;
        if t.rank() != 2 {
            bail!(
                "{shown}: tensor {n} has shape {:?}; a LoRA matrix is 2-D",
                t.dims()
            );
        }
        Ok(t)
    };
    let (mut a, mut b) = (load(a_name)?, load(b_name)?);
    if transposed {
        a = a.t()?.contiguous()?;
        b = b.t()?.contiguous()?;
    }
    let (out, inp) = module_shape(cfg, module).expect("a known module");
    let (r, a_in) = a.dims2()?;
    let (b_out, b_r) = b.dims2()?;
    let (a_want, b_want) = if transposed {
        (format!("({inp}, r)"), format!("(r, {out})"))
    } else {
        (format!("(r, {inp})"), format!("({out}, r)"))
    };
    if a_in != inp {
        bail!("{shown}: tensor {a_name} has shape {:?}, but {module} of the base takes {inp} inputs (expected {a_want}): the adapter was made for another base model", files.shape(a_name).unwrap_or_default());
    }
    if b_out != out {
        bail!("{shown}: tensor {b_name} has shape {:?}, but {module} of the base has {out} outputs (expected {b_want}): the adapter was made for another base model", files.shape(b_name).unwrap_or_default());
    }
    if b_r != r {
        bail!("{shown}: tensors {a_name} and {b_name} disagree on the rank ({r} and {b_r})");
    }
    if let Some(want) = rank.filter(|&w| w != r) {
        bail!("{shown}: tensor {a_name} has rank {r}, but adapter_config.json says {want}");
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests;
