//! `warden fuse`: adapters merged into the base in full precision
//! (`W' = W + Σ s·B·A` in f32, a quantized base dequantized first), written
//! as a Hugging Face directory; optionally quantized too, with the survival
//! of each adapter's delta measured on the way.

use crate::model::adapter::Adapter;
use crate::model::checkpoint::gguf_write::{self, Written};
use crate::model::checkpoint::load::Checkpoint;
use crate::model::checkpoint::tokenizer_files::TokenizerFiles;
use crate::model::convert::quantize::{self, QuantFormat};
use crate::model::convert::survival::{survival, Survival};
use anyhow::{bail, Context as _};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What to fuse.
#[derive(Debug, Clone)]
pub struct FuseOptions {
    /// The base (directory, `.gguf` or hub-cache name).
    pub model: String,
    /// Adapter directories, applied in order.
    pub adapters: Vec<PathBuf>,
    /// The HF directory to write.
    pub out: PathBuf,
    /// Dtype of the written weights.
    pub dtype: DType,
    /// Also quantize the fused model.
    pub quantize: Option<QuantFormat>,
    /// Where the quantized model goes (default: `<out>/model-<fmt>.gguf`
    /// or `<out>/<fmt>/`).
    pub quantized_out: Option<PathBuf>,
    /// GGUF only: the token embedding (the output layer too when tied) in
    /// this type instead (adapters never change it, so the survival table
    /// is the same).
    pub embedding_type: Option<GgmlDType>,
}

/// What was done.
#[derive(Debug, serde::Serialize)]
pub struct FuseReport {
    /// The base's storage, when it had to be dequantized (`GGUF q8_0`, …).
    pub dequantized_base: Option<String>,
    /// Matrices changed.
    pub merged: usize,
    /// Files of the HF directory.
    pub files: Vec<PathBuf>,
    /// The quantized output, when asked for.
    pub quantized: Option<Written>,
    /// How much of the delta survived the quantization.
    pub survival: Option<Survival>,
}

/// The default place of the quantized output under `out`.
pub fn default_quantized_out(out: &Path, format: QuantFormat) -> PathBuf {
    match format {
        QuantFormat::Gguf(_) => out.join(format!("model-{}.gguf", format.name())),
        QuantFormat::Mlx(_) => out.join(format.name()),
    }
}

/// Runs the merge.
pub fn fuse(opts: &FuseOptions) -> anyhow::Result<FuseReport> {
    if opts.adapters.is_empty() {
        bail!("give at least one --adapter to fuse");
    }
    if opts.embedding_type.is_some() && !matches!(opts.quantize, Some(QuantFormat::Gguf(_))) {
        bail!("--embedding-type applies to GGUF formats only (--quantize q8_0, q4_k, …)");
    }
    let mut ckpt = Checkpoint::open(&opts.model, &Device::Cpu)?;
    if ckpt.path.canonicalize().ok() == opts.out.canonicalize().ok() {
        bail!(
            "--out {} is the base model itself; write the fused model elsewhere",
            opts.out.display()
        );
    }
    let dequantized_base = ckpt.weights.quantized_format();
    let mut tok = TokenizerFiles::for_model(&ckpt.path)?;
    // The fused model runs in the format its fine-tune learned: the last
    // adapter's chat_template.jinja goes with it.
    if let Some(t) = opts
        .adapters
        .iter()
        .rev()
        .map(|d| d.join(crate::chat::TEMPLATE_FILE))
        .find(|f| f.is_file())
    {
        let bytes = std::fs::read(&t).with_context(|| format!("cannot read {}", t.display()))?;
        tok.extra.retain(|(n, _)| n != crate::chat::TEMPLATE_FILE);
        tok.extra
            .push((crate::chat::TEMPLATE_FILE.to_string(), bytes));
    }
    let cfg = ckpt.config.clone();
    let adapters = opts
        .adapters
        .iter()
        .map(|d| Adapter::load(d, &cfg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tensors = ckpt.dense_tensors()?;
    let index: HashMap<String, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.clone(), i))
        .collect();
    // name -> (base W, total ΔW)
    let mut deltas: Vec<(String, Tensor, Tensor)> = Vec::new();
    for a in &adapters {
        for m in &a.modules {
            let name = format!("{}.weight", m.name());
            let i = *index
                .get(&name)
                .with_context(|| format!("the base has no {name}"))?;
            let d = m.delta()?;
            match deltas.iter_mut().find(|(n, _, _)| *n == name) {
                Some(e) => e.2 = (&e.2 + &d)?,
                None => deltas.push((name.clone(), tensors[i].1.clone(), d.clone())),
            }
            tensors[i].1 = (&tensors[i].1 + &d)?;
        }
    }
    let files = crate::model::checkpoint::tokenizer_files::write_hf_dir(
        &opts.out, &cfg, &tensors, opts.dtype, &tok,
    )?;
    let (quantized, surv) = match opts.quantize {
        None => (None, None),
        Some(format) => {
            let surv = survival(&deltas, format)?;
            let target = opts
                .quantized_out
                .clone()
                .unwrap_or_else(|| default_quantized_out(&opts.out, format));
            let w = match (format, opts.embedding_type) {
                (QuantFormat::Gguf(t), Some(e)) => {
                    gguf_write::write_gguf_with(&target, &cfg, &tensors, t, Some(e), &tok)?
                }
                _ => quantize::write_quantized(format, &cfg, &tensors, &target, &tok)?,
            };
            (Some(w), Some(surv))
        }
    };
    Ok(FuseReport {
        dequantized_base,
        merged: deltas.len(),
        files,
        quantized,
        survival: surv,
    })
}
